"""VAE latents and prompt embeddings: the pure encode core behind ``vidalign encode``.

Why store the latent distribution's mean and log-variance instead of one sample: a trainer can then draw
a fresh sample each epoch (or use the mean) without re-encoding the video, and the encode is deterministic.
Latents are kept in the VAE's *raw* space; the json records the normalisation constants so every consumer
normalises the same way. Member names, normalisation and the text embedding are the stages' contract,
:mod:`vidalign.contract` (:func:`~vidalign.contract.latent_members`, :func:`~vidalign.contract.normalize_latents`,
:func:`~vidalign.contract.encode_text`).

Everything here is loaded with ``from_pretrained`` from a Hub id or a local folder: a pipeline folder
(``model_index.json`` with ``vae/``, ``text_encoder/``, ``tokenizer/``) or a single-model folder.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from vidalign import contract as C
from vidalign.contract import DEFAULT_MAX_LENGTH  # noqa: F401  (re-exported: encode's default)
from vidalign.errors import ConfigError, InputError, require

DTYPE_NAMES = ("bf16", "fp16", "fp32")
DEFAULT_VAE = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
FLOAT16_MAX = float(np.finfo(np.float16).max)


def torch_dtype(name: str) -> Any:
    """``bf16``/``fp16``/``fp32`` (or the torch names) → ``torch.dtype``."""
    import torch

    table = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
             "fp32": torch.float32, "float32": torch.float32}
    require(name in table, "--dtype", "dtype", name, f"choose one of {', '.join(DTYPE_NAMES)}")
    return table[name]


def dtype_kwargs(dtype: Any) -> dict[str, Any]:
    """``{"dtype": ...}`` for diffusers that renamed ``torch_dtype`` (2026), ``{"torch_dtype": ...}`` before."""
    from diffusers.utils import deprecation_utils

    renamed = hasattr(deprecation_utils, "_TORCH_DTYPE_DEPRECATION_MESSAGE")
    return {"dtype": dtype} if renamed else {"torch_dtype": dtype}


def is_local(id_or_path: str) -> bool:
    """A Hub id is ``name`` or ``owner/name``; anything else (or anything that exists) is a local path."""
    s = str(id_or_path)
    return os.path.exists(s) or s.startswith(("/", ".", "~")) or s.count("/") > 1 or "\\" in s


def resolve_model(option: str, id_or_path: str, subfolder: str | None, component: str) -> tuple[str, str | None]:
    """``(id_or_path, subfolder)`` of ``component`` (``vae``, ``text_encoder``, ...).

    ``subfolder="auto"``: a local folder with ``config.json`` is the model itself, one with
    ``<component>/config.json`` is a pipeline; a Hub id is taken to be a pipeline repository (the common
    case: ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``), pass ``--subfolder ''`` for a model repository.
    A local path that does not exist is a :class:`ConfigError` here, before any network look-up.
    """
    path = os.path.expanduser(str(id_or_path))
    if is_local(path):
        p = Path(path)
        if not p.is_dir():
            raise ConfigError(f"{option} {id_or_path}: no such directory; give a diffusers model or pipeline "
                              "folder, or a Hub id like Wan-AI/Wan2.1-T2V-1.3B-Diffusers")
        if subfolder == "auto":
            if (p / "config.json").is_file():
                return path, None
            if (p / component / "config.json").is_file():
                return path, component
            raise ConfigError(f"{option} {id_or_path}: neither config.json nor {component}/config.json found; "
                              f"point it at a diffusers {component} folder or a pipeline folder")
        sub = subfolder or None
        cfg = p / (sub or "") / "config.json"
        if not cfg.is_file():
            raise ConfigError(f"{option} {id_or_path} (subfolder {sub!r}): {cfg} not found; fix --subfolder")
        return path, sub
    return path, (component if subfolder == "auto" else (subfolder or None))


def _load_error(option: str, id_or_path: str, exc: BaseException) -> ConfigError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return ConfigError(f"{option} {id_or_path}: could not load ({type(exc).__name__}: {first}); check the id, "
                       "--subfolder and --revision, or download the model and pass its folder")


def load_vae(id_or_path: str = DEFAULT_VAE, subfolder: str | None = "auto", dtype: str = "bf16",
             revision: str | None = None, vae_class: str | None = None, device: str = "cpu") -> Any:
    """Any diffusers video autoencoder, its class read from its ``config.json`` (``_class_name``)."""
    import diffusers

    path, sub = resolve_model("--vae", id_or_path, subfolder, "vae")
    try:
        if vae_class is None:
            config = diffusers.AutoencoderKLWan.load_config(path, subfolder=sub, revision=revision)
            vae_class = config.get("_class_name", "AutoencoderKLWan")
        cls = getattr(diffusers, str(vae_class), None)
        if cls is None or not str(vae_class).startswith("Autoencoder"):
            raise ConfigError(f"--vae {id_or_path}: class {vae_class!r} is not a diffusers autoencoder; "
                              "pass --vae-class AutoencoderKLWan (or another Autoencoder* class)")
        vae = cls.from_pretrained(path, subfolder=sub, revision=revision, **dtype_kwargs(torch_dtype(dtype)))
    except ConfigError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise _load_error("--vae", id_or_path, exc) from exc
    vae.eval().requires_grad_(False)
    return vae.to(device)


def configure_vae(vae: Any, tiling: bool = False, slicing: bool = False) -> Any:
    """Turn on tiled (less memory at high resolution) and sliced (one clip at a time) encoding."""
    if tiling:
        if not hasattr(vae, "enable_tiling"):
            raise ConfigError(f"--tiling: {type(vae).__name__} has no tiled mode; drop --tiling")
        vae.enable_tiling()
    if slicing and hasattr(vae, "use_slicing"):
        vae.use_slicing = True
    return vae


def vae_meta(vae: Any, id_or_path: str, revision: str | None = None) -> dict[str, Any]:
    """The VAE part of the json's ``latents`` object."""
    return {"vae": str(id_or_path), "revision": revision, "vae_class": type(vae).__name__, **C.latent_norm(vae)}


