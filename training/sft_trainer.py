"""Diffusion trainers on latent shards: their shared base and supervised fine-tuning (PISA PSFT, SPEC §3).

:class:`DiffusionTrainer` is a :class:`~vidalign.training.trainer_base.VidalignTrainer` (a ``transformers.Trainer``:
checkpoints with optimizer/scheduler/RNG/stream state, resume, report_to, push_to_hub, model cards, validation
videos) around a diffusers denoiser (``WanTransformer3DModel`` by default; anything called ``model(x_t, t, text,
return_dict=False)``) reading latent shards. It adds what diffusion on latents needs: noising with the per-step
seeded generators (a resumed run draws the same noise as an uninterrupted one), caption dropout, first-frame
conditioning, an optional EMA, and validation videos rendered with the VAE and text encoder of the model's
pipeline. :class:`DiffusionSFTTrainer` adds the flow-matching (or ε / v) regression loss; the DPO trainer lives in
:mod:`vidalign.training.dpo_trainer`, the reward trainer in :mod:`vidalign.training.reward_trainer`.
"""
from __future__ import annotations

import contextlib
import copy
import os
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import TrainerCallback

from vidalign.errors import ConfigError, VidalignError
from vidalign.training import losses as L
from vidalign.training.config import DiffusionSFTConfig, DiffusionTrainingConfig
from vidalign.training.data import ClipPrep, collate_latents, training_stream
from vidalign.training.lora import load_denoiser
from vidalign.training.trainer_base import CONFIG_NAME, STREAM_STATE_NAME, VidalignTrainer  # noqa: F401

EMA_NAME = "ema.safetensors"


