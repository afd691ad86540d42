import numpy as np
import pytest

from vidalign.errors import ConfigError, VidalignError
from vidalign.simulation.kubric_compat import kubric_available
from vidalign.simulation.physics import simulate
from vidalign.simulation.pipeline import clip_metadata, generate_clip
from vidalign.simulation.render import RENDERERS, depth_buffer_to_metric, get_renderer, render
from vidalign.simulation.scene import sample_scene


def test_shapes_dtypes_and_determinism(tiny_config):
    config = tiny_config()
    a = generate_clip(config, 11)
    t, n, w = config.num_frames, len(a.scene.objects), config.resolution
    assert a.rendering.rgb.shape == (t, w, w, 3) and a.rendering.rgb.dtype == np.uint8
    assert a.rendering.depth.shape == (t, w, w) and a.rendering.depth.dtype == np.float32
    assert a.rendering.masks.shape == (t, n, w, w) and a.rendering.masks.dtype == bool
    assert a.rendering.rgb.std() > 5  # not a blank frame
    b = generate_clip(config, 11)
    assert np.array_equal(a.rendering.masks, b.rendering.masks)
    assert np.array_equal(a.rendering.rgb, b.rendering.rgb) and np.array_equal(a.rendering.depth, b.rendering.depth)
    other = generate_clip(config, 12)
    assert other.rendering.masks.shape != a.rendering.masks.shape or not np.array_equal(
        other.rendering.masks, a.rendering.masks)


def test_masks_follow_the_projected_trajectory(sphere_scene):
    scene = sphere_scene(height=0.9, radius=0.12)
    traj = simulate(scene)
    ren = render(scene, traj)
    uv, _ = scene.camera.project(traj.positions[:, 0])
    checked = 0
    for f in range(traj.num_frames):
        mask = ren.masks[f, 0]
        if mask.sum() < 20:
            continue
        rows, cols = np.nonzero(mask)
        centroid = np.array([cols.mean() + 0.5, rows.mean() + 0.5])
        assert np.linalg.norm(centroid - uv[f]) < 1.5, (f, centroid, uv[f])
        checked += 1
    assert checked >= 10
    # the ball falls: its mask moves down the image
    assert np.nonzero(ren.masks[-1, 0])[0].mean() > np.nonzero(ren.masks[0, 0])[0].mean() + 10


