"""PisaBench metrics (PISA): where a dropping object is, versus where it should be.

Scored as the authors' ``eval.py`` / ``utils/metrics.py`` score it (vision-x-nyu/pisa-experiments):

- Frame alignment: predicted frame k ↔ GT frame ``int(k * (gt_fps / pd_fps))`` (the ratio first, as their
  expression), kept while inside the GT; the prediction is then cut to the aligned length.
- Masks of rank 3 are one object, ``[T, H, W]`` (their ``generate_mask.py`` saves one-object clips squeezed);
  rank 4 is ``[T, N, H, W]``.
- Only the dropping object is scored: with an annotation (a real clip's ``clip_info.json`` with ``points``) the
  object whose positive points reach the smallest y (the first on ties), otherwise the **last** object; the
  prediction is indexed with the same index.
- Per video: L2 between mask centroids (per coordinate), Chamfer distance between mask pixels and IoU, normalised
  by ``1/(√2·H)``; the dataset score is the NaN-mean over the videos scored.
- A video their script would drop (it raises: missing file, too few objects in the prediction, sizes that differ,
  an annotation without points) is dropped here too, but reported and counted (:class:`Dropped`), never silently.

Inputs: the authors' metrics config (JSONL, one ``{gt_mask, gt_fps, [gt_annotation], pd_mask, pd_fps}`` per
video, :mod:`vidalign.eval.pisa_config`), or two folders paired by clip name: a PisaBench folder is a directory of
clip folders, each with ``mask.npz`` (key ``mask``) and ``clip_info.json``; a vidalign shard folder holds
``data/**.tar`` with ``<key>.mask.npz`` (+ ``<key>.json``) members, read with :mod:`tarfile` and guarded member
names.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidalign.errors import InputError, VidalignError
from vidalign.format import DATA_DIR, safe_member_path, split_member

INV_SQRT2 = 1.0 / math.sqrt(2.0)
METRICS = ("l2", "chamfer", "iou")


# ----------------------------------------------------------------------------------------------- alignment
def align_frames(n_pred: int, n_gt: int, gt_fps: float = 16.0, pd_fps: float = 16.0) -> tuple[np.ndarray, np.ndarray]:
    """``(pred_indices, gt_indices)``: pred frame k ↔ GT frame ``int(k * (gt_fps / pd_fps))``, kept inside the GT.

    The ratio is computed first, as in the authors' ``eval.py``: ``int(11 * 59.94 / 29.97)`` is 21 but
    ``int(11 * (59.94 / 29.97))`` is 22, and the latter is what PisaBench scores.
    """
    if not (gt_fps > 0 and pd_fps > 0):
        raise VidalignError(f"frame rates must be positive (gt_fps={gt_fps}, pd_fps={pd_fps}); pass --gt-fps/--pd-fps")
    ratio = gt_fps / pd_fps
    pred, gt = [], []
    for k in range(n_pred):
        g = int(k * ratio)
        if g < n_gt:
            pred.append(k)
            gt.append(g)
    return np.asarray(pred, dtype=np.int64), np.asarray(gt, dtype=np.int64)


def dropping_object(num_objects: int, points: Sequence[Mapping] | None = None, source: str = "clip_info.json") -> int:
    """Index of the dropping object: the last one, or with ``points`` the one whose positive points reach the
    smallest y (the first on ties), as ``get_dropping_obj_index`` in the authors' ``eval.py``.

    Points the authors' code could not read (no ``positive`` list, an empty one) raise :class:`InputError`.
    """
    if points is None:
        return num_objects - 1
    if not isinstance(points, Sequence) or isinstance(points, str) or not points:
        raise InputError(source, "points", f"expected a non-empty list of {{positive, negative}}, got {points!r}",
                         "annotate every object with positive points")
    best, best_y = 0, 10000.0  # the authors' starting minimum
    for i, p in enumerate(points):
        pos = p.get("positive") if isinstance(p, Mapping) else None
        try:
            ys = [float(xy[1]) for xy in pos]
        except (TypeError, IndexError, ValueError):
            ys = []
        if not ys:
            raise InputError(source, f"points[{i}].positive", f"{pos!r} holds no [x, y] point",
                             "give every object at least one positive point")
        if min(ys) < best_y:
            best, best_y = i, min(ys)
    return best


# ----------------------------------------------------------------------------------------------- metrics
def centroids(masks: np.ndarray) -> np.ndarray:
    """``[T, 2]`` (x, y) centroid of each bool mask ``[T, H, W]``; NaN rows for empty masks."""
    masks = np.asarray(masks, dtype=bool)
    t, h, w = masks.shape
    count = masks.sum(axis=(1, 2)).astype(np.float64)
    xs = (masks.sum(axis=1) * np.arange(w)).sum(axis=1)
    ys = (masks.sum(axis=2) * np.arange(h)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.stack([xs / count, ys / count], axis=1)
    out[count == 0] = np.nan
    return out


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or np.all(np.isnan(values)):
        return math.nan
    return float(np.nanmean(values))


def l2_distance(gt: np.ndarray, pred: np.ndarray) -> float:
    """``(1/√2)/H · nanmean_{t,d} |c^A − c^B|`` over aligned bool masks ``[T, H, W]``."""
    diff = np.abs(centroids(gt) - centroids(pred))
    return INV_SQRT2 / gt.shape[1] * _nanmean(diff)


def boundary(masks: np.ndarray) -> np.ndarray:
    """Pixels of bool masks ``[..., H, W]`` with a 4-neighbour outside the mask (image edges count as outside).

    The nearest mask pixel to any point outside the mask is a boundary pixel (from an interior pixel one
    step towards the point stays inside and gets closer), so Chamfer needs only these in its KD-tree.
    """
    m = np.asarray(masks, dtype=bool)
    inner = np.zeros_like(m)
    inner[..., 1:-1, 1:-1] = (m[..., 1:-1, 1:-1] & m[..., :-2, 1:-1] & m[..., 2:, 1:-1]
                              & m[..., 1:-1, :-2] & m[..., 1:-1, 2:])
    return m & ~inner


def _mean_nearest(src: np.ndarray, dst: np.ndarray, dst_boundary: np.ndarray) -> float:
    """``mean_{s∈src} min_{d∈dst} ‖s−d‖``: 0 inside ``dst``, KD-tree on ``dst``'s boundary outside it."""
    from scipy.spatial import cKDTree

    outside = np.argwhere(src & ~dst)
    if len(outside) == 0:
        return 0.0
    dist, _ = cKDTree(np.argwhere(dst_boundary).astype(np.float64)).query(outside.astype(np.float64), k=1)
    return float(dist.sum() / np.count_nonzero(src))


