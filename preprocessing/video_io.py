"""Video readers (PyAV, torchcodec, decord) behind one API, plus frame-rate resampling and resizing.

Why three readers: PyAV is dependable and installs everywhere (its wheels bundle FFmpeg), so it is the default;
torchcodec is the maintained fast choice but needs system FFmpeg libraries (``vidalign[torchcodec]``); decord is
fast but unmaintained (wrong frames on some seeks, leaks) and has no wheels for aarch64 or Apple silicon
(``vidalign[decord]``). They are registered by
name in :data:`READERS` and each opens a path or in-memory bytes (a shard member) the same way::

    with get_reader("pyav").open(data, name="shard-00000.tar:s0-00000001.chosen.mp4") as video:
        video.info          # VideoInfo(num_frames, fps, height, width)
        video.frames([0, 2, 4])   # uint8 [T, H, W, 3], RGB

A reader that fails raises one :class:`~vidalign.errors.InputError` naming the file and the next reader
to try. :func:`load_clip` chains it all: sample indices for a target fps and frame count (Wan wants 4k+1
frames), read, resize and centre-crop (or snap to a resolution bucket), and :func:`to_model_input` gives the
``[-1, 1]`` float tensor ``[3, T, H, W]`` that diffusers video VAEs take (clips travel as uint8 until then).
"""

from __future__ import annotations

import io
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidalign.errors import InputError, missing_extra, require

READER_ORDER = ("pyav", "torchcodec", "decord")
DEFAULT_READER = "pyav"  # PyAV ships wheels (with FFmpeg) everywhere; decord is an extra (vidalign[decord])
FRAME_RULES = ("4k+1", "any")
RESIZE_MODES = ("crop", "bucket", "none")


@dataclass(frozen=True)
class VideoInfo:
    """What a reader knows about a stream before decoding it."""

    num_frames: int
    fps: float
    height: int
    width: int


def source_name(source: Any, name: str | None = None) -> str:
    """How errors name a source: the given name, else the path, else ``<bytes>``."""
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return "<bytes>"


def next_reader(name: str) -> str:
    """The reader an error suggests after ``name`` fails (the next one in :data:`READER_ORDER`)."""
    i = READER_ORDER.index(name) if name in READER_ORDER else -1
    return READER_ORDER[(i + 1) % len(READER_ORDER)]


def _fail(reader: str, source: str, exc: BaseException | str) -> InputError:
    detail = exc if isinstance(exc, str) else f"{type(exc).__name__}: {str(exc).strip() or 'no detail'}"
    return InputError(source, None, f"reader {reader!r} could not decode this video ({detail})",
                      f"try --reader {next_reader(reader)}, re-encode it as H.264 mp4, or skip it with --on-error skip")


def _check_indices(indices: Sequence[int], n: int, reader: str, source: str) -> list[int]:
    out = [int(i) for i in indices]
    bad = [i for i in out if i < 0 or i >= n]
    if bad:
        raise InputError(source, None, f"frame index {bad[0]} is outside the video's {n} frames",
                         "request fewer frames or a lower fps")
    return out


