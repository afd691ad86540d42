"""Reading vidalign datasets: ``stream`` (training), ``load`` (Hugging Face ``datasets``) and ``collate``.

``stream`` returns the one :class:`ShardStream` of :mod:`vidalign.streaming` (every trainer reads through it): a
``torch.utils.data.IterableDataset`` over a dataset anywhere — a local folder, a Hub id (``org/name``), an fsspec
URL (``https://``, ``s3://``, ``gs://``), ``pipe:`` commands, a shard list, a ``datasets`` dataset — split by node
and DataLoader worker (every sample once per pass), shuffled (shard order and a sample buffer, seeded) and
resumable to the sample through a :class:`StreamState`.

``load`` formats rows with the ``"vidalign"`` formatter: ``datasets``' numpy formatter, except that array
columns nested in lists or structs (a mask ``[V, N, H, W]`` with a varying ``N`` is ``List(Array3D)``, which
``datasets`` walks element by element) are read straight from Arrow: one flatten per level and one copy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vidalign.errors import VidalignError
from vidalign.format import MANIFEST_NAME, SHARD_RE, check_safe_member
from vidalign.shards import shard_paths  # noqa: F401  (re-exported: vidalign.data.shard_paths)
from vidalign.streaming import ShardStream, StreamState, stream  # noqa: F401  (the one stream)
from vidalign.videodecode import torchcodec_available, torchcodec_missing  # noqa: F401  (re-exported)


def load(folder: str | os.PathLike, config: str | None = None, split: str | None = None, streaming: bool = False,
         video_decode: bool | None = None):
    """``datasets.load_dataset`` on a vidalign folder, formatted so arrays keep their declared dtype and shape.

    Video members use ``datasets.Video`` (torchcodec) when it is importable; otherwise they are returned as
    ``{"bytes", "path"}`` for :mod:`vidalign.preprocessing.video_io` (``video_decode`` forces either way).
    Rows come through the ``"vidalign"`` formatter (see the module docstring): arrays keep their stored dtype
    and nested array columns (masks) load without a per-element walk. Folders with pickle-capable members are
    refused.
    """
    import datasets

    folder = Path(folder)
    if not (folder / MANIFEST_NAME).exists() and not (folder / "README.md").exists():
        raise VidalignError(f"{folder}: not a dataset folder (no manifest.json or README.md)")
    _refuse_pickle_members(folder)
    _refuse_duplicate_keys(folder)
    # datasets keys its cache of a local folder on the card's YAML, not on the path or the shard contents, so
    # two builds with the same card would share (stale) Arrow files: key ours on path + shard checksums
    kw = {} if streaming else {"cache_dir": _cache_dir(folder)}
    if video_decode and not torchcodec_available():  # asked to decode: fail before preparing anything
        raise torchcodec_missing()
    try:
        ds = datasets.load_dataset(str(folder), config, split=split, streaming=streaming, **kw)
    except (VidalignError, KeyboardInterrupt):
        raise
    except Exception as exc:  # datasets names neither shard nor key: find the member it tripped on
        from vidalign.shards import find_bad_member

        try:
            paths = shard_paths(folder, config, split or "train")
        except VidalignError:
            raise exc from None
        bad = find_bad_member(paths)
        if bad is None:
            raise
        raise VidalignError(f"{bad} (datasets.load_dataset failed: {type(exc).__name__})") from exc
    if video_decode is None:
        video_decode = torchcodec_available()
    if not video_decode:
        ds = _undecode_videos(ds)
    if not streaming:
        # dtype=None: keep the stored dtype (datasets' numpy formatter casts floats to float32, ints to int64)
        return ds.with_format(FORMAT_TYPE, dtype=None)
    # streaming: datasets' IterableDataset formatter takes no dtype, so floats arrive as float32 and ints as
    # int64 (lossless); `restore_dtypes(example, ds.features)` casts back to the declared dtypes
    return ds.with_format("numpy")


def restore_dtypes(example: dict, features) -> dict:
    """Cast a numpy-formatted example's arrays back to the dtypes its features declare (e.g. float16 depth)."""
    import datasets
    import numpy as np

    def dtype_of(feat):
        if isinstance(feat, (datasets.Array2D, datasets.Array3D, datasets.Array4D, datasets.Array5D)):
            return feat.dtype
        if isinstance(feat, datasets.List):
            return dtype_of(feat.feature)
        if isinstance(feat, datasets.Value) and feat.dtype not in ("string", "binary", "large_string"):
            return feat.dtype
        return None

    def cast(value, feat):
        if isinstance(feat, dict) and isinstance(value, dict):
            return {k: cast(v, feat[k]) if k in feat else v for k, v in value.items()}
        dt = dtype_of(feat)
        if dt is not None and isinstance(value, np.ndarray) and value.dtype != object:
            return value.astype(dt, copy=False)
        return value

    return {k: cast(v, features[k]) if features is not None and k in features else v for k, v in example.items()}