def chamfer_frame(a: np.ndarray, b: np.ndarray, a_boundary: np.ndarray | None = None,
                  b_boundary: np.ndarray | None = None) -> float:
    """Symmetric mean nearest-pixel distance between two bool masks ``[H, W]``; NaN if either is empty."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if not a.any() or not b.any():
        return math.nan
    a_boundary = boundary(a) if a_boundary is None else a_boundary
    b_boundary = boundary(b) if b_boundary is None else b_boundary
    return _mean_nearest(b, a, a_boundary) + _mean_nearest(a, b, b_boundary)


def chamfer_distance(gt: np.ndarray, pred: np.ndarray) -> float:
    """``(1/√2)/H · nanmean_t`` of the per-frame Chamfer distance."""
    gt = np.asarray(gt, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    gb, pb = boundary(gt), boundary(pred)
    both = gt | pred
    rows, cols = both.any(axis=2), both.any(axis=1)
    per_frame = np.full(len(gt), np.nan)
    for t in range(len(gt)):
        r, c = np.flatnonzero(rows[t]), np.flatnonzero(cols[t])
        if len(r) == 0:
            continue
        # distances are translation invariant: work in the bounding box of both masks
        win = (slice(r[0], r[-1] + 1), slice(c[0], c[-1] + 1))
        per_frame[t] = chamfer_frame(gt[t][win], pred[t][win], gb[t][win], pb[t][win])
    return INV_SQRT2 / gt.shape[1] * _nanmean(per_frame)


def iou(gt: np.ndarray, pred: np.ndarray) -> float:
    """``mean_t |A∩B|/|A∪B|`` with 1 when both masks are empty (0 when only one is)."""
    gt = np.asarray(gt, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    inter = np.logical_and(gt, pred).sum(axis=(1, 2)).astype(np.float64)
    union = np.logical_or(gt, pred).sum(axis=(1, 2)).astype(np.float64)
    per_frame = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return float(per_frame.mean()) if per_frame.size else math.nan


def video_metrics(gt: np.ndarray, pred: np.ndarray, gt_fps: float = 16.0, pd_fps: float = 16.0) -> dict[str, float]:
    """``{"l2", "chamfer", "iou"}`` of one object's bool masks ``gt [T_gt, H, W]`` and ``pred [T_pd, H, W]``."""
    gt = np.asarray(gt, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    if gt.ndim != 3 or pred.ndim != 3 or gt.shape[1:] != pred.shape[1:]:
        raise VidalignError(f"masks must be [T, H, W] of the same H, W; got GT {gt.shape} and prediction {pred.shape}; "
                            "resize the generated videos to the benchmark resolution before segmenting")
    pi, gi = align_frames(len(pred), len(gt), gt_fps, pd_fps)
    a, b = gt[gi], pred[pi]
    return {"l2": l2_distance(a, b), "chamfer": chamfer_distance(a, b), "iou": iou(a, b)}


def dataset_mean(videos: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """NaN-mean of each metric over videos."""
    videos = list(videos)
    return {m: _nanmean(np.array([v[m] for v in videos], dtype=np.float64)) for m in METRICS}


# ----------------------------------------------------------------------------------------------- one video
@dataclass(frozen=True)
class Dropped:
    """A video the authors' ``eval.py`` would skip (it raises there): which one and why."""

    name: str
    reason: str
    line: int | None = None  # 1-based line of the metrics config, when scored from one

    def to_json(self) -> dict:
        out = {"name": self.name, "reason": self.reason}
        if self.line is not None:
            out["line"] = self.line
        return out


def as_frames_objects(mask, source: str) -> np.ndarray:
    """Bool ``[T, N, H, W]``: rank 4 as is, rank 3 (one object saved squeezed) as ``[T, 1, H, W]``."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[:, None]
    if mask.ndim != 4:
        raise InputError(source, "mask", f"has rank {mask.ndim} (shape {mask.shape}); expected [T, N, H, W] or, "
                         "for one object, [T, H, W]", "save the masks SAM 2 propagated, frames first")
    if mask.dtype != bool:
        if not (np.issubdtype(mask.dtype, np.integer) or np.issubdtype(mask.dtype, np.floating)) or \
                (mask.size and not np.isin(mask, (0, 1)).all()):
            raise InputError(source, "mask", f"dtype {mask.dtype} with values other than 0/1",
                             "store mask.astype(bool)")
        mask = mask.astype(bool)
    return mask


check_mask = as_frames_objects


def score_video(gt, pred, gt_fps: float = 16.0, pd_fps: float = 16.0, points: Sequence[Mapping] | None = None,
                gt_source: str = "GT", pd_source: str = "prediction", info_source: str = "clip_info.json"
                ) -> dict[str, float]:
    """``{"l2", "chamfer", "iou"}`` of one video, step by step as the authors' ``process_single_video``.

    ``gt`` and ``pred`` are masks ``[T, N, H, W]`` or ``[T, H, W]``; ``points`` (a real clip's annotation) picks the
    dropping object, else it is the last one. Raises :class:`InputError` where their code raises.
    """
    gt = as_frames_objects(gt, gt_source)
    pred = as_frames_objects(pred, pd_source)
    # the last object for simulated clips (their index -1), else the annotated one; the same index for both
    sel = -1 if points is None else dropping_object(gt.shape[1], points, info_source)
    pi, gi = align_frames(len(pred), len(gt), gt_fps, pd_fps)
    gt, pred = gt[gi], pred[: min(len(gi), len(pred))]
    for mask, src in ((gt, gt_source), (pred, pd_source)):
        if not -mask.shape[1] <= sel < mask.shape[1]:
            raise InputError(src, "mask", f"has {mask.shape[1]} object(s) but the dropping object is index {sel}",
                             "segment every annotated object (the authors' eval.py indexes the prediction with the "
                             "GT's index)")
    if gt.shape[2:] != pred.shape[2:]:
        raise InputError(pd_source, "mask", f"is {pred.shape[2]}x{pred.shape[3]} but the GT is {gt.shape[2]}x"
                         f"{gt.shape[3]}", "resize the generated videos to the benchmark resolution before segmenting")
    a, b = gt[:, sel], pred[:, sel]
    return {"l2": l2_distance(a, b), "chamfer": chamfer_distance(a, b), "iou": iou(a, b)}


def summarise(rows: Sequence[Mapping], dropped: Sequence[Dropped]) -> dict:
    """``{"mean", "videos", "dropped"}`` with the NaN-mean over the scored videos."""
    return {"mean": dataset_mean(rows) if rows else {m: math.nan for m in METRICS}, "videos": list(rows),
            "dropped": [d.to_json() for d in dropped]}


# ----------------------------------------------------------------------------------------------- readers
@dataclass(frozen=True)
class Clip:
    """One benchmark or generated clip: masks ``[V, N, H, W]`` (frames, objects) and its clip info."""

    name: str
    mask: np.ndarray
    info: dict = field(default_factory=dict)
    source: str = ""

    @property
    def points(self):
        """The annotation that picks the dropping object (real clips), or ``None`` (the last object)."""
        return self.info.get("points") if "points" in self.info else None

    @property
    def target(self) -> int:
        """Index of the dropping object."""
        return dropping_object(self.mask.shape[1], self.points, f"{self.source}/clip_info.json")


def load_mask_npz(data: bytes | Path, source: str) -> np.ndarray:
    if isinstance(data, Path) and not data.is_file():
        raise InputError(source, None, "mask file not found", "segment the clip first (vidalign segment)")
    try:
        with np.load(io.BytesIO(data) if isinstance(data, bytes) else data, allow_pickle=False) as z:
            if "mask" not in z.files:
                raise InputError(source, "mask", f"key missing (keys: {', '.join(z.files) or 'none'})",
                                 "save with np.savez_compressed(path, mask=masks)")
            return as_frames_objects(z["mask"], source)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(source, None, f"cannot be read as .npz ({exc})", "write it with np.savez_compressed") from None


def read_clip_info(path: Path) -> dict:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(path, None, f"not valid JSON ({exc.msg})", "fix or regenerate clip_info.json") from None
    if not isinstance(info, dict):
        raise InputError(path, None, "expected a JSON object", 'write {"prompt": ..., ["points": [...]]}')
    return info


def read_clip_folder(folder: str | Path, require_info: bool = True) -> Clip:
    """One PisaBench clip folder (``mask.npz`` + ``clip_info.json``)."""
    folder = Path(folder)
    mask_path = folder / "mask.npz"
    if not mask_path.is_file():
        raise InputError(folder, "mask.npz", "file missing", "segment the clip first (vidalign segment)")
    info_path = folder / "clip_info.json"
    if info_path.is_file():
        info = read_clip_info(info_path)
    elif require_info:
        raise InputError(folder, "clip_info.json", "file missing", "copy it from the PisaBench download")
    else:
        info = {}
    return Clip(folder.name, load_mask_npz(mask_path, str(mask_path)), info, str(folder))


def iter_shard_members(root: str | Path) -> Iterable[tuple[str, str, str, bytes]]:
    """``(tar_path, key, member, bytes)`` of every file in ``root/data/**.tar``, with guarded member names."""
    root = Path(root)
    tars = sorted((root / DATA_DIR).rglob("*.tar"))
    if not tars:
        raise InputError(root, DATA_DIR, "no .tar shards found", "pass a vidalign dataset folder")
    for tar_path in tars:
        with tarfile.open(tar_path, mode="r:") as tf:
            for info in tf:
                if not info.isfile():
                    continue
                name = safe_member_path(info.name, str(tar_path))
                key, member = split_member(name)
                fh = tf.extractfile(info)
                if fh is None:
                    continue
                yield str(tar_path), key.rsplit("/", 1)[-1], member, fh.read()


def read_shard_folder(root: str | Path) -> list[Clip]:
    """Clips of a vidalign shard folder: samples with a ``mask.npz`` member (key = clip name)."""
    masks: dict[str, tuple[np.ndarray, str]] = {}
    infos: dict[str, dict] = {}
    for tar_path, key, member, data in iter_shard_members(root):
        where = f"{tar_path}:{key}.{member}"
        if member == "mask.npz":
            if key in masks:
                raise InputError(where, None, "sample key repeats", "merge datasets with unique keys")
            masks[key] = (load_mask_npz(data, where), where)
        elif member == "json":
            try:
                infos[key] = json.loads(data)
            except json.JSONDecodeError as exc:
                raise InputError(where, None, f"not valid JSON ({exc.msg})", "rebuild the shard") from None
    if not masks:
        raise InputError(root, "mask.npz", "no sample has a mask.npz member", "segment the videos first")
    return [Clip(k, m, infos.get(k, {}) if isinstance(infos.get(k), dict) else {}, src)
            for k, (m, src) in sorted(masks.items())]


def read_clips(root: str | Path, require_info: bool = True) -> list[Clip]:
    """Clips of a PisaBench folder (directory of clip folders) or a vidalign shard folder."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, None, "folder not found", "pass a PisaBench folder or a vidalign dataset folder")
    if (root / DATA_DIR).is_dir() and any((root / DATA_DIR).rglob("*.tar")):
        return read_shard_folder(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise InputError(root, None, "holds no clip folders", "pass the folder that contains one folder per clip")
    return [read_clip_folder(p, require_info) for p in folders]


def pair_clips(gt: Sequence[Clip], pred: Sequence[Clip], gt_root: str, pred_root: str) -> list[tuple[Clip, Clip]]:
    """Match clips by name; the two sets must name the same videos."""
    pred_by = {c.name: c for c in pred}
    gt_names = {c.name for c in gt}
    missing = [c.name for c in gt if c.name not in pred_by]
    extra = sorted(set(pred_by) - gt_names)
    if missing or extra:
        raise InputError(pred_root, None, f"has {len(pred)} videos for {len(gt)} in {gt_root} "
                         f"(missing: {missing[:3]}, unexpected: {extra[:3]})",
                         "segment exactly the benchmark's videos, with the same names")
    return [(c, pred_by[c.name]) for c in gt]


def evaluate(gt: Sequence[Clip], pred: Sequence[Clip], gt_fps: float = 16.0, pd_fps: float = 16.0,
             gt_root: str = "GT", pred_root: str = "prediction", progress: bool = False) -> dict:
    """``{"mean", "videos": [{name, l2, chamfer, iou}], "dropped": [{name, reason}]}`` over clips matched by name.

    Each pair is scored by :func:`score_video`; a pair the authors' ``eval.py`` would skip is dropped and listed.
    """
    from tqdm.auto import tqdm

    rows, dropped = [], []
    pairs = pair_clips(gt, pred, gt_root, pred_root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for g, p in tqdm(pairs, desc="pisabench", disable=not progress, unit="video"):
            try:
                m = score_video(g.mask, p.mask, gt_fps, pd_fps, g.points, g.source, p.source,
                                f"{g.source}/clip_info.json")
            except (InputError, VidalignError) as exc:
                dropped.append(Dropped(g.name, str(exc)))
                continue
            rows.append({"name": g.name, **m})
    return summarise(rows, dropped)
