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
    # ties keep the first object (their strict "<"); the smallest y over an object's positive points counts
    tie = [{"positive": [[0, 9], [0, 30]], "negative": []}, {"positive": [[0, 9]], "negative": [[0, 1]]}]
    assert dropping_object(2, tie) == 0
    with pytest.raises(InputError, match=r"points\[1\]\.positive"):
        dropping_object(2, [{"positive": [[1, 2]]}, {"positive": [], "negative": [[1, 1]]}])


def test_alignment_expression_is_the_authors():
    # eval.py: int(k * (gt_fps / pd_fps)) -- the ratio first. k * gt / pd differs for 59.94 / 29.97 at k = 11.
    _, g = align_frames(12, 100, gt_fps=59.94, pd_fps=29.97)
    assert g[11] == int(11 * (59.94 / 29.97)) == 22 and int(11 * 59.94 / 29.97) == 21
    _, g = align_frames(31, 100, gt_fps=29.97, pd_fps=29.97)
    assert list(g) == list(range(31))  # equal rates map every frame to itself


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

    _clip(tmp_path / "bad", "x", np.zeros((3, H), dtype=bool), {"prompt": "p"})
    with pytest.raises(InputError, match=r"mask\.npz.*rank 2"):
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


# ------------------------------------------------------------------ the authors' metrics config (eval.py)
def _write_npz(path, mask):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, mask=mask)  # as generate_mask.py and the PisaBench release write it
    return str(path)


def _squeezed_prediction(obj_mask):
    """One-object masks exactly as generate_mask.py builds them: per frame (logits > 0) of shape [1, 1, H, W],
    ``mask.squeeze()``, ``torch.stack`` → [T, H, W]."""
    import torch

    logits = [torch.where(torch.from_numpy(m)[None, None], 5.0, -5.0) for m in obj_mask]
    return (torch.stack([m.squeeze() for m in logits]) > 0.0).cpu().numpy()


def test_metrics_config_real_and_sim(tmp_path):
    from vidalign.eval.pisa_config import evaluate_config, read_metrics_config, results_line, results_text

    # real clip: 120-fps GT with 16 frames, two objects; the annotation's smallest positive y is object 1
    gt = np.zeros((16, 2, H, H), dtype=bool)
    gt[:, 0, 24:30, 0:6] = True
    gt[[0, 7, 15], 1] = _square(t=3)  # only the frames int(k * 7.5) = 0, 7, 15 are compared
    pd = np.zeros((3, 2, H, H), dtype=bool)
    pd[:, 1] = _square(t=3, shift=2)
    (tmp_path / "real").mkdir()
    ann = tmp_path / "real" / "clip_info.json"
    ann.write_text(json.dumps({"prompt": "A cup falls.", "points": [{"positive": [[3, 26]], "negative": []},
                                                                     {"positive": [[10, 12], [12, 40]],
                                                                      "negative": [[1, 1]]}]}))
    # sim clip: the dropping object is the last; the prediction is one object saved squeezed [T, H, W]
    sim_gt = _two_objects(t=4)
    sim_pd = _squeezed_prediction(_square(t=4, shift=1))
    assert sim_pd.shape == (4, H, H)
    lines = [
        {"gt_mask": _write_npz(tmp_path / "real" / "mask.npz", gt), "gt_fps": 120, "gt_annotation": str(ann),
         "pd_mask": _write_npz(tmp_path / "gen" / "real" / "mask.npz", pd), "pd_fps": 16},
        {"gt_mask": _write_npz(tmp_path / "sim" / "00" / "mask.npz", sim_gt), "gt_fps": 16,
         "pd_mask": _write_npz(tmp_path / "gen" / "00" / "mask.npz", sim_pd), "pd_fps": 16},
        # their eval.py raises on these three: a missing prediction, an annotation-picked object the one-object
        # prediction lacks, and a line without pd_fps
        {"gt_mask": str(tmp_path / "sim" / "00" / "mask.npz"), "gt_fps": 16,
         "pd_mask": str(tmp_path / "gen" / "missing" / "mask.npz"), "pd_fps": 16},
        {"gt_mask": str(tmp_path / "real" / "mask.npz"), "gt_fps": 120, "gt_annotation": str(ann),
         "pd_mask": _write_npz(tmp_path / "gen" / "one" / "mask.npz", pd[:, 1]), "pd_fps": 16},
        {"gt_mask": str(tmp_path / "real" / "mask.npz"), "gt_fps": 120, "pd_mask": str(tmp_path / "x.npz")},
    ]
    cfg = tmp_path / "metrics.jsonl"
    cfg.write_text("".join(json.dumps(x) + "\n" for x in lines))
    out = evaluate_config(read_metrics_config(cfg))
    real, sim = out["videos"]
    assert (real["line"], sim["line"]) == (1, 2) and real["config"] == lines[0]
    # shift 2 on a 10-px square: IoU 8/12, L2 (2/2)/(√2·32), Chamfer 2·(1+2)/10 per frame /(√2·32)
    assert real["iou"] == pytest.approx(8 / 12)
    assert real["l2"] == pytest.approx(1 / (math.sqrt(2) * H))
    assert real["chamfer"] == pytest.approx(0.6 / (math.sqrt(2) * H))
    assert sim["iou"] == pytest.approx(9 / 11) and sim["l2"] == pytest.approx(0.5 / (math.sqrt(2) * H))
    assert [d["line"] for d in out["dropped"]] == [3, 4, 5]
    assert "not found" in out["dropped"][0]["reason"] and "index 1" in out["dropped"][1]["reason"]
    assert "pd_fps" in out["dropped"][2]["reason"]
    assert out["mean"]["iou"] == pytest.approx((8 / 12 + 9 / 11) / 2)
    assert set(results_line(real)) == {"l2", "chamfer_distance", "iou", "config"}
    text = results_text("sim_seen", out["mean"], 2, 3)
    assert text.startswith(f"Task: sim_seen\nL2: {out['mean']['l2']}\nChamfer Distance: ") and "3 dropped" in text


def test_squeezed_gt_reads_as_one_object(tmp_path):
    root = tmp_path / "gt"
    _clip(root, "00", _square(t=3), {"prompt": "A toy falls."})
    (clip,) = read_clips(root)
    assert clip.mask.shape == (3, 1, H, H) and clip.target == 0
