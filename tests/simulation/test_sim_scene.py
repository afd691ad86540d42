import collections

import numpy as np
import pytest

from vidalign.simulation.assets import holdout, humanize, load_catalog
from vidalign.simulation.geometry import box_corners
from vidalign.simulation.scene import sample_scene
from vidalign.simulation.text import TRAINING_CAPTION, caption, drop_prompt


def test_same_seed_same_scene_different_seed_different(tiny_config):
    config = tiny_config()
    a, b = sample_scene(config, 7), sample_scene(config, 7)
    assert a == b and a.to_dict() == b.to_dict()
    others = [sample_scene(config, s).to_dict() for s in (8, 9, 10)]
    assert all(o != a.to_dict() for o in others)


def test_sampling_does_not_simulate(monkeypatch, tiny_config):
    import pybullet

    def refuse(*args, **kwargs):
        raise AssertionError("sample_scene must not start a physics client")

    monkeypatch.setattr(pybullet, "connect", refuse)
    assert sample_scene(tiny_config(), 3).objects


@pytest.mark.parametrize("seed", range(12))
def test_scene_invariants(seed, tiny_config):
    config = tiny_config()
    scene = sample_scene(config, seed)
    roles = [o.role for o in scene.objects]
    n_drop = roles.count("dropper")
    assert 1 <= n_drop <= config.max_droppers
    assert roles == ["tower"] * (len(roles) - n_drop) + ["dropper"] * n_drop  # droppers last
    assert scene.primary_index == len(scene.objects) - 1
    lo, hi = np.array(config.spawn_min), np.array(config.spawn_max)
    catalog = load_catalog()
    for obj in scene.objects:
        assert obj.index == scene.objects.index(obj)
        assert obj.mass == pytest.approx(obj.density * obj.volume) and obj.mass > 0
        if obj.shape == "mesh":  # native size: the asset's own scale, no resizing
            assert obj.scale == catalog.by_id(obj.asset_id).native_scale
        else:
            assert max(obj.half_extents) * 2 <= config.primitive_size_range[1] + 1e-9
        assert (obj.texture is None) == (obj.color is not None)  # textured objects keep their texture
        h, p = obj.world_half_extents, np.array(obj.position)
        assert p[2] - h[2] > 0  # everything starts above the floor
        if obj.role == "dropper":
            towers = [t for t in scene.objects if t.tower_of == obj.index]
            assert np.all(p[:2] - h[:2] >= lo[:2] - 1e-9) and np.all(p[:2] + h[:2] <= hi[:2] + 1e-9)
            assert p[2] - h[2] >= lo[2] - 1e-9 and p[2] + h[2] <= hi[2] + 1e-9
            assert (obj.lift_gap is not None) == bool(towers)  # drawn for the lift over the settled tower
            assert len({t.asset_id for t in towers}) == len(towers)  # distinct, as rng.choice(replace=False)
            # the whole drop path (box down to the floor) is in view of the final camera
            top = max([p[2]] + [t.position[2] + t.world_half_extents[2] + obj.lift_gap + h[2] for t in towers]) + h[2]
            corners = box_corners([p[0], p[1], top / 2], [h[0], h[1], top / 2])
            assert scene.camera.sees(corners)
        else:
            assert scene.objects[obj.tower_of].role == "dropper"
            assert obj.orientation == (0.0, 0.0, 0.0, 1.0)  # towers are stacked unrotated
    assert scene.camera.position[0] <= config.camera_xy[0]
    assert config.camera_height_range[0] <= scene.camera.position[2] <= config.camera_height_range[1]


def test_prompt_names_the_droppers_like_the_authors(tiny_config):
    for seed in range(4):
        scene = sample_scene(tiny_config(), seed)  # the authors' test prompts: "A toy falls.", no colour
        assert scene.prompt == drop_prompt([o.name for o in scene.droppers])
        assert scene.prompt.endswith("falls." if len(scene.droppers) == 1 else "fall at the same time.")
        coloured = sample_scene(tiny_config(prompt_style="color"), seed)
        assert coloured.prompt == drop_prompt([o.phrase for o in coloured.droppers])
    one = sample_scene(tiny_config(max_droppers=1, category_weights={"primitive": 1.0}), 0)
    assert one.prompt == f"A {one.droppers[0].name} falls."


def test_prompt_style():
    assert drop_prompt(["red mug"]) == "A red mug falls."
    assert drop_prompt(["toy duck", "jenga block"]) == "A toy duck and a jenga block fall at the same time."
    assert drop_prompt(["orange ball", "red mug", "blue box"]) == (
        "An orange ball, a red mug and a blue box fall at the same time.")
    assert caption("A red mug falls.", "constant") == TRAINING_CAPTION == "a video of an object dropping"
    assert humanize("Squirrel_Toy_2") == "squirrel toy" and humanize("redMug") == "red mug"


