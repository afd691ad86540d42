"""``run_build``: lock → fingerprint inputs → plan → skip finished shards → execute → journal every shard →
compact the manifest → card when complete.

Reliability contract (see also :mod:`vidalign.lock`, :mod:`vidalign.storage` and the manifest's journal):

- one build writes a folder at a time (the lock), and every attempt writes its own temporary names;
- every input a builder declares (:meth:`~vidalign.builder.Builder.inputs`) is fingerprinted by content in the
  manifest; resuming after an input changed is refused, naming the file, unless ``--overwrite`` rebuilds from the
  new one: a folder never mixes shards from two versions of an input;
- a rerun may change options that leave every finished shard as it is (``--on-error``, ``--workers``, the
  executor, output-neutral builder arguments) without ``--overwrite``; shards that an option would change (a
  shard with rejected inputs, when ``--on-error raise`` now applies) are rebuilt, and a change that would alter
  a finished shard (seed, builder arguments, the shard plan) is refused.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import threading
import time
from pathlib import Path

from tqdm.auto import tqdm

from vidalign import manifest as mf
from vidalign.builder import (
    _REGISTRY,
    Builder,
    BuildOptions,
    Rejected,
    Sample,
    ShardJob,
    builder_class,
    equivalent_command,
    fingerprint_inputs,
    make_builder,
    output_args,
)
from vidalign.errors import VidalignError
from vidalign.executors import progress_iter, run_tasks, ship_by_value
from vidalign.format import DATA_DIR, MANIFEST_NAME, MANIFEST_PARTS_DIR, WEBDATASET, tmp_shard_of
from vidalign.lock import BuildLock
from vidalign.shards import ShardRecord, open_writer
from vidalign.storage import Store


def build_job(builder_ref, args: dict, builder_opts: dict, job: ShardJob, out: str) -> dict:
    """Write one shard (runs in a worker process) and publish it under its final name: returns its manifest
    record as a dict. ``builder_ref`` is a registered builder's name or the builder class itself (shipped to
    Ray workers by value, so builders defined in a script or notebook run there too)."""
    builder = make_builder(builder_ref, args, **builder_opts)
    store = Store(out)
    root = store.local if store.local is not None else Path(tempfile.mkdtemp(prefix="vidalign-stage-"))
    rejected: list[dict] = []
    try:
        with open_writer(root, job.relpath, layout=builder.layout(job.config)) as writer:
            for item in progress_iter(builder.build_shard(job), job.relpath):  # per-sample progress to the parent
                if isinstance(item, Rejected):
                    rejected.append({"input": item.input, "reason": item.reason})
                elif isinstance(item, Sample):
                    writer.write(item.key, item.members)
                else:
                    raise VidalignError(f"builder {builder.name!r} yielded {type(item).__name__}; yield Sample or "
                                        "Rejected")
            rec = writer.close(rejected=rejected, seed=job.seed, start=job.start, stop=job.stop)
        if store.local is None:  # one upload: the object appears whole, a retried task replaces it
            store.publish(root / job.relpath, job.relpath)
    finally:
        if store.local is None:
            shutil.rmtree(root, ignore_errors=True)
    return {"config": job.config, "record": rec.to_dict()}


class BuildProgress:
    """One tqdm bar over the samples of the shards to build (rate and ETA per sample), fed per sample by the
    workers (:func:`vidalign.executors.report_progress`) and squared with each finished shard's job size."""

    def __init__(self, name: str, jobs: list[ShardJob], enabled: bool = True):
        self._size = {j.relpath: j.stop - j.start for j in jobs}
        self._seen: dict[str, int] = {}
        self._done: set[str] = set()
        self._lock = threading.Lock()
        self.bar = tqdm(total=sum(self._size.values()), desc=name, unit="sample", smoothing=0.1,
                        disable=not enabled or not jobs, dynamic_ncols=True)
        self.bar.set_postfix_str(f"0/{len(jobs)} shards", refresh=False)

    def advance(self, job: str, n: int) -> None:
        with self._lock:
            if job in self._done or job not in self._size:
                return
            n = max(0, min(n, self._size[job] - self._seen.get(job, 0)))
            self._seen[job] = self._seen.get(job, 0) + n
            self.bar.update(n)

    def shard_done(self, job: str, rejected: int = 0) -> None:
        with self._lock:
            if job in self._done:
                return
            self._done.add(job)
            self.bar.update(self._size.get(job, 0) - self._seen.get(job, 0))
            self._seen[job] = self._size.get(job, 0)
            text = f"{len(self._done)}/{len(self._size)} shards" + (f", {rejected} rejected" if rejected else "")
            self.bar.set_postfix_str(text)

    def close(self) -> None:
        self.bar.close()


