"""Scene sampling: one seeded pure function ``sample_scene(config, seed) -> Scene``.

It follows the authors' generator (``sim_data/run.py``): pick 1–5 droppers, each placed fully inside the spawn
region with a random orientation, re-drawn (up to ``max_placement_tries``) until its projected drop region
covers more than ``min_projected_area`` of the image; under each, a tower of 0–3 *distinct*, *unrotated*
objects stacked from the floor at its (x, y) with 1 mm gaps; draw each dropper's lift gap |N(0.005, 0.005)|
m (the lift itself happens in :func:`vidalign.simulation.physics.simulate`, above the *settled* tower, as the
authors do); then step the camera back by |N(0, 0.05)| m until every drop path (the dropper's box extended
down to the floor) projects inside the image. Objects keep their native size (``object_scale="native"``) and
their texture; untextured ones get a palette colour.

Deviations, all to keep scenes valid without a physics engine in the loop: droppers reserve an (x, y)
column (their footprint and their tower's) that other droppers and towers may not overlap, where the
authors only rejected 3-D overlaps at spawn time; the camera steps back until the drop path from the
*predicted* lifted pose is in view, predicted from the stacked (pre-settling) tower, which is never lower
than the settled one. Nothing here touches PyBullet or writes files; the only reads are the immutable mesh
files, through :func:`vidalign.simulation.meshes.mesh_info`'s per-process cache.

Object order (= mask channel order): tower objects first (grouped by dropper, bottom to top), then the
droppers in sampling order. The last object is the primary dropper, which PisaBench treats as "the"
dropping object.
"""


from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidalign.simulation.assets import COLORS, MATERIALS, Asset, Background, load_catalog
from vidalign.simulation.config import DropSceneConfig
from vidalign.simulation.geometry import (
    Camera,
    box_corners,
    random_quaternion,
    rotated_half_extents,
)
from vidalign.simulation.meshes import mesh_info
from vidalign.simulation.text import drop_prompt, noun_phrase

_STACK_GAP = 0.001  # the authors' 1 mm offset between stacked tower objects
_COLUMN_GAP = 0.02  # clearance between the (x, y) columns of different droppers
_POSITION_TRIES = 50


@dataclass(frozen=True)
class SceneObject:
    """One rigid body with everything physics and rendering need (SI units, quaternions xyzw)."""

    index: int
    role: str  # "dropper" | "tower"
    asset_id: str
    name: str
    category: str
    shape: str  # "mesh" | "sphere" | "box" | "cylinder"
    mesh: str | None
    collision_mesh: str | None
    mesh_ref: str | None
    scale: tuple[float, float, float]  # mesh vertex scale (meshes) or (1, 1, 1)
    half_extents: tuple[float, float, float]  # local box half extents after scaling
    mesh_offset: tuple[float, float, float]  # unscaled mesh AABB centre; the body frame sits there
    color: str | None  # palette name of an untextured object (None when ``texture`` is set)
    rgb: tuple[float, float, float]  # sRGB albedo; multiplies ``texture`` when set (white = texture as is)
    material: str
    density: float
    volume: float
    mass: float
    friction: float
    restitution: float
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float]
    tower_of: int | None = None  # index of the dropper this tower object stands under
    texture: str | None = None  # albedo image (absolute path) for the visual mesh's UVs
    lift_gap: float | None = None  # dropper over a tower: |N(0.005, 0.005)| m above the settled tower top
    asset_key: str = ""  # id within the asset's source (GSO/Kubric asset id)

    @property
    def phrase(self) -> str:
        return noun_phrase(self.name, self.color)

    @property
    def plain_phrase(self) -> str:
        return noun_phrase(self.name)

    @property
    def world_half_extents(self) -> np.ndarray:
        return rotated_half_extents(self.half_extents, self.orientation)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "role": self.role, "asset_id": self.asset_id, "name": self.name,
            "category": self.category, "shape": self.shape, "mesh": self.mesh_ref,
            "scale": list(self.scale), "half_extents": list(self.half_extents),
            "mesh_offset": list(self.mesh_offset), "color": self.color, "rgb": list(self.rgb),
            "material": self.material, "density": self.density, "volume": self.volume, "mass": self.mass,
            "friction": self.friction, "restitution": self.restitution,
            "initial_position": list(self.position), "initial_orientation_xyzw": list(self.orientation),
            "tower_of": self.tower_of, "asset_key": self.asset_key, "lift_gap": self.lift_gap,
            "texture": None if self.texture is None else portable_path(self.texture),
        }


