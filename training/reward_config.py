"""Config of reward-gradient fine-tuning (VADER, PISA ORO; SPEC §5): ``TrainingArguments`` plus sampling options.

One dataclass holds the run, as for the DPO/SFT trainers (:mod:`vidalign.training.config`, whose option names it
shares where they mean the same thing). Defaults are VADER's: LoRA rank 16 on the attention projections, gradients
through the last denoising step only, one random decoded frame, gradient clipping 1.0. PISA's ORO is the YAML
``training/configs/pisa_oro.yaml``: full fine-tuning, every step, every frame, first-frame conditioning, rewards
against ground-truth clips from drop shards. Load with :func:`load_reward_config` (YAML + ``key=value``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from transformers import TrainingArguments

from vidalign.errors import ConfigError, VidalignError, require
from vidalign.training.config import bf16_available, config_from_mapping, read_config_values
from vidalign.training.rewards import RewardSpec
from vidalign.training.sampling import BACKPROP_MODES

DEFAULT_MODEL = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
ATTENTION_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")  # VADER: LoRA on every attention projection
DECODE_MODES = ("random", "all")


def prompt_set_names() -> list[str]:
    """Prompt sets shipped in ``training/prompts`` (a name, or any text file with one prompt per line)."""
    folder = resources.files("vidalign.training") / "prompts"
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".txt")) if folder.is_dir() else []


def read_prompts(source: str) -> list[str]:
    """Prompts of a shipped set (by name) or a text file: one per line, blank lines and ``#`` comments skipped."""
    path = Path(source).expanduser()
    if not path.is_file():
        packaged = resources.files("vidalign.training") / "prompts" / f"{source}.txt"
        if not packaged.is_file():
            raise ConfigError(f"prompts={source!r} is neither a file nor a prompt set; use a text file with one "
                              f"prompt per line or one of: {', '.join(prompt_set_names())}")
        text = packaged.read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    prompts = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not prompts:
        raise ConfigError(f"prompts={source!r} holds no prompts; write one prompt per line")
    return prompts


