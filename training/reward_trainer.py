"""Reward-gradient fine-tuning (VADER; PISA's object reward optimisation), SPEC §5, on ``transformers.Trainer``.

Each optimizer step: draw prompts (VADER: a prompt set, drawn at random) or ground-truth drop clips (PISA: first
frame, masks, depth), sample latents from noise with the policy (:func:`~vidalign.training.sampling.sample_flow`,
gradients from the cutoff step to the end), decode the requested frames with gradient checkpointing, score them
with the weighted rewards; ``Trainer`` backpropagates, accumulates, clips to ``max_grad_norm`` and steps the
optimizer and scheduler. LoRA (rank 16 on attention, VADER) or full fine-tuning (PISA).

:class:`RewardTrainer` shares :class:`~vidalign.training.trainer_base.VidalignTrainer` with the DPO and SFT
trainers: checkpoints with optimizer, scheduler and RNG state, an exactly resumable data stream (prompts or drop
shards, split by rank and DataLoader worker), per-step seeded noise, ``report_to``, ``push_to_hub``, callbacks,
``save_total_limit``, diffusers-format weights (``WanPipeline.load_lora_weights``) with a model card, and
validation videos. Metrics: ``reward/<name>`` (scores, TRL-style averages) and ``cutoff``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidalign import contract as C
from vidalign.errors import ConfigError, InputError, VidalignError
from vidalign.streaming import ShardStream, stream
from vidalign.training.components import (  # noqa: F401  (re-exported: the reward trainer's model API)
    RANDOM_PRESETS,
    WanComponents,
    _base,
    _to,
    load_components,
    random_wan_components,
    save_components,
)
from vidalign.training.data import META_KEYS, training_stream
from vidalign.training.reward_config import RewardGradientConfig
from vidalign.training.rewards import Reward, RewardInputs
from vidalign.training.sampling import (
    SampleOutput,
    backprop_cutoff,
    decode_frames,
    encode_first_frame,
    flow_sigmas,
    num_latent_frames,
    sample_flow,
)
from vidalign.training.trainer_base import VidalignTrainer


# ----------------------------------------------------------------------------------------------- data
def clip_example(sample: dict, caption: str | None, need: set[str]) -> dict[str, Any]:
    """A drop-shard sample (``mp4``, ``json``, ``mask.npz``, ``depth.npy``; decoded or raw bytes) → arrays; the
    text is ``caption`` when given, else the sample's training text (:func:`vidalign.contract.training_text`:
    its ``caption``, else its ``prompt``)."""
    from vidalign.media import decode_mp4

    key = sample.get("__key__", "<sample>")
    if "mp4" not in sample:
        raise InputError(key, "mp4", "the sample has no mp4 member", "train_data must be single-clip drop shards")
    video = C.member(sample, "mp4")
    frames = video if isinstance(video, np.ndarray) else decode_mp4(bytes(video), source=str(key))[0]
    prompt = caption or C.training_text(C.record(sample), str(key))
    out: dict[str, Any] = {"key": key, "prompt": prompt, "frames": frames}
    for member, field_name in (("mask.npz", "masks"), ("depth.npy", "depth")):
        if field_name not in need:
            continue
        if member not in sample:
            raise InputError(key, member, "missing, but a reward compares with it", "use drop shards that have it")
        value = C.member(sample, member)
        out[field_name] = np.asarray(value["mask"] if member == "mask.npz" else value)
    return out


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` → float32 ``[T, 3, height, width]`` in [−1, 1] (antialiased bilinear)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1
    if tuple(x.shape[-2:]) != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return x.numpy()


@dataclass(frozen=True)
class DropClipPrep:
    """One PISA example: the clip's frames at the sampling size, its caption and the GT members a reward reads."""

    caption: str | None
    need: tuple[str, ...]
    height: int
    width: int

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict[str, Any]:
        del rng
        ex = clip_example(sample, self.caption, set(self.need))
        out = {"prompt": ex["prompt"], "gt_frames": resize_frames(ex["frames"], self.height, self.width)}
        if "masks" in ex:
            out["gt_masks"] = ex["masks"].astype(bool)
        if "depth" in ex:
            out["gt_depth"] = ex["depth"].astype(np.float32)
        return out


@dataclass(frozen=True)
class PromptPrep:
    """One VADER example: a prompt."""

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict[str, Any]:
        del rng
        return {"prompt": sample["prompt"]}


