"""SpatialAlign's dynamic-spatial-relation (DSR) data: prompts, and candidate groups/pairs labelled by DSR-Score.

Prompts follow the one template of SPEC §1 (``eval/dsr_prompts_csv.py`` renders it and reads/writes the
authors' CSV schema). A prompt is drawn by a seeded pure function of (seed, index): its type comes round-robin
from ``types`` (so every type gets n/len(types) prompts, ±1), then scene, animal, object and verb are drawn
from the vocabulary; a draw that repeats an earlier prompt is redrawn, so prompts are unique and the first
``n`` prompts of a bigger build are the prompts of a smaller one.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from vidalign.datasets_builders.pairs import stable_seed
from vidalign.errors import ConfigError, require
from vidalign.eval.dsr_prompts_csv import FINAL_PHRASES, INITIAL_PHRASES, RELATIONS, DSRPrompt, render_prompt

# Verbs that suit each animal (the released prompts pair e.g. ducks with "waddles", birds with "flutters").
ANIMAL_VERBS: dict[str, tuple[str, ...]] = {
    "rabbit": ("hops", "jumps", "leaps", "bounds"),
    "squirrel": ("scampers", "darts", "scurries", "climbs", "hops"),
    "cat": ("walks", "sneaks", "paces", "jumps", "prowls"),
    "dog": ("runs", "trots", "walks", "bounds", "jumps"),
    "fox": ("trots", "sprints", "dashes", "sneaks"),
    "turtle": ("crawls", "ambles", "shuffles"),
    "bird": ("flutters", "hops", "flies"),
    "duck": ("waddles", "shuffles", "steps"),
    "monkey": ("leaps", "climbs", "swings", "jumps"),
    "hamster": ("crawls", "scurries", "climbs"),
}
OBJECTS: tuple[str, ...] = (
    "stone", "lamp", "hydrant", "bucket", "chair", "bench", "crate", "log", "desk", "table", "box", "pot",
    "cushion", "sofa", "stool", "basket", "stump", "rock",
)
# Scenes are "<place> <detail>": short place phrases as in the released sets.
SCENE_PLACES: tuple[str, ...] = (
    "On a grassy field", "In a quiet forest clearing", "By a calm riverbank", "At the edge of a sunny meadow",
    "On a rocky hillside", "At a seaside dock", "Near a market square", "On a stone plaza", "Inside a long hallway",
    "By a village well", "In a maple grove", "By a pebble beach", "At a fountain plaza", "Inside a sunroom",
    "In a cozy living room", "In a quiet study", "In a bright workshop", "In a narrow attic", "In a spacious loft",
    "In a storage room", "In a library corner", "On a courtyard deck", "By a canal", "In a reading nook",
)
SCENE_DETAILS: tuple[str, ...] = (
    "with wildflowers", "with moss", "with fallen leaves", "with reeds", "at dusk", "with soft morning light",
    "with a large window", "with wooden floors", "with a patterned rug", "with potted plants", "with lanterns",
    "with tall bookshelves", "with a floor lamp", "with scattered books", "with white walls", "with brick edges",
)
DEFAULT_TYPES: tuple[str, ...] = ("LR", "LT", "RL", "RT", "TL", "TR")
MAX_REDRAWS = 1000


def types_from_relations(letters: str) -> tuple[str, ...]:
    """Every ordered pair of different relation letters, e.g. ``"LRT"`` → LR LT RL RT TL TR."""
    letters = "".join(dict.fromkeys(str(letters).upper().replace(",", "").replace(" ", "")))
    bad = [c for c in letters if c not in RELATIONS]
    if bad or len(letters) < 2:
        raise ConfigError(f"relations {letters!r} are invalid: give two or more of {''.join(RELATIONS)} "
                          "(L left, R right, T top, B below)")
    return tuple(a + b for a, b in itertools.permutations(letters, 2))


def parse_types(text: str) -> tuple[str, ...]:
    """``"LR,RL"`` → ("LR", "RL"); a bare letter set such as ``"LRTB"`` means every ordered pair of them."""
    items = [t.strip().upper() for t in str(text).split(",") if t.strip()]
    if len(items) == 1 and len(items[0]) != 2:
        return types_from_relations(items[0])
    return tuple(items)


def default_scenes() -> tuple[str, ...]:
    """Every place × detail combination."""
    return tuple(f"{p} {d}" for p, d in itertools.product(SCENE_PLACES, SCENE_DETAILS))


@dataclass(frozen=True)
class DsrPromptConfig:
    """A seeded DSR prompt set; ``verbs=None`` uses each animal's own verbs (:data:`ANIMAL_VERBS`)."""

    n: int = 120
    seed: int = 0
    types: tuple[str, ...] = DEFAULT_TYPES
    animals: tuple[str, ...] = tuple(ANIMAL_VERBS)
    objects: tuple[str, ...] = OBJECTS
    verbs: tuple[str, ...] | None = None
    scenes: tuple[str, ...] | None = None
    first_group: int = 0

    def __post_init__(self) -> None:
        require(isinstance(self.n, int) and self.n >= 1, "DsrPromptConfig", "n", self.n, "give a positive count")
        require(isinstance(self.seed, int), "DsrPromptConfig", "seed", self.seed, "give an integer seed")
        require(len(self.types) >= 1 and len(set(self.types)) == len(self.types), "DsrPromptConfig", "types",
                self.types, "give distinct relation types such as LR,RL")
        for t in self.types:
            require(isinstance(t, str) and len(t) == 2 and t[0] in RELATIONS and t[1] in RELATIONS and t[0] != t[1],
                    "DsrPromptConfig", "types", t, f"use two different letters of {''.join(RELATIONS)} "
                    "(initial then final), e.g. LR")
        for name in ("animals", "objects"):
            vals = getattr(self, name)
            require(len(vals) >= 1 and all(isinstance(v, str) and v.strip() for v in vals), "DsrPromptConfig",
                    name, vals, f"give at least one non-empty {name[:-1]}")
        require(not set(self.animals) & set(self.objects), "DsrPromptConfig", "objects",
                sorted(set(self.animals) & set(self.objects)), "an object must not also be an animal")
        if self.verbs is None:
            missing = [a for a in self.animals if a not in ANIMAL_VERBS]
            require(not missing, "DsrPromptConfig", "verbs", None,
                    f"give verbs (--verbs) for animals without default verbs: {missing}")
        else:
            require(len(self.verbs) >= 1, "DsrPromptConfig", "verbs", self.verbs, "give at least one verb")
        require(self.scenes is None or len(self.scenes) >= 1, "DsrPromptConfig", "scenes", self.scenes,
                "give at least one scene or leave it unset for the defaults")
        require(isinstance(self.first_group, int) and self.first_group >= 0, "DsrPromptConfig", "first_group",
                self.first_group, "give a non-negative integer")


