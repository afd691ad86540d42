"""The one trainer family: resume (exact, finished runs), checkpoints, report_to, save_total_limit, model cards,
validation videos, peft_config, refused options, TRL-style command line and --check, on tiny random Wan models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from transformers import TrainerCallback

from vidalign.cli import main
from vidalign.errors import ConfigError
from vidalign.hub import local_paths
from vidalign.shards import ShardWriter
from vidalign.training.components import random_wan_components, save_components
from vidalign.training.config import DiffusionDPOConfig, DiffusionSFTConfig, build_config, load_config

C = 4  # the tiny Wan: 4 latent channels, text width 16, VAE 4× time / 8× space


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory):
    """A tiny random Wan pipeline folder: transformer, vae, text_encoder, tokenizer."""
    return str(save_components(random_wan_components("tiny", seed=0), tmp_path_factory.mktemp("tinywan")))


def _meta(i: int) -> dict:
    return {"prompt": f"a cat {i}", "weight": 1.0 + i, "latents": {"latents_mean": [0.0] * C, "latents_std": [1.0] * C}}


def write_pairs(root, n=8, configs=("default",), shards=1) -> str:
    rng = np.random.default_rng(0)
    for config in configs:
        for s in range(shards):
            with ShardWriter(root, f"data/{config}/train-{s:05d}-of-{shards:05d}.tar") as w:
                for i in range(n):
                    w.write(f"s0-{s * n + i:08d}", {
                        "json": _meta(i), "prompt_embeds.npy": np.ones((6, 16), np.float16),
                        "chosen_latents.npy": (rng.standard_normal((C, 3, 4, 4)) + 1).astype(np.float16),
                        "rejected_latents.npy": (rng.standard_normal((C, 3, 4, 4)) - 1).astype(np.float16)})
    return str(root)


def _yaml(path, **values) -> str:
    path.write_text(yaml.safe_dump(values))
    return str(path)


def _dpo_yaml(tmp_path, pipe_dir, **extra) -> str:
    values = dict(model_name_or_path=pipe_dir, train_data=write_pairs(tmp_path / "pairs"),
                  output_dir=str(tmp_path / "run"), bf16=False, use_cpu=True, max_steps=2,
                  gradient_accumulation_steps=1, per_device_train_batch_size=2, lora_rank=4, lora_alpha=4,
                  learning_rate=1e-2, warmup_steps=0, logging_steps=1, save_steps=1, disable_tqdm=True,
                  dataloader_num_workers=0, report_to="none")
    values.update(extra)
    return _yaml(tmp_path / "dpo.yaml", **values)


def _lora(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "pytorch_lora_weights.safetensors"))


# ----------------------------------------------------------------------------------------------- resume
def test_resuming_a_finished_run_trains_no_further(tmp_path, pipe_dir, capsys):
    cfg = _dpo_yaml(tmp_path, pipe_dir)
    assert main(["train", "dpo", "--config", cfg]) == 0
    run = tmp_path / "run"
    before, state = _lora(run), json.loads((run / "trainer_state.json").read_text())
    capsys.readouterr()
    assert main(["train", "dpo", "--config", cfg, "--resume"]) == 0
    out = capsys.readouterr().out
    assert "nothing to train" in out and "vidalign train dpo: 2 steps" in out
    after = _lora(run)
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    losses = [h for h in json.loads((run / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert losses == [h for h in state["log_history"] if "loss" in h] and len(losses) == 2
    # raising max_steps continues from the checkpoint (TRL-style option, then `--resume` last)
    assert main(["train", "dpo", "--config", cfg, "--max_steps", "3", "--resume"]) == 0
    assert "3 steps" in capsys.readouterr().out and (run / "checkpoint-3").is_dir()


class _Crash(TrainerCallback):
    def __init__(self, at: int):
        self.at = at

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise KeyboardInterrupt


def _record_keys(trainer, seen):
    orig = trainer.training_step

    def step(model, inputs, num_items_in_batch=None):
        seen.extend(inputs["__key__"])
        return orig(model, inputs, num_items_in_batch)

    trainer.training_step = step


def _reward_cfg(tmp_path, **kw):
    from vidalign.training.reward_config import build_reward_config

    _register_brightness()
    tmp_path.mkdir(parents=True, exist_ok=True)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red ball\na cat playing\na dog running\n")
    base = dict(model_name_or_path="unused", output_dir=str(tmp_path / "out"), prompts=str(prompts),
                rewards=[{"name": "brightness_tf"}], height=32, width=32, num_frames=9, num_inference_steps=3,
                max_sequence_length=8, guidance_scale=1.0, max_steps=4, save_steps=1, logging_steps=1,
                learning_rate=1e-2, report_to="none", use_cpu=True, disable_tqdm=True, backprop_mode="rand",
                gradient_accumulation_steps=2, lr_scheduler_type="cosine", warmup_steps=1, seed=5,
                per_device_train_batch_size=1)
    base.update(kw)
    return build_reward_config(base)


def _register_brightness():
    from dataclasses import dataclass

    from vidalign.training.rewards import Reward, RewardOutput, register_reward, reward_names

    @dataclass(frozen=True)
    class Opts:
        """No options."""

    class Brightness(Reward):
        def forward(self, frames, inputs):
            s = frames.mean(dim=(1, 2, 3, 4))
            return RewardOutput(-s, s)

    if "brightness_tf" not in reward_names():
        register_reward("brightness_tf", Opts, Brightness)(lambda o, device="cpu", dtype=None: Brightness())


_PARTS: list = []


def _reward_trainer(cfg, **kw):
    """A reward trainer on (a copy of) one tiny random Wan, built once per module."""
    import copy

    from vidalign.training.reward_trainer import RewardTrainer

    _register_brightness()
    if not _PARTS:
        c = random_wan_components("tiny", seed=0)
        with torch.no_grad():
            c.vae.decoder.conv_out.weight.mul_(10)
        _PARTS.append(c)
    return RewardTrainer(copy.deepcopy(_PARTS[0]), cfg, **kw)


def test_reward_trainer_kill_and_resume_matches_uninterrupted_run(tmp_path):
    full_seen, part_seen, rest_seen = [], [], []
    full = _reward_trainer(_reward_cfg(tmp_path / "a", max_steps=3))
    _record_keys(full, full_seen)
    full.train()
    crashing = _reward_trainer(_reward_cfg(tmp_path / "b", max_steps=3), callbacks=[_Crash(2)])
    _record_keys(crashing, part_seen)
    with pytest.raises(KeyboardInterrupt):
        crashing.train()
    ckpt = tmp_path / "b" / "out" / "checkpoint-2"
    assert {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "stream_state-rank0.json",
            "pytorch_lora_weights.safetensors", "README.md"} <= {p.name for p in ckpt.iterdir()}
    resumed = _reward_trainer(_reward_cfg(tmp_path / "b", max_steps=3))
    _record_keys(resumed, rest_seen)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 3 and len(part_seen) == 4
    assert part_seen + rest_seen == full_seen  # the prompt stream continues where it stopped
    a, b = full.model.state_dict(), resumed.model.state_dict()
    lora = [k for k in a if "lora_" in k]
    assert lora and all(torch.allclose(a[k], b[k], atol=1e-6) for k in lora)
    cut = [h["cutoff"] for h in full.state.log_history if "cutoff" in h]
    assert cut == [h["cutoff"] for h in resumed.state.log_history if "cutoff" in h]  # same seeded draws
    # a finished run resumed: no step, same weights
    again = _reward_trainer(_reward_cfg(tmp_path / "b", max_steps=3))
    out = again.train(resume_from_checkpoint=True)
    assert out.global_step == 3 and again.state.global_step == 3
    c = again.model.state_dict()
    assert all(torch.equal(b[k], c[k]) for k in lora)


def test_reward_report_to_save_total_limit_validation_and_card(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    cfg = _reward_cfg(tmp_path, max_steps=2, gradient_accumulation_steps=1, save_total_limit=1,
                      report_to=["tensorboard"],
                      validation_prompts=["a red ball", "a cat playing"], validation_steps=1,
                      validation_num_inference_steps=2)
    tr = _reward_trainer(cfg)
    tr.train()
    tr.save_model()
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]  # save_total_limit
    for step in (1, 2):
        folder = out / "validation" / f"step-{step:06d}"
        assert {"00.mp4", "01.mp4", "00.gif", "01.gif", "prompts.json"} <= {p.name for p in folder.iterdir()}
        meta = json.loads((folder / "prompts.json").read_text())
        assert meta["step"] == step and [v["prompt"] for v in meta["videos"]] == ["a red ball", "a cat playing"]
    from vidalign.media import decode_mp4

    frames = decode_mp4((out / "validation" / "step-000002" / "00.mp4").read_bytes())[0]
    assert frames.shape == (9, 32, 32, 3)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0}).Reload()
    tags = events.Tags()
    assert "train/reward/brightness_tf" in tags["scalars"] and "train/loss" in tags["scalars"]
    assert {"validation/0", "validation/1"} <= set(tags["images"])
    gif = events.Images("validation/0")[-1]
    assert gif.step == 2 and gif.encoded_image_string[:3] == b"GIF"
    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["library_name"] == "diffusers" and {"reward-gradient", "lora", "vidalign"} <= set(meta["tags"])
    assert "LoRA rank 16" in card and "brightness_tf × 1" in card and "a cat playing" in card


def test_dpo_validation_videos_card_and_peft_config(tmp_path, pipe_dir):
    from vidalign.training.dpo_trainer import DiffusionDPOTrainer

    args = load_config("dpo", _dpo_yaml(tmp_path, pipe_dir), [
        "validation_prompts=[a red ball]", "validation_steps=2", "validation_num_inference_steps=2",
        "peft_config={r: 2, lora_alpha: 4, target_modules: [attn2.to_k, attn2.to_v], use_rslora: true}"])
    assert (args.lora_rank, args.lora_alpha, args.lora_target_modules) == (2, 4.0, ["attn2.to_k", "attn2.to_v"])
    tr = DiffusionDPOTrainer(args=args)
    layer = tr.model.blocks[0].attn2.to_k
    assert layer.lora_A["default"].weight.shape[0] == 2 and layer.scaling["default"] == pytest.approx(4 / 2 ** 0.5)
    tr.train()
    tr.save_model()
    out = tmp_path / "run"
    from vidalign.media import decode_mp4

    # at the training clips' size: 3 latent frames × 4×4 → 9 frames of 32×32
    assert decode_mp4((out / "validation" / "step-000002" / "00.mp4").read_bytes())[0].shape == (9, 32, 32, 3)
    assert not (out / "validation" / "step-000001").exists()
    from safetensors import safe_open

    with safe_open(str(out / "pytorch_lora_weights.safetensors"), "pt") as fh:
        meta = json.loads(fh.metadata()["lora_adapter_metadata"])
    assert meta["transformer.r"] == 2 and meta["transformer.use_rslora"] is True
    for folder in (out, out / "checkpoint-2"):
        card = (folder / "README.md").read_text()
        assert "LoRA rank 2, alpha 4" in card and "`attn2.to_k`" in card and "sigmoid loss, beta 1" in card
        assert str(tmp_path) not in card and local_paths(card) == []  # base model and data by folder name only
    # a LoraConfig given to the trainer, as TRL takes one
    from peft import LoraConfig

    tr2 = DiffusionDPOTrainer(args=load_config("dpo", _dpo_yaml(tmp_path, pipe_dir)),
                              peft_config=LoraConfig(r=3, lora_alpha=3, target_modules=["attn2.to_q"]))
    assert tr2.model.blocks[0].attn2.to_q.lora_A["default"].weight.shape[0] == 3
    assert not hasattr(tr2.model.blocks[0].attn2.to_k, "lora_A")


def test_model_card_names_hub_base_model_and_dataset(tmp_path):
    from vidalign.training.model_card import write_model_card

    args = DiffusionSFTConfig(output_dir=str(tmp_path), train_data="org/drop-latents", bf16=False, use_cpu=True)
    path = write_model_card(str(tmp_path), args, ("sft",), {"flow shift": 5.0}, global_step=7)
    text = open(path).read()
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["base_model"] == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers" and meta["datasets"] == ["org/drop-latents"]
    assert meta["library_name"] == "diffusers" and meta["pipeline_tag"] == "text-to-video"
    assert {"sft", "full-finetune", "wan", "text-to-video"} <= set(meta["tags"])
    assert "| steps | 7 of max_steps 3000 |" in text and "| flow shift | 5 |" in text
    assert "WanTransformer3DModel.from_pretrained" in text and "PSFT" in text


# ----------------------------------------------------------------------------------------------- DDP
def _all_trainable_have_grad(model) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]


@pytest.mark.parametrize("kind", ["dpo-lora", "dpo-full", "sft-full", "reward-lora", "reward-full-all"])
def test_every_trainable_parameter_gets_a_gradient(tmp_path, pipe_dir, kind):
    """DDP runs with find_unused_parameters=False: every trainable parameter must get a gradient each step."""
    if kind.startswith("reward"):
        lora = kind == "reward-lora"
        tr = _reward_trainer(_reward_cfg(tmp_path, use_lora=lora, backprop_mode="last" if lora else "all"))
        loss = tr.reward_loss(tr.model, tr.next_batch())[0]
    else:
        from vidalign.training.dpo_trainer import DiffusionDPOTrainer
        from vidalign.training.sft_trainer import DiffusionSFTTrainer

        args = load_config("dpo", _dpo_yaml(tmp_path, pipe_dir, use_lora=kind == "dpo-lora"))
        if kind == "sft-full":
            vals = {k: v for k, v in yaml.safe_load(open(_dpo_yaml(tmp_path, pipe_dir))).items()
                    if k not in ("lora_rank", "lora_alpha")}
            rng = np.random.default_rng(0)
            with ShardWriter(tmp_path / "clips", "data/default/train-00000-of-00001.tar") as w:
                for i in range(2):
                    w.write(f"s0-{i:08d}", {"json": _meta(i), "prompt_embeds.npy": np.ones((6, 16), np.float16),
                                            "latents.npy": rng.standard_normal((C, 3, 4, 4)).astype(np.float16)})
            args = build_config("sft", {**vals, "train_data": str(tmp_path / "clips")})
            tr = DiffusionSFTTrainer(args=args)
        else:
            tr = DiffusionDPOTrainer(args=args)
        batch = next(iter(tr.get_train_dataloader()))
        tr._stream_state.consume(batch)
        batch = {k: v for k, v in batch.items() if not k.startswith("__")}
        loss = tr.compute_loss(tr.model, batch)
    assert tr.args.ddp_find_unused_parameters is False
    loss.backward()
    assert _all_trainable_have_grad(tr.model) == []


# ----------------------------------------------------------------------------------------------- config, CLI
@pytest.mark.parametrize("values, needle", [
    ({"num_train_epochs": 2}, "set max_steps instead"),
    ({"eval_strategy": "steps"}, "validation_steps"),
    ({"load_best_model_at_end": True}, "best checkpoint"),
    ({"deepspeed": "ds.json"}, "FSDP"),
    ({"auto_find_batch_size": True}, "fixed batch size"),
    ({"validation_steps": 5}, "validation_prompts"),
    ({"peft_config": {"rank": 4}}, "LoraConfig"),
    ({"data_config": "groups"}, "train_config"),
    ({"prediction_type": "epsilon", "validation_prompts": ["x"]}, "flow"),
    ({"use_scale": True}, "flow matching"),
])
def test_options_a_trainer_cannot_honour_are_refused(values, needle):
    with pytest.raises(ConfigError, match=needle) as exc:
        build_config("dpo", {"output_dir": "/tmp/x", **values}, "cfg.yaml")
    assert "\n" not in str(exc.value)


def test_trl_style_command_line(tmp_path):
    from vidalign.training.commands import cli_overrides

    tokens = ["--learning_rate", "1e-4", "--beta=5000", "--shared-noise", "--use_lora", "false",
              "--lora_target_modules", "attn2.to_k", "attn2.to_v", "max_steps=7", "--bf16", "reg_weight=0.1"]
    out = cli_overrides(tokens, DiffusionDPOConfig)
    assert out == ["learning_rate=1e-4", "beta=5000", "shared_noise=true", "use_lora=false",
                   "lora_target_modules=[attn2.to_k, attn2.to_v]", "max_steps=7", "bf16=true", "reg_weight=0.1"]
    cfg = load_config("dpo", None, out[:6] + [f"output_dir={tmp_path}", "bf16=false"])
    assert (cfg.learning_rate, cfg.beta, cfg.shared_noise, cfg.use_lora, cfg.max_steps) == (1e-4, 5000.0, True,
                                                                                             False, 7)
    assert cfg.lora_target_modules == ["attn2.to_k", "attn2.to_v"]
    with pytest.raises(ConfigError, match="--beta needs a value"):
        cli_overrides(["--beta"], DiffusionDPOConfig)


def test_check_validates_files_and_data_without_training(tmp_path, pipe_dir, capsys):
    cfg = _dpo_yaml(tmp_path, pipe_dir, validation_prompts=["a red ball"])
    assert main(["train", "dpo", "--config", cfg, "--check", "--beta", "2"]) == 0
    out = capsys.readouterr().out
    assert "first sample prepared: latents_w (4, 3, 4, 4)" in out and "dpo config OK: LoRA r4" in out
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written
    multi = write_pairs(tmp_path / "multi", n=2, configs=("groups", "pairs"))
    for extra, needle in [([f"train_data={multi}"], "choose one with train_config="),
                          ([f"train_data={multi}", "train_config=nope"], "train_config 'nope' not found"),
                          ([f"model_name_or_path={tmp_path / 'missing'}"], "no such folder"),
                          (["validation_pipeline=" + str(tmp_path / "pairs")], "no vae/"),
                          (["--resume"], "no checkpoint-"),
                          (["empty_prompt_embeds=/nope.npy"], "empty_prompt_embeds")]:
        assert main(["train", "dpo", "--config", cfg, "--check", *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err, (extra, err)
    assert main(["train", "dpo", "--config", cfg, "--check", f"train_data={multi}", "--train_config", "pairs"]) == 0
    assert "first sample prepared" in capsys.readouterr().out


def test_sft_validation_conditions_on_the_first_training_clip(tmp_path, pipe_dir):
    """PSFT is image-to-video: its validation videos start from the first training clip's first latent frame."""
    from vidalign.training.components import load_components
    from vidalign.training.sampling import decode_latents, denormalize_latents
    from vidalign.training.sft_trainer import DiffusionSFTTrainer

    rng = np.random.default_rng(0)
    with ShardWriter(tmp_path / "clips", "data/default/train-00000-of-00001.tar") as w:
        for i in range(2):
            w.write(f"s0-{i:08d}", {"json": _meta(i), "prompt_embeds.npy": _emb16(),
                                    "latents.npy": (3 * rng.standard_normal((C, 3, 4, 4))).astype(np.float16)})
    args = build_config("sft", dict(model_name_or_path=pipe_dir, train_data=str(tmp_path / "clips"),
                                    output_dir=str(tmp_path / "sft"), bf16=False, use_cpu=True, max_steps=1,
                                    ema_decay=None, save_strategy="no", report_to="none", disable_tqdm=True,
                                    validation_prompts=["a red ball"], validation_num_inference_steps=2))
    tr = DiffusionSFTTrainer(args=args)
    video = tr.validation_videos(["a red ball"])[0]
    first = tr.first_example()["latents"][:, :1]
    vae = load_components(pipe_dir, transformer=False).vae
    with torch.no_grad():
        ref = decode_latents(vae, denormalize_latents(torch.from_numpy(first)[None], vae))[0, :, 0]
    ref = ((ref.permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    assert video.shape == (9, 32, 32, 3) and np.abs(video[0].astype(int) - ref.astype(int)).max() <= 1
    tr.train()  # validation at the end of training, as diffusers' scripts do
    assert (tmp_path / "sft" / "validation" / "step-000001" / "00.gif").is_file()


def _emb16() -> np.ndarray:
    return np.ones((6, 16), np.float16)


def test_validation_videos_reach_wandb_offline(tmp_path, monkeypatch):
    """report_to wandb (offline run, no network): the validation mp4 lands in the run's media, as wandb.Video."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = _reward_cfg(tmp_path, max_steps=1, gradient_accumulation_steps=1, report_to=["wandb"], save_strategy="no",
                      validation_prompts=["a red ball"], validation_num_inference_steps=2)
    _reward_trainer(cfg).train()
    videos = list((tmp_path / "wandb").glob("offline-run-*/files/media/videos/validation_*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 0
