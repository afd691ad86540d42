"""PisaBench metrics: vidalign's implementation against a straightforward reference, on synthetic masks.

Default: 60 clips × 32 frames at 256×256 (the size of PisaBench's sim test set), a dropping disk of
radius 10–30 px per clip and a prediction that drifts from it. The reference is what one writes first:
a Python loop over frames, centroids from ``np.argwhere``, Chamfer by brute-force pairwise distances
(``scipy.spatial.distance.cdist``).
Both must agree; the figure is the time ratio reference / vidalign.

Second line: the authors' metrics-config path as users run it, ``vidalign eval pisa --config FILE.jsonl``
(files on disk: GT ``mask.npz`` [T, 3, H, W] of a tower of two objects and the dropper, one-object predictions
saved squeezed [T, H, W] as ``generate_mask.py`` saves them, 120-fps GT against 16-fps predictions for half the
clips, plus one line their ``eval.py`` would drop), against a transcription of the authors' ``eval.py`` /
``utils/metrics.py`` run on the same files in the same process (per-frame loops, centroids with ``np.where``,
Chamfer with a KD-tree over *every* mask pixel). Per-line results must agree; the ratio is of CPU time.

With CUDA, a last line times SAM 2 hiera-L propagation (randomly initialised weights at hiera-L size, unless
--sam2-model names a checkpoint).

    python benchmarks/eval.py                    # < 1 min on a 2-core CPU
    python benchmarks/eval.py --clips 120 --size 512
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np

from vidalign.eval.pisa import video_metrics


def synthetic_clip(rng: np.random.Generator, frames: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """GT and predicted bool masks ``[T, H, W]`` of a falling disk; the prediction falls slower and drifts."""
    yy, xx = np.mgrid[:size, :size]
    r = rng.uniform(10, 30) * size / 256
    x0, y0 = rng.uniform(0.3, 0.7) * size, rng.uniform(0.1, 0.3) * size
    g, drift = rng.uniform(0.4, 0.8) * size / frames ** 2, rng.normal(0, 0.5)
    gt = np.zeros((frames, size, size), dtype=bool)
    pd = np.zeros_like(gt)
    for t in range(frames):
        ya = min(y0 + g * t * t, size - r)
        yb = min(y0 + 0.7 * g * t * t, size - r)
        gt[t] = (xx - x0) ** 2 + (yy - ya) ** 2 <= r * r
        pd[t] = (xx - x0 - drift * t) ** 2 + (yy - yb) ** 2 <= (0.9 * r) ** 2
    pd[rng.integers(frames)] = False  # a lost frame: exercises the NaN rules
    return gt, pd


def reference_metrics(gt: np.ndarray, pd: np.ndarray) -> dict[str, float]:
    """Per-frame loops and brute-force Chamfer (same fps: frame k ↔ frame k)."""
    from scipy.spatial.distance import cdist

    h = gt.shape[1]
    l2, cd, iou = [], [], []
    for a, b in zip(gt, pd):
        pa, pb = np.argwhere(a).astype(np.float64), np.argwhere(b).astype(np.float64)
        if len(pa) and len(pb):
            ca, cb = pa.mean(0), pb.mean(0)
            l2.extend(abs(ca - cb))
            d = cdist(pa, pb)  # brute force: every pair of pixels
            cd.append(d.min(0).mean() + d.min(1).mean())
        union = np.logical_or(a, b).sum()
        iou.append(np.logical_and(a, b).sum() / union if union else 1.0)
    s = 1 / math.sqrt(2) / h
    return {"l2": s * float(np.mean(l2)) if l2 else math.nan, "chamfer": s * float(np.mean(cd)) if cd else math.nan,
            "iou": float(np.mean(iou))}


def bench_metrics(clips: int, frames: int, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = [synthetic_clip(rng, frames, size) for _ in range(clips)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t0 = time.perf_counter()
        ours = [video_metrics(g, p) for g, p in data]
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = [reference_metrics(g, p) for g, p in data]
        t_ref = time.perf_counter() - t0
    for a, b in zip(ours, ref):
        for k in a:
            assert math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-12), (k, a[k], b[k])
    print(f"PisaBench metrics, {clips} clips x {frames} frames at {size}x{size}: vidalign {t_ours:.2f} s, "
          f"reference {t_ref:.2f} s -> {t_ref / t_ours:.1f}x faster (results identical)")


def _authors_eval(config: dict) -> dict:
    """What the authors' eval.py computes for one config line (their process_single_video, transcribed)."""
    from scipy.spatial import cKDTree

    gt = np.load(config["gt_mask"])["mask"]
    pd = np.load(config["pd_mask"])["mask"]
    ratio = config["gt_fps"] / config["pd_fps"]
    target = [int(k * ratio) for k in range(len(pd)) if int(k * ratio) < len(gt)]
    gt = gt[target]
    pd = pd[:min(len(gt), len(pd))]
    pd = pd[:, None] if pd.ndim != 4 else pd
    gt = gt[:, None] if gt.ndim != 4 else gt
    gt, pd = gt[:, -1:], pd[:, -1:]  # simulated clips: the dropping object is the last

    def centroids(mask):
        out = []
        for i in range(mask.shape[0]):
            ys, xs = np.where(mask[i, 0] == 1)
            out.append([np.mean(xs), np.mean(ys)] if len(xs) else [np.nan, np.nan])
        return np.array(out)

    h = gt.shape[2]
    s = 1 / np.sqrt(2)
    l2 = np.nanmean(np.sqrt((centroids(gt) - centroids(pd)) ** 2)) * s / h
    cds, ious = [], []
    for i in range(gt.shape[0]):
        a = np.column_stack(np.where(gt[i, 0])).astype(np.float32)
        b = np.column_stack(np.where(pd[i, 0])).astype(np.float32)
        d1 = cKDTree(a).query(b)[0] if len(a) else np.full(len(b), np.inf)
        d2 = cKDTree(b).query(a)[0] if len(b) else np.full(len(a), np.inf)
        cds.append((np.nanmean(d1) + np.nanmean(d2)) * s / h)
        na, nb = np.count_nonzero(gt[i]), np.count_nonzero(pd[i])
        inter = np.count_nonzero(np.logical_and(gt[i], pd[i]))
        ious.append(1 if na == nb == inter else inter / (na + nb - inter))
    return {"l2": l2, "chamfer_distance": np.nanmean(cds), "iou": np.nanmean(ious)}


