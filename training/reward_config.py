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
from typing import Any

from vidalign.errors import require
from vidalign.training.config import BaseTrainingConfig, config_from_mapping, read_config_values
from vidalign.training.prompt_sets import prompt_set_names, read_prompts  # noqa: F401  (re-exported)
from vidalign.training.rewards import RewardSpec
from vidalign.training.sampling import BACKPROP_MODES

ATTENTION_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")  # VADER: LoRA on every attention projection
DECODE_MODES = ("random", "all")


@dataclass
class RewardGradientConfig(BaseTrainingConfig):
    """Reward-gradient fine-tuning of a Wan-style flow transformer (see the module docstring)."""

    # --- TrainingArguments defaults changed for reward fine-tuning (VADER)
    learning_rate: float = 2e-4
    max_steps: int = 1000
    lr_scheduler_type: str = "constant"
    logging_steps: float = 1

    # --- what to train on: a prompt set (VADER) or ground-truth clips from drop shards (PISA)
    prompts: str | None = field(default=None, metadata={"help": "prompt set name or text file (one per line)"})
    train_data: str | None = field(default=None, metadata={
        "help": "drop-shard dataset: a folder, a Hub id (org/name), a URL (https://, s3://), a glob or shard URLs"})
    data_resample: bool = field(default=True, metadata={"help": "draw drop shards at random forever (default)"})
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
    lora_target_modules: list[str] = field(default_factory=lambda: list(ATTENTION_TARGETS))

    def _owner(self) -> str:
        return type(self).__name__

    def __post_init__(self):
        o = self._owner()
        require(bool(self.model_name_or_path), o, "model_name_or_path", self.model_name_or_path,
                "give a diffusers Wan pipeline (Hub id or folder)")
        self._check_sampling(o)
        self._check_rewards(o)
        self._check_source(o)
        if self.activation_checkpointing is None and self.gradient_checkpointing is None:
            self.activation_checkpointing = True  # on by default: backprop through sampling is memory bound
        super().__post_init__()

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


def build_reward_config(values: dict[str, Any], source: str = "config") -> RewardGradientConfig:
    """A :class:`RewardGradientConfig` from a mapping; unknown keys and bad values fail in one line."""
    return config_from_mapping(RewardGradientConfig, values, source, "reward")


def load_reward_config(path: str | os.PathLike | None = None,
                       overrides: list[str] | None = None) -> RewardGradientConfig:
    """Read a YAML config (a mapping of option: value), apply ``key=value`` overrides, validate."""
    return build_reward_config(read_config_values(path, overrides), str(path) if path else "command line")
