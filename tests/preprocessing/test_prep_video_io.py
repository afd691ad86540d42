"""Video readers, resampling and resizing (vidalign.preprocessing.video_io)."""

from __future__ import annotations

import numpy as np
import pytest

from vidalign.errors import ConfigError, InputError, VidalignError
from vidalign.preprocessing import video_io as vio


def _reader_or_skip(name: str) -> None:
    if name == "decord":  # an extra: vidalign[decord] (no wheels for aarch64 or Apple silicon)
        pytest.importorskip("decord")
    if name == "torchcodec":
        pytest.importorskip("torchcodec")
        try:
            vio.import_torchcodec()
        except Exception as exc:  # installed but the system FFmpeg libraries are missing
            pytest.skip(f"torchcodec cannot load FFmpeg here: {exc}")


@pytest.mark.parametrize("reader", vio.READER_ORDER)
def test_readers_match_source_frames(reader, clip_bytes, tmp_path):
    _reader_or_skip(reader)
    data, src = clip_bytes
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    from_bytes, info = vio.read_video(data, reader)
    from_path, info_path = vio.read_video(path, reader)
    assert info == info_path == vio.VideoInfo(9, 16.0, 64, 64)
    assert from_bytes.shape == src.shape and from_bytes.dtype == np.uint8
    assert np.array_equal(from_bytes, from_path)
    assert vio.psnr(from_bytes, src) >= 40.0
    # selected indices, out of order and repeated, equal the same rows of the full read
    picked, _ = vio.read_video(data, reader, indices=[8, 0, 4, 4])
    assert np.array_equal(picked, from_bytes[[8, 0, 4, 4]])


def test_readers_agree_with_each_other(clip_bytes):
    _reader_or_skip("decord")
    data, _ = clip_bytes
    decord_frames, _ = vio.read_video(data, "decord")
    pyav_frames, _ = vio.read_video(data, "pyav")
    assert np.abs(decord_frames.astype(int) - pyav_frames).max() <= 1


@pytest.mark.parametrize("reader", vio.READER_ORDER)
def test_truncated_file_names_file_and_next_reader(reader, clip_bytes, tmp_path):
    _reader_or_skip(reader)
    data, _ = clip_bytes
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as err:
        vio.read_video(bad, reader)
    msg = str(err.value)
    assert "\n" not in msg and str(bad) in msg
    assert f"--reader {vio.next_reader(reader)}" in msg and "--on-error skip" in msg


def test_decord_missing_names_the_extra(clip_bytes, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "decord", None)  # as on a machine without vidalign[decord]
    with pytest.raises(VidalignError, match=r"pip install 'vidalign\[decord\]'"):
        vio.read_video(clip_bytes[0], "decord")


def test_missing_file_and_unknown_reader(tmp_path):
    with pytest.raises(InputError, match="no such video file"):
        vio.read_video(tmp_path / "nope.mp4")
    with pytest.raises(ConfigError, match="reader.name='ffmpeg'"):
        vio.get_reader("ffmpeg")


def test_index_outside_video(clip_bytes):
    with pytest.raises(InputError, match="frame index 9 is outside the video's 9 frames"):
        vio.read_video(clip_bytes[0], "pyav", indices=[0, 9])


def test_largest_4k1():
    assert [vio.largest_4k1(n) for n in (0, 1, 4, 5, 8, 9, 32, 81, 84)] == [0, 1, 1, 5, 5, 9, 29, 81, 81]


def test_sample_indices_by_hand():
    # same rate, all frames, 4k+1: 32 frames (a PISA clip) -> the first 29
    assert vio.sample_indices(32, 16.0) == list(range(29))
    # 16 -> 8 fps: 2 s give 16 frames at 8 fps, cut to 13 = 4*3+1, every second source frame
    assert vio.sample_indices(32, 16.0, fps=8.0) == list(range(0, 25, 2))
    # 30 -> 16 fps, 17 frames: nearest source frame to k/16 s, floor(k * 1.875 + 0.5)
    assert vio.sample_indices(40, 30.0, frames=17, fps=16.0) == \
        [0, 2, 4, 6, 8, 9, 11, 13, 15, 17, 19, 21, 23, 24, 26, 28, 30]
    # 120 fps real PisaBench clip -> 16 fps, 5 frames from frame 10
    assert vio.sample_indices(200, 120.0, frames=5, fps=16.0, start=10) == [10, 18, 25, 33, 40]
    # frame_rule="any" takes every frame that fits
    assert vio.sample_indices(10, 10.0, fps=5.0, frame_rule="any") == [0, 2, 4, 6, 8]


def test_sample_indices_errors():
    with pytest.raises(InputError) as err:
        vio.sample_indices(40, 16.0, frames=81, name="short.mp4")
    assert str(err.value) == ("short.mp4: clip has 40 frames at 16 fps, giving 40 frames; 81 needed; "
                              "lower --frames or --fps, or skip it with --on-error skip")
    with pytest.raises(ConfigError, match="4k"):
        vio.sample_indices(100, 16.0, frames=80)


def test_resize_center_crop_keeps_the_centre():
    import torch

    # 40x80 -> scaled by 0.8 to 32x64 -> columns 16..48 kept = source columns 20..60; the band 12..68 is 200
    frame = np.zeros((1, 40, 80, 3), np.uint8)
    frame[:, :, 12:68] = 200
    frame[:, :, 68:] = 100
    out = vio.to_model_input(frame, 32, 32)
    assert out.shape == (3, 1, 32, 32)
    assert torch.allclose(out, torch.full_like(out, 200 / 127.5 - 1), atol=1e-5)
    # no resize needed: exact [-1, 1] mapping, round trip through to_uint8
    same = vio.to_model_input(frame)
    assert same.shape == (3, 1, 40, 80) and same.min() == -1.0
    assert np.array_equal(vio.to_uint8(same), frame)


def test_buckets_and_clip_spec(clip_bytes):
    import torch

    assert vio.choose_bucket(720, 1280, [(480, 832), (832, 480), (512, 512)]) == (480, 832)
    assert vio.choose_bucket(1000, 600, [(480, 832), (832, 480), (512, 512)]) == (832, 480)
    spec = vio.ClipSpec(frames=5, fps=8.0, resize="bucket", buckets=((32, 48), (48, 32)))
    clip = vio.load_clip(clip_bytes[0], spec, name="k.mp4")
    assert clip.indices == [0, 2, 4, 6, 8] and clip.fps == 8.0
    assert clip.video.shape == (3, 5, 32, 48)  # square source: both buckets tie on aspect, the first wins
    x = clip.model_input()
    assert x.dtype == torch.float32 and float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert torch.equal(x, clip.video.float() / 127.5 - 1)
    with pytest.raises(ConfigError, match="ClipSpec.frames=80"):
        vio.ClipSpec(frames=80)
    with pytest.raises(ConfigError, match="ClipSpec.buckets"):
        vio.ClipSpec(resize="bucket")


def test_load_clip_too_short(clip_bytes):
    with pytest.raises(InputError, match="clip has 9 frames at 16 fps, giving 9 frames; 13 needed"):
        vio.load_clip(clip_bytes[0], vio.ClipSpec(frames=13, height=32, width=32), name="short.mp4")
