"""``vidalign preview``: a colour per object (outline and path), frame times, pairs with chosen above rejected."""

import numpy as np
from PIL import Image

from vidalign.simulation.preview import (
    GAP,
    GROUP_GAP,
    PAPER,
    TIME_H,
    TITLE_H,
    Row,
    annotate_clip,
    contact_sheet,
    frame_times,
    object_colour,
    stamp_time,
)


def _meta(paths):
    """Camera at the origin looking down +z (identity extrinsics), focal 10 px, centre (16, 16)."""
    k = [[10.0, 0, 16.0], [0, 10.0, 16.0], [0, 0, 1.0]]
    return {"camera": {"intrinsics": k, "extrinsics": np.eye(4).tolist()},
            "objects": [{"name": f"o{i}", "trajectory": {"positions": p}} for i, p in enumerate(paths)]}


def test_each_object_has_its_colour():
    frames = np.zeros((3, 32, 32, 3), np.uint8)
    masks = np.zeros((3, 2, 32, 32), bool)
    masks[:, 0, 2:8, 2:8] = True
    masks[:, 1, 20:30, 20:30] = True
    # object 0 sits still at pixel (6, 26); object 1 moves from (16, 16) to (26, 16)
    meta = _meta([[[-1.0, 1.0, 1.0]] * 3, [[0.0, 0.0, 1.0], [0.5, 0.0, 1.0], [1.0, 0.0, 1.0]]])
    out = annotate_clip(frames, masks, meta)
    assert tuple(out[0, 2, 4]) == object_colour(0) and tuple(out[0, 20, 25]) == object_colour(1)  # outlines
    assert tuple(out[2, 26, 6]) == object_colour(0)  # object 0's dot
    assert tuple(out[2, 16, 21]) == object_colour(1)  # object 1's path, drawn up to frame 2
    assert tuple(out[0, 16, 21]) != object_colour(1)  # not yet at frame 0
    assert object_colour(0) != object_colour(1)


def test_sheet_labels_times_and_stacks_pairs():
    chosen = Row(np.full((5, 16, 20, 3), 220, np.uint8), 10.0, [("chosen 0.9", (0, 0, 0))])
    rejected = Row(np.full((5, 16, 20, 3), 30, np.uint8), 10.0, [("rejected", (0, 0, 0))], new_group=False)
    sheet = contact_sheet([chosen, rejected, chosen], columns=3)
    row_h = TITLE_H + 16 + TIME_H
    assert sheet.shape == (3 * row_h + GAP + GROUP_GAP, 3 * 20 + 2 * GAP, 3)
    assert sheet[TITLE_H + 8, 10].tolist() == [220] * 3  # chosen frames first
    assert sheet[row_h + GAP + TITLE_H + 8, 10].tolist() == [30] * 3  # rejected right under them
    time_strip = sheet[TITLE_H + 16: row_h, :20]
    assert (time_strip != PAPER).any()  # "0.00 s" is written under the first frame
    assert frame_times(5, 10.0).tolist() == [0.0, 0.1, 0.2, 0.3, 0.4]
    stamped = stamp_time(np.full((16, 40, 3), 255, np.uint8), 0.25, 16.0)
    assert (stamped[:11, :30] == 0).any() and (stamped[12:] == 255).all()


def test_preview_of_a_pairs_dataset(tmp_path):
    import json

    from vidalign.builder import BuildOptions
    from vidalign.cli import main
    from vidalign.media import encode_mp4
    from vidalign.runner import run_build

    src = tmp_path / "src"
    metadata, pairs = [], []
    for k in range(2):
        for sub, shade in (("winvideos", 210), ("losevideos", 40)):
            (src / sub).mkdir(parents=True, exist_ok=True)
            frames = np.full((4, 32, 32, 3), shade, np.uint8) + np.arange(4, dtype=np.uint8)[:, None, None, None] * 4
            (src / sub / f"{k + 1:06d}.mp4").write_bytes(encode_mp4(frames, 8))
            metadata.append({"basic": {"clip_path": f"/remote/{sub}/{k + 1:06d}.mp4", "globalidx": k + 1},
                             "misc": {"frame_caption": [f"prompt {k}"]}})
        pairs.append({"video1": 2 * k, "video2": 2 * k + 1, "label": 0, "frame_caption": f"prompt {k}"})
    (src / "metadata.json").write_text(json.dumps(metadata))
    (src / "pair.json").write_text(json.dumps(pairs))
    out = tmp_path / "pairs"
    run_build("videodpo-import", {"source": str(src)}, BuildOptions(out=out, progress=False))
    png = tmp_path / "p.png"
    assert main(["preview", str(out), "--out", str(png), "--columns", "2"]) == 0
    sheet = np.asarray(Image.open(png).convert("RGB"))
    row_h = TITLE_H + 32 + TIME_H
    assert sheet.shape[:2] == (4 * row_h + 2 * GAP + GROUP_GAP, 2 * 32 + GAP)
    assert sheet[TITLE_H + 16, 16].mean() > 180 and sheet[row_h + GAP + TITLE_H + 16, 16].mean() < 70
    gif = tmp_path / "p.gif"
    assert main(["preview", str(out), "--out", str(gif)]) == 0
    with Image.open(gif) as im:  # one row per pair: chosen | rejected
        assert im.size == (2 * 32 + GAP, 2 * 32 + GAP) and im.n_frames == 4
