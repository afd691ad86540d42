"""Listing videos to segment/track: files, clip folders (frames or one video) and shard members."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest

from vidalign.errors import InputError, VidalignError
from vidalign.eval.commands import match_prompt_id
from vidalign.eval.video_inputs import list_videos, resize_frames
from vidalign.media import encode_gif, encode_jpeg, encode_mp4

RNG = np.random.default_rng(0)


def _frames(t=3, h=16, w=16):
    return RNG.integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_folder_layouts(tmp_path):
    (tmp_path / "a.mp4").write_bytes(encode_mp4(_frames(), 16))
    clip = tmp_path / "clip_b"  # PisaBench style: frames, a preview gif and masks
    clip.mkdir()
    for i, f in enumerate(_frames(4)):
        (clip / f"rgba_{i:05d}.jpg").write_bytes(encode_jpeg(f))
    (clip / "movie.gif").write_bytes(encode_gif(_frames(4), 16))
    (tmp_path / "clip_c").mkdir()
    (tmp_path / "clip_c" / "gen.mp4").write_bytes(encode_mp4(_frames(5), 16))
    (tmp_path / "1043_TL").mkdir()
    for s in (0, 1):
        (tmp_path / "1043_TL" / f"{s}.mp4").write_bytes(encode_mp4(_frames(2), 16))
    items = list_videos(tmp_path)
    assert [(i.name, i.clip) for i in items] == [
        ("1043_TL/0.mp4", "0"), ("1043_TL/1.mp4", "1"), ("a.mp4", "a"), ("clip_b", "clip_b"),
        ("clip_c/gen.mp4", "clip_c")]
    frames, fps = items[3].load()
    assert frames.shape == (4, 16, 16, 3) and fps == 0.0
    frames, fps = items[4].load()
    assert frames.shape == (5, 16, 16, 3) and fps == pytest.approx(16)
    assert resize_frames(frames, 8, 12).shape == (5, 8, 12, 3)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="holds no videos"):
        list_videos(empty)


def test_shard_members(tmp_path):
    root = tmp_path / "ds"
    (root / "data" / "groups").mkdir(parents=True)
    with tarfile.open(root / "data" / "groups" / "train-00000-of-00001.tar", "w") as tf:
        members = {"s0-00000000.json": json.dumps({"prompt": "p", "prompt_id": "7_LR"}).encode(),
                   "s0-00000000.c0.mp4": encode_mp4(_frames(), 16), "s0-00000000.c1.mp4": encode_mp4(_frames(), 16)}
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    items = list_videos(root)
    assert [i.name for i in items] == ["s0-00000000.c0.mp4", "s0-00000000.c1.mp4"]
    assert items[0].meta["prompt_id"] == "7_LR"
    assert items[1].load()[0].shape == (3, 16, 16, 3)
    evil = tmp_path / "evil"
    (evil / "data").mkdir(parents=True)
    with tarfile.open(evil / "data" / "x.tar", "w") as tf:
        info = tarfile.TarInfo("/abs/s0.mp4")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(VidalignError, match="unsafe tar member"):
        list_videos(evil)


def test_match_prompt_id():
    ids = ["10_LR", "100_LR", "1043_TL"]
    assert match_prompt_id("100_LR_s0.mp4", ids) == "100_LR"
    assert match_prompt_id("10_LR.mp4", ids) == "10_LR"
    assert match_prompt_id("1043_TL/3.mp4", ids) == "1043_TL"
    assert match_prompt_id("10_LRx.mp4", ids) is None
