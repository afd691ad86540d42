"""``vidalign preview``: a contact sheet (PNG) or animated grid (GIF) of a few samples of a video dataset.

What it draws depends on the config's members:

- **drop clips** (``mp4`` + ``mask.npz`` + a ``json`` with camera and objects, as ``kubric-drop`` writes): every
  object gets its own colour, used for its mask outline and for the projected path of its centre (from the
  clip's camera intrinsics and extrinsics); the dropping object PisaBench scores (the last) is drawn thicker.
  A strip above the row names the objects in their colours, so one look shows whether masks, motion and
  metadata agree;
- **preference pairs** (``chosen.mp4`` + ``rejected.mp4``): the chosen clip's row above the rejected one's,
  each labelled with its score, under the prompt;
- any other ``mp4`` clips: their frames.

Every frame is labelled with its time in the clip (seconds, from the stream's frame rate): under each column of a
sheet, in the corner of each GIF frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidalign.errors import VidalignError

# distinct colours (Trubetskoy's list, most distinct first): object i gets PALETTE[i % len]
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
           (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180)]
CHOSEN, REJECTED, INK, PAPER = (20, 140, 60), (200, 40, 40), (30, 30, 30), (255, 255, 255)
TITLE_H = 12  # px of the text strip above a row
TIME_H = 11  # px of the time strip under a row
GAP = 2
GROUP_GAP = 6  # px between samples on a sheet (a pair's two rows are GAP apart)


def object_colour(index: int) -> tuple[int, int, int]:
    return PALETTE[index % len(PALETTE)]


def outline(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a boolean mask [H, W] (4-neighbourhood)."""
    m = np.pad(mask.astype(bool), 1)
    interior = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return mask.astype(bool) & ~interior


def project_path(meta: dict[str, Any], index: int) -> np.ndarray:
    """Pixel positions [T, 2] of object ``index``'s centre over the clip."""
    k = np.asarray(meta["camera"]["intrinsics"], dtype=np.float64)
    ext = np.asarray(meta["camera"]["extrinsics"], dtype=np.float64)
    pos = np.asarray(meta["objects"][index]["trajectory"]["positions"], dtype=np.float64)
    pc = pos @ ext[:3, :3].T + ext[:3, 3]
    uv = pc @ k.T
    return uv[:, :2] / np.maximum(uv[:, 2:3], 1e-9)


def _paths(meta: dict[str, Any], n: int) -> list[np.ndarray | None]:
    objects = meta.get("objects") or []
    out: list[np.ndarray | None] = []
    for i in range(n):
        try:
            out.append(project_path(meta, i) if i < len(objects) else None)
        except (KeyError, TypeError, ValueError, IndexError):  # no camera or trajectory recorded
            out.append(None)
    return out


def annotate_clip(frames: np.ndarray, masks: np.ndarray, meta: dict[str, Any],
                  indices: np.ndarray | None = None) -> np.ndarray:
    """Frames [T, H, W, 3] with each object's mask outline and centre path drawn in the object's colour (the
    path up to the frame, and a dot where the object is); the last object (the dropping one) drawn thicker.
    ``indices``: the clip frame each of ``frames`` is (when only some frames are drawn, as on a sheet)."""
    from PIL import Image, ImageDraw

    out = np.array(frames, dtype=np.uint8, copy=True)
    t, n = masks.shape[:2]
    paths = _paths(meta, n)
    indices = np.arange(len(out)) if indices is None else np.asarray(indices)
    for k in range(min(t, len(out))):
        f = int(indices[k])
        for i in range(n):
            out[k][outline(masks[k, i])] = object_colour(i)
        if not any(p is not None for p in paths):
            continue
        img = Image.fromarray(out[k])
        draw = ImageDraw.Draw(img)
        for i, path in enumerate(paths):
            if path is None or not len(path):
                continue
            width, r = (2, 2.0) if i == n - 1 else (1, 1.5)
            pts = [tuple(p) for p in path[: f + 1]]
            if len(pts) > 1:
                draw.line(pts, fill=object_colour(i), width=width)
            x, y = path[min(f, len(path) - 1)]
            draw.ellipse([x - r, y - r, x + r, y + r], fill=object_colour(i))
        out[k] = np.asarray(img)
    return out


