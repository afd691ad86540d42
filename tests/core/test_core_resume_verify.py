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
