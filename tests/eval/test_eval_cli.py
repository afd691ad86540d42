"""`vidalign eval pisa|dsr|omniscore`, `vidalign segment` and `vidalign track` through vidalign.cli.main."""

from __future__ import annotations

import io
import json
import math
import pickle
import tarfile

import numpy as np
import pytest

from vidalign.cli import main
from vidalign.eval.dsr_prompts_csv import DSRPrompt, write_prompts_csv
from vidalign.eval.dsr_score import Track, TrackFrame, write_tracks
from vidalign.media import encode_mp4

H = 32


def _square_masks(t=4, shift=0, n=2):
    m = np.zeros((t, n, H, H), dtype=bool)
    m[:, 0, 0:4, 0:4] = True
    m[:, n - 1, 8:18, 6 + shift:16 + shift] = True
    return m


def _clip(root, name, mask, info=None):
    d = root / name
    d.mkdir(parents=True)
    np.savez_compressed(d / "mask.npz", mask=mask)
    if info is not None:
        (d / "clip_info.json").write_text(json.dumps(info))


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_pisa(tmp_path, capsys):
    gt, pd = tmp_path / "gt", tmp_path / "pd"
    for name, shift in (("clip_a", 0), ("clip_b", 2)):
        _clip(gt, name, _square_masks(), {"prompt": "A cup falls."})
        _clip(pd, name, _square_masks(shift=shift))
    code, out, _ = _run(capsys, "eval", "pisa", "--gt", str(gt), "--pred", str(pd), "--out", str(tmp_path / "r.json"))
    assert code == 0 and "L2↓" in out and "CD↓" in out and "IoU↑" in out
    res = json.loads((tmp_path / "r.json").read_text())
    assert set(res) == {"mean", "videos", "dropped"} and set(res["mean"]) == {"l2", "chamfer", "iou"}
    assert [v["name"] for v in res["videos"]] == ["clip_a", "clip_b"]
    assert set(res["videos"][0]) == {"name", "l2", "chamfer", "iou"}
    assert res["videos"][1]["l2"] == pytest.approx(2 / (2 * math.sqrt(2) * H))
    assert res["mean"]["iou"] == pytest.approx((1 + 8 / 12) / 2)

    # NaN (all-empty prediction) is written as null and left out of the mean
    _clip(pd, "clip_c", np.zeros((4, 2, H, H), bool))
    _clip(gt, "clip_c", _square_masks(), {"prompt": "p"})
    _run(capsys, "eval", "pisa", "--gt", str(gt), "--pred", str(pd), "--out", str(tmp_path / "r2.json"))
    res = json.loads((tmp_path / "r2.json").read_text())
    assert res["videos"][2]["l2"] is None and res["videos"][2]["iou"] == 0.0
    assert res["mean"]["l2"] == pytest.approx((0 + 2 / (2 * math.sqrt(2) * H)) / 2)


def test_eval_pisa_shards_and_errors(tmp_path, capsys):
    root = tmp_path / "ds"
    (root / "data" / "drop").mkdir(parents=True)
    with tarfile.open(root / "data" / "drop" / "test-00000-of-00001.tar", "w") as tf:
        buf = io.BytesIO()
        np.savez_compressed(buf, mask=_square_masks())
        for member, data in (("s1-00000000.mask.npz", buf.getvalue()), ("s1-00000000.json", b'{"prompt": "p"}')):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    pd = tmp_path / "pd"
    _clip(pd, "s1-00000000", _square_masks())
    code, out, _ = _run(capsys, "eval", "pisa", "--gt", str(root), "--pred", str(pd))
    assert code == 0 and "1 videos" in out

    _clip(tmp_path / "bad", "x", np.zeros((4, H), bool), {"prompt": "p"})
    code, _, err = _run(capsys, "eval", "pisa", "--gt", str(tmp_path / "bad"), "--pred", str(pd))
    assert code == 2 and "rank 2" in err and err.count("\n") == 1
    code, _, err = _run(capsys, "eval", "pisa", "--gt", str(root), "--pred", str(tmp_path / "nowhere"))
    assert code == 2 and "nowhere" in err and err.count("\n") == 1


