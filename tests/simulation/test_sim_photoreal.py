"""The ``mitsuba`` photoreal renderer: exact masks and ray-length depth, textures, backdrop colours, env maps,
determinism, presets. Rendering tests run when the ``photoreal`` extra is installed and are skipped otherwise."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys

import numpy as np
import pytest
from PIL import Image

from vidalign.errors import ConfigError, VidalignError
from vidalign.simulation.assets import Background
from vidalign.simulation.photoreal import PRESETS, find_libllvm, soft_clip, to_srgb8
from vidalign.simulation.physics import Trajectories, simulate
from vidalign.simulation.render import get_renderer, render
from vidalign.simulation.scene import SceneObject

HAVE_PHOTOREAL = all(importlib.util.find_spec(m) is not None for m in ("mitsuba", "drjit", "pyoidn"))
needs_photoreal = pytest.mark.skipif(not HAVE_PHOTOREAL, reason="extra vidalign[photoreal] not installed")
FAST = {"samples_per_pixel": 1, "denoise": False}  # geometry tests: the colour pass does not matter


def linear(rgb8: np.ndarray) -> np.ndarray:
    """Inverse sRGB of uint8 values (exact for the renderer's output below its roll-off knee)."""
    x = np.asarray(rgb8, np.float64) / 255.0
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def chroma(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, np.float64)
    return rgb / rgb.sum(axis=-1, keepdims=True)


def pixel_rays(cam) -> np.ndarray:
    """Unit world directions ``[H, W, 3]`` through pixel centres, from the metadata's K and extrinsics."""
    w = cam.resolution
    jj, ii = np.meshgrid(np.arange(w) + 0.5, np.arange(w) + 0.5)
    pix = np.stack([jj, ii, np.ones_like(jj)], -1)
    d_cam = pix @ np.linalg.inv(cam.intrinsics).T
    d = d_cam @ cam.extrinsics[:3, :3]  # R^T d for row vectors
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def static(scene, frames: int = 1) -> Trajectories:
    n = len(scene.objects)
    pos = np.array([[o.position for o in scene.objects]] * frames).reshape(frames, n, 3)
    orn = np.array([[o.orientation for o in scene.objects]] * frames).reshape(frames, n, 4)
    zeros = np.zeros((frames, n, 3))
    return Trajectories(scene.config.fps, scene.config.physics_hz, pos, orn, zeros, zeros, ())


def write_textured_cube(folder, half: float = 0.3) -> tuple[str, str]:
    """A cube OBJ whose −x face (towards the camera) maps the whole texture: OBJ convention, v = 1 at the top
    of the image; the texture's top-left quadrant is red, top-right blue, bottom half green."""
    tex = np.zeros((32, 32, 3), np.uint8)
    tex[:16, :16] = (200, 40, 40)
    tex[:16, 16:] = (40, 60, 200)
    tex[16:] = (40, 160, 60)
    png = folder / "texture.png"
    Image.fromarray(tex).save(png)
    h = half
    # −x face seen from the camera (right = −y, up = +z): bottom-left, bottom-right, top-right, top-left
    faces = {
        (-1, 0, 0): [(-h, h, -h), (-h, -h, -h), (-h, -h, h), (-h, h, h)],
        (1, 0, 0): [(h, -h, -h), (h, h, -h), (h, h, h), (h, -h, h)],
        (0, -1, 0): [(-h, -h, -h), (h, -h, -h), (h, -h, h), (-h, -h, h)],
        (0, 1, 0): [(h, h, -h), (-h, h, -h), (-h, h, h), (h, h, h)],
        (0, 0, -1): [(-h, h, -h), (h, h, -h), (h, -h, -h), (-h, -h, -h)],
        (0, 0, 1): [(-h, -h, h), (h, -h, h), (h, h, h), (-h, h, h)],
    }
    lines = ["mtllib cube.mtl", "vt 0 0", "vt 1 0", "vt 1 1", "vt 0 1"]
    for k, (normal, quad) in enumerate(faces.items()):
        lines += [f"v {x} {y} {z}" for x, y, z in quad] + [f"vn {normal[0]} {normal[1]} {normal[2]}"]
        b = 4 * k
        lines.append(f"f {b + 1}/1/{k + 1} {b + 2}/2/{k + 1} {b + 3}/3/{k + 1} {b + 4}/4/{k + 1}")
    obj = folder / "model.obj"
    obj.write_text("\n".join(lines) + "\n")
    return str(obj), str(png)


def cube_object(obj_path: str, png: str, position=(0.0, 0.0, 0.5), half: float = 0.3) -> SceneObject:
    return SceneObject(
        index=0, role="dropper", asset_id="user/cube", name="cube", category="user", shape="mesh", mesh=obj_path,
        collision_mesh=None, mesh_ref="asset_dir/cube/model.obj", scale=(1.0, 1.0, 1.0), half_extents=(half,) * 3,
        mesh_offset=(0.0, 0.0, 0.0), color="white", rgb=(0.9, 0.9, 0.9), material="rubber", density=1000.0,
        volume=(2 * half) ** 3, mass=1000 * (2 * half) ** 3, friction=0.5, restitution=0.5, position=position,
        orientation=(0.0, 0.0, 0.0, 1.0), texture=png)


# --------------------------------------------------------------------------------------------------
# always run: pure functions, options, the missing-extra error
# --------------------------------------------------------------------------------------------------


def test_tone_curve_hand_values():
    assert to_srgb8(np.array([0.0, 0.0, 0.0])).tolist() == [0, 0, 0]
    assert to_srgb8(np.array([0.5, 0.5, 0.5])).tolist() == [188, 188, 188]  # 255·(1.055·0.5^(1/2.4) − 0.055)
    assert to_srgb8(np.array([1.0, 1.0, 1.0])).tolist() == [247] * 3  # roll-off: 0.8 + 0.2(1 − e^−1) = 0.9264
    assert to_srgb8(np.array([0.002, 0.002, 0.002])).tolist() == [7] * 3  # linear toe: 12.92 · 0.002
    assert soft_clip(np.array([0.8]))[0] == pytest.approx(0.8) and soft_clip(np.array([3.0]))[0] < 1.0
    out = to_srgb8(np.array([1.5, 0.75, 0.375]))  # hue kept: the roll-off scales all channels alike
    assert out[0] > out[1] > out[2] > 0 and out[0] < 255


def test_presets_and_options():
    r = get_renderer("mitsuba", preset="fast")
    assert (r.samples_per_pixel, r.denoise, r.max_depth) == (PRESETS["fast"].samples_per_pixel,
                                                              PRESETS["fast"].denoise, PRESETS["fast"].max_depth)
    assert r.static_spp == PRESETS["fast"].static_spp > 0 and r.static_tolerance == PRESETS["fast"].static_tolerance
    authors = get_renderer("mitsuba")
    assert authors.samples_per_pixel == 64 and authors.denoise  # the authors' Cycles setting by default …
    assert authors.static_spp == 0  # … every pixel of every frame
    assert get_renderer("mitsuba", preset="authors", samples_per_pixel=16).samples_per_pixel == 16
    assert get_renderer("mitsuba", preset="fast", static_spp=0).settings["static_spp"] == 0
    for bad in ({"preset": "ultra"}, {"samples_per_pixel": 0}, {"variant": "optix"}, {"oidn_quality": "best"},
                {"sky_radiance": -1.0}, {"static_spp": -1}, {"static_tolerance": 0.0}):
        with pytest.raises(ConfigError):
            get_renderer("mitsuba", **bad)
    with pytest.raises(ConfigError, match="bad option"):
        get_renderer("mitsuba", spp=4)


def test_find_libllvm_prefers_the_newest_supported(tmp_path, monkeypatch):
    monkeypatch.delenv("DRJIT_LIBLLVM_PATH", raising=False)
    for name in ("libLLVM-15.so", "libLLVM-14.0.6.so.1", "libLLVM.so.18.1", "libLLVM-19.so", "libLLVMfoo.a"):
        (tmp_path / name).write_bytes(b"")
    assert find_libllvm((str(tmp_path),)) == str(tmp_path / "libLLVM-19.so")
    (tmp_path / "libLLVM-19.so").unlink()
    assert find_libllvm((str(tmp_path),)) == str(tmp_path / "libLLVM.so.18.1")
    (tmp_path / "libLLVM.so.18.1").unlink()
    assert find_libllvm((str(tmp_path),)) is None  # only 14 and 15 left: both abort Dr.Jit
    monkeypatch.setenv("DRJIT_LIBLLVM_PATH", "/opt/llvm/libLLVM.so")
    assert find_libllvm((str(tmp_path),)) == "/opt/llvm/libLLVM.so"


def test_missing_extra_names_it(sphere_scene, monkeypatch):
    scene = sphere_scene()
    monkeypatch.setitem(sys.modules, "mitsuba", None)  # `import mitsuba` raises ImportError
    with pytest.raises(VidalignError, match=r"vidalign\[photoreal\]"):
        render(scene, static(scene), "mitsuba", preset="fast")


# --------------------------------------------------------------------------------------------------
# rendering (extra installed)
# --------------------------------------------------------------------------------------------------


@needs_photoreal
def test_masks_match_the_projected_sphere(sphere_scene):
    scene = sphere_scene(height=0.9, radius=0.12)
    traj = simulate(scene)
    ren = render(scene, traj, "mitsuba", **FAST)
    cam, r = scene.camera, 0.12
    d = pixel_rays(cam)
    o = np.asarray(cam.position)
    t_floor = np.where(d[..., 2] < 0, -o[2] / np.minimum(d[..., 2], -1e-12), np.inf)
    uv, _ = cam.project(traj.positions[:, 0])
    checked = 0
    for f in range(traj.num_frames):
        c = traj.positions[f, 0]
        b = d @ (c - o)
        disc = b ** 2 - (np.sum((c - o) ** 2) - r ** 2)
        t_ball = np.where(disc >= 0, b - np.sqrt(np.maximum(disc, 0)), np.inf)
        expected = np.isfinite(t_ball) & (t_ball < t_floor)
        mask = ren.masks[f, 0]
        # exact per pixel centre: only the UV sphere's faceting (≤ 0.06 % of r) can flip a boundary pixel
        assert (mask != expected).sum() <= 2, (f, int((mask != expected).sum()))
        if mask.sum() >= 20:
            rows, cols = np.nonzero(mask)
            assert np.linalg.norm([cols.mean() + 0.5 - uv[f, 0], rows.mean() + 0.5 - uv[f, 1]]) < 1.5
            checked += 1
    assert checked >= 10
    assert np.nonzero(ren.masks[-1, 0])[0].mean() > np.nonzero(ren.masks[0, 0])[0].mean() + 10  # it falls


@needs_photoreal
def test_depth_is_the_ray_length_from_the_camera_centre(sphere_scene):
    scene = sphere_scene(height=0.9, radius=0.15, camera_x=-2.5)
    traj = static(scene)
    ren = render(scene, traj, "mitsuba", **FAST)
    cam = scene.camera
    d, o = pixel_rays(cam), np.asarray(cam.position)
    depth, ball = ren.depth[0], ren.masks[0, 0]
    wall_x = scene.config.spawn_max[0] + 5.0
    t_wall = (wall_x - o[0]) / d[..., 0]
    t_floor = -o[2] / np.minimum(d[..., 2], -1e-9)
    floor = (d[..., 2] < 0) & ~ball & (t_floor < t_wall)
    assert floor.sum() > 1000
    np.testing.assert_allclose(depth[floor], t_floor[floor], rtol=0.01)
    wall = (d[..., 2] > 0.02) & ~ball & (o[2] + t_wall * d[..., 2] > 0)
    np.testing.assert_allclose(depth[wall], t_wall[wall], rtol=0.01)
    c = traj.positions[0, 0]
    b = d @ (c - o)
    t_ball = b - np.sqrt(np.maximum(b ** 2 - (np.sum((c - o) ** 2) - 0.15 ** 2), 0))
    inner = ball & (b ** 2 - (np.sum((c - o) ** 2) - 0.15 ** 2) > 0.002)
    np.testing.assert_allclose(depth[inner], t_ball[inner], rtol=0.01)
    # distance to the camera centre, not z-depth: at the image corner they differ by > 5 %
    corner_z = t_floor[-1, 0] * d[-1, 0, 0]
    assert abs(depth[-1, 0] - corner_z) / corner_z > 0.05 and depth[-1, 0] == pytest.approx(t_floor[-1, 0], rel=0.01)


@needs_photoreal
def test_textured_mesh_keeps_its_texture_and_uv_orientation(sphere_scene, tmp_path):
    obj_path, png = write_textured_cube(tmp_path)
    base = sphere_scene(camera_x=-2.5)
    scene = dataclasses.replace(base, objects=(cube_object(obj_path, png),))
    ren = render(scene, static(scene), "mitsuba", preset="fast", exposure=-1.0)
    cam, h = scene.camera, 0.3
    corners = np.array([[-h, h, 0.5 + h], [-h, -h, 0.5 - h]])
    (u0, v0), (u1, v1) = cam.project(corners)[0]
    mask = ren.masks[0, 0]
    rows, cols = np.nonzero(mask)
    # the mask is the projected front face (the other faces are edge-on from this camera)
    assert cols.min() + 0.5 == pytest.approx(u0, abs=1.0) and cols.max() + 0.5 == pytest.approx(u1, abs=1.0)
    assert rows.min() + 0.5 == pytest.approx(v0, abs=1.0) and rows.max() + 0.5 == pytest.approx(v1, abs=1.0)
    m = 3  # stay off the quadrant borders
    um, vm = int((u0 + u1) / 2), int((v0 + v1) / 2)
    img = linear(ren.rgb[0])
    quadrants = {"top-left": img[int(v0) + m:vm - m, int(u0) + m:um - m],
                 "top-right": img[int(v0) + m:vm - m, um + m:int(u1) - m],
                 "bottom": img[vm + m:int(v1) - m, int(u0) + m:int(u1) - m]}
    texels = {"top-left": (200, 40, 40), "top-right": (40, 60, 200), "bottom": (40, 160, 60)}
    for name, region in quadrants.items():
        got = chroma(region.reshape(-1, 3).mean(axis=0))
        want = chroma(linear(np.array(texels[name])))
        assert np.abs(got - want).max() < 0.06, (name, got, want)


@needs_photoreal
def test_declared_wall_and_floor_colours_appear(sphere_scene, tiny_config):
    """Declared colours are sRGB display values: a studio wall shows its colour exactly (lit evenly, like a
    cyclorama), a plain floor its colour within lighting (exposure metered on a fully lit floor at the origin).
    White, light grey, beige and pale green walls once all rendered as one grey."""
    base = sphere_scene(camera_x=-2.5, config=tiny_config(resolution=64, num_frames=1))
    w = base.camera.resolution

    def backdrop(floor_rgb, wall_rgb) -> tuple[np.ndarray, np.ndarray]:
        scene = dataclasses.replace(base, background=Background("test", floor_rgb, wall_rgb), objects=())
        img = render(scene, static(scene), "mitsuba", preset="fast").rgb[0].astype(float)
        return (np.median(img[: w // 3, w // 4: 3 * w // 4].reshape(-1, 3), axis=0),
                np.median(img[-w // 8:, w // 4: 3 * w // 4].reshape(-1, 3), axis=0))

    grey = (0.5, 0.5, 0.5)
    walls = {"white": (0.90, 0.90, 0.90), "light gray": (0.72, 0.72, 0.74), "beige": (0.85, 0.80, 0.68),
             "pale green": (0.70, 0.82, 0.68), "pink": (0.70, 0.30, 0.50)}
    seen = []
    for name, wall_rgb in walls.items():
        wall, _ = backdrop(grey, wall_rgb)
        np.testing.assert_allclose(wall, np.asarray(wall_rgb) * 255, atol=3, err_msg=name)
        seen.append(wall)
    assert min(np.abs(a - b).max() for i, a in enumerate(seen) for b in seen[i + 1:]) > 10
    for floor_rgb in ((0.20, 0.45, 0.20), (0.80, 0.72, 0.58)):  # green, beige floors under a white wall
        _, floor = backdrop(floor_rgb, walls["white"])
        np.testing.assert_allclose(floor, np.asarray(floor_rgb) * 255, rtol=0.12, err_msg=str(floor_rgb))


@needs_photoreal
def test_env_map_lights_the_scene_and_is_the_backdrop(sphere_scene, tmp_path):
    w_env, h_env = 128, 64
    env = np.zeros((h_env, w_env, 3), np.uint8)
    env[: h_env // 2] = (110, 160, 235)  # sky
    env[h_env // 2:] = (130, 95, 60)  # ground
    env[20:28, 60:68] = (230, 30, 30)  # red marker: straight ahead (u = 0.5, +x), 11°–22° up
    env[20:28, 70:74] = (30, 200, 40)  # green marker: right of it (u > 0.5 is −y, the camera's right)
    path = tmp_path / "sky.png"
    Image.fromarray(env).save(path)
    base = sphere_scene(camera_x=-2.5, height=0.3, radius=0.2)
    bg = Background("test/sky", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), env_map=str(path))
    scene = dataclasses.replace(base, background=bg)
    ren = render(scene, static(scene), "mitsuba", preset="fast")
    cam, img = scene.camera, ren.rgb[0].astype(int)
    f, c = cam.focal_px, cam.resolution / 2

    def pixel(az_deg: float, el_deg: float) -> np.ndarray:
        u = c - f * np.tan(np.radians(az_deg))  # azimuth towards +y is left in the image
        v = c - f * np.tan(np.radians(el_deg)) / np.cos(np.radians(az_deg))
        return img[int(v), int(u)]

    red, green = pixel(0.0, 16.0), pixel(-(71.5 / 128 - 0.5) * 360, 16.0)
    assert red[0] > 150 and red[1] < 80 and red[2] < 80, red
    assert green[1] > 120 and green[0] < 80, green
    sky = pixel(-12.0, 8.0)
    assert sky[2] > sky[1] > sky[0], sky  # blue sky where there is no marker
    ground = img[-10:, :].reshape(-1, 3).mean(axis=0)  # the floor shows the map's ground
    assert ground[0] > ground[1] > ground[2], ground
    ball = img[ren.masks[0, 0]].mean(axis=0)
    assert ball.mean() > 40  # lit: the map (and the rig) light the scene
    assert ren.options["env_map"] == "/".join(path.parts[-3:])  # no local absolute path in the metadata
    assert not ren.masks[0, 0, : int(c - f * np.tan(np.radians(10)))].any()  # no mask in the sky


@needs_photoreal
def test_same_seed_same_frames(sphere_scene):
    scene = sphere_scene(config=None)
    traj = simulate(scene)
    sub = dataclasses.replace(traj, positions=traj.positions[:2], orientations=traj.orientations[:2],
                              linear_velocities=traj.linear_velocities[:2],
                              angular_velocities=traj.angular_velocities[:2])
    a = render(scene, sub, "mitsuba", preset="fast")
    b = render(scene, sub, "mitsuba", preset="fast")
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth, b.depth) and np.array_equal(a.masks, b.masks)
    other = render(scene, sub, "mitsuba", preset="fast", seed=1)
    assert not np.array_equal(a.rgb, other.rgb)  # another noise pattern …
    assert np.array_equal(a.masks, other.masks) and np.array_equal(a.depth, other.depth)  # … same geometry
    assert a.options["variant"] in ("llvm_ad_rgb", "cuda_ad_rgb", "scalar_rgb") and a.renderer == "mitsuba"
    assert a.options["static_spp"] == PRESETS["fast"].static_spp  # the static-background mode is what ran


@needs_photoreal
def test_static_background_mode_against_full_renders(sphere_scene, tiny_config):
    """The ``fast`` preset draws the background once and per frame only what the objects change. Against a full
    per-frame render of the same settings: identical masks and depth (its rays are cast into the same scene).
    Colours: both are compared with a converged full render (64 spp, OIDN high), which isolates each one's own
    error; comparing two noisy renders would need a tolerance as wide as their summed noise. The ball's shadow
    on the floor (pixels ≥ 8 levels darker than the empty scene) must be drawn: there the static mode is
    within 15 levels on average (9.2 measured; the full 2-spp render 11.6; with ``static_tolerance=250``, i.e.
    the shadow left out, 22.4)."""
    scene = sphere_scene(height=0.0, radius=0.25, camera_x=-2.0, config=tiny_config(resolution=64, num_frames=2))
    traj = static(scene, 2)
    fast = render(scene, traj, "mitsuba", preset="fast")
    full = render(scene, traj, "mitsuba", preset="fast", static_spp=0)
    assert np.array_equal(fast.masks, full.masks) and np.array_equal(fast.depth, full.depth)
    assert fast.masks[0, 0].sum() > 100
    converged = render(scene, traj, "mitsuba", preset="fast", static_spp=0, samples_per_pixel=64, oidn_quality="high")
    empty = dataclasses.replace(scene, objects=())
    backdrop = render(empty, static(empty), "mitsuba", preset="fast", static_spp=0, samples_per_pixel=64,
                      oidn_quality="high")
    shadow = ((backdrop.rgb[0].astype(int) - converged.rgb[0]).max(-1) > 8) & ~converged.masks[0, 0]
    assert shadow.sum() > 50
    err = {name: np.abs(ren.rgb[0].astype(float) - converged.rgb[0]).max(-1) for name, ren in
           (("fast", fast), ("full", full))}
    assert err["fast"].mean() <= err["full"].mean() + 0.5, {k: v.mean() for k, v in err.items()}
    assert err["fast"][shadow].mean() <= min(15.0, err["full"][shadow].mean() + 3), \
        {k: v[shadow].mean() for k, v in err.items()}
    # the background is reused: away from the ball the two frames are the same pixels (a full render re-noises)
    same = (fast.rgb[0] == fast.rgb[1]).all(-1)
    assert same.mean() > 0.5 > (full.rgb[0] == full.rgb[1]).all(-1).mean()
    assert not same[fast.masks[0, 0]].all()  # the ball itself is rendered per frame


@needs_photoreal
def test_sampled_clip_renders_through_the_pipeline(tiny_config):
    from vidalign.simulation.pipeline import clip_metadata, generate_clip

    config = tiny_config(resolution=48, num_frames=3, max_droppers=2, max_tower=1)
    clip = generate_clip(config, 5, "mitsuba", {"preset": "fast"})
    ren = clip.rendering
    n = len(clip.scene.objects)
    assert ren.rgb.shape == (3, 48, 48, 3) and ren.masks.shape == (3, n, 48, 48) and ren.depth.dtype == np.float32
    assert ren.masks[:, -1].any() and ren.rgb.std() > 5
    assert clip_metadata(clip)["renderer"]["name"] == "mitsuba"


@needs_photoreal
def test_kubric_drop_builds_with_the_mitsuba_renderer(tmp_path):
    from vidalign.cli import main
    from vidalign.shards import iter_tar_samples

    rgb = {}
    for flag, static_spp in (("--static-background", 16), ("--no-static-background", 0)):
        out = tmp_path / flag
        code = main(["build", "kubric-drop", "--out", str(out), "--num-samples", "1", "--resolution", "32",
                     "--frames", "2", "--renderer", "mitsuba", "--render-preset", "fast", "--workers", "1", flag,
                     "--no-progress"])
        assert code == 0
        (sample,) = [s for p in sorted((out / "data" / "train").glob("*.tar")) for s in iter_tar_samples(p)]
        renderer = sample["json"]["renderer"]
        assert renderer["name"] == "mitsuba" and renderer["preset"] == "fast"
        assert renderer["static_spp"] == static_spp  # the metadata says which mode rendered the clip
        assert sample["mask.npz"]["mask"].shape[2:] == (32, 32)
        rgb[static_spp] = sample["mp4"]
    assert rgb[16] != rgb[0]  # the two modes render differently (same scene, same masks)


@needs_photoreal
def test_scalar_variant_gives_the_same_geometry(sphere_scene, tiny_config):
    from vidalign.simulation.photoreal import find_libllvm

    scene = sphere_scene(radius=0.3, height=0.2, config=tiny_config(resolution=32, num_frames=1))
    scalar = render(scene, static(scene), "mitsuba", variant="scalar_rgb", **FAST)
    assert scalar.options["variant"] == "scalar_rgb" and scalar.masks[0, 0].sum() > 20
    if find_libllvm() is None:
        pytest.skip("no libLLVM >= 16 for the llvm_ad_rgb variant")
    jit = render(scene, static(scene), "mitsuba", variant="llvm_ad_rgb", **FAST)
    assert (scalar.masks != jit.masks).sum() <= 1
    np.testing.assert_allclose(scalar.depth, jit.depth, rtol=1e-4)


def test_crease_normals_keep_box_edges_and_smooth_curves():
    from vidalign.simulation.photoreal_scene import box_mesh, crease_normals, uv_sphere

    box = box_mesh((0.1, 0.2, 0.3))
    out = crease_normals(box.positions, box.faces, None)
    tri_normals = np.cross(*(out.positions[out.faces][:, k] - out.positions[out.faces][:, 0] for k in (1, 2)))
    tri_normals /= np.linalg.norm(tri_normals, axis=1, keepdims=True)
    np.testing.assert_allclose(out.normals.reshape(-1, 3, 3), np.repeat(tri_normals[:, None], 3, 1), atol=1e-6)
    ball = uv_sphere(0.5, 24, 12)  # radial normals are the truth; the UV seam duplicates positions
    out = crease_normals(ball.positions, ball.faces, ball.uvs)
    radial = out.positions / np.linalg.norm(out.positions, axis=1, keepdims=True)
    assert np.einsum("ij,ij->i", out.normals, radial).min() > 0.99
    assert out.uvs.shape == (3 * len(ball.faces), 2)


@needs_photoreal
def test_buffer_denoiser_matches_the_shared_image_path():
    """The buffer path (what runs on OIDN's CUDA device next to cuda_ad_rgb) on the CPU device equals
    pyoidn's shared-image call on the same inputs."""
    from vidalign.simulation.photoreal import BufferDenoiser, import_pyoidn

    pyoidn = import_pyoidn()
    rng = np.random.default_rng(0)
    clean = np.repeat(np.linspace(0.1, 0.9, 48, dtype=np.float32)[None, :, None], 32, 0).repeat(3, 2)
    noisy = np.ascontiguousarray(clean * rng.uniform(0.3, 1.7, clean.shape).astype(np.float32))
    albedo = np.ascontiguousarray(np.full_like(clean, 0.5))
    normal = np.ascontiguousarray(np.broadcast_to(np.array([0, 0, 1], np.float32), clean.shape))
    den = BufferDenoiser(pyoidn, (32, 48), "fast", device="cpu")
    try:
        out = den(noisy, albedo, normal)
    finally:
        den.close()
    ref = pyoidn.denoise(noisy, albedo, normal, hdr=True, quality="fast")
    np.testing.assert_allclose(out, ref, atol=1e-6)
    assert np.abs(out - clean).mean() < 0.5 * np.abs(noisy - clean).mean()  # it denoises


def test_equirect_convention_and_irradiance():
    from vidalign.simulation.photoreal_scene import equirect_uv, upward_irradiance

    dirs = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0], [0, 0, 1.0], [0, 0, -1.0]])
    uv = equirect_uv(dirs)  # Blender's world mapping: image centre = +x, left quarter = +y, top row = up
    np.testing.assert_allclose(uv[:3], [[0.5, 0.5], [0.25, 0.5], [0.75, 0.5]], atol=1e-12)
    assert uv[3, 1] == pytest.approx(0.0) and uv[4, 1] == pytest.approx(1.0)
    const = np.full((64, 128, 3), 0.7)  # a uniform sky of radiance L gives E = π L on an upward surface
    assert upward_irradiance(const) == pytest.approx(np.pi * 0.7, rel=1e-3)
    const[:32] = 0.0  # only the ground half lit: nothing reaches an upward surface
    assert upward_irradiance(const) == 0.0


def test_floor_bands_use_the_pybullet_renderers_mip_levels(sphere_scene, tiny_config):
    """A tiled floor texture is path traced through the mip level the pybullet renderer samples at each distance
    (so both renderers filter it alike and 1 spp does not alias it)."""
    from vidalign.simulation.backgrounds import mip_level
    from vidalign.simulation.photoreal_scene import floor_bands

    scene = sphere_scene(config=tiny_config(resolution=256))
    cam, tile, size, levels = scene.camera, 1.5, 512, 10
    bands = floor_bands(cam, tile, size, levels, -30.0, 6.0)
    assert bands[0][1] == -30.0 and bands[-1][2] == 6.0
    assert all(a[2] == b[1] and a[0] < b[0] for a, b in zip(bands, bands[1:]))  # contiguous, coarser with distance
    # the pybullet renderer's choice per floor pixel: footprint = largest UV step to the next pixel (tiles)
    rays = cam.pixel_rays()
    o = np.asarray(cam.position)
    t = np.where(rays[..., 2] < 0, -o[2] / np.minimum(rays[..., 2], -1e-12), np.inf)
    points = o + np.where(np.isfinite(t), t, 0)[..., None] * rays
    uv = points[..., :2] / tile
    du = np.abs(np.diff(uv, axis=1, append=uv[:, -1:])).max(axis=-1)
    dv = np.abs(np.diff(uv, axis=0, append=uv[-1:])).max(axis=-1)
    floor = np.isfinite(t) & (points[..., 0] < 6.0)
    floor[-1] = False  # no next row to difference with
    want = mip_level(np.maximum(du, dv), size, levels)[floor]
    x = points[..., 0][floor]
    got = np.zeros_like(want)
    for level, x0, x1 in bands:
        got[(x >= x0) & (x < x1)] = level
    assert np.mean(got == want) > 0.95 and np.abs(got - want).max() <= 1  # they differ only at band edges


@needs_photoreal
def test_a_textured_object_shows_its_texture_times_its_colour(tmp_path):
    from vidalign.simulation.backgrounds import srgb_to_linear
    from vidalign.simulation.photoreal import load_mitsuba
    from vidalign.simulation.photoreal_scene import linear_rgb, read_texture, texture_dict

    mi, _, _ = load_mitsuba()
    _, png = write_textured_cube(tmp_path)
    plain = texture_dict(mi, png)  # white: as stored (decoded by Pillow, not Mitsuba's libpng)
    np.testing.assert_allclose(np.array(plain["bitmap"]), read_texture(png)) and plain["raw"]
    tinted = texture_dict(mi, png, linear_rgb((1.0, 0.5, 0.25)))
    want = read_texture(png) * srgb_to_linear(np.array([1.0, 0.5, 0.25]))
    np.testing.assert_allclose(np.array(tinted["bitmap"]), want, rtol=1e-6)
    assert tinted["raw"] and read_texture(png)[0, 0] == pytest.approx(srgb_to_linear(np.array([200, 40, 40]) / 255))


# --------------------------------------------------------------------------------------------------
# the static-background mode's geometry (pure numpy)
# --------------------------------------------------------------------------------------------------


def test_sphere_form_factor_hand_values():
    from vidalign.simulation.photoreal_static import sphere_form_factor

    def ff(theta_deg: float, alpha_deg: float) -> float:
        th, al = np.radians(theta_deg), np.radians(alpha_deg)
        return float(sphere_form_factor(np.array([np.cos(th)]), np.array([np.sin(al) ** 2]))[0])

    assert ff(0, 30) == pytest.approx(0.25)  # overhead: sin²α
    assert ff(60, 20) == pytest.approx(np.sin(np.radians(20)) ** 2 * 0.5)  # above the horizon: sin²α cos θ
    a = 0.05  # centred on the horizon, small: the upper half disc, ∫ elevation dω / π = 2α³/(3π)
    assert ff(90, np.degrees(a)) == pytest.approx(2 * a ** 3 / (3 * np.pi), rel=0.01)
    assert ff(111, 20) == 0.0  # below the horizon
    th, al = np.meshgrid(np.radians(np.linspace(0, 180, 91)), np.radians(np.linspace(1, 89, 45)))
    bound = np.sin(al) ** 2 * np.cos(np.clip(th - al, 0, np.pi / 2))  # the cheap bound used before it
    assert (sphere_form_factor(np.cos(th), np.sin(al) ** 2) <= bound + 1e-12).all()


def test_sensitivity_hand_values():
    from vidalign.simulation.photoreal_static import sensitivity

    # grey 0.5 is sRGB 1.055 · 0.5^(1/2.4) − 0.055 = 0.735357; 2 levels darker, 0.727514, is linear
    # ((0.727514 + 0.055) / 1.055)^2.4 = 0.488174: 0.011826 less light
    need = sensitivity(np.array([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.0005, 0.0005, 0.0005]]),
                       np.array([[1.0, 1.0, 1.0], [0.5, 0.5, 0.5], [1.0, 1.0, 1.0]]), 2.0)
    assert need[0] == pytest.approx(0.011826, rel=1e-4)
    assert need[1] == pytest.approx(2 * need[0])  # half the albedo: twice the light for the same change
    assert need[2] == np.inf  # 0.0005 is 0.16 levels: no darkening can show


def test_delta_light_shadow_cull_matches_brute_force():
    from vidalign.simulation.photoreal_static import DeltaLight

    rng = np.random.default_rng(3)
    n = 20000
    points = np.concatenate([rng.uniform(-3, 3, (n, 2)), np.zeros((n, 1))], 1)
    spheres = [(np.array([0.3, -0.2, 0.15]), 0.15), (np.array([-0.5, 0.4, 1.0]), 0.2)]
    sun = np.array([0.3, -0.3, 0.9]) / np.linalg.norm([0.3, -0.3, 0.9])
    lamp = np.array([-2.0, 1.0, 1.5])
    for light, to_light in ((DeltaLight(points, np.arange(n), direction=sun), None),
                            (DeltaLight(points, np.arange(n), position=lamp), lamp)):
        if to_light is None:  # the closest point to c on the ray (sun) or the segment (lamp) from each point
            d, length = np.broadcast_to(sun, points.shape), np.full(n, np.inf)
        else:
            length = np.linalg.norm(to_light - points, axis=1)
            d = (to_light - points) / length[:, None]
        for c, r in spheres:
            got = np.zeros(n, bool)
            got[light.shadowed(c, r)] = True
            t = np.clip(((c - points) * d).sum(1), 0.0, length)
            want = np.linalg.norm(points + t[:, None] * d - c, axis=1) <= r
            assert want.sum() > 10 and np.array_equal(got, want)


def test_cone_max_bounds_the_map_inside_any_cone():
    from vidalign.simulation.photoreal_scene import equirect_uv
    from vidalign.simulation.photoreal_static import ConeMax

    rng = np.random.default_rng(0)
    img = rng.uniform(0, 1, (64, 128, 3)).astype(np.float32) ** 4
    img[10, 40] = 50.0  # a sun
    cone = ConeMax(img)
    for _ in range(60):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        half = rng.uniform(0.01, 1.0)
        dirs = rng.normal(size=(4000, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        inside = dirs[dirs @ axis >= np.cos(half)]
        if not len(inside):
            continue
        uv = equirect_uv(inside)
        rows = np.minimum((uv[:, 1] * 64).astype(int), 63)
        cols = np.minimum((uv[:, 0] * 128).astype(int), 127)
        assert img[rows, cols].max() <= cone(axis[None], np.array([half]))[0] + 1e-6
    assert cone.peak == pytest.approx(50.0)


def test_crop_boxes_own_every_dynamic_pixel_once():
    from vidalign.simulation.photoreal_static import crop_boxes

    dynamic = np.zeros((64, 64), bool)
    dynamic[5:9, 5:30] = True
    dynamic[40:60, 50:52] = True
    dynamic[41, 10] = True
    boxes = crop_boxes(dynamic, block=4, merge_px=0)
    owned = np.stack([o for o, _ in boxes])
    assert np.array_equal(owned.sum(0), dynamic.astype(int))  # a partition of the dynamic pixels
    for o, (rs, cs) in boxes:
        inside = np.zeros_like(dynamic)
        inside[rs, cs] = True
        assert not (o & ~inside).any()  # each owns pixels of its own rectangle …
        r, c = np.nonzero(o)
        assert r.min() - rs.start >= 1 or rs.start == 0  # … with context around them
    assert len(crop_boxes(dynamic, block=4, merge_px=10**6)) == 1  # merged when merging is free
