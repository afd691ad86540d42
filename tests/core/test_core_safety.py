"""Safe by construction: pickle-capable members are refused by the writers, `verify` and every reader, even when a
manifest lists them; nothing ever unpickles them."""

import hashlib
import io
import json
import pickle
import tarfile

import pytest
import webdataset as wds

from vidalign import manifest as mf
from vidalign.cli import main
from vidalign.data import load, stream
from vidalign.errors import VidalignError
from vidalign.format import decode_member, decode_sample, encode_member
from vidalign.parquet import ParquetShardWriter
from vidalign.shards import ShardWriter, iter_shard_samples, iter_tar_samples


class _Payload:
    """Unpickling this creates a file: proof that something unpickled it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted(tmp_path, member="state.pyd"):
    """A dataset folder whose shard holds a pickle member and whose manifest lists it, checksums right."""
    marker = tmp_path / "PWNED"
    folder = tmp_path / "ds"
    rel = "data/default/train-00000-of-00001.tar"
    (folder / "data" / "default").mkdir(parents=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, data in (("s0-00000000.json", b'{"i": 0}'), (f"s0-00000000.{member}", pickle.dumps(_Payload(marker)))):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    (folder / rel).write_bytes(buf.getvalue())
    rec = {"path": rel, "samples": 1, "bytes": len(buf.getvalue()), "sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
           "first_key": "s0-00000000", "last_key": "s0-00000000", "members": ["json", member], "schema": {},
           "rejected": []}
    manifest = {"format_version": "2.0", "package_version": "0", "updated": "", "configs": {"default": {
        "builder": "synthetic", "args": {}, "options": {}, "seed": 0, "command": "", "container": "webdataset",
        "splits": {"train": {"shards": 1, "samples": 1}}, "shards": {rel: rec}, "rejected": [], "complete": True}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n"
                                      f"    path: {rel}\n---\n")
    return folder, folder / rel, marker


def test_writers_refuse_pickle_members(tmp_path):
    for member in ("state.pyd", "x.pickle", "pkl", "w.pth", "w.pth.gz"):
        with pytest.raises(VidalignError, match="pickle-capable"):
            with ShardWriter(tmp_path, "data/c/train-00000-of-00001.tar") as w:
                w.write("k0", {"json": {}, member: b"x"})
        with pytest.raises(VidalignError, match="pickle-capable"):
            ParquetShardWriter(tmp_path, "data/p/train-00000-of-00001.parquet").write("k0", {"json": {}, member: b"x"})
    with pytest.raises(VidalignError, match="pickle-capable"):
        encode_member("x.pkl", {"a": 1})
    assert not list(tmp_path.rglob("*.tar")) and not list(tmp_path.rglob("*.parquet"))


@pytest.mark.parametrize("member", ["state.pyd", "obj.pickle.gz"])
def test_crafted_pickle_member_is_refused_everywhere(tmp_path, capsys, member):
    folder, shard, marker = _crafted(tmp_path, member)
    problems = mf.verify(folder)
    assert any(member in p and "pickle-capable" in p for p in problems)
    assert main(["verify", str(folder)]) == 1 and member in capsys.readouterr().err
    for read in (lambda: list(stream(folder)), lambda: list(iter_shard_samples(shard, decode=False)),
                 lambda: list(iter_tar_samples(shard, raw=True)), lambda: load(folder, "default", split="train"),
                 lambda: decode_member(member, shard.read_bytes()),
                 lambda: list(wds.WebDataset(str(shard), shardshuffle=False).map(decode_sample))):
        with pytest.raises(VidalignError, match="pickle-capable"):
            read()
    assert not marker.exists()  # nothing was unpickled
