"""The test Hub (tests/hub_server.py) serves what other tests rely on: reads through ``hf://`` with ranges,
``load_dataset(..., streaming=True)``, and model repositories written with huggingface_hub's own calls."""

import json

import pytest


@pytest.fixture
def seeded(hub_server):
    """A dataset repository with a card (one JSON-lines config) and a 3000-byte binary blob, written directly."""
    rows = [{"prompt": f"a cat {i}", "score": i / 10} for i in range(5)]
    card = "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/*.jsonl\n---\n# t\n"
    hub_server.create_repo("org/seeded", files={
        "README.md": card.encode(), "data/rows.jsonl": "".join(json.dumps(r) + "\n" for r in rows).encode(),
        "blob.bin": bytes(range(256)) * 11 + bytes(184)})
    return rows


def test_hf_filesystem_ranges_and_listing(seeded, hub_server):
    from huggingface_hub import HfFileSystem

    fs = HfFileSystem(endpoint=hub_server.url)
    assert sorted(fs.ls("datasets/org/seeded", detail=False)) == [
        "datasets/org/seeded/.gitattributes", "datasets/org/seeded/README.md", "datasets/org/seeded/blob.bin",
        "datasets/org/seeded/data"]
    assert fs.glob("datasets/org/seeded/data/*.jsonl") == ["datasets/org/seeded/data/rows.jsonl"]
    info = fs.info("datasets/org/seeded/blob.bin")
    assert info["size"] == 3000 and info["lfs"] is not None  # binary → LFS, as on the Hub
    with fs.open("hf://datasets/org/seeded/blob.bin", "rb", block_size=64) as f:
        f.seek(1000)
        assert f.read(10) == (bytes(range(256)) * 11)[1000:1010]
    assert len(hub_server.ranges) == 1 and hub_server.ranges[0].startswith("bytes=1000-")  # a ranged GET
    with fs.open("hf://datasets/org/seeded/blob.bin", "rb", block_size=0) as f:  # streaming read
        assert f.read() == bytes(range(256)) * 11 + bytes(184)


def test_load_dataset_from_hub_streaming(seeded, hub_server):
    import datasets

    ds = datasets.load_dataset("org/seeded", split="train", streaming=True)
    assert [r["prompt"] for r in ds] == [r["prompt"] for r in seeded]
    ds = datasets.load_dataset("org/seeded", split="train")
    assert ds["score"] == [r["score"] for r in seeded]


def test_model_repo_upload_and_card(hub_server, tmp_path):
    from huggingface_hub import HfApi, ModelCard, hf_hub_download

    api = HfApi()
    api.create_repo("org/tiny-model")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text('{"hidden_size": 8}')
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x00" * 2048)
    (tmp_path / "m" / "README.md").write_text("---\nlibrary_name: peft\ntags: [dpo]\n---\n# tiny\n")
    api.upload_folder(repo_id="org/tiny-model", folder_path=tmp_path / "m")
    assert hub_server.lfs_paths("org/tiny-model", "model") == {"model.safetensors"}
    info = api.model_info("org/tiny-model")
    assert info.library_name == "peft" and {s.rfilename for s in info.siblings} >= {"config.json", "README.md"}
    assert ModelCard.load("org/tiny-model").data.tags == ["dpo"]
    path = hf_hub_download("org/tiny-model", "model.safetensors")
    assert open(path, "rb").read() == b"\x00" * 2048
    with pytest.raises(Exception, match="Repository Not Found|404"):
        api.model_info("org/absent")
