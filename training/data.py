"""What the diffusion trainers read: the one stream (:func:`vidalign.data.stream`) and per-sample preparation.

* :func:`training_stream`: the dataset (a local folder, Hub id, fsspec URL, shard list, ``datasets`` dataset or a
  list of sample dicts) as the stream every trainer reads: split by rank and DataLoader worker, shard order
  reshuffled every pass, passes repeated until ``max_steps``, members left undecoded until used, resumable to the
  sample (:class:`vidalign.data.StreamState`, saved in every checkpoint).
* **Preparation** (:class:`PairPrep`, :class:`ClipPrep`) turns one sample into arrays as :mod:`vidalign.contract`
  defines latent samples: decodes only the members it needs, normalises latents, zeroes padded text positions,
  reads the pair weight, draws a fresh (winner, loser) from a DSR group. It runs in the DataLoader workers as the
  stream's ``transform``, with a generator seeded by the sample's position, so it replays exactly on resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vidalign import contract as C
from vidalign.errors import ConfigError, InputError
from vidalign.streaming import TAGS as META_KEYS  # noqa: F401  (re-exported: the position tags of a sample)
from vidalign.streaming import ShardStream, stream


def training_stream(data: Any, config: str | None = None, split: str = "train", resample: bool = False,
                    shuffle: int = 0, option: str = "train_config") -> ShardStream:
    """The stream a trainer reads ``data`` through (see the module docstring)."""
    if data is None:
        raise ConfigError("train_data is not set; give a dataset folder, Hub id (org/name), URL or shard list")
    if isinstance(data, ShardStream):
        return data.replace(decode=False, epochs=None)
    return stream(data, config, split, option=option, decode=False, shuffle=shuffle, shuffle_shards=True,
                  resample=resample, epochs=None)


# ----------------------------------------------------------------------------------------------- members
def _prompt_embeds(sample: dict, where: str) -> np.ndarray:
    """``prompt_embeds.npy`` [L, D] as float32 with padded positions zeroed (what Wan's pipeline feeds)."""
    if C.PROMPT_EMBEDS not in sample:
        raise InputError(where, C.PROMPT_EMBEDS, "sample has no text embedding",
                         "encode the shards with a text encoder (vidalign encode --text-encoder ...)")
    emb = np.asarray(C.member(sample, C.PROMPT_EMBEDS), dtype=np.float32)
    if C.PROMPT_MASK in sample:
        mask = np.asarray(C.member(sample, C.PROMPT_MASK), dtype=bool)
        emb = emb * mask[:, None]
    return emb


def _no_latents(sample: dict, where: str, wanted: str) -> InputError:
    members = sorted(k for k in sample if not k.startswith("__"))
    return InputError(where, wanted, f"sample has no latents (members: {', '.join(members)})",
                      "these look like video shards: encode them first with `vidalign encode`")


def _meta(sample: dict, where: str) -> dict:
    if "json" not in sample and not any("." not in k and not k.startswith("__") for k in sample):
        raise InputError(where, "json", "sample has no json member",
                         "latent shards keep each sample's json; re-run vidalign encode")
    return C.record(sample)


def _latents(sample: dict, name: str, info: dict, where: str) -> np.ndarray:
    return C.normalize_latents(C.member(sample, name), info, where).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------------- preparation
@dataclass(frozen=True)
class PairPrep:
    """One DPO example: normalised winner/loser latents, prompt embedding, loss weight.

    ``fmt``: ``pairs`` (``<chosen>_latents.npy`` / ``<rejected>_latents.npy``), ``groups`` (SpatialAlign DSR group:
    ``c{i}_latents.npy`` and json ``candidates`` labelled winner/loser, a fresh pair drawn per use) or ``auto``.
    ``weight_key``: the json field holding the pair's loss weight (:data:`vidalign.contract.WEIGHT`), or None.
    """

    fmt: str = "auto"
    chosen: str = C.CHOSEN
    rejected: str = C.REJECTED
    weight_key: str | None = None

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict[str, Any]:
        where = str(sample.get("__key__", "<sample>"))
        meta = _meta(sample, where)
        fmt = self.fmt
        if fmt == "auto":
            fmt = "pairs" if C.latents_member(self.chosen) in sample else "groups" if "candidates" in meta else ""
        if fmt == "pairs":
            mw, ml = C.latents_member(self.chosen), C.latents_member(self.rejected)
        elif fmt == "groups":
            mw, ml = self._draw(meta.get("candidates") or [], where, rng)
        else:
            raise _no_latents(sample, where, C.latents_member(self.chosen))
        if mw not in sample or ml not in sample:
            raise _no_latents(sample, where, mw)
        info = C.latent_info(meta, where)
        zw, zl = _latents(sample, mw, info, where), _latents(sample, ml, info, where)
        if zw.shape != zl.shape:
            raise InputError(where, ml, f"loser latents {zl.shape} differ from winner latents {zw.shape}",
                             "pair clips must share frames and resolution")
        weight = C.pair_weight(meta, self.weight_key, where) if self.weight_key else 1.0
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
        return C.latents_member(w), C.latents_member(lo)


@dataclass(frozen=True)
class ClipPrep:
    """One SFT example: the normalised latents of ``member`` (``""``: the bare clip) and its prompt embedding."""

    member: str = ""

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict[str, Any]:
        del rng
        where = str(sample.get("__key__", "<sample>"))
        name = C.latents_member(self.member)
        if name not in sample:
            raise _no_latents(sample, where, name)
        info = C.latent_info(_meta(sample, where), where)
        return {"latents": _latents(sample, name, info, where), "prompt_embeds": _prompt_embeds(sample, where)}


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
