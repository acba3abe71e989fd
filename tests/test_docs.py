"""The documentation build's math conversion: every formula of every keras_wreg docstring leaves
the reStructuredText notation and reaches MathJax as ``\\(..\\)`` / ``\\[..\\]``."""

import importlib.util
import inspect
import pkgutil
from pathlib import Path

import pytest

import keras_wreg

pytest.importorskip("griffe")  # the docs extra (installed by `make docs`, before `make test`)
_SPEC = importlib.util.spec_from_file_location(
    "griffe_math", Path(__file__).resolve().parent.parent / "docs" / "griffe_math.py")
griffe_math = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(griffe_math)


def test_roles_and_both_block_forms_convert():
    text = ("A :math:`x^2` and\n\n    .. math::\n\n        a = b\n        + c\n\n    after\n"
            "    .. math::  y = Q(x)\n        + 1\n")
    out = griffe_math.rst_math_to_arithmatex(text)
    assert "\\(x^2\\)" in out
    assert "    \\[\n    a = b\n    + c\n    \\]" in out
    assert "    \\[\n    y = Q(x)\n    + 1\n    \\]" in out
    assert "after" in out and ":math:" not in out and ".. math::" not in out


def _docstrings():
    for info in pkgutil.walk_packages(keras_wreg.__path__, "keras_wreg."):
        module = importlib.import_module(info.name)
        for obj in [module, *vars(module).values()]:
            if (inspect.ismodule(obj) and obj is not module) or \
                    getattr(obj, "__module__", info.name) != info.name:
                continue
            members = [obj] + ([m for m in vars(obj).values() if callable(m)]
                               if inspect.isclass(obj) else [])
            for member in members:
                doc = inspect.getdoc(member)
                if doc and "math" in doc:
                    yield f"{info.name}.{getattr(obj, '__name__', '')}", doc


def test_every_docstring_formula_reaches_mathjax():
    left = [name for name, doc in _docstrings()
            if ":math:" in griffe_math.rst_math_to_arithmatex(doc)
            or ".. math::" in griffe_math.rst_math_to_arithmatex(doc)]
    assert left == []
    assert sum(1 for _ in _docstrings()) > 20
