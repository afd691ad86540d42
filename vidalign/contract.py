"""The contract between stages: what a builder writes and a trainer reads, defined once.

Every writer (builders, ``vidalign encode``) and every reader (the trainers, ``export``, eval) calls these names
and functions instead of spelling member names, fields or formulas themselves. The shard format itself (tar and
Parquet containers, member encodings) is :mod:`vidalign.format`; samples are read with the one shard reader,
:func:`vidalign.shards.iter_shard_samples` (sequential: paths, file objects, streams) or
:func:`vidalign.shards.index_tar` + :func:`vidalign.shards.read_indexed` (random access to a local tar).

**Training text.** A record's ``caption`` when it has a non-empty one, else its ``prompt``
(:func:`training_text`). ``prompt`` is what a person asked for (PISA: "A toy falls."); ``caption`` is what a model
is trained on where the two differ (PISA trains every clip on "a video of an object dropping":
``kubric-drop --caption constant``). ``vidalign encode`` embeds it, the reward trainer samples from it.

**Pair records** (``vidprom-pairs``, ``dsr-pairs`` pairs, ``videodpo-import``): members ``chosen.mp4`` /
``rejected.mp4`` (latents ``chosen_latents.npy`` / ``rejected_latents.npy``), json fields ``prompt``,
``chosen_score``, ``rejected_score``, ``gap`` (= chosen − rejected, null when unscored) and ``weight`` (the pair's
loss weight, 1.0 when not re-weighted), built by :func:`pair_record`.

**Latent samples** (``vidalign encode``): every video member ``X.mp4`` becomes ``X_latents.npy`` (+
``X_logvar.npy``), the bare ``mp4`` becomes ``latents.npy`` (:func:`latent_members`); the training text's
embedding ``prompt_embeds.npy`` ``[L, D]`` (float16, zero past the last token) and ``prompt_mask.npy`` ``[L]``;
the json gains a ``latents`` object recording the VAE and its normalisation (``latents_mean``/``latents_std`` or
``scaling_factor``, :func:`latent_norm`). Latents are stored raw; :func:`normalize_latents` maps them into the
transformer's space (Wan: ``(z − mean) / std``; others: ``z · scaling_factor``) for every consumer alike.

**Text embeddings.** :func:`encode_text` is the one Wan text embedding (Wan's prompt cleaning, padding to
``max_length``, encoder states zeroed past each prompt's end, as ``WanPipeline`` makes them), used by ``encode``,
validation videos and the reward trainer. The encoded empty caption (what caption dropout trains on: VideoDPO's
``uncond_type: empty_seq``; Wan's empty negative prompt) is stored once per latent dataset at its root,
``empty_prompt_embeds.npy`` (:data:`EMPTY_PROMPT_EMBEDS`, float16 ``[L, D]``), pushed with the dataset and read by
trainers from a local or remote root (:func:`empty_caption_embeds`).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vidalign.errors import ConfigError, InputError
from vidalign.format import EMPTY_PROMPT_EMBEDS

# ---------------------------------------------------------------------------------------------- training text
PROMPT = "prompt"
CAPTION = "caption"


def training_text(record: Mapping | None, where: str = "<sample>") -> str:
    """The text a model is trained on: ``caption`` when non-empty, else ``prompt`` (see the module docstring)."""
    if isinstance(record, Mapping):
        for field in (CAPTION, PROMPT):
            value = record.get(field)
            if isinstance(value, str) and value.strip():
                return value
    raise InputError(where, f"json.{PROMPT}", "no caption or prompt to train on",
                     "give every sample a json prompt (or caption)")


# ---------------------------------------------------------------------------------------------- pair records
CHOSEN, REJECTED = "chosen", "rejected"
CHOSEN_SCORE, REJECTED_SCORE, GAP, WEIGHT = "chosen_score", "rejected_score", "gap", "weight"
PAIR_FIELDS = (PROMPT, CHOSEN_SCORE, REJECTED_SCORE, GAP, WEIGHT)
PAIR_VIDEOS = (f"{CHOSEN}.mp4", f"{REJECTED}.mp4")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def pair_record(prompt: str, chosen_score: float | None = None, rejected_score: float | None = None,
                weight: float = 1.0, **extra: Any) -> dict[str, Any]:
    """The json of one preference pair: the contract's fields first, then the builder's own ``extra`` fields."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("<pair>", PROMPT, f"{prompt!r} is not a prompt", "give every pair its prompt")
    if not _finite(weight) or weight < 0:
        raise InputError("<pair>", WEIGHT, f"{weight!r} is not a finite weight >= 0", "check the weight formula")
    cs = float(chosen_score) if _finite(chosen_score) else None
    rs = float(rejected_score) if _finite(rejected_score) else None
    gap = cs - rs if cs is not None and rs is not None else None
    return {PROMPT: prompt, CHOSEN_SCORE: cs, REJECTED_SCORE: rs, GAP: gap, WEIGHT: float(weight), **extra}


