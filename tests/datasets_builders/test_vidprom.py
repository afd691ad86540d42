"""VidProM prompts (loading, filters, sampling), VBench → OmniScore, and vidprom-pairs end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vidalign.builder import BuildOptions
from vidalign.data import load, stream
from vidalign.datasets_builders.pairs import ScoreHistogram
from vidalign.datasets_builders.vidprom import (
    PromptSelection,
    ascii_letter_ratio,
    read_prompt_table,
    read_vbench_scores,
    select_prompts,
)
from vidalign.errors import ConfigError, InputError
from vidalign.eval.omniscore import DIMENSIONS, omniscore
from vidalign.media import encode_mp4
from vidalign.runner import run_build
from vidalign.shards import ShardWriter

ROWS = [
    {"uuid": "u0", "prompt": "A cat surfing a wave at sunset", "toxicity": 0.01, "sexual_explicit": 0.0},
    {"uuid": "u1", "prompt": "a CAT surfing  a wave at sunset", "toxicity": 0.02, "sexual_explicit": 0.0},
    {"uuid": "u2", "prompt": "Tom &amp; Jerry run through a kitchen", "toxicity": 0.0, "sexual_explicit": 0.0},
    {"uuid": "u3", "prompt": "一只猫在屋顶上跳舞", "toxicity": 0.0, "sexual_explicit": 0.0},
    {"uuid": "u4", "prompt": " ".join(["word"] * 40), "toxicity": 0.0, "sexual_explicit": 0.0},
    {"uuid": "u5", "prompt": "something explicit", "toxicity": 0.1, "sexual_explicit": 0.97},
    {"uuid": "u6", "prompt": "   ", "toxicity": 0.0, "sexual_explicit": 0.0},
    {"uuid": "u7", "prompt": "A red balloon drifts over a city", "toxicity": float("nan"), "sexual_explicit": 0.0},
    {"uuid": "u0", "prompt": "A dog chasing a frisbee", "toxicity": 0.0, "sexual_explicit": 0.0},
]


def test_read_prompt_table_formats(tmp_path):
    df = pd.DataFrame(ROWS)
    df.to_csv(tmp_path / "p.csv", index=False)
    df.to_parquet(tmp_path / "p.parquet")
    df.to_json(tmp_path / "p.jsonl", orient="records", lines=True)
    (tmp_path / "p.json").write_text(json.dumps({"prompts": ["just a prompt", {"prompt": "another"}]}))
    for name in ("p.csv", "p.parquet", "p.jsonl"):
        got = read_prompt_table(str(tmp_path / name))
        assert got["prompt"].tolist()[:3] == [r["prompt"] for r in ROWS[:3]] and got["uuid"].tolist()[-1] == "u0"
    assert read_prompt_table(str(tmp_path / "p.json"))["prompt"].tolist() == ["just a prompt", "another"]
    hub = tmp_path / "hub_snapshot"  # a folder laid out as a Hub dataset repo: read through datasets.load_dataset
    hub.mkdir()
    df.to_csv(hub / "VidProM_unique.csv", index=False)
    got = read_prompt_table(str(hub), split="train")
    assert got["prompt"].tolist()[0] == ROWS[0]["prompt"] and len(got) == len(ROWS)
    with pytest.raises(InputError, match="cannot load the Hub dataset"):
        read_prompt_table(str(hub), split="validation")
    with pytest.raises(InputError, match="prompt file not found"):
        read_prompt_table(str(tmp_path / "missing.csv"))
    (tmp_path / "p.txt").write_text("x")
    with pytest.raises(InputError, match="unknown file type"):
        read_prompt_table(str(tmp_path / "p.txt"))


def test_default_selection_is_the_authors_first_rows_unfiltered():
    rows, counts, rejected = select_prompts(pd.DataFrame(ROWS[:8]), PromptSelection(n=3))
    assert [r["prompt_id"] for r in rows] == ["u0", "u1", "u2"] and rows[2]["prompt"].startswith("Tom &amp;")
    assert counts["kept"] == 3 and counts["not sampled"] == 5 and counts["dropped: empty"] == 0 and not rejected
    assert rows[0]["nsfw"] == pytest.approx(0.01)
    # head mode stops at the n-th prompt: the duplicate id in the last row is never reached
    assert [r["prompt_id"] for r in select_prompts(pd.DataFrame(ROWS), PromptSelection(n=7))[0]][-1] == "u7"


def test_filters_count_what_they_drop():
    sel = PromptSelection(n=100, dedupe=True, max_words=20, english_ratio=0.9, nsfw_max=0.5, html="unescape")
    rows, counts, rejected = select_prompts(pd.DataFrame(ROWS), sel, source="vidprom.csv", on_error="skip")
    assert [r["prompt_id"] for r in rows] == ["u0", "u2", "u7"]
    assert rows[1]["prompt"] == "Tom & Jerry run through a kitchen" and rows[2]["nsfw"] == 0.0
    assert counts == {"rows": 9, "dropped: empty": 1, "dropped: html": 0, "dropped: length": 1,
                      "dropped: language": 1, "dropped: nsfw": 1, "dropped: duplicate_text": 1,
                      "dropped: duplicate id": 1, "not sampled": 0, "kept": 3}
    assert rejected == [{"input": "vidprom.csv:row 8", "reason": "field 'uuid': prompt id 'u0' repeats row 0"}]
    with pytest.raises(InputError, match=r"vidprom.csv:row 8: field 'uuid': prompt id 'u0' repeats row 0"):
        select_prompts(pd.DataFrame(ROWS), sel, source="vidprom.csv")
    drop_html = select_prompts(pd.DataFrame(ROWS[:3]), PromptSelection(html="drop"))[1]
    assert drop_html["dropped: html"] == 1
    assert ascii_letter_ratio("café au lait") == pytest.approx(9 / 10) and ascii_letter_ratio("123") == 0.0


def test_random_sampling_is_seeded_and_keeps_table_order():
    df = pd.DataFrame({"prompt": [f"prompt number {i}" for i in range(50)]})
    a, _, _ = select_prompts(df, PromptSelection(n=10, sample="random", seed=3))
    b, _, _ = select_prompts(df, PromptSelection(n=10, sample="random", seed=3))
    c, _, _ = select_prompts(df, PromptSelection(n=10, sample="random", seed=4))
    assert a == b and a != c and [r["row"] for r in a] == sorted(r["row"] for r in a)
    assert a[0]["prompt_id"] == f"vidprom-{a[0]['row']:07d}"  # no id column: row number
    with pytest.raises(InputError, match="no prompt passes the filters"):
        select_prompts(df, PromptSelection(min_words=10))
    with pytest.raises(ConfigError):
        PromptSelection(sample="first")


# ----------------------------------------------------------------------------------------------- VBench
def raw_values(q: float) -> dict[str, float]:
    """Raw VBench values of quality level q in [0, 1] (pre-scaling as VBench writes them)."""
    return {"subject_consistency": 16 * (0.9 + 0.09 * q), "temporal_flickering": 0.95 + 0.04 * q,
            "motion_smoothness": 0.97 + 0.02 * q, "dynamic_degree": bool(q > 0.5), "aesthetic_quality": 0.4 + 0.3 * q,
            "imaging_quality": 50 + 20 * q, "overall_consistency": 0.2 + 0.1 * q}


def write_vbench(folder: Path, videos: dict[str, dict[str, float]], drop: tuple[str, str] | None = None,
                 nan: tuple[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for dim in DIMENSIONS:
        items = [{"video_path": v, "video_results": (float("nan") if nan == (v, dim) else raw[dim])}
                 for v, raw in videos.items() if drop != (v, dim)]
        avg = sum(float(i["video_results"]) for i in items) / len(items)
        (folder / f"{dim}_eval_results.json").write_text(json.dumps({dim: [avg, items]}))
    return folder


def test_read_vbench_scores_and_bad_files(tmp_path):
    videos = {"/x/a.mp4": raw_values(0.2), "/x/b.mp4": raw_values(0.9)}
    scores, bad = read_vbench_scores(write_vbench(tmp_path / "ok", videos))
    assert not bad and scores["/x/a.mp4"]["omniscore"] == pytest.approx(omniscore(raw_values(0.2))["omniscore"])
    assert scores["/x/b.mp4"]["raw"]["dynamic_degree"] == 1.0 and "quality" in scores["/x/b.mp4"]

    nan_dir = write_vbench(tmp_path / "nan", videos, nan=("/x/b.mp4", "aesthetic_quality"))
    with pytest.raises(InputError, match=r"aesthetic_quality_eval_results.json: field "
                                         r"'aesthetic_quality.video_results': video '/x/b.mp4' has nan"):
        read_vbench_scores(nan_dir)
    scores, bad = read_vbench_scores(nan_dir, on_error="skip")
    assert list(scores) == ["/x/a.mp4"] and "aesthetic_quality.video_results" in bad[0]["reason"]

    gap_dir = write_vbench(tmp_path / "gap", videos, drop=("/x/a.mp4", "motion_smoothness"))
    with pytest.raises(InputError, match=r"motion_smoothness_eval_results.json: field 'motion_smoothness': "
                                         r"video '/x/a.mp4' is missing"):
        read_vbench_scores(gap_dir)
    assert list(read_vbench_scores(gap_dir, on_error="skip")[0]) == ["/x/b.mp4"]

    (tmp_path / "ok" / "dynamic_degree_eval_results.json").unlink()
    with pytest.raises(InputError, match=r"dynamic_degree_eval_results.json: field 'dynamic_degree': "
                                         r"dimension file missing"):
        read_vbench_scores(tmp_path / "ok", on_error="skip")


# ----------------------------------------------------------------------------------------------- builders
QUALITY = {"v0": [0.1, 0.8, 0.5, 0.3], "v1": [0.6, 0.2, 0.9, 0.55], "v2": [0.4, 0.45, 0.42, 0.41]}


def write_candidates(root: Path) -> dict[str, bytes]:
    videos, n = {}, 0
    with ShardWriter(root, "data/candidates/train-00000-of-00001.tar") as w:
        for pid, qs in QUALITY.items():
            for i in range(len(qs)):
                data = encode_mp4(np.full((2, 16, 16, 3), 20 * n, dtype=np.uint8), fps=8)
                videos[f"{pid}-{i}"] = data
                w.write(f"s0-{n:08d}", {"json": {"prompt": f"prompt {pid}", "prompt_id": pid, "candidate": i,
                                                  "seed": 50 + i}, "mp4": data})
                n += 1
    return videos


def vbench_for(folder: Path, extra: dict | None = None, **kw) -> Path:
    videos = {f"/data/vbench_in/{pid}-{i}.mp4": raw_values(q) for pid, qs in QUALITY.items() for i, q in enumerate(qs)}
    return write_vbench(folder, {**videos, **(extra or {})}, **kw)


def test_vidprom_pairs_end_to_end(tmp_path):
    videos = write_candidates(tmp_path / "cand")
    vb = vbench_for(tmp_path / "vbench")
    out = tmp_path / "pairs"
    run_build("vidprom-pairs", {"candidates": str(tmp_path / "cand"), "vbench": str(vb)},
              BuildOptions(out=out, progress=False))
    rows = sorted((r["json"] for r in load(out, "pairs", split="train", video_decode=False)),
                  key=lambda j: j["prompt_id"])
    assert [(j["prompt_id"], j["chosen_candidate"], j["rejected_candidate"]) for j in rows] == \
        [("v0", 1, 0), ("v1", 2, 1), ("v2", 1, 0)]
    allscores = [omniscore(raw_values(q))["omniscore"] for qs in QUALITY.values() for q in qs]
    hist = ScoreHistogram.of(allscores, 0.01)
    for j in rows:
        s_w = omniscore(raw_values(QUALITY[j["prompt_id"]][j["chosen_candidate"]]))["omniscore"]
        s_l = omniscore(raw_values(QUALITY[j["prompt_id"]][j["rejected_candidate"]]))["omniscore"]
        assert j["chosen_score"] == pytest.approx(s_w) and j["rejected_score"] == pytest.approx(s_l)
        assert j["gap"] == pytest.approx(s_w - s_l)
        assert j["weight"] == pytest.approx(hist.max_prob / math.sqrt(hist.prob(s_w) * hist.prob(s_l)))
        assert j["chosen_subscores"]["raw"]["imaging_quality"] == pytest.approx(
            raw_values(QUALITY[j["prompt_id"]][j["chosen_candidate"]])["imaging_quality"])
        assert j["chosen_seed"] == 50 + j["chosen_candidate"] and j["weight_formula"] == "paper"
    pairs = load(out, "pairs", split="train", video_decode=False)
    for r in pairs:
        j = r["json"]
        assert r["chosen.mp4"]["bytes"] == videos[f"{j['prompt_id']}-{j['chosen_candidate']}"]
        assert r["rejected.mp4"]["bytes"] == videos[f"{j['prompt_id']}-{j['rejected_candidate']}"]
    card = (out / "README.md").read_text()
    assert "omniscore.png" in card and "omniscore_gaps.png" in card and "| kept | 3 |" in card
    assert (out / "previews" / "omniscore_gaps.png").read_bytes()[:4] == b"\x89PNG"


def test_vidprom_pairs_strategies_filters_and_code_weight(tmp_path):
    write_candidates(tmp_path / "cand")
    vb = vbench_for(tmp_path / "vbench")
    base = {"candidates": str(tmp_path / "cand"), "vbench": str(vb)}
    run_build("vidprom-pairs", {**base, "pair_strategy": "ranks", "ranks": "0-1,0-3", "weight": "code",
                                "alpha": 1.0}, BuildOptions(out=tmp_path / "r", progress=False))
    rows = [r["json"] for r in load(tmp_path / "r", "pairs", split="train", video_decode=False)]
    assert sorted((j["prompt_id"], j["chosen_candidate"], j["rejected_candidate"]) for j in rows) == \
        [("v0", 1, 0), ("v0", 1, 2), ("v1", 2, 0), ("v1", 2, 1), ("v2", 1, 0), ("v2", 1, 2)]
    for j in rows:
        assert j["weight"] == pytest.approx(0.72 / (j["chosen_score"] * j["rejected_score"]))
    # v2's best-vs-worst gap is the smallest of the three: a 34% gap filter drops int(3 * 0.34) = 1 pair
    run_build("vidprom-pairs", {**base, "gap_filter": 34.0}, BuildOptions(out=tmp_path / "g", progress=False))
    rows = [r["json"] for r in load(tmp_path / "g", "pairs", split="train", video_decode=False)]
    assert sorted(j["prompt_id"] for j in rows) == ["v0", "v1"]
    assert "| dropped: smallest 34% gaps | 1 |" in (tmp_path / "g" / "README.md").read_text()


def test_vidprom_pairs_bad_inputs(tmp_path):
    write_candidates(tmp_path / "cand")
    base = {"candidates": str(tmp_path / "cand")}
    unknown = vbench_for(tmp_path / "vb1", extra={"/data/other/zz-0.mp4": raw_values(0.5)})
    with pytest.raises(InputError, match=r"vb1: field 'video_path': '/data/other/zz-0.mp4' matches no candidate"):
        run_build("vidprom-pairs", {**base, "vbench": str(unknown)}, BuildOptions(out=tmp_path / "o1", progress=False))
    nan = vbench_for(tmp_path / "vb2", nan=("/data/vbench_in/v0-1.mp4", "overall_consistency"))
    with pytest.raises(InputError, match=r"overall_consistency.video_results"):
        run_build("vidprom-pairs", {**base, "vbench": str(nan)}, BuildOptions(out=tmp_path / "o2", progress=False))
    m = run_build("vidprom-pairs", {**base, "vbench": str(nan)},
                  BuildOptions(out=tmp_path / "o3", on_error="skip", progress=False))
    assert any("v0-1.mp4" in r["reason"] for r in m["configs"]["pairs"]["rejected"])
    rows = [r["json"] for r in load(tmp_path / "o3", "pairs", split="train", video_decode=False)]
    v0 = next(j for j in rows if j["prompt_id"] == "v0")
    assert (v0["chosen_candidate"], v0["rejected_candidate"]) == (2, 0)  # v0-1 (the best) was skipped


def test_vidprom_prompts_builder(tmp_path):
    pd.DataFrame(ROWS[:8]).to_csv(tmp_path / "vidprom.csv", index=False)
    out = tmp_path / "prompts"
    run_build("vidprom-prompts", {"source": str(tmp_path / "vidprom.csv"), "n": 4, "english_ratio": 0.9},
              BuildOptions(out=out, progress=False))
    ds = load(out, "prompts", split="train")
    assert list(ds["prompt_id"]) == ["u0", "u1", "u2", "u4"]  # flat columns
    assert [s["json"]["prompt_id"] for s in stream(out, "prompts")] == ["u0", "u1", "u2", "u4"]
    lines = [json.loads(x) for x in (out / "prompts.jsonl").read_text().splitlines()]
    assert [x["prompt_id"] for x in lines] == ["u0", "u1", "u2", "u4"]
    card = (out / "README.md").read_text()
    assert "| dropped: language | 1 |" in card and (out / "previews" / "vidprom_rules.png").exists()


# ------------------------------------------------------------------ VideoDPO's own files
def test_videodpo_prompt_files(tmp_path):
    from vidalign.preprocessing.generate import iter_prompt_file

    vidpro = {"000000.mp4": "Flying among clouds and stars, kitten Max ...  ",
              "000001.mp4": "Use a clean and modern font for the text &quot;Relate Reality 101.&quot;"}
    (tmp_path / "vidpro-100-dict.json").write_text(json.dumps(vidpro, indent=12))  # as prompts/vidpro-100-dict.json
    (tmp_path / "wrapped.json").write_text(json.dumps({"prompts": [{k: v} for k, v in vidpro.items()]}))
    for name in ("vidpro-100-dict.json", "wrapped.json"):
        df = read_prompt_table(str(tmp_path / name))
        rows, _, _ = select_prompts(df, PromptSelection(n=10))
        assert [(r["prompt_id"], r["prompt"]) for r in rows] == [("000000", vidpro["000000.mp4"].strip()),
                                                                 ("000001", vidpro["000001.mp4"])]
        recs = list(iter_prompt_file(tmp_path / name))
        assert [(r.prompt_id, r.prompt) for r in recs] == [(r["prompt_id"], r["prompt"]) for r in rows]
    (tmp_path / "one.json").write_text(json.dumps({"prompt": "a cat", "prompt_id": "c1"}))
    assert [(r.prompt_id, r.prompt) for r in iter_prompt_file(tmp_path / "one.json")] == [("c1", "a cat")]


def test_vidprom_pairs_from_the_fork_layout(tmp_path):
    """Candidates made from their prompt file (ids 000000, ...) scored by their VBench fork: one folder per
    candidate, ``01/`` … ``04/``, videos ``<candidate>/<prompt index>.mp4``, files ``{dim}__eval_results.json``."""
    cand = tmp_path / "cand"
    ids = {"v0": "000000", "v1": "000001", "v2": "000002"}
    with ShardWriter(cand, "data/candidates/train-00000-of-00001.tar") as w:
        n = 0
        for pid, qs in QUALITY.items():
            for i in range(len(qs)):
                data = encode_mp4(np.full((2, 16, 16, 3), 20 * n, dtype=np.uint8), fps=8)
                w.write(f"s0-{n:08d}", {"json": {"prompt": f"prompt {pid}", "prompt_id": ids[pid], "candidate": i,
                                                  "seed": 50 + i}, "mp4": data})
                n += 1
    vb = tmp_path / "vbench"
    vb.mkdir()
    for dim in DIMENSIONS:
        items = [{"video_path": f"/data/results/vc2/{i + 1:02d}/{ids[pid]}.mp4", "video_results": raw_values(q)[dim]}
                 for pid, qs in QUALITY.items() for i, q in enumerate(qs)]
        (vb / f"{dim}__eval_results.json").write_text(json.dumps({dim: items}))
    out = tmp_path / "pairs"
    run_build("vidprom-pairs", {"candidates": str(cand), "vbench": str(vb)}, BuildOptions(out=out, progress=False))
    rows = sorted((r["json"] for r in load(out, "pairs", split="train", video_decode=False)),
                  key=lambda j: j["prompt_id"])
    assert [(j["prompt_id"], j["chosen_candidate"], j["rejected_candidate"]) for j in rows] == \
        [("000000", 1, 0), ("000001", 2, 1), ("000002", 1, 0)]  # the same pairs as the upstream layout
    j = rows[0]
    assert j["chosen_score"] == pytest.approx(omniscore(raw_values(QUALITY["v0"][1]))["omniscore"])
    assert j["chosen_subscores"]["subject_consistency"] == "sum"
    assert "subject_consistency read as a per-video sum (auto: detected)" in (out / "README.md").read_text()