def test_eval_pisa_config(tmp_path, capsys):
    lines = []
    for k, shift in enumerate((0, 2)):
        _clip(tmp_path / "gt", f"{k:02d}", _square_masks())
        _clip(tmp_path / "pd", f"{k:02d}", _square_masks(shift=shift)[:, 1])  # one object, saved squeezed
        lines.append({"gt_mask": str(tmp_path / "gt" / f"{k:02d}" / "mask.npz"), "gt_fps": 16,
                      "pd_mask": str(tmp_path / "pd" / f"{k:02d}" / "mask.npz"), "pd_fps": 16})
    lines.append({**lines[0], "pd_mask": str(tmp_path / "pd" / "99" / "mask.npz")})  # their eval.py skips it
    cfg = tmp_path / "sim.jsonl"
    cfg.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out, results = tmp_path / "res" / "sim.json", tmp_path / "res" / "results.txt"
    for _ in range(2):
        code, stdout, err = _run(capsys, "eval", "pisa", "--config", str(cfg), "--out", str(out), "--results",
                                 str(results), "--task-name", "sim_seen")
    assert code == 0 and "2 videos" in stdout and "1 video(s) dropped" in stdout and "line 3" in err
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["config"] for r in rows] == lines[:2] and set(rows[0]) == {"l2", "chamfer_distance", "iou", "config"}
    assert rows[1]["iou"] == pytest.approx(8 / 12)
    text = results.read_text()
    assert text.count("Task: sim_seen\n") == 2 and f"IoU: {(1 + 8 / 12) / 2}" in text  # appended, as theirs
    code, _, err = _run(capsys, "eval", "pisa", "--config", str(cfg), "--gt", str(tmp_path / "gt"))
    assert code == 2 and "not both" in err


def test_segment_gt_from_points(tmp_path, capsys, tiny_sam2):
    from PIL import Image

    real = tmp_path / "real_256"
    rng = np.random.default_rng(1)
    for name in ("0000", "0001"):
        d = real / name
        d.mkdir(parents=True)
        for i in range(4):  # the release's frames 00000.jpg ... beside movie.mp4 and clip_info.json
            Image.fromarray(rng.integers(0, 256, (H, H, 3), dtype=np.uint8)).save(d / f"{i:05d}.jpg")
        (d / "movie.mp4").write_bytes(encode_mp4(rng.integers(0, 256, (4, H, H, 3), dtype=np.uint8), 30))
        (d / "clip_info.json").write_text(json.dumps({"prompt": "A cup falls.", "points": [
            {"positive": [[4, 20]], "negative": [[28, 28]]}, {"positive": [[16, 6], [18, 9]], "negative": []}]}))
    (real / "0001" / "clip_info.json").write_text(json.dumps({"prompt": "no points"}))
    out = tmp_path / "gt_masks"
    code, stdout, err = _run(capsys, "segment", str(real), "--points", "--out", str(out), "--model", tiny_sam2,
                             "--device", "cpu")
    assert code == 1 and "segmented 1 of 2 clip(s)" in stdout and "failed (0001)" in err and "points" in err
    with np.load(out / "0000" / "mask.npz") as z:
        mask = z["mask"]
    assert mask.shape == (4, 2, H, H) and mask.dtype == bool
    assert json.loads((out / "0000" / "clip_info.json").read_text())["points"][1]["positive"] == [[16, 6], [18, 9]]
    # the same clip through the authors' mask config, then scored against itself through their metrics config
    mcfg = tmp_path / "mask.jsonl"
    mcfg.write_text(json.dumps({"video": str(real / "0000"), "annotation": str(real / "0000" / "clip_info.json"),
                                "mask": str(tmp_path / "again" / "0000" / "mask.npz")}) + "\n")
    code, stdout, _ = _run(capsys, "segment", "--config", str(mcfg), "--model", tiny_sam2, "--device", "cpu")
    assert code == 0 and "segmented 1 of 1" in stdout
    ecfg = tmp_path / "real.jsonl"
    ecfg.write_text(json.dumps({"gt_mask": str(out / "0000" / "mask.npz"), "gt_fps": 30, "gt_annotation":
                                str(real / "0000" / "clip_info.json"), "pd_mask": str(tmp_path / "again" / "0000" /
                                                                                       "mask.npz"), "pd_fps": 30}))
    code, stdout, _ = _run(capsys, "eval", "pisa", "--config", str(ecfg), "--out", str(tmp_path / "r.jsonl"))
    row = json.loads((tmp_path / "r.jsonl").read_text())
    assert code == 0 and row["iou"] == 1.0 and row["l2"] in (0.0, None)


