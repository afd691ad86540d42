"""OmniScore (VideoDPO): one number per video from seven VBench dimensions.

Two VBench outputs are read. Upstream VBench writes ``{dim}_eval_results.json`` as
``{dim: [average, [{"video_path", "video_results"}]]}``; the authors' VBench fork (VideoDPO) writes
``{dim}__eval_results.json`` as a flat ``{dim: [{"video_path", "video_results"}]}`` over one folder per candidate
(``01/``, ``02/`` …, videos ``<candidate>/<prompt index>.mp4``), and ``compute_total_score.py`` keys videos by
``<candidate>/<file>``, as done here for that layout.

Each dimension is pre-scaled (imaging_quality/100; subject_consistency ÷ 16, the authors' hard-coded frame
count), min-max normalised with the authors' fixed table (no clipping) and weighted; six dimensions make Quality
(divided by their weight sum 5.5), overall_consistency is Semantic, OmniScore = (4Q + S)/5.

subject_consistency: the fork writes each video's *sum* over its 15 frame pairs (hence their ÷ 16); upstream
VBench writes the *mean* (``video_sim / (len(images) - 1)``). Dividing a mean by 16 would be wrong, so the
convention is stated (``sum``/``mean``) or detected (``auto``: every value above 1 is a sum, none a mean, a mix
is refused). A mean is brought to the authors' scale as mean × (n − 1)/n, the value their pipeline computes for
the same video; results say which convention ran.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

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


SC_MODES = ("auto", "sum", "mean")
FORK_SUFFIX = "__eval_results.json"
UPSTREAM_SUFFIX = "_eval_results.json"


@dataclass(frozen=True)
class OmniScoreConfig:
    """``num_frames`` divides subject_consistency, as the authors' code does with a hard-coded 16;
    ``subject_consistency`` says what VBench wrote: ``sum`` (their fork), ``mean`` (upstream) or ``auto``."""

    num_frames: int = 16
    subject_consistency: str = "auto"

    def __post_init__(self) -> None:
        require(isinstance(self.num_frames, int) and self.num_frames > 1, "OmniScoreConfig", "num_frames",
                self.num_frames, "give the frame count of the videos VBench scored (the authors' 16)")
        require(self.subject_consistency in SC_MODES, "OmniScoreConfig", "subject_consistency",
                self.subject_consistency, "use sum (the VideoDPO VBench fork), mean (upstream VBench) or auto")


def subject_consistency_mode(values: Mapping[str, float], source: str = "subject_consistency") -> str:
    """``sum`` when every per-video value exceeds 1 (a sum over frame pairs), ``mean`` when none does."""
    above = [v > 1.0 for v in values.values()]
    if above and all(above):
        return "sum"
    if not any(above):
        return "mean"
    raise InputError(source, "subject_consistency", f"{sum(above)} of {len(above)} values exceed 1: neither all "
                     "per-video sums (the VideoDPO VBench fork) nor all means (upstream VBench)",
                     "state what VBench wrote with --subject-consistency sum or mean")


def resolve_config(raws: Mapping[str, Mapping[str, float]], config: OmniScoreConfig,
                   source: str = "subject_consistency") -> tuple[OmniScoreConfig, str]:
    """The config with ``subject_consistency`` decided from the data when ``auto``, and how it was decided."""
    if config.subject_consistency != "auto":
        return config, "stated"
    mode = subject_consistency_mode({v: r["subject_consistency"] for v, r in raws.items()}, source)
    return dataclasses.replace(config, subject_consistency=mode), "detected"


def prescale(dim: str, raw: float, config: OmniScoreConfig = OmniScoreConfig()) -> float:
    """VBench's raw value brought to the scale of the Min/Max table."""
    if dim == "imaging_quality":
        return raw / 100.0
    if dim == "subject_consistency":
        mode = config.subject_consistency
        if mode == "auto":  # one value: a sum over frame pairs is above 1, a mean is not
            mode = "sum" if raw > 1.0 else "mean"
        if mode == "sum":
            return raw / config.num_frames
        return raw * (config.num_frames - 1) / config.num_frames  # the fork's sum over n − 1 pairs, ÷ n
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
    """``{video_path: raw value}`` of one dimension file, upstream (``{dim: [average, [items]]}``) or the fork's
    flat ``{dim: [items]}``.

    A video whose value is not a finite number raises, or, with ``on_bad(video, error)``, is reported there and
    left out (builders use this for ``--on-error skip``).
    """
    path = Path(path)
    from vidalign.inputs import read_text

    text = read_text(path, "VBench results file")
    try:  # VBench writes NaN for a failed video: allowed here, refused per video below
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InputError(path, None, f"not valid JSON ({exc})", "pass the file VBench wrote") from None
    entry = data.get(dim) if isinstance(data, dict) else None
    if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], list) and not isinstance(entry[0], dict):
        items, where = entry[1], f"{dim}[1]"
    elif isinstance(entry, list) and all(isinstance(x, dict) for x in entry):
        items, where = entry, dim
    else:
        raise InputError(path, dim, "expected {dim: [average, [{video_path, video_results}, ...]]} (VBench) or "
                         "{dim: [{video_path, video_results}, ...]} (the VideoDPO fork)",
                         "pass the file VBench's evaluate() wrote for this dimension")
    values: dict[str, float] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("video_path"), str) or "video_results" not in item:
            raise InputError(path, f"{where}[{i}]", "needs video_path (string) and video_results",
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


def dimension_file(folder: Path, dim: str) -> Path:
    """``{dim}_eval_results.json`` (VBench) or ``{dim}__eval_results.json`` (the VideoDPO fork), not both."""
    found = [p for p in (folder / f"{dim}{UPSTREAM_SUFFIX}", folder / f"{dim}{FORK_SUFFIX}") if p.is_file()]
    if not found:
        raise InputError(folder / f"{dim}{UPSTREAM_SUFFIX}", dim, "dimension file missing",
                         f"run VBench with --dimension {dim} and write its results into {folder}")
    if len(found) == 2:
        raise InputError(folder, dim, f"holds both {found[0].name} and {found[1].name}",
                         "keep the results of one VBench run per dimension")
    return found[0]


def candidate_key(video_path: str) -> str:
    """``<candidate>/<file>``: how the fork's ``compute_total_score.py`` names a video (``…/01/000003.mp4`` →
    ``01/000003.mp4``)."""
    parts = PurePosixPath(str(video_path).replace("\\", "/")).parts
    return "/".join(parts[-2:])


def read_vbench(folder: str | Path, on_bad: OnBad | None = None) -> dict[str, dict[str, float]]:
    """``{video: {dim: raw}}`` from a VBench output folder holding the seven dimension files.

    Videos are named by their ``video_path``, or, when any file is the fork's (``{dim}__eval_results.json``), by
    ``<candidate>/<file>`` as its ``compute_total_score.py`` names them. Every video must appear in every dimension
    file with a finite value; with ``on_bad(video, error)`` a video that does not is reported there and left out.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, None, "VBench folder not found", "pass the folder VBench wrote its results to")
    per_dim: dict[str, dict[str, float]] = {}
    bad: set[str] = set()
    files = {dim: dimension_file(folder, dim) for dim in DIMENSIONS}
    fork = any(p.name.endswith(FORK_SUFFIX) for p in files.values())

    def report(video: str, exc: InputError) -> None:
        if on_bad is None:
            raise exc
        bad.add(candidate_key(video) if fork else video)
        on_bad(video, exc)

    for dim, path in files.items():
        values = read_dimension(path, dim, report if on_bad is not None else None)
        if fork:
            keyed: dict[str, float] = {}
            for video, v in values.items():
                key = candidate_key(video)
                if key in keyed:
                    raise InputError(path, "video_path", f"two videos are both {key!r}",
                                     "evaluate one folder of candidates (01/, 02/, ...) per run")
                keyed[key] = v
            values = keyed
        per_dim[dim] = values
    videos = list(dict.fromkeys(v for dim in DIMENSIONS for v in per_dim[dim]))
    for video in videos:
        missing = [d for d in DIMENSIONS if video not in per_dim[d]]
        if missing and video not in bad:
            report(video, InputError(files[missing[0]], missing[0], f"video {video!r} is missing",
                                     "evaluate the same videos in every dimension"))
    return {v: {d: per_dim[d][v] for d in DIMENSIONS} for v in videos if v not in bad}


def score_folder(folder: str | Path, config: OmniScoreConfig = OmniScoreConfig()) -> dict:
    """``{"mean": {quality, semantic, omniscore}, "videos": [{video, quality, semantic, omniscore}],
    "subject_consistency": {"mode", "decided", "num_frames"}}``."""
    raws = read_vbench(folder)
    config, how = resolve_config(raws, config, str(Path(folder) / "subject_consistency"))
    videos = [{"video": v, **omniscore(raw, config)} for v, raw in raws.items()]
    mean = {k: sum(r[k] for r in videos) / len(videos) for k in ("quality", "semantic", "omniscore")}
    return {"mean": mean, "videos": videos,
            "subject_consistency": {"mode": config.subject_consistency, "decided": how,
                                    "num_frames": config.num_frames}}
