"""Preference-pair building throughput, and candidate generation overhead on a GPU.

1. Pair building (``dsr-pairs`` pairs config, ``vidprom-pairs``) from pre-generated candidate shards, in pairs/s,
   against reading the very same candidate bytes (every pair's two mp4 byte ranges) in the same run: the build is
   IO work (read, tar, sha256) plus an MP4 structure check per video (``--check-videos decode`` also decodes the
   first frame), so the ratio build/read says how close it stays to the IO floor (target ≥ 0.5).
2. On a GPU: videos/min of ``vidalign generate`` (the ``candidates`` builder: real pipeline, mp4 encoding, shard
   writing) against the bare diffusers pipeline call on the same prompts and seeds, as an overhead ratio
   (target ≤ 1.05). Without CUDA it prints ``skipped``.

    python benchmarks/pairs.py                                  # ~30 s on 2 CPU cores
    python benchmarks/pairs.py --prompts 200 --frames 81 --height 480 --width 832   # Wan-sized candidates
    python benchmarks/pairs.py --gpu-prompts 8                  # on a CUDA machine with Wan2.1-T2V-1.3B
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_videos(k: int, frames: int, height: int, width: int, seed: int = 0) -> list[bytes]:
    """``k`` distinct H.264 clips: a moving gradient with mild noise (compresses like generated video)."""
    from vidalign.media import encode_mp4

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    out = []
    for i in range(k):
        clip = np.empty((frames, height, width, 3), dtype=np.uint8)
        for t in range(frames):
            base = (xx * (1 + i) + yy + 4 * t) % 256
            noise = rng.integers(0, 12, (height, width))
            clip[t] = np.stack([base, (base + 85 * i) % 256, 255 - base], -1).astype(np.uint8) + noise[..., None]
        out.append(encode_mp4(clip, fps=16))
    return out


def write_inputs(root: Path, prompts: int, candidates: int, videos: list[bytes]) -> dict[str, Path]:
    """Candidate shards + tracks JSONL + VBench results folder for ``prompts`` × ``candidates`` videos."""
    from vidalign.eval.dsr_score import Track, TrackFrame, write_tracks
    from vidalign.eval.omniscore import DIMENSIONS
    from vidalign.shards import ShardWriter

    cand = root / "candidates"
    per_shard = 64
    tracks, vbench = [], {d: [] for d in DIMENSIONS}
    rng = np.random.default_rng(1)
    n = 0
    total = prompts * candidates
    for shard in range(-(-total // per_shard)):
        rel = f"data/candidates/train-{shard:05d}-of-{-(-total // per_shard):05d}.tar"
        with ShardWriter(cand, rel, summarize=False) as w:
            while n < min(total, (shard + 1) * per_shard):
                p, i = divmod(n, candidates)
                pid = f"{p:05d}_LR"
                w.write(f"s0-{n:08d}", {"json": {"prompt": f"prompt {p}, a cat is on the left of a box, then ...",
                                                 "prompt_id": pid, "candidate": i, "seed": i, "type": "LR",
                                                 "animal": "cat", "object": "box"},
                                        "mp4": videos[n % len(videos)]})
                ok = i % 2 == 0  # even candidates cross left → right (winners), odd ones go back (losers)
                frames = []
                for k in range(24):
                    t = k / 23 if ok else 1 - k / 23
                    cx = 10 + 80 * t
                    frames.append(TrackFrame(k, ("cat", "box"), ((cx - 10, 40, cx + 10, 60), (40, 40, 60, 60))))
                tracks.append(Track(f"{pid}/{i}", pid, tuple(frames)))
                q = rng.random()
                raw = {"subject_consistency": 16 * (0.9 + 0.09 * q), "temporal_flickering": 0.95 + 0.04 * q,
                       "motion_smoothness": 0.97 + 0.02 * q, "dynamic_degree": bool(q > 0.5),
                       "aesthetic_quality": 0.4 + 0.3 * q, "imaging_quality": 50 + 20 * q,
                       "overall_consistency": 0.2 + 0.1 * q}
                for d in DIMENSIONS:
                    vbench[d].append({"video_path": f"/vbench/{pid}-{i}.mp4", "video_results": raw[d]})
                n += 1
    write_tracks(root / "tracks.jsonl", tracks)
    (root / "vbench").mkdir(exist_ok=True)
    for d, items in vbench.items():
        (root / "vbench" / f"{d}_eval_results.json").write_text(json.dumps({d: [0.0, items]}))
    return {"candidates": cand, "tracks": root / "tracks.jsonl", "vbench": root / "vbench"}


def evict(folder: Path) -> None:
    """Drop ``folder``'s files from the page cache, so that timed reads come from the disk (cold)."""
    for path in folder.rglob("*"):
        if path.is_file() and hasattr(os, "posix_fadvise"):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def read_same_bytes(jobs: list, copy_to: Path | None = None) -> tuple[float, int, int]:
    """Seconds to read every pair's video byte ranges (and, with ``copy_to``, write them to one fsynced file:
    the IO floor of any shard build), pairs, bytes."""
    from vidalign.datasets_builders.pairs import read_ref

    t0 = time.perf_counter()
    pairs = nbytes = 0
    sink = open(copy_to, "wb") if copy_to else None
    try:
        for job in jobs:
            for item in job.params["items"]:
                for ref in item["videos"].values():
                    data = read_ref(ref, check="none")
                    nbytes += len(data)
                    if sink:
                        sink.write(data)
                pairs += 1
        if sink:
            sink.flush()
            os.fsync(sink.fileno())
    finally:
        if sink:
            sink.close()
    seconds = time.perf_counter() - t0
    if copy_to:
        copy_to.unlink()
    return seconds, pairs, nbytes


