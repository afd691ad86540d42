"""The same folder loads through datasets (normal, streaming) and webdataset with identical contents and order."""

import datasets
import numpy as np
import webdataset as wds

from vidalign.data import load, restore_dtypes, shard_paths, stream
from vidalign.format import decode_sample
from vidalign.media import decode_mp4


def _canon(sample):
    depth = sample["depth.npy"] if "depth.npy" in sample else sample["depth.npy.gz"]  # vidalign drops the .gz
    return (int(sample["json"]["index"]), np.asarray(depth).astype(np.float16).tobytes(),
            np.asarray(sample["frames.npy"]).astype(np.uint8).tobytes(), np.asarray(sample["mask.npz"]["mask"]).tobytes())


def test_all_loaders_agree(tiny_ds):
    ours = [_canon(s) for s in stream(tiny_ds)]
    assert [c[0] for c in ours] == list(range(7))

    ds = load(tiny_ds, "default", split="train")
    assert ds.features["depth.npy.gz"].dtype == "float16"
    x = ds[4]
    assert x["depth.npy.gz"].dtype == np.float16 and x["depth.npy.gz"].shape == (4, 32, 32)
    assert x["mask.npz"]["mask"].dtype == bool and x["mask.npz"]["mask"].shape == (4, 2, 32, 32)
    # the filterable fields are top-level columns, typed; json keeps the whole record
    assert x["prompt.txt"] == "sample 4" and x["index.json"] == 4 and x["json"]["prompt"] == "sample 4"
    assert [_canon(s) for s in ds] == ours
    assert ds.filter(lambda r: r["index.json"] % 2 == 0).num_rows == 4

    streamed = datasets.load_dataset(str(tiny_ds), "default", split="train", streaming=True)
    assert [_canon(s) for s in streamed.with_format("numpy")] == ours
    ours_streamed = load(tiny_ds, "default", split="train", streaming=True)
    first = restore_dtypes(next(iter(ours_streamed)), ours_streamed.features)
    assert first["frames.npy"].dtype == np.uint8 and first["depth.npy.gz"].dtype == np.float16
    assert [_canon(s) for s in ours_streamed] == ours

    pipe = wds.WebDataset(shard_paths(tiny_ds), shardshuffle=False).map(decode_sample)  # the README's safe decoder
    got = []
    for s in pipe:
        s["mask.npz"] = dict(s["mask.npz"])
        got.append(_canon(s))
    assert got == ours


def test_video_member_decodes(tiny_ds):
    s = next(iter(stream(tiny_ds)))
    frames, fps = decode_mp4(s["mp4"])
    assert frames.shape == (4, 32, 32, 3) and fps == 16
    ds = load(tiny_ds, "default", split="train", video_decode=False)
    v = ds[0]["mp4"]
    assert isinstance(v, dict) and v["bytes"] == s["mp4"]


def test_same_named_folders_do_not_share_a_cache(tmp_path, synth):
    synth(tmp_path / "a" / "ds", n=3, per=3)
    synth(tmp_path / "b" / "ds", n=5, per=3)
    assert len(load(tmp_path / "a" / "ds", "default", split="train")) == 3
    assert len(load(tmp_path / "b" / "ds", "default", split="train")) == 5