def pair_weight(record: Mapping, key: str = WEIGHT, where: str = "<sample>") -> float:
    """A pair's loss weight (json ``key``, default :data:`WEIGHT`); a missing or bad value is a one-line error."""
    value = record.get(key) if isinstance(record, Mapping) else None
    if not _finite(value) or value < 0:
        raise InputError(where, f"json.{key}", "missing pair weight" if value is None else
                         f"{value!r} is not a weight >= 0", "set pair_weight_key: null, or build the pairs with "
                         "weights (vidprom-pairs, videodpo-import)")
    return float(value)


# ---------------------------------------------------------------------------------------------- latent samples
LATENTS_FIELD = "latents"  # the json object recording the VAE and its normalisation
PROMPT_EMBEDS = "prompt_embeds.npy"
PROMPT_MASK = "prompt_mask.npy"


def latent_members(video_member: str) -> tuple[str, str]:
    """``chosen.mp4`` (or ``chosen``) → (``chosen_latents.npy``, ``chosen_logvar.npy``); the bare ``mp4`` (or
    ``""``) → (``latents.npy``, ``logvar.npy``)."""
    stem = video_member.rsplit(".", 1)[0] if "." in video_member else video_member
    stem = "" if stem in ("", "mp4") else stem
    prefix = f"{stem}_" if stem else ""
    return f"{prefix}latents.npy", f"{prefix}logvar.npy"


def latents_member(video_member: str) -> str:
    """The latents member of a video member (:func:`latent_members`' first name)."""
    return latent_members(video_member)[0]


def latent_norm(vae: Any) -> dict[str, Any]:
    """A VAE's normalisation constants as the json's ``latents`` object records them (unset ones are None)."""
    cfg = vae.config
    get = cfg.get if hasattr(cfg, "get") else (lambda k: getattr(cfg, k, None))
    mean, std, scale = get("latents_mean"), get("latents_std"), get("scaling_factor")
    return {"latents_mean": [float(v) for v in mean] if mean is not None else None,
            "latents_std": [float(v) for v in std] if std is not None else None,
            "scaling_factor": float(scale) if scale is not None else None}


def latent_info(record: Mapping | None, where: str = "<sample>") -> dict:
    """The json's ``latents`` object; a sample without it was not written by ``vidalign encode``."""
    info = record.get(LATENTS_FIELD) if isinstance(record, Mapping) else None
    if not isinstance(info, Mapping):
        raise InputError(where, f"json.{LATENTS_FIELD}", "missing: the sample does not record its VAE "
                         "normalisation", "make latent shards with `vidalign encode`")
    return dict(info)


def _norm_arrays(z: Any, norm: Mapping, where: str):
    """(mean, std) shaped to broadcast over ``[..., C, T, h, w]`` (channels at axis -4), or (None, scale)."""
    if not isinstance(norm, Mapping):
        latent_info(None, where)  # raises: the sample does not record its normalisation
    mean, std = norm.get("latents_mean"), norm.get("latents_std")
    if mean is None or std is None:
        scale = norm.get("scaling_factor")
        return None, 1.0 if scale is None else float(scale)
    channels = z.shape[-4] if z.ndim >= 4 else z.shape[0]
    if len(mean) != channels or len(std) != channels:
        raise InputError(where, "json.latents.latents_mean", f"has {len(mean)} entries for {channels} latent "
                         "channels", "re-encode with the VAE that made these latents")
    shape = (-1,) + (1,) * (min(z.ndim, 4) - 1)
    try:
        import torch

        if isinstance(z, torch.Tensor):
            m = torch.tensor(mean, dtype=z.dtype, device=z.device).view(shape)
            return m, torch.tensor(std, dtype=z.dtype, device=z.device).view(shape)
    except ImportError:
        pass
    return np.asarray(mean, z.dtype).reshape(shape), np.asarray(std, z.dtype).reshape(shape)


