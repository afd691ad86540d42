"""The Mitsuba 3 scene of a drop scene: object meshes and materials, backdrop, environment and light rig.

Used by :mod:`vidalign.simulation.photoreal`. Geometry is kept as plain numpy meshes in each object's
body frame (its centre, as in the physics), so a frame is drawn by moving vertices, not by reloading:

- OBJ meshes go through Mitsuba's own OBJ loader (UVs and normals from the file, polygons triangulated)
  with the scene's vertex scale and the AABB-centre offset applied; primitives are built here (UV
  sphere, box, capped cylinder) at the sizes the physics uses.
- Materials: Mitsuba's ``principled`` BSDF with the object's roughness/metallic/specular
  (:data:`~vidalign.simulation.assets.MATERIALS`) and its texture (``SceneObject.texture``, sRGB image
  mapped with the mesh UVs) or its declared linear colour (``SceneObject.rgb``).
- Background without an environment map: the floor (``floor_rgb``, or ``floor_texture`` tiled every
  2 m like PyBullet's ``plane.obj``) and a wall (``wall_rgb``) 5 m behind the spawn region, both
  diffuse, under a uniform sky of ``sky_radiance`` that stands in for the authors' HDRI dome.
- With ``Background.env_map`` (an equirectangular image, z up, in Blender's world mapping: the image
  centre is the +x direction, the camera's view; column u ↔ azimuth ``atan2(y, x) = π(1 − 2u)``, row v
  from the top ↔ elevation ``π(1/2 − v)``): the map lights the scene and is the visible backdrop, and
  the floor shows its lower half projected from the camera centre (like Kubric's dome, whose floor is
  textured with the HDRI), as a diffuse surface whose albedo is the map's radiance divided by the
  map's own irradiance on the floor, so an unshadowed floor under the map alone matches the backdrop
  at the horizon, and objects cast shadows on it.
- Lights: the authors' rig (Kubric + Blender, see ``sim_data/run.py`` of PISA): a sun of irradiance
  ``sun_energy`` W/m² (Blender's sun strength) shining from ``Lighting.light_direction``, and key/fill/back
  point lights of 100/75/75 W at 2.5 m from the origin, 1.5 m high, with radiant intensity
  ``P / 4π`` W/sr (Blender's point-light power). Cycles' 1 m light radius (soft shadows) is not
  reproduced: Mitsuba's point lights are points. Each emitter is sampled in proportion to the irradiance
  it brings to the middle of the spawn region (unbiased; less noise at 1–2 spp than a uniform choice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vidalign.errors import InputError
from vidalign.simulation.assets import MATERIALS
from vidalign.simulation.geometry import quat_to_matrix
from vidalign.simulation.scene import Scene, SceneObject

POINT_LIGHTS = (("key_light", 100.0), ("fill_light", 75.0), ("back_light", 75.0))  # the authors' watts
LIGHT_RADIUS, LIGHT_HEIGHT = 2.5, 1.5
FLOOR_HALF = 30.0  # floor square half side without an env map (m)
FLOOR_TILE = 2.0  # metres per texture repeat (PyBullet's plane.obj: 30 m, UVs 0..15)
WALL_GAP = 5.0  # wall distance behind the spawn region (as the PyBullet renderer)
ENV_FLOOR_RADIUS = 200.0  # radius of the env-map floor disc (m): beyond it the map itself is the horizon


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


def floor_mesh(half: float = FLOOR_HALF, tile: float = FLOOR_TILE) -> MeshData:
    corners = np.array([[[-half, -half, 0], [half, -half, 0], [half, half, 0], [-half, half, 0]]], np.float64)
    mesh = _quads(corners, np.array([[0.0, 0.0, 1.0]]))
    mesh.uvs = ((corners[0, :, :2] + half) / tile).astype(np.float32)
    return mesh


def wall_mesh(x: float, half: float = FLOOR_HALF) -> MeshData:
    """A vertical wall at ``x`` facing −x (towards the camera), from the floor up to ``half`` m."""
    corners = np.array([[[x, half, 0], [x, -half, 0], [x, -half, half], [x, half, half]]], np.float64)
    return _quads(corners, np.array([[-1.0, 0.0, 0.0]]))


def equirect_uv(d: np.ndarray) -> np.ndarray:
    """Texture coordinates (u, v from the top) of world directions ``[..., 3]`` in Blender's mapping."""
    d = d / np.linalg.norm(d, axis=-1, keepdims=True)
    u = 0.5 - np.arctan2(d[..., 1], d[..., 0]) / (2 * math.pi)
    v = np.arccos(np.clip(d[..., 2], -1.0, 1.0)) / math.pi
    return np.stack([u, v], -1)


def env_floor_mesh(centre: Any, radius: float = ENV_FLOOR_RADIUS, rings: int = 96,
                   segments: int = 256) -> MeshData:
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


