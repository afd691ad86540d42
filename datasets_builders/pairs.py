"""Preference-pair logic shared by the DSR (SpatialAlign) and VidProM (VideoDPO) builders.

Everything here is a pure function over per-candidate scores, so pair choice, filters and weights are
unit-tested against SPEC §1–2 without any video. Candidates are addressed by their position ``0..N-1`` in
a prompt's candidate list; a score of ``None`` means "not scored / invalid" (DSR's K < 20 frames).

- SpatialAlign: a candidate wins at DSR ≥ threshold (0.7), loses if valid and below; pairs are every
  winner × loser, or ``k`` seeded random ones per prompt.
- VideoDPO: candidates are ranked by OmniScore; pairs are (best, worst) by default or chosen rank pairs,
  then dataset-wide filters (drop the p% smallest gaps; keep s_W > mean > s_L) and a per-pair weight,
  the paper's ``(β / sqrt(p(s_W) p(s_L)))^α`` over the score histogram or the code's ``(0.72 / (s_W s_L))^α``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from vidalign.errors import ConfigError, InputError, VidalignError, require

WINNER, LOSER, INVALID = "winner", "loser", "invalid"
VIDEODPO_CITATION = """@article{liu2024videodpo,
  title={VideoDPO: Omni-Preference Alignment for Video Diffusion Generation},
  author={Liu, Runtao and Wu, Haoyu and Ziqiang, Zheng and Wei, Chen and He, Yingqing and Pi, Renjie and Chen, Qifeng},
  journal={arXiv preprint arXiv:2412.14167},
  year={2024}
}"""
DSR_STRATEGIES = ("all", "random")
RANK_STRATEGIES = ("best-worst", "ranks", "all-ranks")
WEIGHT_FORMULAS = ("paper", "code", "none")


def is_score(x: object) -> bool:
    """A usable score: a real finite number (``None``, NaN and inf are not)."""
    return isinstance(x, (int, float, np.floating, np.integer)) and not isinstance(x, bool) and math.isfinite(x)


def stable_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed from the build seed and stable parts (prompt id, ...), independent of sharding."""
    text = ":".join([str(int(seed)), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


# ------------------------------------------------------------------------------------------ SpatialAlign
@dataclass(frozen=True)
class DsrPairConfig:
    """How a DSR prompt's candidates become winners, losers and pairs."""

    threshold: float = 0.7
    strategy: str = "all"
    k: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        require(is_score(self.threshold) and 0.0 <= self.threshold <= 1.0, "DsrPairConfig", "threshold",
                self.threshold, "give the winner DSR threshold in [0, 1] (SpatialAlign: 0.7)")
        require(self.strategy in DSR_STRATEGIES, "DsrPairConfig", "strategy", self.strategy,
                f"use one of {', '.join(DSR_STRATEGIES)}")
        require(isinstance(self.k, int) and self.k >= 1, "DsrPairConfig", "k", self.k,
                "give a positive number of random pairs per prompt")


def label_by_threshold(scores: Sequence[float | None], threshold: float = 0.7) -> list[str]:
    """``winner`` if DSR ≥ threshold, ``loser`` if valid and below, ``invalid`` when unscored."""
    return [INVALID if not is_score(s) else (WINNER if s >= threshold else LOSER) for s in scores]


def winner_loser_pairs(labels: Sequence[str], strategy: str = "all", k: int = 1,
                       seed: int | None = None) -> list[tuple[int, int]]:
    """(winner, loser) index pairs: every combination, or ``k`` distinct seeded random ones.

    ``seed`` should come from :func:`stable_seed` so a prompt draws the same pairs wherever it is built.
    """
    winners = [i for i, lab in enumerate(labels) if lab == WINNER]
    losers = [i for i, lab in enumerate(labels) if lab == LOSER]
    combos = list(itertools.product(winners, losers))
    if strategy == "all" or len(combos) <= k:
        return combos
    if strategy != "random":
        raise ConfigError(f"pair strategy {strategy!r} is invalid: use one of {', '.join(DSR_STRATEGIES)}")
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(combos), size=k, replace=False).tolist())
    return [combos[i] for i in picked]


