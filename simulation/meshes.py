"""Mesh files for drop scenes: reading OBJ, mass properties, textures, colliders (cached, deterministic).

What a rigid body needs from a mesh, computed once per process (files are immutable inputs):

- the visual AABB (the body frame sits at its centre, see :class:`~vidalign.simulation.scene.SceneObject`);
- mass properties of the closed visual mesh (volume, centre of mass, second moment), as Kubric's GSO
  conversion computes them with trimesh (``mass = volume × density``); meshes that are not closed fall back
  to their convex hull;
- the collider: the asset's collision mesh (Kubric's ``collision_geometry.obj`` is a V-HACD decomposition),
  else a V-HACD decomposition of the visual mesh when it is clearly concave (a mug stays hollow), cached on
  disk under a key of the mesh bytes and the V-HACD parameters, else one convex hull of at most
  :data:`MAX_HULL_POINTS` vertices (a 3600-vertex hull steps ~15× slower than a 128-vertex one);
- the albedo texture named by the ``.mtl`` file's ``map_Kd`` (also found where Google Scanned Objects keep it,
  ``materials/textures/``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidalign.errors import InputError

MAX_HULL_POINTS = 128
CONCAVE_RATIO = 0.9  # volume / hull volume below this: decompose instead of one hull
VHACD_DEFAULTS = {"resolution": 100_000, "maxNumVerticesPerCH": 64}  # pybullet.vhacd's own defaults otherwise


def cache_dir() -> Path:
    """Where derived files (convex decompositions, procedural backgrounds) live: ``$VIDALIGN_CACHE`` or
    ``~/.cache/vidalign``; every file is written to a temporary name and renamed, so workers can share it."""
    root = Path(os.environ.get("VIDALIGN_CACHE") or Path.home() / ".cache" / "vidalign")
    root.mkdir(parents=True, exist_ok=True)
    return root


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class ObjMesh:
    """Positions ``[V, 3]`` and triangles ``[F, 3]`` (polygons fanned) of a Wavefront OBJ, plus its parts."""

    vertices: np.ndarray
    faces: np.ndarray
    parts: int  # ``o``/``g`` sections with faces (PyBullet makes one convex hull per part)
    mtllib: str | None
    face_part: np.ndarray  # [F] part index of each triangle

    def part_points(self) -> list[np.ndarray]:
        """The vertices each part's faces use."""
        return [self.vertices[np.unique(self.faces[self.face_part == k])] for k in range(self.parts)]


def _index(token: str, n: int) -> int:
    i = int(token.split("/", 1)[0])
    return i - 1 if i > 0 else n + i


@functools.lru_cache(maxsize=512)
def read_obj(path: str) -> ObjMesh:
    """Parse ``v``, ``f``, ``o``/``g`` and ``mtllib`` lines of an OBJ file."""
    verts: list[tuple[float, float, float]] = []
    faces: list[tuple[int, int, int]] = []
    face_part: list[int] = []
    parts, part_has_faces, mtllib = 0, False, None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                head = line[:2]
                if head == "v ":
                    p = line.split()
                    verts.append((float(p[1]), float(p[2]), float(p[3])))
                elif head == "f ":
                    idx = [_index(t, len(verts)) for t in line.split()[1:]]
                    if not part_has_faces:
                        parts, part_has_faces = parts + 1, True
                    faces.extend((idx[0], idx[k], idx[k + 1]) for k in range(1, len(idx) - 1))
                    face_part.extend([parts - 1] * (len(idx) - 2))
                elif head in ("o ", "g "):
                    part_has_faces = False
                elif line.startswith("mtllib") and mtllib is None:
                    mtllib = line.split(None, 1)[1].strip() if len(line.split()) > 1 else None
    except OSError as exc:
        raise InputError(path, None, f"cannot read mesh ({exc})", "check the asset folder") from exc
    except (ValueError, IndexError) as exc:
        raise InputError(path, None, f"malformed OBJ line ({exc})", "re-export the mesh as OBJ") from exc
    if len(verts) < 4:
        raise InputError(path, None, f"mesh has {len(verts)} vertices", "use a closed mesh with >= 4 vertices")
    v = np.asarray(verts, dtype=np.float64)
    if not np.isfinite(v).all():
        raise InputError(path, None, f"{int((~np.isfinite(v).all(axis=1)).sum())} vertices have non-finite (NaN/inf) "
                         "coordinates", "repair or re-export the mesh, or remove it from the asset folder")
    fa = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if fa.size and (fa.min() < 0 or fa.max() >= len(v)):
        raise InputError(path, None, "a face indexes a missing vertex", "re-export the mesh as OBJ")
    return ObjMesh(v, fa, max(parts, 1), mtllib, np.asarray(face_part, dtype=np.int64))


