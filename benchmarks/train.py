"""Benchmark the diffusion trainers against baselines measured in the same run.

1. Overhead: seconds per step of ``DiffusionDPOTrainer`` (data stream, Trainer loop, metrics) vs a bare PyTorch
   loop computing the same loss (adapter-off reference, policy, DPO + regulariser, AdamW, grad clip) on the same
   model and batch. Target: ratio ≤ 1.10.
2. Memory: peak memory of a DPO step vs an SFT step through the same number of clips (B pairs vs 2B clips), each
   measured in its own process (CUDA: ``max_memory_allocated``; CPU: peak RSS above the process's start). Target
   ≤ 1.15: the reference is the adapter-off model, not a second copy.
3. Streaming: the DPO trainer's data path (``vidalign.data.stream`` → per-sample preparation in 2 DataLoader
   workers → batches) reading the same latent shards over HTTP from a file server on 127.0.0.1 (another process,
   the tests' ``tests/http_server.py``) vs from disk: prepared pairs per second. Samples have Wan 1.3B's shapes
   (latents 16×21×60×104 float16, umT5 embeddings 512×4096; 12.6 MB per pair). Disk and HTTP passes alternate
   (paired, so other load hits both alike); reported: the median of the paired ratios and the ratio of the best
   passes. Target: HTTP ≥ 0.9 × disk.
4. GPU only: the real Wan2.1-T2V-1.3B transformer architecture (random weights) on 81×480×832 videos (latents
   16×21×60×104), bf16, LoRA r16 on the text pathway: seconds per pair and peak memory of DPO and SFT steps.

    python benchmarks/train.py                 # CPU default run, ~1-2 min
    python benchmarks/train.py --steps 30 --size wide
    python benchmarks/train.py --only-stream --stream-samples 48 --stream-repeats 3
    python benchmarks/train.py --gpu-only --gpu-steps 5
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from transformers.trainer_callback import PrinterCallback

SIZES = {  # WanTransformer3DModel sizes: heads, head dim, ffn, layers, text dim, channels, latent (T, h, w)
    "tiny": (2, 8, 32, 1, 16, 4, (5, 8, 8)),
    "small": (4, 32, 512, 2, 64, 16, (5, 16, 16)),
    "wide": (4, 128, 2048, 4, 512, 16, (5, 16, 16)),
}
WAN_1_3B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
WAN_LATENT = (16, 21, 60, 104)  # 81 frames at 480×832 through Wan's VAE (4× time, 8× space)
TEXT_LEN = 512


def build_model(size: str, device="cpu", dtype=torch.float32):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    if size == "wan1.3b":
        with torch.device(device):
            return _keep_fp32(WanTransformer3DModel(**WAN_1_3B).to(dtype))
    heads, hd, ffn, layers, text, c, _ = SIZES[size]
    model = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=hd,
                                  in_channels=c, out_channels=c, text_dim=text, freq_dim=32, ffn_dim=ffn,
                                  num_layers=layers, rope_max_seq_len=64).to(device)
    return _keep_fp32(model.to(dtype)) if dtype != torch.float32 else model


def _keep_fp32(model):
    """What ``from_pretrained(torch_dtype=bf16)`` does: norms, time embedder and rope stay float32."""
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    for name, module in model.named_modules():
        if any(k in name.split(".") for k in keep):
            module.float()
    return model


def shape_of(size: str) -> tuple[tuple[int, ...], int, int]:
    if size == "wan1.3b":
        return WAN_LATENT, TEXT_LEN, WAN_1_3B["text_dim"]
    _, _, _, _, text, c, lat = SIZES[size]
    return (c, *lat), 16, text


def samples(size: str, n: int, kind: str) -> list[dict]:
    lat, length, text = shape_of(size)
    rng = np.random.default_rng(0)
    meta = {"prompt": "bench", "latents": {"latents_mean": [0.0] * lat[0], "latents_std": [1.0] * lat[0]}}
    out = []
    for i in range(n):
        s = {"__key__": f"s0-{i:08d}", "json": meta, "prompt_embeds.npy": rng.standard_normal((length, text))
             .astype(np.float16)}
        if kind == "dpo":
            s["chosen_latents.npy"] = rng.standard_normal(lat).astype(np.float16)
            s["rejected_latents.npy"] = rng.standard_normal(lat).astype(np.float16)
        else:
            s["latents.npy"] = rng.standard_normal(lat).astype(np.float16)
        out.append(s)
    return out


def make_config(kind: str, out: str, steps: int, batch: int, gpu: bool, ckpt: bool = False):
    from vidalign.training.config import DiffusionDPOConfig, DiffusionSFTConfig

    common = dict(output_dir=out, max_steps=steps, per_device_train_batch_size=batch, gradient_accumulation_steps=1,
                  learning_rate=1e-4, warmup_steps=0, lr_scheduler_type="constant", logging_steps=10**6,
                  save_strategy="no", report_to="none", disable_tqdm=True, dataloader_num_workers=0,
                  bf16=gpu, use_cpu=not gpu, use_lora=True, lora_rank=16, lora_alpha=16, seed=0,
                  activation_checkpointing=ckpt)
    if kind == "dpo":
        return DiffusionDPOConfig(**common)
    return DiffusionSFTConfig(**common, ema_decay=None, first_frame_conditioning=False, max_grad_norm=1.0)


class _StepTimer:
    """Steady-state step time: intervals between consecutive ``on_step_end`` events (CUDA-synchronised), so each
    interval covers a whole step (fetching the batch, forward, backward, optimizer, logging). ``between`` runs
    after each step, outside the measured intervals (the bare loop's interleaved step)."""

    def __init__(self, between=None):
        from transformers import TrainerCallback

        timer = self

        class CB(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                _sync()
                now = time.perf_counter()
                if timer.last is not None:
                    timer.times.append(now - timer.last)
                if between is not None:
                    between()
                    _sync()
                timer.last = time.perf_counter()

        self.times: list[float] = []
        self.last: float | None = None
        self.callback = CB()


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _median(times: list[float], warmup: int) -> float:
    return statistics.median(times[warmup:] if len(times) > warmup else times)


class BareLoop:
    """The same DPO step as a plain PyTorch loop on pre-built tensors: adapter-off reference, policy, DPO loss with
    clip 5 + 0.5 × regulariser, backward, grad clip 1.0, fused AdamW (Trainer's default)."""

    def __init__(self, size: str, batch: int, device: str, ckpt: bool = False):
        from types import SimpleNamespace

        from vidalign.training.config import TEXT_PATHWAY_TARGETS
        from vidalign.training.data import PairPrep, collate_latents
        from vidalign.training.lora import add_lora

        self.device, gpu = device, device == "cuda"
        self.model = build_model(size, device, torch.bfloat16 if gpu else torch.float32)
        if ckpt:
            self.model.enable_gradient_checkpointing()
        self.model.train()
        add_lora(self.model, SimpleNamespace(lora_rank=16, lora_alpha=16, lora_dropout=0.0,
                                             lora_target_modules=list(TEXT_PATHWAY_TARGETS)))
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=1e-4, weight_decay=0.0, fused=True)
        b = collate_latents([PairPrep()(s, np.random.default_rng(0)) for s in samples(size, batch, "dpo")])
        self.xw, self.xl = b["latents_w"].to(device), b["latents_l"].to(device)
        self.emb = b["prompt_embeds"].to(device)
        self.gpu, self.step_no, self.times = gpu, 0, []

    def step(self) -> None:
        from vidalign.training import losses as L
        from vidalign.training.lora import adapters_disabled

        model, device, xw, xl = self.model, self.device, self.xw, self.xl
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if self.gpu else torch.autocast("cpu", enabled=False)
        _sync()
        t0 = time.perf_counter()
        gen = torch.Generator(device=device).manual_seed(self.step_no)
        nw = torch.randn(xw.shape, generator=gen, device=device)
        nl = torch.randn(xl.shape, generator=gen, device=device)
        sig = L.sample_timesteps("shifted", xw.shape[0], gen, shift=5.0, device=device)
        x0, noise, s2 = torch.cat([xw, xl]), torch.cat([nw, nl]), torch.cat([sig, sig])
        xt, target, t = L.add_noise_flow(x0, noise, s2), L.flow_matching_target(x0, noise), s2 * 1000
        e2 = torch.cat([self.emb, self.emb])
        with torch.no_grad(), adapters_disabled(model), amp:
            ref = model(xt, t, e2, return_dict=False)[0]
        with amp:
            pred = model(xt, t, e2, return_dict=False)[0]
        err, ref_err = L.per_sample_mse(pred, target), L.per_sample_mse(ref, target)
        b = xw.shape[0]
        out = L.diffusion_dpo_loss(err[:b], err[b:], ref_err[:b], ref_err[b:], 1.0, clip=5.0)
        loss = out.loss + 0.5 * L.zeroth_order_reg(pred[:b], ref[:b], pred[b:], ref[b:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        _sync()
        self.times.append(time.perf_counter() - t0)
        self.step_no += 1


def overhead(size: str, steps: int, batch: int, device: str, ckpt: bool = False) -> tuple[float, float]:
    """(trainer, bare) median seconds per step, the two loops interleaved step by step so that load from other
    processes hits both alike."""
    from vidalign.training.dpo_trainer import DiffusionDPOTrainer

    gpu = device == "cuda"
    bare = BareLoop(size, batch, device, ckpt)
    with tempfile.TemporaryDirectory() as tmp:
        args = make_config("dpo", tmp, steps, batch, gpu, ckpt)
        model = build_model(size, device, torch.bfloat16 if gpu else torch.float32)
        timer = _StepTimer(between=bare.step)
        tr = DiffusionDPOTrainer(model, args, train_dataset=samples(size, 2 * batch, "dpo"),
                                 callbacks=[timer.callback])
        tr.remove_callback(PrinterCallback)
        tr.train()
    return _median(timer.times, 1), _median(bare.times, 2)


def memory_probe(kind: str, size: str, batch: int, device: str, ckpt: bool) -> dict:
    """Run 3 steps of ``kind`` in this process and report its peak memory (MB)."""
    from vidalign.training.dpo_trainer import DiffusionDPOTrainer
    from vidalign.training.sft_trainer import DiffusionSFTTrainer

    gpu = device == "cuda"
    clips = 2 * batch if kind == "sft" else batch  # same number of clips through the policy
    data = samples(size, max(2, 2 * clips), kind)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory() as tmp:
        args = make_config(kind, tmp, 3, clips, gpu, ckpt)
        cls = DiffusionDPOTrainer if kind == "dpo" else DiffusionSFTTrainer
        model = build_model(size, device, torch.bfloat16 if gpu else torch.float32)
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        timer = _StepTimer()
        tr = cls(model, args, train_dataset=data, callbacks=[timer.callback])
        tr.remove_callback(PrinterCallback)
        tr.train()
    if gpu:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base_rss
    return {"kind": kind, "peak_mb": peak, "step_s": _median(timer.times, 0)}


def run_probe(kind: str, size: str, batch: int, device: str, ckpt: bool) -> dict:
    cmd = [sys.executable, __file__, "--probe", kind, "--size", size, "--batch", str(batch), "--device", device,
           "--threads", str(torch.get_num_threads())]
    if ckpt:
        cmd.append("--gradient-checkpointing")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"memory probe {kind} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def stream_throughput(samples: int, repeats: int, workers: int, folder: str | None = None) -> dict:
    """Prepared pairs per second through the trainer's data path, from disk and over HTTP (see the docstring)."""
    import os
    import pathlib
    import shutil

    from torch.utils.data import DataLoader

    from vidalign.builder import BuildOptions
    from vidalign.runner import run_build
    from vidalign.training.data import PairPrep, collate_latents, training_stream

    root = pathlib.Path(folder or tempfile.mkdtemp(prefix="vidalign-stream-"))
    data = root / "pairs"
    if not (data / "manifest.json").is_file():
        run_build("synthetic-latents", {"num_samples": samples, "kind": "pairs"},
                  BuildOptions(out=data, samples_per_shard=max(1, samples // (4 * workers)), progress=False))
    mb = sum(p.stat().st_size for p in data.rglob("*.tar")) / 1e6
    server_py = pathlib.Path(__file__).resolve().parents[1] / "tests" / "http_server.py"
    server = subprocess.Popen([sys.executable, str(server_py), str(root)], stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip() + "/pairs"

        def cpu_seconds() -> float:  # this process, its finished DataLoader workers, and the HTTP server
            own = resource.getrusage(resource.RUSAGE_SELF)
            kids = resource.getrusage(resource.RUSAGE_CHILDREN)
            try:
                fields = pathlib.Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
                srv = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, ValueError, IndexError):
                srv = 0.0
            return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime + srv

        def one_pass(source: str) -> tuple[float, float]:
            s = training_stream(source).replace(transform=PairPrep(weight_key="weight"), epochs=1)
            loader = DataLoader(s, batch_size=2, num_workers=workers, collate_fn=collate_latents,
                                prefetch_factor=2)
            t0, c0, n = time.perf_counter(), cpu_seconds(), 0
            for batch in loader:
                n += len(batch["__key__"])
            assert n == samples, (n, samples)
            del loader  # workers exit and are reaped: their CPU time is in RUSAGE_CHILDREN
            return n / (time.perf_counter() - t0), (cpu_seconds() - c0) / n

        one_pass(str(data))  # warm the page cache (both sides then read from memory)
        disk, http, disk_cpu, http_cpu = [], [], [], []
        for _ in range(repeats):
            for source, rate, cpu in ((str(data), disk, disk_cpu), (url, http, http_cpu)):
                r, c = one_pass(source)
                rate.append(r)
                cpu.append(c)
    finally:
        server.terminate()
        server.wait()
        if folder is None:
            shutil.rmtree(root, ignore_errors=True)
    paired = sorted(h / d for h, d in zip(http, disk))
    return {"disk": max(disk), "http": max(http), "mb": mb, "samples": samples, "disk_all": disk, "http_all": http,
            "paired": paired[len(paired) // 2], "load": os.getloadavg(),
            "disk_cpu": statistics.median(disk_cpu), "http_cpu": statistics.median(http_cpu)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="small", choices=sorted(SIZES), help="CPU model size for parts 1-2")
    p.add_argument("--mem-size", default="wide", choices=sorted(SIZES), help="model size for the memory probe")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=2, help="pairs per step")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1: least disturbed by other load)")
    p.add_argument("--gpu-steps", type=int, default=4)
    p.add_argument("--gpu-only", action="store_true")
    p.add_argument("--skip-gpu", action="store_true")
    p.add_argument("--gradient-checkpointing", action="store_true", help="(probe) checkpoint activations")
    p.add_argument("--no-gpu-checkpointing", action="store_true", help="GPU part without activation checkpointing")
    p.add_argument("--stream-samples", type=int, default=24, help="pairs in the streaming benchmark (12.6 MB each)")
    p.add_argument("--stream-repeats", type=int, default=5, help="alternating disk/HTTP passes")
    p.add_argument("--stream-workers", type=int, default=2, help="DataLoader workers")
    p.add_argument("--only-stream", action="store_true", help="run only the streaming benchmark")
    p.add_argument("--skip-stream", action="store_true")
    p.add_argument("--probe", choices=["dpo", "sft"], help=argparse.SUPPRESS)
    p.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.probe:
        print(json.dumps(memory_probe(a.probe, a.size, a.batch, a.device, a.gradient_checkpointing)))
        return

    from diffusers.utils import logging as dlogging
    from transformers.utils import logging as tlogging

    tlogging.set_verbosity_error()
    dlogging.set_verbosity_error()
    if not a.gpu_only and not a.skip_stream:
        r = stream_throughput(a.stream_samples, a.stream_repeats, a.stream_workers)
        per = r["mb"] / r["samples"]
        print(f"[stream] {r['samples']} pairs ({per:.1f} MB each), {a.stream_workers} DataLoader workers, DPO "
              f"preparation: disk {r['disk']:.1f} pairs/s ({r['disk'] * per:.0f} MB/s) vs HTTP on 127.0.0.1 "
              f"{r['http']:.1f} pairs/s ({r['http'] * per:.0f} MB/s) (best passes) -> ratio {r['http'] / r['disk']:.3f}, "
              f"median paired ratio {r['paired']:.3f} (target >= 0.9); CPU per pair (all processes, median) disk "
              f"{r['disk_cpu'] * 1e3:.0f} ms vs HTTP {r['http_cpu'] * 1e3:.0f} ms -> {r['http_cpu'] / r['disk_cpu']:.3f}; "
              f"passes disk {[round(x, 1) for x in r['disk_all']]} http {[round(x, 1) for x in r['http_all']]}; "
              f"load average {r['load'][0]:.1f}")
        if a.only_stream:
            return
    if not a.gpu_only and not a.only_stream:
        t_tr, t_bare = overhead(a.size, a.steps, a.batch, "cpu")
        print(f"[overhead] size={a.size} batch={a.batch} pairs steps={a.steps} (cpu, {torch.get_num_threads()} "
              f"threads): DPO trainer {t_tr * 1e3:.1f} ms/step vs bare loop {t_bare * 1e3:.1f} ms/step "
              f"-> ratio {t_tr / t_bare:.3f} (target <= 1.10)")
        dpo = run_probe("dpo", a.mem_size, a.batch, "cpu", False)
        sft = run_probe("sft", a.mem_size, a.batch, "cpu", False)
        print(f"[memory] size={a.mem_size} (cpu, peak RSS above start): DPO step ({a.batch} pairs) "
              f"{dpo['peak_mb']:.0f} MB vs SFT step ({2 * a.batch} clips) {sft['peak_mb']:.0f} MB -> ratio "
              f"{dpo['peak_mb'] / sft['peak_mb']:.3f} (target <= 1.15)")
    if a.skip_gpu:
        return
    if not torch.cuda.is_available():
        print("[gpu] skipped: CUDA is not available (Wan 1.3B at 81x480x832, bf16, LoRA r16 needs a GPU)")
        return
    ckpt = not a.no_gpu_checkpointing
    dpo = run_probe("dpo", "wan1.3b", 1, "cuda", ckpt)
    sft = run_probe("sft", "wan1.3b", 1, "cuda", ckpt)
    name = torch.cuda.get_device_name(0)
    print(f"[gpu] {name}, Wan2.1-T2V-1.3B architecture (random weights), latents {WAN_LATENT} (81x480x832), bf16, "
          f"LoRA r16 text pathway, activation checkpointing {'on' if ckpt else 'off'}: DPO {dpo['step_s']:.2f} s/pair, "
          f"peak {dpo['peak_mb'] / 1024:.1f} GiB; SFT (2 clips) {sft['step_s']:.2f} s/step, peak "
          f"{sft['peak_mb'] / 1024:.1f} GiB -> memory ratio {dpo['peak_mb'] / sft['peak_mb']:.3f}")
    t_tr, t_bare = overhead("wan1.3b", a.gpu_steps, 1, "cuda", ckpt)
    print(f"[gpu] overhead: DPO trainer {t_tr:.2f} s/pair vs bare loop {t_bare:.2f} s/pair -> ratio "
          f"{t_tr / t_bare:.3f} over {a.gpu_steps} steps")


if __name__ == "__main__":
    main()
