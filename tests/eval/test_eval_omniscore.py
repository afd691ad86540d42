"""OmniScore (SPEC §2) against hand computation on a synthetic VBench folder."""

from __future__ import annotations

import json

import pytest

from vidalign.errors import ConfigError, InputError
from vidalign.eval.omniscore import DIMENSIONS, OmniScoreConfig, omniscore, read_vbench, score_folder

# video a: every dimension at the middle of its range (after pre-scaling); b: at the minimum, semantic at max
RAW = {
    "subject_consistency": {"a.mp4": 16 * (0.1462 + 0.8538 * 0.5), "b.mp4": 16 * 0.1462},
    "temporal_flickering": {"a.mp4": 0.6293 + 0.3707 * 0.5, "b.mp4": 0.6293},
    "motion_smoothness": {"a.mp4": 0.706 + 0.2915 * 0.5, "b.mp4": 0.706},
    "dynamic_degree": {"a.mp4": True, "b.mp4": False},
    "aesthetic_quality": {"a.mp4": 0.5, "b.mp4": 0.0},
    "imaging_quality": {"a.mp4": 50.0, "b.mp4": 0.0},
    "overall_consistency": {"a.mp4": 0.182, "b.mp4": 0.364},
}


def _write(folder, raw=RAW, skip=()):
    folder.mkdir(parents=True, exist_ok=True)
    for dim, values in raw.items():
        if dim in skip:
            continue
        items = [{"video_path": v, "video_results": x} for v, x in values.items()]
        (folder / f"{dim}_eval_results.json").write_text(json.dumps({dim: [0.0, items]}))
    return folder


def test_hand_computed(tmp_path):
    out = score_folder(_write(tmp_path / "vb"))
    a, b = out["videos"]
    assert a["video"] == "a.mp4" and b["video"] == "b.mp4"
    # a: five quality dims at 0.5·w=0.5, dynamic_degree 1·0.5 → (2.5 + 0.5)/5.5
    assert a["quality"] == pytest.approx(3.0 / 5.5)
    assert a["semantic"] == pytest.approx(0.5)
    assert a["omniscore"] == pytest.approx((4 * 3.0 / 5.5 + 0.5) / 5)
    assert b["quality"] == pytest.approx(0.0, abs=1e-12)
    assert b["semantic"] == pytest.approx(1.0)
    assert b["omniscore"] == pytest.approx(0.2)
    assert out["mean"]["omniscore"] == pytest.approx(((4 * 3.0 / 5.5 + 0.5) / 5 + 0.2) / 2)


def test_unclipped_and_num_frames():
    raw = {d: RAW[d]["a.mp4"] for d in DIMENSIONS}
    raw["overall_consistency"] = 0.728
    assert omniscore(raw)["semantic"] == pytest.approx(2.0)
    # subject_consistency summed over 8 frames instead of 16: 9.1696/8 = 1.1462 → (1.1462−0.1462)/0.8538
    q16 = omniscore(raw)["quality"]
    q8 = omniscore(raw, OmniScoreConfig(num_frames=8))["quality"]
    assert q8 - q16 == pytest.approx((1.0 / 0.8538 - 0.5) / 5.5)
    with pytest.raises(ConfigError, match="num_frames"):
        OmniScoreConfig(num_frames=0)


def test_errors(tmp_path):
    with pytest.raises(InputError, match="motion_smoothness_eval_results.json.*dimension file missing"):
        read_vbench(_write(tmp_path / "m", skip=("motion_smoothness",)))
    raw = {d: dict(v) for d, v in RAW.items()}
    del raw["imaging_quality"]["b.mp4"]
    with pytest.raises(InputError, match="imaging_quality.*'b.mp4' is missing"):
        read_vbench(_write(tmp_path / "v", raw))
    raw = {d: dict(v) for d, v in RAW.items()}
    raw["aesthetic_quality"]["a.mp4"] = float("nan")
    with pytest.raises(InputError) as exc:
        read_vbench(_write(tmp_path / "n", raw))
    msg = str(exc.value)
    assert "aesthetic_quality_eval_results.json" in msg and "a.mp4" in msg and "aesthetic_quality" in msg
    (tmp_path / "n" / "aesthetic_quality_eval_results.json").write_text('{"x": 1}')
    with pytest.raises(InputError, match="expected"):
        read_vbench(tmp_path / "n")


