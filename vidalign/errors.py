"""User-facing errors.

Every problem a user can fix (bad argument, bad file, bad field) is raised as a :class:`VidalignError`
whose message is one line naming *where* (file or option), *what* (field and value) and *the fix*.
The CLI prints it as ``vidalign: error: <message>`` and exits with status 2: never a traceback.
"""

from __future__ import annotations

from typing import Any


class VidalignError(Exception):
    """A one-line error a user can act on."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class ConfigError(VidalignError, ValueError):
    """A configuration field has a bad value."""


class InputError(VidalignError):
    """One input (file, record, sample) is bad; builders may skip it under ``--on-error skip``."""

    def __init__(self, source: Any, field: str | None, problem: str, fix: str | None = None):
        self.source = str(source)
        self.field = field
        self.problem = problem
        self.fix = fix
        where = self.source + (f": field {field!r}" if field else "")
        super().__init__(f"{where}: {problem}" + (f"; {fix}" if fix else ""))

    @property
    def reason(self) -> str:
        """The message without the source, as stored in a manifest's rejected list."""
        return (f"field {self.field!r}: " if self.field else "") + self.problem


def field_error(owner: str, field: str, value: Any, fix: str) -> ConfigError:
    """``ConfigError`` for ``owner.field = value`` with the fix spelled out."""
    return ConfigError(f"{owner}.{field}={value!r} is invalid: {fix}")


def require(cond: bool, owner: str, field: str, value: Any, fix: str) -> None:
    """Raise :func:`field_error` unless ``cond``; the one-liner every ``__post_init__`` uses."""
    if not cond:
        raise field_error(owner, field, value, fix)


_EXTRA_NOTES = {"kubric": " && pip install --no-deps kubric==0.1.1"}


def missing_extra(extra: str, module: str) -> VidalignError:
    """Error for an optional backend whose extra is not installed."""
    return VidalignError(
        f"the optional module {module!r} is not installed; install it with: "
        f"pip install 'vidalign[{extra}]'{_EXTRA_NOTES.get(extra, '')}"
    )
