"""PisaBench metrics (SPEC §3): exact values on squares, NaN rules, fps alignment, readers."""

from __future__ import annotations

import io
import json
import math
import tarfile

import numpy as np
import pytest

from vidalign.errors import InputError
from vidalign.eval.pisa import (
    align_frames,
    chamfer_distance,
    dataset_mean,
    dropping_object,
    evaluate,
    iou,
    l2_distance,
    read_clips,
    video_metrics,
)

H = 32


def _square(t=3, top=8, left=6, side=10, shift=0, h=H):
    m = np.zeros((t, h, h), dtype=bool)
    m[:, top:top + side, left + shift:left + shift + side] = True
    return m


def test_identical_masks():
    a = _square()
    assert video_metrics(a, a.copy()) == {"l2": 0.0, "chamfer": 0.0, "iou": 1.0}


@pytest.mark.parametrize("k", [1, 3, 10])
def test_shifted_square(k):
    s = 10
    a, b = _square(side=s), _square(side=s, shift=k)
    # centroids differ by k in x and 0 in y: mean over the two coordinates is k/2
    assert l2_distance(a, b) == pytest.approx(k / (2 * math.sqrt(2) * H))
    # per row, the k pixels outside the other square lie 1..k away: mean (k(k+1)/2)/s, both directions
    cd = min(k, s) * (min(k, s) + 1) / s if k <= s else None
    assert chamfer_distance(a, b) == pytest.approx(cd / (math.sqrt(2) * H))
    assert iou(a, b) == pytest.approx((s - k) / (s + k))
    # shifting along y gives the same numbers
    at, bt = a.transpose(0, 2, 1), b.transpose(0, 2, 1)
    assert video_metrics(at, bt)["chamfer"] == pytest.approx(cd / (math.sqrt(2) * H))


def test_empty_mask_rules():
    a = _square(t=2)
    b = a.copy()
    a[1] = b[1] = False  # both empty at t=1: IoU 1, L2 and CD ignore the frame
    assert video_metrics(a, b) == {"l2": 0.0, "chamfer": 0.0, "iou": 1.0}
    b = _square(t=2, shift=2)
    b[1] = False  # only the prediction is empty at t=1: IoU 0 there
    m = video_metrics(_square(t=2), b)
    assert m["iou"] == pytest.approx(((10 - 2) / (10 + 2) + 0.0) / 2)
    assert m["l2"] == pytest.approx(2 / (2 * math.sqrt(2) * H))
    assert m["chamfer"] == pytest.approx(2 * 3 / 10 / (math.sqrt(2) * H))
    empty = np.zeros((2, H, H), dtype=bool)
    m = video_metrics(empty, empty)
    assert math.isnan(m["l2"]) and math.isnan(m["chamfer"]) and m["iou"] == 1.0
    m = video_metrics(_square(t=2), empty)
    assert math.isnan(m["l2"]) and math.isnan(m["chamfer"]) and m["iou"] == 0.0
    mean = dataset_mean([{"l2": 0.2, "chamfer": math.nan, "iou": 0.5}, {"l2": 0.4, "chamfer": 0.1, "iou": 0.0}])
    assert mean == pytest.approx({"l2": 0.3, "chamfer": 0.1, "iou": 0.25})


def test_fps_alignment():
    p, g = align_frames(32, 240, gt_fps=120, pd_fps=16)
    assert list(g[:6]) == [0, 7, 15, 22, 30, 37] and list(p) == list(range(32))
    p, g = align_frames(6, 10, gt_fps=32, pd_fps=16)
    assert list(p) == [0, 1, 2, 3, 4] and list(g) == [0, 2, 4, 6, 8]
    p, g = align_frames(4, 2, gt_fps=8, pd_fps=16)
    assert list(g) == [0, 0, 1, 1]
    # a 120-fps GT against 16-fps predictions compares frames 0, 7, 15, ...
    gt = np.zeros((30, H, H), dtype=bool)
    gt[[0, 7, 15, 22]] = _square(t=4)
    assert video_metrics(gt, _square(t=4), gt_fps=120, pd_fps=16)["iou"] == 1.0


def test_dropping_object():
    assert dropping_object(3) == 2
    points = [{"positive": [[10, 50]], "negative": []}, {"positive": [[30, 5]], "negative": []},
              {"positive": [[5, 40]], "negative": []}]
    assert dropping_object(3, points) == 1


def _clip(root, name, mask, info=None):
    d = root / name
    d.mkdir(parents=True)
    np.savez_compressed(d / "mask.npz", mask=mask)
    if info is not None:
        (d / "clip_info.json").write_text(json.dumps(info))


def _two_objects(shift=0, t=3):
    m = np.zeros((t, 2, H, H), dtype=bool)
    m[:, 0, 0:4, 0:4] = True  # a tower block, not scored
    m[:, 1] = _square(t=t, shift=shift)
    return m


def test_folders_and_errors(tmp_path):
    gt, pd = tmp_path / "gt", tmp_path / "pd"
    _clip(gt, "clip_a", _two_objects(), {"prompt": "A cup falls."})
    _clip(gt, "clip_b", _two_objects(), {"prompt": "A toy falls."})
    _clip(pd, "clip_a", _two_objects(shift=2))
    _clip(pd, "clip_b", _two_objects()[:, 1:])  # one-object prediction
    out = evaluate(read_clips(gt), read_clips(pd, require_info=False))
    assert [v["name"] for v in out["videos"]] == ["clip_a", "clip_b"]
    assert out["videos"][0]["iou"] == pytest.approx(8 / 12) and out["videos"][1]["iou"] == 1.0
    assert out["mean"]["iou"] == pytest.approx((8 / 12 + 1) / 2)

    _clip(tmp_path / "bad", "x", np.zeros((3, H, H), dtype=bool), {"prompt": "p"})
    with pytest.raises(InputError, match=r"mask\.npz.*rank 3"):
        read_clips(tmp_path / "bad")
    _clip(tmp_path / "noinfo", "x", _two_objects())
    with pytest.raises(InputError, match="clip_info.json"):
        read_clips(tmp_path / "noinfo")
    _clip(tmp_path / "fewer", "clip_a", _two_objects())
    with pytest.raises(InputError, match="1 videos for 2.*clip_b"):
        evaluate(read_clips(gt), read_clips(tmp_path / "fewer", require_info=False))


def test_shard_folder(tmp_path):
    root = tmp_path / "ds"
    (root / "data" / "default").mkdir(parents=True)
    with tarfile.open(root / "data" / "default" / "test-00000-of-00001.tar", "w") as tf:
        for key, shift in (("s0-00000000", 0), ("s0-00000001", 3)):
            buf = io.BytesIO()
            np.savez_compressed(buf, mask=_two_objects(shift=shift))
            for member, data in ((f"{key}.mask.npz", buf.getvalue()), (f"{key}.json", b'{"prompt": "p"}')):
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    clips = read_clips(root)
    assert [c.name for c in clips] == ["s0-00000000", "s0-00000001"] and clips[0].info == {"prompt": "p"}
    assert iou(clips[0].mask[:, 1], clips[1].mask[:, 1]) == pytest.approx(7 / 13)
    evil = tmp_path / "evil"
    (evil / "data").mkdir(parents=True)
    with tarfile.open(evil / "data" / "x.tar", "w") as tf:
        info = tarfile.TarInfo("../s0.mask.npz")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(Exception, match="unsafe tar member"):
        read_clips(evil)
