import gzip
import io
import tarfile

import numpy as np
import pytest

from vidalign.errors import VidalignError
from vidalign.format import decode_member, encode_member, safe_member_path, sample_key, split_member
from vidalign.shards import ShardWriter, iter_tar_samples, sha256_file


def test_member_round_trip():
    arr = np.arange(12, dtype=np.float16).reshape(3, 4)
    assert decode_member("depth.npy", encode_member("depth.npy", arr)).dtype == np.float16
    z = decode_member("mask.npz", encode_member("mask.npz", {"mask": arr > 3}))
    assert z["mask"].dtype == bool and z["mask"].sum() == 8
    assert decode_member("json", encode_member("json", {"a": np.int64(3), "b": np.ones(2)})) == {"a": 3, "b": [1, 1]}
    with pytest.raises(VidalignError):
        encode_member("x.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError):
        encode_member("json", {"x": float("nan")})


def test_keys_and_member_split():
    assert sample_key(42, 7) == "s42-00000007"
    assert split_member("a/s42-00000007.chosen.mp4") == ("a/s42-00000007", "chosen.mp4")
    for bad in ("/etc/passwd", "../x.json", "a/../../b.json"):
        with pytest.raises(VidalignError, match="unsafe"):
            safe_member_path(bad)


def test_writer_atomic_and_consistent(tmp_path):
    w = ShardWriter(tmp_path, "data/c/train-00000-of-00001.tar")
    w.write("k0", {"json": {"i": 0}, "x.npy": np.zeros(2)})
    assert w.tmp.exists() and not w.path.exists()  # nothing looks complete before close
    with pytest.raises(VidalignError, match="same members"):
        w.write("k1", {"json": {"i": 1}})
    with pytest.raises(VidalignError, match="duplicate"):
        w.write("k0", {"json": {"i": 1}, "x.npy": np.zeros(2)})
    rec = w.close()
    assert w.path.exists() and not w.tmp.exists()
    assert rec.samples == 1 and rec.sha256 == sha256_file(w.path) and rec.bytes == w.path.stat().st_size
    assert rec.members == ["json", "x.npy"]
    assert [s["__key__"] for s in iter_tar_samples(w.path)] == ["k0"]


def test_writer_abort_on_exception(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path, "data/c/train-00000-of-00001.tar") as w:
            w.write("k0", {"json": {}})
            raise RuntimeError("boom")
    assert not list(tmp_path.rglob("*.tar*"))


def test_same_seed_same_bytes(tmp_path, synth):
    a = synth(tmp_path / "a", seed=3, video=True)  # H.264 included: the encoder is deterministic
    b = synth(tmp_path / "b", seed=3, video=True)
    c = synth(tmp_path / "c", seed=4, video=True)
    sha = lambda m: sorted(r["sha256"] for r in m["configs"]["default"]["shards"].values())  # noqa: E731
    assert sha(a) == sha(b)
    assert sha(a) != sha(c)


def test_reader_refuses_path_traversal(tmp_path):
    p = tmp_path / "evil.tar"
    with tarfile.open(p, "w") as t:
        ti = tarfile.TarInfo("../evil.json")
        ti.size = 2
        t.addfile(ti, io.BytesIO(b"{}"))
    with pytest.raises(VidalignError, match="unsafe tar member"):
        list(iter_tar_samples(p))


def test_gzip_members_and_columns(tmp_path):
    from vidalign.format import Layout

    depth = (np.linspace(0, 5, 4 * 16 * 16).reshape(4, 16, 16)).astype(np.float16)
    assert encode_member("depth.npy.gz", depth) == encode_member("depth.npy.gz", depth)  # mtime 0: same bytes
    back = decode_member("depth.npy.gz", encode_member("depth.npy.gz", depth))
    assert back.dtype == np.float16 and np.array_equal(back, depth)
    lay = Layout(columns=("prompt.txt", "seed.json"), gzip=("depth.npy",))
    with ShardWriter(tmp_path, "data/c/train-00000-of-00001.tar", layout=lay) as w:
        w.write("k0", {"json": {"prompt": "a mug", "seed": 3, "traj": [[0.0, 1.0]]}, "depth.npy": depth})
    with tarfile.open(w.path) as t:
        names = t.getnames()
        raw = t.extractfile("k0.depth.npy.gz").read()
    assert names == ["k0.json", "k0.depth.npy.gz", "k0.prompt.txt", "k0.seed.json"]
    inner = gzip.decompress(raw)  # plain .npy in Fortran order (time fastest): any npy reader gets the same array
    assert b"'fortran_order': True" in inner[:128] and len(raw) < depth.nbytes
    plain = np.load(io.BytesIO(inner), allow_pickle=False)
    assert plain.shape == depth.shape and plain.dtype == np.float16 and np.array_equal(plain, depth)
    (s,) = iter_tar_samples(w.path)
    assert s["depth.npy"].dtype == np.float16 and s["prompt.txt"] == "a mug" and s["seed.json"] == 3
    assert s["json"]["traj"] == [[0.0, 1.0]]
    (r,) = iter_tar_samples(w.path, raw=True)
    assert r["depth.npy.gz"] == raw
    with pytest.raises(VidalignError, match="not a string"):
        with ShardWriter(tmp_path, "data/d/train-00000-of-00001.tar", layout=Layout(columns=("seed.txt",))) as w:
            w.write("k0", {"json": {"seed": 3}})
    with pytest.raises(VidalignError, match="is missing"):
        with ShardWriter(tmp_path, "data/d/train-00000-of-00001.tar", layout=lay) as w:
            w.write("k0", {"json": {"prompt": "x"}, "depth.npy": depth})
    with pytest.raises(VidalignError, match="column 'seed' is invalid"):
        Layout(columns=("seed",))


def test_gzipped_frame_stacks_are_stored_time_fastest():
    """A static background that repeats in every frame: gzip's 32 KB window cannot see one 128 KB frame from the
    next in C order; in Fortran order each pixel's frames are adjacent. Same values back, C-contiguous, and 2-D
    arrays and other members keep C order."""
    rng = np.random.default_rng(0)
    depth = np.repeat(rng.uniform(1, 9, (1, 256, 256)).astype(np.float16), 32, axis=0)
    for t in range(32):  # an object moving over the background
        depth[t, 100 + t : 120 + t, 50:70] = 0.5
    packed = encode_member("depth.npy.gz", depth)
    c_order = gzip.compress(encode_member("depth.npy", depth), 6)
    assert len(packed) * 10 < len(c_order), (len(packed), len(c_order))
    back = decode_member("depth.npy.gz", packed)
    assert back.flags.c_contiguous and back.dtype == np.float16 and np.array_equal(back, depth)
    flat = np.arange(12, dtype=np.int32).reshape(3, 4)
    assert b"'fortran_order': False" in gzip.decompress(encode_member("x.npy.gz", flat))[:128]
    assert b"'fortran_order': False" in encode_member("depth.npy", depth)[:128]
    scalar = decode_member("s.npy.gz", encode_member("s.npy.gz", np.float32(2.5)))
    assert scalar.shape == () and scalar == np.float32(2.5)