# ------------------------------------------------------------------ the VideoDPO VBench fork
def _fork_files(folder, per_video, sc_key="subject_consistency"):
    """Files as the fork writes them: ``{dim}__eval_results.json`` holding a flat ``{dim: [{video_path,
    video_results}]}``, videos ``<root>/<candidate 01..N>/<prompt index>.mp4``."""
    folder.mkdir(parents=True, exist_ok=True)
    for dim in DIMENSIONS:
        items = [{"video_path": f"/data/vc2_vidpro/{v}", "video_results": raw[dim]} for v, raw in per_video.items()]
        (folder / f"{dim}__eval_results.json").write_text(json.dumps({dim: items}))
    return folder


def _raw(sc):
    return {"subject_consistency": sc, "temporal_flickering": 0.6293, "motion_smoothness": 0.706,
            "dynamic_degree": False, "aesthetic_quality": 0.0, "imaging_quality": 0.0, "overall_consistency": 0.0}


def test_fork_flat_lists_keyed_by_candidate_and_file(tmp_path):
    # the fork sums cos-similarity over the 15 frame pairs: 15 × 0.9 = 13.5 → ÷16 = 0.84375
    vids = {"01/000000.mp4": _raw(13.5), "02/000000.mp4": _raw(15 * 0.5), "01/000001.mp4": _raw(15.0)}
    out = score_folder(_fork_files(tmp_path / "vb", vids))
    assert [v["video"] for v in out["videos"]] == list(vids)
    assert out["subject_consistency"] == {"mode": "sum", "decided": "detected", "num_frames": 16}
    q = out["videos"][0]["quality"]
    assert q == pytest.approx((13.5 / 16 - 0.1462) / 0.8538 / 5.5)


def test_subject_consistency_mean_is_never_divided_by_16(tmp_path):
    # upstream VBench writes the mean 0.9 for the same video: brought to the authors' scale as 0.9 × 15/16
    up = tmp_path / "up"
    up.mkdir()
    for dim in DIMENSIONS:
        value = _raw(0.9)[dim]
        (up / f"{dim}_eval_results.json").write_text(
            json.dumps({dim: [value, [{"video_path": "/v/01/000000.mp4", "video_results": value}]]}))
    mean = score_folder(up)
    fork = score_folder(_fork_files(tmp_path / "fork", {"01/000000.mp4": _raw(13.5)}))
    assert mean["subject_consistency"]["mode"] == "mean"
    assert mean["videos"][0]["quality"] == pytest.approx(fork["videos"][0]["quality"])
    stated = score_folder(up, OmniScoreConfig(subject_consistency="sum"))  # stated by the user: taken as said
    assert stated["subject_consistency"]["decided"] == "stated"
    assert stated["videos"][0]["quality"] == pytest.approx((0.9 / 16 - 0.1462) / 0.8538 / 5.5)
    mixed = _fork_files(tmp_path / "mixed", {"01/000000.mp4": _raw(13.5), "02/000000.mp4": _raw(0.9)})
    with pytest.raises(InputError, match="subject-consistency sum or mean"):
        score_folder(mixed)
    assert score_folder(mixed, OmniScoreConfig(subject_consistency="sum"))["videos"][1]["quality"] < 0
    (mixed / "aesthetic_quality_eval_results.json").write_text("{}")
    with pytest.raises(InputError, match="holds both"):
        score_folder(mixed)
    with pytest.raises(ConfigError, match="subject_consistency"):
        OmniScoreConfig(subject_consistency="median")