def prompt_stream(prompts: list[str]) -> ShardStream:
    """Prompts drawn uniformly with replacement (VADER's ``random.choice``): the one stream over the prompt list,
    resampled, seeded per rank and worker, so any number of them share a short list and a resume draws the same."""
    if not prompts:
        raise ConfigError("prompts: the prompt set is empty")
    rows = [{"__key__": f"p{i:06d}", "prompt": p} for i, p in enumerate(prompts)]
    return stream(rows, resample=True, decode=False, epochs=None)


def collate_rewards(samples: list[dict]) -> dict[str, Any]:
    """Prompts as a list; GT frames/depth stacked (trimmed to the shortest clip); masks one tensor per sample (object
    counts differ); stream tags as int64."""
    out: dict[str, Any] = {"prompts": [s["prompt"] for s in samples]}
    if "gt_frames" in samples[0]:
        t = min(len(s["gt_frames"]) for s in samples)
        out["gt_frames"] = torch.from_numpy(np.stack([s["gt_frames"][:t] for s in samples]))
        if "gt_masks" in samples[0]:
            out["gt_masks"] = [torch.from_numpy(s["gt_masks"][:t]) for s in samples]
        if "gt_depth" in samples[0]:
            out["gt_depth"] = torch.from_numpy(np.stack([s["gt_depth"][:t] for s in samples]))
    for k in META_KEYS:
        if k in samples[0]:
            out[k] = torch.tensor([s[k] for s in samples], dtype=torch.long)
    if "__key__" in samples[0]:
        out["__key__"] = [s["__key__"] for s in samples]
    return out


class PromptEmbedder:
    """Text embeddings cached by prompt; the encoder can be released once a finite prompt set is encoded."""

    def __init__(self, tokenizer, text_encoder, max_length: int, device, dtype):
        self.tokenizer, self.text_encoder = tokenizer, text_encoder
        self.max_length, self.device, self.dtype = max_length, device, dtype
        self.cache: dict[str, torch.Tensor] = {}

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        missing = [p for p in dict.fromkeys(prompts) if p not in self.cache]
        if missing:
            if self.text_encoder is None:
                raise VidalignError(f"prompt {missing[0]!r} was not encoded before the text encoder was released")
            for i in range(0, len(missing), 16):
                chunk = missing[i : i + 16]
                emb = C.encode_text(self.tokenizer, self.text_encoder, chunk, self.max_length)[0]
                self.cache.update(zip(chunk, emb.to(self.device, self.dtype)))
        return torch.stack([self.cache[p] for p in prompts])

    def release(self) -> None:
        self.text_encoder = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def reward_source(data: Any, args: RewardGradientConfig) -> ShardStream:
    """The stream of the prompt set, or of the drop shards / ``datasets`` dataset / sample dicts ``data`` (default
    ``args.train_data``): the swap point of the reward trainer's data."""
    if data is None and args.train_data is None:
        return prompt_stream(args.prompt_list)
    data = data if data is not None else args.train_data
    return training_stream(data, args.train_config, args.data_split, args.data_resample, args.shuffle_buffer)


