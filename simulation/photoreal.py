"""The ``mitsuba`` renderer: physically based path tracing with Mitsuba 3, denoised with Open Image Denoise.

PISA's clips were rendered by Blender Cycles through Kubric at 64 samples per pixel, denoised. This
renderer draws the same scene (objects with their textures, the floor and wall or an environment map,
the authors' sun + key/fill/back light rig; see :mod:`vidalign.simulation.photoreal_scene`) with a
pip-installable, headless path tracer (extra ``vidalign[photoreal]``: ``mitsuba``, ``drjit``, ``pyoidn``):

- variants: ``cuda_ad_rgb`` on an NVIDIA GPU, else ``llvm_ad_rgb`` on the CPU, which needs libLLVM ≥ 16
  (Debian: ``apt-get install libllvm19``; found automatically or through ``DRJIT_LIBLLVM_PATH``; Dr.Jit
  aborts the process on libLLVM 15), else ``scalar_rgb`` (no LLVM, about 3× slower);
- presets (:data:`PRESETS`): ``authors`` (64 spp, denoised, every pixel of every frame: the authors' Cycles
  setting), ``fast`` (chosen by measurement against 1024 spp: see ``benchmarks/render.py``) and ``reference``
  (1024 spp, not denoised); ``samples_per_pixel``, ``denoise``, ``max_depth``, ``oidn_quality``,
  ``static_spp`` and ``static_tolerance`` override a preset;
- the static-background mode (``static_spp`` > 0, preset ``fast``; :mod:`vidalign.simulation.photoreal_static`):
  the camera and the backdrop do not move in a clip, so the scene without its objects is path traced once per
  clip at ``static_spp`` samples per pixel and denoised, and each frame path traces (``samples_per_pixel``,
  denoised on crops) only the pixels the moving objects can change by more than ``static_tolerance`` 8-bit
  levels: their own pixels, their shadows, the sky and bounce light they block or add; the ``scalar_rgb``
  variant renders every pixel instead;
- outputs as every renderer (:class:`~vidalign.simulation.render.Rendering`): RGB uint8 (sRGB; exposure metered
  so that a fully lit up-facing surface at the origin shows its albedo, as the pybullet renderer normalises its
  light, plus ``exposure`` stops; below linear 0.8, the pybullet renderer's knee, colours are exact, above it
  a roll-off on the largest channel keeps bright sun from clipping hues), depth (the distance from the camera
  centre to the first surface along the ray through each pixel centre, metres; ``camera.far`` where nothing
  is hit), and masks from the shape hit by that same ray: exact per pixel, no thresholds, in
  ``scene.objects`` order (the last is the primary dropper).

Why Mitsuba rather than Blender Cycles through ``bpy`` (measured here, ``benchmarks/RESULTS.md``): the
Mitsuba + Dr.Jit + OIDN wheels are ~156 MB against ``bpy``'s 856 MB installed, it needs no Kubric
patches, and at the authors' 64 spp it renders a 256² clip of 32 frames in ~40 CPU s where Kubric/Cycles
takes ~300; OIDN (the denoiser Cycles uses) is shared by both.

The geometry pass (depth and masks) casts one ray through each pixel centre with the OpenCV pinhole of
:class:`~vidalign.simulation.geometry.Camera`, so masks and depth agree with the projected geometry
and with the metadata's intrinsics. The colour pass uses a box pixel filter: the same seed gives the
same image, bit for bit (the static-background mode too: its pixel sets are pure functions of the poses).
"""

from __future__ import annotations

import glob
import math
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidalign.errors import ConfigError, missing_extra, require
from vidalign.simulation.geometry import Camera, quat_to_matrix
from vidalign.simulation.physics import Trajectories
from vidalign.simulation.render import Rendering
from vidalign.simulation.scene import Scene

MIN_LLVM = 16
VARIANTS = ("auto", "cuda_ad_rgb", "llvm_ad_rgb", "scalar_rgb")
_LLVM_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")
_LLVM_NAME = re.compile(r"^libLLVM(?:-(\d+)(?:\.\d+)*\.so|\.so\.(\d+))")


