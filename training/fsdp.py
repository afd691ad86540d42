"""FSDP (PyTorch's ``fully_shard``, through accelerate) checkpoints in the trainers' diffusers format.

Saving needs nothing here: under FSDP with ``state_dict_type: FULL_STATE_DICT`` ``Trainer.save_model`` gathers the
full state dict and hands it to the trainer's ``_save``, which writes LoRA or ``transformer/`` files as without
FSDP. Resuming reads those files on every rank and scatters them into the sharded parameters
(:func:`load_full_state`). accelerate runs FSDP on accelerators only; on CPU the config refuses ``fsdp``.
"""

from __future__ import annotations

import json
import os

import torch
from torch import nn

from vidalign.errors import VidalignError
from vidalign.training.lora import FULL_MODEL_DIR, LORA_WEIGHTS_NAME


def checkpoint_state_dict(folder: str, use_lora: bool, prefix: str = "transformer",
                          adapter: str = "default") -> dict[str, torch.Tensor]:
    """The weights of a saved checkpoint under the model's own ``state_dict`` names (LoRA: peft's names with the
    adapter, e.g. ``blocks.0.attn2.to_k.lora_A.default.weight``)."""
    from safetensors.torch import load_file

    if use_lora:
        path = os.path.join(folder, LORA_WEIGHTS_NAME)
        if not os.path.isfile(path):
            raise VidalignError(f"{folder}: no {LORA_WEIGHTS_NAME}; is this a LoRA checkpoint of this trainer?")
        out = {}
        for k, v in load_file(path).items():
            k = k[len(prefix) + 1:] if k.startswith(prefix + ".") else k
            for part in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B"):
                k = k.replace(f".{part}.", f".{part}.{adapter}.")
            out[k] = v
        return out
    sub = os.path.join(folder, FULL_MODEL_DIR)
    single = os.path.join(sub, "diffusion_pytorch_model.safetensors")
    if os.path.isfile(single):
        return load_file(single)
    index = single + ".index.json"
    if not os.path.isfile(index):
        raise VidalignError(f"{folder}: no {FULL_MODEL_DIR}/diffusion_pytorch_model.safetensors; is this a "
                            "full-model checkpoint of this trainer?")
    with open(index, encoding="utf-8") as fh:
        files = sorted(set(json.load(fh)["weight_map"].values()))
    out = {}
    for f in files:
        out.update(load_file(os.path.join(sub, f)))
    return out


def load_sharded(model: nn.Module, folder: str, use_lora: bool, prefix: str = "transformer") -> None:
    """Load a checkpoint into an FSDP-sharded ``model`` (every rank reads the files; DCP scatters the shards)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    sd = checkpoint_state_dict(folder, use_lora, prefix)
    own = set(model.state_dict())
    unknown = sorted(set(sd) - own)
    if unknown:
        raise VidalignError(f"{folder}: {len(unknown)} weights do not fit the model (e.g. {unknown[0]}); resume "
                            "with the same model and LoRA targets")
    if not use_lora and own - set(sd):
        raise VidalignError(f"{folder}: the checkpoint lacks {len(own - set(sd))} weights of the model; resume "
                            "with the same model")
    set_model_state_dict(model, sd, options=StateDictOptions(full_state_dict=True, strict=False))


def load_full_state(trainer, model: nn.Module, folder: str) -> None:
    """``Trainer._load_from_checkpoint`` under FSDP: the trainer's diffusers-format files into the shards."""
    prefix = "unet" if "UNet" in type(model).__name__ else "transformer"
    load_sharded(model, folder, trainer.args.use_lora, prefix)