# ------------------------------------------------------------------------------------------ VideoDPO
_RANK_PAIR_RE = re.compile(r"^(-?\d+)[-:](-?\d+)$")


def parse_rank_pairs(text: str) -> tuple[tuple[int, int], ...]:
    """``"0-3,1-2"`` (or the authors' ``"03,12"``) → ((0, 3), (1, 2)); rank 0 is the best, −1 the worst."""
    out = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        m = _RANK_PAIR_RE.match(part)
        if m:
            out.append((int(m.group(1)), int(m.group(2))))
        elif len(part) == 2 and part.isdigit():
            out.append((int(part[0]), int(part[1])))
        else:
            raise ConfigError(f"rank pair {part!r} is invalid: write pairs as BETTER-WORSE ranks, 0 = best, "
                              "-1 = worst, e.g. '0-3,1-2' (or the authors' '03,12')")
    if not out:
        raise ConfigError(f"rank pairs {text!r} are empty: give at least one pair such as '0-3'")
    return tuple(out)


def rank_order(scores: Sequence[float | None]) -> list[int]:
    """Indices of the scored candidates, best first; ties keep candidate order (stable)."""
    valid = [i for i, s in enumerate(scores) if is_score(s)]
    return sorted(valid, key=lambda i: -float(scores[i]))


def ranked_pairs(scores: Sequence[float | None], strategy: str = "best-worst",
                 ranks: Sequence[tuple[int, int]] = ((0, -1),)) -> list[tuple[int, int]]:
    """(winner, loser) candidate indices of one prompt by rank; fewer than two scored candidates → none.

    ``best-worst`` is rank (0, −1); ``ranks`` takes the given (i, j) rank pairs (negative counts from the
    worst; pairs out of range for this prompt's count are skipped); ``all-ranks`` is every i < j.
    """
    order = rank_order(scores)
    n = len(order)
    if n < 2:
        return []
    if strategy == "best-worst":
        wanted: Iterable[tuple[int, int]] = ((0, n - 1),)
    elif strategy == "ranks":
        wanted = ranks
    elif strategy == "all-ranks":
        wanted = itertools.combinations(range(n), 2)
    else:
        raise ConfigError(f"pair strategy {strategy!r} is invalid: use one of {', '.join(RANK_STRATEGIES)}")
    out, seen = [], set()
    for i, j in wanted:
        ii, jj = (i + n if i < 0 else i), (j + n if j < 0 else j)
        if not (0 <= ii < n and 0 <= jj < n) or ii == jj:
            continue
        a, b = (ii, jj) if ii < jj else (jj, ii)
        if (a, b) not in seen:
            seen.add((a, b))
            out.append((order[a], order[b]))
    return out


@dataclass(frozen=True)
class ScoredPair:
    """One candidate pair of one prompt with both scores; ``gap = s_w − s_l ≥ 0``."""

    prompt_id: str
    winner: int
    loser: int
    s_w: float
    s_l: float
    weight: float = 1.0

    @property
    def gap(self) -> float:
        return self.s_w - self.s_l


def drop_smallest_gaps(pairs: Sequence[ScoredPair], percent: float) -> tuple[list[ScoredPair], list[ScoredPair]]:
    """(kept, dropped): the ``int(n·p/100)`` pairs with the smallest gap go, as the authors' select_pairs does.

    Ties are broken by position (stable sort), so the result is deterministic.
    """
    require(is_score(percent) and 0 <= percent < 100, "pairs", "gap_filter_percent", percent,
            "give a percentage in [0, 100)")
    n_out = int(len(pairs) * percent / 100.0)
    drop = set(sorted(range(len(pairs)), key=lambda i: pairs[i].gap)[:n_out])
    return ([p for i, p in enumerate(pairs) if i not in drop], [p for i, p in enumerate(pairs) if i in drop])


def split_by_mean(pairs: Sequence[ScoredPair], mean: float) -> tuple[list[ScoredPair], list[ScoredPair]]:
    """(kept, dropped): keep pairs with s_W > mean > s_L (the mean of all scored videos, as the authors)."""
    kept = [p for p in pairs if p.s_w > mean > p.s_l]
    dropped = [p for p in pairs if not (p.s_w > mean > p.s_l)]
    return kept, dropped


