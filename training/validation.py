"""Validation videos at fixed prompts, as diffusers' training scripts log them.

Every ``validation_steps`` optimizer steps (and at the end of training) the main process samples the config's
``validation_prompts`` with the current weights from fixed noise (``validation_seed + i``), writes each as
``<output_dir>/validation/step-<N>/<i>.mp4`` and ``.gif`` with a ``prompts.json``, and sends them to the reporting
integrations that take videos: Weights & Biases (``wandb.Video``, as diffusers' scripts do) and TensorBoard (an
animated GIF image summary, what ``SummaryWriter.add_video`` writes).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from transformers import TrainerCallback

VALIDATION_DIR = "validation"


@torch.no_grad()
def render_videos(transformer, vae, embed: Callable[[list[str]], torch.Tensor], prompts: Sequence[str], *,
                  height: int, width: int, num_frames: int, num_inference_steps: int, guidance_scale: float,
                  flow_shift: float, num_train_timesteps: int = 1000, seed: int = 0, negative_prompt: str = "",
                  first_latent: torch.Tensor | None = None, autocast=None) -> list[np.ndarray]:
    """Sample each prompt from seeded noise with the flow sampler and decode it: uint8 ``[T, H, W, 3]`` each."""
    import contextlib

    from diffusers import FlowMatchEulerDiscreteScheduler

    from vidalign.training.sampling import (
        decode_latents,
        denormalize_latents,
        flow_sigmas,
        num_latent_frames,
        sample_flow,
    )

    base = getattr(transformer, "module", transformer)
    device = next(base.parameters()).device
    sigmas = flow_sigmas(FlowMatchEulerDiscreteScheduler(num_train_timesteps=num_train_timesteps, shift=flow_shift),
                         num_inference_steps, device)
    ts, ss = int(vae.config.scale_factor_temporal), int(vae.config.scale_factor_spatial)
    shape = (1, int(base.config.in_channels), num_latent_frames(num_frames, ts), height // ss, width // ss)
    was_training = base.training
    base.eval()
    videos = []
    try:
        for i, prompt in enumerate(prompts):
            noise = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed + i)).to(device)
            emb = embed([prompt])
            neg = embed([negative_prompt]) if guidance_scale > 1 else None
            first = first_latent[i % len(first_latent)][None].to(device) if first_latent is not None else None
            with autocast() if autocast is not None else contextlib.nullcontext():
                out = sample_flow(base, sigmas, noise, emb, cutoff=num_inference_steps, negative_embeds=neg,
                                  guidance_scale=guidance_scale, first_latent=first,
                                  num_train_timesteps=num_train_timesteps)
                video = decode_latents(vae, denormalize_latents(out.latents, vae))
            frames = ((video[0].float().permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            videos.append(frames.cpu().numpy())
    finally:
        base.train(was_training)
    return videos


def gif_bytes(frames: np.ndarray, fps: int) -> bytes:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=max(1, round(1000 / fps)),
                   loop=0)
    return buf.getvalue()


def write_videos(folder: str, videos: list[np.ndarray], prompts: Sequence[str], fps: int, step: int) -> list[str]:
    """``<i>.mp4`` (H.264) and ``<i>.gif`` per video plus ``prompts.json``; returns the mp4 paths."""
    from vidalign.media import encode_mp4

    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, frames in enumerate(videos):
        even = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]  # H.264 wants even sizes
        mp4 = os.path.join(folder, f"{i:02d}.mp4")
        with open(mp4, "wb") as fh:
            fh.write(encode_mp4(even, fps))
        with open(os.path.join(folder, f"{i:02d}.gif"), "wb") as fh:
            fh.write(gif_bytes(frames, fps))
        paths.append(mp4)
    with open(os.path.join(folder, "prompts.json"), "w", encoding="utf-8") as fh:
        json.dump({"step": step, "fps": fps, "videos": [{"file": os.path.basename(p), "prompt": q}
                                                        for p, q in zip(paths, prompts)]}, fh, indent=1)
    return paths


def send_to_integrations(callbacks, videos: list[np.ndarray], paths: list[str], prompts: Sequence[str], step: int,
                         fps: int) -> list[str]:
    """Log the videos to the reporting callbacks that take videos; returns the names of those that got them."""
    sent = []
    for cb in callbacks:
        name = type(cb).__name__
        if name == "WandbCallback" and getattr(cb, "_wandb", None) is not None and getattr(cb, "_initialized", False):
            wandb = cb._wandb
            wandb.log({"validation": [wandb.Video(p, caption=f"{i}: {q}", format="mp4")
                                      for i, (p, q) in enumerate(zip(paths, prompts))],
                       "train/global_step": step})
            sent.append("wandb")
        elif name == "TensorBoardCallback" and getattr(cb, "tb_writer", None) is not None:
            writer = cb.tb_writer
            if not hasattr(writer, "_get_file_writer"):
                continue  # tensorboardX: no summary protobufs to write to
            from tensorboard.compat.proto.summary_pb2 import Summary

            values = []
            for i, frames in enumerate(videos):
                image = Summary.Image(height=frames.shape[1], width=frames.shape[2], colorspace=3,
                                      encoded_image_string=gif_bytes(frames, fps))
                values.append(Summary.Value(tag=f"validation/{i}", image=image))
            writer._get_file_writer().add_summary(Summary(value=values), step)
            writer.add_text("validation/prompts", "\n".join(f"{i}. {q}" for i, q in enumerate(prompts)), step)
            writer.flush()
            sent.append("tensorboard")
    return sent


class ValidationCallback(TrainerCallback):
    """Renders the validation prompts every ``validation_steps`` steps and at the end of training."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.done: set[int] = set()

    def on_step_end(self, args, state, control, **kwargs):
        n = args.validation_steps
        if n and state.global_step % n == 0:
            self.run(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        self.run(state.global_step)

    def run(self, step: int) -> None:
        if step in self.done:
            return
        self.done.add(step)
        self.trainer.log_validation(step)


def log_validation(trainer, step: int) -> list[str]:
    """Render, write and log the validation videos of ``trainer`` at ``step`` (main process only)."""
    args = trainer.args
    if not trainer.is_world_process_zero():
        return []
    prompts = list(args.validation_prompt_list)
    videos = trainer.validation_videos(prompts)
    folder = os.path.join(args.output_dir, VALIDATION_DIR, f"step-{step:06d}")
    paths = write_videos(folder, videos, prompts, args.validation_fps, step)
    send_to_integrations(trainer.callback_handler.callbacks, videos, paths, prompts, step, args.validation_fps)
    return paths
