"""The Mitsuba 3 scene of a drop scene: object meshes and materials, backdrop, environment and light rig.

Used by :mod:`vidalign.simulation.photoreal`. It draws the scene model exactly as the ``pybullet`` renderer
(:mod:`vidalign.simulation.pybullet_render`) does, with physically based light. Geometry is kept as plain numpy
meshes in each object's body frame (its AABB centre, as in the physics), so a frame is drawn by moving
vertices, not by reloading:

- OBJ meshes go through Mitsuba's own OBJ loader (UVs and normals from the file, polygons triangulated)
  with the scene's vertex scale and the AABB-centre offset applied; primitives are built here (UV
  sphere, box, capped cylinder) at the sizes the physics uses.
- Colours: every ``SceneObject.rgb`` and ``Background`` colour is an sRGB display value, converted to linear
  reflectance here; textures (sRGB images) are decoded to linear by Mitsuba. A textured object
  (``color`` None) shows its texture times ``rgb`` (white: the texture as is). Materials: Mitsuba's
  ``principled`` BSDF with the object's roughness/metallic/specular (:data:`~vidalign.simulation.assets.MATERIALS`).
- Exposure, as the pybullet renderer normalises its light: metered so that an up-facing surface at the origin,
  unshadowed, shows its albedo (a grey card in full light). Backdrops show their declared display values, as
  in the pybullet renderer: the emitters behind them (the studio wall, the environment map) are given the
  radiance that the metered exposure displays as that value, so they light the scene in proportion to how
  bright they look (a bright overcast sky lights more than a clear blue one).
- Studio backgrounds (``Background.has_wall``): the floor (``floor_rgb``, or ``floor_texture`` tiled every
  ``floor_tile_m`` metres in world x, y) and a wall :data:`~vidalign.simulation.backgrounds.WALL_OFFSET` m
  behind the spawn region, lit evenly like a cyclorama (an emitter of its declared colour: it shows exactly that
  colour), under a uniform sky of display value ``sky_radiance`` that stands in for the authors' HDRI dome.
- Environment maps (``Background.env_map``: equirectangular, z up, Blender's world mapping, the image centre
  is +x; ``.png``/``.jpg`` display values, ``.hdr``/``.exr`` linear, shown scaled by
  :func:`~vidalign.simulation.backgrounds.env_display_scale`): no wall; the map is the visible backdrop and
  lights the scene; the floor shows ``floor_texture`` tiled every ``floor_tile_m`` m when set, else the map's
  ground as seen from :data:`~vidalign.simulation.backgrounds.DOME_HEIGHT` above the origin (Kubric's dome),
  as a diffuse surface whose albedo is that display value; objects cast shadows on it.
- A floor texture is drawn through the mip level the pybullet renderer samples at each distance
  (:func:`floor_bands`: bands across the view), so both renderers filter it alike and a few samples per pixel
  do not alias it into noise the denoiser cannot remove.
- Lights: the authors' rig (Kubric + Blender, see ``sim_data/run.py`` of PISA): a sun of irradiance
  ``sun_energy`` W/m² (Blender's sun strength) shining from ``Lighting.light_direction``, and key/fill/back
  point lights of 100/75/75 W at 2.5 m from the origin, 1.5 m high, with radiant intensity
  ``P / 4π`` W/sr (Blender's point-light power). Cycles' 1 m light radius (soft shadows) is not
  reproduced: Mitsuba's point lights are points. Each emitter is sampled in proportion to the irradiance
  it brings to the middle of the spawn region (unbiased; less noise at 1–2 spp than a uniform choice).

Differences from the pybullet renderer that remain: light is transported (interreflections, colour bleeding,
true soft shadows from the sky) instead of approximated; the floor runs to the far clip instead of fading into
the map's horizon from :data:`~vidalign.simulation.backgrounds.FOG_START` m.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vidalign.errors import InputError
from vidalign.simulation.assets import MATERIALS
from vidalign.simulation.backgrounds import (
    DOME_HEIGHT,
    WALL_OFFSET,
    env_display_scale,
    load_env,
    luminance,
    mip_level,
    srgb_to_linear,
    texture_pyramid,
)
from vidalign.simulation.geometry import quat_to_matrix
from vidalign.simulation.scene import Scene, SceneObject, portable_path

POINT_LIGHTS = (("key_light", 100.0), ("fill_light", 75.0), ("back_light", 75.0))  # the authors' watts
LIGHT_RADIUS, LIGHT_HEIGHT = 2.5, 1.5
FLOOR_HALF = 30.0  # studio floor square half side and wall size (m)
ENV_MAP_WIDTH = 2048  # environment maps are downsampled to at most this many columns
MAX_BACKDROP_SHARE = 0.9  # of the metered light; a brighter backdrop is dimmed to this


@dataclass
class MeshData:
    """A triangle mesh in an object's body frame (float32 positions/normals, uint32 faces, optional UVs)."""

    positions: np.ndarray  # [V, 3]
    faces: np.ndarray  # [F, 3]
    normals: np.ndarray | None = None  # [V, 3]
    uvs: np.ndarray | None = None  # [V, 2], Mitsuba convention: (0, 0) is the image's top-left


