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
    if _QUIET and not os.environ.get("TF_CONFIG"):
        # device set-up (cuInit) inside the quiet window; not for a multi-worker run, whose
        # collective ops must be configured before the runtime is initialised
        tf.config.list_logical_devices()


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
    """Register ``cls`` for tf-keras (de)serialization under the package name ``keras_wreg``.

    The class is also known by its plain name (as Larq's ``register_keras_custom_object`` does),
    because tf-keras' legacy ``.h5`` loader looks objects up by ``class_name`` only; without it
    a model with a keras_wreg regularizer reloads from ``.keras`` but not from ``.h5``.
    """
    cls = keras.utils.register_keras_serializable(package=PACKAGE)(cls)
    keras.utils.get_custom_objects().setdefault(cls.__name__, cls)
    return cls


def register_quantizer(cls, alias=None):
    """Register a quantizer for tf-keras and for Larq's string lookup (optionally by ``alias``)."""
    cls = register(cls)
    lq.utils.register_keras_custom_object(cls)
    if alias is not None:
        keras.utils.get_custom_objects()[alias] = cls
    return cls


# --------------------------------------------------------------------------- private APIs
# Every use of a private TensorFlow / tf-keras / Larq / KerasTuner attribute in keras_wreg goes
# through the helpers below, so that an upgrade that removes or renames one breaks here, loudly,
# with a message naming it (``tests/test_compat.py`` checks every entry of PRIVATE_API).

#: the versions the private hooks below were checked against (major.minor; KerasTuner exact).
TESTED_VERSIONS = {"tensorflow": "2.21", "tf_keras": "2.21", "larq": "0.14",
                   "keras_tuner": "1.4.8"}

#: (module name, dotted attribute path, what keras_wreg uses it for)
PRIVATE_API = (
    ("tensorflow", "__internal__.distribute.interim.maybe_merge_call",
     "optimizer wrappers: run the extra update in a cross-replica merge call"),
    ("tf_keras", "optimizers.Optimizer._var_key",
     "optimizer wrappers: the per-variable key of the slot tables (distributed-aware)"),
    ("tf_keras", "optimizers.Optimizer._update_model_variables_moving_average",
     "optimizer wrappers: EMA of the model variables after the extra update"),
    ("tf_keras", "optimizers.Optimizer._overwrite_model_variables_with_average_value",
     "optimizer wrappers: EMA overwrite every `ema_overwrite_frequency` steps"),
    ("tf_keras", "optimizers.Optimizer._use_weight_decay",
     "optimizer wrappers: which variables the wrapped optimizer decays"),
    ("larq", "quantizers._BaseQuantizer",
     "quantizers: Larq's base class that adds `metrics=` / `flip_ratio`"),
    ("keras_tuner", "Tuner._build_hypermodel", "tuner: build step (tf-keras models)"),
    ("keras_tuner", "Tuner._try_build", "tuner: build step (tf-keras models)"),
    ("keras_tuner", "Tuner._get_checkpoint_fname", "tuner: per-trial checkpoint path"),
    ("keras_tuner", "Tuner._deepcopy_callbacks", "tuner: per-execution copies of callbacks"),
    ("tf_keras", "optimizers.Optimizer._update_step",
     "optimizer wrappers: the extra update fused into the wrapped optimizer's own update"),
    ("keras_tuner", "Tuner._override_compile_args",
     "tuner: compile arguments of a tf-keras model (overridden)"),
    ("keras_tuner", "engine.tuner.maybe_distribute", "tuner: the distribution strategy scope"),
)

