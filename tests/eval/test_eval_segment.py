"""SAM 2 segmenter plumbing with a tiny random Sam2VideoModel: shapes, seeding, propagation order."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from vidalign.errors import ConfigError, VidalignError
from vidalign.eval.segment import (
    Seed,
    SegmenterConfig,
    build_segmenter,
    masks_to_boxes,
    seed_from_clip,
)


def _video(t=5, h=40, w=48, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def _masks(h=40, w=48):
    m = np.zeros((2, h, w), dtype=bool)
    m[0, 4:20, 6:22] = True
    m[1, 24:38, 28:46] = True
    return m


def _record_order(segmenter):
    """Wrap propagate_in_video_iterator to log (reverse, frame_idx) as the model visits frames."""
    order = []
    inner = segmenter.model.propagate_in_video_iterator

    def wrapped(session, start_frame_idx=None, reverse=False, **kw):
        for out in inner(session, start_frame_idx=start_frame_idx, reverse=reverse, **kw):
            order.append((reverse, out.frame_idx))
            yield out

    segmenter.model.propagate_in_video_iterator = wrapped
    return order


def test_seed_validation():
    with pytest.raises(ConfigError, match="exactly one"):
        Seed(frame=0)
    with pytest.raises(ConfigError, match="exactly one"):
        Seed(frame=0, boxes=np.zeros((1, 4)), masks=np.zeros((1, 4, 4), bool))
    with pytest.raises(ConfigError, match="boxes"):
        Seed(boxes=np.zeros((2, 3)))
    with pytest.raises(ConfigError, match="points"):
        Seed(points=({"positive": [], "negative": [[1, 1]]},))
    s = Seed(points=({"positive": [[1, 2]], "negative": [[3, 4]]},))
    coords, labels = s.point_arrays(0)
    assert coords.tolist() == [[1, 2], [3, 4]] and labels.tolist() == [1, 0]
    with pytest.raises(ConfigError, match="backend"):
        SegmenterConfig(backend="nope")
    real = seed_from_clip(np.zeros((3, 2, 8, 8), bool), [{"positive": [[1, 2]]}])
    assert real.points is not None and real.frame == 0
    sim = seed_from_clip(np.ones((3, 2, 8, 8), bool), None)
    assert sim.masks.shape == (2, 8, 8)


def test_masks_to_boxes():
    boxes = masks_to_boxes(_masks())
    assert boxes[0] == [6.0, 4.0, 21.0, 19.0] and boxes[1] == [28.0, 24.0, 45.0, 37.0]
    assert masks_to_boxes(np.zeros((1, 4, 4), bool)) == (None,)


def test_mask_seed_frame0(tiny_sam2):
    seg = build_segmenter(model=tiny_sam2, device="cpu")
    order = _record_order(seg)
    masks = _masks()
    out = seg.segment(_video(), Seed(frame=0, masks=masks))
    assert out.shape == (5, 2, 40, 48) and out.dtype == bool
    # a mask prompt is used as the seed frame's output: it comes back (up to resampling at the edges)
    assert (out[0] == masks).mean() > 0.97
    assert order == [(False, i) for i in range(5)]  # frame 0 seeds: forward only


def test_box_seed_propagates_both_ways(tiny_sam2):
    seg = build_segmenter(SegmenterConfig(model=tiny_sam2, device="cpu", batch_size=2))
    order = _record_order(seg)
    out = seg.segment(_video(t=6), Seed(frame=3, boxes=np.array([[6, 4, 21, 19], [28, 24, 45, 37]], np.float32)))
    assert out.shape == (6, 2, 40, 48)
    assert order == [(False, 3), (False, 4), (False, 5), (True, 3), (True, 2), (True, 1), (True, 0)]
    points = Seed(frame=1, points=({"positive": [[10, 10]], "negative": [[40, 30]]},))
    assert seg.segment(_video(t=3), points).shape == (3, 1, 40, 48)


def test_errors(tiny_sam2, tmp_path):
    with pytest.raises(VidalignError) as exc:
        build_segmenter(model=str(tmp_path / "missing"), device="cpu")
    assert "cannot load SAM 2 checkpoint" in str(exc.value) and "\n" not in str(exc.value)
    seg = build_segmenter(model=tiny_sam2, device="cpu")
    with pytest.raises(VidalignError, match="seed frame 9"):
        seg.segment(_video(t=3), Seed(frame=9, masks=_masks()))
    with pytest.raises(VidalignError, match="resize"):
        seg.segment(_video(t=3, h=20), Seed(frame=0, masks=_masks()))


@pytest.mark.skipif(importlib.util.find_spec("sam2") is not None, reason="the sam2 package is installed")
def test_sam2_package_missing_extra():
    with pytest.raises(VidalignError, match=r"vidalign\[sam2\]"):
        build_segmenter(backend="sam2", device="cpu")
