import subprocess
import sys

import pytest

from vidalign.cli import main
from vidalign.hub import upload_files


@pytest.mark.parametrize("argv, needle", [
    (["build", "nope", "--out", "x"], "unknown builder"),
    (["build", "synthetic", "--out", "{tmp}/x", "--num-samples", "0"], "num_samples"),
    (["build", "synthetic", "--out", "{tmp}/x", "--samples-per-shard", "0"], "samples_per_shard"),
    (["build", "synthetic", "--out", "{tmp}/x", "--shard-index", "3"], "--num-shards"),
    (["verify", "{tmp}/missing"], "not a dataset folder"),
    (["info", "{tmp}"], "manifest.json"),
    (["push", "{tmp}", "--repo-id", "noslash"], "ORG/NAME"),
])
def test_bad_input_is_one_line(tmp_path, capsys, argv, needle):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_bad_flag_via_console_script(tmp_path):
    r = subprocess.run([sys.executable, "-m", "vidalign.cli", "build", "synthetic", "--out", str(tmp_path),
                        "--frames", "abc"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--frames" in r.stderr


def test_rebuild_without_resume_is_refused(tiny_ds, capsys):
    assert main(["build", "synthetic", "--out", str(tiny_ds), "--num-samples", "7", "--samples-per-shard", "3",
                 "--video", "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["build", "synthetic", "--out", str(tiny_ds), "--num-samples", "9", "--no-progress"]) == 2
    assert "different" in capsys.readouterr().err
    assert main(["build", "synthetic", "--out", str(tiny_ds), "--num-samples", "7", "--samples-per-shard", "3",
                 "--video", "--no-progress", "--overwrite"]) == 0


def test_info_lists_fields(tiny_ds, capsys):
    assert main(["info", str(tiny_ds)]) == 0
    out = capsys.readouterr().out
    assert "7/7 samples" in out and "float16 [4, 32, 32]" in out and "mask.npz" in out


def test_card_yaml_and_push_files(tiny_ds):
    import yaml

    card = (tiny_ds / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert [(c["config_name"], c["default"], c["data_files"]) for c in meta["configs"]] == \
        [("default", True, [{"split": "train", "path": "data/default/train-*.tar"}])]
    names = [f["name"] for f in meta["dataset_info"][0]["features"]]
    assert names[:2] == ["__key__", "json"] and "mask.npz" in names and "prompt.txt" in names
    assert "vidalign build synthetic" in card
    (tiny_ds / "data" / "default" / "junk.tar.tmp").write_bytes(b"x")
    files = upload_files(tiny_ds)
    assert files == ["README.md", "data/default/train-00000-of-00003.tar", "data/default/train-00001-of-00003.tar",
                     "data/default/train-00002-of-00003.tar", "manifest.json"]
    (tiny_ds / "data" / "default" / "junk.tar.tmp").unlink()
    # the push itself is tested against a Hub-protocol server in test_core_hub.py (never a mocked HfApi)