@dataclass(frozen=True)
class RenderPreset:
    """Samples per pixel, Open Image Denoise on/off, the longest path (Mitsuba ``max_depth``), OIDN quality, and the
    static-background mode: ``static_spp`` > 0 path traces the scene without its objects once per clip at that
    many samples per pixel (denoised at OIDN high quality) and per frame only the pixels the objects can change by
    more than ``static_tolerance`` 8-bit levels (:mod:`vidalign.simulation.photoreal_static`); 0 renders every
    pixel of every frame."""

    samples_per_pixel: int
    denoise: bool
    max_depth: int
    oidn_quality: str = "high"
    static_spp: int = 0
    static_tolerance: float = 1.0


PRESETS: dict[str, RenderPreset] = {
    "authors": RenderPreset(64, True, 8),  # Cycles at 64 spp, denoised, every pixel of every frame (PISA's run.py)
    # chosen by benchmarks/render.py --sweep (benchmarks/RESULTS.md): the background once at 16 spp, per frame
    # 2 spp + OIDN fast on the pixels the objects can change by more than 2 levels
    "fast": RenderPreset(2, True, 3, "fast", static_spp=16, static_tolerance=2.0),
    "reference": RenderPreset(1024, False, 8),  # the quality yardstick of the benchmark
}


def find_libllvm(dirs: tuple[str, ...] | None = None) -> str | None:
    """A libLLVM ≥ 16 for Dr.Jit's CPU backend: ``DRJIT_LIBLLVM_PATH`` if set, else the newest found."""
    if os.environ.get("DRJIT_LIBLLVM_PATH"):
        return os.environ["DRJIT_LIBLLVM_PATH"]
    found: list[tuple[int, str]] = []
    for d in dirs if dirs is not None else (*_LLVM_DIRS, *sorted(glob.glob("/usr/lib/llvm-*/lib"))):
        for path in glob.glob(os.path.join(d, "libLLVM*.so*")):
            m = _LLVM_NAME.match(os.path.basename(path))
            if m and int(m.group(1) or m.group(2)) >= MIN_LLVM:
                found.append((int(m.group(1) or m.group(2)), path))
    return max(found)[1] if found else None


def load_mitsuba(variant: str = "auto") -> tuple[Any, Any, str]:
    """``(mitsuba, drjit, variant)`` with the variant set; ``auto`` picks CUDA, then LLVM, then scalar."""
    require(variant in VARIANTS, "mitsuba renderer", "variant", variant, f"use one of {list(VARIANTS)}")
    llvm = find_libllvm() if variant in ("auto", "llvm_ad_rgb") else None
    if llvm:  # must be in the environment before Dr.Jit initialises its LLVM backend
        os.environ["DRJIT_LIBLLVM_PATH"] = llvm
    try:
        import drjit as dr
        import mitsuba as mi
    except ImportError as exc:
        raise missing_extra("photoreal", exc.name or "mitsuba") from exc
    if variant == "llvm_ad_rgb" and not llvm:
        raise ConfigError(f"mitsuba renderer: variant='llvm_ad_rgb' needs libLLVM >= {MIN_LLVM} (the older one "
                          "aborts): install it (Debian: apt-get install libllvm19) or set DRJIT_LIBLLVM_PATH, "
                          "or use variant='scalar_rgb'")
    if variant == "auto":
        if dr.has_backend(dr.JitBackend.CUDA):
            variant = "cuda_ad_rgb"
        elif llvm and dr.has_backend(dr.JitBackend.LLVM):
            variant = "llvm_ad_rgb"
        else:
            variant = "scalar_rgb"
    if variant not in mi.variants():
        raise ConfigError(f"mitsuba renderer: variant={variant!r} is not in this Mitsuba build "
                          f"({mi.variants()}); pick another variant")
    mi.set_variant(variant)
    return mi, dr, variant