def read_obj_vertices(path: str) -> np.ndarray:
    """Vertex positions ``[V, 3]`` of a Wavefront OBJ."""
    return read_obj(path).vertices


_NONFINITE = re.compile(rb"^v[ \t][^\n]*?(?:nan|inf)", re.IGNORECASE | re.MULTILINE)


def has_nonfinite_vertices(path: str) -> bool:
    """Whether an OBJ file has a vertex line with a NaN or infinite coordinate (a byte scan, not a parse)."""
    with open(path, "rb") as f:
        data = f.read()
    lowered = (b"nan", b"NaN", b"NAN", b"inf", b"Inf", b"INF")
    return any(t in data for t in lowered) and _NONFINITE.search(data) is not None


def nonfinite_meshes(paths: tuple[str, ...]) -> frozenset[str]:
    """The OBJ files among ``paths`` with non-finite vertices. The answer is cached on disk under the paths,
    sizes and modification times, so a worker process (or the next build) does not read the meshes again."""
    stats = []
    for p in sorted(set(paths)):
        st = os.stat(p)
        stats.append(f"{p}\t{st.st_size}\t{st.st_mtime_ns}")
    key = hashlib.sha256("\n".join(stats).encode()).hexdigest()[:24]
    record = cache_dir() / "mesh_checks" / f"{key}.txt"
    if record.is_file():
        return frozenset(line for line in record.read_text(encoding="utf-8").splitlines() if line)
    bad = sorted(p for p in set(paths) if has_nonfinite_vertices(p))
    atomic_write(record, "".join(f"{p}\n" for p in bad).encode())
    return frozenset(bad)


_MTLLIB = re.compile(rb"^mtllib[ \t]+([^\r\n]+)", re.MULTILINE)


def obj_mtllib(path: str) -> str | None:
    """The first ``mtllib`` of an OBJ, found without parsing its geometry (catalogues list many meshes)."""
    try:
        with open(path, "rb") as f:
            match = _MTLLIB.search(f.read())
    except OSError as exc:
        raise InputError(path, None, f"cannot read mesh ({exc})", "check the asset folder") from exc
    return match.group(1).decode("utf-8", errors="replace").strip() if match else None


def obj_texture(path: str) -> str | None:
    """The albedo image of an OBJ (``map_Kd`` of its ``.mtl``), as an absolute path, or None.

    Looks where the ``.mtl`` says, then beside the OBJ and in ``../materials/textures/`` (the layout of
    Google Scanned Objects, whose ``model.mtl`` names ``texture.png`` without its folder)."""
    mtllib = obj_mtllib(path)
    obj_dir = Path(path).parent
    if not mtllib:
        return None
    mtl = obj_dir / mtllib
    try:
        text = mtl.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    match = re.search(r"^\s*map_Kd\s+(?:-\S+\s+\S+\s+)*(.+?)\s*$", text, flags=re.M)
    if not match:
        return None
    name = match.group(1).replace("\\", "/")
    for cand in (mtl.parent / name, obj_dir / Path(name).name,
                 obj_dir.parent / "materials" / "textures" / Path(name).name):
        if cand.is_file():
            return str(cand.resolve())
    return None


