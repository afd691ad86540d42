"""``vidalign import videodpo`` and ``vidalign export videodpo``: the released VideoDPO layout, in and out.

Import runs the ``videodpo-import`` builder, so the result is an ordinary vidalign dataset (shards, manifest with
checksums and skipped inputs, card) and takes the usual build flags (``--on-error skip``, ``--resume``, ...).
"""

from __future__ import annotations

IMPORT_BUILDER = "videodpo-import"


def register(sub, groups) -> None:
    from vidalign.builder import add_dataclass_arguments, add_options
    from vidalign.datasets_builders.videodpo import VideoDpoImportBuilder

    p = groups["import"].add_parser(
        "videodpo", help="a VideoDPO dataset folder (metadata.json, pair.json, winvideos/, losevideos/) → pairs shards",
        description="Read the released VideoDPO layout; absolute clip_path values are resolved inside SRC; each "
                    "pair's loss weight is stored as `weight` (the one its entry carries, else --weight).")
    p.add_argument("src", help="VideoDPO dataset folder")
    add_dataclass_arguments(p, VideoDpoImportBuilder.Args, skip=("source",))
    add_options(p.add_argument_group("build options"))
    p.set_defaults(func=cmd_import_videodpo)

    p = groups["export"].add_parser(
        "videodpo", help="a vidalign pairs dataset → VideoDPO layout for the authors' trainer",
        description="Write metadata.json, pair.json, winvideos/ and losevideos/ (clip_path = absolute paths of "
                    "the exported files; pair score = s_W·s_L, diff_score = s_W − s_L as the authors' scripts).")
    p.add_argument("folder", help="vidalign dataset with a pairs config (a folder, a Hub id org/name or a URL)")
    p.add_argument("out", help="output folder")
    p.add_argument("--config", default="pairs", help="config to export (default: pairs)")
    p.add_argument("--split", default="train", help="split to export (default: train)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing layout in OUT")
    p.add_argument("--short-clips", choices=["refuse", "drop"], default="refuse",
                   help="clips the authors' loader would skip or misread (clip_duration < 1 s or < 16 frames, which "
                        "shifts every later pair): refuse the export (default) or leave those pairs out, listed")
    p.set_defaults(func=cmd_export_videodpo)


def cmd_import_videodpo(args) -> int:
    from vidalign.commands import run_builder_command

    run_builder_command(IMPORT_BUILDER, vars(args), ["import", "videodpo", args.src], label="import videodpo",
                        source=args.src)
    return 0


def cmd_export_videodpo(args) -> int:
    from vidalign.datasets_builders.videodpo import export_layout

    r = export_layout(args.folder, args.out, config=args.config, split=args.split, overwrite=args.overwrite,
                      short_clips=args.short_clips)
    for d in r["dropped"]:
        print(f"dropped {d['input']}: {d['reason']}")
    print(f"export videodpo: {r['pairs']} pairs ({r['videos']} videos) → {r['out']} "
          "(metadata.json, pair.json, winvideos/, losevideos/)"
          + (f"; {len(r['dropped'])} pair(s) with clips too short for the authors' loader left out"
             if r["dropped"] else ""))
    return 0
