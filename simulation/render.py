"""Renderers: turn a scene and its trajectories into RGB, metric depth and per-object masks.

Registry (users pick by name): ``pybullet`` (default; TinyRenderer on the CPU, ≈ 15–45 ms per 256²
frame), ``kubric`` (Kubric's Blender/Cycles pipeline, extra ``vidalign[kubric]``; see
:mod:`vidalign.simulation.kubric_render`) and ``mitsuba`` (photoreal path tracing with Mitsuba 3 and
Open Image Denoise, presets ``authors``/``fast``, extra ``vidalign[photoreal]``; see
:mod:`vidalign.simulation.photoreal`). Both replay the same trajectories, so the motion in the
video is exactly the motion recorded in the metadata whichever renderer draws it.

Outputs (:class:`Rendering`): ``rgb`` uint8 [T, H, W, 3]; ``depth`` float32 [T, H, W], metric z-depth
(distance along the optical axis, metres) of the first surface; ``masks`` bool [T, N, H, W], the
*visible* pixels of each object in ``scene.objects`` order (tower objects first, droppers last; the
last channel is the primary dropping object, as PisaBench expects).
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
from vidalign.simulation.physics import Trajectories, direct_client
from vidalign.simulation.scene import Scene, SceneObject


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
    """TinyRenderer visual for an object, coloured from the palette, frame at the object's centre."""
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
    """Floor (30 m plane at z=0, tiled texture when the background has one) and a wall behind the scene."""
    plane = f"{pybullet_data_dir()}/plane.obj"
    bg = scene.background
    floor = pb.createMultiBody(0, -1, pb.createVisualShape(pb.GEOM_MESH, fileName=plane,
                                                           rgbaColor=[*bg.floor_rgb, 1.0], physicsClientId=client),
                               [0, 0, 0], physicsClientId=client)
    wall_x = scene.config.spawn_max[0] + 5.0
    wall_q = pb.getQuaternionFromEuler([0, -math.pi / 2, 0])  # plane normal +z → −x, facing the camera
    # the vertical wall gets almost no diffuse light from an overhead sun: brighten it to read as the colour
    wall_rgba = [min(1.0, 1.6 * c) for c in bg.wall_rgb] + [1.0]
    wall = pb.createMultiBody(0, -1, pb.createVisualShape(pb.GEOM_MESH, fileName=plane,
                                                          rgbaColor=wall_rgba, physicsClientId=client),
                              [wall_x, 0, 0], wall_q, physicsClientId=client)
    if bg.floor_texture:
        tex = pb.loadTexture(bg.floor_texture, physicsClientId=client)
        pb.changeVisualShape(floor, -1, textureUniqueId=tex, rgbaColor=[1, 1, 1, 1], physicsClientId=client)
    else:
        pb.changeVisualShape(floor, -1, textureUniqueId=-1, physicsClientId=client)
    pb.changeVisualShape(wall, -1, textureUniqueId=-1, physicsClientId=client)
    return floor, wall


@register_renderer("pybullet")
@dataclass
class PyBulletRenderer:
    """PyBullet's TinyRenderer in a private DIRECT client (visual-only bodies replaying the poses)."""

    shadows: bool = True
    ambient: float = 0.45
    name: str = "pybullet"

    def render(self, scene: Scene, trajectories: Trajectories) -> Rendering:
        cam, cfg = scene.camera, scene.config
        w = cam.resolution
        t, n = trajectories.num_frames, len(scene.objects)
        rgb = np.zeros((t, w, w, 3), np.uint8)
        depth = np.zeros((t, w, w), np.float32)
        masks = np.zeros((t, n, w, w), bool)
        light = scene.lighting
        with direct_client() as (pb, client), quiet_stdout():  # the OBJ loader prints every texture it tries
            add_backdrop(pb, client, scene)
            bodies = []
            for obj in scene.objects:
                body = pb.createMultiBody(0, -1, visual_shape(pb, client, obj), list(obj.position),
                                          list(obj.orientation), physicsClientId=client)
                if obj.shape == "mesh":  # drop any texture the .mtl brought: colour comes from the palette
                    pb.changeVisualShape(body, -1, textureUniqueId=-1, physicsClientId=client)
                bodies.append(body)
            ids = np.asarray(bodies, dtype=np.int32)[:, None, None]
            view = pb.computeViewMatrix(list(cam.position), list(cam.target), [0, 0, 1], physicsClientId=client)
            proj = pb.computeProjectionMatrixFOV(cam.fov_deg, 1.0, cam.near, cam.far, physicsClientId=client)
            light_kwargs = {
                "lightDirection": list(light.light_direction), "lightColor": [1.0, 1.0, 1.0],
                "lightAmbientCoeff": self.ambient, "lightDiffuseCoeff": min(0.9, 0.3 + 0.08 * light.sun_energy),
                "lightSpecularCoeff": 0.4, "shadow": int(self.shadows),
            }
            for f in range(t):
                for i, body in enumerate(bodies):
                    pb.resetBasePositionAndOrientation(body, trajectories.positions[f, i].tolist(),
                                                       trajectories.orientations[f, i].tolist(),
                                                       physicsClientId=client)
                _, _, img, buf, seg = pb.getCameraImage(w, w, view, proj, renderer=pb.ER_TINY_RENDERER,
                                                        physicsClientId=client, **light_kwargs)
                rgb[f] = np.asarray(img, np.uint8).reshape(w, w, 4)[..., :3]
                depth[f] = depth_buffer_to_metric(np.asarray(buf).reshape(w, w), cam.near, cam.far)
                masks[f] = np.asarray(seg).reshape(1, w, w) == ids
        return Rendering(rgb, depth, masks, self.name, {"shadows": self.shadows, "ambient": self.ambient,
                                                        "physics_hz": cfg.physics_hz})


@register_renderer("kubric")
def _kubric_renderer(**options: Any) -> Renderer:
    from vidalign.simulation.kubric_render import KubricRenderer  # lazy: needs the kubric extra

    return KubricRenderer(**options)


@register_renderer("mitsuba")
def _mitsuba_renderer(**options: Any) -> Renderer:
    from vidalign.simulation.photoreal import MitsubaRenderer  # mitsuba itself is imported at render time

    return MitsubaRenderer(**options)


__all__ = ["Rendering", "Renderer", "RENDERERS", "register_renderer", "get_renderer", "render",
           "PyBulletRenderer", "depth_buffer_to_metric", "quiet_stdout", "visual_shape", "add_backdrop"]
