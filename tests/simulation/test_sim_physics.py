import math

import numpy as np
import pytest

from vidalign.simulation.physics import FLOOR, simulate
from vidalign.simulation.scene import sample_scene


def test_free_fall_matches_kinematics(sphere_scene):
    h, r = 1.0, 0.1
    scene = sphere_scene(height=h, radius=r)
    traj = simulate(scene)
    g = -scene.config.gravity
    t_contact = math.sqrt(2 * h / g)
    floor_hits = [c for c in traj.contacts if (c.a, c.b) == (FLOOR, 0)]
    assert floor_hits, "the ball never reached the floor"
    first = floor_hits[0]
    assert abs(first.time - t_contact) <= 1 / scene.config.fps
    assert abs(first.frame - t_contact * scene.config.fps) <= 1
    assert first.position[2] == pytest.approx(0.0, abs=0.02)  # within one step of travel (4.5 m/s · dt)
    # before contact the bottom follows h − g t²/2 to within 1 % (of the drop height), velocity −g t
    times = traj.times
    before = times < t_contact
    assert before.sum() >= 6
    bottom = traj.positions[before, 0, 2] - r
    expected = h - g * times[before] ** 2 / 2
    assert np.max(np.abs(bottom - expected)) <= 0.01 * h
    assert np.allclose(traj.linear_velocities[before, 0, 2], -g * times[before], atol=0.05)
    assert np.allclose(traj.positions[before, 0, :2], 0.0, atol=1e-9)  # straight down
    # after contact it rests on the floor (floor restitution 0: no bounce)
    assert traj.positions[-1, 0, 2] == pytest.approx(r, abs=2e-3)


def test_same_scene_same_trajectories_and_seeds_differ(tiny_config):
    config = tiny_config()
    scene = sample_scene(config, 5)
    a, b = simulate(scene), simulate(scene)
    for name in ("positions", "orientations", "linear_velocities", "angular_velocities"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert a.contacts == b.contacts
    other = simulate(sample_scene(config, 6))
    assert other.positions.shape != a.positions.shape or not np.allclose(other.positions, a.positions)


def test_shapes_and_frame_zero_is_the_start(tiny_config):
    config = tiny_config(min_tower=0, max_tower=0)
    scene = sample_scene(config, 2)
    traj = simulate(scene)
    n = len(scene.objects)
    assert traj.positions.shape == (config.num_frames, n, 3) and traj.orientations.shape == (config.num_frames, n, 4)
    assert np.allclose(traj.positions[0], [o.position for o in scene.objects])
    assert np.allclose(np.linalg.norm(traj.orientations, axis=-1), 1.0)
    assert np.allclose(traj.linear_velocities[0], 0.0)  # objects start at rest
    assert traj.times[1] == pytest.approx(1 / 16)


def test_towers_are_settled_before_the_drop(tiny_config):
    config = tiny_config(min_droppers=1, max_droppers=1, min_tower=2, max_tower=2, settle_frames=200,
                         num_frames=4, category_weights={"primitive": 1.0})
    scene = sample_scene(config, 1)
    towers = [o for o in scene.objects if o.role == "tower"]
    assert len(towers) == 2
    traj = simulate(scene)
    idx = [o.index for o in towers]
    assert np.all(np.linalg.norm(traj.linear_velocities[0, idx], axis=-1) < 0.05)
    assert np.all(traj.positions[0, idx, 2] > 0)
    dropper = scene.droppers[0].index
    assert traj.positions[0, dropper, 2] > traj.positions[0, idx, 2].max()


def test_dropper_lands_on_its_tower(tiny_config):
    config = tiny_config(min_droppers=1, max_droppers=1, min_tower=1, max_tower=1, num_frames=24,
                         category_weights={"primitive": 1.0})
    scene = sample_scene(config, 3)
    traj = simulate(scene)
    tower, dropper = 0, scene.primary_index
    assert any({c.a, c.b} == {tower, dropper} for c in traj.contacts)
    assert traj.first_contact_frame(dropper) is not None
    assert all(c.frame >= 1 and c.time > 0 for c in traj.contacts)
