"""Detection tracks for DSR-Score: Grounding DINO per frame, frame rules, SAM 2 tracking, boxes from masks.

SPEC §1. Grounding DINO (tiny) looks for ``"{animal}. {object}."`` in every frame (box threshold 0.4,
text threshold 0.3). A frame is *valid* when its detections are exactly the two labels {animal, object},
*redundant* with more detections or with two labels that are not {animal, object} (as the authors'
``detection.py`` counts them), *other* (missed) with fewer than two. A video is rejected when more than 16 frames are redundant or fewer
than 20 are valid; otherwise SAM 2 is seeded with the detected boxes at the first run of ≥ 4 consecutive
valid frames and propagated forward and backward, and each frame's boxes are taken from the masks.

The frame rules are pure functions (:func:`frame_kind`, :func:`plan_track`, :func:`track_from_masks`);
the model calls live in :class:`GroundingDinoDetector` and :func:`track_video`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vidalign.errors import VidalignError, require
from vidalign.eval.dsr_score import Track, TrackFrame
from vidalign.eval.segment import Seed, Segmenter, masks_to_boxes, resolve_device_dtype

DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-tiny"
VALID, REDUNDANT, OTHER = "valid", "redundant", "other"


@dataclass(frozen=True)
class DetectionRules:
    """Thresholds of the authors' run_detection.sh."""

    box_threshold: float = 0.4
    text_threshold: float = 0.3
    max_redundant: int = 16
    min_valid: int = 20
    seed_run: int = 4

    def __post_init__(self) -> None:
        for name in ("box_threshold", "text_threshold"):
            v = getattr(self, name)
            require(0.0 <= v <= 1.0, "DetectionRules", name, v, "use a probability in [0, 1]")
        for name in ("max_redundant", "min_valid", "seed_run"):
            v = getattr(self, name)
            require(isinstance(v, int) and v >= 0, "DetectionRules", name, v, "use a non-negative integer")
        require(self.seed_run >= 1, "DetectionRules", "seed_run", self.seed_run, "use at least 1 frame")


@dataclass(frozen=True)
class FrameDetections:
    """Grounding DINO's kept detections of one frame (labels as decoded phrases, xyxy pixel boxes)."""

    labels: tuple[str, ...]
    boxes: tuple[tuple[float, float, float, float], ...]
    scores: tuple[float, ...] = ()


@dataclass(frozen=True)
class TrackPlan:
    """Whether a video is tracked, why not, and where SAM 2 is seeded with which (animal, object) boxes."""

    accepted: bool
    reason: str
    seed_frame: int | None = None
    seed_boxes: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    valid: int = 0
    redundant: int = 0


def _norm(label: str) -> str:
    return " ".join(label.lower().split())


def detection_text(animal: str, obj: str) -> str:
    """Grounding DINO's query, lower-case with each phrase ending in a period."""
    return f"{_norm(animal)}. {_norm(obj)}."


def frame_kind(det: FrameDetections, animal: str, obj: str) -> str:
    """``valid`` (the labels are exactly {animal, object}), ``redundant`` (more than two detections, or two
    that are not {animal, object}, e.g. two animals) or ``other`` (fewer than two: a miss).

    As ``detection.py``: ``sorted(ref_labels) == sorted(class_names)`` is valid, any other pair redundant.
    """
    labels = [_norm(x) for x in det.labels]
    if len(labels) < 2:
        return OTHER
    if len(labels) == 2 and sorted(labels) == sorted([_norm(animal), _norm(obj)]):
        return VALID
    return REDUNDANT


def find_seed_frame(kinds: Sequence[str], run: int = 4) -> int | None:
    """First frame of the first run of ``run`` consecutive valid frames."""
    count = 0
    for i, k in enumerate(kinds):
        count = count + 1 if k == VALID else 0
        if count == run:
            return i - run + 1
    return None


def plan_track(dets: Sequence[FrameDetections], animal: str, obj: str,
               rules: DetectionRules = DetectionRules()) -> TrackPlan:
    """Apply SPEC §1's frame rules to per-frame detections."""
    kinds = [frame_kind(d, animal, obj) for d in dets]
    valid, redundant = kinds.count(VALID), kinds.count(REDUNDANT)
    if redundant > rules.max_redundant:
        return TrackPlan(False, f"{redundant} redundant frames > {rules.max_redundant}", None, None, valid, redundant)
    if valid < rules.min_valid:
        return TrackPlan(False, f"{valid} valid frames < {rules.min_valid}", None, None, valid, redundant)
    seed = find_seed_frame(kinds, rules.seed_run)
    if seed is None:
        return TrackPlan(False, f"no run of {rules.seed_run} consecutive valid frames", None, None, valid, redundant)
    d = dets[seed]
    labels = [_norm(x) for x in d.labels]
    boxes = (tuple(map(float, d.boxes[labels.index(_norm(animal))])), tuple(map(float, d.boxes[labels.index(_norm(obj))])))
    return TrackPlan(True, "", seed, boxes, valid, redundant)


