"""Prompt sets: the ones shipped in ``training/prompts`` (by name) or any text file with one prompt per line.

Used for VADER's training prompts and for every trainer's validation prompts.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from vidalign.errors import ConfigError


def prompt_set_names() -> list[str]:
    """Prompt sets shipped in ``training/prompts`` (a name, or any text file with one prompt per line)."""
    folder = resources.files("vidalign.training") / "prompts"
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".txt")) if folder.is_dir() else []


def read_prompts(source: str, option: str = "prompts") -> list[str]:
    """Prompts of a shipped set (by name) or a text file: one per line, blank lines and ``#`` comments skipped."""
    path = Path(source).expanduser()
    if not path.is_file():
        packaged = resources.files("vidalign.training") / "prompts" / f"{source}.txt"
        if not packaged.is_file():
            raise ConfigError(f"{option}={source!r} is neither a file nor a prompt set; use a text file with one "
                              f"prompt per line or one of: {', '.join(prompt_set_names())}")
        text = packaged.read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    prompts = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not prompts:
        raise ConfigError(f"{option}={source!r} holds no prompts; write one prompt per line")
    return prompts
