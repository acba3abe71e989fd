"""The one place that resolves which Keras keras_wreg runs on.

Larq 0.14 is built on tf-keras (Keras 2). TensorFlow >= 2.16 resolves ``tf.keras`` to Keras 3
unless the environment variable ``TF_USE_LEGACY_KERAS`` is set *before* ``tf.keras`` is first
touched. Importing this module sets the switch, then checks that ``tf.keras`` really is tf-keras;
if something already resolved ``tf.keras`` to Keras 3 it raises an ImportError that says what to do.

Everything in keras_wreg imports ``tf``, ``keras`` (= tf_keras) and ``lq`` from here.
"""

import os

_LEGACY_FLAG = "TF_USE_LEGACY_KERAS"
_TRUE_VALUES = ("1", "true", "True")

if os.environ.get(_LEGACY_FLAG) not in _TRUE_VALUES:
    os.environ[_LEGACY_FLAG] = "1"

_FIX_HINT = (
    "keras_wreg (and Larq) need tf.keras to be tf-keras (Keras 2), but tf.keras already "
    "resolved to Keras {version}. Either `import keras_wreg` first, before `import tensorflow` "
    "or anything that touches `tf.keras`, or set the environment variable TF_USE_LEGACY_KERAS=1 before starting "
    "Python (e.g. `export TF_USE_LEGACY_KERAS=1`). Install tf-keras matching TensorFlow "
    "(`pip install tf-keras==2.21.0`) if it is missing."
)

from keras_wreg import _quiet  # noqa: E402  (no TensorFlow import there)

# The keras-wreg command (not a library user): TensorFlow's C++ start-up lines are written
# before its log level is read, so they are kept off the terminal while TF loads (--debug keeps
# them); see keras_wreg._quiet.
_QUIET = _quiet.launched_as_cli() and not _quiet.debug_requested()
if _QUIET:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

with _quiet.native_stderr_silenced(_QUIET):
    import tensorflow as tf  # noqa: E402

    try:
        import tf_keras as keras  # noqa: E402
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "keras_wreg needs the tf-keras package (Keras 2 for TensorFlow): "
            "`pip install tf-keras==2.21.0`."
        ) from err
    if _QUIET:
        tf.config.list_logical_devices()  # device set-up (cuInit) inside the quiet window


def check_legacy_keras(tf_module=tf, keras_module=keras):
    """Raise ImportError unless TensorFlow's Keras is tf-keras.

    Two things are checked: TensorFlow read the switch when it was imported (it decides then
    where ``from tensorflow.keras... import`` statements, which Larq uses, resolve), and the
    ``tf.keras`` attribute resolves to ``keras_module``.
    """
    if getattr(tf_module, "_tf_uses_legacy_keras", True) is False:
        raise ImportError(_FIX_HINT.format(version="3 (tensorflow was imported before the "
                                                    "switch was set)"))
    resolved = getattr(tf_module.keras, "Model", None)
    if resolved is not keras_module.Model:
        version = getattr(tf_module.keras, "__version__", "3")
        raise ImportError(_FIX_HINT.format(version=version))


check_legacy_keras()

with _quiet.native_stderr_silenced(_QUIET):
    import larq as lq  # noqa: E402  (must come after the switch)

PACKAGE = "keras_wreg"


def register(cls):
    """Register ``cls`` for tf-keras (de)serialization under the package name ``keras_wreg``."""
    return keras.utils.register_keras_serializable(package=PACKAGE)(cls)


def register_quantizer(cls, alias=None):
    """Register a quantizer for tf-keras and for Larq's string lookup (optionally by ``alias``)."""
    cls = register(cls)
    lq.utils.register_keras_custom_object(cls)
    if alias is not None:
        keras.utils.get_custom_objects()[alias] = cls
    return cls


__all__ = ["tf", "keras", "lq", "check_legacy_keras", "register", "register_quantizer", "PACKAGE"]
