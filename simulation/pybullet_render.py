"""The ``pybullet`` renderer: TinyRenderer rasterises, numpy shades (a small deferred renderer, CPU only).

Per frame TinyRenderer draws the objects twice, unlit: once from the camera (albedo with textures, z-buffer,
per-object segmentation) and once from the sun (a shadow map). Everything else is computed here, exactly:

- the backdrop by ray casting: the floor plane (ground texture tiled in metres and filtered by pixel footprint,
  or the environment map's ground projected from :data:`~vidalign.simulation.backgrounds.DOME_HEIGHT`), the
  studio wall, or the environment map itself (the sky);
- depth as the distance to the camera centre (Kubric's ``depth``), metric, from the ray length;
- light in linear RGB: hemispheric ambient tinted by the environment, the sun with soft (percentage-closer
  filtered) shadows cast by objects only (so plain floors never shadow themselves: no acne), the authors'
  key/fill/back point lights, ambient occlusion (analytic under objects, screen-space on them), a little
  specular; normalised so that a floor in full sun shows its declared colour (a studio wall is lit evenly, like
  a cyclorama, and shows its declared colour too);
- masks: the visible pixels of each object (segmentation where the object is nearer than the backdrop).

Colours (``SceneObject.rgb``, ``Background.*_rgb``, PNG textures) are sRGB display values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidalign.simulation.assets import MATERIALS
from vidalign.simulation.backgrounds import (
    DOME_HEIGHT,
    FOG_END,
    FOG_START,
    WALL_OFFSET,
    dome_floor_dirs,
    env_display_scale,
    linear_to_srgb,
    load_env,
    mip_level,
    srgb_to_linear,
    texture_pyramid,
)
from vidalign.simulation.backgrounds import luminance as _luminance
from vidalign.simulation.physics import Trajectories, direct_client
from vidalign.simulation.scene import Scene

AMBIENT = 0.5  # sky light on an up-facing surface, relative to the exposure
POINT_LIGHTS = (("key", 0.30), ("fill", 0.20), ("back", 0.20))  # the authors' 100/75/75 W rig, relative weights
PENUMBRA = 0.02  # m: half-width of the soft shadow edge (the sky's light, not only the sun's disc)


def _sample_tiled(levels: tuple[np.ndarray, ...], uv: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Bilinear lookups of a repeating texture at ``uv`` (tiles), at the mip level of ``footprint`` (tiles/pixel)."""
    out = np.zeros(uv.shape[:-1] + (3,), np.float32)
    size = levels[0].shape[1]
    lod = mip_level(footprint, size, len(levels))
    for k in np.unique(lod):
        sel = lod == k
        tex = levels[k]
        h, w = tex.shape[:2]
        x = (uv[sel][:, 0] % 1.0) * w - 0.5
        y = (uv[sel][:, 1] % 1.0) * h - 0.5
        x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
        fx, fy = (x - x0)[:, None], (y - y0)[:, None]
        x0, x1, y0, y1 = x0 % w, (x0 + 1) % w, y0 % h, (y0 + 1) % h
        out[sel] = ((tex[y0, x0] * (1 - fx) + tex[y0, x1] * fx) * (1 - fy)
                    + (tex[y1, x0] * (1 - fx) + tex[y1, x1] * fx) * fy)
    return out


@dataclass
class Backdrop:
    """What each pixel sees when no object is in the way (static camera: computed once per clip)."""

    z: np.ndarray  # [H, W] z-depth (inf for the sky)
    albedo: np.ndarray  # [H, W, 3] linear albedo of floor/wall; radiance for the sky
    normal: np.ndarray  # [H, W, 3]
    kind: np.ndarray  # [H, W] 0 sky, 1 floor, 2 wall
    fog: np.ndarray  # [H, W] blend of the floor towards the horizon
    sky: np.ndarray  # [H, W, 3] radiance of the environment along each ray
    sky_color: np.ndarray  # [3] ambient tint (luminance 1)
    env_scale: float