def _shard_ok(store: Store, rec: dict) -> bool:
    return store.size(rec["path"]) == rec["bytes"] and store.sha256(rec["path"]) == rec["sha256"]


def run_build(name, args: dict, opts: BuildOptions, command: str | None = None) -> dict:
    """Build (or resume) dataset ``name`` (a registered name or a :class:`Builder` subclass) with ``args`` into
    ``opts.out`` (a folder or an fsspec URL); returns the manifest."""
    builder_opts = {"seed": opts.seed, "on_error": opts.on_error, "samples_per_shard": opts.samples_per_shard,
                    "shard_size": opts.shard_size}
    cls = builder_class(name)
    name = cls.name
    builder = make_builder(cls, args, **builder_opts)
    command = command or equivalent_command(cls, builder.args_dict(), opts)
    store = Store(opts.out)
    store.makedirs()
    with BuildLock(store, command, opts.shard_index, opts.num_shards, timeout=opts.lock_timeout):
        return _run_locked(cls, builder, args, builder_opts, opts, command, store)


def _changed_inputs(old: dict | None, new: dict) -> list[str]:
    if old is None:
        return []
    return [label for label in sorted(set(old) | set(new)) if old.get(label) != new.get(label)]


def _describe_input(label: str, old: dict, new: dict) -> str:
    o, n = old.get(label) or {}, new.get(label) or {}
    path = n.get("path") or o.get("path")
    return (f"input {label}" + (f" ({path})" if path and path != label else "")
            + f" changed (sha256 {str(o.get('sha256', 'none'))[:12]}… when built, now {str(n.get('sha256', 'none'))[:12]}…)")


