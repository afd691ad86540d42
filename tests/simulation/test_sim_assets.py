"""Asset folders in the layouts people have: Google Scanned Objects as published, Kubric's asset format."""

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidalign.errors import VidalignError
from vidalign.simulation.asset_folders import folder_assets
from vidalign.simulation.config import DropSceneConfig
from vidalign.simulation.meshes import cache_dir, convex_decomposition, mesh_info, read_obj
from vidalign.simulation.physics import collider_kind, simulate
from vidalign.simulation.render import render
from vidalign.simulation.scene import SceneObject

MAGENTA, TEAL = (220, 30, 200), (20, 170, 160)


def texture_png() -> bytes:
    """Left half magenta, right half teal."""
    img = np.zeros((32, 32, 3), np.uint8)
    img[:, :16], img[:, 16:] = MAGENTA, TEAL
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def cube_obj(half: float, mtllib: str, centre=(0.0, 0.0, 0.0)) -> str:
    """A closed cube with UVs (every face maps the whole texture), as exporters write it."""
    c = np.asarray(centre)
    corners = [c + half * np.array(s) for s in ((-1, -1, -1), (1, -1, -1), (1, 1, -1), (-1, 1, -1),
                                                (-1, -1, 1), (1, -1, 1), (1, 1, 1), (-1, 1, 1))]
    lines = [f"mtllib {mtllib}", "o model"] + [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in corners]
    lines += ["vt 0 0", "vt 1 0", "vt 1 1", "vt 0 1", "usemtl material_0"]
    for f in ((1, 4, 3, 2), (5, 6, 7, 8), (1, 2, 6, 5), (2, 3, 7, 6), (3, 4, 8, 7), (4, 1, 5, 8)):
        lines.append("f " + " ".join(f"{v}/{k + 1}" for k, v in enumerate(f)))
    return "\n".join(lines) + "\n"


MTL = "newmtl material_0\nKa 0.2 0.2 0.2\nKd 0.8 0.8 0.8\nmap_Kd texture.png\n"


def write_gso(root, name="Toy_Cube_7", half=0.1):
    """One object as Google Scanned Objects publishes it (the .mtl names texture.png without its folder)."""
    obj = root / name
    (obj / "meshes").mkdir(parents=True)
    (obj / "materials" / "textures").mkdir(parents=True)
    (obj / "meshes" / "model.obj").write_text(cube_obj(half, "model.mtl", centre=(0.3, 0.1, half)))
    (obj / "meshes" / "model.mtl").write_text(MTL)
    (obj / "materials" / "textures" / "texture.png").write_bytes(texture_png())
    (obj / "metadata.pbtxt").write_text(f'name: "{name}"\nversion: 1\ndescription: "A toy cube"\n'
                                        f'categories: "Toys"\nlicense: "CC-BY 4.0"\n')
    (obj / "model.config").write_text("<?xml version='1.0'?><model><name>x</name></model>\n")
    return obj


def kubric_members(name: str, half: float) -> dict[str, bytes]:
    """One asset as Kubric's download_GSO.py writes it: centred on its centre of mass, V-HACD parts for collision."""
    volume = (2 * half) ** 3
    two_parts = cube_obj(half, "none.mtl").replace("o model", "o part_0")
    lower = cube_obj(half / 2, "none.mtl", centre=(0, 0, -half / 2)).replace("o model", "o part_1")
    entry = {"id": name, "asset_type": "FileBasedObject",
             "kwargs": {"bounds": [[-half] * 3, [half] * 3], "mass": volume,
                        "render_filename": "{asset_dir}/visual_geometry.obj",
                        "simulation_filename": "{asset_dir}/object.urdf"},
             "license": "CC BY-SA 4.0",
             "metadata": {"nr_faces": 12, "nr_vertices": 8, "surface_area": 24 * half ** 2, "volume": volume,
                          "category": "Toys", "description": "A toy cube"}}
    return {"visual_geometry.obj": cube_obj(half, "visual_geometry.mtl").encode(),
            "visual_geometry.mtl": MTL.encode(), "texture.png": texture_png(),
            "collision_geometry.obj": (two_parts + "\n".join(
                line for line in lower.splitlines() if not line.startswith("mtllib")) + "\n").encode(),
            "object.urdf": b"<robot name='x'/>\n", "data.json": json.dumps(entry).encode()}, entry


def write_kubric(root, name="Toy_Cube_7", half=0.1):
    """A Kubric asset source: manifest (its data_dir a bucket) + a flat <id>.tar.gz."""
    root.mkdir(parents=True, exist_ok=True)
    members, entry = kubric_members(name, half)
    with tarfile.open(root / f"{name}.tar.gz", "w:gz") as tar:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    manifest = {"name": "GSO", "data_dir": "gs://kubric-public/assets/GSO", "version": "1.0",
                "assets": {name: entry}}
    (root / "GSO.json").write_text(json.dumps(manifest))


