"""DPO / SFT trainers on a tiny random WanTransformer3DModel (CPU, a few steps each)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import TrainerCallback

from vidalign.errors import ConfigError
from vidalign.training.config import DiffusionDPOConfig, DiffusionSFTConfig
from vidalign.training.dpo_trainer import DiffusionDPOTrainer
from vidalign.training.sft_trainer import DiffusionSFTTrainer

C, T, H, W, L_TXT, D_TXT = 4, 5, 8, 8, 7, 16
TRL_NAMES = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "loss/dpo", "loss/reg")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models run fastest on one thread, and don't stall when other jobs load the machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_wan(seed: int = 0):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=C,
                                 out_channels=C, text_dim=D_TXT, freq_dim=16, ffn_dim=32, num_layers=1,
                                 rope_max_seq_len=32)


def pair_samples(n: int = 16, seed: int = 0, offset: float = 1.0) -> list[dict]:
    """Winners sit at +offset, losers at −offset in latent space: a preference the LoRA can learn."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        out.append({
            "__key__": f"s0-{i:08d}",
            "json": {"prompt": "p", "weight": 1.0,
                     "latents": {"latents_mean": [0.0] * C, "latents_std": [1.0] * C}},
            "chosen_latents.npy": (rng.standard_normal((C, T, H, W)) + offset).astype(np.float16),
            "rejected_latents.npy": (rng.standard_normal((C, T, H, W)) - offset).astype(np.float16),
            "prompt_embeds.npy": np.ones((L_TXT, D_TXT), np.float16),
            "prompt_mask.npy": np.ones(L_TXT, bool),
        })
    return out


def clip_samples(n: int = 8, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"__key__": f"s0-{i:08d}", "json": {"prompt": "p", "latents": {"scaling_factor": 0.5}},
             "latents.npy": rng.standard_normal((C, T, H, W)).astype(np.float16),
             "prompt_embeds.npy": np.ones((L_TXT, D_TXT), np.float16)} for i in range(n)]


def dpo_cfg(tmp_path, **kw) -> DiffusionDPOConfig:
    base = dict(output_dir=str(tmp_path / "out"), bf16=False, use_cpu=True, max_steps=3,
                gradient_accumulation_steps=1, per_device_train_batch_size=2, learning_rate=1e-3, warmup_steps=0,
                lr_scheduler_type="constant", logging_steps=1, save_steps=1000, lora_rank=4, lora_alpha=4,
                report_to="none", disable_tqdm=True, dataloader_num_workers=0, seed=0)
    base.update(kw)
    return DiffusionDPOConfig(**base)


def _batch(trainer):
    batch = next(iter(trainer.get_train_dataloader()))
    return {k: v for k, v in batch.items() if not k.startswith("__")}


@pytest.mark.parametrize("use_lora", [True, False])
def test_dpo_loss_is_log2_when_policy_is_reference(tmp_path, use_lora):
    args = dpo_cfg(tmp_path, use_lora=use_lora, beta=5000.0, logit_scale=0.5, logit_clip=None)
    tr = DiffusionDPOTrainer(tiny_wan(), args, train_dataset=pair_samples(4))
    assert (tr.ref_model is None) == use_lora
    loss, out = tr.compute_loss(tr.model, _batch(tr), return_outputs=True)
    assert out["dpo"].loss.item() == pytest.approx(math.log(2), abs=1e-6)
    assert out["reg"].item() == 0.0
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)


