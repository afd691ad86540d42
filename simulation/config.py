"""The drop-scene configuration: every parameter of the PISA authors' Kubric generator, once.

Defaults reproduce the authors' released code (``sim_data/run.py`` and ``config.py`` of
vision-x-nyu/pisa-experiments, with Kubric's PyBullet simulator): 16 fps, 32 frames, 240 Hz physics, gravity
−10 m/s² along z; 1–5 dropping objects spawned fully inside x, y ∈ [−1, 1], z ∈ [0.5, 1.5] m with random
orientations; a tower of 0–3 distinct, unrotated objects under each, settled for 200 frames before the drop
(Kubric's ``run(-200, 0)``), the dropper's centre raised to the settled tower top + |N(0.005, 0.005)| m; the
drop simulated from frame 0 and rendered from frame 1 (Kubric renders frames 1..32: rendered frame 0 is 1/16 s
after release); Kubric's contact settings; objects at their native size with mass = volume × 1.0 (Kubric's GSO
manifests); friction 0.5, restitution 0.5, floor friction 1 and restitution 0; camera at (−2, 0, U(0.4, 0.6))
looking along +x with a 35 mm lens on a 32 mm sensor, stepping back by |N(0, 0.05)| m until every drop path is
in view; droppers accepted when their projected drop region covers > 2.5 % of the image (10 tries); 256² frames.

Where the paper differs from the code, the paper's form is an option: ``density=1000`` (water, the paper's
1000 kg/m³), ``object_scale="range"`` (longest extent U(0.15, 0.5) m, the ``obj_scale_range`` their code never
applies), ``lift_rule="bottom"`` (the dropper's bottom, not its centre, clears the tower), ``prompt_style="color"``
("A red mug falls."), ``contact_model="exact"`` (see :mod:`vidalign.simulation.physics`). ``*_range`` fields
switch on randomisation that the authors did not use. A config is frozen and validated: a bad value raises
:class:`ConfigError` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

from vidalign.errors import ConfigError, require

OWNER = "DropSceneConfig"
SPLITS = ("seen", "unseen")
CONTACT_MODELS = ("kubric", "exact", "pybullet")
OBJECT_SCALES = ("native", "range")
LIFT_RULES = ("centre", "bottom")
PROMPT_STYLES = ("authors", "color")
BACKGROUND_KINDS = ("procedural", "studio", "all")
# Asset categories (see :mod:`vidalign.simulation.assets`) and how often a pick lands in each; the
# weights are renormalised over the categories present in the pool, so they need not sum to 1.
DEFAULT_CATEGORY_WEIGHTS = (("user", 0.6), ("object", 0.25), ("procedural", 0.1), ("primitive", 0.05))


def _pair(value: Any) -> tuple[float, float] | None:
    return None if value is None else tuple(float(v) for v in value)  # type: ignore[return-value]


@dataclass(frozen=True)
class DropSceneConfig:
    """All scene parameters; units are metres, seconds, kilograms and millimetres for the lens."""

    # --- time
    fps: int = 16
    num_frames: int = 32
    physics_hz: int = 240
    gravity: float = -10.0
    settle_frames: int = 200  # pre-simulation of the towers (frames at ``fps``) before the drop
    settle_until_rest: bool = False  # end the pre-simulation early once every tower object is at rest (faster)
    first_frame: int = 1  # simulated frame shown as rendered frame 0 (Kubric renders frames 1..32)
    contact_model: str = "kubric"  # kubric | exact | pybullet (PyBullet's defaults)
    # --- objects
    min_droppers: int = 1
    max_droppers: int = 5
    min_tower: int = 0
    max_tower: int = 3
    spawn_min: tuple[float, float, float] = (-1.0, -1.0, 0.5)
    spawn_max: tuple[float, float, float] = (1.0, 1.0, 1.5)
    object_scale: str = "native"  # native (real sizes) | range (longest extent drawn from object_size_range)
    object_size_range: tuple[float, float] = (0.15, 0.5)  # longest extent of an object with object_scale="range"
    primitive_size_range: tuple[float, float] = (0.05, 0.25)  # longest extent of a primitive at native scale
    lift_margin: tuple[float, float] = (0.005, 0.005)  # |N(mean, std)| gap above a tower top
    lift_rule: str = "centre"  # centre (the authors' code) | bottom (the dropper's bottom clears the tower)
    min_projected_area: float = 0.025
    max_placement_tries: int = 10
    split: str = "seen"
    asset_dir: str | None = None
    builtin_assets: bool = True
    category_weights: tuple[tuple[str, float], ...] = DEFAULT_CATEGORY_WEIGHTS
    decompose: bool = True  # V-HACD colliders for concave meshes that ship none (a mug stays hollow)
    vhacd_resolution: int = 100_000
    background_dir: str | None = None  # folder of equirectangular environment maps (HDRIs)
    backgrounds: str = "procedural"  # without background_dir: procedural skies+grounds | studio walls | all
    prompt_style: str = "authors"  # authors ("A toy falls.") | color ("A red mug falls.")
    # --- physical properties
    density: float = 1.0  # kg/m³: Kubric's GSO manifests set mass = volume × 1.0; the paper says 1000
    friction: float = 0.5
    restitution: float = 0.5
    density_range: tuple[float, float] | None = None
    friction_range: tuple[float, float] | None = None
    restitution_range: tuple[float, float] | None = None
    floor_friction: float = 1.0
    floor_restitution: float = 0.0
    # --- camera
    camera_xy: tuple[float, float] = (-2.0, 0.0)
    camera_height_range: tuple[float, float] = (0.4, 0.6)
    focal_length_mm: float = 35.0
    sensor_width_mm: float = 32.0
    camera_step_std: float = 0.05
    max_camera_steps: int = 2000
    near: float = 0.05
    far: float = 100.0
    # --- image
    resolution: int = 256
    sun_energy_range: tuple[float, float] = (1.0, 6.0)

    def __post_init__(self) -> None:
        # normalise sequences (JSON/YAML give lists) so the frozen config hashes and compares by value
        for name in ("spawn_min", "spawn_max", "camera_xy", "object_size_range", "primitive_size_range",
                     "lift_margin", "camera_height_range", "sun_energy_range"):
            value = getattr(self, name)
            require(isinstance(value, (tuple, list)) and all(isinstance(v, (int, float)) for v in value),
                    OWNER, name, value, "give a list of numbers")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        for name in ("density_range", "friction_range", "restitution_range"):
            value = getattr(self, name)
            if value is not None:
                require(isinstance(value, (tuple, list)) and len(value) == 2, OWNER, name, value,
                        "give [low, high] or null")
                object.__setattr__(self, name, _pair(value))
        weights = tuple((str(k), float(v)) for k, v in (
            self.category_weights.items() if isinstance(self.category_weights, dict) else self.category_weights))
        object.__setattr__(self, "category_weights", weights)
        self._validate()

    def _validate(self) -> None:
        r = require
        r(isinstance(self.fps, int) and self.fps > 0, OWNER, "fps", self.fps, "use a positive integer (16)")
        r(isinstance(self.num_frames, int) and self.num_frames >= 1, OWNER, "num_frames", self.num_frames,
          "use at least 1 frame (the authors use 32)")
        r(isinstance(self.physics_hz, int) and self.physics_hz > 0 and self.physics_hz % self.fps == 0,
          OWNER, "physics_hz", self.physics_hz, f"use a positive multiple of fps={self.fps} (240)")
        r(math.isfinite(self.gravity) and self.gravity < 0, OWNER, "gravity", self.gravity,
          "use a negative acceleration along z in m/s² (-10)")
        r(isinstance(self.settle_frames, int) and self.settle_frames >= 0, OWNER, "settle_frames",
          self.settle_frames, "use 0 or more frames (200)")
        r(isinstance(self.first_frame, int) and self.first_frame >= 0, OWNER, "first_frame", self.first_frame,
          "use 0 (render the release) or more (1, as Kubric)")
        for name, choices in (("contact_model", CONTACT_MODELS), ("object_scale", OBJECT_SCALES),
                              ("lift_rule", LIFT_RULES), ("prompt_style", PROMPT_STYLES),
                              ("backgrounds", BACKGROUND_KINDS)):
            r(getattr(self, name) in choices, OWNER, name, getattr(self, name), f"use one of {choices}")
        r(isinstance(self.vhacd_resolution, int) and 10_000 <= self.vhacd_resolution <= 16_000_000, OWNER,
          "vhacd_resolution", self.vhacd_resolution, "use 10000 … 16000000 voxels (100000)")
        r(isinstance(self.min_droppers, int) and self.min_droppers >= 1, OWNER, "min_droppers",
          self.min_droppers, "use at least 1")
        r(isinstance(self.max_droppers, int) and self.max_droppers >= self.min_droppers, OWNER,
          "max_droppers", self.max_droppers, f"use at least min_droppers={self.min_droppers}")
        r(isinstance(self.min_tower, int) and self.min_tower >= 0, OWNER, "min_tower", self.min_tower,
          "use 0 or more")
        r(isinstance(self.max_tower, int) and self.max_tower >= self.min_tower, OWNER, "max_tower",
          self.max_tower, f"use at least min_tower={self.min_tower}")
        r(len(self.spawn_min) == 3, OWNER, "spawn_min", self.spawn_min, "give [x, y, z]")
        r(len(self.spawn_max) == 3, OWNER, "spawn_max", self.spawn_max, "give [x, y, z]")
        r(self.spawn_min[2] >= 0, OWNER, "spawn_min", self.spawn_min,
          "heights must not be negative: the floor is z=0 (use z >= 0, e.g. 0.5)")
        r(self.spawn_max[2] > 0, OWNER, "spawn_max", self.spawn_max, "heights must be positive")
        r(len(self.object_size_range) == 2 and 0 < self.object_size_range[0] <= self.object_size_range[1],
          OWNER, "object_size_range", self.object_size_range, "give 0 < low <= high in metres (0.15, 0.5)")
        r(len(self.primitive_size_range) == 2 and 0 < self.primitive_size_range[0] <= self.primitive_size_range[1],
          OWNER, "primitive_size_range", self.primitive_size_range, "give 0 < low <= high in metres (0.05, 0.25)")
        largest = max(self.object_size_range[1] if self.object_scale == "range" else 0.0,
                      self.primitive_size_range[1])
        for axis, lo, hi in zip("xyz", self.spawn_min, self.spawn_max):
            r(hi > lo, OWNER, "spawn_max", self.spawn_max, f"spawn_max.{axis} must exceed spawn_min.{axis}={lo}")
            r(hi - lo >= largest, OWNER, "spawn_max", self.spawn_max,
              f"the spawn region is {hi - lo:g} m along {axis}, which cannot fit an object of "
              f"{largest:g} m (object_size_range / primitive_size_range); enlarge the region or lower the sizes")
        r(len(self.lift_margin) == 2 and self.lift_margin[1] >= 0, OWNER, "lift_margin", self.lift_margin,
          "give [mean, std] with std >= 0")
        r(0 <= self.min_projected_area < 1, OWNER, "min_projected_area", self.min_projected_area,
          "use a fraction of the image in [0, 1) (0.025)")
        r(isinstance(self.max_placement_tries, int) and self.max_placement_tries >= 1, OWNER,
          "max_placement_tries", self.max_placement_tries, "use at least 1 (10)")
        r(self.split in SPLITS, OWNER, "split", self.split, f"use one of {SPLITS}")
        if self.asset_dir is not None:
            r(os.path.isdir(self.asset_dir), OWNER, "asset_dir", self.asset_dir,
              "point it at an existing folder of Google Scanned Objects, Kubric assets or .obj meshes")
        if self.background_dir is not None:
            r(os.path.isdir(self.background_dir), OWNER, "background_dir", self.background_dir,
              "point it at an existing folder of equirectangular maps (.hdr, .exr, .png, .jpg)")
        r(self.builtin_assets or self.asset_dir is not None, OWNER, "builtin_assets", self.builtin_assets,
          "keep the built-in assets or set asset_dir")
        for name, weight in self.category_weights:
            r(weight >= 0 and math.isfinite(weight), OWNER, "category_weights", dict(self.category_weights),
              f"weight of {name!r} must be >= 0")
        r(self.density > 0, OWNER, "density", self.density,
          "use a positive density in kg/m³ (1, Kubric's manifests; 1000, the paper)")
        r(self.friction >= 0, OWNER, "friction", self.friction, "use a friction coefficient >= 0 (0.5)")
        r(0 <= self.restitution <= 1, OWNER, "restitution", self.restitution, "use a value in [0, 1] (0.5)")
        for name, lo_bound, hi_bound in (("density_range", 1e-9, math.inf), ("friction_range", 0, math.inf),
                                         ("restitution_range", 0, 1)):
            value = getattr(self, name)
            if value is not None:
                r(lo_bound <= value[0] <= value[1] <= hi_bound, OWNER, name, value,
                  f"give low <= high within [{lo_bound:g}, {hi_bound:g}]")
        r(self.floor_friction >= 0, OWNER, "floor_friction", self.floor_friction, "use a value >= 0 (1)")
        r(0 <= self.floor_restitution <= 1, OWNER, "floor_restitution", self.floor_restitution,
          "use a value in [0, 1] (0)")
        r(len(self.camera_xy) == 2, OWNER, "camera_xy", self.camera_xy, "give [x, y]")
        r(self.camera_xy[0] < self.spawn_min[0], OWNER, "camera_xy", self.camera_xy,
          f"the camera looks along +x and must start behind the spawn region (x < {self.spawn_min[0]})")
        lo, hi = self.camera_height_range
        r(0 < lo <= hi, OWNER, "camera_height_range", self.camera_height_range,
          "heights must be positive with low <= high (0.4, 0.6)")
        r(self.focal_length_mm > 0, OWNER, "focal_length_mm", self.focal_length_mm, "use a positive length (35)")
        r(self.sensor_width_mm > 0, OWNER, "sensor_width_mm", self.sensor_width_mm, "use a positive width (32)")
        r(self.camera_step_std > 0, OWNER, "camera_step_std", self.camera_step_std, "use a positive std (0.05)")
        r(isinstance(self.max_camera_steps, int) and self.max_camera_steps >= 0, OWNER, "max_camera_steps",
          self.max_camera_steps, "use 0 or more")
        r(self.near > 0, OWNER, "near", self.near, "use a positive clipping distance (0.05)")
        r(self.far > self.near, OWNER, "far", self.far, f"use a distance beyond near={self.near}")
        r(isinstance(self.resolution, int) and self.resolution >= 16, OWNER, "resolution", self.resolution,
          "use a square size of at least 16 pixels (256)")
        lo, hi = self.sun_energy_range
        r(0 <= lo <= hi, OWNER, "sun_energy_range", self.sun_energy_range, "give 0 <= low <= high (1, 6)")

    # --- derived values
    @property
    def substeps(self) -> int:
        """Physics steps per video frame (15 at 240 Hz / 16 fps)."""
        return self.physics_hz // self.fps

    @property
    def fov_deg(self) -> float:
        """Horizontal (= vertical, frames are square) field of view: 2·atan(sensor / 2f) ≈ 49.1°."""
        return math.degrees(2 * math.atan(self.sensor_width_mm / (2 * self.focal_length_mm)))

    def replace(self, **changes: Any) -> DropSceneConfig:
        """A validated copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; :meth:`from_dict` reads it back."""
        out = dataclasses.asdict(self)
        out["category_weights"] = dict(self.category_weights)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> DropSceneConfig:
        """Build from a dict, naming unknown keys instead of failing with a TypeError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown {OWNER} field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**data)


__all__ = ["DropSceneConfig", "SPLITS", "DEFAULT_CATEGORY_WEIGHTS", "CONTACT_MODELS", "OBJECT_SCALES", "LIFT_RULES",
           "PROMPT_STYLES", "BACKGROUND_KINDS"]
