"""``vidalign push`` against a Hub-protocol server on 127.0.0.1 (tests/hub_server.py): the real huggingface_hub
client creates the repo, preuploads, uploads LFS objects and commits; ``datasets.load_dataset`` reads it back."""

import io
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from hub_server import point_clients_at
from PIL import Image

from vidalign.builder import BuildOptions
from vidalign.errors import VidalignError
from vidalign.hub import card_references, local_paths, portable_text, push, upload_files
from vidalign.runner import run_build


@pytest.fixture
def pub_ds(tmp_path):
    """A folder with a media config (synthetic, with video), a preview, and files that must stay home (a
    temporary, a lock, a hidden cache; stray shards are refused by `verify` before any push)."""
    out = tmp_path / "pub"
    run_build("synthetic", {"num_samples": 5, "video": True}, BuildOptions(out=out, samples_per_shard=2,
                                                                            progress=False))
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(buf, format="PNG")
    (out / "previews").mkdir(exist_ok=True)
    (out / "previews" / "sheet.png").write_bytes(buf.getvalue())
    (out / "README.md.tmp").write_text("a card being written")
    (out / "notes.lock").write_text("")
    (out / ".cache" / "huggingface").mkdir(parents=True)
    (out / ".cache" / "huggingface" / "state.json").write_text("{}")
    return out


@pytest.fixture
def prompts_ds(tmp_path):
    """A prompts dataset (Parquet) whose builder writes ``prompts.csv`` beside the data and names it in the card."""
    out = tmp_path / "prompts"
    run_build("dsr-prompts", {"n": 6, "types": ["LR"]}, BuildOptions(out=out, seed=1, progress=False))
    return out


EXPECTED = ["README.md", "data/default/train-00000-of-00003.tar", "data/default/train-00001-of-00003.tar",
            "data/default/train-00002-of-00003.tar", "manifest.json", "previews/sheet.png"]


def test_upload_files_follow_manifest_and_card(pub_ds, prompts_ds):
    card = (pub_ds / "README.md").read_text()
    assert str(pub_ds) not in card and local_paths(card) == []
    assert "--out pub" in card  # the build command, with the folder as its name, not its absolute path
    assert upload_files(pub_ds) == EXPECTED
    card = (prompts_ds / "README.md").read_text()
    assert "`prompts.csv`" in card and str(prompts_ds) not in card and local_paths(card) == []
    assert card_references(prompts_ds) == (["manifest.json", "prompts.csv"], [])
    assert "prompts.csv" in upload_files(prompts_ds)
    assert "data/prompts/train-00000-of-00001.parquet" in upload_files(prompts_ds)


def test_push_is_byte_identical_and_loads(pub_ds, hub_server, tmp_path):
    import datasets

    files = push(pub_ds, "org/pub")
    assert files == EXPECTED
    got = hub_server.files("org/pub")
    assert sorted(got) == sorted(EXPECTED + [".gitattributes"])
    for rel in EXPECTED:
        assert got[rel] == (pub_ds / rel).read_bytes(), rel
    # binary shards and the preview went through the LFS batch API; the card and manifest inline
    assert {p for p in hub_server.lfs_paths("org/pub") if p.startswith("data/")} == set(EXPECTED[1:4])
    assert "README.md" not in hub_server.lfs_paths("org/pub")
    puts = hub_server.count("PUT", "/_lfs/objects/")
    assert puts == 4  # three shards and the preview

    remote = datasets.load_dataset("org/pub", "default", split="train", cache_dir=str(tmp_path / "c1"))
    local = datasets.load_dataset(str(pub_ds), "default", split="train", cache_dir=str(tmp_path / "c2"))
    assert remote.num_rows == local.num_rows == 5
    for col in ("json", "depth.npy.gz"):
        r, loc = remote.with_format("numpy")[col], local.with_format("numpy")[col]
        assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(r, loc)) if col != "json" \
            else list(r) == list(loc)

    # a second push sends nothing again: no LFS upload, no new commit
    commits = hub_server.commits("org/pub")
    push(pub_ds, "org/pub")
    assert hub_server.count("PUT", "/_lfs/objects/") == puts and hub_server.commits("org/pub") == commits


def test_push_parquet_config_with_the_files_its_card_names(prompts_ds, hub_server, tmp_path):
    import datasets

    files = push(prompts_ds, "org/prompts")
    got = hub_server.files("org/prompts")
    assert "prompts.csv" in files and all(got[f] == (prompts_ds / f).read_bytes() for f in files)
    prompts = datasets.load_dataset("org/prompts", "prompts", split="train", cache_dir=str(tmp_path / "c1"))
    assert prompts.num_rows == 6 and "prompt" in prompts.column_names


