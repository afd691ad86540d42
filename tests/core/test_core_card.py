"""The dataset card: Hub metadata, a default config, one section per config, a fingerprint, no local paths."""

import re
from dataclasses import dataclass

import datasets
import numpy as np
import yaml

from vidalign.builder import Builder, BuildOptions, Sample, register_builder
from vidalign.card import scrub_paths
from vidalign.data import collate, load
from vidalign.runner import run_build


@register_builder
class _ConfigBuilder(Builder):
    name = "_card-test"
    license = "other"
    license_name = "test-license"
    license_link = "https://example.org/license"
    pretty_name = "Card test"
    task_categories = ["text-to-video"]
    tags = ["cardtest"]
    columns = ("prompt.txt", "n.json")

    @dataclass
    class Args:
        config: str = "a"
        source: str = ""  # an input path, as real builders take

    def plan(self):
        return self.split_range(self.args.config, "train", 3)

    def build_shard(self, job):
        for i in job.indices():
            yield Sample(self.key(i), {"json": {"prompt": f"{job.config} {i}", "n": i},
                                       "x.npy": np.full((2, 2), i, np.int16)})

    def card_body(self, manifest, folder):
        return f"Notes on `{self.args.config}` read from `{self.args.source}`."


def test_card_metadata_sections_and_paths(tmp_path):
    out = tmp_path / "ds"
    src = str(tmp_path / "inputs" / "table.csv")
    for config in ("b", "a"):
        run_build("_card-test", {"config": config, "source": src}, BuildOptions(out=out, progress=False))
    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["license"] == "other" and meta["license_name"] == "test-license"
    assert meta["license_link"] == "https://example.org/license"
    assert meta["pretty_name"] == "Card test" and meta["task_categories"] == ["text-to-video"]
    assert meta["size_categories"] == ["n<1K"] and {"cardtest", "vidalign", "webdataset"} <= set(meta["tags"])
    assert [(c["config_name"], c.get("default", False)) for c in meta["configs"]] == [("b", True), ("a", False)]
    assert all(re.search(r"fingerprint [0-9a-f]{16}", c["description"]) for c in meta["configs"])
    features = [f["name"] for f in meta["dataset_info"][0]["features"]]
    assert features == ["__key__", "json", "n.json", "prompt.txt", "x.npy"]
    # one section per config, each with its own builder's notes, and no local absolute path anywhere
    assert "## Config `a`" in card and "## Config `b`" in card
    assert "Notes on `a` read from `table.csv`" in card and "Notes on `b` read from `table.csv`" in card
    assert str(tmp_path) not in card and "/tmp/" not in card
    # plain datasets: no config name needed, columns typed
    ds = datasets.load_dataset(str(out), split="train")
    assert ds[1]["prompt.txt"] == "b 1" and ds[1]["n.json"] == 1 and ds.features["n.json"].dtype == "int64"
    assert datasets.load_dataset(str(out), "a", split="train")[2]["json"] == {"prompt": "a 2", "n": 2}


def test_scrub_paths_keeps_urls_and_relative_paths():
    text = ("vidalign build x --out /tmp/abc/ds --jsonl /home/u/atom/labels.jsonl see https://host.org/a/b "
            "and data/pairs/train-*.tar, `/work/x/y.mp4`")
    assert scrub_paths(text) == ("vidalign build x --out ds --jsonl labels.jsonl see https://host.org/a/b "
                                 "and data/pairs/train-*.tar, `y.mp4`")


def test_masks_load_fast_path_and_collate(tmp_path, synth):
    out = tmp_path / "ds"
    synth(out, n=4, per=4)
    ds = load(out, "default", split="train")
    assert ds.format["type"] == "vidalign"
    rows = [ds[i] for i in range(4)]
    assert [r["mask.npz"]["mask"].shape[1] for r in rows] == [1, 2, 3, 1]  # N varies
    plain = datasets.load_dataset(str(out), "default", split="train").with_format("numpy")
    for i, r in enumerate(rows):
        assert r["mask.npz"]["mask"].dtype == bool
        np.testing.assert_array_equal(r["mask.npz"]["mask"], plain[i]["mask.npz"]["mask"])
    batch = ds[0:3]
    assert [m["mask"].shape for m in batch["mask.npz"]] == [(4, n, 32, 32) for n in (1, 2, 3)]  # as datasets
    b = collate(rows[:3])
    mask = b["mask.npz"]["mask"]
    assert tuple(mask.shape) == (3, 4, 3, 32, 32) and str(mask.dtype) == "torch.bool"
    assert b["mask.npz"]["mask.shape"].tolist() == [[4, 1, 32, 32], [4, 2, 32, 32], [4, 3, 32, 32]]
    assert not mask[0, :, 1:].any() and bool((mask[1, :, :2] == rows[1]["mask.npz"]["mask"]).all().item())
    assert tuple(b["depth.npy.gz"].shape) == (3, 4, 32, 32) and b["prompt.txt"] == ["sample 0", "sample 1", "sample 2"]