@dataclass(frozen=True)
class GeneratedPrompt:
    """A :class:`DSRPrompt` with what the CSV schema omits: the verb and the seed it was drawn with."""

    row: DSRPrompt
    verb: str
    seed: int

    def record(self) -> dict:
        r = self.row
        return {"prompt": r.prompt, "prompt_id": r.prompt_id, "type": r.type, "animal": r.animal,
                "object": r.object, "scene": r.scene, "initial_SR": r.initial_SR, "final_SR": r.final_SR,
                "verb": self.verb, "group": r.group, "seed": self.seed}


def draw_prompt(config: DsrPromptConfig, index: int, attempt: int = 0) -> GeneratedPrompt:
    """Prompt ``index`` of the set (pure: depends on the config's seed, the index and the redraw attempt)."""
    seed = stable_seed(config.seed, "dsr-prompt", index, attempt)
    rng = np.random.default_rng(seed)
    ptype = config.types[index % len(config.types)]
    scenes = config.scenes or default_scenes()
    scene = scenes[int(rng.integers(len(scenes)))]
    animal = config.animals[int(rng.integers(len(config.animals)))]
    obj = config.objects[int(rng.integers(len(config.objects)))]
    verbs = config.verbs or ANIMAL_VERBS[animal]
    verb = verbs[int(rng.integers(len(verbs)))]
    group = config.first_group + index
    row = DSRPrompt(type=ptype, prompt_id=f"{group:05d}_{ptype}", animal=animal, object=obj, scene=scene,
                    initial_SR=INITIAL_PHRASES[ptype[0]], final_SR=FINAL_PHRASES[ptype[1]],
                    prompt=render_prompt(scene, animal, obj, verb, ptype[0], ptype[1]), group=group)
    return GeneratedPrompt(row, verb, seed)


def generate_prompts(config: DsrPromptConfig) -> list[GeneratedPrompt]:
    """``config.n`` distinct prompts, balanced across ``config.types``."""
    out, seen = [], set()
    for i in range(config.n):
        for attempt in range(MAX_REDRAWS):
            p = draw_prompt(config, i, attempt)
            if p.row.prompt not in seen:
                break
        else:
            raise ConfigError(f"DsrPromptConfig.n={config.n} is too large for the vocabulary: prompt {i} repeated "
                              f"an earlier one {MAX_REDRAWS} times; add scenes/animals/objects/verbs or lower n")
        seen.add(p.row.prompt)
        out.append(p)
    return out


def type_counts(prompts: Iterable[DSRPrompt | GeneratedPrompt]) -> dict[str, int]:
    """How many prompts of each type (for the card and the balance check)."""
    rows = [p.row if isinstance(p, GeneratedPrompt) else p for p in prompts]
    return dict(sorted(Counter(r.type for r in rows).items()))


def is_balanced(counts: Sequence[int] | dict[str, int]) -> bool:
    vals = list(counts.values()) if isinstance(counts, dict) else list(counts)
    return bool(vals) and max(vals) - min(vals) <= 1
