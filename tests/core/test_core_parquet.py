"""Tabular configs: Parquet shards with flat, typed columns, under the same manifest, checksums, resume and verify
as tar shards; read back by the one dispatching reader and by plain ``datasets.load_dataset``."""

import io
import json
from dataclasses import dataclass

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest

from vidalign import manifest as mf
from vidalign.builder import Builder, BuildOptions, Sample, register_builder
from vidalign.cli import main
from vidalign.data import load, shard_paths, stream
from vidalign.errors import VidalignError
from vidalign.parquet import ParquetShardWriter
from vidalign.runner import run_build
from vidalign.shards import count_samples, iter_shard_samples, sha256_file


@register_builder
class _TableBuilder(Builder):
    name = "_table-test"
    tabular = True

    @dataclass
    class Args:
        n: int = 7
        arrays: bool = True

    def plan(self):
        return self.split_range("rows", "train", self.args.n)

    def build_shard(self, job):
        for i in job.indices():
            rng = np.random.default_rng([self.seed, i])
            members = {"json": {"prompt": f"prompt {i}", "chosen": f"c{self.seed}-{i}", "score": float(rng.random()),
                                "tokens": [i, i + 1], "source": {"line": i}, "note": None if i % 2 else "even"}}
            if self.args.arrays:
                members["motion.npy"] = rng.random((3 + i % 2, 4)).astype(np.float32)
            yield Sample(self.key(i), members)


def _build(out, seed=0, **kw):
    return run_build("_table-test", kw, BuildOptions(out=out, seed=seed, samples_per_shard=3, progress=False,
                                                     overwrite=True))


def test_parquet_config_round_trip(tmp_path):
    out = tmp_path / "ds"
    m = _build(out)
    entry = m["configs"]["rows"]
    assert entry["container"] == "parquet" and sorted(entry["shards"]) == [
        f"data/rows/train-0000{i}-of-00003.parquet" for i in range(3)]
    for rel, rec in entry["shards"].items():
        assert rec["sha256"] == sha256_file(out / rel) and count_samples(out / rel) == rec["samples"]
    # flat typed columns on disk, the key first
    schema = pq.read_schema(out / "data/rows/train-00000-of-00003.parquet")
    assert schema.names == ["__key__", "prompt", "chosen", "score", "tokens", "source", "note", "motion.npy"]
    assert str(schema.field("score").type) == "double" and str(schema.field("tokens").type.value_type) == "int64"

    # the one reader: samples as the builder wrote them, from a path or a non-seekable stream
    got = list(stream(out, "rows"))
    assert [s["json"]["prompt"] for s in got] == [f"prompt {i}" for i in range(7)]
    assert got[1]["json"]["note"] is None and got[2]["json"]["source"] == {"line": 2}
    assert got[1]["motion.npy"].dtype == np.float32 and got[1]["motion.npy"].shape == (4, 4)
    raw = (out / shard_paths(out, "rows")[1]).read_bytes()

    class Pipe(io.RawIOBase):  # no seek: like a socket or `curl | ...`
        def __init__(self):
            self.b = io.BytesIO(raw)

        def readinto(self, buf):
            data = self.b.read(len(buf))
            buf[:len(data)] = data
            return len(data)

    piped = list(iter_shard_samples(Pipe(), source="pipe"))
    assert [s["__key__"] for s in piped] == ["s0-00000003", "s0-00000004", "s0-00000005"]
    np.testing.assert_array_equal(piped[0]["motion.npy"], got[3]["motion.npy"])

    # plain datasets: columns as written, arrays with their dtype and shape (declared in the card)
    ds = datasets.load_dataset(str(out), "rows", split="train")
    assert ds.column_names == ["__key__", "prompt", "chosen", "score", "tokens", "source", "note", "motion.npy"]
    assert ds[2]["prompt"] == "prompt 2" and ds[2]["tokens"] == [2, 3]
    arr = ds.with_format("numpy", dtype=None)[1]["motion.npy"]
    assert arr.dtype == np.float32 and arr.shape == (4, 4)
    assert load(out, "rows", split="train")[1]["motion.npy"].dtype == np.float32


def test_parquet_writer_is_atomic_deterministic_and_checked(tmp_path):
    rel = "data/t/train-00000-of-00001.parquet"
    w = ParquetShardWriter(tmp_path / "a", rel)
    w.write("k0", {"json": {"a": 1}})
    with pytest.raises(VidalignError, match="same members"):
        w.write("k1", {"json": {"a": 2}, "x.npy": np.zeros(2)})
    with pytest.raises(VidalignError, match="same fields"):
        w.write("k2", {"json": {"a": 1, "b": 2}})
    assert not w.path.exists()
    rec = w.close()
    assert w.path.exists() and not w.tmp.exists() and rec.samples == 1
    with ParquetShardWriter(tmp_path / "b", rel) as w2:
        w2.write("k0", {"json": {"a": 1}})
    assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    with pytest.raises(VidalignError, match="column of its own"):
        ParquetShardWriter(tmp_path / "e", rel).write("k0", {"json": {"__key__": 1}})
    with pytest.raises(VidalignError, match="cannot be a Parquet column"):
        ParquetShardWriter(tmp_path / "c", rel).write("k0", {"json": {}, "depth.npy.gz": np.zeros(2)})
    with pytest.raises(RuntimeError):
        with ParquetShardWriter(tmp_path / "d", rel) as w3:
            w3.write("k0", {"json": {"a": 1}})
            raise RuntimeError("boom")
    assert not list((tmp_path / "d").rglob("*.parquet*"))


def test_parquet_verify_resume_and_info(tmp_path, capsys):
    out = tmp_path / "ds"
    _build(out, arrays=False)
    assert mf.verify(out) == []
    shard = out / "data/rows/train-00001-of-00003.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert any("train-00001-of-00003.parquet: sha256 mismatch" in p for p in mf.verify(out))
    # resume redoes exactly the damaged shard
    m = run_build("_table-test", {"arrays": False}, BuildOptions(out=out, samples_per_shard=3, progress=False,
                                                                 resume=True))
    assert m["_summary"]["built_shards"] == 1 and mf.verify(out) == []
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "parquet shards" in text and "prompt 0" in text


def test_load_dataset_without_config_name_and_stale_cache(tmp_path):
    out = tmp_path / "ds"
    _build(out, seed=0, arrays=False)
    first = datasets.load_dataset(str(out), split="train")  # no config name: the card marks one default
    assert first[0]["chosen"] == "c0-0"
    _build(out, seed=1, arrays=False)  # same folder, same card apart from the data
    second = datasets.load_dataset(str(out), split="train")
    assert second[0]["chosen"] == "c1-0"  # not the first build's cached Arrow files


def test_folders_keep_one_container(tmp_path, synth):
    out = tmp_path / "ds"
    synth(out, n=2, per=2)
    with pytest.raises(VidalignError, match="datasets#7101"):
        _build(out)
    m = json.loads((out / "manifest.json").read_text())
    assert list(m["configs"]) == ["default"]