# ------------------------------------------------------------------------------------------ weights
@dataclass(frozen=True)
class WeightConfig:
    """Pair re-weighting: ``paper`` (histogram, default), ``code`` (0.72 / (s_W s_L)) or ``none`` (w = 1).

    ``beta=None`` means the probability of the most frequent histogram bin (the paper's choice);
    ``alpha=0`` makes every weight 1 (plain DPO), as the released configs do.
    """

    formula: str = "paper"
    alpha: float = 1.0
    beta: float | None = None
    bin_width: float = 0.01
    code_constant: float = 0.72

    def __post_init__(self) -> None:
        require(self.formula in WEIGHT_FORMULAS, "WeightConfig", "formula", self.formula,
                f"use one of {', '.join(WEIGHT_FORMULAS)}")
        require(is_score(self.alpha) and self.alpha >= 0, "WeightConfig", "alpha", self.alpha,
                "give a non-negative exponent (paper best: 1; 0 = plain DPO)")
        require(self.beta is None or (is_score(self.beta) and self.beta > 0), "WeightConfig", "beta", self.beta,
                "give a positive β or leave it unset for the most frequent bin's probability")
        require(is_score(self.bin_width) and self.bin_width > 0, "WeightConfig", "bin_width", self.bin_width,
                "give a positive histogram bin width (paper: 0.01)")
        require(is_score(self.code_constant) and self.code_constant > 0, "WeightConfig", "code_constant",
                self.code_constant, "give a positive constant (released code: 0.72)")


@dataclass(frozen=True)
class ScoreHistogram:
    """Frequencies of scores in bins ``[k·w, (k+1)·w)``; built from every scored video of the build."""

    bin_width: float
    counts: dict[int, int] = field(default_factory=dict)
    total: int = 0

    @classmethod
    def of(cls, scores: Iterable[float], bin_width: float = 0.01) -> ScoreHistogram:
        vals = [float(s) for s in scores if is_score(s)]
        if not vals:
            raise VidalignError("the score histogram needs at least one finite score; no candidate was scored")
        return cls(bin_width, dict(Counter(score_bin(s, bin_width) for s in vals)), len(vals))

    def prob(self, score: float) -> float:
        """p(s): the fraction of scores that fall in ``score``'s bin."""
        return self.counts.get(score_bin(score, self.bin_width), 0) / self.total

    @property
    def max_prob(self) -> float:
        return max(self.counts.values()) / self.total


def score_bin(score: float, bin_width: float) -> int:
    """Bin index ``floor(s / w)``, rounded first so that 0.30 lands in bin 30 despite float error."""
    return math.floor(round(float(score) / bin_width, 9))


def paper_weight(s_w: float, s_l: float, hist: ScoreHistogram, alpha: float = 1.0,
                 beta: float | None = None) -> float:
    """``(β / sqrt(p(s_W) p(s_L)))^α`` (VideoDPO paper, eq. re-weighting); rare score pairs weigh more."""
    if alpha == 0:
        return 1.0
    p = math.sqrt(hist.prob(s_w) * hist.prob(s_l))
    if p == 0:
        raise VidalignError(f"score {s_w if hist.prob(s_w) == 0 else s_l} is not in the histogram the weights "
                            "use; build the histogram from every scored candidate")
    b = hist.max_prob if beta is None else beta
    return float((b / p) ** alpha)


def code_weight(s_w: float, s_l: float, alpha: float = 1.0, constant: float = 0.72) -> float:
    """``(0.72 / (s_W s_L))^α`` as in the released VideoDPO code (where α = 0 everywhere)."""
    if alpha == 0:
        return 1.0
    prod = s_w * s_l
    if prod <= 0:
        raise VidalignError(f"the code's weight needs s_W·s_L > 0, got {s_w!r}·{s_l!r}; use --weight paper "
                            "or --weight none for scores at or below zero")
    return float((constant / prod) ** alpha)


