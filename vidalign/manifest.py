"""``manifest.json``: what was built, how, and with which checksums.

Structure (format :data:`vidalign.format.FORMAT_VERSION`)::

    {"format_version": "2.0", "package_version": "0.1.0", "updated": "<iso time>",
     "configs": {"<config>": {
         "builder": "kubric-drop", "args": {...}, "options": {"seed": 0, "samples_per_shard": 8, ...},
         "command": "vidalign build kubric-drop --out ...", "seed": 0,
         "container": "webdataset",                                    # or "parquet" (absent in format 1.0)
         "splits": {"<split>": {"shards": 4, "samples": 32}},          # the plan
         "shards": {"data/<config>/<split>-00000-of-00004.tar": {ShardRecord}, ...},
         "rejected": [{"input": ..., "reason": ..., "shard": ...}],
         "complete": true}}}

The manifest is rewritten atomically (temporary file + rename) after every finished shard, so a build killed at
any point resumes from what the manifest lists.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from vidalign import __version__
from vidalign.errors import VidalignError
from vidalign.format import (
    DATA_DIR,
    FORMAT_VERSION,
    KEY_COLUMN,
    MANIFEST_NAME,
    MANIFEST_PARTS_DIR,
    PARQUET,
    READABLE_MAJORS,
    SHARD_RE,
    TMP_SUFFIX,
    container_of,
    dumps_json,
    is_pickle_member,
)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def empty_manifest() -> dict:
    return {"format_version": FORMAT_VERSION, "package_version": __version__, "updated": now(), "configs": {}}


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise VidalignError(f"{path}: {what} not found") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VidalignError(f"{path}: {what} is not valid JSON ({exc}); rebuild or restore it") from exc


def load(folder: str | os.PathLike, missing_ok: bool = False) -> dict:
    """Read ``<folder>/manifest.json`` (an empty manifest if absent and ``missing_ok``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VidalignError(f"{folder}: not a dataset folder (it does not exist or is not a directory)")
    path = folder / MANIFEST_NAME
    if not path.exists():
        if missing_ok:
            return empty_manifest()
        raise VidalignError(f"{path}: no manifest.json; is this a vidalign dataset folder? "
                            "(a sliced build needs `vidalign merge-manifests` first)")
    m = read_json(path, "manifest")
    if not isinstance(m, dict) or "configs" not in m or "format_version" not in m:
        raise VidalignError(f"{path}: field 'configs'/'format_version' missing; not a vidalign manifest")
    major = str(m["format_version"]).split(".")[0]
    if major not in READABLE_MAJORS:
        raise VidalignError(f"{path}: format_version {m['format_version']} is not readable by this vidalign "
                            f"(it reads formats {', '.join(v + '.x' for v in READABLE_MAJORS)}); install a "
                            "matching vidalign version")
    return m


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    tmp.write_text(text)
    os.replace(tmp, path)


def save(folder: str | os.PathLike, manifest: dict, name: str = MANIFEST_NAME) -> Path:
    """Write the manifest atomically; a folder written by this vidalign is in its format (a 2.0 folder may hold
    1.0 configs: every 1.0 shard is a valid 2.0 shard)."""
    manifest["format_version"] = FORMAT_VERSION
    manifest["updated"] = now()
    manifest["package_version"] = __version__
    path = Path(folder) / name
    write_atomic(path, dumps_json(manifest, indent=1))
    return path


def part_name(shard_index: int, num_shards: int) -> str:
    return f"{MANIFEST_PARTS_DIR}/part-{shard_index:05d}-of-{num_shards:05d}.json"


def is_complete(entry: dict) -> bool:
    """All planned shards of a config are recorded."""
    planned = sum(s["shards"] for s in entry["splits"].values())
    return len(entry["shards"]) == planned


def rejected_of(entry: dict) -> list[dict]:
    out = []
    for path, rec in sorted(entry["shards"].items()):
        for r in rec.get("rejected", []):
            out.append({**r, "shard": path})
    return out


def refresh(entry: dict) -> dict:
    """Recompute the derived fields of a config entry (rejected list, completeness)."""
    entry["rejected"] = rejected_of(entry)
    entry["complete"] = is_complete(entry)
    return entry


def merge_parts(folder: str | os.PathLike) -> dict:
    """Join ``manifest.parts/*.json`` of a sliced build (and any existing manifest) into one manifest."""
    folder = Path(folder)
    manifest = load(folder, missing_ok=True)
    parts = sorted((folder / MANIFEST_PARTS_DIR).glob("part-*.json"))
    if not parts and not (folder / MANIFEST_NAME).exists():
        raise VidalignError(f"{folder}: no {MANIFEST_PARTS_DIR}/part-*.json to merge; run the sliced builds "
                            "with --shard-index/--num-shards and --out pointing here first")
    for part in parts:
        pm = read_json(part, "manifest part")
        for config, entry in pm.get("configs", {}).items():
            cur = manifest["configs"].get(config)
            if cur is None:
                manifest["configs"][config] = entry
                continue
            for fld in ("builder", "args", "splits"):
                if cur.get(fld) != entry.get(fld):
                    raise VidalignError(f"{part}: field {fld!r} of config {config!r} differs from the other parts; "
                                        "all slices must be run with the same builder arguments")
            cur["shards"].update(entry["shards"])
    for entry in manifest["configs"].values():
        refresh(entry)
    return manifest


def verify(folder: str | os.PathLike, check_samples: bool = True) -> list[str]:
    """Every problem of a dataset folder as one line each (empty list: the folder is sound).

    Checks each listed shard's size, sha256 and (``check_samples``) sample count, key range and members (tar or
    Parquet); pickle-capable members, whether a shard holds them or the manifest lists them; shards on disk that
    the manifest does not list; planned shards that are missing; unfinished temporary shards.
    """
    from vidalign.shards import sha256_file

    folder = Path(folder)
    manifest = load(folder)
    problems: list[str] = []
    listed = set()
    for config, entry in sorted(manifest["configs"].items()):
        planned = sum(s["shards"] for s in entry["splits"].values())
        if len(entry["shards"]) < planned:
            problems.append(f"config {config!r}: {len(entry['shards'])} of {planned} planned shards are built; "
                            "rerun the build with --resume")
        for rel, rec in sorted(entry["shards"].items()):
            listed.add(rel)
            bad = [m for m in rec.get("members", []) if is_pickle_member(m)]
            if bad:
                problems.append(f"{rel}: member {bad[0]!r} is pickle-capable (loading it can run code); the "
                                "manifest lists it, vidalign refuses it: rebuild without it")
                continue
            path = folder / rel
            if not path.exists():
                problems.append(f"{rel}: listed in the manifest but missing on disk")
                continue
            size = path.stat().st_size
            if size != rec["bytes"]:
                problems.append(f"{rel}: size {size} bytes, manifest says {rec['bytes']} (truncated or replaced)")
                continue
            digest = sha256_file(path)
            if digest != rec["sha256"]:
                problems.append(f"{rel}: sha256 mismatch (file {digest[:12]}…, manifest {rec['sha256'][:12]}…)")
                continue
            if check_samples:
                problems += _check_samples(path, rel, rec)
    data = folder / DATA_DIR
    if data.is_dir():
        for path in sorted(data.rglob("*")):
            rel = path.relative_to(folder).as_posix()
            if path.is_file() and SHARD_RE.match(path.name) and rel not in listed:
                problems.append(f"{rel}: shard on disk is not listed in the manifest (a killed build?); "
                                "rerun with --resume or delete it")
            elif path.name.endswith(TMP_SUFFIX) and SHARD_RE.match(path.name[: -len(TMP_SUFFIX)]):
                problems.append(f"{rel}: unfinished temporary shard; rerun the build with --resume")
    return problems


def _check_samples(path: Path, rel: str, rec: dict) -> list[str]:
    """Count, key range and members of one shard against its manifest record."""
    from vidalign.shards import iter_tar_samples

    try:
        keys, members_ok = [], True
        if container_of(rel) == PARQUET:
            from vidalign.parquet import _open, iter_parquet_samples

            names = _open(path, rel).schema_arrow.names
            on_disk = sorted([n for n in names if "." in n] + (["json"] if any(
                "." not in n and n != KEY_COLUMN for n in names) else []))
            members_ok = on_disk == sorted(rec["members"])
            keys = [s["__key__"] for s in iter_parquet_samples(path, members=set(), source=rel)]
        else:
            for s in iter_tar_samples(path, raw=True, source=rel):
                keys.append(s["__key__"])
                members_ok &= sorted(k for k in s if not k.startswith("__")) == sorted(rec["members"])
    except VidalignError as exc:
        return [str(exc)]
    if len(keys) != rec["samples"] or len(set(keys)) != len(keys):
        return [f"{rel}: {len(keys)} samples ({len(set(keys))} distinct keys), manifest says {rec['samples']}"]
    if keys and (keys[0] != rec["first_key"] or keys[-1] != rec["last_key"]):
        return [f"{rel}: key range {keys[0]}..{keys[-1]} differs from the manifest's "
                f"{rec['first_key']}..{rec['last_key']}"]
    if not members_ok:
        return [f"{rel}: a sample's members differ from the manifest's {rec['members']}"]
    return []
