"""The denoiser and its LoRA: loading, target validation, the adapter-off reference, diffusers-format IO.

The DPO reference is the same network with its LoRA switched off (no second copy in memory). Weights are saved as
diffusers' pipelines expect: ``pytorch_lora_weights.safetensors`` via ``<Pipeline>.save_lora_weights`` (so
``pipe.load_lora_weights(folder)`` works), or a full ``transformer/`` folder when training without LoRA.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from vidalign.errors import ConfigError, VidalignError

LORA_WEIGHTS_NAME = "pytorch_lora_weights.safetensors"
FULL_MODEL_DIR = "transformer"
# Wan's original module names (SpatialAlign's README uses them) → diffusers' WanTransformer3DModel names.
WAN_NAME_ALIASES = {
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}


def load_denoiser(cfg, dtype: torch.dtype | None = None) -> nn.Module:
    """``<model_class>.from_pretrained(model_name_or_path, subfolder=...)``; a local folder without the subfolder
    is read as the bare model. Failures become one line naming the option."""
    import diffusers

    cls = getattr(diffusers, cfg.model_class, None)
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise ConfigError(f"model_class={cfg.model_class!r} is not a diffusers model class; "
                          "use e.g. WanTransformer3DModel or UNet3DConditionModel")
    path = cfg.model_name_or_path
    if not path:
        raise ConfigError("model_name_or_path is not set; give a hub id or a local diffusers folder")
    subfolder = cfg.model_subfolder
    if os.path.isdir(path) and subfolder and not os.path.isdir(os.path.join(path, subfolder)):
        subfolder = None
    if dtype is None:
        dtype = torch.bfloat16 if (cfg.bf16 and cfg.use_lora) else torch.float32
    try:
        return cls.from_pretrained(path, subfolder=subfolder, revision=cfg.model_revision, torch_dtype=dtype)
    except (OSError, ValueError) as exc:
        msg = " ".join(str(exc).split())[:300]
        raise ConfigError(f"model_name_or_path={path!r}: cannot load {cfg.model_class} ({msg}); "
                          "give a local diffusers folder or a reachable hub id") from None


def resolve_targets(model: nn.Module, targets: list[str]) -> list[str]:
    """Map Wan aliases to diffusers names and check that every target names at least one Linear/Conv module
    (peft's rule: the full name or a ``.``-suffix of it)."""
    modules = dict(model.named_modules())
    resolved = []
    for target in targets:
        name = WAN_NAME_ALIASES.get(target, target)
        hits = [n for n, m in modules.items() if (n == name or n.endswith("." + name))]
        if not hits:
            examples = ", ".join(sorted({n.split(".", 2)[-1] for n, m in modules.items()
                                         if isinstance(m, nn.Linear)})[:6])
            raise ConfigError(f"lora_target_modules: {target!r} matches no module of {type(model).__name__}; "
                              f"Linear layers are named like {examples}")
        bad = [n for n in hits if not isinstance(modules[n], (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
        if bad:
            raise ConfigError(f"lora_target_modules: {target!r} matches {bad[0]} ({type(modules[bad[0]]).__name__}),"
                              " which LoRA cannot wrap; name Linear or Conv layers")
        resolved.append(name)
    return resolved


def add_lora(model: nn.Module, cfg, peft_config: Any = None) -> list[str]:
    """Freeze ``model`` and add a trainable float32 LoRA: rank, alpha, dropout and targets from ``cfg``, every
    other ``LoraConfig`` argument from ``peft_config`` (a ``LoraConfig`` or its kwargs; default
    ``cfg.peft_config``), as TRL's trainers take one."""
    from peft import LoraConfig

    from vidalign.training.config import lora_config_kwargs

    extra = peft_config if peft_config is not None else getattr(cfg, "peft_config", None)
    kwargs = lora_config_kwargs(extra) if extra is not None else {}
    rank = int(kwargs.pop("r", cfg.lora_rank))
    alpha = kwargs.pop("lora_alpha", cfg.lora_alpha)
    dropout = kwargs.pop("lora_dropout", getattr(cfg, "lora_dropout", 0.0))
    wanted = kwargs.pop("target_modules", None) or list(cfg.lora_target_modules)
    targets = resolve_targets(model, [wanted] if isinstance(wanted, str) else list(wanted))
    kwargs.setdefault("init_lora_weights", True)
    _LAYER_CACHE.pop(model, None)
    model.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, **kwargs)
    if hasattr(model, "add_adapter"):
        model.add_adapter(config)
    else:
        from peft import inject_adapter_in_model

        inject_adapter_in_model(config, model)
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.data = p.data.float()
            p.requires_grad_(True)
    return targets


def has_lora(model: nn.Module) -> bool:
    return any("lora_" in n for n, _ in model.named_parameters())


_LAYER_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _tuner_layers(model: nn.Module) -> tuple[list, list]:
    """The model's peft layers and their LoRA parameters, cached: the reference runs every step and walking the
    whole module tree each time is measurable on small models."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    cached = _LAYER_CACHE.get(model)
    if cached is None:
        layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
        params = [p for layer in layers for n, p in layer.named_parameters() if "lora_" in n]
        cached = _LAYER_CACHE[model] = (layers, params)
    return cached


@contextlib.contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[None]:
    """Run ``model`` as the reference: every LoRA layer bypassed, trainability restored afterwards."""
    layers, params = _tuner_layers(model)
    grads = [p.requires_grad for p in params]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)
        for p, flag in zip(params, grads):
            p.requires_grad_(flag)


def lora_state_dict(model: nn.Module, state_dict: dict | None = None) -> dict[str, torch.Tensor]:
    """The LoRA weights under diffusers/peft names (``blocks.0.attn2.to_k.lora_A.weight``)."""
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(model, state_dict=state_dict)


def _prefix(model: nn.Module) -> str:
    return "unet" if "UNet" in type(model).__name__ else "transformer"


def save_lora(model: nn.Module, out_dir: str | os.PathLike, pipeline_class: str = "WanPipeline",
              state_dict: dict | None = None) -> str:
    """Write the LoRA as ``<Pipeline>.save_lora_weights`` does (with its peft config as adapter metadata)."""
    import diffusers

    pipe_cls = getattr(diffusers, pipeline_class, None)
    if pipe_cls is None or not hasattr(pipe_cls, "save_lora_weights"):
        raise ConfigError(f"pipeline_class={pipeline_class!r} is not a diffusers pipeline with LoRA support; "
                          "use e.g. WanPipeline")
    sd = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in lora_state_dict(model, state_dict).items()}
    prefix = _prefix(model)
    params = inspect.signature(pipe_cls.save_lora_weights).parameters
    kwargs = {f"{prefix}_lora_layers": sd}
    peft_config = getattr(model, "peft_config", {}).get("default")
    if peft_config is not None and f"{prefix}_lora_adapter_metadata" in params:
        kwargs[f"{prefix}_lora_adapter_metadata"] = peft_config.to_dict()
    os.makedirs(out_dir, exist_ok=True)
    pipe_cls.save_lora_weights(str(out_dir), **kwargs)
    return os.path.join(str(out_dir), LORA_WEIGHTS_NAME)


def load_lora(model: nn.Module, ckpt_dir: str | os.PathLike) -> None:
    """Load ``pytorch_lora_weights.safetensors`` from ``ckpt_dir`` into the model's existing adapter (resume)."""
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = os.path.join(str(ckpt_dir), LORA_WEIGHTS_NAME)
    if not os.path.isfile(path):
        raise VidalignError(f"{ckpt_dir}: no {LORA_WEIGHTS_NAME}; is this a LoRA checkpoint of this trainer?")
    prefix = _prefix(model) + "."
    sd = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in load_file(path).items()}
    result = set_peft_model_state_dict(model, sd, adapter_name="default")
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise VidalignError(f"{path}: {len(unexpected)} LoRA weights do not fit this model "
                            f"(e.g. {unexpected[0]}); resume with the same model and lora_target_modules")


def save_full(model: nn.Module, out_dir: str | os.PathLike, state_dict: dict | None = None) -> str:
    """A diffusers model folder (config + safetensors, sharded above 10 GB) loadable with ``from_pretrained``."""
    from huggingface_hub import save_torch_state_dict

    folder = os.path.join(str(out_dir), FULL_MODEL_DIR)
    os.makedirs(folder, exist_ok=True)
    model.save_config(folder)
    sd = state_dict if state_dict is not None else model.state_dict()
    def own(v: torch.Tensor) -> torch.Tensor:  # views into a shared buffer (FSDP's gathered dict) get their own
        v = v.detach().cpu().contiguous()
        return v.clone() if v.untyped_storage().nbytes() != v.numel() * v.element_size() else v

    save_torch_state_dict({k: own(v) for k, v in sd.items()}, folder,
                          filename_pattern="diffusion_pytorch_model{suffix}.safetensors", max_shard_size="10GB")
    return folder


def load_full(model: nn.Module, ckpt_dir: str | os.PathLike) -> None:
    """Load a :func:`save_full` folder into ``model`` in place (resume without LoRA)."""
    from safetensors.torch import load_file

    folder = os.path.join(str(ckpt_dir), FULL_MODEL_DIR)
    single = os.path.join(folder, "diffusion_pytorch_model.safetensors")
    index = single + ".index.json"
    if os.path.isfile(single):
        files = [single]
    elif os.path.isfile(index):
        with open(index, encoding="utf-8") as fh:
            files = [os.path.join(folder, f) for f in sorted(set(json.load(fh)["weight_map"].values()))]
    else:
        raise VidalignError(f"{ckpt_dir}: no {FULL_MODEL_DIR}/diffusion_pytorch_model.safetensors; "
                            "is this a full-model checkpoint of this trainer?")
    sd = {}
    for f in files:
        sd.update(load_file(f))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise VidalignError(f"{ckpt_dir}: checkpoint does not fit the model ({len(missing)} missing, "
                            f"{len(unexpected)} unexpected weights); resume with the same model")
