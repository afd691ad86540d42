"""`vidalign build motionprefer`: render candidates, judge them on a local server, pair best vs worst."""

import base64
import json

import numpy as np
import pytest

from vidalign import motion as m
from vidalign.builder import BuildOptions
from vidalign.data import stream
from vidalign.datasets_builders import motion_judge as mj
from vidalign.datasets_builders import motionprefer as mp
from vidalign.errors import InputError
from vidalign.media import decode_mp4
from vidalign.runner import run_build

SIZE, FRAMES = 48, 4


def _sheet_url(feats):
    frames = m.render_stick_figure(m.features_to_joints(feats), m.StickFigureStyle(size=SIZE))
    return "data:image/jpeg;base64," + base64.b64encode(mj.judge_images(frames, FRAMES)[0]).decode()


def _candidates(root):
    """3 prompts × 4 candidates; returns the candidates file and {sheet url: score} (None: always malformed)."""
    (root / "gen").mkdir(parents=True)
    scores, lines, rng = {}, [], np.random.default_rng(3)
    plan = {"p0": [9, 2, 6, 4], "p1": [3, 8, None, 1], "p2": [5, 5, 7, "bad"]}
    for pid, cand_scores in plan.items():
        cands = []
        for k, sc in enumerate(cand_scores):
            name = f"gen/{pid}_{k}.npy"
            feats = m.joints_to_features(m.walk_motion(42 + k, speed=0.4 + 0.3 * k + 0.05 * len(lines)))
            if sc == "bad":
                np.save(root / name, feats[:, :100])  # wrong width: refused and listed
            else:
                np.save(root / name, feats)
                np.save(root / name.replace(".npy", "_token.npy"), rng.integers(0, 512, size=(1, 10 + k)))
                scores[_sheet_url(feats)] = sc
            cands.append({"features": name, "seed": 100 + k} if k % 2 else name)
        lines.append(json.dumps({"id": pid, "prompt": f"A person jumps up {len(lines) + 2} times.",
                                 "sub_task": "frequency", "candidates": cands}))
    (root / "candidates.jsonl").write_text("\n".join(lines) + "\n")
    return root / "candidates.jsonl", scores


def test_judged_pairs_with_failures_listed_and_cache_reused(tmp_path, chat_server, chat_reply):
    path, scores = _candidates(tmp_path)

    def script(n, body):
        sc = scores.get(body["messages"][0]["content"][1]["image_url"]["url"], "unknown")
        return chat_reply("it is hard to say" if sc is None else json.dumps({"score": sc, "reason": f"s{sc}"}))

    server = chat_server(script)
    args = {"candidates": str(path), "judge_url": server.url, "judge_model": "vlm", "judge_rpm": 0,
            "judge_retries": 1, "judge_backoff": 0.01, "judge_timeout": 5, "judge_frames": FRAMES, "render_size": SIZE,
            "pairs_per_prompt": 2, "min_gap": 1.0, "eval_fraction": 0.0, "videos": True}
    man = run_build("motionprefer", args, BuildOptions(out=tmp_path / "ds", on_error="skip", progress=False))
    got = {s["json"]["id"]: s for s in stream(tmp_path / "ds", config="default", split="train")}
    # p0: 9 2 6 4 → (0 vs 1), (2 vs 3); p1: 3 8 ? 1 → ranked 1 0 3 → (1 vs 3) only (pairs are disjoint);
    # p2: 5 5 7 + a refused file → ranked 2 0 1 (ties by index) → (2 vs 1)
    assert sorted(got) == ["p0-0-1", "p0-2-3", "p1-1-3", "p2-2-1"]
    s = got["p0-0-1"]["json"]
    assert (s["chosen_score"], s["rejected_score"], s["gap"]) == (9.0, 2.0, 7.0)
    assert s["degree"] == "Much better" and s["label_smoothing"] == 0.0 and s["judge"] == "vlm"
    assert got["p0-2-3"]["json"]["degree"] == "Slightly better" and got["p2-2-1"]["json"]["label_smoothing"] == 0.3
    assert s["scores"] == [9.0, 2.0, 6.0, 4.0] and got["p1-1-3"]["json"]["scores"][2] is None
    np.testing.assert_array_equal(got["p0-0-1"]["chosen.npy"], np.load(tmp_path / "gen" / "p0_0.npy"))
    assert s["source"]["rejected_seed"] == 101 and s["chosen_reason"] == "s9"
    video, fps = decode_mp4(got["p0-0-1"]["chosen.mp4"])  # the render the judge saw, for people to check
    assert video.shape == (s["chosen_frames"], SIZE, SIZE, 3) and fps == 20
    reasons = [r["reason"] for r in man["configs"]["default"]["rejected"]]
    assert sum("not scored" in r and "it is hard to say" in r for r in reasons) == 1
    assert sum("shape (44, 100) is not [T, 263]" in r for r in reasons) == 1 and len(reasons) == 2
    trl = list(stream(tmp_path / "ds", config="trl", split="train"))
    assert len(trl) == 4 and all(t["json"]["chosen"].startswith("<motion_id_512>") for t in trl)
    first_run = len(server.requests)
    assert first_run == 10 + 2 + 2  # 10 renders scored once (the trl job hits the cache), the bad one twice per job
    # rebuilding pays only for the candidate that never got a score
    run_build("motionprefer", args, BuildOptions(out=tmp_path / "ds2", on_error="skip", progress=False))
    assert len(server.requests) - first_run == 4
    assert len(mp.read_candidates(path)[0]) == 3


def test_cheap_checks_come_before_any_judge_call(tmp_path, chat_server, chat_reply):
    """A candidate without token files (needed by the trl config) fails the build before one paid request."""
    path, _ = _candidates(tmp_path)
    for tok in (tmp_path / "gen").glob("*_token.npy"):
        tok.unlink()
    server = chat_server(lambda n, body: chat_reply(json.dumps({"score": 5, "reason": "ok"})))
    args = {"candidates": str(path), "judge_url": server.url, "judge_model": "vlm", "judge_rpm": 0,
            "judge_frames": FRAMES, "render_size": SIZE}
    with pytest.raises(InputError, match="token"):
        run_build("motionprefer", args, BuildOptions(out=tmp_path / "ds", progress=False))
    assert len(server.requests) == 0
