"""Reward-gradient training cost: ``last`` vs ``all`` backprop, one (random) vs all decoded frames.

Each configuration runs in a fresh process (so peak memory is its own) and does ``--repeats`` optimizer steps of
:class:`vidalign.training.reward_trainer.RewardTrainer` on a random-weight Wan (LoRA r16 on attention, transformer
and VAE checkpointing, a mean-brightness reward so the reward model costs nothing). Reported per configuration:
seconds per step (median after one warm-up step), peak tensor memory of a step (CUDA: ``max_memory_allocated``;
CPU: from the profiler's allocation records of one extra step) and the peak of tensors the autograd graph holds
outside checkpointed regions, each also as a ratio to the ``last`` + one-frame baseline measured in the same run.

    python benchmarks/reward.py                       # tiny model on CPU (< 1 min), then the GPU run or "skipped"
    python benchmarks/reward.py --gpu-only            # Wan 2.1 1.3B architecture at 480×832×81 on CUDA
    python benchmarks/reward.py --cpu-size 64 --cpu-frames 17 --repeats 3
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import statistics
import time

CONFIGS = [("last", "random"), ("last", "all"), ("all", "random"), ("all", "all")]


def _run_one(q, preset: str, device: str, height: int, width: int, frames: int, steps: int, backprop: str,
             decode: str, repeats: int, threads: int | None) -> None:
    import torch

    if threads and device == "cpu":
        torch.set_num_threads(threads)
    from dataclasses import dataclass

    from vidalign.training.reward_config import build_reward_config
    from vidalign.training.reward_trainer import RewardTrainer, random_wan_components
    from vidalign.training.rewards import Reward, RewardOutput, register_reward, reward_names

    @dataclass(frozen=True)
    class _Opts:
        """The benchmark reward has no options."""

    class Brightness(Reward):
        def forward(self, x, inputs):
            s = x.mean(dim=(1, 2, 3, 4))
            return RewardOutput(-s, s)

    if "bench_brightness" not in reward_names():
        register_reward("bench_brightness", _Opts, Brightness)(lambda o, device="cpu", dtype=None: Brightness())
    cfg = build_reward_config(dict(
        model_name_or_path="random", output_dir="/tmp/vidalign_reward_bench", prompts="simple_animals",
        rewards=[{"name": "bench_brightness"}], height=height, width=width, num_frames=frames,
        num_inference_steps=steps, guidance_scale=1.0, backprop_mode=backprop, decode_frames=decode,
        max_sequence_length=64, max_steps=repeats + 1, save_steps=0, report_to="none", disable_tqdm=True,
        use_cpu=device == "cpu", bf16=device == "cuda", seed=0))
    with torch.device(device):  # initialise the 1.3B weights on the GPU directly (CPU init takes minutes)
        components = random_wan_components(preset, seed=0)
    trainer = RewardTrainer(cfg, components=components)
    cuda = device == "cuda"
    saved = {"now": 0, "peak": 0}

    def pack(t):
        saved["now"] += t.numel() * t.element_size()
        saved["peak"] = max(saved["peak"], saved["now"])
        return t

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(repeats + 1):
        saved["now"] = 0
        t0 = time.perf_counter()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            trainer.step()
        if cuda:
            torch.cuda.synchronize()
        if i:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - t0)
    q.put({"sec": statistics.median(times), "peak_mb": (torch.cuda.max_memory_allocated() if cuda
                                                         else _cpu_peak(trainer)) / 2**20,
           "saved_mb": saved["peak"] / 2**20})


def _cpu_peak(trainer) -> int:
    """Peak bytes of live tensors during one more step, from the profiler's per-op allocation records (CPU has
    no allocator statistics; peak RSS is dominated by the set-up and the C allocator's caching)."""
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        trainer.step()
    now = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        now += event.self_cpu_memory_usage
        peak = max(peak, now)
    return peak


def run(preset: str, device: str, height: int, width: int, frames: int, steps: int, repeats: int,
        threads: int | None) -> list[dict]:
    # fork after the heavy imports (cheap children, own peak memory); CUDA must start in a fresh process
    ctx = mp.get_context("spawn" if device == "cuda" else "fork")
    rows = []
    for backprop, decode in CONFIGS:
        q = ctx.Queue()
        p = ctx.Process(target=_run_one, args=(q, preset, device, height, width, frames, steps, backprop, decode,
                                               repeats, threads))
        p.start()
        res = q.get()
        p.join()
        rows.append({"backprop": backprop, "decode": "one" if decode == "random" else "all", **res})
    base = rows[0]
    print(f"{preset} on {device}: {height}x{width}x{frames}, {steps} sampling steps, LoRA r16, "
          f"median of {repeats} steps")
    print(f"{'backprop':>8} {'decode':>6} {'s/step':>9} {'x':>6} {'peak MB':>10} {'x':>6} {'graph MB':>10} {'x':>6}")
    for r in rows:
        print(f"{r['backprop']:>8} {r['decode']:>6} {r['sec']:9.3f} {r['sec'] / base['sec']:6.2f} "
              f"{r['peak_mb']:10.1f} {r['peak_mb'] / max(base['peak_mb'], 1e-9):6.2f} "
              f"{r['saved_mb']:10.2f} {r['saved_mb'] / max(base['saved_mb'], 1e-9):6.2f}")
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-size", type=int, default=32, help="CPU run: height = width (multiple of 16)")
    ap.add_argument("--cpu-frames", type=int, default=9, help="CPU run: frames (4k+1)")
    ap.add_argument("--cpu-steps", type=int, default=4, help="CPU run: sampling steps")
    ap.add_argument("--gpu-steps", type=int, default=10, help="GPU run: sampling steps (PISA: 10)")
    ap.add_argument("--gpu-height", type=int, default=480)
    ap.add_argument("--gpu-width", type=int, default=832)
    ap.add_argument("--gpu-frames", type=int, default=81)
    ap.add_argument("--repeats", type=int, default=2, help="timed optimizer steps per configuration")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--gpu-only", action="store_true")
    ap.add_argument("--cpu-only", action="store_true")
    args = ap.parse_args(argv)
    print(f"machine: {platform.machine()} {platform.system()}, python {platform.python_version()}")
    t0 = time.perf_counter()
    import diffusers  # noqa: F401  (imported once, before the CPU children fork)
    import transformers  # noqa: F401

    import vidalign.training.reward_trainer  # noqa: F401

    if not args.gpu_only:
        run("tiny", "cpu", args.cpu_size, args.cpu_size, args.cpu_frames, args.cpu_steps, args.repeats, args.threads)
    if not args.cpu_only:
        import torch

        if torch.cuda.is_available():
            print(f"GPU: {torch.cuda.get_device_name(0)}")
            run("wan2.1-1.3b", "cuda", args.gpu_height, args.gpu_width, args.gpu_frames, args.gpu_steps,
                args.repeats, args.threads)
        else:
            print("GPU benchmark skipped: CUDA is unavailable (Wan 2.1 1.3B architecture, random weights, "
                  f"{args.gpu_height}x{args.gpu_width}x{args.gpu_frames})")
    print(f"done in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
