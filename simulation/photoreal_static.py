"""The ``mitsuba`` renderer's static-background mode: a clip's background once, per frame what the objects change.

A drop clip's camera, floor, wall and sky stay put for all its frames; only the objects move. With a preset's
``static_spp`` > 0 the renderer (:mod:`vidalign.simulation.photoreal`) path traces the background (the scene
without its objects) once per clip at ``static_spp`` samples per pixel, denoised, then per frame path traces,
with the full scene and the preset's samples per pixel, only the pixels the objects can change, denoises them
on crops with the background around them as context, and keeps the background elsewhere. Re-rendered:

1. pixels whose camera rays, anywhere in the pixel, can meet an object's bounding sphere (:func:`sphere_pixels`):
   there the geometry pass casts its rays into the full scene as a full render does, so masks and depth are the
   same; elsewhere they are the background's;
2. surface points in a bounding sphere's shadow for a delta light (the sun, the point lights) whose light there
   is visible (blocking it all moves the pixel by more than the tolerance): exact segment tests;
3. surface points whose radiance the objects can change by more than the tolerance through the sky, map or
   studio light they block and the light they reflect. The background's surfaces are the floor, a plane: a
   floor point sees only the environment (sky, map or studio surroundings, all at infinity) and the delta
   lights, so an object changes its irradiance by at most ``Ω⊥ · max(L_env in the sphere's cone, L_object)``
   with ``Ω⊥`` the projected solid angle of its bounding sphere (exact, horizon included:
   :func:`sphere_form_factor`), :class:`ConeMax` bounding the environment inside the cone, and ``L_object`` the
   object's albedo times the most light that can reach it. Floor → object → floor light is inside that bound.
   Not bounded: glints of glossy objects' specular lobes onto the floor, and several delta lights each too weak
   to matter alone blocked at once.

"More than the tolerance" means more than ``static_tolerance`` 8-bit sRGB levels in some channel of the
background's value there (:func:`sensitivity`); pixel sets are dilated by one pixel (a pixel's samples spread
over its footprint). All of it is conservative geometry on numpy arrays, a pure function of the frame's poses:
the same seed gives the same frames.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from vidalign.simulation.photoreal_scene import equirect_dirs

GUIDES = ("albedo.R", "albedo.G", "albedo.B", "normal.X", "normal.Y", "normal.Z")
CROP_BLOCK = 4  # denoised crops: dynamic pixels grown by one block of context, in whole blocks
STATIC_FRAME = 2**31 - 1  # frame_seed key of the background pass (no trajectory frame has it)
CONE_ROWS = 16  # ConeMax resolution: 16 × 32 texels of ~11°
STATIC_OIDN = "high"  # the background is denoised once per clip: at OIDN's best quality


def srgb_curve(x: np.ndarray) -> np.ndarray:
    """sRGB transfer curve of linear ``x`` in [0, 1] (no quantisation)."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def srgb_inverse(y: np.ndarray) -> np.ndarray:
    y = np.clip(y, 0.0, 1.0)
    return np.where(y <= 0.04045, y / 12.92, ((y + 0.055) / 1.055) ** 2.4)


def pixel_half_angle(camera: Any) -> float:
    """An upper bound of the angle between a pixel's centre ray and any ray through the same pixel."""
    return math.atan(math.sqrt(0.5) / float(camera.focal_px))


def sphere_pixels(dirs: np.ndarray, origin: np.ndarray, centres: np.ndarray, radii: np.ndarray,
                  half_angle: float) -> np.ndarray:
    """Pixels ``[P]`` (unit centre rays ``dirs [P, 3]`` from ``origin``) whose rays can meet any sphere."""
    out = np.zeros(len(dirs), bool)
    for c, r in zip(np.asarray(centres, np.float64), np.asarray(radii, np.float64)):
        v = c - origin
        d = float(np.linalg.norm(v))
        if d <= r:
            return np.ones(len(dirs), bool)
        cone = min(math.asin(r / d) + half_angle, math.pi)
        out |= dirs @ (v / d) >= math.cos(cone)
    return out


