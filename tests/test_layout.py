"""The package's floors: no module imports a floor above its own, and no two packages import each
other (read from the import statements of every module, lazy imports included)."""

import ast
import itertools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "keras_wreg"

#: top-level units of keras_wreg by floor, bottom (0) to top; a unit may import its own floor
#: (without a cycle) and any floor below
FLOORS = (
    {"_compat", "_quiet", "_numerics", "_validation", "_utils", "_grid", "_introspect", "_clone"},
    {"regularizers", "quantizers", "optimizers", "layers", "data", "schedules"},
    {"models", "export", "callbacks", "distillation", "retrofit", "distribute", "training",
     "alternate"},
    {"recipes"},
    {"tuning"},
    {"cli", "__main__"},
)
FLOOR = {unit: level for level, units in enumerate(FLOORS) for unit in units}


def _unit(module):
    """``keras_wreg.callbacks.cluster`` -> ``callbacks``; ``keras_wreg`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path):
    """``[(imported keras_wreg unit, line)]`` of one source file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.split(".")[0] == "keras_wreg":
            if node.module == "keras_wreg":  # from keras_wreg import data, models
                out += [(alias.name, node.lineno) for alias in node.names]
            else:
                out.append((_unit(node.module), node.lineno))
        elif isinstance(node, ast.Import):
            out += [(_unit(a.name), node.lineno) for a in node.names
                    if a.name.split(".")[0] == "keras_wreg"]
    return out


def _graph():
    edges = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        unit = rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.stem != "__init__" \
            else "__init__"
        for target, line in _imports(path):
            if target != unit:
                edges.setdefault(unit, {}).setdefault(target, []).append(f"{rel}:{line}")
    return edges


GRAPH = _graph()


def test_every_unit_has_a_floor():
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").exists()) and p.stem != "__init__"}
    assert units - set(FLOOR) == set()


@pytest.mark.parametrize("unit", sorted(u for u in GRAPH if u != "__init__"))
def test_no_import_runs_up_the_floors(unit):
    upward = {target: where for target, where in GRAPH[unit].items()
              if target == "__init__" or FLOOR.get(target, -1) > FLOOR[unit]}
    assert upward == {}, f"{unit} (floor {FLOOR[unit]}) imports upward: {upward}"


def test_no_two_units_import_each_other():
    cycles = [(a, b) for a, b in itertools.combinations(sorted(GRAPH), 2)
              if b in GRAPH.get(a, {}) and a in GRAPH.get(b, {})]
    assert cycles == []


def test_the_scan_sees_imports():
    """The graph is read from real imports: the recipes use the models, the quantizers the
    grid math, and the cluster quantizer its regularizer."""
    assert "models" in GRAPH["recipes"]
    assert "_grid" in GRAPH["quantizers"]
    assert "regularizers" in GRAPH["quantizers"]
    assert "quantizers" not in GRAPH["regularizers"]


def test_latent_weights_are_read_in_one_place():
    """Every module reads a Larq layer's full-precision weight through ``_introspect.latent``."""
    readers = sorted(str(p.relative_to(PACKAGE.parent)) for p in
                     [*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "benchmarks").glob("*.py")]
                     if '"latent_variable"' in p.read_text() and p.name != "_introspect.py")
    assert readers == []
