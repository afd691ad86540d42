"""DSR-Score (SpatialAlign): how well a video's animal/object boxes follow a two-clause spatial relation.

SPEC §1. Per kept frame the relation score ``r_X`` is in [-1, 1] (1 = relation X fully holds); the video
score blends the first three frames and the start/end change of the initial relation with the last three
frames and the change of the final relation, mapped to [0, 1]. Too few usable frames make the video
*invalid* (``None``), which Acc@τ counts as a failure, as the authors' −100 does.

Tracks are JSON lines ``{"video", "prompt_id", "frames": [{"index", "labels", "boxes"}]}`` (boxes xyxy in
pixels, one per label). The authors' pickles are converted only on explicit request, through a restricted
unpickler that can build numpy arrays and builtin containers and nothing else.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidalign.errors import InputError, VidalignError, require
from vidalign.eval.dsr_prompts_csv import RELATIONS, DSRPrompt
from vidalign.eval.safe_pickle import restricted_load

MIN_FRAMES = 20
# calc_correctness.py loops over np.arange(0, 1, 0.1): 0.30000000000000004, 0.6000000000000001, ... so a DSR of
# exactly 0.3 fails at "0.3" there; the thresholds are those floats (keys still print as "0.3")
THRESHOLDS = tuple(float(t) for t in np.arange(0, 1, 0.1))
AUTHORS_SEEDS = (0, 1, 2, 3, 4)  # calc_dsr_score.py scores <prompt_id>_F81_seed00..04 only


# ----------------------------------------------------------------------------------------------- scores
def relation_scores(animal_box: Sequence[float], object_box: Sequence[float]) -> dict[str, float]:
    """``{"L", "R", "T", "B"}`` scores of one frame from xyxy boxes (image coordinates, y down)."""
    ax0, ay0, ax1, ay1 = (float(v) for v in animal_box)
    ox0, oy0, ox1, oy1 = (float(v) for v in object_box)
    w_bar = ((ax1 - ax0) + (ox1 - ox0)) / 2.0
    h_bar = ((ay1 - ay0) + (oy1 - oy0)) / 2.0
    vx = (ax0 + ax1) / 2.0 - (ox0 + ox1) / 2.0
    vy = (ay0 + ay1) / 2.0 - (oy0 + oy1) / 2.0
    norm = math.hypot(vx, vy)
    cos_x, cos_y = (vx / norm, vy / norm) if norm > 0 else (0.0, 0.0)
    dx = min(max(abs(vx) / w_bar, 0.0), 1.0)
    dy = min(max(abs(vy) / h_bar, 0.0), 1.0)
    return {"L": -cos_x * dx, "R": cos_x * dx, "T": -cos_y * dy, "B": cos_y * dy}


def degenerate(animal_box: Sequence[float], object_box: Sequence[float]) -> bool:
    """``calc_dsr_score.py``'s skip rule: either box has zero width, or the mean width or mean height is zero.

    A zero-height box alone keeps the frame (its partner's height makes the mean positive).
    """
    wa, wo = float(animal_box[2]) - float(animal_box[0]), float(object_box[2]) - float(object_box[0])
    h_bar = 0.5 * ((float(animal_box[3]) - float(animal_box[1])) + (float(object_box[3]) - float(object_box[1])))
    return wa == 0 or wo == 0 or 0.5 * (wa + wo) == 0 or h_bar == 0


@dataclass(frozen=True)
class TrackFrame:
    """Detections of one frame: ``labels[i]`` owns ``boxes[i]`` (xyxy, pixels)."""

    index: int
    labels: tuple[str, ...]
    boxes: tuple[tuple[float, float, float, float], ...]


@dataclass(frozen=True)
class Track:
    """All frames of one generated video of prompt ``prompt_id``; no frames means the video was rejected
    (``rejected`` then says why, as an extra JSON key that readers may ignore)."""

    video: str
    prompt_id: str
    frames: tuple[TrackFrame, ...] = field(default_factory=tuple)
    rejected: str | None = None

    def to_json(self) -> dict:
        record = {"video": self.video, "prompt_id": self.prompt_id,
                  "frames": [{"index": f.index, "labels": list(f.labels), "boxes": [list(b) for b in f.boxes]}
                             for f in self.frames]}
        if self.rejected:
            record["rejected"] = self.rejected
        return record


def kept_frames(frames: Iterable[TrackFrame], animal: str, obj: str) -> list[tuple[int, tuple, tuple]]:
    """``(index, animal_box, object_box)`` of frames labelled exactly {animal, object} whose boxes pass
    :func:`degenerate`, sorted by index (``calc_dsr_score.py``)."""
    kept = []
    for f in sorted(frames, key=lambda f: f.index):
        if sorted(f.labels) != sorted([animal, obj]) or animal == obj:
            continue
        a = f.boxes[f.labels.index(animal)]
        o = f.boxes[f.labels.index(obj)]
        if degenerate(a, o):
            continue
        kept.append((f.index, a, o))
    return kept


def dsr_from_relations(r_initial: Sequence[float], r_final: Sequence[float],
                       min_frames: int = MIN_FRAMES) -> float | None:
    """The video formula on per-frame scores of the initial and final relation; ``None`` if K < min_frames."""
    k = len(r_initial)
    if k != len(r_final):
        raise VidalignError(f"r_initial has {k} frames but r_final has {len(r_final)}; pass one score per frame")
    if k < max(min_frames, 3):
        return None
    ri = np.asarray(r_initial, dtype=np.float64)
    rf = np.asarray(r_final, dtype=np.float64)
    total = ri[:3].mean() + 0.5 * (ri[0] - ri[-1]) + rf[-3:].mean() + 0.5 * (rf[-1] - rf[0])
    return float(total / 8.0 + 0.5)


def dsr_score(frames: Iterable[TrackFrame], animal: str, obj: str, initial: str, final: str,
              min_frames: int = MIN_FRAMES) -> float | None:
    """DSR-Score of one video in [0, 1], or ``None`` when fewer than ``min_frames`` frames are kept."""
    for name, rel in (("initial", initial), ("final", final)):
        require(rel in RELATIONS, "dsr_score", name, rel, f"use one of {', '.join(RELATIONS)}")
    kept = kept_frames(frames, animal, obj)
    scores = [relation_scores(a, o) for _, a, o in kept]
    return dsr_from_relations([s[initial] for s in scores], [s[final] for s in scores], min_frames)


def score_track(track: Track, prompt: DSRPrompt, min_frames: int = MIN_FRAMES) -> float | None:
    """DSR-Score of ``track`` against its prompt row."""
    return dsr_score(track.frames, prompt.animal, prompt.object, prompt.initial, prompt.final, min_frames)


def score_tracks(tracks: Iterable[Track], prompts: Mapping[str, DSRPrompt], source: str = "tracks",
                 min_frames: int = MIN_FRAMES) -> list[float | None]:
    """Scores of all tracks; a ``prompt_id`` absent from ``prompts`` is an error naming the video."""
    out = []
    for t in tracks:
        if t.prompt_id not in prompts:
            raise InputError(source, "prompt_id", f"video {t.video!r} has prompt_id {t.prompt_id!r} which the "
                             "prompt CSV does not contain", "pass the CSV the videos were generated from")
        out.append(score_track(t, prompts[t.prompt_id], min_frames))
    return out


def acc_at(scores: Iterable[float | None], thresholds: Sequence[float] = THRESHOLDS) -> dict[str, float]:
    """Acc@τ: the fraction of videos with DSR ≥ τ (``None`` = invalid = failure), keyed ``"0.0"``…``"0.9"``."""
    scores = list(scores)
    if not scores:
        raise VidalignError("Acc@τ needs at least one video; the tracks file is empty")
    return {f"{t:.1f}": sum(1 for s in scores if s is not None and s >= t) / len(scores) for t in thresholds}


# ----------------------------------------------------------------------------------------------- JSONL IO
def _number(value, where: str, fld: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(where, fld, f"{value!r} is not a finite number", "write boxes as [x0, y0, x1, y1] in pixels")
    return float(value)


def parse_track(record, where: str) -> Track:
    """A :class:`Track` from one decoded JSON record; ``where`` is ``file:line`` for errors."""
    if not isinstance(record, dict):
        raise InputError(where, None, f"expected a JSON object, got {type(record).__name__}",
                         'write one {"video", "prompt_id", "frames"} object per line')
    for key in ("video", "prompt_id"):
        if not isinstance(record.get(key), str) or not record[key]:
            raise InputError(where, key, f"missing or not a non-empty string ({record.get(key)!r})",
                             f"give every record a {key}")
    raw_frames = record.get("frames", [])
    if not isinstance(raw_frames, list):
        raise InputError(where, "frames", "must be a list", "write frames as a list of {index, labels, boxes}")
    frames = []
    for i, f in enumerate(raw_frames):
        fw = f"frames[{i}]"
        if not isinstance(f, dict):
            raise InputError(where, fw, "must be an object", "write {index, labels, boxes}")
        idx = f.get("index")
        if isinstance(idx, bool) or not isinstance(idx, int) or idx < 0:
            raise InputError(where, f"{fw}.index", f"{idx!r} is not a frame index", "use a non-negative integer")
        labels = f.get("labels")
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise InputError(where, f"{fw}.labels", f"{labels!r} is not a list of strings", "list the labels")
        boxes = f.get("boxes")
        if not isinstance(boxes, list) or len(boxes) != len(labels):
            n = len(boxes) if isinstance(boxes, list) else boxes
            raise InputError(where, f"{fw}.boxes", f"{n!r} boxes for {len(labels)} labels", "give one box per label")
        parsed = []
        for j, b in enumerate(boxes):
            if not isinstance(b, list) or len(b) != 4:
                raise InputError(where, f"{fw}.boxes[{j}]", f"{b!r} is not [x0, y0, x1, y1]", "use four numbers")
            parsed.append(tuple(_number(v, where, f"{fw}.boxes[{j}]") for v in b))
        frames.append(TrackFrame(idx, tuple(labels), tuple(parsed)))
    rejected = record.get("rejected")
    return Track(record["video"], record["prompt_id"], tuple(frames), rejected if isinstance(rejected, str) else None)


def read_tracks(path: str | Path) -> list[Track]:
    """All tracks of a JSON-lines file; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "tracks file not found", "write it with `vidalign track` or pass its path")
    from vidalign.inputs import iter_jsonl

    return [parse_track(record, where) for where, record in iter_jsonl(path, "tracks file", finite=False)]


