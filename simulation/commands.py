"""Simulation commands: ``vidalign export pisabench DIR OUT`` and ``vidalign preview DIR`` (any video dataset).

(The dataset itself is built with ``vidalign build kubric-drop``.)
"""

from __future__ import annotations

from pathlib import Path


def register(sub, groups) -> None:
    p = groups["export"].add_parser(
        "pisabench", help="write kubric-drop clips in PisaBench's layout (rgba_%%05d.jpg, movie.gif, mask.npz, "
                          "clip_info.json per clip)",
        description="Write the clips of a kubric-drop dataset as PisaBench clip folders, readable by PISA's "
                    "evaluation scripts and `vidalign eval pisa`.")
    p.add_argument("folder", help="kubric-drop dataset folder")
    p.add_argument("out", help="output folder (one sub-folder per clip; per config when several)")
    p.add_argument("--config", default=None, help="export only this config (train, test_seen, test_unseen)")
    p.add_argument("--limit", type=int, default=None, help="at most this many clips per config")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT")
    p.set_defaults(func=cmd_export_pisabench)

    p = sub.add_parser("preview", help="contact sheet (PNG) or animated grid (GIF) of a few clips or preference "
                                       "pairs, frames labelled with their time",
                       description="Drop clips get a colour per object (mask outline and centre path); preference "
                                   "pairs show the chosen clip above the rejected one, with scores and prompt.")
    p.add_argument("folder", help="dataset folder with video members (mp4, or chosen.mp4 + rejected.mp4)")
    p.add_argument("--out", type=Path, default=None, help="output .png or .gif (default: FOLDER/previews/preview.png)")
    p.add_argument("--clips", type=int, default=4, help="clips (or pairs) to show (default: 4)")
    p.add_argument("--config", default=None, help="config to preview (default: the first with video)")
    p.add_argument("--columns", type=int, default=6, help="frames per clip on the PNG sheet (default: 6)")
    p.set_defaults(func=cmd_preview)


def cmd_export_pisabench(args) -> int:
    from vidalign.simulation.pisabench import export_pisabench

    written = export_pisabench(args.folder, args.out, config=args.config, limit=args.limit, overwrite=args.overwrite)
    print(f"export pisabench: {len(written)} clip folder(s) → {args.out}")
    return 0


def cmd_preview(args) -> int:
    from vidalign.errors import VidalignError
    from vidalign.simulation.preview import write_preview

    if args.clips < 1 or args.columns < 1:
        raise VidalignError(f"--clips={args.clips} / --columns={args.columns}: use at least 1")
    out = args.out or Path(args.folder) / "previews" / "preview.png"
    path = write_preview(args.folder, out, num_clips=args.clips, config=args.config, columns=args.columns)
    print(f"preview: {path}")
    return 0
