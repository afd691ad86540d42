"""HumanML3D features → joints (reference recover_from_ric), joints → features, tokens, validation."""

import numpy as np
import pytest

from vidalign import motion as m
from vidalign.errors import ConfigError, InputError

FPS = 20.0


def _rest_ric() -> np.ndarray:
    """REST_POSE joints 1..21 relative to the root's x/z (y kept absolute), as ric features store them."""
    rel = m.REST_POSE.copy()
    rel[:, [0, 2]] -= rel[0, [0, 2]]
    return rel[1:].reshape(-1)


def test_quaternion_helpers_match_rotation_matrices():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(5, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    v = rng.normal(size=(5, 3))
    w, x, y, z = q.T
    rot = np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)], 1)
    np.testing.assert_allclose(m.qrot(q, v), np.einsum("nij,nj->ni", rot, v), atol=1e-12)
    np.testing.assert_allclose(m.qmul(q, m.qinv(q)), np.tile([1.0, 0, 0, 0], (5, 1)), atol=1e-12)
    # HumanML3D's root quaternion (cos a, 0, sin a, 0) turns +z towards +x by 2a
    np.testing.assert_allclose(m.qrot(m.yaw_quat(np.pi / 4), np.array([0.0, 0, 1])), [1, 0, 0], atol=1e-12)


def test_straight_walk_from_hand_written_features():
    t, speed = 60, 1.5
    f = np.zeros((t, m.FEATURE_DIM), np.float32)
    f[:, 2] = speed / FPS  # forward (+z) root velocity per frame, no rotation
    f[:, 3] = 0.9
    f[:, m.RIC] = _rest_ric()
    j = m.features_to_joints(f)
    assert j.shape == (t, 22, 3) and j.dtype == np.float32
    # root displacement = speed × time, along +z only, at the stored height
    np.testing.assert_allclose(j[:, 0, 2], speed * np.arange(t) / FPS, atol=1e-5)
    np.testing.assert_allclose(j[-1, 0, 2] - j[0, 0, 2], speed * (t - 1) / FPS, atol=1e-5)
    np.testing.assert_allclose(j[:, 0, [0]], 0.0, atol=1e-7)
    np.testing.assert_allclose(j[:, 0, 1], 0.9, atol=1e-7)
    # non-root joints = root x/z + ric (the body faces +z, so no rotation)
    np.testing.assert_allclose(j[10, 1:] - [j[10, 0, 0], 0, j[10, 0, 2]], _rest_ric().reshape(21, 3), atol=1e-5)


def test_turning_root_follows_the_reference_integration():
    t, a, v = 40, 0.05, 0.1  # half-angle per frame, local forward step per frame
    f = np.zeros((t, m.FEATURE_DIM))
    f[:, 0], f[:, 2], f[:, 3] = a, v, 1.0
    f[:, 4:7] = [0.2, 1.0, 0.0]  # left hip: 0.2 m to the body's left
    j = m.features_to_joints(f).astype(np.float64)
    k = np.arange(1, t)
    expected = np.zeros((t, 2))  # x, z: frame t adds v rotated by the heading -2·A_t, A_t = t·a
    expected[1:, 0] = np.cumsum(-v * np.sin(2 * k * a))
    expected[1:, 1] = np.cumsum(v * np.cos(2 * k * a))
    np.testing.assert_allclose(j[:, 0, [0, 2]], expected, atol=1e-6)
    th = 2 * a * 17
    np.testing.assert_allclose(j[17, 1] - j[17, 0] * [1, 0, 1], [0.2 * np.cos(th), 1.0, 0.2 * np.sin(th)], atol=1e-6)


@pytest.mark.parametrize("turn_rate", [0.0, 0.9])
def test_joints_features_round_trip(turn_rate):
    walk = m.walk_motion(50, speed=1.2, turn_rate=turn_rate, heading=0.4)
    feats = m.joints_to_features(walk, smooth_sigma=2.0)
    assert feats.shape == (49, 263) and feats.dtype == np.float32
    canon = m.canonical_joints(walk, smooth_sigma=2.0)
    np.testing.assert_allclose(m.features_to_joints(feats), canon[:-1], atol=2e-5)
    if turn_rate == 0.0:  # walking straight at 1.2 m/s: the root covers speed × time
        d = np.linalg.norm(canon[-2, 0, [0, 2]] - canon[0, 0, [0, 2]])
        assert d == pytest.approx(1.2 * 48 / FPS, abs=1e-4)
        np.testing.assert_allclose(feats[:, 2], 1.2 / FPS, atol=1e-5)  # forward velocity in the body frame
    else:
        # half-angle yaw rate (the smoothed heading bends only near the clip's ends)
        np.testing.assert_allclose(feats[8:-8, 0], -turn_rate / FPS / 2, atol=1e-5)
    assert set(np.unique(feats[:, m.CONTACTS])) <= {0.0, 1.0}


def test_walk_motion_path_is_exact():
    w = m.walk_motion(41, speed=2.0, heading=np.pi / 2)  # along +x
    np.testing.assert_allclose(w[:, 0, 0], 2.0 * np.arange(41) / FPS, atol=1e-5)
    np.testing.assert_allclose(w[:, 0, 2], 0.0, atol=1e-5)


def test_normalised_features_are_denormalised():
    f = m.joints_to_features(m.walk_motion(45))
    mean, std = f.mean(0), f.std(0) + 1.0
    np.testing.assert_allclose(m.features_to_joints((f - mean) / std, mean, std), m.features_to_joints(f), atol=1e-5)


def test_motion_tokens_as_text():
    vocab = m.motion_vocab()
    assert len(vocab) == 515 and vocab[0] == "<motion_id_0>" and vocab[-1] == "<motion_id_514>"
    s = m.motion_string(np.array([3, 0, 511]))
    assert s == "<motion_id_512><motion_id_3><motion_id_0><motion_id_511><motion_id_513>"
    assert m.parse_motion_string("text " + s + "<motion_id_514>") == [3, 0, 511]
    with pytest.raises(ConfigError, match="codes"):
        m.motion_string([512])
    with pytest.raises(ConfigError):
        m.motion_string([])


def test_check_features_refuses_bad_motions():
    good = np.zeros((60, 263), np.float32)
    assert m.check_features(good[None], "x.npy").shape == (60, 263)  # MotionGPT's [1, T, 263]
    with pytest.raises(InputError, match=r"x.npy: field 'features': shape \(60, 262\)"):
        m.check_features(good[:, :262], "x.npy")
    bad = good.copy()
    bad[[7, 9], 3] = np.nan
    with pytest.raises(InputError, match="2 frame.*NaN/inf.*frame 7"):
        m.check_features(bad, "x.npy")
    with pytest.raises(InputError, match="39 frames is outside 40..196"):
        m.check_features(good[:39], "x.npy")
    with pytest.raises(InputError, match="197 frames"):
        m.check_features(np.zeros((197, 263)), "x.npy")
    with pytest.raises(InputError, match="dtype int64"):
        m.check_features(np.zeros((60, 263), np.int64), "x.npy")