ENV_TO_WORLD = np.array([[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
"""Mitsuba's envmap is y-up with its image centre towards −z: this maps it to z-up, centre towards +x."""


def load_linear_image(mi: Any, path: str, owner: str, field_name: str) -> np.ndarray:
    """An image file as linear float32 RGB ``[H, W, 3]`` (sRGB PNG/JPEG decoded, HDR/EXR as stored)."""
    try:
        bmp = mi.Bitmap(path)
    except Exception as exc:  # Mitsuba raises RuntimeError with its own message for unreadable files
        raise InputError(path, field_name, f"cannot read the image ({str(exc).splitlines()[0][:160]})",
                         f"give {owner} a readable .png/.jpg/.hdr/.exr file") from exc
    bmp = bmp.convert(mi.Bitmap.PixelFormat.RGB, mi.Struct.Type.Float32, srgb_gamma=False)
    return np.array(bmp, dtype=np.float32).reshape(bmp.height(), bmp.width(), 3)


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


def _rgb(value: Any) -> dict[str, Any]:
    return {"type": "rgb", "value": [float(v) for v in value]}


def object_bsdf(obj: SceneObject, has_uvs: bool) -> dict[str, Any]:
    m = MATERIALS[obj.material]
    if obj.texture and not has_uvs:
        raise InputError(obj.mesh or obj.asset_id, "texture", "the mesh has no UV coordinates for its texture",
                         "export the OBJ with texture coordinates (vt lines) or drop the texture")
    base = ({"type": "bitmap", "filename": obj.texture, "raw": False} if obj.texture else _rgb(obj.rgb))
    return {"type": "principled", "base_color": base, "roughness": float(m["roughness"]),
            "metallic": float(m["metallic"]), "specular": float(m["specular"])}


def make_mesh(mi: Any, name: str, mesh: MeshData, bsdf: Any) -> Any:
    """A Mitsuba mesh from arrays (the BSDF given as a dict or a loaded object)."""
    props = mi.Properties()
    props["bsdf"] = mi.load_dict(bsdf) if isinstance(bsdf, dict) else bsdf
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


@dataclass
class SceneParts:
    """What the renderer needs besides the Mitsuba scene dict: the movable meshes and their rest pose."""

    scene_dict: dict[str, Any]
    object_keys: list[str]  # dict key (= Mitsuba shape id) per object, in ``scene.objects`` order
    rest: list[MeshData]  # body-frame geometry per object
    info: dict[str, Any] = field(default_factory=dict)


def scene_parts(mi: Any, scene: Scene, sky_radiance: float, env_strength: float) -> SceneParts:
    """The shapes, materials and emitters of ``scene`` (objects at their initial pose)."""
    parts: dict[str, Any] = {"type": "scene"}
    keys, rest = [], []
    for obj in scene.objects:
        mesh = object_mesh(mi, obj)
        key = f"object_{obj.index:02d}"
        rot = quat_to_matrix(obj.orientation)
        posed = MeshData((mesh.positions @ rot.T + np.asarray(obj.position)).astype(np.float32), mesh.faces,
                         None if mesh.normals is None else (mesh.normals @ rot.T).astype(np.float32), mesh.uvs)
        parts[key] = make_mesh(mi, key, posed, object_bsdf(obj, mesh.uvs is not None))
        keys.append(key)
        rest.append(mesh)
    bg = scene.background
    info: dict[str, Any] = {"background": bg.id}
    if bg.env_map:
        env = load_linear_image(mi, bg.env_map, "Background.env_map", "env_map")
        e_up = upward_irradiance(env)
        if not e_up > 0:
            raise InputError(bg.env_map, "env_map", "the upper half of the map is black (no light)",
                             "use an equirectangular map with the sky in the top half (z up)")
        albedo = np.clip(env * (math.pi / e_up), 0.0, 1.0).astype(np.float32)
        parts["env"] = {"type": "envmap", "bitmap": mi.Bitmap(env), "scale": float(env_strength),
                        "to_world": mi.ScalarTransform4f(ENV_TO_WORLD.tolist()),
                        "sampling_weight": max(e_up * float(env_strength), 1e-6)}
        floor_bsdf = {"type": "diffuse", "reflectance": {"type": "bitmap", "bitmap": mi.Bitmap(albedo),
                                                         "raw": True, "wrap_mode": "clamp"}}
        parts["floor"] = make_mesh(mi, "floor", env_floor_mesh(scene.camera.position), floor_bsdf)
        info.update(env_map=bg.env_map, env_irradiance=round(e_up, 6))
    else:
        if bg.floor_texture:
            floor_refl: dict[str, Any] = {"type": "bitmap", "filename": bg.floor_texture, "raw": False}
        else:
            floor_refl = _rgb(bg.floor_rgb)
        parts["floor"] = make_mesh(mi, "floor", floor_mesh(), {"type": "diffuse", "reflectance": floor_refl})
        parts["wall"] = make_mesh(mi, "wall", wall_mesh(scene.config.spawn_max[0] + WALL_GAP),
                                  {"type": "diffuse", "reflectance": _rgb(bg.wall_rgb)})
        parts["sky"] = {"type": "constant", "radiance": _rgb([sky_radiance] * 3),
                        "sampling_weight": max(math.pi * sky_radiance, 1e-6)}
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
    return SceneParts(parts, keys, rest, info)


__all__ = ["MeshData", "SceneParts", "scene_parts", "object_mesh", "crease_normals", "obj_has_normals", "uv_sphere", "box_mesh", "cylinder_mesh",
           "floor_mesh", "wall_mesh", "env_floor_mesh", "equirect_uv", "upward_irradiance", "load_linear_image",
           "make_mesh", "point_light_positions", "ENV_TO_WORLD", "POINT_LIGHTS"]
