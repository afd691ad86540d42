"""Candidate generation: N videos per prompt from any diffusers text-to-video pipeline, each with its seed.

Why seeds are derived, not drawn: candidate ``i`` of prompt ``p`` gets ``candidate_seed(seed, p, i)`` (or the
i-th of an explicit ``--seeds`` list, as the SpatialAlign authors used), so a resumed or re-split run makes
exactly the same videos, whatever the order, rank or batch. The initial noise comes from a CPU generator per
candidate, so a seed gives the same noise on any device. Defaults follow SpatialAlign (SPEC §1):
Wan2.1-T2V-1.3B, 81 frames, 480×832, 16 fps, 50 steps, guidance 5, flow shift 5.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vidalign.builder import Builder, Sample, register_builder
from vidalign.errors import ConfigError, InputError, require
from vidalign.preprocessing.latents import dtype_kwargs, is_local, torch_dtype

DEFAULT_MODEL = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
RESERVED_KEYS = ("prompt", "prompt_id", "candidate", "seed", "model", "revision", "steps", "guidance", "frames",
                 "height", "width", "fps", "shift", "negative_prompt")


@dataclass(frozen=True)
class GenerateConfig:
    """How candidates are made; every field lands in each candidate's json."""

    model: str = DEFAULT_MODEL
    revision: str | None = None
    num_candidates: int = 5
    frames: int = 81
    height: int = 480
    width: int = 832
    steps: int = 50
    guidance: float = 5.0
    shift: float | None = 5.0
    fps: float = 16.0
    seed: int = 0
    seeds: tuple[int, ...] = ()
    negative_prompt: str | None = None
    max_sequence_length: int = 512
    dtype: str = "bf16"
    vae_dtype: str | None = None
    batch_size: int = 1

    def __post_init__(self) -> None:
        own = "GenerateConfig"
        require(self.num_candidates >= 1, own, "num_candidates", self.num_candidates, "use at least 1")
        require(self.frames >= 1, own, "frames", self.frames, "use a positive frame count (Wan: 4k+1, e.g. 81)")
        require(self.height > 0 and self.width > 0, own, "height/width", (self.height, self.width),
                "use positive sizes (Wan: multiples of 16)")
        require(self.steps >= 1, own, "steps", self.steps, "use at least 1 step")
        require(self.fps > 0, own, "fps", self.fps, "use a positive fps")
        require(self.batch_size >= 1, own, "batch_size", self.batch_size, "use at least 1")
        require(not self.seeds or len(self.seeds) >= self.num_candidates, own, "seeds", self.seeds,
                f"give at least num_candidates={self.num_candidates} seeds, or none to derive them")
        require(self.max_sequence_length >= 1, own, "max_sequence_length", self.max_sequence_length, "use >= 1")
        torch_dtype(self.dtype)
        if self.vae_dtype is not None:
            torch_dtype(self.vae_dtype)

    def seed_for(self, prompt_id: str, index: int) -> int:
        """Seed of candidate ``index`` of ``prompt_id``."""
        return int(self.seeds[index]) if self.seeds else candidate_seed(self.seed, prompt_id, index)

    def record(self) -> dict[str, Any]:
        """The generation settings every candidate json carries."""
        return {"model": self.model, "revision": self.revision, "steps": self.steps, "guidance": self.guidance,
                "frames": self.frames, "height": self.height, "width": self.width, "fps": self.fps,
                "shift": self.shift, "negative_prompt": self.negative_prompt}


