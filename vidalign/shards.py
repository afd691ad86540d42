"""Writing and reading WebDataset shards (see :mod:`vidalign.format` for the layout).

:class:`ShardWriter` writes ``<shard>.tar.tmp``, hashing as it goes, and renames it to ``<shard>.tar`` only when
:meth:`ShardWriter.close` is reached: a killed build never leaves a shard that looks complete. Tar headers are
normalised (mtime 0, uid/gid 0, mode 644) so the same samples always give the same bytes and sha256.
"""

from __future__ import annotations

import hashlib
import io
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
    MEMBER_RE,
    TMP_SUFFIX,
    decode_member,
    encode_member,
    safe_member_path,
    split_member,
)


class _HashingFile(io.RawIOBase):
    """Write-through file wrapper that computes sha256 and size (no second read of the shard)."""

    def __init__(self, f):
        self.f, self.h, self.n = f, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.n

    def write(self, b) -> int:
        self.h.update(b)
        self.n += len(b)
        return self.f.write(b)


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
    ``json`` is written first so streaming readers see metadata before media.
    """

    def __init__(self, root: str | os.PathLike, relpath: str, summarize: bool = True):
        self.root = Path(root)
        self.relpath = relpath
        self.path = self.root / relpath
        self.tmp = self.path.with_name(self.path.name + TMP_SUFFIX)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.tmp, "wb")
        self._hash = _HashingFile(self._file)
        self._tar = tarfile.open(fileobj=self._hash, mode="w", format=tarfile.GNU_FORMAT)
        self._members: list[str] | None = None
        self._keys: set[str] = set()
        self._summarize = summarize
        self.schema: dict[str, dict] = {}
        self.count = 0
        self.first_key: str | None = None
        self.last_key: str | None = None
        self.record: ShardRecord | None = None
        self._t0 = time.perf_counter()

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode, info.uid, info.gid = len(data), 0, 0o644, 0, 0
        info.uname = info.gname = ""
        self._tar.addfile(info, io.BytesIO(data))

    def write(self, key: str, sample: dict[str, Any]) -> None:
        """Encode and append one sample; ``sample`` maps member names (``json``, ``mp4``, ``mask.npz``...) to values."""
        if not key or "." in key or "/" in key:
            raise VidalignError(f"sample key {key!r} is invalid: keys must be non-empty without '.' or '/'")
        if key in self._keys:
            raise VidalignError(f"{self.relpath}: duplicate sample key {key!r}")
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
            self._add(f"{key}.{m}", encode_member(m, sample[m]))
            if self._summarize:
                self.schema[m] = feats.merge(self.schema.get(m), feats.summarize(m, sample[m]), m)
        self._keys.add(key)
        self.count += 1
        self.first_key = self.first_key or key
        self.last_key = key

    def close(self, **extra: Any) -> ShardRecord:
        """Finish the tar, fsync, rename into place and return its :class:`ShardRecord`."""
        if self.record is not None:
            return self.record
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp, self.path)
        self.record = ShardRecord(
            path=self.relpath, samples=self.count, bytes=self._hash.n, sha256=self._hash.h.hexdigest(),
            first_key=self.first_key, last_key=self.last_key, members=list(self._members or []),
            schema=self.schema, seconds=round(time.perf_counter() - self._t0, 4), **extra,
        )
        return self.record

    def abort(self) -> None:
        """Drop the partial shard (the temporary file is removed; nothing is renamed)."""
        try:
            self._tar.close()
        except Exception:  # the archive is being thrown away
            pass
        self._file.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def iter_tar_samples(path_or_fileobj, decode: bool = True, members: set[str] | None = None,
                     source: str | None = None) -> Iterator[dict[str, Any]]:
    """Samples of one shard, in order, as dicts ``{"__key__": key, member: value}``.

    Reads the tar as a stream (works on pipes and remote files). ``decode`` applies
    :func:`vidalign.format.decode_member`; ``members`` keeps only those member names. Member paths are
    guarded; a truncated or corrupt archive raises a one-line :class:`VidalignError` naming it.
    """
    name = source or str(path_or_fileobj)
    kw = {"fileobj": path_or_fileobj} if hasattr(path_or_fileobj, "read") else {"name": str(path_or_fileobj)}
    current: dict[str, Any] = {}
    try:
        with tarfile.open(mode="r|*", **kw) as tar:
            for info in tar:
                if not info.isfile():
                    continue
                safe_member_path(info.name, name)
                key, member = split_member(info.name)
                if not member:
                    continue
                if current and current["__key__"] != key:
                    yield current
                    current = {}
                if not current:
                    current = {"__key__": key, "__url__": name}
                if members is not None and member not in members:
                    continue
                data = tar.extractfile(info).read()
                current[member] = decode_member(member, data) if decode else data
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise VidalignError(f"{name}: shard is unreadable ({type(exc).__name__}: {exc}); "
                            "rebuild it (vidalign build ... --resume) or re-download it") from exc
    if current:
        yield current
