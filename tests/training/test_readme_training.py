"""Every `vidalign train` command of the README's Training section runs as written, on tiny random models.

The commands are read from README.md itself and run in a folder holding datasets under the names they use
(`dsr_latents` with configs groups + pairs as `vidalign encode` writes them, `vidprom_latents`, `drop_latents`,
`drops`). Only what cannot work offline or on a CPU in seconds is appended: the model (a tiny random Wan pipeline
instead of the Hub's Wan 2.1), the reward models, sizes and step counts.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from vidalign.cli import main
from vidalign.contract import write_empty_prompt_embeds
from vidalign.shards import ShardWriter
from vidalign.training.components import random_wan_components, save_components

ROOT = Path(__file__).resolve().parents[2]
C = 4


def readme_train_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Training"):text.index("### Evaluation")]
    block = section[section.index("```bash") + 7:]
    block = block[:block.index("```")]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.startswith("vidalign train ")]


def _meta(i: int) -> dict:
    return {"prompt": f"a cat jumps {i}", "seed": i, "weight": 0.5 + i,
            "latents": {"latents_mean": [0.0] * C, "latents_std": [1.0] * C}}


def _emb() -> np.ndarray:
    return np.ones((6, 16), np.float16)


def _lat(rng) -> np.ndarray:
    return rng.standard_normal((C, 3, 4, 4)).astype(np.float16)


def _test_module(name: str):
    """A sibling test module's helpers (tiny reward models, drop shards), imported by path."""
    import sys

    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def write_datasets(root: Path) -> None:
    rng = np.random.default_rng(0)
    with ShardWriter(root / "dsr_latents", "data/groups/train-00000-of-00001.tar") as w:
        for i in range(2):
            cands = [{"member": f"c{j}", "label": lab, "dsr": d}
                     for j, (lab, d) in enumerate([("winner", 0.9), ("loser", 0.2), ("loser", 0.1)])]
            w.write(f"s0-{i:08d}", {"json": {**_meta(i), "candidates": cands}, "prompt_embeds.npy": _emb(),
                                    **{f"c{j}_latents.npy": _lat(rng) for j in range(3)}})
    for name, config in (("dsr_latents", "pairs"), ("vidprom_latents", "pairs")):
        with ShardWriter(root / name, f"data/{config}/train-00000-of-00001.tar") as w:
            for i in range(2):
                w.write(f"s0-{i:08d}", {"json": _meta(i), "prompt_embeds.npy": _emb(),
                                        "chosen_latents.npy": _lat(rng), "rejected_latents.npy": _lat(rng)})
    for name in ("dsr_latents", "vidprom_latents"):  # `vidalign encode` stores the encoded "" once per dataset
        write_empty_prompt_embeds(root / name, _emb())
    with ShardWriter(root / "drop_latents", "data/train/train-00000-of-00001.tar") as w:
        for i in range(2):
            w.write(f"s0-{i:08d}", {"json": _meta(i), "prompt_embeds.npy": _emb(), "latents.npy": _lat(rng)})
    _test_module("test_reward_training")._write_drop_shards(root / "drops")


def _reward_models(root: Path) -> dict:
    helpers = _test_module("test_reward_models")
    (root / "models").mkdir(exist_ok=True)
    torch.manual_seed(0)
    torch.save({"weight": torch.randn(1, 8), "bias": torch.randn(1)}, root / "models" / "head.pth")
    return {"clip": helpers._tiny_clip(root / "clip"), "sam2": helpers._tiny_sam2(root / "sam2"),
            "head": str(root / "models" / "head.pth")}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    save_components(random_wan_components("tiny", seed=0), root / "wan")
    write_datasets(root)
    return root


def test_readme_lists_the_training_commands():
    cmds = readme_train_commands()
    configs = {re.search(r"--config (\S+)", c).group(1) for c in cmds}
    assert configs == {"spatialalign_dpo", "videodpo_dpo", "pisa_psft", "vader_aesthetic", "pisa_oro"}
    assert any("--resume" in c for c in cmds) and any("--check" in c for c in cmds)
    assert any("--learning_rate" in c for c in cmds)


def test_every_readme_training_command_runs(workdir, monkeypatch, capsys, hub_server):
    from vidalign.builder import BuildOptions
    from vidalign.hub import push
    from vidalign.runner import run_build

    monkeypatch.chdir(workdir)
    models = _reward_models(workdir)
    # `org/drop_latents`: latent clips built and pushed as a user would, served by a Hub-protocol server
    run_build("synthetic-latents", {"num_samples": 2, "kind": "clips", "channels": C, "frames": 3, "height": 4,
                                    "width": 4, "text_len": 6, "text_dim": 16},
              BuildOptions(out=workdir / "hub_drop_latents", progress=False))
    push(workdir / "hub_drop_latents", "org/drop_latents")
    tiny = ["model_name_or_path=wan", "use_cpu=true", "bf16=false", "max_steps=1", "dataloader_num_workers=0",
            "disable_tqdm=true"]
    sampling = ["height=32", "width=32", "num_frames=9", "num_inference_steps=2", "max_sequence_length=8",
                "gradient_accumulation_steps=1"]
    extra = {
        "spatialalign_dpo": [*tiny, "gradient_accumulation_steps=2"],
        "videodpo_dpo": [*tiny, "gradient_accumulation_steps=2"],
        "pisa_psft": tiny,
        "vader_aesthetic": [*tiny, *sampling,
                            f"rewards=[{{name: aesthetic, clip_model: {models['clip']}, head: {models['head']}}}]"],
        "pisa_oro": [*tiny, *sampling, f"rewards=[{{name: segmentation, model: {models['sam2']}}}]"],
    }
    torch.set_num_threads(1)
    ran = []
    for line in readme_train_commands():
        argv = shlex.split(line)[1:]
        config = argv[argv.index("--config") + 1]
        code = main(argv + extra[config])
        captured = capsys.readouterr()
        assert code == 0, (line, captured.err[-500:])
        out = captured.out
        kind = argv[1]
        if "--check" in argv:
            assert f"{kind} config OK" in out and "first sample prepared" in out, out
        elif "--resume" in argv:
            assert "nothing to train" in out, out
        else:
            assert f"vidalign train {kind}: 1 steps" in out, out
        ran.append(config)
    assert len(ran) == len(readme_train_commands()) >= 9
    assert hub_server.count("GET", "/datasets/org/drop_latents/resolve/") >= 1
    for folder, weights in [("spatialalign_dpo", "pytorch_lora_weights.safetensors"),
                            ("videodpo_dpo", "transformer"), ("pisa_psft", "ema"),
                            ("vader_aesthetic", "pytorch_lora_weights.safetensors"), ("pisa_oro", "transformer")]:
        assert (workdir / "out" / folder / weights).exists(), folder
        assert (workdir / "out" / folder / "README.md").is_file()
