"""PisaBench metrics (PISA): where a dropping object is, versus where it should be.

SPEC §3. Only the dropping object is scored: the **last** object of a simulated clip, or for a real clip
(``clip_info.json`` has ``points``) the object whose positive point is highest in the image (smallest y).
Predicted frame k is compared with ground-truth frame ``int(k · gt_fps / pd_fps)`` while that lies in the
GT. Per video: L2 between mask centroids (per coordinate), Chamfer distance between mask pixels (KD-tree)
and IoU, all normalised by ``1/(√2·H)``; the dataset score is the NaN-mean over videos.

Folders: a PisaBench folder is a directory of clip folders, each with ``mask.npz`` (key ``mask``, bool
``[V, N, H, W]``: frames, objects) and ``clip_info.json``; a vidalign shard folder holds ``data/**.tar``
with ``<key>.mask.npz`` (+ ``<key>.json``) members, read with :mod:`tarfile` and guarded member names.
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
    """``(pred_indices, gt_indices)``: pred frame k ↔ GT frame ``int(k·gt_fps/pd_fps)``, kept inside the GT."""
    if gt_fps <= 0 or pd_fps <= 0:
        raise VidalignError(f"frame rates must be positive (gt_fps={gt_fps}, pd_fps={pd_fps}); pass --gt-fps/--pd-fps")
    pred, gt = [], []
    for k in range(n_pred):
        g = int(k * gt_fps / pd_fps)
        if g < n_gt:
            pred.append(k)
            gt.append(g)
    return np.asarray(pred, dtype=np.int64), np.asarray(gt, dtype=np.int64)


def dropping_object(num_objects: int, points: Sequence[Mapping] | None = None) -> int:
    """Index of the dropping object: the last one, or with ``points`` the one whose positive point is highest."""
    if not points:
        return num_objects - 1
    best, best_y = 0, math.inf
    for i, p in enumerate(points):
        ys = [float(xy[1]) for xy in (p.get("positive") or [])]
        if ys and min(ys) < best_y:
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


# ----------------------------------------------------------------------------------------------- readers
@dataclass(frozen=True)
class Clip:
    """One benchmark or generated clip: masks ``[V, N, H, W]`` (frames, objects) and its clip info."""

    name: str
    mask: np.ndarray
    info: dict = field(default_factory=dict)
    source: str = ""

    @property
    def target(self) -> int:
        """Index of the dropping object."""
        return dropping_object(self.mask.shape[1], self.info.get("points"))


def check_mask(mask, source: str) -> np.ndarray:
    """A bool ``[V, N, H, W]`` array or a one-line error naming ``source``."""
    mask = np.asarray(mask)
    if mask.ndim != 4:
        raise InputError(source, "mask", f"has rank {mask.ndim} (shape {mask.shape}); expected bool [V, N, H, W]",
                         "store frames, objects, height, width (add an object axis for a single object)")
    if mask.shape[1] == 0 or mask.shape[0] == 0:
        raise InputError(source, "mask", f"shape {mask.shape} has no frames or no objects", "store at least one")
    if mask.dtype != bool:
        if not np.issubdtype(mask.dtype, np.integer) or mask.min() < 0 or mask.max() > 1:
            raise InputError(source, "mask", f"dtype {mask.dtype} is not boolean", "store mask.astype(bool)")
        mask = mask.astype(bool)
    return mask


def _load_npz_mask(data: bytes | Path, source: str) -> np.ndarray:
    try:
        with np.load(io.BytesIO(data) if isinstance(data, bytes) else data, allow_pickle=False) as z:
            if "mask" not in z.files:
                raise InputError(source, "mask", f"key missing (keys: {', '.join(z.files) or 'none'})",
                                 "save with np.savez_compressed(path, mask=masks)")
            return check_mask(z["mask"], source)
    except (ValueError, OSError) as exc:
        raise InputError(source, None, f"cannot be read as .npz ({exc})", "write it with np.savez_compressed") from None


def _read_info(path: Path) -> dict:
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
        info = _read_info(info_path)
    elif require_info:
        raise InputError(folder, "clip_info.json", "file missing", "copy it from the PisaBench download")
    else:
        info = {}
    return Clip(folder.name, _load_npz_mask(mask_path, str(mask_path)), info, str(folder))


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
            masks[key] = (_load_npz_mask(data, where), where)
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


def select_object(gt: Clip, pred: Clip) -> tuple[np.ndarray, np.ndarray]:
    """The dropping object's masks ``[T, H, W]`` of both clips (a one-object prediction is used as is)."""
    idx = gt.target
    n_gt, n_pd = gt.mask.shape[1], pred.mask.shape[1]
    if n_pd == n_gt:
        return gt.mask[:, idx], pred.mask[:, idx]
    if n_pd == 1:
        return gt.mask[:, idx], pred.mask[:, 0]
    raise InputError(pred.source, "mask", f"has {n_pd} objects but the GT clip {gt.name!r} has {n_gt}",
                     "seed the segmenter with every GT object, or with the dropping object only")


def evaluate(gt: Sequence[Clip], pred: Sequence[Clip], gt_fps: float = 16.0, pd_fps: float = 16.0,
             gt_root: str = "GT", pred_root: str = "prediction", progress: bool = False) -> dict:
    """``{"mean": {l2, chamfer, iou}, "videos": [{name, l2, chamfer, iou}]}`` over matched clips."""
    from tqdm.auto import tqdm

    rows = []
    pairs = pair_clips(gt, pred, gt_root, pred_root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for g, p in tqdm(pairs, desc="pisabench", disable=not progress, unit="video"):
            a, b = select_object(g, p)
            rows.append({"name": g.name, **video_metrics(a, b, gt_fps, pd_fps)})
    return {"mean": dataset_mean(rows), "videos": rows}
