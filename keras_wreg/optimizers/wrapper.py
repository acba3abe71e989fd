r"""The shared base of keras_wreg's optimizer wrappers.

A wrapper takes any new-style tf-keras optimizer (``inner``), lets it take its own step, and then
applies an *extra* update to a selected subset of the variables (Larq's binary kernels by default):

.. math::

    w \leftarrow \mathrm{inner\_step}(w, g) \quad\text{then}\quad w \leftarrow \mathrm{extra}(w)

The extra update runs in a cross-replica merge call through ``extended.update`` so it is correct
under ``tf.distribute`` strategies. The wrapper's own state lives in optimizer variables (its
``iterations`` and per-variable buffers), the inner optimizer is a tracked child, so checkpoints
and ``.keras`` files restore both.
"""

import re

from keras_wreg._compat import keras, tf
from keras_wreg._validation import check_iterable, check_optional, check_str
from keras_wreg._utils import flat_layers

BINARY_KERNEL_QUANTIZERS = (
    "SteSign",
    "ApproxSign",
    "SwishSign",
    "MagnitudeAwareSign",
    "ScaledSign",
)


def is_binary_quantizer(quantizer):
    """Whether a Larq quantizer (object, function or name) maps to {-a, +a}."""
    if quantizer is None:
        return False
    if isinstance(quantizer, str):
        name = quantizer
    else:
        name = getattr(quantizer, "__name__", None) or type(quantizer).__name__
    normalized = name.replace("_", "").lower()
    return any(normalized == q.lower() for q in BINARY_KERNEL_QUANTIZERS)


def binary_kernels(model):
    """The kernels of every Larq layer in ``model`` whose kernel quantizer is binary."""
    kernels = []
    for layer in flat_layers(model):
        if not is_binary_quantizer(getattr(layer, "kernel_quantizer", None)):
            continue
        for attr in ("kernel", "depthwise_kernel", "pointwise_kernel"):
            var = getattr(layer, attr, None)
            if var is not None:
                kernels.append(var)
    return kernels


def binary_kernel_names(model):
    """Names of :func:`binary_kernels` (usable as a wrapper's ``select=...``)."""
    return [plain_name(v) for v in binary_kernels(model)]


def variable_quantizer(var):
    """The Larq quantizer attached to a (possibly distributed) QuantizedVariable, else None."""
    quantizer = getattr(var, "quantizer", None)
    if quantizer is None and hasattr(var, "_distributed_container"):
        quantizer = getattr(var._distributed_container(), "quantizer", None)
    return quantizer


def plain_name(var):
    """Variable name without the ``:0`` suffix and without a replica suffix."""
    name = getattr(var, "_shared_name", None) or var.name
    return name.split(":")[0]


def _as_pattern(select):
    if isinstance(select, str):
        return select
    if not select:
        return r"(?!)"  # matches nothing
    return "^(" + "|".join(re.escape(s.split(":")[0]) for s in select) + ")$"


def _validate_select(select):
    if isinstance(select, str):
        if select != "auto":
            try:
                re.compile(select)
            except re.error as err:
                raise ValueError(f"`select` is not a valid regex: {select!r} ({err}).") from err
        return select
    return check_iterable(select, "select", item_types=str, item_name="variable name")


def resolve_inner_optimizer(optimizer, custom_objects=None):
    """A new-style tf-keras optimizer from an instance, a config dict or a name; else TypeError."""
    if isinstance(optimizer, dict):
        optimizer = keras.optimizers.deserialize(
            optimizer, custom_objects=custom_objects, use_legacy_optimizer=False)
    elif isinstance(optimizer, str):
        optimizer = keras.optimizers.get(optimizer, use_legacy_optimizer=False)
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(
            "`optimizer` must be a new-style tf-keras optimizer "
            "(tf.keras.optimizers.Optimizer, e.g. Adam); got "
            f"{type(optimizer).__name__}. Legacy optimizers such as larq's Bop/CaseOptimizer "
            "cannot be wrapped."
        )
    return optimizer


