"""Writing and reading shards (see :mod:`vidalign.format` for the layout).

:class:`ShardWriter` writes ``<shard>.tar.tmp``, hashing as it goes, and renames it to ``<shard>.tar`` only when
:meth:`ShardWriter.close` is reached: a killed build never leaves a shard that looks complete. Tar headers are
normalised (mtime 0, uid/gid 0, mode 644) so the same samples always give the same bytes and sha256. Parquet
shards (:mod:`vidalign.parquet`) follow the same contract; :func:`open_writer` picks the writer by extension and
:func:`iter_shard_samples` is the one reader of both.

Readers return samples as builders wrote them: ``{"__key__", "__url__", member: value}``, with ``json`` the
whole metadata record; a ``<member>.gz`` comes back decompressed as ``<member>``.
"""

from __future__ import annotations

import glob
import hashlib
import os
import tarfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vidalign import features as feats
from vidalign.errors import VidalignError
from vidalign.format import (
    DATA_DIR,
    GZIP_SUFFIX,
    MEMBER_RE,
    PARQUET,
    Layout,
    check_safe_member,
    column_members,
    container_of,
    decode_member,
    encode_member,
    gunzip_bytes,
    logical_member,
    member_extension,
    safe_member_path,
    split_member,
    tmp_name,
)
from vidalign.inputs import max_member_bytes
from vidalign.storage import attempt_token, write_error


class _HashingFile:
    """Write-through file wrapper computing sha256 and size on a background thread, in write order.

    hashlib releases the GIL on large buffers, so hashing overlaps the file writes and the encoding of the next
    sample; the digest is ready when :meth:`digest` joins the thread.
    """

    def __init__(self, f):
        import queue
        import threading

        self.f, self.h, self.n = f, hashlib.sha256(), 0
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while (b := self._q.get()) is not None:
            self.h.update(b)

    def tell(self) -> int:
        return self.n

    def write(self, b) -> int:
        self._q.put(b)
        self.n += len(b)
        return self.f.write(b)

    def digest(self) -> str:
        self._q.put(None)
        self._t.join()
        return self.h.hexdigest()