def uv_sphere(radius: float, n_lon: int = 96, n_lat: int = 48) -> MeshData:
    """A UV sphere with smooth normals (deviation from the true sphere ≤ 0.06 % of the radius)."""
    lat = np.linspace(0.0, math.pi, n_lat + 1)
    lon = np.linspace(0.0, 2 * math.pi, n_lon + 1)
    th, ph = np.meshgrid(lat, lon, indexing="ij")
    n = np.stack([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)], -1).reshape(-1, 3)
    uv = np.stack([ph / (2 * math.pi), th / math.pi], -1).reshape(-1, 2)
    i, j = np.meshgrid(np.arange(n_lat), np.arange(n_lon), indexing="ij")
    a = (i * (n_lon + 1) + j).ravel()
    b, c, d = a + n_lon + 1, a + 1, a + n_lon + 2
    faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return MeshData((n * radius).astype(np.float32), faces.astype(np.uint32), n.astype(np.float32),
                    uv.astype(np.float32))


def _quads(corners: np.ndarray, normals: np.ndarray) -> MeshData:
    """Flat quads ``[Q, 4, 3]`` (counter-clockwise seen from the normal side) with per-quad normals."""
    q = len(corners)
    pos = corners.reshape(-1, 3)
    base = (np.arange(q) * 4)[:, None]
    faces = np.concatenate([base + [0, 1, 2], base + [0, 2, 3]])
    nrm = np.repeat(normals, 4, axis=0)
    uv = np.tile(np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float32), (q, 1))
    return MeshData(pos.astype(np.float32), faces.astype(np.uint32), nrm.astype(np.float32), uv)