def _prompts(tmp_path):
    rows = [DSRPrompt("LR", "1_LR", "cat", "box", "s", "on the left of", "to the right of", "p1"),
            DSRPrompt("RL", "2_RL", "cat", "box", "s", "on the right of", "to the left of", "p2")]
    return write_prompts_csv(tmp_path / "eval.csv", rows)


def _crossing(n=24):
    return tuple(TrackFrame(i, ("cat", "box"), ((100.0 + x, 100.0, 140.0 + x, 140.0), (100.0, 100.0, 140.0, 140.0)))
                 for i, x in enumerate(np.linspace(-80, 80, n)))


def test_eval_dsr(tmp_path, capsys):
    csv = _prompts(tmp_path)
    tracks = [Track("1_LR_s0.mp4", "1_LR", _crossing()), Track("1_LR_s1.mp4", "1_LR", ()),
              Track("2_RL_s0.mp4", "2_RL", _crossing())]
    path = write_tracks(tmp_path / "t.jsonl", tracks)
    code, out, _ = _run(capsys, "eval", "dsr", "--tracks", str(path), "--prompts", str(csv),
                        "--out", str(tmp_path / "d.json"))
    assert code == 0 and "Acc@0.5 = 0.333 over 3 videos (1 invalid)" in out
    assert any(line.startswith("LR") for line in out.splitlines())
    assert any(line.startswith("RL") for line in out.splitlines())
    res = json.loads((tmp_path / "d.json").read_text())
    assert set(res) == {"acc", "videos"} and list(res["acc"]) == [f"0.{i}" for i in range(10)]
    assert res["acc"]["0.0"] == pytest.approx(2 / 3) and res["acc"]["0.5"] == pytest.approx(1 / 3)
    assert res["videos"][0]["dsr"] >= 0.99 and res["videos"][1]["dsr"] is None and res["videos"][2]["dsr"] <= 0.01
    assert set(res["videos"][0]) == {"video", "prompt_id", "dsr"}

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "v", "prompt_id": "1_LR", "frames": [{"index": 0, "labels": ["cat"], "boxes": [[1, 2]]}]}\n')
    code, _, err = _run(capsys, "eval", "dsr", "--tracks", str(bad), "--prompts", str(csv))
    assert code == 2 and "bad.jsonl:1" in err and "frames[0].boxes[0]" in err and err.count("\n") == 1


def test_eval_dsr_pickles(tmp_path, capsys):
    csv = _prompts(tmp_path)
    folder = tmp_path / "pkl"
    (folder / "2_RL").mkdir(parents=True)
    items = [(f.index, list(f.labels), np.asarray(f.boxes, np.float32)) for f in _crossing()]
    (folder / "1_LR_seed0.pkl").write_bytes(pickle.dumps(items))
    (folder / "2_RL" / "3.pkl").write_bytes(pickle.dumps(items))
    code, _, err = _run(capsys, "eval", "dsr", "--tracks", str(folder), "--prompts", str(csv))
    assert code == 2 and "--allow-pickle" in err
    code, out, _ = _run(capsys, "eval", "dsr", "--tracks", str(folder), "--prompts", str(csv), "--allow-pickle",
                        "--out", str(tmp_path / "d.json"))
    res = json.loads((tmp_path / "d.json").read_text())
    assert [(v["video"], v["prompt_id"]) for v in res["videos"]] == [("1_LR_seed0.pkl", "1_LR"), ("2_RL/3.pkl", "2_RL")]
    assert res["videos"][0]["dsr"] >= 0.99 and res["videos"][1]["dsr"] <= 0.01


