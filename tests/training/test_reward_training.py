"""Reward-gradient training on a tiny random Wan pipeline (CPU): sampler, gradient routing, toy reward, PISA data,
CLI and config errors."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from vidalign.errors import ConfigError, VidalignError
from vidalign.training.reward_config import build_reward_config, load_reward_config, read_prompts
from vidalign.training.reward_trainer import (
    RewardTrainer,
    clip_example,
    random_wan_components,
    save_components,
)
from vidalign.training.rewards import Reward, RewardOutput, register_reward, reward_names
from vidalign.training.sampling import (
    backprop_cutoff,
    decode_frames,
    decode_latents,
    encode_first_frame,
    flow_sigmas,
    normalize_latents,
    sample_flow,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions are dominated by thread overhead on a shared 2-core box
    yield
    torch.set_num_threads(n)


@dataclass(frozen=True)
class BrightnessOptions:
    sign: float = 1.0


class Brightness(Reward):
    """Toy reward: mean brightness of the decoded frames (``sign=-1``: darkness)."""

    def __init__(self, sign: float = 1.0):
        super().__init__()
        self.sign = sign

    def forward(self, frames, inputs):
        s = self.sign * frames.mean(dim=(1, 2, 3, 4))
        return RewardOutput(-s, s)


if "brightness" not in reward_names():
    register_reward("brightness", BrightnessOptions, Brightness)(
        lambda o, device="cpu", dtype=torch.float32: Brightness(o.sign))


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory):
    return save_components(random_wan_components("tiny", seed=0), tmp_path_factory.mktemp("tinywan"))


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "p.txt"
    path.write_text("# two prompts\na red ball\n\na cat playing\n")
    return path


def _cfg(tmp_path, prompt_file=None, **kw):
    base = dict(model_name_or_path="unused", output_dir=str(tmp_path / "out"), rewards=[{"name": "brightness"}],
                height=32, width=32, num_frames=9, num_inference_steps=4, max_sequence_length=8, guidance_scale=1.0,
                max_steps=2, save_steps=0, report_to="none", use_cpu=True, disable_tqdm=True)
    if prompt_file is not None and "train_data" not in kw:
        base["prompts"] = str(prompt_file)
    base.update(kw)
    return build_reward_config(base)


def _trainer(cfg, sensitive_vae: bool = False, **kw):
    c = random_wan_components("tiny", seed=0)
    if sensitive_vae:  # a random decoder's output barely depends on its latents; make it visibly depend on them
        with torch.no_grad():
            c.vae.decoder.conv_out.weight.mul_(10)
    return RewardTrainer(c, cfg, **kw)


# ----------------------------------------------------------------------------------------------- sampler
def test_backprop_cutoff_modes():
    assert backprop_cutoff("last", 4) == 3
    assert backprop_cutoff("all", 4) == 0
    assert backprop_cutoff("specific", 4, 2) == 2
    draws = [backprop_cutoff("rand", 4, rng=random.Random(7)) for _ in range(3)]
    assert len(set(draws)) == 1 and 0 <= draws[0] < 4  # seeded
    assert {backprop_cutoff("rand", 4, rng=r) for r in [random.Random(i) for i in range(40)]} == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="backprop_step"):
        backprop_cutoff("specific", 4, 4)


def test_sampler_matches_diffusers_pipeline():
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    c = random_wan_components("tiny", seed=1)
    sched = FlowMatchEulerDiscreteScheduler(shift=5.0)
    emb = torch.randn(1, 8, 16)
    noise = torch.randn(1, 4, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    pipe = WanPipeline(tokenizer=c.tokenizer, text_encoder=c.text_encoder, vae=c.vae, scheduler=sched,
                       transformer=c.transformer)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(prompt_embeds=emb, negative_prompt_embeds=torch.zeros_like(emb), height=32, width=32, num_frames=9,
               num_inference_steps=4, guidance_scale=3.0, latents=noise.clone(), output_type="latent").frames
    sigmas = flow_sigmas(FlowMatchEulerDiscreteScheduler(shift=5.0), 4)
    with torch.no_grad():
        ours = sample_flow(c.transformer, sigmas, noise, emb, cutoff=3, negative_embeds=torch.zeros_like(emb),
                           guidance_scale=3.0).latents
    assert torch.allclose(ours, ref, atol=1e-5)


def test_decode_matches_vae_prefix_and_checkpointing():
    vae = random_wan_components("tiny", seed=2).vae
    z = torch.randn(1, 4, 3, 4, 4)
    ref = vae.decode(z, return_dict=False)[0]
    assert torch.allclose(decode_latents(vae, z), ref, atol=1e-6)
    part = decode_frames(vae, normalize_latents(z, vae), [0, 3])  # needs only latent frames 0..1
    assert part.shape == (1, 2, 3, 32, 32)
    assert torch.allclose(part, ref[:, :, [0, 3]].permute(0, 2, 1, 3, 4), atol=1e-5)
    weights = torch.randn_like(ref)
    grads = []
    for ckpt in (False, True):
        zz = z.clone().requires_grad_(True)
        (decode_latents(vae, zz, checkpointing=ckpt) * weights).sum().backward()
        grads.append(zz.grad)
    assert grads[0].abs().sum() > 0 and torch.allclose(grads[0], grads[1], atol=1e-6)


@pytest.mark.parametrize("mode, step, lora", [("last", None, True), ("specific", 1, True), ("all", None, False),
                                              ("rand", None, True)])
def test_gradients_only_from_allowed_steps_and_trainable_params(tmp_path, prompt_file, mode, step, lora):
    cfg = _cfg(tmp_path, prompt_file, backprop_mode=mode, backprop_step=step, use_lora=lora, decode_frames="all")
    tr = _trainer(cfg)
    model = tr.model
    if lora:  # LoRA B starts at zero, which zeroes A's gradient; give B a value so both must receive one
        for name, p in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.1)
    loss, metrics, out, _ = tr.reward_loss(model, tr.next_batch(), keep_velocities=True)
    cutoff = out.cutoff
    assert metrics["cutoff"] == cutoff and 0 <= cutoff < 4
    if mode != "rand":
        assert cutoff == backprop_cutoff(mode, 4, step)
    assert [v.requires_grad for v in out.velocities] == [i >= cutoff for i in range(4)]
    live = [v for v in out.velocities if v.requires_grad]
    per_step = torch.autograd.grad(loss, live, retain_graph=True)
    assert all(float(g.norm()) > 0 for g in per_step)  # every allowed step contributes
    loss.backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and (all("lora" in n for n in trainable) if lora else len(trainable) == len(list(model.parameters())))
    for name, p in model.named_parameters():
        if name in trainable:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        else:
            assert p.grad is None, name
    assert any(float(p.grad.norm()) > 0 for n, p in model.named_parameters() if n in trainable)
    assert all(p.grad is None for p in tr.vae.parameters())


def test_toy_reward_moves_in_the_right_direction(tmp_path, prompt_file):
    prompts = ["a red ball", "a cat playing"]
    for sign in (1.0, -1.0):
        cfg = _cfg(tmp_path / str(sign), prompt_file, rewards=[{"name": "brightness", "sign": sign}], use_lora=False,
                   learning_rate=5e-2, max_steps=5, decode_frames="all", seed=3, logging_steps=1, save_strategy="no")
        tr = _trainer(cfg, sensitive_vae=True)
        before = tr.score(prompts)["reward/brightness"]
        tr.train()
        logs = [h for h in tr.state.log_history if "loss" in h]
        assert len(logs) == 5 and all(h["grad_norm"] > 0 and np.isfinite(h["loss"]) for h in logs)
        assert all("reward/brightness" in h and "cutoff" in h for h in logs)
        after = tr.score(prompts)["reward/brightness"]
        assert after > before + 0.003, (sign, before, after)


# ----------------------------------------------------------------------------------------------- PISA data
def _drop_clip(rng: np.random.Generator, frames: int = 10, size: int = 32):
    """A bright square falling on a dark background: frames, masks [T, 2, H, W] (dropper last), depth."""
    video = np.full((frames, size, size, 3), 30, np.uint8)
    masks = np.zeros((frames, 2, size, size), bool)
    masks[:, 0, 26:30, 4:10] = True  # a resting object
    for t in range(frames):
        y = 2 + 2 * t
        masks[t, 1, y : y + 6, 14:20] = True
    video[masks[:, 0]] = (40, 200, 40)
    video[masks[:, 1]] = (220, 60, 60)
    depth = (2.0 + rng.random((frames, size, size))).astype(np.float16)
    return video, masks, depth


def _write_drop_shards(root, n=2):
    from vidalign.media import encode_mp4
    from vidalign.shards import ShardWriter

    rng = np.random.default_rng(0)
    with ShardWriter(root, "data/default/train-00000-of-00001.tar") as w:
        for i in range(n):
            video, masks, depth = _drop_clip(rng)
            w.write(f"clip{i:03d}", {"mp4": encode_mp4(video, 16), "mask.npz": {"mask": masks},
                                     "depth.npy": depth, "json": {"prompt": "a video of an object dropping",
                                                                  "seed": i + 1}})
    return root


def test_clip_example_reads_raw_and_decoded_members():
    from vidalign.format import encode_member
    from vidalign.media import encode_mp4

    video, masks, depth = _drop_clip(np.random.default_rng(1))
    raw = {"__key__": "k", "mp4": encode_mp4(video, 16), "mask.npz": encode_member("mask.npz", {"mask": masks}),
           "depth.npy": encode_member("depth.npy", depth), "json": b'{"prompt": "A ball falls."}'}
    ex = clip_example(raw, None, {"masks", "depth"})
    assert ex["prompt"] == "A ball falls." and ex["frames"].shape == (10, 32, 32, 3)
    assert ex["masks"].dtype == bool and (ex["masks"] == masks).all() and ex["depth"].shape == (10, 32, 32)
    with pytest.raises(VidalignError, match="mask.npz"):
        clip_example({"__key__": "k", "mp4": raw["mp4"], "json": {"prompt": "x"}}, None, {"masks"})


def test_first_frame_conditioning_keeps_latent_frame_zero_clean(tmp_path):
    root = _write_drop_shards(tmp_path / "drops")
    cfg = _cfg(tmp_path, train_data=str(root), rewards=[{"name": "flow", "model": "horn_schunck"}],
               first_frame_conditioning=True, decode_frames="all", backprop_mode="all", use_lora=False)
    tr = _trainer(cfg)
    seen = []
    hook = tr.model.register_forward_pre_hook(lambda m, a, k: seen.append(k["timestep"].clone()),
                                              with_kwargs=True)
    batch = tr.next_batch()
    assert batch["gt_frames"].shape == (1, 10, 3, 32, 32) and "gt_masks" not in batch
    loss, metrics, out, frames = tr.reward_loss(tr.model, batch)
    hook.remove()
    first = encode_first_frame(tr.vae, batch["gt_frames"][:, 0])
    assert torch.allclose(out.latents[:, :, :1], first)
    assert frames.shape[1] == 9 and metrics["reward/flow"] >= 0  # 9 frames generated, clip has 10: all compared
    tokens_per_frame = (32 // 8 // 2) ** 2
    for ts in seen:  # per-token timesteps: 0 on the clean first latent frame
        assert ts.shape == (1, 3 * tokens_per_frame)
        assert (ts[:, :tokens_per_frame] == 0).all() and (ts[:, tokens_per_frame:] > 0).all()
    loss.backward()
    assert torch.isfinite(loss)


def _cli(argv):
    from vidalign.cli import main

    code = main(argv)
    return code


def _write_yaml(path, values):
    import yaml

    path.write_text(yaml.safe_dump(values))
    return path


def test_cli_pisa_full_finetune_end_to_end(tmp_path, wan_dir, capsys):
    root = _write_drop_shards(tmp_path / "drops", n=2)
    cfg = _write_yaml(tmp_path / "oro.yaml", dict(
        model_name_or_path=str(wan_dir), train_data=str(root), prompt="a video of an object dropping",
        first_frame_conditioning=True, rewards=[{"name": "flow", "model": "horn_schunck"}], use_lora=False,
        backprop_mode="all", decode_frames="all", height=32, width=32, num_frames=9, num_inference_steps=3,
        guidance_scale=2.0, max_sequence_length=8, max_steps=2, learning_rate=1e-4, save_steps=1,
        report_to="none", use_cpu=True, disable_tqdm=True))
    out = tmp_path / "run"
    assert _cli(["train", "reward", "--config", str(cfg), f"output_dir={out}"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("vidalign train reward: 2 steps") and "reward/flow=" in summary
    state = json.loads((out / "trainer_state.json").read_text())
    logs = [x for x in state["log_history"] if "loss" in x]
    assert state["global_step"] == 2 and [x["step"] for x in logs] == [1, 2] and all(x["cutoff"] == 0 for x in logs)
    assert (out / "transformer" / "config.json").is_file() and (out / "checkpoint-1" / "transformer").is_dir()
    assert (out / "checkpoint-1" / "optimizer.pt").is_file() and (out / "README.md").is_file()
    from diffusers import WanTransformer3DModel

    WanTransformer3DModel.from_pretrained(out / "transformer")


def test_cli_vader_lora_saves_loadable_weights(tmp_path, wan_dir, prompt_file):
    cfg = _write_yaml(tmp_path / "vader.yaml", dict(
        model_name_or_path=str(wan_dir), prompts=str(prompt_file), rewards=[{"name": "brightness"}],
        height=32, width=32, num_frames=9, num_inference_steps=3, max_sequence_length=8, max_steps=1,
        save_steps=0, report_to="none", use_cpu=True, disable_tqdm=True, output_dir=str(tmp_path / "run")))
    assert _cli(["train", "reward", "--config", str(cfg)]) == 0
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    from vidalign.training.reward_trainer import load_components

    c = load_components(str(wan_dir))
    pipe = WanPipeline(tokenizer=c.tokenizer, text_encoder=c.text_encoder, vae=c.vae,
                       scheduler=FlowMatchEulerDiscreteScheduler(), transformer=c.transformer)
    pipe.load_lora_weights(tmp_path / "run")
    assert any("lora" in n for n, _ in pipe.transformer.named_parameters())


def test_shipped_configs_validate(capsys, tmp_path):
    # --check looks for the aesthetic head file the shipped config names (users download LAION's head there)
    assert _cli(["train", "reward", "--config", "training/configs/vader_aesthetic.yaml", "--check"]) == 2
    err = capsys.readouterr().err
    assert "rewards[0].head='models/sac+logos+ava1-l14-linearMSE.pth': no such file" in err
    head = tmp_path / "head.pth"
    torch.save({"weight": torch.zeros(1, 768), "bias": torch.zeros(1)}, head)
    assert _cli(["train", "reward", "--config", "training/configs/vader_aesthetic.yaml", "--check",
                 f"rewards=[{{name: aesthetic, head: {head}}}]", f"output_dir={tmp_path / 'out'}"]) == 0
    out = capsys.readouterr().out
    assert "LoRA r16" in out and "clip_model='openai/clip-vit-large-patch14': Hub id" in out
    vader = load_reward_config("training/configs/vader_aesthetic.yaml")
    # VADER's released LoRA: to_q/k/v, r 16, α 8 (peft's default), dropout 0.01
    assert (vader.lora_target_modules, vader.lora_rank, vader.lora_alpha, vader.lora_dropout) == \
        (["to_q", "to_k", "to_v"], 16, 8.0, 0.01)
    oro = load_reward_config("training/configs/pisa_oro.yaml")
    assert oro.learning_rate == 1e-6 and oro.rewards[0]["include_seed_frame"] is True  # oro_seg.py
    cfg = load_reward_config("training/configs/pisa_oro.yaml", ["rewards=[{name: depth}]"])
    assert cfg.backprop_mode == "all" and cfg.decode_frames == "all" and not cfg.use_lora
    assert cfg.first_frame_conditioning and cfg.needs_ground_truth() == ["depth"]
    assert len(read_prompts("simple_animals")) > 10


@pytest.mark.parametrize("change, needle", [
    (dict(rewards=[{"name": "aesthetik", "head": "h.pt"}]), "did you mean 'aesthetic'"),
    (dict(backprop_mode="specific", backprop_step=4), "backprop_step=4"),
    (dict(rewards=[{"name": "segmentation"}], decode_frames="all"), "set train_data"),
    (dict(rewards=[{"name": "flow", "model": "horn_schunck"}]), "decode_frames"),
    (dict(rewards=[{"name": "brightness", "colour": 1}]), "colour"),
    (dict(num_frames=10), "num_frames=10"),
    (dict(decode_frames=[0, 9]), "decode_frames"),
    (dict(learning_rate="fast"), "learning_rate"),
    (dict(lora_rnk=8), "did you mean lora_rank"),
    (dict(prompts="no_such_set"), "prompt set"),
])
def test_bad_configs_fail_in_one_line(tmp_path, prompt_file, change, needle):
    with pytest.raises(ConfigError) as err:
        _cfg(tmp_path, prompt_file, **change)
    msg = str(err.value)
    assert needle in msg and "\n" not in msg


def test_lora_dropout_reaches_the_adapter(tmp_path, prompt_file):
    tr = _trainer(_cfg(tmp_path, prompt_file, lora_dropout=0.01, lora_target_modules=["to_q", "to_k", "to_v"],
                       lora_alpha=8.0))
    model = getattr(tr, "model", None) or tr.transformer  # a transformers.Trainer keeps it as .model
    drops = {float(m.p) for n, m in model.named_modules() if "lora_dropout" in n and hasattr(m, "p")}
    assert drops == {0.01}


def test_lora_targets_that_match_nothing_fail_in_one_line(tmp_path, prompt_file):
    with pytest.raises(VidalignError, match="lora_target_modules") as err:
        _trainer(_cfg(tmp_path, prompt_file, lora_target_modules=["attn9.nope"]))
    assert "\n" not in str(err.value)


def test_cli_bad_config_fails_in_one_line(tmp_path, prompt_file, capsys):
    cfg = _write_yaml(tmp_path / "bad.yaml", dict(prompts=str(prompt_file), rewards=[{"name": "nope"}]))
    assert _cli(["train", "reward", "--config", str(cfg), "--check"]) == 2
    err = capsys.readouterr().err.strip()
    assert "'nope' is unknown" in err and "\n" not in err


def test_cli_reward_pushes_weights_and_model_card_to_the_hub(tmp_path, wan_dir, prompt_file, hub_server):
    """`push_to_hub` through Trainer's own machinery, against a Hub-protocol server on 127.0.0.1: a model repository
    is created, every save pushes (in the background) the diffusers-format weights, the YAML config and the model
    card, and the final save pushes again."""
    import yaml

    cfg = _write_yaml(tmp_path / "vader.yaml", dict(
        model_name_or_path=str(wan_dir), prompts=str(prompt_file), rewards=[{"name": "brightness"}],
        height=32, width=32, num_frames=9, num_inference_steps=2, max_sequence_length=8, max_steps=2,
        save_steps=1, report_to="none", use_cpu=True, disable_tqdm=True, output_dir=str(tmp_path / "run"),
        push_to_hub=True, hub_model_id="org/vader-tiny"))
    assert _cli(["train", "reward", "--config", str(cfg)]) == 0
    files = hub_server.files("org/vader-tiny", "model")
    assert {"README.md", "pytorch_lora_weights.safetensors", "training_config.yaml"} <= set(files)
    assert not any(f.startswith(("checkpoint-", "_")) for f in files)  # checkpoints stay local (hub_strategy)
    assert files["pytorch_lora_weights.safetensors"] == (tmp_path / "run" / "pytorch_lora_weights.safetensors") \
        .read_bytes()
    card = files["README.md"].decode()
    meta = yaml.safe_load(card.split("---")[1])
    assert {"lora", "reward-gradient", "diffusers"} <= set(meta["tags"]) and meta["library_name"] == "diffusers"
    assert 'pipe.load_lora_weights("org/vader-tiny")' in card and "| rewards | brightness × 1 |" in card
    assert "| steps | 2 of max_steps 2 |" in card  # the final push carries the final card
    assert yaml.safe_load(files["training_config.yaml"])["hub_model_id"] == "org/vader-tiny"
    # a push per save while none is in flight (Trainer's rule), then the final save's push
    commits = hub_server.commits("org/vader-tiny", "model")
    assert commits[1] == "Training in progress, step 1" and commits[-1] == "Model save", commits
    assert hub_server.count("POST", "/api/repos/create") == 1
