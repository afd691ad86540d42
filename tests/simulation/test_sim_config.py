import math

import pytest

from vidalign.errors import ConfigError
from vidalign.simulation.config import DropSceneConfig


def test_defaults_are_the_authors_parameters():
    c = DropSceneConfig()
    assert (c.fps, c.num_frames, c.physics_hz, c.substeps, c.gravity) == (16, 32, 240, 15, -10.0)
    assert (c.min_droppers, c.max_droppers, c.min_tower, c.max_tower) == (1, 5, 0, 3)
    assert (c.spawn_min, c.spawn_max) == ((-1.0, -1.0, 0.5), (1.0, 1.0, 1.5))
    assert c.settle_frames == 200 and c.max_placement_tries == 10 and c.min_projected_area == 0.025
    assert c.camera_xy == (-2.0, 0.0) and c.camera_height_range == (0.4, 0.6) and c.camera_step_std == 0.05
    assert (c.focal_length_mm, c.sensor_width_mm, c.resolution) == (35.0, 32.0, 256)
    assert c.fov_deg == pytest.approx(2 * math.degrees(math.atan(16 / 35)))
    assert c.fov_deg == pytest.approx(49.13, abs=0.01)
    assert (c.density, c.friction, c.restitution, c.floor_friction, c.floor_restitution) == (1.0, 0.5, 0.5, 1, 0)
    # the released code (sim_data/run.py on Kubric): full 200-frame settling, rendered frames 1..32, Kubric's
    # contacts, native object sizes, the dropper's centre put on the settled tower top, "A toy falls."
    assert (c.settle_until_rest, c.first_frame, c.contact_model) == (False, 1, "kubric")
    assert (c.object_scale, c.lift_rule, c.prompt_style, c.lift_margin) == ("native", "centre", "authors", (0.005, 0.005))
    assert c.density_range is None and c.friction_range is None and c.restitution_range is None


def test_round_trip_and_lists_are_normalised():
    c = DropSceneConfig(spawn_min=[-1, -1, 0.6], friction_range=[0.2, 0.8], category_weights={"object": 1.0})
    assert c.spawn_min == (-1.0, -1.0, 0.6) and c.friction_range == (0.2, 0.8)
    again = DropSceneConfig.from_dict(c.to_dict())
    assert again == c and hash(again) == hash(c)


@pytest.mark.parametrize(("changes", "field_name"), [
    ({"spawn_min": (-1, -1, -0.2)}, "spawn_min"),  # negative height
    ({"num_frames": 0}, "num_frames"),
    ({"spawn_max": (1, 1, 0.7)}, "spawn_max"),  # 0.2 m tall region cannot fit a 0.5 m object
    ({"object_size_range": (0.1, 3.0), "object_scale": "range"}, "spawn_max"),  # nor can it fit a 3 m object
    ({"primitive_size_range": (0.1, 3.0)}, "spawn_max"),
    ({"contact_model": "ode"}, "contact_model"),
    ({"lift_rule": "top"}, "lift_rule"),
    ({"first_frame": -1}, "first_frame"),
    ({"background_dir": "/nonexistent/maps"}, "background_dir"),
    ({"physics_hz": 250}, "physics_hz"),
    ({"fps": 0}, "fps"),
    ({"gravity": 9.8}, "gravity"),
    ({"camera_height_range": (-0.1, 0.5)}, "camera_height_range"),
    ({"restitution": 1.5}, "restitution"),
    ({"friction_range": (0.8, 0.2)}, "friction_range"),
    ({"max_droppers": 0}, "max_droppers"),
    ({"min_tower": -1}, "min_tower"),
    ({"split": "test"}, "split"),
    ({"camera_xy": (0.0, 0.0)}, "camera_xy"),
    ({"far": 0.01}, "far"),
    ({"asset_dir": "/nonexistent/folder"}, "asset_dir"),
])
def test_bad_configs_are_refused_with_the_field_named(changes, field_name):
    with pytest.raises(ConfigError) as err:
        DropSceneConfig(**changes)
    message = str(err.value)
    assert f"DropSceneConfig.{field_name}=" in message
    assert "\n" not in message


def test_spawn_region_message_says_why():
    with pytest.raises(ConfigError, match="cannot fit an object"):
        DropSceneConfig(spawn_max=(1, 1, 0.7))


def test_unknown_keys_are_named():
    with pytest.raises(ConfigError, match="unknown DropSceneConfig field"):
        DropSceneConfig.from_dict({"fps": 16, "frame_rate": 16})
