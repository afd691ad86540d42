"""Latent-shard streams for the diffusion trainers, resumable to the sample.

Layers, each small enough to test alone:

* **Sources** give the raw samples (``{"__key__", member: value}``) of one *stream* ``(rank, world, worker,
  num_workers)``, starting after ``skip`` samples: :class:`ShardSource` reads vidalign latent shards with
  :func:`vidalign.data.shard_paths` / :func:`vidalign.shards.iter_tar_samples` (the shard list split by rank
  and worker, or resampled forever), skipping whole shards by their tar index so resuming costs no replay;
  :class:`ListSource` serves an in-memory list; :class:`StreamSource` adapts a :func:`vidalign.data.stream`
  dataset (its own ``skip``).
* **Preparation** (:class:`PairPrep`, :class:`ClipPrep`) turns one raw sample into arrays: decodes only the
  members it needs, normalises latents as CONTRACTS.md says, draws a fresh (winner, loser) from a DSR group.
  Its randomness comes from a generator seeded by ``(seed, rank, worker, pass, index)``, so it replays exactly.
* :class:`LatentStream` (the ``IterableDataset`` the trainer's DataLoader reads) loops a source forever (passes),
  tags each sample with ``(worker, pass, index)`` and starts from a :class:`StreamState`. DataLoader workers
  deliver batches round-robin, so after resuming, worker ``w`` plays *virtual* worker ``(w + next_worker) % W``:
  batch order, content and per-sample randomness are those of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from vidalign.errors import ConfigError, InputError, VidalignError

META_KEYS = ("__worker__", "__pass__", "__index__")


# ----------------------------------------------------------------------------------------------- members
def _get(sample: dict, name: str) -> Any:
    """Member ``name`` (e.g. ``chosen_latents.npy``) decoded; raw bytes are decoded here, lazily."""
    from vidalign.format import decode_member

    value = sample[name]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return decode_member(name, bytes(value))
    return value


def _has(sample: dict, name: str) -> bool:
    return name in sample


def latents_member(video_member: str) -> str:
    """CONTRACTS rule: ``X.mp4`` → ``X_latents.npy``; the bare ``mp4`` → ``latents.npy``."""
    return f"{video_member}_latents.npy" if video_member else "latents.npy"


def _meta(sample: dict) -> dict:
    if "json" not in sample:
        raise InputError(sample.get("__key__", "<sample>"), "json", "sample has no json member",
                         "latent shards keep each sample's json; re-run vidalign encode")
    meta = _get(sample, "json")
    return meta if isinstance(meta, dict) else {}


def normalize_latents(z: np.ndarray, latents_info: dict | None, where: str = "<sample>") -> np.ndarray:
    """Raw VAE latents [C, T, h, w] → the transformer's space, float32 (CONTRACTS.md).

    Wan-style ``(z − latents_mean) / latents_std`` when both are set, else ``z · scaling_factor`` (1 when that is
    null too, as :mod:`vidalign.preprocessing.latents` decodes). A json without a ``latents`` object was not
    written by ``vidalign encode`` and is refused.
    """
    z = np.asarray(z, dtype=np.float32)
    if not isinstance(latents_info, dict):
        raise InputError(where, "json.latents", "missing: the sample does not record its VAE normalisation",
                         "make latent shards with `vidalign encode`")
    info = latents_info
    mean, std = info.get("latents_mean"), info.get("latents_std")
    if mean is not None and std is not None:
        mean = np.asarray(mean, dtype=np.float32).reshape(-1, *([1] * (z.ndim - 1)))
        std = np.asarray(std, dtype=np.float32).reshape(-1, *([1] * (z.ndim - 1)))
        if mean.shape[0] != z.shape[0] or std.shape[0] != z.shape[0]:
            raise InputError(where, "json.latents.latents_mean", f"has {mean.shape[0]} entries for {z.shape[0]} "
                             "latent channels", "re-encode with the VAE that made these latents")
        return (z - mean) / std
    scale = info.get("scaling_factor")
    return z * np.float32(1.0 if scale is None else scale)


def _prompt_embeds(sample: dict, where: str) -> np.ndarray:
    """``prompt_embeds.npy`` [L, D] as float32 with padded positions zeroed (what Wan's pipeline feeds)."""
    if not _has(sample, "prompt_embeds.npy"):
        raise InputError(where, "prompt_embeds.npy", "sample has no text embedding",
                         "encode the shards with a text encoder (vidalign encode --text-encoder ...)")
    emb = np.asarray(_get(sample, "prompt_embeds.npy"), dtype=np.float32)
    if _has(sample, "prompt_mask.npy"):
        mask = np.asarray(_get(sample, "prompt_mask.npy"), dtype=bool)
        emb = emb * mask[:, None]
    return emb


def _no_latents(sample: dict, where: str, wanted: str) -> InputError:
    members = sorted(k for k in sample if not k.startswith("__"))
    return InputError(where, wanted, f"sample has no latents (members: {', '.join(members)})",
                      "these look like video shards: encode them first with `vidalign encode`")


# ----------------------------------------------------------------------------------------------- preparation
@dataclass(frozen=True)
class PairPrep:
    """One DPO example: normalised winner/loser latents, prompt embedding, loss weight.

    ``fmt``: ``pairs`` (``<chosen>_latents.npy`` / ``<rejected>_latents.npy``), ``groups`` (SpatialAlign DSR group:
    ``c{i}_latents.npy`` and json ``candidates`` labelled winner/loser, a fresh pair drawn per use) or ``auto``.
    """

    fmt: str = "auto"
    chosen: str = "chosen"
    rejected: str = "rejected"
    weight_key: str | None = None

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict[str, Any]:
        where = str(sample.get("__key__", "<sample>"))
        meta = _meta(sample)
        fmt = self.fmt
        if fmt == "auto":
            fmt = "pairs" if _has(sample, latents_member(self.chosen)) else "groups" if "candidates" in meta else ""
        if fmt == "pairs":
            mw, ml = latents_member(self.chosen), latents_member(self.rejected)
            if not (_has(sample, mw) and _has(sample, ml)):
                raise _no_latents(sample, where, mw)
        elif fmt == "groups":
            mw, ml = self._draw(meta.get("candidates") or [], where, rng)
            if not (_has(sample, mw) and _has(sample, ml)):
                raise _no_latents(sample, where, mw)
        else:
            raise _no_latents(sample, where, latents_member(self.chosen))
        info = meta.get("latents")
        zw = normalize_latents(_get(sample, mw), info, where)
        zl = normalize_latents(_get(sample, ml), info, where)
        if zw.shape != zl.shape:
            raise InputError(where, ml, f"loser latents {zl.shape} differ from winner latents {zw.shape}",
                             "pair clips must share frames and resolution")
        weight = 1.0
        if self.weight_key:
            if self.weight_key not in meta:
                raise InputError(where, f"json.{self.weight_key}", "missing pair weight",
                                 "set pair_weight_key: null or build the pairs with weights")
            weight = float(meta[self.weight_key])
        return {"latents_w": zw, "latents_l": zl, "prompt_embeds": _prompt_embeds(sample, where),
                "weight": np.float32(weight)}

    @staticmethod
    def _draw(candidates: list, where: str, rng: np.random.Generator) -> tuple[str, str]:
        winners = [c["member"] for c in candidates if c.get("label") == "winner"]
        losers = [c["member"] for c in candidates if c.get("label") == "loser"]
        if not winners or not losers:
            raise InputError(where, "json.candidates", f"{len(winners)} winners and {len(losers)} losers",
                             "keep only prompts with at least one of each (the DSR builder does)")
        w = winners[int(rng.integers(len(winners)))]
        lo = losers[int(rng.integers(len(losers)))]
        return latents_member(w), latents_member(lo)


@dataclass(frozen=True)
class ClipPrep:
    """One SFT example: the normalised latents of ``member`` (``""``: the bare clip) and its prompt embedding."""

    member: str = ""

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict[str, Any]:
        del rng
        where = str(sample.get("__key__", "<sample>"))
        name = latents_member(self.member)
        if not _has(sample, name):
            raise _no_latents(sample, where, name)
        meta = _meta(sample)
        return {"latents": normalize_latents(_get(sample, name), meta.get("latents"), where),
                "prompt_embeds": _prompt_embeds(sample, where)}


# ----------------------------------------------------------------------------------------------- sources
@dataclass(frozen=True)
class StreamId:
    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1

    @property
    def index(self) -> int:
        return self.rank * self.num_workers + self.worker

    @property
    def total(self) -> int:
        return self.world_size * self.num_workers


class ListSource:
    """An in-memory list of sample dicts, split by stream (``samples[g::G]``) and reshuffled every pass."""

    def __init__(self, samples: Sequence[dict], shuffle: bool = True):
        self.samples = list(samples)
        self.shuffle = shuffle

    def iterate(self, sid: StreamId, pass_index: int, skip: int, seed: int) -> Iterator[dict]:
        idx = list(range(sid.index, len(self.samples), sid.total))
        if self.shuffle:
            random.Random(f"{seed}/{pass_index}/{sid.index}").shuffle(idx)
        for i in idx[skip:]:
            yield self.samples[i]

    def describe(self) -> str:
        return f"{len(self.samples)} in-memory samples"


class ShardSource:
    """vidalign latent shards (a dataset folder, glob, brace pattern or list), streamed per (rank, worker).

    ``resample``: each stream draws shards at random forever (seeded by stream), so any number of ranks and
    workers can share few shards; otherwise the sorted shard list is split ``urls[g::G]`` and its order reshuffled
    every pass. Within a shard samples come in stored order; ``skip`` passes over whole shards by counting
    their samples from the tar index, so resuming reads at most one partial shard.
    """

    def __init__(self, source: str | os.PathLike | list, config: str | None = None, split: str = "train",
                 resample: bool = False, decode: bool = False):
        from vidalign.shards import shard_paths

        self.urls = shard_paths(source, config, split, option="train_config")
        self.resample = resample
        self.decode = decode
        self._counts: dict[str, int] = {}

    def _count(self, url: str) -> int:
        from vidalign.shards import count_samples

        if url not in self._counts:
            self._counts[url] = count_samples(url)
        return self._counts[url]

    def _shard_sequence(self, sid: StreamId, pass_index: int, seed: int) -> Iterator[str]:
        if self.resample:
            rng = random.Random(f"{seed}/resample/{sid.index}/{sid.total}")
            while True:
                yield rng.choice(self.urls)
        if len(self.urls) < sid.total:
            raise ConfigError(
                f"train_data: {len(self.urls)} shards cannot feed {sid.world_size} ranks × {sid.num_workers} "
                "DataLoader workers; set data_resample: true, lower dataloader_num_workers or write more shards")
        mine = self.urls[sid.index::sid.total]
        random.Random(f"{seed}/{pass_index}/{sid.index}").shuffle(mine)
        yield from mine

    def iterate(self, sid: StreamId, pass_index: int, skip: int, seed: int) -> Iterator[dict]:
        from vidalign.shards import iter_tar_samples

        for url in self._shard_sequence(sid, pass_index, seed):
            if skip:
                n = self._count(url)
                if skip >= n:
                    skip -= n
                    continue
            for k, sample in enumerate(iter_tar_samples(url, decode=self.decode)):
                if k >= skip:
                    yield sample
            skip = 0

    def describe(self) -> str:
        return f"{len(self.urls)} shards"


class StreamSource:
    """Adapter for a :class:`vidalign.data.ShardStream` (from :func:`vidalign.data.stream`).

    The stream's own worker split is redirected to the virtual worker, and ``skip`` uses its ``skip`` (which
    reads, without decoding when ``decode=False``, what it skips). Passes map to its ``set_epoch``.
    """

    def __init__(self, stream):
        self.stream = stream

    def iterate(self, sid: StreamId, pass_index: int, skip: int, seed: int) -> Iterator[dict]:
        import copy

        s = copy.copy(self.stream)
        s.stream_id = lambda: (sid.rank, sid.world_size, sid.worker, sid.num_workers)
        s.skip = skip
        s.set_epoch(pass_index)
        yield from s

    def describe(self) -> str:
        return f"{len(self.stream.urls)} shards (vidalign.data.stream)"


def as_source(data: Any, *, config: str | None = None, split: str = "train", resample: bool = False):
    """A source from a path/URL pattern/list of shards, a ``vidalign.data.ShardStream``, a list of sample dicts,
    or an object that already has ``iterate``."""
    if hasattr(data, "iterate"):
        return data
    from vidalign.data import ShardStream

    if isinstance(data, ShardStream):
        return StreamSource(data)
    if isinstance(data, (list, tuple)) and data and isinstance(data[0], dict):
        return ListSource(data)
    if isinstance(data, (str, os.PathLike, list, tuple)):
        return ShardSource(data, config=config, split=split, resample=resample)
    raise ConfigError(f"train_data: cannot stream a {type(data).__name__}; give a latent shard folder, a glob, "
                      "a list of shards or a vidalign.data.stream(...) dataset")


# ----------------------------------------------------------------------------------------------- stream state
@dataclass
class StreamState:
    """Where each virtual worker of one rank stands: ``positions[w] = [pass, next index]``, plus the worker due
    next and the number of batches consumed (which also seeds each step's noise)."""

    num_workers: int = 1
    world_size: int = 1
    positions: list[list[int]] = field(default_factory=list)
    next_worker: int = 0
    batches: int = 0

    def __post_init__(self):
        if not self.positions:
            self.positions = [[0, 0] for _ in range(self.num_workers)]

    def consume(self, worker: torch.Tensor, pass_: torch.Tensor, index: torch.Tensor) -> None:
        """Record a batch the training loop used (its samples' tags, all from one virtual worker)."""
        w = int(worker[-1])
        self.positions[w] = [int(pass_[-1]), int(index[-1]) + 1]
        self.next_worker = (w + 1) % self.num_workers
        self.batches += 1

    def to_json(self) -> str:
        return json.dumps({"num_workers": self.num_workers, "world_size": self.world_size,
                           "positions": self.positions,
                           "next_worker": self.next_worker, "batches": self.batches})

    @classmethod
    def from_json(cls, text: str, where: str = "stream state") -> StreamState:
        try:
            d = json.loads(text)
            return cls(num_workers=int(d["num_workers"]), world_size=int(d.get("world_size", 1)), positions=[[int(a), int(b)] for a, b in d["positions"]],
                       next_worker=int(d["next_worker"]), batches=int(d["batches"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise VidalignError(f"{where}: unreadable stream state ({exc}); resume from another checkpoint") from None


class LatentStream(IterableDataset):
    """Endless prepared samples of one rank, resumable (see the module docstring).

    ``prep(sample, rng) -> dict of arrays``; each output also carries ``__worker__``, ``__pass__``, ``__index__``
    (ints) and ``__key__``. A pass that yields nothing stops the stream with an error rather than spinning.
    """

    def __init__(self, source, prep: Callable[[dict, np.random.Generator], dict], *, seed: int = 0, rank: int = 0,
                 world_size: int = 1, state: StreamState | None = None):
        self.source, self.prep, self.seed = source, prep, int(seed)
        self.rank, self.world_size = rank, world_size
        self.state = state or StreamState()

    def sample_rng(self, worker: int, pass_index: int, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.rank, worker, pass_index, index])

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        real, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        if nw != self.state.num_workers:
            raise ConfigError(f"dataloader_num_workers={nw} but the stream state has {self.state.num_workers} "
                              "workers; resume with the same dataloader_num_workers")
        vw = (real + self.state.next_worker) % nw
        pass_index, index = self.state.positions[vw]
        sid = StreamId(self.rank, self.world_size, vw, nw)
        while True:
            produced = False
            for sample in self.source.iterate(sid, pass_index, index, self.seed):
                produced = True
                out = self.prep(sample, self.sample_rng(vw, pass_index, index))
                out.update({"__worker__": vw, "__pass__": pass_index, "__index__": index,
                            "__key__": str(sample.get("__key__", index))})
                yield out
                index += 1
            if not produced and index == 0:
                raise VidalignError(f"training data: stream {sid} of {self.source.describe()} is empty; "
                                    "use fewer DataLoader workers/ranks or more samples")
            pass_index, index = pass_index + 1, 0

    def first_sample(self) -> dict:
        """Prepare this rank's first sample in the calling process: bad shards fail here, in one line."""
        sid = StreamId(self.rank, self.world_size, 0, self.state.num_workers)
        for sample in self.source.iterate(sid, 0, 0, self.seed):
            return self.prep(sample, self.sample_rng(0, 0, 0))
        raise VidalignError(f"training data: {self.source.describe()} gave no sample to rank {self.rank}")


def collate_latents(samples: list[dict]) -> dict[str, Any]:
    """Stack prepared samples: arrays → tensors (prompt embeddings zero-padded to the longest), tags → int64."""
    out: dict[str, Any] = {}
    for k in samples[0]:
        vals = [s[k] for s in samples]
        if k == "__key__":
            out[k] = vals
        elif k in META_KEYS:
            out[k] = torch.tensor(vals, dtype=torch.long)
        elif k == "prompt_embeds":
            length = max(v.shape[0] for v in vals)
            padded = np.zeros((len(vals), length, vals[0].shape[1]), dtype=np.float32)
            for i, v in enumerate(vals):
                padded[i, : v.shape[0]] = v
            out[k] = torch.from_numpy(padded)
        else:
            out[k] = torch.from_numpy(np.stack([np.asarray(v) for v in vals]))
    return out