class VideoHandle(ABC):
    """An open video. Subclasses fill :attr:`info`, keep their decoder in ``_impl`` and implement
    :meth:`_read`; use as a context manager so the decoder is released."""

    reader = "base"

    def __init__(self, name: str):
        self.name = name
        self.info: VideoInfo
        self._impl: Any = None

    def frames(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """uint8 ``[T, H, W, 3]`` of ``indices`` (all frames when None), in the order given."""
        idx = list(range(self.info.num_frames)) if indices is None else \
            _check_indices(indices, self.info.num_frames, self.reader, self.name)
        if not idx:
            return np.zeros((0, self.info.height, self.info.width, 3), np.uint8)
        try:
            out = self._read(idx)
        except InputError:
            raise
        except Exception as exc:  # every backend has its own error types; one message for all of them
            raise _fail(self.reader, self.name, exc) from exc
        if out.shape[0] != len(idx):
            raise _fail(self.reader, self.name, f"got {out.shape[0]} of {len(idx)} requested frames; the file "
                                                "is probably truncated")
        return out

    @abstractmethod
    def _read(self, indices: list[int]) -> np.ndarray:
        """Decode ``indices`` (valid, non-empty) into uint8 ``[T, H, W, 3]``."""

    def close(self) -> None:
        """Drop the decoder so its native buffers are freed now rather than at garbage collection."""
        self._impl = None

    def __enter__(self) -> VideoHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _DecordHandle(VideoHandle):
    reader = "decord"

    def __init__(self, source: Any, name: str, threads: int):
        super().__init__(name)
        try:
            import decord
        except ImportError as exc:
            raise missing_extra("decord", "decord") from exc

        uri = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else os.fspath(source)
        try:
            vr = decord.VideoReader(uri, ctx=decord.cpu(0), num_threads=threads)
            n = len(vr)
            h, w = vr[0].shape[:2]  # decord exposes no size: decode the first (key) frame
            vr.seek(0)
            fps = float(vr.get_avg_fps())
        except Exception as exc:
            raise _fail(self.reader, name, exc) from exc
        self._impl = vr
        self.info = VideoInfo(n, fps, int(h), int(w))

    def _read(self, indices: list[int]) -> np.ndarray:
        # decode in ascending order (decord's random seeks are the buggy path), then restore the request order
        uniq = sorted(set(indices))
        got = self._impl.get_batch(uniq).asnumpy()
        pos = {i: k for k, i in enumerate(uniq)}
        return got[[pos[i] for i in indices]]


class _PyAVHandle(VideoHandle):
    reader = "pyav"

    def __init__(self, source: Any, name: str, threads: int):
        super().__init__(name)
        import av

        self._impl = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) \
            else os.fspath(source)
        self._threads = threads
        try:
            with av.open(self._impl) as container:
                stream = container.streams.video[0]
                fps = float(stream.average_rate or stream.guessed_rate or 0)
                n = stream.frames or sum(1 for p in container.demux(stream) if p.size)
                h, w = stream.codec_context.height, stream.codec_context.width
        except Exception as exc:
            raise _fail(self.reader, name, exc) from exc
        self.info = VideoInfo(int(n), fps, int(h), int(w))

    def _read(self, indices: list[int]) -> np.ndarray:
        import av

        if isinstance(self._impl, io.BytesIO):
            self._impl.seek(0)
        wanted = set(indices)
        last = max(indices)
        got: dict[int, np.ndarray] = {}
        with av.open(self._impl) as container:
            stream = container.streams.video[0]
            if self._threads != 1:
                stream.thread_type = "AUTO"
                stream.codec_context.thread_count = max(0, self._threads)
            # sequential decode from the start: exact frame indices, no seek ambiguity
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    got[i] = frame.to_ndarray(format="rgb24")
                if i >= last:
                    break
        missing = [i for i in indices if i not in got]
        if missing:
            raise _fail(self.reader, self.name, f"frame {missing[0]} is missing; the file is probably truncated")
        return np.stack([got[i] for i in indices])


class _TorchCodecHandle(VideoHandle):
    reader = "torchcodec"

    def __init__(self, source: Any, name: str, threads: int):
        super().__init__(name)
        decoders = import_torchcodec()
        src = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else os.fspath(source)
        try:
            dec = decoders.VideoDecoder(src, seek_mode="exact", dimension_order="NHWC",
                                        num_ffmpeg_threads=max(0, threads))
            meta = dec.metadata
            n = int(meta.num_frames or len(dec))
            fps = float(meta.average_fps or 0.0)
            h, w = int(meta.height), int(meta.width)
        except Exception as exc:
            raise _fail(self.reader, name, exc) from exc
        self._impl = dec
        self.info = VideoInfo(n, fps, h, w)

    def _read(self, indices: list[int]) -> np.ndarray:
        return self._impl.get_frames_at(indices).data.numpy()


def import_torchcodec() -> Any:
    """``torchcodec.decoders``, or a one-line error: not installed, or installed without FFmpeg libraries."""
    try:
        import torchcodec.decoders as decoders
    except ModuleNotFoundError as exc:
        raise missing_extra("torchcodec", "torchcodec") from exc
    except (OSError, RuntimeError) as exc:  # the wheel loads libavcodec & co. at import time
        raise InputError("torchcodec", None, f"torchcodec is installed but cannot load FFmpeg "
                         f"({str(exc).splitlines()[0][:160]})",
                         "install the system FFmpeg libraries (Debian: apt-get install ffmpeg; macOS: brew "
                         "install ffmpeg) or use --reader pyav") from exc
    return decoders


@dataclass(frozen=True)
class Reader:
    """A registered reader: ``open(source, name)`` returns a :class:`VideoHandle`."""

    name: str
    handle: type[VideoHandle]
    threads: int = 1

    def open(self, source: Any, name: str | None = None) -> VideoHandle:
        label = source_name(source, name)
        if isinstance(source, (str, os.PathLike)) and not Path(source).is_file():
            raise InputError(label, None, "no such video file", "check the path")
        return self.handle(source, label, self.threads)


READERS: dict[str, type[VideoHandle]] = {
    "decord": _DecordHandle,
    "pyav": _PyAVHandle,
    "torchcodec": _TorchCodecHandle,
}