def backdrop(scene: Scene, rays: np.ndarray) -> Backdrop:
    cam, bg = scene.camera, scene.background
    origin = np.asarray(cam.position, dtype=np.float64)
    h, w = rays.shape[:2]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(rays[..., 2] < 0, -origin[2] / rays[..., 2], np.inf)
        wall_x = scene.config.spawn_max[0] + WALL_OFFSET
        t_wall = np.where(rays[..., 0] > 0, (wall_x - origin[0]) / rays[..., 0], np.inf) if bg.has_wall \
            else np.full((h, w), np.inf)
    kind = np.where(t_floor <= t_wall, 1, 2)
    z = np.minimum(t_floor, t_wall)
    kind = np.where(np.isfinite(z), kind, 0)
    points = origin + np.where(np.isfinite(z), z, 0.0)[..., None] * rays
    normal = np.zeros((h, w, 3))
    normal[kind == 1] = (0, 0, 1)
    normal[kind == 2] = (-1, 0, 0)
    albedo = np.zeros((h, w, 3), np.float32)
    env, scale = None, 1.0
    if bg.env_map:
        env = load_env(bg.env_map)
        scale = env_display_scale(env, bg.env_map)
        sky = env.lookup(rays) * scale
        sky_color, _ = env.hemispheres
        sky_color = sky_color / max(float(_luminance(sky_color)), 1e-6)
    else:
        sky = np.tile(srgb_to_linear(bg.wall_rgb), (h, w, 1))
        sky_color = np.ones(3, np.float32)
    floor = kind == 1
    if floor.any():
        if bg.floor_texture:
            uv = points[..., :2] / bg.floor_tile_m
            du = np.abs(np.diff(uv, axis=1, append=uv[:, -1:])).max(axis=-1)
            dv = np.abs(np.diff(uv, axis=0, append=uv[-1:])).max(axis=-1)
            albedo[floor] = _sample_tiled(texture_pyramid(bg.floor_texture), uv[floor],
                                          np.maximum(du, dv)[floor])
        elif env is not None:
            albedo[floor] = env.lookup(dome_floor_dirs(points[floor])) * scale
        else:
            albedo[floor] = srgb_to_linear(bg.floor_rgb)
    albedo[kind == 2] = srgb_to_linear(bg.wall_rgb)
    albedo[kind == 0] = sky[kind == 0]
    dist = np.where(np.isfinite(z), z * np.linalg.norm(rays, axis=-1), np.inf)
    fog = np.where(floor & (env is not None), np.clip((dist - FOG_START) / (FOG_END - FOG_START), 0, 1), 0.0)
    return Backdrop(z, albedo, normal, kind, fog.astype(np.float32), sky.astype(np.float32),
                    np.asarray(sky_color, np.float32), scale)


def _normals_at(points: np.ndarray, z: np.ndarray, index: np.ndarray, rays: np.ndarray, ii: np.ndarray,
                jj: np.ndarray) -> np.ndarray:
    """Surface normals at pixels ``(ii, jj)`` from positions: per axis the neighbour difference on the same object
    with the smaller depth jump (no smearing across silhouettes); facing the camera."""
    h, w = z.shape
    here, own = points[ii, jj], index[ii, jj]

    def diff(di: int, dj: int) -> np.ndarray:
        fi, fj = np.clip(ii + di, 0, h - 1), np.clip(jj + dj, 0, w - 1)
        bi, bj = np.clip(ii - di, 0, h - 1), np.clip(jj - dj, 0, w - 1)
        fwd, bwd = points[fi, fj] - here, here - points[bi, bj]
        jump_f = np.where((index[fi, fj] == own) & ((fi != ii) | (fj != jj)), np.abs(z[fi, fj] - z[ii, jj]), np.inf)
        jump_b = np.where((index[bi, bj] == own) & ((bi != ii) | (bj != jj)), np.abs(z[ii, jj] - z[bi, bj]), np.inf)
        return np.where((jump_f <= jump_b)[:, None], fwd, bwd)

    n = np.cross(diff(0, 1), diff(1, 0))
    ray = rays[ii, jj]
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    n = np.where(norm > 1e-12, n / np.maximum(norm, 1e-12), -ray / np.linalg.norm(ray, axis=-1, keepdims=True))
    flip = np.einsum("kc,kc->k", n, ray) > 0
    n[flip] = -n[flip]
    return n


_AO_DIRS = np.array([[math.cos(a), math.sin(a)] for a in np.linspace(0, 2 * math.pi, 6, endpoint=False)])
_AO_JITTER = (np.arange(16).reshape(4, 4) * 0.61803398875) % 1.0  # interleaved rotation per 4×4 block
AO_RADIUS = 0.12  # m


