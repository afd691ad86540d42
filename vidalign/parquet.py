"""Parquet shards: tabular configs as flat, typed columns (see :mod:`vidalign.format` for the layout).

A sample (``{"json": {...}, "chosen.npy": array, "chosen.mp4": bytes}``, as builders write it for any container)
becomes one row: ``__key__``, one column per top-level json field, and one column per other member, named like
the member. Arrays are nested lists (the storage of ``datasets``' ``ArrayND``, declared in the card, so they load
with dtype and shape); media are ``{"bytes", "path"}`` structs (``datasets.Video``/``Image``); strings, numbers,
lists and dicts keep their Arrow types. :func:`iter_parquet_samples` turns rows back into samples, so every
reader sees the same sample from a tar or a Parquet shard.

:class:`ParquetShardWriter` has :class:`~vidalign.shards.ShardWriter`'s contract: ``<shard>.parquet.tmp``,
renamed on close, sha256 and size in the returned :class:`~vidalign.shards.ShardRecord`, the same bytes for the
same rows (zstd, no timestamps).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vidalign import features as feats
from vidalign.errors import VidalignError
from vidalign.format import (
    BYTES_EXTENSIONS,
    KEY_COLUMN,
    MEMBER_RE,
    check_safe_member,
    member_extension,
    tmp_name,
)
from vidalign.storage import attempt_token, write_error

ROW_GROUP_BYTES = 64 << 20  # a row group is cut at this size (estimated) ...
ROW_GROUP_ROWS = 100_000  # ... or this many rows (the Hub viewer reads whole row groups: keep them small)
COMPRESSION = "zstd"
_MEMBER_EXTENSIONS = ("npy", "txt", "json") + BYTES_EXTENSIONS


def _pa():
    import pyarrow as pa

    return pa


def arrays_to_arrow(arrays: list[np.ndarray]):
    """Equal-rank arrays → one nested ``list<...<list<dtype>>>`` Arrow array (one list level per dim), built
    from the flat values and offsets: no per-element Python work."""
    pa = _pa()
    flat = np.concatenate([np.ascontiguousarray(a).reshape(-1) for a in arrays]) if arrays else np.zeros(0)
    out = pa.array(flat)
    ndim = arrays[0].ndim if arrays else 1
    for j in reversed(range(ndim)):
        lengths = np.concatenate([np.full(int(np.prod(a.shape[:j], dtype=np.int64)), a.shape[j], np.int64)
                                  for a in arrays])
        offsets = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if offsets[-1] >= 2 ** 31:
            raise VidalignError("an array column exceeds 2^31 values in one row group; write fewer samples per "
                                "shard (--samples-per-shard)")
        out = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), out)
    return out


def arrow_to_array(column, row: int, dtype: str | None = None) -> np.ndarray:
    """Row ``row`` of a nested-list column → the ndarray it stores (rectangular by construction): one slice, one
    flatten per level, one ``to_numpy``."""
    pa = _pa()
    cur = column.slice(row, 1)
    shape = []
    while pa.types.is_list(cur.type) or pa.types.is_large_list(cur.type) or pa.types.is_fixed_size_list(cur.type):
        lengths = np.asarray(cur.value_lengths().fill_null(0))
        if len(lengths) and (lengths != lengths[0]).any():
            raise VidalignError("a stored array is ragged (its rows differ in length); the shard is corrupt")
        shape.append(int(lengths[0]) if len(lengths) else 0)
        cur = cur.flatten()
    arr = cur.to_numpy(zero_copy_only=False)
    if dtype is not None and arr.dtype != np.dtype(dtype):
        arr = arr.astype(dtype)
    return arr.reshape(shape)


class ParquetShardWriter:
    """Write samples to one Parquet shard, atomically (same interface as :class:`~vidalign.shards.ShardWriter`)."""

    def __init__(self, root: str | os.PathLike, relpath: str, summarize: bool = True, fsync: bool = False):
        self.root = Path(root)
        self.relpath = relpath
        self.path = self.root / relpath
        self.tmp = self.path.with_name(tmp_name(self.path.name, attempt_token()))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._summarize, self._fsync = summarize, fsync
        self._members: list[str] | None = None
        self._member_set: set[str] = set()
        self._other: list[str] = []
        self._extra: dict[str, list] = {}
        self._fields: set | None = None
        self._keys: set[str] = set()
        self._key_list: list[str] = []
        self._metas: list[dict] = []
        self._rows_bytes = 0
        self._groups: list = []
        self._seen: set = set()
        self.schema: dict[str, dict] = {}
        self.count = 0
        self.first_key: str | None = None
        self.last_key: str | None = None
        self.record = None
        self._t0 = time.perf_counter()

    def write(self, key: str, sample: dict[str, Any]) -> None:
        """Add one sample: its json fields and other members become the row's columns."""
        if key in self._keys or not key or "." in key or "/" in key:
            if key in self._keys:
                raise VidalignError(f"{self.relpath}: duplicate sample key {key!r}")
            raise VidalignError(f"sample key {key!r} is invalid: keys must be non-empty without '.' or '/'")
        if self._members is None:
            self._first(key, sample)
        elif sample.keys() != self._member_set:
            members = sorted(sample, key=lambda m: (m != "json", m))
            raise VidalignError(f"{self.relpath}: sample {key!r} has members {members}, the shard's first sample had "
                                f"{self._members}; every sample must have the same members")
        meta = sample.get("json", {})
        if not isinstance(meta, dict):
            raise VidalignError(f"{self.relpath}: sample {key!r}: json must be an object to become columns, got "
                                f"{type(meta).__name__}")
        if meta.keys() != self._fields:  # rows usually repeat their fields: check a new field list once
            self._check_fields(key, meta)
        self._metas.append(meta)
        for m in self._other:
            self._extra[m].append(self._column_value(key, m, sample[m]))
        self._key_list.append(key)
        self._keys.add(key)
        self.count += 1
        self.first_key = self.first_key or key
        self.last_key = key
        if len(self._metas) >= ROW_GROUP_ROWS or self._rows_bytes >= ROW_GROUP_BYTES:
            self._flush()

    def _first(self, key: str, sample: dict[str, Any]) -> None:
        where = f"{self.relpath}: sample {key!r}"
        members = sorted(sample, key=lambda m: (m != "json", m))
        for m in members:
            check_safe_member(m, where)
            if not MEMBER_RE.match(m) or (m != "json" and member_extension(m) not in _MEMBER_EXTENSIONS) \
                    or m.endswith(".gz"):
                raise VidalignError(f"{where}: member {m!r} cannot be a Parquet column; tabular configs take "
                                    f"json plus .npy/.txt/.json/media members ({', '.join(_MEMBER_EXTENSIONS)})")
        self._members, self._member_set = members, set(members)
        self._other = [m for m in members if m != "json"]
        self._extra = {m: [] for m in self._other}

    def _check_fields(self, key: str, meta: dict) -> None:
        where = f"{self.relpath}: sample {key!r}"
        if self._fields is not None:
            diff = sorted(set(meta) ^ self._fields)
            raise VidalignError(f"{where}: json fields differ from the shard's first row (field {diff[0]!r}); every row "
                                "of a tabular config needs the same fields (store null for a missing value)")
        clash = sorted(set(meta) & (set(self._members or ()) | {KEY_COLUMN}))
        if clash:
            raise VidalignError(f"{where}: json field {clash[0]!r} has the name of a column of its own; rename it")
        bad = [f for f in meta if not isinstance(f, str) or "." in f or not f]
        if bad:
            raise VidalignError(f"{where}: json field {bad[0]!r} cannot be a column name (no dots); rename it")
        self._fields = set(meta)

    def _column_value(self, key: str, m: str, v: Any) -> Any:
        ext = member_extension(m)
        if ext == "npy":
            v = np.asarray(v)
            if v.dtype == object:
                raise VidalignError(f"{self.relpath}: sample {key!r}: member {m!r}: object arrays cannot be stored; "
                                    "use a numeric dtype")
            self._rows_bytes += v.nbytes
        elif ext in BYTES_EXTENSIONS:
            if not isinstance(v, (bytes, bytearray, memoryview)):
                raise VidalignError(f"{self.relpath}: sample {key!r}: member {m!r}: expected encoded bytes, got "
                                    f"{type(v).__name__}")
            self._rows_bytes += len(v)
            if self._summarize:
                self._update_schema(m, v)
            return {"bytes": bytes(v), "path": f"{key}.{m}"}
        elif ext == "txt":
            v = str(v)
        if self._summarize:
            self._update_schema(m, v)
        return v

    def _update_schema(self, member: str, value: Any) -> None:
        # json fields are summarised once, from the shard's Arrow schema (close); other members per sample
        if member_extension(member) not in ("npy",):
            if member in self._seen:
                return
            self._seen.add(member)
        self.schema[member] = feats.merge(self.schema.get(member), feats.summarize(member, value), member)

    def _json_summary(self, schema) -> dict | None:
        from datasets import Features

        names = [n for n in schema.names if n != KEY_COLUMN and n not in (self._members or ())]
        if not names:
            return None
        return {"kind": "json", "features": Features.from_arrow_schema(pa_select(schema, names))._to_yaml_list()}

    def _flush(self) -> None:
        if not self._metas:
            return
        pa = _pa()
        from datasets.features.features import cast_to_python_objects

        try:
            table = pa.Table.from_pylist(self._metas)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):  # numpy values nested in the json
            table = pa.Table.from_pylist(cast_to_python_objects(self._metas, only_1d_for_numpy=True))
        if not table.num_columns:
            table = pa.table({KEY_COLUMN: pa.array(self._key_list, pa.string())})
        else:
            table = table.add_column(0, KEY_COLUMN, pa.array(self._key_list, pa.string()))
        for m in self._other:
            values = self._extra[m]
            if member_extension(m) == "npy":
                if len({v.ndim for v in values}) != 1:
                    raise VidalignError(f"{self.relpath}: member {m!r} changes rank between samples; every sample of "
                                        "a config must store the same array type")
                col = arrays_to_arrow(values) if values[0].ndim else pa.array([v.item() for v in values])
            else:
                try:
                    col = pa.array(values)
                except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
                    col = pa.array(cast_to_python_objects(values, only_1d_for_numpy=True))
            table = table.append_column(m, col)
            self._extra[m] = []
        self._groups.append(table)
        self._metas, self._key_list, self._rows_bytes = [], [], 0

    def close(self, **extra: Any):
        """Write the row groups (one schema for all: null-only columns take the type other groups have), fsync
        on request, rename into place and return the :class:`~vidalign.shards.ShardRecord`."""
        from vidalign.shards import ShardRecord, sha256_file

        if self.record is not None:
            return self.record
        pa = _pa()
        import pyarrow.parquet as pq

        self._flush()
        try:
            # a shard whose every input was rejected has no row group at all (datasets skips it; a 0-row group
            # would make its reader fail) and only the key column
            schema = pa.unify_schemas([g.schema for g in self._groups], promote_options="permissive") \
                if self._groups else pa.schema([(KEY_COLUMN, pa.string())])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise VidalignError(f"{self.relpath}: samples disagree on a field type ({exc}); every sample of a "
                                "config must store the same types") from exc
        schema = schema.with_metadata(None)
        kw = {"compression": COMPRESSION, "write_statistics": True}
        try:
            with pq.ParquetWriter(self.tmp, schema, **kw) as w:
                for g in self._groups:
                    w.write_table(g.select(schema.names).cast(schema), row_group_size=max(1, g.num_rows))
            if self._fsync:
                with open(self.tmp, "rb") as f:
                    os.fsync(f.fileno())
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.abort()
            raise write_error(exc, self.tmp, "shard") from None
        self._groups = []
        if self._summarize and "json" in (self._members or ()):
            js = self._json_summary(schema)
            if js is not None:
                self.schema = {"json": js, **{k: v for k, v in self.schema.items() if k != "json"}}
        self.record = ShardRecord(
            path=self.relpath, samples=self.count, bytes=self.path.stat().st_size, sha256=sha256_file(self.path),
            first_key=self.first_key, last_key=self.last_key, members=list(self._members or []),
            schema=self.schema, seconds=round(time.perf_counter() - self._t0, 4), **extra,
        )
        return self.record

    def abort(self) -> None:
        self._metas, self._groups = [], []
        try:
            self.tmp.unlink(missing_ok=True)
        except OSError:
            pass

    def __enter__(self) -> ParquetShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def pa_select(schema, names: list[str]):
    """The sub-schema of ``names``, in that order."""
    pa = _pa()
    return pa.schema([schema.field(n) for n in names])


