"""The vidalign dataset format, defined once (version :data:`FORMAT_VERSION`).

A dataset folder is a valid Hugging Face Hub dataset repository::

    <dataset>/
    ├── README.md                      dataset card: YAML `configs:` (data files per config and split, one
    │                                  `default: true`, a build fingerprint), `dataset_info:` (features: columns
    │                                  with dtype and shape), license, task categories, one section per config
    ├── manifest.json                  format + package version, per config: builder, arguments, seeds, command,
    │                                  container, shards (samples, key range, sha256, bytes), rejected inputs
    ├── manifest.d/<config>/*.json     the manifest's journal: one record per shard finished since the manifest
    │                                  was last compacted (only while a build runs, or after one was killed)
    ├── manifest.parts/                only while a sliced build (--shard-index/--num-shards) is being merged
    ├── .vidalign/lock*.json           the build lock (only while a build runs, or after one was killed)
    ├── previews/                      optional PNG/GIF previews and plots shown in the card
    ├── empty_prompt_embeds.npy        latent datasets (``vidalign encode --text-encoder``): the encoded empty
    │                                  caption, float16 [L, D], what caption dropout trains on (ROOT_FILES)
    └── data/<config>/<split>-<shard:05d>-of-<total:05d>.<ext>
            .tar      WebDataset configs (media, dense arrays): every sample has the same members
                      <key>.json                  all metadata of the sample (as the builder wrote it)
                      <key>.<field>.txt|.json     top-level columns: copies of json fields people filter
                                                  and select on (prompt.txt, caption.txt, seed.json, ...)
                      <key>.<name>.<ext>          media and arrays: mp4, png, npy, npz, ...
                      <key>.<name>.<ext>.gz       the same, gzip-compressed (e.g. depth.npy.gz)
            .parquet  tabular configs (prompts, TRL rows, pairs of arrays): one row per sample, flat typed
                      columns: __key__, one column per top-level json field (prompt, chosen, ...), and one
                      column per other member, named like the member (chosen.npy: an array column)

All configs of one folder share one container (tar or parquet): ``datasets`` infers one loader per repository
from the first config's files, so a folder mixing both would fail to load one of them (huggingface/datasets#7101).

Column names are what ``datasets.load_dataset`` shows and the Hub viewer filters on. The WebDataset loader names
a column after the member's suffix and decodes by its last extension, so a string column is ``<field>.txt``
and any other JSON value (number, bool, list, null) ``<field>.json``; ``json`` keeps every field too, so
readers that take ``sample["json"]`` see the whole record. ``<member>.gz`` is decompressed by ``datasets``,
``webdataset`` (its ``gzfilter``) and vidalign; vidalign's readers return it under its name without ``.gz``.

Shards are written as ``<name>.<ext>.<attempt>.tmp`` (unique per attempt) and renamed when complete (on object
stores: uploaded whole, see :mod:`vidalign.storage`). Sample keys are deterministic:
``s<seed>-<index:08d>`` (no dots: WebDataset splits a member name at the first dot of its basename).

Member encodings (:func:`encode_member` / :func:`decode_member`), decoded safely by ``datasets``, ``webdataset``
(with :func:`decode_sample`) and vidalign, never with pickle:

- ``json``: UTF-8 JSON (numpy scalars and arrays converted to Python); ``*.txt``: UTF-8 text.
- ``*.npy``: ``numpy.save(allow_pickle=False)``; ``*.npz``: ``numpy.savez_compressed`` of a dict of arrays.
- ``*.mp4``, ``*.gif``, ``*.png``, ``*.jpg``: bytes as given (already encoded, see :mod:`vidalign.media`).
- ``*.gz``: gzip (mtime 0, so the same value always gives the same bytes) of the inner encoding. A gzipped
  ``.npy`` of three or more dims (a stack of frames: depth ``[T, H, W]``) is saved in Fortran order (the
  header's ``fortran_order: True``; same shape, dtype and values for every ``.npy`` reader): each pixel's frames
  are then adjacent, and gzip, whose window is 32 KB (a quarter of one 256² float16 frame), sees that a static
  background repeats from frame to frame (drop-clip depth: 10× smaller than C order). vidalign's readers
  return C-contiguous arrays.
- Pickle-capable members (:data:`PICKLE_EXTENSIONS`) are refused by the writers, ``vidalign verify`` and every
  reader, whatever a manifest says.

Format history: 1.0 — tar shards only, metadata in ``json`` only, raw ``.npy`` depth. 2.0 — Parquet configs,
column members, ``.gz`` members, card fingerprint. 2.1 — the manifest: a journal of per-shard records
(``manifest.d/``), the feature schema once per config (not per shard), input fingerprints (``inputs``); shards
are unchanged, except that gzipped ``.npy`` stacks are written in Fortran order (still plain ``.npy``: every
reader of 2.0 reads them). Readers accept all of them (:data:`READABLE_MAJORS`).
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from vidalign.errors import VidalignError

FORMAT_VERSION = "2.1"
READABLE_MAJORS = ("1", "2")
DATA_DIR = "data"
MANIFEST_NAME = "manifest.json"
MANIFEST_PARTS_DIR = "manifest.parts"
CARD_NAME = "README.md"
PREVIEWS_DIR = "previews"
EMPTY_PROMPT_EMBEDS = "empty_prompt_embeds.npy"
ROOT_FILES = (EMPTY_PROMPT_EMBEDS,)  # files at the root that belong to the data (pushed, streamed with it)
TMP_SUFFIX = ".tmp"
DEFAULT_SHARD_MB = 500.0

WEBDATASET, PARQUET = "webdataset", "parquet"
CONTAINER_EXT = {WEBDATASET: "tar", PARQUET: "parquet"}
KEY_COLUMN = "__key__"
SHARD_GLOBS = ("data/*/*.tar", "data/*/*.parquet")  # what a folder's shards match (e.g. for uploads)

SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_]+)-(?P<index>\d{5})-of-(?P<total>\d{5})\.(?P<ext>tar|parquet)$")
NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")
MEMBER_RE = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")

VIDEO_EXTENSIONS = ("mp4", "webm", "mov", "avi", "mkv")
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "gif", "webp")
BYTES_EXTENSIONS = VIDEO_EXTENSIONS + IMAGE_EXTENSIONS
# decoded by pickle (webdataset's .decode(): pyd/pickle/pkl) or torch.load (pth/pt/ckpt): code execution on read
PICKLE_EXTENSIONS = frozenset({"pyd", "pickle", "pkl", "pth", "pt", "ckpt"})
COLUMN_KINDS = ("txt", "json")  # <field>.txt: a string column; <field>.json: any other JSON value
GZIP_SUFFIX = ".gz"
TIME_FASTEST_MIN_NDIM = 3  # gzipped .npy members of this many dims or more are written in Fortran order
GZIP_LEVEL = 6


@dataclass(frozen=True)
class Layout:
    """How one config's samples are stored, declared by its builder (:meth:`vidalign.builder.Builder.layout`).

    ``container``: :data:`WEBDATASET` (tar) or :data:`PARQUET`. ``columns`` (tar only): json fields copied to
    top-level column members, named ``<field>.txt`` (strings) or ``<field>.json`` (other values). ``gzip``
    (tar only): members stored gzip-compressed as ``<member>.gz``.
    """

    container: str = WEBDATASET
    columns: tuple[str, ...] = ()
    gzip: tuple[str, ...] = ()

    def __post_init__(self):
        if self.container not in CONTAINER_EXT:
            raise VidalignError(f"Layout.container={self.container!r} is invalid: use {WEBDATASET!r} or {PARQUET!r}")
        for c in self.columns:
            column_field(c)
        if self.container == PARQUET and (self.columns or self.gzip):
            raise VidalignError("Layout: a parquet config has a column per json field and compresses every column "
                                "already; declare columns/gzip for webdataset configs only")
        for m in self.gzip:
            if m == "json" or m.endswith(GZIP_SUFFIX) or not MEMBER_RE.match(m):
                raise VidalignError(f"Layout.gzip: {m!r} is invalid; name a media or array member such as depth.npy")

    @property
    def ext(self) -> str:
        return CONTAINER_EXT[self.container]


def shard_name(split: str, index: int, total: int, ext: str = "tar") -> str:
    """``<split>-<index:05d>-of-<total:05d>.<ext>``."""
    return f"{split}-{index:05d}-of-{total:05d}.{ext}"


def shard_relpath(config: str, split: str, index: int, total: int, ext: str = "tar") -> str:
    """Path of a shard relative to the dataset folder (POSIX, as the card and manifest store it)."""
    return f"{DATA_DIR}/{config}/{shard_name(split, index, total, ext)}"


def split_glob(config: str, split: str, ext: str = "tar") -> str:
    """The card's ``data_files`` pattern for one config and split."""
    return f"{DATA_DIR}/{config}/{split}-*.{ext}"