def bench_pairs(name: str, args: dict, root: Path, repeat: int, cold: bool = True) -> dict:
    from vidalign.builder import BuildOptions, make_builder
    from vidalign.runner import run_build

    jobs = make_builder(name, args).plan()
    cand = Path(args["candidates"])
    reads, copies, builds = [], [], []
    for r in range(repeat):
        if cold:
            evict(cand)
        reads.append(read_same_bytes(jobs))
        if cold:
            evict(cand)
        copies.append(read_same_bytes(jobs, root / "copy.bin")[0])
        if cold:
            evict(cand)
        out = root / f"out-{name}-{r}"
        t0 = time.perf_counter()
        m = run_build(name, args, BuildOptions(out=out, progress=False))
        builds.append(time.perf_counter() - t0)
        shutil.rmtree(out)
    t_read, pairs, nbytes = min(reads)
    t_copy, t_build = min(copies), min(builds)
    assert sum(e["splits"]["train"]["samples"] for e in m["configs"].values()) == pairs
    return {"pairs": pairs, "mb": nbytes / 1e6, "build_s": t_build, "read_s": t_read, "copy_s": t_copy,
            "build_pps": pairs / t_build, "read_pps": pairs / t_read, "copy_pps": pairs / t_copy,
            "ratio": t_read / t_build, "ratio_copy": t_copy / t_build}