def camera_rays(camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """World origin ``[3]`` and unit directions ``[H·W, 3]`` through every pixel centre (row-major)."""
    w, f = camera.resolution, camera.focal_px
    centres = np.arange(w) + 0.5
    cols, rows = np.meshgrid(centres, centres)
    d_cam = np.stack([(cols - w / 2) / f, (rows - w / 2) / f, np.ones_like(cols)], -1).reshape(-1, 3)
    d = d_cam @ camera.rotation  # camera → world: R^T d for row vectors
    return np.asarray(camera.position, np.float64), d / np.linalg.norm(d, axis=1, keepdims=True)


KNEE = 0.8  # linear level below which colours are shown exactly (the pybullet renderer's shoulder starts here)


def soft_clip(x: np.ndarray, knee: float = KNEE) -> np.ndarray:
    """Identity below ``knee``; above it an exponential shoulder towards 1 (C¹ at the knee)."""
    span = 1.0 - knee
    return np.where(x <= knee, x, knee + span * (1.0 - np.exp(-(x - knee) / span)))


def to_srgb8(linear: np.ndarray, exposure: float = 0.0) -> np.ndarray:
    """Linear RGB → sRGB uint8: exposure, roll-off on the largest channel (keeps hue), sRGB curve."""
    x = np.maximum(np.nan_to_num(np.asarray(linear, np.float64), nan=0.0, posinf=0.0), 0.0) * 2.0 ** exposure
    peak = x.max(axis=-1, keepdims=True)
    scale = np.where(peak > 0, soft_clip(peak) / np.maximum(peak, 1e-12), 1.0)
    x = np.clip(x * scale, 0.0, 1.0)
    srgb = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return np.round(srgb * 255.0).astype(np.uint8)


def frame_seed(scene_seed: int, renderer_seed: int, frame: int) -> int:
    return int(np.random.SeedSequence([int(scene_seed), int(renderer_seed), int(frame)]).generate_state(1)[0])


@dataclass
class MitsubaRenderer:
    """Mitsuba 3 path tracer + Open Image Denoise (extra ``vidalign[photoreal]``); see the module docstring."""

    preset: str = "authors"
    samples_per_pixel: int | None = None
    denoise: bool | None = None
    max_depth: int | None = None
    variant: str = "auto"
    threads: int | None = None
    seed: int = 0
    exposure: float = 0.0
    sky_radiance: float = 0.5  # display value of the studio's uniform sky (its light; the wall hides it)
    env_strength: float = 1.0  # multiplies an environment map (backdrop and light)
    oidn_quality: str | None = None
    static_spp: int | None = None
    static_tolerance: float | None = None
    name: str = "mitsuba"

    def __post_init__(self) -> None:
        owner = "mitsuba renderer"
        require(self.preset in PRESETS, owner, "preset", self.preset, f"use one of {sorted(PRESETS)}")
        base = PRESETS[self.preset]
        self.samples_per_pixel = int(base.samples_per_pixel if self.samples_per_pixel is None
                                     else self.samples_per_pixel)
        self.denoise = bool(base.denoise if self.denoise is None else self.denoise)
        self.max_depth = int(base.max_depth if self.max_depth is None else self.max_depth)
        self.oidn_quality = base.oidn_quality if self.oidn_quality is None else self.oidn_quality
        self.static_spp = int(base.static_spp if self.static_spp is None else self.static_spp)
        self.static_tolerance = float(base.static_tolerance if self.static_tolerance is None
                                      else self.static_tolerance)
        require(self.samples_per_pixel >= 1, owner, "samples_per_pixel", self.samples_per_pixel, "use >= 1")
        require(self.max_depth >= 1, owner, "max_depth", self.max_depth, "use >= 1 (1 = emitters only)")
        require(self.variant in VARIANTS, owner, "variant", self.variant, f"use one of {list(VARIANTS)}")
        require(self.static_spp >= 0, owner, "static_spp", self.static_spp,
                "use >= 0 (0 renders every pixel of every frame)")
        require(math.isfinite(self.static_tolerance) and self.static_tolerance > 0, owner, "static_tolerance",
                self.static_tolerance, "use a finite number of 8-bit levels > 0")
        require(self.threads is None or int(self.threads) >= 1, owner, "threads", self.threads, "use >= 1 or None")
        require(self.oidn_quality in ("high", "balanced", "fast"), owner, "oidn_quality", self.oidn_quality,
                "use high, balanced or fast")
        for fname in ("sky_radiance", "env_strength"):
            value = getattr(self, fname)
            require(math.isfinite(value) and value >= 0, owner, fname, value, "use a finite value >= 0")

    @property
    def settings(self) -> dict[str, Any]:
        return {"preset": self.preset, "samples_per_pixel": self.samples_per_pixel, "denoise": self.denoise,
                "max_depth": self.max_depth, "seed": self.seed, "exposure": self.exposure,
                "sky_radiance": self.sky_radiance, "env_strength": self.env_strength,
                "oidn_quality": self.oidn_quality, "static_spp": self.static_spp,
                "static_tolerance": self.static_tolerance}

    def render(self, scene: Scene, trajectories: Trajectories) -> Rendering:
        mi, dr, variant = load_mitsuba(self.variant)
        if self.threads is not None:
            dr.set_thread_count(int(self.threads))
        denoisers = DenoiserPool(variant, self.threads)
        try:
            return self._render(mi, dr, variant, scene, trajectories, denoisers)
        finally:
            denoisers.close()

    def _render(self, mi: Any, dr: Any, variant: str, scene: Scene, trajectories: Trajectories,
                denoisers: DenoiserPool) -> Rendering:
        from vidalign.simulation.photoreal_scene import scene_parts

        cam = scene.camera
        w, t, n = cam.resolution, trajectories.num_frames, len(scene.objects)
        parts = scene_parts(mi, scene, self.sky_radiance, self.env_strength)
        parts.scene_dict["integrator"] = {"type": "aov", "aovs": "albedo:albedo,normal:sh_normal",
                                          "path": {"type": "path", "max_depth": int(self.max_depth)}}
        parts.scene_dict["sensor"] = {
            "type": "perspective", "fov": cam.fov_deg, "fov_axis": "x", "near_clip": cam.near, "far_clip": cam.far,
            "to_world": mi.ScalarTransform4f().look_at(origin=list(cam.position), target=list(cam.target),
                                                      up=[0.0, 0.0, 1.0]),
            "film": {"type": "hdrfilm", "width": w, "height": w, "rfilter": {"type": "box"},
                     "pixel_format": "rgb"},
            "sampler": {"type": "independent", "sample_count": int(self.samples_per_pixel)},
        }
        mi_scene = mi.load_dict(parts.scene_dict)
        params = mi.traverse(mi_scene)
        geometry = _GeometryPass(mi, dr, mi_scene, cam, parts.object_keys, variant, parts.wall_x)
        options = {**self.settings, "variant": variant, "engine": f"mitsuba {mi.__version__}", **parts.info}
        if self.static_spp and not variant.startswith("scalar"):
            from vidalign.simulation.photoreal_static import render_static

            rgb, depth, masks = render_static(self, mi, dr, variant, scene, trajectories, parts, mi_scene, params,
                                              geometry, denoisers)
            return Rendering(rgb, depth, masks, self.name, options)
        options["static_spp"] = 0  # the scalar variant renders every pixel (no batched per-pixel sampling)
        rgb = np.zeros((t, w, w, 3), np.uint8)
        depth = np.zeros((t, w, w), np.float32)
        masks = np.zeros((t, n, w, w), bool)
        denoiser = denoisers.get((w, w), str(self.oidn_quality)) if self.denoise else None
        for f in range(t):  # every frame from the trajectories: frame 0 is not the pose at release (first_frame)
            pose_objects(params, parts, trajectories, f)
            depth[f], masks[f] = geometry()
            image = np.array(mi.render(mi_scene, seed=frame_seed(scene.seed, self.seed, f),
                                       spp=int(self.samples_per_pixel)), dtype=np.float32)
            colour = np.ascontiguousarray(image[..., 0:3] * np.float32(parts.exposure_scale))
            if denoiser is not None:  # channels: colour first, the albedo and normal AOVs last
                colour = denoiser(colour, np.ascontiguousarray(np.clip(image[..., -6:-3], 0, 1)),
                                  np.ascontiguousarray(image[..., -3:]))
            rgb[f] = to_srgb8(colour, self.exposure)
        return Rendering(rgb, depth, masks, self.name, options)


def pose_objects(params: Any, parts: Any, trajectories: Trajectories, f: int) -> None:
    """Move every object's mesh to its pose in frame ``f`` (and rebuild the acceleration structure)."""
    for i, (key, mesh) in enumerate(zip(parts.object_keys, parts.rest)):
        rot = quat_to_matrix(trajectories.orientations[f, i])
        _assign(params, f"{key}.vertex_positions", mesh.positions @ rot.T + trajectories.positions[f, i])
        if mesh.normals is not None:
            _assign(params, f"{key}.vertex_normals", mesh.normals @ rot.T)
    if parts.object_keys:
        params.update()


def _assign(params: Any, key: str, values: np.ndarray) -> None:
    params[key] = type(params[key])(np.ascontiguousarray(values, np.float32).ravel())


def import_pyoidn() -> Any:
    """pyoidn imports torch at import time (seconds per process) only to accept tensors; vidalign hands it
    numpy arrays, so it is imported with torch hidden unless torch is already loaded."""
    if "pyoidn" in sys.modules or "torch" in sys.modules:
        import pyoidn
        return pyoidn
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` fails fast inside pyoidn
    try:
        import pyoidn
    finally:
        del sys.modules["torch"]
    return pyoidn


class BufferDenoiser:
    """Open Image Denoise through device-owned buffers (host arrays copied in and out, ~1 MB per 256² image):
    the same code on OIDN's CPU device or its CUDA device (no torch needed), one filter kept for a clip."""

    def __init__(self, pyoidn: Any, shape: tuple[int, int], quality: str, device: str = "cuda",
                 threads: int | None = None, shared_device: Any = None):
        self.pyoidn, self.shape = pyoidn, (int(shape[0]), int(shape[1]), 3)
        self.nbytes = int(np.prod(self.shape)) * 4
        self.owns_device = shared_device is None
        self.device = open_oidn_device(pyoidn, device, threads) if shared_device is None else shared_device
        self.buffers = {k: pyoidn.Buffer(self.device, self.nbytes) for k in ("color", "albedo", "normal", "output")}
        self.filter = pyoidn.Filter(self.device, "RT")
        for name, buf in self.buffers.items():
            self.filter.set_image(name, buf, pyoidn.OIDN_FORMAT_FLOAT3, self.shape[1], self.shape[0])
        self.filter.set_bool("hdr", True)
        self.filter.set_quality({"high": pyoidn.OIDN_QUALITY_HIGH, "balanced": pyoidn.OIDN_QUALITY_BALANCED,
                                 "fast": pyoidn.OIDN_QUALITY_FAST}[quality])
        self.filter.commit()
        self._check("filter set-up")

    def _check(self, what: str) -> None:
        error = self.device.get_error()
        if error:
            raise RuntimeError(f"Open Image Denoise {what} failed: {error}")

    def __call__(self, colour: np.ndarray, albedo: np.ndarray, normal: np.ndarray) -> np.ndarray:
        for name, image in (("color", colour), ("albedo", albedo), ("normal", normal)):
            self.buffers[name].write(0, self.nbytes, np.ascontiguousarray(image, np.float32))
        self.filter.execute()
        out = np.empty(self.shape, np.float32)
        self.buffers["output"].read(0, self.nbytes, out)
        self._check("denoising")
        return out

    def close(self) -> None:
        self.filter.release()
        for buf in self.buffers.values():
            buf.release()
        if self.owns_device:
            self.device.release()


def open_oidn_device(pyoidn: Any, device: str = "cpu", threads: int | None = None) -> Any:
    """An Open Image Denoise device: CUDA or CPU (``threads`` threads; all cores when None)."""
    handle = pyoidn.Device(pyoidn.OIDN_DEVICE_TYPE_CUDA if device == "cuda" else pyoidn.OIDN_DEVICE_TYPE_CPU)
    if threads is not None and device == "cpu":  # one worker per core: no oversubscription
        handle.set_int("numThreads", int(threads))
    handle.commit()
    error = handle.get_error()
    if error:
        raise RuntimeError(f"Open Image Denoise device creation failed: {error}")
    return handle


class DenoiserPool:
    """Open Image Denoise filters by image shape and quality, kept for a clip (a filter's set-up costs about as
    much as denoising 1,000 pixels): on OIDN's CUDA device next to ``cuda_ad_rgb`` (when OIDN sees the GPU),
    else on the CPU with ``threads`` threads (all cores when None)."""

    def __init__(self, variant: str, threads: int | None = None):
        self.variant, self.threads = variant, threads
        self.filters: dict[tuple[int, int, str], BufferDenoiser] = {}
        self.pyoidn: Any = None
        self.device: Any = None

    def get(self, shape: tuple[int, int], quality: str) -> BufferDenoiser:
        key = (int(shape[0]), int(shape[1]), quality)
        if key not in self.filters:
            if self.device is None:
                try:
                    self.pyoidn = import_pyoidn()
                except ImportError as exc:
                    raise missing_extra("photoreal", "pyoidn") from exc
                on_gpu = self.variant.startswith("cuda") and bool(self.pyoidn.Device.is_cuda_available(0))
                self.kind = "cuda" if on_gpu else "cpu"
                self.device = open_oidn_device(self.pyoidn, self.kind, self.threads)
            self.filters[key] = BufferDenoiser(self.pyoidn, key[:2], quality, self.kind, self.threads, self.device)
        return self.filters[key]

    def close(self) -> None:
        for den in self.filters.values():
            den.close()
        self.filters.clear()
        if self.device is not None:
            self.device.release()
            self.device = None


class _GeometryPass:
    """Depth (ray length) and object masks from one ray per pixel centre, cast into the Mitsuba scene (and onto
    the studio wall's plane, which the environment draws, where a ray reaches nothing else)."""

    def __init__(self, mi: Any, dr: Any, mi_scene: Any, camera: Camera, object_keys: list[str], variant: str,
                 wall_x: float | None = None):
        self.mi, self.dr, self.scene, self.camera = mi, dr, mi_scene, camera
        self.scalar = variant.startswith("scalar")
        origin, dirs = camera_rays(camera)
        self.origin, self.dirs = origin, dirs
        self.t_wall = np.full(len(dirs), np.inf)
        if wall_x is not None:
            ahead = dirs[:, 0] > 1e-9
            self.t_wall[ahead] = (wall_x - origin[0]) / dirs[ahead, 0]
        shapes = {s.id(): s for s in mi_scene.shapes()}
        self.keys = object_keys
        if not self.scalar:
            o = np.broadcast_to(origin, dirs.shape).astype(np.float32)
            d = dirs.astype(np.float32)
            self.ray = mi.Ray3f(mi.Point3f(o[:, 0], o[:, 1], o[:, 2]), mi.Vector3f(d[:, 0], d[:, 1], d[:, 2]))
            self.ids = np.array([int(np.array(dr.reinterpret_array(mi.UInt32, mi.ShapePtr(shapes[k])))[0])
                                 for k in object_keys], np.int64)

    def __call__(self) -> tuple[np.ndarray, np.ndarray]:
        w = self.camera.resolution
        depth, index = self.cast()
        masks = (index[None, :] == np.arange(len(self.keys))[:, None]).reshape(len(self.keys), w, w)
        return depth.reshape(w, w), masks

    def cast(self, pixels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Depth (float32) and object index (−1: no object) of the given row-major pixels (all when None)."""
        t, index = self.hits(pixels)
        t_wall = self.t_wall if pixels is None else self.t_wall[pixels]
        return np.minimum(np.minimum(t, t_wall), self.camera.far).astype(np.float32), index

    def hits(self, pixels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Ray length to the first shape (inf: none) and object index of the given pixels' centre rays."""
        if self.scalar:
            return self._scalar(pixels)
        if pixels is None:
            ray = self.ray
        else:
            o = np.broadcast_to(self.origin, (len(pixels), 3)).astype(np.float32)
            d = self.dirs[pixels].astype(np.float32)
            ray = self.mi.Ray3f(self.mi.Point3f(o[:, 0], o[:, 1], o[:, 2]),
                                self.mi.Vector3f(d[:, 0], d[:, 1], d[:, 2]))
        pi = self.scene.ray_intersect_preliminary(ray)
        valid = np.array(pi.is_valid(), bool)
        t = np.where(valid, np.array(pi.t, np.float64), np.inf)
        shape_ids = np.where(valid, np.array(self.dr.reinterpret_array(self.mi.UInt32, pi.shape), np.int64), -1)
        index = np.full(len(t), -1, np.int64)
        for i, sid in enumerate(self.ids):
            index[shape_ids == sid] = i
        return t, index

    def _scalar(self, pixels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        mi = self.mi
        lookup = {k: i for i, k in enumerate(self.keys)}
        o = mi.Point3f(*(float(v) for v in self.origin))
        dirs = self.dirs if pixels is None else self.dirs[pixels]
        t = np.full(len(dirs), np.inf)
        index = np.full(len(dirs), -1, np.int64)
        for p, d in enumerate(dirs):
            pi = self.scene.ray_intersect_preliminary(mi.Ray3f(o, mi.Vector3f(float(d[0]), float(d[1]), float(d[2]))))
            if pi.is_valid():
                t[p] = pi.t
                index[p] = lookup.get(pi.shape.id(), -1)
        return t, index


__all__ = ["MitsubaRenderer", "RenderPreset", "PRESETS", "load_mitsuba", "find_libllvm", "camera_rays",
           "BufferDenoiser", "DenoiserPool", "import_pyoidn", "pose_objects",
           "to_srgb8", "soft_clip", "frame_seed"]
