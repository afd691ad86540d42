"""Reward-gradient fine-tuning (VADER; PISA's object reward optimisation), SPEC §5.

Each optimizer step: draw prompts (VADER: a prompt set) or ground-truth drop clips (PISA: first frame, masks,
depth), sample latents from noise with the policy (:func:`~vidalign.training.sampling.sample_flow`, gradients
from the cutoff step to the end), decode the requested frames with gradient checkpointing, score them with the
weighted rewards, backpropagate, clip to ``max_grad_norm`` and step AdamW. LoRA (rank 16 on attention, VADER) or
full fine-tuning (PISA). Runs single-process or under ``accelerate launch`` (DDP; the drop-shard stream splits by
rank). Checkpoints: LoRA weights in diffusers' format (``WanPipeline.load_lora_weights``) or the full
transformer, plus the config; ``log.jsonl`` gets one line of metrics per logging step.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vidalign.errors import InputError, VidalignError
from vidalign.training.reward_config import RewardGradientConfig
from vidalign.training.rewards import Reward, RewardInputs
from vidalign.training.sampling import (
    SampleOutput,
    backprop_cutoff,
    decode_frames,
    encode_first_frame,
    encode_prompts,
    flow_sigmas,
    num_latent_frames,
    sample_flow,
)


# ----------------------------------------------------------------------------------------------- model
@dataclass
class WanComponents:
    """The pieces of a Wan pipeline the trainer uses (text encoder and tokenizer may be freed after encoding)."""

    transformer: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any


def load_components(model: str, revision: str | None = None, dtype: torch.dtype | None = None,
                    transformer_dtype: torch.dtype | None = None) -> WanComponents:
    """Load a diffusers Wan pipeline's transformer, VAE, text encoder and tokenizer by Hub id or folder.

    Loading straight into ``dtype`` (rather than casting afterwards) keeps the modules diffusers marks as
    fp32-only (norms, time embedding) in fp32.
    """
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import AutoConfig, AutoTokenizer, T5EncoderModel, UMT5EncoderModel

    def load(what: str, fn):
        try:
            return fn()
        except (OSError, ValueError) as exc:
            raise VidalignError(f"model_name_or_path={model!r}: cannot load its {what} "
                                f"({' '.join(str(exc).split())[:200]}); give a diffusers Wan pipeline") from None

    transformer = load("transformer", lambda: WanTransformer3DModel.from_pretrained(
        model, subfolder="transformer", revision=revision, torch_dtype=transformer_dtype or dtype))
    vae = load("vae", lambda: AutoencoderKLWan.from_pretrained(model, subfolder="vae", revision=revision,
                                                               torch_dtype=dtype))
    tokenizer = load("tokenizer", lambda: AutoTokenizer.from_pretrained(model, subfolder="tokenizer",
                                                                          revision=revision))
    te_cfg = load("text_encoder", lambda: AutoConfig.from_pretrained(model, subfolder="text_encoder",
                                                                     revision=revision))
    te_cls = T5EncoderModel if te_cfg.model_type == "t5" else UMT5EncoderModel
    text_encoder = load("text_encoder", lambda: te_cls.from_pretrained(model, subfolder="text_encoder",
                                                                       revision=revision, dtype=dtype))
    return WanComponents(transformer, vae, text_encoder, tokenizer)


RANDOM_PRESETS = ("tiny", "wan2.1-1.3b")
_WORDS = ("a an the of on in to and with at video object objects dropping drops falls falling onto table floor ball "
          "cat dog horse bird fish red blue green black white small large playing running jumping").split()


def random_wan_components(preset: str = "tiny", seed: int = 0) -> WanComponents:
    """Randomly initialised Wan components for smoke tests and benchmarks (nothing is downloaded).

    ``tiny``: a few thousand parameters, 4 latent channels; ``wan2.1-1.3b``: the Wan 2.1 T2V 1.3B transformer and
    VAE architectures. Both get a word-level tokenizer and a one-layer UMT5 encoder of the right width (the real
    umT5-XXL is irrelevant to what the benchmarks measure).
    """
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    if preset not in RANDOM_PRESETS:
        raise VidalignError(f"random Wan preset {preset!r} is unknown; choose one of {', '.join(RANDOM_PRESETS)}")
    torch.manual_seed(seed)
    if preset == "tiny":
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
            text_dim=16, freq_dim=32, ffn_dim=16, num_layers=2, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
        vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               temperal_downsample=[False, True, True], latents_mean=[0.0] * 4,
                               latents_std=[1.0] * 4)
    else:
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
            text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
        vae = AutoencoderKLWan()  # diffusers' defaults are the Wan 2.1 VAE
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(dict.fromkeys(_WORDS))}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    text_dim = int(transformer.config.text_dim)
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(vocab), d_model=text_dim, d_kv=8, d_ff=32,
                                               num_layers=1, num_heads=2, relative_attention_num_buckets=8))
    return WanComponents(transformer, vae, text_encoder, tokenizer)


def save_components(components: WanComponents, folder: str | Path) -> Path:
    """Write components in a diffusers pipeline's subfolder layout, readable by :func:`load_components`."""
    folder = Path(folder)
    for name in ("transformer", "vae", "text_encoder", "tokenizer"):
        getattr(components, name).save_pretrained(folder / name)
    return folder