class OptimizerWrapper(keras.optimizers.Optimizer):
    """Base class: delegate the step to ``optimizer``, then run :meth:`extra_update` on the
    selected variables.

    Subclasses implement :meth:`build_extra` (create per-variable state) and
    :meth:`extra_update` (one variable, inside ``extended.update``), and extend
    :meth:`get_config`.

    Args:
        optimizer: the new-style tf-keras optimizer to wrap (instance, config dict or name).
        select: ``"auto"`` (Larq kernels whose quantizer is binary), a regex matched against
            variable names, or a list of variable names.
        name: optimizer name.
    """

    def __init__(self, optimizer, select="auto", name=None, **kwargs):
        check_optional(check_str, name, "name")
        optimizer = resolve_inner_optimizer(optimizer)
        if type(optimizer) is type(self):
            raise TypeError(f"`optimizer` is already a {type(self).__name__}; wrap it only once.")
        super().__init__(name=name or type(self).__name__, **kwargs)
        self._inner_optimizer = optimizer
        self.select = _validate_select(select)
        self._select_re = None if select == "auto" else re.compile(_as_pattern(select))

    # ------------------------------------------------------------------ selection
    def is_selected(self, variable):
        """Whether the extra update acts on ``variable``."""
        if self._select_re is None:
            return is_binary_quantizer(variable_quantizer(variable))
        return self._select_re.search(plain_name(variable)) is not None

    # ------------------------------------------------------------------ delegation
    @property
    def inner_optimizer(self):
        """The wrapped optimizer."""
        return self._inner_optimizer

    @property
    def learning_rate(self):
        return self._inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self._inner_optimizer.learning_rate = learning_rate

    @property
    def lr(self):
        return self._inner_optimizer.learning_rate

    def finalize_variable_values(self, var_list):
        self._inner_optimizer.finalize_variable_values(var_list)

    # ------------------------------------------------------------------ state
    def build(self, var_list):
        """Build the wrapped optimizer and the subclass's per-variable state."""
        super().build(var_list)
        self._inner_optimizer.build(var_list)
        if getattr(self, "_extra_built", False):
            return
        self._slot_index = {}
        selected = [v for v in var_list if self.is_selected(v)]
        for i, var in enumerate(selected):
            self._slot_index[self._var_key(var)] = i
        self.build_extra(selected)
        self._extra_built = True
        self._built = True

    def build_extra(self, selected):
        """Create the subclass's state for the ``selected`` variables (default: none)."""

    def slot_index(self, variable):
        """Position of ``variable`` among the selected ones, or None."""
        return getattr(self, "_slot_index", {}).get(self._var_key(variable))

    # ------------------------------------------------------------------ update
    def apply_gradients(self, grads_and_vars, name=None, skip_gradients_aggregation=False,
                        **kwargs):
        grads_and_vars = list(grads_and_vars)
        if not grads_and_vars:
            return self.iterations
        variables = [v for _, v in grads_and_vars]
        with tf.init_scope():
            self.build(variables)
        selected = [v for v in variables if self.slot_index(v) is not None]
        context = self.before_inner_step(selected)
        self._inner_optimizer.apply_gradients(
            grads_and_vars, name=name, skip_gradients_aggregation=skip_gradients_aggregation,
            **kwargs)
        if tf.distribute.in_cross_replica_context():
            return self._apply_extra(tf.distribute.get_strategy(), selected, context)
        return tf.__internal__.distribute.interim.maybe_merge_call(
            self._apply_extra, self._distribution_strategy, selected, context)

    def before_inner_step(self, selected):
        """Values captured before the inner step, handed to :meth:`extra_update` (default None)."""
        return None

    def _apply_extra(self, distribution, selected, context):
        step = self.step_values()
        for i, var in enumerate(selected):
            extra = None if context is None else context[i]
            distribution.extended.update(var, self._constrained_update, args=(step, extra),
                                         group=False)
        return self.iterations.assign_add(1)

    def _constrained_update(self, var, step, extra):
        self.extra_update(var, step, extra)
        constraint = getattr(var, "constraint", None)
        if constraint is not None:
            var.assign(constraint(var))

    def step_values(self):
        """Per-step scalars computed once (e.g. a scheduled size), passed to every update."""
        return None

    def extra_update(self, var, step, extra):
        """The extra update of one selected variable (subclasses implement it)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ config
    def get_config(self):
        return {
            "name": self.name,
            "optimizer": keras.optimizers.serialize(self._inner_optimizer),
            "select": self.select,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner = resolve_inner_optimizer(config.pop("optimizer"), custom_objects)
        return cls(inner, **config)


__all__ = ["OptimizerWrapper", "is_binary_quantizer", "binary_kernels", "binary_kernel_names",
           "variable_quantizer", "plain_name", "resolve_inner_optimizer",
           "BINARY_KERNEL_QUANTIZERS"]