def portable_path(path: str) -> str:
    """A path without this machine's prefix: ``pybullet_data/…``, the cache's ``vidalign_cache/…``, else the
    last three components."""
    p = path.replace("\\", "/")
    for marker, name in (("/pybullet_data/", "pybullet_data/"), ("/backgrounds/", "vidalign_cache/backgrounds/")):
        if marker in p:
            return name + p.split(marker, 1)[1]
    return "/".join(p.split("/")[-3:])


@dataclass(frozen=True)
class Lighting:
    """The authors' light rig parameters (Blender) and their TinyRenderer equivalent."""

    sun_energy: float
    sun_euler_deg: tuple[float, float]
    key_angles_deg: tuple[float, float]  # (horizontal, vertical)
    fill_angles_deg: tuple[float, float]
    light_direction: tuple[float, float, float]  # unit vector towards the sun (TinyRenderer)

    def to_dict(self) -> dict[str, Any]:
        return {"sun_energy": self.sun_energy, "sun_euler_deg": list(self.sun_euler_deg),
                "key_light_angles_deg": list(self.key_angles_deg),
                "fill_light_angles_deg": list(self.fill_angles_deg),
                "light_direction": list(self.light_direction)}


@dataclass(frozen=True)
class Scene:
    """A fully specified drop scene: a pure function of ``(config, seed)``."""

    seed: int
    config: DropSceneConfig
    camera: Camera
    background: Background
    lighting: Lighting
    objects: tuple[SceneObject, ...]
    prompt: str
    camera_steps: int = 0

    @property
    def droppers(self) -> tuple[SceneObject, ...]:
        return tuple(o for o in self.objects if o.role == "dropper")

    @property
    def primary_index(self) -> int:
        """Mask channel of "the" dropping object (the last one, as PisaBench expects)."""
        return len(self.objects) - 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed, "config": self.config.to_dict(), "camera": self.camera.to_dict(),
            "camera_steps_back": self.camera_steps,
            "background": {"id": self.background.id, "split": self.background.split,
                           "source": self.background.source, "ref": self.background.ref,
                           "floor_rgb": list(self.background.floor_rgb),
                           "wall_rgb": list(self.background.wall_rgb), "wall": self.background.has_wall,
                           "floor_texture": None if self.background.floor_texture is None
                           else portable_path(self.background.floor_texture),
                           "floor_tile_m": self.background.floor_tile_m,
                           "env_map": None if self.background.env_map is None
                           else portable_path(self.background.env_map)},
            "lighting": self.lighting.to_dict(), "prompt": self.prompt,
            "objects": [o.to_dict() for o in self.objects], "primary_object": self.primary_index,
            "mask_order": "tower objects (grouped by dropper, bottom to top), then droppers in sampling "
                          "order; the last channel is the primary dropping object",
        }


# --------------------------------------------------------------------------------------------------
# sampling helpers (all draws go through ``rng`` in a fixed order)
# --------------------------------------------------------------------------------------------------


@dataclass
class _Spec:
    asset: Asset
    scale: np.ndarray
    half: np.ndarray
    offset: np.ndarray
    volume: float
    orientation: tuple[float, float, float, float]
    material: str
    density: float
    friction: float
    restitution: float

    @property
    def aabb_half(self) -> np.ndarray:
        return rotated_half_extents(self.half, self.orientation)

    def shrink(self, factor: float) -> None:
        self.scale, self.half = self.scale * factor, self.half * factor
        self.volume *= factor ** 3


def _uniform(rng: np.random.Generator, value: float, value_range: tuple[float, float] | None) -> float:
    return float(value if value_range is None else rng.uniform(*value_range))


