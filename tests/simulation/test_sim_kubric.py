import sys

import numpy as np
import pytest

from vidalign.simulation import kubric_compat
from vidalign.simulation.assets import read_obj_vertices
from vidalign.simulation.kubric_render import write_cylinder_obj


def test_murmurhash_matches_reference_vectors():
    assert kubric_compat.murmurhash3_32(b"") == 0
    assert kubric_compat.murmurhash3_32(b"", seed=1) == 0x514E28B7
    assert kubric_compat.murmurhash3_32(b"hello") == 613153351
    assert kubric_compat.murmurhash3_32(b"The quick brown fox jumps over the lazy dog") == 0x2E4FF723
    h = kubric_compat.mm3hash("object_00")
    assert (h >> 23) & 255 not in (0, 255)  # a finite float32 bit pattern, as Cryptomatte requires


def test_stand_ins_are_scoped():
    mods = {"vidalign_fake_tf": type(sys)("vidalign_fake_tf")}
    with kubric_compat._scoped_modules(mods):
        assert "vidalign_fake_tf" in sys.modules
    assert "vidalign_fake_tf" not in sys.modules


def test_cylinder_mesh(tmp_path):
    verts = read_obj_vertices(write_cylinder_obj(tmp_path / "c.obj"))
    assert np.allclose(verts.min(axis=0), [-1, -1, -1]) and np.allclose(verts.max(axis=0), [1, 1, 1])


def test_kubric_renders_a_tiny_scene(tiny_config):
    pytest.importorskip("bpy")
    pytest.importorskip("OpenEXR")
    from vidalign.simulation.physics import simulate
    from vidalign.simulation.render import render
    from vidalign.simulation.scene import sample_scene

    config = tiny_config(num_frames=4, max_droppers=1, max_tower=1, category_weights={"primitive": 1.0})
    scene = sample_scene(config, 0)
    traj = simulate(scene)
    ren = render(scene, traj, "kubric", samples_per_pixel=4)
    ref = render(scene, traj, "pybullet")
    assert ren.rgb.shape == ref.rgb.shape == (4, 64, 64, 3) and ren.rgb.dtype == np.uint8
    assert ren.masks.shape == ref.masks.shape and ren.depth.dtype == np.float32
    # same camera and poses: the dropper's masks overlap the TinyRenderer ones
    inter = (ren.masks[:, -1] & ref.masks[:, -1]).sum()
    union = (ren.masks[:, -1] | ref.masks[:, -1]).sum()
    assert union > 0 and inter / union > 0.6
    assert np.nanmedian(np.abs(ren.depth - ref.depth)) < 0.1
    # the scene model as the other renderers draw it: the default background's map is the backdrop (no wall) …
    assert scene.background.env_map and not scene.background.has_wall
    assert np.abs(ren.rgb[0, 2, 32].astype(int) - ref.rgb[0, 2, 32]).max() <= 4
    # … and a studio wall shows its declared colour (sRGB), evenly lit, at the wall's distance
    import dataclasses

    from vidalign.simulation.backgrounds import studio_backgrounds

    studio = next(b for b in studio_backgrounds() if b.id == "studio/gray_floor/beige_wall")
    scene = dataclasses.replace(scene, background=studio)
    one = dataclasses.replace(traj, positions=traj.positions[:1], orientations=traj.orientations[:1],
                              linear_velocities=traj.linear_velocities[:1], angular_velocities=traj.angular_velocities[:1])
    ren, ref = render(scene, one, "kubric", samples_per_pixel=4), render(scene, one, "pybullet")
    assert np.abs(ren.rgb[0, 2, 32].astype(int) - np.round(np.asarray(studio.wall_rgb) * 255)).max() <= 3
    assert ren.depth[0, 2, 32] == pytest.approx(ref.depth[0, 2, 32], rel=1e-3)
