"""A local OpenAI-compatible chat-completions server on 127.0.0.1 for the judge tests (bounded requests)."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

MAX_REQUESTS = 200


def reply(content: str, status: int = 200, headers: dict | None = None, delay: float = 0.0) -> dict:
    body = json.dumps({"id": "x", "object": "chat.completion",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})
    return {"status": status, "body": body.encode() if status == 200 else b'{"error": "x"}',
            "headers": headers or {}, "delay": delay}


class ChatServer:
    """Answers each POST with ``script(n, request_json)`` (n = 0, 1, ...); records every request."""

    def __init__(self, script):
        self.script = script
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return

            def do_POST(self):
                data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    n = len(server.requests)
                    server.requests.append(data)
                    server.headers.append(dict(self.headers))
                    server.paths.append(self.path)
                r = server.script(n, data) if n < MAX_REQUESTS else reply("", status=500)
                if r["delay"]:
                    time.sleep(r["delay"])
                try:
                    self.send_response(r["status"])
                    for k, v in r["headers"].items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(r["body"])))
                    self.end_headers()
                    self.wfile.write(r["body"])
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat_server():
    servers = []

    def start(script):
        s = ChatServer(script)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


@pytest.fixture
def chat_reply():
    return reply


@pytest.fixture
def tiny_atom(tmp_path):
    """A small AToM folder (frequency/preference_labels.jsonl + features/*.npy + *_token.npy), n rows."""
    import numpy as np

    from vidalign import motion as m

    def make(n: int = 12):
        d = tmp_path / "atom" / "frequency"
        (d / "features").mkdir(parents=True)
        rng = np.random.default_rng(1)
        degrees = ["Much better", "Better", "Slightly better", "Negligibly better/unsure"]
        lines = []
        for i in range(n):
            paths = []
            for s in ("a", "b"):
                np.save(d / "features" / f"{i}{s}.npy", m.joints_to_features(m.walk_motion(45 + i, speed=1.0 + i / n)))
                np.save(d / "features" / f"{i}{s}_token.npy", rng.integers(0, 512, size=(1, 4 + i % 5)))
                paths.append(f"features/{i}{s}.npy")
            lines.append(json.dumps({
                "id": i, "prompt": f"A person jumps up {['two', 'three'][i % 2]} times.",
                "sample_1": {"features": paths[0]}, "sample_2": {"features": paths[1]},
                "chosen": [{"choice": "sample_1" if i % 3 else "sample_2", "degree of preference": degrees[i % 4],
                            "user": "u"}]}))
        (d / "preference_labels.jsonl").write_text("\n".join(lines) + "\n")
        return d / "preference_labels.jsonl"

    return make
