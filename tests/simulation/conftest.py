"""Shared helpers for the simulation tests: tiny configs and hand-built scenes with known geometry."""

from __future__ import annotations

import math

import pytest

from vidalign.simulation.assets import COLORS
from vidalign.simulation.backgrounds import studio_backgrounds
from vidalign.simulation.config import DropSceneConfig
from vidalign.simulation.geometry import Camera
from vidalign.simulation.scene import Lighting, Scene, SceneObject


def tiny_config(**changes) -> DropSceneConfig:
    """Small frames and short clips for fast tests (physics stays at 240 Hz)."""
    base = {"resolution": 64, "num_frames": 8, "settle_frames": 20}
    base.update(changes)
    return DropSceneConfig(**base)


def studio(floor: str = "gray", wall: str = "white"):
    """A studio background (plain floor, coloured wall) by name."""
    return next(b for b in studio_backgrounds() if b.id == f"studio/{floor}_floor/{wall}_wall")


def primitive(index: int, shape: str, half, position, role: str = "dropper", restitution: float = 0.5,
              color: str = "red", density: float = 1000.0, **extra) -> SceneObject:
    """A sphere/box/cylinder with explicit geometry (``half`` = half extents)."""
    half = tuple(float(h) for h in half)
    volume = (4 / 3 * math.pi * half[0] ** 3 if shape == "sphere" else
              8 * half[0] * half[1] * half[2] if shape == "box" else math.pi * half[0] ** 2 * 2 * half[2])
    return SceneObject(
        index=index, role=role, asset_id=f"primitive/{shape}", name=shape, category="primitive", shape=shape,
        mesh=None, collision_mesh=None, mesh_ref=None, scale=(1.0, 1.0, 1.0), half_extents=half,
        mesh_offset=(0.0, 0.0, 0.0), color=color, rgb=COLORS[color], material="plastic", density=density,
        volume=volume, mass=density * volume, friction=0.5, restitution=restitution, position=tuple(position),
        orientation=(0.0, 0.0, 0.0, 1.0), **extra)


def scene_of(objects, config: DropSceneConfig | None = None, camera_x: float = -2.5, camera_z: float = 0.5,
             background=None, prompt: str = "A ball falls.") -> Scene:
    config = config or DropSceneConfig(num_frames=14, resolution=128)
    camera = Camera((camera_x, 0.0, camera_z), config.focal_length_mm, config.sensor_width_mm, config.resolution,
                    config.near, config.far)
    lighting = Lighting(3.0, (20.0, 20.0), (30.0, -30.0), (-30.0, -10.0), (0.3, -0.3, 0.9))
    return Scene(0, config, camera, background or studio(), lighting, tuple(objects), prompt)


def sphere_scene(height: float = 1.0, radius: float = 0.1, x: float = 0.0, y: float = 0.0,
                 config: DropSceneConfig | None = None, camera_x: float = -2.5, background=None) -> Scene:
    """One ball whose bottom starts ``height`` m above the floor, in front of a known camera."""
    ball = primitive(0, "sphere", (radius,) * 3, (x, y, height + radius))
    return scene_of([ball], config, camera_x, background=background)


@pytest.fixture(name="tiny_config")
def tiny_config_fixture():
    """Factory: ``tiny_config(**changes)`` → a small, fast :class:`DropSceneConfig`."""
    return tiny_config


@pytest.fixture(name="sphere_scene")
def sphere_scene_fixture():
    """Factory: ``sphere_scene(height=1.0, radius=0.1, ...)`` → a one-ball scene with a known camera."""
    return sphere_scene


@pytest.fixture(name="primitive")
def primitive_fixture():
    """Factory: ``primitive(index, shape, half, position, ...)`` → a :class:`SceneObject`."""
    return primitive


@pytest.fixture(name="scene_of")
def scene_of_fixture():
    """Factory: ``scene_of(objects, config, camera_x, ...)`` → a :class:`Scene` with a known camera and light."""
    return scene_of


@pytest.fixture(name="studio")
def studio_fixture():
    """Factory: ``studio(floor, wall)`` → a studio background by name."""
    return studio
