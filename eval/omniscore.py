"""OmniScore (VideoDPO): one number per video from seven VBench dimensions.

SPEC §2. VBench writes ``{dim}_eval_results.json`` as ``{dim: [average, [{"video_path", "video_results"}]]}``.
Each dimension is pre-scaled (imaging_quality/100, subject_consistency/num_frames — the authors hard-code
16 frames), min-max normalised with the authors' fixed table (no clipping) and weighted; six dimensions
make Quality (divided by their weight sum 5.5), overall_consistency is Semantic, OmniScore = (4Q + S)/5.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from vidalign.errors import InputError, require

# dimension: (Min, Max, weight)
TABLE: dict[str, tuple[float, float, float]] = {
    "subject_consistency": (0.1462, 1.0, 1.0),
    "temporal_flickering": (0.6293, 1.0, 1.0),
    "motion_smoothness": (0.706, 0.9975, 1.0),
    "dynamic_degree": (0.0, 1.0, 0.5),
    "aesthetic_quality": (0.0, 1.0, 1.0),
    "imaging_quality": (0.0, 1.0, 1.0),
    "overall_consistency": (0.0, 0.364, 1.0),
}
QUALITY_DIMS = ("subject_consistency", "temporal_flickering", "motion_smoothness", "dynamic_degree",
                "aesthetic_quality", "imaging_quality")
SEMANTIC_DIM = "overall_consistency"
DIMENSIONS = (*QUALITY_DIMS, SEMANTIC_DIM)
QUALITY_DIVISOR = 5.5


@dataclass(frozen=True)
class OmniScoreConfig:
    """``num_frames`` divides subject_consistency, as the authors' code does with a hard-coded 16."""

    num_frames: int = 16

    def __post_init__(self) -> None:
        require(isinstance(self.num_frames, int) and self.num_frames > 0, "OmniScoreConfig", "num_frames",
                self.num_frames, "give the positive frame count VBench summed subject_consistency over (16)")


def prescale(dim: str, raw: float, config: OmniScoreConfig = OmniScoreConfig()) -> float:
    """VBench's raw value brought to the scale of the Min/Max table."""
    if dim == "imaging_quality":
        return raw / 100.0
    if dim == "subject_consistency":
        return raw / config.num_frames
    return raw


def normalised(dim: str, raw: float, config: OmniScoreConfig = OmniScoreConfig()) -> float:
    """``w_d · (prescaled − Min_d) / (Max_d − Min_d)``, unclipped."""
    lo, hi, w = TABLE[dim]
    return w * (prescale(dim, raw, config) - lo) / (hi - lo)


def omniscore(raw: Mapping[str, float], config: OmniScoreConfig = OmniScoreConfig()) -> dict[str, float]:
    """``{"quality", "semantic", "omniscore"}`` of one video from its seven raw VBench values."""
    missing = [d for d in DIMENSIONS if d not in raw]
    require(not missing, "omniscore", "raw", sorted(raw), f"give all seven dimensions (missing {missing})")
    quality = sum(normalised(d, raw[d], config) for d in QUALITY_DIMS) / QUALITY_DIVISOR
    semantic = normalised(SEMANTIC_DIM, raw[SEMANTIC_DIM], config)
    return {"quality": quality, "semantic": semantic, "omniscore": (4.0 * quality + semantic) / 5.0}


def _value(value, where: str, dim: str, video: str) -> float:
    if isinstance(value, bool):  # dynamic_degree is a per-video boolean in VBench
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    raise InputError(where, f"{dim}.video_results", f"video {video!r} has {value!r}, not a finite number",
                     "re-run VBench for that video or drop it from every dimension file")


OnBad = Callable[[str, InputError], None]


def read_dimension(path: str | Path, dim: str, on_bad: OnBad | None = None) -> dict[str, float]:
    """``{video_path: raw value}`` of one ``{dim}_eval_results.json``.

    A video whose value is not a finite number raises, or, with ``on_bad(video, error)``, is reported there and
    left out (builders use this for ``--on-error skip``).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, None, f"not valid JSON ({exc})", "pass the file VBench wrote") from None
    entry = data.get(dim) if isinstance(data, dict) else None
    if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], list)):
        raise InputError(path, dim, "expected {dim: [average, [{video_path, video_results}, ...]]}",
                         "pass the file VBench's evaluate() wrote for this dimension")
    values: dict[str, float] = {}
    for i, item in enumerate(entry[1]):
        if not isinstance(item, dict) or not isinstance(item.get("video_path"), str) or "video_results" not in item:
            raise InputError(path, f"{dim}[1][{i}]", "needs video_path (string) and video_results",
                             "pass the file VBench wrote")
        try:
            values[item["video_path"]] = _value(item["video_results"], str(path), dim, item["video_path"])
        except InputError as exc:
            if on_bad is None:
                raise
            on_bad(item["video_path"], exc)
    if not values and on_bad is None:
        raise InputError(path, dim, "lists no videos", "evaluate at least one video")
    return values


def read_vbench(folder: str | Path, on_bad: OnBad | None = None) -> dict[str, dict[str, float]]:
    """``{video_path: {dim: raw}}`` from a VBench output folder holding the seven ``{dim}_eval_results.json``.

    Every video must appear in every dimension file with a finite value; with ``on_bad(video, error)`` a video
    that does not is reported there and left out instead of raising.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, None, "VBench folder not found", "pass the folder VBench wrote its results to")
    per_dim: dict[str, dict[str, float]] = {}
    bad: set[str] = set()

    def report(video: str, exc: InputError) -> None:
        if on_bad is None:
            raise exc
        bad.add(video)
        on_bad(video, exc)

    for dim in DIMENSIONS:
        path = folder / f"{dim}_eval_results.json"
        if not path.is_file():
            raise InputError(path, dim, "dimension file missing",
                             f"run VBench with --dimension {dim} and write its results into {folder}")
        per_dim[dim] = read_dimension(path, dim, report if on_bad is not None else None)
    videos = list(dict.fromkeys(v for dim in DIMENSIONS for v in per_dim[dim]))
    for video in videos:
        missing = [d for d in DIMENSIONS if video not in per_dim[d]]
        if missing and video not in bad:
            report(video, InputError(folder / f"{missing[0]}_eval_results.json", missing[0],
                                     f"video {video!r} is missing", "evaluate the same videos in every dimension"))
    return {v: {d: per_dim[d][v] for d in DIMENSIONS} for v in videos if v not in bad}


def score_folder(folder: str | Path, config: OmniScoreConfig = OmniScoreConfig()) -> dict:
    """``{"mean": {quality, semantic, omniscore}, "videos": [{video, quality, semantic, omniscore}]}``."""
    raws = read_vbench(folder)
    videos = [{"video": v, **omniscore(raw, config)} for v, raw in raws.items()]
    mean = {k: sum(r[k] for r in videos) / len(videos) for k in ("quality", "semantic", "omniscore")}
    return {"mean": mean, "videos": videos}
