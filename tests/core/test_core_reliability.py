"""Nothing mixed, nothing lost: kill and resume with an edited input, two builds into one folder, a killed main
process, retries with other options, the manifest journal, and outputs on an object store or in memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from vidalign import manifest as mf
from vidalign.builder import Builder, BuildOptions, Sample, register_builder
from vidalign.cli import main
from vidalign.errors import InputError, VidalignError
from vidalign.runner import run_build

CLI = [sys.executable, "-m", "vidalign.cli"]


def _start(args, **kw):
    return subprocess.Popen(CLI + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)


def _kill_after_first_shard(proc, out: Path, timeout=90):
    """SIGKILL the whole build once it has recorded a shard (or finished: the resume check holds either way)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if list((out / mf.JOURNAL_DIR).rglob("*.json")):
            break
        time.sleep(0.02)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _resume_refused(argv, name, capsys):
    assert main(argv + ["--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert name in err and "changed" in err and "--overwrite" in err and len(err.splitlines()) == 1, err


# -- kill, edit an input, resume: refused (naming the file) or rebuilt, never mixed ------------------------------------
def test_dsr_prompts_csv_edited_between_kill_and_resume(tmp_path, capsys):
    from vidalign.eval.dsr_prompts_csv import read_prompts_csv

    rows = ["type,prompt_id,animal,object,scene,initial_SR,final_SR,prompt"]
    rows += [f"LR,{i:05d}_LR,cat,box,On a field,on the left of,on the right of,On a field a cat {i} moves."
             for i in range(60)]
    csv = tmp_path / "eval.csv"
    csv.write_text("\n".join(rows) + "\n")
    out = tmp_path / "ds"
    argv = ["build", "dsr-prompts", "--from-csv", str(csv), "--out", str(out), "--samples-per-shard", "1"]
    _kill_after_first_shard(_start(argv + ["--no-progress"]), out)
    csv.write_text("\n".join([rows[0]] + rows[1:][::-1]) + "\n")  # the same prompts, reordered
    _resume_refused(argv, "eval.csv", capsys)
    assert main(argv + ["--overwrite", "--no-progress"]) == 0 and main(["verify", str(out)]) == 0
    from vidalign.data import stream

    got = {s["__key__"]: s["json"]["prompt_id"] for s in stream(out, config="prompts", split="train")}
    want = [p.prompt_id for p in read_prompts_csv(csv)]
    assert [got[k] for k in sorted(got)] == want  # every shard from the new file, none from the old


def test_atom_jsonl_fixed_between_kill_and_resume(tmp_path, capsys):
    from vidalign import motion as m

    d = tmp_path / "atom" / "frequency"
    (d / "features").mkdir(parents=True)
    lines = []
    for i in range(40):
        for s in "ab":
            np.save(d / "features" / f"{i}{s}.npy", m.joints_to_features(m.walk_motion(45, speed=1.0 + i / 40)))
        lines.append(json.dumps({"id": i, "prompt": f"A person jumps {i}.", "sample_1": {"features": f"features/{i}a.npy"},
                                 "sample_2": {"features": f"features/{i}b.npy"},
                                 "chosen": [{"choice": "sample_1", "degree of preference": "Better", "user": "u"}]}))
    jsonl = d / "preference_labels.jsonl"
    jsonl.write_text("\n".join(lines) + "\n")
    out = tmp_path / "ds"
    argv = ["import", "atom", str(jsonl), "--out", str(out), "--no-trl", "--samples-per-shard", "1"]
    _kill_after_first_shard(_start(argv + ["--no-progress"]), out)
    lines[5] = lines[5].replace('"sample_1", "degree', '"sample_2", "degree')  # an annotation fixed
    jsonl.write_text("\n".join(lines) + "\n")
    _resume_refused(argv, "preference_labels.jsonl", capsys)
    np.save(d / "features" / "0a.npy", m.joints_to_features(m.walk_motion(50, speed=2.0)))  # a motion replaced
    jsonl.write_text("\n".join(lines) + "\n")
    assert main(argv + ["--overwrite", "--no-progress"]) == 0
    np.save(d / "features" / "0a.npy", m.joints_to_features(m.walk_motion(52, speed=2.0)))
    _resume_refused(argv, "0a.npy", capsys)  # the files a JSONL names are inputs too


@pytest.mark.skipif(__import__("importlib").util.find_spec("pybullet") is None, reason="needs the sim extra")
def test_drop_scene_config_edited_between_kill_and_resume(tmp_path, capsys):
    scene = tmp_path / "scene.yaml"
    scene.write_text("density: 1.0\n")
    out = tmp_path / "drops"
    argv = ["build", "kubric-drop", "--out", str(out), "--num-samples", "3", "--resolution", "32", "--frames", "4",
            "--scene-config", str(scene)]
    _kill_after_first_shard(_start(argv + ["--no-progress"]), out)
    scene.write_text("density: 2.0\n")
    _resume_refused(argv, "scene.yaml", capsys)


# -- two builds, one folder ------------------------------------------------------------------------------------------
def test_two_builds_into_one_folder(tmp_path):
    out = tmp_path / "ds"
    argv = ["build", "synthetic", "--out", str(out), "--num-samples", "12", "--samples-per-shard", "2",
            "--work-ms", "40", "--no-progress"]
    a, b = _start(argv), _start(argv)
    (_, err_a), (_, err_b) = a.communicate(timeout=120), b.communicate(timeout=120)
    codes = sorted([a.returncode, b.returncode])
    assert codes == [0, 2], (err_a, err_b)
    loser = err_a if a.returncode else err_b
    assert "another build is writing this folder" in loser and "pid" in loser and "internal error" not in loser
    assert main(["verify", str(out)]) == 0
    assert not (out / ".vidalign" / "lock.json").exists()
    # a build that waits for the lock finishes after the first, resuming nothing twice
    a, b = _start(argv[:-1] + ["--overwrite", "--no-progress"]), None
    time.sleep(0.5)
    b = _start(argv + ["--resume", "--lock-timeout", "120"])
    assert a.wait(120) == 0 and b.wait(120) == 0, b.stderr.read()
    assert main(["verify", str(out)]) == 0


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, capsys):
    from vidalign.lock import _host

    out = tmp_path / "ds"
    (out / ".vidalign").mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".vidalign" / "lock.json").write_text(json.dumps({"pid": dead.pid, "host": _host(), "heartbeat": 0}))
    assert main(["build", "synthetic", "--out", str(out), "--num-samples", "3", "--no-progress"]) == 0
    assert "stale lock" in capsys.readouterr().out
    (out / ".vidalign" / "lock.json").write_text(json.dumps({"pid": os.getpid(), "host": _host(),
                                                              "command": "vidalign build x", "created": "now"}))
    assert main(["build", "synthetic", "--out", str(out), "--num-samples", "3", "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"pid {os.getpid()}" in err and "vidalign build x" in err and "lock.json" in err


# -- killing only the main process ---------------------------------------------------------------------------------
def _children(pid: int) -> set[int]:
    out = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_killing_only_the_main_process_leaves_no_worker(tmp_path):
    out = tmp_path / "ds"
    proc = _start(["build", "synthetic", "--out", str(out), "--num-samples", "40", "--samples-per-shard", "1",
                   "--work-ms", "300", "--workers", "3", "--no-progress"])
    deadline, kids = time.time() + 60, set()
    while time.time() < deadline and len(kids) < 2:
        kids = {k for k in _children(proc.pid)}
        time.sleep(0.1)
    assert kids, "the pool never started"
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)  # only the main process, as the OOM killer does
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(k) for k in kids):
        time.sleep(0.1)
    assert not [k for k in kids if _alive(k)]
    # and the folder resumes cleanly: leftovers of the dead attempt are removed, finished shards kept
    assert main(["build", "synthetic", "--out", str(out), "--num-samples", "40", "--samples-per-shard", "1",
                 "--work-ms", "0", "--resume", "--no-progress"]) == 0
    assert main(["verify", str(out)]) == 0 and not list(out.rglob("*.tmp"))


