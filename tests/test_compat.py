import os
import subprocess
import sys
import textwrap


def run(code, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=240)


def test_import_sets_legacy_switch_and_tf_keras_is_tf_keras():
    proc = run("""
        import os, keras_wreg, tensorflow as tf, tf_keras, larq
        assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
        assert tf.keras.Model is tf_keras.Model
        assert issubclass(larq.layers.QuantConv2D, tf_keras.layers.Layer)
        print("OK")
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("OK")


def test_too_late_raises_clear_import_error():
    proc = run("""
        import tensorflow as tf
        tf.keras.Model  # resolves tf.keras to Keras 3
        try:
            import keras_wreg
        except ImportError as err:
            print("MESSAGE:", err)
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "MESSAGE:" in proc.stdout
    assert "TF_USE_LEGACY_KERAS=1" in proc.stdout and "before" in proc.stdout


def test_tensorflow_imported_without_switch_raises_clear_error():
    # TensorFlow fixes where `from tensorflow.keras... import` (used by Larq) resolves when it is
    # imported, so importing it first without the switch is already too late.
    proc = run("""
        import tensorflow as tf
        try:
            import keras_wreg
        except ImportError as err:
            print("MESSAGE:", err)
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "MESSAGE:" in proc.stdout and "import keras_wreg` first" in proc.stdout


def test_switch_set_in_environment_then_tensorflow_first_is_fine():
    proc = run("""
        import tensorflow as tf
        import keras_wreg, tf_keras
        assert tf.keras.Model is tf_keras.Model
        print("OK")
    """, env_extra={"TF_USE_LEGACY_KERAS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_every_private_attribute_we_use_exists_in_the_installed_versions():
    """Fails loudly (naming the attribute) when an upgrade removes a private hook."""
    from keras_wreg import _compat

    assert _compat.private_api_problems() == []
    assert _compat.private_instance_problems() == []
    assert _compat.untested_versions(("tensorflow", "tf_keras", "larq", "keras_tuner")) == {}


def test_a_missing_private_attribute_raises_a_clear_error(monkeypatch):
    import keras_tuner
    import pytest

    from keras_wreg import _compat

    monkeypatch.delattr(keras_tuner.Tuner, "_try_build")
    with pytest.raises(_compat.PrivateAPIError, match="keras_tuner.Tuner._try_build"):
        _compat.check_private_api(("keras_tuner",))


def test_backup_and_restore_checkpoint_layout(tmp_path):
    import numpy as np

    from keras_wreg._compat import backup_saved_epoch, keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    backup = keras.callbacks.BackupAndRestore(str(tmp_path), delete_checkpoint=False)
    assert backup_saved_epoch(tmp_path) is None
    model.fit(np.ones((4, 3)), np.ones(4), epochs=2, verbose=0, callbacks=[backup])
    assert backup_saved_epoch(tmp_path) == 1


def test_every_private_attribute_the_package_touches_is_listed():
    """An attribute with a leading underscore that the package reads but never defines itself
    belongs to TensorFlow, tf-keras, Larq or KerasTuner: it must be in ``_compat.PRIVATE_API``
    (class and module attributes, checked against the installed versions) or
    ``PRIVATE_INSTANCE_API``."""
    import ast
    import pathlib

    import keras_wreg
    from keras_wreg import _compat

    defined, used = set(), {}
    for path in pathlib.Path(keras_wreg.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del)):
                defined.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
                used.setdefault(node.attr, path.name)
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id in ("getattr", "hasattr") and len(node.args) > 1
                  and isinstance(node.args[1], ast.Constant)
                  and str(node.args[1].value).startswith("_")):
                used.setdefault(node.args[1].value, path.name)
    external = {name: where for name, where in used.items()
                if name not in defined and not name.startswith("__")}
    listed = {path.split(".")[-1] for _, path, _ in _compat.PRIVATE_API}
    listed |= {name for name, _, _ in _compat.PRIVATE_INSTANCE_API}
    assert {n: w for n, w in external.items() if n not in listed} == {}
    assert external  # the scan finds the hooks it should


def test_docstrings_with_latex_are_raw_strings():
    """A backslash in a plain docstring is an escape: ``\\tau`` becomes a tab, ``\\frac`` a form
    feed, ``\\alpha`` a bell. Every docstring holding LaTeX must be a raw string."""
    import io
    import re
    import tokenize
    from pathlib import Path

    bad = []
    for path in (Path(__file__).resolve().parent.parent / "keras_wreg").rglob("*.py"):
        for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            if (token.type == tokenize.STRING and token.string.startswith(('"""', "'''"))
                    and re.search(r"\\[a-zA-Z]", token.string)):
                bad.append(f"{path.name}:{token.start[0]}")
    assert bad == []
