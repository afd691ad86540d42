"""``vidalign encode`` / ``decode-latents`` end to end on tiny shards with a tiny random Wan VAE and umT5."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from vidalign import contract as C
from vidalign.builder import Builder, BuildOptions, Sample, register_builder
from vidalign.cli import main
from vidalign.media import decode_mp4, encode_mp4
from vidalign.preprocessing import latents as lat
from vidalign.preprocessing import video_io as vio
from vidalign.runner import run_build

SIZE = ["--frames", "9", "--height", "64", "--width", "64", "--dtype", "fp32", "--max-length", "16",
        "--no-progress"]


def _clip(i: int, t: int = 9) -> np.ndarray:
    """A smooth 64x64 clip that moves differently for every ``i`` (H.264 keeps it almost exactly)."""
    tt, yy, xx = np.meshgrid(np.arange(t), np.arange(64), np.arange(64), indexing="ij")
    img = 128 + 60 * np.sin(0.07 * xx + (0.2 + 0.03 * i) * tt) + 50 * np.cos(0.06 * yy - 0.15 * tt + i)
    return np.repeat(img[..., None], 3, axis=-1).clip(0, 255).astype(np.uint8)


@register_builder
class _PairsForEncode(Builder):
    """Preference pairs (chosen.mp4, rejected.mp4, json, score.npy); sample 1 truncated and sample 2 short when
    ``broken``."""

    name = "prep-test-pairs"

    @dataclass
    class Args:
        n: int = 4
        broken: bool = False

    def plan(self):
        return self.split_range("pairs", "train", self.args.n)

    def build_shard(self, job):
        for i in job.indices():
            chosen = encode_mp4(_clip(i, 5 if self.args.broken and i == 2 else 9), 16, crf=10)
            if self.args.broken and i == 1:
                chosen = chosen[: len(chosen) // 2]
            rejected = encode_mp4(_clip(100 + i), 16, crf=10)
            prompt = "a cat jumps to the left of a box" if i % 2 else "a dog runs"
            yield Sample(self.key(i), {"json": {"prompt": prompt, "i": i}, "chosen.mp4": chosen,
                                       "rejected.mp4": rejected, "score.npy": np.float32([i, -i])})


def _build_pairs(out, n=4, per=2, broken=False):
    run_build("prep-test-pairs", {"n": n, "broken": broken},
              BuildOptions(out=out, samples_per_shard=per, progress=False))
    return out


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return _build_pairs(tmp_path_factory.mktemp("enc") / "pairs")


@pytest.fixture(scope="module")
def encoded(pairs, tiny_pipeline_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("enc") / "latents"
    code = main(["encode", str(pairs), "--out", str(out), "--vae", str(tiny_pipeline_dir), "--text-encoder",
                 str(tiny_pipeline_dir), "--batch-size", "3", "--num-workers", "1", *SIZE])
    assert code == 0
    return out


def test_latent_shards_keep_pairs_and_match_direct_encode(pairs, encoded, tiny_pipeline_dir):
    from vidalign.data import load, stream
    from vidalign.shards import iter_tar_samples

    inputs = {s["__key__"]: s for p in sorted((pairs / "data/pairs").glob("*.tar")) for s in iter_tar_samples(p)}
    samples = list(stream(encoded, "pairs"))
    assert sorted(s["__key__"] for s in samples) == sorted(inputs)
    vae = lat.load_vae(str(tiny_pipeline_dir), dtype="fp32")
    tok, enc = lat.load_text_encoder(str(tiny_pipeline_dir), dtype="fp32")
    for s in samples:
        src = inputs[s["__key__"]]
        assert {k for k in s if not k.startswith("__")} == {"json", "score.npy", "chosen_latents.npy", "chosen_logvar.npy",
                                                   "rejected_latents.npy", "rejected_logvar.npy",
                                                   "prompt_embeds.npy", "prompt_mask.npy"}
        assert np.array_equal(s["score.npy"], src["score.npy"])
        meta = s["json"]["latents"]
        assert s["json"]["prompt"] == src["json"]["prompt"] and s["json"]["i"] == src["json"]["i"]
        assert meta == {"vae": str(tiny_pipeline_dir), "revision": None, "vae_class": "AutoencoderKLWan",
                        "latents_mean": C.latent_norm(vae)["latents_mean"],
                        "latents_std": [1.0, 1.5, 2.0, 2.5], "scaling_factor": None, "kind": "mean", "frames": 9,
                        "height": 64, "width": 64, "fps": 16.0, "text_encoder": str(tiny_pipeline_dir)}
        for member in ("chosen", "rejected"):
            clip = vio.load_clip(src[f"{member}.mp4"], vio.ClipSpec(frames=9, height=64, width=64))
            mean, logvar = lat.encode_videos(vae, clip.model_input()[None])
            z = s[f"{member}_latents.npy"]
            assert z.dtype == np.float16 and z.shape == (4, 3, 8, 8)
            np.testing.assert_allclose(z.astype(np.float32), mean[0].numpy(), rtol=2e-3, atol=2e-3)
            np.testing.assert_allclose(s[f"{member}_logvar.npy"].astype(np.float32), logvar[0].numpy(),
                                       rtol=2e-3, atol=2e-3)
        embeds, mask = C.encode_text(tok, enc, [src["json"]["prompt"]], 16)
        assert s["prompt_embeds.npy"].dtype == np.float16 and s["prompt_mask.npy"].dtype == bool
        assert np.array_equal(s["prompt_mask.npy"], mask[0].numpy())
        np.testing.assert_allclose(s["prompt_embeds.npy"].astype(np.float32), embeds[0].numpy(), atol=2e-3)
    # the encoded empty caption, stored once beside the manifest: the same function, tokenizer and length
    from vidalign.contract import EMPTY_PROMPT_EMBEDS, empty_caption_embeds
    from vidalign.data import stream

    empty, empty_mask = C.encode_text(tok, enc, [""], 16)
    stored = np.load(encoded / EMPTY_PROMPT_EMBEDS, allow_pickle=False)
    assert stored.dtype == np.float16 and stored.shape == s["prompt_embeds.npy"].shape
    np.testing.assert_allclose(stored.astype(np.float32), empty[0].numpy(), atol=2e-3)
    assert empty_mask[0].sum() == 1 and np.abs(stored[1:]).max() == 0  # the end token only, zero past it
    # found from the dataset root, a shard, or a glob of shards
    for source in (encoded, sorted((encoded / "data" / "pairs").glob("*.tar"))[0],
                   str(encoded / "data" / "pairs" / "train-*.tar")):
        np.testing.assert_array_equal(empty_caption_embeds(None, stream(source), 0.2), stored.astype(np.float32))
    assert empty_caption_embeds("zeros", stream(encoded), 0.2) is None
    ds = load(encoded, "pairs", "train")  # datasets' WebDataset loader, through the card
    row = ds[0]
    assert row["chosen_latents.npy"].dtype == np.float16 and row["chosen_latents.npy"].shape == (4, 3, 8, 8)
    assert row["prompt_mask.npy"].dtype == bool and len(ds) == 4


def test_resume_and_already_built(pairs, encoded, tiny_pipeline_dir, capsys):
    argv = ["encode", str(pairs), "--out", str(encoded), "--vae", str(tiny_pipeline_dir), "--text-encoder",
            str(tiny_pipeline_dir), "--batch-size", "3", "--num-workers", "1", *SIZE]
    assert main([*argv, "--resume"]) == 0
    assert "0 shard(s) built, 2 already done" in capsys.readouterr().out
    assert main(argv) == 2
    assert "already built here; pass --resume" in capsys.readouterr().err


def test_decode_latents_writes_viewable_mp4(encoded, tmp_path, capsys):
    assert main(["decode-latents", str(encoded), "--out", str(tmp_path / "look"), "--num", "1"]) == 0
    files = sorted((tmp_path / "look").glob("*.mp4"))
    assert [f.name.split(".", 1)[1] for f in files] == ["chosen_latents.mp4", "rejected_latents.mp4"]
    frames, fps = decode_mp4(str(files[0]))
    assert frames.shape == (9, 64, 64, 3) and fps == 16.0
    assert "wrote 2 video(s)" in capsys.readouterr().out


def test_sampled_latents_record_seeds(pairs, tiny_pipeline_dir, tmp_path):
    from vidalign.data import stream

    out = tmp_path / "sampled"
    assert main(["encode", str(pairs), "--out", str(out), "--vae", str(tiny_pipeline_dir), "--sample",
                 "--num-workers", "0", "--seed", "5", *SIZE]) == 0
    s = next(iter(stream(out, "pairs")))
    assert "chosen_logvar.npy" not in s and "prompt_embeds.npy" not in s
    meta = s["json"]["latents"]
    assert meta["kind"] == "sample" and meta["text_encoder"] is None
    assert meta["seeds"]["chosen.mp4"] == lat.sample_seed(5, s["__key__"], "chosen.mp4")


def test_bad_inputs_raise_one_line_or_skip_into_manifest(tmp_path, tiny_pipeline_dir, capsys):
    bad = _build_pairs(tmp_path / "bad", n=4, per=4, broken=True)
    argv = ["encode", str(bad), "--vae", str(tiny_pipeline_dir), "--num-workers", "0", *SIZE]
    assert main([*argv, "--out", str(tmp_path / "raise")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("vidalign: error: data/pairs/train-00000-of-00001.tar:s0-00000001.chosen.mp4: reader "
                          "'pyav' could not decode this video") and "--reader torchcodec" in err
    assert main([*argv, "--out", str(tmp_path / "skip"), "--on-error", "skip"]) == 0
    manifest = json.loads((tmp_path / "skip" / "manifest.json").read_text())
    rejected = manifest["configs"]["pairs"]["rejected"]
    assert [r["input"] for r in rejected] == ["data/pairs/train-00000-of-00001.tar:s0-00000001.chosen.mp4",
                                             "data/pairs/train-00000-of-00001.tar:s0-00000002.chosen.mp4"]
    assert rejected[1]["reason"] == "clip has 5 frames at 16 fps, giving 5 frames; 9 needed"
    shard = manifest["configs"]["pairs"]["shards"]["data/pairs/train-00000-of-00001.tar"]
    assert shard["samples"] == 2 and shard["first_key"] == "s0-00000000" and shard["last_key"] == "s0-00000003"
    assert main(["encode", str(bad), "--out", str(tmp_path / "x"), "--vae", str(tmp_path / "no" / "vae")]) == 2
    assert capsys.readouterr().err.strip() == (f"vidalign: error: --vae {tmp_path / 'no' / 'vae'}: no such "
                                               "directory; give a diffusers model or pipeline folder, or a Hub "
                                               "id like Wan-AI/Wan2.1-T2V-1.3B-Diffusers")


def test_torchrun_two_ranks_cover_every_shard_once(tmp_path, tiny_pipeline_dir):
    src = _build_pairs(tmp_path / "in", n=4, per=1)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "vidalign.cli", "encode", str(src), "--out", str(out), "--vae", str(tiny_pipeline_dir),
           "--num-workers", "0", *SIZE]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rank 0/2: encode: 2 shard(s) built" in proc.stdout and "rank 1/2: encode: 2 shard(s) built" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    shards = manifest["configs"]["pairs"]["shards"]
    assert sorted(shards) == [f"data/pairs/train-{i:05d}-of-00004.tar" for i in range(4)]
    assert [shards[k]["first_key"] for k in sorted(shards)] == [f"s0-{i:08d}" for i in range(4)]
    assert manifest["configs"]["pairs"]["complete"] and not (out / "manifest.parts").exists()
    assert main(["verify", str(out)]) == 0
