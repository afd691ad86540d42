"""The released VideoDPO layout: parsing, `vidalign import videodpo` → `vidalign export videodpo` round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vidalign.builder import BuildOptions
from vidalign.cli import main
from vidalign.data import load
from vidalign.datasets_builders.videodpo import (
    layout_entries,
    read_layout,
    resolve_clip_path,
    scores_from_product_and_gap,
)
from vidalign.errors import InputError
from vidalign.media import encode_mp4
from vidalign.runner import run_build

REMOTE = "/home/rliuay/haoyu/dataset/vidpro-dpo-dataset"
CAPTIONS = ["a corgi running on a beach", "timelapse of clouds over a mountain", "a robot painting a portrait"]
SCORES = [(0.81, 0.52), (0.74, 0.61), None]  # the third pair has no score fields


def make_layout(root: Path, pair_edit=None, meta_edit=None) -> dict[str, bytes]:
    """A 3-pair VideoDPO folder with the authors' absolute clip paths; returns {relative path: bytes}."""
    files, metadata, pairs = {}, [], []
    for k, caption in enumerate(CAPTIONS):
        idx = k + 1
        for sub, shade in (("winvideos", 200), ("losevideos", 40)):
            rel = f"{sub}/{idx:06d}.mp4"
            # the release's clips: 16 frames (VideoCrafter2's video_length), 1.6 s at 10 fps
            data = encode_mp4(np.full((16, 16, 16, 3), shade - 10 * k, dtype=np.uint8), fps=10)
            (root / sub).mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
            files[rel] = data
            metadata.append({"basic": {"clip_duration": 1.6, "clip_path": f"{REMOTE}/{rel}", "globalidx": idx},
                             "misc": {"frame_caption": [caption]}})
        pair = {"video1": 2 * k, "video2": 2 * k + 1, "label": 0, "frame_caption": caption}
        if SCORES[k]:
            s_w, s_l = SCORES[k]
            pair.update(score=s_w * s_l, diff_score=s_w - s_l)
        pairs.append(pair)
    if pair_edit:
        pair_edit(pairs)
    if meta_edit:
        meta_edit(metadata)
    (root / "metadata.json").write_text(json.dumps(metadata))
    (root / "pair.json").write_text(json.dumps(pairs))
    return files


def test_resolve_clip_path_by_longest_existing_suffix(tmp_path):
    (tmp_path / "winvideos").mkdir()
    (tmp_path / "winvideos" / "000001.mp4").write_bytes(b"x")
    assert resolve_clip_path("/data/vidpro-dpo-dataset/winvideos/000001.mp4", tmp_path) == \
        tmp_path / "winvideos" / "000001.mp4"
    assert resolve_clip_path("winvideos/000001.mp4", tmp_path) == tmp_path / "winvideos" / "000001.mp4"
    assert resolve_clip_path("C:\\data\\winvideos\\000001.mp4", tmp_path) == tmp_path / "winvideos" / "000001.mp4"
    assert resolve_clip_path("../winvideos/000001.mp4", tmp_path) is None
    assert resolve_clip_path("/data/losevideos/000001.mp4", tmp_path) is None


def test_scores_recovered_from_product_and_gap():
    s_w, s_l = scores_from_product_and_gap(0.81 * 0.52, 0.81 - 0.52)
    assert s_w == pytest.approx(0.81) and s_l == pytest.approx(0.52)
    assert scores_from_product_and_gap(None, 0.1) is None and scores_from_product_and_gap(-1.0, 0.1) is None


def test_read_layout_and_native_entries(tmp_path):
    make_layout(tmp_path)
    pairs, rejected = read_layout(tmp_path)
    assert not rejected and [p.prompt for p in pairs] == CAPTIONS
    assert pairs[0].chosen == tmp_path / "winvideos" / "000001.mp4" and pairs[2].scores is None
    win, lose, pair = layout_entries(4, {"prompt": "p", "chosen_score": 0.8, "rejected_score": 0.5},
                                     "/o/winvideos/000004.mp4", "/o/losevideos/000004.mp4", (2.0, 2.0))
    assert pair == {"label": 0, "frame_caption": "p", "score": pytest.approx(0.4), "diff_score": pytest.approx(0.3),
                    "video1": 8, "video2": 9}
    weighted = layout_entries(4, {"prompt": "p", "chosen_score": 0.8, "rejected_score": 0.5, "weight": 2.5},
                              "w", "l", (2.0, 2.0))[2]
    assert weighted["weight"] == 2.5  # carried beside the fields the authors' loader reads
    assert win == {"basic": {"clip_duration": 2.0, "clip_path": "/o/winvideos/000004.mp4", "globalidx": 4},
                   "misc": {"frame_caption": ["p"]}}
    assert lose["basic"]["clip_path"] == "/o/losevideos/000004.mp4"
    assert layout_entries(0, {"prompt": "p"}, "w", "l", (1.0, 1.0))[2] == \
        {"label": 0, "frame_caption": "p", "score": 1.0, "video1": 0, "video2": 1}


