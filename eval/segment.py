"""Video object segmentation with SAM 2, seeded on one frame and propagated through the clip.

Both evaluations need masks of generated videos: PisaBench seeds SAM 2 (hiera-L) on frame 0 with the GT
masks (simulated clips) or the GT points (real clips); DSR tracking seeds it with Grounding DINO boxes on
the first stable frame and propagates forward *and* backward. Backends are picked by name:

- ``sam2-transformers`` (default): transformers' ``Sam2VideoModel``, loaded with ``from_pretrained`` from a
  Hub id (``facebook/sam2.1-hiera-large``) or a local folder. Frames are prepared the way
  ``Sam2VideoProcessor`` prepares them (antialiased bilinear resize to the model's square input, /255, ImageNet mean/std;
  prompts scaled to that square; mask prompts resized and thresholded at 0.5), done here in torch because
  transformers' SAM 2 processors import torchvision, which vidalign does not depend on.
- ``sam2``: Meta's ``sam2`` package (``pip install 'vidalign[sam2]'``), the authors' own code path.

Output: bool masks ``[V, N, H, W]`` (frames, objects) at the video's resolution.
"""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidalign.errors import ConfigError, VidalignError, missing_extra, require

DEFAULT_MODEL = "facebook/sam2.1-hiera-large"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Seed:
    """Prompts for the objects on one frame: exactly one of points, boxes or masks.

    ``points[i]`` is ``{"positive": [[x, y], ...], "negative": [[x, y], ...]}`` (PisaBench's clip_info
    layout), ``boxes`` is ``[N, 4]`` xyxy pixels, ``masks`` is bool ``[N, H, W]``.
    """

    frame: int = 0
    points: tuple[dict, ...] | None = None
    boxes: np.ndarray | None = None
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        given = [k for k in ("points", "boxes", "masks") if getattr(self, k) is not None]
        require(len(given) == 1, "Seed", "prompts", given, "give exactly one of points, boxes or masks")
        require(isinstance(self.frame, int) and self.frame >= 0, "Seed", "frame", self.frame, "use a frame index >= 0")
        if self.boxes is not None:
            b = np.asarray(self.boxes)
            require(b.ndim == 2 and b.shape[1] == 4 and len(b) > 0, "Seed", "boxes", b.shape, "give [N, 4] xyxy boxes")
        if self.masks is not None:
            m = np.asarray(self.masks)
            require(m.ndim == 3 and len(m) > 0, "Seed", "masks", m.shape, "give bool masks [N, H, W]")
        if self.points is not None:
            require(len(self.points) > 0 and all(p.get("positive") for p in self.points), "Seed", "points",
                    self.points, "give every object at least one positive point")

    @property
    def num_objects(self) -> int:
        if self.points is not None:
            return len(self.points)
        return len(self.boxes) if self.boxes is not None else len(self.masks)

    def point_arrays(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(coords [P, 2] xy, labels [P])`` of object ``i`` (1 positive, 0 negative)."""
        pos = [list(map(float, xy)) for xy in self.points[i].get("positive") or []]
        neg = [list(map(float, xy)) for xy in self.points[i].get("negative") or []]
        coords = np.asarray(pos + neg, dtype=np.float32).reshape(-1, 2)
        labels = np.asarray([1] * len(pos) + [0] * len(neg), dtype=np.int32)
        return coords, labels


@dataclass(frozen=True)
class SegmenterConfig:
    """Which segmenter runs where; ``dtype="auto"`` is bf16 on a GPU and fp32 on the CPU."""

    backend: str = "sam2-transformers"
    model: str = DEFAULT_MODEL
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 16
    progress: bool = True

    def __post_init__(self) -> None:
        require(self.backend in SEGMENTERS, "SegmenterConfig", "backend", self.backend,
                f"use one of {', '.join(sorted(SEGMENTERS))}")
        require(self.dtype in ("auto", "float32", "bfloat16", "float16"), "SegmenterConfig", "dtype", self.dtype,
                "use auto, float32, bfloat16 or float16")
        require(isinstance(self.batch_size, int) and self.batch_size > 0, "SegmenterConfig", "batch_size",
                self.batch_size, "use a positive number of frames")
        require(bool(self.model), "SegmenterConfig", "model", self.model, "give a Hub id or a local checkpoint path")


def resolve_device_dtype(device: str, dtype: str):
    """``(torch.device, torch.dtype)``: CUDA and bf16 when present, unless set explicitly."""
    import torch

    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    if dtype == "auto":
        return dev, (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    return dev, getattr(torch, dtype)


def check_video(frames: np.ndarray, seed: Seed, source: str = "video") -> np.ndarray:
    """Validate ``frames`` uint8 ``[T, H, W, 3]`` against the seed (frame inside, mask size)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise VidalignError(f"{source}: frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if seed.frame >= len(frames):
        raise VidalignError(f"{source}: seed frame {seed.frame} is outside the video's {len(frames)} frames")
    if seed.masks is not None and np.asarray(seed.masks).shape[1:] != frames.shape[1:3]:
        raise VidalignError(f"{source}: seed masks are {np.asarray(seed.masks).shape[1:]} but frames are "
                            f"{frames.shape[1:3]}; resize the video to the mask resolution first")
    return frames


class Segmenter(ABC):
    """Seed objects on one frame, propagate through the video, return bool masks ``[V, N, H, W]``."""

    def __init__(self, config: SegmenterConfig):
        self.config = config

    @abstractmethod
    def segment(self, frames: np.ndarray, seed: Seed) -> np.ndarray:
        """Masks of ``seed``'s objects in every frame (forward from the seed frame, then backward)."""

    def _bar(self, frames: int):
        """Per-frame progress bar, shown on a terminal when ``config.progress`` is set."""
        import sys

        from tqdm.auto import tqdm

        # the seed frame is visited twice when propagating both ways
        return tqdm(total=frames + 1, desc="sam2", unit="frame", leave=False,
                    disable=not (self.config.progress and sys.stderr.isatty()))


SEGMENTERS: dict[str, Callable[[SegmenterConfig], Segmenter]] = {}


def register_segmenter(name: str):
    """Class decorator adding a backend to :data:`SEGMENTERS`."""

    def deco(cls):
        SEGMENTERS[name] = cls
        return cls

    return deco


def build_segmenter(config: SegmenterConfig | None = None, **overrides) -> Segmenter:
    """The configured segmenter (``overrides`` are :class:`SegmenterConfig` fields)."""
    config = config or SegmenterConfig(**overrides)
    return SEGMENTERS[config.backend](config)


def _load_error(model: str, exc: Exception) -> VidalignError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return VidalignError(f"cannot load SAM 2 checkpoint {model!r} ({first}); pass --model with a Hub id "
                         "(e.g. facebook/sam2.1-hiera-large) or a local folder saved with save_pretrained")


@register_segmenter("sam2-transformers")
class TransformersSam2(Segmenter):
    """SAM 2 through ``transformers.Sam2VideoModel``."""

    def __init__(self, config: SegmenterConfig):
        super().__init__(config)
        import torch
        from transformers import Sam2VideoModel

        self.device, self.dtype = resolve_device_dtype(config.device, config.dtype)
        try:
            model = Sam2VideoModel.from_pretrained(config.model, dtype=self.dtype)
        except (OSError, ValueError) as exc:
            raise _load_error(config.model, exc) from None
        self.model = model.to(self.device).eval()
        size = self.model.config.image_size
        self.size = int(size if isinstance(size, int) else size[0])
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    def preprocess(self, frames: np.ndarray):
        """``[T, 3, S, S]`` normalised pixel values, prepared ``batch_size`` frames at a time."""
        import torch
        import torch.nn.functional as F

        out = []
        for start in range(0, len(frames), self.config.batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(frames[start:start + self.config.batch_size]))
            x = chunk.to(self.device).permute(0, 3, 1, 2).float() / 255.0
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
            out.append(((x - self._mean) / self._std).to(self.dtype))
        return torch.cat(out)

    def _add_inputs(self, session, seed: Seed, height: int, width: int) -> None:
        import torch
        import torch.nn.functional as F

        scale = torch.tensor([self.size / width, self.size / height])
        ids = list(range(seed.num_objects))
        for obj_id in ids:
            idx = session.obj_id_to_idx(obj_id)
            if seed.masks is not None:
                m = torch.from_numpy(np.asarray(seed.masks[obj_id], dtype=np.float32))[None, None]
                if m.shape[-2:] != (self.size, self.size):
                    m = F.interpolate(m, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                      antialias=True)
                    m = (m >= 0.5).float()
                session.add_mask_inputs(idx, seed.frame, m)
                continue
            if seed.boxes is not None:
                coords = torch.tensor(np.asarray(seed.boxes[obj_id], dtype=np.float32)).view(2, 2)
                labels = torch.tensor([2, 3], dtype=torch.int32)
            else:
                c, lab = seed.point_arrays(obj_id)
                coords, labels = torch.from_numpy(c), torch.from_numpy(lab)
            session.add_point_inputs(idx, seed.frame, {"point_coords": (coords * scale).view(1, 1, -1, 2),
                                                       "point_labels": labels.view(1, 1, -1)})
        session.obj_with_new_inputs = ids

    def segment(self, frames: np.ndarray, seed: Seed) -> np.ndarray:
        import torch
        import torch.nn.functional as F
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        frames = check_video(frames, seed)
        t, h, w, _ = frames.shape
        out = np.zeros((t, seed.num_objects, h, w), dtype=bool)
        bar = self._bar(t)
        with torch.inference_mode(), bar:
            session = Sam2VideoInferenceSession(
                video=self.preprocess(frames), video_height=h, video_width=w, inference_device=self.device,
                inference_state_device=self.device, video_storage_device=self.device, dtype=self.dtype)
            self._add_inputs(session, seed, h, w)
            for reverse in (False, True):
                if reverse and seed.frame == 0:
                    break
                for res in self.model.propagate_in_video_iterator(session, start_frame_idx=seed.frame,
                                                                  reverse=reverse):
                    logits = res.pred_masks.float().reshape(seed.num_objects, 1, *res.pred_masks.shape[-2:])
                    up = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
                    out[res.frame_idx] = (up[:, 0] > 0).cpu().numpy()
                    bar.update(1)
        return out


@register_segmenter("sam2")
class PackageSam2(Segmenter):
    """SAM 2 through Meta's ``sam2`` package (``SAM2VideoPredictor``), as the PISA authors ran it."""

    def __init__(self, config: SegmenterConfig):
        super().__init__(config)
        try:
            from sam2.sam2_video_predictor import SAM2VideoPredictor
        except ImportError:
            raise missing_extra("sam2", "sam2") from None
        self.device, self.dtype = resolve_device_dtype(config.device, config.dtype)
        try:
            self.predictor = SAM2VideoPredictor.from_pretrained(config.model, device=str(self.device))
        except (OSError, ValueError, RuntimeError) as exc:
            raise _load_error(config.model, exc) from None

    def segment(self, frames: np.ndarray, seed: Seed) -> np.ndarray:
        import contextlib

        import torch
        from PIL import Image

        frames = check_video(frames, seed)
        t, h, w, _ = frames.shape
        out = np.zeros((t, seed.num_objects, h, w), dtype=bool)
        autocast = (torch.autocast("cuda", dtype=self.dtype) if self.device.type == "cuda"
                    else contextlib.nullcontext())
        bar = self._bar(t)
        with tempfile.TemporaryDirectory() as tmp, torch.inference_mode(), autocast, bar:
            for i, frame in enumerate(frames):  # the predictor reads a folder of JPEG frames
                Image.fromarray(frame).save(Path(tmp) / f"{i:05d}.jpg", quality=95)
            state = self.predictor.init_state(video_path=tmp)
            for obj_id in range(seed.num_objects):
                if seed.masks is not None:
                    self.predictor.add_new_mask(state, seed.frame, obj_id, np.asarray(seed.masks[obj_id], bool))
                elif seed.boxes is not None:
                    self.predictor.add_new_points_or_box(state, seed.frame, obj_id,
                                                         box=np.asarray(seed.boxes[obj_id], np.float32))
                else:
                    coords, labels = seed.point_arrays(obj_id)
                    self.predictor.add_new_points_or_box(state, seed.frame, obj_id, points=coords, labels=labels)
            for reverse in (False, True):
                if reverse and seed.frame == 0:
                    break
                for fi, obj_ids, logits in self.predictor.propagate_in_video(state, start_frame_idx=seed.frame,
                                                                             reverse=reverse):
                    for j, obj_id in enumerate(obj_ids):
                        out[fi, obj_id] = (logits[j, 0] > 0).cpu().numpy()
                    bar.update(1)
        return out


def masks_to_boxes(masks: np.ndarray) -> tuple[list[list[float] | None], ...]:
    """xyxy box of each bool mask ``[N, H, W]`` (inclusive pixel extents, as ``supervision`` computes them);
    ``None`` for an empty mask."""
    boxes = []
    for m in np.asarray(masks, dtype=bool):
        ys, xs = np.nonzero(m)
        boxes.append(None if len(xs) == 0 else [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())])
    return tuple(boxes)


def parse_backend(name: str) -> str:
    """Validate a backend name from the command line."""
    if name not in SEGMENTERS:
        raise ConfigError(f"--segmenter {name!r} is unknown; use one of {', '.join(sorted(SEGMENTERS))}")
    return name


def seed_from_clip(mask: np.ndarray, points: Sequence[dict] | None) -> Seed:
    """PisaBench's frame-0 seed: GT points for real clips (``clip_info.json`` has them), else GT masks."""
    if points:
        return Seed(frame=0, points=tuple(points))
    return Seed(frame=0, masks=np.asarray(mask[0], dtype=bool))
