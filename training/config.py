"""Trainer configs: ``transformers.TrainingArguments`` plus the diffusion options, as TRL does for its trainers.

One root, :class:`BaseTrainingConfig` (model, data source, LoRA / ``peft_config``, validation videos, refusal of
the ``TrainingArguments`` options no vidalign trainer can honour), under :class:`DiffusionDPOConfig`,
:class:`DiffusionSFTConfig` and the reward trainer's ``RewardGradientConfig``. Everything a run needs is one
dataclass, so ``Trainer`` machinery (checkpointing, gradient accumulation, mixed
precision, logging, DDP/FSDP through accelerate) reads its usual fields and the diffusion objective reads ours.
Defaults follow SPEC: :class:`DiffusionDPOConfig` is SpatialAlign (§1), :class:`DiffusionSFTConfig` is PISA's
PSFT (§3); VideoDPO (§2) is a YAML away (``training/configs/videodpo_dpo.yaml``). Load a config with
:func:`load_config` (YAML + ``key=value`` overrides); bad values fail in ``__post_init__`` with one line.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

import yaml
from transformers import TrainingArguments

from vidalign.errors import ConfigError, VidalignError, require
from vidalign.training.losses import DPO_LOSS_TYPES, ERROR_REDUCTIONS, TIMESTEP_SAMPLERS

PREDICTION_TYPES = ("flow", "epsilon", "v_prediction")
BETA_SCHEDULES = ("linear", "scaled_linear")
DATA_FORMATS = ("auto", "pairs", "groups")
# SpatialAlign's LoRA targets, "text_embedding.0/.2, cross_attn.k/.v" in Wan's own naming, in diffusers' naming
# (checked against diffusers' WanTransformer3DModel: condition_embedder.text_embedder.linear_1/2, blocks.*.attn2).
TEXT_PATHWAY_TARGETS = (
    "condition_embedder.text_embedder.linear_1",
    "condition_embedder.text_embedder.linear_2",
    "attn2.to_k",
    "attn2.to_v",
)
DEFAULT_MODEL = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
PROMPT_OPTIONS_HELP = "a list of prompts, a shipped prompt set name or a text file (one prompt per line)"
# TrainingArguments options that none of the vidalign trainers can honour: (field, ignored value(s), fix).
# Each is refused with one line rather than silently ignored.
UNSUPPORTED_OPTIONS = (
    ("do_eval", (False,), "the vidalign trainers have no evaluation dataset; use validation_steps for validation "
                          "videos"),
    ("eval_strategy", ("no",), "the vidalign trainers have no evaluation dataset; use validation_steps for "
                               "validation videos"),
    ("eval_on_start", (False,), "the vidalign trainers have no evaluation dataset; use validation_steps"),
    ("load_best_model_at_end", (False,), "there is no evaluation metric to pick a best checkpoint by"),
    ("metric_for_best_model", (None,), "there is no evaluation metric to pick a best checkpoint by"),
    ("group_by_length", (False,), "streamed samples have no lengths to group by"),
    ("auto_find_batch_size", (False,), "the resumable stream needs a fixed batch size; set "
                                       "per_device_train_batch_size"),
    ("label_smoothing_factor", (0.0, 0), "label smoothing has no meaning for a diffusion loss"),
    ("neftune_noise_alpha", (None,), "NEFTune perturbs token embeddings of language models"),
    ("use_liger_kernel", (False,), "Liger kernels patch language models"),
    ("num_train_epochs", (3.0, 3), "streams are max_steps driven: set max_steps instead"),
    ("deepspeed", (None,), "the vidalign trainers save diffusers-format weights from DDP or FSDP only; use FSDP "
                           "(fsdp=full_shard) or DDP"),
    ("include_num_input_tokens_seen", (False, "no", None), "the inputs are latents, not tokens"),
    ("dataloader_persistent_workers", (False,), "the resumable stream starts its workers at their positions on "
                                                "every resume; leave it off"),
    ("activation_checkpointing_kwargs", (None,), "diffusers models checkpoint every block with their own "
                                                 "settings; use activation_checkpointing: true"),
    ("gradient_checkpointing_kwargs", (None,), "diffusers models checkpoint every block with their own settings; "
                                               "use activation_checkpointing: true"),
    ("train_sampling_strategy", ("random",), "the stream splits and orders shards itself (data_resample, seed)"),
)


def bf16_available() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def _accelerator_available() -> bool:
    import torch

    return bool(torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available()))


def lora_config_kwargs(peft_config: Any, where: str = "peft_config") -> dict[str, Any]:
    """A peft ``LoraConfig`` (or the dict of its keyword arguments) as validated keyword arguments."""
    from peft import LoraConfig

    if isinstance(peft_config, LoraConfig):
        default = LoraConfig()
        return {f.name: getattr(peft_config, f.name) for f in dataclasses.fields(LoraConfig)
                if f.init and getattr(peft_config, f.name) != getattr(default, f.name)}
    if not isinstance(peft_config, dict):
        raise ConfigError(f"{where}={peft_config!r} is invalid: give a mapping of LoraConfig arguments, "
                          "e.g. {r: 16, lora_alpha: 16, target_modules: [to_q, to_k, to_v]}")
    known = {f.name for f in dataclasses.fields(LoraConfig) if f.init}
    unknown = sorted(set(peft_config) - known)
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        raise ConfigError(f"{where}: {unknown[0]!r} is not a peft LoraConfig argument"
                          f"{f' (did you mean {close[0]}?)' if close else ''}; see peft.LoraConfig")
    kw = dict(peft_config)
    if isinstance(kw.get("target_modules"), str) and "," in kw["target_modules"]:
        kw["target_modules"] = [t.strip() for t in kw["target_modules"].split(",") if t.strip()]
    try:
        LoraConfig(**kw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {' '.join(str(exc).split())[:200]}") from None
    return kw


@dataclass
class BaseTrainingConfig(TrainingArguments):
    """The one config root of the vidalign trainers (DPO, SFT, reward): ``transformers.TrainingArguments`` plus
    the model, data source, LoRA and validation options every trainer shares. Options a trainer cannot honour
    are refused in ``__post_init__`` (see :data:`UNSUPPORTED_OPTIONS`)."""

    # --- TrainingArguments defaults changed for diffusion fine-tuning
    per_device_train_batch_size: int = 1
    logging_steps: float = 10
    save_steps: float = 100
    remove_unused_columns: bool = False
    bf16: bool | None = field(default=None, metadata={"help": "bf16 mixed precision; None: on when the GPU has it"})
    ignore_data_skip: bool = field(
        default=True, metadata={"help": "always True: the trainer resumes its stream itself (exact, no replay)"}
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False, metadata={"help": "False: every trainable parameter gets a gradient each step (tested)"}
    )

    # --- model
    model_name_or_path: str | None = field(
        default=DEFAULT_MODEL, metadata={"help": "hub id or folder of a diffusers pipeline or bare model"}
    )
    model_revision: str | None = None

    # --- data
    train_data: str | None = field(default=None, metadata={
        "help": "dataset: a folder, a Hub id (org/name, hf://datasets/org/name@rev), a URL of a dataset root or of "
                "shards (https://, s3://, gs://; pipe:cmd), a glob or a {a..b} shard pattern"})
    train_config: str | None = field(
        default=None, metadata={"help": "dataset config to train on (e.g. groups); needed when it has several"}
    )
    data_split: str = "train"
    data_resample: bool = field(default=False, metadata={
        "help": "draw shards at random forever; default: split the shard list by rank and worker, every sample "
                "once per pass, passes repeated until max_steps"})
    shuffle_buffer: int = field(default=0, metadata={
        "help": "samples mixed in a shuffle buffer (0: none; shard order is reshuffled every pass either way); "
                "resuming replays, without decoding, the part of a pass already consumed"})

    # --- LoRA (peft)
    use_lora: bool = True
    lora_rank: int = 16
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_target_modules: list[str] = field(default_factory=list)
    peft_config: dict | None = field(default=None, metadata={
        "help": "peft LoraConfig arguments ({r, lora_alpha, lora_dropout, target_modules, ...}); sets use_lora "
                "and overrides the lora_* options"})

    # --- validation videos (as diffusers' training scripts: fixed prompts every N steps)
    validation_prompts: Any = field(default=None, metadata={"help": PROMPT_OPTIONS_HELP})
    validation_steps: int = field(default=0, metadata={"help": "render the validation prompts every N steps (0: "
                                                                 "only at the end when prompts are set)"})
    validation_num_frames: int | None = field(default=None, metadata={"help": "frames (4k+1); None: the training "
                                                                                "clips' (or sampling) size"})
    validation_height: int | None = None
    validation_width: int | None = None
    validation_num_inference_steps: int = 25
    validation_guidance_scale: float = 5.0
    validation_seed: int = 0
    validation_fps: int = 16
    validation_pipeline: str | None = field(default=None, metadata={
        "help": "diffusers pipeline (folder or hub id) giving the VAE and text encoder; None: model_name_or_path"})

    def _owner(self) -> str:
        return type(self).__name__

    def __post_init__(self):
        o = self._owner()
        require(self.max_steps > 0, o, "max_steps", self.max_steps, "streams are max_steps driven: set max_steps > 0")
        require(self.gradient_accumulation_steps >= 1, o, "gradient_accumulation_steps",
                self.gradient_accumulation_steps, "use >= 1 (1: no accumulation)")
        require(self.per_device_train_batch_size >= 1, o, "per_device_train_batch_size",
                self.per_device_train_batch_size, "use >= 1")
        for name, ignored, fix in UNSUPPORTED_OPTIONS:
            value = getattr(self, name, ignored[0])
            value = getattr(value, "value", value)  # enums (eval_strategy)
            if value not in ignored:
                raise ConfigError(f"{o}.{name}={value!r} is not supported: {fix}")
        if self.peft_config is not None:
            kw = self.peft_config = lora_config_kwargs(self.peft_config)
            self.use_lora = True
            self.lora_rank = int(kw.get("r", self.lora_rank))
            self.lora_alpha = float(kw.get("lora_alpha", self.lora_alpha))
            self.lora_dropout = float(kw.get("lora_dropout", self.lora_dropout))
            if kw.get("target_modules") is not None:
                t = kw["target_modules"]
                self.lora_target_modules = [t] if isinstance(t, str) else list(t)
        require(self.shuffle_buffer >= 0, o, "shuffle_buffer", self.shuffle_buffer, "use a buffer size >= 0")
        require(self.lora_rank >= 1, o, "lora_rank", self.lora_rank, "use a rank >= 1 (SpatialAlign, VADER: 16)")
        require(self.lora_alpha > 0, o, "lora_alpha", self.lora_alpha, "use alpha > 0")
        require(0.0 <= self.lora_dropout < 1.0, o, "lora_dropout", self.lora_dropout, "use a value in [0, 1)")
        targets = self.lora_target_modules
        if isinstance(targets, str):
            targets = self.lora_target_modules = [t.strip() for t in targets.split(",") if t.strip()]
        require(not self.use_lora or (isinstance(targets, list) and len(targets) > 0
                                      and all(isinstance(t, str) and t for t in targets)),
                o, "lora_target_modules", targets, "list module names, e.g. [attn2.to_k, attn2.to_v]")
        self._check_validation(o)
        if self.bf16 is None:
            self.bf16 = bf16_available() and not self.fp16
        # Resuming is exact through the trainer's own stream state; Trainer's replay-skip would double it.
        self.ignore_data_skip = True
        try:
            super().__post_init__()
        except VidalignError:
            raise
        except ValueError as exc:
            raise ConfigError(f"{o}: {' '.join(str(exc).split())}") from None
        if self.fsdp and not _accelerator_available():
            raise ConfigError(f"{o}.fsdp={self.fsdp!r} is not supported here: accelerate runs FSDP on GPUs (and "
                              "other accelerators) only; on CPU train with DDP (unset fsdp)")
        if self.fsdp and self.validation_prompts is not None:
            raise ConfigError(f"{o}.validation_prompts is not supported with fsdp: render validation videos from a "
                              "saved checkpoint instead")

    def _check_validation(self, o: str) -> None:
        require(self.validation_steps >= 0, o, "validation_steps", self.validation_steps, "use >= 0 (0: at the end)")
        n = self.validation_num_frames
        require(n is None or (n >= 1 and (n - 1) % 4 == 0), o, "validation_num_frames", n,
                "use 4k+1 frames (Wan's VAE), e.g. 17 or 81")
        for name in ("validation_height", "validation_width"):
            v = getattr(self, name)
            require(v is None or (v > 0 and v % 16 == 0), o, name, v, "use a multiple of 16")
        require(self.validation_num_inference_steps >= 1, o, "validation_num_inference_steps",
                self.validation_num_inference_steps, "use >= 1")
        require(self.validation_fps >= 1, o, "validation_fps", self.validation_fps, "use >= 1")
        p = self.validation_prompts
        if p is None:
            require(self.validation_steps == 0, o, "validation_steps", self.validation_steps,
                    "set validation_prompts (a list, a prompt set or a text file) to render validation videos")
            self.validation_prompt_list: list[str] = []
            return
        if isinstance(p, str):
            from vidalign.training.prompt_sets import read_prompts

            self.validation_prompt_list = read_prompts(p, option="validation_prompts")
        else:
            require(isinstance(p, list) and p and all(isinstance(x, str) and x.strip() for x in p), o,
                    "validation_prompts", p, PROMPT_OPTIONS_HELP)
            self.validation_prompt_list = [x.strip() for x in p]

    def pipeline_source(self) -> str | None:
        """Where the VAE, text encoder and tokenizer for validation videos come from."""
        return self.validation_pipeline or self.model_name_or_path


@dataclass
class DiffusionTrainingConfig(BaseTrainingConfig):
    """Options shared by the DPO and SFT trainers (model class, noising, conditioning, EMA)."""

    # --- TrainingArguments defaults changed for diffusion fine-tuning (SpatialAlign §1 / PSFT §3)
    learning_rate: float = 1e-4
    max_steps: int = 3000

    # --- model
    model_subfolder: str | None = field(
        default="transformer", metadata={"help": "subfolder of the pipeline holding the denoiser (None: bare model)"}
    )
    model_class: str = field(default="WanTransformer3DModel", metadata={"help": "diffusers class of the denoiser"})
    pipeline_class: str = field(
        default="WanPipeline", metadata={"help": "diffusers pipeline whose save_lora_weights writes the LoRA"}
    )

    # --- noising
    prediction_type: str = field(default="flow", metadata={"help": "flow (Wan) | epsilon | v_prediction (UNets)"})
    timestep_sampler: str = field(default="shifted", metadata={"help": "uniform | logit_normal | shifted"})
    flow_shift: float = 5.0
    logit_mean: float = 0.0
    logit_std: float = 1.0
    num_train_timesteps: int = 1000
    beta_schedule: str = "scaled_linear"
    beta_start: float = 0.00085
    beta_end: float = 0.012
    use_scale: bool = field(default=False, metadata={"help": "VideoCrafter2's x0 scaling: x_t = √ᾱ_t·scale_arr[t]·x0 "
                                                             "+ √(1−ᾱ_t)·ε (ε/v models only)"})
    scale_a: float = 1.0
    scale_b: float = 0.7
    scale_mid_step: int = 400

    # --- conditioning
    caption_dropout: float = field(default=0.0, metadata={"help": "probability of training a sample unconditioned"})
    empty_prompt_embeds: str | None = field(
        default=None, metadata={"help": "text embedding of a dropped caption: null = the encoded \"\" that "
                                        "`vidalign encode` stored with the data (empty_prompt_embeds.npy), a .npy "
                                        "[L, D] path, or 'zeros' (VideoDPO's uncond_type zero_embed)"}
    )
    first_frame_conditioning: bool = field(
        default=False, metadata={"help": "keep latent frame 0 clean and out of the loss (image-to-video)"}
    )

    # --- LoRA (peft); without it the reference is a frozen full copy
    lora_target_modules: list[str] = field(default_factory=lambda: list(TEXT_PATHWAY_TARGETS))
    ema_decay: float | None = field(default=None, metadata={"help": "EMA of the trained weights (PSFT: 0.99)"})

    def __post_init__(self):
        o = self._owner()
        require(self.model_class.isidentifier(), o, "model_class", self.model_class, "name a diffusers class")
        require(self.prediction_type in PREDICTION_TYPES, o, "prediction_type", self.prediction_type,
                f"use one of {', '.join(PREDICTION_TYPES)}")
        require(self.timestep_sampler in TIMESTEP_SAMPLERS, o, "timestep_sampler", self.timestep_sampler,
                f"use one of {', '.join(TIMESTEP_SAMPLERS)}")
        require(self.flow_shift > 0, o, "flow_shift", self.flow_shift, "use a shift > 0 (Wan 480p: 5)")
        require(self.logit_std > 0, o, "logit_std", self.logit_std, "use a standard deviation > 0")
        require(self.num_train_timesteps > 0, o, "num_train_timesteps", self.num_train_timesteps, "use > 0 (1000)")
        require(not self.use_scale or self.prediction_type != "flow", o, "use_scale", self.use_scale,
                "VideoCrafter2's x0 scaling applies to ε/v DDPM models: unset it for flow matching")
        require(0 < self.scale_mid_step <= self.num_train_timesteps, o, "scale_mid_step", self.scale_mid_step,
                "use 0 < scale_mid_step <= num_train_timesteps (VideoCrafter2: 400)")
        require(self.beta_schedule in BETA_SCHEDULES, o, "beta_schedule", self.beta_schedule,
                f"use one of {', '.join(BETA_SCHEDULES)}")
        require(0 < self.beta_start < self.beta_end < 1, o, "beta_start", (self.beta_start, self.beta_end),
                "need 0 < beta_start < beta_end < 1")
        require(0.0 <= self.caption_dropout < 1.0, o, "caption_dropout", self.caption_dropout, "use a value in [0, 1)")
        require(self.ema_decay is None or 0.0 < self.ema_decay < 1.0, o, "ema_decay", self.ema_decay,
                "use a decay in (0, 1) or null")
        require(self.empty_prompt_embeds in (None, "zeros") or os.path.isfile(self.empty_prompt_embeds), o,
                "empty_prompt_embeds", self.empty_prompt_embeds,
                "point to an existing .npy file, write 'zeros', or leave it null (the dataset's encoded \"\")")
        require(self.prediction_type == "flow" or self.validation_prompts is None, o, "validation_prompts",
                self.validation_prompts, "validation videos are sampled with the flow-matching sampler: use "
                "prediction_type flow, or render ε/v models with their own pipeline")
        super().__post_init__()
        require(not (self.ema_decay and self.fsdp), o, "ema_decay", self.ema_decay,
                "the EMA keeps full weights: unset it under fsdp")


@dataclass
class DiffusionDPOConfig(DiffusionTrainingConfig):
    """Diffusion-DPO. Defaults: SpatialAlign (β 1, clip ±5, λ 0.5, shared timestep, independent noise, 48 pairs
    per optimizer step, 300 warm-up steps then cosine to 3000, bf16, LoRA r16/α16 on the text pathway)."""

    gradient_accumulation_steps: int = 48
    warmup_steps: float = 300
    lr_scheduler_type: str = "cosine"

    beta: float = field(default=1.0, metadata={"help": "DPO temperature β (SpatialAlign 1, VideoDPO 5000)"})
    loss_type: str = field(default="sigmoid", metadata={"help": "sigmoid | ipo | hinge"})
    logit_scale: float = field(
        default=1.0, metadata={"help": "h = scale·(s_w − s_l): 1 SpatialAlign, 0.5 Diffusion-DPO / VideoDPO"}
    )
    logit_clip: float | None = field(default=5.0, metadata={"help": "clip β·h to ±value (sigmoid loss); null: off"})
    reg_weight: float = field(default=0.5, metadata={"help": "λ of SpatialAlign's zeroth-order regulariser"})
    shared_noise: bool = field(default=False, metadata={"help": "same ε for winner and loser (Diffusion-DPO)"})
    shared_timestep: bool = field(default=True, metadata={"help": "same t for winner and loser (SpatialAlign)"})
    pair_weight_key: str | None = field(
        default=None, metadata={"help": "json key of a per-pair loss weight (VideoDPO: weight)"}
    )
    data_format: str = field(default="auto", metadata={"help": "pairs (chosen/rejected) | groups (DSR) | auto"})
    chosen_member: str = "chosen"
    rejected_member: str = "rejected"
    error_reduction: str = field(default="sample", metadata={
        "help": "denoising error per sample (papers; SpatialAlign's train.py) or per latent column: mean over "
                "channel, time and height, DPO term per column, then averaged (VideoDPO's released ddpm3d.py)"})

    def __post_init__(self):
        o = self._owner()
        require(self.beta > 0, o, "beta", self.beta, "β must be > 0 (SpatialAlign 1, VideoDPO 5000)")
        require(self.loss_type in DPO_LOSS_TYPES, o, "loss_type", self.loss_type,
                f"use one of {', '.join(DPO_LOSS_TYPES)}")
        require(self.logit_scale > 0, o, "logit_scale", self.logit_scale, "use 1 (SpatialAlign) or 0.5 (VideoDPO)")
        require(self.logit_clip is None or self.logit_clip > 0, o, "logit_clip", self.logit_clip,
                "use a bound > 0 (SpatialAlign 5) or null")
        require(self.reg_weight >= 0, o, "reg_weight", self.reg_weight, "use λ >= 0 (SpatialAlign 0.5)")
        require(self.data_format in DATA_FORMATS, o, "data_format", self.data_format,
                f"use one of {', '.join(DATA_FORMATS)}")
        require(self.chosen_member != self.rejected_member, o, "rejected_member", self.rejected_member,
                "winner and loser members must differ")
        require(self.error_reduction in ERROR_REDUCTIONS, o, "error_reduction", self.error_reduction,
                f"use one of {', '.join(ERROR_REDUCTIONS)}")
        super().__post_init__()


@dataclass
class DiffusionSFTConfig(DiffusionTrainingConfig):
    """Supervised flow-matching fine-tuning. Defaults: PISA PSFT (logit-normal t, first latent frame kept clean,
    lr 1e-4, gradient clip 1.0, EMA 0.99, bf16, full fine-tuning)."""

    timestep_sampler: str = "logit_normal"
    first_frame_conditioning: bool = True
    max_grad_norm: float = 1.0
    ema_decay: float | None = 0.99
    use_lora: bool = False
    lr_scheduler_type: str = "constant"
    latents_member: str = field(default="", metadata={"help": "video member to train on ('' = the bare mp4)"})


CONFIG_CLASSES = {"dpo": DiffusionDPOConfig, "sft": DiffusionSFTConfig}
RENAMED_OPTIONS = {"data_config": "train_config"}


def config_class(kind: str, source: str = "config") -> type:
    """The config class of a trainer kind: ``dpo``, ``sft`` or ``reward``."""
    if kind == "reward":  # lives beside the reward trainer; imported on demand (it imports this module)
        from vidalign.training.reward_config import RewardGradientConfig

        return RewardGradientConfig
    if kind not in CONFIG_CLASSES:
        raise ConfigError(f"{source}: unknown trainer {kind!r}; use one of {', '.join([*CONFIG_CLASSES, 'reward'])}")
    return CONFIG_CLASSES[kind]


def _coerce(key: str, value: Any, default: Any, source: str) -> Any:
    """YAML reads ``1e-4`` as a string and ``2`` as an int: follow the field's default type where unambiguous;
    a value that cannot be a bool/number where the default is one fails in one line."""
    if value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: option {key}={value!r} is not true/false; write e.g. {key}={default!r}")
        return value
    if isinstance(default, (int, float)) and not isinstance(value, bool):
        if isinstance(value, str):
            try:
                value = float(value) if isinstance(default, float) else int(value)
            except ValueError:
                raise ConfigError(f"{source}: option {key}={value!r} is not a number; "
                                  f"write e.g. {key}={default!r}") from None
        if isinstance(default, float) and isinstance(value, int):
            value = float(value)
        if not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: option {key}={value!r} is not a number; write e.g. {key}={default!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{source}: option {key}={value!r} is not a finite number; write e.g. {key}={default!r}")
    return value


def parse_overrides(overrides: list[str] | None, source: str = "command line") -> dict[str, Any]:
    """``["beta=5000", "lora_target_modules=[attn2.to_k]"]`` → dict, values parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"{source}: override {item!r} is not key=value; write e.g. beta=5000")
        key, _, raw = item.partition("=")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except (yaml.YAMLError, ValueError, RecursionError):
            out[key.strip()] = raw
    return out