def box_mesh(half: Any) -> MeshData:
    """An axis-aligned box of half extents ``half`` with flat faces."""
    h = np.asarray(half, dtype=np.float64)
    corners, normals = [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            u, v = (axis + 1) % 3, (axis + 2) % 3
            if sign < 0:
                u, v = v, u
            quad = []
            for su, sv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                p = np.zeros(3)
                p[axis], p[u], p[v] = sign * h[axis], su * h[u], sv * h[v]
                quad.append(p)
            corners.append(quad)
            nrm = np.zeros(3)
            nrm[axis] = sign
            normals.append(nrm)
    return _quads(np.asarray(corners), np.asarray(normals))


def cylinder_mesh(radius: float, half_height: float, segments: int = 96) -> MeshData:
    """A closed cylinder along z: smooth side, flat caps."""
    a = np.linspace(0.0, 2 * math.pi, segments + 1)
    ring = np.stack([np.cos(a), np.sin(a), np.zeros_like(a)], 1)
    side = np.concatenate([ring * radius + [0, 0, -half_height], ring * radius + [0, 0, half_height]])
    side_n = np.concatenate([ring, ring])
    k = np.arange(segments)
    top = k + segments + 1
    side_f = np.concatenate([np.stack([k, k + 1, top + 1], 1), np.stack([k, top + 1, top], 1)])
    pos, nrm, faces = [side], [side_n], [side_f]
    offset = len(side)
    for sign in (-1.0, 1.0):
        cap = np.concatenate([[[0.0, 0.0, sign * half_height]], ring[:-1] * radius + [0, 0, sign * half_height]])
        idx = offset + 1 + k
        nxt = offset + 1 + (k + 1) % segments
        tri = np.stack([np.full(segments, offset), nxt, idx], 1) if sign < 0 else \
            np.stack([np.full(segments, offset), idx, nxt], 1)
        pos.append(cap)
        nrm.append(np.tile([0.0, 0.0, sign], (len(cap), 1)))
        faces.append(tri)
        offset += len(cap)
    return MeshData(np.concatenate(pos).astype(np.float32), np.concatenate(faces).astype(np.uint32),
                    np.concatenate(nrm).astype(np.float32))


def floor_mesh(half: float = FLOOR_HALF, tile: float = 1.0, x_max: float | None = None,
               x_min: float | None = None) -> MeshData:
    """The floor rectangle at z = 0, |y| ≤ ``half``, ``x_min`` ≤ x ≤ ``x_max`` (default ±``half``; a studio
    wall cuts it), with UVs ``(x, y) / tile``: a texture repeats every ``tile`` metres in world x, y, its
    first row at y = 0 (as the pybullet renderer samples ``floor_texture``)."""
    x0 = -half if x_min is None else float(x_min)
    x1 = half if x_max is None else min(half, float(x_max))
    corners = np.array([[[x0, -half, 0], [x1, -half, 0], [x1, half, 0], [x0, half, 0]]], np.float64)
    mesh = _quads(corners, np.array([[0.0, 0.0, 1.0]]))
    mesh.uvs = (corners[0, :, :2] / tile).astype(np.float32)
    return mesh


def floor_bands(camera: Any, tile: float, size: int, levels: int, x_min: float, x_max: float
                ) -> list[tuple[int, float, float]]:
    """``(mip level, x0, x1)`` bands of the floor seen by ``camera`` (looking along +x): the level the pybullet
    renderer samples a floor texture of ``size`` columns at, from the pixel footprint at distance
    X = x − x_camera (X²/(h f) metres per pixel along the view, X/f across). Path tracing the prefiltered levels
    gives what many samples per pixel average to, without their noise."""
    h, f, cx = float(camera.position[2]), float(camera.focal_px), float(camera.position[0])

    def level(x: float) -> int:
        d = max(x - cx, 1e-6)
        return int(mip_level(max(d * d / (h * f), d / f) / tile, size, levels))

    xs = cx + np.geomspace(1e-3, max(x_max - cx, 2e-3), 2048)
    xs = np.concatenate([[x_min], xs[(xs > x_min) & (xs < x_max)], [x_max]])
    out: list[tuple[int, float, float]] = []
    start, current = x_min, level(x_min)
    for lo, hi in zip(xs[:-1], xs[1:]):
        if level(hi) == current:
            continue
        for _ in range(40):  # the level is non-decreasing in x: bisect its step
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if level(mid) == current else (lo, mid)
        out.append((current, start, hi))
        start, current = hi, level(hi)
    out.append((current, start, x_max))
    return out


def equirect_dirs(width: int) -> np.ndarray:
    """Unit directions ``[width/2, width, 3]`` of the texel centres of an equirectangular image (Blender's
    mapping: u = 0.5 − atan2(y, x)/2π, rows from the top at elevation π(1/2 − v))."""
    h = width // 2
    u = (np.arange(width) + 0.5) / width
    v = (np.arange(h) + 0.5) / h
    az = (0.5 - u) * 2 * math.pi
    el = (0.5 - v) * math.pi
    az, el = np.meshgrid(az, el)
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1)


def studio_environment(wall_x: float, wall_rgb: Any, sky: float, width: int = 512) -> np.ndarray:
    """The studio's surroundings as an environment image (linear display values): the wall's colour in every
    direction that reaches the wall (x = ``wall_x``, |y| ≤ :data:`FLOOR_HALF`, below ``FLOOR_HALF`` m high) from
    the origin, below the horizon included (where the floor, cut at the wall, ends), a uniform ``sky``
    elsewhere. At infinity, the wall is lit evenly and shadows nothing (the sun stands behind it), as in the
    pybullet renderer."""
    d = equirect_dirs(width)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(d[..., 0] > 1e-9, wall_x / d[..., 0], np.inf)
        hit = np.isfinite(t) & (np.abs(t * d[..., 1]) <= FLOOR_HALF) & (t * d[..., 2] <= FLOOR_HALF)
    img = np.empty(d.shape, np.float32)
    img[:] = float(sky)
    img[hit] = np.asarray(wall_rgb, np.float32)
    return img