def test_eval_dsr_authors_seeds(tmp_path, capsys):
    """detection.py writes <prompt_id>_F81_seed<NN>.mp4.pkl for 10 seeds; calc_dsr_score.py scores 00-04."""
    csv = _prompts(tmp_path)
    det = tmp_path / "eval_30_det"
    det.mkdir()
    good = [[f.index, list(f.labels), np.asarray(f.boxes, dtype=np.int64)] for f in _crossing()]
    for seed in range(10):
        with open(det / f"1_LR_F81_seed{seed:02d}.mp4.pkl", "wb") as fh:
            pickle.dump(good if seed < 5 else [], fh)  # seeds 05-09 were rejected by the frame rules
    code, out, _ = _run(capsys, "eval", "dsr", "--tracks", str(det), "--prompts", str(csv), "--allow-pickle",
                        "--seeds", "authors")
    assert code == 0 and "scoring 5 of 10 videos (seeds 00, 01, 02, 03, 04)" in out and "(0 invalid)" in out
    code, out, _ = _run(capsys, "eval", "dsr", "--tracks", str(det), "--prompts", str(csv), "--allow-pickle")
    assert code == 0 and "over 10 videos (5 invalid)" in out
    code, out, _ = _run(capsys, "eval", "dsr", "--tracks", str(det), "--prompts", str(csv), "--allow-pickle",
                        "--seeds", "3-5,9")
    assert "scoring 4 of 10" in out and "(2 invalid)" in out
    code, _, err = _run(capsys, "eval", "dsr", "--tracks", str(det), "--prompts", str(csv), "--seeds", "x-y",
                        "--allow-pickle")
    assert code == 2 and "--seeds" in err


def test_eval_omniscore(tmp_path, capsys):
    from vidalign.eval.omniscore import DIMENSIONS

    folder = tmp_path / "vb"
    folder.mkdir()
    mins = {"subject_consistency": 16 * 0.1462, "temporal_flickering": 0.6293, "motion_smoothness": 0.706}
    for dim in DIMENSIONS:
        value = 0.364 if dim == "overall_consistency" else mins.get(dim, 0.0)
        items = [{"video_path": "/x/v0.mp4", "video_results": value}]
        (folder / f"{dim}_eval_results.json").write_text(json.dumps({dim: [value, items]}))
    code, out, _ = _run(capsys, "eval", "omniscore", "--vbench", str(folder), "--out", str(tmp_path / "o.json"))
    assert code == 0 and "Quality" in out
    res = json.loads((tmp_path / "o.json").read_text())
    assert res["videos"][0]["video"] == "/x/v0.mp4"
    assert res["mean"]["omniscore"] == pytest.approx(0.2) and res["mean"]["semantic"] == pytest.approx(1.0)
    assert set(res["videos"][0]) == {"video", "quality", "semantic", "omniscore"}
    (folder / "dynamic_degree_eval_results.json").unlink()
    code, _, err = _run(capsys, "eval", "omniscore", "--vbench", str(folder))
    assert code == 2 and "dynamic_degree_eval_results.json" in err


def test_segment_then_pisa(tmp_path, capsys, tiny_sam2):
    gt, videos = tmp_path / "gt", tmp_path / "videos"
    videos.mkdir()
    rng = np.random.default_rng(0)
    _clip(gt, "clip_a", _square_masks(), {"prompt": "A cup falls."})
    _clip(gt, "clip_b", _square_masks(), {"prompt": "A toy falls.", "points": [{"positive": [[2, 2]]},
                                                                               {"positive": [[11, 12]]}]})
    (videos / "clip_a.mp4").write_bytes(encode_mp4(rng.integers(0, 256, (4, 48, 48, 3), dtype=np.uint8), 16))
    (videos / "clip_b").mkdir()
    (videos / "clip_b" / "gen.mp4").write_bytes(encode_mp4(rng.integers(0, 256, (4, H, H, 3), dtype=np.uint8), 16))
    out_dir = tmp_path / "masks"
    code, out, _ = _run(capsys, "segment", str(videos), "--seed-from", str(gt), "--out", str(out_dir),
                        "--model", tiny_sam2, "--device", "cpu")
    assert code == 0 and "segmented 2 video(s)" in out
    with np.load(out_dir / "clip_a" / "mask.npz") as z:
        mask = z["mask"]
    assert mask.shape == (4, 2, H, H) and mask.dtype == bool  # resized to the GT resolution
    assert (mask[0] == _square_masks()[0]).mean() > 0.95  # seeded with the GT frame-0 masks
    info = json.loads((out_dir / "clip_b" / "clip_info.json").read_text())
    assert info["seed"] == "points" and info["video"] == "clip_b/gen.mp4"
    code, out, _ = _run(capsys, "eval", "pisa", "--gt", str(gt), "--pred", str(out_dir))
    assert code == 0 and "2 videos" in out

    (videos / "stray.mp4").write_bytes((videos / "clip_a.mp4").read_bytes())
    code, _, err = _run(capsys, "segment", str(videos), "--seed-from", str(gt), "--out", str(out_dir),
                        "--model", tiny_sam2)
    assert code == 2 and "'stray.mp4'" in err and err.count("\n") == 1