def tmp_name(name: str, token: str) -> str:
    """The temporary name of one attempt at writing ``name``: ``<name>.<token>.tmp`` (unique per attempt, so two
    attempts — a retried task, a second build — never write the same file)."""
    return f"{name}.{token}{TMP_SUFFIX}"


def tmp_shard_of(name: str) -> str | None:
    """The shard a temporary file name belongs to (``x.tar.<token>.tmp`` or a 2.0 ``x.tar.tmp``), else None."""
    if not name.endswith(TMP_SUFFIX):
        return None
    base = name[: -len(TMP_SUFFIX)]
    for cand in (base, base.rsplit(".", 1)[0]):
        if SHARD_RE.match(cand):
            return cand
    return None


def container_of(path: str) -> str:
    """The container of a shard path, from its extension (``.parquet`` or ``.tar``)."""
    return PARQUET if str(path).lower().endswith(".parquet") else WEBDATASET


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


def is_pickle_member(member: str) -> bool:
    """A member any of whose extensions is pickle-capable (``x.pyd``, ``state.pth.gz``, a bare ``pkl``)."""
    return any(part.lower() in PICKLE_EXTENSIONS for part in member.split("."))


def check_safe_member(member: str, source: str = "<shard>") -> str:
    """Refuse pickle-capable members: loading them runs code (:data:`PICKLE_EXTENSIONS`)."""
    if is_pickle_member(member):
        raise VidalignError(f"{source}: member {member!r} is pickle-capable (.{'/.'.join(sorted(PICKLE_EXTENSIONS))})"
                            " and is refused: loading it can run code; store arrays as .npy/.npz and metadata as "
                            "json")
    return member


