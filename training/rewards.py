"""Differentiable rewards on decoded frames for reward-gradient training (SPEC §5).

Every reward is a frozen ``torch.nn.Module`` called as ``reward(frames, inputs) -> RewardOutput``: ``frames`` is
``[B, F, 3, H, W]`` in [−1, 1] (the decoded frames, in the order of ``inputs.frame_indices``) and the output holds a
per-sample ``loss`` [B] to minimise plus a per-sample ``score`` [B] for logging. Gradients reach the frames, never
the reward model. Rewards are picked by name from a registry; each has one frozen options dataclass, and every
model loads with ``from_pretrained(hub_id_or_local_path)``.

VADER rewards (per frame, averaged over the decoded frames):
  ``aesthetic``  a head (linear, or LAION's stacked linears) on L2-normalised CLIP image features; loss −score,
                 or |score − target| when a target is set (VADER's aesthetic_target).
  ``clip_score`` CLIP text–image cosine similarity; loss 1 − cos (VADER's HPS-style loss).
  ``preference`` HPS/PickScore-style scorer: a CLIP model (e.g. a PickScore checkpoint) plus optional head
                 weights applied to the image features; score = scale · cos, loss −score.
PISA ORO rewards (compare with the ground-truth simulation; need ``inputs.gt_*``), as the authors' scripts
(``scripts/oro_seg.py``, ``oro_depth.py``, ``oro_flow.py``) compute them:
  ``segmentation`` SAM 2 (``Sam2VideoModel``) seeded with the GT frame-0 masks tracks the objects through the
                 generated frames; loss 1 − IoU with IoU = Σpg / (Σp + Σg − Σpg + eps) of sigmoid(mask logits)
                 and the GT masks, frame 0 included, a frame where both are empty counting 0.
  ``depth``      Depth Anything V2 on generated and GT frames resized to 518×518 (bicubic), upsampled to the frame,
                 per-frame min-max normalised to [0, 255], MSE (GT side detached).
  ``flow``       flow between consecutive frames (:mod:`vidalign.training.flow`; RAFT with the ``raft-things``
                 weights and 20 iterations as theirs), L1 between generated and GT.
Generated and ground-truth frames always go through the same preprocessing.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from vidalign.errors import ConfigError, VidalignError, require

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# ----------------------------------------------------------------------------------------------- inputs/outputs
@dataclass
class RewardInputs:
    """What a reward may look at besides the frames; GT members are aligned with ``frame_indices``.

    ``gt_frames`` [B, F, 3, H, W] in [−1, 1]; ``gt_masks`` one bool tensor [F, N_b, H, W] per sample (object counts
    differ); ``gt_depth`` [B, F, H, W] simulation depth (metres).
    """

    prompts: list[str]
    frame_indices: list[int]
    gt_frames: torch.Tensor | None = None
    gt_masks: list[torch.Tensor] | None = None
    gt_depth: torch.Tensor | None = None


class RewardOutput(NamedTuple):
    loss: torch.Tensor  # [B], minimised
    score: torch.Tensor  # [B], logged (higher is better for VADER rewards; the raw metric for PISA's)


class Reward(nn.Module):
    """Base class: frozen, eval-mode reward models. Subclasses set the class flags and implement ``forward``."""

    needs_gt: bool = False  # needs ground-truth clips (PISA)
    min_frames: int = 1  # decoded frames it needs
    needs_first_frame: bool = False  # frame 0 must be among the decoded frames
    gt_fields: tuple[str, ...] = ()  # RewardInputs fields beyond gt_frames it reads ("masks", "depth")

    def freeze(self) -> Reward:
        self.eval()
        self.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> Reward:  # reward models never leave eval mode (dropout, SAM's branches)
        return super().train(False)


# ----------------------------------------------------------------------------------------------- image helpers
def to_unit(frames: torch.Tensor) -> torch.Tensor:
    """[−1, 1] → [0, 1], clamped (as the reward models' processors expect)."""
    return ((frames + 1) * 0.5).clamp(0, 1)


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    m = x.new_tensor(mean).view(1, -1, 1, 1)
    s = x.new_tensor(std).view(1, -1, 1, 1)
    return (x - m) / s


def resize_center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the short side to ``size`` (bilinear, antialiased) and crop the centre square; differentiable."""
    h, w = x.shape[-2:]
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[..., top : top + size, left : left + size]


def multiple_of(h: int, w: int, short: int, multiple: int) -> tuple[int, int]:
    """(h', w') keeping the aspect ratio with the short side ≈ ``short`` and both multiples of ``multiple``."""
    s = short / min(h, w)
    return (max(multiple, round(h * s / multiple) * multiple), max(multiple, round(w * s / multiple) * multiple))


def soft_iou(probs: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Soft IoU over the last two dims as ``oro_seg.py``'s ``get_iou``: Σpg / (Σp + Σg − Σpg + eps), so a frame
    where both masks are empty counts 0."""
    target = target.to(probs.dtype)
    inter = (probs * target).sum((-2, -1))
    union = probs.sum((-2, -1)) + target.sum((-2, -1)) - inter + eps
    return inter / union


def minmax_normalize(d: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Per-map min-max normalisation of ``[..., H, W]`` to [0, ``scale``] (``oro_depth.py``: 255); a constant map,
    where their division is 0/0, becomes 0."""
    lo = d.amin(dim=(-2, -1), keepdim=True)
    hi = d.amax(dim=(-2, -1), keepdim=True)
    span = hi - lo
    return (d - lo) / torch.where(span > 0, span, torch.ones_like(span)) * scale


# ----------------------------------------------------------------------------------------------- weights
def resolve_file(spec: str, revision: str | None = None) -> Path:
    """A local file, or ``owner/repo/path/in/repo`` fetched from the Hub."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    parts = spec.split("/")
    hub_like = len(parts) >= 3 and not spec.startswith((".", "~", "/")) and not Path(parts[0]).exists()
    if hub_like:
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download("/".join(parts[:2]), "/".join(parts[2:]), revision=revision))
        except Exception as exc:
            raise VidalignError(f"weights {spec!r}: cannot fetch from the Hub ({type(exc).__name__}); "
                                "give a local file path") from exc
    raise VidalignError(f"weights {spec!r}: no such file; give a local path or owner/repo/filename on the Hub")


def load_state_dict(spec: str, revision: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a torch file loaded with ``weights_only=True`` (never unpickled)."""
    path = resolve_file(spec, revision)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise VidalignError(f"weights {spec!r}: not a plain tensor state dict ({type(exc).__name__}); "
                                "save it with torch.save(model.state_dict()) or as .safetensors") from exc
    if isinstance(sd, dict) and set(sd) == {"state_dict"}:
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise VidalignError(f"weights {spec!r}: expected a dict of tensors")
    return sd


def build_head(sd: dict[str, torch.Tensor], source: str = "<head>") -> nn.Module:
    """A head from its state dict: one linear (``weight``/``bias``) or a stack of linears ``<prefix>.<i>.weight``.

    LAION's aesthetic predictor (VADER's aesthetic model) is Linear/Dropout/…/Linear with no activations, so the
    stack is rebuilt with identities at the indices that hold no weights.
    """
    if set(sd) <= {"weight", "bias"} and "weight" in sd:
        w = sd["weight"]
        head = nn.Linear(w.shape[1], w.shape[0], bias="bias" in sd)
        head.load_state_dict(sd)
        return head
    pat = re.compile(r"^(?:(.*)\.)?(\d+)\.(weight|bias)$")
    layers: dict[int, dict[str, torch.Tensor]] = {}
    prefixes = set()
    for k, v in sd.items():
        m = pat.match(k)
        if m is None:
            raise VidalignError(f"{source}: unexpected key {k!r}; a head is one linear (weight, bias) or "
                                "stacked linears (<prefix>.<index>.weight)")
        prefixes.add(m.group(1))
        layers.setdefault(int(m.group(2)), {})[m.group(3)] = v
    if len(prefixes) != 1 or any(v["weight"].ndim != 2 for v in layers.values() if "weight" in v):
        raise VidalignError(f"{source}: head layers must share one prefix and be 2-D linear weights")
    mods: list[nn.Module] = []
    for i in range(max(layers) + 1):
        if i in layers:
            w = layers[i]["weight"]
            lin = nn.Linear(w.shape[1], w.shape[0], bias="bias" in layers[i])
            lin.load_state_dict(layers[i])
            mods.append(lin)
        else:
            mods.append(nn.Identity())
    return nn.Sequential(*mods)


def _features(out) -> torch.Tensor:
    """CLIP ``get_*_features`` returns a tensor (transformers 4) or an output with ``pooler_output`` (5)."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _flat_frames(frames: torch.Tensor) -> torch.Tensor:
    return frames.reshape(-1, *frames.shape[2:])


# ----------------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class _Entry:
    name: str
    options: type  # the frozen options dataclass
    kind: type  # the Reward subclass it builds (its class flags: needs_gt, min_frames, needs_first_frame)
    build: Callable[..., Reward]


_REWARDS: dict[str, _Entry] = {}


def register_reward(name: str, options: type, kind: type):
    """Decorator adding a reward ``build(options, device, dtype) -> kind`` under ``name``."""

    def deco(build):
        _REWARDS[name] = _Entry(name, options, kind, build)
        return build

    return deco


def reward_names() -> list[str]:
    return sorted(_REWARDS)


def reward_entry(name: str) -> _Entry:
    if name not in _REWARDS:
        close = difflib.get_close_matches(str(name), reward_names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"reward {name!r} is unknown{hint}; choose one of {', '.join(reward_names())}")
    return _REWARDS[name]


@dataclass(frozen=True)
class RewardSpec:
    """One weighted reward of a run, parsed from ``{name: ..., weight: ..., <options>}``."""

    name: str
    weight: float
    options: Any

    @classmethod
    def parse(cls, spec: dict | str, where: str = "rewards") -> RewardSpec:
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, dict) or "name" not in spec:
            raise ConfigError(f"{where}={spec!r} is invalid: give a mapping with a 'name' (one of "
                              f"{', '.join(reward_names())}) and the reward's options")
        spec = dict(spec)
        name = spec.pop("name")
        weight = spec.pop("weight", 1.0)
        entry = reward_entry(name)
        known = {f.name for f in fields(entry.options)}
        for key in spec:
            if key not in known:
                raise ConfigError(f"{where}.{key} is not an option of reward {name!r}; "
                                  f"its options are: weight, {', '.join(sorted(known)) or '(none)'}")
        require(isinstance(weight, (int, float)) and weight > 0, where, "weight", weight, "use a positive number")
        return cls(name, float(weight), entry.options(**spec))

    @property
    def entry(self) -> _Entry:
        return reward_entry(self.name)

    def build(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Reward:
        return self.entry.build(self.options, device=device, dtype=dtype).freeze()


# ----------------------------------------------------------------------------------------------- CLIP rewards
@dataclass(frozen=True)
class AestheticOptions:
    """``head``: weights (local path or owner/repo/file) of the head on L2-normalised CLIP image features.

    ``target``: loss ``|s − target|`` instead of ``−s``; ``loss_scale`` multiplies the loss (VADER's
    ``aesthetic_loss_fn(aesthetic_target=10, grad_scale=0.1)``); ``resize``: ``crop`` (short side to the vision
    tower's size, centre crop, as CLIP's processor) or ``squash`` (both sides to the tower's size, as VADER's
    ``torchvision.transforms.Resize((224, 224))``)."""

    head: str | None = None
    clip_model: str = "openai/clip-vit-large-patch14"
    revision: str | None = None
    target: float | None = None
    loss_scale: float = 1.0
    resize: str = "crop"

    def __post_init__(self):
        require(bool(self.head), "rewards.aesthetic", "head", self.head,
                "give the aesthetic head's weights (.safetensors/.pt path or owner/repo/file), e.g. LAION's "
                "sac+logos+ava1-l14-linearMSE.pth")
        require(math.isfinite(self.loss_scale) and self.loss_scale > 0, "rewards.aesthetic", "loss_scale",
                self.loss_scale, "use a positive factor (VADER: 0.1)")
        require(self.resize in ("crop", "squash"), "rewards.aesthetic", "resize", self.resize,
                "use crop (CLIP's processor) or squash (VADER's Resize((224, 224)))")


@dataclass(frozen=True)
class ClipScoreOptions:
    clip_model: str = "openai/clip-vit-large-patch14"
    revision: str | None = None


@dataclass(frozen=True)
class PreferenceOptions:
    """HPS/PickScore-style: ``clip_model`` is the scorer's CLIP; ``head`` (optional) maps its image features;
    ``scale`` multiplies the cosine (None: the model's ``logit_scale.exp()``, as PickScore scores)."""

    clip_model: str | None = None
    head: str | None = None
    revision: str | None = None
    scale: float | None = None

    def __post_init__(self):
        require(bool(self.clip_model), "rewards.preference", "clip_model", self.clip_model,
                "give the scorer's CLIP model (Hub id or local path), e.g. yuvalkirstain/PickScore_v1")


class ClipReward(Reward):
    """CLIP-based rewards; frames are resized/cropped to the vision tower's size with CLIP's normalisation."""

    def __init__(self, kind: str, clip, tokenizer=None, head: nn.Module | None = None,
                 scale: float | None = None, target: float | None = None, loss_scale: float = 1.0,
                 resize: str = "crop"):
        super().__init__()
        self.kind, self.clip, self.tokenizer, self.head = kind, clip, tokenizer, head
        self.target, self.loss_scale, self.resize = target, loss_scale, resize
        self.scale = float(clip.logit_scale.detach().exp()) if scale is None and kind == "preference" else (scale or 1.0)
        self.size = int(clip.config.vision_config.image_size)
        self._text_cache: dict[str, torch.Tensor] = {}

    def image_features(self, frames: torch.Tensor) -> torch.Tensor:
        x = to_unit(_flat_frames(frames))
        if self.resize == "squash":
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        else:
            x = resize_center_crop(x, self.size)
        x = normalize(x, CLIP_MEAN, CLIP_STD)
        dtype = next(self.clip.parameters()).dtype
        return _features(self.clip.get_image_features(pixel_values=x.to(dtype))).float()

    @torch.no_grad()
    def text_features(self, prompts: list[str]) -> torch.Tensor:
        missing = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        if missing:
            device = next(self.clip.parameters()).device
            tok = self.tokenizer(missing, padding="max_length", truncation=True, return_tensors="pt",
                                 max_length=self.clip.config.text_config.max_position_embeddings)
            feats = _features(self.clip.get_text_features(input_ids=tok.input_ids.to(device),
                                                          attention_mask=tok.attention_mask.to(device))).float()
            self._text_cache.update(zip(missing, F.normalize(feats, dim=-1)))
        return torch.stack([self._text_cache[p] for p in prompts])

    def forward(self, frames: torch.Tensor, inputs: RewardInputs) -> RewardOutput:
        b, f = frames.shape[:2]
        img = self.image_features(frames)
        if self.kind == "aesthetic":
            score = self.head(F.normalize(img, dim=-1).to(next(self.head.parameters()).dtype)).float()
            score = score.reshape(b, f).mean(1)
            loss = -score if self.target is None else (score - self.target).abs()
            return RewardOutput(loss * self.loss_scale, score)
        if self.head is not None:
            img = self.head(img.to(next(self.head.parameters()).dtype)).float()
        img = F.normalize(img, dim=-1).reshape(b, f, -1)
        cos = (img * self.text_features(inputs.prompts).unsqueeze(1)).sum(-1).mean(1)
        score = self.scale * cos
        loss = 1 - cos if self.kind == "clip_score" else -score
        return RewardOutput(loss, score)


def _load_clip(model: str, revision: str | None, device, dtype):
    from transformers import CLIPModel

    return CLIPModel.from_pretrained(model, revision=revision, dtype=dtype).to(device)


def _load_clip_tokenizer(model: str, revision: str | None):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model, revision=revision)


