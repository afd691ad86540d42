"""Core commands: ``build``, ``verify``, ``info``, ``merge-manifests``, ``push``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path

from vidalign.errors import VidalignError


def register(sub, groups) -> None:
    p = sub.add_parser("build", help="build a dataset: vidalign build <builder> --out DIR [options]",
                       description="Build a dataset with a registered builder. "
                                   "`vidalign build <builder> --help` lists that builder's options.",
                       add_help=False)
    p.add_argument("-h", "--help", action="store_true", dest="build_help", help="list the builders")
    p.add_argument("builder", nargs="?", help="builder name")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("verify", help="check every shard against the manifest (sha256, counts, keys)")
    p.add_argument("folder", help="dataset folder or fsspec URL (s3://bucket/prefix)")
    p.add_argument("--quick", action="store_true", help="checksums only, no per-sample check")
    p.add_argument("--decode", action="store_true",
                   help="also decode every member with the readers' limits (JSON, UTF-8 text, .npy/.npz headers, "
                        "gzip), as training and `vidalign.data.load` will")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("info", help="configs, splits, counts, sizes and a sample's fields")
    p.add_argument("folder")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("merge-manifests", help="join the manifests of a sliced build (--shard-index/--num-shards)")
    p.add_argument("folder")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("push", help="upload a dataset folder to the Hugging Face Hub")
    p.add_argument("folder")
    p.add_argument("--repo-id", required=True, help="ORG/NAME of the dataset repository")
    p.add_argument("--private", action="store_true")
    p.add_argument("--revision", default=None)
    p.add_argument("--dry-run", action="store_true", help="list the files that would be uploaded, upload nothing")
    p.set_defaults(func=cmd_push)


def _builder_parser(name: str):
    from vidalign.builder import add_dataclass_arguments, add_options, get_builder
    from vidalign.cli import _Parser

    cls = get_builder(name)
    parser = _Parser(prog=f"vidalign build {name}", description=cls.description or None)
    g = parser.add_argument_group(f"{name} options")
    add_dataclass_arguments(g, cls.Args)
    add_options(parser.add_argument_group("build options"))
    return cls, parser


def run_builder_command(builder: str, ns: dict, fallback_argv: list[str], label: str | None = None,
                        **builder_args) -> dict:
    """Shared body of ``build`` and the ``import`` commands: split the parsed flags into the builder's ``Args``
    and :class:`~vidalign.builder.BuildOptions`, run the build and print a one-line summary."""
    from vidalign.builder import BuildOptions, command_line, get_builder
    from vidalign.runner import run_build

    arg_names = {f.name for f in dataclasses.fields(get_builder(builder).Args)}
    opt_names = {f.name for f in dataclasses.fields(BuildOptions)}
    opts = BuildOptions(**{k: v for k, v in ns.items() if k in opt_names})
    bargs = {k: v for k, v in ns.items() if k in arg_names}
    bargs.update(builder_args)
    argv = sys.argv[1:] if sys.argv and Path(sys.argv[0]).name.startswith("vidalign") else fallback_argv
    m = run_build(builder, bargs, opts, command=command_line(argv))
    s = m["_summary"]
    configs = ", ".join(f"{c} ({'complete' if e['complete'] else 'incomplete'})" for c, e in m["configs"].items())
    print(f"{label or builder}: {s['built_shards']} shard(s) built, {s['skipped_shards']} already done, "
          f"{s['samples']} samples, {s['rejected']} rejected in {s['seconds']} s → {opts.out} [{configs}]")
    if s["rejected"]:
        print(f"rejected inputs are listed in {opts.out}/manifest.json")
    return m


def builders_help() -> str:
    """``vidalign build --help``: usage and every builder with the first sentence of its description."""
    from vidalign.builder import builder_names, get_builder

    rows = []
    for name in builder_names():
        try:
            text = " ".join((get_builder(name).description or "").split())
        except Exception as exc:  # a builder whose optional dependencies are missing still gets listed
            text = f"(unavailable here: {type(exc).__name__}: {exc})"
        first = re.split(r"(?<!et al\.)(?<=[.:;])\s", text, maxsplit=1)[0].rstrip(".:;")
        rows.append(f"  {name:<18} {first[:88] + ('…' if len(first) > 88 else '')}")
    return ("usage: vidalign build <builder> --out DIR [options]\n\n"
            "Build a dataset; `vidalign build <builder> --help` lists that builder's options.\n\nbuilders:\n"
            + "\n".join(rows))


def cmd_build(args) -> int:
    if args.build_help or not args.builder:
        print(builders_help())
        return 0 if args.build_help else 2
    _, parser = _builder_parser(args.builder)
    run_builder_command(args.builder, vars(parser.parse_args(args.rest)), ["build", args.builder, *args.rest])
    return 0


def cmd_verify(args) -> int:
    from vidalign import manifest as mf

    problems = mf.verify(args.folder, check_samples=not args.quick, decode=args.decode)
    if problems:
        for p in problems:
            print(f"FAIL {p}", file=sys.stderr)
        print(f"vidalign verify: {len(problems)} problem(s) in {args.folder}", file=sys.stderr)
        return 1
    m = mf.load(args.folder)
    n = sum(len(e["shards"]) for e in m["configs"].values())
    s = sum(r["samples"] for e in m["configs"].values() for r in e["shards"].values())
    print(f"OK {args.folder}: {n} shard(s), {s} samples, every checksum and count matches"
          + (", every member decodes" if args.decode else ""))
    return 0


def info(folder: str | Path) -> dict:
    from vidalign import features as feats
    from vidalign import manifest as mf
    from vidalign.card import config_schema, container

    m = mf.load(folder)
    out = {"folder": str(folder), "format_version": m["format_version"], "configs": {}}
    for config, e in sorted(m["configs"].items()):
        splits = {}
        for split, plan in sorted(e["splits"].items()):
            recs = [r for p, r in e["shards"].items() if Path(p).name.startswith(split + "-")]
            splits[split] = {"samples": sum(r["samples"] for r in recs), "planned_samples": plan["samples"],
                             "shards": len(recs), "planned_shards": plan["shards"],
                             "bytes": sum(r["bytes"] for r in recs)}
        out["configs"][config] = {
            "builder": e["builder"], "container": container(e), "complete": e["complete"], "splits": splits,
            "rejected": len(e["rejected"]),
            "fields": {k: feats.describe(v) for k, v in config_schema(e).items()},
            "sample": _peek(Path(folder), e),
        }
    return out


def _short(v) -> str:
    import numpy as np

    if isinstance(v, np.ndarray):
        return f"ndarray {v.dtype} {list(v.shape)}"
    if isinstance(v, (bytes, bytearray)):
        return f"{len(v)} bytes"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_short(x)}" for k, x in list(v.items())[:12]) + \
            (", ..." if len(v) > 12 else "") + "}"
    if isinstance(v, list):
        return f"list[{len(v)}]"
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _peek(folder: Path, entry: dict) -> dict:
    """The first sample of the first shard, each member summarised (type, dtype, shape, short values)."""
    from vidalign.shards import iter_shard_samples

    for rel in sorted(entry["shards"]):
        for s in iter_shard_samples(folder / rel, source=rel):
            return {k: _short(v) for k, v in s.items() if k != "__url__"}
    return {}


def cmd_info(args) -> int:
    from vidalign.card import _fmt_bytes

    d = info(args.folder)
    if args.json:
        print(json.dumps(d, indent=1))
        return 0
    print(f"{d['folder']} (vidalign format {d['format_version']})")
    for config, c in d["configs"].items():
        state = "complete" if c["complete"] else "INCOMPLETE"
        print(f"config {config}: builder {c['builder']}, {c['container']} shards, {state}, {c['rejected']} rejected")
        for split, s in c["splits"].items():
            print(f"  split {split}: {s['samples']}/{s['planned_samples']} samples in "
                  f"{s['shards']}/{s['planned_shards']} shards, {_fmt_bytes(s['bytes'])}")
        print("  fields:")
        for k, v in c["fields"].items():
            print(f"    {k}: {v}")
        if c["sample"]:
            print(f"  first sample ({c['sample'].get('__key__')}):")
            for k, v in c["sample"].items():
                if k != "__key__":
                    print(f"    {k}: {v}")
    return 0


def cmd_merge(args) -> int:
    from vidalign.runner import merge_manifests

    m = merge_manifests(Path(args.folder))
    for config, e in m["configs"].items():
        planned = sum(s["shards"] for s in e["splits"].values())
        print(f"config {config}: {len(e['shards'])}/{planned} shards" + ("" if e["complete"] else " (incomplete)"))
    if not all(e["complete"] for e in m["configs"].values()):
        raise VidalignError(f"{args.folder}: some slices are missing; run them, then merge again")
    print(f"merged into {Path(args.folder) / 'manifest.json'} and wrote the dataset card")
    return 0


def cmd_push(args) -> int:
    from vidalign.hub import push, repo_url

    files = push(args.folder, args.repo_id, private=args.private, revision=args.revision, dry_run=args.dry_run)
    verb = "would upload" if args.dry_run else "uploaded"
    for f in files:
        print(f"  {f}")
    print(f"{verb} {len(files)} file(s) to {repo_url(args.repo_id)}"
          + (f" (branch {args.revision})" if args.revision else ""))
    return 0
