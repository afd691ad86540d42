"""The contract between stages, end to end: what a builder writes is what `encode` embeds and a trainer trains on.

* `kubric-drop --caption constant` → `vidalign encode` → PSFT: the text embedded and trained on is the constant
  caption (the json's `caption`), not the per-clip prompt.
* the released VideoDPO layout → `vidalign import videodpo` → `vidalign encode` → DPO with `videodpo_dpo`: every
  pair trains with the weight stored in its record, and dropped captions use the encoded "" stored by `encode`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vidalign import contract as C
from vidalign.builder import BuildOptions
from vidalign.cli import main
from vidalign.data import stream
from vidalign.runner import run_build
from vidalign.training.components import random_wan_components, save_components

pytest.importorskip("pybullet")
MAX_LEN = 8


@pytest.fixture(scope="module")
def wan(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wan") / "wan"
    save_components(random_wan_components("tiny", seed=0), folder)
    return folder


def _encode(src: Path, out: Path, wan: Path, size: int) -> None:
    code = main(["encode", str(src), "--out", str(out), "--vae", str(wan), "--text-encoder", str(wan), "--dtype",
                 "fp32", "--frames", "9", "--height", str(size), "--width", str(size), "--max-length", str(MAX_LEN),
                 "--num-workers", "0", "--no-progress"])
    assert code == 0


def _embed(wan: Path, texts: list[str]) -> np.ndarray:
    from vidalign.preprocessing.latents import load_text_encoder

    tok, enc = load_text_encoder(str(wan), dtype="fp32")
    return C.encode_text(tok, enc, texts, MAX_LEN)[0].numpy()


class _Seen:
    """Records the batches a trainer's training steps receive."""

    def __init__(self, trainer_cls):
        self.batches: list[dict] = []
        self.cls, self.orig = trainer_cls, trainer_cls.training_step

    def __enter__(self):
        seen, orig = self.batches, self.orig

        def training_step(trainer, model, inputs, *a, **k):
            seen.append({k: v.detach().clone() if torch.is_tensor(v) else v for k, v in inputs.items()})
            return orig(trainer, model, inputs, *a, **k)

        self.cls.training_step = training_step
        return self

    def __exit__(self, *exc):
        self.cls.training_step = self.orig


def test_constant_caption_is_what_psft_trains_on(tmp_path, wan):
    from vidalign.training.config import load_config
    from vidalign.training.sft_trainer import DiffusionSFTTrainer

    drops, lat = tmp_path / "drops", tmp_path / "drop_latents"
    run_build("kubric-drop", {"num_samples": 2, "resolution": 32, "frames": 9, "caption": "constant"},
              BuildOptions(out=drops, samples_per_shard=2, progress=False))
    _encode(drops, lat, wan, 32)
    samples = list(stream(lat))
    caption = samples[0]["json"]["caption"]
    assert caption == "a video of an object dropping" and all(s["json"]["caption"] == caption for s in samples)
    assert all(s["json"]["prompt"] != caption for s in samples)  # "A <object> falls."
    want, prompt_emb = _embed(wan, [caption, samples[0]["json"]["prompt"]])
    for s in samples:
        np.testing.assert_allclose(s[C.PROMPT_EMBEDS].astype(np.float32), want, atol=2e-3)
    assert not np.allclose(prompt_emb, want, atol=2e-3)

    args = load_config("sft", "training/configs/pisa_psft.yaml", [
        f"model_name_or_path={wan}", f"train_data={lat}", f"output_dir={tmp_path / 'run'}", "use_cpu=true",
        "bf16=false", "max_steps=2", "per_device_train_batch_size=1", "dataloader_num_workers=0",
        "disable_tqdm=true", "report_to=none", "save_steps=100"])
    with _Seen(DiffusionSFTTrainer) as seen:
        DiffusionSFTTrainer(args=args).train()
    assert len(seen.batches) == 2
    for b in seen.batches:
        np.testing.assert_allclose(b["prompt_embeds"][0].numpy(), want, atol=2e-3)


def _videodpo_helpers():
    name = "videodpo_layout_helpers"
    if name not in sys.modules:
        path = Path(__file__).parents[1] / "datasets_builders" / "test_videodpo_layout.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_imported_videodpo_pairs_train_with_their_weights(tmp_path, wan):
    from vidalign.training.config import load_config
    from vidalign.training.dpo_trainer import DiffusionDPOTrainer

    helpers = _videodpo_helpers()
    src, pairs, lat = tmp_path / "videodpo", tmp_path / "pairs", tmp_path / "pair_latents"
    helpers.make_layout(src)  # written as the authors' scripts write it: 3 pairs, two with score/diff_score
    assert main(["import", "videodpo", str(src), "--out", str(pairs), "--weight", "code", "--no-progress"]) == 0
    _encode(pairs, lat, wan, 16)
    stored = {s["__key__"]: s["json"][C.WEIGHT] for s in stream(lat, members=["json"])}
    assert sorted(stored.values()) == pytest.approx(sorted([0.72 / (0.81 * 0.52), 0.72 / (0.74 * 0.61), 1.0]))

    args = load_config("dpo", "training/configs/videodpo_dpo.yaml", [
        f"model_name_or_path={wan}", f"train_data={lat}", f"output_dir={tmp_path / 'run'}", "use_cpu=true",
        "bf16=false", "max_steps=3", "per_device_train_batch_size=1", "gradient_accumulation_steps=1",
        "dataloader_num_workers=0", "disable_tqdm=true", "report_to=none", "save_steps=100"])
    assert args.pair_weight_key == C.WEIGHT and args.caption_dropout > 0
    with _Seen(DiffusionDPOTrainer) as seen:
        trainer = DiffusionDPOTrainer(args=args)
        empty = np.load(lat / C.EMPTY_PROMPT_EMBEDS).astype(np.float32)
        np.testing.assert_array_equal(trainer._empty_embeds.numpy(), empty)  # the encoded "" from `encode`
        trainer.train()
    got = {b["__key__"][0]: float(b["weight"][0]) for b in seen.batches}
    assert len(got) == 3 and got == pytest.approx(stored)
