"""Candidate generation core with a tiny random Wan pipeline (vidalign.preprocessing.generate)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from vidalign.builder import Builder, BuildOptions, Sample, register_builder
from vidalign.cli import main
from vidalign.errors import ConfigError, InputError
from vidalign.preprocessing import generate as gen
from vidalign.runner import run_build


def _cfg(model, **kw) -> gen.GenerateConfig:
    base = {"model": str(model), "num_candidates": 2, "frames": 5, "height": 32, "width": 32, "steps": 2,
            "dtype": "fp32"}
    return gen.GenerateConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def pipe(tiny_pipeline_dir):
    return gen.load_pipeline(_cfg(tiny_pipeline_dir))


def test_pipeline_loads_with_flow_shift(pipe, tiny_pipeline_dir):
    assert type(pipe).__name__ == "WanPipeline"
    assert pipe.scheduler.config.flow_shift == 5.0  # saved with 3.0, SpatialAlign uses 5
    unshifted = gen.load_pipeline(_cfg(tiny_pipeline_dir, shift=None))
    assert unshifted.scheduler.config.flow_shift == 3.0
    import torch

    half = gen.load_pipeline(_cfg(tiny_pipeline_dir, dtype="bf16"))
    assert half.transformer.dtype == torch.bfloat16 and half.vae.dtype == torch.float32  # Wan's VAE stays fp32


def test_same_seed_same_video_any_batch(pipe, tiny_pipeline_dir):
    cfg = _cfg(tiny_pipeline_dir)
    videos = gen.generate_candidates(pipe, "a cat jumps", [11, 12], cfg)
    assert videos.shape == (2, 5, 32, 32, 3) and videos.dtype == np.uint8
    again = gen.generate_candidates(pipe, "a cat jumps", [12], cfg)
    assert np.array_equal(again[0], videos[1])
    batched = gen.generate_candidates(pipe, "a cat jumps", [11, 12], _cfg(tiny_pipeline_dir, batch_size=2))
    assert np.abs(batched.astype(int) - videos).max() <= 1  # batching changes float sums, not the noise
    assert np.abs(videos[0].astype(int) - videos[1]).mean() > 1.0  # different seeds, different videos


def test_seeds_are_derived_or_explicit():
    cfg = gen.GenerateConfig(seed=3)
    assert cfg.seed_for("1043_TL", 0) == gen.candidate_seed(3, "1043_TL", 0)
    assert len({cfg.seed_for("1043_TL", i) for i in range(5)}) == 5
    assert cfg.seed_for("1043_TL", 0) != gen.GenerateConfig(seed=4).seed_for("1043_TL", 0)
    assert 0 <= cfg.seed_for("x", 1) < 2 ** 31
    explicit = gen.GenerateConfig(num_candidates=3, seeds=(0, 1, 2))
    assert [explicit.seed_for("any", i) for i in range(3)] == [0, 1, 2]
    with pytest.raises(ConfigError, match="GenerateConfig.seeds"):
        gen.GenerateConfig(num_candidates=5, seeds=(0, 1))


def test_prompt_files(tmp_path):
    csv_path = tmp_path / "eval30.csv"
    csv_path.write_text("type,prompt_id,animal,object,scene,initial_SR,final_SR,prompt\n"
                        "LR,1_LR,cat,box,On a field,left,right,\"On a field, a cat is on the left of a box, "
                        "then the cat jumps to the right of the box.\"\n", encoding="utf-8")
    (rec,) = list(gen.iter_prompt_file(csv_path))
    assert rec.prompt_id == "1_LR" and rec.prompt.startswith("On a field, a cat")
    assert rec.extra == {"type": "LR", "animal": "cat", "object": "box", "scene": "On a field",
                         "initial_SR": "left", "final_SR": "right"}
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "a dog runs", "id": "d1"}\n\n"a bird"\n', encoding="utf-8")
    assert [(r.prompt_id, r.prompt) for r in gen.iter_prompt_file(jsonl)] == [("d1", "a dog runs"),
                                                                             ("000001", "a bird")]
    txt = tmp_path / "p.txt"
    txt.write_text("a cat\n\n a fox \n", encoding="utf-8")
    assert [(r.prompt_id, r.prompt) for r in gen.iter_prompt_file(txt)] == [("000000", "a cat"),
                                                                           ("000001", "a fox")]
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt_id,text\n1,hello\n", encoding="utf-8")
    with pytest.raises(InputError, match="bad.csv: field 'prompt': CSV columns are"):
        list(gen.iter_prompt_file(bad))
    with pytest.raises(InputError, match="'d1' appears twice"):
        recs = list(gen.iter_prompt_file(jsonl))
        gen.check_unique(recs + recs[:1], str(jsonl))


def test_candidate_json_records_everything():
    cfg = gen.GenerateConfig(num_candidates=1)
    rec = gen.PromptRecord("1_LR", "a cat", {"animal": "cat"})
    meta = gen.candidate_json(rec, 0, 42, cfg)
    assert meta == {"prompt": "a cat", "prompt_id": "1_LR", "candidate": 0, "seed": 42,
                    "model": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "revision": None, "steps": 50, "guidance": 5.0,
                    "frames": 81, "height": 480, "width": 832, "fps": 16.0, "shift": 5.0, "negative_prompt": None,
                    "animal": "cat"}
    json.dumps(meta)


def test_bad_model_paths(tmp_path):
    with pytest.raises(ConfigError, match="no model_index.json"):
        gen.load_pipeline(_cfg(tmp_path / "missing"))


@register_builder
class _PromptsForGenerate(Builder):
    name = "prep-test-prompts"

    @dataclass
    class Args:
        n: int = 2

    def plan(self):
        return self.split_range("prompts", "train", self.args.n)

    def build_shard(self, job):
        for i in job.indices():
            yield Sample(self.key(i), {"json": {"prompt": f"a fox runs {i}", "prompt_id": f"{i}_LR", "animal": "fox",
                                                "seed": 99}})


def test_prompts_from_a_vidalign_prompts_folder(tmp_path):
    run_build("prep-test-prompts", {"n": 3}, BuildOptions(out=tmp_path / "p", samples_per_shard=2, progress=False))
    recs = gen.read_prompts(str(tmp_path / "p"))
    assert [(r.prompt_id, r.prompt) for r in recs] == [("0_LR", "a fox runs 0"), ("1_LR", "a fox runs 1"),
                                                       ("2_LR", "a fox runs 2")]
    assert recs[0].extra == {"animal": "fox", "prompt_seed": 99}  # a prompt's own seed never hides the video's
    assert len(gen.read_prompts(str(tmp_path / "p"), limit=2)) == 2
    with pytest.raises(InputError, match="prompt file or folder not found"):
        gen.read_prompts(str(tmp_path / "none.csv"))


def test_generate_command_writes_resumable_candidate_shards(tmp_path, tiny_pipeline_dir, pipe, capsys):
    from vidalign.data import stream
    from vidalign.media import decode_mp4, encode_mp4

    prompts = tmp_path / "p.csv"
    prompts.write_text("prompt_id,prompt,animal\n1_LR,a cat jumps,cat\n2_RL,a dog runs,dog\n", encoding="utf-8")
    out = tmp_path / "cands"
    argv = ["generate", str(prompts), "--out", str(out), "--model", str(tiny_pipeline_dir), "--num-candidates", "2",
            "--frames", "5", "--height", "32", "--width", "32", "--steps", "2", "--dtype", "fp32",
            "--samples-per-shard", "3", "--seed", "7", "--no-progress"]
    assert main(argv) == 0
    assert "generate: 2 shard(s) built, 0 already done, 4 samples" in capsys.readouterr().out
    samples = list(stream(out, "candidates"))
    cfg = _cfg(tiny_pipeline_dir, seed=7)
    assert [(s["json"]["prompt_id"], s["json"]["candidate"]) for s in samples] == \
        [("1_LR", 0), ("1_LR", 1), ("2_RL", 0), ("2_RL", 1)]
    for s in samples:
        meta = s["json"]
        assert meta["seed"] == cfg.seed_for(meta["prompt_id"], meta["candidate"])
        assert {k: meta[k] for k in ("model", "steps", "guidance", "frames", "height", "width", "fps", "shift")} == \
            {"model": str(tiny_pipeline_dir), "steps": 2, "guidance": 5.0, "frames": 5, "height": 32, "width": 32,
             "fps": 16.0, "shift": 5.0}
        assert meta["animal"] in ("cat", "dog")
    frames, fps = decode_mp4(samples[3]["mp4"])
    direct = gen.generate_candidates(pipe, "a dog runs", [samples[3]["json"]["seed"]], cfg)[0]
    assert frames.shape == (5, 32, 32, 3) and fps == 16.0
    assert samples[3]["mp4"] == encode_mp4(direct, 16.0)  # the stored video is exactly that seed's video
    assert main([*argv, "--resume"]) == 0
    assert "0 shard(s) built, 2 already done" in capsys.readouterr().out
    # candidates -> latents: the bare mp4 becomes latents.npy, the candidate json stays
    lat_dir = tmp_path / "cand_latents"
    assert main(["encode", str(out), "--out", str(lat_dir), "--vae", str(tiny_pipeline_dir), "--text-encoder",
                 str(tiny_pipeline_dir), "--frames", "5", "--height", "32", "--width", "32", "--dtype", "fp32",
                 "--max-length", "8", "--no-progress"]) == 0
    encoded = list(stream(lat_dir, "candidates"))
    assert [e["__key__"] for e in encoded] == [s["__key__"] for s in samples]
    assert encoded[0]["latents.npy"].shape == (4, 2, 4, 4) and encoded[0]["prompt_embeds.npy"].shape == (8, 16)
    assert "mp4" not in encoded[0] and encoded[0]["json"]["seed"] == samples[0]["json"]["seed"]