@dataclass
class RewardGradientConfig(TrainingArguments):
    """Reward-gradient fine-tuning of a Wan-style flow transformer (see the module docstring)."""

    # --- TrainingArguments defaults changed for reward fine-tuning (VADER)
    learning_rate: float = 2e-4
    max_steps: int = 1000
    per_device_train_batch_size: int = 1
    lr_scheduler_type: str = "constant"
    logging_steps: float = 1
    save_steps: float = 100
    remove_unused_columns: bool = False
    bf16: bool | None = field(default=None, metadata={"help": "bf16 mixed precision; None: on when the GPU has it"})

    # --- model (a diffusers Wan pipeline folder or Hub id: transformer, vae, text_encoder, tokenizer)
    model_name_or_path: str = DEFAULT_MODEL
    model_revision: str | None = None

    # --- what to train on: a prompt set (VADER) or ground-truth clips from drop shards (PISA)
    prompts: str | None = field(default=None, metadata={"help": "prompt set name or text file (one per line)"})
    train_data: str | None = field(default=None, metadata={"help": "drop-shard dataset (folder, glob or URLs)"})
    data_config: str | None = None
    data_split: str = "train"
    shuffle_buffer: int = 64
    prompt: str | None = field(default=None, metadata={"help": "caption for every data sample (else its json prompt)"})
    first_frame_conditioning: bool = field(
        default=False, metadata={"help": "condition on the GT first frame: latent frame 0 clean, timestep 0"}
    )

    # --- sampling
    height: int = 480
    width: int = 832
    num_frames: int = 81
    num_inference_steps: int = 20
    guidance_scale: float = 5.0
    negative_prompt: str = ""
    flow_shift: float = 5.0
    num_train_timesteps: int = 1000
    max_sequence_length: int = 512

    # --- where gradients flow
    backprop_mode: str = field(default="last", metadata={"help": "last | rand | specific | all"})
    backprop_step: int | None = field(default=None, metadata={"help": "first step with gradients (specific)"})
    decode_frames: Any = field(default="random", metadata={"help": "random (one frame) | all | [frame indices]"})
    vae_gradient_checkpointing: bool = True

    # --- rewards: [{name: aesthetic, weight: 1.0, <options>}, ...]
    rewards: list = field(default_factory=list)

    # --- LoRA (peft) or full fine-tuning
    use_lora: bool = True
    lora_rank: int = 16
    lora_alpha: float = 16.0
    lora_target_modules: list[str] = field(default_factory=lambda: list(ATTENTION_TARGETS))
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout (VADER's released code: 0.01)"})

    def _owner(self) -> str:
        return type(self).__name__

    def __post_init__(self):
        o = self._owner()
        require(self.max_steps > 0, o, "max_steps", self.max_steps, "set max_steps > 0 (training is step driven)")
        require(bool(self.model_name_or_path), o, "model_name_or_path", self.model_name_or_path,
                "give a diffusers Wan pipeline (Hub id or folder)")
        self._check_sampling(o)
        self._check_rewards(o)
        self._check_source(o)
        require(self.lora_rank >= 1, o, "lora_rank", self.lora_rank, "use a rank >= 1 (VADER: 16)")
        require(self.lora_alpha > 0, o, "lora_alpha", self.lora_alpha, "use alpha > 0")
        require(0.0 <= self.lora_dropout < 1.0, o, "lora_dropout", self.lora_dropout, "use a value in [0, 1)")
        targets = self.lora_target_modules
        if isinstance(targets, str):
            targets = self.lora_target_modules = [t.strip() for t in targets.split(",") if t.strip()]
        require(not self.use_lora or (isinstance(targets, list) and targets and all(isinstance(t, str) for t in targets)),
                o, "lora_target_modules", targets, "list module names, e.g. [to_q, to_k, to_v, to_out.0]")
        if self.bf16 is None:
            self.bf16 = bf16_available() and not self.fp16
        if self.activation_checkpointing is None and self.gradient_checkpointing is None:
            self.activation_checkpointing = True  # on by default: backprop through sampling is memory bound
        try:
            super().__post_init__()
        except VidalignError:
            raise
        except ValueError as exc:
            raise ConfigError(f"{o}: {' '.join(str(exc).split())}") from None

    def _check_sampling(self, o: str) -> None:
        require(self.num_frames >= 1 and (self.num_frames - 1) % 4 == 0, o, "num_frames", self.num_frames,
                "use 4k+1 frames (Wan's VAE), e.g. 33 or 81")
        require(self.height % 16 == 0 and self.height > 0, o, "height", self.height, "use a multiple of 16")
        require(self.width % 16 == 0 and self.width > 0, o, "width", self.width, "use a multiple of 16")
        require(self.num_inference_steps >= 1, o, "num_inference_steps", self.num_inference_steps, "use >= 1")
        require(self.guidance_scale >= 0, o, "guidance_scale", self.guidance_scale, "use >= 0 (1 or less: no CFG)")
        require(self.flow_shift > 0, o, "flow_shift", self.flow_shift, "use a shift > 0 (Wan 480p: 5)")
        require(self.max_sequence_length >= 1, o, "max_sequence_length", self.max_sequence_length, "use >= 1")
        require(self.backprop_mode in BACKPROP_MODES, o, "backprop_mode", self.backprop_mode,
                f"use one of {', '.join(BACKPROP_MODES)}")
        if self.backprop_mode == "specific":
            n = self.num_inference_steps
            require(isinstance(self.backprop_step, int) and 0 <= self.backprop_step < n, o, "backprop_step",
                    self.backprop_step, f"the cutoff must be a step in [0, {n - 1}] (num_inference_steps={n})")
        d = self.decode_frames
        if isinstance(d, (list, tuple)):
            ok = bool(d) and all(isinstance(i, int) and 0 <= i < self.num_frames for i in d) and len(set(d)) == len(d)
            require(ok, o, "decode_frames", d, f"list distinct frame indices in [0, {self.num_frames - 1}]")
            self.decode_frames = sorted(d)
        else:
            require(d in DECODE_MODES, o, "decode_frames", d, "use random, all, or a list of frame indices")

    def decoded_count(self) -> int:
        d = self.decode_frames
        return 1 if d == "random" else self.num_frames if d == "all" else len(d)

    def _check_rewards(self, o: str) -> None:
        require(isinstance(self.rewards, list) and len(self.rewards) > 0, o, "rewards", self.rewards,
                "list at least one reward, e.g. [{name: aesthetic, head: <weights>}]")
        self.reward_specs = [RewardSpec.parse(r, f"rewards[{i}]") for i, r in enumerate(self.rewards)]
        for i, spec in enumerate(self.reward_specs):
            cls, where = spec.entry.kind, f"rewards[{i}]"
            require(self.decoded_count() >= cls.min_frames, where, "name", spec.name,
                    f"it needs {cls.min_frames}+ decoded frames: set decode_frames: all")
            require(not cls.needs_first_frame or self.decode_frames == "all" or
                    (isinstance(self.decode_frames, list) and 0 in self.decode_frames), where, "name", spec.name,
                    "it needs frame 0 decoded (SAM 2 is seeded there): set decode_frames: all")

    def needs_ground_truth(self) -> list[str]:
        return [s.name for s in self.reward_specs if s.entry.kind.needs_gt]

    def _check_source(self, o: str) -> None:
        gt = self.needs_ground_truth()
        if gt:
            require(self.train_data is not None, o, "train_data", self.train_data,
                    f"reward {gt[0]!r} compares with ground-truth clips: set train_data to a drop-shard dataset")
        require((self.prompts is None) != (self.train_data is None), o, "prompts", self.prompts,
                "set exactly one of prompts (a prompt set) and train_data (drop shards with GT clips)")
        if self.prompts is not None:
            self.prompt_list = read_prompts(self.prompts)
        require(not self.first_frame_conditioning or self.train_data is not None, o, "first_frame_conditioning",
                True, "first frames come from train_data: set train_data or turn conditioning off")
        require(self.shuffle_buffer >= 1, o, "shuffle_buffer", self.shuffle_buffer, "use >= 1 (1 = no shuffling)")


def build_reward_config(values: dict[str, Any], source: str = "config") -> RewardGradientConfig:
    """A :class:`RewardGradientConfig` from a mapping; unknown keys and bad values fail in one line."""
    return config_from_mapping(RewardGradientConfig, values, source, "reward")


def load_reward_config(path: str | os.PathLike | None = None,
                       overrides: list[str] | None = None) -> RewardGradientConfig:
    """Read a YAML config (a mapping of option: value), apply ``key=value`` overrides, validate."""
    return build_reward_config(read_config_values(path, overrides), str(path) if path else "command line")