def mass_properties(vertices: np.ndarray, faces: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Volume, centre of mass and second moment ``∫(x−c)(x−c)ᵀ dV`` of a closed, outward-wound triangle mesh
    (unit density), summed over the signed tetrahedra (origin, a, b, c)."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    vol = np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0
    volume = float(vol.sum())
    if abs(volume) < 1e-15:
        return 0.0, np.zeros(3), np.zeros((3, 3))
    s = a + b + c
    com = (vol[:, None] * s).sum(axis=0) / 4.0 / volume
    second = (np.einsum("i,ij,ik->jk", vol, a, a) + np.einsum("i,ij,ik->jk", vol, b, b)
              + np.einsum("i,ij,ik->jk", vol, c, c) + np.einsum("i,ij,ik->jk", vol, s, s)) / 20.0
    second -= volume * np.outer(com, com)
    return volume, com, second


def is_closed(vertices: np.ndarray, faces: np.ndarray) -> bool:
    """Whether every edge (after welding coincident vertices, as UV seams split them) has an even number of faces."""
    if len(faces) < 4:
        return False
    scale = float(np.ptp(vertices, axis=0).max()) or 1.0
    _, weld = np.unique(np.round(vertices / scale * 1e6).astype(np.int64), axis=0, return_inverse=True)
    f = weld.reshape(-1)[faces]
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return bool(len(counts)) and bool(np.all(counts % 2 == 0))  # closed (non-manifold seams allowed)


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


def _hull(points: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Convex hull vertices and outward-wound triangles."""
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = ConvexHull(points)
    except QhullError as exc:
        raise InputError(source, None, f"no convex hull ({str(exc).splitlines()[0]})",
                         "use a solid (non-flat) mesh") from exc
    tri = hull.simplices.copy()
    centre = points[hull.vertices].mean(axis=0)
    a, b, c = (points[tri[:, k]] for k in range(3))
    inward = np.einsum("ij,ij->i", np.cross(b - a, c - a), a - centre) < 0
    tri[inward] = tri[inward][:, ::-1]
    return points, tri


@dataclass(frozen=True)
class MeshInfo:
    """Unscaled geometry of a visual/collision mesh pair (metres at native scale)."""

    lo: tuple[float, float, float]  # visual AABB
    hi: tuple[float, float, float]
    hull_volume: float  # convex hull of the collision vertices
    hull_points: tuple[tuple[float, float, float], ...]  # ≤ MAX_HULL_POINTS hull vertices (single-hull collider)
    volume: float  # closed visual mesh volume (the hull's when the mesh is not closed)
    com: tuple[float, float, float]  # centre of mass (uniform density)
    second_moment: tuple[float, ...]  # ∫(x−com)(x−com)ᵀ dV, row-major 3×3
    closed: bool
    collision_parts: int  # parts of the collision mesh file (> 1: a convex decomposition)

    @property
    def centre(self) -> np.ndarray:
        return (np.asarray(self.lo) + np.asarray(self.hi)) / 2

    @property
    def extent(self) -> np.ndarray:
        return np.asarray(self.hi) - np.asarray(self.lo)

    @property
    def concave(self) -> bool:
        return self.volume < CONCAVE_RATIO * self.hull_volume


@functools.lru_cache(maxsize=4096)
def mesh_info(mesh: str, collision_mesh: str | None = None) -> MeshInfo:
    """Geometry and mass properties of a mesh pair, cached per process."""
    vis = read_obj(mesh)
    lo, hi = vis.vertices.min(axis=0), vis.vertices.max(axis=0)
    if not np.all(hi - lo > 0):
        raise InputError(mesh, None, "mesh is flat along an axis", "use a solid mesh")
    coll = vis if collision_mesh in (None, mesh) else read_obj(collision_mesh)
    pts, tri = _hull(coll.vertices, collision_mesh or mesh)
    hull_volume, hull_com, hull_second = mass_properties(pts, tri)
    hull_pts = farthest_points(pts[np.unique(tri)], MAX_HULL_POINTS)
    closed = is_closed(vis.vertices, vis.faces)
    volume, com, second = mass_properties(vis.vertices, vis.faces) if closed else (0.0, None, None)
    if volume < 0:  # inward-wound mesh: flip
        volume, second = -volume, -second
    if not closed or volume <= 1e-3 * hull_volume:  # not a solid: the collider's convex parts instead
        volume, com, second, closed = hull_volume, hull_com, hull_second, False
        if coll.parts > 1:
            props = []
            for part in coll.part_points():
                try:
                    props.append(mass_properties(*_hull(part, collision_mesh or mesh)))
                except InputError:  # a flat sliver of a decomposition holds no volume
                    continue
            total = sum(v for v, _, _ in props)
            if total > 0:
                com = sum(v * c for v, c, _ in props) / total
                second = sum(s2 + v * np.outer(c - com, c - com) for v, c, s2 in props)
                volume = total
    return MeshInfo(tuple(lo.tolist()), tuple(hi.tolist()), float(hull_volume), tuple(map(tuple, hull_pts.tolist())),
                    float(volume), tuple(np.asarray(com).tolist()), tuple(np.asarray(second).ravel().tolist()),
                    closed, coll.parts)


def convex_decomposition(mesh: str, **params: int | float) -> str:
    """A V-HACD decomposition of ``mesh`` (one convex part per ``o`` section), computed once and cached on disk
    under the hash of the mesh bytes and the parameters (PyBullet's ``vhacd`` is deterministic)."""
    import pybullet as pb

    opts = {**VHACD_DEFAULTS, **params}
    key = hashlib.sha256(Path(mesh).read_bytes() + repr(sorted(opts.items())).encode()).hexdigest()[:24]
    out = cache_dir() / "vhacd" / f"{key}.obj"
    if out.is_file():
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from vidalign.simulation.render import quiet_stdout  # lazy: render imports this module

    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tmp_out, log = os.path.join(tmp, "out.obj"), os.path.join(tmp, "vhacd.log")
        client = pb.connect(pb.DIRECT)
        try:
            with quiet_stdout(stderr=True):  # V-HACD prints its progress bars
                pb.vhacd(mesh, tmp_out, log, physicsClientId=client, **opts)
        finally:
            pb.disconnect(physicsClientId=client)
        if not os.path.isfile(tmp_out) or read_obj.__wrapped__(tmp_out).parts < 1:
            raise InputError(mesh, None, "V-HACD produced no convex parts", "check that the mesh is a closed solid")
        os.replace(tmp_out, out)
    return str(out)


def scaled_inertia(info: MeshInfo, scale: np.ndarray, density: float) -> tuple[np.ndarray, np.ndarray]:
    """Principal moments and principal axes (columns, a rotation) of the mesh scaled by ``diag(scale)``:
    the second moment transforms as ``det(S)·S C S``, the inertia is ``tr(C)·I − C``."""
    s = np.diag(np.asarray(scale, dtype=np.float64))
    c = abs(float(np.prod(scale))) * s @ np.asarray(info.second_moment).reshape(3, 3) @ s * density
    inertia = np.trace(c) * np.eye(3) - c
    moments, axes = np.linalg.eigh((inertia + inertia.T) / 2)
    if np.linalg.det(axes) < 0:
        axes[:, 2] = -axes[:, 2]
    return np.maximum(moments, 1e-12), axes


__all__ = ["MAX_HULL_POINTS", "MeshInfo", "ObjMesh", "cache_dir", "atomic_write", "read_obj", "read_obj_vertices",
           "has_nonfinite_vertices", "nonfinite_meshes",
           "obj_texture", "mass_properties", "is_closed", "farthest_points", "mesh_info", "convex_decomposition",
           "scaled_inertia", "CONCAVE_RATIO", "VHACD_DEFAULTS"]