def _cache_dir(folder: Path) -> str:
    import hashlib
    import json

    from datasets import config as ds_config

    try:
        m = json.loads((folder / MANIFEST_NAME).read_text())
        shas = sorted(r["sha256"] for e in m["configs"].values() for r in e["shards"].values())
    except (OSError, ValueError, KeyError):
        shas = sorted(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in folder.rglob("*")
                      if SHARD_RE.match(p.name))
    digest = hashlib.sha256(json.dumps([str(folder.resolve()), shas]).encode()).hexdigest()[:20]
    return str(Path(ds_config.HF_DATASETS_CACHE) / "vidalign" / digest)


def _undecode_videos(ds):
    import datasets

    def fix(d):
        feats = d.features
        if feats is None:
            return d
        for name, feat in feats.items():
            if isinstance(feat, datasets.Video):
                d = d.cast_column(name, datasets.Video(decode=False))
        return d

    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        return type(ds)({k: fix(v) for k, v in ds.items()})
    return fix(ds)


def _refuse_duplicate_keys(folder: Path) -> None:
    """Two shards of a config whose key ranges overlap hold the same keys (a mixed or copied build): refuse the
    folder, naming both (the manifest's key ranges make this a check of the manifest only)."""
    from vidalign import manifest as mf

    if not (folder / MANIFEST_NAME).exists():
        return
    for config, entry in mf.load(folder)["configs"].items():
        ranges = sorted((rel.rsplit("/", 1)[-1].split("-")[0], r["first_key"], r["last_key"], rel)
                        for rel, r in entry["shards"].items() if r.get("first_key") and r.get("last_key"))
        for (sa, a0, a1, ra), (sb, b0, b1, rb) in zip(ranges, ranges[1:]):
            if sa == sb and b0 <= a1 and a0.split("-")[0] == b0.split("-")[0]:
                raise VidalignError(f"{folder}: shards {ra} and {rb} of config {config!r} overlap in sample keys "
                                    f"({b0}..{min(a1, b1)}): duplicate keys; rebuild the config (--overwrite)")


def _refuse_pickle_members(folder: Path) -> None:
    """Refuse a folder whose manifest lists a pickle-capable member (``datasets`` would hand its bytes to code
    that may unpickle them); without a manifest, the first sample of each shard folder is looked at."""
    import json

    try:
        m = json.loads((folder / MANIFEST_NAME).read_text())
        for entry in m.get("configs", {}).values():
            for rel, rec in entry.get("shards", {}).items():
                for member in rec.get("members", []):
                    check_safe_member(member, f"{folder}/{rel}")
        return
    except (OSError, ValueError, AttributeError):
        pass
    from vidalign.shards import iter_shard_samples

    for shard in sorted(p for p in folder.rglob("*") if SHARD_RE.match(p.name)):
        next(iter_shard_samples(shard, decode=False), None)  # refuses pickle-capable members by name


# -- the "vidalign" formatter ----------------------------------------------------------------------------------
FORMAT_TYPE = "vidalign"


def _leaf_array(arr):
    """Arrow nested lists (``ArrayND`` storage included) of a numeric leaf → ndarray of one rectangular row, or
    ``None`` when the column is not such an array (ragged rows, strings, structs inside)."""
    import numpy as np
    import pyarrow as pa

    shape = []
    cur = arr
    while True:
        if isinstance(cur.type, pa.ExtensionType):
            cur = cur.storage
            continue
        if pa.types.is_list(cur.type) or pa.types.is_large_list(cur.type) or pa.types.is_fixed_size_list(cur.type):
            if cur.null_count:
                return None
            lengths = np.asarray(cur.value_lengths())
            if len(lengths) and (lengths != lengths[0]).any():
                return None
            shape.append(int(lengths[0]) if len(lengths) else 0)
            cur = cur.flatten()
            continue
        break
    if not (pa.types.is_integer(cur.type) or pa.types.is_floating(cur.type) or pa.types.is_boolean(cur.type)) \
            or cur.null_count or len(shape) < 2:
        return None
    return cur.to_numpy(zero_copy_only=False).reshape(shape)


def _nested_arrays(pa_type) -> bool:
    """A column worth the fast path: a list (of lists ...) of ``ArrayND``, or a struct holding one."""
    import pyarrow as pa

    if isinstance(pa_type, pa.ExtensionType):
        return False  # a top-level ArrayND: datasets reads it fast already
    if pa.types.is_struct(pa_type):
        return any(_nested_arrays(pa_type.field(i).type) or isinstance(pa_type.field(i).type, pa.ExtensionType)
                   for i in range(pa_type.num_fields))
    depth, t = 0, pa_type
    while pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t) or \
            isinstance(t, pa.ExtensionType):
        t = t.storage_type if isinstance(t, pa.ExtensionType) else t.value_type
        depth += 1
    return depth >= 2 and (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t))