def _run_locked(cls, builder: Builder, args: dict, builder_opts: dict, opts: BuildOptions, command: str,
                store: Store) -> dict:
    name = cls.name
    inputs = fingerprint_inputs(builder)
    jobs = with_containers(builder, builder.plan())
    if not jobs:
        raise VidalignError(f"builder {name!r}: the plan is empty (no samples requested?)")
    rels = [j.relpath for j in jobs]
    if len(set(rels)) != len(rels):
        raise VidalignError(f"builder {name!r}: the plan repeats a shard path; this is a builder bug")
    out = store.url
    sliced = opts.num_shards is not None
    mine = jobs[opts.shard_index::opts.num_shards] if sliced else jobs
    mine_paths = {j.relpath for j in mine}
    manifest_name = mf.part_name(opts.shard_index, opts.num_shards) if sliced else MANIFEST_NAME
    only = mine_paths if sliced else None
    if sliced:
        manifest = mf.read_json(manifest_name, "manifest part", store) if store.exists(manifest_name) \
            else mf.empty_manifest()
        mf.check_manifest(manifest, store.display(manifest_name))
    else:
        manifest = mf.load(store, missing_ok=True, journal=False)
    # what a killed run finished is in the journal: it counts when deciding what changed
    mf.apply_journal(store, manifest, None, only)

    args_json = builder.args_dict()
    out_args = output_args(cls, args_json)
    options_json = {k: v for k, v in dataclasses.asdict(opts).items()
                    if k in ("seed", "shard_size", "samples_per_shard", "on_error")}
    splits: dict[str, dict[str, dict]] = {}
    for j in jobs:
        s = splits.setdefault(j.config, {}).setdefault(j.split, {"shards": 0, "samples": 0})
        s["shards"] += 1
        s["samples"] += j.stop - j.start
    containers = {j.config: builder.layout(j.config).container for j in jobs}
    check_one_container(out, manifest, containers, opts.overwrite)
    by_path = {j.relpath: j for j in jobs}
    for config, config_splits in splits.items():
        entry = manifest["configs"].get(config)
        same = entry is not None and entry["builder"] == name \
            and output_args(cls, entry.get("args", {})) == out_args \
            and entry.get("seed", (entry.get("options") or {}).get("seed")) == opts.seed \
            and entry["splits"] == config_splits
        if entry is not None and not same and not opts.overwrite:
            what = ("builder" if entry["builder"] != name else "args"
                    if output_args(cls, entry.get("args", {})) != out_args else "seed"
                    if entry.get("seed") != opts.seed else "shard plan (--samples-per-shard/--shard-size)")
            raise VidalignError(
                f"{out}: config {config!r} was built with a different {what} (builder {entry['builder']!r}); use "
                "--overwrite to replace it, the original options to finish it, or another --out")
        if entry is not None and same and not opts.overwrite:
            changed = _changed_inputs(entry.get("inputs"), inputs)
            if changed and entry["shards"]:
                raise VidalignError(
                    f"{out}: config {config!r}: {_describe_input(changed[0], entry['inputs'], inputs)} since its "
                    f"{len(entry['shards'])} finished shard(s) were built; resuming would mix data from both "
                    "versions. Pass --overwrite to rebuild from the new input, or restore the old one")
            if changed:
                same = False
            moved = [rel for rel, rec in entry["shards"].items()
                     if rel in by_path and rec.get("start") is not None
                     and (rec.get("start"), rec.get("stop")) != (by_path[rel].start, by_path[rel].stop)]
            if moved:
                raise VidalignError(f"{out}: config {config!r}: the shard plan changed ({moved[0]} would hold other "
                                    "samples); use the original --samples-per-shard/--shard-size, or --overwrite")
        if entry is not None and same and not (opts.resume or opts.overwrite or sliced) and entry["shards"]:
            raise VidalignError(f"{out}: config {config!r} is already built here; pass --resume to finish or "
                                "check it, or --overwrite to rebuild")
        if entry is None or not same or opts.overwrite:
            if entry is not None:
                store.rmtree(f"{DATA_DIR}/{config}")
            mf.clear_journal(store, config)
            manifest["configs"][config] = {
                "builder": name, "description": builder.description, "args": args_json, "options": options_json,
                "seed": opts.seed, "command": command or "", "container": containers[config], "inputs": inputs,
                "splits": config_splits, "schema": {}, "shards": {}, "rejected": [], "complete": False,
            }
        else:
            entry.update(args=args_json, options=options_json, inputs=inputs)
            if command:
                entry["command"] = command
    configs = set(splits)
    # fold the journal of a killed run in, under the lock (only this slice's shards when sliced)
    applied = mf.apply_journal(store, manifest, configs, only)
    todo = []
    for j in mine:
        entry = manifest["configs"][j.config]
        rec = entry["shards"].get(j.relpath)
        if rec is not None and opts.on_error == "raise" and rec.get("rejected"):
            rec = None  # built under --on-error skip with rejected inputs: under raise it fails (or changed)
        if rec is not None and _shard_ok(store, rec):
            continue
        entry["shards"].pop(j.relpath, None)
        todo.append(j)
    old = sorted({j.config for j in todo if "container" not in manifest["configs"][j.config]})
    if old:  # a format-1.0 config: its shards have the 1.0 members; new ones would not match them
        raise VidalignError(f"{out}: config {old[0]!r} was built by a format-1.0 vidalign and cannot be completed "
                            "in format 2.x; rebuild it with --overwrite (its finished shards stay readable as is)")
    _remove_leftovers(store, todo)
    for entry in manifest["configs"].values():
        mf.refresh(entry)
    mf.save(store, manifest, manifest_name)
    for f in applied:
        store.delete(f)

    t0 = time.perf_counter()
    progress = BuildProgress(name, todo, enabled=opts.progress)
    counts = {"samples": 0, "rejected": 0}
    planned = {c: sum(s["shards"] for s in e["splits"].values()) for c, e in manifest["configs"].items()}

    def on_result(result: dict) -> None:  # flat cost per shard: one journal record, no manifest rewrite
        config = result["config"]
        entry = manifest["configs"][config]
        rec = result["record"]
        journal_rec = mf.add_shard(entry, rec)
        mf.journal_record(store, config, journal_rec)
        entry["rejected"] += [{**r, "shard": rec["path"]} for r in rec["rejected"]]
        entry["complete"] = len(entry["shards"]) == planned[config]
        counts["samples"] += rec["samples"]
        counts["rejected"] += len(rec["rejected"])
        progress.shard_done(rec["path"], rejected=counts["rejected"])

    registered = _REGISTRY.get(name) is cls
    builtin = registered and cls.__module__.startswith("vidalign.")
    ref = name if (builtin or (registered and opts.executor != "ray")) else cls
    if opts.executor == "ray" and not builtin:
        ship_by_value(cls)  # workers need not import the user's module: the class travels by value
    failed = True
    try:
        run_tasks(build_job, [(ref, args, builder_opts, j, out) for j in todo], on_result,
                  executor=opts.executor, workers=opts.workers, ray_address=opts.ray_address,
                  on_progress=progress.advance if opts.progress else None, on_idle=_prepare_finish,
                  cpus_per_task=opts.cpus_per_task, gpus_per_task=opts.gpus_per_task, retries=opts.task_retries)
        failed = False
    finally:
        progress.close()
        try:  # the journal already holds every finished shard; compacting now is a convenience
            for entry in manifest["configs"].values():
                mf.refresh(entry)
            mf.compact(store, manifest, manifest_name, configs, only)
        except Exception:
            if not failed:
                raise
    changed = _changed_inputs(inputs, fingerprint_inputs(builder))
    if changed:
        raise VidalignError(f"{out}: {_describe_input(changed[0], inputs, fingerprint_inputs(builder))} while this "
                            "build ran; its shards may mix both versions: rerun with --overwrite")
    if not sliced and all(manifest["configs"][c]["complete"] for c in splits):
        finish(store, manifest, builder)
    manifest["_summary"] = {"built_shards": len(todo), "skipped_shards": len(mine) - len(todo),
                            "samples": counts["samples"], "rejected": counts["rejected"],
                            "seconds": round(time.perf_counter() - t0, 2)}
    return manifest