def pair_weights(pairs: Sequence[ScoredPair], all_scores: Iterable[float], config: WeightConfig) -> list[float]:
    """Weights of ``pairs``; the paper's histogram is built from ``all_scores`` (every scored candidate)."""
    if config.formula == "none":
        return [1.0] * len(pairs)
    if config.formula == "code":
        return [code_weight(p.s_w, p.s_l, config.alpha, config.code_constant) for p in pairs]
    hist = ScoreHistogram.of(all_scores, config.bin_width)
    return [paper_weight(p.s_w, p.s_l, hist, config.alpha, config.beta) for p in pairs]


# ------------------------------------------------------------------------------------------ candidate shards
@dataclass(frozen=True)
class Candidate:
    """One generated video of a prompt, located inside a candidate shard (read lazily by byte range)."""

    shard: str
    key: str
    prompt_id: str
    index: int
    seed: int | None
    prompt: str
    meta: dict
    offset: int
    size: int

    @property
    def source(self) -> str:
        return f"{self.shard}:{self.key}"

    def aliases(self) -> list[str]:
        """Names a tracks file or a VBench result may use for this video (see :class:`CandidateIndex`)."""
        pid, i = self.prompt_id, self.index
        return [self.key, f"{pid}/{i}", f"{pid}-{i}", f"{pid}_{i}", f"{self.prompt}-{i}"]


def _scan_shard(path: str) -> Iterator[tuple[str, dict[str, tuple[int, int]], bytes | None]]:
    """(key, {member: (offset, size)}, json bytes) per sample: the shard's index (:func:`vidalign.shards.index_tar`,
    headers only) and its json members, read by offset; videos are read later, only for the pairs kept."""
    from vidalign.shards import index_tar, read_indexed

    try:
        index = index_tar(path)
        with open(path, "rb") as f:
            for key, members in index:
                js = read_indexed(f, "json", *members["json"], decode=False, source=path) if "json" in members \
                    else None
                yield key, members, js
    except VidalignError as exc:
        raise InputError(path, None, f"candidate shard is unreadable ({exc})", "regenerate it with vidalign generate") \
            from None


def candidate_shards(source: str | Path, config: str | None = None, split: str = "train") -> list[str]:
    """Shard paths of a candidate dataset folder (config/split), a glob, or one ``.tar``."""
    from vidalign.shards import shard_paths

    return shard_paths(str(source), config, split)


def _parse_candidate(shard: str, key: str, members: dict, js: bytes | None) -> Candidate:
    src = f"{shard}:{key}"
    if js is None:
        raise InputError(src, "json", "sample has no json member", "generate candidates with vidalign generate")
    if "mp4" not in members:
        raise InputError(src, "mp4", f"sample has no mp4 member (members: {sorted(members)})",
                         "point at the candidate shards (members mp4 + json)")
    try:
        meta = json.loads(js)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(src, "json", f"not valid JSON ({exc})", "regenerate the candidate") from None
    if not isinstance(meta, dict):
        raise InputError(src, "json", f"expected an object, got {type(meta).__name__}", "regenerate the candidate")
    for fld in ("prompt_id", "prompt"):
        if not isinstance(meta.get(fld), str) or not meta[fld].strip():
            raise InputError(src, f"json.{fld}", f"missing or empty ({meta.get(fld)!r})",
                             "candidate json needs prompt, prompt_id, candidate and seed")
    cand, seed = meta.get("candidate"), meta.get("seed")
    if isinstance(cand, bool) or not isinstance(cand, int) or cand < 0:
        raise InputError(src, "json.candidate", f"{cand!r} is not a candidate index", "give an integer >= 0")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InputError(src, "json.seed", f"{seed!r} is not an integer seed", "record the integer seed")
    offset, size = members["mp4"]
    return Candidate(shard, key, meta["prompt_id"], cand, seed, meta["prompt"], meta, offset, size)