def split_member(name: str) -> tuple[str, str]:
    """``'dir/s0-00000007.chosen.mp4'`` → (``'dir/s0-00000007'``, ``'chosen.mp4'``), as WebDataset does."""
    slash = name.rfind("/")
    dot = name.find(".", slash + 1)
    if dot < 0:
        return name, ""
    return name[:dot], name[dot + 1:]


def logical_member(member: str) -> str:
    """The name vidalign's readers give a member: ``depth.npy.gz`` → ``depth.npy``."""
    return member[: -len(GZIP_SUFFIX)] if member.endswith(GZIP_SUFFIX) else member


# -- column members -------------------------------------------------------------------------------------------
def column_field(column: str) -> str:
    """``'prompt.txt'`` → ``'prompt'``; refuses names that are not ``<field>.txt`` / ``<field>.json``."""
    field, _, kind = column.partition(".")
    if not NAME_RE.match(field) or kind not in COLUMN_KINDS:
        raise VidalignError(f"column {column!r} is invalid: name it <field>.txt (a string field) or <field>.json "
                            "(a number, bool, list or null), with letters, digits and underscores in <field>")
    return field


def column_members(meta: Any, columns: tuple[str, ...], where: str) -> dict[str, Any]:
    """The column members of one sample: each declared ``<field>.<kind>`` → the json field's value."""
    if not columns:
        return {}
    if not isinstance(meta, dict):
        raise VidalignError(f"{where}: columns {list(columns)} are declared but the sample has no json object")
    out = {}
    for column in columns:
        field = column_field(column)
        if field not in meta:
            raise VidalignError(f"{where}: json field {field!r} is missing, but column {column!r} is declared; "
                                "every sample needs it (store null and declare it as <field>.json if it may lack)")
        value = meta[field]
        if column.endswith(".txt") and not isinstance(value, str):
            raise VidalignError(f"{where}: json field {field!r} is {value!r}, not a string; declare the column as "
                                f"{field}.json")
        out[column] = value
    return out


