"""The authors' PisaBench metrics config, scored as their ``eval.py`` scores it (vision-x-nyu/pisa-experiments).

``configs/eval/*.jsonl`` holds one object per video: ``gt_mask``, ``gt_fps``, ``pd_mask``, ``pd_fps`` and, for real
clips, ``gt_annotation`` (the clip's ``clip_info.json``, whose points pick the dropping object). ``eval.py`` scores the
lines in order, writes one result per line (``l2``, ``chamfer_distance``, ``iou``, ``config``), logs and skips a line
that raises, and appends the NaN-means to a results text file. :func:`evaluate_config` does the same with
:func:`~vidalign.eval.pisa.score_video`, and keeps every skipped line with its reason.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vidalign.errors import InputError, VidalignError
from vidalign.eval.pisa import Dropped, load_mask_npz, read_clip_info, score_video, summarise

CONFIG_FIELDS = ("gt_mask", "gt_fps", "pd_mask", "pd_fps")


@dataclass(frozen=True)
class ConfigEntry:
    """One line of the authors' metrics config (``configs/eval/*.jsonl``), paths resolved."""

    line: int
    raw: dict
    gt_mask: Path | None = None
    pd_mask: Path | None = None
    gt_fps: float = 0.0
    pd_fps: float = 0.0
    gt_annotation: Path | None = None
    error: str | None = None  # why the line cannot be scored (their eval.py would raise on it)

    @property
    def name(self) -> str:
        path = self.pd_mask or self.gt_mask
        return path.parent.name if path is not None else f"line {self.line}"


def _resolve(value: str, base: Path) -> Path:
    """A config path as the authors' script opens it (relative to the working directory), falling back to the
    config file's folder for relative paths written next to it."""
    p = Path(value).expanduser()
    if p.is_absolute() or p.exists():
        return p
    return base / p


def read_metrics_config(path: str | Path) -> list[ConfigEntry]:
    """Entries of a metrics config JSONL, in file order; a line that cannot be scored carries its ``error``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "metrics config not found", "pass a JSONL with gt_mask, gt_fps, pd_mask, pd_fps")
    base = path.parent
    entries = []
    from vidalign.inputs import parse_json, read_text

    if True:
        for n, raw in enumerate(read_text(path, "metrics config").splitlines(), start=1):
            if not raw.strip():
                continue
            obj = parse_json(raw, path, n)
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{n}", None, f"expected an object, got {type(obj).__name__}",
                                 'write {"gt_mask": ..., "gt_fps": ..., "pd_mask": ..., "pd_fps": ...}')
            missing = [f for f in CONFIG_FIELDS if f not in obj]
            bad = [f for f in ("gt_fps", "pd_fps") if f in obj and (isinstance(obj[f], bool) or
                                                                  not isinstance(obj[f], (int, float)))]
            paths = [f for f in ("gt_mask", "pd_mask", "gt_annotation") if f in obj and not isinstance(obj[f], str)]
            if missing or bad or paths:
                what = (f"misses {', '.join(missing)}" if missing else
                        f"{(bad or paths)[0]} = {obj[(bad or paths)[0]]!r} is not a {'number' if bad else 'path'}")
                entries.append(ConfigEntry(n, obj, error=f"{path}:{n}: {what}"))
                continue
            ann = obj.get("gt_annotation")
            entries.append(ConfigEntry(n, obj, _resolve(obj["gt_mask"], base), _resolve(obj["pd_mask"], base),
                                       float(obj["gt_fps"]), float(obj["pd_fps"]),
                                       _resolve(ann, base) if ann is not None else None))
    if not entries:
        raise InputError(path, None, "holds no entries", "write one JSON object per video")
    return entries


def _annotation_points(path: Path):
    if not path.is_file():
        raise InputError(path, "gt_annotation", "file not found", "point gt_annotation at the clip's clip_info.json")
    info = read_clip_info(path)
    if "points" not in info:
        raise InputError(path, "points", "missing", "a real clip's clip_info.json lists the objects' points")
    return info["points"]


def score_entry(entry: ConfigEntry) -> dict[str, float]:
    """Metrics of one config line (raises :class:`InputError` where the authors' ``eval.py`` raises)."""
    if entry.error is not None:
        raise VidalignError(f"{entry.error}; write gt_mask, gt_fps, pd_mask and pd_fps (numbers for the fps)")
    points = _annotation_points(entry.gt_annotation) if entry.gt_annotation is not None else None
    gt = load_mask_npz(entry.gt_mask, str(entry.gt_mask))
    pd = load_mask_npz(entry.pd_mask, str(entry.pd_mask))
    return score_video(gt, pd, entry.gt_fps, entry.pd_fps, points, str(entry.gt_mask), str(entry.pd_mask),
                       str(entry.gt_annotation))


def evaluate_config(entries: Sequence[ConfigEntry], progress: bool = False) -> dict:
    """Score every config line in order: ``{"mean", "videos", "dropped"}``; each video row holds the authors'
    keys (``l2``, ``chamfer_distance``, ``iou``, ``config``) plus ``name`` and ``line``."""
    from tqdm.auto import tqdm

    rows, dropped = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for e in tqdm(entries, desc="pisabench", disable=not progress, unit="video"):
            try:
                m = score_entry(e)
            except (InputError, VidalignError) as exc:
                dropped.append(Dropped(e.name, str(exc), e.line))
                continue
            rows.append({"name": e.name, "line": e.line, "l2": m["l2"], "chamfer": m["chamfer"], "iou": m["iou"],
                         "config": e.raw})
    return summarise(rows, dropped)


def results_line(row: Mapping) -> dict:
    """One line of the authors' output file: ``{"l2", "chamfer_distance", "iou", "config"}``."""
    return {"l2": row["l2"], "chamfer_distance": row["chamfer"], "iou": row["iou"], "config": row.get("config", {})}


def results_text(task: str, mean: Mapping[str, float], scored: int, dropped: int) -> str:
    """The block the authors' ``eval.py`` appends to its results file, plus the count of videos it scored."""
    return (f"Task: {task}\nL2: {mean['l2']}\nChamfer Distance: {mean['chamfer']}\nIoU: {mean['iou']}\n"
            f"Videos: {scored} scored, {dropped} dropped\n\n")
