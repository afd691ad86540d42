"""The seeded DSR prompt generator: template, balance, determinism, uniqueness, options."""

from __future__ import annotations

import pytest

from vidalign.datasets_builders.dsr import (
    ANIMAL_VERBS,
    DsrPromptConfig,
    draw_prompt,
    generate_prompts,
    is_balanced,
    parse_types,
    type_counts,
    types_from_relations,
)
from vidalign.errors import ConfigError
from vidalign.eval.dsr_prompts_csv import read_prompts_csv, write_prompts_csv


def test_prompts_follow_the_template_and_are_balanced():
    ps = generate_prompts(DsrPromptConfig(n=40, seed=1))
    counts = type_counts(ps)
    assert set(counts) == {"LR", "LT", "RL", "RT", "TL", "TR"} and is_balanced(counts)
    assert sorted(counts.values()) == [6, 6, 7, 7, 7, 7]
    for p in ps:
        r = p.row
        assert r.prompt == (f"{r.scene}, a {r.animal} is {r.initial_SR} a {r.object}, then the {r.animal} "
                            f"{p.verb} {r.final_SR} the {r.object}.")
        assert p.verb in ANIMAL_VERBS[r.animal] and r.prompt_id == f"{r.group:05d}_{r.type}"
    assert ps[0].row.initial_SR == "on the left of" and ps[0].row.final_SR == "to the right of"
    assert len({p.row.prompt for p in ps}) == 40


def test_same_seed_same_prompts_and_prefix_stable():
    a = generate_prompts(DsrPromptConfig(n=30, seed=5))
    b = generate_prompts(DsrPromptConfig(n=30, seed=5))
    c = generate_prompts(DsrPromptConfig(n=12, seed=5))
    d = generate_prompts(DsrPromptConfig(n=30, seed=6))
    assert [p.record() for p in a] == [p.record() for p in b]
    assert [p.record() for p in a[:12]] == [p.record() for p in c]
    assert [p.row.prompt for p in a] != [p.row.prompt for p in d]
    assert draw_prompt(DsrPromptConfig(n=30, seed=5), 3).record() == a[3].record()


def test_relation_options_and_custom_vocabulary():
    assert types_from_relations("LRT") == ("LR", "LT", "RL", "RT", "TL", "TR")
    assert len(types_from_relations("LRTB")) == 12
    assert parse_types("LR,RL") == ("LR", "RL") and parse_types("LRB") == ("LR", "LB", "RL", "RB", "BL", "BR")
    ps = generate_prompts(DsrPromptConfig(n=2, seed=0, types=("LB", "BR"), animals=("owl",), objects=("pole",),
                                          verbs=("glides",), scenes=("In a barn",)))
    assert ps[0].row.prompt == "In a barn, a owl is on the left of a pole, then the owl glides to the bottom of the pole."
    assert ps[1].row.prompt == "In a barn, a owl is below a pole, then the owl glides to the right of the pole."
    assert type_counts(ps) == {"BR": 1, "LB": 1}


def test_bad_configs_and_exhausted_vocabulary_are_refused():
    for bad in ({"types": ("LL",)}, {"types": ("LX",)}, {"n": 0}, {"animals": ()}, {"animals": ("owl",)},
                {"objects": ("cat",)}, {"types": ("LR", "LR")}):
        with pytest.raises(ConfigError):
            DsrPromptConfig(**bad)
    tiny = DsrPromptConfig(n=3, types=("LR",), animals=("cat",), objects=("box",), verbs=("walks",), scenes=("Here",))
    with pytest.raises(ConfigError, match="too large for the vocabulary"):
        generate_prompts(tiny)
    with pytest.raises(ConfigError, match="relations"):
        types_from_relations("LZ")


def test_generated_set_round_trips_through_the_authors_csv(tmp_path):
    ps = generate_prompts(DsrPromptConfig(n=12, seed=2, first_group=1000))
    path = write_prompts_csv(tmp_path / "eval12.csv", [p.row for p in ps])
    rows = read_prompts_csv(path)
    assert rows == [p.row for p in ps] and rows[0].prompt_id == "01000_LR" and rows[0].group == 1000
