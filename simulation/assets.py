"""Assets for drop scenes: object kinds (meshes with textures, primitives), colours, materials, and the catalogue.

Built in (no network): meshes that ship with ``pybullet_data`` at their real sizes (rubber duck, mug,
teddy bear, soccer ball, jenga block, lego brick, …; 1000 procedural objects under ``random_urdfs/``), with
their textures, and analytic primitives. Asset folders in the layouts people have plug in through
``asset_dir`` (see :mod:`vidalign.simulation.asset_folders`): Google Scanned Objects as published, Kubric's
asset format with its manifest, or any folder of ``.obj`` meshes. Backgrounds come from
:mod:`vidalign.simulation.backgrounds`. Objects without a texture are coloured from a named palette.

Seen/unseen split, as the authors' Kubric ``AssetSource.get_test_split(fraction=0.1)``: within each source
(one asset folder, or one built-in group), ``np.random.default_rng(42).choice(sorted ids, round(0.1 n),
replace=False)`` are held out ("unseen"); the same rule splits backgrounds. The split is drawn over every asset
a source publishes; meshes that cannot be used (NaN or infinite vertex coordinates, such as
``random_urdfs/168/168.obj`` in ``pybullet_data``) are left out of the catalogue afterwards, so every other
asset keeps the split it has in the authors' rule (``Catalog.excluded`` lists them).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from dataclasses import dataclass

import numpy as np

from vidalign.errors import ConfigError, InputError
from vidalign.simulation.meshes import (  # noqa: F401  (re-exported: the mesh helpers used to live here)
    MAX_HULL_POINTS,
    MeshInfo,
    farthest_points,
    mesh_info,
    nonfinite_meshes,
    obj_texture,
    read_obj_vertices,
)

CATEGORIES = ("object", "procedural", "primitive", "user")
SHAPES = ("mesh", "sphere", "box", "cylinder")

# name -> sRGB display value in [0, 1] (every renderer shows it as declared); names are what prompts say
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.80, 0.10, 0.10), "orange": (0.95, 0.50, 0.10), "yellow": (0.95, 0.85, 0.15),
    "green": (0.15, 0.65, 0.20), "blue": (0.10, 0.30, 0.85), "purple": (0.50, 0.20, 0.70),
    "pink": (0.95, 0.50, 0.70), "white": (0.92, 0.92, 0.92), "black": (0.08, 0.08, 0.08),
    "gray": (0.50, 0.50, 0.50), "brown": (0.45, 0.28, 0.12), "cyan": (0.10, 0.75, 0.80),
}

# name -> shading parameters (Principled BSDF for Kubric; specular for TinyRenderer)
MATERIALS: dict[str, dict[str, float]] = {
    "rubber": {"roughness": 0.9, "metallic": 0.0, "specular": 0.1},
    "plastic": {"roughness": 0.4, "metallic": 0.0, "specular": 0.5},
    "metal": {"roughness": 0.2, "metallic": 1.0, "specular": 0.9},
}

# pybullet_data meshes: (id, prompt name, visual mesh, collision mesh or None, native vertex scale to metres).
# The scale gives each its real size (a 22 cm soccer ball, a 10 cm rubber duck, a 7.5 cm jenga block), from
# the pybullet_data URDF where it has a sensible one.
_BUILTIN_MESHES: tuple[tuple[str, str, str, str | None, tuple[float, float, float]], ...] = (
    ("duck", "rubber duck", "duck.obj", "duck_vhacd.obj", (0.06,) * 3),
    ("teddy", "teddy bear", "teddy2_VHACD_CHs.obj", None, (0.25,) * 3),
    ("mug", "mug", "objects/mug.obj", "objects/mug_col.obj", (1.0,) * 3),
    ("soccer_ball", "soccer ball", "soccerball.obj", None, (0.22,) * 3),
    ("jenga", "jenga block", "jenga/jenga.obj", None, (0.075, 0.025, 0.015)),
    ("lego", "lego brick", "lego/lego.obj", "lego/lego_vhacd.obj", (0.1,) * 3),
    ("bunny", "toy bunny", "bunny.obj", None, (0.08,) * 3),
    ("torus", "ring", "torus/torus_textured.obj", None, (0.08,) * 3),
    ("domino", "domino", "domino/domino.obj", None, (1.0,) * 3),
    ("toy_cylinder", "peg", "toys/cylinder.obj", None, (1.0,) * 3),
    ("prism", "triangular prism", "toys/prism.obj", None, (1.0,) * 3),
    ("toy_cube", "toy cube", "toys/cube.obj", None, (1.0,) * 3),
    ("shape_sorter", "shape sorter", "toys/shape_sorter.obj", None, (0.5,) * 3),
    ("concave_box", "open box", "toys/concave_box.obj", None, (0.15,) * 3),
)
_PRIMITIVES = (("sphere", "ball", "sphere"), ("box", "box", "box"), ("cylinder", "cylinder", "cylinder"))
_NUM_PROCEDURAL = 1000
_PROCEDURAL_SCALE = (0.015,) * 3  # random_urdfs/*.urdf mesh scale
UNSEEN_FRACTION = 0.1


def holdout(ids: list[str], fraction: float = UNSEEN_FRACTION) -> set[str]:
    """The held-out ("unseen") ids of one asset source, as Kubric's ``AssetSource.get_test_split`` draws them:
    ``np.random.default_rng(42).choice(sorted(ids), int(round(n · fraction)), replace=False)``."""
    ids = sorted(ids)
    size = int(round(len(ids) * fraction))
    if size == 0:
        return set()
    return {str(i) for i in np.random.default_rng(42).choice(ids, size=size, replace=False)}


@dataclass(frozen=True)
class Asset:
    """One object kind: a mesh (with its texture and collider) or an analytic primitive."""

    id: str
    name: str
    category: str
    shape: str
    mesh: str | None = None  # visual mesh (absolute path)
    collision_mesh: str | None = None  # convex parts for the collider (e.g. Kubric's collision_geometry.obj)
    ref: str | None = None  # portable mesh reference written to metadata
    native_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)  # mesh units → metres at the object's real size
    split: str = "seen"
    texture: str | None = None  # albedo image (absolute path) mapped with the visual mesh's UVs
    volume: float | None = None  # native volume in m³ when the source states it (Kubric's data.json)
    source: str = "builtin/object"  # the group the seen/unseen split is drawn in (one asset folder = one source)
    key: str = ""  # id within its source (Kubric asset id / GSO folder name): what the split draws
    description: str | None = None


@dataclass(frozen=True)
class Background:
    """Where the objects fall: an environment map seen behind them and lighting them, over a floor; or a
    studio floor with a coloured backdrop wall.

    With ``env_map`` set there is no wall: the map (equirectangular, z up) is the backdrop and the light;
    ``wall_rgb`` is then its mean horizon colour (for renderers that cannot show maps). The floor shows
    ``floor_texture`` when set (tiled every ``floor_tile_m`` metres), else, with an env map, the map's lower
    hemisphere projected onto the ground as Kubric's dome does, else ``floor_rgb``.
    """

    id: str
    floor_rgb: tuple[float, float, float]
    wall_rgb: tuple[float, float, float]
    floor_texture: str | None = None  # absolute path
    split: str = "seen"
    # equirectangular environment image (absolute path; .hdr/.exr/.png/.jpg, z up): light and visible backdrop
    env_map: str | None = None
    floor_tile_m: float = 1.0  # floor texture repeat, metres
    source: str = "builtin"
    ref: str | None = None  # portable reference written to metadata

    @property
    def has_wall(self) -> bool:
        return self.env_map is None


def pybullet_data_dir() -> str:
    try:
        import pybullet_data
    except ImportError as exc:
        from vidalign.errors import missing_extra

        raise missing_extra("sim", "pybullet") from exc

    return pybullet_data.getDataPath()


def _builtin_assets() -> list[Asset]:
    root = pybullet_data_dir()
    out = []
    for key, name, visual, collision, scale in _BUILTIN_MESHES:
        path = os.path.join(root, visual)
        if not os.path.exists(path):  # tolerate a trimmed pybullet_data
            continue
        coll = os.path.join(root, collision) if collision else None
        out.append(Asset(f"pybullet_data/{key}", name, "object", "mesh", path, coll, f"pybullet_data/{visual}",
                         scale, texture=obj_texture(path), source="builtin/object", key=key))
    for i in range(_NUM_PROCEDURAL):
        rel = f"random_urdfs/{i:03d}/{i:03d}.obj"
        path = os.path.join(root, rel)
        if os.path.exists(path):
            out.append(Asset(f"pybullet_data/random_{i:03d}", "toy piece", "procedural", "mesh", path, None,
                             f"pybullet_data/{rel}", _PROCEDURAL_SCALE, source="builtin/procedural",
                             key=f"{i:03d}"))
    for key, name, shape in _PRIMITIVES:
        out.append(Asset(f"primitive/{key}", name, "primitive", shape, source="builtin/primitive", key=key))
    return out


def humanize(text: str) -> str:
    """``"Squirrel_Toy_2"`` / ``"squirrelToy"`` → ``"squirrel toy"`` (a noun phrase for prompts)."""
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    text = re.sub(r"[_\-.]+", " ", text)
    text = re.sub(r"\d+", " ", text)
    return " ".join(text.lower().split()) or "object"


@dataclass(frozen=True)
class Catalog:
    """All assets and backgrounds available to a config, with the seen/unseen pools."""

    assets: tuple[Asset, ...]
    backgrounds: tuple[Background, ...]
    excluded: tuple[str, ...] = ()  # asset ids left out after the split (meshes with non-finite vertices)

    def pool(self, split: str) -> tuple[Asset, ...]:
        items = tuple(a for a in self.assets if a.split == split)
        if not items:
            raise ConfigError(f"DropSceneConfig.split={split!r} is invalid: none of the {len(self.assets)} "
                              "assets falls in it; add assets (asset_dir) or use the other split")
        return items

    def background_pool(self, split: str) -> tuple[Background, ...]:
        items = tuple(b for b in self.backgrounds if b.split == split)
        return items or self.backgrounds  # a one-map folder has no held-out map: use it for both splits

    def by_id(self, asset_id: str) -> Asset:
        for a in self.assets:
            if a.id == asset_id:
                return a
        raise InputError("catalog", "asset_id", f"unknown asset {asset_id!r}", "check asset_dir")


def split_by_source(items: list, key=lambda x: x.key or x.id) -> list:
    """``items`` with ``split`` set by :func:`holdout` within each ``source``."""
    unseen: set[tuple[str, str]] = set()
    for source in sorted({i.source for i in items}):
        group = [key(i) for i in items if i.source == source]
        unseen |= {(source, k) for k in holdout(group)}
    return [dataclasses.replace(i, split="unseen" if (i.source, key(i)) in unseen else "seen") for i in items]


@functools.lru_cache(maxsize=8)
def load_catalog(asset_dir: str | None = None, builtin: bool = True, background_dir: str | None = None,
                 backgrounds: str = "procedural") -> Catalog:
    """The catalogue for a config (cached per process; folder listings and small metadata files are read here,
    procedural backgrounds are generated once into the cache)."""
    from vidalign.simulation.asset_folders import folder_assets
    from vidalign.simulation.backgrounds import load_backgrounds

    assets: list[Asset] = _builtin_assets() if builtin else []
    if asset_dir is not None:
        assets += folder_assets(asset_dir)
    assets = split_by_source(assets)
    unusable: set[str] = set()
    for source in sorted({a.source for a in assets}):
        unusable |= nonfinite_meshes(tuple(p for a in assets if a.source == source
                                           for p in (a.mesh, a.collision_mesh) if p))
    excluded = tuple(a.id for a in assets if {a.mesh, a.collision_mesh} & unusable)
    return Catalog(tuple(a for a in assets if a.id not in excluded),
                   tuple(split_by_source(load_backgrounds(background_dir, backgrounds), key=lambda b: b.id)), excluded)


__all__ = ["Asset", "Background", "Catalog", "COLORS", "MATERIALS", "CATEGORIES", "SHAPES", "holdout",
           "split_by_source", "load_catalog", "humanize", "pybullet_data_dir", "mesh_info", "MeshInfo",
           "read_obj_vertices", "obj_texture", "farthest_points", "MAX_HULL_POINTS", "UNSEEN_FRACTION"]
