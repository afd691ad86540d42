"""SpatialAlign's prompt CSV schema (``eval30.csv`` / ``eval120.csv``), read and written.

The released evaluation sets are CSV files with columns ``type,prompt_id,animal,object,scene,initial_SR,
final_SR,prompt``; ``eval120.csv`` adds an integer ``group``. The DSR scorer needs each prompt's animal,
object and relation letters (``type``), and the DSR builders write new sets in the same schema, so both
use this one reader/writer. Columns are matched by name, so their order does not matter on reading.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from vidalign.errors import InputError, require

COLUMNS = ("type", "prompt_id", "animal", "object", "scene", "initial_SR", "final_SR", "prompt")
GROUP_COLUMN = "group"
RELATIONS = ("L", "R", "T", "B")

# Phrases of the prompt template; B (below) is not in any released prompt but the authors' code knows it.
INITIAL_PHRASES = {"L": "on the left of", "R": "on the right of", "T": "on the top of", "B": "below"}
FINAL_PHRASES = {"L": "to the left of", "R": "to the right of", "T": "to the top of", "B": "to the bottom of"}
TEMPLATE = "{scene}, a {animal} is {initial} a {object}, then the {animal} {verb} {final} the {object}."


@dataclass(frozen=True)
class DSRPrompt:
    """One row of a DSR prompt set; ``type`` is the initial then the final relation letter (e.g. ``"LR"``)."""

    type: str
    prompt_id: str
    animal: str
    object: str
    scene: str
    initial_SR: str
    final_SR: str
    prompt: str
    group: int | None = None

    def __post_init__(self) -> None:
        require(len(self.type) == 2 and all(c in RELATIONS for c in self.type), "DSRPrompt", "type", self.type,
                f"use two relation letters from {''.join(RELATIONS)}, initial then final (e.g. 'LR')")
        for name in ("prompt_id", "animal", "object", "prompt"):
            value = getattr(self, name)
            require(isinstance(value, str) and value.strip() != "", "DSRPrompt", name, value,
                    "give a non-empty string")
        require(self.group is None or (isinstance(self.group, int) and not isinstance(self.group, bool)),
                "DSRPrompt", "group", self.group, "give an integer or leave it empty")

    @property
    def initial(self) -> str:
        """Relation letter of the first clause."""
        return self.type[0]

    @property
    def final(self) -> str:
        """Relation letter of the second clause."""
        return self.type[1]


def render_prompt(scene: str, animal: str, obj: str, verb: str, initial: str, final: str) -> str:
    """The SpatialAlign template filled with relation letters ``initial``/``final``."""
    return TEMPLATE.format(scene=scene, animal=animal, object=obj, verb=verb,
                           initial=INITIAL_PHRASES[initial], final=FINAL_PHRASES[final])


def read_prompts_csv(path: str | Path) -> list[DSRPrompt]:
    """All rows of a prompt CSV; errors name the file, the line and the column."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "prompt CSV not found", "pass the path of eval30.csv/eval120.csv or a built set")
    from vidalign.inputs import read_csv

    header, records = read_csv(path, "prompt CSV")
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}:1", missing[0], f"column missing (header is {','.join(header)})",
                         f"the header must contain {','.join(COLUMNS)} (and optionally {GROUP_COLUMN})")
    rows: list[DSRPrompt] = []
    seen: dict[str, int] = {}
    for line, row in records:
        where = f"{path}:{line}"
        if any(row.get(c) is None for c in COLUMNS):
            raise InputError(where, None, "wrong number of columns", "quote fields that contain commas")
        group: int | None = None
        raw_group = (row.get(GROUP_COLUMN) or "").strip()
        if raw_group:
            try:
                group = int(raw_group)
            except ValueError:
                raise InputError(where, GROUP_COLUMN, f"{raw_group!r} is not an integer",
                                 "write the group as an integer or leave it empty") from None
        values = {c: row[c].strip() for c in COLUMNS}
        values["type"] = values["type"].upper()
        try:
            prompt = DSRPrompt(**values, group=group)
        except Exception as exc:  # the dataclass names the field; add the file and line
            raise InputError(where, None, str(exc)) from None
        if prompt.prompt_id in seen:
            raise InputError(where, "prompt_id", f"{prompt.prompt_id!r} repeats line {seen[prompt.prompt_id]}",
                             "give every row a unique prompt_id")
        seen[prompt.prompt_id] = line
        rows.append(prompt)
    if not rows:
        raise InputError(path, None, "prompt CSV has no rows", "add at least one prompt row")
    return rows


def write_prompts_csv(path: str | Path, prompts: Iterable[DSRPrompt]) -> Path:
    """Write ``prompts`` in the authors' schema; ``group`` is written when any row has one."""
    path = Path(path)
    prompts = list(prompts)
    with_group = any(p.group is not None for p in prompts)
    columns: Sequence[str] = (*COLUMNS, GROUP_COLUMN) if with_group else COLUMNS
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        for p in prompts:
            row = asdict(p)
            if not with_group:
                row.pop(GROUP_COLUMN)
            elif row[GROUP_COLUMN] is None:
                row[GROUP_COLUMN] = ""
            writer.writerow(row)
    return path


def prompts_by_id(prompts: Iterable[DSRPrompt]) -> dict[str, DSRPrompt]:
    """Index prompts by ``prompt_id``."""
    return {p.prompt_id: p for p in prompts}
