"""``manifest.json``: what was built, how, and with which checksums.

Structure (format :data:`vidalign.format.FORMAT_VERSION`)::

    {"format_version": "1.0", "package_version": "0.1.0", "updated": "<iso time>",
     "configs": {"<config>": {
         "builder": "kubric-drop", "args": {...}, "options": {"seed": 0, "samples_per_shard": 8, ...},
         "command": "vidalign build kubric-drop --out ...", "seed": 0,
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
    MANIFEST_NAME,
    MANIFEST_PARTS_DIR,
    SHARD_RE,
    TMP_SUFFIX,
    dumps_json,
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
    if major != FORMAT_VERSION.split(".")[0]:
        raise VidalignError(f"{path}: format_version {m['format_version']} is not readable by this vidalign "
                            f"(format {FORMAT_VERSION}); install a matching vidalign version")
    return m


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    tmp.write_text(text)
    os.replace(tmp, path)


def save(folder: str | os.PathLike, manifest: dict, name: str = MANIFEST_NAME) -> Path:
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

    Checks each listed shard's size, sha256 and (``check_samples``) sample count, key range and members;
    shards on disk that the manifest does not list; planned shards that are missing.
    """
    from vidalign.shards import iter_tar_samples, sha256_file

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
            if not check_samples:
                continue
            try:
                keys, members_ok = [], True
                for s in iter_tar_samples(path, decode=False, source=rel):
                    keys.append(s["__key__"])
                    members_ok &= sorted(k for k in s if not k.startswith("__")) == sorted(rec["members"])
            except VidalignError as exc:
                problems.append(str(exc))
                continue
            if len(keys) != rec["samples"] or len(set(keys)) != len(keys):
                problems.append(f"{rel}: {len(keys)} samples ({len(set(keys))} distinct keys), manifest says "
                                f"{rec['samples']}")
            elif keys and (keys[0] != rec["first_key"] or keys[-1] != rec["last_key"]):
                problems.append(f"{rel}: key range {keys[0]}..{keys[-1]} differs from the manifest's "
                                f"{rec['first_key']}..{rec['last_key']}")
            elif not members_ok:
                problems.append(f"{rel}: a sample's members differ from the manifest's {rec['members']}")
    data = folder / DATA_DIR
    if data.is_dir():
        for path in sorted(data.rglob("*")):
            rel = path.relative_to(folder).as_posix()
            if path.is_file() and SHARD_RE.match(path.name) and rel not in listed:
                problems.append(f"{rel}: shard on disk is not listed in the manifest (a killed build?); "
                                "rerun with --resume or delete it")
            elif path.name.endswith(".tar" + TMP_SUFFIX):
                problems.append(f"{rel}: unfinished temporary shard; rerun the build with --resume")
    return problems
