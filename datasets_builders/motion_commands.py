"""``vidalign import atom``: AToM's ``preference_labels.jsonl`` (+ motion ``.npy`` files) → MotionPrefer shards.

The lead's ``datasets_builders/commands.py`` calls :func:`register`; the judged builder is
``vidalign build motionprefer`` (registered by :mod:`vidalign.datasets_builders.motionprefer`).
"""

from __future__ import annotations

from pathlib import Path

BUILDER = "motionprefer-atom"


def register(sub, groups) -> None:
    from vidalign.builder import add_dataclass_arguments, add_options
    from vidalign.datasets_builders.motionprefer import AtomImportBuilder

    p = groups["import"].add_parser(
        "atom", help="AToM preference_labels.jsonl → MotionPrefer pairs (default + trl configs)",
        description="Import AToM's MotionPrefer annotations: last `chosen` entry wins, skipped rows are dropped, "
                    "degree → label smoothing, 90/10 train/eval split with seed 2222. Paths inside the JSONL are "
                    "relative to its folder; token codes are read from <features stem>_token.npy when present.")
    p.add_argument("jsonl", nargs="+", help="preference_labels.jsonl file(s); the sub-task is read from the folder "
                                            "names (integrity/temporal/frequency) unless --sub-task is given")
    add_dataclass_arguments(p.add_argument_group("atom options"), AtomImportBuilder.Args, skip=("jsonl",))
    add_options(p.add_argument_group("build options"))
    p.set_defaults(func=cmd_import_atom)


def cmd_import_atom(args) -> int:
    from vidalign.commands import run_builder_command

    jsonl = [str(Path(p)) for p in args.jsonl]
    run_builder_command(BUILDER, vars(args), ["import", "atom", *jsonl], label="import atom", jsonl=jsonl)
    return 0