# -- layout -----------------------------------------------------------------------------------------------------
@dataclass
class Row:
    """One row of a sheet: frames [T, H, W, 3] at ``fps``, and a title of ``(text, colour)`` segments, or
    ``(text, colour, True)`` for a colour key (a square of the colour before the text)."""

    frames: np.ndarray
    fps: float
    title: list[tuple] = field(default_factory=list)
    new_group: bool = True  # starts a new sample: more space above it than between the rows of one sample
    times: np.ndarray | None = None  # seconds of each frame, when ``frames`` are a selection of the clip


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=10)
    except TypeError:  # Pillow < 10.1: the bitmap font, fixed size
        return ImageFont.load_default()


def _fit(draw, text: str, width: float, font) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…" if text else ""


def frame_times(n: int, fps: float) -> np.ndarray:
    """Seconds of frames ``0..n-1`` (frame index when the fps is unknown)."""
    return np.arange(n) / fps if fps and fps > 0 else np.arange(n, dtype=float)


def time_label(seconds: float, fps: float) -> str:
    return f"{seconds:.2f} s" if fps and fps > 0 else f"#{int(seconds)}"


def contact_sheet(rows: list[Row], columns: int = 6, gap: int = GAP) -> np.ndarray:
    """Per row: its title strip, ``columns`` evenly spaced frames, and each frame's time under it."""
    from PIL import Image, ImageDraw

    if not rows:
        raise VidalignError("nothing to preview: no clips")
    h, w = rows[0].frames.shape[1:3]
    row_h = TITLE_H + h + TIME_H
    width = columns * (w + gap) - gap
    tops, y = [], 0
    for r, row in enumerate(rows):
        y += (GROUP_GAP if row.new_group else gap) if r else 0
        tops.append(y)
        y += row_h
    sheet = Image.new("RGB", (width, y), PAPER)
    draw, font = ImageDraw.Draw(sheet), _font()
    for r, row in enumerate(rows):
        y0 = tops[r]
        if r and row.new_group:
            draw.line([(0, y0 - GROUP_GAP // 2 - 1), (width, y0 - GROUP_GAP // 2 - 1)], fill=(200, 200, 200))
        x = 1.0
        for text, colour, *swatch in row.title:
            if swatch and swatch[0] and x + 12 < width:  # a colour key: a square of the colour, then ink text
                draw.rectangle([x, y0 + 2, x + 7, y0 + 9], fill=colour, outline=INK)
                x, colour = x + 10, INK
            text = _fit(draw, text, width - x, font)
            draw.text((x, y0), text, fill=colour, font=font)
            x += draw.textlength(text + "  ", font=font)
        times = frame_times(len(row.frames), row.fps) if row.times is None else np.asarray(row.times)
        picks = np.linspace(0, len(row.frames) - 1, columns).round().astype(int)
        for c, f in enumerate(picks):
            frame = row.frames[f]
            if frame.shape[:2] != (h, w):
                frame = np.asarray(Image.fromarray(frame).resize((w, h)))
            sheet.paste(Image.fromarray(frame), (c * (w + gap), y0 + TITLE_H))
            label = _fit(draw, time_label(times[f], row.fps), w, font)
            lw = draw.textlength(label, font=font)
            draw.text((c * (w + gap) + (w - lw) / 2, y0 + TITLE_H + h), label, fill=INK, font=font)
    return np.asarray(sheet)


def stamp_time(frame: np.ndarray, seconds: float, fps: float) -> np.ndarray:
    """``frame`` with its time in the top-left corner (white on a dark box)."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.ascontiguousarray(frame))
    draw, font = ImageDraw.Draw(img), _font()
    text = _fit(draw, time_label(seconds, fps), frame.shape[1] - 2, font)
    draw.rectangle([0, 0, draw.textlength(text, font=font) + 2, 11], fill=(0, 0, 0))
    draw.text((1, 0), text, fill=PAPER, font=font)
    return np.asarray(img)


def grid_animation(grid: list[list[Row]], gap: int = GAP) -> np.ndarray:
    """Frames [T, H', W', 3]: the rows of ``grid`` stacked, the clips of a row side by side, each frame stamped
    with its time (a shorter clip holds its last frame)."""
    from PIL import Image

    t = max(len(clip.frames) for row in grid for clip in row)
    h, w = grid[0][0].frames.shape[1:3]
    cols = max(len(row) for row in grid)
    out = np.full((t, len(grid) * (h + gap) - gap, cols * (w + gap) - gap, 3), 255, np.uint8)
    for r, row in enumerate(grid):
        for c, clip in enumerate(row):
            times = frame_times(len(clip.frames), clip.fps) if clip.times is None else np.asarray(clip.times)
            for f in range(t):
                k = min(f, len(clip.frames) - 1)
                frame = clip.frames[k]
                if frame.shape[:2] != (h, w):
                    frame = np.asarray(Image.fromarray(frame).resize((w, h)))
                out[f, r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = \
                    stamp_time(frame, times[k], clip.fps)
    return out


# -- datasets -----------------------------------------------------------------------------------------------------
def _text(sample: dict[str, Any], key: str) -> Any:
    meta = sample.get("json") if isinstance(sample.get("json"), dict) else {}
    if key in meta:
        return meta[key]
    value = sample.get(f"{key}.txt", sample.get(key))
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _score(value: Any) -> str:
    return f" {value:.3g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


def _drop_rows(sample: dict[str, Any], columns: int | None = None) -> Row:
    """A clip's row; with ``columns``, only the frames a sheet shows are kept (and drawn on)."""
    from vidalign.media import decode_mp4

    frames, fps = decode_mp4(sample["mp4"], source=f"{sample['__key__']}.mp4")
    picks = np.linspace(0, len(frames) - 1, columns).round().astype(int) if columns else np.arange(len(frames))
    times = frame_times(len(frames), fps)[picks]
    frames = frames[picks]
    meta = sample.get("json") if isinstance(sample.get("json"), dict) else {}
    title = [(sample["__key__"], INK)]
    if "mask.npz" in sample:
        masks = sample["mask.npz"]["mask"][picks]
        frames = annotate_clip(frames, masks, meta, indices=picks)
        objects = meta.get("objects") or []
        for i in range(masks.shape[1]):
            o = objects[i] if i < len(objects) else {}
            name = str(o.get("name") or o.get("asset") or f"object {i}")
            title.append((name + (" (dropping)" if i == masks.shape[1] - 1 else ""), object_colour(i), True))
    return Row(frames, fps, title, times=times)


def _pair_rows(sample: dict[str, Any]) -> tuple[Row, Row]:
    from vidalign.media import decode_mp4

    key = sample["__key__"]
    chosen, fps_c = decode_mp4(sample["chosen.mp4"], source=f"{key}.chosen.mp4")
    rejected, fps_r = decode_mp4(sample["rejected.mp4"], source=f"{key}.rejected.mp4")
    prompt = str(_text(sample, "prompt") or "")
    return (Row(chosen, fps_c, [("chosen" + _score(_text(sample, "chosen_score")), CHOSEN), (prompt, INK)]),
            Row(rejected, fps_r, [("rejected" + _score(_text(sample, "rejected_score")), REJECTED), (key, INK)],
                new_group=False))


def write_preview(folder: str | Path, out: str | Path, num_clips: int = 4, config: str | None = None,
                  columns: int = 6) -> Path:
    """Preview the first ``num_clips`` samples of ``config`` (default: the first with video) as ``out``."""
    from vidalign.media import encode_gif, encode_png
    from vidalign.simulation.pisabench import dataset_configs, iter_clips

    out = Path(out)
    if out.suffix.lower() not in (".png", ".gif"):
        raise VidalignError(f"--out={out}: use a .png (contact sheet) or .gif (animation) file name")
    configs = [config] if config else dataset_configs(folder)
    grid: list[list[Row]] = []
    for cfg in configs:
        for sample in iter_clips(folder, cfg, members={"mp4", "mask.npz", "json", "chosen.mp4", "rejected.mp4",
                                                       "prompt.txt"}):
            if len(grid) >= num_clips:
                break
            if "chosen.mp4" in sample and "rejected.mp4" in sample:
                grid.append(list(_pair_rows(sample)))
            elif "mp4" in sample:
                grid.append([_drop_rows(sample, columns if out.suffix.lower() == ".png" else None)])
            else:
                break  # no video in this config: try the next
        if grid:
            break
    if not grid:
        raise VidalignError(f"{folder}: no config with video members (mp4, or chosen.mp4 + rejected.mp4) in "
                            f"{configs}; preview shows video datasets")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".png":
        out.write_bytes(encode_png(contact_sheet([row for rows in grid for row in rows], columns)))
    else:  # pairs: one row each (chosen | rejected); clips: side by side in one row
        rows = grid if len(grid[0]) > 1 else [[clips[0] for clips in grid]]
        out.write_bytes(encode_gif(grid_animation(rows), grid[0][0].fps or 16.0))
    return out


__all__ = ["outline", "project_path", "annotate_clip", "object_colour", "Row", "contact_sheet", "grid_animation",
           "stamp_time", "frame_times", "write_preview", "PALETTE"]
