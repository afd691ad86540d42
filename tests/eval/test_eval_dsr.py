"""DSR-Score (SPEC §1): per-frame relation scores, frame filter, video formula, Acc@τ, IO."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest

from vidalign.errors import InputError, VidalignError
from vidalign.eval.dsr_prompts_csv import DSRPrompt, read_prompts_csv, render_prompt, write_prompts_csv
from vidalign.eval.dsr_score import (
    Track,
    TrackFrame,
    acc_at,
    degenerate,
    dsr_from_relations,
    dsr_score,
    kept_frames,
    read_tracks,
    relation_scores,
    score_tracks,
    track_from_pickle,
    write_tracks,
)

OBJ_BOX = (100.0, 100.0, 140.0, 140.0)  # centre (120, 120), 40×40


def _frame(i, animal_box, labels=("cat", "box"), obj_box=OBJ_BOX):
    boxes = {"cat": animal_box, "box": obj_box}
    return TrackFrame(i, tuple(labels), tuple(tuple(boxes.get(lab, (0.0, 0.0, 5.0, 5.0))) for lab in labels))


def _crossing(n=30, reverse=False):
    """Animal (40×40) moves horizontally from 80 px left of the object to 80 px right (same height)."""
    xs = np.linspace(-80, 80, n)
    if reverse:
        xs = xs[::-1]
    return [_frame(i, (100 + x, 100.0, 140 + x, 140.0)) for i, x in enumerate(xs)]


def test_relation_scores_hand_computed():
    # a: centre (5,5) 10×10; o: centre (30,10) 20×20 → w̄=h̄=15, v=(-25,-5)
    r = relation_scores((0, 0, 10, 10), (20, 0, 40, 20))
    n = math.sqrt(650)
    assert r["L"] == pytest.approx(25 / n)
    assert r["R"] == pytest.approx(-25 / n)
    assert r["T"] == pytest.approx((5 / n) * (5 / 15))
    assert r["B"] == pytest.approx(-(5 / n) * (5 / 15))
    # a straight above o, farther than h̄: pure "top"
    r = relation_scores((10, 0, 14, 4), (8, 10, 16, 14))
    assert r["T"] == pytest.approx(1.0) and r["B"] == pytest.approx(-1.0)
    assert r["L"] == pytest.approx(0.0) and r["R"] == pytest.approx(0.0)
    # a: centre (4,5) 4×6; o: centre (2,2) 4×4 → w̄=4, h̄=5, v=(2,3), d=(0.5,0.6)
    r = relation_scores((2, 2, 6, 8), (0, 0, 4, 4))
    assert r["R"] == pytest.approx(2 / math.sqrt(13) * 0.5)
    assert r["B"] == pytest.approx(3 / math.sqrt(13) * 0.6)
    assert r["L"] == pytest.approx(-r["R"]) and r["T"] == pytest.approx(-r["B"])
    # same centre: cosines are 0
    assert relation_scores((0, 0, 4, 4), (1, 1, 3, 3)) == {"L": 0.0, "R": 0.0, "T": 0.0, "B": 0.0}


def test_crossing_mirror_and_stationary():
    assert dsr_score(_crossing(), "cat", "box", "L", "R") >= 0.99
    assert dsr_score(_crossing(reverse=True), "cat", "box", "L", "R") <= 0.01
    still = [_frame(i, OBJ_BOX) for i in range(25)]
    assert dsr_score(still, "cat", "box", "L", "R") == pytest.approx(0.5)
    # frame order comes from the index, not the list order
    assert dsr_score(_crossing()[::-1], "cat", "box", "L", "R") >= 0.99


def test_video_formula_hand_computed():
    ri = [1.0, 0.5, 0.0] + [0.0] * 16 + [-0.5]
    rf = [0.2] + [0.0] * 16 + [0.3, 0.6, 0.9]
    # [0.5 + ½(1+0.5) + 0.6 + ½(0.9−0.2)] / 8 + ½ = 2.2/8 + 0.5
    assert dsr_from_relations(ri, rf) == pytest.approx(0.775)


def test_invalid_below_20_and_filter():
    frames = _crossing(19)
    assert dsr_score(frames, "cat", "box", "L", "R") is None
    # 20 good frames, plus frames with an extra label and degenerate boxes, which are skipped
    frames = _crossing(20)
    extra = [_frame(100 + i, (0.0, 0.0, 5.0, 5.0), labels=("cat", "box", "dog")) for i in range(5)]
    degenerate = [_frame(200 + i, (10.0, 10.0, 10.0, 30.0)) for i in range(5)]
    only_one = [_frame(300, (0.0, 0.0, 5.0, 5.0), labels=("cat",))]
    kept = kept_frames(frames + extra + degenerate + only_one, "cat", "box")
    assert [k[0] for k in kept] == list(range(20))
    assert dsr_score(frames + extra + degenerate, "cat", "box", "L", "R") == dsr_score(frames, "cat", "box", "L", "R")
    assert dsr_score(frames[:19] + extra + degenerate, "cat", "box", "L", "R") is None
    # labels in either order: the boxes follow their labels
    swapped = [TrackFrame(f.index, f.labels[::-1], f.boxes[::-1]) for f in frames]
    assert dsr_score(swapped, "cat", "box", "L", "R") == dsr_score(frames, "cat", "box", "L", "R")


def test_degenerate_boxes_follow_calc_dsr_score():
    # calc_dsr_score.py skips a frame when either width is 0 or the mean width/height is 0, nothing else
    flat = (60.0, 120.0, 100.0, 120.0)  # zero height, centre (80, 120): 40 px left of the object's centre
    assert not degenerate(flat, OBJ_BOX)
    assert degenerate((10.0, 10.0, 10.0, 30.0), OBJ_BOX) and degenerate(OBJ_BOX, (5.0, 0.0, 5.0, 9.0))
    assert degenerate(flat, (0.0, 7.0, 30.0, 7.0))  # both heights 0: mean height 0
    frames = _crossing(20) + [_frame(50, flat)]
    kept = kept_frames(frames, "cat", "box")
    assert kept[-1][0] == 50 and len(kept) == 21
    # w̄ = 40, h̄ = (0 + 40)/2 = 20, v = (−40, 0): r_L = 1, and the last frame counts in the video formula
    assert relation_scores(flat, OBJ_BOX)["L"] == pytest.approx(1.0)
    ri = [relation_scores(a, o)["L"] for _, a, o in kept]
    rf = [relation_scores(a, o)["R"] for _, a, o in kept]
    assert dsr_score(frames, "cat", "box", "L", "R") == pytest.approx(dsr_from_relations(ri, rf))
    assert ri[-1] == pytest.approx(1.0)


def test_acc_thresholds_are_np_arange():
    # calc_correctness.py: np.arange(0, 1, 0.1) → 0.30000000000000004, so 0.3 fails "0.3" and passes "0.2"
    acc = acc_at([0.3, 0.6, 0.7])
    assert (acc["0.2"], acc["0.3"], acc["0.6"], acc["0.7"]) == (1.0, pytest.approx(2 / 3), pytest.approx(1 / 3), 0.0)


def test_acc_at_tau():
    acc = acc_at([None, 0.05, 0.5, 0.75, 0.95])
    assert list(acc) == [f"0.{i}" for i in range(10)]
    assert acc["0.0"] == pytest.approx(0.8)
    assert acc["0.1"] == pytest.approx(0.6)
    assert acc["0.5"] == pytest.approx(0.6)
    assert acc["0.6"] == pytest.approx(0.4)
    assert acc["0.8"] == pytest.approx(0.2)
    assert acc["0.9"] == pytest.approx(0.2)
    with pytest.raises(VidalignError):
        acc_at([])


def _prompt(pid="p1", typ="LR", group=None):
    return DSRPrompt(typ, pid, "cat", "box", "In a park", "on the left of", "to the right of",
                     render_prompt("In a park", "cat", "box", "jumps", typ[0], typ[1]), group)


def test_tracks_roundtrip_and_scoring(tmp_path):
    tracks = [Track("v0.mp4", "p1", tuple(_crossing())), Track("v1.mp4", "p1", ())]
    path = write_tracks(tmp_path / "t.jsonl", tracks)
    back = read_tracks(path)
    assert back == tracks
    scores = score_tracks(back, {"p1": _prompt()})
    assert scores[0] >= 0.99 and scores[1] is None
    with pytest.raises(InputError, match="prompt_id"):
        score_tracks(back, {"other": _prompt("other")})


@pytest.mark.parametrize("record, needle", [
    ("{not json", "t.jsonl:2"),
    (json.dumps({"video": "v", "prompt_id": "p", "frames": [{"index": 0, "labels": ["a"], "boxes": []}]}),
     "frames[0].boxes"),
    (json.dumps({"video": "v", "prompt_id": "p", "frames": [{"index": 0, "labels": ["a"], "boxes": [[0, 0, 1]]}]}),
     "frames[0].boxes[0]"),
    (json.dumps({"video": "v", "frames": []}), "prompt_id"),
    (json.dumps({"video": "v", "prompt_id": "p", "frames": [{"index": -1, "labels": [], "boxes": []}]}),
     "frames[0].index"),
])
def test_tracks_reader_errors(tmp_path, record, needle):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"video": "ok", "prompt_id": "p"}) + "\n" + record + "\n")
    with pytest.raises(InputError) as exc:
        read_tracks(path)
    msg = str(exc.value)
    assert "t.jsonl:2" in msg and needle in msg and "\n" not in msg


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_converter(tmp_path):
    items = [(i, ["cat", "box"], np.array([[0, 0, 10, 10], [50, 0, 60, 10]], dtype=np.float32)) for i in range(3)]
    items.append((3, [], np.zeros((0, 4))))
    path = tmp_path / "v.pkl"
    path.write_bytes(pickle.dumps(items))
    with pytest.raises(VidalignError, match="allow_pickle"):
        track_from_pickle(path, "v", "p1")
    track = track_from_pickle(path, "v", "p1", allow_pickle=True)
    assert [f.index for f in track.frames] == [0, 1, 2, 3]
    assert track.frames[1].labels == ("cat", "box")
    assert track.frames[1].boxes[1] == (50.0, 0.0, 60.0, 10.0)
    assert track.frames[3].labels == ()
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps([(0, ["cat"], _Evil())]))
    with pytest.raises(InputError, match="refusing"):
        track_from_pickle(evil, "v", "p1", allow_pickle=True)


def _authors_det_data(with_masks: bool):
    """det_data as detection.py builds it: [frame_idx, obj_names, sv.mask_to_xyxy(masks) (int), masks] for B/F
    prompt types, without the masks otherwise; frames deduplicated by index."""
    out = []
    for i in range(3):
        masks = np.zeros((2, 12, 16), dtype=bool)
        masks[0, 2:6, 1 + i:5 + i] = True
        masks[1, 4:10, 9:15] = True
        xyxy = np.array([[1 + i, 2, 4 + i, 5], [9, 4, 14, 9]])  # supervision's inclusive extents, int64
        out.append([i, ["cat", "box"], xyxy, masks] if with_masks else [i, ["cat", "box"], xyxy])
    return list({x[0]: x for x in out}.values())


@pytest.mark.parametrize("protocol", [pickle.DEFAULT_PROTOCOL, 5])
@pytest.mark.parametrize("with_masks", [False, True])
def test_authors_pickles_with_masks_and_protocol_5(tmp_path, protocol, with_masks):
    path = tmp_path / "1043_TL_F81_seed00.mp4.pkl"
    with open(path, "wb") as f:
        pickle.dump(_authors_det_data(with_masks), f, protocol=protocol)
    track = track_from_pickle(path, path.name, "1043_TL", allow_pickle=True)
    assert [f.index for f in track.frames] == [0, 1, 2]
    assert track.frames[2].boxes == ((3.0, 2.0, 6.0, 5.0), (9.0, 4.0, 14.0, 9.0))


def test_restricted_unpickler_still_refuses(tmp_path):
    import os

    class _System:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    for proto in (2, 5):
        evil = tmp_path / f"evil{proto}.pkl"
        evil.write_bytes(pickle.dumps([[0, ["cat", "box"], np.zeros((2, 4)), _System()]], protocol=proto))
        with pytest.raises(InputError, match="refusing"):
            track_from_pickle(evil, "v", "p1", allow_pickle=True)
    # arrays may not hold object pointers: an object dtype smuggled into a protocol-5 _frombuffer (raw bytes read
    # as pointers), a pickled object array, and a dtype whose state sets the object flag are all refused
    good = pickle.dumps(np.zeros(1, dtype=np.int64), protocol=5)
    assert b"\x8c\x02i8" in good
    for k, data in enumerate([good.replace(b"\x8c\x02i8", b"\x8c\x02O8"),
                              pickle.dumps(np.array([1, "a"], dtype=object), protocol=5),
                              pickle.dumps(np.array([1, "a"], dtype=object), protocol=2)]):
        bad = tmp_path / f"object{k}.pkl"
        bad.write_bytes(data)
        with pytest.raises(InputError, match="refusing"):
            track_from_pickle(bad, "v", "p1", allow_pickle=True)
    assert np.dtype("i8").flags == 0  # numpy's shared dtypes were never touched


def test_prompts_csv_roundtrip_and_errors(tmp_path):
    rows = [_prompt("1043_TL", "TL", group=3), _prompt("7_LR", "LR", group=None)]
    path = write_prompts_csv(tmp_path / "eval120.csv", rows)
    assert path.read_text().splitlines()[0] == "type,prompt_id,animal,object,scene,initial_SR,final_SR,prompt,group"
    assert read_prompts_csv(path) == rows
    assert rows[0].initial == "T" and rows[0].final == "L"
    assert rows[1].prompt == "In a park, a cat is on the left of a box, then the cat jumps to the right of the box."
    path30 = write_prompts_csv(tmp_path / "eval30.csv", [_prompt()])
    assert "group" not in path30.read_text()
    bad = tmp_path / "bad.csv"
    bad.write_text("type,prompt_id,animal,object,scene,initial_SR,final_SR,prompt,group\n"
                   "LR,a,cat,box,s,i,f,p,1\nXQ,b,cat,box,s,i,f,p,2\n")
    with pytest.raises(InputError, match=r"bad\.csv:3.*type"):
        read_prompts_csv(bad)
    bad.write_text("type,prompt_id,animal,object,scene,initial_SR,final_SR,prompt,group\nLR,a,cat,box,s,i,f,p,x\n")
    with pytest.raises(InputError, match=r"bad\.csv:2.*group"):
        read_prompts_csv(bad)
    bad.write_text("type,prompt_id,animal\nLR,a,cat\n")
    with pytest.raises(InputError, match="column missing"):
        read_prompts_csv(bad)
