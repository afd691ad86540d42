"""Shared helpers for the simulation tests: tiny configs and hand-built scenes with known geometry."""

from __future__ import annotations

import pytest

from vidalign.simulation.assets import COLORS, load_catalog
from vidalign.simulation.config import DropSceneConfig
from vidalign.simulation.geometry import Camera
from vidalign.simulation.scene import Lighting, Scene, SceneObject


def tiny_config(**changes) -> DropSceneConfig:
    """Small frames and short clips for fast tests (physics stays at 240 Hz)."""
    base = {"resolution": 64, "num_frames": 8, "settle_frames": 20}
    base.update(changes)
    return DropSceneConfig(**base)


def sphere_scene(height: float = 1.0, radius: float = 0.1, x: float = 0.0, y: float = 0.0,
                 config: DropSceneConfig | None = None, camera_x: float = -2.5) -> Scene:
    """One ball whose bottom starts ``height`` m above the floor, in front of a known camera."""
    config = config or DropSceneConfig(num_frames=14, resolution=128)
    catalog = load_catalog()
    ball = SceneObject(
        index=0, role="dropper", asset_id="primitive/sphere", name="ball", category="primitive", shape="sphere",
        mesh=None, collision_mesh=None, mesh_ref=None, scale=(1.0, 1.0, 1.0), half_extents=(radius,) * 3,
        mesh_offset=(0.0, 0.0, 0.0), color="red", rgb=COLORS["red"], material="plastic", density=1000.0,
        volume=4 / 3 * 3.141592653589793 * radius ** 3, mass=1000.0 * 4 / 3 * 3.141592653589793 * radius ** 3,
        friction=0.5, restitution=0.5, position=(x, y, height + radius), orientation=(0.0, 0.0, 0.0, 1.0))
    camera = Camera((camera_x, 0.0, 0.5), config.focal_length_mm, config.sensor_width_mm, config.resolution,
                    config.near, config.far)
    lighting = Lighting(3.0, (20.0, 20.0), (30.0, -30.0), (-30.0, -10.0), (0.3, -0.3, 0.9))
    return Scene(0, config, camera, catalog.backgrounds[0], lighting, (ball,), "A red ball falls.")


@pytest.fixture(name="tiny_config")
def tiny_config_fixture():
    """Factory: ``tiny_config(**changes)`` → a small, fast :class:`DropSceneConfig`."""
    return tiny_config


@pytest.fixture(name="sphere_scene")
def sphere_scene_fixture():
    """Factory: ``sphere_scene(height=1.0, radius=0.1, ...)`` → a one-ball scene with a known camera."""
    return sphere_scene