def test_empty_caption_file_is_pushed_and_streams_back(tiny_ds, hub_server):
    """A latent dataset's root file (the encoded empty caption) goes up with the data, and a trainer streaming the
    dataset from the Hub finds it there."""
    from vidalign.contract import EMPTY_PROMPT_EMBEDS, empty_caption_embeds, write_empty_prompt_embeds
    from vidalign.data import stream

    empty = np.arange(6, dtype=np.float32).reshape(3, 2)
    write_empty_prompt_embeds(tiny_ds, empty)
    assert EMPTY_PROMPT_EMBEDS in upload_files(tiny_ds)
    push(tiny_ds, "org/latents")
    assert hub_server.files("org/latents")[EMPTY_PROMPT_EMBEDS] == (tiny_ds / EMPTY_PROMPT_EMBEDS).read_bytes()
    np.testing.assert_array_equal(empty_caption_embeds(None, stream("org/latents"), 0.2), empty)


def test_interrupted_push_resumes(tiny_ds, hub_server):
    hub_server.fail_next["POST /api/datasets/org/tiny/commit/"] = 500
    with pytest.raises(VidalignError, match="rerun the same `vidalign push` to resume"):
        push(tiny_ds, "org/tiny")
    puts = hub_server.count("PUT", "/_lfs/objects/")
    assert puts == 3 and hub_server.commits("org/tiny") == ["initial commit"]
    push(tiny_ds, "org/tiny")  # the LFS objects are on the server: only the commit is sent
    assert hub_server.count("PUT", "/_lfs/objects/") == puts
    got = hub_server.files("org/tiny")
    assert all(got[f] == (tiny_ds / f).read_bytes() for f in upload_files(tiny_ds))
    push(tiny_ds, "org/tiny", revision="v1")  # --revision: the branch is created from main, nothing re-sent
    assert hub_server.files("org/tiny", revision="v1") == got and hub_server.count("PUT", "/_lfs/objects/") == puts


def test_push_fails_fast_without_token_or_network(tiny_ds, hub_server, monkeypatch, tmp_path):
    point_clients_at(monkeypatch, hub_server.url, None, tmp_path)
    with pytest.raises(VidalignError, match="no Hugging Face token.*HF_TOKEN"):
        push(tiny_ds, "org/x")
    with pytest.raises(VidalignError, match="rejected the Hugging Face token"):
        push(tiny_ds, "org/x", token="hf_wrong")
    assert not any(m in ("POST", "PUT") for m, _ in hub_server.requests)  # nothing was created or uploaded

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    point_clients_at(monkeypatch, dead, "hf_any", tmp_path)
    t0 = time.perf_counter()
    with pytest.raises(VidalignError, match="cannot reach the Hugging Face Hub at http://127.0.0.1"):
        push(tiny_ds, "org/x")
    assert time.perf_counter() - t0 < 10


def test_push_cli_one_line_errors(tiny_ds, hub_server, tmp_path):
    env = {**os.environ, **hub_server.env(), "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_TOKEN")
    r = subprocess.run([sys.executable, "-m", "vidalign.cli", "push", str(tiny_ds), "--repo-id", "org/cli"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "hf auth login" in r.stderr
    r = subprocess.run([sys.executable, "-m", "vidalign.cli", "push", str(tiny_ds), "--repo-id", "org/cli"],
                       capture_output=True, text=True, env={**env, "HF_TOKEN": hub_server.token})
    assert r.returncode == 0, r.stderr
    assert f"{hub_server.url}/datasets/org/cli" in r.stdout
    assert hub_server.files("org/cli")["manifest.json"] == (tiny_ds / "manifest.json").read_bytes()


def test_card_with_local_path_or_missing_link_is_refused(tiny_ds):
    card = tiny_ds / "README.md"
    text = card.read_text()
    card.write_text(text + "\nBuilt from /home/someone/videos/raw.\n")
    with pytest.raises(VidalignError, match="local path '/home/someone/videos/raw'"):
        push(tiny_ds, "org/x", dry_run=True)
    card.write_text(text + "\n![plot](previews/missing.png)\n")
    with pytest.raises(VidalignError, match="links 'previews/missing.png'"):
        push(tiny_ds, "org/x", dry_run=True)


def test_portable_text(tmp_path):
    folder = tmp_path / "ds"
    text = (f"vidalign build x --out {folder} --from-csv /data/eval/eval30.csv\n"
            f"see {folder}/previews/a.png, https://huggingface.co/datasets/a/b and 1/2 of A/B; C:\\Users\\me\\x.mp4")
    out = portable_text(text, folder)
    assert out == ("vidalign build x --out ds --from-csv eval30.csv\n"
                   "see ds/previews/a.png, https://huggingface.co/datasets/a/b and 1/2 of A/B; x.mp4")
    assert local_paths(out) == []