# -- retry with other options, without --overwrite -------------------------------------------------------------------
@register_builder
class _Bad7(Builder):
    name = "_bad7-test"

    @dataclass
    class Args:
        n: int = 12
        rate: float = 1.0  # output-neutral, as a request rate would be

    Args.__dataclass_fields__["rate"].metadata = {"output": False}

    def plan(self):
        return self.split_range("default", "train", self.args.n)

    def build_shard(self, job):
        for i in job.indices():
            if i == 7:
                yield self.reject(InputError(f"clip-{i}.mp4", None, "does not decode", "re-encode it"))
                continue
            yield Sample(self.key(i), {"json": {"i": i}})


def test_failed_build_retried_with_other_options(tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(InputError, match="clip-7.mp4"):
        run_build("_bad7-test", {}, BuildOptions(out=out, samples_per_shard=2, progress=False))
    done = len(mf.load(out)["configs"]["default"]["shards"])
    assert 0 < done < 6
    m = run_build("_bad7-test", {"rate": 5.0}, BuildOptions(out=out, samples_per_shard=2, on_error="skip",
                                                             resume=True, progress=False))
    assert m["_summary"]["built_shards"] == 6 - done and m["configs"]["default"]["complete"]
    assert [r["input"] for r in m["configs"]["default"]["rejected"]] == ["clip-7.mp4"]
    with pytest.raises(VidalignError, match="shard plan"):  # this would change finished shards: refused
        run_build("_bad7-test", {}, BuildOptions(out=out, samples_per_shard=3, resume=True, progress=False))
    # back to --on-error raise: the shard that skipped an input is rebuilt (and raises), the others are kept
    with pytest.raises(InputError, match="clip-7.mp4"):
        run_build("_bad7-test", {}, BuildOptions(out=out, samples_per_shard=2, resume=True, progress=False))
    assert mf.verify(out) and len(mf.load(out)["configs"]["default"]["shards"]) == 5


# -- the manifest journal ------------------------------------------------------------------------------------------
def test_journal_is_read_by_verify_and_resume_then_compacted(tmp_path):
    out = tmp_path / "ds"
    proc = _start(["build", "synthetic", "--out", str(out), "--num-samples", "30", "--samples-per-shard", "1",
                   "--work-ms", "50", "--no-progress"])
    deadline = time.time() + 60
    while time.time() < deadline and len(list((out / mf.JOURNAL_DIR).rglob("*.json"))) < 6:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    on_disk = json.loads((out / "manifest.json").read_text())["configs"]["default"]
    journal = list((out / mf.JOURNAL_DIR).rglob("*.json"))
    assert len(journal) >= 6 and not on_disk["shards"]  # the manifest was written once, at the start
    assert len(mf.load(out)["configs"]["default"]["shards"]) == len(journal)  # readers apply the journal
    assert any("journal" in p for p in mf.verify(out))
    records = [json.loads(p.read_text())["record"] for p in journal]
    # the feature schema travels only while it widens (the mask's object count: 1-3), not with every shard
    assert 1 <= sum("schema" in r for r in records) <= 3 < len(records)
    m = run_build("synthetic", {"num_samples": 30}, BuildOptions(out=out, samples_per_shard=1, resume=True,
                                                                   progress=False))
    assert m["_summary"]["skipped_shards"] >= len(journal) and mf.verify(out) == []
    assert not list((out / mf.JOURNAL_DIR).rglob("*.json"))
    saved = json.loads((out / "manifest.json").read_text())
    assert saved["format_version"] == "2.1" and saved["configs"]["default"]["schema"]
    assert not any("schema" in r for r in saved["configs"]["default"]["shards"].values())


def test_compaction_removes_a_killed_attempts_record_temp_files_of_its_shards_only(tmp_path):
    """SIGKILL can land while a journal record is being written (temp + fsync + rename): the resumed build's
    compaction removes that temp file, but not one of a shard outside its slice (a concurrent slice's write)."""
    out = tmp_path / "ds"
    run_build("synthetic", {"num_samples": 4}, BuildOptions(out=out, samples_per_shard=1, progress=False))
    m = mf.load(out)
    shards = sorted(m["configs"]["default"]["shards"])
    jdir = out / mf.JOURNAL_DIR / "default"
    jdir.mkdir(parents=True, exist_ok=True)
    mine = jdir / (shards[0].rsplit("/", 1)[1] + ".json.1234-abcd.tmp")
    other = jdir / (shards[1].rsplit("/", 1)[1] + ".json.5678-ef01.tmp")
    for p in (mine, other):
        p.write_text('{"config": "default", "rec')  # torn
    assert len(mf.load(out)["configs"]["default"]["shards"]) == 4  # torn temp files are never read as records
    mf.compact(out, m, only={shards[0]})
    assert not mine.exists() and other.exists()
    mf.compact(out, m)
    assert not other.exists()


def test_format_20_manifest_still_reads(tiny_ds):
    m = json.loads((tiny_ds / "manifest.json").read_text())
    e = m["configs"]["default"]
    for r in e["shards"].values():
        r["schema"] = e["schema"]  # 2.0: a schema per shard record, none per config
    del e["schema"], e["inputs"]
    m["format_version"] = "2.0"
    (tiny_ds / "manifest.json").write_text(json.dumps(m))
    assert mf.verify(tiny_ds) == [] and main(["info", str(tiny_ds)]) == 0
    assert mf.config_schema(mf.load(tiny_ds)["configs"]["default"]) == mf.config_schema(
        {"schema": json.loads(json.dumps(next(iter(e["shards"].values()))["schema"])), "shards": {}})


# -- any fsspec output ---------------------------------------------------------------------------------------------
def test_memory_filesystem_output(tmp_path):
    url = f"memory://vidalign-test/{tmp_path.name}"
    m = run_build("synthetic", {"num_samples": 5}, BuildOptions(out=url, samples_per_shard=2, progress=False))
    assert m["configs"]["default"]["complete"] and mf.verify(url) == []
    assert main(["verify", "--decode", url]) == 0
    again = run_build("synthetic", {"num_samples": 5}, BuildOptions(out=url, samples_per_shard=2, resume=True,
                                                                     progress=False))
    assert again["_summary"]["skipped_shards"] == 3


USER_BUILDER = '''
import os
from dataclasses import dataclass

import numpy as np

from vidalign.builder import Builder, Sample


def square(i):
    return i * i


class Numbers(Builder):
    """A builder of the user's own, in a module the Ray workers cannot import."""

    name = "user-numbers"

    @dataclass
    class Args:
        n: int = 8
        crash_marker: str = ""

    def plan(self):
        return self.split_range("default", "train", self.args.n)

    def build_shard(self, job):
        if self.args.crash_marker and job.index == 1 and not os.path.exists(self.args.crash_marker):
            open(self.args.crash_marker, "w").close()
            os._exit(1)  # the worker dies mid-shard: Ray reruns the task
        for i in job.indices():
            yield Sample(self.key(i), {"json": {"i": i, "sq": square(i)}, "x.npy": np.full(3, i)})
'''


def test_user_builder_on_ray_into_s3_with_a_retried_task(tmp_path, s3_server, monkeypatch):
    pytest.importorskip("ray")
    import importlib.util

    import ray

    src = tmp_path / "user_mod" / "my_numbers.py"
    src.parent.mkdir()
    src.write_text(USER_BUILDER)
    spec = importlib.util.spec_from_file_location("my_numbers", src)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["my_numbers"] = mod  # importable here only: the workers get the class by value
    spec.loader.exec_module(mod)
    url = "s3://bucket/numbers"
    try:
        m = run_build(mod.Numbers, {"n": 8, "crash_marker": str(tmp_path / "crashed")},
                      BuildOptions(out=url, samples_per_shard=2, executor="ray", workers=2, cpus_per_task=1,
                                   task_retries=2, progress=False))
    finally:
        if ray.is_initialized():
            ray.shutdown()
        sys.modules.pop("my_numbers", None)
    assert (tmp_path / "crashed").exists()  # shard 1's first attempt died; its retry replaced it
    assert m["configs"]["default"]["complete"] and mf.verify(url) == []
    shards = sorted(p for p in s3_server.find("bucket/numbers/data") if p.endswith(".tar"))
    assert len(shards) == 4 and not [p for p in s3_server.find("bucket/numbers") if ".tmp" in p]
    from vidalign.shards import iter_shard_samples

    keys = []
    for p in shards:
        with s3_server.open(p, "rb") as f:
            keys += [(s["__key__"], s["json"]["sq"]) for s in iter_shard_samples(f, source=p)]
    assert sorted(keys) == [(f"s0-{i:08d}", i * i) for i in range(8)]  # every sample once
    assert s3_server.exists("bucket/numbers/README.md") and not s3_server.exists("bucket/numbers/.vidalign/lock.json")
