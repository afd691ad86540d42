"""``run_build``: plan → skip finished shards → execute → manifest after every shard → card when complete."""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from pathlib import Path

from tqdm.auto import tqdm

from vidalign import manifest as mf
from vidalign.builder import (
    Builder,
    BuildOptions,
    Rejected,
    Sample,
    ShardJob,
    equivalent_command,
    make_builder,
)
from vidalign.errors import VidalignError
from vidalign.executors import progress_iter, run_tasks
from vidalign.format import DATA_DIR, MANIFEST_PARTS_DIR, TMP_SUFFIX, WEBDATASET
from vidalign.shards import ShardRecord, open_writer, sha256_file


def build_job(name: str, args: dict, builder_opts: dict, job: ShardJob, out: str) -> dict:
    """Write one shard (runs in a worker process): returns its manifest record as a dict."""
    builder = make_builder(name, args, **builder_opts)
    rejected: list[dict] = []
    with open_writer(out, job.relpath, layout=builder.layout(job.config)) as writer:
        for item in progress_iter(builder.build_shard(job), job.relpath):  # per-sample progress to the parent
            if isinstance(item, Rejected):
                rejected.append({"input": item.input, "reason": item.reason})
            elif isinstance(item, Sample):
                writer.write(item.key, item.members)
            else:
                raise VidalignError(f"builder {name!r} yielded {type(item).__name__}; yield Sample or Rejected")
        rec = writer.close(rejected=rejected, seed=job.seed, start=job.start, stop=job.stop)
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


def _shard_ok(out: Path, rec: dict) -> bool:
    path = out / rec["path"]
    return path.exists() and path.stat().st_size == rec["bytes"] and sha256_file(path) == rec["sha256"]


