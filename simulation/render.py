"""Renderers: turn a scene and its trajectories into RGB, metric depth and per-object masks.

Registry (users pick by name): ``pybullet`` (default; TinyRenderer rasterisation shaded in numpy on the
CPU, see :mod:`vidalign.simulation.pybullet_render`), ``kubric`` (Kubric's Blender/Cycles pipeline, extra
``vidalign[kubric]``; see :mod:`vidalign.simulation.kubric_render`) and ``mitsuba`` (photoreal path tracing
with Mitsuba 3 and Open Image Denoise, presets ``authors``/``fast``, extra ``vidalign[photoreal]``; see
:mod:`vidalign.simulation.photoreal`). All replay the same trajectories, so the motion in the video is
exactly the motion recorded in the metadata whichever renderer draws it.

Outputs (:class:`Rendering`): ``rgb`` uint8 [T, H, W, 3]; ``depth`` float32 [T, H, W], metres from the
camera centre to the first surface along each pixel's ray (Kubric's ``depth`` pass: ``camera.z_to_depth``
of Blender's z); ``masks`` bool [T, N, H, W], the *visible* pixels of each object in ``scene.objects`` order
(tower objects first, droppers last; the last channel is the primary dropping object, as PisaBench expects).
Colours (``SceneObject.rgb``, ``Background`` colours and PNG textures) are sRGB display values.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from vidalign.errors import ConfigError
from vidalign.simulation.assets import MATERIALS, pybullet_data_dir
from vidalign.simulation.physics import Trajectories
from vidalign.simulation.scene import Scene, SceneObject

DEPTH_KIND = "distance to the camera centre along each pixel's ray (Kubric's depth, not z-depth)"
"""What ``Rendering.depth`` holds, for every renderer: said once, in each clip's metadata (``depth.kind``)."""


@dataclass(frozen=True)
class Rendering:
    rgb: np.ndarray
    depth: np.ndarray
    masks: np.ndarray
    renderer: str = "pybullet"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t, h, w, c = self.rgb.shape
        if (self.rgb.dtype != np.uint8 or c != 3 or self.depth.shape != (t, h, w)
                or self.masks.shape[0] != t or self.masks.shape[2:] != (h, w) or self.masks.dtype != bool):
            raise ValueError(f"inconsistent rendering: rgb {self.rgb.dtype}{self.rgb.shape}, "
                             f"depth {self.depth.shape}, masks {self.masks.dtype}{self.masks.shape}")


class Renderer(Protocol):
    name: str

    def render(self, scene: Scene, trajectories: Trajectories) -> Rendering: ...


RENDERERS: dict[str, Callable[..., Renderer]] = {}


def register_renderer(name: str) -> Callable[[Callable[..., Renderer]], Callable[..., Renderer]]:
    def deco(factory: Callable[..., Renderer]) -> Callable[..., Renderer]:
        RENDERERS[name] = factory
        return factory
    return deco


def get_renderer(name: str = "pybullet", **options: Any) -> Renderer:
    """A renderer by registry name; unknown names and options raise a one-line :class:`ConfigError`."""
    if name not in RENDERERS:
        raise ConfigError(f"--renderer={name!r} is invalid: use one of {sorted(RENDERERS)}")
    try:
        return RENDERERS[name](**options)
    except TypeError as exc:
        raise ConfigError(f"renderer {name!r}: bad option ({exc})") from exc


def render(scene: Scene, trajectories: Trajectories, renderer: str = "pybullet", **options: Any) -> Rendering:
    return get_renderer(renderer, **options).render(scene, trajectories)


def _flush_c_stdio() -> None:
    import ctypes

    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C runtime symbols (unusual platforms): nothing to flush
        return