def _pick_asset(rng: np.random.Generator, pools: dict[str, tuple[Asset, ...]],
                weights: dict[str, float], exclude: set[str] = frozenset()) -> Asset | None:
    pools = {c: tuple(a for a in p if a.id not in exclude) for c, p in pools.items()}
    pools = {c: p for c, p in pools.items() if p}
    if not pools:
        return None
    cats = [c for c in sorted(pools) if weights.get(c, 0.0) > 0] or sorted(pools)
    w = np.array([weights.get(c, 1.0) for c in cats], dtype=np.float64)
    w = w / w.sum() if w.sum() > 0 else np.full(len(cats), 1 / len(cats))
    cat = cats[int(rng.choice(len(cats), p=w))]
    pool = pools[cat]
    return pool[int(rng.integers(len(pool)))]


def _sample_spec(rng: np.random.Generator, config: DropSceneConfig, pools: dict[str, tuple[Asset, ...]],
                 tower: bool, exclude: set[str] = frozenset()) -> _Spec | None:
    """An object kind, its size and physical properties; tower objects are unrotated, droppers tumbled."""
    asset = _pick_asset(rng, pools, dict(config.category_weights), exclude)
    if asset is None:
        return None
    size_range = config.object_size_range if config.object_scale == "range" else config.primitive_size_range
    size = float(rng.uniform(*size_range))
    offset = np.zeros(3)
    scale = np.ones(3)
    if asset.shape == "mesh":
        info = mesh_info(asset.mesh, asset.collision_mesh)
        scale = np.asarray(asset.native_scale, dtype=np.float64)
        if config.object_scale == "range":
            scale = scale * (size / float((info.extent * scale).max()))
        half = info.extent * scale / 2
        offset = info.centre
        native = np.asarray(asset.native_scale, dtype=np.float64)
        native_volume = asset.volume if asset.volume is not None else info.volume * float(np.prod(native))
        volume = native_volume * float(np.prod(scale / native))  # the source's volume (Kubric's) when it has one
    elif asset.shape == "sphere":
        half = np.full(3, size / 2)
        volume = 4 / 3 * math.pi * (size / 2) ** 3
    elif asset.shape == "box":
        dims = rng.permutation(np.array([size, size * rng.uniform(0.4, 1.0), size * rng.uniform(0.4, 1.0)]))
        half = dims / 2
        volume = float(np.prod(dims))
    else:  # cylinder: tall or flat, the longest extent is ``size``
        other = size * rng.uniform(0.4, 1.0)
        diameter, height = (other, size) if rng.random() < 0.5 else (size, other)
        half = np.array([diameter / 2, diameter / 2, height / 2])
        volume = math.pi * (diameter / 2) ** 2 * height
    orientation = (0.0, 0.0, 0.0, 1.0) if tower else random_quaternion(rng)
    material = sorted(MATERIALS)[int(rng.integers(len(MATERIALS)))]
    density = _uniform(rng, config.density, config.density_range)
    friction = _uniform(rng, config.friction, config.friction_range)
    restitution = _uniform(rng, config.restitution, config.restitution_range)
    return _Spec(asset, scale, half, offset, volume, orientation, material, density, friction, restitution)


def _overlaps(rect: tuple[float, float, float, float], others: list[tuple[float, float, float, float]]) -> bool:
    x0, x1, y0, y1 = rect
    return any(x0 < b1 + _COLUMN_GAP and b0 < x1 + _COLUMN_GAP and y0 < d1 + _COLUMN_GAP and d0 < y1 + _COLUMN_GAP
               for b0, b1, d0, d1 in others)


def _rect(xy: np.ndarray, half: np.ndarray) -> tuple[float, float, float, float]:
    return (float(xy[0] - half[0]), float(xy[0] + half[0]), float(xy[1] - half[1]), float(xy[1] + half[1]))


def _place(rng: np.random.Generator, spec: _Spec, config: DropSceneConfig,
           columns: list[tuple[float, float, float, float]]) -> np.ndarray | None:
    lo, hi = np.asarray(config.spawn_min), np.asarray(config.spawn_max)
    h = spec.aabb_half
    limit = (hi - lo) / 2
    if np.any(h > limit):  # a tumbled long object can exceed the region: shrink it to fit, as required
        spec.shrink(float(np.min(limit / h)) * 0.999)
        h = spec.aabb_half
    for _ in range(_POSITION_TRIES):
        pos = rng.uniform(lo + h, hi - h)
        if not _overlaps(_rect(pos[:2], h), columns):
            return pos
    return None


