"""The empty caption's text embedding, stored once per latent dataset and read by the trainers.

Caption dropout trains a sample unconditioned. VideoDPO's released code (``lvdm/models/ddpm3d.py``,
``uncond_type: empty_seq``) replaces the caption by ``""`` *before* the text encoder, so the model sees the encoded
empty string, not zeros; Wan's pipeline encodes its empty negative prompt the same way. ``vidalign encode``
therefore encodes ``""`` with the very function, tokenizer, length and dtype it uses for the prompts and writes it
here, beside ``manifest.json``::

    <dataset>/empty_prompt_embeds.npy     float16 [L, D], L = the prompts' max_length (zero past the end token)

This module is the one place that names the file, writes it and finds it for a training run.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np

from vidalign.errors import InputError

EMPTY_PROMPT_EMBEDS = "empty_prompt_embeds.npy"
ZEROS = "zeros"  # the explicit alternative: VideoDPO's uncond_type "zero_embed"
_MAX_LEVELS = 4  # from a shard up to its dataset root: data/<config>/<split>-….tar


def write_empty_prompt_embeds(folder: str | os.PathLike, embeds) -> Path:
    """Store ``embeds`` ``[L, D]`` (the encoded ``""``) as float16 in ``folder``, atomically."""
    arr = np.asarray(embeds, dtype=np.float32)
    if arr.ndim != 2 or not np.isfinite(arr).all():
        raise InputError(folder, EMPTY_PROMPT_EMBEDS, f"expected finite embeddings [L, D], got shape {arr.shape}",
                         "encode the empty string with the prompts' text encoder")
    path = Path(folder) / EMPTY_PROMPT_EMBEDS
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, arr.astype(np.float16), allow_pickle=False)
    os.replace(tmp, path)
    return path


def load_empty_prompt_embeds(path: str | os.PathLike) -> np.ndarray:
    """The stored embedding ``[L, D]`` as float32 (never unpickled)."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(path, None, f"not a readable .npy ({exc})", "re-run vidalign encode, or point "
                         "empty_prompt_embeds at the file it wrote") from None
    if arr.ndim != 2:
        raise InputError(path, None, f"shape {arr.shape} is not [L, D]", "store the encoded empty caption [L, D]")
    return arr.astype(np.float32)


def find_empty_prompt_embeds(train_data: str | os.PathLike | None) -> Path | None:
    """The dataset's stored empty-caption embedding for a training source (a dataset folder, a shard, or a glob or
    ``{a..b}`` pattern of shards): the file at the dataset root, found from the first shard upward."""
    if train_data is None:
        return None
    text = str(train_data)
    start = Path(text)
    if not start.exists():
        hits = sorted(glob.glob(text.split("{", 1)[0] + "*")) if "{" in text else sorted(glob.glob(text))
        if not hits:
            return None
        start = Path(hits[0])
    folder = start if start.is_dir() else start.parent
    for _ in range(_MAX_LEVELS):
        if (folder / EMPTY_PROMPT_EMBEDS).is_file():
            return folder / EMPTY_PROMPT_EMBEDS
        if folder.parent == folder:
            break
        folder = folder.parent
    return None


def empty_caption_embeds(setting: str | None, train_data, caption_dropout: float) -> np.ndarray | None:
    """What a trainer substitutes for a dropped caption: the stored encoded ``""`` (``setting`` None: found with
    the training data; or a ``.npy`` path), or ``None`` for zeros (``setting == "zeros"``, or no dropout)."""
    from vidalign.errors import ConfigError

    if caption_dropout <= 0 or setting == ZEROS:
        return None
    if setting is not None:
        return load_empty_prompt_embeds(setting)
    found = find_empty_prompt_embeds(train_data) if isinstance(train_data, (str, os.PathLike)) else None
    if found is None:
        raise ConfigError(f"caption_dropout={caption_dropout} trains dropped captions on the encoded empty prompt, "
                          f"but the training data {train_data!r} has no {EMPTY_PROMPT_EMBEDS}: re-run `vidalign "
                          "encode --text-encoder ...` (it stores it), or set empty_prompt_embeds to a .npy path or "
                          "'zeros'")
    return load_empty_prompt_embeds(found)