def _ambient_occlusion(points: np.ndarray, z: np.ndarray, focal: float, ii: np.ndarray, jj: np.ndarray,
                       normal: np.ndarray, radius: float = AO_RADIUS) -> np.ndarray:
    """Screen-space ambient occlusion at pixels ``(ii, jj)``: the share of nearby samples rising above the
    tangent plane."""
    h, w = z.shape
    p0 = points[ii, jj]
    r_px = np.clip(radius * focal / z[ii, jj], 0, 16)
    rot = _AO_JITTER[ii % 4, jj % 4] * 2 * math.pi
    cr, sr = np.cos(rot), np.sin(rot)
    occ = np.zeros(len(ii))
    for k, (c, s) in enumerate(_AO_DIRS):
        scale = r_px * (0.35 + 0.65 * ((k * 0.37 + 0.5) % 1.0))
        si = np.clip(np.round(ii + (c * sr + s * cr) * scale).astype(int), 0, h - 1)
        sj = np.clip(np.round(jj + (c * cr - s * sr) * scale).astype(int), 0, w - 1)
        v = points[si, sj] - p0
        d = np.linalg.norm(v, axis=-1)
        cos = np.einsum("kc,kc->k", v, normal) / np.maximum(d, 1e-9)
        occ += np.clip(cos - 0.1, 0, 1) * (d < 2.5 * radius) * (d > 1e-4)
    return np.clip(1.0 - 1.2 * occ / len(_AO_DIRS), 0.0, 1.0)


@dataclass
class _Light:
    view: list
    proj: list
    matrix: np.ndarray  # 4×4 world → clip
    view_matrix: np.ndarray
    size: int
    near: float
    far: float
    bias: float
    texel: float  # m per shadow-map pixel

    @property
    def soft_radius(self) -> int:
        """Shadow-map pixels of the penumbra half-width."""
        return max(1, int(round(PENUMBRA / self.texel)))

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Shadow-map pixel ``(x, y)``, depth along the light's axis, and whether inside the map."""
        hp = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], axis=-1)
        clip = hp @ self.matrix.T
        ndc = clip[..., :3] / clip[..., 3:4]
        depth = -(hp @ self.view_matrix.T)[..., 2]
        x = (ndc[..., 0] * 0.5 + 0.5) * self.size - 0.5
        y = (0.5 - ndc[..., 1] * 0.5) * self.size - 0.5
        inside = (x > -0.5) & (x < self.size - 0.5) & (y > -0.5) & (y < self.size - 0.5) & (depth < self.far)
        return x, y, depth, inside


def _sun_camera(pb: Any, client: int, scene: Scene, traj: Trajectories, size: int) -> _Light:
    """A narrow perspective camera 200 m along the sun direction (rays parallel within 0.5°) that sees every
    object in every frame."""
    half = np.array([np.linalg.norm(o.half_extents) for o in scene.objects])
    pos = traj.positions.reshape(-1, 3)
    lo, hi = pos.min(axis=0), pos.max(axis=0)
    centre = (lo + hi) / 2
    radius = float(np.linalg.norm(hi - lo) / 2 + half.max()) + 0.05
    to_sun = np.asarray(scene.lighting.light_direction, dtype=np.float64)
    to_sun /= np.linalg.norm(to_sun)
    dist = radius + 200.0
    eye = centre + to_sun * dist
    up = [0, 0, 1] if abs(to_sun[2]) < 0.99 else [1, 0, 0]
    fov = 2 * math.degrees(math.atan(radius / (dist - radius))) * 1.02
    near, far = dist - radius - 0.5, dist + radius + 0.5
    view = pb.computeViewMatrix(eye.tolist(), centre.tolist(), up, physicsClientId=client)
    proj = pb.computeProjectionMatrixFOV(fov, 1.0, near, far, physicsClientId=client)
    vm = np.asarray(view, dtype=np.float64).reshape(4, 4).T
    pm = np.asarray(proj, dtype=np.float64).reshape(4, 4).T
    texel = 2 * radius / size
    return _Light(view, proj, pm @ vm, vm, size, near, far, 2.0 * texel + 0.004, texel)


