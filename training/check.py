"""``vidalign train <kind> --check``: is the run ready to start? Without loading a model or training a step.

Checks that the model and pipeline folders the config names exist with the parts the trainer loads (a Hub id is
reported, not downloaded), that the data source opens and its first sample prepares as the trainer would prepare
it, that the prompt files and the checkpoint to resume from exist, and that ``output_dir`` can be written. Each
failure is one line naming the option and the fix.
"""

from __future__ import annotations

import os

from vidalign.errors import ConfigError, VidalignError
from vidalign.training.model_card import _is_hub_id

PIPELINE_PARTS = ("transformer", "vae", "text_encoder", "tokenizer")


def _model_folder(option: str, path: str | None, parts: tuple[str, ...]) -> str:
    if not path:
        raise ConfigError(f"{option} is not set; give a diffusers folder or a Hub id")
    if os.path.isdir(path):
        missing = [p for p in parts if not os.path.isdir(os.path.join(path, p))]
        if missing:
            raise ConfigError(f"{option}={path!r}: no {missing[0]}/ in the folder; give a diffusers pipeline folder "
                              f"with {', '.join(parts)}")
        return f"{option}: folder {path} ({', '.join(parts)})"
    if _is_hub_id(path):
        return f"{option}: Hub id {path} (not downloaded by --check)"
    raise ConfigError(f"{option}={path!r}: no such folder, and not a Hub id (org/name)")


WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors", ".bin", ".ckpt")


def _reward_files(cfg) -> list[str]:
    """Each reward option naming a model or weights file: a local path must exist; ``org/name`` (a Hub model)
    and ``org/name/file`` (a Hub file) are reported, not downloaded."""
    import dataclasses

    lines = []
    for i, spec in enumerate(cfg.reward_specs):
        for f in dataclasses.fields(spec.options):
            value = getattr(spec.options, f.name)
            if not isinstance(value, str) or not value or " " in value:
                continue
            where = f"rewards[{i}].{f.name}={value!r}"
            parts = value.split("/")
            local = value.startswith((".", "/", "~")) or os.sep in value and len(parts) == 2 and \
                value.endswith(WEIGHT_SUFFIXES)
            if os.path.exists(os.path.expanduser(value)):
                lines.append(f"{where}: local {'folder' if os.path.isdir(value) else 'file'}")
            elif local or (len(parts) == 1 and value.endswith(WEIGHT_SUFFIXES)):
                raise ConfigError(f"{where}: no such file; put the weights there or give a Hub id (org/name) or "
                                  "Hub file (org/name/file)")
            elif len(parts) >= 2 and all(parts):
                lines.append(f"{where}: Hub {'file' if len(parts) > 2 else 'id'} (not downloaded by --check)")
    return lines


def _denoiser(cfg) -> str:
    path, sub = cfg.model_name_or_path, cfg.model_subfolder
    if path and os.path.isdir(path):
        folder = os.path.join(path, sub) if sub and os.path.isdir(os.path.join(path, sub)) else path
        if not os.path.isfile(os.path.join(folder, "config.json")):
            raise ConfigError(f"model_name_or_path={path!r}: no {os.path.join(sub or '', 'config.json')}; give a "
                              f"diffusers pipeline folder or a saved {cfg.model_class}")
        return f"model_name_or_path: folder {folder} ({cfg.model_class})"
    return _model_folder("model_name_or_path", path, ())


def _data(kind: str, cfg) -> str:
    """Open the stream and prepare its first sample exactly as the trainer's DataLoader would."""
    from vidalign.streaming import StreamState

    if kind == "reward":
        from vidalign.training.reward_trainer import DropClipPrep, reward_source

        if cfg.train_data is None:
            return f"prompts: {cfg.prompts} ({len(cfg.prompt_list)} prompts)"
        source = reward_source(None, cfg)
        prep = DropClipPrep(cfg.prompt, (), cfg.height, cfg.width)
    else:
        from vidalign.training.data import ClipPrep, PairPrep, training_stream

        source = training_stream(cfg.train_data, cfg.train_config, cfg.data_split, cfg.data_resample,
                                 cfg.shuffle_buffer)
        prep = (PairPrep(cfg.data_format, cfg.chosen_member, cfg.rejected_member, cfg.pair_weight_key)
                if kind == "dpo" else ClipPrep(cfg.latents_member))
    workers = max(1, cfg.dataloader_num_workers)
    stream = source.replace(transform=prep, seed=cfg.seed, state=StreamState(num_workers=workers))
    sample = stream.first_sample()
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in sample.items() if hasattr(v, "shape") and v.ndim > 0)
    line = f"train_data: {cfg.train_data} opens ({source.describe()}); first sample prepared: {shapes}"
    if kind != "reward" and cfg.caption_dropout > 0:
        from vidalign.contract import empty_caption_embeds

        empty = empty_caption_embeds(cfg.empty_prompt_embeds, source, cfg.caption_dropout)
        line += f"; dropped captions: {'zeros' if empty is None else f'encoded empty prompt {empty.shape}'}"
    return line


def _resume(resume, output_dir: str) -> str | None:
    if resume is None or resume is False:
        return None
    from vidalign.training.trainer_base import checkpoint_step, resolve_checkpoint

    ckpt = resolve_checkpoint(resume, output_dir)
    return f"resume: {ckpt} (step {checkpoint_step(ckpt)})"


def _output_dir(path: str) -> str:
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.access(probe, os.W_OK):
        raise ConfigError(f"output_dir={path!r}: {probe} is not writable; choose another output_dir")
    return f"output_dir: {path} ({'exists' if os.path.isdir(path) else 'will be created'})"


def check_config(kind: str, cfg, resume=None) -> list[str]:
    """The lines ``--check`` prints; raises a one-line :class:`ConfigError` on the first problem."""
    lines = []
    if kind == "reward":
        lines.append(_model_folder("model_name_or_path", cfg.model_name_or_path, PIPELINE_PARTS))
        lines += _reward_files(cfg)
    else:
        lines.append(_denoiser(cfg))
        if cfg.validation_prompt_list:
            lines.append(_model_folder("validation_pipeline" if cfg.validation_pipeline else "model_name_or_path",
                                       cfg.pipeline_source(), PIPELINE_PARTS[1:]))
    try:
        lines.append(_data(kind, cfg))
    except ConfigError:
        raise
    except VidalignError as exc:
        raise ConfigError(f"train_data={cfg.train_data!r}: {exc}") from None
    if cfg.validation_prompt_list:
        lines.append(f"validation: {len(cfg.validation_prompt_list)} prompts every "
                     f"{cfg.validation_steps or cfg.max_steps} steps")
    r = _resume(resume, cfg.output_dir)
    if r:
        lines.append(r)
    lines.append(_output_dir(cfg.output_dir))
    tuning = f"LoRA r{cfg.lora_rank}" if cfg.use_lora else "full fine-tune"
    summary = f"{kind} config OK: {tuning}, {cfg.max_steps} optimizer steps"
    if kind == "reward":
        rewards = ", ".join(f"{s.name}×{s.weight:g}" for s in cfg.reward_specs)
        summary += (f", rewards {rewards}, {cfg.num_inference_steps} steps backprop={cfg.backprop_mode}, "
                    f"decode={cfg.decode_frames}")
    return [*lines, summary]
