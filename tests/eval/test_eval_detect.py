"""DSR detection tracks: the frame rules on synthetic detections, and the model plumbing on tiny models."""

from __future__ import annotations

import numpy as np
import pytest

from vidalign.errors import ConfigError, VidalignError
from vidalign.eval.detect import (
    OTHER,
    REDUNDANT,
    VALID,
    DetectionRules,
    FrameDetections,
    GroundingDinoDetector,
    detection_text,
    find_seed_frame,
    frame_kind,
    plan_track,
    track_from_masks,
    track_video,
)
from vidalign.eval.dsr_score import dsr_score
from vidalign.eval.segment import build_segmenter

ANIMAL_BOX, OBJ_BOX = (1.0, 2.0, 11.0, 12.0), (20.0, 2.0, 30.0, 12.0)


def _valid(i=0):
    return FrameDetections(("cat", "box"), (ANIMAL_BOX, OBJ_BOX), (0.9, 0.8))


def _swapped():
    return FrameDetections(("Box", "cat"), (OBJ_BOX, ANIMAL_BOX))


def _redundant():
    return FrameDetections(("cat", "box", "cat"), (ANIMAL_BOX, OBJ_BOX, ANIMAL_BOX))


def _other():
    return FrameDetections(("cat",), (ANIMAL_BOX,))


def test_frame_kind():
    assert frame_kind(_valid(), "cat", "box") == VALID
    assert frame_kind(_swapped(), "cat", "box") == VALID
    assert frame_kind(_redundant(), "cat", "box") == REDUNDANT
    assert frame_kind(_other(), "cat", "box") == OTHER
    # detection.py: two labels that are not sorted([animal, object]) count as redundant, fewer than two as a miss
    assert frame_kind(FrameDetections(("cat", "cat"), (ANIMAL_BOX, ANIMAL_BOX)), "cat", "box") == REDUNDANT
    assert frame_kind(FrameDetections(("cat", "dog"), (ANIMAL_BOX, OBJ_BOX)), "cat", "box") == REDUNDANT
    assert frame_kind(FrameDetections((), ()), "cat", "box") == OTHER
    assert detection_text("Cat", "fire  hydrant") == "cat. fire hydrant."


def test_seed_run():
    kinds = [VALID, VALID, VALID, OTHER, VALID, VALID, VALID, VALID, VALID]
    assert find_seed_frame(kinds, 4) == 4
    assert find_seed_frame(kinds, 3) == 0
    assert find_seed_frame([VALID] * 3, 4) is None


def test_plan_track_rules():
    # 20 valid frames, a run of 4 starting at frame 3, exactly 16 redundant frames: accepted
    dets = [_other()] * 3 + [_swapped()] + [_valid()] * 19 + [_redundant()] * 16
    plan = plan_track(dets, "cat", "box")
    assert plan.accepted and plan.seed_frame == 3 and plan.valid == 20 and plan.redundant == 16
    assert plan.seed_boxes == (ANIMAL_BOX, OBJ_BOX)  # (animal, object) whatever the label order
    plan = plan_track(dets + [_redundant()], "cat", "box")
    assert not plan.accepted and "17 redundant" in plan.reason
    two_cats = FrameDetections(("cat", "cat"), (ANIMAL_BOX, ANIMAL_BOX))
    plan = plan_track(dets + [two_cats], "cat", "box")  # a 17th redundant frame made of two mismatched labels
    assert not plan.accepted and "17 redundant" in plan.reason
    plan = plan_track([_valid()] * 19 + [_other()] * 10, "cat", "box")
    assert not plan.accepted and "19 valid" in plan.reason
    alternating = [_valid(), _other()] * 25
    plan = plan_track(alternating, "cat", "box")
    assert not plan.accepted and "consecutive" in plan.reason
    assert plan_track(alternating, "cat", "box", DetectionRules(seed_run=1)).seed_frame == 0
    with pytest.raises(ConfigError, match="box_threshold"):
        DetectionRules(box_threshold=1.5)


def test_track_from_masks_feeds_dsr():
    t, h, w = 24, 32, 64
    masks = np.zeros((t, 2, h, w), dtype=bool)
    masks[:, 1, 10:20, 28:36] = True  # object in the middle
    for i in range(t):  # animal slides from the left edge to the right edge
        x = round(i * (w - 8) / (t - 1))
        masks[i, 0, 10:20, x:x + 8] = True
    masks[5, 0] = False  # a lost frame: only the object is listed
    track = track_from_masks(masks, "cat", "box", "v.mp4", "p1")
    assert track.frames[0].labels == ("cat", "box") and track.frames[0].boxes[0] == (0.0, 10.0, 7.0, 19.0)
    assert track.frames[5].labels == ("box",)
    assert dsr_score(track.frames, "cat", "box", "L", "R") > 0.95


def test_grounding_dino_plumbing(tiny_grounding_dino):
    rules = DetectionRules(box_threshold=0.0, text_threshold=0.0)
    det = GroundingDinoDetector(tiny_grounding_dino, rules, device="cpu", batch_size=2)
    frames = np.random.default_rng(0).integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    out = det.detect(frames, detection_text("cat", "box"))
    assert len(out) == 3
    for d in out:
        assert len(d.labels) == len(d.boxes) == len(d.scores) == 6  # every query passes a 0 threshold
        b = np.asarray(d.boxes)
        assert b.shape == (6, 4) and np.all(b[:, 2] >= b[:, 0]) and np.all(b[:, 3] >= b[:, 1])
    # the box threshold keeps exactly the queries scoring above it
    cut = float(np.median([s for d in out for s in d.scores]))
    strict = GroundingDinoDetector(tiny_grounding_dino, DetectionRules(box_threshold=cut, text_threshold=0.0),
                                   device="cpu")
    kept = strict.detect(frames, "cat. box.")
    assert [len(d.labels) for d in kept] == [sum(s > cut for s in d.scores) for d in out]
    with pytest.raises(VidalignError, match="cannot load Grounding DINO"):
        GroundingDinoDetector("/nonexistent/gd", rules, device="cpu")


class _FakeDetector:
    """Returns scripted detections, so the SAM 2 side of track_video runs on a known seed."""

    def __init__(self, dets):
        self.dets, self.rules, self.texts = dets, DetectionRules(min_valid=4), []

    def detect(self, frames, text):
        self.texts.append(text)
        return self.dets[: len(frames)]


def test_track_video_seeds_at_first_stable_run(tiny_sam2):
    seg = build_segmenter(model=tiny_sam2, device="cpu")
    calls = []
    inner = seg.segment
    seg.segment = lambda frames, seed: calls.append(seed) or inner(frames, seed)
    frames = np.random.default_rng(1).integers(0, 256, (7, 32, 40, 3), dtype=np.uint8)
    det = _FakeDetector([_other(), _valid(), _other(), _valid(), _swapped(), _valid(), _valid()])
    track = track_video(frames, "cat", "box", det, seg, "v.mp4", "p1")
    assert det.texts == ["cat. box."]
    assert calls[0].frame == 3 and np.allclose(calls[0].boxes, [ANIMAL_BOX, OBJ_BOX])
    assert len(track.frames) == 7 and [f.index for f in track.frames] == list(range(7))
    rejected = track_video(frames, "cat", "box", _FakeDetector([_other()] * 7), seg, "w.mp4", "p1")
    assert rejected.frames == () and "valid frames" in rejected.rejected
