"""Where a build writes: a local folder or any fsspec URL (``s3://bucket/prefix``, ``gs://…``, ``memory://…``).

Every write a build makes is one of three operations, and each has the same guarantee on every backend:

- **a shard** is written whole to a local file first, then published under its final name in one step: a rename
  on a local disk, one ``put`` (a single PUT for objects up to the multipart threshold, a completed multipart
  upload above it) on an object store. S3, GCS and Azure make an object visible only once its upload completes,
  so a reader never sees half a shard; a retried task publishes the same bytes under the same name, so a retry
  replaces, never adds;
- **a small record** (manifest, journal record, card) is written the same way (:meth:`Store.write_atomic`);
- **a lock** is created only if absent (:meth:`Store.create_exclusive`): ``O_CREAT | O_EXCL`` locally, a
  conditional PUT (``If-None-Match: *``, fsspec's ``xb`` mode) on S3 and other stores that support it. Where a
  filesystem has no conditional create, the lock is written and read back (a race of two builds in the same
  second can then both proceed: :attr:`Store.atomic_create` is False and the lock says so in its message).

Object stores have no rename and no append, so nothing here relies on either: the manifest journal is one object
per finished shard (:mod:`vidalign.journal`). Credentials and endpoints come from fsspec's usual configuration
(``AWS_*`` variables, ``FSSPEC_S3_ENDPOINT_URL``, ``~/.config/fsspec``) in the driver and every worker.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

from vidalign.errors import VidalignError


def is_remote(url: str | os.PathLike) -> bool:
    text = str(url)
    return "://" in text and not text.startswith("file://")


def attempt_token() -> str:
    """A token unique to one attempt (process and random bits): temporary names never collide across attempts."""
    return f"{os.getpid()}-{secrets.token_hex(4)}"


def no_space(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def write_error(exc: OSError, path: str | os.PathLike, what: str = "file") -> VidalignError:
    """One line for an OSError while writing ``path``: disk full, read-only, permission, or the system's words."""
    if no_space(exc):
        return VidalignError(f"{path}: no space left writing this {what} ({exc.strerror}); free space on that disk or "
                             "write to another --out (a rerun with --resume keeps what was finished)")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return VidalignError(f"{path}: cannot write this {what} ({exc.strerror}); choose a writable --out")
    return VidalignError(f"{path}: cannot write this {what} ({exc.strerror or exc}); check the disk and the path")


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError that reached the command line: what failed, where, and what to do."""
    where = exc.filename or "a file"
    if no_space(exc):
        return str(write_error(exc, where))
    if isinstance(exc, (ConnectionError, TimeoutError)) or exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH,
                                                                         errno.ECONNREFUSED, errno.ETIMEDOUT):
        return (f"network error ({exc.strerror or exc}); check the connection (offline? a proxy?) and retry "
                "— finished work is kept")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{where}: permission denied ({exc.strerror}); choose a path you can write, or fix its permissions"
    if exc.errno == errno.ENOENT:
        return f"{where}: no such file or folder; check the path"
    return f"{where}: {exc.strerror or exc}; check the path and the disk"


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Store:
    """A build's output location: ``Store("drops")`` or ``Store("s3://bucket/drops")``; paths are relative."""

    def __init__(self, url: str | os.PathLike | Store):
        if isinstance(url, Store):
            url = url.url
        text = str(url)
        self.remote = is_remote(text)
        if not self.remote:
            self.local: Path | None = Path(text[len("file://"):] if text.startswith("file://") else text)
            self.url = str(self.local)
            self.fs, self.root = None, str(self.local)
            return
        try:
            import fsspec
        except ImportError as exc:  # fsspec comes with datasets; this guards odd installs
            raise VidalignError(f"--out {text}: a URL output needs fsspec (pip install fsspec)") from exc
        try:
            self.fs, self.root = fsspec.core.url_to_fs(text)
        except (ImportError, ValueError) as exc:
            proto = text.split("://", 1)[0]
            extra = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}.get(proto, proto)
            raise VidalignError(f"--out {text}: no fsspec filesystem for {proto}:// ({exc}); install it "
                                f"(pip install {extra})") from None
        self.local = None
        self.url = text.rstrip("/")
        self.root = self.root.rstrip("/")

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def __str__(self) -> str:
        return self.url

    def __truediv__(self, rel: str) -> str:
        return self.path(rel)

    # -- paths ---------------------------------------------------------------------------------------------------
    def path(self, rel: str) -> str:
        """Where ``rel`` lives: a local path, or the filesystem path (no protocol) for fsspec calls."""
        return str(self.local / rel) if self.local is not None else f"{self.root}/{rel}"

    def display(self, rel: str) -> str:
        return str(self.local / rel) if self.local is not None else f"{self.url}/{rel}"

    @property
    def atomic_create(self) -> bool:
        return self.local is not None or type(self.fs).__name__ in ("S3FileSystem", "GCSFileSystem", "LocalFileSystem")

    # -- reads ---------------------------------------------------------------------------------------------------
    def exists(self, rel: str) -> bool:
        if self.local is not None:
            return (self.local / rel).exists()
        self.fs.invalidate_cache(self.path(rel))
        return self.fs.exists(self.path(rel))

    def size(self, rel: str) -> int | None:
        try:
            if self.local is not None:
                return (self.local / rel).stat().st_size
            self.fs.invalidate_cache(self.path(rel))
            return int(self.fs.size(self.path(rel)))
        except (FileNotFoundError, OSError):
            return None

    def read_bytes(self, rel: str) -> bytes:
        if self.local is not None:
            return (self.local / rel).read_bytes()
        return self.fs.cat_file(self.path(rel))

    def open_read(self, rel: str):
        if self.local is not None:
            return open(self.local / rel, "rb", buffering=1 << 20)
        return self.fs.open(self.path(rel), "rb", block_size=1 << 22)

    def sha256(self, rel: str) -> str:
        import hashlib

        h = hashlib.sha256()
        with self.open_read(rel) as f:
            while block := f.read(1 << 22):
                h.update(block)
        return h.hexdigest()

    def listdir(self, rel: str) -> list[str]:
        """Names (not paths) of the entries directly under ``rel``; empty when it does not exist."""
        if self.local is not None:
            d = self.local / rel
            return sorted(p.name for p in d.iterdir()) if d.is_dir() else []
        self.fs.invalidate_cache()  # other processes (workers, other builds) write here too
        try:
            return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.path(rel), detail=False))
        except FileNotFoundError:
            return []

    def walk_files(self, rel: str) -> list[str]:
        """Every file under ``rel``, as paths relative to the store root."""
        if self.local is not None:
            d = self.local / rel
            return sorted(p.relative_to(self.local).as_posix() for p in d.rglob("*") if p.is_file()) \
                if d.is_dir() else []
        base = self.root + "/"
        self.fs.invalidate_cache()
        try:
            return sorted(p[len(base):] for p in self.fs.find(self.path(rel)) if p.startswith(base))
        except FileNotFoundError:
            return []

    # -- writes --------------------------------------------------------------------------------------------------
    def makedirs(self, rel: str = "") -> None:
        if self.local is not None:
            try:
                (self.local / rel).mkdir(parents=True, exist_ok=True)
            except FileExistsError:
                raise VidalignError(f"{self.local / rel}: exists and is not a folder; choose another --out") from None
            except OSError as exc:
                raise write_error(exc, self.local / rel, "folder") from None

    def write_atomic(self, rel: str, data: bytes | str, fsync: bool = True) -> None:
        """Write a small file whole: temp + fsync + rename locally, one PUT remotely."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        if self.local is None:
            self.fs.pipe_file(self.path(rel), data)
            return
        path = self.local / rel
        tmp = path.with_name(f"{path.name}.{attempt_token()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
                if fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise write_error(exc, path) from None

    def publish(self, local_file: str | os.PathLike, rel: str) -> None:
        """Publish a finished local file under ``rel`` in one step (rename, or one upload), then drop it."""
        if self.local is not None:
            try:
                os.replace(local_file, self.local / rel)
            except OSError as exc:
                raise write_error(exc, self.local / rel, "shard") from None
            return
        self.fs.makedirs(self.path(rel).rsplit("/", 1)[0], exist_ok=True)
        self.fs.put_file(str(local_file), self.path(rel))
        os.unlink(local_file)

    def create_exclusive(self, rel: str, data: bytes | str) -> bool:
        """Create ``rel`` holding ``data`` only if it does not exist; False when it exists."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        if self.local is not None:
            path = self.local / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            except OSError as exc:
                raise write_error(exc, path, "lock file") from None
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            return True
        try:
            with self.fs.open(self.path(rel), "xb") as f:
                f.write(data)
            return True
        except FileExistsError:
            return False
        except (ValueError, NotImplementedError, TypeError):  # no conditional create: write, then read back
            if self.fs.exists(self.path(rel)):
                return False
            self.fs.pipe_file(self.path(rel), data)
            return self.fs.cat_file(self.path(rel)) == data

    def delete(self, rel: str) -> None:
        try:
            if self.local is not None:
                (self.local / rel).unlink(missing_ok=True)
            else:
                self.fs.rm_file(self.path(rel))
        except FileNotFoundError:
            pass

    def rmtree(self, rel: str) -> None:
        if self.local is not None:
            import shutil

            shutil.rmtree(self.local / rel, ignore_errors=True)
            return
        try:
            self.fs.rm(self.path(rel), recursive=True)
        except FileNotFoundError:
            pass


__all__ = ["Store", "is_remote", "attempt_token", "write_error", "no_space", "fsync_dir"]
