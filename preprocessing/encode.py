"""``vidalign encode``: video shards → latent shards, as the ``latents`` builder (resumable, rank-sliced).

One output shard per input shard, with the same config, split, name and sample keys. What it writes is the latent
sample of :mod:`vidalign.contract`: each video member ``X.mp4`` becomes ``X_latents.npy`` (+ ``X_logvar.npy``), the
bare ``mp4`` becomes ``latents.npy``; the training text (the json's ``caption`` when it has one, else its
``prompt``) is embedded as ``prompt_embeds.npy`` + ``prompt_mask.npy`` with the one Wan text embedding; every other
member is kept and the json gains a ``latents`` object. The encoded empty caption is stored once at the dataset
root (``empty_prompt_embeds.npy``). A sample whose video fails is rejected whole, so a pair stays a pair.

Why a map-style dataset over tar offsets: the main process indexes the shard (headers only,
:func:`vidalign.shards.index_tar`), DataLoader workers read and decode the clips by offset
(:func:`vidalign.shards.read_indexed`) in parallel and in order, while the main process batches clips of the same
shape through the VAE on the GPU. Clips travel as uint8 and become ``[-1, 1]`` floats on the device.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vidalign import contract as C
from vidalign.builder import Builder, Sample, ShardJob, register_builder
from vidalign.errors import ConfigError, InputError, VidalignError, require
from vidalign.format import SHARD_RE, VIDEO_EXTENSIONS, member_extension
from vidalign.preprocessing import latents as lat
from vidalign.preprocessing.video_io import READERS, ClipSpec, load_clip
from vidalign.shards import read_indexed

RUNTIME_FIELDS = ("device", "num_workers", "prefetch")  # how to run, not what the data is: kept out of the manifest
PROMPT_CACHE = 4096
_MODELS: dict[tuple, Any] = {}


def _opt(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


def parse_bucket(text: str) -> tuple[int, int]:
    """``"480x832"`` → ``(480, 832)`` (height x width)."""
    try:
        h, w = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ConfigError(f"--buckets {text!r}: write buckets as HEIGHTxWIDTH, e.g. 480x832") from None
    return h, w


def index_tar(path: str | Path) -> list[tuple[str, dict[str, tuple[int, int]]]]:
    """:func:`vidalign.shards.index_tar` with an unreadable shard reported as an input error."""
    from vidalign.shards import index_tar as index

    try:
        return index(path)
    except VidalignError as exc:
        raise InputError(path, None, str(exc).removeprefix(f"{path}: "), "rebuild or re-download it") from None


@dataclass
class Item:
    """One sample on its way through the encoder (built in a DataLoader worker, picklable)."""

    index: int
    key: str
    members: dict[str, Any]  # decoded non-video members (+ raw videos with --keep-videos)
    clips: dict[str, Any] = field(default_factory=dict)  # video member -> uint8 [3, T, H, W]
    fps: float = 0.0
    error: tuple | None = None  # (source, field, problem, fix) of an InputError: exceptions don't cross processes
    latents: dict[str, tuple] = field(default_factory=dict)

    def pin_memory(self) -> Item:
        """Called by the DataLoader's pin-memory thread: page-locked clips copy to the GPU asynchronously."""
        self.clips = {m: v.pin_memory() for m, v in self.clips.items()}
        return self