def object_of(asset, position=(0.0, 0.0, 0.6)) -> SceneObject:
    info = mesh_info(asset.mesh, asset.collision_mesh)
    return SceneObject(0, "dropper", asset.id, asset.name, asset.category, "mesh", asset.mesh, asset.collision_mesh,
                       asset.ref, asset.native_scale, tuple(info.extent / 2), tuple(info.centre), None,
                       (1.0, 1.0, 1.0), "plastic", 1.0, asset.volume or info.volume, asset.volume or info.volume,
                       0.5, 0.5, position, (0.0, 0.0, 0.0, 1.0), texture=asset.texture, asset_key=asset.key)


def assert_texture_shows(scene_of, studio, asset):
    scene = scene_of([object_of(asset)], DropSceneConfig(num_frames=2, resolution=96), camera_x=-1.5,
                     background=studio("gray", "white"))
    ren = render(scene, simulate(scene))
    pixels = ren.rgb[0][ren.masks[0, 0]].astype(float)
    assert len(pixels) > 200
    for colour in (MAGENTA, TEAL):  # hue survives the lighting: compare chromaticity
        ref = np.asarray(colour, float) / sum(colour)
        chroma = pixels / np.maximum(pixels.sum(axis=1, keepdims=True), 1)
        assert (np.abs(chroma - ref).max(axis=1) < 0.06).mean() > 0.15, colour


def test_google_scanned_objects_as_published(tmp_path, scene_of, studio):
    write_gso(tmp_path / "gso")
    (asset,) = folder_assets(str(tmp_path / "gso"))
    assert (asset.id, asset.key, asset.name) == ("gso/Toy_Cube_7", "Toy_Cube_7", "toy cube")
    assert asset.texture.endswith("materials/textures/texture.png") and asset.description == "A toy cube"
    assert asset.native_scale == (1.0, 1.0, 1.0)  # metres as published
    info = mesh_info(asset.mesh)
    assert np.allclose(info.extent, 0.2) and info.closed and info.volume == pytest.approx(0.008)
    assert np.allclose(info.com, (0.3, 0.1, 0.1))
    assert_texture_shows(scene_of, studio, asset)


def test_kubric_asset_source_with_manifest(tmp_path, scene_of, studio, monkeypatch):
    monkeypatch.setenv("VIDALIGN_CACHE", str(tmp_path / "cache"))
    write_kubric(tmp_path / "kubric")
    (asset,) = folder_assets(str(tmp_path / "kubric"))
    assert (asset.id, asset.key) == ("kubric/Toy_Cube_7", "Toy_Cube_7")
    assert asset.volume == pytest.approx(0.008) and asset.texture.endswith("texture.png")
    assert asset.collision_mesh.endswith("collision_geometry.obj")
    assert collider_kind(object_of(asset)) == "parts"  # the V-HACD parts, not one hull
    assert str(tmp_path / "cache") in asset.mesh  # unpacked once into the cache
    assert folder_assets(str(tmp_path / "kubric"))[0].mesh == asset.mesh
    assert_texture_shows(scene_of, studio, asset)
    # the same asset unpacked in a folder, without manifest
    folder = tmp_path / "loose" / "Toy_Cube_7"
    folder.mkdir(parents=True)
    for member, data in kubric_members("Toy_Cube_7", 0.1)[0].items():
        (folder / member).write_bytes(data)
    (loose,) = folder_assets(str(tmp_path / "loose"))
    assert loose.key == "Toy_Cube_7" and loose.volume == pytest.approx(0.008) and loose.texture