def test_dpo_steps_change_only_lora_and_log_trl_metrics(tmp_path):
    tr = DiffusionDPOTrainer(tiny_wan(), dpo_cfg(tmp_path), train_dataset=pair_samples(8))
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    tr.train()
    changed = [k for k, v in tr.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all("lora_" in k for k in changed)
    assert any("lora_B" in k for k in changed)
    logs = [h for h in tr.state.log_history if "loss" in h]
    assert len(logs) == 3 and all(name in logs[-1] for name in TRL_NAMES)


def test_toy_preference_reward_accuracy_rises(tmp_path):
    args = dpo_cfg(tmp_path, max_steps=30, per_device_train_batch_size=4, learning_rate=1e-2, beta=50.0)
    tr = DiffusionDPOTrainer(tiny_wan(), args, train_dataset=pair_samples(16))
    tr.train()
    acc = [h["rewards/accuracies"] for h in tr.state.log_history if "rewards/accuracies" in h]
    assert acc[0] == 0.0  # policy = reference at step 1: no reward gap yet
    assert np.mean(acc[-5:]) > 0.9


def test_full_finetune_uses_frozen_reference_copy(tmp_path):
    tr = DiffusionDPOTrainer(tiny_wan(), dpo_cfg(tmp_path, use_lora=False, max_steps=2),
                             train_dataset=pair_samples(4))
    ref_before = {k: v.clone() for k, v in tr.ref_model.state_dict().items()}
    tr.train()
    assert all(torch.equal(v, ref_before[k]) for k, v in tr.ref_model.state_dict().items())
    assert not all(torch.equal(v, tr.ref_model.state_dict()[k]) for k, v in tr.model.state_dict().items())
    tr.save_model(str(tmp_path / "full"))
    from diffusers import WanTransformer3DModel

    loaded = WanTransformer3DModel.from_pretrained(str(tmp_path / "full" / "transformer"))
    assert all(torch.equal(v, tr.model.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_saved_lora_loads_into_wan_pipeline(tmp_path):
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline

    tr = DiffusionDPOTrainer(tiny_wan(), dpo_cfg(tmp_path, max_steps=2, lora_alpha=8, learning_rate=5e-2),
                             train_dataset=pair_samples(4))
    tr.train()
    tr.save_model(str(tmp_path / "lora"))
    vae = AutoencoderKLWan(base_dim=3, z_dim=C, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True], latents_mean=[0.0] * C, latents_std=[1.0] * C)
    pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=vae, transformer=tiny_wan(),
                       scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0))
    embeds = torch.randn(1, L_TXT, D_TXT, generator=torch.Generator().manual_seed(1))

    def run():
        return pipe(prompt_embeds=embeds, guidance_scale=1.0, num_inference_steps=2, height=16, width=16,
                    num_frames=5, output_type="np", generator=torch.Generator().manual_seed(0)).frames

    base = run()
    pipe.load_lora_weights(str(tmp_path / "lora"))
    tuned = run()
    assert np.abs(base - tuned).max() > 1e-4
    x, t = torch.randn(1, C, T, H, W), torch.tensor([700.0])
    with torch.no_grad():
        ours = tr.model(x, t, embeds, return_dict=False)[0]
        theirs = pipe.transformer(x, t, embeds, return_dict=False)[0]
    assert torch.allclose(ours, theirs, atol=1e-5)  # same weights and the same alpha/rank scaling


class _Crash(TrainerCallback):
    """Dies in the middle of training, after the checkpoint at step 3 (like a killed job)."""

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise KeyboardInterrupt


def _keys_recorder(trainer, seen):
    orig = trainer.training_step

    def step(model, inputs, num_items_in_batch=None):
        seen.extend(inputs["__key__"])
        return orig(model, inputs, num_items_in_batch)

    trainer.training_step = step


def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    # 3 steps × 3 micro-batches = 9 batches from 2 DataLoader workers: the resumed loader must start with the
    # worker that was due (rotation), and per-worker passes of 5 samples split batches of 2 across passes
    kw = dict(max_steps=5, save_steps=1, gradient_accumulation_steps=3, dataloader_num_workers=2,
              learning_rate=1e-2, lr_scheduler_type="cosine", caption_dropout=0.3, shared_timestep=False,
              empty_prompt_embeds="zeros")
    full_seen, part_seen, rest_seen = [], [], []
    full = DiffusionDPOTrainer(tiny_wan(), dpo_cfg(tmp_path / "a", **kw), train_dataset=pair_samples(10))
    _keys_recorder(full, full_seen)
    full.train()

    crashing = DiffusionDPOTrainer(tiny_wan(), dpo_cfg(tmp_path / "b", **kw), train_dataset=pair_samples(10),
                                   callbacks=[_Crash()])
    _keys_recorder(crashing, part_seen)
    with pytest.raises(KeyboardInterrupt):
        crashing.train()
    resumed = DiffusionDPOTrainer(tiny_wan(), dpo_cfg(tmp_path / "b", **kw), train_dataset=pair_samples(10))
    _keys_recorder(resumed, rest_seen)
    resumed.train(resume_from_checkpoint=True)

    assert resumed.state.global_step == 5
    assert len(part_seen) == 18 and part_seen + rest_seen == full_seen  # 9 batches × 2 pairs, then the rest
    a, b = full.model.state_dict(), resumed.model.state_dict()
    lora = [k for k in a if "lora_" in k]
    assert lora and all(torch.allclose(a[k], b[k], atol=1e-6) for k in lora)


def test_bad_lora_target_fails_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="attn3.to_k") as exc:
        DiffusionDPOTrainer(tiny_wan(), dpo_cfg(tmp_path, lora_target_modules=["attn3.to_k"]),
                            train_dataset=pair_samples(2))
    assert "\n" not in str(exc.value)
    # Wan's original names are accepted as aliases of diffusers' names
    tr = DiffusionDPOTrainer(tiny_wan(), dpo_cfg(tmp_path, lora_target_modules=["cross_attn.k", "text_embedding.0"]),
                             train_dataset=pair_samples(2))
    names = [n for n, p in tr.model.named_parameters() if p.requires_grad]
    assert any("attn2.to_k.lora_A" in n for n in names) and any("text_embedder.linear_1.lora_A" in n for n in names)