class ShardClips:
    """Map-style dataset: sample ``i`` of one shard, its videos decoded to the clip spec (runs in workers)."""

    def __init__(self, path: str, source: str, index: list, spec: ClipSpec, reader: str, keep_videos: bool):
        self.path, self.source, self.index = path, source, index
        self.spec, self.reader, self.keep_videos = spec, reader, keep_videos
        self._file: Any = None

    def __len__(self) -> int:
        return len(self.index)

    def _read(self, member: str, offset: int, size: int, decode: bool) -> Any:
        if self._file is None:  # opened in the worker, never shared across a fork
            self._file = open(self.path, "rb")  # noqa: SIM115 - lives as long as the worker
        return read_indexed(self._file, member, offset, size, decode=decode, source=self.source)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getitem__(self, i: int) -> Item:
        key, members = self.index[i]
        item = Item(i, key, {})
        try:
            videos = [m for m in members if member_extension(m) in VIDEO_EXTENSIONS]
            if not videos:
                raise InputError(f"{self.source}:{key}", None, f"sample has no video member (members: "
                                 f"{sorted(members)})", "encode a dataset of video shards")
            for member, (offset, size) in members.items():
                if member in videos:
                    data = self._read(member, offset, size, decode=False)
                    clip = load_clip(data, self.spec, self.reader, name=f"{self.source}:{key}.{member}")
                    item.clips[member] = clip.video
                    item.fps = clip.fps
                    if self.keep_videos:
                        item.members[member] = data
                else:
                    item.members[member] = self._read(member, offset, size, decode=True)
        except InputError as exc:
            item.error, item.clips, item.members = (exc.source, exc.field, exc.problem, exc.fix), {}, {}
        except VidalignError as exc:
            item.error, item.clips, item.members = (f"{self.source}:{key}", None, str(exc), None), {}, {}
        return item


def _identity(x: Any) -> Any:
    return x