def pixel_centred(proj: Any, size: int) -> list[float]:
    """An OpenGL projection (column-major) shifted by half a pixel so that TinyRenderer, which samples at pixel
    corners, samples the pixel centres of :class:`~vidalign.simulation.geometry.Camera` (without it every
    object lands half a pixel right of and above its projection, away from the ray-cast backdrop)."""
    m = [float(v) for v in proj]
    m[8] += 1.0 / size  # x_ndc −= 1/size: half a pixel left
    m[9] += 1.0 / size  # y_ndc −= 1/size: half a pixel down
    return m


_PCF = [(a, b) for a in (-1.0, 0.0, 1.0) for b in (-1.0, 0.0, 1.0)]
_SRGB_LUT = np.round(linear_to_srgb(np.arange(4096) / 4095.0) * 255).astype(np.uint8)


def _encode(linear: np.ndarray) -> np.ndarray:
    """Linear RGB → sRGB uint8 through the shoulder and a lookup table."""
    x = _shoulder(np.maximum(linear, 0.0))
    return _SRGB_LUT[np.clip(x * 4095 + 0.5, 0, 4095).astype(np.int32)]


@dataclass
class _Static:
    """Per-clip shading of the backdrop, split so shadows and occlusion can be taken out per frame."""

    color: np.ndarray  # [H, W, 3] linear, fully lit, fog and sky included
    points: np.ndarray  # [H, W, 3] world points of the backdrop (far away for the sky)
    distance: np.ndarray  # [H, W] float32 distance of the backdrop to the camera centre (far clip for the sky)
    floor_grid: np.ndarray  # [H, W, 3] floor points, NaN elsewhere
    sun_part: np.ndarray  # [H, W, 3] what the sun adds (removed where shadowed)
    ambient_part: np.ndarray  # [H, W, 3] what sky light adds (scaled by occlusion)
    encoded: np.ndarray  # [H, W, 3] uint8
    floor_ij: tuple[np.ndarray, np.ndarray]  # floor pixels
    floor_points: np.ndarray  # [K, 3] their world points
    floor_light: tuple[np.ndarray, np.ndarray, np.ndarray]  # their shadow-map x, y (int) and inside flag


