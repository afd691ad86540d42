"""``vidalign train dpo|sft|reward --config cfg.yaml [--option value ...] [key=value ...]``.

The command line reads as TRL's (``trl.TrlParser``): the YAML gives the values, ``--learning_rate 1e-4 --beta
5000`` (or ``--learning_rate=1e-4``, ``--use_lora false``, ``--lora_target_modules to_q to_k``) and ``key=value``
override them, in order. ``--resume`` continues from the latest checkpoint of ``output_dir`` (or the one named);
``--check`` validates the config, checks that its files and folders exist and that the data opens, and exits
without training; ``--help-options`` lists the options.

Runs unchanged under ``accelerate launch $(which vidalign) train dpo ...`` or ``torchrun --nproc_per_node N -m
vidalign.cli train dpo ...``: Trainer picks the process group up from the environment. Example configs ship in
``vidalign/training/configs/`` (``--config spatialalign_dpo`` finds them by name).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "configs")
KINDS = {
    "dpo": "Diffusion-DPO on latent shards (SpatialAlign, VideoDPO)",
    "sft": "supervised flow-matching fine-tuning on latent shards (PISA PSFT)",
}
BOOL_WORDS = {"true": "true", "false": "false", "yes": "true", "no": "false", "1": "true", "0": "false"}


def resolve_config(path: str | None) -> str | None:
    """A YAML path, or the name of a shipped example config (``spatialalign_dpo``, ``videodpo_dpo``, ...)."""
    if path is None or os.path.exists(path):
        return path
    shipped = os.path.join(CONFIG_DIR, path if path.endswith(".yaml") else path + ".yaml")
    return shipped if os.path.isfile(shipped) else path


def cli_overrides(tokens: list[str], cls: type) -> list[str]:
    """TRL-style ``--key value`` / ``--key=value`` / bare ``--flag`` and plain ``key=value`` tokens → ``key=value``
    strings, in order. A bool option takes an optional true/false; a list option takes every value up to the next
    option (``--lora_target_modules to_q to_k``); dashes in names read as underscores."""
    import dataclasses

    from vidalign.errors import ConfigError

    kinds = {}  # "bool" | "list" | "" per option, from the field's type (``bool | None`` is a bool option)
    for f in dataclasses.fields(cls):
        t = str(f.type)
        kinds[f.name] = "bool" if t.split("|")[0].strip() == "bool" else "list" if t.startswith("list") else ""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if not tok.startswith("--"):
            if "=" not in tok:
                raise ConfigError(f"command line: {tok!r} is neither --option value nor key=value; write e.g. "
                                  "--beta 5000 or beta=5000")
            out.append(tok)
            continue
        key, eq, value = tok[2:].partition("=")
        key = key.replace("-", "_")
        if eq:
            out.append(f"{key}={value}")
            continue
        kind = kinds.get(key, "")
        values = []
        while i < len(tokens) and not tokens[i].startswith("--"):
            if kind == "bool" and tokens[i].lower() not in BOOL_WORDS:
                break
            if kind == "list" and values and "=" in tokens[i]:
                break  # a key=value override after the list's items
            values.append(tokens[i])
            i += 1
            if kind != "list":
                break
        if not values:
            if kind != "bool":
                raise ConfigError(f"command line: --{key} needs a value; write e.g. --{key} <value>")
            out.append(f"{key}=true")
        elif kind == "bool":
            out.append(f"{key}={BOOL_WORDS[values[0].lower()]}")
        elif kind == "list" and not (len(values) == 1 and values[0].lstrip().startswith("[")):
            out.append(f"{key}=[{', '.join(values)}]")
        else:
            out.append(f"{key}={values[0]}")
    return out


def close_process_group() -> None:
    """Tear the process group down before the interpreter exits.

    Without this a gloo rank can abort at exit ("terminate called without an active exception"): its C++ worker
    threads still hold work objects when Python finalises (pytorch/pytorch#190489). The barrier lets every rank
    finish its last collective first.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _default_of(f):
    import dataclasses

    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def _help_options(kind: str) -> int:
    import dataclasses

    from transformers import TrainingArguments

    from vidalign.training.config import config_class

    base = {f.name: _default_of(f) for f in dataclasses.fields(TrainingArguments)}
    for f in dataclasses.fields(config_class(kind)):
        default = _default_of(f)
        if f.name in base and base[f.name] == default:
            continue  # an unchanged TrainingArguments option
        print(f"{f.name:30s} {default!r:34s} {f.metadata.get('help', '')}".rstrip())
    print("... plus every transformers.TrainingArguments option (output_dir, learning_rate, save_steps, report_to, "
          "push_to_hub, ...)")
    if kind == "reward":
        from vidalign.training.rewards import reward_entry, reward_names

        print("rewards (each: {name: ..., weight: 1.0, <options>}):")
        for name in reward_names():
            opts = ", ".join(f"{f.name}={_default_of(f)!r}" for f in dataclasses.fields(reward_entry(name).options))
            print(f"  {name:14s} {opts}")
    return 0


def make_trainer(kind: str, cfg, **kwargs: Any):
    """The trainer of ``kind`` for config ``cfg``."""
    if kind == "dpo":
        from vidalign.training.dpo_trainer import DiffusionDPOTrainer as cls
    elif kind == "sft":
        from vidalign.training.sft_trainer import DiffusionSFTTrainer as cls
    else:
        from vidalign.training.reward_trainer import RewardTrainer as cls
    return cls(args=cfg, **kwargs)


def resume_target(value: str | None, cfg_resume: str | None) -> str | bool | None:
    """``--resume`` (the latest checkpoint: True), ``--resume CKPT``, else the config's resume_from_checkpoint."""
    if value == "latest":
        return True
    return value if value is not None else cfg_resume


def _summary(kind: str, trainer, cfg, seconds: float) -> str:
    what = "pytorch_lora_weights.safetensors" if cfg.use_lora else "transformer/"
    last = next((h for h in reversed(trainer.state.log_history) if "loss" in h), {})
    scores = ", ".join(f"{k}={v:.4f}" for k, v in last.items() if k.startswith("reward/"))
    loss = f"; loss {last['loss']:.4f}" + (f", {scores}" if scores else "") if "loss" in last else ""
    return (f"vidalign train {kind}: {trainer.state.global_step} steps in {seconds:.1f}s on {cfg.world_size} "
            f"process(es){loss}; weights: {os.path.join(cfg.output_dir, what)}")


def _run(args: argparse.Namespace) -> int:
    kind = args.train_command
    if args.help_options:
        return _help_options(kind)
    from vidalign.errors import ConfigError
    from vidalign.training.config import config_class, load_config

    overrides = cli_overrides(list(args.overrides or []), config_class(kind))
    resume_arg = args.resume
    if resume_arg is not None and "=" in resume_arg and not os.path.isdir(resume_arg):
        overrides.append(resume_arg)  # `--resume key=value`: argparse took the override as the checkpoint
        resume_arg = "latest"
    if args.config is None and not overrides:
        raise ConfigError(f"vidalign train {kind}: give --config <yaml or shipped name> and/or options")
    cfg = load_config(kind, resolve_config(args.config), overrides)
    resume = resume_target(resume_arg, cfg.resume_from_checkpoint)
    if kind != "reward" and cfg.train_data is None:
        raise ConfigError(f"{args.config or 'command line'}: train_data is not set; "
                          "add train_data=<latent shard folder or glob>")
    if args.check:
        from vidalign.training.check import check_config

        for line in check_config(kind, cfg, resume):
            print(line)
        return 0
    start = time.perf_counter()
    trainer = make_trainer(kind, cfg)
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(cfg.output_dir)  # weights, config, card; with push_to_hub also the push (Trainer's rule)
    trainer.save_state()
    if trainer.is_world_process_zero():
        print(_summary(kind, trainer, cfg, time.perf_counter() - start))
    close_process_group()
    return 0


def add_train_parser(train, kind: str, help_text: str, examples: str) -> None:
    p = train.add_parser(kind, help=help_text, description=f"{help_text}. Options: --config, then TRL-style "
                         "--option value or key=value overrides of any config option (see --help-options).")
    p.add_argument("--config", help=f"YAML config, or a shipped example name ({examples})")
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CHECKPOINT",
                   help="resume from a checkpoint folder (no value: the latest one in output_dir)")
    p.add_argument("--check", action="store_true",
                   help="validate the config, check its files exist and the data opens, then exit")
    p.add_argument("--help-options", action="store_true", help="list the config options and exit")
    p.set_defaults(func=_run, overrides=[])


def register(sub, groups) -> None:
    """Add ``dpo`` and ``sft`` to ``vidalign train`` (``reward`` is added by ``reward_commands``)."""
    train = groups["train"]
    add_train_parser(train, "dpo", KINDS["dpo"], "spatialalign_dpo, videodpo_dpo")
    add_train_parser(train, "sft", KINDS["sft"], "pisa_psft")
