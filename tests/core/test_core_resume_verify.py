import json
import os
import signal
import subprocess
import sys
import time

import pytest

from vidalign import manifest as mf
from vidalign.cli import main
from vidalign.data import stream


def test_sigkill_then_resume_passes_verify(tmp_path):
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "vidalign.cli", "build", "synthetic", "--out", str(out), "--num-samples", "24",
           "--samples-per-shard", "2", "--work-ms", "60", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline:  # kill once a few shards are done, mid-way through the plan
        if len(list((out / "data" / "default").glob("*.tar"))) >= 3:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = mf.load(out)["configs"]["default"]
    assert not done["complete"] and 0 < len(done["shards"]) < 12
    assert main(["verify", str(out)]) == 1  # incomplete build is reported

    assert main(["build", "synthetic", "--out", str(out), "--num-samples", "24", "--samples-per-shard", "2",
                 "--work-ms", "60", "--resume", "--no-progress"]) == 0
    assert main(["verify", str(out)]) == 0
    keys = [s["__key__"] for s in stream(out, members=["json"])]
    assert len(keys) == 24 and len(set(keys)) == 24
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupted_shard_fails_verify_naming_it(tiny_ds, damage, capsys):
    shard = sorted((tiny_ds / "data" / "default").glob("*.tar"))[1]
    data = bytearray(shard.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    shard.write_bytes(bytes(data))
    assert main(["verify", str(tiny_ds)]) == 1
    err = capsys.readouterr().err
    assert shard.name in err and ("sha256" in err or "size" in err)


def test_unlisted_and_missing_shards_reported(tiny_ds):
    shards = sorted((tiny_ds / "data" / "default").glob("*.tar"))
    shards[0].rename(tiny_ds / "data" / "default" / "train-00009-of-00010.tar")
    problems = mf.verify(tiny_ds)
    assert any("missing on disk" in p for p in problems)
    assert any("not listed" in p for p in problems)


def test_count_mismatch_detected(tiny_ds):
    m = json.loads((tiny_ds / "manifest.json").read_text())
    rec = next(iter(m["configs"]["default"]["shards"].values()))
    rec["samples"] += 1
    (tiny_ds / "manifest.json").write_text(json.dumps(m))
    assert any("samples" in p for p in mf.verify(tiny_ds))


def test_rejected_inputs_reach_the_manifest(tmp_path):
    from dataclasses import dataclass

    from vidalign.builder import Builder, BuildOptions, Sample, register_builder
    from vidalign.errors import InputError
    from vidalign.runner import run_build

    @register_builder
    class _Flaky(Builder):
        name = "_flaky-test"

        @dataclass
        class Args:
            n: int = 6

        def plan(self):
            return self.split_range("default", "train", self.args.n)

        def build_shard(self, job):
            for i in job.indices():
                if i % 3 == 1:
                    yield self.reject(InputError(f"input-{i}.mp4", "mp4", "does not decode", "re-encode it"))
                else:
                    yield Sample(self.key(i), {"json": {"i": i}})

    m = run_build("_flaky-test", {}, BuildOptions(out=tmp_path / "ds", samples_per_shard=3, on_error="skip",
                                                  progress=False))
    entry = m["configs"]["default"]
    assert [r["input"] for r in entry["rejected"]] == ["input-1.mp4", "input-4.mp4"]
    assert "does not decode" in entry["rejected"][0]["reason"] and entry["rejected"][0]["shard"].endswith(".tar")
    assert sum(r["samples"] for r in entry["shards"].values()) == 4
    assert "2 inputs were rejected" in (tmp_path / "ds" / "README.md").read_text()
    with pytest.raises(InputError, match="input-1.mp4"):
        run_build("_flaky-test", {}, BuildOptions(out=tmp_path / "ds2", samples_per_shard=3, progress=False))