# -- encodings --------------------------------------------------------------------------------------------------
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


def gzip_bytes(data: bytes, level: int = GZIP_LEVEL) -> bytes:
    """gzip with mtime 0 and no file name: the same bytes always compress to the same bytes."""
    return gzip.compress(data, compresslevel=level, mtime=0)


def gunzip_bytes(data: bytes, member: str = "<member>", limit: int | None = None) -> bytes:
    """Decompress a gzip member, refusing one that inflates past ``limit`` bytes (a gzip bomb) before it does."""
    from vidalign.inputs import max_member_bytes

    limit = max_member_bytes() if limit is None else limit
    try:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = d.decompress(data, limit + 1)
        if len(out) > limit:
            raise VidalignError(f"member {member!r}: decompresses to more than {limit:,} bytes; refusing it (raise "
                                "$VIDALIGN_MAX_MEMBER_BYTES if it is genuine)")
        if not d.eof:
            raise EOFError("compressed data ends before the end-of-stream marker")
        return out
    except (OSError, EOFError, zlib.error) as exc:
        raise VidalignError(f"member {member!r}: not valid gzip data ({exc}); rebuild or re-download the shard") \
            from exc


def encode_member(member: str, value: Any) -> bytes:
    """Encode one member value by its extension (see the module docstring)."""
    check_safe_member(member, "writer")
    if member.endswith(GZIP_SUFFIX):
        inner = logical_member(member)
        if member_extension(inner) == "npy" and not isinstance(value, (bytes, bytearray)):
            arr = np.asarray(value)
            if arr.ndim >= TIME_FASTEST_MIN_NDIM and arr.dtype != object:
                value = np.asfortranarray(arr)  # frames of one pixel adjacent: see the module docstring
        return gzip_bytes(value if isinstance(value, (bytes, bytearray)) and
                          member_extension(inner) in BYTES_EXTENSIONS else encode_member(inner, value))
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


def decode_member(member: str, data: bytes, where: str | None = None) -> Any:
    """Inverse of :func:`encode_member`; arrays are loaded with ``allow_pickle=False`` after their header is
    checked (:func:`vidalign.inputs.npy_header`: no allocation larger than the bytes present); pickle-capable
    members are refused, never loaded. Errors name ``where`` (shard and key) and the member."""
    from vidalign.inputs import load_npy, load_npz

    src = f"{where}: member {member!r}" if where else f"member {member!r}"
    check_safe_member(member, where or "reader")
    if member.endswith(GZIP_SUFFIX):
        try:
            raw = gunzip_bytes(data, member)
        except VidalignError as exc:
            raise VidalignError(f"{where}: {exc}" if where else str(exc)) from None
        return decode_member(logical_member(member), raw, where)
    ext = member_extension(member)
    if ext == "json":
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise VidalignError(f"{src}: not valid JSON ({exc}); rebuild or re-download the shard") from None
    if ext == "npy":
        arr = load_npy(data, src)
        return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)  # gzipped stacks: Fortran order
    if ext == "npz":
        return load_npz(data, src)
    if ext == "txt":
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise VidalignError(f"{src}: not UTF-8 text ({exc.reason} at byte {exc.start}); rebuild the shard") \
                from None
    return data


def decode_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """Decode a raw WebDataset sample safely (for ``webdataset.WebDataset(urls).map(decode_sample)``).

    Unlike webdataset's ``.decode()``, which unpickles ``.pyd``/``.pickle`` members, this refuses them; members
    keep their names (``depth.npy.gz`` is decompressed and decoded, under its own name, as ``datasets`` does).
    """
    out = {}
    for k, v in sample.items():
        if k.startswith("__"):
            out[k] = v.decode("utf-8") if isinstance(v, bytes) else v
    where = f"{out.get('__url__', '<shard>')}: sample {out.get('__key__')!r}"
    for k, v in sample.items():
        if not k.startswith("__"):
            out[k] = decode_member(k, bytes(v), where) if isinstance(v, (bytes, bytearray, memoryview)) else v
    return out
