import pytest

from vidalign import manifest as mf
from vidalign.cli import main
from vidalign.data import stream


def _keys(out):
    return sorted(s["__key__"] for s in stream(out, members=["json"]))


def test_process_pool_matches_inline(tmp_path, synth):
    a = synth(tmp_path / "a", n=8, per=2)
    b = synth(tmp_path / "b", n=8, per=2, workers=2)
    sha = lambda m: {p: r["sha256"] for p, r in m["configs"]["default"]["shards"].items()}  # noqa: E731
    assert sha(a) == sha(b)


def test_slices_then_merge(tmp_path):
    out = tmp_path / "ds"
    base = ["build", "synthetic", "--out", str(out), "--num-samples", "10", "--samples-per-shard", "2",
            "--no-progress", "--num-shards", "3"]
    for i in range(3):
        assert main([*base, "--shard-index", str(i)]) == 0
    assert not (out / "manifest.json").exists()
    assert main(["merge-manifests", str(out)]) == 0
    assert mf.verify(out) == []
    assert (out / "README.md").exists() and not (out / "manifest.parts").exists()
    assert len(_keys(out)) == 10


def test_merge_with_missing_slice_fails(tmp_path, capsys):
    out = tmp_path / "ds"
    main(["build", "synthetic", "--out", str(out), "--num-samples", "10", "--samples-per-shard", "2",
          "--no-progress", "--num-shards", "2", "--shard-index", "0"])
    assert main(["merge-manifests", str(out)]) == 2
    assert "missing" in capsys.readouterr().err


def test_ray_executor(tmp_path, synth):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        m = synth(tmp_path / "ds", n=6, per=2, executor="ray", workers=2)
        inline = synth(tmp_path / "ref", n=6, per=2)
    finally:
        ray.shutdown()
    assert m["configs"]["default"]["complete"]
    assert {p: r["sha256"] for p, r in m["configs"]["default"]["shards"].items()} == \
        {p: r["sha256"] for p, r in inline["configs"]["default"]["shards"].items()}