def test_split_is_kubrics_get_test_split():
    catalog = load_catalog()
    published = {"builtin/procedural": [f"{i:03d}" for i in range(1000)],  # every random_urdfs mesh shipped …
                 "builtin/object": sorted(a.key for a in catalog.assets if a.source == "builtin/object")}
    for source, keys in published.items():
        # kubric/assets/asset_source.py: rng = default_rng(42); rng.choice(ids, int(round(n * 0.1)), replace=False)
        expected = set(np.random.default_rng(42).choice(keys, size=int(round(len(keys) * 0.1)), replace=False))
        assert holdout(keys) == expected
        # … split as published; the unusable ones (NaN vertices) are left out afterwards, the rest keep their split
        left_out = {k for k in keys if f"pybullet_data/random_{k}" in catalog.excluded}
        assert {a.key for a in catalog.assets if a.source == source and a.split == "unseen"} == expected - left_out
        assert {a.key for a in catalog.assets if a.source == source} == set(keys) - left_out
    assert catalog.excluded == ("pybullet_data/random_168",)  # random_urdfs/168/168.obj: "v nan nan nan"
    assert sum(a.split == "unseen" for a in catalog.assets if a.source == "builtin/procedural") == 99
    bg = collections.Counter(b.split for b in catalog.backgrounds)
    assert bg["seen"] > 0 and bg["unseen"] == round(0.1 * len(catalog.backgrounds))
    load_catalog.cache_clear()
    again = load_catalog()
    assert [(a.id, a.split) for a in again.assets] == [(a.id, a.split) for a in catalog.assets]


def test_splits_draw_from_their_own_pools(tiny_config):
    catalog = load_catalog()
    unseen_ids = {a.id for a in catalog.assets if a.split == "unseen"}
    unseen_bg = {b.id for b in catalog.backgrounds if b.split == "unseen"}
    for seed in range(6):
        seen = sample_scene(tiny_config(split="seen"), seed)
        held = sample_scene(tiny_config(split="unseen"), seed)
        assert not {o.asset_id for o in seen.objects} & unseen_ids and seen.background.id not in unseen_bg
        assert {o.asset_id for o in held.objects} <= unseen_ids and held.background.id in unseen_bg


def test_randomised_properties_stay_in_range(tiny_config):
    config = tiny_config(friction_range=(0.1, 0.9), restitution_range=(0.0, 0.3), density_range=(200, 800))
    objs = [o for s in range(5) for o in sample_scene(config, s).objects]
    assert all(0.1 <= o.friction <= 0.9 and 0.0 <= o.restitution <= 0.3 and 200 <= o.density <= 800 for o in objs)
    assert len({round(o.friction, 6) for o in objs}) > 1


def test_bare_obj_folder_plugs_in(tmp_path, tiny_config):
    folder = tmp_path / "meshes" / "Red_Mug_01"
    folder.mkdir(parents=True)
    cube = ["v -.1 -.1 -.1", "v .1 -.1 -.1", "v .1 .1 -.1", "v -.1 .1 -.1", "v -.1 -.1 .1", "v .1 -.1 .1",
            "v .1 .1 .1", "v -.1 .1 .1", "f 1 4 3 2", "f 5 6 7 8", "f 1 2 6 5", "f 2 3 7 6", "f 3 4 8 7", "f 4 1 5 8"]
    (folder / "mug.obj").write_text("\n".join(cube) + "\n")
    config = tiny_config(asset_dir=str(tmp_path / "meshes"), builtin_assets=False, max_tower=0)
    catalog = load_catalog(config.asset_dir, False)
    assert [(a.id, a.name, a.category) for a in catalog.assets] == [("user/Red_Mug_01/mug", "mug", "user")]
    scene = sample_scene(config, 0)  # one asset: it is in the seen split
    assert {o.asset_id for o in scene.objects} == {"user/Red_Mug_01/mug"}
    assert scene.objects[0].mesh_ref == "asset_dir/Red_Mug_01/mug.obj"
    assert scene.objects[0].volume == pytest.approx(0.008)  # native scale, metres
    assert scene.objects[0].mass == pytest.approx(0.008 * 1.0)  # Kubric's mass = volume × 1.0


def test_meshes_with_non_finite_vertices_are_left_out(tmp_path, monkeypatch):
    from vidalign.errors import InputError
    from vidalign.simulation.meshes import read_obj

    monkeypatch.setenv("VIDALIGN_CACHE", str(tmp_path / "cache"))
    cube = ["v -.1 -.1 -.1", "v .1 -.1 -.1", "v .1 .1 -.1", "v -.1 .1 -.1", "v -.1 -.1 .1", "v .1 -.1 .1",
            "v .1 .1 .1", "v -.1 .1 .1", "f 1 4 3 2", "f 5 6 7 8", "f 1 2 6 5", "f 2 3 7 6", "f 3 4 8 7", "f 4 1 5 8"]
    keys = [f"toy_{i:02d}" for i in range(20)]
    for k in keys:
        lines = list(cube)
        if k in ("toy_03", "toy_11"):  # as pybullet_data's random_urdfs/168: some vertices are NaN or inf
            lines[2] = "v nan nan nan" if k == "toy_03" else "v 0.1 -inf 0.2"
        (tmp_path / "meshes").mkdir(exist_ok=True)
        (tmp_path / "meshes" / f"{k}.obj").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="non-finite"):  # read directly: a one-line error naming the file
        read_obj(str(tmp_path / "meshes" / "toy_03.obj"))
    unseen = holdout(keys)  # the authors' split over all 20 published meshes
    for _ in range(2):  # the second load answers from the cached check
        load_catalog.cache_clear()
        catalog = load_catalog(str(tmp_path / "meshes"), False)
        assert catalog.excluded == ("user/toy_03", "user/toy_11")
        assert [a.key for a in catalog.assets] == [k for k in keys if k not in ("toy_03", "toy_11")]
        assert {a.key for a in catalog.assets if a.split == "unseen"} == unseen - {"toy_03", "toy_11"}
    assert len(list((tmp_path / "cache" / "mesh_checks").iterdir())) == 1
    load_catalog.cache_clear()
