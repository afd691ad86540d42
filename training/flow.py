"""Differentiable optical flow for PISA's flow reward (SPEC §5: ``mean |F(x̂) − F(x)|``).

A flow model is any callable ``(frames_a, frames_b) -> flow``: frames ``[B, 3, H, W]`` in [−1, 1], flow
``[B, 2, H, W]`` in pixels (channel 0: x displacement, channel 1: y) taking ``frames_a`` to ``frames_b``; gradients
must reach both inputs. Two ship here, picked by name:

* ``horn_schunck``: a coarse-to-fine Horn–Schunck estimator written in torch ops (no weights, so it runs
  anywhere and in tests); smooth, differentiable, and good enough to compare generated with ground-truth motion.
* ``raft_large`` / ``raft_small``: torchvision's RAFT (the model PISA used), with torchvision's released weights
  or a local state dict; needs the optional ``torchvision`` package.

Others can be added with :func:`register_flow_model`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vidalign.errors import ConfigError, missing_extra, require

FlowModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_FLOW_MODELS: dict[str, Callable[..., FlowModel]] = {}


def register_flow_model(name: str):
    """Decorator adding a flow-model factory ``factory(weights: str | None, device) -> FlowModel``."""

    def deco(factory):
        _FLOW_MODELS[name] = factory
        return factory

    return deco


def flow_model_names() -> list[str]:
    return sorted(_FLOW_MODELS)


def build_flow_model(name: str, weights: str | None = None, device: torch.device | str = "cpu") -> FlowModel:
    """The flow model registered as ``name`` (``weights``: a local state-dict path where the model takes one)."""
    if name not in _FLOW_MODELS:
        raise ConfigError(f"flow model {name!r} is unknown; choose one of {', '.join(flow_model_names())}")
    return _FLOW_MODELS[name](weights=weights, device=device)


# ----------------------------------------------------------------------------------------------- Horn–Schunck
def _gray(x: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [−1, 1] → luma [B, 1, H, W] in [0, 1]."""
    x = (x.float() + 1) * 0.5
    w = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _blur(x: torch.Tensor) -> torch.Tensor:
    k = x.new_tensor([1.0, 2.0, 1.0]) / 4
    x = F.conv2d(F.pad(x, (1, 1, 0, 0), mode="replicate"), k.view(1, 1, 1, 3))
    return F.conv2d(F.pad(x, (0, 0, 1, 1), mode="replicate"), k.view(1, 1, 3, 1))


def _grad_xy(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences with replicated borders."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) * 0.5
    gy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) * 0.5
    return gx, gy


_AVG = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]])


def _neigh_avg(u: torch.Tensor) -> torch.Tensor:
    return F.conv2d(F.pad(u, (1, 1, 1, 1), mode="replicate"), _AVG.to(u).view(1, 1, 3, 3))


def warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``x`` at ``p + flow(p)`` (bilinear, border-clamped): ``warp(b, flow_ab) ≈ a``."""
    _, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=x.dtype),
                            torch.arange(w, device=x.device, dtype=x.dtype), indexing="ij")
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


@dataclass(frozen=True)
class HornSchunck:
    """Coarse-to-fine Horn–Schunck flow; every operation is differentiable.

    ``alpha`` weighs smoothness against brightness constancy (intensities in [0, 1]); ``levels`` pyramid levels
    (each halves the size) handle motions of a few pixels; ``iterations`` Jacobi updates per level.
    """

    alpha: float = 0.05
    iterations: int = 30
    levels: int = 3

    def __post_init__(self):
        require(self.alpha > 0, "HornSchunck", "alpha", self.alpha, "use a positive smoothness weight")
        require(self.iterations >= 1, "HornSchunck", "iterations", self.iterations, "use at least 1 iteration")
        require(self.levels >= 1, "HornSchunck", "levels", self.levels, "use at least 1 pyramid level")

    def _refine(self, a: torch.Tensor, b: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        bw = warp(b, flow)
        ax, ay = _grad_xy(a)
        bx, by = _grad_xy(bw)
        ix, iy, it = (ax + bx) * 0.5, (ay + by) * 0.5, bw - a
        denom = self.alpha**2 + ix * ix + iy * iy
        du = torch.zeros_like(a)
        dv = torch.zeros_like(a)
        for _ in range(self.iterations):
            ua, va = _neigh_avg(du), _neigh_avg(dv)
            p = (ix * ua + iy * va + it) / denom
            du, dv = ua - ix * p, va - iy * p
        return flow + torch.cat([du, dv], dim=1)

    def __call__(self, frames_a: torch.Tensor, frames_b: torch.Tensor) -> torch.Tensor:
        a, b = _blur(_gray(frames_a)), _blur(_gray(frames_b))
        pyramid = [(a, b)]
        for _ in range(self.levels - 1):
            if min(pyramid[-1][0].shape[-2:]) < 8:
                break
            pa, pb = pyramid[-1]
            pyramid.append((F.avg_pool2d(pa, 2), F.avg_pool2d(pb, 2)))
        flow = None
        for pa, pb in reversed(pyramid):
            if flow is None:
                flow = pa.new_zeros(pa.shape[0], 2, *pa.shape[-2:])
            else:
                sy, sx = pa.shape[-2] / flow.shape[-2], pa.shape[-1] / flow.shape[-1]
                flow = F.interpolate(flow, size=pa.shape[-2:], mode="bilinear", align_corners=False)
                flow = flow * flow.new_tensor([sx, sy]).view(1, 2, 1, 1)
            flow = self._refine(pa, pb, flow)
        return flow


@register_flow_model("horn_schunck")
def _horn_schunck(weights: str | None = None, device="cpu") -> FlowModel:
    if weights is not None:
        raise ConfigError(f"flow model 'horn_schunck' takes no weights (got {weights!r}); remove the weights option")
    return HornSchunck()


# ----------------------------------------------------------------------------------------------- RAFT
class _Raft:
    """torchvision RAFT as a :data:`FlowModel` (frozen, eval mode, last refinement of ``updates`` iterations)."""

    def __init__(self, model, updates: int):
        self.model, self.updates = model, updates

    def __call__(self, frames_a: torch.Tensor, frames_b: torch.Tensor) -> torch.Tensor:
        dtype = next(self.model.parameters()).dtype
        flows = self.model(frames_a.to(dtype), frames_b.to(dtype), num_flow_updates=self.updates)
        return flows[-1].float()


def _raft(kind: str, weights: str | None, device) -> FlowModel:
    try:
        from torchvision.models import optical_flow
    except ImportError as exc:
        raise missing_extra("flow", "torchvision") from exc
    factory = getattr(optical_flow, kind)
    if weights is None:
        model = factory(weights="DEFAULT", progress=False)
    else:
        from vidalign.training.rewards import load_state_dict

        model = factory(weights=None)
        model.load_state_dict(load_state_dict(weights))
    model = model.to(device).eval().requires_grad_(False)
    return _Raft(model, updates=12)


@register_flow_model("raft_large")
def _raft_large(weights: str | None = None, device="cpu") -> FlowModel:
    return _raft("raft_large", weights, device)


@register_flow_model("raft_small")
def _raft_small(weights: str | None = None, device="cpu") -> FlowModel:
    return _raft("raft_small", weights, device)