def _to(module, device, dtype: torch.dtype):
    """Move ``module``; cast only when none of its weights has ``dtype`` yet (a model loaded in bf16 keeps the
    modules diffusers pins to fp32, and casting it again would undo that)."""
    if any(p.dtype == dtype for p in module.parameters()):
        return module.to(device)
    return module.to(device, dtype)


def _base(model):
    """The module behind a DDP/compile wrapper."""
    return getattr(model, "module", model)


# ----------------------------------------------------------------------------------------------- data
@dataclass
class Batch:
    """One step's inputs: prompts, and for PISA the ground truth (frames in [−1, 1] at the sampling size)."""

    prompts: list[str]
    gt_frames: torch.Tensor | None = None  # [B, Tg, 3, H, W]
    gt_masks: list[torch.Tensor] | None = None  # per sample [Tg, N, h, w] bool
    gt_depth: torch.Tensor | None = None  # [B, Tg, h, w]
    keys: list[str] | None = None


def _member(sample: dict, name: str) -> Any:
    from vidalign.format import decode_member

    value = sample[name]
    if isinstance(value, (bytes, bytearray, memoryview)) and not name.endswith("mp4"):
        return decode_member(name, bytes(value))
    return value


def clip_example(sample: dict, caption: str | None, need: set[str]) -> dict[str, Any]:
    """A drop-shard sample (``mp4``, ``json``, ``mask.npz``, ``depth.npy``; decoded or raw bytes) → arrays."""
    from vidalign.media import decode_mp4

    key = sample.get("__key__", "<sample>")
    if "mp4" not in sample:
        raise InputError(key, "mp4", "the sample has no mp4 member", "train_data must be single-clip drop shards")
    video = _member(sample, "mp4")
    frames = video if isinstance(video, np.ndarray) else decode_mp4(bytes(video), source=str(key))[0]
    meta = _member(sample, "json") if "json" in sample else {}
    prompt = caption or (meta.get("prompt") if isinstance(meta, dict) else None)
    if not prompt:
        raise InputError(key, "json.prompt", "no prompt in the sample", "set prompt: <caption> in the config")
    out: dict[str, Any] = {"key": key, "prompt": prompt, "frames": frames}
    for member, field_name in (("mask.npz", "masks"), ("depth.npy", "depth")):
        if field_name not in need:
            continue
        if member not in sample:
            raise InputError(key, member, "missing, but a reward compares with it", "use drop shards that have it")
        value = _member(sample, member)
        out[field_name] = np.asarray(value["mask"] if member == "mask.npz" else value)
    return out


def collate_clips(examples: list[dict], height: int, width: int) -> Batch:
    """Stack clips, trimmed to the shortest, frames resized to the sampling size and scaled to [−1, 1]."""
    t = min(len(e["frames"]) for e in examples)
    frames = []
    for e in examples:
        x = torch.from_numpy(np.ascontiguousarray(e["frames"][:t])).permute(0, 3, 1, 2).float() / 127.5 - 1
        if tuple(x.shape[-2:]) != (height, width):
            x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
        frames.append(x)
    masks = [torch.from_numpy(e["masks"][:t]).bool() for e in examples] if "masks" in examples[0] else None
    depth = None
    if "depth" in examples[0]:
        depth = torch.stack([torch.from_numpy(e["depth"][:t].astype(np.float32)) for e in examples])
    return Batch([e["prompt"] for e in examples], torch.stack(frames), masks, depth, [e["key"] for e in examples])


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
                emb = encode_prompts(self.tokenizer, self.text_encoder, chunk, self.max_length)
                self.cache.update(zip(chunk, emb.to(self.device, self.dtype)))
        return torch.stack([self.cache[p] for p in prompts])

    def release(self) -> None:
        self.text_encoder = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------- trainer