def _remove_leftovers(store: Store, todo: list[ShardJob]) -> None:
    """Temporary files of killed attempts at the shards about to be built (safe: this build holds the lock)."""
    if store.local is None:
        return  # remote shards are staged locally and uploaded whole: no temporary objects
    names: dict[str, set[str]] = {}
    for j in todo:
        folder, _, fname = j.relpath.rpartition("/")
        names.setdefault(folder, set()).add(fname)
    for folder, want in names.items():
        d = store.local / folder
        if not d.is_dir():
            continue
        for p in d.iterdir():
            if tmp_shard_of(p.name) in want:
                p.unlink(missing_ok=True)


def with_containers(builder: Builder, jobs: list[ShardJob]) -> list[ShardJob]:
    """The plan's jobs with the shard extension of their config's declared container (``.tar``/``.parquet``)."""
    out = []
    for j in jobs:
        ext = builder.layout(j.config).ext
        out.append(j if j.ext == ext else dataclasses.replace(j, ext=ext))
    return out


def check_one_container(out: Path, manifest: dict, containers: dict[str, str], overwrite: bool) -> None:
    """Refuse a build that would mix tar and Parquet configs in one folder: ``datasets`` picks one loader for
    a whole repository from its first config's files (huggingface/datasets#7101), so one config would not load."""
    kinds = {c: k for c, k in containers.items()}
    for config, entry in manifest["configs"].items():
        if config in containers and overwrite:
            continue
        kinds.setdefault(config, entry.get("container", WEBDATASET))
    if len(set(kinds.values())) > 1:
        by = {k: sorted(c for c, v in kinds.items() if v == k) for k in set(kinds.values())}
        raise VidalignError(f"{out}: configs {by} would mix tar and Parquet shards in one folder, and datasets loads "
                            "a folder with one loader (huggingface/datasets#7101); build into another --out")


