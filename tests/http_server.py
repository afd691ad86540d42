"""A plain HTTP file server on 127.0.0.1, as object stores and web servers serve dataset files.

``GET``/``HEAD`` of any file under a root folder (sent with ``sendfile``, as web servers do), with ``Content-Length``, ``Accept-Ranges: bytes`` and
``Range: bytes=a-b`` (206 + ``Content-Range``, 416 outside the file), 404 for anything else; no directory listings
(object stores and CDNs give none, so readers must find shards through the manifest). Every request is recorded
(``requests``: ``(method, path, range)``). Run it in a thread (:class:`FileServer`, the ``http_server`` fixture of
``tests/conftest.py``) or as a process: ``python tests/http_server.py ROOT`` prints its URL on the first line.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Handler(BaseHTTPRequestHandler):
    server_version = "vidalign-test-files/1"
    protocol_version = "HTTP/1.1"
    root: Path
    owner: FileServer

    def log_message(self, *args) -> None:  # quiet
        pass

    def _serve(self, head: bool) -> None:
        rng = self.headers.get("Range")
        self.owner.requests.append((self.command, self.path, rng))
        rel = unquote(urlsplit(self.path).path).lstrip("/")
        path = (self.root / rel).resolve()
        if self.root not in path.parents or not path.is_file():
            body = b"not found"
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)
            return
        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        if rng:
            m = re.match(r"bytes=(\d*)-(\d*)$", rng.strip())
            if m is None or (m[1] == "" and m[2] == ""):
                start = size  # unparseable: answer 416 below
            elif m[1] == "":
                start, end = max(0, size - int(m[2])), size - 1
            else:
                start, end = int(m[1]), min(int(m[2]) if m[2] else size - 1, size - 1)
            if start >= size or start > end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if head:
            return
        with open(path, "rb") as fh:  # zero-copy from the page cache, as nginx and object stores send files
            try:
                self.connection.sendfile(fh, start, end - start + 1)
            except (BrokenPipeError, ConnectionResetError):
                return

    def do_GET(self):
        self._serve(head=False)

    def do_HEAD(self):
        self._serve(head=True)


class FileServer:
    """``with FileServer(root) as srv: srv.url`` serves ``root`` over HTTP on 127.0.0.1 (see the module docstring)."""

    def __init__(self, root: str | os.PathLike, host: str = "127.0.0.1", port: int = 0):
        self.root = Path(root).resolve()
        self.requests: list[tuple[str, str, str | None]] = []
        handler = type("Handler", (_Handler,), {"root": self.root, "owner": self})
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self.url = f"http://{host}:{self._httpd.server_address[1]}"
        self._thread: threading.Thread | None = None

    def start(self) -> FileServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="file-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def count(self, method: str, path_contains: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and path_contains in p)


if __name__ == "__main__":  # python tests/http_server.py ROOT: serve until killed (benchmarks, other processes)
    srv = FileServer(sys.argv[1])
    print(srv.url, flush=True)
    srv._httpd.serve_forever()
