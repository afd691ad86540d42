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


def test_depth_is_metric_and_matches_the_camera(sphere_scene):
    scene = sphere_scene(height=0.9, radius=0.15, camera_x=-2.5)
    traj = simulate(scene)
    ren = render(scene, traj)
    cam = scene.camera
    # pixel nearest to the ball's centre: the surface facing the camera is (x_ball − x_cam − r) away
    uv, z = cam.project(traj.positions[0, 0])
    j, i = int(uv[0]), int(uv[1])
    assert ren.masks[0, 0, i, j]
    assert ren.depth[0, i, j] == pytest.approx(z - 0.15, abs=0.02)  # TinyRenderer tessellates the sphere
    assert z == pytest.approx(2.5)
    # background straight ahead at camera height (no object there): the backdrop wall
    wall_x = scene.config.spawn_max[0] + 5.0
    w = cam.resolution
    assert not ren.masks[-1, 0, w // 2, w // 2]
    assert ren.depth[-1, w // 2, w // 2] == pytest.approx(wall_x - cam.position[0], rel=1e-3)
    # floor below the horizon: z-depth of the floor point seen by that pixel, h_cam · f / (v − c)
    v = w - 1
    expected = cam.position[2] * cam.focal_px / (v + 0.5 - w / 2)
    assert ren.depth[0, v, 2] == pytest.approx(expected, rel=0.02)


def test_depth_buffer_conversion():
    near, far = 0.05, 100.0
    assert depth_buffer_to_metric(np.array([0.0]), near, far)[0] == pytest.approx(near)
    assert depth_buffer_to_metric(np.array([1.0]), near, far)[0] == pytest.approx(far)
    z = 3.0  # forward map of OpenGL's perspective depth, then back
    d = (far + near) / (far - near) / 2 + 0.5 - far * near / (far - near) / z
    assert depth_buffer_to_metric(np.array([d]), near, far)[0] == pytest.approx(z, rel=1e-5)


def test_dropping_object_is_the_last_mask(tiny_config):
    config = tiny_config(min_tower=1, max_tower=1, max_droppers=1, num_frames=4)
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
    for key in ("seed", "prompt", "caption", "scene_config", "camera", "objects", "contacts", "fps", "renderer"):
        assert key in meta
    assert np.array(meta["camera"]["intrinsics"]).shape == (3, 3)
    assert np.array(meta["camera"]["extrinsics"]).shape == (4, 4)
    obj = meta["objects"][0]
    for key in ("name", "mesh", "scale", "mass", "friction", "restitution", "initial_position",
                "initial_orientation_xyzw", "trajectory"):
        assert key in obj
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
