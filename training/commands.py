"""``vidalign train dpo|sft --config cfg.yaml [key=value ...]``.

Runs unchanged under ``accelerate launch $(which vidalign) train dpo ...`` or ``torchrun --nproc_per_node N -m
vidalign.cli train dpo ...``: Trainer picks the process group up from the environment. Example configs ship in
``vidalign/training/configs/`` (``--config spatialalign_dpo`` finds them by name).
"""

from __future__ import annotations

import argparse
import os
import time

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "configs")


def resolve_config(path: str | None) -> str | None:
    """A YAML path, or the name of a shipped example config (``spatialalign_dpo``, ``videodpo_dpo``, ...)."""
    if path is None or os.path.exists(path):
        return path
    shipped = os.path.join(CONFIG_DIR, path if path.endswith(".yaml") else path + ".yaml")
    return shipped if os.path.isfile(shipped) else path


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


def _help_options(kind: str) -> int:
    import dataclasses

    from transformers import TrainingArguments

    from vidalign.training.config import CONFIG_CLASSES

    def default_of(f):
        if f.default is not dataclasses.MISSING:
            return f.default
        return f.default_factory() if f.default_factory is not dataclasses.MISSING else None

    base = {f.name: default_of(f) for f in dataclasses.fields(TrainingArguments)}
    for f in dataclasses.fields(CONFIG_CLASSES[kind]):
        default = default_of(f)
        if f.name in base and base[f.name] == default:
            continue  # an unchanged TrainingArguments option
        print(f"{f.name:28s} {default!r:34s} {f.metadata.get('help', '')}".rstrip())
    print("... plus every transformers.TrainingArguments option (output_dir, learning_rate, save_steps, ...)")
    return 0


def _run(args: argparse.Namespace) -> int:
    kind = args.train_command
    if args.help_options:
        return _help_options(kind)
    from vidalign.errors import ConfigError
    from vidalign.training.config import load_config

    cfg = load_config(kind, resolve_config(args.config), args.overrides)
    if cfg.train_data is None:
        raise ConfigError(f"{args.config or 'command line'}: train_data is not set; "
                          "add train_data=<latent shard folder or glob>")
    if kind == "dpo":
        from vidalign.training.dpo_trainer import DiffusionDPOTrainer as TrainerCls
    else:
        from vidalign.training.sft_trainer import DiffusionSFTTrainer as TrainerCls
    resume: str | bool | None = args.resume
    if resume == "latest":
        resume = True
    if resume is None and cfg.resume_from_checkpoint:
        resume = cfg.resume_from_checkpoint
    start = time.perf_counter()
    trainer = TrainerCls(args=cfg)
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(cfg.output_dir)
    if trainer.is_world_process_zero():
        what = "pytorch_lora_weights.safetensors" if cfg.use_lora else "transformer/"
        print(f"vidalign train {kind}: {trainer.state.global_step} steps in {time.perf_counter() - start:.1f}s "
              f"on {cfg.world_size} process(es); weights: {os.path.join(cfg.output_dir, what)}")
    close_process_group()
    return 0


def register(sub, groups) -> None:
    """Add ``dpo`` and ``sft`` to ``vidalign train`` (``reward`` is added by ``reward_commands``)."""
    train = groups["train"]
    for kind, help_text in (
        ("dpo", "Diffusion-DPO on latent shards (SpatialAlign, VideoDPO)"),
        ("sft", "supervised flow-matching fine-tuning on latent shards (PISA PSFT)"),
    ):
        p = train.add_parser(kind, help=help_text, description=help_text)
        p.add_argument("--config", help="YAML config, or a shipped example name (spatialalign_dpo, videodpo_dpo, "
                       "pisa_psft)")
        p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CHECKPOINT",
                       help="resume from a checkpoint folder (no value: the latest one in output_dir)")
        p.add_argument("--help-options", action="store_true", help="list the config options and exit")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override config options, e.g. beta=5000")
        p.set_defaults(func=_run)
