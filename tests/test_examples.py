"""Every public class's docstring has an ``Example:`` section whose code runs as written (with
``kw``, ``lq``, ``tf``, ``keras`` and ``np`` imported, in an empty folder)."""

import contextlib
import importlib
import inspect
import io
import re

import numpy as np
import pytest

import keras_wreg as kw
import larq as lq
from keras_wreg._compat import keras, tf

MODULES = ["keras_wreg", "keras_wreg.regularizers", "keras_wreg.quantizers", "keras_wreg.layers",
           "keras_wreg.callbacks", "keras_wreg.optimizers", "keras_wreg.models",
           "keras_wreg.data", "keras_wreg.recipes", "keras_wreg.export", "keras_wreg.schedules",
           "keras_wreg.training", "keras_wreg.alternate", "keras_wreg.distillation"]
EXAMPLE = re.compile(r"\n    Example:\n        ```python\n(.*?)\n        ```\n", re.S)


def _public_classes():
    found = {}
    for name in MODULES:
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", []):
            obj = getattr(module, attr)
            if inspect.isclass(obj) and obj.__module__.startswith("keras_wreg"):
                found.setdefault(obj.__qualname__, obj)
    return found


CLASSES = _public_classes()


def test_the_scan_finds_the_public_classes():
    assert {"WReg", "CosineMomentum", "ClusterReg", "HWGQ", "Distiller", "TrainJob"} <= set(CLASSES)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_docstring_example_runs(name, tmp_path, monkeypatch):
    found = EXAMPLE.search(CLASSES[name].__doc__ or "")
    assert found, f"{name}'s docstring has no `Example:` section with a ```python block"
    code = "\n".join(line[8:] for line in found.group(1).splitlines())
    monkeypatch.chdir(tmp_path)
    keras.utils.set_random_seed(0)
    namespace = {"kw": kw, "lq": lq, "tf": tf, "keras": keras, "np": np}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, f"<{name} example>", "exec"), namespace)  # noqa: S102