@contextlib.contextmanager
def quiet_stdout(stderr: bool = False) -> Iterator[None]:
    """Silence C-level writes to stdout (and ``stderr``): PyBullet's and Blender's mesh loaders log every
    texture they try. Python exceptions still propagate (and print once the streams are back)."""
    streams = [sys.stdout, sys.stderr] if stderr else [sys.stdout]
    saved: list[tuple[int, int]] = []
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in streams:
            try:
                fd = stream.fileno()
            except (AttributeError, OSError, ValueError):  # replaced by an object without a descriptor
                continue
            stream.flush()
            saved.append((fd, os.dup(fd)))
            os.dup2(devnull, fd)
        yield
    finally:
        _flush_c_stdio()  # C libraries buffer stdout when it is a pipe: drop their lines while it is /dev/null
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def depth_buffer_to_metric(buffer: np.ndarray, near: float, far: float) -> np.ndarray:
    """OpenGL depth buffer values in [0, 1] → metric z-depth: ``far·near / (far − (far − near)·d)``."""
    d = np.asarray(buffer, dtype=np.float64)
    return (far * near / (far - (far - near) * d)).astype(np.float32)


def visual_shape(pb: Any, client: int, obj: SceneObject) -> int:
    """TinyRenderer visual for an object, frame at the object's centre: its palette colour, or white under its
    texture (assign the texture with ``changeVisualShape(textureUniqueId=...)``)."""
    rgba = [*obj.rgb, 1.0]
    spec = MATERIALS[obj.material]["specular"]
    common = {"rgbaColor": rgba, "specularColor": [spec] * 3, "physicsClientId": client}
    if obj.shape == "sphere":
        return pb.createVisualShape(pb.GEOM_SPHERE, radius=obj.half_extents[0], **common)
    if obj.shape == "box":
        return pb.createVisualShape(pb.GEOM_BOX, halfExtents=list(obj.half_extents), **common)
    if obj.shape == "cylinder":
        return pb.createVisualShape(pb.GEOM_CYLINDER, radius=obj.half_extents[0],
                                    length=2 * obj.half_extents[2], **common)
    offset = [-o * s for o, s in zip(obj.mesh_offset, obj.scale)]
    return pb.createVisualShape(pb.GEOM_MESH, fileName=obj.mesh, meshScale=list(obj.scale),
                                visualFramePosition=offset, **common)


def add_backdrop(pb: Any, client: int, scene: Scene) -> tuple[int, int]:
    """Floor (30 m plane at z=0) and a wall behind the scene as TinyRenderer bodies, in their flat colours (the
    benchmark's bare-loop baseline draws these; the ``pybullet`` renderer casts rays instead)."""
    plane = f"{pybullet_data_dir()}/plane.obj"
    bg = scene.background
    floor = pb.createMultiBody(0, -1, pb.createVisualShape(pb.GEOM_MESH, fileName=plane,
                                                           rgbaColor=[*bg.floor_rgb, 1.0], physicsClientId=client),
                               [0, 0, 0], physicsClientId=client)
    wall_x = scene.config.spawn_max[0] + 5.0
    wall_q = pb.getQuaternionFromEuler([0, -math.pi / 2, 0])  # plane normal +z → −x, facing the camera
    wall = pb.createMultiBody(0, -1, pb.createVisualShape(pb.GEOM_MESH, fileName=plane,
                                                          rgbaColor=[*bg.wall_rgb, 1.0], physicsClientId=client),
                              [wall_x, 0, 0], wall_q, physicsClientId=client)
    for body in (floor, wall):
        pb.changeVisualShape(body, -1, textureUniqueId=-1, physicsClientId=client)
    return floor, wall


@register_renderer("pybullet")
def _pybullet_renderer(**options: Any) -> Renderer:
    from vidalign.simulation.pybullet_render import PyBulletRenderer

    return PyBulletRenderer(**options)


@register_renderer("kubric")
def _kubric_renderer(**options: Any) -> Renderer:
    from vidalign.simulation.kubric_render import KubricRenderer  # lazy: needs the kubric extra

    return KubricRenderer(**options)


@register_renderer("mitsuba")
def _mitsuba_renderer(**options: Any) -> Renderer:
    from vidalign.simulation.photoreal import MitsubaRenderer  # mitsuba itself is imported at render time

    return MitsubaRenderer(**options)


__all__ = ["DEPTH_KIND", "Rendering", "Renderer", "RENDERERS", "register_renderer", "get_renderer", "render",
           "depth_buffer_to_metric", "quiet_stdout", "visual_shape", "add_backdrop"]