@pytest.mark.parametrize("edit, where", [
    (lambda p, m: p[1].update(score=float("nan")), r"pair.json: field '\[1\].score'"),
    (lambda p, m: p[2].update(video2=99), r"pair.json: field '\[2\].video2'"),
    (lambda p, m: m[3]["basic"].update(clip_path="/elsewhere/nothing/000002.mp4"),
     r"metadata.json: field '\[3\].basic.clip_path'"),
])
def test_bad_layouts_are_refused_naming_file_and_field(tmp_path, edit, where):
    make_layout(tmp_path, pair_edit=lambda p: edit(p, None) if "meta" not in where else None,
                meta_edit=lambda m: edit(None, m) if "meta" in where else None)
    with pytest.raises(InputError, match=where):
        read_layout(tmp_path)
    pairs, rejected = read_layout(tmp_path, on_error="skip")
    assert len(pairs) == 2 and len(rejected) == 1


def test_import_export_round_trip_keeps_everything(tmp_path, capsys):
    src, ds, exp = tmp_path / "src", tmp_path / "ds", tmp_path / "exp"
    files = make_layout(src)
    assert main(["import", "videodpo", str(src), "--out", str(ds), "--no-progress"]) == 0
    rows = load(ds, "pairs", split="train", video_decode=False)
    assert len(rows) == 3
    r0 = rows[0]
    assert r0["json"]["prompt"] == CAPTIONS[0] and r0["chosen.mp4"]["bytes"] == files["winvideos/000001.mp4"]
    assert r0["json"]["chosen_score"] == pytest.approx(0.81) and r0["json"]["rejected_score"] == pytest.approx(0.52)

    assert main(["export", "videodpo", str(ds), str(exp)]) == 0
    assert "3 pairs" in capsys.readouterr().out
    orig_meta = json.loads((src / "metadata.json").read_text())
    orig_pairs = json.loads((src / "pair.json").read_text())
    meta = json.loads((exp / "metadata.json").read_text())
    pairs = json.loads((exp / "pair.json").read_text())
    assert len(pairs) == len(orig_pairs) and len(meta) == len(orig_meta)
    for p, q in zip(pairs, orig_pairs):
        assert p == {**q, "weight": 1.0}  # caption, label, score, diff_score and indices as released, + weight
        for i in (p["video1"], p["video2"]):
            clip = Path(meta[i]["basic"]["clip_path"])
            assert clip.is_absolute() and clip.parent.parent == exp.resolve()
            assert clip.read_bytes() == files[str(Path(orig_meta[i]["basic"]["clip_path"]).relative_to(REMOTE))]
            assert {**meta[i], "basic": {**meta[i]["basic"], "clip_path": None}} == \
                {**orig_meta[i], "basic": {**orig_meta[i]["basic"], "clip_path": None}}
    assert main(["export", "videodpo", str(ds), str(exp)]) == 2  # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_pair_weights_survive_the_round_trip(tmp_path):
    """The import stores each pair's loss weight as the contract's `weight` (here the released code's formula,
    (0.72 / (s_W s_L))^1, from the recovered scores; 1 for the pair without scores); the export writes it into the
    pair entries and a re-import reads it back instead of re-weighting."""
    src, ds, exp, again = tmp_path / "src", tmp_path / "ds", tmp_path / "exp", tmp_path / "again"
    make_layout(src)
    assert main(["import", "videodpo", str(src), "--out", str(ds), "--weight", "code", "--no-progress"]) == 0
    weights = [r["json"]["weight"] for r in load(ds, "pairs", split="train", video_decode=False)]
    expected = [0.72 / (0.81 * 0.52), 0.72 / (0.74 * 0.61), 1.0]
    assert weights == pytest.approx(expected)
    assert main(["export", "videodpo", str(ds), str(exp)]) == 0
    assert [p["weight"] for p in json.loads((exp / "pair.json").read_text())] == pytest.approx(expected)
    assert main(["import", "videodpo", str(exp), "--out", str(again), "--no-progress"]) == 0  # default: paper
    rows = load(again, "pairs", split="train", video_decode=False)
    assert [r["json"]["weight"] for r in rows] == pytest.approx(expected)
    assert rows[0]["weight.json"] == pytest.approx(expected[0])  # a top-level column too
    assert "weight_input" not in rows[0]["json"]