def _drop_area(spec: _Spec, pos: np.ndarray, camera: Camera) -> float:
    """The authors' acceptance measure: projected drop region (near face, top to floor) / image area."""
    h = spec.aabb_half
    pts = np.array([[pos[0] - h[0], pos[1] + h[1], pos[2] + h[2]], [pos[0] - h[0], pos[1] - h[1], 0.0]])
    uv, z = camera.project(pts)
    if np.any(z <= camera.near):
        return 0.0
    return float(abs((uv[0, 0] - uv[1, 0]) * (uv[0, 1] - uv[1, 1]))) / camera.resolution ** 2


def _drop_path_visible(camera: Camera, pos: np.ndarray, half: np.ndarray) -> bool:
    top = pos[2] + half[2]
    centre = np.array([pos[0], pos[1], top / 2])
    return camera.sees(box_corners(centre, np.array([half[0], half[1], top / 2])))


def _sample_lighting(rng: np.random.Generator, config: DropSceneConfig) -> Lighting:
    orientation = -1.0 if rng.integers(2) == 0 else 1.0
    key = (orientation * rng.uniform(15, 45), -rng.uniform(15, 45))
    fill = (-orientation * rng.uniform(15, 60), -rng.uniform(0, 30))
    sun = (rng.uniform(0, 45), rng.uniform(0, 45))
    energy = rng.uniform(*config.sun_energy_range)
    # Blender's sun shines along its local -z; rotate +z by euler (x, y, 0) to get the direction to the sun
    ax, ay = math.radians(sun[0]), math.radians(sun[1])
    to_sun = (math.sin(ay) * math.cos(ax), -math.sin(ax), math.cos(ax) * math.cos(ay))
    return Lighting(float(energy), (float(sun[0]), float(sun[1])), (float(key[0]), float(key[1])),
                    (float(fill[0]), float(fill[1])), tuple(float(v) for v in to_sun))  # type: ignore[arg-type]


def _to_object(spec: _Spec, index: int, role: str, color: str, pos: np.ndarray,
               tower_of: int | None, lift_gap: float | None = None) -> SceneObject:
    a = spec.asset
    textured = a.texture is not None
    return SceneObject(
        index=index, role=role, asset_id=a.id, name=a.name, category=a.category, shape=a.shape,
        mesh=a.mesh, collision_mesh=a.collision_mesh, mesh_ref=a.ref,
        scale=tuple(float(v) for v in (spec.scale if a.shape == "mesh" else np.ones(3))),
        half_extents=tuple(float(v) for v in spec.half), mesh_offset=tuple(float(v) for v in spec.offset),
        color=None if textured else color, rgb=(1.0, 1.0, 1.0) if textured else COLORS[color],
        material=spec.material, density=spec.density, volume=spec.volume,
        mass=spec.density * spec.volume, friction=spec.friction, restitution=spec.restitution,
        position=tuple(float(v) for v in pos), orientation=tuple(float(v) for v in spec.orientation),
        tower_of=tower_of, texture=a.texture, lift_gap=lift_gap, asset_key=a.key,
    )  # type: ignore[arg-type]


def predicted_release_z(z: float, half_z_local: float, half_z_world: float, tower_top: float, gap: float,
                        rule: str) -> float:
    """The dropper's centre height after the authors' lift: if its (unrotated) bottom is below the tower top,
    its centre moves to the top + gap (``centre``), or its rotated bottom does (``bottom``)."""
    if z - half_z_local >= tower_top:
        return z
    return tower_top + gap + (half_z_world if rule == "bottom" else 0.0)


