"""The ``vidalign`` console script.

Each domain contributes its subcommands from a ``commands`` module listed in :data:`COMMAND_MODULES`,
through ``register(sub, groups)``: ``sub`` is the top-level subparsers object, ``groups`` maps the
group commands (``import``, ``export``, ``eval``, ``train``) to theirs. Handlers are set with
``parser.set_defaults(func=handler)`` and take the parsed namespace, returning an exit code or None.
Command modules import heavy libraries (torch, diffusers, ...) inside handlers, so ``vidalign --help``
stays fast. Any :class:`~vidalign.errors.VidalignError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from vidalign import __version__
from vidalign.errors import VidalignError

COMMAND_MODULES = [
    "vidalign.commands",
    "vidalign.simulation.commands",
    "vidalign.datasets_builders.commands",
    "vidalign.datasets_builders.motion_commands",
    "vidalign.preprocessing.commands",
    "vidalign.training.commands",
    "vidalign.training.reward_commands",
    "vidalign.eval.commands",
]

GROUPS = {
    "import": "import a dataset in another project's layout into vidalign shards",
    "export": "write a vidalign dataset in another project's layout",
    "eval": "evaluate videos (PisaBench, DSR-Score, OmniScore)",
    "train": "train on latent shards (dpo, sft, reward)",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, as argparse does, but with the usage hint kept short
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vidalign", description="Build, verify, stream, train on and evaluate data for aligning "
                     "video and motion generators.")
    parser.add_argument("--version", action="version", version=f"vidalign {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    groups = {}
    for name, help_text in GROUPS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        groups[name] = p.add_subparsers(dest=f"{name}_command", metavar="KIND", parser_class=_Parser)
        p.set_defaults(func=lambda args, _p=p: _p.print_help() or 2)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # a domain without commands yet
                continue
            raise
        module.register(sub, groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # only commands that take TRL-style `--option value` overrides (vidalign train ...) accept more
        if not hasattr(args, "overrides"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides or []) + extra
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        code = args.func(args)
    except VidalignError as exc:
        print(f"vidalign: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vidalign: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `vidalign info ... | head`: the reader left; say nothing more (as git does)
        _silence_stdout()
        return 141
    except MemoryError:
        print("vidalign: error: out of memory; an input may declare a huge array or member (check it with "
              "`vidalign verify --decode`), or use fewer --workers / a smaller batch", file=sys.stderr)
        return 2
    except OSError as exc:  # the environment (disk, permissions, network), not a bug: say what to do
        from vidalign.storage import describe_os_error

        print(f"vidalign: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # an unexpected bug: one line, full traceback only on request
        if os.environ.get("VIDALIGN_DEBUG"):
            raise
        print(f"vidalign: internal error: {type(exc).__name__}: {exc} (set VIDALIGN_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1
    return int(code or 0)


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so that Python's exit flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