def test_unsafe_archive_members_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDALIGN_CACHE", str(tmp_path / "cache"))
    write_kubric(tmp_path / "k")
    with tarfile.open(tmp_path / "k" / "Toy_Cube_7.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("../../evil.obj")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(VidalignError, match="unsafe"):
        folder_assets(str(tmp_path / "k"))
    assert not (tmp_path / "evil.obj").exists()


def cup_obj(path) -> str:
    """An open cup 16 cm wide, 12 cm tall, 2 cm walls: five boxes (a closed surface, concave overall)."""
    boxes = [((-0.08, -0.08, 0.0), (0.08, 0.08, 0.02)), ((-0.08, -0.08, 0.02), (-0.06, 0.08, 0.12)),
             ((0.06, -0.08, 0.02), (0.08, 0.08, 0.12)), ((-0.06, -0.08, 0.02), (0.06, -0.06, 0.12)),
             ((-0.06, 0.06, 0.02), (0.06, 0.08, 0.12))]
    faces = [(1, 4, 3, 2), (5, 6, 7, 8), (1, 2, 6, 5), (2, 3, 7, 6), (3, 4, 8, 7), (4, 1, 5, 8)]
    lines, base = [], 0
    for lo, hi in boxes:
        for x, y, z in ((0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)):
            lines.append(f"v {(lo[0], hi[0])[x]} {(lo[1], hi[1])[y]} {(lo[2], hi[2])[z]}")
        lines += ["f " + " ".join(str(base + i) for i in f) for f in faces]
        base += 8
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_a_cup_stays_hollow(tmp_path, scene_of, primitive):
    """A concave mesh without a collision mesh gets a (cached) V-HACD decomposition, so a ball dropped into a cup
    ends inside it, not on a lid that one convex hull would add."""
    (tmp_path / "cups").mkdir()
    mesh = cup_obj(tmp_path / "cups" / "cup.obj")
    (asset,) = folder_assets(str(tmp_path / "cups"))
    info = mesh_info(mesh)
    assert info.concave and info.volume == pytest.approx(0.16 * 0.16 * 0.02 + 2 * 0.02 * 0.16 * 0.1
                                                         + 2 * 0.12 * 0.02 * 0.1)
    cup = dataclasses_replace(object_of(asset, (0.0, 0.0, 0.061)), role="tower", tower_of=1)
    ball = primitive(1, "sphere", (0.03,) * 3, (0.0, 0.0, 0.4), density=1.0)  # Kubric's density, as the cup's
    config = DropSceneConfig(num_frames=20, resolution=64, settle_frames=5, vhacd_resolution=10_000)
    assert collider_kind(cup, config.decompose) == "decomposition"
    traj = simulate(scene_of([cup, ball], config))
    inside = traj.positions[-1, 1] - traj.positions[-1, 0] + (0.0, 0.0, 0.06)  # in the cup's mesh frame
    assert 0.02 < inside[2] < 0.12  # on the cup's bottom, below the rim
    assert np.abs(inside[:2]).max() < 0.06 - 0.03 + 0.005
    parts = convex_decomposition(mesh, resolution=10_000)  # cached under the mesh's hash: computed once
    assert Path(parts).parent == cache_dir() / "vhacd" and read_obj(parts).parts > 1
    hull = DropSceneConfig(num_frames=20, resolution=64, settle_frames=5, decompose=False)
    lid = simulate(scene_of([cup, ball], hull))
    assert lid.positions[-1, 1, 2] - lid.positions[-1, 0, 2] + 0.06 > 0.12  # one hull: it lands on a lid


def dataclasses_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


def test_kubric_drop_records_the_asset_and_background_of_each_clip(tmp_path, monkeypatch):
    """``--asset-dir`` and ``--background-dir`` reach the scenes; each clip's json and the card name them."""
    from vidalign.builder import BuildOptions
    from vidalign.runner import run_build
    from vidalign.shards import iter_tar_samples

    monkeypatch.setenv("VIDALIGN_CACHE", str(tmp_path / "cache"))
    write_gso(tmp_path / "gso")
    maps = tmp_path / "maps"
    maps.mkdir()
    Image.fromarray(np.full((8, 16, 3), 140, np.uint8)).save(maps / "grey_day.png")
    out = tmp_path / "ds"
    (tmp_path / "scene.json").write_text(json.dumps({"builtin_assets": False, "max_tower": 0, "settle_frames": 0}))
    run_build("kubric-drop", {"num_samples": 1, "resolution": 32, "frames": 2, "asset_dir": str(tmp_path / "gso"),
                              "background_dir": str(maps), "scene_config": str(tmp_path / "scene.json")},
              BuildOptions(out=out, seed=0, samples_per_shard=1, progress=False))
    (sample,) = [s for p in sorted((out / "data" / "train").glob("*.tar")) for s in iter_tar_samples(p)]
    meta = sample["json"]
    assert meta["background_id"] == "env/grey_day" and meta["background"]["env_map"].endswith("grey_day.png")
    assert set(meta["assets"]) == {o["asset_id"] for o in meta["objects"]} == {"gso/Toy_Cube_7"}
    assert meta["objects"][0]["texture"].endswith("materials/textures/texture.png")
    assert meta["scene_config"]["asset_dir"] == str(tmp_path / "gso")
    card = (out / "README.md").read_text()
    assert "`gso`" in card and "`maps`" in card and "background_id" in card and "contact model `kubric`" in card