def test_import_skips_bad_pairs_and_broken_videos(tmp_path):
    src = tmp_path / "src"
    make_layout(src, pair_edit=lambda p: p[0].update(diff_score="x"))
    (src / "losevideos" / "000003.mp4").write_bytes(b"not an mp4 at all")
    with pytest.raises(InputError, match=r"pair.json: field '\[0\].diff_score'"):
        run_build("videodpo-import", {"source": str(src)}, BuildOptions(out=tmp_path / "a", progress=False))
    m = run_build("videodpo-import", {"source": str(src)},
                  BuildOptions(out=tmp_path / "b", on_error="skip", progress=False))
    reasons = " | ".join(r["reason"] for r in m["configs"]["pairs"]["rejected"])
    assert "'[0].diff_score'" in reasons and "not a valid MP4 video" in reasons
    rows = load(tmp_path / "b", "pairs", split="train", video_decode=False)
    assert [r["json"]["prompt"] for r in rows] == [CAPTIONS[1]]


def test_export_of_native_pairs_writes_product_and_gap(tmp_path):
    from vidalign.shards import ShardWriter

    ds = tmp_path / "ds"
    vid = encode_mp4(np.zeros((16, 16, 16, 3), dtype=np.uint8), fps=8)
    with ShardWriter(ds, "data/pairs/train-00000-of-00001.tar") as w:
        w.write("s0-00000000", {"json": {"prompt": "p", "chosen_score": 0.9, "rejected_score": 0.4},
                                "chosen.mp4": vid, "rejected.mp4": vid})
    assert main(["export", "videodpo", str(ds), str(tmp_path / "exp")]) == 0
    meta = json.loads((tmp_path / "exp" / "metadata.json").read_text())
    (pair,) = json.loads((tmp_path / "exp" / "pair.json").read_text())
    assert pair["score"] == pytest.approx(0.36) and pair["diff_score"] == pytest.approx(0.5)
    assert meta[0]["basic"]["clip_duration"] == pytest.approx(2.0) and meta[0]["misc"]["frame_caption"] == ["p"]


def test_export_refuses_or_drops_clips_the_authors_loader_would_skip(tmp_path, capsys):
    """data/video_data.py drops entries with clip_duration < 1.0 before pairs index into the list, and reads the
    next video instead of one with < 16 frames: either misaligns every later pair."""
    from vidalign.shards import ShardWriter

    ds = tmp_path / "ds"
    ok = encode_mp4(np.zeros((16, 16, 16, 3), dtype=np.uint8), fps=8)  # 2 s
    short = encode_mp4(np.zeros((12, 16, 16, 3), dtype=np.uint8), fps=8)  # 12 frames, 1.5 s
    brief = encode_mp4(np.zeros((16, 16, 16, 3), dtype=np.uint8), fps=24)  # 16 frames, 0.67 s
    with ShardWriter(ds, "data/pairs/train-00000-of-00001.tar") as w:
        for k, (a, b) in enumerate([(ok, ok), (short, ok), (ok, brief), (ok, ok)]):
            w.write(f"s0-{k:08d}", {"json": {"prompt": f"p{k}", "chosen_score": 0.9, "rejected_score": 0.4},
                                    "chosen.mp4": a, "rejected.mp4": b})
    assert main(["export", "videodpo", str(ds), str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "s0-00000001: field 'chosen.mp4': 12 frames < 16" in err and "--short-clips drop" in err
    assert main(["export", "videodpo", str(ds), str(tmp_path / "b"), "--short-clips", "drop"]) == 0
    out = capsys.readouterr().out
    assert "2 pair(s) with clips too short" in out and "rejected.mp4: clip_duration 0.6667 < 1 s" in out
    pairs = json.loads((tmp_path / "b" / "pair.json").read_text())
    meta = json.loads((tmp_path / "b" / "metadata.json").read_text())
    assert [p["frame_caption"] for p in pairs] == ["p0", "p3"] and [p["video1"] for p in pairs] == [0, 2]
    assert all(m["basic"]["clip_duration"] >= 1.0 for m in meta) and len(meta) == 4
    assert sorted(x.name for x in (tmp_path / "b" / "winvideos").iterdir()) == ["000000.mp4", "000001.mp4"]


def test_export_refuses_an_imported_entry_with_a_short_clip_duration(tmp_path, capsys):
    src, ds = tmp_path / "src", tmp_path / "ds"
    make_layout(src, meta_edit=lambda m: m[3]["basic"].update(clip_duration=0.9))
    assert main(["import", "videodpo", str(src), "--out", str(ds), "--no-progress"]) == 0
    assert main(["export", "videodpo", str(ds), str(tmp_path / "x")]) == 2
    assert "clip_duration 0.9 < 1 s" in capsys.readouterr().err