@register_reward("aesthetic", AestheticOptions, ClipReward)
def _build_aesthetic(o: AestheticOptions, device="cpu", dtype=torch.float32) -> Reward:
    clip = _load_clip(o.clip_model, o.revision, device, dtype)
    head = build_head(load_state_dict(o.head), o.head).to(device=device, dtype=dtype)
    return ClipReward("aesthetic", clip, head=head, target=o.target, loss_scale=o.loss_scale, resize=o.resize)


@register_reward("clip_score", ClipScoreOptions, ClipReward)
def _build_clip_score(o: ClipScoreOptions, device="cpu", dtype=torch.float32) -> Reward:
    clip = _load_clip(o.clip_model, o.revision, device, dtype)
    return ClipReward("clip_score", clip, tokenizer=_load_clip_tokenizer(o.clip_model, o.revision))


@register_reward("preference", PreferenceOptions, ClipReward)
def _build_preference(o: PreferenceOptions, device="cpu", dtype=torch.float32) -> Reward:
    clip = _load_clip(o.clip_model, o.revision, device, dtype)
    head = build_head(load_state_dict(o.head), o.head).to(device=device, dtype=dtype) if o.head else None
    return ClipReward("preference", clip, tokenizer=_load_clip_tokenizer(o.clip_model, o.revision), head=head,
                      scale=o.scale)


