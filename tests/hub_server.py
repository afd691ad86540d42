"""A small Hugging Face Hub on 127.0.0.1 that the real ``huggingface_hub`` and ``datasets`` clients talk to.

Tests never replace ``HfApi``: they start :class:`HubServer`, point ``HF_ENDPOINT`` at it (the ``hub_server``
fixture of ``tests/conftest.py`` does it, in-process and for subprocesses) and let the client speak HTTP. State
lives in memory: repositories (model, dataset, space) with branches and commits, every file's bytes, and an LFS
object store keyed by sha256.

Endpoints (``{t}`` is ``models``, ``datasets`` or ``spaces``; ``{p}`` the URL prefix: ``""``, ``datasets/``,
``spaces/``; ``{repo}`` is ``namespace/name``; ``{rev}`` a branch, a full or short commit id, URL-quoted):

Account and repositories
  ``GET  /api/whoami-v2``                         the token's user (401 without a valid token)
  ``POST /api/repos/create``                      ``{name, organization, type, private|visibility}``; 409 if it
                                                  exists; the first commit holds a default ``.gitattributes``
  ``POST /api/repos/delete``                      ``{name, organization, type}``
  ``POST /api/validate-yaml``                     always valid (no warnings)
  ``GET  /api/agent-harnesses``                   an empty registry
  ``GET  /api/{t}/{repo}[/revision/{rev}]``       repo info: ``id``, ``sha``, ``private``, ``siblings`` (with
                                                  ``size``/``blobId``/``lfs``), ``cardData`` (the README's YAML)
  ``GET  /api/{t}/{repo}/refs``                   branches (``tags``, ``converts`` empty)
  ``GET  /api/{t}/{repo}/commits/{rev}``          history, newest first
  ``POST /api/{t}/{repo}/branch/{branch}``        create a branch (``{startingPoint}``), 409 if it exists

Upload (huggingface_hub's ``create_commit`` / ``upload_folder`` / ``upload_file`` / ``push_to_hub``)
  ``POST /api/{t}/{repo}/preupload/{rev}``        per file ``uploadMode``: ``lfs`` when ≥ 10 MB (``lfs_threshold``),
                                                  binary (NUL byte or not UTF-8 in its 512-byte sample) or matching
                                                  the ``.gitattributes`` LFS patterns of a new repo, else
                                                  ``regular``; ``shouldIgnore`` false; ``oid`` of the file already
                                                  at ``rev`` (sha256 for LFS, git blob sha1 otherwise)
  ``POST /{p}{repo}.git/info/lfs/objects/batch``  Git LFS batch API, ``basic`` transfer: objects already stored get
                                                  no ``actions`` (so an interrupted push resumes without re-sending)
  ``PUT  /_lfs/objects/{sha256}``                 the upload ``href`` (body plain or chunked; sha256 and size checked)
  ``POST /_lfs/verify``                           the verify ``href``: ``{oid, size}`` must be stored
  ``POST /api/{t}/{repo}/commit/{rev}``           NDJSON: ``header`` (``summary``, ``description``,
                                                  ``parentCommit`` → 412 when stale), ``file`` (base64),
                                                  ``lfsFile`` (must be uploaded), ``deletedFile``, ``deletedFolder``

Download (``hf_hub_download``, ``HfFileSystem`` / ``hf://``, ``datasets.load_dataset("org/name")``, streaming)
  ``GET  /api/{t}/{repo}/tree/{rev}[/{path}]``    ``?recursive=`` ``&expand=`` (adds ``lastCommit``); one page
  ``POST /api/{t}/{repo}/paths-info/{rev}``       form ``paths=...`` (repeated), ``expand``
  ``HEAD|GET /{p}{repo}/resolve/{rev}/{path}``    ``X-Repo-Commit``, ``ETag`` (git oid, or sha256 for LFS),
                                                  ``X-Linked-Etag``/``X-Linked-Size`` for LFS, ``Accept-Ranges``;
                                                  ``Range: bytes=a-b`` → 206 with ``Content-Range`` (416 outside)

Errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) and ``X-Error-Message``,
so the client raises its own exception classes. Private repositories answer ``RepoNotFound`` without the token.

Test side (:class:`HubServer`): ``url``, ``token``, ``env()`` (variables for subprocesses), ``create_repo(repo_id,
repo_type, files)`` to seed a repository directly, ``files(repo_id)`` (path → bytes at a revision), ``lfs_paths``,
``commits`` (titles), ``requests`` / ``count(method, path_part)`` / ``ranges`` (what clients asked), and
``fail_next["METHOD /path-prefix"] = status`` to answer one matching request with an error (an interrupted upload).
:func:`point_clients_at` points this process's clients at a server (the ``hub_server`` fixture uses it).

Not implemented: the Xet storage protocol (``/xet-write-token``, ``/xet-read-token`` answer 501: with ``hf_xet``
installed, huggingface_hub 2.x (2.4.0 here) uploads LFS-mode files through Xet unless ``HF_HUB_DISABLE_XET=1``,
which the fixture sets — the documented switch that makes it use the LFS batch API), multipart LFS, pull
requests / discussions, tags, ``.gitignore`` rules, pagination (every listing is one page).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

TOKEN = "hf_vidalign_test_write_token"
USER = "vidalign-tester"
TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
# LFS patterns as in the .gitattributes huggingface.co writes into a new repository (archives, arrays, weights,
# audio, images, video)
LFS_PATTERNS = ["*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*",
                "*.lz4", "*.mds", "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot",
                "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors",
                "saved_model/**/*", "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst",
                "*tfevents*", "*.mp3", "*.ogg", "*.wav", "*.flac", "*.jpg", "*.jpeg", "*.png", "*.webp", "*.gif",
                "*.mp4", "*.webm"]
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()


def git_blob_oid(data: bytes) -> str:
    """The git object id of a blob (what the Hub reports as a regular file's ``oid``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(frozen=True)
class Blob:
    """One file's content in a commit; ``lfs`` files are stored as pointers in git, bytes in the LFS store."""

    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def git_oid(self) -> str:
        return git_blob_oid(lfs_pointer(self.sha256, len(self.data)) if self.lfs else self.data)

    def entry(self, path: str) -> dict:
        d = {"type": "file", "oid": self.git_oid, "size": len(self.data), "path": path}
        if self.lfs:
            d["lfs"] = {"oid": self.sha256, "size": len(self.data),
                        "pointerSize": len(lfs_pointer(self.sha256, len(self.data)))}
        return d


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    message: str
    date: str
    files: dict[str, Blob]


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created: str = field(default_factory=_now)
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, rev: str) -> Commit | None:
        if rev in self.branches:
            return self.commits[self.branches[rev]]
        if re.fullmatch(r"[0-9a-f]{7,40}", rev or ""):
            hits = [c for oid, c in self.commits.items() if oid.startswith(rev)]
            if len(hits) == 1:
                return hits[0]
        return None


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class HubState:
    """Repositories and the LFS store, behind one lock (the server is threaded)."""

    def __init__(self, lfs_threshold: int = 10 * 1024 * 1024):
        self.lock = threading.RLock()
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.lfs_threshold = lfs_threshold
        self._counter = 0

    def repo(self, repo_type: str, repo_id: str, authed: bool = True) -> Repo:
        r = self.repos.get((repo_type, repo_id))
        if r is None or (r.private and not authed):
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return r

    def commit_at(self, repo: Repo, rev: str) -> Commit:
        c = repo.resolve(rev)
        if c is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return c

    def create_repo(self, repo_type: str, repo_id: str, private: bool = False) -> Repo:
        with self.lock:
            if (repo_type, repo_id) in self.repos:
                raise HubError(409, f"You already created this {repo_type} repo")
            repo = Repo(repo_type, repo_id, private)
            self.repos[(repo_type, repo_id)] = repo
            self.new_commit(repo, "main", {".gitattributes": Blob(GITATTRIBUTES, False)}, [], "initial commit", "")
            return repo

    def new_commit(self, repo: Repo, branch: str, add: dict[str, Blob], delete: list[str], title: str,
                   message: str, parent_check: str | None = None) -> Commit:
        with self.lock:
            parent = repo.commits.get(repo.branches.get(branch, ""))
            if parent_check is not None and (parent is None or not parent.oid.startswith(parent_check)):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(parent.files) if parent else {}
            for path in delete:
                if path.endswith("/"):
                    gone = [p for p in files if p.startswith(path)]
                    if not gone:
                        raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                    for p in gone:
                        del files[p]
                elif files.pop(path, None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            files.update(add)
            self._counter += 1
            oid = hashlib.sha1(json.dumps([parent.oid if parent else None, title, self._counter, time.time(),
                                           sorted((p, b.git_oid) for p, b in files.items())]).encode()).hexdigest()
            commit = Commit(oid, parent.oid if parent else None, title, message, _now(), files)
            repo.commits[oid] = commit
            repo.branches[branch] = oid
            return commit

    def upload_mode(self, path: str, sample: bytes, size: int) -> str:
        name = path.rsplit("/", 1)[-1]
        if size >= self.lfs_threshold or any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p)
                                             for p in LFS_PATTERNS):
            return "lfs"
        try:
            sample.decode("utf-8")
            binary = b"\0" in sample
        except UnicodeDecodeError:  # a multi-byte character cut at 512 bytes is still text
            binary = b"\0" in sample or not _utf8_prefix(sample)
        return "lfs" if binary else "regular"


