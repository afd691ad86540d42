"""Asset folders in the layouts people have, read into :class:`~vidalign.simulation.assets.Asset` records.

``asset_dir`` may hold any mix of (searched recursively)::

    <manifest>.json                      Kubric asset source: {"name", "data_dir", "assets": {id: entry}}
    <id>.tar.gz | <id>/                  its assets (data_dir, else beside the manifest); each holds
        visual_geometry.obj (+ .mtl)     render mesh, z up, metres, centred on its centre of mass
        collision_geometry.obj           V-HACD convex parts (Kubric's ``download_GSO.py`` runs pybullet.vhacd)
        texture.png, object.urdf
        data.json                        the manifest entry: kwargs {bounds, mass, render_filename, ...},
                                         metadata {volume, category, description, ...}
    <Name>/                              Google Scanned Objects as published (one folder per object)
        meshes/model.obj, model.mtl
        materials/textures/texture.png
        metadata.pbtxt, model.config
    anything.obj                         a bare mesh (collider beside it: *_col.obj, *_vhacd.obj, collision.obj)

Objects keep their native scale (metres) and their texture; the mass follows Kubric's rule, volume × density
(their manifests give ``mass = volume × 1.0``). Each layout found is one *source* for the seen/unseen split, and
asset keys are the ids the authors' manifests use (the GSO folder name), so the held-out set matches theirs.
``names.json`` in ``asset_dir`` (``{key or folder: prompt name}``) overrides prompt names.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

from vidalign.errors import ConfigError, InputError
from vidalign.format import safe_member_path
from vidalign.simulation.assets import Asset, humanize
from vidalign.simulation.meshes import cache_dir, obj_texture

_GENERIC_STEMS = {"model", "mesh", "visual_geometry", "textured", "model_normalized", "object"}
_SKIP_DIRS = {"meshes", "mesh", "models", "model", "visual", "collision"}
_COLLIDER_NAMES = ("collision_geometry.obj", "collision.obj", "model_col.obj")


def _read_names(root: Path) -> dict[str, str]:
    path = root / "names.json"
    if not path.exists():
        return {}
    try:
        return {str(k): str(v) for k, v in json.loads(path.read_text()).items()}
    except (ValueError, AttributeError) as exc:
        raise InputError(path, None, f"not a JSON object of names ({exc})",
                         'write {"folder_or_id": "prompt name", ...}') from exc


def gso_name(key: str) -> str:
    """A prompt name from a Google Scanned Objects id: ``"Ecoforms_Plant_Container_12"`` → ``"ecoforms plant
    container"`` (digits and trailing size codes dropped)."""
    units = {"oz", "cm", "mm", "in", "pack", "inch", "ct", "pk"}
    words = [w for w in humanize(key).split() if len(w) > 1 and w not in units] or humanize(key).split()
    while len(words) > 1 and len(words[-1]) <= 2:
        words.pop()
    return " ".join(words)


def _pbtxt_field(text: str, field: str) -> str | None:
    match = re.search(rf'^\s*{field}\s*:\s*"((?:[^"\\]|\\.)*)"', text, flags=re.M)
    return match.group(1) if match else None


def _gso_assets(root: Path, names: dict[str, str]) -> list[Asset]:
    out = []
    for obj in sorted(root.rglob("meshes/model.obj")):
        folder = obj.parent.parent
        key = folder.name
        meta = folder / "metadata.pbtxt"
        description = category = None
        if meta.is_file():
            text = meta.read_text(encoding="utf-8", errors="replace")
            key = _pbtxt_field(text, "name") or key
            description = _pbtxt_field(text, "description")
            category = _pbtxt_field(text, "categories")
        texture = folder / "materials" / "textures" / "texture.png"
        rel = obj.relative_to(root).as_posix()
        out.append(Asset(f"gso/{key}", names.get(key, names.get(folder.name, gso_name(key))), "user", "mesh",
                         str(obj), None, f"asset_dir/{rel}", texture=str(texture) if texture.is_file()
                         else obj_texture(str(obj)), source=f"{root}#gso", key=key,
                         description=description or category))
    return out


def _kubric_asset(folder: Path, key: str, entry: dict, source: str, ref: str, names: dict[str, str]) -> Asset:
    kwargs, meta = entry.get("kwargs", {}) or {}, entry.get("metadata", {}) or {}
    render = str(kwargs.get("render_filename", "{asset_dir}/visual_geometry.obj")).replace("{asset_dir}/", "")
    visual = folder / render
    if not visual.is_file():
        raise InputError(folder, "kwargs.render_filename", f"{render!r} is missing",
                         "extract the asset archive completely")
    coll = folder / "collision_geometry.obj"
    texture = folder / "texture.png"
    volume = meta.get("volume")
    return Asset(f"kubric/{key}", names.get(key, gso_name(key)), "user", "mesh", str(visual),
                 str(coll) if coll.is_file() else None, f"{ref}/{render}",
                 texture=str(texture) if texture.is_file() else obj_texture(str(visual)),
                 volume=float(volume) if isinstance(volume, (int, float)) and volume > 0 else None,
                 source=source, key=key, description=meta.get("description") or meta.get("category"))


