"""Differentiable optical flow for PISA's flow reward (SPEC §5: ``mean |F(x̂) − F(x)|``).

A flow model is any callable ``(frames_a, frames_b) -> flow``: frames ``[B, 3, H, W]`` in [−1, 1], flow
``[B, 2, H, W]`` in pixels (channel 0: x displacement, channel 1: y) taking ``frames_a`` to ``frames_b``; gradients
must reach both inputs. Two ship here, picked by name:

* ``horn_schunck``: a coarse-to-fine Horn–Schunck estimator written in torch ops (no weights, so it runs
  anywhere and in tests); smooth, differentiable, and good enough to compare generated with ground-truth motion.
* ``raft_large`` / ``raft_small``: RAFT, the model PISA used, with ``iterations`` refinement steps (PISA's
  ``oro_flow.py``: 20). Weights: torchvision's released ones, a local torchvision state dict, or princeton-vl's own
  checkpoint (``raft-things.pth``, as PISA ships it under ``models/``), whose names are mapped onto torchvision's
  port (:func:`princeton_to_torchvision`); needs the ``flow`` extra (torchvision). With ``code`` (a folder holding
  princeton-vl RAFT's ``core/raft.py``, e.g. PISA's ``RAFT/core`` submodule) their network itself runs instead,
  called as ``oro_flow.py`` calls it: ``model(a, b, iters=20, test_mode=True)`` on [0, 255] frames.

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
    """Decorator adding a flow-model factory ``factory(weights: str | None, device, **options) -> FlowModel``."""

    def deco(factory):
        _FLOW_MODELS[name] = factory
        return factory

    return deco


def flow_model_names() -> list[str]:
    return sorted(_FLOW_MODELS)


def build_flow_model(name: str, weights: str | None = None, device: torch.device | str = "cpu",
                     iterations: int = 20, code: str | None = None) -> FlowModel:
    """The flow model registered as ``name`` (``weights``: a local state-dict path where the model takes one;
    ``iterations`` and ``code`` for RAFT, see the module docstring)."""
    if name not in _FLOW_MODELS:
        raise ConfigError(f"flow model {name!r} is unknown; choose one of {', '.join(flow_model_names())}")
    return _FLOW_MODELS[name](weights=weights, device=device, iterations=iterations, code=code)


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
def _horn_schunck(weights: str | None = None, device="cpu", iterations: int = 20, code: str | None = None
                  ) -> FlowModel:
    if weights is not None or code is not None:
        raise ConfigError(f"flow model 'horn_schunck' takes no weights or code (got {weights or code!r}); remove "
                          "the option")
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


class _PrincetonRaft:
    """princeton-vl RAFT as a :data:`FlowModel`: frames in [−1, 1] become the [0, 255] images their network
    takes, and the upsampled flow of ``iters`` iterations is returned (``flow_up`` of ``test_mode=True``)."""

    def __init__(self, model, iterations: int):
        self.model, self.iterations = model, iterations

    def __call__(self, frames_a: torch.Tensor, frames_b: torch.Tensor) -> torch.Tensor:
        a = (frames_a.float() + 1) * 127.5
        b = (frames_b.float() + 1) * 127.5
        _, flow_up = self.model(a, b, iters=self.iterations, test_mode=True)
        return flow_up.float()


# princeton-vl RAFT (core/raft.py, extractor.py, update.py) → torchvision's port (models/optical_flow/raft.py)
_PRINCETON_RULES = (
    (r"^fnet\.", "feature_encoder."), (r"^cnet\.", "context_encoder."),
    (r"^(feature_encoder|context_encoder)\.conv1\.", r"\1.convnormrelu.0."),
    (r"^(feature_encoder|context_encoder)\.norm1\.", r"\1.convnormrelu.1."),
    (r"^(feature_encoder|context_encoder)\.conv2\.", r"\1.conv."),
    (r"(\.layer\d\.\d)\.conv1\.", r"\1.convnormrelu1.0."), (r"(\.layer\d\.\d)\.norm1\.", r"\1.convnormrelu1.1."),
    (r"(\.layer\d\.\d)\.conv2\.", r"\1.convnormrelu2.0."), (r"(\.layer\d\.\d)\.norm2\.", r"\1.convnormrelu2.1."),
    (r"^update_block\.encoder\.convc(\d)\.", r"update_block.motion_encoder.convcorr\1.0."),
    (r"^update_block\.encoder\.convf(\d)\.", r"update_block.motion_encoder.convflow\1.0."),
    (r"^update_block\.encoder\.conv\.", "update_block.motion_encoder.conv.0."),
    (r"^update_block\.gru\.conv([zrq])(\d)\.", r"update_block.recurrent_block.convgru\2.conv\1."),
    (r"^update_block\.mask\.0\.", "mask_predictor.convrelu.0."),
    (r"^update_block\.mask\.2\.", "mask_predictor.conv."),
)


def is_princeton_raft(state_dict: dict) -> bool:
    """Whether a state dict is princeton-vl's (``raft-things.pth``: ``module.fnet...``), not torchvision's."""
    return any(k.split("module.", 1)[-1].startswith(("fnet.", "cnet.", "update_block.gru.")) for k in state_dict)


def princeton_to_torchvision(state_dict: dict) -> dict:
    """princeton-vl RAFT-large weights (``raft-things.pth``, saved from ``nn.DataParallel``) renamed to torchvision's
    ``raft_large``. A residual block's ``norm3`` is the same module as its ``downsample.1``, so it is dropped."""
    import re

    out = {}
    for key, value in state_dict.items():
        k = key[len("module."):] if key.startswith("module.") else key
        if re.search(r"\.layer\d\.\d\.norm3\.", k):
            continue
        for pattern, repl in _PRINCETON_RULES:
            k = re.sub(pattern, repl, k)
        out[k] = value
    return out


