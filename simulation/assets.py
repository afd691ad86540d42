"""Offline assets for drop scenes: meshes, primitives, colours, materials and backgrounds.

The authors drew Google Scanned Objects and HDRI backgrounds from a cloud bucket; here everything
ships with ``pybullet_data`` (named meshes such as the duck, mug, teddy bear, soccer ball, jenga block
and lego brick; 1000 procedural objects under ``random_urdfs/``) plus analytic primitives, so a build
runs with no network. A user folder of ``.obj`` meshes (e.g. Google Scanned Objects downloaded
elsewhere) plugs in as the ``user`` category. Objects are recoloured from a named palette so that the
prompt ("A red mug falls.") matches the pixels.

Seen/unseen split (deterministic 90/10, as the authors' ``get_test_split(fraction=0.1)``): within each
category, ids are ranked by ``sha256(id)`` and the first ``max(1, round(0.1 n))`` (for n >= 2) are
*unseen*, so every category with two or more members contributes to both splits.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidalign.errors import ConfigError, InputError

CATEGORIES = ("object", "procedural", "primitive", "user")
SHAPES = ("mesh", "sphere", "box", "cylinder")

# name -> linear RGB in [0, 1]; names are what prompts say
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

# pybullet_data meshes with prompt names: (id, name, visual mesh, collision mesh or None)
_BUILTIN_MESHES: tuple[tuple[str, str, str, str | None], ...] = (
    ("duck", "rubber duck", "duck.obj", "duck_vhacd.obj"),
    ("teddy", "teddy bear", "teddy2_VHACD_CHs.obj", None),
    ("mug", "mug", "objects/mug.obj", "objects/mug_col.obj"),
    ("soccer_ball", "soccer ball", "soccerball.obj", None),
    ("jenga", "jenga block", "jenga/jenga.obj", None),
    ("lego", "lego brick", "lego/lego.obj", "lego/lego_vhacd.obj"),
    ("bunny", "toy bunny", "bunny.obj", None),
    ("torus", "ring", "torus/torus_textured.obj", None),
    ("domino", "domino", "domino/domino.obj", None),
    ("toy_cylinder", "peg", "toys/cylinder.obj", None),
    ("prism", "triangular prism", "toys/prism.obj", None),
    ("toy_cube", "toy cube", "toys/cube.obj", None),
    ("shape_sorter", "shape sorter", "toys/shape_sorter.obj", None),
    ("concave_box", "open box", "toys/concave_box.obj", None),
    ("tray", "tray", "tray/tray_textured2.obj", None),
)
_PRIMITIVES = (("sphere", "ball", "sphere"), ("box", "box", "box"), ("cylinder", "cylinder", "cylinder"))
_NUM_PROCEDURAL = 1000

# floors and walls for procedural backgrounds: (name, rgb, texture under pybullet_data or None)
_FLOORS = (
    ("gray", (0.55, 0.55, 0.55), None), ("beige", (0.80, 0.72, 0.58), None),
    ("white", (0.88, 0.88, 0.86), None), ("green", (0.35, 0.50, 0.32), None),
    ("slate", (0.30, 0.33, 0.38), None), ("checker", (0.60, 0.50, 0.42), "checker_grid.jpg"),
    ("blue checker", (0.45, 0.55, 0.75), "checker_blue.png"), ("wood", (0.55, 0.40, 0.25), "table/table.png"),
    ("light wood", (0.78, 0.62, 0.42), "jenga/jenga.png"),
)
_WALLS = (
    ("white", (0.90, 0.90, 0.90)), ("light gray", (0.72, 0.72, 0.74)), ("sky blue", (0.60, 0.72, 0.90)),
    ("beige", (0.85, 0.80, 0.68)), ("dark gray", (0.32, 0.32, 0.34)), ("pale green", (0.70, 0.82, 0.68)),
)


# per-mesh anisotropic base scale, from the pybullet_data URDFs (the jenga OBJ is a unit cube)
_ASPECT = {"jenga": (0.15, 0.05, 0.03)}
UNSEEN_FRACTION = 0.1


def _rank_key(item_id: str) -> str:
    return hashlib.sha256(item_id.encode("utf-8")).hexdigest()


def holdout(ids: list[str], fraction: float = UNSEEN_FRACTION) -> set[str]:
    """The unseen ids of one group: the ``max(1, round(fraction n))`` lowest by sha256 (none if n < 2)."""
    if len(ids) < 2:
        return set()
    k = max(1, round(fraction * len(ids)))
    return set(sorted(ids, key=_rank_key)[:k])


@dataclass(frozen=True)
class Asset:
    """One object kind: a mesh file pair or an analytic primitive."""

    id: str
    name: str
    category: str
    shape: str
    mesh: str | None = None  # visual mesh (absolute path)
    collision_mesh: str | None = None  # defaults to ``mesh``
    ref: str | None = None  # portable mesh reference written to metadata
    aspect: tuple[float, float, float] = (1.0, 1.0, 1.0)  # base scale applied before size normalisation
    split: str = "seen"
    texture: str | None = None  # albedo image (absolute path) mapped with the visual mesh's UVs


@dataclass(frozen=True)
class Background:
    """A floor and a backdrop wall (the offline stand-in for the authors' HDRI domes)."""

    id: str
    floor_rgb: tuple[float, float, float]
    wall_rgb: tuple[float, float, float]
    floor_texture: str | None = None  # absolute path
    split: str = "seen"
    # equirectangular environment image (absolute path; .hdr/.exr/.png/.jpg, z up): light and visible backdrop
    env_map: str | None = None


MAX_HULL_POINTS = 128  # collider size cap: a 3600-vertex hull steps ~15x slower than a 128-vertex one


@dataclass(frozen=True)
class MeshInfo:
    """Unscaled geometry of a mesh: AABB of the visual mesh, and the collider.

    The collider is the convex hull of the collision mesh, reduced to at most :data:`MAX_HULL_POINTS`
    vertices by farthest-point sampling (deterministic); the mass uses its volume.
    """

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    hull_volume: float
    hull_points: tuple[tuple[float, float, float], ...] = ()

    @property
    def centre(self) -> np.ndarray:
        return (np.asarray(self.lo) + np.asarray(self.hi)) / 2

    @property
    def extent(self) -> np.ndarray:
        return np.asarray(self.hi) - np.asarray(self.lo)


def farthest_points(points: np.ndarray, k: int) -> np.ndarray:
    """``k`` well-spread points (farthest-point sampling from the first point; deterministic)."""
    if len(points) <= k:
        return points
    chosen = [0]
    dist = np.linalg.norm(points - points[0], axis=1)
    for _ in range(k - 1):
        i = int(dist.argmax())
        chosen.append(i)
        dist = np.minimum(dist, np.linalg.norm(points - points[i], axis=1))
    return points[chosen]


def read_obj_vertices(path: str) -> np.ndarray:
    """Vertex positions ``[V, 3]`` of a Wavefront OBJ (only ``v`` lines are read)."""
    rows = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("v "):
                    parts = line.split()
                    rows.append((float(parts[1]), float(parts[2]), float(parts[3])))
    except OSError as exc:
        raise InputError(path, None, f"cannot read mesh ({exc})", "check the asset folder") from exc
    except (ValueError, IndexError) as exc:
        raise InputError(path, None, f"malformed vertex line ({exc})", "re-export the mesh as OBJ") from exc
    if len(rows) < 4:
        raise InputError(path, None, f"mesh has {len(rows)} vertices", "use a closed mesh with >= 4 vertices")
    return np.asarray(rows, dtype=np.float64)


@functools.lru_cache(maxsize=4096)
def mesh_info(mesh: str, collision_mesh: str | None = None) -> MeshInfo:
    """Geometry of a mesh pair, cached per process (the files are immutable inputs)."""
    from scipy.spatial import ConvexHull, QhullError

    verts = read_obj_vertices(mesh)
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    coll = verts if collision_mesh in (None, mesh) else read_obj_vertices(collision_mesh)
    if not np.all(hi - lo > 0):
        raise InputError(mesh, None, "mesh is flat along an axis", "use a solid mesh")
    try:
        hull = coll[ConvexHull(coll).vertices]
        points = farthest_points(hull, MAX_HULL_POINTS)
        volume = float(ConvexHull(points).volume)
    except QhullError as exc:
        raise InputError(collision_mesh or mesh, None, f"no convex hull ({str(exc).splitlines()[0]})",
                         "use a solid (non-flat) mesh") from exc
    return MeshInfo(tuple(lo.tolist()), tuple(hi.tolist()), volume, tuple(map(tuple, points.tolist())))


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
    for key, name, visual, collision in _BUILTIN_MESHES:
        path = os.path.join(root, visual)
        if not os.path.exists(path):  # tolerate a trimmed pybullet_data
            continue
        coll = os.path.join(root, collision) if collision else None
        out.append(Asset(f"pybullet_data/{key}", name, "object", "mesh", path, coll, f"pybullet_data/{visual}",
                         _ASPECT.get(key, (1.0, 1.0, 1.0))))
    for i in range(_NUM_PROCEDURAL):
        rel = f"random_urdfs/{i:03d}/{i:03d}.obj"
        path = os.path.join(root, rel)
        if os.path.exists(path):
            out.append(Asset(f"pybullet_data/random_{i:03d}", "toy piece", "procedural", "mesh", path, None,
                             f"pybullet_data/{rel}"))
    for key, name, shape in _PRIMITIVES:
        out.append(Asset(f"primitive/{key}", name, "primitive", shape))
    return out


_GENERIC_STEMS = {"model", "mesh", "visual_geometry", "textured", "model_normalized", "object"}
_SKIP_DIRS = {"meshes", "mesh", "models", "model", "visual", "collision"}
_COLLIDER_NAMES = ("collision_geometry.obj", "collision.obj", "model_col.obj")


def humanize(text: str) -> str:
    """``"Squirrel_Toy_2"`` / ``"squirrelToy"`` → ``"squirrel toy"`` (a noun phrase for prompts)."""
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    text = re.sub(r"[_\-.]+", " ", text)
    text = re.sub(r"\d+", " ", text)
    return " ".join(text.lower().split()) or "object"


def _user_assets(asset_dir: str) -> list[Asset]:
    """Every ``.obj`` under ``asset_dir`` (sorted); ``names.json`` ({id or folder: name}) overrides names."""
    root = Path(asset_dir)
    names: dict[str, str] = {}
    names_file = root / "names.json"
    if names_file.exists():
        try:
            names = {str(k): str(v) for k, v in json.loads(names_file.read_text()).items()}
        except (ValueError, AttributeError) as exc:
            raise InputError(names_file, None, f"not a JSON object of names ({exc})",
                             'write {"folder_or_id": "prompt name", ...}') from exc
    out = []
    for path in sorted(root.rglob("*.obj")):
        stem = path.stem.lower()
        if stem in {Path(c).stem for c in _COLLIDER_NAMES} or stem.endswith(("_col", "_vhacd", "_collision")):
            continue  # a collider, picked up below next to its visual mesh
        rel = path.relative_to(root)
        parts = [p for p in rel.parts[:-1] if p.lower() not in _SKIP_DIRS]
        label = parts[-1] if (stem in _GENERIC_STEMS and parts) else path.stem
        asset_id = "user/" + rel.with_suffix("").as_posix()
        folder = rel.parts[0] if len(rel.parts) > 1 else path.stem
        name = names.get(asset_id[5:], names.get(folder, humanize(label)))
        coll = None
        for cand in (*(path.parent / c for c in _COLLIDER_NAMES), path.with_name(path.stem + "_col.obj"),
                     path.with_name(path.stem + "_vhacd.obj")):
            if cand.exists():
                coll = str(cand)
                break
        out.append(Asset(asset_id, name, "user", "mesh", str(path), coll, f"asset_dir/{rel.as_posix()}"))
    if not out:
        raise ConfigError(f"DropSceneConfig.asset_dir={asset_dir!r} is invalid: it holds no .obj meshes; "
                          "point it at a folder of meshes (e.g. Google Scanned Objects converted to OBJ)")
    return out


def _backgrounds() -> list[Background]:
    root = pybullet_data_dir()
    out = []
    for fname, frgb, ftex in _FLOORS:
        tex = os.path.join(root, ftex) if ftex else None
        if tex is not None and not os.path.exists(tex):
            tex = None
        for wname, wrgb in _WALLS:
            bid = f"{fname.replace(' ', '_')}_floor/{wname.replace(' ', '_')}_wall"
            out.append(Background(bid, frgb, wrgb, tex))
    return out


@dataclass(frozen=True)
class Catalog:
    """All assets and backgrounds available to a config, with the seen/unseen pools."""

    assets: tuple[Asset, ...]
    backgrounds: tuple[Background, ...]

    def pool(self, split: str) -> tuple[Asset, ...]:
        items = tuple(a for a in self.assets if a.split == split)
        if not items:
            raise ConfigError(f"DropSceneConfig.split={split!r} is invalid: none of the {len(self.assets)} "
                              "assets falls in it; add assets (asset_dir) or use the other split")
        return items

    def background_pool(self, split: str) -> tuple[Background, ...]:
        items = tuple(b for b in self.backgrounds if b.split == split)
        return items or self.backgrounds  # the built-in set always has both splits; guard anyway

    def by_id(self, asset_id: str) -> Asset:
        for a in self.assets:
            if a.id == asset_id:
                return a
        raise InputError("catalog", "asset_id", f"unknown asset {asset_id!r}", "check asset_dir")


@functools.lru_cache(maxsize=8)
def load_catalog(asset_dir: str | None = None, builtin: bool = True) -> Catalog:
    """The catalogue for a config (cached per process; only folder listings are read here)."""
    assets: list[Asset] = _builtin_assets() if builtin else []
    if asset_dir is not None:
        assets += _user_assets(asset_dir)
    unseen: set[str] = set()
    for cat in CATEGORIES:
        unseen |= holdout([a.id for a in assets if a.category == cat])
    assets = [dataclasses.replace(a, split="unseen" if a.id in unseen else "seen") for a in assets]
    backgrounds = _backgrounds()
    unseen_bg = holdout([b.id for b in backgrounds])
    backgrounds = [dataclasses.replace(b, split="unseen" if b.id in unseen_bg else "seen") for b in backgrounds]
    return Catalog(tuple(assets), tuple(backgrounds))


__all__ = ["Asset", "Background", "Catalog", "MeshInfo", "MAX_HULL_POINTS", "farthest_points", "COLORS", "MATERIALS", "CATEGORIES", "SHAPES",
           "holdout", "load_catalog", "mesh_info", "read_obj_vertices", "humanize",
           "pybullet_data_dir"]
