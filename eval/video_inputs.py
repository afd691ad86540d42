"""Where the videos to evaluate come from: files, frame folders or vidalign shards, listed by name.

``vidalign segment`` and ``vidalign track`` take one argument, VIDEOS, which may be a video file, a folder
of video files and/or clip folders (PisaBench style: ``rgba_00000.jpg`` … or one video file inside), or a
vidalign dataset folder whose samples carry ``*.mp4`` members. Each video is listed with a stable name
(its path relative to VIDEOS, or ``<key>.<member>`` for shards), a ``clip`` name used to match it with a
benchmark clip (file stem, folder name or sample key) and the sample's json for shards. Frames are decoded
only when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidalign.errors import InputError
from vidalign.format import DATA_DIR
from vidalign.media import decode_mp4

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".mkv", ".gif")
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class VideoItem:
    """One video: ``path`` (file or frame folder) or ``tar``+``member`` at ``span`` (offset, size) of a shard,
    plus the sample's json."""

    name: str
    clip: str
    path: str | None = None
    tar: str | None = None
    member: str | None = None
    meta: dict = field(default_factory=dict)
    span: tuple[int, int] | None = None

    def load(self) -> tuple[np.ndarray, float]:
        """Frames uint8 ``[T, H, W, 3]`` and fps (0 when unknown, as for frame folders)."""
        if self.tar is not None:
            from vidalign.shards import read_indexed

            where = f"{self.tar}:{self.member}"
            with open(self.tar, "rb") as fh:
                data = read_indexed(fh, self.member, *self.span, decode=False, source=self.tar)
            return decode_mp4(data, source=where)
        path = Path(self.path)
        if path.is_dir():
            return read_frame_folder(path), 0.0
        return decode_mp4(str(path))


def read_frame_folder(folder: Path) -> np.ndarray:
    """Frames of a clip folder (``rgba_%05d.jpg`` or any sorted images), RGB uint8."""
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        raise InputError(folder, None, "holds no frame images", "put rgba_00000.jpg ... or a video file in it")
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in files]
    if len({f.shape for f in frames}) != 1:
        raise InputError(folder, None, "frame images differ in size", "resize all frames to one size")
    return np.stack(frames)


def _folder_video(folder: Path) -> Path | None:
    """A clip folder's single video file, or the folder itself when it holds frame images."""
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if any(p.suffix.lower() in FRAME_SUFFIXES for p in folder.iterdir()):
        return folder
    if len(videos) == 1:
        return videos[0]
    return None


def _list_shards(root: Path) -> list[VideoItem]:
    """The ``*.mp4`` members of a vidalign folder's tar shards, located by the core's index
    (:func:`vidalign.shards.index_tar`: guarded paths, headers only) with each sample's json read by offset."""
    from vidalign.shards import index_tar, read_indexed

    items: list[VideoItem] = []
    for tar_path in sorted((root / DATA_DIR).rglob("*.tar")):
        with open(tar_path, "rb") as fh:
            for key, members in index_tar(tar_path):
                key = key.rsplit("/", 1)[-1]
                meta = {}
                if "json" in members:
                    try:
                        meta = read_indexed(fh, "json", *members["json"], source=str(tar_path))
                    except ValueError as exc:
                        raise InputError(f"{tar_path}:{key}.json", None, f"not valid JSON ({exc})",
                                         "rebuild the shard") from None
                for member, span in members.items():
                    if member.endswith("mp4"):
                        label = key if member == "mp4" else f"{key}.{member}"
                        items.append(VideoItem(label, key, tar=str(tar_path), member=f"{key}.{member}",
                                               meta=meta if isinstance(meta, dict) else {}, span=span))
    return items


def list_videos(root: str | Path) -> list[VideoItem]:
    """Every video under ``root`` (see the module docstring), sorted by name."""
    root = Path(root)
    if root.is_file():
        return [VideoItem(root.name, root.stem, path=str(root))]
    if not root.is_dir():
        raise InputError(root, None, "not found", "pass a video file, a folder of videos or a vidalign dataset")
    if (root / DATA_DIR).is_dir() and any((root / DATA_DIR).rglob("*.tar")):
        items = _list_shards(root)
    else:
        items = []
        if any(p.suffix.lower() in FRAME_SUFFIXES for p in root.iterdir()):  # root itself is one clip
            return [VideoItem(root.name, root.name, path=str(root))]
        from vidalign.inputs import inside

        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root).as_posix()
            if any(part.startswith(".") for part in p.relative_to(root).parts):
                continue
            if p.is_file():
                inside(p, root, "video")  # never read through a symlink that leaves the folder
            if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES:
                inner = _folder_video(p.parent) if p.parent != root else None
                if inner == p.parent:  # a frame folder's preview (movie.gif): the frames are the clip
                    continue
                if inner == p:  # a clip folder's only video
                    items.append(VideoItem(rel, p.parent.name, path=str(p)))
                else:
                    items.append(VideoItem(rel, p.stem, path=str(p)))
            elif p.is_dir() and any(c.suffix.lower() in FRAME_SUFFIXES for c in p.iterdir()):
                items.append(VideoItem(rel, p.name, path=str(p)))
    if not items:
        raise InputError(root, None, "holds no videos", "pass mp4 files, clip folders or a dataset with mp4 members")
    return sorted(items, key=lambda i: i.name)


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of uint8 ``[T, H, W, 3]`` (identity when the size already matches)."""
    from PIL import Image

    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR)) for f in frames])