#: private attributes of *instances* (set in ``__init__``, so not on a class):
#: (attribute, the object that has it, what keras_wreg uses it for)
PRIVATE_INSTANCE_API = (
    ("_is_graph_network", "model", "export/clustering: only functional or Sequential models "
                                   "are cloned"),
    ("_is_compiled", "model", "benchmarks: compile a model only when it is not compiled yet"),
    ("_trainable_weights", "model", "ClusterReg: the centre layer's own weights"),
    ("_non_trainable_weights", "model", "ClusterReg: the centre layer's own weights"),
    ("_variables", "optimizer", "optimizer wrappers: the variables an optimizer made itself"),
    ("_user_metrics", "compiled metrics", "the metrics a compiled model was given"),
    ("_distributed_container", "distributed variable", "optimizer wrappers: a replica's "
                                                       "variable back to its mirrored container"),
    ("_tf_uses_legacy_keras", "tensorflow module", "the legacy-Keras switch took effect"),
)


def private_instance_problems():
    """The :data:`PRIVATE_INSTANCE_API` attributes that a tiny compiled functional tf-keras
    model, its built Adam and its compiled metrics lack (an empty list when all is well; the
    attributes of distributed variables and of the tensorflow module are read with a default)."""
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(keras.optimizers.Adam(), loss="mse", metrics=["mae"])
    model.optimizer.build(model.trainable_variables)
    owners = {"model": model, "optimizer": model.optimizer,
              "compiled metrics": model.compiled_metrics}
    return [(name, owner, reason) for name, owner, reason in PRIVATE_INSTANCE_API
            if owner in owners and not hasattr(owners[owner], name)]


class PrivateAPIError(ImportError):
    """A private attribute keras_wreg relies on is missing in the installed version."""


def _version(module_name):
    import importlib

    module = importlib.import_module(module_name)
    return getattr(module, "__version__", "unknown")


def _resolve(module_name, path):
    import importlib

    obj = importlib.import_module(module_name)
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def private_api_problems(modules=None):
    """``[(module, attribute, reason, installed version)]`` for every private attribute in
    :data:`PRIVATE_API` that the installed packages lack (an empty list when all is well).

    ``modules`` restricts the check (e.g. ``("tensorflow", "tf_keras", "larq")``; KerasTuner is
    only imported when asked for, since it loads Keras 3).
    """
    problems = []
    for module_name, path, reason in PRIVATE_API:
        if modules is not None and module_name not in modules:
            continue
        try:
            _resolve(module_name, path)
        except (AttributeError, ImportError):
            problems.append((module_name, path, reason, _version(module_name)))
    return problems


def check_private_api(modules=None):
    """Raise :class:`PrivateAPIError` naming each missing private attribute and the versions
    keras_wreg was tested with."""
    problems = private_api_problems(modules)
    if problems:
        lines = [f"  {m}.{p} (installed {m} {v}; used for: {r})" for m, p, r, v in problems]
        raise PrivateAPIError(
            "keras_wreg relies on private attributes that the installed packages no longer "
            "provide:\n" + "\n".join(lines) + f"\nkeras_wreg was tested with {TESTED_VERSIONS}; "
            "install those versions (see setup.cfg) or update keras_wreg/_compat.py.")


def untested_versions(modules=("tensorflow", "tf_keras", "larq")):
    """``{module: installed version}`` for the modules whose version differs from
    :data:`TESTED_VERSIONS` (prefix match: ``2.21`` accepts ``2.21.0``)."""
    out = {}
    for name in modules:
        version = _version(name)
        if not str(version).startswith(TESTED_VERSIONS[name]):
            out[name] = version
    return out


def distributed_container(variable):
    """The distributed (mirrored) variable a per-replica component belongs to, else itself."""
    container = getattr(variable, "_distributed_container", None)
    return container() if callable(container) else variable


def var_key(optimizer, variable):
    """tf-keras' key of ``variable`` in ``optimizer``'s slot tables (distributed-aware)."""
    return optimizer._var_key(variable)


def maybe_merge_call(fn, strategy, *args, **kwargs):
    """``fn(strategy, *args)`` in cross-replica context (TensorFlow's interim merge call)."""
    return tf.__internal__.distribute.interim.maybe_merge_call(fn, strategy, *args, **kwargs)