class EMA:
    """Exponential moving average (float32) of the trainable parameters: ``s ← d·s + (1 − d)·p``."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for n, p in model.named_parameters():
            if n in self.shadow:
                self.shadow[n].lerp_(p.detach().float(), 1.0 - self.decay)

    @contextlib.contextmanager
    def applied(self, model: nn.Module):
        """Temporarily put the EMA weights into ``model`` (to save or evaluate them)."""
        params = dict(model.named_parameters())
        backup = {n: params[n].detach().clone() for n in self.shadow}
        with torch.no_grad():
            for n, s in self.shadow.items():
                params[n].copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for n, b in backup.items():
                    params[n].copy_(b)

    def save(self, folder: str) -> None:
        from safetensors.torch import save_file

        save_file({n: s.cpu().contiguous() for n, s in self.shadow.items()}, os.path.join(folder, EMA_NAME))

    def load(self, folder: str) -> None:
        from safetensors.torch import load_file

        path = os.path.join(folder, EMA_NAME)
        if not os.path.isfile(path):
            raise VidalignError(f"{folder}: no {EMA_NAME} although ema_decay is set; resume with the same config")
        loaded = load_file(path)
        if set(loaded) != set(self.shadow):
            raise VidalignError(f"{path}: EMA weights do not fit this model; resume with the same config")
        for n, s in loaded.items():
            self.shadow[n].copy_(s)


class _EMACallback(TrainerCallback):
    def __init__(self, trainer: DiffusionTrainer):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        ema = self.trainer._ema
        if ema is not None:
            ema.update(self.trainer.accelerator.unwrap_model(self.trainer.model))


class DiffusionTrainer(VidalignTrainer):
    """Shared machinery of the latent-shard diffusion trainers (see the module docstring).

    Args:
        model: a diffusers denoiser, a hub id / folder, or None (``args.model_name_or_path``).
        args: the trainer's config.
        train_dataset: latent shards anywhere (a folder, Hub id ``org/name``, URL, glob or list of shards), a
            ``vidalign.data.stream(...)``, a ``datasets`` Dataset/IterableDataset or a list of sample dicts (members
            as :mod:`vidalign.contract` names them); default ``args.train_data``.
        peft_config: a peft ``LoraConfig`` (or its kwargs) for the LoRA, as TRL's trainers take one.
    """

    config_class: type[DiffusionTrainingConfig] = DiffusionTrainingConfig

    def __init__(self, model: nn.Module | str | None = None, args: DiffusionTrainingConfig | None = None,
                 train_dataset: Any = None, callbacks: list | None = None,
                 optimizers: tuple = (None, None), peft_config: Any = None, **kwargs: Any):
        if args is not None and isinstance(args, self.config_class):
            self._source = self.make_source(train_dataset, args)  # bad data fails before the model loads
            if model is None or isinstance(model, (str, os.PathLike)):
                if model is not None:
                    args.model_name_or_path = str(model)
                model = load_denoiser(args)
        super().__init__(model=model, args=args, train_dataset=train_dataset, callbacks=callbacks,
                         optimizers=optimizers, peft_config=peft_config, **kwargs)
        self._ema = EMA(self.model, args.ema_decay) if args.ema_decay else None
        if self._ema is not None:
            self.add_callback(_EMACallback(self))
        from vidalign.contract import empty_caption_embeds

        empty = empty_caption_embeds(args.empty_prompt_embeds, self._source, args.caption_dropout)
        self._empty_embeds = torch.from_numpy(empty) if empty is not None else None
        self._alphas_cumprod = (L.ddpm_alphas_cumprod(args.num_train_timesteps, args.beta_start, args.beta_end,
                                                      args.beta_schedule)
                                if args.prediction_type != "flow" else None)
        self._scale_arr = (L.videocrafter_scale_arr(args.num_train_timesteps, args.scale_a, args.scale_b,
                                                    args.scale_mid_step) if args.use_scale else None)
        self._validation_parts = None

    # ------------------------------------------------------------------------------------------- data
    def make_source(self, data: Any, args: DiffusionTrainingConfig):
        if getattr(self, "_source", None) is not None:
            return self._source
        data = data if data is not None else args.train_data
        if data is None:
            raise ConfigError(f"{type(args).__name__}.train_data is not set; give latent shards (a folder, Hub id "
                              "or URL)")
        return training_stream(data, args.train_config, args.data_split, args.data_resample, args.shuffle_buffer)

    def make_prep(self):
        """The per-sample preparation of this trainer's data (picklable, runs in DataLoader workers)."""
        return ClipPrep(getattr(self.args, "latents_member", ""))

    def collate(self, samples: list[dict]) -> dict[str, Any]:
        return collate_latents(samples)

    # ------------------------------------------------------------------------------------------- noising
    def drop_captions(self, embeds: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Replace each sample's text with the empty prompt (the encoded "" stored with the data, or zeros when
        configured) with probability caption_dropout."""
        p = self.args.caption_dropout
        if p <= 0:
            return embeds
        drop = torch.rand(embeds.shape[0], generator=gen, device=gen.device) < p
        empty = torch.zeros_like(embeds)
        if self._empty_embeds is not None:
            e = self._empty_embeds[: embeds.shape[1]].to(embeds)
            empty[:, : e.shape[0]] = e
        return torch.where(drop.to(embeds.device)[:, None, None], empty, embeds)

    def sample_sigmas(self, n: int, gen: torch.Generator) -> torch.Tensor:
        a = self.args
        return L.sample_timesteps(a.timestep_sampler, n, gen, shift=a.flow_shift,
                                  num_train_timesteps=a.num_train_timesteps, logit_mean=a.logit_mean,
                                  logit_std=a.logit_std, device=gen.device)

    def noised(self, x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor):
        """(x_t, target, model timestep, loss mask) for the configured prediction type; with first-frame
        conditioning latent frame 0 stays clean and is left out of the loss."""
        a = self.args
        sigma = sigma.to(x0.device)
        if a.prediction_type == "flow":
            xt = L.add_noise_flow(x0, noise, sigma)
            target = L.flow_matching_target(x0, noise)
            t = L.sigma_to_model_timestep(sigma, a.num_train_timesteps)
        else:
            t = (sigma * a.num_train_timesteps).long().clamp(0, a.num_train_timesteps - 1)
            xt = L.add_noise_ddpm(x0, noise, self._alphas_cumprod, t, self._scale_arr)
            target = (L.eps_target(x0, noise) if a.prediction_type == "epsilon"
                      else L.v_target(x0, noise, self._alphas_cumprod, t)).to(x0.dtype)
            xt = xt.to(x0.dtype)
        mask = None
        if a.first_frame_conditioning:
            xt = torch.cat([x0[:, :, :1], xt[:, :, 1:]], dim=2)
            mask = torch.ones(1, 1, x0.shape[2], 1, 1, device=x0.device)
            mask[:, :, 0] = 0
        return xt, target, t, mask

    def denoise(self, model: nn.Module, xt: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
        """One forward of the denoiser (diffusers call convention), autocast as accelerate configures it."""
        with self.accelerator.autocast():
            out = model(xt, t, embeds, return_dict=False)[0]
        return out

    # ------------------------------------------------------------------------------------------- checkpoints
    def load_extra_state(self, ckpt: str) -> None:
        if self._ema is not None:
            self._ema.load(ckpt)

    def save_extra_state(self, folder: str) -> None:
        if self._ema is not None and self.args.should_save:
            self._ema.save(folder)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Also the EMA weights, in the same format, under ``ema/``."""
        super()._save(output_dir, state_dict)
        output_dir = output_dir or self.args.output_dir
        if self._ema is not None and self.args.should_save:
            model = self.accelerator.unwrap_model(self.model)
            with self._ema.applied(model):
                self.save_weights(model, os.path.join(output_dir, "ema"), None)

    # ------------------------------------------------------------------------------------------- validation
    def validation_videos(self, prompts: list[str]) -> list[np.ndarray]:
        """Sample with the trained denoiser and the VAE / text encoder of ``validation_pipeline`` (default: the
        pipeline of ``model_name_or_path``), at the training clips' size unless ``validation_*`` says otherwise;
        with first-frame conditioning, frame 0 comes from the first training clip."""
        from vidalign.contract import encode_text
        from vidalign.training.components import load_components
        from vidalign.training.validation import render_videos

        a = self.args
        model = self.accelerator.unwrap_model(self.model)
        device = next(model.parameters()).device
        if self._validation_parts is None:
            parts = load_components(a.pipeline_source(), a.model_revision, torch.float32, transformer=False)
            parts.vae.to(device).eval().requires_grad_(False)
            parts.text_encoder.to(device).eval().requires_grad_(False)
            example = self.first_example()
            latents = example["latents" if "latents" in example else "latents_w"]
            self._validation_parts = (parts, latents)
        parts, latents = self._validation_parts
        ts, ss = int(parts.vae.config.scale_factor_temporal), int(parts.vae.config.scale_factor_spatial)
        frames = a.validation_num_frames or (latents.shape[1] - 1) * ts + 1
        height, width = a.validation_height or latents.shape[2] * ss, a.validation_width or latents.shape[3] * ss
        first = torch.from_numpy(latents[None, :, :1]) if a.first_frame_conditioning else None
        length = getattr(parts.tokenizer, "model_max_length", 512)
        length = 512 if not isinstance(length, int) or length > 4096 else length

        def embed(texts: list[str]) -> torch.Tensor:
            return encode_text(parts.tokenizer, parts.text_encoder, texts, length)[0].to(device)

        return render_videos(model, parts.vae, embed, prompts, height=height, width=width, num_frames=frames,
                             num_inference_steps=a.validation_num_inference_steps,
                             guidance_scale=a.validation_guidance_scale, flow_shift=a.flow_shift,
                             num_train_timesteps=a.num_train_timesteps, seed=a.validation_seed,
                             first_latent=first, autocast=self.accelerator.autocast)

    def model_card_info(self) -> dict[str, Any]:
        a = self.args
        info: dict[str, Any] = {"prediction type": a.prediction_type, "timestep sampler": a.timestep_sampler,
                                "flow shift": a.flow_shift}
        if a.first_frame_conditioning:
            info["first-frame conditioning"] = "latent frame 0 kept clean"
        if a.caption_dropout:
            info["caption dropout"] = a.caption_dropout
        if a.ema_decay:
            info["EMA decay"] = f"{a.ema_decay:g} (weights under `ema/`)"
        return info