class RewardTrainer:
    """Reward-gradient trainer (see the module docstring).

    ``components``/``rewards``/``examples`` replace what the config would load (tests, benchmarks, notebooks):
    ``rewards`` is a list of ``(weight, Reward)``, ``examples`` an iterable of drop-shard sample dicts.
    """

    def __init__(self, config: RewardGradientConfig, components: WanComponents | None = None,
                 rewards: list[tuple[float, Reward]] | None = None, examples: Iterable[dict] | None = None):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.cfg = cfg = config
        mp = "bf16" if cfg.bf16 else "fp16" if cfg.fp16 else "no"
        self.accelerator = acc = Accelerator(gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                                             mixed_precision=mp, cpu=cfg.use_cpu)
        set_seed(cfg.seed)
        self.device = acc.device
        self.weight_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mp, torch.float32)
        comps = components or load_components(cfg.model_name_or_path, cfg.model_revision, self.weight_dtype,
                                              self.weight_dtype if cfg.use_lora else torch.float32)
        self.vae = _to(comps.vae, self.device, self.weight_dtype).requires_grad_(False).eval()
        _to(comps.text_encoder, self.device, self.weight_dtype).requires_grad_(False).eval()
        transformer = self._setup_transformer(comps.transformer)
        self.trainable = [p for p in transformer.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                           eps=cfg.adam_epsilon, weight_decay=cfg.weight_decay)
        from transformers import get_scheduler

        # accelerate steps a prepared scheduler once per process per optimizer step: scale the horizon to match
        self.lr_scheduler = get_scheduler(cfg.lr_scheduler_type, self.optimizer,
                                          num_warmup_steps=cfg.get_warmup_steps(cfg.max_steps) * acc.num_processes,
                                          num_training_steps=cfg.max_steps * acc.num_processes)
        self.transformer, self.optimizer, self.lr_scheduler = acc.prepare(transformer, self.optimizer,
                                                                          self.lr_scheduler)
        self.rewards = rewards if rewards is not None else [
            (s.weight, s.build(self.device, self.weight_dtype)) for s in cfg.reward_specs]
        self.reward_names = [s.name for s in cfg.reward_specs] if rewards is None else [
            type(r).__name__ for _, r in rewards]
        self.embed = PromptEmbedder(comps.tokenizer, comps.text_encoder, cfg.max_sequence_length, self.device,
                                    self.weight_dtype)
        from diffusers import FlowMatchEulerDiscreteScheduler

        self.scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=cfg.num_train_timesteps,
                                                         shift=cfg.flow_shift)
        self.sigmas = flow_sigmas(self.scheduler, cfg.num_inference_steps, self.device)
        self.rng = random.Random(f"{cfg.seed}/{acc.process_index}")
        self.noise_gen = torch.Generator(self.device).manual_seed(cfg.seed * 1009 + acc.process_index)
        self.need = {f for _, r in self.rewards for f in getattr(r, "gt_fields", ())}  # GT members to decode
        self._examples = self._example_stream(examples) if cfg.train_data is not None or examples is not None else None
        if self._examples is None:
            self.embed(list(cfg.prompt_list) + [cfg.negative_prompt])
            self.embed.release()
        self.global_step = 0

    # --- setup
    def _setup_transformer(self, transformer):
        cfg = self.cfg
        transformer.requires_grad_(False)
        if cfg.use_lora:
            from peft import LoraConfig

            _to(transformer, self.device, self.weight_dtype)
            try:
                transformer.add_adapter(LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                                   init_lora_weights=True,
                                                   target_modules=list(cfg.lora_target_modules)))
            except ValueError as exc:
                raise VidalignError(f"lora_target_modules={cfg.lora_target_modules!r}: {' '.join(str(exc).split())[:160]}"
                                    "; name the transformer's attention projections (to_q, to_k, to_v, to_out.0)"
                                    ) from None
            for p in transformer.parameters():  # LoRA weights train in fp32 under mixed precision
                if p.requires_grad:
                    p.data = p.data.float()
        else:
            _to(transformer, self.device, torch.float32).requires_grad_(True)
        if not any(p.requires_grad for p in transformer.parameters()):
            raise VidalignError(f"lora_target_modules={cfg.lora_target_modules!r} matched no module of the "
                                "transformer; name its attention projections (to_q, to_k, to_v, to_out.0)")
        if cfg.activation_checkpointing:
            transformer.enable_gradient_checkpointing()
        transformer.train()
        return transformer

    def _example_stream(self, examples: Iterable[dict] | None) -> Iterator[dict]:
        cfg = self.cfg
        if examples is None:
            from vidalign.data import stream

            examples = stream(cfg.train_data, config=cfg.data_config, split=cfg.data_split, resample=True,
                              shuffle=cfg.shuffle_buffer, seed=cfg.seed)
        while True:
            n = 0
            for sample in examples:
                n += 1
                yield clip_example(sample, cfg.prompt, self.need)
            if n == 0:
                raise VidalignError(f"train_data={cfg.train_data!r} yielded no samples")

    # --- one step
    def next_batch(self) -> Batch:
        b = self.cfg.per_device_train_batch_size
        if self._examples is None:
            return Batch([self.rng.choice(self.cfg.prompt_list) for _ in range(b)])
        return collate_clips([next(self._examples) for _ in range(b)], self.cfg.height, self.cfg.width)

    def frame_indices(self, limit: int | None = None) -> list[int]:
        """Frames to decode this step (``random``: one uniformly drawn frame, below ``limit`` when GT is shorter)."""
        n = self.cfg.num_frames if limit is None else min(self.cfg.num_frames, limit)
        d = self.cfg.decode_frames
        if d == "random":
            return [self.rng.randrange(n)]
        return list(range(self.cfg.num_frames)) if d == "all" else list(d)

    def sample(self, batch: Batch, cutoff: int, keep_velocities: bool = False) -> SampleOutput:
        cfg, vae = self.cfg, self.vae
        b = len(batch.prompts)
        ts, ss = int(vae.config.scale_factor_temporal), int(vae.config.scale_factor_spatial)
        shape = (b, int(_base(self.transformer).config.in_channels), num_latent_frames(cfg.num_frames, ts),
                 cfg.height // ss, cfg.width // ss)
        noise = torch.randn(shape, generator=self.noise_gen, device=self.device)
        emb = self.embed(batch.prompts)
        neg = self.embed([cfg.negative_prompt] * b) if cfg.guidance_scale > 1 else None
        first = None
        if cfg.first_frame_conditioning:
            first = encode_first_frame(vae, batch.gt_frames[:, 0].to(self.device))
        with self.accelerator.autocast():
            return sample_flow(self.transformer, self.sigmas, noise, emb, cutoff=cutoff, negative_embeds=neg,
                               guidance_scale=cfg.guidance_scale, first_latent=first,
                               num_train_timesteps=cfg.num_train_timesteps, keep_velocities=keep_velocities,
                               patch_size=_base(self.transformer).config.patch_size, dtype=self.weight_dtype)

    def compute_loss(self, batch: Batch, cutoff: int | None = None, keep_velocities: bool = False):
        """Sample, decode, score: ``(loss, metrics, sample_output, frames)`` for one micro-batch."""
        cfg = self.cfg
        if cutoff is None:
            cutoff = backprop_cutoff(cfg.backprop_mode, cfg.num_inference_steps, cfg.backprop_step, self.rng)
        out = self.sample(batch, cutoff, keep_velocities)
        tg = batch.gt_frames.shape[1] if batch.gt_frames is not None else None
        idx = self.frame_indices(tg)
        if tg is not None:
            idx = [i for i in idx if i < tg]
            if not idx:
                raise InputError(batch.keys, "mp4", f"the clips have {tg} frames, fewer than the decoded ones",
                                 "decode earlier frames or use longer clips")
        with self.accelerator.autocast():
            frames = decode_frames(self.vae, out.latents, idx, checkpointing=cfg.vae_gradient_checkpointing)
        pick = torch.as_tensor(idx)
        inputs = RewardInputs(
            prompts=batch.prompts, frame_indices=idx,
            gt_frames=batch.gt_frames[:, pick].to(self.device) if batch.gt_frames is not None else None,
            gt_masks=[m[pick] for m in batch.gt_masks] if batch.gt_masks is not None else None,
            gt_depth=batch.gt_depth[:, pick] if batch.gt_depth is not None else None)
        total = frames.new_zeros(())
        metrics: dict[str, float] = {"cutoff": cutoff}
        for name, (weight, reward) in zip(self.reward_names, self.rewards):
            r = reward(frames.float(), inputs)
            total = total + weight * r.loss.mean()
            metrics[f"reward/{name}"] = float(r.score.detach().mean())
        metrics["loss"] = float(total.detach())
        return total, metrics, out, frames

    def step(self) -> dict[str, float]:
        """One optimizer step (``gradient_accumulation_steps`` micro-batches); returns averaged metrics."""
        acc, cfg = self.accelerator, self.cfg
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        for _ in range(cfg.gradient_accumulation_steps):
            with acc.accumulate(self.transformer):
                loss, metrics, _, _ = self.compute_loss(self.next_batch())
                acc.backward(loss)
                if acc.sync_gradients:
                    grad_norm = acc.clip_grad_norm_(self.trainable, cfg.max_grad_norm)
                    metrics["grad_norm"] = float(grad_norm)
                self.optimizer.step()
                self.lr_scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
        self.global_step += 1
        out = {k: v / cfg.gradient_accumulation_steps for k, v in sums.items()}
        if "grad_norm" in sums:
            out["grad_norm"] = sums["grad_norm"]
        out.update(step=self.global_step, lr=self.lr_scheduler.get_last_lr()[0], seconds=time.perf_counter() - t0)
        return out

    @torch.no_grad()
    def evaluate(self, batch: Batch, seed: int = 0) -> dict[str, float]:
        """Reward scores of ``batch`` sampled from fixed noise (``seed``) without gradients: before/after checks."""
        saved_gen, saved_rng = self.noise_gen, self.rng
        self.noise_gen = torch.Generator(self.device).manual_seed(seed)
        self.rng = random.Random(seed)
        try:
            _, metrics, _, _ = self.compute_loss(batch, cutoff=self.cfg.num_inference_steps - 1)
        finally:
            self.noise_gen, self.rng = saved_gen, saved_rng
        return metrics

    # --- loop
    def train(self) -> dict[str, Any]:
        from tqdm.auto import tqdm

        acc, cfg = self.accelerator, self.cfg
        out_dir = Path(cfg.output_dir)
        if acc.is_main_process:
            out_dir.mkdir(parents=True, exist_ok=True)
        log_every = _every(cfg.logging_steps, cfg.max_steps)
        save_every = _every(cfg.save_steps, cfg.max_steps) if cfg.save_strategy != "no" else 0
        bar = tqdm(total=cfg.max_steps, desc="reward training", disable=not acc.is_main_process or cfg.disable_tqdm)
        t0, last = time.perf_counter(), {}
        while self.global_step < cfg.max_steps:
            last = self.step()
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss']:.4f}")
            if acc.is_main_process and log_every and self.global_step % log_every == 0:
                with open(out_dir / "log.jsonl", "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(last) + "\n")
            if save_every and self.global_step % save_every == 0 and self.global_step < cfg.max_steps:
                self.save(out_dir / f"checkpoint-{self.global_step}")
        bar.close()
        self.save(out_dir)
        summary = {"steps": self.global_step, "seconds": time.perf_counter() - t0, "output_dir": str(out_dir),
                   **{k: v for k, v in last.items() if k == "loss" or k.startswith("reward/")}}
        if acc.is_main_process:
            scores = ", ".join(f"{k}={v:.4f}" for k, v in summary.items() if k.startswith("reward/"))
            print(f"reward training: {summary['steps']} steps in {summary['seconds']:.1f}s, "
                  f"loss {summary.get('loss', float('nan')):.4f}, {scores}; saved to {out_dir}")
        return summary

    def save(self, folder: Path) -> None:
        """LoRA weights (diffusers format) or the full transformer, plus the run's config."""
        acc = self.accelerator
        acc.wait_for_everyone()
        if not acc.is_main_process:
            return
        from vidalign.training.config import config_to_yaml

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        model = acc.unwrap_model(self.transformer)
        if self.cfg.use_lora:
            from diffusers import WanPipeline
            from peft.utils import get_peft_model_state_dict

            WanPipeline.save_lora_weights(folder, transformer_lora_layers=get_peft_model_state_dict(model))
        else:
            model.save_pretrained(folder / "transformer")
        (folder / "reward_config.yaml").write_text(config_to_yaml(self.cfg), encoding="utf-8")
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": self.global_step,
                                                               "seed": self.cfg.seed}), encoding="utf-8")


def _every(value: float, total: int) -> int:
    """TrainingArguments' steps: an int, or a fraction (< 1) of max_steps; 0 disables."""
    if not value:
        return 0
    return max(1, math.ceil(value * total)) if value < 1 else int(value)
