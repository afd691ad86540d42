"""``kubric-drop``: PISA-style simulated videos of objects dropping (SPEC §3), regenerated offline.

Configs (``--split``): ``train`` (seen objects and backgrounds, HF split ``train``), ``test_seen`` (seen,
HF split ``test``) and ``test_unseen`` (the 10 % held-out objects and backgrounds, HF split ``test``),
as the authors' PSFT data and PisaBench's two simulated test sets. Each sample is a pure function of
(base seed, config, index): its scene seed is ``SeedSequence([seed, config_id, index])``'s first
32-bit word, recorded in its ``json``; the clip is sampled, simulated at 240 Hz and rendered by
:mod:`vidalign.simulation`.

Members: ``mp4`` (H.264, ``fps``), ``mask.npz`` (``mask``: bool [V, N, H, W], visible masks; tower
objects first, droppers last, the last channel is the dropping object PisaBench scores), ``depth.npy``
(float16 [V, H, W], metres from the camera centre along each pixel's ray, as Kubric's ``depth``, not
z-depth; stored gzip-compressed as ``depth.npy.gz``) and ``json`` (seed, full scene config, camera intrinsics and extrinsics, background, objects
with asset, mesh, texture, scale, mass, friction, restitution, collider, pose at release and per-frame
trajectory, contact events, prompt and caption). Prompt, caption, seed, config, index, frame count, fps and the
object/background split are also top-level columns (:data:`COLUMNS`); the trajectories stay in ``json``.
"""

from __future__ import annotations

import multiprocessing
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from vidalign.builder import Builder, Sample, register_builder
from vidalign.errors import ConfigError, InputError, require

CONFIGS = ("train", "test_seen", "test_unseen")
_CONFIG_ID = {name: i for i, name in enumerate(CONFIGS)}
_HF_SPLIT = {"train": "train", "test_seen": "test", "test_unseen": "test"}
_OBJECT_SPLIT = {"train": "seen", "test_seen": "seen", "test_unseen": "unseen"}
COLUMNS = ("prompt.txt", "caption.txt", "seed.json", "config.txt", "index.json", "num_frames.json", "fps.json",
           "split.json")


def sample_seed(base_seed: int, config: str, index: int) -> int:
    """The scene seed of sample ``index`` of ``config`` (distinct across configs for the same base seed)."""
    return int(np.random.SeedSequence([int(base_seed), _CONFIG_ID[config], int(index)]).generate_state(1)[0])


def hf_split(config: str) -> str:
    return _HF_SPLIT[config]


def worker_threads(explicit: int | None = None) -> int | None:
    """Threads a photoreal renderer may use in this process: ``explicit`` if given; 1 in a ``--workers N > 1``
    build (one worker process per core: Dr.Jit and OIDN would otherwise each start a thread per core in every
    worker), that is in a spawned pool worker and in a process that has a pool of workers alive (the local
    executor lets the calling process work too); the CPUs Ray assigned to the task in a Ray worker; None (all
    cores) in a one-process build."""
    if explicit is not None:
        return int(explicit)
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ctx = ray.get_runtime_context()
        if ctx.worker.mode == ray.WORKER_MODE:
            return max(1, int(ctx.get_assigned_resources().get("CPU", 1)))
    if multiprocessing.parent_process() is not None or multiprocessing.active_children():
        return 1
    return None


def _load_scene_overrides(path: str) -> dict:
    from vidalign.inputs import parse_json, parse_yaml, read_text

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--scene-config={path!r} is invalid: no such file; give a YAML/JSON of DropSceneConfig fields")
    text = read_text(p, "scene config")
    data = parse_yaml(text, p) if p.suffix.lower() in (".yaml", ".yml") else parse_json(text, p)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--scene-config={path!r} is invalid: expected a mapping of DropSceneConfig fields")
    return data