def normalize_latents(z: Any, norm: Mapping, where: str = "<sample>") -> Any:
    """Raw VAE latents ``[..., C, T, h, w]`` → the transformer's space, as ``norm`` (the json's ``latents``
    object, or :func:`latent_norm` of a VAE) says: ``(z − mean) / std``, else ``z · scaling_factor`` (1 when unset).
    numpy arrays come back float32 (stored latents are float16); torch tensors keep their dtype and device."""
    if isinstance(z, np.ndarray) or not hasattr(z, "dtype"):
        z = np.asarray(z, dtype=np.float32)
    mean, std = _norm_arrays(z, norm, where)
    if mean is None:
        return z * (np.float32(std) if isinstance(z, np.ndarray) else std)
    return (z - mean) / std


def denormalize_latents(x: Any, norm: Mapping, where: str = "<sample>") -> Any:
    """Inverse of :func:`normalize_latents` (to decode with the VAE)."""
    if isinstance(x, np.ndarray) or not hasattr(x, "dtype"):
        x = np.asarray(x, dtype=np.float32)
    mean, std = _norm_arrays(x, norm, where)
    if mean is None:
        return x / (np.float32(std) if isinstance(x, np.ndarray) else std)
    return x * std + mean


# ---------------------------------------------------------------------------------------------- text embeddings
DEFAULT_MAX_LENGTH = 512  # Wan's umT5 context
ZEROS = "zeros"  # a dropped caption as zeros: VideoDPO's uncond_type "zero_embed"


def clean_prompt(text: str) -> str:
    """Wan's prompt cleaning (ftfy when installed, HTML unescape, whitespace), as ``WanPipeline`` applies it."""
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean

    return prompt_clean(text)


