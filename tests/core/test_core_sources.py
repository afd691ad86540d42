"""Datasets anywhere: the one stream over HTTP, the Hub, fsspec URLs and pipe: commands, as over a local folder."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from vidalign.contract import EMPTY_PROMPT_EMBEDS, write_empty_prompt_embeds
from vidalign.data import StreamState, stream
from vidalign.errors import ConfigError, VidalignError
from vidalign.sources import resolve


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _indices(s):
    return [x["json"]["index"] for x in s]


@pytest.fixture
def served(tmp_path, synth, http_server):
    """A 10-sample synthetic dataset (4 tar shards) with an empty-caption file, on the HTTP server."""
    synth(http_server.root / "ds", n=10, per=3)
    write_empty_prompt_embeds(http_server.root / "ds", np.ones((3, 2), np.float32))
    return f"{http_server.url}/ds"


def test_http_root_streams_like_the_folder(served, http_server):
    local = _indices(stream(http_server.root / "ds", members=["json"], shuffle_shards=True, seed=4))
    remote = stream(served, members=["json"], shuffle_shards=True, seed=4)
    assert remote.urls[0] == f"{served}/data/default/train-00000-of-00004.tar"
    assert _indices(remote) == local and sorted(local) == list(range(10))
    assert np.load(__import__("io").BytesIO(remote.read_root_file(EMPTY_PROMPT_EMBEDS))).shape == (3, 2)
    assert remote.read_root_file("absent.npy") is None
    # each shard is one GET (no HEAD: the manifest knows its size)
    assert http_server.count("GET", "/data/default/") == 4 and http_server.count("HEAD", "/data/") == 0


def test_http_resume_skips_whole_shards_by_manifest_counts(served, http_server):
    full = _indices(stream(served, members=["json"]))
    before = http_server.count("GET", "/data/default/")
    rest = _indices(stream(served, members=["json"], state=StreamState(positions=[[0, 7]])))
    assert rest == full[7:]
    assert http_server.count("GET", "/data/default/") - before == 2  # shards 0-1 (6 samples) never requested


def test_http_shard_urls_and_split_over_workers(served, http_server):
    import torch

    pattern = f"{served}/data/default/train-{{00000..00003}}-of-00004.tar"
    seen = []
    for rank in range(2):
        loader = torch.utils.data.DataLoader(stream(pattern, rank=rank, world_size=2, members=["json"]),
                                             batch_size=None, num_workers=2)
        seen += [s["json"]["index"] for s in loader]
    assert sorted(seen) == list(range(10))


def test_http_errors_are_one_line(http_server):
    with pytest.raises(ConfigError, match="no manifest.json or README.md") as exc:
        stream(f"{http_server.url}/nothing")
    assert "\n" not in str(exc.value)
    with pytest.raises(VidalignError, match="shard not found"):
        list(stream(f"{http_server.url}/ds/data/default/train-00000-of-00001.tar"))


def test_hub_dataset_by_id_and_hf_url(served, http_server, hub_server):
    hub_server.create_repo("org/drops", "dataset", _files(http_server.root / "ds"))
    s = stream("org/drops", members=["json"])
    assert s.urls[0].startswith("hf://datasets/org/drops@") and len(s.urls) == 4  # pinned to a commit
    assert sorted(_indices(s)) == list(range(10))
    assert s.read_root_file(EMPTY_PROMPT_EMBEDS) is not None
    assert _indices(stream("hf://datasets/org/drops", members=["json"])) == _indices(s)
    with pytest.raises(ConfigError, match="no such Hub dataset"):
        stream("org/missing")


def test_card_only_root_is_listed_from_its_configs(served, http_server, hub_server):
    files = {k: v for k, v in _files(http_server.root / "ds").items() if k != "manifest.json"}
    hub_server.create_repo("org/cardonly", "dataset", files)
    assert sorted(_indices(stream("org/cardonly", members=["json"]))) == list(range(10))
    with pytest.raises(ConfigError, match="no split 'test'"):
        resolve("org/cardonly", split="test")


def test_fsspec_memory_and_file_urls(tmp_path, synth):
    import fsspec

    synth(tmp_path / "ds", n=5, per=2)
    fs = fsspec.filesystem("memory")
    for rel, data in _files(tmp_path / "ds").items():
        fs.pipe(f"/mem_ds/{rel}", data)
    assert sorted(_indices(stream("memory://mem_ds", members=["json"]))) == list(range(5))
    assert sorted(_indices(stream(f"file://{tmp_path / 'ds'}", members=["json"]))) == list(range(5))


def test_pipe_commands(tmp_path, synth):
    synth(tmp_path / "ds", n=5, per=2)
    shard = tmp_path / "ds" / "data" / "default"
    s = stream(f"pipe:cat {shard}/train-{{00000..00002}}-of-00003.tar", members=["json"])
    assert sorted(_indices(s)) == list(range(5))
    with pytest.raises(VidalignError, match="exited with status"):
        list(stream(f"pipe:cat {shard}/train-00000-of-00003.tar; exit 3"))


def test_cloud_protocol_without_its_package_names_the_extra():
    import importlib.util

    if importlib.util.find_spec("s3fs") is not None:
        pytest.skip("s3fs is installed")
    with pytest.raises(ConfigError, match=r"vidalign\[s3\]"):
        stream("s3://bucket/ds")


def test_parquet_config_over_http(tmp_path, http_server):
    from vidalign.builder import BuildOptions
    from vidalign.runner import run_build

    csv = tmp_path / "p.csv"
    csv.write_text("type,prompt_id,animal,object,scene,initial_SR,final_SR,prompt\n" + "".join(
        f"LR,{i}_LR,cat,box,a field,on the left of,to the right of,prompt {i}\n" for i in range(6)))
    run_build("dsr-prompts", {"from_csv": str(csv)},
              BuildOptions(out=http_server.root / "prompts", samples_per_shard=2, progress=False))
    shutil.rmtree(http_server.root / "prompts" / "previews", ignore_errors=True)
    rows = list(stream(f"{http_server.url}/prompts"))
    assert sorted(r["json"]["prompt"] for r in rows) == [f"prompt {i}" for i in range(6)]


def test_s3_root_streams_like_the_folder(tmp_path, synth, s3_server):
    """An object store (moto's S3 on 127.0.0.1 through s3fs): the root's manifest lists the shards, the split over
    workers and the resume by manifest counts are those of the local folder."""
    synth(tmp_path / "ds", n=10, per=3)
    write_empty_prompt_embeds(tmp_path / "ds", np.ones((3, 2), np.float32))
    s3_server.put(str(tmp_path / "ds"), "bucket/ds", recursive=True)
    local = _indices(stream(tmp_path / "ds", members=["json"], shuffle_shards=True, seed=2))
    remote = stream("s3://bucket/ds", members=["json"], shuffle_shards=True, seed=2)
    assert remote.urls[0] == "s3://bucket/ds/data/default/train-00000-of-00004.tar"
    assert _indices(remote) == local and sorted(local) == list(range(10))
    assert np.load(__import__("io").BytesIO(remote.read_root_file(EMPTY_PROMPT_EMBEDS))).shape == (3, 2)
    halves = [stream("s3://bucket/ds", members=["json"], rank=r, world_size=2) for r in (0, 1)]
    assert sorted(_indices(halves[0]) + _indices(halves[1])) == list(range(10))
