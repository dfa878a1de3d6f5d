"""The packages form layers: each module imports only from its own package and the layers below.

The order is the one in README.md's layout section (and ../shared/DESIGN.md). A new import that
points upwards fails here, naming the module, the line and the two layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "alternator_migrator"

# Lowest first. Ground modules use nothing of ours; the top (commands) may use everything.
LAYERS: list[set[str]] = [
    {"errors", "metrics", "progress", "gcpause", "heap", "__init__"},
    {"config"},
    {"aws"},
    {"target"},
    {"changes"},
    {"state"},
    {"snapshot"},
    {"validate"},
    {"pipeline"},
    {"spark"},
    {"status", "loadgen", "localservers"},
    {"cutover"},  # builds on status (is the forward run caught up?)
    {"cli"},
    # Entry points: `python -m alternator_migrator` and spark-submit's application file.
    {"__main__", "spark/submit"},
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def unit_of(path: Path) -> str:
    """The layer unit of a module: its subpackage, or its own name for a top-level module."""
    rel = path.relative_to(PKG)
    if rel.as_posix() == "spark/submit.py":
        return "spark/submit"
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_units(rel: Path, source: str) -> list[tuple[int, str]]:
    """(line, unit) of every import of our own package in module ``rel``, lazy ones included."""
    here = list(rel.parts[:-1])
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, str(rel))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                parts = [*base, *(node.module.split(".") if node.module else [])]
                if not parts:  # `from . import x` at the top: x is the unit
                    found += [(node.lineno, a.name) for a in node.names]
                    continue
            elif node.module and node.module.split(".")[0] == "alternator_migrator":
                parts = node.module.split(".")[1:]
                if not parts:
                    found += [(node.lineno, a.name) for a in node.names]
                    continue
            else:
                continue
            found.append((node.lineno, parts[0]))
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "alternator_migrator" and len(parts) > 1:
                    found.append((node.lineno, parts[1]))
    return found


MODULES = sorted(PKG.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    assert MODULES, PKG
    unknown = sorted({unit_of(m) for m in MODULES} - RANK.keys())
    assert not unknown, f"modules or packages with no layer in this test: {unknown}"


def upward_imports(rel: Path, source: str) -> list[str]:
    unit = unit_of(PKG / rel)
    bad = []
    for line, used in imported_units(rel, source):
        if used == unit or used not in RANK:  # own package, or a name like __version__
            continue
        if RANK[used] >= RANK[unit]:
            bad.append(
                f"line {line}: {unit} (layer {RANK[unit]}) imports {used} (layer {RANK[used]})"
            )
    return bad


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_down(module: Path) -> None:
    rel = module.relative_to(PKG)
    bad = upward_imports(rel, module.read_text())
    assert not bad, f"{rel}: " + "; ".join(bad)


@pytest.mark.parametrize(
    "rel, source",
    [
        ("config/model.py", "from ..pipeline.replay import Replayer\n"),
        ("aws/client.py", "def f():\n    from ..state import Savepoint\n"),
        ("target/sink.py", "from alternator_migrator.snapshot.copier import plan_scan\n"),
        ("errors.py", "from .config import Config\n"),
        ("state/savepoint.py", "import alternator_migrator.pipeline.migrate\n"),
    ],
)
def test_the_checker_flags_an_upward_import(rel: str, source: str) -> None:
    assert upward_imports(Path(rel), source), f"{rel} importing upwards was not flagged"


def test_the_checker_allows_a_downward_import() -> None:
    assert upward_imports(Path("pipeline/replay.py"), "from ..changes.streams import Shard\n") == []
