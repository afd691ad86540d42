import dataclasses
import math

import numpy as np
import pytest

from vidalign.simulation.config import DropSceneConfig
from vidalign.simulation.meshes import mesh_info
from vidalign.simulation.physics import FLOOR, simulate
from vidalign.simulation.scene import SceneObject, sample_scene

G = 10.0


def test_free_fall_from_release_as_kubric_renders_it(sphere_scene):
    """Rendered frame k is (k + 1)/16 s after release: v_z = −g (k + 1)/16 until the first contact."""
    h, r = 1.0, 0.1
    scene = sphere_scene(height=h, radius=r)
    traj = simulate(scene)
    assert traj.first_frame == 1 and traj.times[0] == pytest.approx(1 / 16)
    assert np.allclose(traj.release_positions[0], scene.objects[0].position)
    first = traj.first_contact_frame(0)
    assert first is not None and first >= 5
    k = np.arange(first)
    assert np.allclose(traj.linear_velocities[k, 0, 2], -G * (k + 1) / 16, rtol=0, atol=1e-9)
    assert traj.linear_velocities[0, 0, 2] == pytest.approx(-0.625)
    # positions: semi-implicit Euler at 240 Hz, z_n = z_0 − g dt² n(n+1)/2, within 1 % of h − g t²/2
    steps = (k + 1) * 15
    exact = h + r - G * (1 / 240) ** 2 * steps * (steps + 1) / 2
    assert np.allclose(traj.positions[k, 0, 2], exact, atol=1e-9)
    assert np.max(np.abs(traj.positions[k, 0, 2] - r - (h - G * traj.times[k] ** 2 / 2))) <= 0.01 * h
    assert np.allclose(traj.positions[k, 0, :2], 0.0, atol=1e-9)  # straight down
    t_contact = math.sqrt(2 * h / G)
    hit = [c for c in traj.contacts if (c.a, c.b) == (FLOOR, 0)][0]
    assert abs(hit.time - t_contact) <= 1 / 16 and hit.frame == first
    assert traj.positions[-1, 0, 2] == pytest.approx(r, abs=2e-3)  # floor restitution 0: it stays down


def _bounce(primitive, scene_of, contact_model: str, h: float) -> tuple[float, float]:
    """A sphere (restitution 0.5) dropped from ``h`` onto a fixed box (restitution 1; PyBullet multiplies the two,
    e = 0.5): its rebound apex over e²h, and its fastest upward speed."""
    config = DropSceneConfig(fps=240, num_frames=200, settle_frames=2, contact_model=contact_model)
    box = primitive(0, "box", (0.2, 0.2, 0.1), (0.0, 0.0, 0.1), role="tower", restitution=1.0, tower_of=1,
                    density=0.0)  # mass 0: fixed, so only the sphere–box contact is measured
    ball = primitive(1, "sphere", (0.05,) * 3, (0.0, 0.0, 0.2 + h + 0.05), restitution=0.5)
    traj = simulate(scene_of([box, ball], config))
    bottom = traj.positions[:, 1, 2] - 0.05 - 0.2
    low = int(np.argmin(bottom[:150]))
    assert bottom[low] < 0.01  # it reached the box
    return float(bottom[low:].max() / (0.25 * h)), float(traj.linear_velocities[:, 1, 2].max())


HEIGHTS = np.linspace(0.5, 1.2, 8)


def test_sphere_on_box_rebounds_to_the_height_restitution_predicts(primitive, scene_of):
    ratios = [_bounce(primitive, scene_of, "exact", h)[0] for h in HEIGHTS]
    assert np.allclose(ratios, 1.0, atol=0.05), np.round(ratios, 3)


def test_kubric_contacts_keep_slow_bounces(primitive, scene_of):
    """Kubric's settings keep restitution at every speed (PyBullet's default drops it below 0.2 m/s); Bullet's
    velocity-based penetration recovery then adds a boost (module docstring), never a loss."""
    v_impact = math.sqrt(2 * G * 0.004)  # 0.28 m/s
    assert _bounce(primitive, scene_of, "kubric", 0.004)[1] > 0.4 * v_impact
    assert _bounce(primitive, scene_of, "pybullet", 0.004)[1] < 0.1 * v_impact
    ratios = [_bounce(primitive, scene_of, "kubric", h)[0] for h in HEIGHTS]
    assert min(ratios) >= 1.0 and max(ratios) <= 1.35, np.round(ratios, 3)


def test_towers_settle_for_200_frames_then_the_dropper_is_lifted(primitive, scene_of):
    box = primitive(0, "box", (0.1, 0.1, 0.1), (0.3, 0.2, 0.1 + 0.001), role="tower", tower_of=1)
    ball = primitive(1, "sphere", (0.05,) * 3, (0.3, 0.2, 0.15), lift_gap=0.007)  # bottom 0.10 < top 0.20
    for rule, above in (("centre", 0.0), ("bottom", 0.05)):
        config = DropSceneConfig(num_frames=2, resolution=64, lift_rule=rule)
        traj = simulate(scene_of([box, ball], config))
        assert traj.settle_steps == 201 * 15  # Kubric's run(-200, 0)
        top = traj.release_positions[0, 2] + 0.1
        assert top == pytest.approx(0.2, abs=2e-3)  # settled on the floor
        assert traj.release_positions[1, 2] == pytest.approx(top + 0.007 + above, abs=1e-6)
    # a dropper already above its tower stays where it was sampled
    high = dataclasses.replace(ball, position=(0.3, 0.2, 0.8))
    traj = simulate(scene_of([box, high], DropSceneConfig(num_frames=2, resolution=64, settle_frames=5)))
    assert traj.release_positions[1, 2] == pytest.approx(0.8)