@dataclass
class CandidateIndex:
    """Every candidate of a set of shards, grouped by prompt, with a name → candidate map for tracks/VBench.

    A video is named by its sample key (``s0-00000012``), ``{prompt_id}/{i}``, ``{prompt_id}-{i}``,
    ``{prompt_id}_{i}`` or ``{prompt}-{i}`` (VBench's file naming); a path is matched by its file stem.
    """

    by_prompt: dict[str, list[Candidate]]
    rejected: list[dict]
    names: dict[str, Candidate | None] = field(default_factory=dict)

    @classmethod
    def scan(cls, shards: Sequence[str], on_error: str = "raise") -> CandidateIndex:
        by_prompt: dict[str, list[Candidate]] = {}
        prompts: dict[str, str] = {}
        seen: dict[tuple[str, int], str] = {}
        rejected: list[dict] = []
        for shard in shards:
            for key, members, js in _scan_shard(shard):
                try:
                    c = _parse_candidate(shard, key, members, js)
                    if (c.prompt_id, c.index) in seen:
                        raise InputError(c.source, "json.candidate", f"candidate {c.index} of prompt {c.prompt_id!r} "
                                         f"repeats {seen[(c.prompt_id, c.index)]}", "remove the duplicate shard")
                    if prompts.setdefault(c.prompt_id, c.prompt) != c.prompt:
                        raise InputError(c.source, "json.prompt_id", f"prompt id {c.prompt_id!r} names two "
                                         "different prompts", "give every prompt its own prompt_id")
                except InputError as exc:
                    if on_error != "skip":
                        raise
                    rejected.append({"input": exc.source, "reason": exc.reason})
                    continue
                seen[(c.prompt_id, c.index)] = c.source
                by_prompt.setdefault(c.prompt_id, []).append(c)
        for cands in by_prompt.values():
            cands.sort(key=lambda c: c.index)
        index = cls(dict(sorted(by_prompt.items())), rejected)
        for cands in index.by_prompt.values():
            for c in cands:
                for name in dict.fromkeys(c.aliases()):
                    index.names[name] = c if index.names.get(name, c) is c else None  # None: ambiguous
        return index

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_prompt.values())

    def lookup(self, name: str) -> Candidate | None:
        """The candidate a tracks/VBench name refers to; ``None`` if unknown or ambiguous."""
        p = PurePosixPath(str(name).replace("\\", "/"))
        stem = p.name[:-4] if p.name.lower().endswith(".mp4") else p.name
        tries = [str(name), stem]
        if len(p.parts) >= 2:
            tries.append(f"{p.parent.name}/{stem}")
        for t in tries:
            c = self.names.get(t)
            if c is not None:
                return c
        return None


VIDEO_CHECKS = ("header", "decode", "none")
_CONTAINERS = (b"moov", b"trak", b"mdia", b"minf", b"moof", b"traf")


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the ISO-BMFF boxes in ``data[start:end]``; raises on a bad size."""
    pos = start
    while pos < end:
        if end - pos < 8:
            raise ValueError(f"{end - pos} stray bytes at offset {pos}")
        size = int.from_bytes(data[pos:pos + 4], "big")
        kind = bytes(data[pos + 4:pos + 8])
        head = 8
        if size == 1:
            if end - pos < 16:
                raise ValueError(f"truncated large box at offset {pos}")
            size, head = int.from_bytes(data[pos + 8:pos + 16], "big"), 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end or not all(32 <= c < 127 for c in kind):
            raise ValueError(f"box {kind!r} at offset {pos} has size {size} beyond the file ({end} bytes)")
        yield kind, pos + head, pos + size
        pos += size


def check_mp4_header(data: bytes, source: str) -> None:
    """Refuse bytes that are not a complete MP4 with a video track: box sizes consistent, ``moov`` with a ``vide``
    handler and a non-empty ``mdat``. Costs microseconds, so every pair can be checked at IO speed."""
    try:
        top = {kind: (a, b) for kind, a, b in _boxes(data, 0, len(data))}
        if b"moov" not in top or b"mdat" not in top or top[b"mdat"][1] <= top[b"mdat"][0]:
            raise ValueError(f"top-level boxes {sorted(k.decode() for k in top)} lack moov or a non-empty mdat")
        handlers = []
        stack = [top[b"moov"]]
        while stack:
            a, b = stack.pop()
            for kind, ca, cb in _boxes(data, a, b):
                if kind in _CONTAINERS:
                    stack.append((ca, cb))
                elif kind == b"hdlr" and cb - ca >= 12:
                    handlers.append(bytes(data[ca + 8:ca + 12]))
        if b"vide" not in handlers:
            raise ValueError(f"no video track (handlers {handlers})")
    except ValueError as exc:
        raise InputError(source, "mp4", f"not a valid MP4 video ({exc})",
                         "regenerate it, or skip it with --on-error skip") from None


def probe_mp4(data: bytes, source: str) -> None:
    """Refuse a video that does not open or whose first frame does not decode (thorough, ~10 ms a clip)."""
    import av

    check_mp4_header(data, source)
    try:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            next(iter(container.decode(stream)))
    except (av.FFmpegError, IndexError, StopIteration, ValueError) as exc:
        raise InputError(source, "mp4", f"video does not decode ({type(exc).__name__}: {exc})",
                         "regenerate it, or skip it with --on-error skip") from None


def check_video(data: bytes, source: str, mode: str = "header") -> None:
    """``header``: container structure (default, IO speed); ``decode``: also decode the first frame; ``none``."""
    if mode == "header":
        check_mp4_header(data, source)
    elif mode == "decode":
        probe_mp4(data, source)
    elif mode != "none":
        raise ConfigError(f"check_videos={mode!r} is invalid: use one of {', '.join(VIDEO_CHECKS)}")


# ------------------------------------------------------------------------------------------ shard jobs
def video_ref(c: Candidate) -> dict:
    """A picklable pointer to a candidate's mp4 bytes, carried by a :class:`~vidalign.builder.ShardJob`."""
    return {"shard": c.shard, "offset": c.offset, "size": c.size, "source": c.source}


