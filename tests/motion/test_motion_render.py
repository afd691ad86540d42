"""Stick-figure renderer: frames, mp4 and GIF that decode with the right frame count."""

import io

import numpy as np
import pytest
from PIL import Image

from vidalign import motion as m
from vidalign.errors import ConfigError
from vidalign.media import decode_mp4

STYLE = m.StickFigureStyle(size=64, line_width=2)


def test_frames_show_an_upright_figure():
    walk = m.walk_motion(12, speed=1.0)
    frames = m.render_stick_figure(walk, STYLE)
    assert frames.shape == (12, 64, 64, 3) and frames.dtype == np.uint8
    for f in frames:
        spine = np.argwhere(np.all(f == m.CHAIN_COLORS[2], axis=-1))  # spine + head colour
        legs = np.argwhere(np.all(f == m.CHAIN_COLORS[0], axis=-1) | np.all(f == m.CHAIN_COLORS[1], axis=-1))
        assert len(spine) > 10 and len(legs) > 10
        assert spine[:, 0].min() < legs[:, 0].min()  # the head is above the feet (image rows grow downwards)
        assert 0 < spine[:, 0].min() and legs[:, 0].max() < 64  # the whole figure is in view
    assert not np.array_equal(frames[0], frames[6])  # it moves


def test_fixed_camera_shows_the_walk_across_the_frame():
    walk = m.walk_motion(30, speed=2.0, heading=np.pi / 2)  # walks along +x
    frames = m.render_stick_figure(walk, m.StickFigureStyle(size=64, follow=False, grid=False, trail=False))
    cols = [np.argwhere(np.all(f == m.CHAIN_COLORS[2], axis=-1))[:, 1].mean() for f in frames]
    assert cols[-1] - cols[0] > 20  # drifts right by a large part of the 64 px frame


def test_mp4_decodes_with_every_frame():
    walk = m.walk_motion(17)
    data = m.render_motion_mp4(walk, fps=20, style=STYLE)
    frames, fps = decode_mp4(data)
    assert frames.shape == (17, 64, 64, 3) and fps == pytest.approx(20)
    ref = m.render_stick_figure(walk, STYLE)
    assert np.abs(frames.astype(int) - ref.astype(int)).mean() < 6  # lossy, but the same pictures


def test_gif_has_every_frame():
    data = m.render_motion_gif(m.walk_motion(9), fps=20, style=STYLE)
    img = Image.open(io.BytesIO(data))
    assert img.n_frames == 9 and img.size == (64, 64)


def test_contact_sheet_and_frame_sampling():
    assert m.sample_frame_indices(40, 8) == [0, 6, 11, 17, 22, 28, 33, 39]
    assert m.sample_frame_indices(3, 8) == [0, 1, 2]
    frames = np.stack([np.full((4, 5, 3), i, np.uint8) for i in range(40)])
    sheet = m.contact_sheet(frames, n=8, cols=4)
    assert sheet.shape == (8, 20, 3)
    assert sheet[0, 0, 0] == 0 and sheet[0, 5, 0] == 6 and sheet[4, 15, 0] == 39


def test_bad_input_is_refused():
    with pytest.raises(ConfigError, match="joints"):
        m.render_stick_figure(np.zeros((5, 21, 3)))
    bad = m.walk_motion(5)
    bad[2, 3, 1] = np.nan
    with pytest.raises(ConfigError, match="finite"):
        m.render_stick_figure(bad)
    with pytest.raises(ConfigError, match="size"):
        m.StickFigureStyle(size=8)
