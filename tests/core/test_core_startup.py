"""What a new user meets first: help that works, start-up that does not pay for unused imports, errors that name
the extra to install."""

import subprocess
import sys

import pytest

from vidalign.cli import main
from vidalign.errors import VidalignError


def test_build_help_lists_builders(capsys):
    assert main(["build", "--help"]) == 0
    out = capsys.readouterr().out
    assert "kubric-drop" in out and "PISA-style physics videos" in out and "dsr-prompts" in out
    assert main(["build"]) == 2  # no builder: the same list, and a usage error status
    with pytest.raises(SystemExit) as exc:
        main(["build", "synthetic", "--help"])
    assert exc.value.code == 0 and "--num-samples" in capsys.readouterr().out


def test_torchcodec_probe_does_not_import_torch():
    code = ("import sys, time; from vidalign.videodecode import torchcodec_available as probe; "
            "mods = set(sys.modules); t = time.perf_counter(); ok = probe(); dt = time.perf_counter() - t; "
            "print(ok, dt, sorted(m for m in set(sys.modules) - mods if m.startswith(('torchcodec', 'torch'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] in ("True", "False") and float(out[1]) < 1.0 and out[2] == "[]", out
    import importlib.util
    import shutil

    if importlib.util.find_spec("torchcodec") and shutil.which("ldconfig") and \
            b"libavcodec.so" in subprocess.run(["ldconfig", "-p"], capture_output=True).stdout:
        assert out[0] == "True"  # torchcodec and Debian's FFmpeg are here (as `make` sets up): it must say so


def test_decoding_without_torchcodec_names_the_extra(tiny_ds, monkeypatch):
    import importlib.util

    import vidalign.data as data
    from vidalign import videodecode

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchcodec"
                        else find_spec(name, *a))
    assert "pip install 'vidalign[torchcodec]'" in str(videodecode.torchcodec_missing())
    monkeypatch.undo()
    assert "finds no FFmpeg libraries" in str(videodecode.torchcodec_missing()) or \
        importlib.util.find_spec("torchcodec") is None
    monkeypatch.setattr(data, "torchcodec_available", lambda: False)  # as on a machine without it
    with pytest.raises(VidalignError, match="video_decode=False to get the mp4 bytes"):
        data.load(tiny_ds, video_decode=True)
