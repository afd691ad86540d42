"""The benchmark scripts import most of vidalign lazily, inside the functions a figure needs (so ``--help`` and
``--skip-gpu`` stay fast); an API rename then breaks a benchmark line only when someone next runs it (as
``benchmarks/reward.py`` broke when prompt encoding moved to ``vidalign.contract``). Check every such import."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPTS = sorted(BENCH.glob("*.py"))


def vidalign_imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, module, name) of every ``from vidalign… import name`` anywhere in the script."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "vidalign":
            out += [(node.lineno, node.module, alias.name) for alias in node.names]
    return out


def test_scripts_found():
    names = {p.name for p in SCRIPTS}
    assert {"shards.py", "train.py", "reward.py", "render.py", "simulation.py"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_vidalign_import_resolves(script):
    missing = []
    for line, module, name in vidalign_imports(script):
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:  # an optional extra (e.g. kubric) may be absent: only vidalign's own names count
            if getattr(exc, "name", "") and not str(exc.name).startswith("vidalign"):
                continue
            missing.append(f"{script.name}:{line}: {module} ({exc})")
            continue
        if not hasattr(mod, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"{script.name}:{line}: {module} has no {name}")
    assert not missing, "\n".join(missing)


def test_the_check_sees_a_renamed_function(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from vidalign.training.sampling import encode_prompts\n")
    assert vidalign_imports(bad) == [(2, "vidalign.training.sampling", "encode_prompts")]
    mod = importlib.import_module("vidalign.training.sampling")
    assert not hasattr(mod, "encode_prompts")