def track_from_masks(masks: np.ndarray, animal: str, obj: str, video: str, prompt_id: str) -> Track:
    """A :class:`Track` whose per-frame boxes come from the (animal, object) masks ``[T, 2, H, W]``;
    an object with an empty mask is left out of that frame."""
    frames = []
    for i, m in enumerate(np.asarray(masks, dtype=bool)):
        labels, boxes = [], []
        for name, box in zip((animal, obj), masks_to_boxes(m)):
            if box is not None:
                labels.append(name)
                boxes.append(tuple(box))
        frames.append(TrackFrame(i, tuple(labels), tuple(boxes)))
    return Track(video, prompt_id, tuple(frames))


class GroundingDinoDetector:
    """Grounding DINO through transformers (``GroundingDinoForObjectDetection`` + its processor)."""

    def __init__(self, model: str = DEFAULT_DETECTOR, rules: DetectionRules = DetectionRules(),
                 device: str = "auto", dtype: str = "float32", batch_size: int = 8):
        from transformers import AutoProcessor, GroundingDinoForObjectDetection

        require(batch_size > 0, "GroundingDinoDetector", "batch_size", batch_size, "use a positive number of frames")
        self.rules, self.batch_size = rules, batch_size
        self.device, self.dtype = resolve_device_dtype(device, dtype)
        try:
            self.processor = AutoProcessor.from_pretrained(model)
            self.model = GroundingDinoForObjectDetection.from_pretrained(model, dtype=self.dtype)
        except (OSError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise VidalignError(f"cannot load Grounding DINO {model!r} ({first}); pass --detector with a Hub id "
                                f"(default {DEFAULT_DETECTOR}) or a local folder with model and processor") from None
        self.model = self.model.to(self.device).eval()

    def detect(self, frames: np.ndarray, text: str) -> list[FrameDetections]:
        """Detections of ``text`` in every frame of uint8 ``[T, H, W, 3]``, ``batch_size`` frames at a time."""
        import torch

        out: list[FrameDetections] = []
        h, w = frames.shape[1:3]
        for start in range(0, len(frames), self.batch_size):
            chunk = [np.ascontiguousarray(f) for f in frames[start:start + self.batch_size]]
            inputs = self.processor(images=chunk, text=[text] * len(chunk), return_tensors="pt")
            inputs = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
                      for k, v in inputs.items()}
            with torch.inference_mode():
                outputs = self.model(**inputs)
            outputs.logits, outputs.pred_boxes = outputs.logits.float(), outputs.pred_boxes.float()
            results = self.processor.post_process_grounded_object_detection(
                outputs, inputs["input_ids"], threshold=self.rules.box_threshold,
                text_threshold=self.rules.text_threshold, target_sizes=[(h, w)] * len(chunk))
            for r in results:
                labels = r["text_labels"] if "text_labels" in r else r["labels"]
                out.append(FrameDetections(tuple(str(x) for x in labels),
                                           tuple(tuple(float(v) for v in b) for b in r["boxes"].cpu().tolist()),
                                           tuple(float(s) for s in r["scores"].cpu().tolist())))
        return out


def track_video(frames: np.ndarray, animal: str, obj: str, detector: GroundingDinoDetector, segmenter: Segmenter,
                video: str, prompt_id: str, rules: DetectionRules | None = None) -> Track:
    """Detect, check the frame rules, track with SAM 2 from the seed frame both ways; rejected → no frames."""
    rules = rules or detector.rules
    dets = detector.detect(frames, detection_text(animal, obj))
    plan = plan_track(dets, animal, obj, rules)
    if not plan.accepted:
        return Track(video, prompt_id, (), rejected=plan.reason)
    masks = segmenter.segment(frames, Seed(frame=plan.seed_frame, boxes=np.asarray(plan.seed_boxes, np.float32)))
    return track_from_masks(masks, animal, obj, video, prompt_id)