def encode_text(tokenizer: Any, text_encoder: Any, prompts: Sequence[str],
                max_length: int = DEFAULT_MAX_LENGTH) -> tuple[Any, Any]:
    """The Wan text embedding of ``prompts``: ``(embeds [B, L, D], mask [B, L] bool)``, ``L = max_length``.

    As ``WanPipeline._get_t5_prompt_embeds``: cleaned prompts, padded/truncated to ``max_length``, the encoder's
    last hidden states zeroed past each prompt's end. Runs without gradient on the encoder's device and dtype.
    """
    import torch

    if max_length < 1:
        raise ConfigError(f"max_length={max_length} is invalid: use a positive token count (Wan: 512)")
    batch = tokenizer([clean_prompt(p) for p in prompts], padding="max_length", max_length=max_length,
                      truncation=True, add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
    device = next(text_encoder.parameters()).device
    ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
    with torch.no_grad():
        hidden = text_encoder(ids, mask).last_hidden_state
    mask = mask.bool()
    return hidden * mask.unsqueeze(-1).to(hidden.dtype), mask


def empty_prompt_embeds_bytes(embeds: Any) -> bytes:
    """The stored form of the encoded empty caption: float16 ``[L, D]`` ``.npy`` (no pickle)."""
    arr = np.asarray(embeds.float().cpu().numpy() if hasattr(embeds, "cpu") else embeds, dtype=np.float32)
    if arr.ndim != 2 or not np.isfinite(arr).all():
        raise InputError(EMPTY_PROMPT_EMBEDS, None, f"expected finite embeddings [L, D], got shape {arr.shape}",
                         "encode the empty string with the prompts' text encoder")
    buf = io.BytesIO()
    np.save(buf, arr.astype(np.float16), allow_pickle=False)
    return buf.getvalue()


def write_empty_prompt_embeds(folder: str | os.PathLike, embeds: Any) -> Path:
    """Store ``embeds`` ``[L, D]`` (the encoded ``""``) at the dataset root ``folder``, atomically."""
    path = Path(folder) / EMPTY_PROMPT_EMBEDS
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(empty_prompt_embeds_bytes(embeds))
    os.replace(tmp, path)
    return path


def load_empty_prompt_embeds(data: bytes | str | os.PathLike, where: str | None = None) -> np.ndarray:
    """The stored embedding ``[L, D]`` as float32, from a ``.npy`` path or its bytes (never unpickled)."""
    where = where or (str(data) if not isinstance(data, (bytes, bytearray)) else EMPTY_PROMPT_EMBEDS)
    try:
        arr = np.load(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(where, None, f"not a readable .npy ({exc})", "re-run vidalign encode, or point "
                         "empty_prompt_embeds at the file it wrote") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 2:
        raise InputError(where, None, f"shape {getattr(arr, 'shape', None)} is not [L, D]",
                         "store the encoded empty caption [L, D]")
    return arr.astype(np.float32)


def empty_caption_embeds(setting: str | None, data: Any, caption_dropout: float) -> np.ndarray | None:
    """What a trainer substitutes for a dropped caption: the dataset's stored encoded ``""`` (``setting`` None;
    ``data`` is the training stream, whose root may be local or remote), a ``.npy`` path, or ``None`` for zeros
    (``setting == "zeros"``, or no dropout)."""
    if caption_dropout <= 0 or setting == ZEROS:
        return None
    if setting is not None:
        return load_empty_prompt_embeds(setting)
    read = getattr(data, "read_root_file", None)
    found = read(EMPTY_PROMPT_EMBEDS) if read is not None else None
    if found is None:
        where = getattr(data, "describe", lambda: repr(data))()
        raise ConfigError(f"caption_dropout={caption_dropout} trains dropped captions on the encoded empty prompt, "
                          f"but the training data ({where}) has no {EMPTY_PROMPT_EMBEDS} at its root: re-run "
                          "`vidalign encode --text-encoder ...` (it stores it), or set empty_prompt_embeds to a "
                          ".npy path or 'zeros'")
    return load_empty_prompt_embeds(found, f"{getattr(data, 'root', '')}/{EMPTY_PROMPT_EMBEDS}")


# ---------------------------------------------------------------------------------------------- sample access
def member(sample: Mapping, name: str) -> Any:
    """Member ``name`` of a sample, decoded: raw bytes (a stream read with ``decode=False``) are decoded here,
    lazily, so a trainer decodes only what it uses; media members stay bytes. Errors name the shard and sample."""
    from vidalign.errors import VidalignError
    from vidalign.format import decode_member

    value = sample[name]
    if not isinstance(value, (bytes, bytearray, memoryview)):
        return value
    try:
        return decode_member(name, bytes(value))
    except (VidalignError, ValueError, OSError, EOFError) as exc:  # name the shard and the sample, one line
        where = f"{sample.get('__url__', '<shard>')}: sample {sample.get('__key__')!r}"
        text = " ".join(str(exc).split()) if isinstance(exc, VidalignError) else \
            f"member {name!r} does not decode ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); rebuild " \
            "or re-download the shard"
        raise VidalignError(text if where in text else f"{where}: {text}") from None


def record(sample: Mapping) -> dict:
    """A sample's metadata record: its ``json`` (tar shards, Parquet shards read by vidalign), or the top-level
    fields of a row that has none (a ``datasets`` row of a Parquet config: columns without a dot)."""
    if "json" in sample:
        meta = member(sample, "json")
        return meta if isinstance(meta, dict) else {}
    return {k: v for k, v in sample.items() if isinstance(k, str) and "." not in k and not k.startswith("__")}


__all__ = [
    "PROMPT", "CAPTION", "training_text",
    "CHOSEN", "REJECTED", "CHOSEN_SCORE", "REJECTED_SCORE", "GAP", "WEIGHT", "PAIR_FIELDS", "PAIR_VIDEOS",
    "pair_record", "pair_weight",
    "LATENTS_FIELD", "PROMPT_EMBEDS", "PROMPT_MASK", "latent_members", "latents_member", "latent_norm", "latent_info",
    "normalize_latents", "denormalize_latents",
    "DEFAULT_MAX_LENGTH", "EMPTY_PROMPT_EMBEDS", "ZEROS", "clean_prompt", "encode_text", "empty_prompt_embeds_bytes",
    "write_empty_prompt_embeds", "load_empty_prompt_embeds", "empty_caption_embeds",
    "member", "record",
]
