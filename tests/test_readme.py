"""The README's Python blocks run as written (offline), and name real API: every ``kw.``
attribute chain resolves and every call of a keras_wreg callable binds to its signature, so the
tour cannot drift from the package."""

import ast
import inspect
import re
from pathlib import Path

import pytest

import keras_wreg as kw

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def _chain(node):
    """``kw.a.b`` as ["a", "b"], else None."""
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "kw" and names:
        return names[::-1]
    return None


def _resolve(names):
    obj = kw
    for name in names:
        obj = getattr(obj, name)
    return obj


def test_the_readme_has_python_blocks_that_use_the_package():
    blocks = _blocks()
    assert len(blocks) >= 2
    assert sum(len([n for n in ast.walk(ast.parse(b)) if _chain(n)]) for b in blocks) >= 15


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_every_kw_name_resolves_and_every_call_binds(index):
    tree = ast.parse(_blocks()[index])
    for node in ast.walk(tree):
        names = _chain(node)
        if names:
            _resolve(names)  # AttributeError names the missing one
        if isinstance(node, ast.Call) and _chain(node.func):
            target = _resolve(_chain(node.func))
            if not callable(target):
                raise AssertionError(f"kw.{'.'.join(_chain(node.func))} is not callable")
            if any(isinstance(a, ast.Starred) for a in node.args) or any(
                    k.arg is None for k in node.keywords):
                continue
            signature = inspect.signature(target)
            args = [None] * len(node.args)
            kwargs = {k.arg: None for k in node.keywords}
            try:
                signature.bind(*args, **kwargs)
            except TypeError as err:
                raise AssertionError(f"README line {node.lineno} of block {index}: "
                                     f"kw.{'.'.join(_chain(node.func))}{signature}: {err}")


def test_the_checker_catches_a_wrong_name_and_a_wrong_keyword():
    with pytest.raises(AttributeError):
        _resolve(["NoSuchRegularizer"])
    with pytest.raises(TypeError):
        inspect.signature(kw.WReg).bind(no_such_argument=None)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(_blocks())))
def test_every_python_block_runs_as_written(index, tmp_path, monkeypatch):
    """A user pasting a block gets no error (offline data: scikit-learn's digits); the
    exported model of the Deploy block agrees with Keras."""
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    exec(compile(_blocks()[index], f"README.md python block {index}", "exec"), namespace)
    if "images" in namespace:  # the Deploy block
        report = kw.export.parity(namespace["model"], "model.tflite", namespace["images"])
        assert report["agreement"] == 1.0