def _load_princeton_code(code: str):
    """``RAFT`` from princeton-vl's ``core/`` folder, imported as their scripts import it (bare module names), with
    ``sys.modules`` left as it was afterwards."""
    import importlib
    import sys
    from pathlib import Path

    folder = Path(code).expanduser()
    if (folder / "core" / "raft.py").is_file():
        folder = folder / "core"
    if not (folder / "raft.py").is_file():
        raise ConfigError(f"rewards.flow.code={code!r}: no raft.py there; point at princeton-vl RAFT's core/ folder "
                          "(PISA's RAFT/core)")
    names = ("raft", "update", "extractor", "corr", "utils", "utils.utils")
    saved = {n: sys.modules.pop(n) for n in names if n in sys.modules}
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module("raft").RAFT
    finally:
        sys.path.remove(str(folder))
        for n in names:
            sys.modules.pop(n, None)
        sys.modules.update(saved)


def _raft(kind: str, weights: str | None, device, iterations: int = 20, code: str | None = None) -> FlowModel:
    from vidalign.training.rewards import load_state_dict

    if code is not None:
        import argparse

        if weights is None:
            raise ConfigError("rewards.flow.code needs weights: the princeton-vl checkpoint (raft-things.pth)")
        net = _load_princeton_code(code)(argparse.Namespace(small=kind == "raft_small", mixed_precision=False,
                                                            alternate_corr=False, dropout=0))
        sd = load_state_dict(weights)
        net.load_state_dict({k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()})
        return _PrincetonRaft(net.to(device).eval().requires_grad_(False), iterations)
    try:
        from torchvision.models import optical_flow
    except ImportError as exc:
        raise missing_extra("flow", "torchvision") from exc
    factory = getattr(optical_flow, kind)
    if weights is None:
        model = factory(weights="DEFAULT", progress=False)
    else:
        model = factory(weights=None)
        sd = load_state_dict(weights)
        if is_princeton_raft(sd):
            if kind != "raft_large":
                raise ConfigError(f"rewards.flow.weights={weights!r} are princeton-vl RAFT weights; only RAFT-large "
                                  "(raft-things.pth) maps onto torchvision: use model: raft_large, or code: to run "
                                  "their network")
            sd = princeton_to_torchvision(sd)
        model.load_state_dict(sd)
    model = model.to(device).eval().requires_grad_(False)
    return _Raft(model, updates=iterations)


@register_flow_model("raft_large")
def _raft_large(weights: str | None = None, device="cpu", iterations: int = 20, code: str | None = None) -> FlowModel:
    return _raft("raft_large", weights, device, iterations, code)


@register_flow_model("raft_small")
def _raft_small(weights: str | None = None, device="cpu", iterations: int = 20, code: str | None = None) -> FlowModel:
    return _raft("raft_small", weights, device, iterations, code)