# ----------------------------------------------------------------------------------------------- PISA rewards
def _need(inputs: RewardInputs, field: str, reward: str):
    value = getattr(inputs, field)
    if value is None:
        raise VidalignError(f"reward {reward!r} needs ground-truth {field} (PISA drop clips): train with data: "
                            "<drop-shard dataset> whose samples have mp4, mask.npz and depth.npy")
    return value


@dataclass(frozen=True)
class SegmentationOptions:
    """``objects``: ``all`` GT objects or only the ``last`` (PISA's dropping object); ``include_seed_frame``: frame 0
    (seeded with the GT mask) counts in the mean, as in the authors' ``oro_seg.py``."""

    model: str = "facebook/sam2.1-hiera-large"
    revision: str | None = None
    objects: str = "all"
    include_seed_frame: bool = True

    def __post_init__(self):
        require(self.objects in ("all", "last"), "rewards.segmentation", "objects", self.objects,
                "use 'all' or 'last' (the dropping object)")


class SegmentationReward(Reward):
    """1 − soft IoU between SAM 2's tracked soft masks on the generated frames and the GT masks.

    SAM 2 is seeded with the GT frame-0 masks (its mask-as-output path), then propagated frame by frame with its
    memory; ``Sam2VideoModel.forward`` is wrapped in ``torch.inference_mode`` so the undecorated function is called
    to keep the graph. The IoU is averaged over every frame (frame 0, which reproduces the seed, included, as
    ``oro_seg.py`` does) and object; ``include_seed_frame=False`` leaves frame 0 out.
    """

    needs_gt = True
    needs_first_frame = True
    min_frames = 2
    gt_fields = ("masks",)

    def __init__(self, model, objects: str = "all", include_seed_frame: bool = True):
        super().__init__()
        self.model, self.objects, self.include_seed_frame = model, objects, include_seed_frame
        self.size = int(model.config.image_size)
        fwd = type(model).forward
        self._forward = getattr(fwd, "__wrapped__", fwd)

    def _pixels(self, frames: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(to_unit(frames), size=(self.size, self.size), mode="bilinear", align_corners=False,
                          antialias=True)
        return normalize(x, IMAGENET_MEAN, IMAGENET_STD)

    def track(self, frames: torch.Tensor, seed_masks: torch.Tensor) -> torch.Tensor:
        """Mask logits ``[F, N, H, W]`` for frames ``[F, 3, H, W]`` seeded with ``seed_masks`` ``[N, H, W]``."""
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        dtype = next(self.model.parameters()).dtype
        h, w = frames.shape[-2:]
        session = Sam2VideoInferenceSession(video=self._pixels(frames.float()).to(dtype), video_height=h,
                                            video_width=w, inference_device=frames.device,
                                            inference_state_device=frames.device,
                                            video_storage_device=frames.device, dtype=dtype)
        seeds = F.interpolate(seed_masks[:, None].float(), size=(self.size, self.size), mode="bilinear",
                              align_corners=False, antialias=True)
        for n in range(seeds.shape[0]):
            idx = session.obj_id_to_idx(n)
            session.add_mask_inputs(idx, 0, (seeds[n : n + 1] >= 0.5).to(dtype))
        session.obj_with_new_inputs = list(range(seeds.shape[0]))
        logits = []
        for t in range(frames.shape[0]):
            out = self._forward(self.model, session, frame_idx=t)
            logits.append(F.interpolate(out.pred_masks.float(), size=(h, w), mode="bilinear", align_corners=False)[:, 0])
        return torch.stack(logits)

    def forward(self, frames: torch.Tensor, inputs: RewardInputs) -> RewardOutput:
        masks = _need(inputs, "gt_masks", "segmentation")
        ious = []
        for b in range(frames.shape[0]):
            gt = masks[b].to(frames.device)
            if self.objects == "last":
                gt = gt[:, -1:]
            gt = _resize_masks(gt, frames.shape[-2:])
            probs = torch.sigmoid(self.track(frames[b], gt[0]))
            iou = soft_iou(probs, gt)
            ious.append((iou if self.include_seed_frame else iou[1:]).mean())
        score = torch.stack(ious)
        return RewardOutput(1 - score, score)


def _resize_masks(masks: torch.Tensor, size) -> torch.Tensor:
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks.bool()
    return F.interpolate(masks.float(), size=tuple(size), mode="nearest").bool()


@register_reward("segmentation", SegmentationOptions, SegmentationReward)
def _build_segmentation(o: SegmentationOptions, device="cpu", dtype=torch.float32) -> Reward:
    from transformers import Sam2VideoModel

    model = Sam2VideoModel.from_pretrained(o.model, revision=o.revision, dtype=dtype).to(device)
    return SegmentationReward(model, o.objects, o.include_seed_frame)


@dataclass(frozen=True)
class DepthOptions:
    """``target``: ``model`` compares with Depth Anything on the GT frames (PISA); ``simulation`` with the
    simulator's depth (converted to inverse depth, like the model's relative output). ``resize``: ``square``
    (``input_size`` × ``input_size``, bicubic, as ``oro_depth.py``) or ``aspect`` (short side ``input_size``,
    rounded to the patch size). ``scale``: the per-frame min-max range (theirs: 255)."""

    model: str = "depth-anything/Depth-Anything-V2-Small-hf"
    revision: str | None = None
    input_size: int = 518
    target: str = "model"
    resize: str = "square"
    scale: float = 255.0

    def __post_init__(self):
        require(self.target in ("model", "simulation"), "rewards.depth", "target", self.target,
                "use 'model' (Depth Anything on the GT frames) or 'simulation' (the clip's depth.npy)")
        require(self.input_size >= 14, "rewards.depth", "input_size", self.input_size, "use at least 14 pixels")
        require(self.resize in ("square", "aspect"), "rewards.depth", "resize", self.resize,
                "use 'square' (518x518 bicubic, the authors') or 'aspect'")
        require(self.scale > 0, "rewards.depth", "scale", self.scale, "use a positive range (the authors' 255)")


class DepthReward(Reward):
    """MSE between per-frame min-max normalised depth maps of generated and GT frames (GT side detached)."""

    needs_gt = True

    def __init__(self, model, input_size: int = 518, target: str = "model", resize: str = "square",
                 scale: float = 255.0):
        super().__init__()
        self.model, self.input_size, self.target = model, input_size, target
        self.resize, self.scale = resize, float(scale)
        self.gt_fields = ("depth",) if target == "simulation" else ()
        patch = getattr(model.config, "patch_size", 14)
        self.patch = int(patch[0] if isinstance(patch, (list, tuple)) else patch)

    def depth(self, frames: torch.Tensor) -> torch.Tensor:
        """Depth ``[N, H, W]`` of frames ``[N, 3, H, W]`` at the frames' size, min-max normalised per frame to
        [0, scale]: ``compute_depth`` of ``oro_depth.py``."""
        h, w = frames.shape[-2:]
        x = to_unit(frames.float())
        if self.resize == "square":
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bicubic", align_corners=False)
        else:
            x = F.interpolate(x, size=multiple_of(h, w, self.input_size, self.patch), mode="bilinear",
                              align_corners=False, antialias=True)
        x = normalize(x, IMAGENET_MEAN, IMAGENET_STD).to(next(self.model.parameters()).dtype)
        d = self.model(pixel_values=x).predicted_depth.float()
        d = F.interpolate(d[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        return minmax_normalize(d, self.scale)

    def forward(self, frames: torch.Tensor, inputs: RewardInputs) -> RewardOutput:
        b, f = frames.shape[:2]
        pred = self.depth(_flat_frames(frames))
        with torch.no_grad():
            if self.target == "model":
                gt = self.depth(_flat_frames(_need(inputs, "gt_frames", "depth").to(frames.device)))
            else:
                sim = _need(inputs, "gt_depth", "depth").to(frames.device).float()
                inv = 1.0 / sim.reshape(b * f, 1, *sim.shape[-2:]).clamp_min(1e-3)  # relative depth is inverse
                inv = F.interpolate(inv, size=pred.shape[-2:], mode="bilinear", align_corners=False)
                gt = minmax_normalize(inv[:, 0], self.scale)
        mse = ((pred - gt) ** 2).reshape(b, -1).mean(1)
        return RewardOutput(mse, mse)


@register_reward("depth", DepthOptions, DepthReward)
def _build_depth(o: DepthOptions, device="cpu", dtype=torch.float32) -> Reward:
    from transformers import AutoModelForDepthEstimation

    model = AutoModelForDepthEstimation.from_pretrained(o.model, revision=o.revision, dtype=dtype).to(device)
    return DepthReward(model, o.input_size, o.target, o.resize, o.scale)


@dataclass(frozen=True)
class FlowOptions:
    """``model``: a registered flow model (``raft_large`` as PISA, ``raft_small``, ``horn_schunck``);
    ``weights``: a local state dict for RAFT, e.g. princeton-vl's ``raft-things.pth`` as PISA used it (None:
    torchvision's released weights); ``iterations``: RAFT's refinement iterations (PISA: 20); ``code``: a folder
    with princeton-vl RAFT's ``core/`` (``raft.py``) to run their network itself instead of torchvision's port."""

    model: str = "raft_large"
    weights: str | None = None
    iterations: int = 20
    code: str | None = None

    def __post_init__(self):
        from vidalign.training.flow import flow_model_names

        require(self.model in flow_model_names(), "rewards.flow", "model", self.model,
                f"choose one of {', '.join(flow_model_names())}")
        require(isinstance(self.iterations, int) and self.iterations >= 1, "rewards.flow", "iterations",
                self.iterations, "use a positive number of refinement iterations (PISA: 20)")


class FlowReward(Reward):
    """Mean |flow(x̂_t, x̂_{t+1}) − flow(x_t, x_{t+1})| over consecutive decoded frames (GT flow detached)."""

    needs_gt = True
    min_frames = 2

    def __init__(self, flow_model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        super().__init__()
        self.flow_model = flow_model
        if isinstance(flow_model, nn.Module):
            self.add_module("net", flow_model)
        elif hasattr(flow_model, "model") and isinstance(flow_model.model, nn.Module):
            self.add_module("net", flow_model.model)

    def flows(self, frames: torch.Tensor) -> torch.Tensor:
        a, b = frames[:, :-1], frames[:, 1:]
        return self.flow_model(_flat_frames(a), _flat_frames(b))

    def forward(self, frames: torch.Tensor, inputs: RewardInputs) -> RewardOutput:
        b = frames.shape[0]
        pred = self.flows(frames)
        with torch.no_grad():
            gt = self.flows(_need(inputs, "gt_frames", "flow").to(frames.device))
        l1 = (pred - gt).abs().reshape(b, -1).mean(1)
        return RewardOutput(l1, l1)


@register_reward("flow", FlowOptions, FlowReward)
def _build_flow(o: FlowOptions, device="cpu", dtype=torch.float32) -> Reward:
    from vidalign.training.flow import build_flow_model

    return FlowReward(build_flow_model(o.model, o.weights, device, iterations=o.iterations, code=o.code))
