"""Where a dataset's shards are: a local folder, a Hub repository or any fsspec URL, resolved to a shard list.

:func:`resolve` turns what a user gives into a :class:`ShardSet` (shard URLs, their sample counts when the manifest
records them, and the dataset root for root files such as ``empty_prompt_embeds.npy``):

* a local dataset folder, a shard path, a glob, a ``{a..b}`` pattern or a list of shards;
* a Hub dataset: ``org/name`` (when no such local path exists), ``hf://datasets/org/name[@revision][/shards]``;
  the revision is pinned to one commit, so every rank and worker reads the same snapshot;
* any fsspec URL of a dataset root or of shards: ``https://host/ds``, ``s3://bucket/ds``, ``gs://...``,
  ``file://...``, ``memory://...`` (S3 needs ``pip install 'vidalign[s3]'`` (s3fs), GCS needs ``gcsfs``);
* ``pipe:<command>`` shards (the command writes one shard to stdout, as in WebDataset), brace-expanded.

A root is read as the format says (:mod:`vidalign.format`): its ``manifest.json`` lists every config's shards and
their sample counts; without one, the card's ``configs:`` ``data_files`` patterns are listed. :func:`open_shard`
opens any shard URL for one sequential read (remote files are streamed with one request each, through a
read-ahead buffer), and :func:`iter_samples` reads it with the one sample reader,
:func:`vidalign.shards.iter_shard_samples`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidalign.errors import ConfigError, VidalignError
from vidalign.format import CARD_NAME, DATA_DIR, MANIFEST_NAME, READABLE_MAJORS, SHARD_RE

HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
READ_AHEAD = 8 << 20  # bytes an fsspec stream is read ahead (one backend call per chunk, not per tar header)


@dataclass
class ShardSet:
    """The shards of one config and split. ``counts[i]``: samples of ``urls[i]`` when known without reading it
    (the manifest records them; local shards are counted from their headers on demand); ``sizes[i]``: bytes,
    when known; ``root``: the dataset root (a folder or URL), or None for a bare shard list."""

    urls: list[str]
    counts: list[int | None] = field(default_factory=list)
    sizes: list[int | None] = field(default_factory=list)
    root: str | None = None
    config: str | None = None
    what: str = ""

    def __post_init__(self):
        self.counts = list(self.counts) or [None] * len(self.urls)
        self.sizes = list(self.sizes) or [None] * len(self.urls)

    def describe(self) -> str:
        return f"{len(self.urls)} shards of {self.what or self.root or 'a shard list'}"


# ---------------------------------------------------------------------------------------------- kinds of source
def is_remote(url: str) -> bool:
    """An fsspec URL (``scheme://``) or a ``pipe:`` command, not a local path."""
    return str(url).startswith("pipe:") or "://" in str(url)


def is_hub_id(text: str) -> bool:
    """``org/name`` naming a Hub dataset: no local path of that name exists."""
    return bool(HUB_ID_RE.match(text)) and not os.path.exists(text)


def _expand(pattern: str) -> list[str]:
    if "{" in pattern:
        import braceexpand

        return list(braceexpand.braceexpand(pattern))
    return [pattern]


def resolve(source: Any, config: str | None = None, split: str = "train", option: str = "config") -> ShardSet:
    """The shards of ``source`` (see the module docstring); ``option`` names the caller's config option in
    errors (a trainer's is ``train_config``)."""
    if isinstance(source, ShardSet):
        return source
    if isinstance(source, (list, tuple)):
        urls = [str(u) for u in source]
        if not urls:
            raise ConfigError("no shards to stream: the list is empty")
        return ShardSet(urls, root=_root_of(urls[0]), what=f"{len(urls)} listed shards")
    text = str(source)
    if text.startswith("pipe:"):
        return ShardSet(_expand(text), what="pipe: commands")
    if is_hub_id(text):
        text = f"hf://datasets/{text}"
    if "://" in text:
        return _resolve_url(text.rstrip("/"), config, split, option)
    return _resolve_local(text, config, split, option)


def _resolve_local(text: str, config: str | None, split: str, option: str) -> ShardSet:
    from vidalign.shards import shard_paths

    path = Path(text)
    urls = shard_paths(text, config, split, option=option)
    root = str(path) if path.is_dir() else _root_of(urls[0])
    chosen = Path(urls[0]).parent.name if path.is_dir() else None
    return ShardSet(urls, root=root, config=chosen, what=text)


def _root_of(shard: str) -> str | None:
    """The dataset root of a shard ``<root>/data/<config>/<file>`` (local or URL), or None."""
    s = str(shard)
    if s.startswith("pipe:"):
        return None
    parts = s.rstrip("/").rsplit("/", 3)
    if len(parts) == 4 and parts[1] == DATA_DIR:
        return parts[0]
    if "://" not in s:
        p = Path(s).resolve().parent
        for folder in (p, *p.parents[:3]):
            if (folder / MANIFEST_NAME).is_file():
                return str(folder)
    return None


# ---------------------------------------------------------------------------------------------- remote
def filesystem(url: str, **options: Any):
    """``(fs, path)`` of an fsspec URL, with a one-line error naming the package an unknown protocol needs."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url, **options)
    except ImportError as exc:
        raise ConfigError(f"{url}: reading {url.split('://')[0]}:// needs a package that is not installed ({exc}); "
                          "pip install 'vidalign[s3]' for s3://, gcsfs for gs://, or the fsspec package for it") from None
    except ValueError as exc:
        raise ConfigError(f"{url}: not a URL fsspec can open ({exc})") from None


def _pin_hub(url: str) -> str:
    """``hf://datasets/org/name[@rev][/path]`` with the revision replaced by its commit id."""
    from huggingface_hub import HfApi, HfFileSystem
    from huggingface_hub.errors import HfHubHTTPError

    try:
        resolved = HfFileSystem().resolve_path(url)
    except (FileNotFoundError, HfHubHTTPError, ValueError) as exc:
        raise ConfigError(f"{url}: no such Hub dataset or revision ({_first_line(exc)}); check the id, the "
                          "revision and the token (HF_TOKEN / hf auth login)") from None
    if resolved.repo_type != "dataset":
        raise ConfigError(f"{url}: {resolved.repo_id} is a {resolved.repo_type} repository; give a dataset "
                          "(org/name or hf://datasets/org/name)")
    try:
        sha = HfApi().dataset_info(resolved.repo_id, revision=resolved.revision).sha
    except HfHubHTTPError as exc:
        raise ConfigError(f"{url}: the Hub did not answer ({_first_line(exc)})") from None
    rest = f"/{resolved.path_in_repo}" if resolved.path_in_repo else ""
    return f"hf://datasets/{resolved.repo_id}@{sha}{rest}"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _resolve_url(url: str, config: str | None, split: str, option: str) -> ShardSet:
    shown = url
    if url.startswith("hf://"):
        url = _pin_hub(url)
    name = url.rsplit("/", 1)[-1]
    if SHARD_RE.match(name) or name.endswith((".tar", ".parquet")) or any(c in url for c in "*[{"):
        urls = []
        for u in _expand(url):
            if any(c in u for c in "*["):
                fs, _ = filesystem(u)
                proto = u.split("://", 1)[0]
                urls += sorted(f"{proto}://{p}" if not p.startswith(f"{proto}://") else p for p in fs.glob(u))
            else:
                urls.append(u)
        if not urls:
            raise ConfigError(f"{shown}: no shards match")
        return ShardSet(urls, root=_root_of(urls[0]), what=shown)
    manifest = read_root_file(url, MANIFEST_NAME)
    if manifest is not None:
        return _from_manifest(url, shown, manifest, config, split, option)
    card = read_root_file(url, CARD_NAME)
    if card is not None:
        return _from_card(url, shown, card, config, split, option)
    raise ConfigError(f"{shown}: no {MANIFEST_NAME} or {CARD_NAME} there; give the URL of a vidalign dataset root, "
                      "or shard URLs (a list, or a {00000..00003} pattern)")


def _pick_config(names: list[str], config: str | None, where: str, option: str) -> str:
    if config is None:
        if len(names) != 1:
            raise ConfigError(f"{where}: several configs {names}; choose one with {option}=<one of them>")
        return names[0]
    if config not in names:
        raise ConfigError(f"{where}: {option} {config!r} not found; available: {names}")
    return config


def _from_manifest(root: str, shown: str, raw: bytes, config: str | None, split: str, option: str) -> ShardSet:
    try:
        m = json.loads(raw)
        configs = m["configs"]
        major = str(m["format_version"]).split(".")[0]
    except (ValueError, KeyError, TypeError) as exc:
        raise VidalignError(f"{shown}/{MANIFEST_NAME}: not a vidalign manifest ({exc})") from None
    if major not in READABLE_MAJORS:
        raise VidalignError(f"{shown}/{MANIFEST_NAME}: format_version {m['format_version']} is not readable by this "
                            "vidalign; install a matching version")
    config = _pick_config(sorted(configs), config, shown, option)
    shards = configs[config].get("shards", {})
    chosen = sorted(rel for rel in shards if (mm := SHARD_RE.match(rel.rsplit("/", 1)[-1])) and mm["split"] == split)
    if not chosen:
        splits = sorted({mm["split"] for rel in shards if (mm := SHARD_RE.match(rel.rsplit("/", 1)[-1]))})
        raise ConfigError(f"{shown}: config {config!r} has no split {split!r}; available: {splits}")
    return ShardSet([f"{root}/{rel}" for rel in chosen], [int(shards[r]["samples"]) for r in chosen],
                    [shards[r].get("bytes") for r in chosen], root=root, config=config, what=shown)


def _from_card(root: str, shown: str, raw: bytes, config: str | None, split: str, option: str) -> ShardSet:
    import yaml

    text = raw.decode("utf-8", "replace")
    meta = {}
    if text.startswith("---"):
        try:
            meta = yaml.safe_load(text.split("---", 2)[1]) or {}
        except yaml.YAMLError as exc:
            raise VidalignError(f"{shown}/{CARD_NAME}: the card's YAML does not parse ({_first_line(exc)})") from None
    configs = {c.get("config_name", "default"): c for c in meta.get("configs") or [] if isinstance(c, dict)}
    if not configs:
        raise ConfigError(f"{shown}: neither {MANIFEST_NAME} nor `configs:` in {CARD_NAME}; give shard URLs")
    config = _pick_config(sorted(configs), config, shown, option)
    files = configs[config].get("data_files") or []
    files = [{"split": "train", "path": files}] if isinstance(files, (str, list)) and not (
        files and isinstance(files, list) and isinstance(files[0], dict)) else files
    patterns = [p for f in files if f.get("split") == split for p in
                ([f["path"]] if isinstance(f["path"], str) else f["path"])]
    if not patterns:
        raise ConfigError(f"{shown}: config {config!r} has no split {split!r} in {CARD_NAME}")
    fs, _ = filesystem(root)
    proto = root.split("://", 1)[0]
    urls = sorted({p if p.startswith(f"{proto}://") else f"{proto}://{p}"
                   for pat in patterns for p in fs.glob(f"{root}/{pat}")})
    if not urls:
        raise ConfigError(f"{shown}: no files match {patterns} (this server may not list folders: publish the "
                          f"{MANIFEST_NAME} with the data, or give shard URLs)")
    return ShardSet(urls, root=root, config=config, what=shown)


def read_root_file(root: str | None, name: str) -> bytes | None:
    """A file at a dataset root (local folder or URL), or None when it is not there."""
    if root is None:
        return None
    if not is_remote(root):
        path = Path(root) / name
        return path.read_bytes() if path.is_file() else None
    fs, path = filesystem(root)
    try:
        with fs.open(f"{path}/{name}", "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - network errors of every fsspec backend: one line, not a traceback
        if "404" in str(exc) or "not found" in str(exc).lower() or "EntryNotFound" in type(exc).__name__:
            return None
        raise VidalignError(f"{root}/{name}: cannot read ({type(exc).__name__}: {_first_line(exc)}); check the URL, "
                            "the network and credentials") from None


# ---------------------------------------------------------------------------------------------- opening shards
class _ReadAhead:
    """Exact sequential reads (``read(n)`` returns n bytes unless the stream ends) over a stream that may return
    fewer, fetched in chunks of at least ``chunk`` bytes (0: as asked); read errors become one-line errors naming
    the shard; ``close`` closes the stream and checks a ``pipe:`` command's exit status."""

    def __init__(self, f, name: str, proc: subprocess.Popen | None = None, chunk: int = READ_AHEAD):
        self.f, self.name, self.proc, self.chunk = f, name, proc, chunk
        self.buf, self.pos, self.eof = b"", 0, False

    def _next(self, n: int) -> bytes:
        if self.eof:
            return b""
        try:
            got = self.f.read(max(self.chunk, n))
        except Exception as exc:  # noqa: BLE001 - any backend's network error, named in one line
            raise VidalignError(f"{self.name}: reading failed ({type(exc).__name__}: {_first_line(exc)}); check "
                                "the network and retry") from None
        if not got:
            self.eof = True
        return got

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 62
        avail = len(self.buf) - self.pos
        if avail >= n:  # one copy out of the read-ahead buffer
            out = self.buf[self.pos: self.pos + n]
            self.pos += n
            return out
        parts, need = [self.buf[self.pos:]] if avail else [], n - avail
        self.buf, self.pos = b"", 0
        while need > 0:
            got = self._next(need)
            if not got:
                break
            if len(got) > need:
                parts.append(got[:need])
                self.buf = got[need:]
                need = 0
            else:
                parts.append(got)
                need -= len(got)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        self.f.close()
        if self.proc is not None:
            code = self.proc.wait()
            if code != 0:
                raise VidalignError(f"{self.name}: the command exited with status {code}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.close()
        else:
            try:
                self.f.close()
            finally:
                if self.proc is not None:
                    self.proc.kill()
                    self.proc.wait()


def open_shard(url: str, size: int | None = None):
    """A file object for one sequential read of shard ``url`` (a path, ``pipe:<command>`` or fsspec URL)."""
    if url.startswith("pipe:"):
        proc = subprocess.Popen(url[5:], shell=True, stdout=subprocess.PIPE, bufsize=1 << 20)  # noqa: S602
        return _ReadAhead(proc.stdout, url, proc)
    if "://" not in url:
        try:
            return open(url, "rb", buffering=1 << 20)  # noqa: SIM115 - the caller closes it
        except OSError as exc:
            raise VidalignError(f"{url}: cannot open shard ({exc.strerror})") from exc
    if url.startswith(("http://", "https://")):
        return _open_http(url)
    fs, path = filesystem(url)
    kw: dict[str, Any] = {"block_size": 0} if url.startswith("hf://") else {}  # one streamed request per shard
    try:
        return _ReadAhead(fs.open(path, "rb", **kw), url)
    except FileNotFoundError:
        raise VidalignError(f"{url}: shard not found; check the URL (or the manifest is newer than the data)") \
            from None
    except Exception as exc:  # noqa: BLE001 - network errors of every fsspec backend
        raise VidalignError(f"{url}: cannot open shard ({type(exc).__name__}: {_first_line(exc)}); check the URL, "
                            "the network and credentials") from None


def _open_http(url: str, timeout: float = 60.0) -> _ReadAhead:
    """One streamed GET of an ``http(s)://`` shard with the standard library (proxies from the environment,
    redirects, TLS): its reads return exactly what is asked, straight from the socket, for a third of the CPU time
    of fsspec's aiohttp stream (see benchmarks/RESULTS.md, Training)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Accept-Encoding": "identity"})
    try:
        resp = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) only, checked by the caller
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise VidalignError(f"{url}: shard not found (HTTP 404); check the URL (or the manifest is newer than "
                                "the data)") from None
        raise VidalignError(f"{url}: cannot open shard (HTTP {exc.code} {exc.reason}); check the URL and access "
                            "rights") from None
    except (urllib.error.URLError, OSError) as exc:
        raise VidalignError(f"{url}: cannot open shard ({_first_line(exc)}); check the URL and the network") from None
    return _ReadAhead(resp, url, chunk=0)


def iter_samples(url: str, decode: bool = False, members: set[str] | None = None, size: int | None = None):
    """Samples of one shard anywhere, with :func:`vidalign.shards.iter_shard_samples`."""
    from vidalign.shards import iter_shard_samples

    if "://" not in url and not url.startswith("pipe:"):
        yield from iter_shard_samples(url, decode=decode, members=members)
        return
    with open_shard(url, size) as f:
        yield from iter_shard_samples(f, decode=decode, members=members, source=url)


def count_samples(url: str) -> int:
    """Samples in a shard: a local one from its headers (nothing read), a remote one by reading it through."""
    if "://" not in url and not url.startswith("pipe:"):
        from vidalign.shards import count_samples as count_local

        return count_local(url)
    return sum(1 for _ in iter_samples(url))
