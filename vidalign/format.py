"""The vidalign dataset format, defined once (version :data:`FORMAT_VERSION`).

A dataset folder is a valid Hugging Face Hub dataset repository::

    <dataset>/
    ├── README.md                      dataset card: YAML `configs:` (data files per config and split),
    │                                  `dataset_info:` (features: arrays with dtype and shape), how it was built
    ├── manifest.json                  format + package version, per config: builder, arguments, seeds, command,
    │                                  shards (samples, key range, sha256, bytes), rejected inputs with reasons
    ├── manifest.parts/                only while a sliced build (--shard-index/--num-shards) is being merged
    ├── previews/                      optional PNG/GIF previews and plots shown in the card
    └── data/<config>/<split>-<shard:05d>-of-<total:05d>.tar
                                       WebDataset shards: every sample has the same members
                                       `<key>.json` (metadata) + `<key>.<member>` (mp4, npy, npz, png, ...)

Shards are written as ``<name>.tar.tmp`` and renamed when complete. Sample keys are deterministic:
``s<seed>-<index:08d>`` (no dots: WebDataset splits a member name at the first dot of its basename).

Member encodings (:func:`encode_member` / :func:`decode_member`), chosen so that ``datasets``' WebDataset
loader decodes them safely (no pickle):

- ``json``: UTF-8 JSON (numpy scalars and arrays converted to Python).
- ``*.npy``: ``numpy.save(allow_pickle=False)``; ``*.npz``: ``numpy.savez_compressed`` of a dict of arrays.
- ``*.mp4``, ``*.gif``, ``*.png``, ``*.jpg``: bytes as given (already encoded, see :mod:`vidalign.media`).
- ``*.txt``: UTF-8 text.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from vidalign.errors import VidalignError

FORMAT_VERSION = "1.0"
DATA_DIR = "data"
MANIFEST_NAME = "manifest.json"
MANIFEST_PARTS_DIR = "manifest.parts"
CARD_NAME = "README.md"
PREVIEWS_DIR = "previews"
TMP_SUFFIX = ".tmp"
DEFAULT_SHARD_MB = 500.0

SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<index>\d{5})-of-(?P<total>\d{5})\.tar$")
NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")
MEMBER_RE = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")

VIDEO_EXTENSIONS = ("mp4", "webm", "mov", "avi", "mkv")
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "gif", "webp")
BYTES_EXTENSIONS = VIDEO_EXTENSIONS + IMAGE_EXTENSIONS


def shard_name(split: str, index: int, total: int) -> str:
    """``<split>-<index:05d>-of-<total:05d>.tar``."""
    return f"{split}-{index:05d}-of-{total:05d}.tar"


def shard_relpath(config: str, split: str, index: int, total: int) -> str:
    """Path of a shard relative to the dataset folder (POSIX, as the card and manifest store it)."""
    return f"{DATA_DIR}/{config}/{shard_name(split, index, total)}"


def split_glob(config: str, split: str) -> str:
    """The card's ``data_files`` pattern for one config and split."""
    return f"{DATA_DIR}/{config}/{split}-*.tar"


def sample_key(seed: int, index: int) -> str:
    """Deterministic sample key from the builder's seed and the sample's index."""
    return f"s{int(seed)}-{int(index):08d}"


def check_name(kind: str, name: str) -> str:
    """Config and split names become paths and YAML keys: letters, digits and underscores only."""
    if not NAME_RE.match(name or ""):
        raise VidalignError(f"{kind} name {name!r} is invalid: use letters, digits and underscores only")
    return name


def safe_member_path(name: str, source: str = "<tar>") -> str:
    """Guard a tar member path: relative, no ``..``, no absolute paths (never extract outside a folder)."""
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or name.startswith(("/", "\\")) or "\\" in name:
        raise VidalignError(f"{source}: unsafe tar member path {name!r}; refusing to read this archive")
    return name


def split_member(name: str) -> tuple[str, str]:
    """``'dir/s0-00000007.chosen.mp4'`` → (``'dir/s0-00000007'``, ``'chosen.mp4'``), as WebDataset does."""
    slash = name.rfind("/")
    dot = name.find(".", slash + 1)
    if dot < 0:
        return name, ""
    return name[:dot], name[dot + 1:]


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if hasattr(o, "__fspath__"):
        return str(o)
    raise TypeError(f"object of type {type(o).__name__} is not JSON serialisable")


def dumps_json(obj: Any, **kw: Any) -> str:
    """JSON with numpy support; NaN is refused so that every loader can read it."""
    return json.dumps(obj, default=_json_default, allow_nan=False, **kw)


def member_extension(member: str) -> str:
    return member.rsplit(".", 1)[-1].lower()


def encode_member(member: str, value: Any) -> bytes:
    """Encode one member value by its extension (see the module docstring)."""
    ext = member_extension(member)
    if ext == "json":
        return dumps_json(value, sort_keys=False).encode("utf-8")
    if ext == "npy":
        arr = np.asarray(value)
        if arr.dtype == object:
            raise VidalignError(f"member {member!r}: object arrays cannot be stored; use a numeric dtype")
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        return buf.getvalue()
    if ext == "npz":
        if not isinstance(value, dict):
            raise VidalignError(f"member {member!r}: an .npz member takes a dict of arrays, got {type(value).__name__}")
        buf = io.BytesIO()
        np.savez_compressed(buf, **{k: np.asarray(v) for k, v in value.items()})
        return buf.getvalue()
    if ext == "txt":
        return str(value).encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise VidalignError(f"member {member!r}: expected encoded bytes for .{ext}, got {type(value).__name__}")


def decode_member(member: str, data: bytes) -> Any:
    """Inverse of :func:`encode_member`; arrays are loaded with ``allow_pickle=False``."""
    ext = member_extension(member)
    if ext == "json":
        return json.loads(data)
    if ext == "npy":
        return np.load(io.BytesIO(data), allow_pickle=False)
    if ext == "npz":
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    if ext == "txt":
        return data.decode("utf-8")
    return data