def _extract(archive: Path, key: str) -> Path:
    """A Kubric ``<id>.tar.gz`` unpacked once into the cache (flat archives or one ``<id>/`` folder), members
    guarded against paths outside the folder."""
    stat = archive.stat()
    digest = hashlib.sha256(f"{archive.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    dest = cache_dir() / "kubric_assets" / digest
    if not dest.is_dir():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=digest + "."))
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = []
                for m in tar.getmembers():
                    safe_member_path(m.name, str(archive))
                    if m.isfile() or m.isdir():
                        members.append(m)
                tar.extractall(tmp, members=members, filter="data")
        except (tarfile.TarError, OSError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise InputError(archive, None, f"cannot unpack ({exc})", "re-download the asset archive") from exc
        try:
            os.rename(tmp, dest)  # atomic: a folder under its final name is complete
        except OSError:  # another worker unpacked it first
            shutil.rmtree(tmp, ignore_errors=True)
    nested = dest / key
    return nested if (nested / "data.json").exists() or (nested / "visual_geometry.obj").exists() else dest


def _kubric_manifest_assets(root: Path, manifest: Path, names: dict[str, str]) -> tuple[list[Asset], set[Path]]:
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data_dir = Path(str(data.get("data_dir", manifest.parent)))
    if not data_dir.is_absolute():
        data_dir = manifest.parent / data_dir
    if not data_dir.is_dir():  # a bucket or another machine's path: the assets sit beside the manifest
        data_dir = manifest.parent
    source = f"{manifest.resolve()}"
    out, used = [], set()
    for key in sorted(data["assets"]):
        entry = data["assets"][key]
        if entry.get("asset_type", "FileBasedObject") != "FileBasedObject":
            continue
        folder = data_dir / key
        if not folder.is_dir():
            archive = data_dir / (entry.get("path") or f"{key}.tar.gz")
            if not archive.is_file():
                raise InputError(manifest, f"assets.{key}", f"neither {folder} nor {archive} exists",
                                 "put the asset folders or archives beside the manifest")
            folder = _extract(archive, key)
        else:
            used.add(folder.resolve())
        ref = f"asset_dir/{(data_dir / key).relative_to(root).as_posix()}" if data_dir.is_relative_to(root) \
            else f"kubric/{key}"
        out.append(_kubric_asset(folder, key, entry, source, ref, names))
    return out, used


def _is_manifest(path: Path) -> bool:
    if path.name in ("names.json", "data.json") or path.stat().st_size > 200_000_000:
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and isinstance(data.get("assets"), dict)


def folder_assets(asset_dir: str) -> list[Asset]:
    """Every asset under ``asset_dir``, in a stable order (see the module docstring for the layouts)."""
    root = Path(asset_dir)
    names = _read_names(root)
    out: list[Asset] = []
    claimed: set[Path] = set()
    for manifest in sorted(p for p in root.rglob("*.json") if _is_manifest(p)):
        assets, used = _kubric_manifest_assets(root, manifest, names)
        out += assets
        claimed |= used
    for data_json in sorted(root.rglob("data.json")):  # Kubric asset folders without a manifest
        folder = data_json.parent
        if folder.resolve() in claimed or not (folder / "visual_geometry.obj").exists():
            continue
        try:
            entry = json.loads(data_json.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(data_json, None, f"not JSON ({exc})", "re-extract the Kubric asset") from exc
        key = str(entry.get("id", folder.name))
        out.append(_kubric_asset(folder, key, entry, f"{root}#kubric", f"asset_dir/{folder.relative_to(root).as_posix()}",
                                 names))
        claimed.add(folder.resolve())
    gso = _gso_assets(root, names)
    out += gso
    claimed |= {Path(a.mesh).parent.parent.resolve() for a in gso}
    for path in sorted(root.rglob("*.obj")):  # bare meshes
        if any(p in claimed for p in path.resolve().parents):
            continue
        stem = path.stem.lower()
        if stem in {Path(c).stem for c in _COLLIDER_NAMES} or stem.endswith(("_col", "_vhacd", "_collision")):
            continue  # a collider, picked up below next to its visual mesh
        rel = path.relative_to(root)
        parts = [p for p in rel.parts[:-1] if p.lower() not in _SKIP_DIRS]
        label = parts[-1] if (stem in _GENERIC_STEMS and parts) else path.stem
        asset_id = "user/" + rel.with_suffix("").as_posix()
        folder = rel.parts[0] if len(rel.parts) > 1 else path.stem
        name = names.get(asset_id[5:], names.get(folder, humanize(label)))
        coll = next((str(c) for c in (*(path.parent / c for c in _COLLIDER_NAMES), path.with_name(path.stem + "_col.obj"),
                                      path.with_name(path.stem + "_vhacd.obj")) if c.exists()), None)
        out.append(Asset(asset_id, name, "user", "mesh", str(path), coll, f"asset_dir/{rel.as_posix()}",
                         texture=obj_texture(str(path)), source=f"{root}#obj", key=rel.with_suffix("").as_posix()))
    if not out:
        raise ConfigError(f"DropSceneConfig.asset_dir={asset_dir!r} is invalid: it holds no assets; point it at "
                          "Google Scanned Objects folders (meshes/model.obj), Kubric assets (a manifest .json "
                          "with <id>.tar.gz or <id>/visual_geometry.obj) or .obj meshes")
    return out


__all__ = ["folder_assets", "gso_name"]