def get_reader(name: str = DEFAULT_READER, threads: int = 1) -> Reader:
    """The reader registered as ``name`` (``decord``, ``pyav``, ``torchcodec``)."""
    require(name in READERS, "reader", "name", name, f"choose one of {', '.join(READERS)}")
    return Reader(name, READERS[name], threads)


def read_video(source: Any, reader: str = DEFAULT_READER, indices: Sequence[int] | None = None,
               name: str | None = None) -> tuple[np.ndarray, VideoInfo]:
    """Frames (uint8 ``[T, H, W, 3]``) and stream info of a path or bytes in one call."""
    with get_reader(reader).open(source, name) as video:
        return video.frames(indices), video.info


# ---------------------------------------------------------------------------------------------------------
# resampling


def largest_4k1(n: int) -> int:
    """The largest ``4k + 1 <= n`` (0 when ``n < 1``): Wan's VAE compresses time by 4 after the first frame."""
    return 0 if n < 1 else 4 * ((n - 1) // 4) + 1


def sample_indices(num_src: int, src_fps: float, frames: int | None = None, fps: float | None = None,
                   frame_rule: str = "4k+1", start: int = 0, name: str = "<video>") -> list[int]:
    """Source frame indices for a clip of ``frames`` frames at ``fps`` starting at source frame ``start``.

    Target frame k sits at time k/fps and takes the nearest source frame, ``start + floor(k * src_fps/fps
    + 1/2)``. ``fps=None`` keeps the source rate; ``frames=None`` takes as many as fit, cut down to 4k+1
    under ``frame_rule="4k+1"``. A clip too short for ``frames`` is an :class:`InputError`.
    """
    require(frame_rule in FRAME_RULES, "ClipSpec", "frame_rule", frame_rule, f"choose one of {FRAME_RULES}")
    if frames is not None and frame_rule == "4k+1":
        require(frames % 4 == 1, "ClipSpec", "frames", frames, "use 4k+1 frames (17, 33, 49, 81, ...) or "
                "frame_rule='any'")
    if src_fps <= 0 or not math.isfinite(src_fps):
        if fps is not None:
            raise InputError(name, "fps", f"stream reports fps {src_fps}", "leave --fps unset to keep every frame")
        src_fps = 1.0
    step = 1.0 if fps is None else src_fps / fps
    span = num_src - 1 - start  # the last usable offset from ``start``

    def offset(k: int) -> int:
        return int(math.floor(k * step + 0.5))

    # count k >= 0 with offset(k) <= span: about (span + 0.5) / step, corrected for float rounding
    avail = max(0, math.ceil((span + 0.5) / step)) if span >= 0 else 0
    while avail > 0 and offset(avail - 1) > span:
        avail -= 1
    while span >= 0 and offset(avail) <= span:
        avail += 1
    want = frames if frames is not None else (largest_4k1(avail) if frame_rule == "4k+1" else avail)
    if want < 1 or avail < want:
        rate = f" at {fps:g} fps" if fps is not None else ""
        raise InputError(name, None, f"clip has {num_src} frames at {src_fps:g} fps, giving {avail} frames{rate}; "
                         f"{want if frames is not None else 'at least 1'} needed",
                         "lower --frames or --fps, or skip it with --on-error skip")
    return [start + offset(k) for k in range(want)]


# ---------------------------------------------------------------------------------------------------------
# resizing


def choose_bucket(height: int, width: int, buckets: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The bucket ``(h, w)`` whose aspect ratio is closest to the frame's (in log ratio; ties: larger area)."""
    ratio = math.log(width / height)
    return min(buckets, key=lambda b: (abs(math.log(b[1] / b[0]) - ratio), -b[0] * b[1]))


def resize_center_crop(frames: Any, height: int, width: int) -> Any:
    """Scale ``[T, C, H, W]`` float frames so they cover ``height x width`` (antialiased), then centre-crop."""
    import torch.nn.functional as F

    h, w = frames.shape[-2:]
    scale = max(height / h, width / w)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    if (nh, nw) != (h, w):
        frames = F.interpolate(frames, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (nh - height) // 2, (nw - width) // 2
    return frames[..., top:top + height, left:left + width]


@dataclass(frozen=True)
class ClipSpec:
    """What a model wants from a video: frame count and rate, size, and how to get there."""

    frames: int | None = 81
    fps: float | None = None
    height: int | None = 480
    width: int | None = 832
    resize: str = "crop"
    buckets: tuple[tuple[int, int], ...] = ()
    frame_rule: str = "4k+1"
    start: int = 0

    def __post_init__(self) -> None:
        require(self.frames is None or self.frames >= 1, "ClipSpec", "frames", self.frames, "use a positive count")
        if self.frames is not None and self.frame_rule == "4k+1":
            require(self.frames % 4 == 1, "ClipSpec", "frames", self.frames,
                    "use 4k+1 frames (17, 33, 49, 81, ...) for Wan-style VAEs, or frame_rule='any'")
        require(self.frame_rule in FRAME_RULES, "ClipSpec", "frame_rule", self.frame_rule, f"one of {FRAME_RULES}")
        require(self.fps is None or self.fps > 0, "ClipSpec", "fps", self.fps, "use a positive fps or None")
        require(self.resize in RESIZE_MODES, "ClipSpec", "resize", self.resize, f"one of {RESIZE_MODES}")
        require(self.start >= 0, "ClipSpec", "start", self.start, "use a frame index >= 0")
        if self.resize == "crop":
            require((self.height is None) == (self.width is None), "ClipSpec", "height/width",
                    (self.height, self.width), "set both or neither")
            for f in ("height", "width"):
                v = getattr(self, f)
                require(v is None or (v > 0 and v % 2 == 0), "ClipSpec", f, v, "use an even positive size")
        if self.resize == "bucket":
            require(len(self.buckets) > 0 and all(len(b) == 2 and b[0] > 0 and b[1] > 0 for b in self.buckets),
                    "ClipSpec", "buckets", self.buckets, "give (height, width) pairs, e.g. ((480, 832), (832, 480))")

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """Output ``(h, w)`` for a source of ``height x width``."""
        if self.resize == "bucket":
            return choose_bucket(height, width, self.buckets)
        if self.resize == "none" or self.height is None:
            return height, width
        return self.height, self.width


@dataclass
class Clip:
    """A loaded clip: uint8 frames ``[3, T, H, W]`` (torch, resized), the source indices and the clip's fps."""

    video: Any
    indices: list[int]
    fps: float
    source: VideoInfo

    def model_input(self, dtype: Any = None, device: Any = None) -> Any:
        """The ``[-1, 1]`` float tensor ``[3, T, H, W]`` a VAE takes."""
        return normalize(self.video, dtype, device)


def resize_frames(frames: np.ndarray, height: int | None = None, width: int | None = None) -> Any:
    """uint8 ``[T, H, W, 3]`` → uint8 torch ``[3, T, h, w]``, resized (antialiased) and centre-cropped.

    Staying in uint8 keeps a decoded 81x480x832 clip at 97 MB instead of 388 MB in float32 while it waits in a
    DataLoader queue; the one rounding after resizing is what any image library does too.
    """
    import torch

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    if height is not None and width is not None and tuple(x.shape[-2:]) != (height, width):
        x = resize_center_crop(x.float(), height, width).round_().clamp_(0, 255).to(torch.uint8)
    return x.permute(1, 0, 2, 3).contiguous()


def normalize(video: Any, dtype: Any = None, device: Any = None) -> Any:
    """uint8 ``[..., H, W]`` → float in [-1, 1] (``x / 127.5 - 1``), converted on ``device`` (the GPU when set)."""
    import torch

    x = torch.as_tensor(video).to(device=device, non_blocking=True)
    return x.to(dtype or torch.float32).div_(127.5).sub_(1.0)


def to_model_input(frames: np.ndarray, height: int | None = None, width: int | None = None) -> Any:
    """uint8 ``[T, H, W, 3]`` → float32 torch ``[3, T, h, w]`` in [-1, 1], resized and centre-cropped."""
    return normalize(resize_frames(frames, height, width))


def load_clip(source: Any, spec: ClipSpec, reader: str = DEFAULT_READER, name: str | None = None,
              threads: int = 1) -> Clip:
    """Read the frames ``spec`` asks for from a path or bytes, resized to the spec's size (uint8)."""
    with get_reader(reader, threads).open(source, name) as video:
        info = video.info
        indices = sample_indices(info.num_frames, info.fps, spec.frames, spec.fps, spec.frame_rule, spec.start,
                                 video.name)
        frames = video.frames(indices)
    h, w = spec.target_size(frames.shape[1], frames.shape[2])
    fps = spec.fps if spec.fps is not None else info.fps
    return Clip(resize_frames(frames, h, w), indices, float(fps), info)


def to_uint8(video: Any) -> np.ndarray:
    """Inverse of :func:`to_model_input` without the resize: ``[3, T, H, W]`` in [-1, 1] → uint8 ``[T, H, W, 3]``."""
    import torch

    v = torch.as_tensor(video).detach().float().clamp(-1, 1)
    return ((v.permute(1, 2, 3, 0) + 1.0) * 127.5).round().to(torch.uint8).cpu().numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 arrays in dB (inf when equal)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)
