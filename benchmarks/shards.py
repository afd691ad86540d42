"""Shard IO: sizes and throughput, each figure a ratio against a baseline measured in the same run.

1. bytes per drop sample: ``kubric-drop`` clips as written (format 2.0: ``depth.npy.gz``, column members) vs the
   same samples in the format-1.0 layout (raw ``depth.npy``, metadata only in ``json``);
2. write: ``ShardWriter`` (encode + tar + sha256 + feature summary) vs ``tar -cf`` of the same member files
   already on disk (target >= 0.8);
3. read: ``vidalign.data.stream(decode=False)`` vs ``cat shards > /dev/null`` (target >= 0.8);
4. Parquet config (TRL-like rows): ``ParquetShardWriter`` vs ``pyarrow`` alone (``Table.from_pylist`` +
   ``pq.write_table``, zstd), and ``iter_shard_samples`` vs ``pq.read_table(...).to_pylist()``;
6. manifest cost per shard at 10, 1,000 and 10,000 shards: what the runner does when a shard finishes (format
   2.1: merge its feature summary into the config's, one fsynced journal record; the manifest written at the start,
   compacted once at the end — amortised over the shards) vs what it did before (format 2.0: the whole manifest,
   a schema in every shard record, rewritten after every shard); ``--manifest-only`` runs just this part;
   then the command as users run it: ``vidalign build synthetic --samples-per-shard 1`` (CPU per shard);
5. masks through ``load_dataset``: rows/s of a ``[32, N, 256, 256]`` bool mask + ``[32, 256, 256]`` float16 depth
   with ``vidalign.data.load`` (the ``vidalign`` formatter) vs the numpy formatter it used before (and datasets'
   default Python format).

Write and read are timed as interleaved pairs (ours, baseline, ours, ...) and reported as the median of the pair
ratios, in wall time and in CPU time (process + children): on a shared machine the CPU ratio is the stable one.

    python benchmarks/shards.py [--samples 64] [--mb-per-sample 4] [--drop-clips 4] [--rows 50000]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + r.ru_utime + r.ru_stime


def timed(fn) -> tuple[float, float]:
    c, t = _cpu(), time.perf_counter()
    fn()
    return time.perf_counter() - t, _cpu() - c


def paired(ours, base, repeat: int) -> dict:
    """Median ratios base/ours over interleaved runs (a ratio > 1: ours is faster)."""
    ours(), base()  # warm-up: imports, page cache
    walls, cpus, w_o, w_b = [], [], [], []
    for _ in range(repeat):
        (wo, co), (wb, cb) = timed(ours), timed(base)
        walls.append(wb / wo)
        cpus.append(cb / co)
        w_o.append(wo)
        w_b.append(wb)
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus), "ours_s": statistics.median(w_o),
            "base_s": statistics.median(w_b)}


def bench_drop_bytes(tmp: Path, clips: int) -> None:
    from vidalign.builder import BuildOptions
    from vidalign.format import Layout
    from vidalign.runner import run_build
    from vidalign.shards import ShardWriter, iter_tar_samples

    out = tmp / "drop"
    t = time.perf_counter()
    run_build("kubric-drop", {"num_samples": clips}, BuildOptions(out=out, progress=False))
    secs = time.perf_counter() - t
    after = sum(p.stat().st_size for p in out.rglob("*.tar"))
    import gzip

    members: dict[str, int] = {}
    depth_raw = 0
    for p in sorted(out.rglob("*.tar")):
        for s in iter_tar_samples(p, raw=True):
            for k, v in s.items():
                if not k.startswith("__"):
                    members[k] = members.get(k, 0) + len(v)
            depth_raw += len(gzip.decompress(s["depth.npy.gz"]))
    with ShardWriter(tmp, "v10/train-00000-of-00001.tar", layout=Layout()) as w:  # the 1.0 layout
        for p in sorted(out.rglob("*.tar")):
            for s in iter_tar_samples(p):
                w.write(s["__key__"], {k: s[k] for k in ("json", "mp4", "mask.npz", "depth.npy")})
    before = w.record.bytes
    depth_before = depth_raw
    share = {k: v / after for k, v in sorted(members.items(), key=lambda kv: -kv[1])[:4]}
    print(f"drop sample (kubric-drop defaults: 32 frames, 256², {clips} clips, built in {secs:.0f} s): "
          f"{before / clips / 1e6:.2f} MB before (format 1.0: raw depth.npy, ~{depth_before / before:.0%} of it depth)"
          f" → {after / clips / 1e6:.3f} MB after: {before / after:.1f}x smaller; shares after: "
          + ", ".join(f"{k} {v:.0%}" for k, v in share.items()))


def bench_write_read(tmp: Path, samples: int, mb: float, per_shard: int, repeat: int) -> None:
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

    r = paired(write_ours, write_tar, repeat)
    print(f"write: ShardWriter {total / r['ours_s'] / 1e6:7.0f} MB/s vs tar -cf {total / r['base_s'] / 1e6:7.0f} MB/s"
          f" | ratio wall {r['wall']:.2f}, CPU {r['cpu']:.2f} (target >= 0.8)")

    shards = sorted(str(p) for p in (tmp / "ours").rglob("*.tar"))
    size = sum(Path(p).stat().st_size for p in shards)

    def read_cat():
        subprocess.run("cat " + " ".join(shards) + " > /dev/null", shell=True, check=True)

    def read_ours():
        for _ in stream(shards, decode=False):
            pass

    r = paired(read_ours, read_cat, repeat)
    print(f"read:  stream(decode=False) {size / r['ours_s'] / 1e6:7.0f} MB/s vs cat {size / r['base_s'] / 1e6:7.0f} "
          f"MB/s | ratio wall {r['wall']:.2f}, CPU {r['cpu']:.2f} (target >= 0.8)")


def bench_parquet(tmp: Path, rows: int, repeat: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vidalign.parquet import ParquetShardWriter
    from vidalign.shards import iter_shard_samples

    rng = np.random.default_rng(0)
    toks = [f"<motion_id_{k}>" for k in range(515)]
    data = [{"prompt": f"a person walks forward and turns {i % 97} degrees",
             "chosen": "".join(rng.choice(toks, 50)), "rejected": "".join(rng.choice(toks, 50)),
             "label_smoothing": float(i % 4) / 10} for i in range(rows)]
    keys = [f"s0-{i:08d}" for i in range(rows)]
    rel = "data/trl/train-00000-of-00001.parquet"

    def write_ours():
        with ParquetShardWriter(tmp / "pq", rel) as w:
            for k, r in zip(keys, data):
                w.write(k, {"json": r})

    def write_pa():
        pq.write_table(pa.Table.from_pylist([{"__key__": k, **r} for k, r in zip(keys, data)]), tmp / "pa.parquet",
                       compression="zstd")

    r = paired(write_ours, write_pa, repeat)
    mb = (tmp / "pq" / rel).stat().st_size / 1e6
    print(f"parquet write, {rows} TRL rows ({mb:.1f} MB): ours {rows / r['ours_s']:,.0f} rows/s vs pyarrow "
          f"{rows / r['base_s']:,.0f} rows/s | ratio wall {r['wall']:.2f}, CPU {r['cpu']:.2f}")

    def read_ours():
        for _ in iter_shard_samples(tmp / "pq" / rel):
            pass

    def read_pa():
        pq.read_table(tmp / "pa.parquet").to_pylist()

    r = paired(read_ours, read_pa, repeat)
    print(f"parquet read: iter_shard_samples {rows / r['ours_s']:,.0f} rows/s vs pyarrow to_pylist "
          f"{rows / r['base_s']:,.0f} rows/s | ratio wall {r['wall']:.2f}, CPU {r['cpu']:.2f}")


def bench_masks(tmp: Path, samples: int) -> None:
    from dataclasses import dataclass

    import datasets

    from vidalign.builder import Builder, BuildOptions, Sample, register_builder
    from vidalign.data import load
    from vidalign.runner import run_build

    @register_builder
    class _MaskBench(Builder):
        name = "_mask-bench"
        gzip_members = ("depth.npy",)

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
    run_build("_mask-bench", {"n": samples}, BuildOptions(out=out, samples_per_shard=samples, progress=False))
    ds = load(out, "default", split="train")  # the vidalign formatter
    t = time.perf_counter()
    before = ds.with_format("numpy", dtype=None)  # what vidalign.data.load returned before (datasets' numpy)
    py = datasets.load_dataset(str(out), "default", split="train")  # datasets' default: Python lists
    t_load = time.perf_counter() - t

    def rows_per_s(d, get, n):
        t = time.perf_counter()
        for i in range(n):
            get(d[i])
        return n / (time.perf_counter() - t)

    n = len(ds)
    after_rs = rows_per_s(ds, lambda r: r["mask.npz"]["mask"].shape, n)
    before_rs = rows_per_s(before, lambda r: r["mask.npz"]["mask"].shape, n)
    py_rs = rows_per_s(py, lambda r: len(r["mask.npz"]["mask"]), min(n, 3))
    x = ds[1]
    print(f"load_dataset masks: vidalign.data.load {after_rs:6.1f} rows/s (mask {x['mask.npz']['mask'].dtype} "
          f"{x['mask.npz']['mask'].shape}, depth {x['depth.npy.gz'].dtype}) vs numpy formatter {before_rs:5.1f} "
          f"rows/s: {after_rs / before_rs:.1f}x faster ({1000 / before_rs:.0f} → {1000 / after_rs:.0f} ms/row); "
          f"Python lists {py_rs:.2f} rows/s ({after_rs / py_rs:.0f}x); reopening the cache {t_load:.1f} s")


def bench_manifest(tmp: Path, counts: list[int], old_max: int, build_counts: list[int]) -> None:
    """Manifest cost per finished shard (see the module docstring, item 6)."""
    import copy

    from vidalign import manifest as mf
    from vidalign.builder import make_builder
    from vidalign.runner import build_job

    b = make_builder("synthetic", {"num_samples": 2}, samples_per_shard=1)
    rec = build_job("synthetic", {"num_samples": 2}, {"samples_per_shard": 1}, b.plan()[0], str(tmp / "one"))["record"]

    def entry():
        return {"builder": "synthetic", "args": {}, "options": {}, "seed": 0, "command": "", "container": "webdataset",
                "inputs": {}, "splits": {"train": {"shards": 0, "samples": 0}}, "schema": {}, "shards": {},
                "rejected": [], "complete": False}

    def records(n):
        for i in range(n):
            r = copy.deepcopy(rec)
            r["path"] = f"data/default/train-{i:05d}-of-{n:05d}.tar"
            yield r

    def ours(n):
        out = tmp / f"new-{n}"
        m = {"format_version": "2.1", "configs": {"default": entry()}}
        mf.save(out, m)  # once, at the start
        e = m["configs"]["default"]
        for r in records(n):
            mf.journal_record(out, "default", mf.add_shard(e, r))
            e["complete"] = len(e["shards"]) == n
        mf.refresh(e)
        mf.compact(out, m, configs={"default"})  # once, at the end

    def before(n):
        out = tmp / f"old-{n}"
        m = {"format_version": "2.0", "configs": {"default": entry()}}
        e = m["configs"]["default"]
        for r in records(n):
            e["shards"][r["path"]] = r  # the schema stays in every record
            mf.refresh(e)
            mf.save(out, m)

    print("\n6. manifest cost per finished shard (CPU and wall ms per shard, everything included)")
    print(f"{'shards':>8} {'2.1 journal CPU':>16} {'wall':>8} {'2.0 rewrite CPU':>16} {'wall':>8} {'ratio CPU':>10}")
    for n in counts:
        wo, co = timed(lambda n=n: ours(n))
        line = f"{n:>8} {co / n * 1e3:>16.3f} {wo / n * 1e3:>8.3f}"
        if n <= old_max:
            wb, cb = timed(lambda n=n: before(n))
            line += f" {cb / n * 1e3:>16.3f} {wb / n * 1e3:>8.3f} {cb / co:>9.1f}x"
        else:
            line += f" {'(not run: quadratic)':>36}"
        print(line, flush=True)
    for n in build_counts:
        out = tmp / f"build-{n}"
        cmd = [sys.executable, "-m", "vidalign.cli", "build", "synthetic", "--out", str(out), "--num-samples", str(n),
               "--samples-per-shard", "1", "--size", "8", "--frames", "1", "--no-progress"]
        wall, cpu = timed(lambda cmd=cmd: subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL))
        print(f"`vidalign build synthetic --num-samples {n} --samples-per-shard 1`: {cpu / n * 1e3:.2f} CPU-ms and "
              f"{wall / n * 1e3:.2f} wall-ms per shard (process start included)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--mb-per-sample", type=float, default=4.0)
    ap.add_argument("--samples-per-shard", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=5, help="interleaved timing pairs per figure")
    ap.add_argument("--drop-clips", type=int, default=4, help="kubric-drop clips for the bytes/sample figure (0: skip)")
    ap.add_argument("--rows", type=int, default=50_000, help="TRL rows for the Parquet figures")
    ap.add_argument("--mask-samples", type=int, default=8)
    ap.add_argument("--manifest-shards", type=int, nargs="+", default=[10, 1000, 10000])
    ap.add_argument("--manifest-old-max", type=int, default=1000,
                    help="largest shard count the 2.0 rewrite-per-shard baseline runs at (it is quadratic)")
    ap.add_argument("--build-shards", type=int, nargs="*", default=[10, 1000])
    ap.add_argument("--manifest-only", action="store_true")
    a = ap.parse_args()
    load1 = os.getloadavg()[0]
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}, load average {load1:.1f} at start")
    tmp = Path(tempfile.mkdtemp(prefix="vidalign-bench-"))
    try:
        bench_manifest(tmp, a.manifest_shards, a.manifest_old_max, a.build_shards)
        if a.manifest_only:
            return
        if a.drop_clips:
            bench_drop_bytes(tmp, a.drop_clips)
        bench_write_read(tmp, a.samples, a.mb_per_sample, a.samples_per_shard, a.repeat)
        bench_parquet(tmp, a.rows, a.repeat)
        bench_masks(tmp, a.mask_samples)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
