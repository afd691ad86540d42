import sys
from pathlib import Path

import pytest

from vidalign.builder import BuildOptions
from vidalign.runner import run_build


def build_synthetic(out: Path, n: int = 7, per: int = 3, **kw):
    opts = {k: kw.pop(k) for k in list(kw) if k in BuildOptions.__dataclass_fields__}
    return run_build("synthetic", {"num_samples": n, **kw},
                     BuildOptions(out=out, samples_per_shard=per, progress=False, **opts))


@pytest.fixture
def tiny_ds(tmp_path):
    out = tmp_path / "ds"
    build_synthetic(out, n=7, per=3, video=True)
    return out


@pytest.fixture
def vidalign_cmd():
    return [sys.executable, "-m", "vidalign.cli"]


@pytest.fixture
def synth():
    return build_synthetic
