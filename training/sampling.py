"""Differentiable flow-matching sampling and VAE decoding for reward-gradient training (SPEC §5).

diffusers' pipelines run under ``torch.no_grad`` and keep scheduler state, so the reward trainer samples with its
own Euler loop over the scheduler's σ grid: ``x ← x + (σ_{i+1} − σ_i) · v_θ(x, σ_i·1000)``. Gradient recording is
switched on only from a cutoff step to the end (VADER's truncated backpropagation); the latents entering the
cutoff step are detached, so no gradient reaches earlier steps. Decoding replays the Wan VAE's causal decoder one
latent frame at a time with an explicit feature cache, which allows (a) decoding only the latent prefix that the
requested pixel frames need and (b) checkpointing each latent frame separately, so that backpropagating through
an 81-frame decode never holds the whole decoder's activations.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint

from vidalign import contract as C

BACKPROP_MODES = ("last", "rand", "specific", "all")


# ----------------------------------------------------------------------------------------------- schedule
def backprop_cutoff(mode: str, num_steps: int, step: int | None = None, rng: random.Random | None = None) -> int:
    """Index of the first denoising step that records gradients (0-based; steps ``cutoff..num_steps-1`` do).

    ``last``: only the final step (VADER's default); ``rand``: a uniformly drawn step; ``specific``: ``step``;
    ``all``: every step (PISA ORO).
    """
    if mode == "last":
        return num_steps - 1
    if mode == "all":
        return 0
    if mode == "rand":
        return (rng or random).randrange(num_steps)
    if mode == "specific":
        if step is None or not 0 <= step < num_steps:
            raise ValueError(f"backprop_step={step!r} must be in [0, {num_steps - 1}] for backprop_mode='specific'")
        return step
    raise ValueError(f"unknown backprop_mode {mode!r}; choose one of {', '.join(BACKPROP_MODES)}")


def flow_sigmas(scheduler, num_steps: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The ``num_steps + 1`` σ values (ending at 0) that ``scheduler`` walks for ``num_steps`` steps (float32)."""
    scheduler.set_timesteps(num_steps, device=device)
    return scheduler.sigmas.to(device=device, dtype=torch.float32)


# ----------------------------------------------------------------------------------------------- latents
def normalize_latents(z: torch.Tensor, vae) -> torch.Tensor:
    """Raw VAE latents → the transformer's space, with ``vae``'s constants (:func:`vidalign.contract.normalize_latents`)."""
    return C.normalize_latents(z, C.latent_norm(vae))


def denormalize_latents(x: torch.Tensor, vae) -> torch.Tensor:
    """Inverse of :func:`normalize_latents` (:func:`vidalign.contract.denormalize_latents`)."""
    return C.denormalize_latents(x, C.latent_norm(vae))


def num_latent_frames(num_frames: int, temporal_ratio: int = 4) -> int:
    """Latent frames of a causal video VAE for ``num_frames`` pixel frames (Wan: 4k+1 → k+1)."""
    return (num_frames - 1) // temporal_ratio + 1


def latent_index(frame: int, temporal_ratio: int = 4) -> int:
    """The latent frame whose decoding produces pixel ``frame`` (frame 0 alone, then groups of ``temporal_ratio``)."""
    return 0 if frame == 0 else (frame - 1) // temporal_ratio + 1


@torch.no_grad()
def encode_first_frame(vae, frames: torch.Tensor) -> torch.Tensor:
    """Normalised latent ``[B, C, 1, h, w]`` of the first frames ``[B, 3, H, W]`` in [−1, 1] (distribution mean).

    A causal VAE encodes frame 0 on its own, so this is exactly latent frame 0 of the full clip.
    """
    x = frames.to(device=vae.device, dtype=vae.dtype).unsqueeze(2)
    dist = vae.encode(x).latent_dist
    return normalize_latents(dist.mode().float(), vae)


# ----------------------------------------------------------------------------------------------- sampling
@dataclass
class SampleOutput:
    """Final normalised latents and what the loop did (for logging and the tests)."""

    latents: torch.Tensor
    cutoff: int
    velocities: list[torch.Tensor] | None = None


def _timesteps(t: torch.Tensor, x: torch.Tensor, patch_size: Sequence[int], clean_first: bool) -> torch.Tensor:
    """Per-sample timesteps ``[B]``, or per-token ``[B, seq]`` with 0 on the (clean) first latent frame."""
    b = x.shape[0]
    if not clean_first:
        return t.expand(b)
    pt, ph, pw = patch_size
    grid = t.new_full((b, x.shape[2] // pt, x.shape[3] // ph, x.shape[4] // pw), float(t))
    grid[:, 0] = 0.0
    return grid.flatten(1)


def sample_flow(
    transformer,
    sigmas: torch.Tensor,
    noise: torch.Tensor,
    prompt_embeds: torch.Tensor,
    *,
    cutoff: int,
    negative_embeds: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    first_latent: torch.Tensor | None = None,
    num_train_timesteps: int = 1000,
    keep_velocities: bool = False,
    patch_size: Sequence[int] | None = None,
    dtype: torch.dtype | None = None,
) -> SampleOutput:
    """Euler flow sampling from ``noise`` with gradients recorded from step ``cutoff`` to the end.

    ``first_latent`` ``[B, C, 1, h, w]`` (normalised) conditions on a first frame the way PISA's image-to-video
    does: that latent frame is held clean at every step and its tokens get timestep 0. Classifier-free guidance
    (``guidance_scale > 1`` with ``negative_embeds``) runs both branches in one batched forward.
    ``patch_size``/``dtype`` default to the transformer's (pass them when it is wrapped, e.g. by DDP).
    """
    outer_grad = torch.is_grad_enabled()
    n = len(sigmas) - 1
    base = getattr(transformer, "module", transformer)
    dtype = dtype or base.dtype
    patch = patch_size or base.config.patch_size
    cfg = guidance_scale > 1.0 and negative_embeds is not None
    text = torch.cat([prompt_embeds, negative_embeds]) if cfg else prompt_embeds
    text = text.to(dtype)
    x = noise.float()
    velocities: list[torch.Tensor] = []
    for i in range(n):
        record = outer_grad and i >= cutoff
        if i == cutoff:
            x = x.detach()
        with torch.set_grad_enabled(record):
            if first_latent is not None:
                x = torch.cat([first_latent.to(x.dtype), x[:, :, 1:]], dim=2)
            t = sigmas[i] * num_train_timesteps
            inp = torch.cat([x, x]) if cfg else x
            ts = _timesteps(t, inp, patch, first_latent is not None)
            v = transformer(hidden_states=inp.to(dtype), timestep=ts, encoder_hidden_states=text,
                            return_dict=False)[0].float()
            if cfg:
                v_cond, v_uncond = v.chunk(2)
                v = v_uncond + guidance_scale * (v_cond - v_uncond)
            if keep_velocities:
                velocities.append(v)
            x = x + (sigmas[i + 1] - sigmas[i]) * v
    if first_latent is not None:
        x = torch.cat([first_latent.to(x.dtype), x[:, :, 1:]], dim=2)
    return SampleOutput(latents=x, cutoff=cutoff, velocities=velocities if keep_velocities else None)


# ----------------------------------------------------------------------------------------------- decoding
def _decode_chunk(decoder, x: torch.Tensor, cache: list, first: bool):
    """One latent frame through the causal decoder; pure in (x, cache) so it can be checkpointed."""
    cache = list(cache)
    out = decoder(x, feat_cache=cache, feat_idx=[0], first_chunk=first)
    return out, cache


def _num_causal_convs(decoder) -> int:
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    return sum(isinstance(m, WanCausalConv3d) for m in decoder.modules())


def decode_latents(vae, z: torch.Tensor, checkpointing: bool = False) -> torch.Tensor:
    """Raw latents ``[B, C, T', h, w]`` → video ``[B, 3, T, H, W]`` in [−1, 1], as ``AutoencoderKLWan.decode``.

    With ``checkpointing`` each latent frame's decoder pass is recomputed in the backward pass instead of stored.
    """
    x = vae.post_quant_conv(z.to(vae.dtype))
    cache: list = [None] * _num_causal_convs(vae.decoder)
    outs = []
    use_ckpt = checkpointing and torch.is_grad_enabled()
    for i in range(x.shape[2]):
        fn = functools.partial(_decode_chunk, vae.decoder, first=i == 0)
        xi = x[:, :, i : i + 1]
        out, cache = checkpoint(fn, xi, cache, use_reentrant=False) if use_ckpt else fn(xi, cache)
        outs.append(out)
    video = torch.cat(outs, dim=2)
    patch = getattr(vae.config, "patch_size", None)
    if patch is not None:
        from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

        video = unpatchify(video, patch_size=patch)
    return video.clamp(-1.0, 1.0)


def decode_frames(vae, latents: torch.Tensor, frames: Sequence[int], checkpointing: bool = False,
                  temporal_ratio: int | None = None) -> torch.Tensor:
    """Pixel ``frames`` ``[B, F, 3, H, W]`` of normalised ``latents``, decoding only the latent prefix they need."""
    ratio = temporal_ratio or int(getattr(vae.config, "scale_factor_temporal", 4))
    need = max(latent_index(f, ratio) for f in frames) + 1
    video = decode_latents(vae, denormalize_latents(latents[:, :, :need], vae), checkpointing)
    index = torch.as_tensor(list(frames), device=video.device)
    return video.index_select(2, index).permute(0, 2, 1, 3, 4)
