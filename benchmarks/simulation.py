"""Drop-simulation throughput: full kubric-drop pipeline vs the bare PyBullet loop, worker scaling, Kubric.

Lines printed (all measured in this run, on the same scenes):

1. clips per minute per core at 256², 32 frames for the full pipeline (sample, simulate, render RGB + depth +
   masks, encode mp4, build the json, write a shard) and for the bare PyBullet loop (one client with the same
   contact settings: pre-settle, then 15 steps + PyBullet's own lit TinyRenderer image of floor, wall and objects
   with shadows per frame), and their overhead ratio (target ≤ 1.3); also against a loop making only the two
   unlit TinyRenderer images the renderer asks for (camera + shadow map): what the numpy shading, the encoding
   and the shard cost on top of the engine's work;
2. the command as users run it, ``vidalign build kubric-drop --num-samples 24 --workers 1`` vs ``--workers 2``,
   each a fresh subprocess timed from start to exit (start-up, planning, worker start, card and preview
   included): speed-up target ≥ 1.8×. The default plan cuts 24 clips into 24 shards (it used to make one, and
   ``--workers`` did nothing);
3. PyBullet renderer vs Kubric/Cycles at the authors' settings (64 samples per pixel, denoised, CPU) on the
   same scene, per clip (expect ≥ 100× faster); skipped with a message when kubric/bpy are not installed.

Default run: 4 scenes and 2 × 2 × 24 clips (≈ 3 min on 2 cores). ``--num-scenes`` / ``--scaling-clips`` for bigger runs,
``--kubric-frames`` renders fewer Cycles frames and scales the time to a full clip.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from vidalign.simulation.config import DropSceneConfig


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(t0: tuple[float, float]) -> np.ndarray:
    """(wall, CPU) seconds since ``t0``; CPU time is what a core spends, robust to other load on the machine."""
    return np.array([time.perf_counter() - t0[0], time.process_time() - t0[1]])


def bare_loop(scene, images: str = "lit") -> np.ndarray:
    """The baseline: one PyBullet client doing the physics and TinyRenderer images, nothing else (same contact
    settings and settling), then per frame 15 steps and either ``lit``: PyBullet's own lit image of the floor, wall
    and objects with its shadows (what one gets straight out of PyBullet, the baseline before the renderer was
    rewritten), or ``passes``: only the two unlit images the renderer asks TinyRenderer for (camera + shadow map)."""
    import math

    from vidalign.simulation.physics import _at_rest, collision_shape, configure_engine, direct_client
    from vidalign.simulation.render import add_backdrop, visual_shape

    cfg, cam, light = scene.config, scene.camera, scene.lighting
    t0 = _clock()
    with direct_client() as (pb, c):
        configure_engine(pb, c, cfg.contact_model)
        pb.setGravity(0, 0, cfg.gravity, physicsClientId=c)
        pb.setTimeStep(1 / cfg.physics_hz, physicsClientId=c)
        # the collision plane gets a tiny hidden visual: without one TinyRenderer draws the collision shape
        hidden = pb.createVisualShape(pb.GEOM_BOX, halfExtents=[0.01] * 3, visualFramePosition=[0, 0, -10],
                                      physicsClientId=c)
        pb.createMultiBody(0, pb.createCollisionShape(pb.GEOM_PLANE, physicsClientId=c), hidden, physicsClientId=c)
        if images == "lit":
            add_backdrop(pb, c, scene)

        def add(obj):
            body = pb.createMultiBody(obj.mass, collision_shape(pb, c, obj), visual_shape(pb, c, obj),
                                      list(obj.position), list(obj.orientation), useMaximalCoordinates=True,
                                      physicsClientId=c)
            pb.changeDynamics(body, -1, lateralFriction=obj.friction, restitution=obj.restitution,
                              linearDamping=0, angularDamping=0, contactProcessingThreshold=0, physicsClientId=c)
            if obj.texture:
                pb.changeVisualShape(body, -1, textureUniqueId=pb.loadTexture(obj.texture, physicsClientId=c),
                                     physicsClientId=c)
            return body

        towers = [add(o) for o in scene.objects if o.role == "tower"]
        for _ in range(cfg.settle_frames + 1 if towers else 0):
            for _ in range(cfg.substeps):
                pb.stepSimulation(physicsClientId=c)
            if cfg.settle_until_rest and _at_rest(pb, c, towers):
                break
        for o in scene.droppers:
            add(o)
        view = pb.computeViewMatrix(list(cam.position), list(cam.target), [0, 0, 1], physicsClientId=c)
        proj = pb.computeProjectionMatrixFOV(cam.fov_deg, 1.0, cam.near, cam.far, physicsClientId=c)
        to_sun = np.asarray(light.light_direction) / np.linalg.norm(light.light_direction)
        sun_view = pb.computeViewMatrix((to_sun * 201).tolist(), [0, 0, 0.5], [0, 0, 1], physicsClientId=c)
        sun_proj = pb.computeProjectionMatrixFOV(2 * math.degrees(math.atan(1.5 / 200)), 1.0, 199, 203,
                                                 physicsClientId=c)
        for f in range(cfg.first_frame + cfg.num_frames):
            if f:
                for _ in range(cfg.substeps):
                    pb.stepSimulation(physicsClientId=c)
            if f >= cfg.first_frame and images == "lit":
                pb.getCameraImage(cam.resolution, cam.resolution, view, proj, renderer=pb.ER_TINY_RENDERER,
                                  lightDirection=list(light.light_direction), shadow=1, physicsClientId=c)
            elif f >= cfg.first_frame:
                pb.getCameraImage(cam.resolution, cam.resolution, view, proj, renderer=pb.ER_TINY_RENDERER,
                                  shadow=0, physicsClientId=c)
                pb.getCameraImage(256, 256, sun_view, sun_proj, renderer=pb.ER_TINY_RENDERER, shadow=0,
                                  flags=pb.ER_NO_SEGMENTATION_MASK, physicsClientId=c)
    return _since(t0)


def full_pipeline(config: DropSceneConfig, seed: int, out_dir: str) -> np.ndarray:
    """What ``kubric-drop`` does per sample, including the shard write."""
    from vidalign.media import encode_mp4
    from vidalign.shards import ShardWriter
    from vidalign.simulation.pipeline import clip_metadata, generate_clip

    t0 = _clock()
    clip = generate_clip(config, seed)
    members = {"mp4": encode_mp4(clip.rendering.rgb, config.fps), "mask.npz": {"mask": clip.rendering.masks},
               "depth.npy": clip.rendering.depth.astype(np.float16), "json": clip_metadata(clip)}
    with ShardWriter(out_dir, f"data/bench/train-{seed:05d}-of-99999.tar") as writer:
        writer.write(f"s0-{seed:08d}", members)
    return _since(t0)


def build_command(out: str, clips: int, workers: int, resolution: int, frames: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and its workers) of one ``vidalign build kubric-drop`` run."""
    import resource
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "vidalign.cli", "build", "kubric-drop", "--out", out, "--num-samples",
           str(clips), "--resolution", str(resolution), "--frames", str(frames), "--workers", str(workers),
           "--no-progress"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-scenes", type=int, default=4)
    p.add_argument("--scaling-clips", type=int, default=24)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--kubric-frames", type=int, default=2, help="Cycles frames to render (time scaled to a clip)")
    p.add_argument("--skip-scaling", action="store_true")
    p.add_argument("--only-scaling", action="store_true", help="run line [2] only")
    p.add_argument("--repeats", type=int, default=2, help="runs of each build command in line [2]")
    args = p.parse_args(argv)

    from vidalign.simulation.scene import sample_scene

    config = DropSceneConfig(resolution=args.resolution, num_frames=args.frames)
    seeds = list(range(1, args.num_scenes + 1))
    out = tempfile.mkdtemp(prefix="vidalign_bench_sim_")
    if not args.only_scaling:
        full_pipeline(DropSceneConfig(resolution=32, num_frames=2), 0, out)  # warm caches and imports
    bare, passes, full = [], [], []
    for s in ([] if args.only_scaling else seeds):
        scene = sample_scene(config, s)
        bare.append(bare_loop(scene))
        passes.append(bare_loop(scene, "passes"))
        full.append(full_pipeline(config, s, out))
    n = len(seeds)
    if not args.only_scaling:
        (wb, cb), (wp, cp), (wf, cf) = sum(bare), sum(passes), sum(full)
        print(f"[1] {args.resolution}², {args.frames} frames, {n} scenes, per core (CPU time): full pipeline "
              f"{60 * n / cf:.1f} clips/min ({cf / n:.2f} s/clip), bare pybullet step+render loop "
              f"{60 * n / cb:.1f} clips/min ({cb / n:.2f} s/clip); overhead ratio {cf / cb:.2f} (target ≤ 1.3); "
              f"wall-clock ratio {wf / wb:.2f}; load average {os.getloadavg()[0]:.1f}")
        print(f"[1b] against the renderer's own TinyRenderer passes only ({60 * n / cp:.1f} clips/min, "
              f"{cp / n:.2f} s/clip): ratio {cf / cp:.2f} (numpy shading, mp4, json and shard on top of the "
              f"engine's work); wall-clock ratio {wf / wp:.2f}")

    if not args.skip_scaling:
        from vidalign.builder import make_builder

        n = args.scaling_clips
        shards = len(make_builder("kubric-drop", {"num_samples": n, "resolution": args.resolution,
                                                  "frames": args.frames}).plan())
        runs: dict[int, list] = {1: [], 2: []}
        for _ in range(args.repeats):  # interleaved, the fastest of each kept: other load only slows a run down
            for workers in (1, 2):
                load = os.getloadavg()[0]
                runs[workers].append((*build_command(tempfile.mkdtemp(prefix=f"vidalign_bench_w{workers}_"), n,
                                                     workers, args.resolution, args.frames), load))
        (t1, c1, l1), (t2, c2, l2) = min(runs[1]), min(runs[2])
        print(f"[2] vidalign build kubric-drop --num-samples {n} ({shards} shards) as a subprocess, fastest of "
              f"{args.repeats}: --workers 1 {t1:.1f} s, --workers 2 {t2:.1f} s → speed-up {t1 / t2:.2f}× "
              f"(target ≥ 1.8×); CPU {c1:.1f} s vs {c2:.1f} s; {os.cpu_count()} CPUs, load average {l1:.1f} / "
              f"{l2:.1f} at their starts (all runs: {[round(r[0], 1) for r in runs[1]]} / "
              f"{[round(r[0], 1) for r in runs[2]]} s)")
    if args.only_scaling:
        return 0

    from vidalign.simulation.kubric_compat import kubric_available

    if not kubric_available():
        print("[3] kubric/bpy not installed: skipped the Kubric/Cycles comparison "
              "(pip install 'vidalign[kubric]' to run it)")
        return 0
    from vidalign.simulation.physics import simulate
    from vidalign.simulation.render import render

    scene = sample_scene(config, seeds[0])
    traj = simulate(scene)
    t0 = time.perf_counter()
    render(scene, traj, "pybullet")
    t_pb = time.perf_counter() - t0
    n = max(1, min(args.kubric_frames, args.frames))
    short = sample_scene(config.replace(num_frames=n), seeds[0])
    t0 = time.perf_counter()
    render(short, simulate(short), "kubric", samples_per_pixel=64, use_denoising=True)
    t_kb = (time.perf_counter() - t0) * args.frames / n
    print(f"[3] per clip ({args.resolution}², {args.frames} frames): pybullet {t_pb:.2f} s, Kubric/Cycles 64 spp "
          f"{t_kb:.1f} s (from {n} frame(s)) → pybullet {t_kb / t_pb:.0f}× faster (expect ≥ 100×)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
