"""Backgrounds: environment maps (a folder, or procedural skies) and floors; their IO and conventions."""

import json

import numpy as np
import pytest
from PIL import Image

from vidalign.errors import ConfigError
from vidalign.simulation.assets import load_catalog
from vidalign.simulation.backgrounds import (
    EnvMap,
    folder_backgrounds,
    ground_texture,
    procedural_backgrounds,
    read_env_map,
    read_hdr,
    sky_map,
    srgb_to_linear,
    write_hdr,
)
from vidalign.simulation.config import DropSceneConfig
from vidalign.simulation.physics import simulate
from vidalign.simulation.render import render
from vidalign.simulation.scene import sample_scene


def rle_hdr(path, rgbe: np.ndarray) -> None:
    """A Radiance file with run-length encoded scanlines, as HDRI sites publish them (runs: 128 + n, value)."""
    h, w = rgbe.shape[:2]
    out = bytearray(b"#?RADIANCE\n# made by a test\nFORMAT=32-bit_rle_rgbe\nEXPOSURE=1.0\n\n")
    out += f"-Y {h} +X {w}\n".encode()
    for row in rgbe:
        out += bytes([2, 2, w >> 8, w & 255])
        for ch in range(4):
            values, x = row[:, ch], 0
            while x < w:
                run = 1
                while x + run < w and run < 127 and values[x + run] == values[x]:
                    run += 1
                if run > 1:
                    out += bytes([128 + run, values[x]])
                    x += run
                else:
                    out += bytes([1, values[x]])
                    x += 1
    path.write_bytes(bytes(out))


def test_hdr_files_read_and_write(tmp_path):
    rgbe = np.zeros((4, 16, 4), np.uint8)
    rgbe[..., :3] = (128, 64, 32)
    rgbe[..., 3] = 129  # × 2^(129 − 136)·... : 128/256 · 2 = 1.0 for the first channel
    rgbe[2, 5:9] = (200, 100, 50, 130)
    rle_hdr(tmp_path / "rle.hdr", rgbe)
    img = read_hdr(str(tmp_path / "rle.hdr"))
    assert img.shape == (4, 16, 3)
    assert np.allclose(img[0, 0], [1.0, 0.5, 0.25]) and np.allclose(img[2, 6], [200 / 64, 100 / 64, 50 / 64])
    linear = np.random.default_rng(0).uniform(0, 50, (8, 16, 3)).astype(np.float32)
    write_hdr(tmp_path / "flat.hdr", linear)
    back = read_hdr(str(tmp_path / "flat.hdr"))  # RGBE shares one exponent: 8 bits relative to the brightest channel
    assert np.all(np.abs(back - linear) <= linear.max(axis=-1, keepdims=True) / 128)


def test_equirectangular_convention_is_blenders_z_up():
    """u = 0.5 − atan2(y, x)/2π, v = 0.5 + asin(z)/π: +x (where the camera looks) is the image centre."""
    img = np.zeros((64, 128, 3), np.float32)
    img[:, 60:68] = (1, 0, 0)  # centre column: +x
    img[:, 28:36] = (0, 1, 0)  # u = 0.25: +y
    img[:2] = (0, 0, 1)  # top rows: +z
    env = EnvMap(img)
    assert np.allclose(env.lookup(np.array([1.0, 0, 0])), (1, 0, 0))
    assert np.allclose(env.lookup(np.array([0, 1.0, 0])), (0, 1, 0))
    assert np.allclose(env.lookup(np.array([0, 0, 1.0])), (0, 0, 1))
    assert np.allclose(env.lookup(np.array([[1.0, 0, 0.1], [0, 2.0, 0]])), [(1, 0, 0), (0, 1, 0)])


