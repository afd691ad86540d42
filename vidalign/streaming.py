"""The one sample stream of vidalign (``vidalign.data.stream``), used by every trainer, resumable to the sample.

A :class:`ShardStream` is a ``torch.utils.data.IterableDataset`` over *units*: the shards of a dataset anywhere
(:mod:`vidalign.sources`: a local folder, a Hub id, an fsspec URL, ``pipe:`` commands), the rows of a
``datasets.Dataset``, the shards of a ``datasets.IterableDataset``, or a list of sample dicts.

* **Split.** Each process reads one stream ``g = rank · W + worker`` of ``G = world_size · W`` (ranks from
  ``torch.distributed`` or ``RANK``/``WORLD_SIZE``, workers from the DataLoader): units ``g, g + G, ...`` — every
  sample once per pass over the whole job. ``resample=True``: each stream draws units at random forever instead.
* **Shuffle.** ``shuffle_shards`` reorders each stream's units every pass; ``shuffle=N`` mixes samples through an
  N-sample buffer. Both are seeded by ``(seed, pass, stream)``.
* **Resume.** The order is a pure function of ``(units, seed, pass, stream)``, and every sample carries its
  position ``__worker__``, ``__pass__``, ``__index__``. A :class:`StreamState` records, per DataLoader worker, the
  position after the last sample the training loop used (:meth:`StreamState.consume`) and which worker is due next
  (DataLoader takes batches from its workers round-robin). A stream started from that state gives exactly the
  batches an uninterrupted one would: whole shards already consumed are skipped by their sample count (from the
  manifest or the tar headers, nothing read), the rest of a partly consumed shard is read but not decoded (with a
  shuffle buffer the pass is replayed undecoded).
* **Transform.** ``transform(sample, rng)`` (a trainer's per-sample preparation) runs in the DataLoader worker with
  ``rng`` seeded by the sample's position, so random choices (a DSR group's winner/loser draw) replay exactly.

Samples come as the shard reader gives them (``{"__key__", "__url__", "json", member: value}``), decoded unless
``decode=False`` (then members stay bytes and :func:`vidalign.contract.member` decodes what is used).
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vidalign.errors import ConfigError, VidalignError

TAGS = ("__worker__", "__pass__", "__index__")


def _dist_info(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return rank, world_size
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:
        pass
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _iterable_base():
    try:
        from torch.utils.data import IterableDataset

        return IterableDataset
    except ImportError:  # torch is a dependency; this keeps pure-data use light
        return object


# ---------------------------------------------------------------------------------------------- state
@dataclass
class StreamState:
    """Where each DataLoader worker of one rank stands: ``positions[w] = [pass, next index]``, the worker due
    next and the number of batches consumed (a trainer also seeds each step's noise with it)."""

    num_workers: int = 1
    world_size: int = 1
    positions: list[list[int]] = field(default_factory=list)
    next_worker: int = 0
    batches: int = 0

    def __post_init__(self):
        if not self.positions:
            self.positions = [[0, 0] for _ in range(self.num_workers)]
        if len(self.positions) != self.num_workers:
            raise VidalignError(f"StreamState: {len(self.positions)} positions for {self.num_workers} workers")

    def consume(self, batch: Mapping) -> None:
        """Record a batch (or one sample) the training loop used: its samples' position tags, all from one worker."""
        last = [int(np.asarray(batch[t]).reshape(-1)[-1]) for t in TAGS]
        w, p, i = last
        self.positions[w] = [p, i + 1]
        self.next_worker = (w + 1) % self.num_workers
        self.batches += 1

    def to_json(self) -> str:
        return json.dumps({"num_workers": self.num_workers, "world_size": self.world_size,
                           "positions": self.positions, "next_worker": self.next_worker, "batches": self.batches})

    @classmethod
    def from_json(cls, text: str, where: str = "stream state") -> StreamState:
        try:
            d = json.loads(text)
            return cls(num_workers=int(d["num_workers"]), world_size=int(d.get("world_size", 1)),
                       positions=[[int(a), int(b)] for a, b in d["positions"]],
                       next_worker=int(d["next_worker"]), batches=int(d["batches"]))
        except (ValueError, KeyError, TypeError, VidalignError) as exc:
            raise VidalignError(f"{where}: unreadable stream state ({exc}); resume from another checkpoint") from None


# ---------------------------------------------------------------------------------------------- units
class ShardUnits:
    """The shards of a :class:`~vidalign.sources.ShardSet`; counts from the manifest or, locally, the headers."""

    def __init__(self, shards):
        self.shards = shards
        self.n = len(shards.urls)
        self._counts = dict(enumerate(shards.counts))

    @property
    def root(self) -> str | None:
        return self.shards.root

    def count(self, i: int) -> int | None:
        if self._counts.get(i) is None and "://" not in self.shards.urls[i] and \
                not self.shards.urls[i].startswith("pipe:"):
            from vidalign.sources import count_samples

            self._counts[i] = count_samples(self.shards.urls[i])
        return self._counts.get(i)

    def read(self, i: int, members: set[str] | None) -> Iterator[dict]:
        from vidalign.sources import iter_samples

        return iter_samples(self.shards.urls[i], decode=False, members=members, size=self.shards.sizes[i])

    def describe(self) -> str:
        return self.shards.describe()


class ListUnits:
    """In-memory samples: each one a unit (split and reshuffled like shards)."""

    root = None

    def __init__(self, samples: list[Mapping], what: str = "in-memory samples"):
        self.samples, self.n, self.what = list(samples), len(samples), what

    def count(self, i: int) -> int:
        return 1

    def _row(self, i: int) -> Mapping:
        return self.samples[i]

    def read(self, i: int, members: set[str] | None) -> Iterator[dict]:
        row = dict(self._row(i))
        row.setdefault("__key__", f"{i:08d}")
        yield _keep(row, members)

    def describe(self) -> str:
        return f"{self.n} {self.what}"


def _keep(row: dict, members: set[str] | None) -> dict:
    """``row`` with only the asked ``members`` (and the ``__key__``-style fields); all of it when None."""
    return row if members is None else {k: v for k, v in row.items() if k.startswith("__") or k in members}


class DatasetUnits(ListUnits):
    """The rows of a map-style ``datasets.Dataset``, one unit each, read when their turn comes."""

    def __init__(self, ds):
        self.samples, self.n, self.what = ds, len(ds), "rows of a datasets.Dataset"

    def _row(self, i: int) -> Mapping:
        return self.samples[i]


class IterableDatasetUnits:
    """The shards of a ``datasets.IterableDataset`` (``ds.shard(num_shards, i)``); counts unknown."""

    root = None

    def __init__(self, ds):
        self.ds, self.n = ds, int(ds.num_shards)

    def count(self, i: int) -> None:
        return None

    def read(self, i: int, members: set[str] | None) -> Iterator[dict]:
        for k, row in enumerate(self.ds.shard(num_shards=self.n, index=i)):
            row = dict(row)
            row.setdefault("__key__", f"{i:05d}-{k:08d}")
            yield _keep(row, members)

    def describe(self) -> str:
        return f"{self.n} shards of a datasets.IterableDataset"


def as_units(source: Any, config: str | None = None, split: str = "train", option: str = "config"):
    """Units of a dataset given as a path/URL/Hub id/shard list, a ``datasets`` dataset or a list of samples."""
    if hasattr(source, "read") and hasattr(source, "count") and hasattr(source, "n"):
        return source
    mod = type(source).__module__ or ""
    if mod.startswith("datasets"):
        import datasets

        if isinstance(source, datasets.IterableDataset):
            return IterableDatasetUnits(source)
        if isinstance(source, datasets.Dataset):
            return DatasetUnits(source)
        raise ConfigError(f"a {type(source).__name__} holds several splits: pass one, e.g. ds['train']")
    if isinstance(source, (list, tuple)) and source and isinstance(source[0], Mapping):
        return ListUnits(source)
    if isinstance(source, (str, os.PathLike, list, tuple)) or type(source).__name__ == "ShardSet":
        from vidalign.sources import resolve

        return ShardUnits(resolve(source, config, split, option))
    raise ConfigError(f"cannot stream a {type(source).__name__}: give a dataset folder, Hub id or URL, shard paths, "
                      "a datasets Dataset/IterableDataset or a list of sample dicts")


# ---------------------------------------------------------------------------------------------- the stream
class ShardStream(_iterable_base()):
    """Samples of a dataset split by rank and DataLoader worker, shuffled and resumable (see the module docstring).

    Args:
        units: what :func:`as_units` makes (use :func:`vidalign.data.stream`).
        shuffle: sample shuffle buffer size (0: stored order within each shard).
        shuffle_shards: reorder each stream's shards every pass (seeded).
        resample: each stream draws shards at random with replacement, forever (any number of ranks × workers).
        seed: seed of every order and of the per-sample generators.
        decode: decode members (json → dict, npy → ndarray, ...; media stay bytes); False: bytes, decode lazily.
        members: keep only these members (logical names, e.g. ``json``, ``depth.npy``).
        epochs: passes to give (None: forever, as trainers stream).
        transform: ``transform(sample, rng) -> dict`` run in the worker (rng seeded by the sample's position).
        rank, world_size: override the distributed rank and world size.
        state: a :class:`StreamState` to start from (resuming).
    """

    def __init__(self, units, *, shuffle: int = 0, shuffle_shards: bool = False, resample: bool = False,
                 seed: int = 0, decode: bool = True, members: list[str] | None = None, epochs: int | None = 1,
                 transform: Callable[[dict, np.random.Generator], dict] | None = None, rank: int | None = None,
                 world_size: int | None = None, state: StreamState | None = None):
        if units.n == 0:
            raise VidalignError(f"no samples to stream: {units.describe()}")
        if shuffle < 0:
            raise ConfigError(f"shuffle={shuffle} is invalid: give a buffer size >= 0")
        self.units = units
        self.shuffle, self.shuffle_shards, self.resample = int(shuffle), bool(shuffle_shards), bool(resample)
        self.seed, self.decode, self.epochs, self.transform = int(seed), bool(decode), epochs, transform
        self.members = set(members) if members else None
        self._rank, self._world = rank, world_size
        self.state = state
        self.epoch = 0

    # -- description, root files
    @property
    def urls(self) -> list[str]:
        return list(self.units.shards.urls) if isinstance(self.units, ShardUnits) else []

    @property
    def root(self) -> str | None:
        return self.units.root

    def describe(self) -> str:
        return self.units.describe()

    def read_root_file(self, name: str) -> bytes | None:
        """A file at the dataset's root (local or remote; e.g. ``empty_prompt_embeds.npy``), or None."""
        from vidalign.sources import read_root_file

        return read_root_file(self.root, name)

    def replace(self, **changes: Any) -> ShardStream:
        """A copy with other settings (``transform``, ``state``, ``epochs``, ...), sharing the units."""
        out = copy.copy(self)
        for k, v in changes.items():
            if k in ("rank", "world_size"):
                setattr(out, "_rank" if k == "rank" else "_world", v)
            elif k == "members":
                out.members = set(v) if v else None
            elif not hasattr(out, k):
                raise ConfigError(f"ShardStream has no setting {k!r}")
            else:
                setattr(out, k, v)
        return out

    def set_epoch(self, epoch: int) -> None:
        """The pass a stream without a state starts at (its shuffles differ from pass to pass)."""
        self.epoch = int(epoch)

    def stream_id(self) -> tuple[int, int, int, int]:
        """(rank, world_size, worker id, num workers) of the calling process."""
        rank, world = _dist_info(self._rank, self._world)
        wid, nw = 0, 1
        try:
            from torch.utils.data import get_worker_info

            info = get_worker_info()
            if info is not None:
                wid, nw = info.id, info.num_workers
        except ImportError:
            pass
        return rank, world, wid, nw

    # -- the pure order
    def pass_samples(self, stream: int, streams: int, pass_index: int, skip: int = 0) -> Iterator[dict]:
        """Raw (undecoded) samples of stream ``stream`` of ``streams`` in pass ``pass_index``, the first ``skip``
        passed over: a pure function of the units, the seed and these numbers."""
        n = self.units.n
        if self.resample:
            rng = random.Random(f"{self.seed}/resample/{stream}/{streams}")
            order: Iterator[int] = (rng.randrange(n) for _ in itertools.count())
        else:
            if n < streams:
                raise ConfigError(
                    f"{self.units.describe()} cannot be split over {streams} streams (ranks × DataLoader workers): "
                    "write more shards (--samples-per-shard), use fewer workers, or resample (data_resample: true / "
                    "resample=True)")
            mine = list(range(stream, n, streams))
            if self.shuffle_shards:
                random.Random(f"{self.seed}/{pass_index}/{stream}").shuffle(mine)
            order = iter(mine)
        if self.shuffle <= 1:
            return self._read(order, skip)
        mixed = _shuffled(self._read(order, 0), self.shuffle, random.Random(f"{self.seed}/buffer/{pass_index}/{stream}"))
        return itertools.islice(mixed, skip, None)

    def _read(self, order: Iterator[int], skip: int) -> Iterator[dict]:
        for i in order:
            if skip:
                c = self.units.count(i)
                if c is not None and skip >= c:
                    skip -= c
                    continue
            for sample in self.units.read(i, self.members):
                if skip:
                    skip -= 1
                    continue
                yield sample

    def sample_rng(self, rank: int, worker: int, pass_index: int, index: int) -> np.random.Generator:
        """The generator ``transform`` gets for one sample: seeded by its position."""
        return np.random.default_rng([self.seed, rank, worker, pass_index, index])

    def _finish(self, raw: dict, rank: int, worker: int, pass_index: int, index: int) -> dict:
        sample = _decoded(raw) if self.decode else raw
        if self.transform is not None:
            out = dict(self.transform(sample, self.sample_rng(rank, worker, pass_index, index)))
            out.setdefault("__key__", str(sample.get("__key__", index)))
            sample = out
        sample.update({"__worker__": worker, "__pass__": pass_index, "__index__": index})
        return sample

    # -- iteration
    def __iter__(self) -> Iterator[dict]:
        rank, world, real, nw = self.stream_id()
        state = self.state or StreamState(num_workers=nw, world_size=world,
                                          positions=[[self.epoch, 0] for _ in range(nw)])
        if state.num_workers != nw or state.world_size != world:
            raise ConfigError(f"the stream state was written by {state.world_size} ranks × {state.num_workers} "
                              f"DataLoader workers, this run has {world} × {nw}; resume with the same world size and "
                              "dataloader_num_workers")
        worker = (real + state.next_worker) % nw
        pass_index, index = state.positions[worker]
        passes = itertools.count() if self.epochs is None else range(self.epochs)
        for _ in passes:
            produced = False
            for raw in self.pass_samples(rank * nw + worker, world * nw, pass_index, index):
                produced = True
                yield self._finish(raw, rank, worker, pass_index, index)
                index += 1
            if not produced and index == 0 and self.epochs is None:
                raise VidalignError(f"stream {rank * nw + worker} of {world * nw} over {self.describe()} is empty; "
                                    "use fewer DataLoader workers/ranks or more samples")
            pass_index, index = pass_index + 1, 0

    def first_sample(self) -> dict:
        """This rank's first sample, transformed, in the calling process: bad data fails here, in one line."""
        rank, world, _, _ = self.stream_id()
        nw = self.state.num_workers if self.state is not None else 1
        for raw in self.pass_samples(rank * nw, world * nw, 0, 0):
            return self._finish(raw, rank, 0, 0, 0)
        raise VidalignError(f"{self.describe()} gave no sample to rank {rank}")


def _decoded(sample: dict) -> dict:
    from vidalign.contract import member

    return {k: member(sample, k) if not k.startswith("__") else v for k, v in sample.items()}


def _shuffled(it: Iterator, size: int, rng: random.Random) -> Iterator:
    buf: list = []
    for x in it:
        if len(buf) < size:
            buf.append(x)
            continue
        i = rng.randrange(size)
        yield buf[i]
        buf[i] = x
    rng.shuffle(buf)
    yield from buf


def stream(source: Any, config: str | None = None, split: str = "train", *, option: str = "config",
           **kwargs: Any) -> ShardStream:
    """The one stream over a dataset anywhere (see the module docstring and :class:`ShardStream`'s options).

    ``source``: a local folder, shard path, glob or ``{a..b}`` pattern; a Hub id (``org/name``,
    ``hf://datasets/org/name[@rev]``); an fsspec URL of a root or of shards (``https://``, ``s3://``, ``gs://``);
    ``pipe:`` commands; a list of those; a ``datasets.Dataset``/``IterableDataset``; or a list of sample dicts.
    ``config``/``split`` pick shards of a root (``option`` names the caller's config option in errors).
    """
    if isinstance(source, ShardStream):
        return source.replace(**kwargs)
    return ShardStream(as_units(source, config, split, option), **kwargs)