@dataclass
class PyBulletRenderer:
    """TinyRenderer geometry + numpy shading; see the module docstring."""

    shadows: bool = True
    soft_shadows: bool = True
    ambient_occlusion: bool = True
    shadow_map_size: int = 256
    name: str = "pybullet"

    def render(self, scene: Scene, trajectories: Trajectories):
        from vidalign.simulation.render import Rendering, depth_buffer_to_metric, quiet_stdout, visual_shape

        cam = scene.camera
        w = cam.resolution
        t, n = trajectories.num_frames, len(scene.objects)
        rays = cam.pixel_rays()
        ray_len = np.linalg.norm(rays, axis=-1)
        back = backdrop(scene, rays)
        rgb = np.zeros((t, w, w, 3), np.uint8)
        depth = np.zeros((t, w, w), np.float32)
        masks = np.zeros((t, n, w, w), bool)
        lights = self._lights(scene)
        unlit = {"lightAmbientCoeff": 1.0, "lightDiffuseCoeff": 0.0, "lightSpecularCoeff": 0.0, "shadow": 0}
        with direct_client() as (pb, client), quiet_stdout():  # the OBJ loader prints every texture it tries
            bodies, textures = [], {}
            for obj in scene.objects:
                body = pb.createMultiBody(0, -1, visual_shape(pb, client, obj), list(obj.position),
                                          list(obj.orientation), physicsClientId=client)
                tex = -1
                if obj.texture:
                    if obj.texture not in textures:
                        textures[obj.texture] = pb.loadTexture(obj.texture, physicsClientId=client)
                    tex = textures[obj.texture]
                pb.changeVisualShape(body, -1, textureUniqueId=tex, physicsClientId=client)
                bodies.append(body)
            ids = np.asarray(bodies, dtype=np.int32)
            lut = np.full(int(ids.max(initial=0)) + 1, n, dtype=np.int32)
            lut[ids] = np.arange(n)
            view = pb.computeViewMatrix(list(cam.position), list(cam.target), [0, 0, 1], physicsClientId=client)
            proj = pixel_centred(pb.computeProjectionMatrixFOV(cam.fov_deg, 1.0, cam.near, cam.far,
                                                               physicsClientId=client), w)
            sun = _sun_camera(pb, client, scene, trajectories, self.shadow_map_size) if self.shadows and n else None
            static = self._static(scene, back, lights, rays, sun)
            for f in range(t):
                for i, body in enumerate(bodies):
                    pb.resetBasePositionAndOrientation(body, trajectories.positions[f, i].tolist(),
                                                       trajectories.orientations[f, i].tolist(),
                                                       physicsClientId=client)
                _, _, img, buf, seg = pb.getCameraImage(w, w, view, proj, renderer=pb.ER_TINY_RENDERER,
                                                        physicsClientId=client, **unlit)
                seg = np.asarray(seg, dtype=np.int32).reshape(w, w)
                si, sj = np.nonzero((seg >= 0) & (seg < len(lut)))
                obj_z = back.z.copy()
                near = depth_buffer_to_metric(np.asarray(buf, dtype=np.float32).reshape(w, w)[si, sj],
                                              cam.near, cam.far)
                front = near < back.z[si, sj]
                si, sj = si[front], sj[front]
                obj_z[si, sj] = near[front]
                index = np.full((w, w), n, dtype=np.int32)  # n = backdrop
                index[si, sj] = lut[seg[si, sj]]
                for i in np.unique(index[si, sj]):
                    masks[f, i] = index == i
                shadow_z = None
                if sun is not None:
                    _, _, _, sbuf, _ = pb.getCameraImage(sun.size, sun.size, sun.view, sun.proj,
                                                         renderer=pb.ER_TINY_RENDERER,
                                                         flags=pb.ER_NO_SEGMENTATION_MASK,
                                                         physicsClientId=client, **unlit)
                    shadow_z = depth_buffer_to_metric(np.asarray(sbuf, dtype=np.float64).reshape(sun.size, sun.size),
                                                      sun.near, sun.far)
                z = obj_z
                depth[f] = static.distance
                depth[f][si, sj] = z[si, sj] * ray_len[si, sj]
                rgb[f] = self._shade(scene, back, static, lights, rays, z, index, n,
                                     np.asarray(img, np.uint8).reshape(w, w, 4)[..., :3], shadow_z, sun,
                                     trajectories.positions[f])
        return Rendering(rgb, depth, masks, self.name,
                         {"shadows": self.shadows, "soft_shadows": self.soft_shadows,
                          "ambient_occlusion": self.ambient_occlusion, "shadow_map_size": self.shadow_map_size,
                          "physics_hz": scene.config.physics_hz})

    @staticmethod
    def _lights(scene: Scene) -> dict[str, Any]:
        """Sun direction and strength, point lights (the authors' rig), and the exposure normalisation."""
        light = scene.lighting
        to_sun = np.asarray(light.light_direction, dtype=np.float64)
        to_sun /= np.linalg.norm(to_sun)
        sun = 0.55 + 0.09 * light.sun_energy
        points = []
        for (_, weight), angle in zip(POINT_LIGHTS, (light.key_angles_deg[0], light.fill_angles_deg[0], 180.0)):
            a = math.radians(angle)
            p = np.array([-2.5 * math.cos(a), -2.5 * math.sin(a), 1.5])
            points.append((p, weight, float(np.linalg.norm(p))))
        up_point = sum(wt * max(p[2] / d, 0.0) for p, wt, d in points)
        reference = AMBIENT + sun * max(to_sun[2], 0.0) + up_point  # an up-facing, sunlit surface at the origin
        return {"to_sun": to_sun, "sun": sun, "points": points, "reference": reference}

    @staticmethod
    def _irradiance(lights: dict, back: Backdrop, points: np.ndarray, normal: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ambient, sun, point lights) irradiance ``[..., 3]`` on unshadowed, unoccluded surfaces."""
        nz = normal[..., 2:3]
        ambient = AMBIENT * back.sky_color * ((0.5 + 0.5 * nz) + 0.35 * (0.5 - 0.5 * nz))
        sun = np.repeat((lights["sun"] * np.clip(normal @ lights["to_sun"], 0, None))[..., None], 3, axis=-1)
        point = np.zeros(points.shape[:-1])
        for p, weight, d_ref in lights["points"]:
            to_l = p - points
            d = np.linalg.norm(to_l, axis=-1)
            cos = np.einsum("...c,...c->...", normal, to_l) / np.maximum(d, 1e-6)
            point += weight * np.clip(cos, 0, None) * (d_ref / np.maximum(d, 0.3)) ** 2
        return ambient, sun, np.repeat(point[..., None], 3, axis=-1)

    def _static(self, scene: Scene, back: Backdrop, lights: dict, rays: np.ndarray, sun: _Light | None) -> _Static:
        origin = np.asarray(scene.camera.position, dtype=np.float64)
        surface = back.kind > 0
        points = origin + np.where(surface, back.z, 0.0)[..., None] * rays
        far_points = np.where(surface[..., None], points, origin + 1e6 * rays)
        distance = np.minimum(np.where(surface, back.z * np.linalg.norm(rays, axis=-1), np.inf),
                              scene.camera.far).astype(np.float32)  # the floor beyond the far clip and the sky
        floor_grid = np.where((back.kind == 1)[..., None], points, np.nan)
        ambient, sun_e, point = self._irradiance(lights, back, points, back.normal)
        keep = (1 - back.fog)[..., None] * surface[..., None] / lights["reference"]
        sun_part = back.albedo * sun_e * keep
        ambient_part = back.albedo * ambient * keep
        color = back.albedo * (ambient + sun_e + point) * keep + back.sky * (1 - keep * lights["reference"])
        color = np.where(surface[..., None], color, back.sky)
        wall = back.kind == 2  # a studio backdrop is lit evenly, like a cyclorama: it shows its declared colour
        color[wall] = back.albedo[wall]
        sun_part[wall] = 0.0
        ambient_part[wall] = 0.0
        fi, fj = np.nonzero(back.kind == 1)
        if sun is not None and len(fi):
            x, y, _, inside = sun.project(points[fi, fj])
            light_xy = (np.clip(np.round(x), 0, sun.size - 1).astype(int),
                        np.clip(np.round(y), 0, sun.size - 1).astype(int), inside)
        else:
            light_xy = (np.zeros(0, int), np.zeros(0, int), np.zeros(0, bool))
        return _Static(color.astype(np.float32), far_points, distance, floor_grid, sun_part.astype(np.float32),
                       ambient_part.astype(np.float32), _encode(color), (fi, fj), points[fi, fj], light_xy)

    @staticmethod
    def _floor_occlusion(scene: Scene, static: _Static, positions: np.ndarray, color: np.ndarray,
                         changed: np.ndarray) -> None:
        """Take sky light off floor pixels that nearby objects hide (each object a sphere of its size: occlusion
        cos θ · r²/d²), within the screen window of each object's neighbourhood."""
        cam = scene.camera
        w = cam.resolution
        free = np.ones((w, w))
        for obj, centre in zip(scene.objects, positions):
            r = float(np.prod(obj.half_extents)) ** (1 / 3)
            if centre[2] > 6 * r:
                continue
            corners = np.array([[centre[0] + a * 6 * r, centre[1] + b * 6 * r, 0.0] for a in (-1, 1) for b in (-1, 1)])
            uv, zc = cam.project(corners)
            if np.any(zc <= cam.near):
                i0, i1, j0, j1 = 0, w, 0, w
            else:
                j0, i0 = np.clip(np.floor(uv.min(axis=0)).astype(int) - 1, 0, w)
                j1, i1 = np.clip(np.ceil(uv.max(axis=0)).astype(int) + 1, 0, w)
            if i1 <= i0 or j1 <= j0:
                continue
            v = centre - static.floor_grid[i0:i1, j0:j1]
            d2 = np.maximum(np.einsum("hwc,hwc->hw", v, v), r * r)
            occ = np.nan_to_num(np.clip(v[..., 2] / np.sqrt(d2) * (r * r / d2), 0, 1))
            free[i0:i1, j0:j1] *= 1 - 0.9 * occ
        ti, tj = np.nonzero(free < 0.999)
        color[ti, tj] -= static.ambient_part[ti, tj] * (1 - free[ti, tj])[:, None]
        changed[ti, tj] = True

    def _shade(self, scene: Scene, back: Backdrop, static: _Static, lights: dict, rays: np.ndarray, z: np.ndarray,
               index: np.ndarray, n: int, albedo8: np.ndarray, shadow_z: np.ndarray | None,
               sun: _Light | None, frame_positions: np.ndarray) -> np.ndarray:
        from scipy import ndimage

        out = static.encoded.copy()
        is_obj = index < n
        if not is_obj.any():
            return out
        origin = np.asarray(scene.camera.position, dtype=np.float64)
        oi, oj = np.nonzero(is_obj)
        points = static.points.copy()
        points[oi, oj] = origin + z[oi, oj, None] * rays[oi, oj]
        color = static.color.copy()
        changed = np.zeros(z.shape, bool)
        # floor shadows: objects seen from the sun, projected onto the floor (the floor casts none)
        if shadow_z is not None and len(static.floor_ij[0]):
            cover = (shadow_z < sun.far - 1e-3).astype(np.float32)
            if self.soft_shadows:
                cover = ndimage.uniform_filter(cover, size=2 * sun.soft_radius + 1, mode="constant")
            x, y, inside = static.floor_light
            shade = np.where(inside, cover[y, x], 0.0)
            sel = shade > 0
            fi, fj = static.floor_ij[0][sel], static.floor_ij[1][sel]
            color[fi, fj] -= static.sun_part[fi, fj] * shade[sel][:, None]
            changed[fi, fj] = True
        # contact occlusion of the floor: each object as a sphere of its size, occlusion cos θ · r²/d²
        if self.ambient_occlusion and len(static.floor_ij[0]):
            self._floor_occlusion(scene, static, frame_positions, color, changed)
        # objects
        zs = np.where(np.isfinite(z), z, 1e6)
        normal = _normals_at(points, zs, index, rays, oi, oj)
        p = points[oi, oj]
        ambient, sun_e, point = self._irradiance(lights, back, p, normal)
        vis = np.ones(len(oi))
        if shadow_z is not None:
            x, y, d, inside = sun.project(p)
            lit = np.zeros(len(oi))
            taps = [(a * sun.soft_radius, b * sun.soft_radius) for a, b in _PCF] if self.soft_shadows else [(0, 0)]
            for ox, oy in taps:
                xi = np.clip(np.round(x + ox).astype(int), 0, sun.size - 1)
                yi = np.clip(np.round(y + oy).astype(int), 0, sun.size - 1)
                lit += shadow_z[yi, xi] >= d - sun.bias
            vis = np.where(inside, lit / len(taps), 1.0)
        if self.ambient_occlusion:
            ao = _ambient_occlusion(points, zs, scene.camera.focal_px, oi, oj, normal)
        else:
            ao = np.ones(len(oi))
        albedo = srgb_to_linear(albedo8[oi, oj].astype(np.float32) / 255.0)
        col = albedo * (ambient * ao[:, None] + sun_e * vis[:, None] + point) / lights["reference"]
        objs = index[oi, oj]
        spec = np.array([0.06 if o.texture else 0.25 * MATERIALS[o.material]["specular"] for o in scene.objects])
        shine = np.array([2.0 / max(MATERIALS[o.material]["roughness"], 0.05) ** 2 for o in scene.objects])
        view_dir = -rays[oi, oj] / np.linalg.norm(rays[oi, oj], axis=-1, keepdims=True)
        half = view_dir + lights["to_sun"]
        half /= np.linalg.norm(half, axis=-1, keepdims=True)
        ndoth = np.clip(np.einsum("kc,kc->k", normal, half), 0, 1)
        col += (spec[objs] * ndoth ** shine[objs] * vis * (normal @ lights["to_sun"] > 0))[:, None]
        color[oi, oj] = col
        changed[oi, oj] = True
        ci, cj = np.nonzero(changed)
        out[ci, cj] = _encode(color[ci, cj])
        return out


def _shoulder(x: np.ndarray, knee: float = 0.8) -> np.ndarray:
    """Identity up to ``knee`` (declared colours stay exact), then a soft roll-off to 1."""
    return np.where(x <= knee, x, knee + (1 - knee) * (1 - np.exp(-(x - knee) / (1 - knee))))


__all__ = ["PyBulletRenderer", "Backdrop", "backdrop", "AMBIENT", "DOME_HEIGHT"]