def gpu_generation(args) -> None:
    import torch

    device = args.gpu_device
    cuda = device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("generation (Wan 1.3B bf16, GPU): skipped (CUDA unavailable)")
        return
    from vidalign.builder import make_builder
    from vidalign.preprocessing import generate  # noqa: F401  (registers the candidates builder)

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    work = Path(tempfile.mkdtemp(prefix="vidalign-gen-"))
    animals = ["cat", "dog", "fox", "rabbit", "duck", "deer", "bear", "owl"] * (1 + args.gpu_prompts // 8)
    prompt_file = work / "prompts.jsonl"
    prompt_file.write_text("".join(
        json.dumps({"prompt_id": f"p{i}", "prompt": f"A {a} walks across a sunny meadow, cinematic, detailed"}) + "\n"
        for i, a in enumerate(animals[: args.gpu_prompts])))
    bargs = {"prompts": str(prompt_file), "model": args.gpu_model, "num_candidates": 1, "frames": args.gpu_frames,
             "height": args.gpu_height, "width": args.gpu_width, "steps": args.gpu_steps, "dtype": args.gpu_dtype,
             "device": device}
    builder = make_builder("candidates", bargs)
    cfg = builder.args.config(0)
    pipe = builder.pipeline(cfg)  # cached by the generate module: the build below reuses this pipeline object
    records = builder.records()
    call = {"num_frames": cfg.frames, "height": cfg.height, "width": cfg.width, "num_inference_steps": cfg.steps,
            "guidance_scale": cfg.guidance, "output_type": "np"}
    with torch.inference_mode():  # warm-up (kernels, allocator) outside both timings
        pipe(prompt=records[0].prompt, generator=torch.Generator("cpu").manual_seed(0),
             **{**call, "num_inference_steps": min(2, cfg.steps)})
    sync()
    try:
        _time_generation(args, bargs, prompt_file, work, records, cfg, pipe, call, sync, cuda, device, torch)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _time_generation(args, bargs, prompt_file, work, records, cfg, pipe, call, sync, cuda, device, torch) -> None:
    def bare() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            for rec in records:
                pipe(prompt=rec.prompt, generator=torch.Generator("cpu").manual_seed(cfg.seed_for(rec.prompt_id, 0)),
                     **call)
        sync()
        return time.perf_counter() - t0

    from vidalign.cli import main as cli_main

    t_bare = bare()
    argv = ["generate", str(prompt_file), "--out", str(work / "out"), "--no-progress"]
    for k, v in bargs.items():
        if k != "prompts":
            argv += [f"--{k.replace('_', '-')}", str(v)]
    t0 = time.perf_counter()
    assert cli_main(argv) == 0  # exactly `vidalign generate ...`, reusing the cached pipeline
    sync()
    t_va = time.perf_counter() - t0
    t_bare = min(t_bare, bare())  # bare calls before and after: clock/thermal drift does not favour either side
    n = len(records)
    where = torch.cuda.get_device_name() if cuda else device
    print(f"generation ({args.gpu_model}, {cfg.dtype}, {cfg.frames}x{cfg.height}x{cfg.width}, {cfg.steps} steps, "
          f"{n} videos, {where}): vidalign generate {60 * n / t_va:.2f} videos/min, bare pipeline "
          f"{60 * n / t_bare:.2f} videos/min, overhead ratio {t_va / t_bare:.3f} (target <= 1.05)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=48, help="prompts (default 48)")
    ap.add_argument("--candidates", type=int, default=4, help="candidates per prompt (default 4)")
    ap.add_argument("--frames", type=int, default=33)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=416)
    ap.add_argument("--distinct-videos", type=int, default=4, help="distinct clips encoded (reused as bytes)")
    ap.add_argument("--repeat", type=int, default=2, help="timed repetitions (best is kept)")
    ap.add_argument("--check-videos", choices=["header", "decode", "none"], default="header",
                    help="video check of the builds (default: header)")
    ap.add_argument("--warm", action="store_true", help="keep the candidates in the page cache (default: evict "
                    "them before every timed read, so reads come from the disk)")
    ap.add_argument("--workdir", default=None, help="where to write the inputs (default: a temp folder)")
    ap.add_argument("--skip-gpu", action="store_true", help="skip the generation benchmark")
    ap.add_argument("--gpu-model", default="Wan-AI/Wan2.1-T2V-1.3B-Diffusers")
    ap.add_argument("--gpu-prompts", type=int, default=4)
    ap.add_argument("--gpu-frames", type=int, default=81)
    ap.add_argument("--gpu-height", type=int, default=480)
    ap.add_argument("--gpu-width", type=int, default=832)
    ap.add_argument("--gpu-steps", type=int, default=50)
    ap.add_argument("--gpu-dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--gpu-device", default="cuda", help="cuda (skipped when unavailable); cpu for a dry run")
    a = ap.parse_args(argv)

    root = Path(a.workdir or tempfile.mkdtemp(prefix="vidalign-pairs-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        videos = make_videos(a.distinct_videos, a.frames, a.height, a.width)
        inputs = write_inputs(root, a.prompts, a.candidates, videos)
        mean_mb = sum(map(len, videos)) / len(videos) / 1e6
        print(f"inputs: {a.prompts} prompts x {a.candidates} candidates, {a.frames}x{a.height}x{a.width} clips "
              f"of {mean_mb:.2f} MB, written in {time.perf_counter() - t0:.1f} s to {root}")
        check = a.check_videos
        # warm-up: first imports (datasets, matplotlib) and page cache, not timed
        bench_pairs("dsr-pairs", {"candidates": str(inputs["candidates"]), "tracks": str(inputs["tracks"]),
                                  "configs": ["pairs"], "check_videos": check}, root, 1)
        cases = {
            "dsr-pairs (pairs config, all winner x loser)": ("dsr-pairs", {
                "candidates": str(inputs["candidates"]), "tracks": str(inputs["tracks"]), "configs": ["pairs"],
                "check_videos": check}),
            "vidprom-pairs (best vs worst, paper weights)": ("vidprom-pairs", {
                "candidates": str(inputs["candidates"]), "vbench": str(inputs["vbench"]), "check_videos": check}),
        }
        for label, (name, bargs) in cases.items():
            r = bench_pairs(name, bargs, root, a.repeat, cold=not a.warm)
            print(f"{label}: {r['pairs']} pairs ({r['mb']:.1f} MB of video) built at {r['build_pps']:.1f} pairs/s "
                  f"({r['mb'] / r['build_s']:.0f} MB/s); reading the same bytes {r['read_pps']:.1f} pairs/s "
                  f"({r['mb'] / r['read_s']:.0f} MB/s): ratio {r['ratio']:.2f} (target >= 0.5); copying them to one "
                  f"fsynced file {r['copy_pps']:.1f} pairs/s ({r['mb'] / r['copy_s']:.0f} MB/s): ratio "
                  f"{r['ratio_copy']:.2f} [{'warm' if a.warm else 'cold'} cache, --check-videos {check}]")
    finally:
        if not a.workdir:
            shutil.rmtree(root, ignore_errors=True)
    if not a.skip_gpu:
        gpu_generation(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