def test_sft_first_frame_conditioning_and_ema(tmp_path):
    args = DiffusionSFTConfig(output_dir=str(tmp_path / "sft"), bf16=False, use_cpu=True, max_steps=3,
                              per_device_train_batch_size=2, learning_rate=1e-3, logging_steps=1, save_steps=1000,
                              report_to="none", disable_tqdm=True, ema_decay=0.5, seed=0)
    assert args.first_frame_conditioning and args.timestep_sampler == "logit_normal" and not args.use_lora
    tr = DiffusionSFTTrainer(tiny_wan(), args, train_dataset=clip_samples())
    x0 = torch.randn(2, C, T, H, W)
    xt, target, t, mask = tr.noised(x0, torch.randn_like(x0), torch.tensor([0.9, 0.5]))
    assert torch.equal(xt[:, :, 0], x0[:, :, 0]) and not torch.equal(xt[:, :, 1], x0[:, :, 1])
    assert mask[0, 0, 0].item() == 0 and mask[0, 0, 1:].eq(1).all()
    start = {k: v.clone() for k, v in tr.model.state_dict().items()}
    tr.train()
    assert all("loss/sft" in h for h in tr.state.log_history if "loss" in h)
    tr.save_model(str(tmp_path / "final"))
    from diffusers import WanTransformer3DModel

    ema = WanTransformer3DModel.from_pretrained(str(tmp_path / "final" / "ema" / "transformer")).state_dict()
    live = tr.model.state_dict()
    k = "proj_out.weight"
    # the EMA sits strictly between the start and the live weights (decay 0.5 over 3 steps)
    assert not torch.equal(ema[k], live[k]) and not torch.equal(ema[k], start[k])


def test_caption_dropout_uses_the_datasets_encoded_empty_prompt(tmp_path):
    """VideoDPO drops a caption to "" before the text encoder: the trainer reads the encoded "" that `vidalign
    encode` stored with the data, and refuses to fall back to zeros silently."""
    from vidalign.contract import write_empty_prompt_embeds
    from vidalign.shards import ShardWriter

    data = tmp_path / "latents"
    with ShardWriter(data, "data/pairs/train-00000-of-00001.tar") as w:
        for s in pair_samples(4):
            w.write(s["__key__"], {k: v for k, v in s.items() if k != "__key__"})
    kw = dict(caption_dropout=0.99, train_data=str(data))
    with pytest.raises(ConfigError, match="empty_prompt_embeds.npy"):
        DiffusionDPOTrainer(tiny_wan(), dpo_cfg(tmp_path, **kw))
    empty = np.zeros((L_TXT - 2, D_TXT), np.float32)
    empty[0] = np.arange(D_TXT) / D_TXT  # the end token's hidden state, zeros after it (as Wan pads)
    write_empty_prompt_embeds(data, empty)
    tr = DiffusionDPOTrainer(tiny_wan(), dpo_cfg(tmp_path, **kw))
    embeds = torch.ones(3, L_TXT, D_TXT)
    gen = torch.Generator().manual_seed(0)
    out = tr.drop_captions(embeds, gen)
    dropped = [i for i in range(3) if not torch.equal(out[i], embeds[i])]
    assert dropped  # with p = 0.99
    for i in dropped:
        assert torch.allclose(out[i, 0], torch.from_numpy(empty[0]).half().float()) and out[i, 1:].abs().max() == 0
    zeros = DiffusionDPOTrainer(tiny_wan(), dpo_cfg(tmp_path, empty_prompt_embeds="zeros", **kw))
    assert zeros.drop_captions(embeds, torch.Generator().manual_seed(0))[dropped[0]].abs().max() == 0


def test_per_column_errors_run_in_the_trainer(tmp_path):
    args = dpo_cfg(tmp_path, beta=5000.0, logit_scale=0.5, logit_clip=None, error_reduction="column", max_steps=1)
    tr = DiffusionDPOTrainer(tiny_wan(), args, train_dataset=pair_samples(4))
    loss, out = tr.compute_loss(tr.model, _batch(tr), return_outputs=True)
    assert out["dpo"].losses.shape == (2,) and loss.item() == pytest.approx(math.log(2), abs=1e-4)
    with pytest.raises(ConfigError, match="error_reduction"):
        dpo_cfg(tmp_path, error_reduction="row")
