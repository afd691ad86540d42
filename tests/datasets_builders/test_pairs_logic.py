"""Pair choice, filters and weights (SPEC §1–2) against hand-computed values; card plots."""

from __future__ import annotations

import math

import pytest

from vidalign.datasets_builders.pairs import (
    ScoredPair,
    ScoreHistogram,
    WeightConfig,
    code_weight,
    drop_smallest_gaps,
    label_by_threshold,
    pair_weights,
    paper_weight,
    parse_rank_pairs,
    rank_order,
    ranked_pairs,
    score_bin,
    split_by_mean,
    stable_seed,
    winner_loser_pairs,
)
from vidalign.datasets_builders.plots import (
    gap_histogram_png,
    rule_counts_markdown,
    rule_counts_png,
    score_histogram_png,
)
from vidalign.errors import ConfigError, VidalignError

PNG = b"\x89PNG\r\n\x1a\n"


def test_labels_threshold_and_invalid():
    assert label_by_threshold([0.7, 0.69999, None, float("nan"), 1.0, 0.0]) == \
        ["winner", "loser", "invalid", "invalid", "winner", "loser"]
    assert label_by_threshold([0.5], threshold=0.5) == ["winner"]


def test_winner_loser_pairs_all_and_random():
    labels = ["winner", "loser", "invalid", "winner", "loser"]
    assert winner_loser_pairs(labels) == [(0, 1), (0, 4), (3, 1), (3, 4)]
    a = winner_loser_pairs(labels, "random", k=2, seed=stable_seed(1, "p0"))
    b = winner_loser_pairs(labels, "random", k=2, seed=stable_seed(1, "p0"))
    assert a == b and len(a) == 2 and len(set(a)) == 2 and set(a) <= set(winner_loser_pairs(labels))
    assert winner_loser_pairs(labels, "random", k=10, seed=0) == winner_loser_pairs(labels)
    assert winner_loser_pairs(["winner", "winner"]) == []
    draws = {tuple(winner_loser_pairs(labels, "random", k=1, seed=stable_seed(s, "p"))) for s in range(30)}
    assert len(draws) == 4  # every pair can be drawn


def test_stable_seed_depends_on_all_parts():
    assert stable_seed(0, "a") == stable_seed(0, "a") != stable_seed(0, "b") != stable_seed(1, "b")
    assert 0 <= stable_seed(5, "x", 3) < 2**63


def test_rank_pairs_parse_and_select():
    assert parse_rank_pairs("0-3,1-2") == ((0, 3), (1, 2))
    assert parse_rank_pairs("02,03,12,13") == ((0, 2), (0, 3), (1, 2), (1, 3))  # the authors' config names
    assert parse_rank_pairs("0--1") == ((0, -1),)
    with pytest.raises(ConfigError, match="rank pair 'x1'"):
        parse_rank_pairs("0-1,x1")
    scores = [0.4, 0.9, None, 0.1, 0.6]
    assert rank_order(scores) == [1, 4, 0, 3]
    assert ranked_pairs(scores) == [(1, 3)]  # best vs worst
    assert ranked_pairs(scores, "ranks", ((0, 2), (1, 3), (0, 9))) == [(1, 0), (4, 3)]  # out of range skipped
    assert ranked_pairs(scores, "ranks", ((2, 0),)) == [(1, 0)]  # order within a rank pair does not matter
    assert len(ranked_pairs(scores, "all-ranks")) == 6
    assert ranked_pairs([0.5, None]) == [] and ranked_pairs([0.3, 0.3]) == [(0, 1)]  # ties keep candidate order


def test_gap_filter_drops_int_n_times_p_smallest():
    pairs = [ScoredPair(f"p{i}", 0, 1, 0.5 + g, 0.5) for i, g in enumerate([0.3, 0.1, 0.2, 0.1, 0.4])]
    kept, dropped = drop_smallest_gaps(pairs, 50)  # int(5 * 0.5) = 2 smallest: p1 and p3 (stable)
    assert [p.prompt_id for p in dropped] == ["p1", "p3"] and [p.prompt_id for p in kept] == ["p0", "p2", "p4"]
    assert drop_smallest_gaps(pairs, 0)[0] == pairs
    with pytest.raises(ConfigError):
        drop_smallest_gaps(pairs, 100)


def test_mean_filter_keeps_pairs_straddling_the_mean():
    pairs = [ScoredPair("a", 0, 1, 0.8, 0.2), ScoredPair("b", 0, 1, 0.8, 0.6), ScoredPair("c", 0, 1, 0.5, 0.1)]
    kept, dropped = split_by_mean(pairs, 0.5)
    assert [p.prompt_id for p in kept] == ["a"] and [p.prompt_id for p in dropped] == ["b", "c"]


