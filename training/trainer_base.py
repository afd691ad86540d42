"""The base of every vidalign trainer (DPO, SFT, reward): one ``transformers.Trainer`` family, as TRL's.

:class:`VidalignTrainer` gives each trainer what ``Trainer`` gives language models, for diffusers denoisers:

* the model made trainable as the config says (LoRA from ``lora_*`` / ``peft_config``, or full fine-tuning),
  activation checkpointing through diffusers' own switch;
* the one data stream (:func:`vidalign.data.stream`, a dataset anywhere: folder, Hub id, URL, ``datasets``
  dataset): each rank and DataLoader worker reads its own part, and a checkpoint records where every worker
  stands, so a resumed run sees exactly the samples an uninterrupted one would;
* per-step generators seeded by (seed, rank, batch number): a resumed run draws the same noise;
* checkpoints with ``Trainer``'s optimizer, scheduler, RNG and trainer state, weights in diffusers' format (LoRA for
  ``load_lora_weights`` or a ``transformer/`` folder; no pickles), a YAML copy of the config and a diffusers-style
  model card (``README.md``) on every save and push; ``save_total_limit``, ``report_to``, ``push_to_hub`` and
  callbacks as ``Trainer`` does them;
* resuming a finished run trains no further and leaves the weights as they are;
* validation videos at fixed prompts every ``validation_steps`` (:mod:`vidalign.training.validation`);
* TRL-style metrics, averaged over ranks and over the steps between two logs.

Subclasses implement :meth:`make_source`, :meth:`make_prep`, :meth:`collate` and ``compute_loss``, and for
validation :meth:`validation_videos`.
"""

from __future__ import annotations

import math
import os
import shutil
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, TrainOutput, get_last_checkpoint

from vidalign.errors import ConfigError, VidalignError
from vidalign.streaming import ShardStream, StreamState
from vidalign.training.config import BaseTrainingConfig, config_to_yaml
from vidalign.training.data import META_KEYS
from vidalign.training.lora import FULL_MODEL_DIR, LORA_WEIGHTS_NAME, add_lora, has_lora, load_full, load_lora

STREAM_STATE_NAME = "stream_state-rank{rank}.json"
CONFIG_NAME = "training_config.yaml"
CARD_NAME = "README.md"
TRAINER_STATE_FILE = "trainer_state.json"
# what a save writes (and a push uploads): weights, EMA weights, config, card
SAVED_FILES = (LORA_WEIGHTS_NAME, FULL_MODEL_DIR, "ema", CONFIG_NAME, CARD_NAME)


def _config_for_integrations(model: nn.Module) -> None:
    """Reporting integrations log ``model.config`` as transformers configs do (TensorBoard calls
    ``to_json_string()``); a diffusers model's config is a ``FrozenDict``: give it the two methods they call."""
    import json

    cfg = getattr(model, "config", None)
    if isinstance(cfg, dict) and not hasattr(cfg, "to_json_string"):
        cfg.to_dict = lambda: dict(cfg)
        cfg.to_json_string = lambda *a, **k: json.dumps(dict(cfg), indent=2, sort_keys=True, default=str)


def resolve_checkpoint(resume: str | bool | None, output_dir: str) -> str | None:
    """``True`` → the last ``checkpoint-*`` of ``output_dir`` (one-line error when there is none)."""
    if resume is None or resume is False:
        return None
    if resume is True:
        ckpt = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
        if ckpt is None:
            raise ConfigError(f"resume_from_checkpoint: no {PREFIX_CHECKPOINT_DIR}-* folder in {output_dir}; "
                              "start without resuming")
        return ckpt
    if not os.path.isdir(str(resume)):
        raise ConfigError(f"resume_from_checkpoint={resume!r}: no such checkpoint folder")
    return str(resume)


def checkpoint_step(ckpt: str) -> int:
    """The global step a checkpoint was written at (its trainer state)."""
    from transformers import TrainerState

    path = os.path.join(ckpt, TRAINER_STATE_FILE)
    if not os.path.isfile(path):
        raise VidalignError(f"{ckpt}: no {TRAINER_STATE_FILE}; not a complete checkpoint (was the job killed while "
                            "saving?); resume from an earlier one")
    return TrainerState.load_from_json(path).global_step


