"""Clip captions in PISA's style.

PisaBench's test prompts name the object without colour ("A toy falls.", "A ecoforms plant container falls."),
which scenes follow by default (``prompt_style="authors"``; ``"color"`` gives "A red mug falls."); with several
droppers we say "A toy duck and a jenga block fall at the same time.". The authors' training caption was the constant
"a video of an object dropping" (:data:`TRAINING_CAPTION`), available through ``caption="constant"``.
"""

from __future__ import annotations

from collections.abc import Sequence

TRAINING_CAPTION = "a video of an object dropping"
CAPTION_MODES = ("prompt", "constant")


def article(phrase: str) -> str:
    """``"a"`` or ``"an"`` for a noun phrase (by its first letter; good enough for our names)."""
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def noun_phrase(name: str, color: str | None = None) -> str:
    """``"red mug"`` (colour first, as people say it)."""
    return f"{color} {name}" if color else name


def drop_prompt(phrases: Sequence[str]) -> str:
    """PISA-style sentence for the falling objects, e.g. ``["red mug"]`` → ``"A red mug falls."``."""
    if not phrases:
        raise ValueError("a drop prompt needs at least one object")
    items = [f"{article(p)} {p}" for p in phrases]
    if len(items) == 1:
        sentence = f"{items[0]} falls."
    else:
        joined = ", ".join(items[:-1]) + f" and {items[-1]}"
        sentence = f"{joined} fall at the same time."
    return sentence[0].upper() + sentence[1:]


def caption(prompt: str, mode: str = "prompt") -> str:
    """The text stored with a clip: the scene's prompt, or the authors' constant training caption."""
    if mode == "constant":
        return TRAINING_CAPTION
    if mode != "prompt":
        raise ValueError(f"caption mode must be one of {CAPTION_MODES}, got {mode!r}")
    return prompt


__all__ = ["TRAINING_CAPTION", "CAPTION_MODES", "article", "noun_phrase", "drop_prompt", "caption"]