def read_ref(ref: dict, check: str = "header") -> bytes:
    """The mp4 bytes a :func:`video_ref` points at, checked with :func:`check_video` (``check`` mode)."""
    with open(ref["shard"], "rb") as f:
        f.seek(ref["offset"])
        data = f.read(ref["size"])
    if len(data) != ref["size"]:
        raise InputError(ref["source"], "mp4", f"shard ends after {len(data)} of {ref['size']} bytes",
                         "the candidate shard was truncated; regenerate it")
    check_video(data, ref["source"], check)
    return data


def plan_items(builder, config: str, split: str, items: list[dict], rejected: Sequence[dict] = (),
               check_videos: str = "header") -> list:
    """Shard jobs writing ``items`` (``{"videos": {member: ref}, "json": {...}}``) in order, keys 0..n-1.

    Each job carries only its own items; ``rejected`` (inputs refused while planning) ride on the first job so
    that they are listed once in the manifest.
    """
    jobs = builder.split_range(config, split, len(items))
    out = []
    for j in jobs:
        params = {"items": items[j.start:j.stop], "check_videos": check_videos}
        if j.index == 0 and rejected:
            params["rejected"] = list(rejected)
        out.append(dataclasses.replace(j, params=params))
    return out


def materialise(builder, job) -> Iterator:
    """Samples of a job made by :func:`plan_items`: read each video's bytes, attach the json."""
    from vidalign.builder import Rejected, Sample

    for r in job.params.get("rejected", ()):
        yield Rejected(input=r["input"], reason=r["reason"])
    check = job.params.get("check_videos", "header")
    for offset, item in enumerate(job.params["items"]):
        try:
            members: dict = {name: read_ref(ref, check) for name, ref in item["videos"].items()}
        except InputError as exc:
            yield builder.reject(exc)
            continue
        members["json"] = item["json"]
        yield Sample(builder.key(job.start + offset), members)


def cached_state(builder, compute, for_card: bool = False):
    """``compute()`` once per builder object. For the card (``finalize``/``card_body``, which may run in a fresh
    builder after ``merge-manifests``) inputs are re-read with ``on_error=skip``: the build already refused or
    listed every bad input, and the card must not fail on one."""
    if getattr(builder, "_state", None) is None:
        saved = builder.on_error
        builder.on_error = "skip" if for_card else saved
        try:
            builder._state = compute()
        finally:
            builder.on_error = saved
    return builder._state


def mean_mb(cands: Iterable[Candidate]) -> float:
    sizes = [c.size for c in cands]
    return (sum(sizes) / len(sizes) / 1e6) if sizes else 1.0