def test_same_scene_same_trajectories_and_seeds_differ(tiny_config):
    config = tiny_config()
    scene = sample_scene(config, 5)
    a, b = simulate(scene), simulate(scene)
    for name in ("positions", "orientations", "linear_velocities", "angular_velocities"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert a.contacts == b.contacts
    other = simulate(sample_scene(config, 6))
    assert other.positions.shape != a.positions.shape or not np.allclose(other.positions, a.positions)


def test_shapes_and_release_state(tiny_config):
    config = tiny_config(min_tower=0, max_tower=0)
    scene = sample_scene(config, 2)
    traj = simulate(scene)
    n = len(scene.objects)
    assert traj.positions.shape == (config.num_frames, n, 3) and traj.orientations.shape == (config.num_frames, n, 4)
    assert np.allclose(traj.release_positions, [o.position for o in scene.objects])
    dots = np.abs(np.einsum('nc,nc->n', traj.release_orientations, np.array([o.orientation for o in scene.objects])))
    assert np.allclose(dots, 1.0)  # q and −q are one rotation
    assert np.allclose(np.linalg.norm(traj.orientations, axis=-1), 1.0)
    assert traj.times[1] - traj.times[0] == pytest.approx(1 / 16)
    meta_times = (np.arange(config.num_frames) + 1) / 16
    assert np.allclose(traj.times, meta_times)


def test_dropper_lands_on_its_tower(tiny_config):
    config = tiny_config(min_droppers=1, max_droppers=1, min_tower=1, max_tower=1, num_frames=24,
                         category_weights={"primitive": 1.0}, lift_rule="bottom")
    scene = sample_scene(config, 3)
    traj = simulate(scene)
    tower, dropper = 0, scene.primary_index
    assert any({c.a, c.b} == {tower, dropper} for c in traj.contacts)
    assert traj.first_contact_frame(dropper) is not None
    assert all(c.frame >= 0 and c.time > 0 for c in traj.contacts)


def l_shape(path) -> str:
    """An L-shaped closed mesh (two boxes joined): its centre of mass is off its bounding-box centre."""
    boxes = [((0, 0, 0), (0.3, 0.1, 0.1)), ((0, 0, 0.1), (0.1, 0.1, 0.3))]
    lines, base = [], 0
    faces = [(1, 2, 3, 4), (5, 8, 7, 6), (1, 5, 6, 2), (2, 6, 7, 3), (3, 7, 8, 4), (4, 8, 5, 1)]
    for lo, hi in boxes:
        for x, y, z in ((0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)):
            lines.append(f"v {(lo[0], hi[0])[x]} {(lo[1], hi[1])[y]} {(lo[2], hi[2])[z]}")
        lines += ["f " + " ".join(str(base + i) for i in f[::-1]) for f in faces]
        base += 8
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_an_off_centre_mass_falls_without_turning_and_the_body_frame_is_recorded(tmp_path, scene_of):
    """Free fall exerts no torque about the centre of mass: the recorded body frame (bounding-box centre) falls
    exactly as a point would, even though PyBullet integrates the centre of mass."""
    mesh = l_shape(tmp_path / "l.obj")
    info = mesh_info(mesh)
    assert info.volume == pytest.approx(0.3 * 0.1 * 0.1 + 0.1 * 0.1 * 0.2)  # two boxes, not their hull
    assert not np.allclose(info.com, info.centre)
    q = (0.2, -0.3, 0.5, 0.787)
    q = tuple(np.asarray(q) / np.linalg.norm(q))
    obj = SceneObject(0, "dropper", "user/l", "l", "user", "mesh", mesh, None, None, (1.0, 1.0, 1.0),
                      tuple(info.extent / 2), tuple(info.centre), "red", (0.8, 0.1, 0.1), "plastic", 1.0,
                      info.volume, info.volume, 0.5, 0.5, (0.0, 0.0, 1.2), q)
    traj = simulate(scene_of([obj], DropSceneConfig(num_frames=6, resolution=64)))
    k = np.arange(6)
    steps = (k + 1) * 15
    assert np.allclose(traj.positions[:, 0, 2], 1.2 - G * (1 / 240) ** 2 * steps * (steps + 1) / 2, atol=1e-7)
    assert np.allclose(traj.positions[:, 0, :2], 0.0, atol=1e-7)
    assert np.allclose(np.abs(traj.orientations[:, 0] @ np.asarray(q)), 1.0, atol=1e-7)
    assert np.allclose(traj.angular_velocities, 0.0, atol=1e-9)
