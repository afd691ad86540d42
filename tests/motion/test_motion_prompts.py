"""The seeded prompt generator for AToM's three sub-tasks."""

import re

import pytest

from vidalign.datasets_builders import motion_prompts as mp
from vidalign.errors import ConfigError


def test_same_seed_same_prompts_and_different_seed_differs():
    a = mp.generate_prompts("temporal", 30, seed=7)
    assert a == mp.generate_prompts("temporal", 30, seed=7)
    assert [p.text for p in a] != [p.text for p in mp.generate_prompts("temporal", 30, seed=8)]
    assert mp.make_prompt("temporal", 7, a[3].index) == a[3]


def test_integrity_lists_every_action():
    for p in mp.generate_prompts("integrity", 50, seed=1):
        assert 2 <= len(p.actions) <= 3 and p.counts == ()
        assert all(a in p.text for a in p.actions)
        assert " and " in p.text and "then" not in p.text
        assert len({f for a, f in mp.ACTIONS if a in p.actions}) == len(p.actions)  # no repeated family


def test_temporal_orders_actions_with_then():
    for p in mp.generate_prompts("temporal", 50, seed=2):
        assert "then" in p.text
        positions = [p.text.index(a) for a in p.actions]
        assert positions == sorted(positions)


def test_frequency_counts_are_words_matching_the_record():
    words = {v: k for k, v in mp.COUNT_WORDS.items()}
    for p in mp.generate_prompts("frequency", 50, seed=3):
        found = re.findall(r"(\w+) times", p.text)
        assert [words[w] for w in found] == list(p.counts)
        assert all(2 <= c <= 4 for c in p.counts) and not re.search(r"\d", p.text)


def test_many_distinct_prompts_and_limits():
    for task in mp.SUB_TASKS:
        ps = mp.generate_prompts(task, 400, seed=0)
        assert len({p.text for p in ps}) == 400  # AToM: 400 prompts per sub-task
    one = mp.PromptConfig(min_actions=2, max_actions=2, max_counted=1, min_count=2, max_count=2)
    with pytest.raises(ConfigError, match="distinct frequency prompts"):
        mp.generate_prompts("frequency", 500, seed=0, config=one)
    with pytest.raises(ConfigError, match="sub_task"):
        mp.make_prompt("speed", 0, 0)
    with pytest.raises(ConfigError, match="max_actions"):
        mp.PromptConfig(min_actions=4, max_actions=3)
    assert mp.generate_prompts("integrity", 1, seed=5)[0].to_json()["prompt_seed"] == 5