def bench_config(clips: int, frames: int, size: int, seed: int) -> None:
    """``vidalign eval pisa --config`` (the CLI, files on disk) against the authors' eval.py transcribed."""
    import json
    import tempfile
    from pathlib import Path

    from vidalign.cli import main

    rng = np.random.default_rng(seed)
    root = Path(tempfile.mkdtemp(prefix="pisa-config-"))
    lines = []
    for c in range(clips):
        real_fps = c % 2 == 1  # half the clips: a 120-fps GT against 16-fps predictions
        n_gt = frames * 15 // 2 if real_fps else frames
        gt1, pd1 = synthetic_clip(rng, frames, size)
        gt = np.zeros((n_gt, 3, size, size), dtype=bool)
        gt[:, 0, size - 40:size - 20, 20:60] = gt[:, 1, size - 60:size - 40, 24:56] = True  # the settled tower
        for k in range(frames):
            gt[min(int(k * 7.5), n_gt - 1) if real_fps else k, 2] = gt1[k]
        d = root / f"{c:03d}"
        d.mkdir()
        np.savez_compressed(d / "gt.npz", mask=gt)
        np.savez_compressed(d / "pd.npz", mask=pd1)  # one object, saved squeezed [T, H, W]
        lines.append({"gt_mask": str(d / "gt.npz"), "gt_fps": 120 if real_fps else 16, "pd_mask": str(d / "pd.npz"),
                      "pd_fps": 16})
    lines.append({**lines[0], "pd_mask": str(root / "missing.npz")})  # their eval.py logs and skips it
    cfg = root / "sim.jsonl"
    cfg.write_text("".join(json.dumps(x) + "\n" for x in lines))
    import contextlib
    import io

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t0 = time.process_time()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = main(["eval", "pisa", "--config", str(cfg), "--out", str(root / "out.jsonl")])
        t_ours = time.process_time() - t0
        t0 = time.process_time()
        ref = []
        for x in lines:
            try:
                ref.append(_authors_eval(x))
            except OSError:
                continue
        t_ref = time.process_time() - t0
    ours = [json.loads(x) for x in (root / "out.jsonl").read_text().splitlines()]
    assert code == 0 and len(ours) == len(ref) == clips
    for a, b in zip(ours, ref):
        for k in ("l2", "chamfer_distance", "iou"):
            va = math.nan if a[k] is None else a[k]
            assert math.isclose(va, b[k], rel_tol=1e-6, abs_tol=1e-9) or (math.isnan(va) and math.isnan(b[k])), \
                (k, va, b[k])
    print(f"eval pisa --config (CLI, files), {clips} clips x {frames} frames at {size}x{size} + 1 dropped line: "
          f"vidalign {t_ours:.2f} s CPU, authors' eval.py transcribed {t_ref:.2f} s CPU -> "
          f"{t_ref / t_ours:.1f}x faster (per-line results identical)")


def bench_sam2(frames: int, size: int, model: str | None) -> None:
    import torch

    if not torch.cuda.is_available():
        print("SAM 2 hiera-L propagation: no GPU present (CUDA unavailable), skipped")
        return
    from vidalign.eval.segment import Seed, SegmenterConfig, TransformersSam2

    if model is None:
        import tempfile

        from transformers import Sam2HieraDetConfig, Sam2VideoConfig, Sam2VideoModel, Sam2VisionConfig

        backbone = Sam2HieraDetConfig(hidden_size=144, num_attention_heads=2, blocks_per_stage=[2, 6, 36, 4],
                                      embed_dim_per_stage=[144, 288, 576, 1152],
                                      num_attention_heads_per_stage=[2, 4, 8, 16],
                                      global_attention_blocks=[23, 33, 43], window_size_per_stage=[8, 4, 16, 8])
        vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[1152, 576, 288, 144])
        model = tempfile.mkdtemp(prefix="sam2-hiera-l-random-")
        Sam2VideoModel(Sam2VideoConfig(vision_config=vision)).save_pretrained(model)
    seg = TransformersSam2(SegmenterConfig(model=model, device="cuda", progress=False))
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
    masks = np.zeros((2, size, size), dtype=bool)
    masks[0, 20:60, 20:60] = masks[1, 100:180, 120:200] = True
    seg.segment(video[:4], Seed(masks=masks))  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    seg.segment(video, Seed(masks=masks))
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(f"SAM 2 hiera-L propagation ({torch.cuda.get_device_name()}, {seg.dtype}): {frames} frames at {size}x{size}, "
          f"2 objects in {dt:.2f} s = {frames / dt:.1f} frames/s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=60)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sam2-model", default=None, help="SAM 2 checkpoint for the GPU line (default: random hiera-L)")
    args = p.parse_args()
    bench_metrics(args.clips, args.frames, args.size, args.seed)
    bench_config(args.clips, args.frames, args.size, args.seed)
    bench_sam2(args.frames, args.size, args.sam2_model)


if __name__ == "__main__":
    main()
