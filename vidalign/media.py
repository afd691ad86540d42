"""Media encoding shared by every builder: H.264 mp4, GIF and PNG, in memory.

Frames are ``uint8`` arrays ``[T, H, W, 3]`` (RGB). Encoding runs in-process through PyAV (libx264), so a
shard member never touches a temporary file. Decoding here is the minimal PyAV path used by tests and
round trips; readers with resampling live in :mod:`vidalign.preprocessing.video_io`.
"""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np

from vidalign.errors import InputError, VidalignError

DEFAULT_CRF = 18


def _check_frames(frames: np.ndarray, what: str = "frames") -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[0] == 0:
        raise VidalignError(
            f"{what} must be a non-empty uint8 array [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}; "
            "convert with (np.clip(x, 0, 1) * 255).astype(np.uint8)"
        )
    return frames


def encode_mp4(frames: np.ndarray, fps: float, crf: int = DEFAULT_CRF, preset: str = "veryfast") -> bytes:
    """H.264 (yuv420p) mp4 bytes of ``frames`` at ``fps``; odd sizes are padded by edge replication."""
    import av

    frames = _check_frames(frames)
    t, h, w, _ = frames.shape
    ph, pw = h + h % 2, w + w % 2
    if (ph, pw) != (h, w):
        frames = np.pad(frames, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        # one thread and no mb-tree: libx264's mb-tree lookahead made identical frames encode to different
        # bytes across runs; without it the same frames always give the same mp4 (and shard sha256)
        stream.options = {"crf": str(crf), "preset": preset, "threads": "1", "x264-params": "mbtree=0"}
        stream.codec_context.thread_count = 1
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def decode_mp4(data: bytes | str, source: str = "<bytes>") -> tuple[np.ndarray, float]:
    """All frames of an mp4 (bytes or path) as uint8 ``[T, H, W, 3]`` and the stream's fps."""
    import av

    src = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    name = source if not isinstance(data, str) else data
    try:
        with av.open(src) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    except (av.FFmpegError, IndexError, ValueError) as exc:
        raise InputError(name, None, f"video does not decode ({type(exc).__name__}: {exc})",
                         "re-encode it as H.264 mp4 or drop it with --on-error skip") from exc
    if not frames:
        raise InputError(name, None, "video has no frames", "re-encode it or drop it with --on-error skip")
    return np.stack(frames), fps


def encode_gif(frames: np.ndarray, fps: float) -> bytes:
    """Animated GIF bytes (loops forever)."""
    from PIL import Image

    frames = _check_frames(frames)
    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(1, round(1000 / fps)), loop=0, optimize=False)
    return buf.getvalue()


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 ``[H, W, 3]`` or ``[H, W]`` image."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of a uint8 ``[H, W, 3]`` image."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
