"""`vidalign import atom`: AToM's preference_labels.jsonl in its exact format → MotionPrefer shards."""

import argparse
import json

import datasets
import numpy as np
import pytest

from vidalign import motion as m
from vidalign.builder import BuildOptions
from vidalign.data import stream
from vidalign.datasets_builders import motion_commands
from vidalign.datasets_builders import motionprefer as mp
from vidalign.errors import InputError
from vidalign.runner import run_build

DEGREES = list(mp.LABEL_SMOOTHING)


def _entry(choice, degree, user="annotator"):
    return {"choice": choice, "degree of preference": degree, "user": user}


def make_atom(root, n=24, bad=True):
    """A folder in AToM's layout: <sub-task>/preference_labels.jsonl, features/*.npy, *_token.npy.

    Returns the expected usable rows (file order) as {id: (chosen_path, rejected_path, degree)}."""
    task_dir = root / "pref_data" / "temporal"
    (task_dir / "features").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines, expected = [], {}

    def motion(name, frames, width=263, nan=False, tokens=True):
        f = m.joints_to_features(m.walk_motion(frames + 1, speed=0.5 + rng.random()))
        if width != 263:
            f = f[:, :width]
        if nan:
            f[5, 10] = np.nan
        np.save(task_dir / "features" / f"{name}.npy", f[None])  # MotionGPT saves [1, T, 263]
        if tokens:
            np.save(task_dir / "features" / f"{name}_token.npy", rng.integers(0, 512, size=(1, frames // 4)))
        return f"features/{name}.npy"

    for i in range(n):
        s1, s2 = motion(f"{i:03d}_a", 40 + i), motion(f"{i:03d}_b", 60 + i, tokens=i != 3)
        last = "sample_1" if i % 2 else "sample_2"
        degree = DEGREES[i % 4]
        chosen = [_entry("sample_2" if last == "sample_1" else "sample_1", "Much better", "first"),
                  _entry(last, degree)]  # several entries: the last one counts
        if i in (4, 11):
            chosen.append(_entry("skipped", "skipped"))  # last entry skipped → row dropped
        if i == 7:
            chosen.insert(0, _entry("skipped", "skipped"))  # an earlier skip does not matter
        rec = {"id": i, "prompt": f"A person walks forward, then turns {i}.",
               "sample_1": {"features": s1, "gif": f"gifs/{i}_a.gif", "from": "motionGPT", "seed": 1234 + i},
               "sample_2": {"features": s2, "gif": f"gifs/{i}_b.gif", "from": "motionGPT", "seed": 5678 + i},
               "chosen": chosen}
        lines.append(json.dumps(rec))
        if i not in (4, 11):
            expected[str(i)] = (s1, s2, degree) if last == "sample_1" else (s2, s1, degree)
    if bad:
        bad_rows = {
            "w": motion("w", 60, width=200), "nan": motion("nan", 60, nan=True), "short": motion("short", 20),
            "long": motion("long", 220), "missing": "features/missing.npy",
        }
        ok = motion("ok", 50)
        for name, path in bad_rows.items():
            rec = {"id": f"bad-{name}", "prompt": "A person jumps.", "sample_1": {"features": path},
                   "sample_2": {"features": ok}, "chosen": [_entry("sample_1", "Better")]}
            lines.append(json.dumps(rec))
            expected[f"bad-{name}"] = (path, ok, "Better")
        lines.append('{"id": "broken", "prompt": ')
        lines.append(json.dumps({"id": "odd", "prompt": "x", "sample_1": {"features": ok}, "sample_2": {"features": ok},
                                 "chosen": [_entry("sample_1", "Way better")]}))
    (task_dir / "preference_labels.jsonl").write_text("\n".join(lines) + "\n")
    return task_dir / "preference_labels.jsonl", expected


def _samples(out, config, split):
    if not list((out / "data" / config).glob(f"{split}-*.parquet")):
        return []  # e.g. every eval row was dropped
    return list(stream(out, config=config, split=split))


def test_split_matches_datasets_train_test_split():
    rows = [{"id": i} for i in range(37)]
    hf = datasets.Dataset.from_list(rows).train_test_split(test_size=0.1, shuffle=True, seed=2222)
    train, ev = mp.split_indices(37)
    assert train == hf["train"]["id"] and ev == hf["test"]["id"] and len(ev) == 4


def test_parse_last_choice_skips_and_errors(tmp_path):
    path, expected = make_atom(tmp_path, n=8, bad=False)
    f = mp.read_atom_jsonl(path)
    assert [r.id for r in f.records] == [k for k in expected] and f.skipped == ["4"]
    r1 = next(r for r in f.records if r.id == "1")
    assert r1.chosen["features"] == "features/001_a.npy" and r1.degree == "Better" and r1.label_smoothing == 0.2
    assert r1.sub_task == "temporal" and r1.user == "annotator"
    assert {r.degree: r.label_smoothing for r in f.records} == mp.LABEL_SMOOTHING
    with pytest.raises(InputError, match="degree of preference.*'meh' is unknown"):
        mp.parse_atom_record({"id": 1, "prompt": "p", "sample_1": {"features": "a"}, "sample_2": {"features": "b"},
                              "chosen": [_entry("sample_1", "meh")]}, "f.jsonl", 3)
    with pytest.raises(InputError, match="f.jsonl:3: field 'sample_2': missing"):
        mp.parse_atom_record({"id": 1, "prompt": "p", "sample_1": {}, "chosen": []}, "f.jsonl", 3)
    assert mp.infer_sub_task(tmp_path / "MotionPrefer" / "Frequency" / "preference_labels.jsonl") == "frequency"
    assert mp.infer_sub_task(tmp_path / "x" / "preference_labels.jsonl") is None


def authors_split(path):
    """build_dpo_dataset's split, run as their code runs it: the JSONL lines into a pandas DataFrame, a
    ``datasets.Dataset``, the skipped filter, then ``train_test_split(test_size=0.1, shuffle=True, seed=2222)``.
    (A line that is not JSON would crash their loader: it is left out here. Ids are cast to str so that arrow
    takes the int and str ids of this fixture in one column; the order is untouched.)"""
    import pandas as pd

    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    df = pd.DataFrame(rows)
    df["id"] = df["id"].astype(str)
    ds = datasets.Dataset.from_pandas(df).filter(lambda x: x["chosen"][-1]["choice"] != "skipped")
    split = ds.train_test_split(test_size=0.1, shuffle=True, seed=2222)
    return list(split["train"]["id"]), list(split["test"]["id"])


def test_import_pairs_smoothing_split_and_rejections(tmp_path):
    path, expected = make_atom(tmp_path)
    out = tmp_path / "ds"
    man = run_build("motionprefer-atom", {"jsonl": [str(path)]},
                    BuildOptions(out=out, samples_per_shard=8, on_error="skip", progress=False))
    # the split is the authors' one, over every row their filter keeps (also "odd", whose degree vidalign cannot
    # use: it keeps its place in the split and is dropped after it)
    hf_train, hf_test = authors_split(path)
    assert "odd" in hf_train + hf_test
    bad = {i for i in hf_train + hf_test if i.startswith("bad-") or i == "odd"}
    train = _samples(out, "default", "train")
    evals = _samples(out, "default", "eval")
    assert [s["json"]["id"] for s in train] == [i for i in hf_train if i not in bad]
    assert [s["json"]["id"] for s in evals] == [i for i in hf_test if i not in bad]
    base = path.parent
    for s in train + evals:
        meta = s["json"]
        chosen, rejected, degree = expected[meta["id"]]
        want = m.check_features(np.load(base / chosen), "x")
        np.testing.assert_array_equal(s["chosen.npy"], want)
        np.testing.assert_array_equal(s["rejected.npy"], m.check_features(np.load(base / rejected), "x"))
        assert s["chosen.npy"].dtype == np.float32 and s["chosen.npy"].shape[1] == 263
        assert meta["degree"] == degree and meta["label_smoothing"] == mp.LABEL_SMOOTHING[degree]
        assert meta["sub_task"] == "temporal" and meta["chosen_frames"] == want.shape[0]
        assert meta["chosen_tokens"] == np.load(base / chosen.replace(".npy", "_token.npy"))[0].tolist()
    assert {s["json"]["degree"] for s in train + evals} == set(DEGREES)
    # bad motions, the malformed line and the unknown degree are listed with their reasons
    reasons = [r["reason"] for r in man["configs"]["default"]["rejected"]]
    for needle in ["shape (60, 200) is not [T, 263]", "NaN/inf", "'features': 20 frames is outside 40..196",
                   "220 frames is outside", "file not found", "not valid JSON", "'Way better' is unknown"]:
        assert sum(needle in r for r in reasons) == 1, needle
    assert len(reasons) == 7
    # trl config: same keys, rows are TRL preference rows; it needs only the token files, so the pairs whose
    # motions are bad but tokenised are written there too; the pair without a token file is listed, not written
    trl = _samples(out, "trl", "train")
    by_key = {s["__key__"]: s for s in train}
    assert {s["__key__"] for s in trl} >= set(by_key) - {k for k, s in by_key.items() if s["json"]["id"] == "3"}
    tokenised_bad = {"bad-w", "bad-nan", "bad-short", "bad-long"} & set(hf_train)
    assert len(trl) == len(by_key) - 1 + len(tokenised_bad)
    for s in [s for s in trl if s["__key__"] in by_key]:
        row, meta = s["json"], by_key[s["__key__"]]["json"]
        assert set(row) == {"prompt", "chosen", "rejected", "label_smoothing"}
        assert row["prompt"] == meta["prompt"] and row["label_smoothing"] == meta["label_smoothing"]
        assert row["chosen"] == m.motion_string(meta["chosen_tokens"])
        assert row["rejected"].startswith("<motion_id_512>") and row["rejected"].endswith("<motion_id_513>")
    assert any("no MotionGPT token file" in r["reason"] for r in man["configs"]["trl"]["rejected"])
    rows = mp.trl_dataset(out, "train")
    assert rows.column_names == ["__key__", "prompt", "chosen", "rejected", "label_smoothing"] and len(rows) == len(trl)
    card = (out / "README.md").read_text()
    assert "config_name: trl" in card and "rows skipped by the annotators" in card


def test_bad_input_raises_by_default_and_cli_runs(tmp_path):
    path, expected = make_atom(tmp_path, n=6)
    with pytest.raises(InputError):
        run_build("motionprefer-atom", {"jsonl": [str(path)]}, BuildOptions(out=tmp_path / "a", progress=False))
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    groups = {"import": sub.add_parser("import").add_subparsers()}
    motion_commands.register(sub, groups)
    args = parser.parse_args(["import", "atom", str(path), "--out", str(tmp_path / "b"), "--on-error", "skip",
                              "--sub-task", "frequency", "--no-trl", "--drop-unsure", "--no-progress"])
    assert args.func(args) == 0
    got = _samples(tmp_path / "b", "default", "train") + _samples(tmp_path / "b", "default", "eval")
    assert got and all(s["json"]["sub_task"] == "frequency" for s in got)
    # --drop-unsure filters after the split, as the authors' loader does
    hf_train, hf_test = authors_split(path)
    keep = [i for i in hf_train + hf_test
            if not i.startswith("bad-") and i != "odd" and expected[i][2] != "Negligibly better/unsure"]
    assert [s["json"]["id"] for s in got] == keep
    assert not (tmp_path / "b" / "data" / "trl").exists()


def test_token_files_by_the_authors_rule_and_trl_needs_only_tokens(tmp_path):
    """AToM's release keeps features under data2/.../features/ and tokens under data3/.../tokens/:
    ``features[:-4].replace('data2', 'data3') + "_token.npy"`` then ``features`` → ``tokens``."""
    root = tmp_path / "pref_data" / "integrity"
    rng = np.random.default_rng(3)
    lines, codes = [], {}
    for i in range(12):
        rec = {"id": i, "prompt": f"A person steps back, jumps up {i}.", "chosen": [_entry("sample_1", "Better")]}
        for k, name in (("sample_1", "a"), ("sample_2", "b")):
            rel = f"data2/motions/features/{i:03d}_{name}.npy"  # no feature file is written at all
            tok = root / f"data3/motions/tokens/{i:03d}_{name}_token.npy"
            tok.parent.mkdir(parents=True, exist_ok=True)
            codes[(i, name)] = rng.integers(0, 512, size=(1, 10 + i))
            np.save(tok, codes[(i, name)])
            rec[k] = {"features": rel}
        lines.append(json.dumps(rec))
    (root / "preference_labels.jsonl").write_text("\n".join(lines) + "\n")
    assert mp.token_paths("data2/m/features/x.npy", root)[0] == root / "data3/m/tokens/x_token.npy"
    assert mp.load_tokens("data2/motions/features/004_b.npy", root) == codes[(4, "b")][0].tolist()
    out = tmp_path / "ds"
    man = run_build("motionprefer-atom", {"jsonl": [str(root / "preference_labels.jsonl")]},
                    BuildOptions(out=out, on_error="skip", progress=False))
    rows = _samples(out, "trl", "train") + _samples(out, "trl", "eval")
    assert len(rows) == 12 and not man["configs"]["trl"].get("rejected")
    hf_train, hf_test = authors_split(root / "preference_labels.jsonl")
    got = [r["json"]["prompt"].split()[-1].rstrip(".") for r in rows]
    assert got == [str(i) for i in hf_train + hf_test]
    first = int(hf_train[0])
    assert rows[0]["json"]["chosen"] == m.motion_string(codes[(first, "a")][0].tolist())
    # the default config does need the motions: every pair is listed as rejected there, with the path
    assert all("file not found" in r["reason"] for r in man["configs"]["default"]["rejected"])