class VidalignTrainer(Trainer):
    """Shared machinery of the vidalign trainers (see the module docstring).

    Args:
        model: the denoiser to train (subclasses also accept a hub id / folder, or None for the config's).
        args: the trainer's config (a :class:`~vidalign.training.config.BaseTrainingConfig`).
        train_dataset: what :meth:`make_source` accepts; default ``args.train_data``.
        callbacks, optimizers: as ``transformers.Trainer``.
        peft_config: a peft ``LoraConfig`` (or its kwargs) overriding the config's LoRA options, as TRL takes one.
    """

    config_class: type[BaseTrainingConfig] = BaseTrainingConfig
    card_tags: tuple[str, ...] = ()  # method tags of the model card, e.g. ("dpo",)

    def __init__(self, model: nn.Module, args: BaseTrainingConfig | None = None, train_dataset: Any = None,
                 callbacks: list | None = None, optimizers: tuple = (None, None), peft_config: Any = None,
                 **kwargs: Any):
        if args is None:
            raise ConfigError(f"{type(self).__name__} needs args={self.config_class.__name__}(...)")
        if not isinstance(args, self.config_class):
            raise ConfigError(f"{type(self).__name__}: args must be a {self.config_class.__name__}, "
                              f"got {type(args).__name__}")
        self._source = self.make_source(train_dataset, args)
        from transformers import set_seed

        set_seed(args.seed)  # the LoRA's initial weights come from the seed, not from whatever ran before
        self.setup_trainable(model, args, peft_config)
        super().__init__(model=model, args=args, data_collator=self.collate, callbacks=callbacks,
                         optimizers=optimizers, **kwargs)
        if args.fsdp:
            if not self.is_fsdp_enabled:
                raise ConfigError(f"{type(args).__name__}.fsdp: accelerate did not enable FSDP; launch with "
                                  "accelerate or torchrun on GPUs, or unset fsdp")
            if "FULL_STATE_DICT" not in str(self.accelerator.state.fsdp_plugin.state_dict_type):
                raise ConfigError(f"{type(args).__name__}.fsdp_config: set state_dict_type: FULL_STATE_DICT "
                                  "(checkpoints are written in diffusers format)")
        self.train_dataset = self._source
        self._stream_state: StreamState | None = None
        self._metrics: dict[str, list[float]] = defaultdict(list)
        if args.validation_prompt_list:
            from vidalign.training.validation import ValidationCallback

            self.add_callback(ValidationCallback(self))

    # ------------------------------------------------------------------------------------------- model
    @staticmethod
    def setup_trainable(model: nn.Module, args: BaseTrainingConfig, peft_config: Any = None) -> None:
        """LoRA (a float32 adapter on frozen weights) or full fine-tuning; activation checkpointing."""
        if args.use_lora:
            if not has_lora(model):
                add_lora(model, args, peft_config)
        else:
            model.requires_grad_(True)
        if args.activation_checkpointing:
            # diffusers models switch checkpointing on themselves; Trainer would call a transformers-only method
            model.enable_gradient_checkpointing()
            args.activation_checkpointing = args.gradient_checkpointing = False
        if not any(p.requires_grad for p in model.parameters()):
            raise ConfigError(f"lora_target_modules={args.lora_target_modules!r}: nothing of "
                              f"{type(model).__name__} would train")
        _config_for_integrations(model)

    # ------------------------------------------------------------------------------------------- data
    def make_source(self, data: Any, args: BaseTrainingConfig) -> ShardStream:
        """The data stream (:func:`vidalign.training.data.training_stream`); ``data`` is the constructor's
        ``train_dataset``."""
        raise NotImplementedError

    def make_prep(self):
        """The per-sample preparation of this trainer's data (picklable, runs in DataLoader workers)."""
        raise NotImplementedError

    def collate(self, samples: list[dict]) -> dict[str, Any]:
        raise NotImplementedError

    def _stream(self, state: StreamState) -> ShardStream:
        args = self.args
        seed = args.data_seed if args.data_seed is not None else args.seed
        return self._source.replace(transform=self.make_prep(), seed=seed, rank=args.process_index,
                                    world_size=args.world_size, state=state, epochs=None)

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
        stream = self._stream(StreamState.from_json(state.to_json()))
        stream.first_sample()  # malformed shards fail here, in one line
        kwargs: dict[str, Any] = {"batch_size": self._train_batch_size, "collate_fn": self.collate,
                                  "num_workers": args.dataloader_num_workers, "pin_memory": args.dataloader_pin_memory}
        if args.dataloader_num_workers > 0:
            kwargs["persistent_workers"] = False
            if args.dataloader_prefetch_factor is not None:
                kwargs["prefetch_factor"] = args.dataloader_prefetch_factor
        return DataLoader(stream, **kwargs)

    def first_example(self) -> dict[str, Any]:
        """This rank's first prepared sample (sizes for validation videos, ``--check``)."""
        state = StreamState(num_workers=max(1, self.args.dataloader_num_workers), world_size=self.args.world_size)
        return self._stream(state).first_sample()

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch=None) -> torch.Tensor:
        self._stream_state.consume(inputs)
        inputs = {k: v for k, v in inputs.items() if k not in META_KEYS and k != "__key__"}
        return super().training_step(model, inputs, num_items_in_batch)

    def step_generator(self, device: torch.device) -> torch.Generator:
        """A generator seeded by (seed, rank, batch number): the same draws after a resume."""
        seed = int(np.random.SeedSequence([self.args.seed, self.args.process_index,
                                           self._stream_state.batches]).generate_state(1)[0])
        return torch.Generator(device=device).manual_seed(seed)

    # ------------------------------------------------------------------------------------------- metrics
    def record(self, **values: torch.Tensor | float) -> None:
        """Average each metric over ranks now and over steps until the next log (TRL's scheme)."""
        for name, v in values.items():
            v = torch.as_tensor(v, device=self.args.device).detach().float().reshape(-1).mean().reshape(1)
            self._metrics[name].append(self.accelerator.gather_for_metrics(v).mean().item())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._metrics and "loss" in logs:
            logs.update({k: sum(v) / len(v) for k, v in self._metrics.items()})
            self._metrics.clear()
        super().log(logs, start_time)

    # ------------------------------------------------------------------------------------------- training
    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, ignore_keys_for_eval=None,
              **kwargs: Any):
        """``Trainer.train``; on resume the data stream continues exactly where the checkpoint left it, and a
        checkpoint at or past ``max_steps`` (a finished run) is loaded without training any further."""
        ckpt = resolve_checkpoint(resume_from_checkpoint, self.args.output_dir)
        self._stream_state = None
        if ckpt is not None:
            path = os.path.join(ckpt, STREAM_STATE_NAME.format(rank=self.args.process_index))
            if not os.path.isfile(path):
                raise VidalignError(f"{ckpt}: no {os.path.basename(path)}; not a checkpoint of this trainer "
                                    "or written with another number of ranks")
            with open(path, encoding="utf-8") as fh:
                self._stream_state = StreamState.from_json(fh.read(), path)
            self.load_extra_state(ckpt)
            if checkpoint_step(ckpt) >= self.args.max_steps:
                return self._finished(ckpt)
        return super().train(resume_from_checkpoint=ckpt, trial=trial, ignore_keys_for_eval=ignore_keys_for_eval,
                             **kwargs)

    def _finished(self, ckpt: str) -> TrainOutput:
        """Resuming a run that already reached max_steps: its weights and state, no step taken."""
        from transformers import TrainerState

        self.state = TrainerState.load_from_json(os.path.join(ckpt, TRAINER_STATE_FILE))
        self._load_from_checkpoint(ckpt)
        if self.is_world_process_zero():
            print(f"{ckpt}: the run already trained {self.state.global_step} steps (max_steps="
                  f"{self.args.max_steps}); nothing to train. Raise max_steps to train further.")
        return TrainOutput(self.state.global_step, math.nan, {"train_steps_done": 0})

    def load_extra_state(self, ckpt: str) -> None:
        """Hook: what a subclass keeps beside Trainer's state (EMA weights)."""

    def save_extra_state(self, folder: str) -> None:
        """Hook: the counterpart of :meth:`load_extra_state`, called on every checkpoint."""

    # ------------------------------------------------------------------------------------------- saving
    def _save_checkpoint(self, model: nn.Module, trial) -> None:
        folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, STREAM_STATE_NAME.format(rank=self.args.process_index)), "w",
                  encoding="utf-8") as fh:
            fh.write(self._stream_state.to_json())
        self.save_extra_state(folder)
        super()._save_checkpoint(model, trial)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Diffusers-format weights, extra weights (EMA), the config as YAML (no pickled arguments) and the model
        card."""
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model)
        self.save_weights(model, output_dir, state_dict)
        with open(os.path.join(output_dir, CONFIG_NAME), "w", encoding="utf-8") as fh:
            fh.write(config_to_yaml(self.args))
        self.write_model_card(output_dir)

    def save_weights(self, model: nn.Module, folder: str, state_dict: dict | None) -> None:
        from vidalign.training.lora import save_full, save_lora

        if self.args.use_lora:
            save_lora(model, folder, getattr(self.args, "pipeline_class", "WanPipeline"), state_dict)
        else:
            save_full(model, folder, state_dict)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        model = self.accelerator.unwrap_model(model if model is not None else self.model)
        if self.is_fsdp_enabled:
            from vidalign.training.fsdp import load_full_state

            load_full_state(self, self.model_wrapped, resume_from_checkpoint)
            return
        if self.args.use_lora:
            load_lora(model, resume_from_checkpoint)
        else:
            load_full(model, resume_from_checkpoint)

    # ------------------------------------------------------------------------------------------- validation
    def validation_videos(self, prompts: list[str]) -> list[np.ndarray]:
        """uint8 ``[T, H, W, 3]`` videos of ``prompts`` sampled with the current weights (fixed seeds)."""
        raise NotImplementedError

    def log_validation(self, step: int) -> list[str]:
        from vidalign.training.validation import log_validation

        return log_validation(self, step)

    # ------------------------------------------------------------------------------------------- cards, Hub
    def model_card_info(self) -> dict[str, Any]:
        """What the card says beyond the config: subclasses add their method's parameters."""
        return {}

    def write_model_card(self, folder: str) -> str:
        from vidalign.training.model_card import write_model_card

        return write_model_card(folder, self.args, self.card_tags, self.model_card_info(),
                                global_step=self.state.global_step if self.state else 0)

    def create_model_card(self, *args: Any, **kwargs: Any) -> None:
        """Trainer calls this before every push: the diffusers-style card in ``output_dir``."""
        if self.is_world_process_zero():
            self.write_model_card(self.args.output_dir)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """As ``Trainer``'s, with the diffusers-format files (and the YAML config, no pickled arguments): copy them
        from the checkpoint into ``output_dir`` and upload it in the background (``hub_strategy``)."""
        from transformers.trainer_utils import HubStrategy
        from transformers.utils import PushInProgress
        from transformers.utils.hub import hf_api

        args = self.args
        if not self.is_world_process_zero() or args.hub_strategy == HubStrategy.END:
            return
        if not args.hub_always_push and self.push_in_progress is not None and not self.push_in_progress.is_done():
            return
        self.callback_handler.on_push_begin(args, self.state, self.control)
        for name in SAVED_FILES:
            src, dst = os.path.join(checkpoint_folder, name), os.path.join(args.output_dir, name)
            if os.path.isdir(src):
                shutil.copytree(src, dst, dirs_exist_ok=True)
            elif os.path.isfile(src):
                shutil.copy(src, dst)
        self.write_model_card(args.output_dir)
        message = f"Training in progress, step {self.state.global_step}"
        jobs = [hf_api().upload_folder(repo_id=self.hub_model_id, folder_path=args.output_dir, commit_message=message,
                                       token=args.hub_token, run_as_future=True, revision=args.hub_revision,
                                       ignore_patterns=["_*", f"{PREFIX_CHECKPOINT_DIR}-*"])]
        if args.hub_strategy in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS):
            where = "last-checkpoint" if args.hub_strategy == HubStrategy.CHECKPOINT else \
                os.path.basename(checkpoint_folder)
            jobs.append(hf_api().upload_folder(repo_id=self.hub_model_id, folder_path=checkpoint_folder,
                                               path_in_repo=where, commit_message=message + ", checkpoint",
                                               token=args.hub_token, run_as_future=True,
                                               revision=args.hub_revision))
        if self.push_in_progress is None or self.push_in_progress.is_done():
            self.push_in_progress = PushInProgress(jobs)
        else:
            self.push_in_progress.jobs.extend(jobs)