def test_track_then_dsr(tmp_path, capsys, tiny_sam2, tiny_grounding_dino):
    csv = _prompts(tmp_path)
    videos = tmp_path / "videos"
    videos.mkdir()
    rng = np.random.default_rng(0)
    for name in ("1_LR_s0.mp4", "2_RL_s1.mp4"):
        (videos / name).write_bytes(encode_mp4(rng.integers(0, 256, (4, H, H, 3), dtype=np.uint8), 16))
    tracks = tmp_path / "tracks.jsonl"
    code, out, _ = _run(capsys, "track", str(videos), "--prompts", str(csv), "--out", str(tracks),
                        "--detector", tiny_grounding_dino, "--model", tiny_sam2, "--device", "cpu")
    assert code == 0 and "tracked 2 video(s)" in out
    records = [json.loads(line) for line in tracks.read_text().splitlines()]
    assert [(r["video"], r["prompt_id"]) for r in records] == [("1_LR_s0.mp4", "1_LR"), ("2_RL_s1.mp4", "2_RL")]
    assert all(r["frames"] == [] and "valid frames" in r["rejected"] for r in records)  # 4 frames < 20 valid
    code, out, _ = _run(capsys, "eval", "dsr", "--tracks", str(tracks), "--prompts", str(csv))
    assert code == 0 and "(2 invalid)" in out

    (videos / "unknown.mp4").write_bytes((videos / "1_LR_s0.mp4").read_bytes())
    code, _, err = _run(capsys, "track", str(videos), "--prompts", str(csv), "--out", str(tracks),
                        "--detector", tiny_grounding_dino, "--model", tiny_sam2)
    assert code == 2 and "unknown.mp4" in err and err.count("\n") == 1


def test_track_keeps_each_track_skips_bad_videos_and_resumes(tmp_path, capsys, tiny_sam2, tiny_grounding_dino):
    csv = _prompts(tmp_path)
    videos = tmp_path / "videos"
    videos.mkdir()
    rng = np.random.default_rng(1)
    (videos / "1_LR_s0.mp4").write_bytes(encode_mp4(rng.integers(0, 256, (4, H, H, 3), dtype=np.uint8), 16))
    (videos / "2_RL_s1.mp4").write_bytes(b"not a video at all")
    tracks = tmp_path / "tracks.jsonl"
    args = ["track", str(videos), "--prompts", str(csv), "--out", str(tracks), "--detector", tiny_grounding_dino,
            "--model", tiny_sam2, "--device", "cpu"]
    code, _, err = _run(capsys, *args)
    assert code == 2 and "2_RL_s1.mp4" in err and "1 track(s) written" in err and "--on-error skip" in err
    assert [json.loads(x)["video"] for x in tracks.read_text().splitlines()] == ["1_LR_s0.mp4"]  # kept, not lost
    code, out, err = _run(capsys, *args, "--resume", "--on-error", "skip")
    assert code == 0 and "tracked 0 video(s) (1 already in" in out and "1 skipped" in out
    assert "2_RL_s1.mp4" in (tmp_path / "tracks.jsonl.skipped.jsonl").read_text()
    with tracks.open("a") as fh:
        fh.write('{"video": "torn')  # a run killed mid-line
    code, out, _ = _run(capsys, *args, "--resume", "--on-error", "skip")
    assert code == 0 and tracks.read_text().count("\n") == 1 and tracks.read_text().endswith("\n")
