import json

import numpy as np
import pytest
from PIL import Image

from vidalign.builder import BuildOptions
from vidalign.cli import main
from vidalign.errors import ConfigError
from vidalign.media import decode_mp4
from vidalign.runner import run_build
from vidalign.shards import iter_tar_samples

TINY = {"resolution": 64, "frames": 8}


def build(out, n=3, seed=0, **args):
    return run_build("kubric-drop", {"num_samples": n, **TINY, **args},
                     BuildOptions(out=out, seed=seed, samples_per_shard=2, progress=False))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("kd") / "ds"
    build(out)
    return out


def shard_samples(folder, config="train"):
    return [s for p in sorted((folder / "data" / config).glob("*.tar")) for s in iter_tar_samples(p)]


def test_members_shapes_and_metadata(dataset):
    samples = shard_samples(dataset)
    assert len(samples) == 3
    for s in samples:
        assert {"mp4", "mask.npz", "depth.npy", "json"} <= set(s)
        mask, depth, meta = s["mask.npz"]["mask"], s["depth.npy"], s["json"]
        n = len(meta["objects"])
        assert mask.dtype == bool and mask.shape == (8, n, 64, 64)
        assert depth.dtype == np.float16 and depth.shape == (8, 64, 64)
        assert 0.05 < float(depth.min()) and float(depth.max()) <= 100  # metres (the sky: the far clip distance)
        assert s["mp4"][4:8] == b"ftyp"
        assert meta["fps"] == 16 and meta["num_frames"] == 8 and meta["config"] == "train"
        assert meta["objects"][-1]["role"] == "dropper" and meta["primary_object"] == n - 1
        assert meta["scene_config"]["split"] == "seen" and meta["prompt"].endswith(".")
        assert np.array(meta["objects"][0]["trajectory"]["positions"]).shape == (8, 3)
    assert len({s["json"]["seed"] for s in samples}) == 3


def test_loads_back_with_datasets(dataset):
    from vidalign.data import load

    ds = load(dataset, "train", split="train", video_decode=False)
    assert ds.num_rows == 3 and {"mp4", "mask.npz", "depth.npy.gz", "json"} <= set(ds.column_names)
    row = ds[0]
    assert row["depth.npy.gz"].dtype == np.float16 and row["depth.npy.gz"].shape == (8, 64, 64)
    assert row["mask.npz"]["mask"].dtype == bool and row["mask.npz"]["mask"].shape[2:] == (64, 64)
    assert isinstance(row["json"]["prompt"], str) and row["prompt.txt"] == row["json"]["prompt"]
    assert row["seed.json"] == row["json"]["seed"] and row["split.json"]["objects"] == "seen"
    assert ds.filter(lambda r: r["config.txt"] == "train").num_rows == 3


def test_same_seed_same_clips_other_seed_differs(dataset, tmp_path):
    again = tmp_path / "again"
    build(again)
    shards = sorted(p.relative_to(dataset) for p in (dataset / "data").rglob("*.tar"))
    assert shards == sorted(p.relative_to(again) for p in (again / "data").rglob("*.tar"))
    for rel in shards:
        a_samples = list(iter_tar_samples(dataset / rel, decode=False))
        b_samples = list(iter_tar_samples(again / rel, decode=False))
        assert [s["__key__"] for s in a_samples] == [s["__key__"] for s in b_samples]
        for a, b in zip(a_samples, b_samples):
            for member in ("json", "mask.npz", "depth.npy"):  # scene, trajectories, masks, depth: byte-identical
                assert a[member] == b[member], member
            # libx264's mb-tree reads uninitialised memory, so H.264 bytes can differ between runs with identical
            # input frames; the decoded videos agree
            fa, fb = decode_mp4(a["mp4"])[0].astype(int), decode_mp4(b["mp4"])[0].astype(int)
            assert fa.shape == fb.shape and np.abs(fa - fb).mean() < 1.0
    other = tmp_path / "other"
    build(other, n=1, seed=5)
    first = shard_samples(other)[0]
    assert first["json"]["seed"] != shard_samples(dataset)[0]["json"]["seed"]


def test_cli_test_unseen_split(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["build", "kubric-drop", "--out", str(out), "--num-samples", "2", "--seed", "3", "--split",
                 "test_unseen", "--resolution", "64", "--frames", "8", "--fps", "16", "--renderer", "pybullet",
                 "--workers", "1", "--no-progress"])
    assert code == 0
    shards = list((out / "data" / "test_unseen").glob("test-*.tar"))
    assert shards
    metas = [s["json"] for p in shards for s in iter_tar_samples(p)]
    assert len(metas) == 2 and all(m["scene_config"]["split"] == "unseen" for m in metas)
    assert all(m["split"]["background"] == "unseen" for m in metas)
    assert "test_unseen" in (out / "README.md").read_text()


