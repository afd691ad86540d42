"""What the trainers read: latent normalisation, pair/group preparation, and the one stream's rank/worker splits
and exact resumption with a transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vidalign.contract import normalize_latents
from vidalign.data import StreamState, stream
from vidalign.errors import InputError
from vidalign.shards import ShardWriter
from vidalign.training.data import ClipPrep, PairPrep, collate_latents, training_stream

LAT = {"latents_mean": [1.0, -1.0], "latents_std": [2.0, 0.5]}


def _pair(i: int) -> dict:
    z = np.full((2, 3, 2, 2), i, np.float16)
    return {"json": {"prompt": f"p{i}", "weight": 0.5 + i, "latents": LAT},
            "chosen_latents.npy": z, "rejected_latents.npy": -z,
            "prompt_embeds.npy": np.ones((4, 3), np.float16), "prompt_mask.npy": np.array([1, 1, 0, 0], bool)}


def write_pair_shards(root, n_shards: int = 3, per_shard: int = 4) -> None:
    i = 0
    for s in range(n_shards):
        with ShardWriter(root, f"data/default/train-{s:05d}-of-{n_shards:05d}.tar") as w:
            for _ in range(per_shard):
                w.write(f"s0-{i:08d}", _pair(i))
                i += 1


def test_normalize_latents_contract():
    z = np.ones((2, 1, 1, 1), np.float16) * np.array([3.0, 0.0], np.float16).reshape(2, 1, 1, 1)
    out = normalize_latents(z, LAT)
    assert out.dtype == np.float32 and out.ravel().tolist() == [1.0, 2.0]  # (3−1)/2, (0+1)/0.5
    assert normalize_latents(z, {"scaling_factor": 0.5}).ravel().tolist() == [1.5, 0.0]
    assert normalize_latents(z, {"latents_mean": None, "scaling_factor": None}).ravel().tolist() == [3.0, 0.0]
    with pytest.raises(InputError, match="json.latents"):
        normalize_latents(z, None)
    with pytest.raises(InputError, match="entries"):
        normalize_latents(z, {"latents_mean": [0.0] * 3, "latents_std": [1.0] * 3})


def test_pair_prep_pairs_weights_and_mask():
    out = PairPrep(weight_key="weight")({"__key__": "k", **_pair(3)}, np.random.default_rng(0))
    assert np.allclose(out["latents_w"][0], (3 - 1) / 2) and np.allclose(out["latents_l"][1], (-3 + 1) / 0.5)
    assert out["weight"] == pytest.approx(3.5)
    assert out["prompt_embeds"][:2].sum() == 6 and out["prompt_embeds"][2:].sum() == 0  # padding zeroed
    with pytest.raises(InputError, match="vidalign encode"):
        PairPrep()({"__key__": "v", "json": {"prompt": "x"}, "chosen.mp4": b"", "rejected.mp4": b""},
                   np.random.default_rng(0))


def test_group_prep_draws_fresh_winner_and_loser():
    cands = [{"member": f"c{i}", "seed": i, "dsr": d, "label": lab}
             for i, (d, lab) in enumerate([(0.9, "winner"), (0.2, "loser"), (None, "invalid"), (0.8, "winner"),
                                           (0.1, "loser")])]
    sample = {"__key__": "g", "json": {"prompt": "x", "candidates": cands, "latents": {"scaling_factor": 1.0}},
              "prompt_embeds.npy": np.zeros((2, 3), np.float32)}
    for i in range(5):
        sample[f"c{i}_latents.npy"] = np.full((1, 1, 1, 1), i, np.float16)
    prep = PairPrep(fmt="auto")
    draws = {(int(o["latents_w"].item()), int(o["latents_l"].item()))
             for o in (prep(sample, np.random.default_rng(s)) for s in range(40))}
    assert draws == {(0, 1), (0, 4), (3, 1), (3, 4)}  # never the invalid candidate
    bad = dict(sample, json={**sample["json"], "candidates": cands[:1]})
    with pytest.raises(InputError, match="1 winners and 0 losers"):
        prep(bad, np.random.default_rng(0))


def test_clip_prep_and_collate():
    s = {"__key__": "c", "json": {"latents": {"scaling_factor": 2.0}}, "latents.npy": np.ones((2, 1, 1, 1)),
         "prompt_embeds.npy": np.ones((3, 2))}
    a = ClipPrep()(s, np.random.default_rng(0))
    b = dict(a, prompt_embeds=np.ones((5, 2), np.float32))
    batch = collate_latents([a, b])
    assert batch["latents"].shape == (2, 2, 1, 1, 1) and batch["latents"].max() == 2.0
    assert batch["prompt_embeds"].shape == (2, 5, 2) and batch["prompt_embeds"][0, 3:].sum() == 0


def _stream_keys(source, batches: int, workers: int, state: StreamState | None = None, rank=0, world=1):
    state = state or StreamState(num_workers=max(1, workers), world_size=world)
    ds = source.replace(transform=PairPrep(), seed=7, rank=rank, world_size=world, state=state)
    dl = DataLoader(ds, batch_size=3, num_workers=workers, collate_fn=collate_latents)
    out, it = [], iter(dl)
    for _ in range(batches):
        out.append(next(it))
    return out


@pytest.mark.parametrize("resample", [False, True])
def test_shard_stream_resumes_exactly(tmp_path, resample):
    write_pair_shards(tmp_path, n_shards=4, per_shard=3)
    source = training_stream(tmp_path, resample=resample)
    assert len(source.urls) == 4
    full = _stream_keys(source, 9, workers=2)
    state = StreamState(num_workers=2)
    for batch in full[:5]:  # an odd count: worker 1 is due next
        state.consume(batch)
    rest = _stream_keys(source, 4, workers=2, state=StreamState.from_json(state.to_json()))
    assert [b["__key__"] for b in rest] == [b["__key__"] for b in full[5:]]
    assert all(torch.equal(r["latents_w"], f["latents_w"]) for r, f in zip(rest, full[5:]))
    keys = [k for b in full for k in b["__key__"]]
    if not resample:  # 2 workers × 2 shards × 3 samples per pass: every sample once per pass
        assert sorted(keys[:12]) == sorted(f"s0-{i:08d}" for i in range(12))


def test_ranks_and_workers_see_disjoint_samples(tmp_path):
    write_pair_shards(tmp_path, n_shards=4, per_shard=2)
    source = training_stream(tmp_path)
    seen = [[s["__key__"] for s in source.pass_samples(r * 2 + w, 4, 0)] for r in range(2) for w in range(2)]
    flat = [k for keys in seen for k in keys]
    assert len(flat) == 8 and len(set(flat)) == 8
    # skipping a whole shard and part of the next equals dropping those samples
    assert [s["__key__"] for s in source.pass_samples(0, 1, 0, skip=3)] == \
        [s["__key__"] for s in source.pass_samples(0, 1, 0)][3:]


def test_lists_datasets_and_streams_feed_the_trainers(tmp_path):
    import datasets

    samples = [{"__key__": f"k{i}", **_pair(i)} for i in range(6)]
    src = training_stream(samples)
    a = [s["__key__"] for s in src.pass_samples(0, 2, 0)]
    b = [s["__key__"] for s in src.pass_samples(1, 2, 0)]
    assert sorted(a + b) == sorted(f"k{i}" for i in range(6)) and not set(a) & set(b)
    write_pair_shards(tmp_path, n_shards=2, per_shard=2)
    adapted = training_stream(stream(str(tmp_path), decode=True))
    assert adapted.decode is False and adapted.epochs is None
    keys = [s["__key__"] for s in adapted.pass_samples(0, 1, 0, skip=1)]
    assert keys == ["s0-00000001", "s0-00000002", "s0-00000003"]
    out = adapted.replace(transform=PairPrep()).first_sample()
    assert out["latents_w"].shape == (2, 3, 2, 2)
    # a datasets.Dataset of the same shards (datasets' WebDataset loader): rows prepare the same way
    ds = datasets.load_dataset("webdataset", data_files=sorted(str(p) for p in tmp_path.rglob("*.tar")),
                               split="train")
    got = training_stream(ds).replace(transform=PairPrep(weight_key="weight")).first_sample()
    assert got["latents_w"].shape == (2, 3, 2, 2) and got["weight"] in (0.5, 1.5, 2.5, 3.5)


def test_video_only_shards_fail_in_one_line(tmp_path):
    with ShardWriter(tmp_path, "data/default/train-00000-of-00001.tar") as w:
        w.write("s0-00000000", {"json": {"prompt": "x"}, "chosen.mp4": b"\x00", "rejected.mp4": b"\x00"})
    s = training_stream(tmp_path).replace(transform=PairPrep())
    with pytest.raises(InputError, match="vidalign encode") as exc:
        s.first_sample()
    assert "\n" not in str(exc.value) and "s0-00000000" in str(exc.value)