def write_maps(folder, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        img = np.zeros((8, 16, 3), np.uint8)
        img[:4], img[4:] = (40 + 10 * i, 120, 200), (90, 80, 60)
        Image.fromarray(img).save(folder / f"map_{i:02d}.png")
        names.append(f"map_{i:02d}")
    return names


def test_a_folder_of_maps_splits_like_kubrics_hdris(tmp_path):
    names = write_maps(tmp_path / "maps", 11)
    write_hdr(tmp_path / "maps" / "studio_small.hdr", np.ones((4, 8, 3), np.float32))
    backgrounds = folder_backgrounds(str(tmp_path / "maps"))
    keys = sorted(names + ["studio_small"])
    assert sorted(b.id for b in backgrounds) == [f"env/{k}" for k in keys]
    assert all(b.env_map and not b.has_wall and b.floor_texture is None for b in backgrounds)
    catalog = load_catalog(None, True, str(tmp_path / "maps"))
    expected = set(np.random.default_rng(42).choice(keys, size=int(round(len(keys) * 0.1)), replace=False))
    assert {b.id[4:] for b in catalog.backgrounds if b.split == "unseen"} == expected and len(expected) == 1
    # a Kubric HDRI manifest with Texture assets
    kub = tmp_path / "hdri"
    (kub / "sky_a").mkdir(parents=True)
    write_hdr(kub / "sky_a" / "sky_a.hdr", np.ones((4, 8, 3), np.float32))
    (kub / "HDRI_haven.json").write_text(json.dumps({"name": "HDRI_haven", "data_dir": "gs://kubric-public/x",
                                                     "assets": {"sky_a": {"asset_type": "Texture",
                                                                          "kwargs": {"filename": "{asset_dir}/sky_a.hdr"}}}}))
    (bg,) = folder_backgrounds(str(kub))
    assert bg.id == "env/sky_a" and bg.env_map.endswith("sky_a.hdr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="background_dir"):
        folder_backgrounds(str(tmp_path / "empty"))


def test_the_map_is_the_backdrop_and_its_ground_the_floor(tmp_path, sphere_scene):
    folder = tmp_path / "one"
    folder.mkdir()
    img = np.zeros((64, 128, 3), np.uint8)
    img[:32], img[32:] = (150, 150, 150), (60, 90, 40)  # grey sky (white skylight), green ground
    img[:8, :64] = (200, 120, 40)  # an orange band behind the camera's top-left
    Image.fromarray(img).save(folder / "field.png")
    (bg,) = folder_backgrounds(str(folder))
    scene = sphere_scene(height=1.0, radius=0.05, x=1.0, y=0.6, background=bg)
    frame = render(scene, simulate(scene)).rgb[0].astype(float)
    w = frame.shape[0]
    assert np.allclose(frame[2, w // 2], (150, 150, 150), atol=2)  # an LDR map is shown as it is
    floor = np.median(frame[-w // 8:, w // 2 - 8: w // 2 + 8].reshape(-1, 3), axis=0)
    assert np.allclose(floor, (60, 90, 40), rtol=0.15)  # the map's ground, in sunlight


def test_procedural_backgrounds_are_deterministic_and_used_by_default(tiny_config):
    assert np.array_equal(ground_texture("wood", 64)[0], ground_texture("wood", 64)[0])
    assert np.array_equal(sky_map("clear", 128), sky_map("clear", 128))
    assert not np.array_equal(ground_texture("wood", 64)[0], ground_texture("tiles", 64)[0])
    backgrounds = procedural_backgrounds()
    assert len(backgrounds) == 30 and all(b.env_map and b.floor_texture for b in backgrounds)
    clear = next(b for b in backgrounds if b.id == "procedural/clear_sky/grass")
    sky = srgb_to_linear(np.asarray(clear.wall_rgb))
    assert sky[2] > sky[0]  # a clear sky's horizon is bluish
    scene = sample_scene(tiny_config(), 0)
    assert scene.background.source == "procedural"
    meta = scene.to_dict()["background"]
    assert meta["env_map"].startswith("vidalign_cache/backgrounds/") and meta["id"] == scene.background.id
    studio = sample_scene(tiny_config(backgrounds="studio"), 0)
    assert studio.background.has_wall and studio.background.env_map is None
    assert DropSceneConfig().backgrounds == "procedural"


def test_exr_maps_are_read(tmp_path):
    exr = pytest.importorskip("OpenEXR")
    rgb = np.random.default_rng(0).uniform(0, 5, (4, 8, 3)).astype(np.float32)
    header = {"compression": exr.ZIP_COMPRESSION, "type": exr.scanlineimage}
    with exr.File(header, {"R": rgb[..., 0].copy(), "G": rgb[..., 1].copy(), "B": rgb[..., 2].copy()}) as f:
        f.write(str(tmp_path / "sky.exr"))
    (bg,) = folder_backgrounds(str(tmp_path))
    assert bg.id == "env/sky" and np.allclose(read_env_map(bg.env_map), rgb)
