"""dsr-prompts and dsr-pairs end to end on tiny candidate shards and synthetic tracks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vidalign.builder import BuildOptions
from vidalign.data import load
from vidalign.errors import InputError, VidalignError
from vidalign.eval.dsr_prompts_csv import read_prompts_csv
from vidalign.eval.dsr_score import Track, TrackFrame, write_tracks
from vidalign.media import encode_mp4
from vidalign.runner import run_build
from vidalign.shards import ShardWriter

# prompt_id -> (type, animal, object); candidate motions per prompt (None: no track)
PROMPTS = {"p0": ("LR", "rabbit", "stone"), "p1": ("RL", "cat", "box"), "p2": ("LT", "dog", "crate")}
MOTIONS = {"p0": ["LR", "RL", None], "p1": ["LR", "LR", "LR"], "p2": ["LT", "LT", "TL"]}
POS = {"L": (-40.0, 0.0), "R": (40.0, 0.0), "T": (0.0, -40.0), "B": (0.0, 40.0)}


def tiny_mp4(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_mp4(rng.integers(0, 255, (3, 16, 16, 3), dtype=np.uint8), fps=8)


def track_for(video: str, pid: str, motion: str, animal: str, obj: str, frames: int = 24) -> Track:
    """The animal moves from relation motion[0] to motion[1] of a fixed object box centred at (50, 50)."""
    (x0, y0), (x1, y1) = POS[motion[0]], POS[motion[1]]
    out = []
    for k in range(frames):
        t = k / (frames - 1)
        cx, cy = 50 + x0 + (x1 - x0) * t, 50 + y0 + (y1 - y0) * t
        out.append(TrackFrame(k, (animal, obj), ((cx - 10, cy - 10, cx + 10, cy + 10), (40.0, 40.0, 60.0, 60.0))))
    return Track(video, pid, tuple(out))


def write_candidates(root: Path, broken: str | None = None) -> dict[str, bytes]:
    """One candidate shard (3 prompts × 3 candidates); returns {"<pid>/<i>": mp4 bytes}."""
    videos = {}
    with ShardWriter(root, "data/candidates/train-00000-of-00001.tar") as w:
        n = 0
        for pid, (ptype, animal, obj) in PROMPTS.items():
            for i in range(3):
                data = tiny_mp4(n) if f"{pid}/{i}" != broken else b"\x00\x00\x00\x18ftypmp42 not a video"
                videos[f"{pid}/{i}"] = data
                meta = {"prompt": f"a {animal} and a {obj} ({ptype})", "prompt_id": pid, "candidate": i,
                        "seed": 100 + i, "type": ptype, "animal": animal, "object": obj}
                w.write(f"s0-{n:08d}", {"json": meta, "mp4": data})
                n += 1
    return videos


def write_track_file(path: Path, extra: list[Track] = ()) -> Path:
    tracks = [track_for(f"{pid}/{i}", pid, m, PROMPTS[pid][1], PROMPTS[pid][2])
              for pid, ms in MOTIONS.items() for i, m in enumerate(ms) if m is not None]
    return write_tracks(path, [*tracks, *extra])


def test_dsr_pairs_end_to_end(tmp_path):
    cand = tmp_path / "cand"
    videos = write_candidates(cand)
    tracks = write_track_file(tmp_path / "tracks.jsonl")
    out = tmp_path / "out"
    m = run_build("dsr-pairs", {"candidates": str(cand), "tracks": str(tracks)},
                  BuildOptions(out=out, progress=False))
    assert m["configs"]["groups"]["complete"] and m["configs"]["pairs"]["complete"]

    pairs = load(out, "pairs", split="train", video_decode=False)
    got = sorted((r["json"]["prompt_id"], r["json"]["chosen_candidate"], r["json"]["rejected_candidate"])
                 for r in pairs)
    # p0: c0 (L→R) beats c1 (R→L), c2 has no track; p1 has no winner; p2: c0, c1 (L→T) beat c2 (T→L)
    assert got == [("p0", 0, 1), ("p2", 0, 2), ("p2", 1, 2)]
    for r in pairs:
        j = r["json"]
        assert r["chosen.mp4"]["bytes"] == videos[f"{j['prompt_id']}/{j['chosen_candidate']}"]
        assert r["rejected.mp4"]["bytes"] == videos[f"{j['prompt_id']}/{j['rejected_candidate']}"]
        assert j["chosen_score"] >= 0.7 > j["rejected_score"]
        assert j["gap"] == pytest.approx(j["chosen_score"] - j["rejected_score"])
        assert j["chosen_seed"] == 100 + j["chosen_candidate"]
    p0 = next(r["json"] for r in pairs if r["json"]["prompt_id"] == "p0")
    assert p0["chosen_score"] == pytest.approx(1.0, abs=0.02) and p0["rejected_score"] == pytest.approx(0.0, abs=0.02)

    groups = load(out, "groups", split="train", video_decode=False)
    assert sorted(g["json"]["prompt_id"] for g in groups) == ["p0", "p2"]
    g0 = next(g for g in groups if g["json"]["prompt_id"] == "p0")
    labels = [c["label"] for c in g0["json"]["candidates"]]
    assert labels == ["winner", "loser", "invalid"] and g0["json"]["candidates"][2]["dsr"] is None
    assert g0["c2.mp4"]["bytes"] == videos["p0/2"]

    card = (out / "README.md").read_text()
    assert "dsr_scores.png" in card and "dropped: no winner" in card
    for name in ("dsr_scores.png", "dsr_gaps.png", "dsr_rules.png"):
        assert (out / "previews" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dsr_pairs_random_strategy_is_seeded(tmp_path):
    cand = tmp_path / "cand"
    write_candidates(cand)
    tracks = write_track_file(tmp_path / "tracks.jsonl")
    args = {"candidates": str(cand), "tracks": str(tracks), "pair_strategy": "random", "pairs_per_prompt": 1,
            "configs": ["pairs"]}
    runs = []
    for name in ("a", "b"):
        run_build("dsr-pairs", args, BuildOptions(out=tmp_path / name, seed=7, progress=False))
        runs.append(sorted((r["json"]["prompt_id"], r["json"]["chosen_candidate"])
                           for r in load(tmp_path / name, "pairs", split="train", video_decode=False)))
    assert runs[0] == runs[1] and [p for p, _ in runs[0]] == ["p0", "p2"]


def test_dsr_pairs_bad_inputs(tmp_path):
    cand = tmp_path / "cand"
    write_candidates(cand, broken="p2/2")
    unknown = track_for("nope/9", "p0", "LR", "rabbit", "stone")
    tracks = write_track_file(tmp_path / "tracks.jsonl", [unknown])
    args = {"candidates": str(cand), "tracks": str(tracks), "configs": ["pairs"]}
    with pytest.raises(InputError, match=r"tracks.jsonl: field 'video': 'nope/9'"):
        run_build("dsr-pairs", args, BuildOptions(out=tmp_path / "o1", progress=False))

    good_tracks = write_track_file(tmp_path / "good.jsonl")
    with pytest.raises(InputError, match=r"s0-00000008: field 'mp4': not a valid MP4 video"):
        run_build("dsr-pairs", {**args, "tracks": str(good_tracks)}, BuildOptions(out=tmp_path / "o2", progress=False))

    nan_line = json.dumps(track_for("p0/1", "p0", "RL", "rabbit", "stone").to_json()).replace("40.0", "NaN", 1)
    with tracks.open("a") as fh:
        fh.write(nan_line + "\n")
    with pytest.raises(InputError, match=r"tracks.jsonl:10: field 'frames\[0\].boxes\[0\]': nan is not a finite"):
        run_build("dsr-pairs", args, BuildOptions(out=tmp_path / "o0", progress=False))

    m = run_build("dsr-pairs", args, BuildOptions(out=tmp_path / "o3", on_error="skip", progress=False))
    rejected = m["configs"]["pairs"]["rejected"]
    reasons = " | ".join(r["reason"] for r in rejected)
    assert "'nope/9'" in reasons and "not a valid MP4 video" in reasons and "nan is not a finite" in reasons
    pairs = load(tmp_path / "o3", "pairs", split="train", video_decode=False)
    assert sorted((r["json"]["prompt_id"], r["json"]["rejected_candidate"]) for r in pairs) == [("p0", 1)]


def test_dsr_pairs_duplicate_prompt_id_refused(tmp_path):
    cand = tmp_path / "cand"
    write_candidates(cand)
    with ShardWriter(cand, "data/candidates/train-00001-of-00001.tar") as w:  # same prompt id, other prompt
        w.write("s1-00000000", {"json": {"prompt": "something else", "prompt_id": "p0", "candidate": 5, "seed": 1,
                                         "type": "LR", "animal": "rabbit", "object": "stone"}, "mp4": tiny_mp4(0)})
    tracks = write_track_file(tmp_path / "tracks.jsonl")
    with pytest.raises(InputError, match=r"s1-00000000: field 'json.prompt_id'"):
        run_build("dsr-pairs", {"candidates": str(cand), "tracks": str(tracks)},
                  BuildOptions(out=tmp_path / "o", progress=False))


def test_dsr_prompts_builder_writes_balanced_set_and_csv(tmp_path):
    out = tmp_path / "prompts"
    run_build("dsr-prompts", {"n": 14, "types": ["LRTB"]}, BuildOptions(out=out, seed=3, progress=False))
    ds = load(out, "prompts", split="train")
    assert (out / "data" / "prompts" / "train-00000-of-00001.parquet").exists()  # a tabular config: flat columns
    rows = [dict(r) for r in ds.with_format(None)]
    assert len(rows) == 14 and len({r["prompt"] for r in rows}) == 14 and rows[0]["__key__"] == "s3-00000000"
    counts = {}
    for r in rows:
        counts[r["type"]] = counts.get(r["type"], 0) + 1
    assert len(counts) == 12 and max(counts.values()) - min(counts.values()) <= 1
    csv_rows = read_prompts_csv(out / "prompts.csv")
    assert [p.prompt for p in csv_rows] == [r["prompt"] for r in sorted(rows, key=lambda r: r["group"])]


def test_dsr_prompts_from_authors_csv(tmp_path):
    src = tmp_path / "eval30.csv"
    src.write_text(
        "type,prompt_id,animal,object,scene,initial_SR,final_SR,prompt\n"
        'LR,testLRFBT_LR_0,rabbit,stone,"On a grassy field with wildflowers,",on the left of,to the right of,'
        '"On a grassy field with wildflowers, a rabbit is on the left of a stone, then the rabbit jumps to the '
        'right of the stone."\n')
    out = tmp_path / "p"
    run_build("dsr-prompts", {"from_csv": str(src)}, BuildOptions(out=out, progress=False))
    (row,) = load(out, "prompts", split="train").with_format(None)
    assert row["prompt_id"] == "testLRFBT_LR_0" and row["type"] == "LR" and row["seed"] is None
    assert json.loads(json.dumps(row))["animal"] == "rabbit"


def test_dsr_pairs_without_any_kept_prompt_is_an_error(tmp_path):
    cand = tmp_path / "cand"
    write_candidates(cand)
    tracks = write_track_file(tmp_path / "tracks.jsonl")
    with pytest.raises(VidalignError, match="no prompt has both a winner and a loser"):
        run_build("dsr-pairs", {"candidates": str(cand), "tracks": str(tracks), "threshold": 0.0},
                  BuildOptions(out=tmp_path / "o", progress=False))


def test_sliced_build_with_skipped_inputs_merges_into_one_card(tmp_path):
    from vidalign.runner import merge_manifests

    cand = tmp_path / "cand"
    write_candidates(cand, broken="p2/2")
    tracks = write_track_file(tmp_path / "tracks.jsonl", [track_for("nope/9", "p0", "LR", "rabbit", "stone")])
    args = {"candidates": str(cand), "tracks": str(tracks)}
    out = tmp_path / "out"
    for i in range(2):
        run_build("dsr-pairs", args, BuildOptions(out=out, on_error="skip", samples_per_shard=1, shard_index=i,
                                                  num_shards=2, progress=False))
    m = merge_manifests(out)  # the card is made by fresh builders, which must not trip on the skipped inputs
    assert all(e["complete"] for e in m["configs"].values())
    assert any("'nope/9'" in r["reason"] for r in m["configs"]["groups"]["rejected"])
    assert "dsr_rules.png" in (out / "README.md").read_text()
