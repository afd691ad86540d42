"""``manifest.json`` and its journal: what was built, how, from which inputs, with which checksums.

Structure (format :data:`vidalign.format.FORMAT_VERSION`)::

    {"format_version": "2.1", "package_version": "0.1.0", "updated": "<iso time>",
     "configs": {"<config>": {
         "builder": "kubric-drop", "args": {...}, "options": {"seed": 0, "samples_per_shard": 8, ...},
         "command": "vidalign build kubric-drop --out ...", "seed": 0,
         "container": "webdataset",                                    # or "parquet" (absent in format 1.0)
         "inputs": {"--scene-config": {"path": "scene.yaml", "sha256": "..."}, "scene": {"sha256": "..."}},
         "splits": {"<split>": {"shards": 4, "samples": 32}},          # the plan
         "schema": {"<member>": {feature summary}},                    # merged over shards (2.1; 2.0: per shard)
         "shards": {"data/<config>/<split>-00000-of-00004.tar": {ShardRecord}, ...},
         "rejected": [{"input": ..., "reason": ..., "shard": ...}],
         "complete": true}}}

    manifest.d/<config>/<shard file name>.json     the journal: one record per shard finished since the
                                                   manifest was last compacted (fsynced; one object each)

A build writes ``manifest.json`` once when it starts and once when it ends (compacted: the journal folded in and
deleted); in between, each finished shard adds one small journal record, so the cost per shard is flat however
many shards a build has (the whole manifest used to be rewritten after every shard). A record carries its
shard's feature summary only when that summary adds something to its config's schema. :func:`load` (used by
``verify``, ``info``, ``--resume``, ``push`` and the readers) reads the manifest with its journal applied, so a
killed build resumes from every shard it recorded. Format 2.0 manifests (a schema per shard record, no journal,
no input fingerprints) read as before.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from pathlib import Path
from typing import Any

from vidalign import __version__
from vidalign import features as feats
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
    decode_member,
    dumps_json,
    is_pickle_member,
    tmp_shard_of,
)
from vidalign.storage import Store

JOURNAL_DIR = "manifest.d"
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def empty_manifest() -> dict:
    return {"format_version": FORMAT_VERSION, "package_version": __version__, "updated": now(), "configs": {}}


def read_json(path, what: str, store: Store | None = None) -> Any:
    """A JSON document of the dataset folder (``path`` relative to ``store`` when given)."""
    where = store.display(path) if store is not None else path
    try:
        raw = store.read_bytes(path) if store is not None else Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise VidalignError(f"{where}: {what} not found") from exc
    except OSError as exc:
        raise VidalignError(f"{where}: cannot read the {what} ({exc.strerror or exc})") from exc
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise VidalignError(f"{where}: {what} is not valid JSON ({exc}); rebuild or restore it") from exc


def _store(folder) -> Store:
    return folder if isinstance(folder, Store) else Store(folder)


def load(folder, missing_ok: bool = False, journal: bool = True) -> dict:
    """Read ``<folder>/manifest.json`` with its journal applied (an empty manifest if absent and ``missing_ok``);
    every field a reader relies on is checked (:func:`check_manifest`)."""
    store = _store(folder)
    if store.local is not None and not store.local.is_dir():
        raise VidalignError(f"{store.local}: not a dataset folder (it does not exist or is not a directory)")
    if not store.exists(MANIFEST_NAME):
        if missing_ok:
            return empty_manifest()
        raise VidalignError(f"{store.display(MANIFEST_NAME)}: no manifest.json; is this a vidalign dataset folder? "
                            "(a sliced build needs `vidalign merge-manifests` first)")
    path = store.display(MANIFEST_NAME)
    m = read_json(MANIFEST_NAME, "manifest", store)
    if not isinstance(m, dict) or "configs" not in m or "format_version" not in m:
        raise VidalignError(f"{path}: field 'configs'/'format_version' missing; not a vidalign manifest")
    major = str(m["format_version"]).split(".")[0]
    if major not in READABLE_MAJORS:
        raise VidalignError(f"{path}: format_version {m['format_version']} is not readable by this vidalign "
                            f"(it reads formats {', '.join(v + '.x' for v in READABLE_MAJORS)}); install a "
                            "matching vidalign version")
    check_manifest(m, path)
    if journal:
        apply_journal(store, m)
    return m


def _bad(path: str, field: str, value: Any, want: str) -> VidalignError:
    text = repr(value)
    return VidalignError(f"{path}: field {field}: {text[:60] + ('…' if len(text) > 60 else '')} is not {want}; "
                         "restore manifest.json from a copy or rebuild the folder (--overwrite)")


def check_manifest(m: dict, path: str) -> None:
    """Every field :func:`verify`, ``info``, the card and resume read, with the type they need; shard paths stay
    inside ``data/<config>/`` (a manifest never makes a reader open a file elsewhere)."""
    def typed(value, kind, field, want):
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise _bad(path, field, value, want)
        return value

    typed(m["configs"], dict, "configs", "an object of configs")
    for config, entry in m["configs"].items():
        f = f"configs.{config}"
        typed(entry, dict, f, "an object")
        if not isinstance(config, str) or not re.match(r"^[A-Za-z0-9_]+$", config):
            raise _bad(path, "configs", config, "a config name (letters, digits, underscores)")
        typed(entry.get("builder"), str, f"{f}.builder", "a builder name")
        typed(entry.get("args", {}), dict, f"{f}.args", "an object")
        for split, plan in typed(entry.get("splits"), dict, f"{f}.splits", "an object of splits").items():
            typed(plan, dict, f"{f}.splits.{split}", "an object")
            for k in ("shards", "samples"):
                if typed(plan.get(k), int, f"{f}.splits.{split}.{k}", "a count") < 0:
                    raise _bad(path, f"{f}.splits.{split}.{k}", plan.get(k), "a count >= 0")
        typed(entry.get("schema", {}), dict, f"{f}.schema", "an object")
        for rel, rec in typed(entry.get("shards"), dict, f"{f}.shards", "an object of shard records").items():
            g = f"{f}.shards[{rel!r}]"
            parts = str(rel).split("/")
            if len(parts) != 3 or parts[0] != DATA_DIR or parts[1] != config or not SHARD_RE.match(parts[2]):
                raise _bad(path, g, rel, f"a shard path data/{config}/<split>-NNNNN-of-NNNNN.<tar|parquet>")
            typed(rec, dict, g, "a shard record")
            for k in ("samples", "bytes"):
                if typed(rec.get(k), int, f"{g}.{k}", "a count") < 0:
                    raise _bad(path, f"{g}.{k}", rec.get(k), "a count >= 0")
            if not isinstance(rec.get("sha256"), str) or not _SHA_RE.match(rec["sha256"]):
                raise _bad(path, f"{g}.sha256", rec.get("sha256"), "a sha256 hex digest")
            for k in ("first_key", "last_key"):
                if rec.get(k) is not None:
                    typed(rec[k], str, f"{g}.{k}", "a sample key")
            members = typed(rec.get("members", []), list, f"{g}.members", "a list of member names")
            if not all(isinstance(x, str) for x in members):
                raise _bad(path, f"{g}.members", members, "a list of member names")
            typed(rec.get("schema", {}), dict, f"{g}.schema", "an object")
            typed(rec.get("rejected", []), list, f"{g}.rejected", "a list")


def write_atomic(path: Path, text: str) -> None:
    Store(Path(path).parent).write_atomic(Path(path).name, text)


def save(folder, manifest: dict, name: str = MANIFEST_NAME) -> str:
    """Write the manifest atomically (compact: per-shard schemas that add nothing to their config's are
    dropped); a folder written by this vidalign is in its format (a 2.x folder may hold 1.0 configs: every 1.0
    shard is a valid 2.x shard)."""
    store = _store(folder)
    manifest["format_version"] = FORMAT_VERSION
    manifest["updated"] = now()
    manifest["package_version"] = __version__
    out = {k: v for k, v in manifest.items() if not k.startswith("_")}
    store.write_atomic(name, dumps_json(out, indent=1))
    return store.display(name)


def part_name(shard_index: int, num_shards: int) -> str:
    return f"{MANIFEST_PARTS_DIR}/part-{shard_index:05d}-of-{num_shards:05d}.json"


# -- config schema: merged once per config ---------------------------------------------------------------------
def config_schema(entry: dict) -> dict[str, dict]:
    """The merged feature summary of a config: ``schema`` (2.1) merged with any per-shard summaries (2.0)."""
    parts = [entry.get("schema") or {}] + [rec["schema"] for _, rec in sorted(entry["shards"].items())
                                           if rec.get("schema")]
    return feats.merge_all(parts) if len(parts) > 1 else dict(parts[0])


def add_shard(entry: dict, rec: dict) -> dict:
    """Record a finished shard in its config entry: its schema merged into the config's; returns the record as
    the journal stores it (the schema kept only when it added something)."""
    rec = dict(rec)
    schema = rec.pop("schema", None) or {}
    if schema:
        before = entry.get("schema") or {}
        merged = feats.merge_all([before, schema]) if before else dict(schema)
        if merged != before:
            entry["schema"] = merged
            rec_j = {**rec, "schema": schema}
        else:
            rec_j = rec
    else:
        rec_j = rec
    entry["shards"][rec["path"]] = rec
    return rec_j


# -- the journal -----------------------------------------------------------------------------------------------
def journal_name(rel: str) -> str:
    """``data/<config>/<file>`` → ``manifest.d/<config>/<file>.json``."""
    _, config, name = rel.split("/")
    return f"{JOURNAL_DIR}/{config}/{name}.json"


def journal_record(folder, config: str, rec: dict) -> None:
    """Append one finished shard to the journal (one small fsynced file, or one object)."""
    _store(folder).write_atomic(journal_name(rec["path"]), dumps_json({"config": config, "record": rec}))


def journal_files(store: Store, walked: list[str] | None = None) -> list[str]:
    """The journal's record files (of ``walked``, the journal folder's files when already listed)."""
    files = store.walk_files(JOURNAL_DIR) if walked is None else walked
    return [f for f in files if f.endswith(".json") and TMP_SUFFIX not in f]


def apply_journal(folder, manifest: dict, configs: set[str] | None = None, only: set[str] | None = None) -> list[str]:
    """Fold the journal's records into ``manifest`` (configs it holds; with ``only``, records of those shard
    paths only, as a slice of a sliced build does); returns the record files applied."""
    store = _store(folder)
    applied, touched = [], []
    for f in journal_files(store):
        try:
            doc = read_json(f, "manifest journal record", store)
            config, rec = doc["config"], doc["record"]
            entry = manifest["configs"].get(config)
            if entry is None or (configs is not None and config not in configs) or \
                    (only is not None and rec.get("path") not in only):
                continue
            probe = {"configs": {config: {**entry, "shards": {rec["path"]: rec}}}}
            check_manifest(probe, store.display(f))
        except (VidalignError, KeyError, TypeError, AttributeError):
            continue  # a torn or foreign record: its shard is rebuilt or flagged by verify
        add_shard(entry, dict(rec))
        touched.append(entry)
        applied.append(f)
    for entry in {id(e): e for e in touched}.values():
        refresh(entry)
    return applied


def compact(folder, manifest: dict, name: str = MANIFEST_NAME, configs: set[str] | None = None,
            only: set[str] | None = None) -> None:
    """Write the manifest (which holds every shard this process recorded), then drop the journal records of its
    configs (with ``only``: of those shard paths). Nothing is re-read: the cost is one write and one delete
    per record, once per build."""
    store = _store(folder)
    walked = store.walk_files(JOURNAL_DIR)
    files = journal_files(store, walked)
    save(store, manifest, name)
    # and the temporary files of records a killed attempt was writing (their shards are in the manifest now or
    # will be rebuilt): of the same configs and shards only, since a concurrent slice may be writing its own
    leftovers = [f for f in walked if f.endswith(TMP_SUFFIX)]
    for f in files + leftovers:
        parts = f.split("/")
        if len(parts) != 3 or (configs is not None and parts[1] not in configs):
            continue
        record = _TMP_RECORD.sub("", parts[2]) if f.endswith(TMP_SUFFIX) else parts[2]
        if only is not None and f"{DATA_DIR}/{parts[1]}/{record[:-5]}" not in only:
            continue
        store.delete(f)


_TMP_RECORD = re.compile(r"(?<=\.json)\.[^./]+\.tmp$")  # <shard>.json.<attempt>.tmp → <shard>.json


def clear_journal(folder, config: str) -> None:
    _store(folder).rmtree(f"{JOURNAL_DIR}/{config}")


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


def merge_parts(folder) -> dict:
    """Join ``manifest.parts/*.json`` of a sliced build, the journal and any existing manifest into one."""
    store = _store(folder)
    manifest = load(store, missing_ok=True)
    parts = [f"{MANIFEST_PARTS_DIR}/{n}" for n in store.listdir(MANIFEST_PARTS_DIR)
             if n.startswith("part-") and n.endswith(".json")]
    if not parts and not store.exists(MANIFEST_NAME):
        raise VidalignError(f"{store.url}: no {MANIFEST_PARTS_DIR}/part-*.json to merge; run the sliced builds "
                            "with --shard-index/--num-shards and --out pointing here first")
    for part in parts:
        pm = read_json(part, "manifest part", store)
        check_manifest(pm, store.display(part))
        for config, entry in pm.get("configs", {}).items():
            cur = manifest["configs"].get(config)
            if cur is None:
                manifest["configs"][config] = entry
                continue
            for fld in ("builder", "args", "splits", "inputs"):
                if cur.get(fld) != entry.get(fld):
                    raise VidalignError(f"{store.display(part)}: field {fld!r} of config {config!r} differs from "
                                        "the other parts; all slices must be run with the same builder arguments "
                                        "and inputs")
            if entry.get("schema"):
                cur["schema"] = feats.merge_all([cur.get("schema") or {}, entry["schema"]])
            for rec in entry["shards"].values():
                add_shard(cur, dict(rec))
    apply_journal(store, manifest)
    for entry in manifest["configs"].values():
        refresh(entry)
    return manifest


# -- verify ----------------------------------------------------------------------------------------------------
def verify(folder, check_samples: bool = True, decode: bool = False) -> list[str]:
    """Every problem of a dataset folder as one line each (empty list: the folder is sound).

    Checks each listed shard's size, sha256 and (``check_samples``) sample count, key range, distinct keys and
    members (tar or Parquet); with ``decode``, every member is decoded with the reader's limits (valid JSON and
    UTF-8, ``.npy`` headers that fit their bytes, no object arrays, gzip that inflates within limits);
    pickle-capable members, whether a shard holds them or the manifest lists them; shards on disk that the
    manifest does not list; planned shards that are missing; unfinished temporary shards.
    """
    store = _store(folder)
    manifest = load(store)
    problems: list[str] = []
    listed = set()
    if journal_files(store):
        problems.append(f"{store.display(JOURNAL_DIR)}: journal of an unfinished build (its records are counted "
                        "below); rerun the build with --resume to finish and compact it")
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
            size = store.size(rel)
            if size is None:
                problems.append(f"{rel}: listed in the manifest but missing on disk")
                continue
            if size != rec["bytes"]:
                problems.append(f"{rel}: size {size} bytes, manifest says {rec['bytes']} (truncated or replaced)")
                continue
            digest = store.sha256(rel)
            if digest != rec["sha256"]:
                problems.append(f"{rel}: sha256 mismatch (file {digest[:12]}…, manifest {rec['sha256'][:12]}…)")
                continue
            if check_samples or decode:
                problems += _check_samples(store, rel, rec, decode)
    for rel in store.walk_files(DATA_DIR):
        name = rel.rsplit("/", 1)[-1]
        if SHARD_RE.match(name) and rel not in listed:
            problems.append(f"{rel}: shard on disk is not listed in the manifest (a killed build?); "
                            "rerun with --resume or delete it")
        elif tmp_shard_of(name):
            problems.append(f"{rel}: unfinished temporary shard; rerun the build with --resume")
    return problems


def _check_samples(store: Store, rel: str, rec: dict, decode: bool = False) -> list[str]:
    """Count, key range, distinct keys and members of one shard against its manifest record (and, with
    ``decode``, every member decoded with the reader's limits)."""
    from vidalign.shards import iter_tar_samples

    try:
        keys, members_ok = [], True
        with store.open_read(rel) as f:
            if container_of(rel) == PARQUET:
                import io

                from vidalign.parquet import _open, iter_parquet_samples

                data = io.BytesIO(f.read())
                names = _open(data, rel).schema_arrow.names
                on_disk = sorted([n for n in names if "." in n] + (["json"] if any(
                    "." not in n and n != KEY_COLUMN for n in names) else []))
                members_ok = on_disk == sorted(rec["members"])
                data.seek(0)
                keys = [s["__key__"] for s in iter_parquet_samples(data, members=None if decode else set(),
                                                                   source=rel)]
            else:
                for s in iter_tar_samples(f, raw=True, source=rel):
                    keys.append(s["__key__"])
                    members_ok &= sorted(k for k in s if not k.startswith("__")) == sorted(rec["members"])
                    if decode:
                        for member, data in s.items():
                            if not member.startswith("__"):
                                decode_member(member, data, f"{rel}: sample {s['__key__']!r}")
    except VidalignError as exc:
        return [str(exc)]
    except OSError as exc:
        return [f"{rel}: cannot read the shard ({exc.strerror or exc})"]
    if len(keys) != rec["samples"] or len(set(keys)) != len(keys):
        return [f"{rel}: {len(keys)} samples ({len(set(keys))} distinct keys), manifest says {rec['samples']}"]
    if keys and (keys[0] != rec["first_key"] or keys[-1] != rec["last_key"]):
        return [f"{rel}: key range {keys[0]}..{keys[-1]} differs from the manifest's "
                f"{rec['first_key']}..{rec['last_key']}"]
    if not members_ok:
        return [f"{rel}: a sample's members differ from the manifest's {rec['members']}"]
    return []


__all__ = ["load", "save", "verify", "compact", "journal_record", "apply_journal", "merge_parts", "config_schema",
           "add_shard", "check_manifest", "refresh", "is_complete", "empty_manifest", "JOURNAL_DIR"]
