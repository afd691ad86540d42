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

Also: the reward trainer's step (Trainer loop, prompt stream, metrics) against a bare PyTorch loop doing the same
sampling, decoding, reward, backward, clipping and AdamW on the same parts, interleaved in one process.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import statistics
import time

CONFIGS = [("last", "random"), ("last", "all"), ("all", "random"), ("all", "all")]


def _register_brightness():
    from dataclasses import dataclass

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


def _config(device, height, width, frames, steps, backprop, decode, max_steps, out, max_len):
    from vidalign.training.reward_config import build_reward_config

    _register_brightness()
    return build_reward_config(dict(
        model_name_or_path="random", output_dir=out, prompts="simple_animals",
        rewards=[{"name": "bench_brightness"}], height=height, width=width, num_frames=frames,
        num_inference_steps=steps, guidance_scale=1.0, backprop_mode=backprop, decode_frames=decode,
        max_sequence_length=max_len, max_steps=max_steps, save_strategy="no", logging_steps=10**6,
        report_to="none", disable_tqdm=True, use_cpu=device == "cpu", bf16=device == "cuda", seed=0))


class _StepProbe:
    """A Trainer callback timing each optimizer step (CUDA-synchronised), recording the peak of tensors the autograd
    graph saves, and profiling CPU memory on one chosen step. ``between`` runs after each step, outside the timed
    interval (the bare loop's interleaved step)."""

    def __new__(cls, cuda: bool, profile_step: int | None = None, between=None):
        import torch
        from transformers import TrainerCallback

        class Probe(TrainerCallback):
            def __init__(self):
                self.times, self.saved_peak, self.cpu_peak = [], 0, 0
                self._saved_now, self._ctx, self._prof, self._t0 = 0, None, None, 0.0

            def _pack(self, t):
                self._saved_now += t.numel() * t.element_size()
                self.saved_peak = max(self.saved_peak, self._saved_now)
                return t

            def on_step_begin(self, args, state, control, **kw):
                if cuda:
                    torch.cuda.synchronize()
                self._saved_now = 0
                self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
                self._ctx.__enter__()
                if profile_step is not None and state.global_step == profile_step:
                    self._prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                                        profile_memory=True)
                    self._prof.__enter__()
                self._t0 = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                if cuda:
                    torch.cuda.synchronize()
                self.times.append(time.perf_counter() - self._t0)
                self._ctx.__exit__(None, None, None)
                if self._prof is not None:
                    self._prof.__exit__(None, None, None)
                    now = 0
                    for event in sorted(self._prof.events(), key=lambda e: e.time_range.start):
                        now += event.self_cpu_memory_usage
                        self.cpu_peak = max(self.cpu_peak, now)
                    self._prof = None
                if between is not None:
                    between()

        return Probe()


def _run_one(q, preset: str, device: str, height: int, width: int, frames: int, steps: int, backprop: str,
             decode: str, repeats: int, threads: int | None, max_len: int) -> None:
    import tempfile

    import torch
    from transformers.trainer_callback import PrinterCallback

    if threads and device == "cpu":
        torch.set_num_threads(threads)
    from vidalign.training.reward_trainer import RewardTrainer, random_wan_components

    cuda = device == "cuda"
    with tempfile.TemporaryDirectory() as out:
        cfg = _config(device, height, width, frames, steps, backprop, decode, repeats + 2, out, max_len)
        with torch.device(device):  # initialise the 1.3B weights on the GPU directly (CPU init takes minutes)
            components = random_wan_components(preset, seed=0)
        probe = _StepProbe(cuda, profile_step=None if cuda else repeats + 1)
        trainer = RewardTrainer(components, cfg, callbacks=[probe])
        trainer.remove_callback(PrinterCallback)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    times = probe.times[1:repeats + 1]  # the first step warms up allocators and kernels; the last is profiled
    q.put({"sec": statistics.median(times), "peak_mb": (torch.cuda.max_memory_allocated() if cuda
                                                         else probe.cpu_peak) / 2**20,
           "saved_mb": probe.saved_peak / 2**20})


