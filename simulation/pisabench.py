"""``vidalign export pisabench``: write drop clips in PisaBench's on-disk layout.

PisaBench's simulated test set is a folder of clip folders, each holding ``rgba_%05d.jpg`` (RGB frames),
``movie.gif``, ``mask.npz`` (key ``mask``, bool [V, N, H, W], the dropping object last) and
``clip_info.json`` (``{"prompt": ...}``), so PISA's own conversion and evaluation scripts (and
``vidalign eval pisa``) read exported clips unchanged. Clip folders are numbered ``00``, ``01``, … in
dataset order; with several configs each goes to its own sub-folder (``train``, ``seen``, ``unseen``,
as PisaBench names its two test sets).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vidalign.errors import VidalignError
from vidalign.format import DATA_DIR

FILES = ("movie.gif", "mask.npz", "clip_info.json")  # plus one rgba_%05d.jpg per frame
GROUP_NAMES = {"train": "train", "test_seen": "seen", "test_unseen": "unseen"}


def dataset_configs(folder: str | Path) -> list[str]:
    configs = sorted(p.name for p in (Path(folder) / DATA_DIR).glob("*") if p.is_dir())
    if not configs:
        raise VidalignError(f"{folder}: no {DATA_DIR}/<config>/ shards; build one with `vidalign build kubric-drop`")
    return configs


def iter_clips(folder: str | Path, config: str, members: set[str] | None = None) -> Iterator[dict[str, Any]]:
    """Decoded samples of one config, in shard order (member paths guarded by the shard reader)."""
    from vidalign.shards import iter_tar_samples

    shards = sorted((Path(folder) / DATA_DIR / config).glob("*.tar"))
    if not shards:
        raise VidalignError(f"{folder}: config {config!r} has no shards; available: {dataset_configs(folder)}")
    for shard in shards:
        yield from iter_tar_samples(shard, members=members)


def write_clip(out: Path, frames: np.ndarray, masks: np.ndarray, info: dict[str, Any], fps: float) -> Path:
    """One PisaBench clip folder (frames uint8 [V, H, W, 3], masks bool [V, N, H, W])."""
    from vidalign.media import encode_gif, encode_jpeg

    if masks.ndim != 4 or masks.shape[0] != frames.shape[0] or masks.shape[2:] != frames.shape[1:3]:
        raise VidalignError(f"{out}: masks {masks.shape} do not match frames {frames.shape}")
    out.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        (out / f"rgba_{i:05d}.jpg").write_bytes(encode_jpeg(frame))
    (out / "movie.gif").write_bytes(encode_gif(frames, fps))
    np.savez_compressed(out / "mask.npz", mask=masks.astype(bool))
    (out / "clip_info.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return out


def export_pisabench(folder: str | Path, out: str | Path, config: str | None = None, limit: int | None = None,
                     overwrite: bool = False) -> list[Path]:
    """Export the clips of a kubric-drop dataset; returns the clip folders written."""
    from vidalign.media import decode_mp4

    folder, out = Path(folder), Path(out)
    configs = [config] if config else dataset_configs(folder)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise VidalignError(f"{out}: folder exists and is not empty; choose another OUT or pass --overwrite")
    written: list[Path] = []
    for cfg in configs:
        base = out if len(configs) == 1 else out / GROUP_NAMES.get(cfg, cfg)
        clips = list(iter_clips(folder, cfg, members={"mp4", "mask.npz", "json"}))[:limit]
        width = max(2, len(str(max(len(clips) - 1, 0))))
        for n, sample in enumerate(clips):
            missing = {"mp4", "mask.npz", "json"} - set(sample)
            if missing:
                raise VidalignError(f"{sample['__url__']}: sample {sample['__key__']} lacks {sorted(missing)}; "
                                    "export needs kubric-drop samples")
            frames, fps = decode_mp4(sample["mp4"], source=f"{sample['__key__']}.mp4")
            meta = sample["json"]
            info = {"prompt": meta.get("prompt", ""), "key": sample["__key__"], "seed": meta.get("seed"),
                    "fps": meta.get("fps", fps)}
            written.append(write_clip(base / f"{n:0{width}d}", frames, sample["mask.npz"]["mask"], info,
                                      meta.get("fps", fps)))
    return written


__all__ = ["export_pisabench", "write_clip", "iter_clips", "dataset_configs", "FILES", "GROUP_NAMES"]
