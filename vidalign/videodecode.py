"""Can ``datasets.Video`` decode here? Answered in milliseconds, without importing torch or torchcodec.

Importing torchcodec imports torch and loads FFmpeg: ~4.6 s in a fresh process, which every command that only
asked the question used to pay. :func:`torchcodec_available` finds the package and ``dlopen``-s the FFmpeg
libraries its core library links instead.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from vidalign.errors import VidalignError

# FFmpeg major version → sonames of the libraries torchcodec's core library for it links (avutil, avcodec,
# avformat, avdevice, avfilter, swscale, swresample)
_FFMPEG_SONAMES = {8: (60, 62, 62, 62, 11, 9, 6), 7: (59, 61, 61, 61, 10, 8, 5), 6: (58, 60, 60, 60, 9, 7, 4),
                   5: (57, 59, 59, 59, 8, 6, 4), 4: (56, 58, 58, 58, 7, 5, 3)}
_FFMPEG_LIBS = ("avutil", "avcodec", "avformat", "avdevice", "avfilter", "swscale", "swresample")


@functools.lru_cache(maxsize=1)
def torchcodec_available() -> bool:
    """Whether ``datasets``' Video feature can decode here: torchcodec is installed and, for an FFmpeg major
    version it ships a core library for, every FFmpeg library that core links can be loaded.

    Checked without importing torchcodec, which imports torch and loads FFmpeg (~4.6 s in a fresh process, paid
    by every command that only asked whether it could): finding the package and ``dlopen``-ing the FFmpeg
    libraries takes milliseconds. Once torchcodec is imported, its own import is the answer.
    """
    import importlib.util

    if "torchcodec.decoders" in sys.modules:
        return True
    try:
        spec = importlib.util.find_spec("torchcodec")
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.submodule_search_locations:
        return False
    package = Path(next(iter(spec.submodule_search_locations)))
    for major, sonames in _FFMPEG_SONAMES.items():
        if not any(package.glob(f"libtorchcodec_core{major}.*")):
            continue
        if all(_loadable(lib, so) for lib, so in zip(_FFMPEG_LIBS, sonames)):
            return True
    return False


def torchcodec_missing() -> VidalignError:
    """The one-line error for decoding video through ``datasets`` where torchcodec cannot run."""
    import importlib.util

    try:
        installed = importlib.util.find_spec("torchcodec") is not None
    except (ImportError, ValueError):
        installed = False
    if not installed:
        return VidalignError("decoding video columns through datasets needs torchcodec: pip install "
                             "'vidalign[torchcodec]' (and FFmpeg libraries: Debian apt-get install ffmpeg, macOS "
                             "brew install ffmpeg), or load with video_decode=False to get the mp4 bytes")
    return VidalignError("torchcodec is installed but finds no FFmpeg libraries (4 to 8) to load: install them "
                         "(Debian apt-get install ffmpeg, macOS brew install ffmpeg), or load with "
                         "video_decode=False to get the mp4 bytes")


def _loadable(lib: str, soname: int) -> bool:
    import ctypes

    if sys.platform == "darwin":
        names = [f"lib{lib}.{soname}.dylib"]
        names += [f"{d}/lib{lib}.{soname}.dylib" for d in (os.environ.get("CONDA_PREFIX", "") + "/lib",
                                                            "/opt/homebrew/lib", "/usr/local/lib") if d != "/lib"]
    elif sys.platform == "win32":
        names = [f"{lib}-{soname}.dll"]
    else:
        names = [f"lib{lib}.so.{soname}"]
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


__all__ = ["torchcodec_available", "torchcodec_missing"]
