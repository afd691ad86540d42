"""Diffusion trainers on latent shards: the shared base and supervised fine-tuning (PISA PSFT, SPEC §3).

:class:`DiffusionTrainer` is a ``transformers.Trainer`` around a diffusers denoiser (``WanTransformer3DModel`` by
default; anything called ``model(x_t, t, text, return_dict=False)``), so checkpointing, gradient accumulation,
mixed precision, logging and DDP/FSDP come from Trainer/accelerate. It adds what diffusion needs and Trainer
lacks: the resumable latent stream (:mod:`vidalign.training.data`), noising with per-step seeded generators (a
resumed run draws the same noise as an uninterrupted one), diffusers-format weights (LoRA or full model) instead
of pickles, an optional EMA, and TRL-style averaged metrics. :class:`DiffusionSFTTrainer` adds the flow-matching
(or ε / v) regression loss; the DPO trainer lives in :mod:`vidalign.training.dpo_trainer`.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from vidalign.errors import ConfigError, VidalignError
from vidalign.training import losses as L
from vidalign.training.config import DiffusionSFTConfig, DiffusionTrainingConfig, config_to_yaml
from vidalign.training.data import (
    META_KEYS,
    ClipPrep,
    LatentStream,
    StreamState,
    as_source,
    collate_latents,
)
from vidalign.training.lora import (
    add_lora,
    has_lora,
    load_denoiser,
    load_full,
    load_lora,
    save_full,
    save_lora,
)

STREAM_STATE_NAME = "stream_state-rank{rank}.json"
EMA_NAME = "ema.safetensors"
CONFIG_NAME = "training_config.yaml"


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


class DiffusionTrainer(Trainer):
    """Shared machinery of the diffusion trainers (see the module docstring).

    Args:
        model: a diffusers denoiser, a hub id / folder, or None (``args.model_name_or_path``).
        args: the trainer's config.
        train_dataset: latent shard folder / glob / list of shards, a ``vidalign.data.stream(...)`` dataset, a
            list of sample dicts (member names as in CONTRACTS.md) or a source; default ``args.train_data``.
    """

    config_class: type[DiffusionTrainingConfig] = DiffusionTrainingConfig

    def __init__(self, model: nn.Module | str | None = None, args: DiffusionTrainingConfig | None = None,
                 train_dataset: Any = None, callbacks: list | None = None,
                 optimizers: tuple = (None, None), **kwargs: Any):
        if args is None:
            raise ConfigError(f"{type(self).__name__} needs args={self.config_class.__name__}(...)")
        if not isinstance(args, self.config_class):
            raise ConfigError(f"{type(self).__name__}: args must be a {self.config_class.__name__}, "
                              f"got {type(args).__name__}")
        data = train_dataset if train_dataset is not None else args.train_data
        if data is None:
            raise ConfigError(f"{type(args).__name__}.train_data is not set; give a latent shard folder or glob")
        source = as_source(data, split=args.data_split, resample=args.data_resample)
        if model is None or isinstance(model, (str, os.PathLike)):
            if model is not None:
                args.model_name_or_path = str(model)
            model = load_denoiser(args)
        if args.use_lora:
            if not has_lora(model):
                add_lora(model, args)
        else:
            model.requires_grad_(True)
        if args.activation_checkpointing:
            # diffusers models switch checkpointing on themselves; Trainer would call a transformers-only method
            model.enable_gradient_checkpointing()
            args.activation_checkpointing = args.gradient_checkpointing = False
        super().__init__(model=model, args=args, data_collator=collate_latents, callbacks=callbacks,
                         optimizers=optimizers, **kwargs)
        self.train_dataset = source
        self._source = source
        self._stream_state: StreamState | None = None
        self._metrics: dict[str, list[float]] = defaultdict(list)
        self._ema = EMA(model, args.ema_decay) if args.ema_decay else None
        if self._ema is not None:
            self.add_callback(_EMACallback(self))
        from vidalign.text_embeds import empty_caption_embeds

        empty = empty_caption_embeds(args.empty_prompt_embeds, data, args.caption_dropout)
        self._empty_embeds = torch.from_numpy(empty) if empty is not None else None
        self._alphas_cumprod = (L.ddpm_alphas_cumprod(args.num_train_timesteps, args.beta_start, args.beta_end,
                                                      args.beta_schedule)
                                if args.prediction_type != "flow" else None)

    # ------------------------------------------------------------------------------------------- data
    def make_prep(self):
        """The per-sample preparation of this trainer's data (picklable, runs in DataLoader workers)."""
        return ClipPrep(getattr(self.args, "latents_member", ""))

    def get_train_dataloader(self) -> DataLoader:
        """This rank's own resumable stream; not passed through accelerate's re-sharding (it splits itself)."""
        args = self.args
        workers = max(1, args.dataloader_num_workers)
        state = self._stream_state or StreamState(num_workers=workers, world_size=args.world_size)
        if state.world_size != args.world_size or state.num_workers != workers:
            raise ConfigError(f"the checkpoint's stream was {state.world_size} ranks × {state.num_workers} workers, "
                              f"this run has {args.world_size} × {workers}; resume with the same world size and "
                              "dataloader_num_workers")
        self._stream_state = state
        seed = args.data_seed if args.data_seed is not None else args.seed
        stream = LatentStream(self._source, self.make_prep(), seed=seed, rank=args.process_index,
                              world_size=args.world_size, state=StreamState.from_json(state.to_json()))
        stream.first_sample()  # malformed or video-only shards fail here, in one line
        kwargs: dict[str, Any] = {"batch_size": self._train_batch_size, "collate_fn": collate_latents,
                                  "num_workers": args.dataloader_num_workers, "pin_memory": args.dataloader_pin_memory}
        if args.dataloader_num_workers > 0:
            kwargs["persistent_workers"] = False
            if args.dataloader_prefetch_factor is not None:
                kwargs["prefetch_factor"] = args.dataloader_prefetch_factor
        return DataLoader(stream, **kwargs)

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch=None) -> torch.Tensor:
        self._stream_state.consume(inputs["__worker__"], inputs["__pass__"], inputs["__index__"])
        inputs = {k: v for k, v in inputs.items() if k not in META_KEYS and k != "__key__"}
        return super().training_step(model, inputs, num_items_in_batch)

    # ------------------------------------------------------------------------------------------- noising
    def step_generator(self, device: torch.device) -> torch.Generator:
        """A generator seeded by (seed, rank, batch number): the same draws after a resume."""
        seed = int(np.random.SeedSequence([self.args.seed, self.args.process_index,
                                           self._stream_state.batches]).generate_state(1)[0])
        return torch.Generator(device=device).manual_seed(seed)

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
            xt = L.add_noise_ddpm(x0, noise, self._alphas_cumprod, t)
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

    # ------------------------------------------------------------------------------------------- metrics
    def record(self, **values: torch.Tensor) -> None:
        """Average each metric over ranks now and over steps until the next log (TRL's scheme)."""
        for name, v in values.items():
            v = v.detach().float().reshape(-1).mean().reshape(1)
            self._metrics[name].append(self.accelerator.gather_for_metrics(v).mean().item())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._metrics and "loss" in logs:
            logs.update({k: sum(v) / len(v) for k, v in self._metrics.items()})
            self._metrics.clear()
        super().log(logs, start_time)

    # ------------------------------------------------------------------------------------------- checkpoints
    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, ignore_keys_for_eval=None,
              **kwargs: Any):
        """``Trainer.train``; on resume the data stream continues exactly where the checkpoint left it."""
        ckpt = resume_from_checkpoint
        if isinstance(ckpt, bool):
            ckpt = get_last_checkpoint(self.args.output_dir) if ckpt and os.path.isdir(self.args.output_dir) else None
            if resume_from_checkpoint and ckpt is None:
                raise ConfigError(f"resume_from_checkpoint: no {PREFIX_CHECKPOINT_DIR}-* folder in "
                                  f"{self.args.output_dir}; start without resuming")
        self._stream_state = None
        if ckpt is not None:
            path = os.path.join(str(ckpt), STREAM_STATE_NAME.format(rank=self.args.process_index))
            if not os.path.isfile(path):
                raise VidalignError(f"{ckpt}: no {os.path.basename(path)}; not a checkpoint of this trainer "
                                    "or written with another number of ranks")
            with open(path, encoding="utf-8") as fh:
                self._stream_state = StreamState.from_json(fh.read(), path)
            if self._ema is not None:
                self._ema.load(str(ckpt))
        return super().train(resume_from_checkpoint=ckpt, trial=trial, ignore_keys_for_eval=ignore_keys_for_eval,
                             **kwargs)

    def _save_checkpoint(self, model: nn.Module, trial) -> None:
        folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, STREAM_STATE_NAME.format(rank=self.args.process_index)), "w",
                  encoding="utf-8") as fh:
            fh.write(self._stream_state.to_json())
        if self._ema is not None and self.args.should_save:
            self._ema.save(folder)
        super()._save_checkpoint(model, trial)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Diffusers-format weights (LoRA for ``load_lora_weights`` or a ``transformer/`` folder), the EMA weights
        in the same format under ``ema/``, and the config as YAML (no pickled arguments)."""
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model)
        self._save_weights(model, output_dir, state_dict)
        if self._ema is not None:
            with self._ema.applied(model):
                self._save_weights(model, os.path.join(output_dir, "ema"), None)
        with open(os.path.join(output_dir, CONFIG_NAME), "w", encoding="utf-8") as fh:
            fh.write(config_to_yaml(self.args))

    def _save_weights(self, model: nn.Module, folder: str, state_dict: dict | None) -> None:
        if self.args.use_lora:
            save_lora(model, folder, self.args.pipeline_class, state_dict)
        else:
            save_full(model, folder, state_dict)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        model = self.accelerator.unwrap_model(model if model is not None else self.model)
        if self.args.use_lora:
            load_lora(model, resume_from_checkpoint)
        else:
            load_full(model, resume_from_checkpoint)


class DiffusionSFTTrainer(DiffusionTrainer):
    """Supervised fine-tuning: ``mean ‖v_θ(x_t, t) − (ε − x_0)‖²`` (flow) or the ε / v regression.

    Defaults are PISA's PSFT (logit-normal t, the first latent frame kept clean as image conditioning, EMA 0.99).
    Logs ``loss/sft``.
    """

    config_class = DiffusionSFTConfig

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