def candidate_seed(base_seed: int, prompt_id: str, index: int) -> int:
    """A 31-bit seed from (base seed, prompt id, candidate index): stable across runs, orders and ranks."""
    digest = hashlib.blake2b(f"{int(base_seed)}/{prompt_id}/{int(index)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


# ---------------------------------------------------------------------------------------------------------
# prompts


@dataclass(frozen=True)
class PromptRecord:
    """One prompt with its id and any extra columns (kept in the candidate json, e.g. DSR's animal/object)."""

    prompt_id: str
    prompt: str
    extra: dict[str, Any] = field(default_factory=dict)


def _record(source: str, row: dict[str, Any], index: int) -> PromptRecord:
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError(source, "prompt", f"row {index} has no prompt", "give every row a non-empty 'prompt'")
    pid = row.get("prompt_id", row.get("id"))
    pid = f"{index:06d}" if pid is None or str(pid).strip() == "" else str(pid).strip()
    extra = {(f"prompt_{k}" if k in RESERVED_KEYS else k): v for k, v in row.items()
             if k not in ("prompt", "prompt_id", "id") and k is not None}
    return PromptRecord(pid, prompt.strip(), extra)


def iter_prompt_file(path: str | Path) -> Iterator[PromptRecord]:
    """Prompts of a CSV (DSR schema: ``prompt_id``, ``prompt``, ...), JSONL (``{"prompt": ...}``), JSON (a list,
    ``{"prompts": [...]}`` or VideoDPO's ``{"000000.mp4": prompt}``) or txt file (one prompt a line, ids
    ``000000``, ``000001``, ... as VideoDPO names the videos)."""

    from vidalign.inputs import read_text

    path = Path(path)
    src = str(path)
    suffix = path.suffix.lower()
    text = read_text(path, "prompt file") if suffix in (".csv", ".json", ".jsonl", ".txt") else ""
    if suffix == ".csv":
        from vidalign.inputs import read_csv

        header, rows = read_csv(path, "prompt file")
        if "prompt" not in header:
            raise InputError(src, "prompt", f"CSV columns are {header}", "add a 'prompt' column (and 'prompt_id')")
        for i, (_, row) in enumerate(rows):
            yield _record(src, row, i)
    elif suffix == ".json" and (whole := _whole_json(text, src)) is not None:
        # a JSON document: a list, {"prompts": [...]}, or VideoDPO's {"000000.mp4": prompt} (ids 000000, ...)
        from vidalign.datasets_builders.vidprom import json_prompt_rows

        rows = [whole] if isinstance(whole, dict) and "prompt" in whole else json_prompt_rows(whole, src)
        for i, row in enumerate(rows):
            yield _record(src, row, i)
    elif suffix in (".jsonl", ".json"):
        from vidalign.inputs import parse_json

        if True:
            for i, line in enumerate(x for x in text.splitlines() if x.strip()):
                row = parse_json(line, src, i + 1)
                if isinstance(row, str):
                    row = {"prompt": row}
                if not isinstance(row, dict):
                    raise InputError(src, None, f"line {i + 1} is {type(row).__name__}", 'write {"prompt": ...}')
                yield _record(src, row, i)
    elif suffix == ".txt":
        if True:
            for i, line in enumerate(x for x in text.splitlines() if x.strip()):
                yield _record(src, {"prompt": line.strip()}, i)
    else:
        raise InputError(src, None, f"unknown prompt file type {suffix!r}",
                         "use .csv (prompt_id,prompt), .jsonl or .txt, or a vidalign dataset folder")


def _whole_json(text: str, src: str):
    """The file as one JSON document, or None when it is JSON lines."""
    from vidalign.inputs import check_finite

    try:
        return check_finite(json.loads(text), src)
    except json.JSONDecodeError:
        return None
    except (ValueError, RecursionError) as exc:
        raise InputError(src, None, f"not valid JSON ({exc})", "fix the file") from None


def check_unique(records: list[PromptRecord], source: str) -> list[PromptRecord]:
    """Prompt ids name outputs and derive seeds: duplicates would overwrite candidates."""
    seen: set[str] = set()
    for r in records:
        if r.prompt_id in seen:
            raise InputError(source, "prompt_id", f"{r.prompt_id!r} appears twice", "make prompt ids unique")
        seen.add(r.prompt_id)
    return records


# ---------------------------------------------------------------------------------------------------------
# pipeline


def set_flow_shift(pipe: Any, shift: float) -> None:
    """Rebuild the scheduler with ``shift`` (``flow_shift`` for UniPC, ``shift`` for flow-match Euler)."""
    cfg = pipe.scheduler.config
    key = "flow_shift" if "flow_shift" in cfg else "shift" if "shift" in cfg else None
    if key is None:
        raise ConfigError(f"--shift {shift}: scheduler {type(pipe.scheduler).__name__} has no flow shift; "
                          "drop --shift for this pipeline")
    pipe.scheduler = type(pipe.scheduler).from_config(cfg, **{key: float(shift)})


def check_pipeline_path(model: str) -> str:
    """``model`` as ``from_pretrained`` takes it; a local folder without ``model_index.json`` is a ConfigError."""
    path = str(Path(model).expanduser()) if is_local(model) else model
    if is_local(path) and not (Path(path) / "model_index.json").is_file():
        raise ConfigError(f"--model {model}: no model_index.json there; give a diffusers pipeline folder "
                          f"or a Hub id like {DEFAULT_MODEL}")
    return path


def load_pipeline(cfg: GenerateConfig, device: str = "cpu") -> Any:
    """The text-to-video pipeline of ``cfg.model`` in ``cfg.dtype``, the flow shift applied. The VAE runs in
    ``cfg.vae_dtype``; by default fp32 for Wan (as diffusers' Wan examples load it), else the pipeline dtype."""
    import diffusers

    path = check_pipeline_path(cfg.model)
    try:
        index = diffusers.DiffusionPipeline.load_config(path, revision=cfg.revision)
        is_wan = str(index.get("_class_name", "")).startswith("Wan")
        vae_dtype = cfg.vae_dtype or ("fp32" if is_wan else cfg.dtype)
        dtypes = {"default": torch_dtype(cfg.dtype), "vae": torch_dtype(vae_dtype)}
        pipe = diffusers.DiffusionPipeline.from_pretrained(path, revision=cfg.revision, **dtype_kwargs(dtypes))
    except (OSError, ValueError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(f"--model {cfg.model}: could not load the pipeline ({type(exc).__name__}: {first}); "
                          "give a diffusers pipeline folder or Hub id") from exc
    if cfg.shift is not None:
        set_flow_shift(pipe, cfg.shift)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _to_uint8_video(video: Any) -> np.ndarray:
    """One pipeline output video (float array in [0, 1], tensor, or list of PIL images) → uint8 [T, H, W, 3]."""
    if isinstance(video, list):
        return np.stack([np.asarray(im.convert("RGB")) for im in video])
    arr = video.float().cpu().numpy() if hasattr(video, "cpu") else np.asarray(video)
    if arr.dtype == np.uint8:
        return arr
    return (np.clip(arr, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def generate_candidates(pipe: Any, prompt: str, seeds: list[int], cfg: GenerateConfig) -> np.ndarray:
    """uint8 ``[len(seeds), T, H, W, 3]``: one video per seed, ``cfg.batch_size`` per pipeline call."""
    import torch

    accepted = inspect.signature(pipe.__call__).parameters
    options = {"num_frames": cfg.frames, "height": cfg.height, "width": cfg.width,
               "num_inference_steps": cfg.steps, "guidance_scale": cfg.guidance,
               "negative_prompt": cfg.negative_prompt, "max_sequence_length": cfg.max_sequence_length,
               "output_type": "np"}
    options = {k: v for k, v in options.items() if k in accepted and (v is not None or k != "negative_prompt")}
    videos: list[np.ndarray] = []
    for start in range(0, len(seeds), cfg.batch_size):
        chunk = seeds[start:start + cfg.batch_size]
        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in chunk]
        if "negative_prompt" in options:
            options["negative_prompt"] = [cfg.negative_prompt] * len(chunk)
        with torch.inference_mode():
            out = pipe(prompt=[prompt] * len(chunk), generator=generators, **options)
        frames = out.frames if hasattr(out, "frames") else out[0]
        videos.extend(_to_uint8_video(v) for v in frames)
    return np.stack(videos)


def candidate_json(record: PromptRecord, index: int, seed: int, cfg: GenerateConfig) -> dict[str, Any]:
    """The json of one candidate: prompt, ids, seed, the settings, and the prompt file's extra columns."""
    return {"prompt": record.prompt, "prompt_id": record.prompt_id, "candidate": index, "seed": seed,
            **cfg.record(), **record.extra}


# ---------------------------------------------------------------------------------------------------------
# the ``candidates`` builder (``vidalign generate``)

RUNTIME_FIELDS = ("device",)
_PIPES: dict[tuple, Any] = {}
_PROMPTS: dict[tuple, list[PromptRecord]] = {}


def read_prompts(source: str, config: str = "prompts", split: str = "train", limit: int = 0) -> list[PromptRecord]:
    """Prompts of a CSV/JSONL/txt file or of a vidalign dataset folder's ``config``/``split`` json members."""
    path = Path(source)
    if path.is_dir():
        from vidalign.data import stream

        rows = [s.get("json") for s in stream(path, config, split, members=["json"], rank=0, world_size=1)]
        records = [_record(f"{path}:{config}/{split}", r if isinstance(r, dict) else {}, i) for i, r in enumerate(rows)]
    elif path.is_file():
        records = list(iter_prompt_file(path))
    else:
        raise InputError(source, None, "prompt file or folder not found", "give a .csv/.jsonl/.txt file or a "
                         "vidalign prompts dataset folder")
    records = records[:limit] if limit > 0 else records
    if not records:
        raise InputError(source, "prompt", "no prompts", "add prompts to the file")
    return check_unique(records, source)


@register_builder
class CandidatesBuilder(Builder):
    name = "candidates"
    input_args = ("prompts",)
    description = ("Candidate videos from a diffusers text-to-video pipeline: N per prompt, each with its seed, "
                   "the prompt's fields and the generation settings in its json.")
    tags = ["text-to-video", "candidates", "generated"]
    task_categories = ["text-to-video"]
    columns = ("prompt.txt", "prompt_id.txt", "candidate.json", "seed.json")

    @dataclass
    class Args:
        prompts: str = field(metadata={"help": "prompt CSV (prompt_id,prompt,...), JSONL, txt, or a vidalign "
                                               "prompts dataset folder"})
        prompts_config: str = field(default="prompts", metadata={"help": "config of a prompts dataset folder"})
        prompts_split: str = field(default="train", metadata={"help": "split of a prompts dataset folder"})
        limit: int = field(default=0, metadata={"help": "use only the first N prompts (0: all)"})
        model: str = field(default=DEFAULT_MODEL, metadata={"help": "diffusers pipeline: Hub id or folder"})
        revision: str | None = field(default=None, metadata={"help": "Hub revision of the pipeline"})
        num_candidates: int = field(default=5, metadata={"help": "videos per prompt"})
        frames: int = field(default=81, metadata={"help": "frames per video (Wan: 4k+1)"})
        height: int = field(default=480, metadata={"help": "video height"})
        width: int = field(default=832, metadata={"help": "video width"})
        steps: int = field(default=50, metadata={"help": "denoising steps"})
        guidance: float = field(default=5.0, metadata={"help": "classifier-free guidance scale"})
        shift: float = field(default=5.0, metadata={"help": "flow shift of the scheduler (0: keep the model's)"})
        fps: float = field(default=16.0, metadata={"help": "fps of the written mp4"})
        seeds: tuple[int, ...] = field(default=(), metadata={
            "help": "the same seeds for every prompt; empty: derived from --seed, prompt id and candidate"})
        negative_prompt: str | None = field(default=None, metadata={"help": "negative prompt"})
        max_sequence_length: int = field(default=512, metadata={"help": "prompt tokens"})
        dtype: Literal["bf16", "fp16", "fp32"] = field(default="bf16", metadata={"help": "pipeline dtype"})
        vae_dtype: str | None = field(default=None, metadata={"help": "VAE dtype; unset: fp32 for Wan, else --dtype"})
        batch_size: int = field(default=1, metadata={"help": "candidates per pipeline call"})
        split: str = field(default="train", metadata={"help": "output split"})
        device: str | None = field(default=None, metadata={"help": "device; unset: cuda:LOCAL_RANK when CUDA is available, else cpu"})

        def __post_init__(self):
            self.seeds = tuple(int(s) for s in (self.seeds or ()))
            require(self.limit >= 0, "generate", "limit", self.limit, "use 0 (all) or a positive count")
            self.config(0)

        def config(self, seed: int) -> GenerateConfig:
            return GenerateConfig(model=self.model, revision=self.revision, num_candidates=self.num_candidates,
                                  frames=self.frames, height=self.height, width=self.width, steps=self.steps,
                                  guidance=self.guidance, shift=self.shift or None, fps=self.fps, seed=seed,
                                  seeds=self.seeds, negative_prompt=self.negative_prompt,
                                  max_sequence_length=self.max_sequence_length, dtype=self.dtype,
                                  vae_dtype=self.vae_dtype, batch_size=self.batch_size)

    def args_dict(self) -> dict:
        return {k: v for k, v in super().args_dict().items() if k not in RUNTIME_FIELDS}

    def estimate_sample_mb(self) -> float:
        a = self.args
        return max(a.frames * a.height * a.width * 3 / 1e6 * 0.02, 0.01)  # H.264 at crf 18: about 2% of raw

    def records(self) -> list[PromptRecord]:
        a = self.args
        key = (a.prompts, a.prompts_config, a.prompts_split, a.limit)
        if key not in _PROMPTS:
            _PROMPTS[key] = read_prompts(a.prompts, a.prompts_config, a.prompts_split, a.limit)
        return _PROMPTS[key]

    def plan(self):
        return self.split_range("candidates", self.args.split, len(self.records()) * self.args.num_candidates)

    def pipeline(self, cfg: GenerateConfig) -> Any:
        from vidalign.preprocessing.launch import default_device

        device = self.args.device or default_device()
        key = (cfg.model, cfg.revision, cfg.dtype, cfg.vae_dtype, cfg.shift, device)
        if key not in _PIPES:
            _PIPES.clear()
            _PIPES[key] = load_pipeline(cfg, device)
        return _PIPES[key]

    def build_shard(self, job):
        from tqdm.auto import tqdm

        from vidalign.media import encode_mp4

        cfg = self.args.config(self.seed)
        pipe = self.pipeline(cfg)
        records = self.records()
        n = cfg.num_candidates
        first, last = job.start // n, (job.stop - 1) // n
        for p in tqdm(range(first, last + 1), desc=f"shard {job.index}", unit="prompt", leave=False, disable=None):
            rec = records[p]
            cands = [i % n for i in range(max(job.start, p * n), min(job.stop, (p + 1) * n))]
            seeds = [cfg.seed_for(rec.prompt_id, c) for c in cands]
            videos = generate_candidates(pipe, rec.prompt, seeds, cfg)
            for c, seed, video in zip(cands, seeds, videos):
                yield Sample(self.key(p * n + c), {"json": candidate_json(rec, c, seed, cfg),
                                                   "mp4": encode_mp4(video, cfg.fps)})
