"""Seeded event-level motion prompts for AToM's three sub-tasks (the authors did not publish their generator).

- integrity: every listed action must appear ("A person steps back, jumps up, and walks forward.")
- temporal: actions in a stated order ("A person walks forward, then sits down.")
- frequency: an action a stated number of times, counts in words ("A person jumps forward two times.")

Each prompt is a pure function of ``(seed, sub_task, index)``: the same arguments give the same text on any
machine, so a prompt list can be regenerated from its recorded seed instead of being shipped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from vidalign.errors import ConfigError, require

SUB_TASKS = ("integrity", "temporal", "frequency")

# (phrase, family): two actions of one family are not combined in a prompt (no "sits down, sits down")
ACTIONS: tuple[tuple[str, str], ...] = (
    ("walks forward", "walk"), ("walks backward", "walk"), ("runs forward", "run"), ("steps back", "step"),
    ("steps to the left", "step"), ("steps to the right", "step"), ("jumps up", "jump"),
    ("jumps forward", "jump"), ("turns around", "turn"), ("sits down", "sit"), ("stands up", "stand"),
    ("waves the right hand", "wave"), ("waves the left hand", "wave"), ("kicks with the right leg", "kick"),
    ("kicks with the left leg", "kick"), ("squats down", "squat"), ("raises both arms", "raise"),
    ("claps the hands", "clap"), ("punches forward", "punch"), ("bows", "bow"), ("spins in a circle", "spin"),
    ("hops on the left foot", "hop"), ("crouches", "crouch"), ("stretches both arms out", "stretch"),
    ("throws a ball", "throw"), ("picks something up from the ground", "pick"), ("lies down", "lie"),
    ("crawls forward", "crawl"),
)
# actions that can be counted, as they read with "N times"
COUNTABLE: tuple[tuple[str, str], ...] = (
    ("jumps forward", "jump"), ("jumps up", "jump"), ("claps the hands", "clap"), ("squats down", "squat"),
    ("kicks with the right leg", "kick"), ("kicks with the left leg", "kick"), ("waves the left hand", "wave"),
    ("waves the right hand", "wave"), ("punches forward", "punch"), ("hops on the left foot", "hop"),
    ("spins around", "spin"), ("bows", "bow"), ("steps forward", "step"), ("raises both arms", "raise"),
    ("stomps the right foot", "stomp"), ("turns to the left", "turn"),
    ("does a jumping jack", "jumping jack"),
)
COUNT_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
SUBJECTS = ("A person", "A man", "A woman", "Someone")


@dataclass(frozen=True)
class MotionPrompt:
    """One generated prompt and how it was made (the fields a judge rubric and a dataset card need)."""

    text: str
    sub_task: str
    actions: tuple[str, ...]
    counts: tuple[int, ...] = field(default=())
    seed: int = 0
    index: int = 0

    def to_json(self) -> dict:
        return {"prompt": self.text, "sub_task": self.sub_task, "actions": list(self.actions),
                "counts": list(self.counts), "prompt_seed": self.seed, "prompt_index": self.index}


@dataclass(frozen=True)
class PromptConfig:
    """Sizes of the generated events; defaults follow the paper's examples."""

    min_actions: int = 2
    max_actions: int = 3
    min_count: int = 2
    max_count: int = 4
    max_counted: int = 2  # frequency prompts with more than one counted action join them with "then"

    def __post_init__(self):
        require(2 <= self.min_actions <= self.max_actions <= 5, "PromptConfig", "max_actions",
                (self.min_actions, self.max_actions), "use 2 <= min_actions <= max_actions <= 5")
        require(2 <= self.min_count <= self.max_count <= max(COUNT_WORDS), "PromptConfig", "max_count",
                (self.min_count, self.max_count), f"use 2 <= min_count <= max_count <= {max(COUNT_WORDS)}")
        require(1 <= self.max_counted <= 3, "PromptConfig", "max_counted", self.max_counted, "use 1..3")


def _pick(rng: random.Random, pool: tuple[tuple[str, str], ...], k: int) -> list[str]:
    chosen, families = [], set()
    for phrase, family in rng.sample(pool, len(pool)):
        if family not in families:
            chosen.append(phrase)
            families.add(family)
        if len(chosen) == k:
            break
    return chosen


def _join_and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else (
        f"{parts[0]} and {parts[1]}" if len(parts) == 2 else ", ".join(parts[:-1]) + f", and {parts[-1]}")


def make_prompt(sub_task: str, seed: int, index: int, config: PromptConfig | None = None) -> MotionPrompt:
    """The ``index``-th prompt of ``sub_task`` for ``seed`` (pure: same arguments, same prompt)."""
    require(sub_task in SUB_TASKS, "make_prompt", "sub_task", sub_task, f"use one of {', '.join(SUB_TASKS)}")
    cfg = config or PromptConfig()
    rng = random.Random(f"vidalign-motion-prompt:{seed}:{sub_task}:{index}")
    who = rng.choice(SUBJECTS)
    if sub_task == "frequency":
        n = rng.randint(1, cfg.max_counted)
        actions = _pick(rng, COUNTABLE, n)
        counts = [rng.randint(cfg.min_count, cfg.max_count) for _ in actions]
        parts = [f"{a} {COUNT_WORDS[c]} times" for a, c in zip(actions, counts)]
        text = f"{who} " + ", then ".join(parts) + "."
        return MotionPrompt(text, sub_task, tuple(actions), tuple(counts), seed, index)
    k = rng.randint(cfg.min_actions, cfg.max_actions)
    actions = _pick(rng, ACTIONS, k)
    if sub_task == "integrity":
        text = f"{who} {_join_and(actions)}."
    else:
        style = rng.randrange(3)
        if style == 0 or (len(actions) == 2 and style == 2):
            text = f"{who} " + ", then ".join(actions) + "."
        elif style == 1:
            text = f"{who} first {actions[0]}, then " + ", then ".join(actions[1:]) + "."
        else:
            text = f"{who} first {actions[0]}, then " + ", then ".join(actions[1:-1]) + \
                f", and finally {actions[-1]}."
    return MotionPrompt(text, sub_task, tuple(actions), (), seed, index)


def generate_prompts(sub_task: str, n: int, seed: int = 0, config: PromptConfig | None = None,
                     unique: bool = True) -> list[MotionPrompt]:
    """``n`` prompts of ``sub_task``; with ``unique`` duplicates are skipped (indices then leave gaps)."""
    require(n >= 0, "generate_prompts", "n", n, "ask for zero or more prompts")
    out, seen, index = [], set(), 0
    budget = 50 * n + 100
    while len(out) < n:
        if index >= budget:
            raise ConfigError(f"generate_prompts: only {len(out)} distinct {sub_task} prompts in {budget} tries; "
                              "lower --num-prompts or widen PromptConfig (more actions or counts)")
        p = make_prompt(sub_task, seed, index, config)
        index += 1
        if unique and p.text in seen:
            continue
        seen.add(p.text)
        out.append(p)
    return out
