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

import hashlib
import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from vidalign.errors import ConfigError, VidalignError, require

WINNER, LOSER, INVALID = "winner", "loser", "invalid"
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
