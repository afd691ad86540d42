"""Preprocessing throughput, each figure a ratio against a baseline measured in the same run.

1. decode: frames/s of each video reader (decord, pyav, torchcodec; one thread, RGB out) vs ``ffmpeg -threads 1
   -i clip.mp4 -pix_fmt rgb24 -f null -`` on the same file (its own ``-benchmark`` time, so process start-up is
   not counted). The system ffmpeg, else imageio-ffmpeg's binary.
2. encode: ``vidalign encode``'s builder end to end (read shards, decode in DataLoader workers, VAE, float16,
   write shards) vs a bare loop of ``vae.encode`` over the same clips already in memory, same batch size, same
   VAE. Target >= 0.9: the loader must hide decoding. Models are loaded before timing in both.
3. GPU (CUDA only, else "skipped"): the real Wan 2.1 VAE architecture (``AutoencoderKLWan()``, random weights)
   at 81x480x832 in bf16, clips/s and peak memory, with and without tiling.

    python benchmarks/encode.py [--clips 8] [--frames 17] [--size 96] [--base-dim 8] [--workers 0 1]
                                [--gpu-clips 4] [--no-gpu | --gpu-only]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def ffmpeg_exe() -> str:
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def clip_frames(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Moving smooth patterns with some texture: a stand-in for real footage that H.264 does not trivialise."""
    rng = np.random.default_rng(seed)
    tt, yy, xx = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
    base = 128 + 60 * np.sin(0.05 * xx + 0.2 * tt) + 40 * np.cos(0.04 * yy - 0.15 * tt)
    rgb = np.stack([base, np.roll(base, 7, axis=2), np.roll(base, 13, axis=1)], axis=-1)
    rgb += rng.normal(0, 6, size=rgb.shape)
    return rgb.clip(0, 255).astype(np.uint8)


def bench_decode(tmp: Path, frames: int, height: int, width: int, repeat: int) -> None:
    from vidalign.media import encode_mp4
    from vidalign.preprocessing import video_io as vio

    path = tmp / "clip.mp4"
    path.write_bytes(encode_mp4(clip_frames(frames, height, width), 16.0))
    exe = ffmpeg_exe()

    def ffmpeg_seconds() -> float:
        out = subprocess.run([exe, "-hide_banner", "-benchmark", "-threads", "1", "-i", str(path), "-pix_fmt",
                              "rgb24", "-f", "null", "-"], capture_output=True, text=True, check=True)
        return float(re.search(r"rtime=([0-9.]+)s", out.stderr).group(1))

    base = min(ffmpeg_seconds() for _ in range(repeat))
    print(f"decode {frames}x{height}x{width} H.264 ({path.stat().st_size / 1e6:.2f} MB), one thread, RGB out:")
    print(f"  ffmpeg -f null ({Path(exe).name}): {frames / base:8.1f} frames/s (baseline)")
    for name in vio.READERS:
        try:
            vio.read_video(path, name)  # warm-up: imports, library init
        except Exception as exc:  # e.g. torchcodec without FFmpeg libraries
            print(f"  {name:10s}: skipped ({str(exc).splitlines()[0][:100]})")
            continue
        best = min(_timed(lambda n=name: vio.read_video(path, n)) for _ in range(repeat))
        print(f"  {name:10s}: {frames / best:8.1f} frames/s  ratio vs ffmpeg {base / best:5.2f}")


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


@dataclass
class EncodeSetup:
    clips: int
    frames: int
    size: int
    base_dim: int
    batch: int
    workers: tuple[int, ...]
    repeat: int