def sphere_form_factor(cos_theta: np.ndarray, sin2_alpha: np.ndarray) -> np.ndarray:
    """Ω⊥/π of a sphere of angular radius α whose centre is θ from a surface normal: the cosine-weighted share of
    the hemisphere it covers, the horizon clip included (the sphere-light illuminance of Lagarde & de Rousiers,
    "Moving Frostbite to PBR", 2014: sin²α cos θ fully above the horizon, Snyder's formula across it)."""
    cos_t = np.clip(np.asarray(cos_theta, np.float64), -1.0, 1.0)
    s2 = np.clip(np.asarray(sin2_alpha, np.float64), 1e-12, 1.0)
    above = cos_t * cos_t > s2
    with np.errstate(divide="ignore", invalid="ignore"):
        sin_t = np.sqrt(np.maximum(1.0 - cos_t * cos_t, 1e-12))
        x = np.sqrt(np.maximum(1.0 / s2 - 1.0, 0.0))
        y = np.clip(-x * cos_t / sin_t, -1.0, 1.0)
        root = sin_t * np.sqrt(1.0 - y * y)
        across = ((cos_t * np.arccos(y) - x * root) * s2 + np.arctan2(root, x)) / math.pi
    return np.clip(np.where(above, s2 * np.maximum(cos_t, 0.0), across), 0.0, 1.0)


def sensitivity(display: np.ndarray, albedo: np.ndarray, tolerance: float) -> np.ndarray:
    """Per point ``[P]``: the smallest irradiance change, in display units (what a white surface would show), that
    moves the point's 8-bit sRGB value (``display [P, 3]``, albedo ``[P, 3]``) by more than ``tolerance`` levels
    in some channel. Darkening is the one bounded: for a given amount it is the larger change (the sRGB curve is
    concave)."""
    base = np.clip(np.asarray(display, np.float64), 0.0, 1.0)
    target = srgb_curve(base) - tolerance / 255.0
    lin = np.where(target > 0, srgb_inverse(target), -np.inf)  # at or near black no darkening is visible
    need = (base - lin) / np.maximum(np.asarray(albedo, np.float64), 1e-6)
    return need.min(axis=1)