def _prepare_finish() -> None:
    """While the last shards are built elsewhere: import what writing the card takes (its feature types come
    from ``datasets``, ~1 s of imports), so that the serial end of a parallel build is shorter."""
    import datasets  # noqa: F401

    import vidalign.card  # noqa: F401


def finish(out, manifest: dict, builder: Builder | None = None) -> None:
    """Write the card once configs are complete; the builder of this run (or, after a merge, every complete
    config's builder) writes its previews first. The card has one builder instance per config. A remote output
    gets its card and previews made in a local staging folder (holding the manifest and the first shards of each
    config, for previews) and uploaded."""
    store = out if isinstance(out, Store) else Store(out)
    if store.local is not None:
        _finish_local(store.local, manifest, builder)
        return
    stage = Path(tempfile.mkdtemp(prefix="vidalign-card-"))
    try:
        mf.save(stage, manifest)
        for entry in manifest["configs"].values():
            for rel in sorted(entry["shards"])[:PREVIEW_SHARDS]:
                (stage / rel).parent.mkdir(parents=True, exist_ok=True)
                (stage / rel).write_bytes(store.read_bytes(rel))
        _finish_local(stage, manifest, builder, quiet=True)
        for p in sorted(stage.rglob("*")):
            rel = p.relative_to(stage).as_posix()
            if p.is_file() and not rel.startswith(DATA_DIR + "/") and rel != MANIFEST_NAME:
                store.write_atomic(rel, p.read_bytes(), fsync=False)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


PREVIEW_SHARDS = 8  # shards of each config a remote output's previews are drawn from


def _finish_local(out: Path, manifest: dict, builder: Builder | None = None, quiet: bool = False) -> None:
    from vidalign.card import write_card

    builders = card_builders(manifest, builder)
    try:
        if builder is not None:
            builder.finalize(out, manifest)
        else:
            for b in {id(b): b for b in builders.values()}.values():
                b.finalize(out, manifest)
    except (VidalignError, OSError) as exc:
        if not quiet:
            raise
        print(f"previews skipped ({exc})")
    write_card(out, manifest, builders)


def card_builders(manifest: dict, builder: Builder | None = None) -> dict[str, Builder]:
    """Config name → builder instance for the card: ``builder`` for the configs it made, a fresh instance from
    the manifest's arguments for the others (one per builder, arguments and seed)."""
    import json

    made: dict[str, Builder] = {}
    out = {}
    for config, entry in manifest["configs"].items():
        if not entry["complete"]:
            continue
        same = builder is not None and builder.name == entry["builder"] and builder.args_dict() == entry["args"] \
            and builder.seed == entry.get("seed", 0)
        sig = json.dumps([entry["builder"], entry["args"], entry.get("seed", 0)], sort_keys=True, default=str)
        if same:
            out[config] = builder
        else:
            if sig not in made:
                try:
                    made[sig] = make_builder(entry["builder"], entry["args"], seed=entry.get("seed", 0))
                except VidalignError as exc:  # e.g. an input file of an older build moved: no builder notes
                    print(f"card: config {config!r}: builder notes skipped ({exc})")
                    made[sig] = None
            if made[sig] is not None:
                out[config] = made[sig]
    return out


def merge_manifests(out) -> dict:
    """``vidalign merge-manifests``: join slice manifests; write manifest.json and the card when complete."""
    store = out if isinstance(out, Store) else Store(out)
    with BuildLock(store, "vidalign merge-manifests"):
        manifest = mf.merge_parts(store)
        for entry in manifest["configs"].values():
            for rel in entry["shards"]:
                if not store.exists(rel):
                    raise VidalignError(f"{store.display(rel)}: listed by a manifest part but missing; rerun that "
                                        "slice")
        mf.compact(store, manifest)
        if all(e["complete"] for e in manifest["configs"].values()):
            finish(store, manifest)
            store.rmtree(MANIFEST_PARTS_DIR)
    return manifest


__all__ = ["run_build", "build_job", "merge_manifests", "finish", "ShardRecord"]
