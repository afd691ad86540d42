"""The released VideoDPO dataset layout, read and written (SPEC §2).

::

    <root>/metadata.json   [{"basic": {"clip_duration": 1.6, "clip_path": "/abs/.../winvideos/000001.mp4",
                              "globalidx": 1}, "misc": {"frame_caption": [prompt]}}, ...]   winner 2k, loser 2k+1
    <root>/pair.json       [{"video1": 2k, "video2": 2k+1, "label": 0, "frame_caption": prompt,
                              "score": s_W·s_L, "diff_score": s_W − s_L}, ...]
    <root>/winvideos/*.mp4, <root>/losevideos/*.mp4

The authors' loader (``TextVideoDPO``) takes ``video1`` as the winner whatever ``label`` says, passes
``score`` on as the weight input (their ``pair_prob.py`` sets it to s_W·s_L, ``diff_score`` to s_W − s_L; their
weight ``(0.72 / score)^dupbeta`` is 1 with the released ``dupbeta: 0``) and
drops metadata entries with ``clip_duration`` < 1 s *before* indexing pairs into the list, and reads the next
video instead of one with fewer than ``video_length`` (16) frames: either shifts every later pair onto the wrong
videos, so the export refuses such clips or (``short_clips="drop"``) leaves their pairs out, counted. ``clip_path`` values are absolute paths from the authors' machine: they are
resolved here by the longest path suffix that exists under the dataset folder.

Imported pairs are pair records of :mod:`vidalign.contract` (``prompt``, ``chosen_score``, ``rejected_score``,
``gap``, ``weight``): scores recovered from ``score`` and ``diff_score``, the weight a pair entry carries (an
export writes ``weight`` into each pair entry, beside the fields the authors' loader reads, so weights survive the
round trip) or else the re-weighting the import is asked for (the paper's by default, as ``vidprom-pairs``). They
keep the original metadata and pair entries verbatim (as JSON text in the sample's json), so an export writes them
back unchanged except for ``clip_path`` (pointing at the exported files), the indices and ``weight``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

from vidalign import contract as C
from vidalign.builder import Builder, register_builder
from vidalign.datasets_builders.pairs import (
    VIDEO_CHECKS,
    VIDEODPO_CITATION,
    ScoredPair,
    WeightConfig,
    cached_state,
    is_score,
    materialise,
    pair_weights,
    plan_items,
)
from vidalign.datasets_builders.plots import gap_histogram_png, score_histogram_png
from vidalign.errors import InputError, VidalignError, require
from vidalign.format import PREVIEWS_DIR

METADATA_NAME = "metadata.json"
PAIR_NAME = "pair.json"
WIN_DIR = "winvideos"
LOSE_DIR = "losevideos"
DEFAULT_CLIP_DURATION = 1.6
MIN_CLIP_DURATION = 1.0  # data/video_data.py: clip_length
MIN_CLIP_FRAMES = 16  # configs/*/config.yaml: video_length
SHORT_CLIP_MODES = ("refuse", "drop")


@dataclass(frozen=True)
class VideoDpoPair:
    """One entry of ``pair.json`` with its two metadata entries and resolved video files."""

    index: int
    prompt: str
    chosen: Path
    rejected: Path
    pair_item: dict
    chosen_item: dict
    rejected_item: dict

    @property
    def scores(self) -> tuple[float, float] | None:
        """(s_W, s_L) recovered from ``score`` = s_W·s_L and ``diff_score`` = s_W − s_L, when both are set."""
        return scores_from_product_and_gap(self.pair_item.get("score"), self.pair_item.get("diff_score"))

    @property
    def stored_weight(self) -> float | None:
        """The ``weight`` a pair entry carries (written by ``vidalign export videodpo``), or None."""
        w = self.pair_item.get(C.WEIGHT)
        return float(w) if is_score(w) and w >= 0 else None

    def record(self, weight: float = 1.0) -> dict:
        """The sample's ``json``: a pair record (:func:`vidalign.contract.pair_record`) with ``weight``, and the
        original entries for a faithful export."""
        sw_sl = self.scores
        return C.pair_record(
            self.prompt, sw_sl[0] if sw_sl else None, sw_sl[1] if sw_sl else None, weight,
            source="videodpo",
            videodpo={
                "pair_index": self.index,
                "pair_item": json.dumps(self.pair_item, sort_keys=True),
                "chosen_item": json.dumps(self.chosen_item, sort_keys=True),
                "rejected_item": json.dumps(self.rejected_item, sort_keys=True),
            })


def layout_weights(pairs: list[VideoDpoPair], config: WeightConfig) -> list[float]:
    """Each pair's loss weight: the one its entry carries, else ``config``'s re-weighting of its recovered scores
    (the paper's histogram over every recovered score), else 1 (a pair without scores)."""
    scored = [(k, p.scores) for k, p in enumerate(pairs) if p.stored_weight is None and p.scores]
    out = [p.stored_weight if p.stored_weight is not None else 1.0 for p in pairs]
    if scored:
        sp = [ScoredPair(str(k), 0, 1, sw, sl) for k, (sw, sl) in scored]
        for (k, _), w in zip(scored, pair_weights(sp, [s for _, ss in scored for s in ss], config)):
            out[k] = w
    return out


def scores_from_product_and_gap(score: Any, diff: Any) -> tuple[float, float] | None:
    """Solve s_W·s_L = score, s_W − s_L = diff for the root with s_W = (d + sqrt(d² + 4p)) / 2."""
    if not (is_score(score) and is_score(diff)):
        return None
    disc = float(diff) ** 2 + 4.0 * float(score)
    if disc < 0:
        return None
    s_w = (float(diff) + math.sqrt(disc)) / 2.0
    return s_w, s_w - float(diff)


def resolve_clip_path(clip_path: str, root: Path) -> Path | None:
    """The file under ``root`` that ``clip_path`` names: relative as is, absolute by its longest existing suffix."""
    if not isinstance(clip_path, str) or not clip_path:
        return None
    pure = PureWindowsPath(clip_path) if ("\\" in clip_path and "/" not in clip_path) else PurePosixPath(clip_path)
    parts = [p for p in pure.parts if p not in ("/", "\\") and not p.endswith((":\\", ":"))]
    if ".." in parts:
        return None
    from vidalign.inputs import inside

    for start in range(len(parts)):
        candidate = root.joinpath(*parts[start:])
        if candidate.is_file():
            return inside(candidate, root, "video")  # never a symlink out of the source folder
    return None


def _load_list(path: Path) -> list:
    if not path.is_file():
        raise InputError(path, None, "file not found", f"pass the VideoDPO dataset folder holding {METADATA_NAME} "
                         f"and {PAIR_NAME}")
    from vidalign.inputs import read_json

    data = read_json(path, "VideoDPO list", root=path.parent, finite=False)
    if not isinstance(data, list):
        raise InputError(path, None, f"expected a JSON list, got {type(data).__name__}",
                         "pass the file the VideoDPO scripts wrote")
    return data


def _caption(value: Any) -> str | None:
    if isinstance(value, list) and value and isinstance(value[0], str):
        value = value[0]
    return value if isinstance(value, str) and value.strip() else None


def _parse_pair(k: int, item: Any, metadata: list, root: Path, meta_path: Path, pair_path: Path) -> VideoDpoPair:
    if not isinstance(item, dict):
        raise InputError(pair_path, f"[{k}]", f"expected an object, got {type(item).__name__}",
                         'write {"video1", "video2", "label", "frame_caption"}')
    idx = {}
    for fld in ("video1", "video2"):
        v = item.get(fld)
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < len(metadata):
            raise InputError(pair_path, f"[{k}].{fld}", f"{v!r} is not an index into {METADATA_NAME} "
                             f"(0..{len(metadata) - 1})", "point video1/video2 at metadata entries")
        idx[fld] = v
    for fld in ("score", "diff_score"):
        if fld in item and not is_score(item[fld]):
            raise InputError(pair_path, f"[{k}].{fld}", f"{item[fld]!r} is not a finite number",
                             "fix or remove the value, or skip the pair with --on-error skip")
    entries, files = [], []
    for fld in ("video1", "video2"):
        i = idx[fld]
        entry = metadata[i]
        basic = entry.get("basic") if isinstance(entry, dict) else None
        clip = basic.get("clip_path") if isinstance(basic, dict) else None
        if not isinstance(clip, str) or not clip:
            raise InputError(meta_path, f"[{i}].basic.clip_path", f"missing or not a path ({clip!r})",
                             "give every metadata entry basic.clip_path")
        found = resolve_clip_path(clip, root)
        if found is None:
            raise InputError(meta_path, f"[{i}].basic.clip_path", f"{clip!r} matches no file under {root}",
                             f"copy the videos into {root}/{WIN_DIR} and {root}/{LOSE_DIR}")
        entries.append(entry)
        files.append(found)
    misc = entries[0].get("misc")
    prompt = _caption(item.get("frame_caption")) or (_caption(misc.get("frame_caption"))
                                                     if isinstance(misc, dict) else None)
    if prompt is None:
        raise InputError(pair_path, f"[{k}].frame_caption", "missing or empty, and the winner's metadata has none",
                         "give every pair its caption")
    return VideoDpoPair(k, prompt, files[0], files[1], item, entries[0], entries[1])


def read_layout(root: str | Path, on_error: str = "raise") -> tuple[list[VideoDpoPair], list[dict]]:
    """Every pair of a VideoDPO dataset folder, plus ``[{"input", "reason"}]`` for pairs skipped.

    ``on_error="skip"`` drops a bad pair (bad index, missing video, NaN score) and lists it; missing or
    malformed ``metadata.json``/``pair.json`` always raise.
    """
    root = Path(root)
    meta_path, pair_path = root / METADATA_NAME, root / PAIR_NAME
    metadata, pairs = _load_list(meta_path), _load_list(pair_path)
    out, rejected = [], []
    for k, item in enumerate(pairs):
        try:
            out.append(_parse_pair(k, item, metadata, root, meta_path, pair_path))
        except InputError as exc:
            if on_error != "skip":
                raise
            rejected.append({"input": exc.source, "reason": exc.reason})
    if not out:
        raise InputError(pair_path, None, "no usable pairs", "check the folder; see the skipped pairs listed above"
                         if rejected else "the file lists no pairs")
    return out, rejected


# ------------------------------------------------------------------------------------------ writing
def clip_duration(mp4: bytes, source: str = "<mp4>") -> float:
    """Seconds of video from the stream header (frames / fps), without decoding."""
    import io

    import av

    try:
        with av.open(io.BytesIO(mp4)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            frames = stream.frames
            if frames and fps:
                return round(frames / fps, 4)
            if container.duration:
                return round(container.duration / 1e6, 4)
    except (av.FFmpegError, IndexError) as exc:
        raise InputError(source, None, f"video does not open ({exc})", "re-encode it as H.264 mp4") from exc
    return DEFAULT_CLIP_DURATION


def clip_frames(mp4: bytes, source: str = "<mp4>") -> int:
    """Frames of a clip: the stream header's count, else its packets counted (no decoding)."""
    import io

    import av

    try:
        with av.open(io.BytesIO(mp4)) as container:
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            return sum(1 for p in container.demux(stream) if p.size)
    except (av.FFmpegError, IndexError) as exc:
        raise InputError(source, None, f"video does not open ({exc})", "re-encode it as H.264 mp4") from exc


def loader_problem(entry: dict, frames: int, min_frames: int = MIN_CLIP_FRAMES,
                   min_duration: float = MIN_CLIP_DURATION) -> str | None:
    """Why the authors' loader would skip or misread this metadata entry, or None."""
    duration = (entry.get("basic") or {}).get("clip_duration")
    if not is_score(duration) or float(duration) < min_duration:
        return f"clip_duration {duration!r} < {min_duration:g} s"
    if frames < min_frames:
        return f"{frames} frames < {min_frames}"
    return None


def layout_entries(k: int, record: dict, win_path: str, lose_path: str,
                   durations: tuple[float, float]) -> tuple[dict, dict, dict]:
    """Metadata entries (winner, loser) and the pair entry of exported pair ``k``.

    An imported record gets its original entries back with only ``clip_path``, ``video1``/``video2`` changed;
    a native record gets the authors' fields with ``score`` = s_W·s_L and ``diff_score`` = s_W − s_L (``score``
    1.0 and no ``diff_score`` when the pair has no scores).
    """
    vd = record.get("videodpo") if isinstance(record.get("videodpo"), dict) else None
    prompt = record["prompt"]
    if vd and all(isinstance(vd.get(f), str) for f in ("pair_item", "chosen_item", "rejected_item")):
        pair = json.loads(vd["pair_item"])
        win, lose = json.loads(vd["chosen_item"]), json.loads(vd["rejected_item"])
        win.setdefault("basic", {})["clip_path"] = win_path
        lose.setdefault("basic", {})["clip_path"] = lose_path
    else:
        win = {"basic": {"clip_duration": durations[0], "clip_path": win_path, "globalidx": k},
               "misc": {"frame_caption": [prompt]}}
        lose = {"basic": {"clip_duration": durations[1], "clip_path": lose_path, "globalidx": k},
                "misc": {"frame_caption": [prompt]}}
        pair = {"label": 0, "frame_caption": prompt}
        s_w, s_l = record.get(C.CHOSEN_SCORE), record.get(C.REJECTED_SCORE)
        if is_score(s_w) and is_score(s_l):
            pair["score"] = float(s_w) * float(s_l)
            pair["diff_score"] = float(s_w) - float(s_l)
        else:  # the authors' loader reads pair["score"] unconditionally; with their alpha = 0 it has no effect
            pair["score"] = 1.0
    if is_score(record.get(C.WEIGHT)):  # ignored by the authors' loader; read back by `vidalign import videodpo`
        pair[C.WEIGHT] = float(record[C.WEIGHT])
    pair["video1"], pair["video2"] = 2 * k, 2 * k + 1
    return win, lose, pair


def write_layout_json(out: str | Path, entries: Iterable[tuple[dict, dict, dict]]) -> tuple[int, int]:
    """Write ``metadata.json`` and ``pair.json`` from (winner, loser, pair) entries; returns (videos, pairs)."""
    out = Path(out)
    metadata, pairs = [], []
    for win, lose, pair in entries:
        if pair["video1"] != len(metadata) or pair["video2"] != len(metadata) + 1:
            raise VidalignError(f"pair entry {len(pairs)} points at {pair['video1']}/{pair['video2']}, expected "
                                f"{len(metadata)}/{len(metadata) + 1}: write entries in pair order")
        metadata += [win, lose]
        pairs.append(pair)
    out.mkdir(parents=True, exist_ok=True)
    (out / METADATA_NAME).write_text(json.dumps(metadata, allow_nan=False), encoding="utf-8")
    (out / PAIR_NAME).write_text(json.dumps(pairs, allow_nan=False), encoding="utf-8")
    return len(metadata), len(pairs)


# ================================================================================================ import / export
@register_builder
class VideoDpoImportBuilder(Builder):
    """``videodpo-import`` (run by ``vidalign import videodpo``): the released layout → a ``pairs`` config."""

    name = "videodpo-import"
    input_args = ("source",)
    description = ("Preference pairs imported from a VideoDPO dataset folder (metadata.json + pair.json + "
                   "winvideos/ + losevideos/); the original entries are kept so `vidalign export videodpo` "
                   "writes them back.")
    license = "cc-by-nc-4.0"
    citation = VIDEODPO_CITATION
    tags = ["videodpo", "preference", "dpo", "text-to-video"]
    task_categories = ["text-to-video"]
    columns = ("prompt.txt", "chosen_score.json", "rejected_score.json", "gap.json", "weight.json")

    @dataclass
    class Args:
        source: str = field(metadata={"help": "VideoDPO dataset folder (metadata.json, pair.json, videos)"})
        check_videos: Literal["header", "decode", "none"] = field(default="header", metadata={
            "help": "refuse broken videos: MP4 structure (fast), also decode the first frame, or no check"})
        split: str = field(default="train", metadata={"help": "split name"})
        weight: Literal["paper", "code", "none"] = field(default="paper", metadata={
            "help": "weight of pairs whose entry has none: paper (beta / sqrt(p(s_W) p(s_L)))^alpha, code "
                    "(0.72 / (s_W s_L))^alpha (the released loader; its configs use alpha 0), or 1; pairs without "
                    "score/diff_score weigh 1"})
        alpha: float = field(default=1.0, metadata={"help": "weight exponent (0 = plain DPO, as the released configs)"})
        beta: float | None = field(default=None, metadata={
            "help": "paper weight's beta (default: probability of the most frequent OmniScore bin)"})
        bin_width: float = field(default=0.01, metadata={"help": "OmniScore histogram bin width"})

        def __post_init__(self):
            require(self.check_videos in VIDEO_CHECKS, "videodpo-import", "check_videos", self.check_videos,
                    f"use one of {', '.join(VIDEO_CHECKS)}")
            self.weight_config()

        def weight_config(self) -> WeightConfig:
            return WeightConfig(formula=self.weight, alpha=self.alpha, beta=self.beta, bin_width=self.bin_width)

    def _read(self, for_card: bool = False) -> tuple[list[VideoDpoPair], list[dict]]:
        def read():
            pairs, rejected = read_layout(self.args.source, self.on_error)
            return pairs, rejected, layout_weights(pairs, self.args.weight_config())

        pairs, rejected, _ = cached_state(self, read, for_card)
        return pairs, rejected

    def plan(self):
        pairs, rejected = self._read()
        weights = self._state[2]
        sizes = [p.chosen.stat().st_size + p.rejected.stat().st_size for p in pairs]
        self._sample_mb = max(sum(sizes) / len(sizes) / 1e6, 1e-3)
        items = []
        for p, w in zip(pairs, weights):
            record = p.record(w)
            record.update(chosen_seed=None, rejected_seed=None)
            items.append({"videos": {"chosen.mp4": _file_ref(p.chosen), "rejected.mp4": _file_ref(p.rejected)},
                          "json": record})
        return plan_items(self, "pairs", self.args.split, items, rejected, self.args.check_videos)

    def estimate_sample_mb(self) -> float:
        return getattr(self, "_sample_mb", 1.0)

    def build_shard(self, job):
        yield from materialise(self, job)

    def finalize(self, folder: Path, manifest: dict) -> None:
        pairs, _ = self._read(for_card=True)
        scores = [s for p in pairs if p.scores for s in p.scores]
        if not scores:
            return
        previews = Path(folder) / PREVIEWS_DIR
        previews.mkdir(parents=True, exist_ok=True)
        (previews / "videodpo_scores.png").write_bytes(score_histogram_png(scores, "OmniScore"))
        (previews / "videodpo_gaps.png").write_bytes(
            gap_histogram_png([p.scores[0] - p.scores[1] for p in pairs if p.scores], "OmniScore"))

    def card_body(self, manifest: dict, folder: Path) -> str:
        pairs, rejected = self._read(for_card=True)
        lines = ["## Imported from VideoDPO", "", f"{len(pairs)} pairs from `{self.args.source}`"
                 f"{f', {len(rejected)} skipped' if rejected else ''}. OmniScores are recovered from "
                 "`score` = s_W·s_L and `diff_score` = s_W − s_L where the pair file has them. Each pair's loss "
                 f"weight (`weight`) is the one its entry carries, else the {self.args.weight} re-weighting "
                 f"(alpha {self.args.alpha:g}) of its scores, else 1.", ""]
        if (Path(folder) / PREVIEWS_DIR / "videodpo_scores.png").exists():
            lines += [f"![OmniScore distribution]({PREVIEWS_DIR}/videodpo_scores.png) "
                      f"![winner–loser gap]({PREVIEWS_DIR}/videodpo_gaps.png)", ""]
        return "\n".join(lines)


def _file_ref(path: Path) -> dict:
    return {"shard": str(path), "offset": 0, "size": path.stat().st_size, "source": str(path)}


def export_layout(folder: str | Path, out: str | Path, config: str = "pairs", split: str = "train",
                  overwrite: bool = False, progress: bool = True, short_clips: str = "refuse",
                  min_frames: int = MIN_CLIP_FRAMES, min_duration: float = MIN_CLIP_DURATION) -> dict:
    """Write a vidalign ``pairs`` config as a VideoDPO dataset folder the authors' trainer reads.

    ``folder``: the dataset anywhere :func:`vidalign.data.stream` reads (a folder, a Hub id, a URL). Pairs keep
    the dataset's shard and key order; ``clip_path`` values are absolute paths of the exported files; each pair
    entry also carries the pair's ``weight`` (ignored by the authors' loader, read back by the import).
    A clip the authors' loader would skip or misread (``clip_duration`` < 1 s or fewer than 16 frames) is refused
    with the pair named, or with ``short_clips="drop"`` its pair is left out and listed in ``dropped``.
    """
    require(short_clips in SHORT_CLIP_MODES, "export videodpo", "short_clips", short_clips,
            f"use one of {', '.join(SHORT_CLIP_MODES)}")
    from tqdm.auto import tqdm

    from vidalign.data import stream

    out = Path(out).resolve()
    if (out / METADATA_NAME).exists() and not overwrite:
        raise VidalignError(f"{out}: a VideoDPO layout is already there; pass --overwrite or another folder")
    pairs_in = stream(folder, config, split, members=["json", *C.PAIR_VIDEOS], rank=0, world_size=1)
    (out / WIN_DIR).mkdir(parents=True, exist_ok=True)
    (out / LOSE_DIR).mkdir(parents=True, exist_ok=True)
    entries, dropped, k = [], [], 0
    for s in tqdm(pairs_in, desc="export videodpo", unit="pair", disable=not progress):
        url = s["__url__"]
        missing = [m for m in ("json", "chosen.mp4", "rejected.mp4") if m not in s]
        if missing:
            raise InputError(f"{url}:{s['__key__']}", missing[0], "member missing",
                             "export a pairs config (members chosen.mp4, rejected.mp4, json)")
        record = s["json"]
        if not isinstance(record.get("prompt"), str):
            raise InputError(f"{url}:{s['__key__']}", "json.prompt", "missing", "pairs need a prompt")
        win, lose = out / WIN_DIR / f"{k:06d}.mp4", out / LOSE_DIR / f"{k:06d}.mp4"
        where = f"{url}:{s['__key__']}"
        imported = isinstance(record.get("videodpo"), dict)
        durations = (DEFAULT_CLIP_DURATION, DEFAULT_CLIP_DURATION) if imported else (
            clip_duration(s["chosen.mp4"], where), clip_duration(s["rejected.mp4"], where))
        entry = layout_entries(k, record, str(win), str(lose), durations)
        problems = [(m, p) for m, e in (("chosen.mp4", entry[0]), ("rejected.mp4", entry[1]))
                    if (p := loader_problem(e, clip_frames(s[m], f"{where}.{m}"), min_frames, min_duration))]
        if problems:
            member, why = problems[0]
            if short_clips == "refuse":
                raise InputError(where, member, f"{why}: the VideoDPO loader (data/video_data.py) would skip "
                                 "it and pair every later winner with the wrong loser",
                                 "export with --short-clips drop to leave such pairs out, or regenerate "
                                 "longer clips")
            dropped.append({"input": where, "reason": f"{member}: {why}"})
            continue
        win.write_bytes(s["chosen.mp4"])
        lose.write_bytes(s["rejected.mp4"])
        entries.append(entry)
        k += 1
    if not entries:
        raise VidalignError(f"{folder}: config {config!r} split {split!r} has no pairs to export"
                            + (f" ({len(dropped)} dropped as too short)" if dropped else ""))
    videos, pairs = write_layout_json(out, entries)
    return {"out": str(out), "pairs": pairs, "videos": videos, "dropped": dropped}
