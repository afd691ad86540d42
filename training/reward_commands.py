"""``vidalign train reward``: reward-gradient fine-tuning (VADER, PISA ORO) from a YAML config.

Single process: ``vidalign train reward --config vader_aesthetic`` (a shipped example by name, or a YAML path);
several GPUs: ``accelerate launch $(which vidalign) train reward --config pisa_oro``. ``key=value`` arguments
override the YAML (``max_steps=10 output_dir=out/run1 'rewards=[{name: flow}]'``); ``--check`` validates the
config and exits without loading models; ``--help-options`` lists the options and the rewards.
"""

from __future__ import annotations


def register(sub, groups) -> None:
    p = groups["train"].add_parser(
        "reward", help="reward-gradient fine-tuning (VADER, PISA object reward optimisation)",
        description=__doc__.splitlines()[0])
    p.add_argument("--config", help="YAML config, or a shipped example name (vader_aesthetic, pisa_oro)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override config options")
    p.add_argument("--check", action="store_true", help="validate the config and exit")
    p.add_argument("--help-options", action="store_true", help="list the config options and rewards, then exit")
    p.set_defaults(func=_run)


def _help_options() -> int:
    import dataclasses

    from transformers import TrainingArguments

    from vidalign.training.reward_config import RewardGradientConfig
    from vidalign.training.rewards import reward_entry, reward_names

    def default_of(f):
        if f.default is not dataclasses.MISSING:
            return f.default
        return f.default_factory() if f.default_factory is not dataclasses.MISSING else None

    base = {f.name: default_of(f) for f in dataclasses.fields(TrainingArguments)}
    for f in dataclasses.fields(RewardGradientConfig):
        default = default_of(f)
        if f.name in base and base[f.name] == default:
            continue  # an unchanged TrainingArguments option
        print(f"{f.name:28s} {default!r:34s} {f.metadata.get('help', '')}".rstrip())
    print("... plus every transformers.TrainingArguments option (output_dir, learning_rate, seed, ...)")
    print("rewards (each: {name: ..., weight: 1.0, <options>}):")
    for name in reward_names():
        opts = ", ".join(f"{f.name}={default_of(f)!r}" for f in dataclasses.fields(reward_entry(name).options))
        print(f"  {name:14s} {opts}")
    return 0


def _run(args) -> int:
    if args.help_options:
        return _help_options()
    from vidalign.errors import ConfigError
    from vidalign.training.commands import close_process_group, resolve_config
    from vidalign.training.reward_config import load_reward_config

    if args.config is None and not args.overrides:
        raise ConfigError("vidalign train reward: give --config <yaml or vader_aesthetic | pisa_oro> "
                          "and/or key=value options")
    cfg = load_reward_config(resolve_config(args.config), args.overrides)
    rewards = ", ".join(f"{s.name}×{s.weight:g}" for s in cfg.reward_specs)
    source = f"prompts={cfg.prompts}" if cfg.prompts else f"train_data={cfg.train_data}"
    tuning = f"LoRA r{cfg.lora_rank}" if cfg.use_lora else "full fine-tune"
    line = (f"reward config OK: {cfg.model_name_or_path}, {tuning}, {source}, rewards {rewards}, "
            f"{cfg.num_inference_steps} steps backprop={cfg.backprop_mode}, decode={cfg.decode_frames}, "
            f"{cfg.max_steps} optimizer steps → {cfg.output_dir}")
    if args.check:
        print(line)
        return 0
    from vidalign.training.reward_trainer import RewardTrainer

    RewardTrainer(cfg).train()
    close_process_group()
    return 0
