"""Diffusion training objectives as pure functions (SPEC §1, §2, §3).

Everything here is a function of tensors, with no model, optimizer or config in sight, so that each formula can
be checked against a hand computation. Conventions:

* **Flow matching** (Wan, PISA PSFT): ``x_t = (1 − σ) x_0 + σ ε`` and the network regresses the velocity
  ``ε − x_0``; σ ∈ (0, 1] is the flow time, and the model is fed ``σ · num_train_timesteps`` (Wan's convention).
* **ε-prediction** (DDPM-style UNets, VideoDPO): ``x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε`` with integer t, target ε
  (or ``v = √ᾱ_t ε − √(1 − ᾱ_t) x_0`` for v-prediction).
* **Diffusion-DPO**: with per-sample errors ``e = mean((pred − target)²)`` of the policy and ``e_ref`` of the
  reference, the implicit reward of a sample is ``s = e_ref − e`` (the policy denoises it better than the
  reference). The DPO logit is ``h = logit_scale · (s_w − s_l)``; SpatialAlign uses ``logit_scale = 1`` and clips
  ``β h`` to [−5, 5]; VideoDPO / Diffusion-DPO use ``logit_scale = ½``, which is exactly
  ``−½ β [(e_w − e_l) − (e_ref,w − e_ref,l)]``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

TIMESTEP_SAMPLERS = ("uniform", "logit_normal", "shifted")
DPO_LOSS_TYPES = ("sigmoid", "ipo", "hinge")
ERROR_REDUCTIONS = ("sample", "column")


# ----------------------------------------------------------------------------------------------- schedules
def _expand(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sample scalars [B] broadcast against a [B, ...] tensor."""
    v = torch.as_tensor(v, dtype=like.dtype, device=like.device)
    return v.reshape(v.shape + (1,) * (like.ndim - v.ndim))


def shift_sigma(sigma: torch.Tensor | float, shift: float) -> torch.Tensor | float:
    """Wan / SD3 time shift ``shift·σ / (1 + (shift − 1)·σ)``: pushes σ toward 1 (noisier) for shift > 1."""
    return shift * sigma / (1 + (shift - 1) * sigma)


def shifted_sigmas(num_steps: int = 1000, shift: float = 5.0) -> torch.Tensor:
    """The σ grid of diffusers' ``FlowMatchEulerDiscreteScheduler(num_train_timesteps=num_steps, shift=shift)``.

    Descending from 1 to ``shift_sigma(1/num_steps)``; Wan trains and samples on this grid with shift 5 (480p).
    """
    base = torch.linspace(1.0, 1.0 / num_steps, num_steps, dtype=torch.float64)
    return shift_sigma(base, shift).to(torch.float32)