def equirect_uv(d: np.ndarray) -> np.ndarray:
    """Texture coordinates (u, v from the top) of world directions ``[..., 3]`` in Blender's mapping."""
    d = d / np.linalg.norm(d, axis=-1, keepdims=True)
    u = 0.5 - np.arctan2(d[..., 1], d[..., 0]) / (2 * math.pi)
    v = np.arccos(np.clip(d[..., 2], -1.0, 1.0)) / math.pi
    return np.stack([u, v], -1)


def env_floor_mesh(centre: Any, radius: float, rings: int = 96, segments: int = 256) -> MeshData:
    """A floor disc at z = 0 whose UVs project the env map's lower half from ``centre`` (x, y, h).

    The seam (azimuth ±π, behind the camera) gets duplicated vertices so no triangle wraps the texture."""
    cx, cy, h = (float(v) for v in centre)
    r = np.concatenate([[1e-3], np.geomspace(0.02, radius, rings)])
    phi = np.linspace(math.pi, -math.pi, segments + 1)  # u = 0.5 − φ/2π runs 0 → 1
    rr, pp = np.meshgrid(r, phi, indexing="ij")
    pos = np.stack([cx + rr * np.cos(pp), cy + rr * np.sin(pp), np.zeros_like(rr)], -1).reshape(-1, 3)
    d = pos - np.array([cx, cy, h])
    v = np.arccos(np.clip(d[:, 2] / np.linalg.norm(d, axis=1), -1, 1)) / math.pi
    u = (0.5 - pp / (2 * math.pi)).reshape(-1)
    i, j = np.meshgrid(np.arange(len(r) - 1), np.arange(segments), indexing="ij")
    a = (i * (segments + 1) + j).ravel()
    b, c, e = a + segments + 1, a + 1, a + segments + 2
    # φ decreases along a ring (clockwise seen from above): (a, c, e) / (a, e, b) faces point up
    faces = np.concatenate([np.stack([a, c, e], 1), np.stack([a, e, b], 1)])
    nrm = np.tile([0.0, 0.0, 1.0], (len(pos), 1))
    return MeshData(pos.astype(np.float32), faces.astype(np.uint32), nrm.astype(np.float32),
                    np.stack([u, v], 1).astype(np.float32))


def upward_irradiance(env: np.ndarray) -> float:
    """Irradiance (mean over RGB) that an equirect radiance map ``[H, W, 3]`` puts on an upward surface."""
    hgt, wid = env.shape[:2]
    elev = math.pi * (0.5 - (np.arange(hgt) + 0.5) / hgt)
    w = np.clip(np.sin(elev), 0.0, None) * np.cos(elev) * (math.pi / hgt) * (2 * math.pi / wid)
    return float((env.mean(axis=2).sum(axis=1) * w).sum())


def projected_solid_angle(point: Any, normal: Any, polygon: Any) -> float:
    """∫ cos θ dω of a planar polygon ``[N, 3]`` seen from ``point`` with surface ``normal`` (Lambert's contour
    formula; π for a polygon covering the whole hemisphere): irradiance = radiance × this."""
    r = np.asarray(polygon, np.float64) - np.asarray(point, np.float64)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    total = 0.0
    for a, b in zip(r, np.roll(r, -1, axis=0)):
        cross = np.cross(a, b)
        size = float(np.linalg.norm(cross))
        if size > 1e-12:
            total += math.atan2(size, float(a @ b)) * float(np.asarray(normal, np.float64) @ cross) / size
    return abs(total) / 2