def bench_encode(tmp: Path, s: EncodeSetup) -> None:
    import torch
    from diffusers import AutoencoderKLWan

    from vidalign.builder import Builder, BuildOptions, Sample, register_builder
    from vidalign.media import encode_mp4
    from vidalign.preprocessing import encode as enc
    from vidalign.preprocessing import latents as lat
    from vidalign.preprocessing.video_io import ClipSpec, load_clip
    from vidalign.runner import run_build
    from vidalign.shards import iter_tar_samples

    @register_builder
    class _BenchClips(Builder):
        name = "bench-clips"

        @dataclass
        class Args:
            n: int = 8

        def plan(self):
            return self.split_range("clips", "train", self.args.n)

        def build_shard(self, job):
            for i in job.indices():
                yield Sample(self.key(i), {"json": {"prompt": f"clip {i}"},
                                           "mp4": encode_mp4(clip_frames(s.frames, s.size, s.size, i), 16.0)})

    src = tmp / "clips"
    run_build("bench-clips", {"n": s.clips}, BuildOptions(out=src, samples_per_shard=max(1, s.clips // 2),
                                                          progress=False))
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=s.base_dim, z_dim=16).eval()
    vae_dir = tmp / "vae"
    vae.save_pretrained(vae_dir)
    args = {"in_dir": str(src), "vae": str(vae_dir), "dtype": "fp32", "frames": s.frames, "height": s.size,
            "width": s.size, "batch_size": s.batch, "device": "cpu"}
    spec = ClipSpec(frames=s.frames, height=s.size, width=s.size)
    videos = [load_clip(x["mp4"], spec).model_input() for p in sorted(src.glob("data/clips/*.tar"))
              for x in iter_tar_samples(p)]
    model = lat.load_vae(str(vae_dir), dtype="fp32")

    def bare() -> None:
        with torch.inference_mode():
            for k in range(0, len(videos), s.batch):
                model.encode(torch.stack(videos[k:k + s.batch])).latent_dist.mean.float().cpu()

    enc.LatentsBuilder(enc.LatentsBuilder.Args(**args)).models()  # loaded once, as the command's process does
    bare()  # warm-up

    def ours(workers: int) -> None:
        shutil.rmtree(tmp / "lat", ignore_errors=True)
        run_build("latents", {**args, "num_workers": workers}, BuildOptions(out=tmp / "lat", progress=False))

    times: dict = {"bare": []}
    for _ in range(s.repeat):  # interleaved, best of each: a busy machine slows all alike
        times["bare"].append(_timed(bare))
        for w in s.workers:
            times.setdefault(w, []).append(_timed(lambda w=w: ours(w)))
    t_bare = min(times["bare"])
    print(f"encode {s.clips} clips of {s.frames}x{s.size}x{s.size} in 2 shards, Wan VAE base_dim {s.base_dim}, "
          f"batch {s.batch}, CPU threads {torch.get_num_threads()}:")
    print(f"  bare vae.encode on tensors in memory:  {s.clips / t_bare:7.2f} clips/s (baseline)")
    for w in s.workers:
        t = min(times[w])
        print(f"  vidalign encode, {w} DataLoader workers: {s.clips / t:7.2f} clips/s  ratio {t_bare / t:5.2f} "
              "(target >= 0.9)")


def bench_gpu(clips: int) -> None:
    import torch

    if not torch.cuda.is_available():
        print("[gpu] skipped: CUDA is not available (Wan 2.1 VAE at 81x480x832, bf16)")
        return
    from diffusers import AutoencoderKLWan

    from vidalign.preprocessing import latents as lat

    vae = AutoencoderKLWan().to("cuda", torch.bfloat16).eval()  # the Wan 2.1 VAE architecture, random weights
    x = torch.randint(0, 256, (1, 3, 81, 480, 832), dtype=torch.uint8)
    print(f"gpu {torch.cuda.get_device_name()}: Wan 2.1 VAE (random weights), 81x480x832, bf16, batch 1:")
    for tiling in (False, True):
        vae.use_tiling = False
        lat.configure_vae(vae, tiling=tiling)
        lat.encode_videos(vae, x)  # warm-up (cuDNN autotuning, allocator)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        for _ in range(clips):
            lat.encode_videos(vae, x)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t
        peak = torch.cuda.max_memory_allocated() / 2**30
        print(f"  tiling {'on ' if tiling else 'off'}: {clips / dt:6.3f} clips/s, peak memory {peak:6.2f} GiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decode-frames", type=int, default=81)
    ap.add_argument("--decode-height", type=int, default=256)
    ap.add_argument("--decode-width", type=int, default=448)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--base-dim", type=int, default=8, help="Wan VAE width (96 is the real model)")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1],
                    help="DataLoader worker counts to compare (on a 2-core CPU the VAE already uses both cores)")
    ap.add_argument("--gpu-clips", type=int, default=4)
    ap.add_argument("--no-gpu", action="store_true")
    ap.add_argument("--gpu-only", action="store_true", help="only part 3 (or `skipped` without CUDA)")
    a = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    if not a.gpu_only:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            bench_decode(tmp, a.decode_frames, a.decode_height, a.decode_width, a.repeat)
            bench_encode(tmp, EncodeSetup(a.clips, a.frames, a.size, a.base_dim, a.batch_size, tuple(a.workers),
                                          a.repeat))
    if not a.no_gpu:
        bench_gpu(a.gpu_clips)


if __name__ == "__main__":
    main()