def sample_timesteps(
    kind: str,
    n: int,
    generator: torch.Generator | None = None,
    *,
    shift: float = 5.0,
    num_train_timesteps: int = 1000,
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Draw ``n`` flow times σ ∈ (0, 1] (float32).

    ``uniform``: σ ~ U(0, 1); ``logit_normal``: σ = sigmoid(N(logit_mean, logit_std)) (SD3, PISA PSFT);
    ``shifted``: a uniformly chosen point of Wan's shifted training grid :func:`shifted_sigmas` (SpatialAlign).
    """
    if kind == "uniform":
        return torch.rand(n, generator=generator, device=device)
    if kind == "logit_normal":
        u = torch.randn(n, generator=generator, device=device) * logit_std + logit_mean
        return torch.sigmoid(u)
    if kind == "shifted":
        idx = torch.randint(0, num_train_timesteps, (n,), generator=generator, device=device)
        return shifted_sigmas(num_train_timesteps, shift).to(device)[idx]
    raise ValueError(f"unknown timestep sampler {kind!r}; choose one of {', '.join(TIMESTEP_SAMPLERS)}")


def sigma_to_model_timestep(sigma: torch.Tensor, num_train_timesteps: int = 1000) -> torch.Tensor:
    """The ``timestep`` a diffusers flow transformer expects for flow time σ (Wan: ``σ · 1000``)."""
    return sigma * num_train_timesteps


def sample_discrete_timesteps(
    n: int, num_train_timesteps: int = 1000, generator: torch.Generator | None = None, device="cpu"
) -> torch.Tensor:
    """Integer DDPM timesteps, uniform on ``[0, num_train_timesteps)`` (ε-prediction training)."""
    return torch.randint(0, num_train_timesteps, (n,), generator=generator, device=device)


def ddpm_alphas_cumprod(
    num_train_timesteps: int = 1000,
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
    schedule: str = "scaled_linear",
) -> torch.Tensor:
    """ᾱ_t of a DDPM β schedule (``linear`` or Stable-Diffusion/VideoCrafter's ``scaled_linear``), float64."""
    if schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
    elif schedule == "scaled_linear":
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2
    else:
        raise ValueError(f"unknown beta schedule {schedule!r}; choose linear or scaled_linear")
    return torch.cumprod(1.0 - betas, dim=0)


# ----------------------------------------------------------------------------------------------- noising
def add_noise_flow(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Rectified-flow interpolation ``x_t = (1 − σ) x_0 + σ ε`` with per-sample σ [B]."""
    s = _expand(sigma, x0)
    return (1 - s) * x0 + s * noise


def flow_matching_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Velocity target ``ε − x_0`` (d x_t / dσ), what Wan's transformer predicts."""
    return noise - x0


def videocrafter_scale_arr(num_train_timesteps: int = 1000, scale_a: float = 1.0, scale_b: float = 0.7,
                           mid_step: int = 400, fix_scale_bug: bool = False) -> torch.Tensor:
    """VideoCrafter2's ``scale_arr`` (``lvdm/models/ddpm3d.py``, ``use_scale``): ``linspace(scale_a, scale_b,
    mid_step)`` then ``scale_b``, float32. Their default (``fix_scale_bug: False``) appends ``num_train_timesteps``
    entries, so the array is longer than the schedule; only ``[0, num_train_timesteps)`` is ever indexed."""
    tail = num_train_timesteps - mid_step if fix_scale_bug else num_train_timesteps
    ramp = torch.linspace(scale_a, scale_b, mid_step, dtype=torch.float64)
    return torch.cat([ramp, torch.full((tail,), scale_b, dtype=torch.float64)]).float()


def add_noise_ddpm(x0: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor, t: torch.Tensor,
                   scale_arr: torch.Tensor | None = None):
    """DDPM forward process ``√ᾱ_t x_0 + √(1 − ᾱ_t) ε`` for integer timesteps t [B]; with ``scale_arr``
    (VideoCrafter2's ``use_scale``) x_0 is multiplied by ``scale_arr[t]`` first, as their ``q_sample`` does."""
    ab = alphas_cumprod.to(x0.device)[t.long()]
    if scale_arr is not None:
        x0 = _expand(scale_arr.to(x0.device, torch.float64)[t.long()], x0) * x0
    return _expand(ab.sqrt(), x0) * x0 + _expand((1 - ab).sqrt(), x0) * noise


def eps_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """ε-prediction target: the noise itself (``x0`` is accepted so all targets share one signature)."""
    del x0
    return noise


def v_target(x0: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor, t: torch.Tensor):
    """v-prediction target ``√ᾱ_t ε − √(1 − ᾱ_t) x_0``."""
    ab = alphas_cumprod.to(x0.device)[t.long()]
    return _expand(ab.sqrt(), x0) * noise - _expand((1 - ab).sqrt(), x0) * x0


# ----------------------------------------------------------------------------------------------- errors
def per_sample_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error per sample [B], in float32, over every non-batch element (or those where ``mask``).

    ``mask`` broadcasts against ``pred`` (e.g. [1, 1, T, 1, 1] that drops a clean conditioning frame).
    """
    sq = (pred.float() - target.float()) ** 2
    if mask is None:
        return sq.flatten(1).mean(1)
    m = torch.broadcast_to(mask.to(sq.dtype), sq.shape)
    return (sq * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)


def per_column_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error per latent column ``[B, W]`` of 5-D latents ``[B, C, T, H, W]``: the mean over channel,
    time and height only, as VideoDPO's released loss (``lvdm/models/ddpm3d.py``: ``.mean(dim=[1, 2, 3])``).

    ``mask`` broadcasts against ``pred`` (e.g. ``[1, 1, T, 1, 1]``) and weights the mean as in
    :func:`per_sample_mse`.
    """
    if pred.ndim < 3:
        raise ValueError(f"per-column errors need [B, ..., W] latents, got shape {tuple(pred.shape)}")
    sq = (pred.float() - target.float()) ** 2
    dims = tuple(range(1, sq.ndim - 1))
    if mask is None:
        return sq.mean(dim=dims)
    m = torch.broadcast_to(mask.to(sq.dtype), sq.shape)
    return (sq * m).sum(dim=dims) / m.sum(dim=dims).clamp_min(1)


def denoising_errors(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                     reduction: str = "sample") -> torch.Tensor:
    """Errors for Diffusion-DPO: ``sample`` → ``[B]`` (:func:`per_sample_mse`), ``column`` → ``[B, W]``
    (:func:`per_column_mse`)."""
    if reduction == "sample":
        return per_sample_mse(pred, target, mask)
    if reduction == "column":
        return per_column_mse(pred, target, mask)
    raise ValueError(f"unknown error reduction {reduction!r}; choose one of {', '.join(ERROR_REDUCTIONS)}")


def zeroth_order_reg(
    policy_w: torch.Tensor, ref_w: torch.Tensor, policy_l: torch.Tensor, ref_l: torch.Tensor
) -> torch.Tensor:
    """SpatialAlign's regulariser ``½ [mean((v_θ(x^w) − v_ref(x^w))²) + mean((v_θ(x^l) − v_ref(x^l))²)]``.

    It pulls the policy's *outputs* toward the reference's at the same inputs (not a KL term); ``ref_*`` should
    be computed without gradient.
    """
    d_w = (policy_w.float() - ref_w.float()) ** 2
    d_l = (policy_l.float() - ref_l.float()) ** 2
    return 0.5 * (d_w.mean() + d_l.mean())


# ----------------------------------------------------------------------------------------------- DPO
class DPOLossOutput(NamedTuple):
    loss: torch.Tensor  # scalar, weighted mean of ``losses``
    losses: torch.Tensor  # [B] per pair, after weighting
    chosen_rewards: torch.Tensor  # [B] β·logit_scale·(e_ref,w − e_w), detached (TRL's rewards/chosen)
    rejected_rewards: torch.Tensor  # [B] β·logit_scale·(e_ref,l − e_l), detached
    logits: torch.Tensor  # [B] h = logit_scale·(s_w − s_l), before β and clipping


def sigmoid_loss(h: torch.Tensor, beta: float, clip: float | None = None) -> torch.Tensor:
    """``−log σ(β h)`` with ``β h`` clipped to [−clip, clip] when ``clip`` is set (SpatialAlign: 5)."""
    z = beta * h
    if clip is not None:
        z = z.clamp(-clip, clip)
    return -F.logsigmoid(z)


def ipo_loss(h: torch.Tensor, beta: float) -> torch.Tensor:
    """IPO (Azar et al.; TRL's ``ipo``): ``(h − 1/(2β))²``, a squared loss with the margin target ``1/(2β)``."""
    return (h - 1.0 / (2.0 * beta)) ** 2


def hinge_loss(h: torch.Tensor, beta: float) -> torch.Tensor:
    """SLiC hinge (TRL's ``hinge``): ``max(0, 1 − β h)``."""
    return torch.relu(1.0 - beta * h)


def diffusion_dpo_loss(
    err_w: torch.Tensor,
    err_l: torch.Tensor,
    ref_err_w: torch.Tensor,
    ref_err_l: torch.Tensor,
    beta: float,
    *,
    loss_type: str = "sigmoid",
    logit_scale: float = 1.0,
    clip: float | None = None,
    weights: torch.Tensor | None = None,
) -> DPOLossOutput:
    """Diffusion-DPO on denoising errors of winner (w) and loser (l): per sample ``[B]``, or per latent column
    ``[B, W]`` (VideoDPO's released code), where the DPO term is taken per column and then averaged over the
    columns, exactly ``mean(−w · logsigmoid(inside_term))`` over ``[B, W]`` in ``ddpm3d.py``.

    SpatialAlign: ``loss_type="sigmoid", logit_scale=1, clip=5, β=1``; VideoDPO: ``logit_scale=0.5, β=5000``
    with per-pair ``weights`` [B]. ``clip`` only affects the sigmoid loss. ``losses``, rewards and logits are
    per pair ``[B]`` (column values averaged).
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    s_w = ref_err_w.float() - err_w.float()
    s_l = ref_err_l.float() - err_l.float()
    h = logit_scale * (s_w - s_l)
    if loss_type == "sigmoid":
        losses = sigmoid_loss(h, beta, clip)
    elif loss_type == "ipo":
        losses = ipo_loss(h, beta)
    elif loss_type == "hinge":
        losses = hinge_loss(h, beta)
    else:
        raise ValueError(f"unknown DPO loss_type {loss_type!r}; choose one of {', '.join(DPO_LOSS_TYPES)}")
    if weights is not None:
        w = weights.to(losses)
        losses = losses * w.reshape(w.shape + (1,) * (losses.ndim - w.ndim))
    if losses.ndim > 1:  # per column: the term of each column, averaged per pair
        losses, s_w, s_l, h = (x.flatten(1).mean(1) for x in (losses, s_w, s_l, h))
    scale = beta * logit_scale
    return DPOLossOutput(
        loss=losses.mean(),
        losses=losses,
        chosen_rewards=(scale * s_w).detach(),
        rejected_rewards=(scale * s_l).detach(),
        logits=h.detach(),
    )


def videodpo_loss(
    err_w: torch.Tensor,
    err_l: torch.Tensor,
    ref_err_w: torch.Tensor,
    ref_err_l: torch.Tensor,
    beta: float = 5000.0,
    weights: torch.Tensor | None = None,
) -> DPOLossOutput:
    """VideoDPO (SPEC §2): ``mean(−w · log σ(−½ β [(e_w − e_l) − (e_ref,w − e_ref,l)]))``."""
    return diffusion_dpo_loss(err_w, err_l, ref_err_w, ref_err_l, beta, logit_scale=0.5, weights=weights)


def spatialalign_loss(
    err_w: torch.Tensor,
    err_l: torch.Tensor,
    ref_err_w: torch.Tensor,
    ref_err_l: torch.Tensor,
    reg: torch.Tensor,
    beta: float = 1.0,
    reg_weight: float = 0.5,
    clip: float = 5.0,
) -> tuple[torch.Tensor, DPOLossOutput]:
    """SpatialAlign (SPEC §1): ``−log σ(clip(β(s_w − s_l), ±5)) + λ L_reg``; returns (total, DPO parts)."""
    out = diffusion_dpo_loss(err_w, err_l, ref_err_w, ref_err_l, beta, clip=clip)
    return out.loss + reg_weight * reg, out


# ----------------------------------------------------------------------------------------------- VideoDPO weights
def videodpo_pair_weights(
    scores_w,
    scores_l,
    *,
    alpha: float = 1.0,
    mode: str = "paper",
    all_scores=None,
    bin_width: float = 0.01,
    beta: float | None = None,
    code_beta: float = 0.72,
) -> np.ndarray:
    """VideoDPO per-pair weights (SPEC §2), float64 [P].

    ``paper``: ``w = (β / √(p(s_W)·p(s_L)))^α`` where p is the relative frequency of a score's bin (width
    ``bin_width``) in the histogram of ``all_scores`` (default: every winner and loser score) and β defaults to the
    probability of the most frequent bin. ``code`` (the released code): ``w = (code_beta / (s_W·s_L))^α``.
    α = 0 gives 1 everywhere (plain DPO).
    """
    sw = np.asarray(scores_w, dtype=np.float64)
    sl = np.asarray(scores_l, dtype=np.float64)
    if mode == "code":
        return (code_beta / (sw * sl)) ** alpha
    if mode != "paper":
        raise ValueError(f"unknown weighting mode {mode!r}; choose paper or code")
    pool = np.concatenate([sw, sl]) if all_scores is None else np.asarray(all_scores, dtype=np.float64)
    bins = np.floor(pool / bin_width + 1e-9).astype(np.int64)
    uniq, counts = np.unique(bins, return_counts=True)
    freq = dict(zip(uniq.tolist(), (counts / counts.sum()).tolist()))

    def p(s: np.ndarray) -> np.ndarray:
        b = np.floor(s / bin_width + 1e-9).astype(np.int64)
        return np.array([freq.get(int(k), 0.0) for k in b.ravel()], dtype=np.float64).reshape(b.shape)

    top = float(counts.max() / counts.sum()) if beta is None else float(beta)
    prob = np.sqrt(p(sw) * p(sl))
    with np.errstate(divide="ignore"):
        return np.where(prob > 0, (top / np.where(prob > 0, prob, 1.0)) ** alpha, math.inf if alpha > 0 else 1.0)