def _open(path_or_fileobj, name: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path_or_fileobj)
    except (OSError, pa.ArrowException) as exc:
        raise VidalignError(f"{name}: Parquet shard is unreadable ({exc}); rebuild or re-download it") from exc


def count_rows(path: str | os.PathLike) -> int:
    """Rows of a Parquet shard, from its footer (nothing else is read)."""
    return _open(path, str(path)).metadata.num_rows


def iter_parquet_samples(path_or_fileobj, decode: bool = True, members: set[str] | None = None,
                         source: str | None = None, batch_rows: int = 256) -> Iterator[dict[str, Any]]:
    """Rows of a Parquet shard as samples: ``{"__key__", "__url__", "json": {fields}, member: value}``.

    Columns named like a member (with a dot: ``chosen.npy``, ``chosen.mp4``) come back as that member (arrays as
    ndarrays, media as bytes); the other columns form ``json``. ``members`` reads only the columns needed.
    Pickle-capable column names are refused. ``decode`` has no effect: Parquet values are typed already.
    """
    import pyarrow as pa

    name = source or str(path_or_fileobj)
    pf = _open(path_or_fileobj, name)
    names = pf.schema_arrow.names
    for n in names:
        check_safe_member(n, name)
    if KEY_COLUMN not in names:
        raise VidalignError(f"{name}: no {KEY_COLUMN} column; not a vidalign Parquet shard")
    member_cols = [n for n in names if "." in n]
    json_cols = [n for n in names if "." not in n and n != KEY_COLUMN]
    want_json = members is None or "json" in members
    cols = [KEY_COLUMN] + (json_cols if want_json else []) + \
        [m for m in member_cols if members is None or m in members]
    seen: set[str] = set()
    try:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=cols, use_threads=False):
            keys = batch.column(KEY_COLUMN).to_pylist()
            for key in keys:
                if not isinstance(key, str) or key in seen:
                    raise VidalignError(f"{name}: {'duplicate' if key in seen else 'invalid'} sample key {key!r}; "
                                        "rebuild the shard")
                seen.add(key)
            meta = pa.Table.from_batches([batch.select(json_cols)]).to_pylist() \
                if want_json and json_cols else None
            extra = {}
            for m in cols:
                if "." not in m:
                    continue
                col = batch.column(m)
                ext = member_extension(m)
                if ext == "npy":
                    extra[m] = []
                    for i in range(len(col)):
                        try:
                            extra[m].append(arrow_to_array(col, i) if pa.types.is_list(col.type)
                                            else np.asarray(col[i].as_py()))
                        except VidalignError as exc:
                            raise VidalignError(f"{name}: sample {keys[i]!r}: member {m!r}: {exc}") from None
                elif ext in BYTES_EXTENSIONS and pa.types.is_struct(col.type):
                    extra[m] = [None if v is None else v["bytes"] for v in col.to_pylist()]
                else:
                    extra[m] = col.to_pylist()
            for i, key in enumerate(keys):
                s: dict[str, Any] = {"__key__": key, "__url__": name}
                if meta is not None:
                    s["json"] = meta[i]
                elif want_json:
                    s["json"] = {}
                for m, vals in extra.items():
                    s[m] = vals[i]
                yield s
    except (OSError, pa.ArrowException) as exc:
        raise VidalignError(f"{name}: Parquet shard is unreadable ({exc}); rebuild or re-download it") from exc


__all__ = ["ParquetShardWriter", "iter_parquet_samples", "count_rows", "arrays_to_arrow", "arrow_to_array"]
