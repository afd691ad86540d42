"""Fixtures shared by every test folder.

``http_server``: a :class:`http_server.FileServer` serving a fresh folder (``http_server.root``) over plain HTTP on
127.0.0.1 (GET/HEAD/Range, no listings), as an object store or web server serves dataset files.

``hub_server``: a :class:`hub_server.HubServer` (a small Hugging Face Hub on 127.0.0.1, see ``tests/hub_server.py``)
with this process's ``huggingface_hub`` and ``datasets`` pointed at it (``HF_ENDPOINT``, a write token in
``HF_TOKEN``, LFS uploads instead of Xet, a private download cache); ``hub_server.env()`` gives the same settings
for subprocesses. Tests import the module as ``import hub_server``.

``s3_server``: moto's S3 server on 127.0.0.1 with a bucket ``bucket``, and this process's s3fs/fsspec pointed at it
(yields an ``s3fs.S3FileSystem``); skipped unless moto and s3fs (``vidalign[s3]``, ``dev``) are installed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

for _name in ("hub_server", "http_server"):  # importable by tests by name (pytest runs in importlib mode)
    if _name not in sys.modules:
        _spec = importlib.util.spec_from_file_location(_name, Path(__file__).with_name(f"{_name}.py"))
        _mod = importlib.util.module_from_spec(_spec)
        sys.modules[_name] = _mod
        _spec.loader.exec_module(_mod)

from http_server import FileServer  # noqa: E402
from hub_server import HubServer, point_clients_at  # noqa: E402


@pytest.fixture
def http_server(tmp_path_factory):
    """A running :class:`http_server.FileServer` over an empty folder ``http_server.root`` (see the module docstring)."""
    with FileServer(tmp_path_factory.mktemp("www")) as srv:
        yield srv


@pytest.fixture
def hub_server(monkeypatch, tmp_path_factory):
    """A running :class:`HubServer`, with huggingface_hub and datasets pointed at it (see the module docstring)."""
    with HubServer() as hub:
        point_clients_at(monkeypatch, hub.url, hub.token, tmp_path_factory.mktemp("hf_cache"))
        yield hub


@pytest.fixture
def s3_server(monkeypatch):
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    srv = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    # moto keeps its buckets in process-wide state, shared by every server started in this (xdist) process:
    # start each test from an empty store, or a bucket made by an earlier test makes mkdir fail
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST"), timeout=30)
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "FSSPEC_S3_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    import fsspec.config

    fsspec.config.set_conf_env(fsspec.config.conf)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem(endpoint_url=env["FSSPEC_S3_ENDPOINT_URL"])
    fs.mkdir("bucket")
    yield fs
    srv.stop()
    fsspec.config.conf.pop("s3", None)


# tests of the PyBullet simulation run where the `sim` extra is installed (CI installs it), and are skipped where
# pybullet has no wheel and was not built (aarch64, Apple silicon)
_NEEDS_PYBULLET = ("simulation/", "datasets_builders/test_kubric_drop.py")


def pytest_collection_modifyitems(config, items):
    if importlib.util.find_spec("pybullet") is not None:
        return
    skip = pytest.mark.skip(reason="needs the sim extra: pip install 'vidalign[sim]' (pybullet)")
    root = Path(__file__).parent
    for item in items:
        try:
            rel = Path(str(item.fspath)).relative_to(root).as_posix()
        except ValueError:
            continue
        if rel.startswith(_NEEDS_PYBULLET):
            item.add_marker(skip)