def sample_scene(config: DropSceneConfig, seed: int) -> Scene:
    """The scene for ``(config, seed)``: same inputs, same scene, on any machine."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    catalog = load_catalog(config.asset_dir, config.builtin_assets, config.background_dir, config.backgrounds)
    pool = catalog.pool(config.split)
    pools: dict[str, tuple[Asset, ...]] = {}
    for a in pool:
        pools.setdefault(a.category, ())
        pools[a.category] += (a,)
    backgrounds = catalog.background_pool(config.split)
    background = backgrounds[int(rng.integers(len(backgrounds)))]
    camera = Camera((config.camera_xy[0], config.camera_xy[1], float(rng.uniform(*config.camera_height_range))),
                    config.focal_length_mm, config.sensor_width_mm, config.resolution, config.near, config.far)
    lighting = _sample_lighting(rng, config)
    n_droppers = int(rng.integers(config.min_droppers, config.max_droppers + 1))
    palette = [str(c) for c in rng.permutation(sorted(COLORS))]

    columns: list[tuple[float, float, float, float]] = []
    placed: list[tuple[_Spec, np.ndarray, list[tuple[_Spec, np.ndarray]], float | None]] = []
    for _ in range(n_droppers):
        chosen = None
        for _attempt in range(config.max_placement_tries):
            spec = _sample_spec(rng, config, pools, tower=False)
            pos = _place(rng, spec, config, columns)
            if pos is None:
                continue
            chosen = (spec, pos)
            if _drop_area(spec, pos, camera) > config.min_projected_area:
                break
        if chosen is None:  # the region is full: keep the droppers placed so far
            break
        spec, pos = chosen
        column = _rect(pos[:2], spec.aabb_half)
        tower: list[tuple[_Spec, np.ndarray]] = []
        used: set[str] = set()
        z = 0.0
        for _level in range(int(rng.integers(config.min_tower, config.max_tower + 1))):
            t_spec = _sample_spec(rng, config, pools, tower=True, exclude=used)  # distinct, as rng.choice(replace=False)
            if t_spec is None:
                break
            th = t_spec.aabb_half
            rect = _rect(pos[:2], th)
            if _overlaps(rect, columns):
                break
            used.add(t_spec.asset.id)
            t_pos = np.array([pos[0], pos[1], z + _STACK_GAP + th[2]])
            z = float(t_pos[2] + th[2])
            tower.append((t_spec, t_pos))
            column = (min(column[0], rect[0]), max(column[1], rect[1]), min(column[2], rect[2]),
                      max(column[3], rect[3]))
        gap = abs(float(rng.normal(*config.lift_margin))) if tower else None
        columns.append(column)
        placed.append((spec, pos, tower, gap))

    def view_pos(spec: _Spec, pos: np.ndarray, tower: list, gap: float | None) -> np.ndarray:
        if not tower:
            return pos
        top = max(p[2] + t.aabb_half[2] for t, p in tower)
        z = predicted_release_z(pos[2], spec.half[2], spec.aabb_half[2], top, gap, config.lift_rule)
        return np.array([pos[0], pos[1], max(z, pos[2])])

    steps = 0
    while steps < config.max_camera_steps and not all(
            _drop_path_visible(camera, view_pos(spec, pos, tower, gap), spec.aabb_half)
            for spec, pos, tower, gap in placed):
        camera = camera.moved_back(abs(float(rng.normal(0.0, config.camera_step_std))))
        steps += 1

    objects: list[SceneObject] = []
    n_tower = sum(len(t) for _, _, t, _ in placed)
    colors = iter(palette * (1 + len(placed) // len(palette)))
    dropper_colors = [next(colors) for _ in placed]
    for d, (_spec, _pos, tower, _gap) in enumerate(placed):
        for t_spec, t_pos in tower:
            color = sorted(COLORS)[int(rng.integers(len(COLORS)))]
            objects.append(_to_object(t_spec, len(objects), "tower", color, t_pos, n_tower + d))
    for d, (spec, pos, _tower, gap) in enumerate(placed):
        objects.append(_to_object(spec, len(objects), "dropper", dropper_colors[d], pos, None, gap))
    droppers = [o for o in objects if o.role == "dropper"]
    phrases = [o.phrase if config.prompt_style == "color" else o.plain_phrase for o in droppers]
    return Scene(int(seed), config, camera, background, lighting, tuple(objects), drop_prompt(phrases), steps)


__all__ = ["Scene", "SceneObject", "Lighting", "sample_scene", "predicted_release_z"]