def _fast_value(arr, fallback):
    """One row (a length-1 Arrow array) of a nested array column, or ``fallback()`` when it is not rectangular."""
    import pyarrow as pa

    if pa.types.is_struct(arr.type):
        out = {}
        for i, child in enumerate(arr.flatten()):
            name = arr.type.field(i).name
            v = _leaf_array(child) if _nested_arrays(child.type) or isinstance(child.type, pa.ExtensionType) \
                else None
            out[name] = v
        if any(v is None for v in out.values()):
            full = fallback()
            return {k: (full[k] if v is None else v) for k, v in out.items()}
        return out
    v = _leaf_array(arr)
    return fallback() if v is None else v


def _make_formatter():
    from datasets.formatting import NumpyFormatter

    class VidalignFormatter(NumpyFormatter):
        """numpy rows, with nested array columns read straight from Arrow (see :mod:`vidalign.data`)."""

        def format_row(self, pa_table):
            fast = [c for c in pa_table.column_names if _nested_arrays(pa_table.schema.field(c).type)]
            if not fast:
                return super().format_row(pa_table)
            rest = pa_table.drop_columns(fast)
            row = dict(super().format_row(rest)) if rest.num_columns else {}
            for c in fast:
                col = pa_table.column(c).combine_chunks()
                row[c] = _fast_value(col, lambda c=c: super(VidalignFormatter, self).format_row(
                    pa_table.select([c]))[c])
            return {c: row[c] for c in pa_table.column_names}

        def format_batch(self, pa_table):
            fast = [c for c in pa_table.column_names if _nested_arrays(pa_table.schema.field(c).type)]
            if not fast:
                return super().format_batch(pa_table)
            rest = pa_table.drop_columns(fast)
            batch = dict(super().format_batch(rest)) if rest.num_columns else {}
            for c in fast:
                rows = [self.format_row(pa_table.select([c]).slice(i, 1))[c] for i in range(pa_table.num_rows)]
                batch[c] = self._consolidate(rows)  # one stacked array, or an object array (ragged, dicts)
            return {c: batch[c] for c in pa_table.column_names}

    return VidalignFormatter


def _register_formatter() -> None:
    # datasets has no public registry; this is how it registers its own formatters (datasets.formatting)
    from datasets import formatting

    if FORMAT_TYPE not in formatting._FORMAT_TYPES:
        formatting._register_formatter(_make_formatter(), FORMAT_TYPE)


try:
    _register_formatter()
except ImportError:  # datasets is a dependency; pure streaming use works without it
    pass


# -- collate ------------------------------------------------------------------------------------------------------
def collate(examples: list[dict], pad_value: Any = 0, as_tensors: bool = True) -> dict:
    """Batch a list of samples/rows (``DataLoader(collate_fn=vidalign.data.collate)``).

    Arrays of equal shape are stacked; arrays of equal rank but different shapes (masks ``[V, N, H, W]`` with a
    varying object count ``N``) are padded with ``pad_value`` (False for bool) to the largest size of each dim,
    and ``<name>.shape`` gives each example's own shape (int64 ``[B, rank]``) so padding can be masked out.
    Dicts (json, npz members) are collated field by field; everything else becomes a list. ``as_tensors``:
    torch tensors (when torch is installed) instead of numpy arrays.
    """
    import numpy as np

    if not examples:
        return {}
    out: dict = {}
    for key in examples[0]:
        values = [e.get(key) for e in examples]
        if all(isinstance(v, dict) for v in values):
            out[key] = collate(values, pad_value, as_tensors)
            continue
        arrs = [np.asarray(v) if isinstance(v, (np.ndarray, np.generic, bool, int, float)) and
                not isinstance(v, str) else None for v in values]
        if any(a is None for a in arrs) or len({a.ndim for a in arrs}) != 1 or \
                len({a.dtype for a in arrs}) != 1:
            out[key] = values
            continue
        shapes = np.array([a.shape for a in arrs], dtype=np.int64).reshape(len(arrs), -1)
        if (shapes == shapes[0]).all():
            batch = np.stack(arrs)
        else:
            top = shapes.max(axis=0)
            batch = np.full((len(arrs), *top), pad_value, dtype=arrs[0].dtype)
            for i, a in enumerate(arrs):
                batch[(i, *[slice(0, d) for d in a.shape])] = a
            out[f"{key}.shape"] = _tensor(shapes, as_tensors)
        out[key] = _tensor(batch, as_tensors)
    return out


def _tensor(a, as_tensors: bool):
    if not as_tensors:
        return a
    try:
        import torch
    except ImportError:
        return a
    return torch.from_numpy(a)