def run_build(name: str, args: dict, opts: BuildOptions, command: str | None = None) -> dict:
    """Build (or resume) dataset ``name`` with ``args`` into ``opts.out``; returns the manifest."""
    builder_opts = {"seed": opts.seed, "on_error": opts.on_error, "samples_per_shard": opts.samples_per_shard,
                    "shard_size": opts.shard_size}
    builder = make_builder(name, args, **builder_opts)
    command = command or equivalent_command(name, builder.args_dict(), opts)
    jobs = with_containers(builder, builder.plan())
    if not jobs:
        raise VidalignError(f"builder {name!r}: the plan is empty (no samples requested?)")
    rels = [j.relpath for j in jobs]
    if len(set(rels)) != len(rels):
        raise VidalignError(f"builder {name!r}: the plan repeats a shard path; this is a builder bug")
    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    sliced = opts.num_shards is not None
    manifest_name = mf.part_name(opts.shard_index, opts.num_shards) if sliced else mf.MANIFEST_NAME
    manifest = mf.empty_manifest() if sliced else mf.load(out, missing_ok=True)
    if sliced and (out / manifest_name).exists():
        manifest = mf.read_json(out / manifest_name, "manifest part")

    args_json = builder.args_dict()
    options_json = {k: v for k, v in dataclasses.asdict(opts).items()
                    if k in ("seed", "shard_size", "samples_per_shard", "on_error")}
    splits: dict[str, dict[str, dict]] = {}
    for j in jobs:
        s = splits.setdefault(j.config, {}).setdefault(j.split, {"shards": 0, "samples": 0})
        s["shards"] += 1
        s["samples"] += j.stop - j.start
    containers = {j.config: builder.layout(j.config).container for j in jobs}
    check_one_container(out, manifest, containers, opts.overwrite)
    for config, config_splits in splits.items():
        entry = manifest["configs"].get(config)
        same = entry is not None and entry["builder"] == name and entry["args"] == args_json \
            and entry.get("options") == options_json and entry["splits"] == config_splits
        if entry is not None and not same and not opts.overwrite:
            what = "args" if entry.get("args") != args_json else "options/plan"
            raise VidalignError(
                f"{out}: config {config!r} was built with different {what} "
                f"(builder {entry['builder']!r}); use --overwrite to replace it or another --out"
            )
        if entry is not None and same and not (opts.resume or opts.overwrite or sliced) and entry["shards"]:
            raise VidalignError(f"{out}: config {config!r} is already built here; pass --resume to finish or "
                                "check it, or --overwrite to rebuild")
        if entry is None or not same or opts.overwrite:
            if entry is not None and opts.overwrite:
                shutil.rmtree(out / DATA_DIR / config, ignore_errors=True)
            manifest["configs"][config] = {
                "builder": name, "description": builder.description, "args": args_json, "options": options_json,
                "seed": opts.seed, "command": command or "", "container": containers[config],
                "splits": config_splits, "shards": {}, "rejected": [], "complete": False,
            }
        elif command:
            manifest["configs"][config]["command"] = command

    mine = jobs[opts.shard_index::opts.num_shards] if sliced else jobs
    todo = []
    for j in mine:
        rec = manifest["configs"][j.config]["shards"].get(j.relpath)
        if rec is not None and _shard_ok(out, rec):
            continue
        manifest["configs"][j.config]["shards"].pop(j.relpath, None)
        todo.append(j)
    old = sorted({j.config for j in todo if "container" not in manifest["configs"][j.config]})
    if old:  # a format-1.0 config: its shards have the 1.0 members; new ones would not match them
        raise VidalignError(f"{out}: config {old[0]!r} was built by a format-1.0 vidalign and cannot be completed "
                            "in format 2.0; rebuild it with --overwrite (its finished shards stay readable as is)")
    for j in todo:  # leftovers of a killed run
        (out / (j.relpath + TMP_SUFFIX)).unlink(missing_ok=True)
    mf.save(out, manifest, manifest_name)

    t0 = time.perf_counter()
    progress = BuildProgress(name, todo, enabled=opts.progress)
    counts = {"samples": 0, "rejected": 0}

    def on_result(result: dict) -> None:
        entry = manifest["configs"][result["config"]]
        rec = result["record"]
        entry["shards"][rec["path"]] = rec
        mf.refresh(entry)
        mf.save(out, manifest, manifest_name)
        counts["samples"] += rec["samples"]
        counts["rejected"] += len(rec["rejected"])
        progress.shard_done(rec["path"], rejected=counts["rejected"])

    try:
        run_tasks(build_job, [(name, args, builder_opts, j, str(out)) for j in todo], on_result,
                  executor=opts.executor, workers=opts.workers, ray_address=opts.ray_address,
                  on_progress=progress.advance if opts.progress else None, on_idle=_prepare_finish)
    finally:
        progress.close()
    for entry in manifest["configs"].values():
        mf.refresh(entry)
    mf.save(out, manifest, manifest_name)
    if not sliced and all(manifest["configs"][c]["complete"] for c in splits):
        finish(out, manifest, builder)
    manifest["_summary"] = {"built_shards": len(todo), "skipped_shards": len(mine) - len(todo),
                            "samples": counts["samples"], "rejected": counts["rejected"],
                            "seconds": round(time.perf_counter() - t0, 2)}
    return manifest


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


def finish(out: Path, manifest: dict, builder: Builder | None = None) -> None:
    """Write the card once configs are complete; the builder of this run (or, after a merge, every complete
    config's builder) writes its previews first. The card has one builder instance per config."""
    from vidalign.card import write_card

    builders = card_builders(manifest, builder)
    if builder is not None:
        builder.finalize(out, manifest)
    else:
        for b in {id(b): b for b in builders.values()}.values():
            b.finalize(out, manifest)
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


def merge_manifests(out: Path) -> dict:
    """``vidalign merge-manifests``: join slice manifests; write manifest.json and the card when complete."""
    manifest = mf.merge_parts(out)
    for entry in manifest["configs"].values():
        for rel, _rec in entry["shards"].items():
            if not (out / rel).exists():
                raise VidalignError(f"{out / rel}: listed by a manifest part but missing; rerun that slice")
    mf.save(out, manifest)
    if all(e["complete"] for e in manifest["configs"].values()):
        finish(out, manifest)
        shutil.rmtree(out / MANIFEST_PARTS_DIR, ignore_errors=True)
    return manifest


__all__ = ["run_build", "build_job", "merge_manifests", "finish", "ShardRecord"]