# ----------------------------------------------------------------------------------------------- trainer
class RewardTrainer(VidalignTrainer):
    """Reward-gradient trainer (see the module docstring).

    Args:
        model: the Wan pipeline's parts (:class:`WanComponents`), a pipeline Hub id / folder, or None
            (``args.model_name_or_path``).
        args: a :class:`~vidalign.training.reward_config.RewardGradientConfig`.
        train_dataset: drop shards (folder, glob, list of shards) or a list of drop-shard sample dicts; default
            ``args.train_data``, or the prompt set when ``args.prompts`` is set.
        rewards: ``[(weight, Reward), ...]`` replacing the config's (tests, notebooks).
        callbacks, optimizers, peft_config: as the other trainers.
    """

    config_class = RewardGradientConfig
    card_tags = ("reward-gradient",)

    def __init__(self, model: WanComponents | str | None = None, args: RewardGradientConfig | None = None,
                 train_dataset: Any = None, rewards: list[tuple[float, Reward]] | None = None,
                 callbacks: list | None = None, optimizers: tuple = (None, None), peft_config: Any = None,
                 **kwargs: Any):
        if args is None or not isinstance(args, RewardGradientConfig):
            raise ConfigError(f"RewardTrainer needs args=RewardGradientConfig(...), got {type(args).__name__}")
        device = args.device
        self.weight_dtype = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else torch.float32
        comps = model if isinstance(model, WanComponents) else load_components(
            str(model or args.model_name_or_path), args.model_revision, self.weight_dtype,
            self.weight_dtype if args.use_lora else torch.float32)
        self.vae = _to(comps.vae, device, self.weight_dtype).requires_grad_(False).eval()
        _to(comps.text_encoder, device, self.weight_dtype).requires_grad_(False).eval()
        transformer = comps.transformer
        transformer.requires_grad_(False)
        _to(transformer, device, self.weight_dtype if args.use_lora else torch.float32)
        self.rewards = rewards if rewards is not None else [
            (s.weight, s.build(device, self.weight_dtype)) for s in args.reward_specs]
        self.reward_names = [s.name for s in args.reward_specs] if rewards is None else [
            type(r).__name__ for _, r in rewards]
        self.need = tuple(sorted({f for _, r in self.rewards for f in getattr(r, "gt_fields", ())}))
        self.prompt_set = train_dataset is None and args.train_data is None
        super().__init__(model=transformer, args=args, train_dataset=train_dataset, callbacks=callbacks,
                         optimizers=optimizers, peft_config=peft_config, **kwargs)
        self.model.train()
        self.embed = PromptEmbedder(comps.tokenizer, comps.text_encoder, args.max_sequence_length, device,
                                    self.weight_dtype)
        from diffusers import FlowMatchEulerDiscreteScheduler

        self.scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=args.num_train_timesteps,
                                                         shift=args.flow_shift)
        self.sigmas = flow_sigmas(self.scheduler, args.num_inference_steps, device)
        if self.prompt_set:  # a finite prompt set: encode once, free the encoder
            self.embed(list(args.prompt_list) + [args.negative_prompt] + list(args.validation_prompt_list))
            self.embed.release()

    # --- data
    def make_source(self, data: Any, args: RewardGradientConfig):
        return reward_source(data, args)

    def make_prep(self):
        a = self.args
        if self.prompt_set:
            return PromptPrep()
        return DropClipPrep(a.prompt, self.need, a.height, a.width)

    def collate(self, samples: list[dict]) -> dict[str, Any]:
        return collate_rewards(samples)

    def next_batch(self) -> dict[str, Any]:
        """The first batch of a fresh stream, on the device (tests, notebooks)."""
        batch = next(iter(self.get_train_dataloader()))
        return self._prepare_inputs({k: v for k, v in batch.items() if k not in META_KEYS and k != "__key__"})

    # --- one step
    def _rngs(self, seed: int | None = None) -> tuple[torch.Generator, random.Random]:
        """Noise generator and frame/cutoff draws of this step: seeded by (seed, rank, batch), or by ``seed``."""
        if seed is None and self._stream_state is not None:
            gen = self.step_generator(self.args.device)
            return gen, random.Random(int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device)))
        s = self.args.seed if seed is None else seed
        return torch.Generator(self.args.device).manual_seed(s), random.Random(s)

    def frame_indices(self, rng: random.Random, limit: int | None = None) -> list[int]:
        """Frames to decode this step (``random``: one uniformly drawn frame, below ``limit`` when GT is shorter)."""
        n = self.args.num_frames if limit is None else min(self.args.num_frames, limit)
        d = self.args.decode_frames
        if d == "random":
            return [rng.randrange(n)]
        return list(range(self.args.num_frames)) if d == "all" else list(d)

    def sample(self, model: nn.Module, inputs: dict[str, Any], cutoff: int, gen: torch.Generator,
               keep_velocities: bool = False) -> SampleOutput:
        a, vae = self.args, self.vae
        prompts = inputs["prompts"]
        b = len(prompts)
        base = _base(model)
        ts, ss = int(vae.config.scale_factor_temporal), int(vae.config.scale_factor_spatial)
        shape = (b, int(base.config.in_channels), num_latent_frames(a.num_frames, ts), a.height // ss, a.width // ss)
        noise = torch.randn(shape, generator=gen, device=gen.device).to(a.device)
        emb = self.embed(prompts)
        neg = self.embed([a.negative_prompt] * b) if a.guidance_scale > 1 else None
        first = None
        if a.first_frame_conditioning:
            first = encode_first_frame(vae, inputs["gt_frames"][:, 0].to(a.device))
        with self.accelerator.autocast():
            return sample_flow(model, self.sigmas, noise, emb, cutoff=cutoff, negative_embeds=neg,
                               guidance_scale=a.guidance_scale, first_latent=first,
                               num_train_timesteps=a.num_train_timesteps, keep_velocities=keep_velocities,
                               patch_size=base.config.patch_size, dtype=self.weight_dtype)

    def reward_loss(self, model: nn.Module, inputs: dict[str, Any], cutoff: int | None = None,
                    keep_velocities: bool = False, seed: int | None = None):
        """Sample, decode, score: ``(loss, metrics, sample_output, frames)`` for one micro-batch."""
        a = self.args
        gen, rng = self._rngs(seed)
        if cutoff is None:
            cutoff = backprop_cutoff(a.backprop_mode, a.num_inference_steps, a.backprop_step, rng)
        out = self.sample(model, inputs, cutoff, gen, keep_velocities)
        gt = inputs.get("gt_frames")
        tg = gt.shape[1] if gt is not None else None
        idx = self.frame_indices(rng, tg)
        if tg is not None:
            idx = [i for i in idx if i < tg]
            if not idx:
                raise InputError(inputs.get("__key__", "<batch>"), "mp4", f"the clips have {tg} frames, fewer "
                                 "than the decoded ones", "decode earlier frames or use longer clips")
        with self.accelerator.autocast():
            frames = decode_frames(self.vae, out.latents, idx, checkpointing=a.vae_gradient_checkpointing)
        pick = torch.as_tensor(idx)
        masks, depth = inputs.get("gt_masks"), inputs.get("gt_depth")
        rin = RewardInputs(prompts=inputs["prompts"], frame_indices=idx,
                           gt_frames=gt[:, pick.to(gt.device)].to(a.device) if gt is not None else None,
                           gt_masks=[m[pick.to(m.device)] for m in masks] if masks is not None else None,
                           gt_depth=depth[:, pick.to(depth.device)] if depth is not None else None)
        total = frames.new_zeros(())
        metrics: dict[str, float] = {"cutoff": float(cutoff)}
        for name, (weight, reward) in zip(self.reward_names, self.rewards):
            r = reward(frames.float(), rin)
            total = total + weight * r.loss.mean()
            metrics[f"reward/{name}"] = float(r.score.detach().float().mean())
        return total, metrics, out, frames

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch=None):
        loss, metrics, out, frames = self.reward_loss(model, inputs)
        self.record(**metrics)
        return (loss, {"sample": out, "frames": frames}) if return_outputs else loss

    @torch.no_grad()
    def score(self, inputs: dict[str, Any] | list[str], seed: int = 0) -> dict[str, float]:
        """Reward scores of ``inputs`` (or prompts) sampled from fixed noise (``seed``) without gradients."""
        if not isinstance(inputs, dict):
            inputs = {"prompts": list(inputs)}
        model = self.accelerator.unwrap_model(self.model)
        _, metrics, _, _ = self.reward_loss(model, inputs, cutoff=self.args.num_inference_steps - 1, seed=seed)
        return metrics

    # --- validation, card
    def validation_videos(self, prompts: list[str]) -> list[np.ndarray]:
        from vidalign.training.validation import render_videos

        a = self.args
        first = None
        if a.first_frame_conditioning:
            gt = torch.from_numpy(self.first_example()["gt_frames"][:1]).to(a.device)
            first = encode_first_frame(self.vae, gt)
        return render_videos(self.accelerator.unwrap_model(self.model), self.vae, self.embed, prompts,
                             height=a.validation_height or a.height, width=a.validation_width or a.width,
                             num_frames=a.validation_num_frames or a.num_frames,
                             num_inference_steps=a.validation_num_inference_steps,
                             guidance_scale=a.validation_guidance_scale, flow_shift=a.flow_shift,
                             num_train_timesteps=a.num_train_timesteps, seed=a.validation_seed,
                             negative_prompt=a.negative_prompt, first_latent=first,
                             autocast=self.accelerator.autocast)

    def model_card_info(self) -> dict[str, Any]:
        a = self.args
        return {"rewards": ", ".join(f"{n} × {w:g}" for n, (w, _) in zip(self.reward_names, self.rewards)),
                "sampling": f"{a.num_frames} frames at {a.height}×{a.width}, {a.num_inference_steps} steps, "
                            f"guidance {a.guidance_scale:g}, flow shift {a.flow_shift:g}",
                "gradients": f"backprop {a.backprop_mode}, decoded frames {a.decode_frames}"}