def _utf8_prefix(sample: bytes) -> bool:
    for cut in range(0, 4):
        try:
            sample[:len(sample) - cut].decode("utf-8")
            return True
        except UnicodeDecodeError:
            continue
    return False


def _tree_entries(files: dict[str, Blob], base: str, recursive: bool) -> list[dict]:
    base = base.strip("/")
    prefix = base + "/" if base else ""
    out: dict[str, dict] = {}
    for path in sorted(files):
        if prefix and not path.startswith(prefix):
            continue
        rest = path[len(prefix):]
        parts = rest.split("/")
        for i in range(1, len(parts)):  # folders on the way
            if not recursive and i > 1:
                break
            d = prefix + "/".join(parts[:i])
            out.setdefault(d, {"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0,
                               "path": d})
        if recursive or len(parts) == 1:
            out[path] = files[path].entry(path)
    return sorted(out.values(), key=lambda e: (e["type"] != "directory", e["path"]))


class HubServer:
    """The server: ``with HubServer() as hub: ...`` or ``start()``/``close()``. See the module docstring."""

    def __init__(self, token: str = TOKEN, user: str = USER, lfs_threshold: int = 10 * 1024 * 1024,
                 host: str = "127.0.0.1", port: int = 0):
        self.token, self.user = token, user
        self.state = HubState(lfs_threshold)
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.ranges: list[str] = []  # the Range header of every ranged download, in order
        self.fail_next: dict[str, int] = {}  # "METHOD /path-prefix" → HTTP status, answered once (error injection)
        handler = type("Handler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self.url = f"http://{host}:{self._httpd.server_address[1]}"
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def env(self) -> dict[str, str]:
        """Environment variables that point a subprocess's huggingface_hub/datasets at this server."""
        return {"HF_ENDPOINT": self.url, "HF_TOKEN": self.token, "HF_HUB_DISABLE_XET": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0",
                "HF_HUB_DISABLE_PROGRESS_BARS": "1"}

    # -- direct access for tests --------------------------------------------------------------------------------
    def create_repo(self, repo_id: str, repo_type: str = "dataset", files: dict[str, bytes] | None = None,
                    private: bool = False) -> str:
        """Create a repository holding ``files`` (path → bytes) in one commit; returns the commit id."""
        repo = self.state.create_repo(repo_type, repo_id, private)
        if not files:
            return repo.branches["main"]
        add = {p: Blob(bytes(b), self.state.upload_mode(p, bytes(b)[:512], len(b)) == "lfs") for p, b in files.items()}
        return self.state.new_commit(repo, "main", add, [], "add files", "").oid

    def files(self, repo_id: str, repo_type: str = "dataset", revision: str = "main") -> dict[str, bytes]:
        """Every file of ``repo_id`` at ``revision``: path → bytes."""
        repo = self.state.repo(repo_type, repo_id)
        return {p: b.data for p, b in self.state.commit_at(repo, revision).files.items()}

    def lfs_paths(self, repo_id: str, repo_type: str = "dataset", revision: str = "main") -> set[str]:
        """The paths stored through LFS (the rest were committed inline as regular files)."""
        repo = self.state.repo(repo_type, repo_id)
        return {p for p, b in self.state.commit_at(repo, revision).files.items() if b.lfs}

    def commits(self, repo_id: str, repo_type: str = "dataset", branch: str = "main") -> list[str]:
        """Commit titles of ``branch``, oldest first."""
        repo = self.state.repo(repo_type, repo_id)
        out, oid = [], repo.branches.get(branch)
        while oid:
            out.append(repo.commits[oid].title)
            oid = repo.commits[oid].parent
        return out[::-1]

    def count(self, method: str, path_contains: str) -> int:
        """How many requests of ``method`` had ``path_contains`` in their path."""
        return sum(1 for m, p in self.requests if m == method and path_contains in p)


def _card_data(files: dict[str, Blob]) -> dict | None:
    readme = files.get("README.md")
    if readme is None:
        return None
    import yaml

    text = readme.data.decode("utf-8", "replace")
    m = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
    if not m:
        return None
    try:
        data = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"
    server_version = "vidalign-test-hub/1.0"

    def log_message(self, *args) -> None:  # quiet
        pass

    # -- plumbing -----------------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body: bytes = b"", ctype: str = "application/json",
              headers: dict | None = None, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, status: int, obj, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def _authed(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {self.hub.token}"

    def _require_auth(self) -> None:
        if not self._authed():
            raise HubError(401, "Invalid credentials in Authorization header")

    def _handle(self, method: str) -> None:
        self.hub.requests.append((method, self.path))
        body = b"" if method in ("GET", "HEAD") else self._body()
        for key, status in list(self.hub.fail_next.items()):
            m, _, prefix = key.partition(" ")
            if m == method and self.path.startswith(prefix):
                del self.hub.fail_next[key]
                return self._json(status, {"error": "injected failure"})
        try:
            self._route(method, body)
        except HubError as e:
            headers = {"X-Error-Message": e.message}
            if e.code:
                headers["X-Error-Code"] = e.code
            self._send(e.status, json.dumps({"error": e.message}).encode(), headers=headers, head=method == "HEAD")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("HEAD")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    # -- routing ------------------------------------------------------------------------------------------------
    def _route(self, method: str, body: bytes) -> None:
        url = urlsplit(self.path)
        raw = url.path
        query = parse_qs(url.query)
        st = self.hub.state
        if raw == "/api/whoami-v2" and method == "GET":
            self._require_auth()
            return self._json(200, {"type": "user", "id": "1", "name": self.hub.user, "fullname": "Test User",
                                    "orgs": [], "auth": {"type": "access_token",
                                                         "accessToken": {"displayName": "test", "role": "write"}}})
        if raw == "/api/agent-harnesses" and method == "GET":  # huggingface_hub ≥ 2 asks once per process
            return self._json(200, {"standardEnvVars": [], "harnesses": {}})
        if raw == "/api/validate-yaml" and method == "POST":
            return self._json(200, {"errors": [], "warnings": []})
        if raw in ("/api/repos/create", "/api/repos/delete") and method == "POST":
            self._require_auth()
            d = json.loads(body or b"{}")
            rtype = d.get("type") or "model"
            repo_id = f"{d['organization'] or self.hub.user}/{d['name']}" if d.get("organization") is not None \
                else (d["name"] if "/" in d["name"] else f"{self.hub.user}/{d['name']}")
            prefix_url = f"{self.hub.url}/{PREFIX[rtype]}{repo_id}"
            if raw.endswith("delete"):
                with st.lock:
                    st.repo(rtype, repo_id)
                    del st.repos[(rtype, repo_id)]
                return self._json(200, {})
            private = bool(d.get("private")) or d.get("visibility") == "private"
            try:
                st.create_repo(rtype, repo_id, private)
            except HubError as e:
                return self._json(e.status, {"error": e.message, "url": prefix_url},
                                  headers={"X-Error-Message": e.message})
            return self._json(200, {"url": prefix_url, "name": repo_id, "id": repo_id})
        if raw.startswith("/_lfs/objects/") and method == "PUT":
            oid = raw.rsplit("/", 1)[-1]
            if hashlib.sha256(body).hexdigest() != oid:
                raise HubError(400, f"sha256 of the uploaded content does not match {oid}")
            with st.lock:
                st.lfs[oid] = body
            return self._send(200, b"")
        if raw == "/_lfs/verify" and method == "POST":
            self._require_auth()
            d = json.loads(body)
            if d.get("oid") not in st.lfs or len(st.lfs[d["oid"]]) != d.get("size"):
                raise HubError(404, f"LFS object {d.get('oid')} not found or of another size")
            return self._json(200, {"success": True})
        m = re.fullmatch(r"/api/(models|datasets|spaces)/([^/]+)/([^/]+)(?:/(.*))?", raw)
        if m:
            return self._api(method, TYPES[m.group(1)], f"{m.group(2)}/{m.group(3)}", m.group(4) or "", query,
                             body)
        m = re.fullmatch(r"/(datasets/|spaces/)?([^/]+)/([^/]+?)\.git/info/lfs/objects/batch", raw)
        if m and method == "POST":
            rtype = {"datasets/": "dataset", "spaces/": "space"}.get(m.group(1) or "", "model")
            return self._lfs_batch(rtype, f"{m.group(2)}/{m.group(3)}", body)
        m = re.fullmatch(r"/(datasets/|spaces/)?([^/]+)/([^/]+)/resolve/([^/]+)/(.+)", raw)
        if m and method in ("GET", "HEAD"):
            rtype = {"datasets/": "dataset", "spaces/": "space"}.get(m.group(1) or "", "model")
            return self._resolve(method, rtype, f"{m.group(2)}/{m.group(3)}", unquote(m.group(4)),
                                 unquote(m.group(5)))
        raise HubError(404, f"{method} {raw}: not an endpoint of this test Hub (see tests/hub_server.py)")

    def _api(self, method: str, rtype: str, repo_id: str, rest: str, query: dict, body: bytes) -> None:
        st = self.hub.state
        action, _, tail = rest.partition("/")
        if action in ("xet-write-token", "xet-read-token"):
            raise HubError(501, "this test Hub speaks LFS only, not Xet: set HF_HUB_DISABLE_XET=1")
        repo = st.repo(rtype, repo_id, authed=self._authed())
        if method == "GET" and action in ("", "revision"):
            commit = st.commit_at(repo, unquote(tail) if action else "main")
            return self._json(200, self._info(repo, commit, bool(query.get("blobs"))))
        if method == "GET" and action == "refs":
            return self._json(200, {"branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid}
                                                 for b, oid in sorted(repo.branches.items())],
                                    "converts": [], "tags": []})
        if method == "GET" and action == "commits":
            out, c = [], st.commit_at(repo, unquote(tail) or "main")
            while c is not None:
                out.append({"id": c.oid, "title": c.title, "message": c.message, "date": c.date,
                            "authors": [{"user": self.hub.user}]})
                c = repo.commits.get(c.parent) if c.parent else None
            return self._json(200, out)
        if method == "GET" and action == "tree":
            rev, _, path = tail.partition("/")
            commit = st.commit_at(repo, unquote(rev))
            path = unquote(path)
            if path and path not in commit.files and not any(p.startswith(path.rstrip("/") + "/")
                                                             for p in commit.files):
                raise HubError(404, f"{path} does not exist at {rev}", "EntryNotFound")
            entries = _tree_entries(commit.files, path, _true(query.get("recursive")))
            if _true(query.get("expand")):
                for e in entries:
                    e["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": commit.date}
            return self._json(200, entries)
        if method == "POST" and action == "paths-info":
            commit = st.commit_at(repo, unquote(tail))
            form = parse_qs(body.decode()) if body else {}
            out = []
            for path in form.get("paths", []):
                path = path.strip("/")
                if path in commit.files:
                    out.append(commit.files[path].entry(path))
                elif any(p.startswith(path + "/") for p in commit.files):
                    out.append({"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0,
                                "path": path})
            if _true(form.get("expand")):
                for e in out:
                    e["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": commit.date}
            return self._json(200, out)
        self._require_auth()
        if method == "POST" and action == "preupload":
            commit = repo.resolve(unquote(tail))
            out = []
            for f in json.loads(body)["files"]:
                mode = st.upload_mode(f["path"], base64.b64decode(f.get("sample", "")), int(f["size"]))
                old = commit.files.get(f["path"]) if commit else None
                oid = None if old is None else (old.sha256 if old.lfs else old.git_oid)
                out.append({"path": f["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
            return self._json(200, {"files": out, "commitOid": commit.oid if commit else None})
        if method == "POST" and action == "commit":
            return self._commit(repo, unquote(tail), body, query)
        if method == "POST" and action == "branch":
            d = json.loads(body or b"{}")
            branch = unquote(tail)
            if branch in repo.branches:
                raise HubError(409, f"Branch {branch} already exists")
            repo.branches[branch] = st.commit_at(repo, d.get("startingPoint") or "main").oid
            return self._json(200, {})
        raise HubError(404, f"{method} /api/{rtype}s/{repo_id}/{rest}: not an endpoint of this test Hub")

    def _info(self, repo: Repo, commit: Commit, blobs: bool) -> dict:
        siblings = []
        for p, b in sorted(commit.files.items()):
            s = {"rfilename": p}
            if blobs:
                s.update(size=len(b.data), blobId=b.git_oid)
                if b.lfs:
                    s["lfs"] = {"size": len(b.data), "sha256": b.sha256,
                                "pointerSize": len(lfs_pointer(b.sha256, len(b.data)))}
            siblings.append(s)
        card = _card_data(commit.files)
        info = {"_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24], "id": repo.repo_id,
                "author": repo.repo_id.split("/")[0], "sha": commit.oid, "lastModified": commit.date,
                "createdAt": repo.created, "private": repo.private, "gated": False, "disabled": False,
                "downloads": 0, "likes": 0, "tags": list((card or {}).get("tags") or []), "siblings": siblings,
                "usedStorage": sum(len(b.data) for b in commit.files.values())}
        if card is not None:
            info["cardData"] = card
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
            if card:
                info["library_name"] = card.get("library_name")
                info["pipeline_tag"] = card.get("pipeline_tag")
        return info

    def _lfs_batch(self, rtype: str, repo_id: str, body: bytes) -> None:
        self._require_auth()
        st = self.hub.state
        st.repo(rtype, repo_id)
        d = json.loads(body)
        if d.get("operation") != "upload":
            raise HubError(400, "this test Hub serves downloads through /resolve, not the LFS batch API")
        objects = []
        for o in d["objects"]:
            oid, size = o["oid"], int(o["size"])
            if oid in st.lfs and len(st.lfs[oid]) == size:
                objects.append({"oid": oid, "size": size})  # already stored: nothing to send
            else:
                objects.append({"oid": oid, "size": size, "authenticated": True, "actions": {
                    "upload": {"href": f"{self.hub.url}/_lfs/objects/{oid}"},
                    "verify": {"href": f"{self.hub.url}/_lfs/verify", "header": {}}}})
        self._send(200, json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode(),
                   ctype="application/vnd.git-lfs+json")

    def _commit(self, repo: Repo, rev: str, body: bytes, query: dict) -> None:
        st = self.hub.state
        if _true(query.get("create_pr")):
            raise HubError(501, "pull requests are not implemented by this test Hub")
        if rev not in repo.branches:
            raise HubError(404, f"Invalid rev id: {rev} (commits go to a branch)", "RevisionNotFound")
        header, add, delete = {}, {}, []
        for line in body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, v = item["key"], item["value"]
            if key == "header":
                header = v
            elif key == "file":
                if v.get("encoding", "base64") != "base64":
                    raise HubError(400, f"file {v['path']}: unknown encoding {v.get('encoding')}")
                add[v["path"]] = Blob(base64.b64decode(v["content"]), False)
            elif key == "lfsFile":
                data = st.lfs.get(v["oid"])
                if data is None or ("size" in v and len(data) != v["size"]):
                    raise HubError(422, f"lfsFile {v['path']}: LFS object {v['oid']} was never uploaded")
                add[v["path"]] = Blob(data, True)
            elif key in ("deletedFile", "deletedFolder"):
                delete.append(v["path"].rstrip("/") + ("/" if key == "deletedFolder" else ""))
            else:
                raise HubError(400, f"unknown commit operation {key!r}")
        commit = st.new_commit(repo, rev, add, delete, header.get("summary") or "commit",
                               header.get("description") or "", parent_check=header.get("parentCommit"))
        url = f"{self.hub.url}/{PREFIX[repo.repo_type]}{repo.repo_id}/commit/{commit.oid}"
        self._json(200, {"success": True, "commitOid": commit.oid, "commitUrl": url, "pullRequestUrl": None})

    def _resolve(self, method: str, rtype: str, repo_id: str, rev: str, path: str) -> None:
        st = self.hub.state
        repo = st.repo(rtype, repo_id, authed=self._authed())
        commit = st.commit_at(repo, rev)
        blob = commit.files.get(path)
        if blob is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        data, size = blob.data, len(blob.data)
        etag = f'"{blob.sha256 if blob.lfs else blob.git_oid}"'
        headers = {"X-Repo-Commit": commit.oid, "ETag": etag, "Accept-Ranges": "bytes",
                   "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}"}
        if blob.lfs:
            headers.update({"X-Linked-Etag": etag, "X-Linked-Size": size})
        rng = self.headers.get("Range")
        status = 200
        if rng:
            self.hub.ranges.append(rng.strip())
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not m or (not m.group(1) and not m.group(2)):
                raise HubError(416, f"bad Range {rng!r}")
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:  # suffix: the last N bytes
                start, end = max(0, size - int(m.group(2))), size - 1
            if start >= size or start > end:
                self._send(416, b"", ctype="application/octet-stream",
                           headers={**headers, "Content-Range": f"bytes */{size}"}, head=method == "HEAD")
                return
            data = data[start:end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            status = 206
        self._send(status, data, ctype="application/octet-stream", headers=headers, head=method == "HEAD")


def point_clients_at(monkeypatch, url: str, token: str | None, cache) -> None:
    """Point this process's huggingface_hub and datasets at the Hub ``url`` (through pytest's ``monkeypatch``,
    undone after the test), with ``token`` (None: no token at all) and downloads cached under ``cache``.

    Both libraries read ``HF_ENDPOINT`` into module constants at import time, so those are patched as well as the
    environment (and transformers' shared ``HfApi`` is dropped, so the next one is made for this endpoint); ``HF_HUB_DISABLE_XET`` makes uploads use the LFS batch API this server speaks."""
    from pathlib import Path

    import datasets.config as dcfg
    from huggingface_hub import constants as hc

    cache = Path(cache)
    env = {"HF_ENDPOINT": url, "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_CACHE": str(cache / "hub"),
           "HF_DATASETS_CACHE": str(cache / "datasets")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    if token is None:
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.setattr(hc, "HF_TOKEN_PATH", str(cache / "no-token"))
    else:
        monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setattr(hc, "ENDPOINT", url)
    monkeypatch.setattr(hc, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(hc, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache / "hub"))
    monkeypatch.setattr(dcfg, "HF_ENDPOINT", url)
    monkeypatch.setattr(dcfg, "HUB_DATASETS_URL", url + "/datasets/{repo_id}/resolve/{revision}/{path}")
    monkeypatch.setattr(dcfg, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(dcfg, "HF_DATASETS_CACHE", cache / "datasets")
    # the dataset viewer's Parquet export lives on another host (datasets-server.<endpoint host>): none here
    monkeypatch.setattr(dcfg, "USE_PARQUET_EXPORT", False)
    # transformers keeps one HfApi (endpoint fixed when first made) for Trainer's create_repo and pushes
    try:
        import transformers.utils.hub as thub

        monkeypatch.setattr(thub, "_hf_api", None)
    except ImportError:
        pass


def _true(values) -> bool:
    return bool(values) and str(values[-1]).lower() in ("1", "true", "yes")


__all__ = ["HubServer", "point_clients_at", "HubState", "Blob", "TOKEN", "USER", "git_blob_oid", "lfs_pointer", "LFS_PATTERNS"]