class ConeMax:
    """An upper bound of an equirectangular map's radiance inside any cone of directions: the map max-pooled to
    ``rows × 2·rows`` texels, then, per texel and per cone half-angle level, the maximum over every texel within
    that angle plus two texel radii (so any direction in the cone is covered from the texel holding its axis)."""

    def __init__(self, image: np.ndarray, rows: int = CONE_ROWS):
        img = np.asarray(image, np.float32)
        if img.ndim == 3:
            img = img.max(axis=2)
        rows = max(1, min(int(rows), img.shape[0], img.shape[1] // 2))
        r0 = np.linspace(0, img.shape[0], rows + 1).astype(int)[:-1]
        c0 = np.linspace(0, img.shape[1], 2 * rows + 1).astype(int)[:-1]
        pooled = np.maximum.reduceat(np.maximum.reduceat(img, r0, axis=0), c0, axis=1).ravel().astype(np.float64)
        self.rows = rows
        dirs = equirect_dirs(2 * rows).reshape(-1, 3)
        angle = np.arccos(np.clip(dirs @ dirs.T, -1.0, 1.0))
        texel = math.pi / rows * math.sqrt(0.5)  # angle from a texel's centre to its corners, at most
        self.levels = np.concatenate([texel * 2.0 ** (np.arange(10) / 2), [math.pi]])
        self.maps = np.stack([np.where(angle <= a + 2 * texel, pooled[None, :], 0.0).max(axis=1)
                              for a in self.levels])
        self.peak = float(pooled.max())
        self.mean = float((img.mean(axis=1) * np.cos((0.5 - (np.arange(img.shape[0]) + 0.5) / img.shape[0])
                                                     * math.pi)).sum() / (2 * img.shape[0] / math.pi))

    def __call__(self, dirs: np.ndarray, half_angle: np.ndarray) -> np.ndarray:
        """Bound ``[P]`` of the radiance within ``half_angle [P]`` of unit ``dirs [P, 3]``."""
        rows = self.rows
        el = np.arcsin(np.clip(dirs[:, 2], -1.0, 1.0))
        az = np.arctan2(dirs[:, 1], dirs[:, 0])
        row = np.clip(((0.5 - el / math.pi) * rows).astype(int), 0, rows - 1)
        col = np.clip(((0.5 - az / (2 * math.pi)) * 2 * rows).astype(int), 0, 2 * rows - 1)
        level = np.minimum(np.searchsorted(self.levels, half_angle), len(self.levels) - 1)
        return self.maps[level, row * 2 * rows + col]


class DeltaLight:
    """A delta light seen from the background points it lights visibly (blocking it there moves them by more than
    the tolerance), sorted by a key that culls the shadow test: for a sun (unit ``direction`` towards it) the
    points' coordinate across it (a sphere of radius r shadows only points within r of its own), for a point
    light (at ``position``) the elevation of the direction from it to them (a sphere of angular radius β seen
    from the light shadows only directions within β of its centre's)."""

    def __init__(self, points: np.ndarray, index: np.ndarray, direction: np.ndarray | None = None,
                 position: np.ndarray | None = None):
        p = np.asarray(points, np.float64)[index]
        if direction is not None:
            s = np.asarray(direction, np.float64)
            across = np.cross(s, [1.0, 0.0, 0.0] if abs(s[0]) < 0.9 else [0.0, 1.0, 0.0])
            self.across = across / np.linalg.norm(across)
            key = p @ self.across
            dirs, dist = np.broadcast_to(s, p.shape), np.full(len(p), np.inf)
        else:
            u = np.asarray(position, np.float64) - p
            dist = np.linalg.norm(u, axis=1)
            dirs = u / np.maximum(dist, 1e-12)[:, None]
            key = np.arcsin(np.clip(-dirs[:, 2], -1.0, 1.0))  # elevation of (point − light) seen from the light
        order = np.argsort(key, kind="stable")
        self.direction, self.position = direction, position
        self.key, self.index = key[order], np.asarray(index)[order]
        self.points, self.dirs, self.dist = p[order], np.ascontiguousarray(dirs[order]), dist[order]

    def shadowed(self, c: np.ndarray, r: float) -> np.ndarray:
        """Background points (indices) whose path to the light passes within ``r`` of ``c``."""
        if self.direction is not None:
            mid, half = float(c @ self.across), r
        else:
            to_c = c - np.asarray(self.position, np.float64)
            dc = float(np.linalg.norm(to_c))
            if dc <= r:
                return self.index
            mid, half = math.asin(float(np.clip(to_c[2] / dc, -1.0, 1.0))), math.asin(r / dc) + 1e-9
        lo, hi = np.searchsorted(self.key, [mid - half, mid + half])
        v = c - self.points[lo:hi]
        along = np.einsum("ij,ij->i", v, self.dirs[lo:hi])
        t = np.clip(along, 0.0, self.dist[lo:hi])
        return self.index[lo:hi][np.einsum("ij,ij->i", v, v) - 2 * t * along + t * t <= r * r]


class Influence:
    """The background's surface points and how much change each can take unseen; :meth:`changed` per frame."""

    def __init__(self, points: np.ndarray, normals: np.ndarray, need: np.ndarray, reference: float,
                 cone_max: ConeMax, suns: list[tuple[np.ndarray, float]], lamps: list[tuple[np.ndarray, float]]):
        """``need [P]``: :func:`sensitivity` in W/m² (display units × ``reference``, the irradiance shown as
        white); ``suns``: (unit direction towards it, irradiance); ``lamps``: (position, intensity W/sr)."""
        self.points, self.normals = np.asarray(points, np.float64), np.asarray(normals, np.float64)
        self.sq = np.einsum("ij,ij->i", self.points, self.points)
        self.pn = np.einsum("ij,ij->i", self.points, self.normals)
        self.need, self.reference, self.cone_max = np.asarray(need, np.float64), float(reference), cone_max
        self.lights: list[DeltaLight] = []
        for direction, irradiance in suns:
            s = np.asarray(direction, np.float64)
            e = irradiance * np.clip(self.normals @ s, 0.0, None)
            self.lights.append(DeltaLight(self.points, np.flatnonzero(e > self.need), direction=s))
        for position, intensity in lamps:
            u = np.asarray(position, np.float64) - self.points
            dist = np.linalg.norm(u, axis=1)
            cos = np.einsum("ij,ij->i", self.normals, u) / np.maximum(dist, 1e-12)
            e = intensity * np.clip(cos, 0.0, None) / np.maximum(dist, 1e-6) ** 2
            self.lights.append(DeltaLight(self.points, np.flatnonzero(e > self.need), position=position))

    def changed(self, centres: np.ndarray, radii: np.ndarray, radiance: np.ndarray) -> np.ndarray:
        """Bool ``[P]``: the points that spheres (``centres [N, 3]``, ``radii [N]``) with radiance bounds
        ``radiance [N]`` (as π·L, W/m²) can change by more than ``need``."""
        out = np.zeros(len(self.points), bool)
        centres = np.asarray(centres, np.float64)
        for c, r in zip(centres, radii):
            for light in self.lights:
                out[light.shadowed(c, float(r))] = True
        # sky and bounce light: Σ Ω⊥/π · max(π L_env in the cone, π L_object); first a cheap bound with the map's
        # peak, Ω⊥/π ≤ sin²α · cos(θ − α) ≤ (r/d)² · (h + r)/d (h: the centre's height over the point's tangent
        # plane, 0 below it), then the exact form factor and the cone's own maximum where that one is too big
        env_peak = self.cone_max.peak * self.reference
        radii = np.asarray(radii, np.float64)
        d2 = np.maximum(self.sq[:, None] - 2.0 * (self.points @ centres.T)
                        + np.einsum("ij,ij->i", centres, centres)[None], 1e-12)
        h = self.normals @ centres.T - self.pn[:, None]
        slope = np.clip((np.maximum(h, 0.0) + radii[None]) / np.sqrt(d2), 0.0, 1.0)
        weight = radii ** 2 * np.maximum(env_peak, np.asarray(radiance, np.float64))
        cheap = (weight[None] / d2 * slope).sum(axis=1)
        rest = np.flatnonzero(~out & (cheap > self.need))
        if len(rest):
            total = np.zeros(len(rest))
            for c, r, lo, q in zip(centres, radii, radiance, d2[rest].T):
                v = c - self.points[rest]
                dist = np.sqrt(np.maximum(q, 0.0))
                dn = v / np.maximum(dist, 1e-12)[:, None]
                sin2 = np.minimum(r * r / np.maximum(q, 1e-12), 1.0)
                frac = np.where(dist <= r, 1.0,
                                sphere_form_factor(np.einsum("ij,ij->i", dn, self.normals[rest]), sin2))
                env = self.cone_max(dn, np.arcsin(np.sqrt(sin2))) * self.reference
                total += frac * np.maximum(env, lo)
            out[rest[total > self.need[rest]]] = True
        return out


def dynamic_pixels(influence: Influence, floor: np.ndarray, dirs: np.ndarray, origin: np.ndarray,
                   half_angle: float, width: int, centres: np.ndarray, radii: np.ndarray, radiance: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(objects, dynamic)``: bool ``[W, W]`` masks of the pixels whose rays can meet an object, and of every
    pixel the objects can change by more than the tolerance (those, the points ``influence`` flags, whose
    row-major pixels are ``floor``), grown by one pixel."""
    objects = sphere_pixels(dirs, origin, centres, radii, half_angle).reshape(width, width)
    changed = np.zeros(width * width, bool)
    if len(radii) and len(floor):
        changed[floor[influence.changed(centres, radii, radiance)]] = True
    dynamic = objects | changed.reshape(width, width)
    if dynamic.any():
        dynamic = ndimage.binary_dilation(dynamic, np.ones((3, 3), bool))
    return objects, dynamic


def crop_boxes(dynamic: np.ndarray, block: int = CROP_BLOCK, merge_px: int = 1024
               ) -> list[tuple[np.ndarray, tuple[slice, slice]]]:
    """Rectangles to denoise, in whole ``block × block`` tiles: each connected group of tiles holding dynamic
    pixels grown by one tile of context, merged while a merged rectangle costs at most ``merge_px`` more
    pixels than its parts. Returns (the dynamic pixels the rectangle owns, the rectangle): every dynamic pixel is
    owned by exactly one."""
    h, w = dynamic.shape
    hb, wb = -(-h // block), -(-w // block)
    tiles = np.zeros((hb * block, wb * block), bool)
    tiles[:h, :w] = dynamic
    tiles = tiles.reshape(hb, block, wb, block).any(axis=(1, 3))
    labels, _ = ndimage.label(ndimage.binary_dilation(tiles, np.ones((3, 3), bool)), np.ones((3, 3), int))
    boxes = [[s0.start, s0.stop, s1.start, s1.stop, [k + 1]] for k, (s0, s1) in enumerate(ndimage.find_objects(labels))]

    def area(b: list) -> int:
        return (b[1] - b[0]) * (b[3] - b[2]) * block * block

    merged = True
    while merged and len(boxes) > 1:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                u = [min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]), a[4] + b[4]]
                if area(u) <= area(a) + area(b) + merge_px:
                    boxes[i], merged = u, True
                    del boxes[j]
                    break
            if merged:
                break
    pixel_labels = np.repeat(np.repeat(labels, block, axis=0), block, axis=1)[:h, :w]
    return [(dynamic & np.isin(pixel_labels, ks),
             (slice(r0 * block, min(r1 * block, h)), slice(c0 * block, min(c1 * block, w))))
            for r0, r1, c0, c1, ks in boxes]


def sample_pixels(mi: Any, dr: Any, scene: Any, sampler: Any, pixels: np.ndarray, width: int, spp: int,
                  seed: int) -> np.ndarray:
    """Path trace ``spp`` samples in each of the row-major ``pixels`` of the scene's sensor (uniform positions in
    the pixel, as ``mi.render`` with a box-filtered film) and average them: ``[N, 9]`` radiance, albedo and
    shading normal (the AOV integrator's guides for the denoiser)."""
    sensor, integrator = scene.sensors()[0], scene.integrator()
    sampler.seed(int(seed), len(pixels) * int(spp))
    pix = np.repeat(np.asarray(pixels, np.int64), int(spp))
    px, py = mi.Float((pix % width).astype(np.float32)), mi.Float((pix // width).astype(np.float32))
    jitter = sampler.next_2d()
    pos = mi.Point2f((px + jitter.x) / width, (py + jitter.y) / width)
    ray, _ = sensor.sample_ray_differential(0.0, sampler.next_1d(), pos, mi.Point2f(0.5, 0.5))
    radiance, _, aovs = integrator.sample(scene, sampler, ray)
    names = list(integrator.aov_names())
    channels = [radiance.x, radiance.y, radiance.z] + [aovs[names.index(k)] for k in GUIDES]
    dr.eval(channels)
    out = np.stack([np.array(c, np.float32) for c in channels], 1)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0).reshape(len(pixels), int(spp), 9).mean(axis=1)


def object_albedo(obj: Any) -> float:
    """A bound of an object's reflectance: its largest linear base colour (texture × colour) plus 0.1 for the
    principled BSDF's specular layer (1 for metals)."""
    from vidalign.simulation.assets import MATERIALS
    from vidalign.simulation.photoreal_scene import linear_rgb, read_texture

    if MATERIALS[obj.material]["metallic"] > 0:
        return 1.0
    base = linear_rgb(obj.rgb)
    if obj.texture:
        base = base * read_texture(obj.texture).reshape(-1, 3).max(axis=0)
    return float(min(1.0, float(np.max(base)) + 0.1))


def render_static(ren: Any, mi: Any, dr: Any, variant: str, scene: Any, trajectories: Any, parts: Any,
                  mi_scene: Any, params: Any, geometry: Any, denoisers: Any
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB, depth and masks of a clip in the static-background mode (see the module docstring)."""
    from vidalign.simulation.photoreal import _GeometryPass, frame_seed, pose_objects, to_srgb8
    from vidalign.simulation.photoreal_scene import point_light_positions

    cam = scene.camera
    w, t, n = cam.resolution, trajectories.num_frames, len(scene.objects)
    gain = 2.0 ** float(ren.exposure)
    scale = np.float32(parts.exposure_scale)
    reference = math.pi / float(parts.exposure_scale)  # the irradiance shown as white
    # the background, once: the scene without its objects at static_spp, denoised at OIDN's high quality
    bg_scene = mi.load_dict({k: v for k, v in parts.scene_dict.items() if k not in parts.object_keys})
    image = np.array(mi.render(bg_scene, seed=frame_seed(scene.seed, ren.seed, STATIC_FRAME),
                               spp=int(ren.static_spp)), dtype=np.float32)
    colour = np.ascontiguousarray(image[..., 0:3] * scale)
    albedo = np.ascontiguousarray(np.clip(image[..., -6:-3], 0, 1))
    normal = np.ascontiguousarray(image[..., -3:])
    if ren.denoise:
        colour = denoisers.get((w, w), STATIC_OIDN)(colour, albedo, normal)
    base_rgb = to_srgb8(colour, ren.exposure)
    bg_geometry = _GeometryPass(mi, dr, bg_scene, cam, [], variant, parts.wall_x)
    t_bg, _ = bg_geometry.hits()
    base_depth = np.minimum(np.minimum(t_bg, bg_geometry.t_wall), cam.far).astype(np.float32).reshape(w, w)
    floor = np.flatnonzero(np.isfinite(t_bg))
    nrm = normal.reshape(-1, 3)[floor].astype(np.float64)
    length = np.linalg.norm(nrm, axis=1, keepdims=True)
    nrm = np.where(length > 1e-6, nrm / np.maximum(length, 1e-12), [0.0, 0.0, 1.0])
    env = parts.env_display if parts.env_display is not None else np.zeros((2, 4, 3), np.float32)
    cone = ConeMax(env)
    light = scene.lighting
    to_sun = np.asarray(light.light_direction, np.float64)
    lamps = [(pos, watts / (4 * math.pi)) for _, watts, pos in point_light_positions(scene)]
    influence = Influence(
        bg_geometry.origin + t_bg[floor, None] * bg_geometry.dirs[floor], nrm,
        sensitivity(colour.reshape(-1, 3)[floor] * gain, albedo.reshape(-1, 3)[floor], float(ren.static_tolerance))
        * reference / gain, reference, cone,
        [(to_sun / np.linalg.norm(to_sun), float(light.sun_energy))] if light.sun_energy > 0 else [], lamps)
    # what lights an object at most: the sun, the point lights from its nearest point, the environment (at most
    # π × its peak radiance, or 4π × its mean) and the floor (π × its brightest display value)
    env_on_object = (min(cone.peak, 4.0 * cone.mean) + float(colour.max())) * reference
    albedos = np.array([object_albedo(o) for o in scene.objects])
    radii = np.array([float(np.linalg.norm(m.positions, axis=1).max()) * (1 + 1e-4) + 1e-5 for m in parts.rest])
    half_angle = pixel_half_angle(cam)

    sampler = mi.load_dict({"type": "independent"})
    rgb = np.empty((t, w, w, 3), np.uint8)
    depth = np.empty((t, w, w), np.float32)
    masks = np.zeros((t, n, w, w), bool)
    flat = (colour.reshape(-1, 3), albedo.reshape(-1, 3), normal.reshape(-1, 3))
    for f in range(t):
        pose_objects(params, parts, trajectories, f)
        centres = np.asarray(trajectories.positions[f], np.float64)
        lit = [light.sun_energy + sum(i / max(float(np.linalg.norm(c - p)) - r, 1e-3) ** 2 for p, i in lamps)
               for c, r in zip(centres, radii)]
        objects, dynamic = dynamic_pixels(influence, floor, bg_geometry.dirs, bg_geometry.origin, half_angle, w,
                                          centres, radii, albedos * (np.array(lit) + env_on_object))
        depth[f] = base_depth
        rgb[f] = base_rgb
        cand = np.flatnonzero(objects)
        if len(cand):
            d, index = geometry.cast(cand)
            depth[f].reshape(-1)[cand] = d
            for i in range(n):
                masks[f, i].reshape(-1)[cand[index == i]] = True
        pixels = np.flatnonzero(dynamic)
        if not len(pixels):
            continue
        got = sample_pixels(mi, dr, mi_scene, sampler, pixels, w, int(ren.samples_per_pixel),
                            frame_seed(scene.seed, ren.seed, f))
        values = got[:, :3] * scale
        if ren.denoise:
            images = [a.copy() for a in flat]
            for a, v in zip(images, (values, np.clip(got[:, 3:6], 0, 1), got[:, 6:9])):
                a[pixels] = v
            col, alb, nrm_img = (a.reshape(w, w, 3) for a in images)
            out = np.zeros((w, w, 3), np.float32)
            for owned, box in crop_boxes(dynamic):
                shape = (box[0].stop - box[0].start, box[1].stop - box[1].start)
                den = denoisers.get(shape, str(ren.oidn_quality))(
                    np.ascontiguousarray(col[box]), np.ascontiguousarray(alb[box]), np.ascontiguousarray(nrm_img[box]))
                out[owned] = den[owned[box]]
            values = out[dynamic]
        rgb[f][dynamic] = to_srgb8(values, ren.exposure)
    return rgb, depth, masks


__all__ = ["render_static", "sample_pixels", "dynamic_pixels", "Influence", "ConeMax", "crop_boxes",
           "sphere_pixels", "sphere_form_factor", "sensitivity", "object_albedo", "srgb_curve", "pixel_half_angle"]
