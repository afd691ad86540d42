"""``vidalign preview``: a contact sheet (PNG) or animated grid (GIF) of a few drop clips.

Each clip gets its mask outlines (tower objects in white, droppers in yellow, the primary dropping object
in red) and the projected trajectories of the droppers' centres (from the clip's camera intrinsics and
extrinsics), so one look shows whether masks, motion and metadata agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vidalign.errors import VidalignError

_TOWER, _DROPPER, _PRIMARY, _PATH = (255, 255, 255), (255, 220, 0), (255, 40, 40), (0, 200, 255)


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


def annotate_clip(frames: np.ndarray, masks: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Frames [T, H, W, 3] with mask outlines and dropper trajectories drawn on."""
    from PIL import Image, ImageDraw

    out = np.array(frames, dtype=np.uint8, copy=True)
    t, n = masks.shape[:2]
    roles = [o.get("role", "dropper") for o in meta.get("objects", [])] or ["dropper"] * n
    paths = [project_path(meta, i) for i in range(n) if roles[i] == "dropper"] if meta.get("objects") else []
    for f in range(min(t, len(out))):
        for i in range(n):
            color = _PRIMARY if i == n - 1 else (_DROPPER if roles[i] == "dropper" else _TOWER)
            out[f][outline(masks[f, i])] = color
        if paths:
            img = Image.fromarray(out[f])
            draw = ImageDraw.Draw(img)
            for path in paths:
                pts = [tuple(p) for p in path[: f + 1]]
                if len(pts) > 1:
                    draw.line(pts, fill=_PATH, width=1)
                x, y = path[min(f, len(path) - 1)]
                draw.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=_PATH)
            out[f] = np.asarray(img)
    return out


def contact_sheet(clips: list[np.ndarray], columns: int = 6, gap: int = 2) -> np.ndarray:
    """One row per clip, ``columns`` evenly spaced frames per row."""
    if not clips:
        raise VidalignError("nothing to preview: no clips")
    h, w = clips[0].shape[1:3]
    sheet = np.full((len(clips) * (h + gap) - gap, columns * (w + gap) - gap, 3), 255, np.uint8)
    for r, frames in enumerate(clips):
        picks = np.linspace(0, len(frames) - 1, columns).round().astype(int)
        for c, f in enumerate(picks):
            sheet[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = frames[f]
    return sheet


def grid_animation(clips: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """Frames [T, H, W', 3] with the clips side by side (shorter clips hold their last frame)."""
    t = max(len(c) for c in clips)
    h, w = clips[0].shape[1:3]
    out = np.full((t, h, len(clips) * (w + gap) - gap, 3), 255, np.uint8)
    for i, frames in enumerate(clips):
        for f in range(t):
            out[f, :, i * (w + gap): i * (w + gap) + w] = frames[min(f, len(frames) - 1)]
    return out


def write_preview(folder: str | Path, out: str | Path, num_clips: int = 4, config: str | None = None,
                  columns: int = 6) -> Path:
    """Preview the first ``num_clips`` clips of ``config`` (default: the first) as ``out`` (.png or .gif)."""
    from vidalign.media import decode_mp4, encode_gif, encode_png
    from vidalign.simulation.pisabench import dataset_configs, iter_clips

    out = Path(out)
    if out.suffix.lower() not in (".png", ".gif"):
        raise VidalignError(f"--out={out}: use a .png (contact sheet) or .gif (animation) file name")
    config = config or dataset_configs(folder)[0]
    clips, fps = [], 16.0
    for sample in iter_clips(folder, config, members={"mp4", "mask.npz", "json"}):
        if len(clips) >= num_clips:
            break
        frames, fps = decode_mp4(sample["mp4"], source=f"{sample['__key__']}.mp4")
        masks = sample["mask.npz"]["mask"] if "mask.npz" in sample else np.zeros((len(frames), 0) + frames.shape[1:3], bool)
        clips.append(annotate_clip(frames, masks, sample.get("json", {})))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".png":
        out.write_bytes(encode_png(contact_sheet(clips, columns)))
    else:
        out.write_bytes(encode_gif(grid_animation(clips), fps or 16.0))
    return out


__all__ = ["outline", "project_path", "annotate_clip", "contact_sheet", "grid_animation", "write_preview"]