ENV_TO_WORLD = np.array([[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
"""Mitsuba's envmap is y-up with its image centre towards −z: this maps it to z-up, centre towards +x."""


def object_mesh(mi: Any, obj: SceneObject) -> MeshData:
    """The visual mesh of ``obj`` in its body frame (centre of the AABB, scaled as in the physics)."""
    if obj.shape == "sphere":
        return uv_sphere(obj.half_extents[0])
    if obj.shape == "box":
        return box_mesh(obj.half_extents)
    if obj.shape == "cylinder":
        return cylinder_mesh(obj.half_extents[0], obj.half_extents[2])
    try:
        shape = mi.load_dict({"type": "obj", "filename": obj.mesh})
    except Exception as exc:
        raise InputError(obj.mesh, None, f"Mitsuba cannot load the mesh ({str(exc).splitlines()[0][:160]})",
                         "re-export it as a triangulated OBJ") from exc
    params = mi.traverse(shape)
    pos = np.array(params["vertex_positions"], dtype=np.float64).reshape(-1, 3)
    pos = (pos - np.asarray(obj.mesh_offset)) * np.asarray(obj.scale)
    faces = np.array(params["faces"], dtype=np.uint32).reshape(-1, 3)
    uvs = np.array(params["vertex_texcoords"], np.float32).reshape(-1, 2) if shape.has_vertex_texcoords() else None
    if not obj_has_normals(obj.mesh):  # Mitsuba would smooth across every edge, box corners included
        return crease_normals(pos, faces, uvs)
    normals = None
    if shape.has_vertex_normals():
        n = np.array(params["vertex_normals"], dtype=np.float64).reshape(-1, 3) / np.asarray(obj.scale)
        normals = (n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    return MeshData(pos.astype(np.float32), faces, normals, uvs)


CREASE_DEG = 40.0  # faces meeting at a sharper angle keep a hard edge (Blender's auto-smooth default is 30°)


def obj_has_normals(path: str) -> bool:
    """Whether a Wavefront OBJ declares vertex normals (``vn`` lines)."""
    with open(path, "rb") as f:
        data = f.read()
    return data.startswith(b"vn ") or b"\nvn " in data


def crease_normals(positions: np.ndarray, faces: np.ndarray, uvs: np.ndarray | None,
                   crease_deg: float = CREASE_DEG) -> MeshData:
    """Per-corner normals for a mesh that declares none: the area-weighted mean of the normals of the faces
    around each vertex position that lie within ``crease_deg`` of the corner's own face, so curved scans
    shade smoothly while boxes keep flat sides. Returns an unindexed mesh (three vertices per face)."""
    pos = np.asarray(positions, np.float64)
    tri = pos[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 × area
    unit = fn / np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-30)
    tol = 1e-6 * max(float(np.ptp(pos, axis=0).max()), 1e-12)
    _, group = np.unique(np.round(pos / tol).astype(np.int64), axis=0, return_inverse=True)
    corner_group = group.reshape(-1)[faces].ravel()
    corner_face = np.repeat(np.arange(len(faces)), 3)
    order = np.argsort(corner_group, kind="stable")
    g_sorted, f_sorted = corner_group[order], corner_face[order]
    starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
    counts = np.diff(np.r_[starts, len(order)])
    size = np.repeat(counts, counts)  # group size of each sorted corner
    i_idx = np.repeat(np.arange(len(order)), size)  # every (corner, other corner of its group) pair
    j_idx = np.repeat(np.repeat(starts, counts), size) + (np.arange(size.sum()) - np.repeat(np.cumsum(size) - size, size))
    fi, fj = f_sorted[i_idx], f_sorted[j_idx]
    degenerate = ~np.any(fn != 0, axis=1)  # zero-area faces (e.g. at a UV sphere's poles) take every neighbour
    keep = (np.einsum("ij,ij->i", unit[fi], unit[fj]) >= math.cos(math.radians(crease_deg))) | degenerate[fi]
    acc = np.stack([np.bincount(i_idx[keep], weights=fn[fj[keep], k], minlength=len(order)) for k in range(3)], 1)
    normals = np.empty_like(acc)
    normals[order] = acc / np.maximum(np.linalg.norm(acc, axis=1, keepdims=True), 1e-30)
    return MeshData(tri.reshape(-1, 3).astype(np.float32), np.arange(3 * len(faces), dtype=np.uint32).reshape(-1, 3),
                    normals.astype(np.float32), None if uvs is None else uvs[faces].reshape(-1, 2).astype(np.float32))


def _rgb(linear: Any) -> dict[str, Any]:
    return {"type": "rgb", "value": [float(v) for v in linear]}


def linear_rgb(srgb: Any) -> np.ndarray:
    """A declared colour (sRGB display value) as linear reflectance/radiance."""
    return srgb_to_linear(np.asarray(srgb, np.float64)).astype(np.float64)


@functools.lru_cache(maxsize=16)
def read_texture(path: str) -> np.ndarray:
    """An sRGB texture image as linear float32 RGB ``[H, W, 3]``, decoded as the pybullet renderer decodes it
    (by Pillow: Mitsuba's own libpng can bind to another library's zlib in the same process and fail with
    "bad parameters to zlib"). Cached per process (read-only)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            out = srgb_to_linear(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)
    except OSError as exc:
        raise InputError(path, "texture", f"cannot read the image ({exc})", "use a readable .png/.jpg") from exc
    out.setflags(write=False)
    return out


def texture_dict(mi: Any, path: str, tint: Any = (1.0, 1.0, 1.0), **extra: Any) -> dict[str, Any]:
    """A bitmap texture of an sRGB image times a linear ``tint``."""
    tint = np.asarray(tint, np.float32)
    image = read_texture(path)
    if not np.allclose(tint, 1.0):
        image = image * tint
    return {"type": "bitmap", "bitmap": mi.Bitmap(np.array(image, np.float32)), "raw": True, **extra}  # a writable copy


def object_bsdf(mi: Any, obj: SceneObject, has_uvs: bool) -> dict[str, Any]:
    """The object's material: its texture times ``rgb`` (textured objects), or ``rgb`` (both sRGB, made linear)."""
    m = MATERIALS[obj.material]
    if obj.texture and not has_uvs:
        raise InputError(obj.mesh or obj.asset_id, "texture", "the mesh has no UV coordinates for its texture",
                         "export the OBJ with texture coordinates (vt lines) or drop the texture")
    base = texture_dict(mi, obj.texture, linear_rgb(obj.rgb)) if obj.texture else _rgb(linear_rgb(obj.rgb))
    return {"type": "principled", "base_color": base, "roughness": float(m["roughness"]),
            "metallic": float(m["metallic"]), "specular": float(m["specular"])}


def make_mesh(mi: Any, name: str, mesh: MeshData, bsdf: Any, emitter: dict[str, Any] | None = None) -> Any:
    """A Mitsuba mesh from arrays (the BSDF given as a dict or a loaded object; optionally an area emitter)."""
    props = mi.Properties()
    props["bsdf"] = mi.load_dict(bsdf) if isinstance(bsdf, dict) else bsdf
    if emitter is not None:
        props["emitter"] = mi.load_dict(emitter)
    out = mi.Mesh(name, len(mesh.positions), len(mesh.faces), props,
                  has_vertex_normals=mesh.normals is not None, has_vertex_texcoords=mesh.uvs is not None)
    params = mi.traverse(out)
    arrays = {"vertex_positions": mesh.positions, "faces": mesh.faces, "vertex_normals": mesh.normals,
              "vertex_texcoords": mesh.uvs}
    for key, values in arrays.items():
        if values is not None:  # the buffer's own type: mi.Float on JIT variants, a dynamic array on scalar ones
            dtype = np.uint32 if key == "faces" else np.float32
            params[key] = type(params[key])(np.ascontiguousarray(values, dtype).ravel())
    params.update()
    return out


def point_light_positions(scene: Scene) -> list[tuple[str, float, np.ndarray]]:
    light = scene.lighting
    angles = (light.key_angles_deg[0], light.fill_angles_deg[0], 180.0)
    out = []
    for (name, watts), horizontal in zip(POINT_LIGHTS, angles):
        a = math.radians(horizontal)
        out.append((name, watts, np.array([-LIGHT_RADIUS * math.cos(a), -LIGHT_RADIUS * math.sin(a), LIGHT_HEIGHT])))
    return out


def textured_floor(mi: Any, scene: Scene, path: str, tile: float, half: float, x_max: float) -> dict[str, Any]:
    """The floor under ``floor_texture`` as bands across the view, each with the texture's mip level for its
    distance (see :func:`floor_bands`), keyed ``floor_00``, ``floor_01``, … from behind the camera outwards."""
    levels = texture_pyramid(path)
    bitmaps: dict[int, Any] = {}
    out = {}
    for level, x0, x1 in floor_bands(scene.camera, tile, levels[0].shape[1], len(levels), -half, x_max):
        if level not in bitmaps:
            bitmaps[level] = mi.Bitmap(np.ascontiguousarray(levels[level], np.float32))
        out[f"floor_{len(out):02d}"] = make_mesh(
            mi, f"floor_{len(out):02d}", floor_mesh(half, tile, x1, x0),
            {"type": "diffuse", "reflectance": {"type": "bitmap", "bitmap": bitmaps[level], "raw": True}})
    return out


def direct_irradiance(scene: Scene, point: Any = (0.0, 0.0, 0.0)) -> float:
    """Irradiance (W/m²) of the sun and the point lights on an unshadowed up-facing surface at ``point``."""
    to_sun = np.asarray(scene.lighting.light_direction, np.float64)
    to_sun = to_sun / np.linalg.norm(to_sun)
    total = scene.lighting.sun_energy * max(float(to_sun[2]), 0.0)
    for _, watts, pos in point_light_positions(scene):
        d = pos - np.asarray(point, np.float64)
        total += watts / (4 * math.pi) * max(float(d[2]), 0.0) / float(np.linalg.norm(d)) ** 3
    return float(total)


def wall_x(scene: Scene) -> float:
    return float(scene.config.spawn_max[0] + WALL_OFFSET)


def wall_polygon(scene: Scene) -> np.ndarray:
    x = wall_x(scene)
    return np.array([[x, FLOOR_HALF, 0], [x, -FLOOR_HALF, 0], [x, -FLOOR_HALF, FLOOR_HALF], [x, FLOOR_HALF, FLOOR_HALF]],
                    np.float64)


@dataclass
class SceneParts:
    """What the renderer needs besides the Mitsuba scene dict: the movable meshes and their rest pose, and the
    metered exposure (linear multiplier that shows a fully lit up-facing surface at the origin at its albedo)."""

    scene_dict: dict[str, Any]
    object_keys: list[str]  # dict key (= Mitsuba shape id) per object, in ``scene.objects`` order
    rest: list[MeshData]  # body-frame geometry per object
    exposure_scale: float = 1.0
    wall_x: float | None = None  # the studio wall's plane (drawn by the environment; its depth is ray-cast)
    info: dict[str, Any] = field(default_factory=dict)
    env_display: np.ndarray | None = None  # the environment emitter as display values (equirect, z up, +x centre)


def scene_parts(mi: Any, scene: Scene, sky_radiance: float, env_strength: float) -> SceneParts:
    """The shapes, materials and emitters of ``scene`` (objects at their initial pose), and the exposure."""
    parts: dict[str, Any] = {"type": "scene"}
    keys, rest = [], []
    for obj in scene.objects:
        mesh = object_mesh(mi, obj)
        key = f"object_{obj.index:02d}"
        rot = quat_to_matrix(obj.orientation)
        posed = MeshData((mesh.positions @ rot.T + np.asarray(obj.position)).astype(np.float32), mesh.faces,
                         None if mesh.normals is None else (mesh.normals @ rot.T).astype(np.float32), mesh.uvs)
        parts[key] = make_mesh(mi, key, posed, object_bsdf(mi, obj, mesh.uvs is not None))
        keys.append(key)
        rest.append(mesh)
    bg, cam = scene.background, scene.camera
    info: dict[str, Any] = {"background": bg.id}
    direct = direct_irradiance(scene)
    # the floor reaches the far clip from anywhere the camera stands (depth as the pybullet renderer's floor)
    reach = cam.far + float(np.linalg.norm(np.asarray(cam.position[:2]))) + 1.0
    if bg.has_wall:
        # display-value shares of the metered light at the origin: the sky outside the wall, and the wall
        f_wall = projected_solid_angle((0, 0, 0), (0, 0, 1), wall_polygon(scene))
        wall_lin = linear_rgb(bg.wall_rgb)
        sky_share = float(sky_radiance) * (math.pi - f_wall) / math.pi
        wall_share = float(luminance(wall_lin)) * f_wall / math.pi
        share = sky_share + wall_share
        dim = min(1.0, MAX_BACKDROP_SHARE / max(share, 1e-9))
        reference = direct / (1.0 - dim * share)
        if bg.floor_texture:
            parts.update(textured_floor(mi, scene, bg.floor_texture, bg.floor_tile_m, FLOOR_HALF, wall_x(scene)))
        else:
            parts["floor"] = make_mesh(mi, "floor", floor_mesh(FLOOR_HALF, 1.0, wall_x(scene)),
                                       {"type": "diffuse", "reflectance": _rgb(linear_rgb(bg.floor_rgb))})
        surroundings = studio_environment(wall_x(scene), wall_lin, float(sky_radiance))
        parts["env"] = {"type": "envmap", "bitmap": mi.Bitmap(surroundings), "scale": float(dim * reference / math.pi),
                        "to_world": mi.ScalarTransform4f(ENV_TO_WORLD.tolist()),
                        "sampling_weight": max(dim * share * reference, 1e-6)}
        info.update(backdrop_share=round(dim * share, 6))
        env_display = surroundings * np.float32(dim)
    else:
        env = load_env(bg.env_map, ENV_MAP_WIDTH)
        scale = env_display_scale(env, bg.env_map)
        sky_mean, _ = env.hemispheres
        share = float(luminance(sky_mean)) * scale * float(env_strength)  # E/π of the map, in display values
        if not share > 0:
            raise InputError(bg.env_map, "env_map", "the upper half of the map is black (no light)",
                             "use an equirectangular map with the sky in the top half (z up)")
        dim = min(1.0, MAX_BACKDROP_SHARE / share)
        reference = direct / (1.0 - dim * share)
        parts["env"] = {"type": "envmap", "bitmap": mi.Bitmap(env.image),
                        "scale": float(scale * env_strength * dim * reference / math.pi),
                        "to_world": mi.ScalarTransform4f(ENV_TO_WORLD.tolist()),
                        "sampling_weight": max(dim * share * reference, 1e-6)}
        if bg.floor_texture:
            parts.update(textured_floor(mi, scene, bg.floor_texture, bg.floor_tile_m, reach, reach))
        else:  # the map's ground seen from the dome's eye height, as the albedo the pybullet renderer gives it
            albedo = np.clip(env.image * scale, 0.0, 1.0).astype(np.float32)
            parts["floor"] = make_mesh(mi, "floor", env_floor_mesh((0.0, 0.0, DOME_HEIGHT), reach),
                                       {"type": "diffuse", "reflectance": {
                                           "type": "bitmap", "bitmap": mi.Bitmap(albedo), "raw": True,
                                           "wrap_mode": "clamp"}})
        info.update(env_map=portable_path(bg.env_map), env_display_scale=round(scale, 6), backdrop_share=round(dim * share, 6))
        env_display = env.image * np.float32(scale * env_strength * dim)
    light = scene.lighting
    # each emitter is sampled in proportion to the irradiance it brings to the middle of the spawn region
    # (Mitsuba's default picks them uniformly: a 6 W/m² sun and a 75 W point light equally often)
    parts["sun"] = {"type": "directional", "direction": [-float(v) for v in light.light_direction],
                    "irradiance": _rgb([light.sun_energy] * 3), "sampling_weight": max(light.sun_energy, 1e-6)}
    centre = (np.asarray(scene.config.spawn_min) + np.asarray(scene.config.spawn_max)) / 2 * [1, 1, 0.5]
    for name, watts, pos in point_light_positions(scene):
        intensity = watts / (4 * math.pi)
        parts[name] = {"type": "point", "position": pos.tolist(), "intensity": _rgb([intensity] * 3),
                       "sampling_weight": intensity / max(float(np.sum((pos - centre) ** 2)), 0.25)}
    info.update(reference_irradiance=round(reference, 6))
    return SceneParts(parts, keys, rest, math.pi / reference, wall_x(scene) if bg.has_wall else None, info,
                      env_display)


__all__ = ["MeshData", "SceneParts", "scene_parts", "object_mesh", "object_bsdf", "crease_normals", "obj_has_normals",
           "uv_sphere", "box_mesh", "cylinder_mesh", "floor_mesh", "floor_bands", "textured_floor", "studio_environment", "equirect_dirs",
           "env_floor_mesh", "equirect_uv", "wall_x", "wall_polygon",
           "upward_irradiance", "projected_solid_angle", "direct_irradiance", "linear_rgb", "read_texture",
           "texture_dict", "make_mesh", "point_light_positions", "ENV_TO_WORLD", "POINT_LIGHTS"]