def config_from_mapping(cls: type, values: dict[str, Any], source: str = "config", kind: str = ""):
    """Instantiate ``cls`` (a ``TrainingArguments`` dataclass) from a mapping: unknown keys (with a
    did-you-mean hint) and bad values fail in one line that starts with ``source``."""
    import difflib

    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for old, new in RENAMED_OPTIONS.items():
        if old in values and old not in fields:
            raise ConfigError(f"{source}: option {old} is now called {new}; write {new}={values[old]!r}")
    unknown = sorted(set(values) - set(fields))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(fields), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"{source}: unknown option(s) {', '.join(unknown)}{hint} for {cls.__name__}; "
                          f"see `vidalign train {kind or '<kind>'} --help-options`")
    kwargs = {}
    for key, value in values.items():
        f = fields[key]
        default = f.default if f.default is not dataclasses.MISSING else None
        kwargs[key] = _coerce(key, value, default, source)
    try:
        return cls(**kwargs)
    except VidalignError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {' '.join(str(exc).split())}") from None


def build_config(kind: str, values: dict[str, Any], source: str = "config"):
    """Make the ``kind`` ("dpo" | "sft" | "reward") config from a mapping."""
    return config_from_mapping(config_class(kind, source), values, source, kind)


def read_config_values(path: str | os.PathLike | None, overrides: list[str] | None = None) -> dict[str, Any]:
    """A YAML config file (a flat mapping of option: value) updated with ``key=value`` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        if not os.path.isfile(path):
            raise ConfigError(f"--config {path}: file not found; pass an existing YAML file")
        from vidalign.inputs import read_yaml

        loaded = read_yaml(path, "training config") or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping of option: value, got {type(loaded).__name__}")
        values.update(loaded)
    values.update(parse_overrides(overrides))
    return values


def load_config(kind: str, path: str | os.PathLike | None = None, overrides: list[str] | None = None):
    """Read a YAML config, apply ``key=value`` overrides, validate: the config of trainer ``kind``."""
    return build_config(kind, read_config_values(path, overrides), str(path) if path else "command line")


def config_to_yaml(cfg: DiffusionTrainingConfig) -> str:
    """The config's own (non-default-TrainingArguments-noise) options as YAML, written next to checkpoints."""
    d = cfg.to_dict()
    keep = {f.name for f in dataclasses.fields(type(cfg)) if f.init}
    return yaml.safe_dump({k: v for k, v in d.items() if k in keep}, sort_keys=True)