class BareLoop:
    """VADER's step as a plain PyTorch loop on the same parts: prompt embedding precomputed, Euler sampling with
    gradients in the last step, one random frame decoded with checkpointing, the brightness reward, backward,
    gradient clip 1.0, fused AdamW (Trainer's default optimizer)."""

    def __init__(self, preset: str, device: str, height: int, width: int, frames: int, steps: int, max_len: int):
        import random
        from types import SimpleNamespace

        import torch
        from diffusers import FlowMatchEulerDiscreteScheduler

        from vidalign.contract import encode_text
        from vidalign.training.lora import add_lora
        from vidalign.training.reward_config import ATTENTION_TARGETS
        from vidalign.training.reward_trainer import random_wan_components
        from vidalign.training.sampling import flow_sigmas, num_latent_frames

        with torch.device(device):
            c = random_wan_components(preset, seed=0)
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        self.model = c.transformer.to(device, dtype)
        add_lora(self.model, SimpleNamespace(lora_rank=16, lora_alpha=16.0, lora_dropout=0.0, peft_config=None,
                                             lora_target_modules=list(ATTENTION_TARGETS)))
        self.model.enable_gradient_checkpointing()
        self.model.train()
        self.vae = c.vae.to(device, dtype).requires_grad_(False).eval()
        self.emb = encode_text(c.tokenizer, c.text_encoder.to(device, dtype), ["a cat"], max_len)[0].to(dtype)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=2e-4, weight_decay=0.0, fused=True)
        self.sigmas = flow_sigmas(FlowMatchEulerDiscreteScheduler(shift=5.0), steps, device)
        self.shape = (1, int(self.model.config.in_channels), num_latent_frames(frames), height // 8, width // 8)
        self.device, self.dtype, self.frames, self.steps = device, dtype, frames, steps
        self.rng, self.times, self.k = random.Random(0), [], 0

    def step(self, frame_indices: list[int] | None = None) -> None:
        """One step; decodes ``frame_indices`` (the trainer's draw of the same step, so that both decode the
        same frames: a causal VAE's cost grows with the frame index) or one frame of its own draw."""
        import torch

        from vidalign.training.sampling import decode_frames, sample_flow

        cuda = self.device == "cuda"
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        gen = torch.Generator(self.device).manual_seed(self.k)
        noise = torch.randn(self.shape, generator=gen, device=self.device)
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
        with amp:
            out = sample_flow(self.model, self.sigmas, noise, self.emb, cutoff=self.steps - 1, dtype=self.dtype)
            idx = list(frame_indices) if frame_indices else [self.rng.randrange(self.frames)]
            frames = decode_frames(self.vae, out.latents, idx, checkpointing=True)
        loss = -frames.float().mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - t0)
        self.k += 1


def overhead(preset: str, device: str, height: int, width: int, frames: int, steps: int, repeats: int,
             max_len: int) -> tuple[float, float]:
    """(trainer, bare) median seconds per optimizer step, interleaved step by step in one process so that load
    from other processes hits both alike. VADER's defaults: LoRA r16 on attention, backprop last, one frame (the same frame in both)."""
    import tempfile

    import torch
    from transformers.trainer_callback import PrinterCallback

    from vidalign.training.reward_trainer import RewardTrainer, random_wan_components

    bare = BareLoop(preset, device, height, width, frames, steps, max_len)
    with tempfile.TemporaryDirectory() as out:
        cfg = _config(device, height, width, frames, steps, "last", "random", repeats + 2, out, max_len)
        with torch.device(device):
            components = random_wan_components(preset, seed=0)
        class Recording(RewardTrainer):  # the frames each step decodes, for the bare loop's same step
            def frame_indices(self, rng, limit=None):
                self.last_frames = super().frame_indices(rng, limit)
                return self.last_frames

        trainer = None
        probe = _StepProbe(device == "cuda", between=lambda: bare.step(trainer.last_frames))
        trainer = Recording(components, cfg, callbacks=[probe])
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    return statistics.median(probe.times[2:]), statistics.median(bare.times[2:])


def run(preset: str, device: str, height: int, width: int, frames: int, steps: int, repeats: int,
        threads: int | None, max_len: int = 64) -> list[dict]:
    # fork after the heavy imports (cheap children, own peak memory); CUDA must start in a fresh process
    ctx = mp.get_context("spawn" if device == "cuda" else "fork")
    rows = []
    for backprop, decode in CONFIGS:
        q = ctx.Queue()
        p = ctx.Process(target=_run_one, args=(q, preset, device, height, width, frames, steps, backprop, decode,
                                               repeats, threads, max_len))
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


def print_overhead(preset, device, height, width, frames, steps, repeats, max_len) -> float:
    t_tr, t_bare = overhead(preset, device, height, width, frames, steps, repeats, max_len)
    print(f"[overhead] {preset} on {device}, {height}x{width}x{frames}, {steps} sampling steps, LoRA r16, backprop "
          f"last, one frame: RewardTrainer {t_tr * 1e3:.1f} ms/step vs bare loop {t_bare * 1e3:.1f} ms/step -> "
          f"ratio {t_tr / t_bare:.3f} (median of {repeats}, interleaved)")
    return t_tr / t_bare


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
    ap.add_argument("--overhead-repeats", type=int, default=12, help="timed steps of the overhead comparison")
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
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        print_overhead("tiny", "cpu", args.cpu_size, args.cpu_size, args.cpu_frames, args.cpu_steps,
                       args.overhead_repeats, 64)
        run("tiny", "cpu", args.cpu_size, args.cpu_size, args.cpu_frames, args.cpu_steps, args.repeats, args.threads)
    if not args.cpu_only:
        import torch

        if torch.cuda.is_available():
            print(f"GPU: {torch.cuda.get_device_name(0)}; Wan 2.1 1.3B architecture (random weights), bf16, "
                  "umT5-width embeddings [512, 4096]")
            run("wan2.1-1.3b", "cuda", args.gpu_height, args.gpu_width, args.gpu_frames, args.gpu_steps,
                args.repeats, args.threads, max_len=512)
            print_overhead("wan2.1-1.3b", "cuda", args.gpu_height, args.gpu_width, args.gpu_frames, args.gpu_steps,
                           max(3, args.repeats), 512)
        else:
            print("[gpu] skipped: CUDA is unavailable (Wan 2.1 1.3B architecture, random weights, "
                  f"{args.gpu_height}x{args.gpu_width}x{args.gpu_frames})")
    print(f"done in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
