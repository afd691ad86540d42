"""The one stream: split by rank and worker, shuffled, resumable to the sample, over local shard folders."""

import pytest
import torch

from vidalign.data import StreamState, stream
from vidalign.errors import VidalignError


def test_two_ranks_two_workers_exactly_once(tmp_path, synth):
    out = tmp_path / "ds"
    synth(out, n=22, per=2)  # 11 shards over 4 streams
    seen = []
    for rank in range(2):
        ds = stream(out, rank=rank, world_size=2, decode=True, members=["json"], shuffle=3, shuffle_shards=True)
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
        seen += [s["json"]["index"] for s in loader]
    assert sorted(seen) == list(range(22))


def test_too_few_shards_is_a_clear_error(tmp_path, synth):
    out = tmp_path / "ds"
    synth(out, n=3, per=3)
    with pytest.raises(VidalignError, match="resample"):
        list(stream(out, rank=0, world_size=2))


def test_resample_is_infinite_and_seeded(tmp_path, synth):
    out = tmp_path / "ds"
    synth(out, n=4, per=2)
    take = lambda s: [x["json"]["index"] for _, x in zip(range(12), s)]  # noqa: E731
    a = take(stream(out, resample=True, seed=1, rank=0, world_size=4, members=["json"]))
    b = take(stream(out, resample=True, seed=1, rank=0, world_size=4, members=["json"]))
    assert len(a) == 12 and a == b


def test_epochs_reshuffle_and_every_sample_once_per_pass(tmp_path, synth):
    out = tmp_path / "ds"
    synth(out, n=12, per=2)
    s = stream(out, shuffle=4, shuffle_shards=True, seed=3, epochs=2, members=["json"])
    got = [(x["__pass__"], x["json"]["index"]) for x in s]
    first, second = [i for p, i in got if p == 0], [i for p, i in got if p == 1]
    assert sorted(first) == sorted(second) == list(range(12)) and first != second


@pytest.mark.parametrize("shuffle", [0, 4])
def test_state_resumes_where_stopped(tmp_path, synth, shuffle):
    out = tmp_path / "ds"
    synth(out, n=9, per=2)
    full = [s["__key__"] for s in stream(out, shuffle=shuffle, shuffle_shards=True, seed=5)]
    state = StreamState()
    for s in list(stream(out, shuffle=shuffle, shuffle_shards=True, seed=5))[:4]:
        state.consume(s)
    rest = [s["__key__"] for s in stream(out, shuffle=shuffle, shuffle_shards=True, seed=5, state=state)]
    assert rest == full[4:]


def test_resume_passes_over_whole_shards_unread(tmp_path, synth, monkeypatch):
    out = tmp_path / "ds"
    synth(out, n=9, per=2)
    full = [s["__key__"] for s in stream(out)]
    import vidalign.shards as shards

    read = []
    real = shards.iter_shard_samples
    monkeypatch.setattr(shards, "iter_shard_samples", lambda url, **kw: (read.append(url), real(url, **kw))[1])
    rest = [s["__key__"] for s in stream(out, state=StreamState(positions=[[0, 5]]))]
    assert rest == full[5:]
    assert len(read) == 3  # shards 0 and 1 (4 samples) are counted from headers, never read


def test_dataloader_resume_with_two_workers_is_exact(tmp_path, synth):
    out = tmp_path / "ds"
    synth(out, n=16, per=2)

    def batches(state, n):
        ds = stream(out, shuffle_shards=True, seed=2, epochs=None, members=["json"], state=state)
        it = iter(torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2,
                                              collate_fn=lambda b: {k: [x[k] for x in b] for k in b[0]}))
        return [next(it) for _ in range(n)]

    full = batches(StreamState(num_workers=2), 9)
    state = StreamState(num_workers=2)
    for b in full[:5]:  # an odd count: worker 1 is due next
        state.consume(b)
    rest = batches(StreamState.from_json(state.to_json()), 4)
    assert [b["__key__"] for b in rest] == [b["__key__"] for b in full[5:]]
    first_pass = [k for b in full for k, p in zip(b["__key__"], b["__pass__"]) if p == 0]
    assert len(first_pass) == len(set(first_pass)) == 16  # 2 workers × 4 shards × 2 samples: each once per pass


def test_transform_gets_a_generator_seeded_by_position(tmp_path, synth):
    out = tmp_path / "ds"
    synth(out, n=4, per=2)

    def draw(sample, rng):
        return {"draw": int(rng.integers(1 << 30))}

    a = [s["draw"] for s in stream(out, transform=draw, seed=1)]
    state = StreamState(positions=[[0, 2]])
    b = [s["draw"] for s in stream(out, transform=draw, seed=1, state=state)]
    assert b == a[2:] and len(set(a)) == 4


def test_lists_and_datasets_stream_too(tmp_path):
    import datasets

    rows = [{"__key__": f"k{i}", "prompt": f"p{i}"} for i in range(6)]
    a = [s["prompt"] for s in stream(rows, rank=0, world_size=2)]
    b = [s["prompt"] for s in stream(rows, rank=1, world_size=2)]
    assert sorted(a + b) == [f"p{i}" for i in range(6)] and not set(a) & set(b)
    ds = datasets.Dataset.from_list([{"prompt": f"p{i}"} for i in range(5)])
    assert sorted(s["prompt"] for s in stream(ds)) == [f"p{i}" for i in range(5)]
    it = datasets.Dataset.from_list([{"prompt": f"p{i}"} for i in range(8)]).to_iterable_dataset(num_shards=4)
    halves = [[s["prompt"] for s in stream(it, rank=r, world_size=2)] for r in range(2)]
    assert sorted(halves[0] + halves[1]) == sorted(f"p{i}" for i in range(8)) and not set(halves[0]) & set(halves[1])
    with pytest.raises(VidalignError, match="several splits"):
        stream(datasets.DatasetDict({"train": ds}))


def test_a_bad_member_names_the_shard_and_sample(tmp_path):
    import io
    import tarfile

    path = tmp_path / "data" / "default" / "train-00000-of-00001.tar"
    path.parent.mkdir(parents=True)
    with tarfile.open(path, "w") as tar:
        for name, data in (("s0-00000000.json", b'{"prompt": "x"}'), ("s0-00000000.a.npy", b"not an array")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(VidalignError, match=r"train-00000-of-00001.tar: sample 's0-00000000'") as exc:
        list(stream(tmp_path))
    assert "\n" not in str(exc.value)