def test_depth_is_the_distance_to_the_camera_centre(sphere_scene):
    scene = sphere_scene(height=0.9, radius=0.15, camera_x=-2.5)
    traj = simulate(scene)
    ren = render(scene, traj)
    cam = scene.camera
    w = cam.resolution
    rays = cam.pixel_rays()
    length = np.linalg.norm(rays, axis=-1)
    # floor: every floor pixel the ball does not hide, against the ray length to z = 0
    floor = (rays[..., 2] < 0) & ~ren.masks[0, 0]
    t_floor = -cam.position[2] / rays[..., 2]
    wall_t = (scene.config.spawn_max[0] + 5.0 - cam.position[0]) / rays[..., 0]
    floor &= t_floor < wall_t
    assert floor.sum() > 0.2 * w * w
    expected = np.minimum(t_floor * length, cam.far)  # the far clip bounds the horizon, as the sky
    assert np.allclose(ren.depth[0][floor], expected[floor], rtol=0.01)
    assert np.allclose(ren.depth[0][floor], expected[floor], rtol=1e-4)  # exact: the floor is ray-cast
    # wall straight ahead at camera height, and the ball's nearest point (TinyRenderer tessellates spheres)
    assert ren.depth[-1, w // 2, w // 2] == pytest.approx(wall_t[w // 2, w // 2] * length[w // 2, w // 2], rel=1e-4)
    centre = traj.positions[0, 0]
    uv, _ = cam.project(centre)
    j, i = int(uv[0]), int(uv[1])
    assert ren.masks[0, 0, i, j]
    true_distance = np.linalg.norm(centre - np.asarray(cam.position)) - 0.15
    assert ren.depth[0, i, j] == pytest.approx(true_distance, abs=0.02)


def test_depth_buffer_conversion():
    near, far = 0.05, 100.0
    assert depth_buffer_to_metric(np.array([0.0]), near, far)[0] == pytest.approx(near)
    assert depth_buffer_to_metric(np.array([1.0]), near, far)[0] == pytest.approx(far)
    z = 3.0  # forward map of OpenGL's perspective depth, then back
    d = (far + near) / (far - near) / 2 + 0.5 - far * near / (far - near) / z
    assert depth_buffer_to_metric(np.array([d]), near, far)[0] == pytest.approx(z, rel=1e-5)


WALLS = {"white": (0.90, 0.90, 0.90), "light_gray": (0.72, 0.72, 0.74), "beige": (0.85, 0.80, 0.68),
         "pale_green": (0.70, 0.82, 0.68), "sky_blue": (0.60, 0.72, 0.90)}


def test_declared_wall_and_floor_colours_appear(sphere_scene, studio):
    """White, light grey, beige and pale green walls once all rendered as (114, 114, 114)."""
    seen = {}
    for floor, floor_rgb in (("gray", (0.55, 0.55, 0.55)), ("beige", (0.80, 0.72, 0.58))):
        for wall, wall_rgb in WALLS.items():
            scene = sphere_scene(height=1.0, radius=0.05, x=1.0, y=0.6, background=studio(floor, wall))
            ren = render(scene, simulate(scene))
            frame = ren.rgb[0].astype(float)
            w = frame.shape[0]
            wall_px = np.median(frame[: w // 4, w // 2 - 8: w // 2 + 8].reshape(-1, 3), axis=0)
            floor_px = np.median(frame[-w // 8:, w // 2 - 8: w // 2 + 8].reshape(-1, 3), axis=0)
            assert np.allclose(wall_px, np.asarray(wall_rgb) * 255, rtol=0.03, atol=2), (wall, wall_px)
            assert np.allclose(floor_px, np.asarray(floor_rgb) * 255, rtol=0.12), (floor, floor_px)
            seen[wall] = wall_px
    walls = list(seen.values())
    assert min(np.abs(a - b).max() for i, a in enumerate(walls) for b in walls[i + 1:]) > 10


def test_soft_shadow_and_no_acne_on_a_plain_floor(sphere_scene, studio):
    scene = sphere_scene(height=0.15, radius=0.1, x=0.3, background=studio("white", "white"))
    traj = simulate(scene)
    ren = render(scene, traj)
    frame = ren.rgb[0].astype(float).mean(axis=-1)
    cam, w = scene.camera, scene.camera.resolution
    to_sun = np.asarray(scene.lighting.light_direction) / np.linalg.norm(scene.lighting.light_direction)
    centre = traj.positions[0, 0]
    shadow = centre - centre[2] / to_sun[2] * to_sun  # where the sun ray through the centre meets the floor
    (su, sv), _ = cam.project(shadow)
    lit_v = min(w - 3, int(sv) + 6)
    assert frame[int(sv), int(su)] < 0.8 * frame[lit_v, 5]  # the shadow is there
    edge = frame[int(sv), int(su):]  # from the shadow centre outwards: a soft ramp, not a cut
    assert np.sum((edge > edge.min() + 5) & (edge < edge.max() - 5)) >= 2
    patch = frame[-12:-2, 2:12]  # plain floor far from the ball: smooth (no acne moiré)
    assert patch.std() < 1.0 and np.abs(np.diff(patch, axis=1)).max() <= 2


def test_dropping_object_is_the_last_mask(tiny_config):
    config = tiny_config(min_tower=1, max_tower=1, max_droppers=1, num_frames=4, lift_rule="bottom")
    clip = generate_clip(config, 2)
    assert [o.role for o in clip.scene.objects] == ["tower", "dropper"]
    meta = clip_metadata(clip)
    assert meta["primary_object"] == 1 == clip.rendering.masks.shape[1] - 1
    assert meta["objects"][-1]["role"] == "dropper"
    # at frame 0 the dropper hangs above its tower: its mask is visible and above the tower's
    m = clip.rendering.masks[0]
    assert m[1].any() and m[0].any()
    assert np.nonzero(m[1])[0].mean() < np.nonzero(m[0])[0].mean()


def test_metadata_has_everything(tiny_config):
    clip = generate_clip(tiny_config(num_frames=4), 3)
    meta = clip_metadata(clip)
    for key in ("seed", "prompt", "caption", "scene_config", "camera", "objects", "contacts", "fps", "renderer",
                "background_id", "assets", "first_frame", "contact_model"):
        assert key in meta
    assert meta["first_frame"] == 1 and meta["times"][0] == pytest.approx(1 / 16)
    assert meta["depth"]["kind"].startswith("distance to the camera centre")
    assert meta["background_id"] == clip.scene.background.id and meta["background"]["id"] == meta["background_id"]
    assert np.array(meta["camera"]["intrinsics"]).shape == (3, 3)
    assert np.array(meta["camera"]["extrinsics"]).shape == (4, 4)
    obj = meta["objects"][0]
    for key in ("name", "mesh", "scale", "mass", "friction", "restitution", "initial_position",
                "initial_orientation_xyzw", "trajectory", "collider", "asset_id", "texture"):
        assert key in obj
    assert set(meta["assets"]) == {o["asset_id"] for o in meta["objects"]}
    assert np.allclose(obj["initial_position"], clip.trajectories.release_positions[0], atol=1e-6)
    assert np.array(obj["trajectory"]["positions"]).shape == (4, 3)
    assert clip_metadata(clip, caption_mode="constant")["caption"] == "a video of an object dropping"


def test_extrinsics_follow_opencv(sphere_scene):
    cam = sphere_scene().camera
    ext, k = cam.extrinsics, cam.intrinsics
    point = np.array([1.0, -0.2, 0.8])  # in front, to the right (−y) and above the camera
    pc = ext @ np.append(point, 1.0)
    assert pc[2] == pytest.approx(point[0] - cam.position[0])  # z forward
    assert pc[0] > 0 and pc[1] < 0  # x right, y down (above camera → negative y)
    uv = (k @ pc[:3])[:2] / pc[2]
    assert np.allclose(uv, cam.project(point)[0])
    rays = cam.pixel_rays()  # pixel centres map back onto their rays
    assert np.allclose(cam.project(np.asarray(cam.position) + 2.0 * rays[5, 9])[0], [9.5, 5.5])


def test_renderer_registry():
    assert {"pybullet", "kubric"} <= set(RENDERERS)
    with pytest.raises(ConfigError, match="renderer"):
        get_renderer("povray")
    with pytest.raises(ConfigError, match="bad option"):
        get_renderer("pybullet", samples=3)


@pytest.mark.skipif(kubric_available(), reason="kubric is installed")
def test_kubric_renderer_without_the_extra_says_how_to_install(tiny_config):
    scene = sample_scene(tiny_config(num_frames=2), 0)
    with pytest.raises(VidalignError, match=r"vidalign\[kubric\]"):
        render(scene, simulate(scene), "kubric", samples_per_pixel=4)
