"""Training on several devices or machines with ``tf.distribute``, and mixed precision.

Everything here uses TensorFlow's own machinery, as its guides describe it:

- :func:`make_strategy` returns the default strategy (one device), a ``MirroredStrategy`` (all
  local devices) or a ``MultiWorkerMirroredStrategy`` configured from the ``TF_CONFIG``
  environment variable (synchronous data parallelism, gradients all-reduced by TensorFlow's
  collective ops; no parameter server, no home-made gradient exchange). Build and compile the
  model inside ``strategy.scope()`` and batch the dataset with the *global* batch size; Keras
  splits each batch across the replicas.
- :func:`synchronize_batch_norm` makes every ``BatchNormalization`` layer compute its batch
  statistics over the global batch (``synchronized=True``), so that N workers with the same
  global batch train the same network as one process does.
- :func:`set_mixed_precision` sets Keras' global dtype policy (``mixed_float16`` or
  ``mixed_bfloat16``) before the model is built.

Every keras_wreg object works under these strategies: the optimizer wrappers
(:class:`~keras_wreg.CosineMomentum`, :class:`~keras_wreg.DecoupledRegularization`) apply their
extra update in a cross-replica merge call through ``extended.update``; the centres of
:class:`~keras_wreg.ClusterReg` are model weights (mirrored, their gradients all-reduced); the
callbacks that assign variables between steps (:class:`~keras_wreg.TemperatureScheduler`,
:class:`~keras_wreg.ClusterCallback`) run the same deterministic computation on every worker
and assign mirrored variables from the cross-replica context. The one exception is
:class:`~keras_wreg.AlternateUpdate` (layer-wise fine-tuning with its own optimizer outside
``Model.fit``), which its recipe refuses (``Recipe.check_distributable``).
"""

import json
import os

from keras_wreg._compat import keras, tf
from keras_wreg._validation import check_model, validate_args

STRATEGIES = ("default", "mirrored", "multi_worker")
PRECISIONS = ("float32", "float16", "bfloat16")
_POLICIES = {"float32": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


def _tf_config():
    """The parsed ``TF_CONFIG`` (``{}`` when unset); ValueError if it is not valid JSON."""
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        return {}
    try:
        config = json.loads(text)
    except ValueError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON: {err}.") from err
    if not isinstance(config, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object, got {text!r}.")
    return config


def check_tf_config(config=None):
    """Validate a ``TF_CONFIG`` dict for ``MultiWorkerMirroredStrategy``.

    It needs ``cluster`` with a non-empty ``worker`` list (and at most one ``chief``) and a
    ``task`` whose ``type`` is ``worker`` or ``chief`` and whose ``index`` exists in that list.

    Args:
        config: the dict; None reads the ``TF_CONFIG`` environment variable.

    Returns:
        ``(task_type, task_index, num_workers)``.

    Raises:
        ValueError: naming what is missing or wrong.
    """
    config = _tf_config() if config is None else config
    if not config:
        raise ValueError(
            "`strategy='multi_worker'` needs the TF_CONFIG environment variable, e.g. "
            'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}\' (see README, "Training on several '
            'machines").')
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster.get("worker") and not cluster.get("chief"):
        raise ValueError(f"TF_CONFIG needs `cluster` with a `worker` list, got {cluster!r}.")
    if not isinstance(task, dict) or task.get("type") not in ("worker", "chief"):
        raise ValueError(f"TF_CONFIG needs `task` with `type` 'worker' or 'chief', got {task!r}.")
    members = cluster.get(task["type"]) or []
    index = task.get("index", 0)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(members):
        raise ValueError(f"TF_CONFIG `task.index` must be in [0, {len(members)}) for type "
                         f"{task['type']!r}, got {index!r}.")
    if len(cluster.get("chief") or []) > 1:
        raise ValueError("TF_CONFIG may have at most one `chief`.")
    num_workers = len(cluster.get("worker") or []) + len(cluster.get("chief") or [])
    return task["type"], index, num_workers


def make_strategy(name="default"):
    """The ``tf.distribute`` strategy called ``name``.

    Create it at program start, before any other TensorFlow operation (a multi-worker strategy
    configures the collective ops of the runtime).

    Args:
        name: ``"default"`` (one device), ``"mirrored"`` (``MirroredStrategy`` over the local
            devices) or ``"multi_worker"`` (``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``).

    Returns:
        A ``tf.distribute.Strategy``.

    Raises:
        ValueError: for an unknown name, or ``multi_worker`` without a valid ``TF_CONFIG``.
    """
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}, got {name!r}.")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    check_tf_config()
    return tf.distribute.MultiWorkerMirroredStrategy()


def worker_role(strategy):
    """``(task_type, task_index, is_chief)`` of this process under ``strategy``.

    The chief is the ``chief`` task, or worker 0 when the cluster has no chief (TensorFlow's
    convention); without a cluster (default or mirrored strategy) this process is the chief.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    task_id = getattr(resolver, "task_id", None) or 0
    if task_type is None:
        return None, 0, True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief)
    return task_type, int(task_id), is_chief


def set_mixed_precision(precision):
    """Set Keras' global dtype policy; returns the previous policy name.

    Call it before building the model: layers take the policy when they are created. With a
    mixed policy layers compute in float16/bfloat16 and keep float32 variables; keras_wreg's
    builders keep their final softmax in float32. ``mixed_float16`` makes ``compile`` wrap the
    optimizer in a ``LossScaleOptimizer`` (dynamic loss scaling); bfloat16 needs none.

    Args:
        precision: ``"float32"`` (or None), ``"float16"`` or ``"bfloat16"``.

    Raises:
        ValueError: for any other value.
    """
    precision = "float32" if precision is None else precision
    if precision not in _POLICIES:
        raise ValueError(f"`mixed_precision` must be one of {PRECISIONS}, got {precision!r}.")
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(_POLICIES[precision])
    return previous


@validate_args(model=check_model)
def synchronize_batch_norm(model):
    """A copy of ``model`` whose ``BatchNormalization`` layers use cross-replica statistics.

    Under a multi-replica strategy a plain BN layer normalizes each replica's share of the batch
    with that share's statistics; with ``synchronized=True`` it all-reduces them, so the
    forward pass equals one process on the global batch. Built with ``clone_model`` (layers
    rebuilt from their configs, weights copied); returns ``model`` itself when it has no
    unsynchronized BN layer. Call it inside ``strategy.scope()``. (tf-keras does not write
    ``synchronized`` into the layer config, so a saved model loads with plain BN layers, which
    is what inference on one device needs.)
    """
    from keras_wreg.retrofit import clone_layers

    def is_plain_bn(layer):
        return (isinstance(layer, keras.layers.BatchNormalization)
                and not getattr(layer, "synchronized", False))

    return clone_layers(model, is_plain_bn, {"synchronized": True}, missing_ok=True)


__all__ = ["STRATEGIES", "PRECISIONS", "make_strategy", "check_tf_config", "worker_role",
           "set_mixed_precision", "synchronize_batch_norm"]
