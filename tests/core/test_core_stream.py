import pytest
import torch

from vidalign.data import stream
from vidalign.errors import VidalignError


def test_two_ranks_two_workers_exactly_once(tmp_path, synth):
    out = tmp_path / "ds"
    synth(out, n=22, per=2)  # 11 shards over 4 streams
    seen = []
    for rank in range(2):
        ds = stream(out, rank=rank, world_size=2, decode=True, members=["json"])
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
        seen += [s["json"]["index"] for s in loader]
    assert sorted(seen) == list(range(22))


def test_too_few_shards_is_a_clear_error(tmp_path, synth):
    out = tmp_path / "ds"
    synth(out, n=3, per=3)
    with pytest.raises(VidalignError, match="resample=True"):
        list(stream(out, rank=0, world_size=2))


def test_resample_is_infinite_and_seeded(tmp_path, synth):
    out = tmp_path / "ds"
    synth(out, n=4, per=2)
    take = lambda s: [x["json"]["index"] for _, x in zip(range(12), s)]  # noqa: E731
    a = take(stream(out, resample=True, seed=1, rank=0, world_size=4, members=["json"]))
    b = take(stream(out, resample=True, seed=1, rank=0, world_size=4, members=["json"]))
    assert len(a) == 12 and a == b


def test_skip_resumes_where_stopped(tmp_path, synth):
    out = tmp_path / "ds"
    synth(out, n=9, per=2)
    full = [s["__key__"] for s in stream(out, shuffle=4, seed=5)]
    rest = [s["__key__"] for s in stream(out, shuffle=4, seed=5, skip=4)]
    assert rest == full[4:]


def test_skip_without_shuffle_passes_over_whole_shards(tmp_path, synth, monkeypatch):
    out = tmp_path / "ds"
    synth(out, n=9, per=2)
    full = [s["__key__"] for s in stream(out)]
    import vidalign.shards as shards

    read = []
    real = shards.iter_tar_samples
    monkeypatch.setattr(shards, "iter_tar_samples", lambda url, **kw: (read.append(url), real(url, **kw))[1])
    rest = [s["__key__"] for s in stream(out, skip=5)]
    assert rest == full[5:]
    assert len(read) == 3  # shards 0 and 1 (4 samples) are counted from headers, never read