@dataclass
class ShardRecord:
    """What the manifest stores about one finished shard."""

    path: str  # relative to the dataset folder
    samples: int
    bytes: int
    sha256: str
    first_key: str | None
    last_key: str | None
    members: list[str]
    schema: dict[str, dict] = field(default_factory=dict)
    rejected: list[dict] = field(default_factory=list)
    seed: int | None = None
    start: int | None = None
    stop: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ShardRecord:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class ShardWriter:
    """Write samples to one tar shard, atomically.

    >>> with ShardWriter(root, "data/train/train-00000-of-00001.tar") as w:  # doctest: +SKIP
    ...     w.write("s0-00000000", {"json": {"prompt": "A red mug falls."}, "mp4": mp4_bytes})
    >>> w.record.sha256  # doctest: +SKIP

    Every sample must have the same member names (the WebDataset loader of ``datasets`` requires it);
    ``json`` is written first so streaming readers see metadata before media. ``layout`` adds the declared
    column members (copies of json fields) and gzip-compresses the declared members (``<member>.gz``).
    """

    def __init__(self, root: str | os.PathLike, relpath: str, summarize: bool = True, fsync: bool = False,
                 layout: Layout | None = None):
        self.layout = layout or Layout()
        self.root = Path(root)
        self.relpath = relpath
        self.path = self.root / relpath
        self.tmp = self.path.with_name(tmp_name(self.path.name, attempt_token()))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.tmp, "wb")
        except OSError as exc:
            raise write_error(exc, self.tmp, "shard") from None
        self._hash = _HashingFile(self._file)
        self._fsync = fsync
        self._members: list[str] | None = None
        self._keys: set[str] = set()
        self._summarize = summarize
        self.schema: dict[str, dict] = {}
        self._seen: set = set()
        self.count = 0
        self.first_key: str | None = None
        self.last_key: str | None = None
        self.record: ShardRecord | None = None
        self._t0 = time.perf_counter()

    def _add(self, name: str, parts: list) -> None:
        # the header tarfile would write (GNU format), then the data parts (bytes or zero-copy views of an array)
        size = sum(len(p) for p in parts)
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode, info.uid, info.gid = size, 0, 0o644, 0, 0
        info.uname = info.gname = ""
        self._hash.write(info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape"))
        for p in parts:
            self._hash.write(p)
        pad = -size % tarfile.BLOCKSIZE
        if pad:
            self._hash.write(tarfile.NUL * pad)

    def _end_tar(self) -> None:
        """End-of-archive blocks and record padding, exactly as ``tarfile`` closes an archive."""
        self._hash.write(tarfile.NUL * (tarfile.BLOCKSIZE * 2))
        pad = -self._hash.n % tarfile.RECORDSIZE
        if pad:
            self._hash.write(tarfile.NUL * pad)

    def write(self, key: str, sample: dict[str, Any]) -> None:
        """Encode and append one sample; ``sample`` maps member names (``json``, ``mp4``, ``mask.npz``...) to values."""
        if not key or "." in key or "/" in key:
            raise VidalignError(f"sample key {key!r} is invalid: keys must be non-empty without '.' or '/'")
        if key in self._keys:
            raise VidalignError(f"{self.relpath}: duplicate sample key {key!r}")
        sample = self._physical(key, sample)
        members = sorted(sample, key=lambda m: (m != "json", m))
        if self._members is None:
            bad = [m for m in members if not MEMBER_RE.match(m)]
            if bad:
                raise VidalignError(f"member names {bad} are invalid: use letters, digits, '_' and '.' only")
            self._members = members
        elif members != self._members:
            raise VidalignError(
                f"{self.relpath}: sample {key!r} has members {members}, the shard's first sample had "
                f"{self._members}; every sample must have the same members"
            )
        for m in members:
            try:
                self._add(f"{key}.{m}", encode_parts(m, sample[m]))
            except OSError as exc:
                self.abort()
                raise write_error(exc, self.tmp, "shard") from None
            if self._summarize:
                self._update_schema(m, sample[m])
        self._keys.add(key)
        self.count += 1
        self.first_key = self.first_key or key
        self.last_key = key

    def _physical(self, key: str, sample: dict[str, Any]) -> dict[str, Any]:
        """The members as stored: declared columns added, declared members renamed ``<member>.gz``."""
        where = f"{self.relpath}: sample {key!r}"
        for m in sample:
            check_safe_member(m, where)
        lay = self.layout
        if not lay.columns and not lay.gzip:
            return sample
        out = {(m + GZIP_SUFFIX if m in lay.gzip else m): v for m, v in sample.items()}
        out.update(column_members(sample.get("json"), lay.columns, where))
        return out

    def _update_schema(self, member: str, value: Any) -> None:
        # Arrow schema inference of a json member costs ~1 ms; metadata usually repeats its structure, so
        # infer only when the structural signature (keys and value types, recursively) is new
        if member_extension(logical_member(member)) == "json":
            sig = (member, _structure(value))
            if sig in self._seen:
                return
            self._seen.add(sig)
        self.schema[member] = feats.merge(self.schema.get(member), feats.summarize(member, value), member)

    def close(self, **extra: Any) -> ShardRecord:
        """Finish the tar, fsync, rename into place and return its :class:`ShardRecord`."""
        if self.record is not None:
            return self.record
        try:
            self._end_tar()
            self._file.flush()
            if self._fsync:  # durability against power loss; a killed process needs none (--resume re-hashes)
                os.fsync(self._file.fileno())
            self._file.close()
            digest = self._hash.digest()
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.abort()
            raise write_error(exc, self.tmp, "shard") from None
        self.record = ShardRecord(
            path=self.relpath, samples=self.count, bytes=self._hash.n, sha256=digest,
            first_key=self.first_key, last_key=self.last_key, members=list(self._members or []),
            schema=self.schema, seconds=round(time.perf_counter() - self._t0, 4), **extra,
        )
        return self.record

    def abort(self) -> None:
        """Drop the partial shard (the temporary file is removed; nothing is renamed)."""
        self._hash.digest()
        try:
            self._file.close()
        except OSError:
            pass
        try:
            self.tmp.unlink(missing_ok=True)
        except OSError:
            pass

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def encode_parts(member: str, value: Any) -> list:
    """:func:`~vidalign.format.encode_member` as a list of buffers: a large C-contiguous ``.npy`` array is its
    header plus a view of the array's memory (byte-identical to ``numpy.save``, without its two copies)."""
    import numpy as np

    if member_extension(member) == "npy" and isinstance(value, np.ndarray) and value.nbytes >= 1 << 16 \
            and value.flags.c_contiguous and value.dtype != object and value.ndim >= 1:
        return [npy_header(value), memoryview(value).cast("B")]
    return [encode_member(member, value)]


def npy_header(arr) -> bytes:
    """The ``.npy`` header ``numpy.save`` writes for ``arr`` (format 1.0, or 2.0 when the header is too long)."""
    import io

    import numpy as np

    fmt = np.lib.format
    buf = io.BytesIO()
    d = fmt.header_data_from_array_1_0(arr)
    try:
        fmt.write_array_header_1_0(buf, d)
    except ValueError:
        buf = io.BytesIO()
        fmt.write_array_header_2_0(buf, d)
    return buf.getvalue()


def _structure(obj: Any) -> Any:
    """Hashable signature of a JSON value's structure: dict keys and the types of values, recursively."""
    if isinstance(obj, dict):
        return tuple((k, _structure(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return ("list", frozenset(_structure(x) for x in obj))
    return type(obj).__name__


def count_samples(path: str | os.PathLike) -> int:
    """Samples in a local shard, from its tar headers only (seeks over member data: nothing is read or decoded).

    Lets a resumed stream pass over whole shards it already consumed instead of re-reading them. A Parquet
    shard's count comes from its footer."""
    if container_of(str(path)) == PARQUET:
        from vidalign.parquet import count_rows

        return count_rows(path)
    keys = set()
    try:
        with tarfile.open(path, mode="r:") as tar:
            for info in tar:
                if info.isfile():
                    keys.add(split_member(info.name)[0])
    except (tarfile.TarError, OSError) as exc:
        raise VidalignError(f"{path}: shard is unreadable ({exc}); rebuild or re-download it") from exc
    return len(keys)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _iter_members(f, name: str, size: int | None = None) -> Iterator[tuple[str, bytes]]:
    """(member name, data) of a tar stream: one read per header and per member (GNU long names and PAX paths
    supported; directories and links skipped). Any malformed or truncated part raises a one-line error; a member
    whose header declares more bytes than the file holds (``size``, when known) or than
    :func:`~vidalign.inputs.max_member_bytes` is refused before anything is allocated for it."""
    long_name: str | None = None
    limit = max_member_bytes()
    pos = 0
    while True:
        header = f.read(tarfile.BLOCKSIZE)
        if not header or header == tarfile.NUL * tarfile.BLOCKSIZE:
            return
        if len(header) < tarfile.BLOCKSIZE:
            raise VidalignError(f"{name}: shard is truncated (partial tar header); rebuild or re-download it")
        try:
            info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
        except tarfile.HeaderError as exc:
            raise VidalignError(f"{name}: shard is corrupt ({exc}); rebuild it (vidalign build ... --resume) "
                                "or re-download it") from exc
        pos += tarfile.BLOCKSIZE
        if info.size > limit or (size is not None and info.size > size - pos):
            raise VidalignError(f"{name}: member {info.name!r} declares {info.size:,} bytes, more than "
                                + (f"the {max(0, size - pos):,} left in the file" if size is not None and
                                   info.size <= limit else f"the {limit:,}-byte limit")
                                + "; the shard is corrupt: rebuild or re-download it")
        data = f.read(info.size) if info.size else b""
        pos += info.size + (-info.size % tarfile.BLOCKSIZE)
        if len(data) < info.size:
            raise VidalignError(f"{name}: shard is truncated inside member {info.name!r}; rebuild or re-download it")
        pad = -info.size % tarfile.BLOCKSIZE
        if pad and len(f.read(pad)) < pad:
            raise VidalignError(f"{name}: shard is truncated after member {info.name!r}")
        if info.type == tarfile.GNUTYPE_LONGNAME:
            long_name = data.rstrip(tarfile.NUL).decode("utf-8", "surrogateescape")
            continue
        if info.type == tarfile.XHDTYPE:
            for rec in data.decode("utf-8", "surrogateescape").split("\n"):
                if " path=" in rec:
                    long_name = rec.split(" path=", 1)[1]
            continue
        if info.type in (tarfile.XGLTYPE,) or info.type not in tarfile.REGULAR_TYPES:
            long_name = None
            continue
        member_name = long_name or info.name
        long_name = None
        yield member_name, data


def iter_tar_samples(path_or_fileobj, decode: bool = True, members: set[str] | None = None,
                     source: str | None = None, raw: bool = False) -> Iterator[dict[str, Any]]:
    """Samples of one tar shard, in order, as dicts ``{"__key__": key, "__url__": source, member: value}``.

    Reads the tar sequentially (works on pipes and remote file objects). ``decode`` applies
    :func:`vidalign.format.decode_member`; ``members`` keeps only those member names. Members are named as
    builders wrote them (``depth.npy.gz`` is returned decompressed as ``depth.npy``); ``raw`` returns the stored
    members untouched (names and bytes, for checksumming tools). Member paths are guarded, pickle-capable members
    refused; a truncated or corrupt archive raises a one-line :class:`VidalignError` naming it.
    """
    name = source or str(path_or_fileobj)
    own = not hasattr(path_or_fileobj, "read")
    try:
        f = open(path_or_fileobj, "rb", buffering=1 << 20) if own else path_or_fileobj
        size = os.fstat(f.fileno()).st_size if own else _known_size(f)
    except OSError as exc:
        raise VidalignError(f"{name}: cannot open shard ({exc.strerror})") from exc
    current: dict[str, Any] = {}
    seen: set[str] = set()
    try:
        for member_name, data in _iter_members(f, name, size):
            safe_member_path(member_name, name)
            key, member = split_member(member_name)
            if not member:
                continue
            where = f"{name}: sample {key!r}"
            check_safe_member(member, where)
            if current and current["__key__"] != key:
                yield current
                current = {}
            if not current:
                if key in seen:
                    raise VidalignError(f"{name}: duplicate sample key {key!r} (its members are not contiguous, or "
                                        "two samples share it); rebuild the shard")
                seen.add(key)
                current = {"__key__": key, "__url__": name}
            elif member in current or (not raw and logical_member(member) in current):
                raise VidalignError(f"{where}: member {member!r} appears twice; rebuild the shard")
            if raw:
                if members is None or member in members:
                    current[member] = data
                continue
            logical = logical_member(member)
            if members is not None and logical not in members:
                continue
            if decode:
                current[logical] = decode_member(member, data, where)
            elif logical != member:
                try:
                    current[logical] = gunzip_bytes(data, member)
                except VidalignError as exc:
                    raise VidalignError(f"{where}: {exc}") from None
            else:
                current[logical] = data
    except OSError as exc:
        raise VidalignError(f"{name}: shard is unreadable ({exc}); rebuild or re-download it") from exc
    finally:
        if own:
            f.close()
    if current:
        yield current


def iter_shard_samples(path_or_fileobj, decode: bool = True, members: set[str] | None = None,
                       source: str | None = None) -> Iterator[dict[str, Any]]:
    """Samples of one shard of either container (``.tar`` or ``.parquet``), as builders wrote them.

    The one sample reader of the core: a path is dispatched by its extension, a file object by its first bytes
    (``PAR1`` is Parquet). Parquet rows come back as ``{"__key__", "json": {fields}, member: value}``; with
    ``decode=False`` tar members stay bytes while Parquet columns arrive decoded (there are no member bytes).
    """
    name = source or str(path_or_fileobj)
    if hasattr(path_or_fileobj, "read"):
        f = _Peekable(path_or_fileobj)
        if f.peek(4) == b"PAR1":
            from vidalign.parquet import iter_parquet_samples

            yield from iter_parquet_samples(f.rest(), decode=decode, members=members, source=name)
        else:
            yield from iter_tar_samples(f, decode=decode, members=members, source=name)
        return
    if container_of(str(path_or_fileobj)) == PARQUET:
        from vidalign.parquet import iter_parquet_samples

        yield from iter_parquet_samples(path_or_fileobj, decode=decode, members=members, source=name)
    else:
        yield from iter_tar_samples(path_or_fileobj, decode=decode, members=members, source=name)


def _known_size(f) -> int | None:
    """Bytes left in a seekable file object (None for pipes and streams)."""
    try:
        if not f.seekable():
            return None
        here = f.tell()
        end = f.seek(0, 2)
        f.seek(here)
        return end - here
    except (OSError, AttributeError, ValueError):
        return None


class _Peekable:
    """A read-only file object whose first bytes can be looked at without consuming them (pipes included)."""

    def __init__(self, f):
        self.f, self.head = f, b""

    def peek(self, n: int) -> bytes:
        while len(self.head) < n:
            b = self.f.read(n - len(self.head))
            if not b:
                break
            self.head += b
        return self.head[:n]

    def read(self, n: int = -1) -> bytes:
        if not self.head:
            return self.f.read(n)
        if n is None or n < 0:
            out, self.head = self.head + self.f.read(), b""
            return out
        out, self.head = self.head[:n], self.head[n:]
        if len(out) < n:
            out += self.f.read(n - len(out))
        return out

    def rest(self):
        """The whole stream as a seekable file (Parquet needs its footer first)."""
        import io

        return io.BytesIO(self.read())


def find_bad_member(paths: list, decode: bool = True) -> VidalignError | None:
    """The first problem a careful read of ``paths`` finds — a member that does not decode within the readers'
    limits, a duplicate key (within a shard, or across shards) — as an error naming shard, key and member; None
    when every sample reads. Used to explain a failure inside another library (``datasets``)."""
    seen: dict[str, str] = {}
    for path in paths:
        try:
            for sample in iter_shard_samples(path, decode=decode, source=str(path)):
                key = sample["__key__"]
                if key in seen:
                    return VidalignError(f"{path}: sample key {key!r} also appears in {seen[key]}; keys must be "
                                         "unique across a dataset: rebuild one of the shards")
                seen[key] = str(path)
        except VidalignError as exc:
            return exc
    return None


def open_writer(root: str | os.PathLike, relpath: str, layout: Layout | None = None, summarize: bool = True,
                fsync: bool = False):
    """The writer for a shard path: :class:`ShardWriter` (``.tar``) or
    :class:`~vidalign.parquet.ParquetShardWriter` (``.parquet``); both write ``<path>.tmp`` and rename on close."""
    if container_of(relpath) == PARQUET:
        from vidalign.parquet import ParquetShardWriter

        return ParquetShardWriter(root, relpath, summarize=summarize, fsync=fsync)
    return ShardWriter(root, relpath, summarize=summarize, fsync=fsync, layout=layout)


def shard_paths(source: str | os.PathLike | list, config: str | None = None, split: str = "train",
                option: str = "config") -> list[str]:
    """Shard paths of a dataset folder (config/split), a glob, a brace pattern, or an explicit list. ``option``
    names the caller's option that selects the config, in errors (a trainer's is ``train_config``)."""
    if isinstance(source, (list, tuple)):
        return [str(s) for s in source]
    source = str(source)
    path = Path(source)
    if path.is_dir():
        configs = sorted(p.name for p in (path / DATA_DIR).glob("*") if p.is_dir())
        if not configs:
            raise VidalignError(f"{path}: no {DATA_DIR}/<config>/ folders; is this a vidalign dataset folder?")
        if config is None:
            if len(configs) > 1:
                raise VidalignError(f"{path}: several configs {configs}; choose one with {option}=<one of them>")
            config = configs[0]
        if config not in configs:
            raise VidalignError(f"{path}: {option} {config!r} not found; available: {configs}")
        found = _shard_files(path / DATA_DIR / config)
        urls = [str(p) for p in found if p.name.startswith(split + "-")]
        if not urls:
            splits = sorted({p.name.split("-")[0] for p in found})
            raise VidalignError(f"{path}: config {config!r} has no split {split!r}; available: {splits}")
        return urls
    if "{" in source:
        import braceexpand

        return list(braceexpand.braceexpand(source))
    urls = sorted(glob.glob(source))
    if not urls:
        raise VidalignError(f"{source}: no shards match (give a dataset folder, a glob or a list of .tar/.parquet "
                            "files)")
    return urls


def _shard_files(folder: Path) -> list[Path]:
    """The finished shards of one config folder (``.tar`` and ``.parquet``, named as the format says), sorted."""
    from vidalign.format import SHARD_RE

    return sorted(p for p in folder.glob("*") if SHARD_RE.match(p.name))


def index_tar(path: str | os.PathLike) -> list[tuple[str, dict[str, tuple[int, int]]]]:
    """``[(key, {stored member: (offset, size)})]`` of a local tar shard in order, from its headers only (member
    data is seeked over, never read): random access for readers that fetch members in parallel or only some of
    them (``vidalign encode``'s DataLoader workers, pair builders). Read a member with :func:`read_indexed`."""
    out: list[tuple[str, dict[str, tuple[int, int]]]] = []
    try:
        with tarfile.open(path, mode="r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                key, member = split_member(safe_member_path(info.name, str(path)))
                if not member:
                    continue
                check_safe_member(member, f"{path}: sample {key!r}")
                if not out or out[-1][0] != key:
                    out.append((key, {}))
                out[-1][1][member] = (info.offset_data, info.size)
    except (tarfile.TarError, OSError) as exc:
        raise VidalignError(f"{path}: shard is unreadable ({type(exc).__name__}: {exc}); rebuild or re-download "
                            "it") from exc
    return out


def read_indexed(f, member: str, offset: int, size: int, decode: bool = True, source: str = "<shard>") -> Any:
    """One member located by :func:`index_tar`, read from the open shard ``f``: decoded (``decode``), or its
    bytes (a ``.gz`` member decompressed), as :func:`iter_tar_samples` returns it."""
    f.seek(offset)
    data = f.read(size)
    if len(data) != size:
        raise VidalignError(f"{source}: shard ends inside member {member!r}; rebuild or re-download it")
    if decode:
        return decode_member(member, data)
    return gunzip_bytes(data, member) if member.endswith(GZIP_SUFFIX) else data