def ema_update(optimizer, var_list):
    """tf-keras' EMA update of ``var_list`` held by ``optimizer`` (when ``use_ema``)."""
    optimizer._update_model_variables_moving_average(var_list)


def ema_overwrite(optimizer, var_list):
    """Overwrite ``var_list`` with ``optimizer``'s EMA values."""
    optimizer._overwrite_model_variables_with_average_value(var_list)


def optimizer_own_variables(optimizer):
    """The variables a tf-keras optimizer created itself (its ``_variables`` list), i.e.
    without those of an optimizer it wraps."""
    return optimizer._variables


def optimizer_built(optimizer):
    """Whether a tf-keras optimizer has created its slot variables (its ``_built`` flag)."""
    return bool(getattr(optimizer, "_built", False))


def mark_built(optimizer):
    """Set a tf-keras optimizer's ``_built`` flag (what its own ``build`` methods do)."""
    optimizer._built = True


def compiled_user_metrics(model):
    """The metrics a compiled tf-keras model was given (``compiled_metrics._user_metrics``)."""
    container = getattr(model, "compiled_metrics", None)
    if container is None:
        return None
    if not hasattr(container, "_user_metrics"):
        raise PrivateAPIError(
            "tf-keras' MetricsContainer has no `_user_metrics` any more (keras_wreg was "
            f"tested with {TESTED_VERSIONS}); pass `metrics=` to the tuner instead.")
    return container._user_metrics


#: where tf-keras' BackupAndRestore keeps the last completed epoch in its checkpoint
#: (``WorkerTrainingState`` tracks it as ``ckpt_saved_epoch``, under ``<backup_dir>/chief``)
BACKUP_EPOCH_KEY = "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"


def backup_saved_epoch(backup_dir):
    """The last epoch (0-based) a ``keras.callbacks.BackupAndRestore`` backup in
    ``backup_dir`` has completed, or None when there is no backup yet."""
    import os

    latest = tf.train.latest_checkpoint(os.path.join(str(backup_dir), "chief"))
    if latest is None:
        return None
    reader = tf.train.load_checkpoint(latest)
    if not reader.has_tensor(BACKUP_EPOCH_KEY):
        raise PrivateAPIError(
            f"The BackupAndRestore checkpoint {latest} has no {BACKUP_EPOCH_KEY!r}: tf-keras "
            f"changed its layout (keras_wreg was tested with {TESTED_VERSIONS}).")
    epoch = int(reader.get_tensor(BACKUP_EPOCH_KEY))
    return epoch if epoch >= 0 else None


def uses_weight_decay(optimizer, variable):
    """Whether ``optimizer`` decays ``variable`` (honours ``exclude_from_weight_decay``)."""
    return optimizer._use_weight_decay(variable)


#: Larq's private quantizer base class: gives ``metrics=`` and the ``flip_ratio`` metric
#: under ``larq.context.metrics_scope`` (larq.quantizers.get_kernel_quantizer fills the metrics
#: of instances of this class only).
BaseQuantizer = getattr(lq.quantizers, "_BaseQuantizer", None)
if BaseQuantizer is None:  # pragma: no cover - depends on the installed Larq
    check_private_api(("larq",))

check_private_api(("tensorflow", "tf_keras", "larq"))


__all__ = ["tf", "keras", "lq", "check_legacy_keras", "register", "register_quantizer", "PACKAGE",
           "TESTED_VERSIONS", "PRIVATE_API", "PrivateAPIError", "private_api_problems",
           "PRIVATE_INSTANCE_API", "private_instance_problems",
           "check_private_api", "untested_versions", "distributed_container", "var_key",
           "maybe_merge_call", "ema_update", "ema_overwrite",
           "uses_weight_decay", "BaseQuantizer", "BACKUP_EPOCH_KEY", "backup_saved_epoch",
           "optimizer_own_variables", "optimizer_built", "mark_built",
           "compiled_user_metrics"]