def write_tracks(path: str | Path, tracks: Iterable[Track]) -> Path:
    """Write tracks as JSON lines."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for t in tracks:
            fh.write(json.dumps(t.to_json()) + "\n")
    return path


# ----------------------------------------------------------------------------------------------- pickles
MAX_PICKLE_BYTES = 1 << 30  # a track pickle holds boxes (and masks): far less than a GiB


def _read_pickle(path: Path) -> bytes:
    from vidalign.inputs import read_bytes

    return read_bytes(path, "track pickle", max_bytes=MAX_PICKLE_BYTES)


def track_from_pickle(path: str | Path, video: str, prompt_id: str, *, allow_pickle: bool = False) -> Track:
    """Convert an authors' track pickle to a :class:`Track`: a list of ``[frame_index, labels, xyxy]``, with a
    fourth element (the masks ``[2, H, W]``) for B/F prompt types, as ``detection.py`` writes them (any pickle
    protocol; numpy arrays in band).

    Pickles can run code when loaded, so this refuses unless ``allow_pickle=True`` and then uses a restricted
    unpickler that only reconstructs numpy arrays and builtin containers. The masks are not used by the score.
    """
    path = Path(path)
    if not allow_pickle:
        raise VidalignError(f"{path}: reading a pickle needs explicit consent; pass allow_pickle=True "
                            "(CLI: --allow-pickle) only for files you trust, or convert them to tracks JSONL")
    if not path.is_file():
        raise InputError(path, None, "track pickle not found", "pass an existing .pkl file")
    obj = restricted_load(_read_pickle(path), str(path))
    if not isinstance(obj, (list, tuple)):
        raise InputError(path, None, f"expected a list of (frame_index, labels, xyxy), got {type(obj).__name__}",
                         "pass the detection pickles the authors' run_detection.sh wrote")
    record = {"video": video, "prompt_id": prompt_id, "frames": []}
    for i, item in enumerate(obj):
        if not isinstance(item, (list, tuple)) or len(item) not in (3, 4):
            raise InputError(path, f"[{i}]", "is not [frame_index, labels, xyxy] (+ masks)", "pass the authors' format")
        idx, labels, xyxy = item[:3]
        boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4) if len(labels) else np.zeros((0, 4))
        record["frames"].append({"index": int(idx), "labels": [str(x) for x in labels], "boxes": boxes.tolist()})
    return parse_track(record, str(path))
