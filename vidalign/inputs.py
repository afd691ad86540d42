"""The one checked reader of user inputs: every file a command or builder reads goes through here.

Each reader fails with one :class:`~vidalign.errors.InputError` line naming the file (and line or field), what
is wrong and the fix — never a bare ``UnicodeDecodeError``, ``YAMLError``, ``MemoryError`` or a silent ``inf``:

- text is UTF-8 (a BOM is accepted); the error names the line and byte offset of the first bad byte;
- JSON, JSONL, YAML and CSV syntax errors name the line (and column); ``NaN``/``Infinity``/``1e999`` and YAML's
  ``.inf``/``.nan`` are refused where a finite number is needed (:func:`check_finite`);
- sizes are checked *before* anything is allocated: a file larger than :data:`MAX_TEXT_BYTES`; an ``.npy``
  header (also inside ``.npz`` archives and tar members) that declares more bytes than the file holds or than
  :data:`max_array_bytes` allows; object dtypes (pickles) are refused;
- a path given relative to a source folder never leads out of it through a symlink (:func:`inside`).

Limits can be raised with ``VIDALIGN_MAX_ARRAY_BYTES`` / ``VIDALIGN_MAX_MEMBER_BYTES`` (bytes).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vidalign.errors import ConfigError, InputError

MAX_TEXT_BYTES = 1 << 30  # a text input (CSV, JSON, YAML) larger than 1 GiB is refused, not read into memory
_GIB = 1 << 30


def _limit(var: str, default: int) -> int:
    try:
        return int(os.environ.get(var, default))
    except ValueError:
        raise ConfigError(f"${var}={os.environ[var]!r} is invalid: give a number of bytes") from None


def max_array_bytes() -> int:
    """Largest array an ``.npy`` header may declare (default 16 GiB; ``$VIDALIGN_MAX_ARRAY_BYTES``)."""
    return _limit("VIDALIGN_MAX_ARRAY_BYTES", 16 * _GIB)


def max_member_bytes() -> int:
    """Largest tar member or decompressed ``.gz`` member read into memory (``$VIDALIGN_MAX_MEMBER_BYTES``)."""
    return _limit("VIDALIGN_MAX_MEMBER_BYTES", 16 * _GIB)


# -- paths ---------------------------------------------------------------------------------------------------------
def inside(path: str | os.PathLike, root: str | os.PathLike | None, what: str = "file") -> Path:
    """``path`` (relative paths are taken under ``root``) after checking that, with every symlink followed, it
    stays inside ``root``: a source folder never hands out files from elsewhere on the machine."""
    p = Path(path)
    if root is None:
        return p
    root = Path(root)
    full = p if p.is_absolute() else root / p
    real, real_root = os.path.realpath(full), os.path.realpath(root)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise InputError(full, None, f"{what} leads outside {root} (to {real}, through a symlink or '..')",
                         f"copy the file into {root} instead of linking to it")
    return full


def _open_error(path: Path, exc: OSError, what: str) -> InputError:
    import errno

    if exc.errno == errno.ENOENT:
        return InputError(path, None, f"{what} not found", "check the path")
    if exc.errno == errno.EISDIR:
        return InputError(path, None, f"is a folder, expected a {what}", "pass the file itself")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return InputError(path, None, f"{what} is not readable (permission denied)", "fix its permissions")
    return InputError(path, None, f"cannot read the {what} ({exc.strerror or exc})", "check the file and the disk")


def read_bytes(path: str | os.PathLike, what: str = "file", root: str | os.PathLike | None = None,
               max_bytes: int | None = MAX_TEXT_BYTES) -> bytes:
    """The bytes of a file, size-checked before reading (and kept inside ``root``)."""
    p = inside(path, root, what)
    try:
        size = os.stat(p).st_size
        if Path(p).is_dir():
            raise IsADirectoryError(21, "Is a directory")
        if max_bytes is not None and size > max_bytes:
            raise InputError(p, None, f"{what} is {size:,} bytes, more than the {max_bytes:,} a {what} may have",
                             "split it into smaller files")
        with open(p, "rb") as f:
            return f.read()
    except OSError as exc:
        raise _open_error(Path(p), exc, what) from None


def decode_text(data: bytes, source: str | os.PathLike, what: str = "file") -> str:
    """UTF-8 (an optional BOM dropped); a bad byte is named by line and offset."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{source}:{line}", None, f"{what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at "
                         f"offset {exc.start})", "save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
    return text[1:] if text.startswith("\ufeff") else text


def read_text(path: str | os.PathLike, what: str = "file", root: str | os.PathLike | None = None) -> str:
    return decode_text(read_bytes(path, what, root), inside(path, root, what), what)