@register_builder
class LatentsBuilder(Builder):
    name = "latents"
    input_args = ("in_dir",)
    description = ("VAE latents of a vidalign video dataset: every video member's latent mean and log-variance "
                   "(float16), the prompt's text-encoder embedding and mask, every other member and the json kept.")
    tags = ["latents", "vae", "text-to-video"]

    @dataclass
    class Args:
        in_dir: str = field(metadata={"help": "input dataset folder (vidalign video shards)"})
        vae: str = _opt(lat.DEFAULT_VAE, "VAE: Hub id or folder (a pipeline folder/repo or a VAE folder)")
        subfolder: str = _opt("auto", "VAE subfolder ('auto': vae/ of a pipeline, else the folder itself)")
        vae_class: str | None = _opt(None, "diffusers class; unset: the one its config.json names")
        revision: str | None = _opt(None, "Hub revision of the VAE and text encoder")
        text_encoder: str | None = _opt(None, "text encoder: Hub id or folder (pipeline or model); none: no "
                                              "prompt embeddings")
        text_subfolder: str = _opt("auto", "text-encoder subfolder ('auto': text_encoder/ + tokenizer/)")
        max_length: int = _opt(lat.DEFAULT_MAX_LENGTH, "prompt tokens (Wan: 512)")
        dtype: Literal["bf16", "fp16", "fp32"] = _opt("bf16", "VAE and text-encoder dtype")
        batch_size: int = _opt(1, "clips per VAE call")
        tiling: bool = _opt(False, "tiled VAE encoding (less memory at high resolution)")
        slicing: bool = _opt(False, "encode a batch one clip at a time inside the VAE")
        frames: int = _opt(81, "frames per clip (4k+1 for Wan); 0: as many as fit")
        height: int = _opt(480, "output height; 0: keep the source size")
        width: int = _opt(832, "output width; 0: keep the source size")
        fps: float | None = _opt(None, "resample to this fps; unset: keep the source rate")
        resize: Literal["crop", "bucket", "none"] = _opt("crop", "resize + centre crop, nearest bucket, or none")
        buckets: tuple[str, ...] = _opt((), "resolution buckets HEIGHTxWIDTH for --resize bucket")
        frame_rule: Literal["4k+1", "any"] = _opt("4k+1", "frame counts the VAE accepts")
        start: int = _opt(0, "first source frame")
        reader: Literal["pyav", "torchcodec", "decord"] = _opt("pyav", "video reader (decord needs vidalign[decord])")
        sample: bool = _opt(False, "store a seeded sample of the latent distribution instead of mean + logvar")
        keep_videos: bool = _opt(False, "keep the mp4 members next to their latents")
        configs: tuple[str, ...] = _opt((), "input configs to encode; empty: all")
        splits: tuple[str, ...] = _opt((), "input splits to encode; empty: all")
        device: str | None = _opt(None, "device; unset: cuda:LOCAL_RANK when CUDA is available, else cpu")
        num_workers: int = _opt(-1, "DataLoader workers decoding videos while the GPU encodes; -1: auto (0 on "
                                    "CPU, where the VAE already uses every core; up to 4 per GPU rank)")
        prefetch: int = _opt(2, "samples each worker decodes ahead")

        def __post_init__(self):
            require(self.batch_size >= 1, "encode", "batch_size", self.batch_size, "use at least 1")
            require(self.max_length >= 1, "encode", "max_length", self.max_length, "use at least 1 token")
            require(self.num_workers >= -1, "encode", "num_workers", self.num_workers, "use -1 (auto), 0 or more")
            require(self.prefetch >= 1, "encode", "prefetch", self.prefetch, "use at least 1")
            require(self.reader in READERS, "encode", "reader", self.reader, f"one of {', '.join(READERS)}")
            self.buckets = tuple(self.buckets or ())
            self.configs, self.splits = tuple(self.configs or ()), tuple(self.splits or ())
            lat.torch_dtype(self.dtype)
            self.clip_spec()

        def clip_spec(self) -> ClipSpec:
            return ClipSpec(frames=self.frames or None, fps=self.fps, height=self.height or None,
                            width=self.width or None, resize=self.resize,
                            buckets=tuple(parse_bucket(b) for b in self.buckets), frame_rule=self.frame_rule,
                            start=self.start)

    def args_dict(self) -> dict:
        return {k: v for k, v in super().args_dict().items() if k not in RUNTIME_FIELDS}

    # -- plan: one output shard per input shard --------------------------------------------------------------
    def input_shards(self) -> list[tuple[str, str, int, int, str, int]]:
        """``(config, split, index, total, relpath, samples)`` of the input shards to encode."""
        from vidalign import manifest as mf

        folder = Path(self.args.in_dir)
        if not folder.is_dir():
            raise ConfigError(f"encode: input folder {folder} does not exist; give a vidalign dataset folder")
        if (folder / mf.MANIFEST_NAME).is_file():
            manifest = mf.load(folder)
            listed = [(c, rel, rec["samples"]) for c, e in manifest["configs"].items() for rel, rec in e["shards"].items()]
        else:  # a bare folder of shards (e.g. copied without its manifest): count keys from the tar headers
            listed = [(p.parent.name, p.relative_to(folder).as_posix(), len(index_tar(p)))
                      for p in sorted((folder / "data").glob("*/*.tar"))]
        out = []
        for config, rel, n in listed:
            m = SHARD_RE.match(Path(rel).name)
            if m is None or m["ext"] != "tar" or (self.args.configs and config not in self.args.configs) or \
                    (self.args.splits and m["split"] not in self.args.splits):
                continue
            out.append((config, m["split"], int(m["index"]), int(m["total"]), rel, int(n)))
        if not out:
            raise ConfigError(f"encode: no shards in {folder} (configs {self.args.configs or 'all'}, splits "
                              f"{self.args.splits or 'all'}); check the folder and --configs/--splits")
        return sorted(out)

    def plan(self) -> list[ShardJob]:
        jobs, offsets = [], {}
        for config, split, index, total, rel, n in self.input_shards():
            start = offsets.get((config, split), 0)
            offsets[(config, split)] = start + n
            jobs.append(ShardJob(config, split, index, total, start, start + n, self.seed, params={"input": rel}))
        return jobs

    def estimate_sample_mb(self) -> float:
        return 1.0

    # -- models -------------------------------------------------------------------------------------------------
    def device(self) -> str:
        from vidalign.preprocessing.launch import default_device

        return self.args.device or default_device()

    def num_workers(self) -> int:
        """``--num-workers``, or by default: none on CPU; on a GPU up to 4, sharing the cores between the ranks."""
        import os

        if self.args.num_workers >= 0:
            return self.args.num_workers
        if not self.device().startswith("cuda"):
            return 0
        ranks_here = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        return max(1, min(4, (os.cpu_count() or 2) // max(1, ranks_here) - 1))

    def models(self) -> tuple[Any, Any, Any]:
        """``(vae, tokenizer, text_encoder)`` loaded once per process (every shard job reuses them)."""
        a, device = self.args, self.device()
        key = (a.vae, a.subfolder, a.vae_class, a.revision, a.text_encoder, a.text_subfolder, a.dtype, device,
               a.tiling, a.slicing)
        if key not in _MODELS:
            _MODELS.clear()  # one set of models at a time: GPU memory is the limit
            vae = lat.configure_vae(lat.load_vae(a.vae, a.subfolder, a.dtype, a.revision, a.vae_class, device),
                                    a.tiling, a.slicing)
            tok, enc = (None, None) if a.text_encoder is None else \
                lat.load_text_encoder(a.text_encoder, a.text_subfolder, a.dtype, a.revision, device)
            _MODELS[key] = (vae, tok, enc)
        return _MODELS[key]

    def finalize(self, folder: Path, manifest: dict) -> None:
        """Store the encoded empty caption once for the dataset (what caption dropout trains on, as VideoDPO's
        ``uncond_type: empty_seq``), made by the same function, tokenizer and length as every prompt."""
        if self.args.text_encoder is None:
            return
        _, tok, enc = self.models()
        embeds, _ = C.encode_text(tok, enc, [""], self.args.max_length)
        C.write_empty_prompt_embeds(folder, embeds[0])

    # -- build --------------------------------------------------------------------------------------------------
    def build_shard(self, job: ShardJob):
        import torch
        from torch.utils.data import DataLoader
        from tqdm.auto import tqdm

        a = self.args
        vae, tok, enc = self.models()
        path = str(Path(a.in_dir) / job.params["input"])
        index = index_tar(path)
        data = ShardClips(path, job.params["input"], index, a.clip_spec(), a.reader, a.keep_videos)
        workers = min(self.num_workers(), len(data))
        loader = DataLoader(data, batch_size=None, shuffle=False, num_workers=workers, collate_fn=_identity,
                            prefetch_factor=a.prefetch if workers else None,
                            pin_memory=torch.cuda.is_available() and self.device().startswith("cuda"))
        encoder = _BatchEncoder(self, vae, tok, enc)
        window: deque[Item] = deque()
        try:
            for item in tqdm(loader, total=len(data), desc=Path(path).name, unit="sample", leave=False,
                             disable=None):
                if item.error is not None:
                    yield self.reject(InputError(*item.error))
                    continue
                window.append(item)
                encoder.push(item)
                while encoder.ready():
                    encoder.step()
                yield from self._emit(window, encoder, job, final=False)
            while encoder.pending():
                encoder.step()
            yield from self._emit(window, encoder, job, final=True)
        finally:
            data.close()  # the main process's handle when num_workers is 0

    def _emit(self, window: deque, encoder: _BatchEncoder, job: ShardJob, final: bool):
        done = []
        while window and (final or len(window[0].latents) == len(window[0].clips)):
            done.append(window.popleft())
        if not done:
            return
        embeds = encoder.prompts(done)
        for item in done:
            try:
                yield Sample(item.key, self._members(item, embeds.get(item.key), job.params["input"]))
            except InputError as exc:
                yield self.reject(exc)

    def _members(self, item: Item, embed: tuple | None, source: str) -> dict[str, Any]:
        a = self.args
        src = f"{source}:{item.key}"
        out = dict(item.members)
        js = dict(out.get("json") or {})
        vae = self.models()[0]
        meta = {**lat.vae_meta(vae, a.vae, a.revision), "kind": "sample" if a.sample else "mean"}
        first = next(iter(item.clips.values()))
        meta.update(frames=int(first.shape[1]), height=int(first.shape[2]), width=int(first.shape[3]),
                    fps=float(item.fps), text_encoder=a.text_encoder)
        if a.sample:
            meta["seeds"] = {m: lat.sample_seed(self.seed, item.key, m) for m in item.clips}
        produced = {}
        for member, (z, logvar) in item.latents.items():
            name_z, name_logvar = C.latent_members(member)
            produced[name_z] = lat.to_float16(z, src, name_z)
            if logvar is not None:
                produced[name_logvar] = lat.to_float16(logvar, src, name_logvar)
        if a.text_encoder is not None:
            if embed is None:
                C.training_text(js, src)  # raises: no caption or prompt to embed
            produced[C.PROMPT_EMBEDS] = lat.to_float16(embed[0], src, C.PROMPT_EMBEDS)
            produced[C.PROMPT_MASK] = np.asarray(embed[1], dtype=bool)
        clash = sorted(set(produced) & set(out))
        if clash:
            raise InputError(src, clash[0], "the input already has this member", "encode a video dataset, "
                             "not one that already holds latents")
        js[C.LATENTS_FIELD] = meta
        return {**out, **produced, "json": js}


class _BatchEncoder:
    """Clips queue up in arrival order; each step encodes up to ``batch_size`` clips of the head clip's shape."""

    def __init__(self, builder: LatentsBuilder, vae: Any, tokenizer: Any, text_encoder: Any):
        self.b, self.vae, self.tok, self.enc = builder, vae, tokenizer, text_encoder
        self.queue: list[tuple[Item, str]] = []
        self.cache: OrderedDict[str, tuple] = OrderedDict()

    def push(self, item: Item) -> None:
        self.queue.extend((item, m) for m in item.clips)

    def pending(self) -> bool:
        return bool(self.queue)

    def ready(self) -> bool:
        return len(self.queue) >= self.b.args.batch_size

    def step(self) -> None:
        import torch

        shape = tuple(self.queue[0][0].clips[self.queue[0][1]].shape)
        take = [q for q in self.queue if tuple(q[0].clips[q[1]].shape) == shape][: self.b.args.batch_size]
        ids = {id(q) for q in take}
        self.queue = [q for q in self.queue if id(q) not in ids]
        device = next(self.vae.parameters()).device  # copy each (pinned) clip, stack on the device
        batch = torch.stack([item.clips[m].to(device, non_blocking=True) for item, m in take])
        seeds = [lat.sample_seed(self.b.seed, item.key, m) for item, m in take] if self.b.args.sample else None
        z, logvar = lat.encode_videos(self.vae, batch, seeds)
        for k, (item, m) in enumerate(take):
            item.latents[m] = (z[k], None if logvar is None else logvar[k])

    def prompts(self, items: list[Item]) -> dict[str, tuple]:
        """``{key: (embeds [L, D], mask [L])}`` of each item's training text (its json ``caption``, else its
        ``prompt``: :func:`vidalign.contract.training_text`); each distinct text is encoded once."""
        if self.enc is None:
            return {}
        texts = {}
        for item in items:
            try:
                texts[item.key] = C.training_text(item.members.get("json"), item.key)
            except InputError:  # _members rejects the sample
                continue
        new = [p for p in dict.fromkeys(texts.values()) if p not in self.cache]
        if new:
            embeds, mask = C.encode_text(self.tok, self.enc, new, self.b.args.max_length)
            embeds, mask = embeds.float().cpu(), mask.cpu()
            for k, p in enumerate(new):
                self.cache[p] = (embeds[k], mask[k])
        for p in texts.values():
            self.cache.move_to_end(p)
        out = {key: self.cache[p] for key, p in texts.items()}
        while len(self.cache) > PROMPT_CACHE:
            self.cache.popitem(last=False)
        return out

