"""Format 1.0 folders (tar shards only, metadata only in `json`, raw `.npy` depth, no `container` field, a card
without default/fingerprint) still read: load, stream, shard_paths, verify, info.

The folder is written here the way vidalign's 1.0 writer wrote it: GNU tar headers with mtime 0 and mode 644,
`json` first then the other members sorted, `np.save(allow_pickle=False)` / `np.savez_compressed`, the 1.0
manifest fields and the 1.0 card YAML (`license`, `tags`, `configs`, `dataset_info` with `json` first).
"""

import hashlib
import io
import json
import tarfile

import datasets
import numpy as np
import yaml

from vidalign import manifest as mf
from vidalign.commands import info
from vidalign.data import load, shard_paths, stream


def _v10_sample(i):
    rng = np.random.default_rng(i)
    return {"json": {"index": i, "seed": 0, "label": int(i % 3), "prompt": f"sample {i}"},
            "depth.npy": rng.random((2, 8, 8)).astype(np.float16),
            "mask.npz": {"mask": rng.random((2, 1 + i % 2, 8, 8)) > 0.5}}


def _v10_bytes(member, value):
    buf = io.BytesIO()
    if member == "json":
        return json.dumps(value).encode()
    if member.endswith(".npy"):
        np.save(buf, value, allow_pickle=False)
    else:
        np.savez_compressed(buf, **value)
    return buf.getvalue()


def write_format_10(folder, n=5, per=3):
    shards = {}
    total = (n + per - 1) // per
    for s in range(total):
        rel = f"data/default/train-{s:05d}-of-{total:05d}.tar"
        buf = io.BytesIO()
        keys = []
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
            for i in range(s * per, min(n, (s + 1) * per)):
                key = f"s0-{i:08d}"
                keys.append(key)
                for member, value in _v10_sample(i).items():  # json first, then sorted members
                    data = _v10_bytes(member, value)
                    ti = tarfile.TarInfo(f"{key}.{member}")
                    ti.size, ti.mtime, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = len(data), 0, 0o644, 0, 0, "", ""
                    t.addfile(ti, io.BytesIO(data))
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(buf.getvalue())
        shards[rel] = {"path": rel, "samples": len(keys), "bytes": len(buf.getvalue()),
                       "sha256": hashlib.sha256(buf.getvalue()).hexdigest(), "first_key": keys[0],
                       "last_key": keys[-1], "members": ["json", "depth.npy", "mask.npz"], "schema": {},
                       "rejected": [], "seed": 0, "start": s * per, "stop": min(n, (s + 1) * per), "seconds": 0.01}
    manifest = {"format_version": "1.0", "package_version": "0.1.0", "updated": "2025-01-01T00:00:00+00:00",
                "configs": {"default": {
                    "builder": "synthetic", "description": "Random arrays", "args": {"num_samples": n},
                    "options": {"seed": 0, "shard_size": 500.0, "samples_per_shard": per, "on_error": "raise"},
                    "seed": 0, "command": f"vidalign build synthetic --out ds --num-samples {n}",
                    "splits": {"train": {"shards": total, "samples": n}}, "shards": shards, "rejected": [],
                    "complete": True}}}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    feats = datasets.Features({
        "json": {"index": datasets.Value("int64"), "seed": datasets.Value("int64"), "label": datasets.Value("int64"),
                 "prompt": datasets.Value("string")},
        "depth.npy": datasets.Array3D((2, 8, 8), "float16"),
        "mask.npz": {"mask": datasets.List(datasets.Array3D((None, 8, 8), "bool"))}})
    head = {"license": "apache-2.0", "tags": ["synthetic", "vidalign", "webdataset"],
            "configs": [{"config_name": "default",
                         "data_files": [{"split": "train", "path": "data/default/train-*.tar"}]}],
            "dataset_info": [{"config_name": "default", "features": feats._to_yaml_list(),
                              "splits": [{"name": "train", "num_bytes": sum(r["bytes"] for r in shards.values()),
                                          "num_examples": n}]}]}
    (folder / "README.md").write_text("---\n" + yaml.safe_dump(head, sort_keys=False) + "---\n\n# vidalign dataset\n")


def test_format_10_folder_still_reads(tmp_path):
    folder = tmp_path / "v10"
    write_format_10(folder)
    assert mf.verify(folder) == []
    assert info(folder)["format_version"] == "1.0" and info(folder)["configs"]["default"]["container"] == "webdataset"
    assert [p.rsplit("/", 1)[-1] for p in shard_paths(folder)] == ["train-00000-of-00002.tar",
                                                                   "train-00001-of-00002.tar"]
    got = list(stream(folder))
    assert [s["json"]["index"] for s in got] == list(range(5))
    want = _v10_sample(4)
    np.testing.assert_array_equal(got[4]["depth.npy"], want["depth.npy"])
    np.testing.assert_array_equal(got[4]["mask.npz"]["mask"], want["mask.npz"]["mask"])
    ds = load(folder, "default", split="train")
    assert ds[4]["depth.npy"].dtype == np.float16
    np.testing.assert_array_equal(ds[3]["mask.npz"]["mask"], _v10_sample(3)["mask.npz"]["mask"])
    assert ds[3]["mask.npz"]["mask"].shape == (2, 2, 8, 8)
    assert datasets.load_dataset(str(folder), "default", split="train")[0]["json"]["prompt"] == "sample 0"
    assert json.loads((folder / "manifest.json").read_text())["format_version"] == "1.0"  # reading changed nothing
