"""Shard IO throughput, each figure a ratio against a baseline measured in the same run.

1. write: ``ShardWriter`` (encode + tar + sha256 + feature summary) vs ``tar -cf`` of the same member files
   already on disk (ratio of throughputs; target >= 0.8);
2. read: ``vidalign.data.stream(decode=False)`` vs ``cat shards > /dev/null`` (target >= 0.8);
3. arrays from ``load_dataset``: a [32, N, 256, 256] mask + [32, 256, 256] depth per sample through
   ``vidalign.data.load`` (declared features, numpy format) vs datasets' default Python format (nested lists).

    python benchmarks/shards.py [--samples 64] [--mb-per-sample 4]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_write_read(tmp: Path, samples: int, mb: float, per_shard: int) -> None:
    from vidalign.data import stream
    from vidalign.format import encode_member
    from vidalign.shards import ShardWriter

    rng = np.random.default_rng(0)
    n = int(mb * 1e6 / 2)
    data = [{"json": {"i": i}, "x.npy": rng.random(n).astype(np.float16)} for i in range(samples)]
    raw = tmp / "raw"
    raw.mkdir()
    for i, s in enumerate(data):
        for m, v in s.items():
            (raw / f"s0-{i:08d}.{m}").write_bytes(encode_member(m, v))
    total = sum(p.stat().st_size for p in raw.iterdir())

    def write_ours():
        out = tmp / "ours"
        for p in out.rglob("*.tar"):
            p.unlink()
        for k in range(0, samples, per_shard):
            with ShardWriter(out, f"data/d/train-{k // per_shard:05d}-of-99999.tar") as w:
                for i in range(k, min(samples, k + per_shard)):
                    w.write(f"s0-{i:08d}", data[i])

    def write_tar():  # like ours: a fresh output file each time
        (tmp / "base.tar").unlink(missing_ok=True)
        subprocess.run(["tar", "-cf", str(tmp / "base.tar"), "-C", str(raw), "."], check=True)

    t_tar, t_ours = best_of(write_tar), best_of(write_ours)
    print(f"write: tar {total / t_tar / 1e6:8.1f} MB/s | ShardWriter {total / t_ours / 1e6:8.1f} MB/s | "
          f"ratio {t_tar / t_ours:.2f} (target >= 0.8)")

    shards = sorted(str(p) for p in (tmp / "ours").rglob("*.tar"))
    size = sum(Path(p).stat().st_size for p in shards)

    def read_cat():
        subprocess.run("cat " + " ".join(shards) + " > /dev/null", shell=True, check=True)

    def read_ours():
        for _ in stream(shards, decode=False):
            pass

    t_cat, t_read = best_of(read_cat), best_of(read_ours)
    print(f"read:  cat {size / t_cat / 1e6:8.1f} MB/s | stream(decode=False) {size / t_read / 1e6:8.1f} MB/s | "
          f"ratio {t_cat / t_read:.2f} (target >= 0.8)")


def bench_load_arrays(tmp: Path, samples: int) -> None:
    from dataclasses import dataclass

    import datasets

    from vidalign.builder import Builder, BuildOptions, Sample, register_builder
    from vidalign.data import load
    from vidalign.runner import run_build

    @register_builder
    class _MaskBench(Builder):
        name = "_mask-bench"

        @dataclass
        class Args:
            n: int = 8

        def plan(self):
            return self.split_range("default", "train", self.args.n)

        def build_shard(self, job):
            for i in job.indices():
                rng = np.random.default_rng(i)
                yield Sample(self.key(i), {"json": {"i": i},
                                           "mask.npz": {"mask": rng.random((32, 1 + i % 3, 256, 256)) > 0.9},
                                           "depth.npy": rng.random((32, 256, 256)).astype(np.float16)})

    out = tmp / "masks"
    # run in-process (the registry entry lives here), one shard
    run_build("_mask-bench", {"n": samples}, BuildOptions(out=out, samples_per_shard=samples, progress=False))
    ds = load(out, "default", split="train")
    py = datasets.load_dataset(str(out), "default", split="train")
    t_np = best_of(lambda: [ds[i]["mask.npz"]["mask"].shape for i in range(len(ds))], 1) / len(ds)
    t_py = best_of(lambda: [len(py[i]["mask.npz"]["mask"]) for i in range(len(py))], 1) / len(py)
    x = ds[1]
    print(f"load_dataset arrays: {1 / t_np:7.1f} samples/s (numpy, mask {x['mask.npz']['mask'].dtype} "
          f"{x['mask.npz']['mask'].shape}, depth {x['depth.npy'].dtype}) vs {1 / t_py:6.2f} samples/s as nested "
          f"lists: {t_py / t_np:.0f}x faster")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--mb-per-sample", type=float, default=4.0)
    ap.add_argument("--samples-per-shard", type=int, default=16)
    ap.add_argument("--mask-samples", type=int, default=8)
    a = ap.parse_args()
    print(f"machine: {platform.node()} {platform.machine()}, python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as d:
        bench_write_read(Path(d), a.samples, a.mb_per_sample, a.samples_per_shard)
        bench_load_arrays(Path(d), a.mask_samples)


if __name__ == "__main__":
    main()