# -- numbers -------------------------------------------------------------------------------------------------------
def check_finite(obj: Any, source: str | os.PathLike, field: str = "") -> Any:
    """Refuse NaN and infinities anywhere in a parsed value (dicts and lists walked); returns ``obj``."""
    if isinstance(obj, float) and not math.isfinite(obj):
        raise InputError(source, field or None, f"{obj} is not a finite number", "write a finite number")
    if isinstance(obj, dict):
        for k, v in obj.items():
            check_finite(v, source, f"{field}.{k}" if field else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_finite(v, source, f"{field}[{i}]")
    return obj


def finite_option(value: float, option: str, minimum: float | None = None, positive: bool = False) -> float:
    """A float command-line option that must be finite (and positive or >= ``minimum``)."""
    v = float(value)
    if not math.isfinite(v) or (positive and v <= 0) or (minimum is not None and v < minimum):
        need = "a finite number" + (" > 0" if positive else f" >= {minimum}" if minimum is not None else "")
        raise ConfigError(f"{option}={value!r} is invalid: give {need}")
    return v


def _bad_constant(name: str):
    raise ValueError(f"{name} is not a finite number")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"{text} overflows to {v}, not a finite number")
    return v


# -- JSON, JSONL, YAML, CSV ----------------------------------------------------------------------------------------
def parse_json(text: str, source: str | os.PathLike, line: int | None = None, finite: bool = True) -> Any:
    """Strict JSON: no NaN/Infinity, no number that overflows to infinity (``finite=False`` lets them through,
    for files whose readers check values one by one); errors name the line (``line``: the text is that one line
    of ``source``, as in JSONL) and column."""
    where = f"{source}:{line}" if line is not None else str(source)
    try:
        if not finite:
            return json.loads(text)
        return json.loads(text, parse_constant=_bad_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        if line is None:
            where = f"{source}:{exc.lineno}"
        raise InputError(where, None, f"not valid JSON ({exc.msg} at column {exc.colno})",
                         "fix the JSON syntax") from None
    except ValueError as exc:  # a non-finite constant or float
        raise InputError(where, None, str(exc), "write a finite number or null") from None
    except RecursionError:
        raise InputError(where, None, "JSON nested too deeply", "flatten the structure") from None


def read_json(path: str | os.PathLike, what: str = "JSON file", root: str | os.PathLike | None = None,
              finite: bool = True) -> Any:
    p = inside(path, root, what)
    return parse_json(read_text(p, what), p, finite=finite)


def iter_jsonl(path: str | os.PathLike, what: str = "JSONL file", root: str | os.PathLike | None = None,
               finite: bool = True) -> Iterator[tuple[str, Any]]:
    """``(where, value)`` per non-blank line, ``where`` = ``<file>:<line>``; a bad line raises naming it."""
    p = inside(path, root, what)
    for n, line in enumerate(read_text(p, what).splitlines(), start=1):
        if line.strip():
            yield f"{p}:{n}", parse_json(line, p, n, finite)


def parse_yaml(text: str, source: str | os.PathLike, finite: bool = True) -> Any:
    """``yaml.safe_load`` with one-line errors (line and column); non-finite numbers refused unless asked."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(source)
        raise InputError(where, None, f"not valid YAML ({exc.problem or exc.context})",
                         "fix the YAML syntax (indentation, quotes, colons)") from None
    except yaml.YAMLError as exc:
        raise InputError(source, None, f"not valid YAML ({str(exc).splitlines()[0]})", "fix the YAML syntax") \
            from None
    except (RecursionError, ValueError, OverflowError) as exc:
        raise InputError(source, None, f"not valid YAML ({type(exc).__name__}: {exc})", "fix the value") from None
    return check_finite(data, source) if finite else data


def read_yaml(path: str | os.PathLike, what: str = "YAML file", root: str | os.PathLike | None = None) -> Any:
    p = inside(path, root, what)
    return parse_yaml(read_text(p, what), p)


def read_csv(path: str | os.PathLike, what: str = "CSV file",
             root: str | os.PathLike | None = None) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """``(header, [(line, row), ...])``; rows with more cells than the header raise naming the line."""
    p = inside(path, root, what)
    text = read_text(p, what)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    try:
        header = list(reader.fieldnames or [])
        for row in reader:
            if None in row:
                raise InputError(f"{p}:{reader.line_num}", None, f"{len(header) + len(row[None])} cells, the "
                                 f"header has {len(header)}", "quote fields that contain commas")
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise InputError(f"{p}:{reader.line_num}", None, f"not valid CSV ({exc})", "fix the quoting") from None
    return header, rows


# -- arrays --------------------------------------------------------------------------------------------------------
def npy_header(f, source: str, available: int | None, limit: int | None = None) -> tuple[tuple, Any, int]:
    """``(shape, dtype, data bytes)`` from an ``.npy`` header read from ``f`` (positioned at its start), checked
    before any array is allocated: a valid header, no object dtype, and a declared size within ``available``
    (bytes after the header, when known) and ``limit``."""
    import numpy as np

    fmt = np.lib.format
    start = f.tell() if hasattr(f, "tell") else 0
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f, max_header_size=10000)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(f, max_header_size=10000)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, EOFError, SyntaxError, TypeError, OverflowError, UnicodeError) as exc:
        raise InputError(source, None, f"not a valid .npy array ({exc})", "rewrite it with numpy.save") from None
    if dtype.hasobject:
        raise InputError(source, None, f"holds an object array (dtype {dtype}), which only pickle can load",
                         "store a numeric array (numpy.save of a float/int/bool array)")
    n = 1
    for d in shape:
        n *= int(d)
    nbytes = n * dtype.itemsize
    header = (f.tell() if hasattr(f, "tell") else 0) - start
    limit = max_array_bytes() if limit is None else limit
    if nbytes > limit:
        raise InputError(source, None, f"its header declares a {'×'.join(map(str, shape))} {dtype} array "
                         f"({nbytes:,} bytes), more than the {limit:,}-byte limit",
                         "check the file (corrupt?) or raise $VIDALIGN_MAX_ARRAY_BYTES")
    if available is not None and nbytes > available - header:
        raise InputError(source, None, f"its header declares a {'×'.join(map(str, shape))} {dtype} array "
                         f"({nbytes:,} bytes) but it holds {max(0, available - header):,}",
                         "the file is truncated or corrupt: rewrite it with numpy.save")
    return tuple(shape), dtype, nbytes


def load_npy(src: bytes | str | os.PathLike, source: str | None = None, root: str | os.PathLike | None = None):
    """An ``.npy`` array from bytes or a file, header-checked first (:func:`npy_header`), never unpickled."""
    import numpy as np

    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        name = source or "<npy>"
    else:
        p = inside(src, root, ".npy file")
        name = source or str(p)
        try:
            size = os.stat(p).st_size
            with open(p, "rb") as f:
                npy_header(f, name, size)
        except OSError as exc:
            raise _open_error(Path(p), exc, ".npy file") from None
        data = read_bytes(p, ".npy file", max_bytes=None)
    npy_header(io.BytesIO(data), name, len(data))
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise InputError(name, None, f"not a valid .npy array ({exc})", "rewrite it with numpy.save") from None


def load_npz(src: bytes | str | os.PathLike, source: str | None = None,
             root: str | os.PathLike | None = None) -> dict:
    """The arrays of an ``.npz`` (zip) archive, each member's size and header checked before it is read."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        f, name = io.BytesIO(bytes(src)), source or "<npz>"
    else:
        p = inside(src, root, ".npz file")
        name = source or str(p)
        try:
            f = open(p, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise _open_error(Path(p), exc, ".npz file") from None
    limit = max_array_bytes()
    out = {}
    try:
        with zipfile.ZipFile(f) as z:
            for info in z.infolist():
                where = f"{name}: array {info.filename!r}"
                if not info.filename.endswith(".npy"):
                    raise InputError(where, None, "is not an .npy member", "store arrays only (numpy.savez)")
                if info.file_size > limit + 4096:
                    raise InputError(where, None, f"is {info.file_size:,} bytes uncompressed, more than the "
                                     f"{limit:,}-byte limit", "raise $VIDALIGN_MAX_ARRAY_BYTES if it is genuine")
                with z.open(info) as m:
                    npy_header(m, where, info.file_size, limit)
                out[info.filename[:-4]] = load_npy(z.read(info), where)
    except zipfile.BadZipFile as exc:
        raise InputError(name, None, f"not a valid .npz archive ({exc})", "rewrite it with numpy.savez") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(name, None, f"the .npz archive is corrupt ({exc})", "rewrite it with numpy.savez") from None
    finally:
        f.close()
    return out


# -- fingerprints --------------------------------------------------------------------------------------------------
def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    except OSError as exc:
        raise _open_error(Path(path), exc, "input file") from None
    return h.hexdigest()


def fingerprint(path: str | os.PathLike) -> str:
    """Content hash of an input: a file's sha256; a vidalign dataset folder's shard checksums (its manifest, which
    ``verify`` ties to the bytes); any other folder's files (relative paths and sha256s; symlinks followed only
    inside it); a glob's matching files."""
    import glob as _glob

    p = Path(path)
    if not p.exists():
        matches = sorted(_glob.glob(str(path))) if any(c in str(path) for c in "*?[") else []
        if not matches:
            return "missing"
        h = hashlib.sha256()
        for m in matches:
            h.update(f"{m}\0{fingerprint(m)}\0".encode())
        return "glob:" + h.hexdigest()
    if p.is_file():
        return file_sha256(p)
    if (p / "manifest.json").is_file():
        try:
            m = json.loads((p / "manifest.json").read_bytes())
            shas = sorted((rel, rec["sha256"]) for e in m["configs"].values() for rel, rec in e["shards"].items())
            return "dataset:" + hashlib.sha256(json.dumps(shas).encode()).hexdigest()
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    h = hashlib.sha256()
    for f in sorted(p.rglob("*")):
        if f.is_file():
            try:
                inside(f, p)
            except InputError:
                h.update(f"{f.relative_to(p).as_posix()}\0outside\0".encode())
                continue
            h.update(f"{f.relative_to(p).as_posix()}\0{file_sha256(f)}\0".encode())
    return "tree:" + h.hexdigest()


__all__ = ["inside", "read_bytes", "read_text", "decode_text", "check_finite", "finite_option", "parse_json",
           "read_json", "iter_jsonl", "parse_yaml", "read_yaml", "read_csv", "npy_header", "load_npy", "load_npz",
           "file_sha256", "fingerprint", "max_array_bytes", "max_member_bytes"]
