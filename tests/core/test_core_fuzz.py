"""Fuzz every entry point that reads user data with the inputs a careful user can get wrong: each must fail with
exit status 2 (or 1 with FAIL lines, for `verify` of a damaged shard), one line naming the file, and never print
`internal error`. The CLI runs in this process (`vidalign.cli.main`), so the whole suite takes seconds."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from vidalign.builder import BuildOptions
from vidalign.cli import main
from vidalign.runner import run_build

# -- payloads --------------------------------------------------------------------------------------------------------
BINARY = bytes(range(256)) * 4
JSONL_BAD = {
    "nonutf8": b'{"id": "caf\xe9", "prompt": "x"}\n',
    "syntax": b'{"id": 1, "prompt": \n',
    "nan": b'{"id": 1, "prompt": "x", "score": NaN}\n',
    "infinity": b'{"id": 1, "prompt": "x", "score": -Infinity}\n',
    "overflow": b'{"id": 1, "prompt": "x", "score": 1e999}\n',
    "toplist": b'[1, 2, 3]\n',
    "nested": b"[" * 200000 + b"]" * 200000 + b"\n",
    "binary": BINARY,
    "empty": b"",
}
YAML_BAD = {
    "nonutf8": b"density: caf\xe9\n",
    "syntax": b"density: [1, 2\n",
    "tab": b"a:\n\t- b\n",
    "inf": b"density: .inf\n",
    "nan": b"density: .nan\n",
    "toplist": b"- 1\n- 2\n",
    "scalar": b"just words\n",
    "binary": BINARY,
    "unknown": b"no_such_option_xyz: 1\n",
}
CSV_BAD = {
    "nonutf8": b"type,prompt_id,animal,object,scene,initial_SR,final_SR,prompt\nLR,1,caf\xe9,box,s,a,b,p\n",
    "ragged": b"type,prompt_id,animal,object,scene,initial_SR,final_SR,prompt\nLR,1,cat,box,s,a,b,p,extra,more\n",
    "nocolumn": b"type,prompt_id,animal\nLR,1,cat\n",
    "empty": b"",
    "dupid": (b"type,prompt_id,animal,object,scene,initial_SR,final_SR,prompt\n"
              b"LR,1,cat,box,s,a,b,p\nLR,1,cat,box,s,a,b,p\n"),
    "badgroup": b"type,prompt_id,animal,object,scene,initial_SR,final_SR,prompt,group\nLR,1,cat,box,s,a,b,p,x\n",
    "badtype": b"type,prompt_id,animal,object,scene,initial_SR,final_SR,prompt\nZZ,1,cat,box,s,a,b,p\n",
    "binary": BINARY,
}


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _npy_header(shape, dtype="<f4") -> bytes:
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape!r}, }}".encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


NPY_BAD = {
    "huge": _npy_header((10**12, 263)) + b"\0" * 64,
    "truncated": _npy(np.zeros((50, 263), np.float32))[:4000],
    "object": _npy(np.array([{"a": 1}, None], dtype=object)),
    "garbage": BINARY,
    "pickle": pickle.dumps({"features": [1, 2, 3]}),
    "version": b"\x93NUMPY\x09\x00" + b"\0" * 100,
}


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k, v in members.items():
            z.writestr(k, v)
    return buf.getvalue()


NPZ_BAD = {
    "notzip": BINARY,
    "huge": _zip({"mask.npy": _npy_header((10**6, 10**6), "|b1")}),
    "object": _zip({"mask.npy": _npy(np.array([None, 1], dtype=object))}),
    "nokey": _zip({"other.npy": _npy(np.zeros((2, 1, 4, 4), bool))}),
    "truncated": _zip({"mask.npy": _npy(np.zeros((8, 1, 16, 16), bool))})[:-40],
    "member": _zip({"mask.txt": b"hello"}),
}


# -- shared assets ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_assets")
    a = {"root": root}
    a["ds"] = root / "ds"
    run_build("synthetic", {"num_samples": 3, "video": True}, BuildOptions(out=a["ds"], samples_per_shard=2,
                                                                           progress=False))
    a["prompts_ds"] = root / "prompts_ds"
    run_build("dsr-prompts", {"n": 3, "types": ["LR"]}, BuildOptions(out=a["prompts_ds"], progress=False))
    a["csv"] = a["prompts_ds"] / "prompts.csv"
    a["videos"] = root / "videos"
    a["videos"].mkdir()
    gt = root / "gt" / "c1"
    gt.mkdir(parents=True)
    mask = np.zeros((8, 1, 16, 16), bool)
    mask[:, 0, 4:8, 4:8] = True
    np.savez_compressed(gt / "mask.npz", mask=mask)
    (gt / "clip_info.json").write_text('{"prompt": "A mug falls."}')
    pred = root / "pred" / "c1"
    pred.mkdir(parents=True)
    np.savez_compressed(pred / "mask.npz", mask=mask)
    a["gt"], a["pred"] = root / "gt", root / "pred"
    return a


def _w(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _copy_ds(a, root: Path, name="ds") -> Path:
    dst = root / name
    shutil.copytree(a[name], dst)
    return dst


# -- cases: (id, make(root, assets) -> (argv, expected text in the message[, expected exit code])) ------------------
CASES: list[tuple[str, object]] = []


def case(name):
    def deco(fn):
        CASES.append((name, fn))
        return fn
    return deco


for k, payload in CSV_BAD.items():
    case(f"dsr-prompts-csv-{k}")(lambda r, a, p=payload: (
        ["build", "dsr-prompts", "--from-csv", str(_w(r / "fz_prompts.csv", p)), "--out", str(r / "o")],
        "fz_prompts.csv"))
    case(f"eval-dsr-prompts-{k}")(lambda r, a, p=payload: (
        ["eval", "dsr", "--tracks", str(_w(r / "t.jsonl", b"")), "--prompts", str(_w(r / "fz_p.csv", p))],
        "fz_p.csv"))
    case(f"track-prompts-{k}")(lambda r, a, p=payload: (
        ["track", str(a["videos"]), "--prompts", str(_w(r / "fz_tp.csv", p)), "--out", str(r / "t.jsonl")],
        "fz_tp.csv"))
for k in ("nonutf8", "binary", "ragged"):
    case(f"generate-prompts-{k}")(lambda r, a, p=CSV_BAD[k].replace(b"prompt_id", b"prompt_id"): (
        ["generate", str(_w(r / "fz_gen.csv", p)), "--out", str(r / "o"), "--model",
         str(_w(r / "model" / "model_index.json", b"{}").parent)],
        "fz_gen.csv"))

for k, payload in JSONL_BAD.items():
    case(f"eval-dsr-tracks-{k}")(lambda r, a, p=payload: (
        ["eval", "dsr", "--tracks", str(_w(r / "fz_tracks.jsonl", p)), "--prompts", str(a["csv"])],
        "fz_tracks.jsonl"))
    case(f"import-atom-{k}")(lambda r, a, p=payload: (
        ["import", "atom", str(_w(r / "fz_labels.jsonl", p)), "--sub-task", "frequency", "--out", str(r / "o")],
        "fz_labels.jsonl"))
    case(f"motionprefer-candidates-{k}")(lambda r, a, p=payload: (
        ["build", "motionprefer", "--candidates", str(_w(r / "fz_cands.jsonl", p)), "--sub-task", "frequency",
         "--judge-url", "http://127.0.0.1:9/v1", "--out", str(r / "o")], "fz_cands.jsonl"))
    case(f"pisa-config-{k}")(lambda r, a, p=payload: (
        ["eval", "pisa", "--config", str(_w(r / "fz_metrics.jsonl", p))], "fz_metrics.jsonl"))
    case(f"segment-config-{k}")(lambda r, a, p=payload: (
        ["segment", "--config", str(_w(r / "fz_masks.jsonl", p)), "--out", str(r / "o")], "fz_masks.jsonl"))
    case(f"dsr-pairs-tracks-{k}")(lambda r, a, p=payload: (
        ["build", "dsr-pairs", "--candidates", str(a["ds"]), "--tracks", str(_w(r / "fz_dt.jsonl", p)),
         "--out", str(r / "o")], "fz_dt.jsonl"))

for k in ("nonutf8", "syntax", "toplist", "binary", "nested"):
    case(f"omniscore-{k}")(lambda r, a, p=JSONL_BAD[k]: (
        ["eval", "omniscore", "--vbench", str(_vbench(r, p))], "_eval_results.json"))
    case(f"clip-info-{k}")(lambda r, a, p=JSONL_BAD[k]: (
        ["eval", "pisa", "--gt", str(_clip(r, info=p)), "--pred", str(a["pred"])], "clip_info.json"))
    case(f"videodpo-metadata-{k}")(lambda r, a, p=JSONL_BAD[k]: (
        ["import", "videodpo", str(_w(r / "src" / "metadata.json", p).parent), "--out", str(r / "o")],
        "metadata.json"))


def _vbench(root: Path, payload: bytes) -> Path:
    from vidalign.eval.omniscore import DIMENSIONS

    for dim in DIMENSIONS:
        _w(root / "vb" / f"{dim}_eval_results.json", payload)
    return root / "vb"


def _clip(root: Path, info: bytes | None = None, mask: bytes | None = None) -> Path:
    d = root / "fzgt" / "c1"
    d.mkdir(parents=True)
    m = np.zeros((8, 1, 16, 16), bool)
    m[:, 0, 4:8, 4:8] = True
    _w(d / "mask.npz", mask) if mask is not None else np.savez_compressed(d / "mask.npz", mask=m)
    _w(d / "clip_info.json", info if info is not None else b'{"prompt": "A mug falls."}')
    return d.parent


for k, payload in YAML_BAD.items():
    case(f"scene-config-yaml-{k}")(lambda r, a, p=payload: (
        ["build", "kubric-drop", "--scene-config", str(_w(r / "fz_scene.yaml", p)), "--out", str(r / "o")],
        "fz_scene.yaml"))
    case(f"train-config-{k}")(lambda r, a, p=payload: (
        ["train", "sft", "--config", str(_w(r / "fz_train.yaml", p)), "train_data=" + str(a["ds"]), "--check"],
        "fz_train.yaml"))
for k in ("nonutf8", "syntax", "nan", "infinity", "overflow", "toplist", "binary"):
    case(f"scene-config-json-{k}")(lambda r, a, p=JSONL_BAD[k]: (
        ["build", "kubric-drop", "--scene-config", str(_w(r / "fz_scene.json", p)), "--out", str(r / "o")],
        "fz_scene.json"))
for opt in ("gradient_accumulation_steps=0", "learning_rate=inf", "learning_rate=nan", "max_steps=-1",
            "per_device_train_batch_size=0"):
    case(f"train-override-{opt}")(lambda r, a, o=opt: (
        ["train", "sft", "--config", "pisa_psft", "train_data=" + str(a["ds"]), o, "--check"], o.split("=")[0]))

for k, payload in NPY_BAD.items():
    case(f"atom-features-{k}")(lambda r, a, p=payload: _atom(r, p))
    case(f"motionprefer-features-{k}")(lambda r, a, p=payload: _cands(r, p))
for k, payload in NPZ_BAD.items():
    case(f"pisa-gt-mask-{k}")(lambda r, a, p=payload: (
        ["eval", "pisa", "--gt", str(_clip(r, mask=p)), "--pred", str(a["pred"])], "mask.npz"))
    case(f"pisa-pred-mask-{k}")(lambda r, a, p=payload: (
        ["eval", "pisa", "--gt", str(a["gt"]), "--pred", str(_w(r / "fzpred" / "c1" / "mask.npz", p).parents[1])],
        "mask.npz"))


def _atom(root: Path, features: bytes):
    d = root / "frequency"
    _w(d / "features" / "fz_a.npy", features)
    np.save(d / "features" / "b.npy", np.zeros((50, 263), np.float32))
    rec = {"id": 1, "prompt": "A person jumps.", "sample_1": {"features": "features/fz_a.npy"},
           "sample_2": {"features": "features/b.npy"},
           "chosen": [{"choice": "sample_1", "degree of preference": "Better", "user": "u"}]}
    _w(d / "labels.jsonl", (json.dumps(rec) + "\n").encode())
    return ["import", "atom", str(d / "labels.jsonl"), "--no-trl", "--eval-fraction", "0", "--out",
            str(root / "o")], "fz_a.npy"


def _cands(root: Path, features: bytes):
    _w(root / "fz_m.npy", features)
    np.save(root / "ok.npy", np.zeros((50, 263), np.float32))
    rec = {"id": "p0", "prompt": "A person jumps.", "candidates": ["fz_m.npy", "ok.npy"]}
    _w(root / "cands.jsonl", (json.dumps(rec) + "\n").encode())
    return ["build", "motionprefer", "--candidates", str(root / "cands.jsonl"), "--sub-task", "frequency", "--no-trl",
            "--judge-url", "http://127.0.0.1:9/v1", "--out", str(root / "o")], "fz_m.npy"


class _Huge:
    def __reduce__(self):
        return np.core.multiarray._reconstruct, (np.ndarray, (10**12,), b"b")


PICKLES = {
    "huge-array": pickle.dumps([_Huge()], protocol=2),
    "garbage": BINARY,
    "truncated": pickle.dumps([[0, ["cat"], [[1.0, 2.0, 3.0, 4.0]]]] * 3)[:-7],
    "global": pickle.dumps(os.system),
    "bigbytes": b"\x80\x04\x8e" + (2**40).to_bytes(8, "little") + b"abc",
}
for k, payload in PICKLES.items():
    case(f"dsr-pickle-{k}")(lambda r, a, p=payload: (
        ["eval", "dsr", "--tracks", str(_w(r / "00000_LR_seed00.pkl", p)), "--prompts", str(a["csv"]),
         "--allow-pickle"], "00000_LR_seed00.pkl"))


# -- manifest edits (verify, info, push --dry-run read the manifest) -------------------------------------------------
def _edit(fn):
    def make(root: Path, a, cmd):
        ds = _copy_ds(a, root)
        m = json.loads((ds / "manifest.json").read_text())
        text = fn(m)
        (ds / "manifest.json").write_bytes(text if isinstance(text, bytes) else json.dumps(m).encode())
        argv = {"verify": ["verify", str(ds)], "info": ["info", str(ds)],
                "push": ["push", str(ds), "--repo-id", "a/b", "--dry-run"]}[cmd]
        return argv, "manifest.json"
    return make


def _shard(m):
    return next(iter(m["configs"]["default"]["shards"].values()))


MANIFEST_EDITS = {
    "bytes-str": lambda m: _shard(m).update(bytes="12"),
    "shards-list": lambda m: m["configs"]["default"].update(shards=[1, 2]),
    "sha-nothex": lambda m: _shard(m).update(sha256="zz"),
    "splits-missing": lambda m: m["configs"]["default"].pop("splits"),
    "path-traversal": lambda m: m["configs"]["default"]["shards"].update({"../../../etc/passwd": _shard(m)}),
    "members-str": lambda m: _shard(m).update(members="json"),
    "samples-negative": lambda m: _shard(m).update(samples=-3),
    "configs-list": lambda m: m.update(configs=["default"]),
    "firstkey-int": lambda m: _shard(m).update(first_key=5),
    "nonutf8": lambda m: b'{"configs": "caf\xe9"}',
    "syntax": lambda m: b'{"configs": ',
    "toplist": lambda m: b"[]",
    "future": lambda m: m.update(format_version="9.0"),
}
for k, fn in MANIFEST_EDITS.items():
    for cmd in ("verify", "info", "push"):
        case(f"manifest-{k}-{cmd}")(lambda r, a, f=fn, c=cmd: _edit(f)(r, a, c))


# -- damaged shards whose manifest records match (sha256 passes; the members do not decode) -------------------------
def _retar(ds: Path, change) -> str:
    """Rewrite the first shard with ``change(members: list[(name, bytes)])``, and its manifest record to match."""
    from vidalign.shards import sha256_file

    m = json.loads((ds / "manifest.json").read_text())
    rel = sorted(m["configs"]["default"]["shards"])[0]
    path = ds / rel
    with tarfile.open(path) as t:
        members = [(i.name, t.extractfile(i).read()) for i in t if i.isfile()]
    members = change(members)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    if getattr(change, "lie", False):  # a header that declares more bytes than the file holds
        raw = raw[:124] + b"%011o\0" % (10**11) + raw[136:]
        chk = sum(raw[:148]) + 8 * 32 + sum(raw[156:512])
        raw = raw[:148] + b"%06o\0 " % chk + raw[156:]
    path.write_bytes(raw)
    rec = m["configs"]["default"]["shards"][rel]
    rec.update(bytes=len(raw), sha256=sha256_file(path))
    (ds / "manifest.json").write_text(json.dumps(m))
    return path.name


def _sub(suffix, data):
    def change(members):
        first = members[0][0].split(".")[0]
        return [(n, data if n.startswith(first + ".") and n.endswith(suffix) else d) for n, d in members]
    return change


def _dup(members):
    keys = sorted({n.split(".")[0] for n, _ in members})
    a = [x for x in members if x[0].startswith(keys[0] + ".")]
    b = [x for x in members if x[0].startswith(keys[1] + ".")]
    return a + b + a


def _lie(members):
    return members


_lie.lie = True
SHARD_DAMAGE = {
    "json": _sub(".json", b'{"prompt": '),
    "npy-object": _sub(".npy.gz", __import__("gzip").compress(_npy(np.array([None], dtype=object)))),
    "npy-huge": _sub(".npy.gz", __import__("gzip").compress(_npy_header((10**12,)) + b"\0" * 16)),
    "txt-nonutf8": _sub(".prompt.txt", b"caf\xe9"),
    "gz-invalid": _sub(".npy.gz", b"\x1f\x8b\x08\x00garbage"),
    "duplicate-key": _dup,
    "header-lies": _lie,
}


def _damaged(cmd):
    def make(root: Path, a, change):
        ds = _copy_ds(a, root)
        name = _retar(ds, change)
        argv = {"verify": ["verify", "--decode", str(ds)], "info": ["info", str(ds)],
                "export": ["export", "videodpo", str(ds), str(root / "out"), "--config", "default"]}[cmd]
        return argv, name, (1 if cmd == "verify" else 2)
    return make


for k, change in SHARD_DAMAGE.items():
    for cmd in ("verify", "info") if k != "duplicate-key" else ("verify",):  # info reads one sample
        case(f"shard-{k}-{cmd}")(lambda r, a, c=change, m=cmd: _damaged(m)(r, a, c))

# -- options and environment -----------------------------------------------------------------------------------------
for opt, val in (("--gt-fps", "nan"), ("--gt-fps", "inf"), ("--gt-fps", "0"), ("--pd-fps", "-1"),
                 ("--pd-fps", "nan")):
    case(f"pisa-{opt}-{val}")(lambda r, a, o=opt, v=val: (
        ["eval", "pisa", "--gt", str(a["gt"]), "--pred", str(a["pred"]), o, v], o))
for opt, val in (("--shard-size", "nan"), ("--shard-size", "inf"), ("--cpus-per-task", "0"),
                 ("--lock-timeout", "nan"), ("--gpus-per-task", "-1")):
    case(f"build{opt}-{val}")(lambda r, a, o=opt, v=val: (
        ["build", "synthetic", "--out", str(r / "o"), o, v], o.lstrip("-").replace("-", "_")))
case("eval-dsr-threshold-nan")(lambda r, a: (
    ["eval", "dsr", "--tracks", str(_w(r / "t.jsonl", b"")), "--prompts", str(a["csv"]), "--threshold", "nan"],
    "--threshold"))
case("out-unknown-protocol")(lambda r, a: (
    ["build", "synthetic", "--out", "gcsx://bucket/ds"], "gcsx://"))
case("out-is-a-file")(lambda r, a: (
    ["build", "synthetic", "--out", str(_w(r / "fz_file", b"x"))], "fz_file"))
case("results-disk-full")(lambda r, a: (
    ["eval", "pisa", "--gt", str(a["gt"]), "--pred", str(a["pred"]), "--out", "/dev/full"], "/dev/full"))
case("preview-prompts")(lambda r, a: (["preview", str(a["prompts_ds"])], "prompts_ds"))
case("preview-missing")(lambda r, a: (["preview", str(r / "fz_nothing")], "fz_nothing"))
case("videodpo-symlink-out")(lambda r, a: _videodpo_symlink(r))
case("pisa-symlink-out")(lambda r, a: (
    ["eval", "pisa", "--gt", str(_symlinked_clip(r)), "--pred", str(a["pred"])], "mask.npz"))
case("track-symlink-out")(lambda r, a: (
    ["track", str(_symlinked_video(r)), "--prompts", str(a["csv"]), "--out", str(r / "t.jsonl")], "00000_LR"))


def _symlinked_clip(root: Path) -> Path:
    outside = _w(root / "elsewhere" / "mask.npz", b"PK")
    d = root / "gtl" / "c1"
    d.mkdir(parents=True)
    (d / "mask.npz").symlink_to(outside)
    (d / "clip_info.json").write_text("{}")
    return d.parent


def _symlinked_video(root: Path) -> Path:
    outside = _w(root / "elsewhere" / "x.mp4", b"\0")
    d = root / "vl"
    d.mkdir()
    (d / "00000_LR_seed0.mp4").symlink_to(outside)
    return d


case("track-out-folder")(lambda r, a: (
    ["track", str(_videos(r)), "--prompts", str(a["csv"]), "--out", str(r)], str(r)))


def _videos(root: Path) -> Path:
    d = root / "vids"
    d.mkdir()
    _w(d / "00000_LR_seed0.mp4", b"not really a video")
    return d


def _videodpo_symlink(root: Path):
    outside = _w(root / "elsewhere" / "secret.mp4", b"\0" * 64)
    src = root / "src"
    (src / "winvideos").mkdir(parents=True)
    (src / "losevideos").mkdir()
    (src / "winvideos" / "a.mp4").symlink_to(outside)
    (src / "losevideos" / "b.mp4").symlink_to(outside)
    meta = [{"basic": {"clip_path": "winvideos/a.mp4"}, "misc": {"frame_caption": ["x"]}},
            {"basic": {"clip_path": "losevideos/b.mp4"}, "misc": {"frame_caption": ["x"]}}]
    (src / "metadata.json").write_text(json.dumps(meta))
    (src / "pair.json").write_text(json.dumps([{"video1": 0, "video2": 1, "label": 1, "frame_caption": "x"}]))
    return ["import", "videodpo", str(src), "--check-videos", "none", "--out", str(root / "o")], "a.mp4"


@pytest.mark.parametrize("name,make", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line(name, make, assets, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VIDALIGN_MAX_ARRAY_BYTES", str(1 << 30))
    spec = make(tmp_path, assets)
    argv, expected = spec[0], spec[1]
    code_expected = spec[2] if len(spec) > 2 else 2
    code = main(argv)
    err = capsys.readouterr().err
    assert "internal error" not in err and "Traceback" not in err, err
    assert code == code_expected, err
    if code_expected == 2:  # one error line (progress bars of a build may come before it)
        assert err.count("vidalign: error: ") == 1 and err.rstrip("\n").splitlines()[-1].startswith(
            "vidalign: error: "), err
    assert expected in err, err


def test_enough_cases():
    assert len(CASES) >= 150


def test_push_offline_and_without_token(tiny_ds, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "ENDPOINT", "http://127.0.0.1:9")
    assert main(["push", str(tiny_ds), "--repo-id", "a/b"]) == 2
    err = capsys.readouterr().err
    assert "internal error" not in err and "check the network" in err and len(err.splitlines()) == 1
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(c, "HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    assert main(["push", str(tiny_ds), "--repo-id", "a/b"]) == 2
    assert "no Hugging Face token" in capsys.readouterr().err


def test_full_disk_names_the_path(tmp_path):
    """A build whose shard cannot be written (a file-size limit stands in for a full disk: the same write
    error) names the file and says what to do."""
    import subprocess
    import sys

    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000)); from vidalign.cli import main; "
            f"sys.exit(main(['build', 'synthetic', '--out', {str(tmp_path / 'o')!r}, '--num-samples', '4', "
            "'--size', '64', '--no-progress']))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "internal error" not in p.stderr and "no space left" in p.stderr and ".tar" in p.stderr


def test_info_into_head_is_quiet(tiny_ds):
    import subprocess
    import sys

    p = subprocess.run(f"{sys.executable} -m vidalign.cli info {tiny_ds} | head -1", shell=True,
                       capture_output=True, text=True, timeout=120)
    assert p.stdout.count("\n") == 1 and "Error" not in p.stderr and "internal error" not in p.stderr


@pytest.mark.parametrize("damage", ["json", "txt-nonutf8", "duplicate-key", "npy-huge"])
def test_stream_and_load_name_shard_and_key(damage, assets, tmp_path, monkeypatch):
    import vidalign.data as vd
    from vidalign.errors import VidalignError

    monkeypatch.setenv("VIDALIGN_MAX_ARRAY_BYTES", str(1 << 30))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    ds = _copy_ds(assets, tmp_path)
    name = _retar(ds, SHARD_DAMAGE[damage])
    with pytest.raises(VidalignError) as exc:
        list(vd.stream(ds))
    assert name in str(exc.value) and "s0-0000000" in str(exc.value)
    if damage in ("json", "duplicate-key"):
        with pytest.raises(VidalignError) as exc:
            ds_ = vd.load(ds, split="train")
            ds_[0], ds_[1], ds_[2]  # noqa: B018
        assert name in str(exc.value)