def test_histogram_bins_are_robust_to_float_error():
    assert score_bin(0.3, 0.01) == 30 and score_bin(0.29, 0.01) == 29 and score_bin(0.999, 0.01) == 99
    assert score_bin(-0.005, 0.01) == -1
    h = ScoreHistogram.of([0.50, 0.505, 0.51, 0.70, None], 0.01)
    assert h.total == 4 and h.prob(0.5) == 0.5 and h.prob(0.51) == 0.25 and h.prob(0.2) == 0.0
    assert h.max_prob == 0.5


def test_paper_weight_matches_formula():
    # scores: bins 50, 50, 51, 70 -> p(0.50) = 0.5, p(0.51) = 0.25, p(0.70) = 0.25; beta = 0.5 (most frequent)
    h = ScoreHistogram.of([0.50, 0.503, 0.51, 0.70])
    assert paper_weight(0.70, 0.50, h) == pytest.approx(0.5 / math.sqrt(0.25 * 0.5))  # 1.41421
    assert paper_weight(0.70, 0.50, h, alpha=2) == pytest.approx(2.0)
    assert paper_weight(0.70, 0.51, h, beta=0.1) == pytest.approx(0.1 / 0.25)
    assert paper_weight(0.70, 0.50, h, alpha=0) == 1.0
    with pytest.raises(VidalignError, match="not in the histogram"):
        paper_weight(0.9, 0.5, h)


def test_code_weight_matches_released_formula():
    assert code_weight(0.7, 0.5) == pytest.approx(0.72 / 0.35)
    assert code_weight(0.7, 0.5, alpha=0.5) == pytest.approx(math.sqrt(0.72 / 0.35))
    assert code_weight(0.9, 0.8, alpha=0) == 1.0
    with pytest.raises(VidalignError, match="s_W·s_L > 0"):
        code_weight(0.5, -0.1)


def test_pair_weights_dispatch_and_config_validation():
    pairs = [ScoredPair("a", 0, 1, 0.70, 0.50)]
    allscores = [0.50, 0.503, 0.51, 0.70]
    assert pair_weights(pairs, allscores, WeightConfig()) == [pytest.approx(math.sqrt(2))]
    assert pair_weights(pairs, allscores, WeightConfig(formula="code")) == [pytest.approx(0.72 / 0.35)]
    assert pair_weights(pairs, allscores, WeightConfig(formula="none")) == [1.0]
    # bin width 0.1: bins 5,5,5,7 -> p(0.5) = 0.75, p(0.7) = 0.25, beta = 0.75
    assert pair_weights(pairs, allscores, WeightConfig(bin_width=0.1)) == \
        [pytest.approx(0.75 / math.sqrt(0.25 * 0.75))]
    for bad in ({"formula": "x"}, {"alpha": -1}, {"beta": 0}, {"bin_width": 0}, {"alpha": float("nan")}):
        with pytest.raises(ConfigError):
            WeightConfig(**bad)


def test_card_plots_are_pngs():
    assert score_histogram_png([0.1, 0.5, 0.52, None, float("nan")], "DSR-Score", threshold=0.7)[:8] == PNG
    assert score_histogram_png([], "OmniScore")[:8] == PNG
    assert gap_histogram_png([0.0, 0.0])[:8] == PNG
    assert rule_counts_png({"kept": 3, "dropped: no winner": 2})[:8] == PNG
    assert rule_counts_markdown({"kept": 3}) == "| rule | prompts |\n|---|---:|\n| kept | 3 |"


def test_video_checks_refuse_broken_mp4s():
    import numpy as np

    from vidalign.datasets_builders.pairs import check_video
    from vidalign.errors import InputError
    from vidalign.media import encode_mp4

    good = encode_mp4(np.zeros((3, 16, 16, 3), dtype=np.uint8), fps=8)
    for mode in ("header", "decode", "none"):
        check_video(good, "ok.mp4", mode)
    bad = {"truncated": good[:-64], "garbage": b"\x00\x00\x00\x18ftypmp42 not a video", "empty": b"",
           "no moov": good[:good.find(b"moov") - 4] + b"\x00\x00\x00\x08free"}
    for name, data in bad.items():
        for mode in ("header", "decode"):
            with pytest.raises(InputError, match=rf"^{name}.mp4: field 'mp4': not a valid MP4 video"):
                check_video(data, f"{name}.mp4", mode)
    check_video(b"anything", "x.mp4", "none")
    with pytest.raises(ConfigError):
        check_video(good, "x.mp4", "full")
