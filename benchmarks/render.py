"""Rendering: photoreal quality per preset, cost per clip of every renderer and preset, GPU, Kubric/Cycles.

Lines printed (all measured in this run, on the same scenes and trajectories):

1. quality of each ``mitsuba`` preset against a 1024-spp render of the same frames (``reference`` preset:
   no denoiser): SSIM (Wang et al. 2004) and PSNR on the uint8 RGB frames, mean and worst frame
   (target: ``fast`` ≥ 0.95 SSIM); also ``fast`` without its static background (every pixel of every frame at
   the same per-frame setting);
2. cost per clip (256², 32 frames, RGB + metric depth + masks) on the CPU, in CPU seconds (= seconds of
   one core; robust to other load on the machine), per core (``threads=1``: one worker per core, as a
   ``--workers N`` build runs) and with all cores in one process (``threads`` unset): ``pybullet``,
   ``mitsuba`` fast, fast without the static background, authors (its time scaled from ``--authors-frames``
   frames), the authors/fast ratio (goal ≥ 20×), what it means for PISA's 5,000-clip training set on one
   64-core node, and the fast preset on the ``scalar_rgb`` fallback (no libLLVM: every pixel of every frame);
3. the same on a GPU (``cuda_ad_rgb``, OIDN on CUDA) — prints ``skipped`` where Dr.Jit sees no CUDA device;
4. Kubric/Blender Cycles at the authors' 64 spp, denoised, on the same scene (CPU seconds per clip scaled
   from ``--kubric-frames``) — prints ``skipped`` where kubric/bpy are not installed (they need a separate
   environment: ``bpy==4.2.23`` and ``kubric==0.1.1``; run ``--only kubric`` there).

``--sweep`` first prints SSIM and cost (CPU s per clip, ``threads=1``) of candidate fast settings: with the
static background (per-frame spp × background spp × tolerance) and without it (spp × path depth × OIDN quality);
the ``fast`` preset in :mod:`vidalign.simulation.photoreal` is chosen from it (see ``benchmarks/RESULTS.md``).
The scenes: the default config's (procedural sky over a ground texture, seed 1), a studio floor and wall
(seed 2), and the default config with this script's equirectangular map (sky gradient, sun, textured
ground; seed 3); the cost lines use the first.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time

import numpy as np

from vidalign.simulation.config import DropSceneConfig


def _cpu() -> float:
    return time.process_time()


def procedural_env(path: str, width: int = 512) -> str:
    """A z-up equirectangular PNG: sky gradient with a bright sun blob, a textured ground below the horizon."""
    from PIL import Image

    h = width // 2
    v = (np.arange(h) + 0.5) / h
    elev = np.pi * (0.5 - v)[:, None] * np.ones((1, width))
    u = (np.arange(width) + 0.5) / width
    az = np.pi * (1 - 2 * u)[None, :] * np.ones((h, 1))
    sky = np.stack([0.35 + 0.3 * (1 - np.sin(elev)), 0.55 + 0.25 * (1 - np.sin(elev)), np.full_like(elev, 0.95)], -1)
    sun = np.exp(-((az - 0.8) ** 2 + (elev - 0.6) ** 2) / 0.01)[..., None]
    rng = np.random.default_rng(0)
    grain = rng.uniform(0.85, 1.15, (h, width, 1))
    ground = np.array([0.42, 0.36, 0.28]) * grain * (1 + 0.15 * np.sin(40 * az))[..., None]
    img = np.where((elev > 0)[..., None], np.clip(sky + sun, 0, 1), np.clip(ground, 0, 1))
    Image.fromarray((img * 255).astype(np.uint8)).save(path)
    return path


def bench_scenes(num: int, resolution: int, frames: int, env_path: str | None) -> list:
    """``num`` sampled scenes with their trajectories: the second on a studio background, the last with the env
    map (if given)."""
    from vidalign.simulation.physics import simulate
    from vidalign.simulation.scene import sample_scene

    config = DropSceneConfig(resolution=resolution, num_frames=frames)
    out = []
    for i in range(num):
        kind = "studio" if i == 1 and num > 2 else "procedural"
        scene = sample_scene(dataclasses.replace(config, backgrounds=kind), i + 1)
        if env_path and i == num - 1:
            scene = dataclasses.replace(scene, background=dataclasses.replace(scene.background, id="procedural_sky",
                                                                               env_map=env_path))
        out.append((scene, simulate(scene)))
    return out


def frames_of(traj, idx: list[int]):
    return dataclasses.replace(traj, positions=traj.positions[idx], orientations=traj.orientations[idx],
                               linear_velocities=traj.linear_velocities[idx],
                               angular_velocities=traj.angular_velocities[idx])


def render_cpu(scene, traj, renderer: str, **options) -> tuple[np.ndarray, float]:
    from vidalign.simulation.render import render

    t0 = _cpu()
    ren = render(scene, traj, renderer, **options)
    return ren.rgb, _cpu() - t0


def clip_cost(scene, traj, repeats: int, renderer: str = "mitsuba", **options) -> float:
    """Median CPU seconds of ``repeats`` renders of ``traj`` (after one frame to warm imports and kernels)."""
    render_cpu(scene, frames_of(traj, [0]), renderer, **options)
    return float(np.median([render_cpu(scene, traj, renderer, **options)[1] for _ in range(repeats)]))


def quality(samples, refs, renderer: str = "mitsuba", **options) -> tuple[list[float], list[float], float]:
    from vidalign.eval.image_quality import psnr, ssim

    s, p, cpu, n = [], [], 0.0, 0
    for (scene, traj), ref in zip(samples, refs):
        rgb, c = render_cpu(scene, traj, renderer, **options)
        cpu, n = cpu + c, n + len(rgb)
        s += [ssim(a, b) for a, b in zip(rgb, ref)]
        p += [psnr(a, b) for a, b in zip(rgb, ref)]
    return s, p, cpu / n


def cuda_available() -> bool:
    try:
        import drjit as dr
    except ImportError:
        return False
    return bool(dr.has_backend(dr.JitBackend.CUDA))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-scenes", type=int, default=3)
    p.add_argument("--quality-frames", type=int, nargs="+", default=[0, 20], help="frames scored against 1024 spp")
    p.add_argument("--reference-spp", type=int, default=1024)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2, help="cost runs per renderer (median reported)")
    p.add_argument("--authors-frames", type=int, default=8, help="64-spp frames rendered (time scaled to a clip)")
    p.add_argument("--scalar-frames", type=int, default=4, help="scalar_rgb frames rendered (time scaled)")
    p.add_argument("--kubric-frames", type=int, default=2, help="Cycles frames rendered (time scaled to a clip)")
    p.add_argument("--sweep", action="store_true", help="also score candidate fast settings")
    p.add_argument("--cache-dir", help="keep the 1024-spp reference frames here between runs")
    p.add_argument("--only", choices=["quality", "cost", "gpu", "kubric"], nargs="+")
    args = p.parse_args(argv)
    only = set(args.only or ["quality", "cost", "gpu", "kubric"])
    load = lambda: f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"  # noqa: E731

    tmp = tempfile.mkdtemp(prefix="vidalign_bench_render_")
    env = procedural_env(os.path.join(tmp, "sky.png"))
    samples = bench_scenes(args.num_scenes, args.resolution, args.frames, env)
    n_clip = args.frames

    if only & {"quality", "cost", "gpu"}:
        from vidalign.simulation.photoreal import PRESETS

    if "quality" in only:
        qsamples = [(s, frames_of(t, args.quality_frames)) for s, t in samples]
        refs, ref_cpu = [], 0.0
        for i, (scene, traj) in enumerate(qsamples):
            key = f"ref_{i}_{args.resolution}_{args.reference_spp}_{'-'.join(map(str, args.quality_frames))}.npz"
            cached = os.path.join(args.cache_dir, key) if args.cache_dir else None
            if cached and os.path.exists(cached):
                with np.load(cached) as z:
                    rgb, c = z["rgb"], float(z["cpu"])
            else:
                rgb, c = render_cpu(scene, traj, "mitsuba", preset="reference",
                                    samples_per_pixel=args.reference_spp, seed=1000)
                if cached:
                    os.makedirs(args.cache_dir, exist_ok=True)
                    np.savez(cached, rgb=rgb, cpu=c)
            refs.append(rgb)
            ref_cpu += c
        nq = len(qsamples) * len(args.quality_frames)
        print(f"[1] reference: {args.reference_spp} spp, no denoiser, {ref_cpu / nq:.1f} CPU s/frame; "
              f"{nq} frames ({len(qsamples)} scenes × frames {args.quality_frames}), {args.resolution}²")
        if args.sweep:
            scene, traj = samples[0]
            render_cpu(scene, frames_of(traj, [0, 1]), "mitsuba", preset="fast", threads=1)  # warm kernels
            candidates = [{"samples_per_pixel": spp, "static_spp": bg, "static_tolerance": tol}
                          for spp in (1, 2, 4) for bg in (4, 8, 16, 32) for tol in (2.0,)]
            candidates += [{"samples_per_pixel": 2, "static_spp": 16, "static_tolerance": tol} for tol in (1.0, 4.0)]
            candidates += [{"samples_per_pixel": spp, "max_depth": depth, "oidn_quality": oq, "static_spp": 0}
                           for spp, depth, oq in ((1, 3, "fast"), (2, 3, "fast"), (2, 4, "high"), (4, 4, "high"))]
            for cand in candidates:
                opts = {"preset": "fast", **cand}
                s, ps, _ = quality(qsamples, refs, **opts)
                cost = clip_cost(scene, traj, args.repeats, threads=1, **opts)
                label = ", ".join(f"{k} {v}" for k, v in cand.items())
                print(f"    sweep {label}: SSIM {np.mean(s):.4f} (min {min(s):.4f}) PSNR {np.mean(ps):.2f} dB, "
                      f"{cost:.2f} CPU s/clip (threads=1)", flush=True)
        for name, extra in (("fast", {}), ("fast", {"static_spp": 0}), ("authors", {})):
            s, ps, c = quality(qsamples, refs, preset=name, **extra)
            pr = PRESETS[name]
            what = (f"{pr.samples_per_pixel} spp, depth {pr.max_depth}, "
                    f"{'OIDN ' + pr.oidn_quality if pr.denoise else 'no denoiser'}")
            if pr.static_spp and not extra:
                what += f"; background {pr.static_spp} spp once per clip, tolerance {pr.static_tolerance:g} levels"
            elif extra:
                what += ", every pixel of every frame"
            print(f"[1] preset {name}{' static_spp=0' if extra else ''} ({what}): SSIM {np.mean(s):.4f} "
                  f"(min {min(s):.4f}{', target ≥ 0.95' if name == 'fast' and not extra else ''}), PSNR "
                  f"{np.mean(ps):.2f} dB (min {min(ps):.2f}); {load()}", flush=True)

    if "cost" in only:
        scene, traj = samples[0]

        def per_clip(renderer: str, frames: int, **options) -> float:
            sub = frames_of(traj, list(range(frames)))
            return clip_cost(scene, sub, args.repeats, renderer, **options) * n_clip / frames

        pyb = per_clip("pybullet", n_clip)  # single-threaded numpy shading either way
        for threads, what in ((1, "per core (threads=1)"), (None, "all cores in one process (threads unset)")):
            fast = per_clip("mitsuba", n_clip, preset="fast", threads=threads)
            full = per_clip("mitsuba", n_clip, preset="fast", static_spp=0, threads=threads)
            authors = per_clip("mitsuba", min(args.authors_frames, n_clip), preset="authors", threads=threads)
            print(f"[2] CPU s per clip ({args.resolution}², {n_clip} frames, RGB + depth + masks, median of "
                  f"{args.repeats}), {what}: pybullet {pyb:.2f}, mitsuba fast {fast:.2f}, fast without the static "
                  f"background {full:.2f} ({full / fast:.1f}×), authors (64 spp + OIDN, every frame) {authors:.1f} "
                  f"(from {min(args.authors_frames, n_clip)} frames) → fast is {authors / fast:.1f}× faster than "
                  f"the authors' setting (goal ≥ 20×); 5,000 clips at fast on one 64-core node ≈ "
                  f"{5000 * fast / 64 / 60:.1f} min of rendering (goal < 15); {load()}", flush=True)
        scalar = per_clip("mitsuba", min(args.scalar_frames, n_clip), preset="fast", variant="scalar_rgb")
        print(f"[2] fast on the scalar_rgb fallback (no libLLVM; every pixel of every frame) {scalar:.1f} CPU s per "
              f"clip (from {min(args.scalar_frames, n_clip)} frames); {load()}")

    if "gpu" in only:
        if not cuda_available():
            print("[3] GPU (cuda_ad_rgb + OIDN CUDA): skipped (Dr.Jit sees no CUDA device)")
        else:
            scene, traj = samples[0]
            out = []
            for name in ("fast", "authors"):
                render_cpu(scene, frames_of(traj, [0]), "mitsuba", preset=name, variant="cuda_ad_rgb")
                w0 = time.perf_counter()
                render_cpu(scene, traj, "mitsuba", preset=name, variant="cuda_ad_rgb")
                out.append(time.perf_counter() - w0)
            print(f"[3] GPU wall s per clip ({args.resolution}², {n_clip} frames): fast {out[0]:.2f}, authors "
                  f"{out[1]:.2f} ({out[1] / out[0]:.1f}×); 5,000 clips at fast ≈ {5000 * out[0] / 60:.1f} min on "
                  "one GPU (goal < 15)")

    if "kubric" in only:
        from vidalign.simulation.kubric_compat import kubric_available

        if not kubric_available():
            print("[4] Kubric/Cycles 64 spp: skipped (kubric + bpy not installed; they need a separate "
                  "environment: pip install bpy==4.2.23 && pip install --no-deps kubric==0.1.1)")
        else:
            scene, traj = samples[0]
            k = min(args.kubric_frames, n_clip)
            render_cpu(scene, frames_of(traj, [0]), "kubric", samples_per_pixel=1)  # warm Blender
            _, c = render_cpu(scene, frames_of(traj, list(range(k))), "kubric", samples_per_pixel=64)
            print(f"[4] Kubric/Cycles (64 spp, denoised, CPU): {c * n_clip / k:.1f} CPU s per clip "
                  f"({c / k:.1f} per frame, from {k} frames); {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["main", "procedural_env", "bench_scenes", "frames_of"]