def sample_seed(base_seed: int, key: str, member: str) -> int:
    """Seed of one stored latent sample: a hash of (base seed, sample key, member), so order does not matter."""
    digest = hashlib.blake2b(f"{int(base_seed)}/{key}/{member}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def encode_videos(vae: Any, videos: Any, sample_seeds: list[int] | None = None) -> tuple[Any, Any]:
    """Encode ``[B, 3, T, H, W]`` frames → ``(mean, logvar)`` float32 on the CPU.

    Frames are floats in [-1, 1], or uint8 (0..255), which are moved to the VAE's device first and normalised
    there (a quarter of the bytes to copy). With ``sample_seeds`` (one per clip) it returns ``(sample, None)``:
    ``mean + std * noise`` with the noise drawn from a CPU generator per clip, so a seed gives the same sample
    on any device and batch size.
    """
    import torch

    from vidalign.preprocessing.video_io import normalize

    param = next(vae.parameters())
    with torch.inference_mode():
        x = torch.as_tensor(videos)
        if x.dtype == torch.uint8:
            x = normalize(x, param.dtype, param.device)
        else:
            x = x.to(device=param.device, dtype=param.dtype)
        dist = vae.encode(x).latent_dist
        mean, logvar = dist.mean.float().cpu(), dist.logvar.float().cpu()
    if sample_seeds is None:
        return mean, logvar
    require(len(sample_seeds) == mean.shape[0], "encode_videos", "sample_seeds", len(sample_seeds),
            f"give one seed per clip ({mean.shape[0]})")
    noise = torch.stack([torch.randn(mean.shape[1:], generator=torch.Generator().manual_seed(int(s)))
                         for s in sample_seeds])
    return mean + torch.exp(0.5 * logvar) * noise, None


def load_text_encoder(id_or_path: str = DEFAULT_VAE, subfolder: str | None = "auto", dtype: str = "bf16",
                      revision: str | None = None, device: str = "cpu") -> tuple[Any, Any]:
    """``(tokenizer, text_encoder)`` from a pipeline folder/repo (``tokenizer/``, ``text_encoder/``) or a model
    folder holding both; the model class comes from ``config.json``'s ``architectures`` (umT5 for Wan)."""
    import transformers

    path, sub = resolve_model("--text-encoder", id_or_path, subfolder, "text_encoder")
    tok_sub = "tokenizer" if sub == "text_encoder" else sub
    try:
        config = transformers.AutoConfig.from_pretrained(path, subfolder=sub or "", revision=revision)
        arch = (getattr(config, "architectures", None) or ["UMT5EncoderModel"])[0]
        cls = getattr(transformers, arch, None)
        if cls is None:
            raise ConfigError(f"--text-encoder {id_or_path}: architecture {arch!r} is not in transformers; "
                              "point it at an encoder model such as UMT5EncoderModel or T5EncoderModel")
        model = cls.from_pretrained(path, subfolder=sub or "", revision=revision, dtype=torch_dtype(dtype))
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, subfolder=tok_sub or "", revision=revision)
    except ConfigError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise _load_error("--text-encoder", id_or_path, exc) from exc
    model.eval().requires_grad_(False)
    return tokenizer, model.to(device)


def to_float16(array: Any, source: str, member: str) -> np.ndarray:
    """float16 copy of a latent array; values beyond float16's range are an :class:`InputError`, not inf."""
    import torch

    arr = array.float().numpy() if isinstance(array, torch.Tensor) else np.asarray(array, np.float32)
    peak = float(np.abs(arr).max()) if arr.size else 0.0
    if not math.isfinite(peak) or peak > FLOAT16_MAX:
        raise InputError(source, member, f"latent values reach {peak:g}, beyond float16",
                         "check the VAE and its input range ([-1, 1])")
    return arr.astype(np.float16)


def decode_latents(vae: Any, latents: Any) -> np.ndarray:
    """Raw latents ``[C, T', h, w]`` (as stored) → uint8 frames ``[T, H, W, 3]``, for a person to look at."""
    import torch

    from vidalign.preprocessing.video_io import to_uint8

    param = next(vae.parameters())
    z = torch.as_tensor(np.asarray(latents, dtype=np.float32))[None].to(device=param.device, dtype=param.dtype)
    with torch.inference_mode():
        video = vae.decode(z).sample[0]
    return to_uint8(video)