class DiffusionSFTTrainer(DiffusionTrainer):
    """Supervised fine-tuning: ``mean ‖v_θ(x_t, t) − (ε − x_0)‖²`` (flow) or the ε / v regression.

    Defaults are PISA's PSFT (logit-normal t, the first latent frame kept clean as image conditioning, EMA 0.99).
    Logs ``loss/sft``.
    """

    config_class = DiffusionSFTConfig
    card_tags = ("sft",)

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch=None):
        x0 = inputs["latents"].float()
        gen = self.step_generator(x0.device)
        embeds = self.drop_captions(inputs["prompt_embeds"].float(), gen)
        noise = torch.randn(x0.shape, generator=gen, device=gen.device).to(x0.device)
        sigma = self.sample_sigmas(x0.shape[0], gen)
        xt, target, t, mask = self.noised(x0, noise, sigma)
        pred = self.denoise(model, xt, t, embeds)
        loss = L.per_sample_mse(pred, target, mask).mean()
        self.record(**{"loss/sft": loss})
        return (loss, {"pred": pred}) if return_outputs else loss


def clone_frozen(model: nn.Module) -> nn.Module:
    """A frozen full copy (the DPO reference when training without LoRA)."""
    ref = copy.deepcopy(model)
    ref.requires_grad_(False)
    return ref.eval()