@register_builder
class KubricDropBuilder(Builder):
    name = "kubric-drop"
    description = ("PISA-style physics videos of objects dropping (1–5 droppers, towers under them), simulated with "
                   "PyBullet at 240 Hz and rendered with PyBullet's TinyRenderer, Mitsuba 3 (photoreal) or "
                   "Kubric/Blender: H.264 video, "
                   "per-object visible masks [V, N, H, W] (dropping object last), metric depth and full physical "
                   "metadata per clip.")
    tags = ["video", "physics", "simulation", "pisa", "pybullet", "kubric"]
    pretty_name = "vidalign kubric-drop (PISA-style drop simulations)"
    task_categories = ["text-to-video", "image-to-video"]
    columns = COLUMNS
    gzip_members = ("depth.npy",)
    expensive_samples = True  # seconds of simulation and rendering per clip: small configs get many shards
    input_args = ("scene_config", "asset_dir", "background_dir")
    citation = ("@article{li2025pisa,\n  title={Pisa Experiments: Exploring Physics Post-Training for Video Diffusion "
                "Models by Watching Stuff Drop},\n  author={Li, Chenyu and Michel, Oscar and Pan, Xichen and Liu, "
                "Sainan and Roberts, Mike and Xie, Saining},\n  journal={arXiv preprint arXiv:2503.09595},\n"
                "  year={2025}\n}")

    @dataclass
    class Args:
        num_samples: int = field(default=16, metadata={"help": "clips to simulate"})
        split: Literal["train", "test_seen", "test_unseen"] = field(
            default="train", metadata={"help": "train (seen objects), test_seen, or test_unseen (held-out objects)"})
        resolution: int = field(default=256, metadata={"help": "frame height and width in pixels"})
        frames: int = field(default=32, metadata={"help": "frames per clip"})
        fps: int = field(default=16, metadata={"help": "video frame rate (physics runs at 240 Hz)"})
        renderer: Literal["pybullet", "kubric", "mitsuba"] = field(
            default="pybullet", metadata={"help": "pybullet TinyRenderer, kubric (Blender Cycles; vidalign[kubric]) or "
                                                  "mitsuba (photoreal path tracing + OIDN; vidalign[photoreal])"})
        render_preset: Literal["authors", "fast"] = field(
            default="authors", metadata={"help": "mitsuba renderer: authors (64 spp, denoised) or fast (chosen for "
                                                 ">= 0.95 SSIM against 1024 spp at a fraction of the cost)"})
        samples_per_pixel: int = field(default=64, metadata={"help": "Cycles samples per pixel (kubric renderer)"})
        render_threads: int | None = field(default=None, metadata={
            "help": "threads of the mitsuba/kubric renderer per process; default: all cores in a one-process "
                    "build, 1 per worker with --workers > 1, the task's CPUs on Ray"})
        static_background: bool = field(default=True, metadata={
            "help": "mitsuba fast preset: path trace the static background once per clip and per frame only the "
                    "pixels the objects can change; --no-static-background renders every pixel of every frame "
                    "(e.g. glossy objects whose glints on the floor matter)"})
        shadows: bool = field(default=True, metadata={"help": "cast shadows (pybullet renderer)"})
        caption: Literal["prompt", "constant"] = field(
            default="prompt", metadata={"help": "json caption: the PISA-style prompt, or the authors' constant "
                                                "training caption 'a video of an object dropping'"})
        asset_dir: str | None = field(default=None, metadata={
            "help": "asset folder used as the 'user' category: Google Scanned Objects as published, Kubric assets "
                    "(manifest .json + <id>.tar.gz or folders), or .obj meshes"})
        background_dir: str | None = field(default=None, metadata={
            "help": "folder of equirectangular environment maps (.hdr/.exr/.png/.jpg, or a Kubric HDRI manifest) "
                    "used as backdrop and light; default: procedural skies and ground textures"})
        scene_config: str | None = field(default=None, metadata={"help": "YAML/JSON file of DropSceneConfig "
                                                                          "fields overriding the authors' defaults"})

        def __post_init__(self):
            require(self.num_samples >= 1, "kubric-drop", "num_samples", self.num_samples, "use >= 1")
            require(self.split in CONFIGS, "kubric-drop", "split", self.split, f"use one of {CONFIGS}")
            require(self.samples_per_pixel >= 1, "kubric-drop", "samples_per_pixel", self.samples_per_pixel,
                    "use >= 1")
            require(self.render_threads is None or self.render_threads >= 1, "kubric-drop", "render_threads",
                    self.render_threads, "use >= 1, or leave it unset to size it from the worker processes")
            require(self.renderer in ("pybullet", "kubric", "mitsuba"), "kubric-drop", "renderer", self.renderer,
                    "use pybullet, kubric or mitsuba")
            require(self.render_preset in ("authors", "fast"), "kubric-drop", "render_preset", self.render_preset,
                    "use authors or fast")
            self.scene()  # validate the scene config now, with the field named, not in a worker later

        def scene(self):
            """The :class:`DropSceneConfig` these arguments describe (validated)."""
            from vidalign.simulation.config import DropSceneConfig

            overrides = _load_scene_overrides(self.scene_config) if self.scene_config else {}
            overrides.update(resolution=self.resolution, num_frames=self.frames, fps=self.fps,
                             split=_OBJECT_SPLIT[self.split])
            if self.asset_dir is not None:
                overrides["asset_dir"] = self.asset_dir
            if self.background_dir is not None:
                overrides["background_dir"] = self.background_dir
            return DropSceneConfig.from_dict(overrides, source=self.scene_config or "kubric-drop")

        def renderer_options(self) -> dict:
            """Options of the chosen renderer, with its thread count sized for the process it runs in."""
            if self.renderer == "kubric":
                return {"samples_per_pixel": self.samples_per_pixel, "threads": worker_threads(self.render_threads)}
            if self.renderer == "mitsuba":
                opts = {"preset": self.render_preset, "threads": worker_threads(self.render_threads)}
                return opts if self.static_background else {**opts, "static_spp": 0}
            return {"shadows": self.shadows}

    def inputs(self) -> dict:
        """The scene-config file, asset and background folders (by content), and the resolved scene
        configuration itself (so that a changed default or override is caught too)."""
        import dataclasses as dc

        out = super().inputs()
        scene = self.args.scene()
        out["scene"] = dc.asdict(scene) if dc.is_dataclass(scene) else repr(scene)
        return out

    def estimate_sample_mb(self) -> float:
        a = self.args
        pixels = a.frames * a.resolution * a.resolution
        return pixels * 2 / 1e6 + pixels * 0.05 / 1e6 + 0.2  # float16 depth + compressed masks/video + json

    def plan(self):
        a = self.args
        return self.split_range(a.split, hf_split(a.split), a.num_samples)

    def build_shard(self, job):
        from vidalign.media import encode_mp4
        from vidalign.simulation.pipeline import clip_metadata, generate_clip

        a = self.args
        scene_config = a.scene()
        for i in job.indices():
            seed = sample_seed(self.seed, job.config, i)
            try:
                clip = generate_clip(scene_config, seed, a.renderer, a.renderer_options())
            except InputError as exc:  # e.g. a malformed mesh in --asset-dir
                yield self.reject(exc)
                continue
            meta = clip_metadata(clip, caption_mode=a.caption)
            meta.update(index=i, config=job.config, base_seed=self.seed)
            ren = clip.rendering
            yield Sample(self.key(i), {
                "mp4": encode_mp4(ren.rgb, fps=a.fps),
                "mask.npz": {"mask": ren.masks},
                "depth.npy": ren.depth.astype(np.float16),
                "json": meta,
            })

    def finalize(self, folder: Path, manifest: dict) -> None:
        from vidalign.simulation.preview import write_preview

        try:
            write_preview(folder, Path(folder) / "previews" / "kubric_drop.png", num_clips=4, config=self.args.split)
        except (OSError, ValueError) as exc:  # a preview must never fail a finished build
            print(f"kubric-drop: preview skipped ({exc})")

    def card_body(self, manifest: dict, folder: Path) -> str:
        from vidalign.simulation.render import DEPTH_KIND

        a = self.args
        sc = a.scene()
        assets = "built-in pybullet_data meshes and primitives" if sc.builtin_assets else ""
        if sc.asset_dir:
            assets = (assets + " and " if assets else "") + f"the asset folder `{Path(sc.asset_dir).name}`"
        backgrounds = (f"environment maps from `{Path(sc.background_dir).name}`" if sc.background_dir
                       else f"{sc.backgrounds} backgrounds (generated skies and ground textures)"
                       if sc.backgrounds != "studio" else "studio floors and walls")
        lines = ["## Drop simulation", "",
                 f"Config `{a.split}` (HF split `{hf_split(a.split)}`): {a.frames} frames at {a.fps} fps, "
                 f"{a.resolution}×{a.resolution}, renderer `{a.renderer}`"
                 f"{f' (preset `{a.render_preset}`)' if a.renderer == 'mitsuba' else ''}, objects from the "
                 f"`{_OBJECT_SPLIT[a.split]}` split of {assets}, {backgrounds} (seen/unseen split as Kubric's "
                 "`get_test_split`: `default_rng(42)`, 10 % held out per source). Each clip's `json` names its "
                 "assets (`assets`, `objects[].asset_id`) and background (`background_id`, `background`). Masks are "
                 "visible per-object masks, tower objects first and droppers last (the last channel is the "
                 f"dropping object PisaBench scores); depth (`depth.npy`, metres) is the {DEPTH_KIND}. "
                 "`vidalign export pisabench <folder> <out>` writes PisaBench's layout.", "",
                 f"Physics as the authors' released generator (PISA `sim_data/run.py` on Kubric's PyBullet "
                 f"simulator) unless stated: frame 0 is {sc.first_frame}/{sc.fps} s after release; contact model "
                 f"`{sc.contact_model}`; towers settled {sc.settle_frames} frames"
                 f"{' (stopping once at rest)' if sc.settle_until_rest else ''}; dropper lift rule `{sc.lift_rule}`; "
                 f"object scale `{sc.object_scale}`; density {sc.density:g} kg/m³ (the released code's mass = "
                 f"volume × 1.0{'' if sc.density == 1.0 else '; changed here'}); prompts in the `{sc.prompt_style}` "
                 "style.", ""]
        if (Path(folder) / "previews" / "kubric_drop.png").exists():
            lines += ["![preview](previews/kubric_drop.png)", ""]
        return "\n".join(lines)


__all__ = ["KubricDropBuilder", "CONFIGS", "sample_seed", "hf_split", "worker_threads"]