def test_bad_scene_config_is_refused_with_the_field(tmp_path, capsys):
    bad = tmp_path / "scene.json"
    bad.write_text(json.dumps({"spawn_min": [-1, -1, -0.5]}))
    with pytest.raises(ConfigError, match="spawn_min"):
        build(tmp_path / "x", n=1, scene_config=str(bad))
    code = main(["build", "kubric-drop", "--out", str(tmp_path / "y"), "--frames", "0"])
    assert code == 2 and "num_frames" in capsys.readouterr().err


def test_export_pisabench_layout(dataset, tmp_path, capsys):
    out = tmp_path / "pisa"
    assert main(["export", "pisabench", str(dataset), str(out)]) == 0
    clips = sorted(p.name for p in out.iterdir())
    assert clips == ["00", "01", "02"]
    meta = shard_samples(dataset)[0]["json"]
    clip = out / "00"
    expected = {f"rgba_{i:05d}.jpg" for i in range(8)} | {"movie.gif", "mask.npz", "clip_info.json"}
    assert {p.name for p in clip.iterdir()} == expected
    with np.load(clip / "mask.npz", allow_pickle=False) as z:
        assert z.files == ["mask"]
        mask = z["mask"]
    assert mask.dtype == bool and mask.shape == (8, len(meta["objects"]), 64, 64)
    assert np.array_equal(mask, shard_samples(dataset)[0]["mask.npz"]["mask"])
    with Image.open(clip / "rgba_00000.jpg") as im:
        assert im.mode == "RGB" and im.size == (64, 64)
    with Image.open(clip / "movie.gif") as gif:
        assert gif.n_frames == 8 and gif.size == (64, 64)
    info = json.loads((clip / "clip_info.json").read_text())
    assert info["prompt"] == meta["prompt"]
    assert main(["export", "pisabench", str(dataset), str(out)]) == 2  # refuses a non-empty OUT


def test_preview(dataset, tmp_path):
    png, gif = tmp_path / "p.png", tmp_path / "p.gif"
    assert main(["preview", str(dataset), "--out", str(png), "--clips", "2", "--columns", "3"]) == 0
    from vidalign.simulation.preview import GROUP_GAP, TIME_H, TITLE_H

    with Image.open(png) as im:  # per clip: a strip naming the objects, 3 frames, their times
        assert im.size == (3 * 64 + 2 * 2, 2 * (TITLE_H + 64 + TIME_H) + GROUP_GAP)
    assert main(["preview", str(dataset), "--out", str(gif), "--clips", "3"]) == 0
    with Image.open(gif) as im:
        assert im.n_frames == 8 and im.size == (3 * 64 + 2 * 2, 64)
    assert (dataset / "previews" / "kubric_drop.png").exists()  # written by the builder's finalize


def test_export_groups_configs_like_pisabench(tmp_path):
    from vidalign.simulation.pisabench import export_pisabench

    folder = tmp_path / "bench"
    build(folder, n=2, split="test_seen")
    build(folder, n=1, split="test_unseen")
    written = export_pisabench(folder, tmp_path / "out", limit=1)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == ["seen/00", "unseen/00"]


def test_photoreal_renderer_threads_follow_the_worker_processes():
    """With --workers N every worker process renders on one thread (Dr.Jit and OIDN would each start a thread per
    core in every worker); a one-process build uses all cores; --render-threads overrides both."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from vidalign.datasets_builders.kubric_drop import KubricDropBuilder, worker_threads

    args = KubricDropBuilder.Args(renderer="mitsuba", render_preset="fast", resolution=16, frames=1)
    assert args.renderer_options() == {"preset": "fast", "threads": None}
    full = KubricDropBuilder.Args(renderer="mitsuba", render_preset="fast", static_background=False)
    assert full.renderer_options() == {"preset": "fast", "threads": None, "static_spp": 0}
    assert KubricDropBuilder.Args(renderer="kubric", render_threads=4).renderer_options()["threads"] == 4
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:  # as the local executor starts workers
        assert pool.submit(worker_threads).result() == 1
        assert pool.submit(worker_threads, 3).result() == 3
        assert worker_threads() == 1  # the calling process, while its pool lives (it may render tasks too)
    assert worker_threads() is None
    with pytest.raises(ConfigError, match="render_threads"):
        KubricDropBuilder.Args(render_threads=0)
