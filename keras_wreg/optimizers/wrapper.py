r"""The shared base of keras_wreg's optimizer wrappers.

A wrapper takes any new-style tf-keras optimizer (``inner``), lets it take its own step, and then
applies an *extra* update to a selected subset of the variables (Larq's binary kernels by default):

.. math::

    w \leftarrow \mathrm{inner\_step}(w, g) \quad\text{then}\quad w \leftarrow \mathrm{extra}(w)

The extra update runs in a cross-replica merge call through ``extended.update`` so it is correct
under ``tf.distribute`` strategies. The wrapper's own state lives in optimizer variables (its
``iterations`` and per-variable buffers), the inner optimizer is a tracked child, so checkpoints
and ``.keras`` files restore both; :attr:`OptimizerWrapper.variables` lists the wrapper's
variables followed by the wrapped optimizer's, so ``set_weights`` and ``.h5`` files carry both.

The tf-keras optimizer contract is kept as tf-keras's own wrapper (``LossScaleOptimizerV3``)
keeps it: gradient clipping (``clipnorm``, ``clipvalue``, ``global_clipnorm``), decoupled
``weight_decay`` (with ``exclude_from_weight_decay``) and ``jit_compile`` given to the wrapper
are forwarded to the wrapped optimizer, which applies them in its own step exactly as it would
unwrapped; ``use_ema`` is applied by the wrapper *after* the extra update, so the moving average
(and ``finalize_variable_values``) sees the weights the wrapper produced.
"""

import copy
import re

from keras_wreg._compat import (
    distributed_container,
    ema_overwrite,
    ema_update,
    keras,
    mark_built,
    maybe_merge_call,
    optimizer_built,
    optimizer_own_variables,
    tf,
    var_key,
)
from keras_wreg._validation import (
    check_bool, check_int, check_iterable, check_non_negative, check_optional, check_positive,
    check_real, check_str)
from keras_wreg._introspect import (  # noqa: F401  (public here: the kernels wrappers act on)
    BINARY_KERNEL_QUANTIZERS,
    binary_kernels,
    is_binary_quantizer,
)
from keras_wreg._validation import check_model, validate_args

@validate_args(model=check_model)
def binary_kernel_names(model):
    """Names of :func:`binary_kernels` (usable as a wrapper's ``select=...``)."""
    return [plain_name(v) for v in binary_kernels(model)]


def variable_quantizer(var):
    """The Larq quantizer attached to a (possibly distributed) QuantizedVariable, else None."""
    quantizer = getattr(var, "quantizer", None)
    if quantizer is None:
        quantizer = getattr(distributed_container(var), "quantizer", None)
    return quantizer


_REPLICA_SUFFIX = re.compile(r"/replica_\d+$")


def plain_name(var):
    """Variable name without the ``:0`` suffix and without a replica suffix."""
    return _REPLICA_SUFFIX.sub("", var.name.split(":")[0])


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


def _builtin_optimizers():
    """Every new-style optimizer class ``tf.keras.optimizers`` exports, by its name and its
    lower-cased name (``keras.optimizers.deserialize`` alone does not find ``AdamW``, ``Adamax``,
    ``Nadam``, ``Ftrl``, ``Adafactor`` or ``Lion`` in a ``.keras`` file's config)."""
    found = {}
    for name in dir(keras.optimizers):
        cls = getattr(keras.optimizers, name, None)
        if (isinstance(cls, type) and issubclass(cls, keras.optimizers.Optimizer)
                and cls is not keras.optimizers.Optimizer):
            found.setdefault(name, cls)
            found.setdefault(name.lower(), cls)
    return found


def _class_of(config, objects):
    """The optimizer class a serialized config names: a custom or registered object, else a
    tf-keras optimizer by (case-insensitive) name; None if unknown here."""
    for key in (config.get("registered_name"), config.get("class_name")):
        if not key:
            continue
        cls = objects.get(key) or keras.saving.get_registered_object(key)
        if cls is None and isinstance(key, str):
            cls = objects.get(key.lower())
        if isinstance(cls, type):
            return cls
    return None


def resolve_inner_optimizer(optimizer, custom_objects=None):
    """A new-style tf-keras optimizer from an instance, a config dict or a name; else TypeError.

    Every optimizer of ``tf.keras.optimizers`` is found by name, including those that
    ``tf.keras.optimizers.deserialize`` alone does not know (``AdamW``, ``Adamax``, ``Nadam``,
    ``Ftrl``, ``Adafactor``, ``Lion``), and so are registered custom optimizers.
    """
    objects = {**_builtin_optimizers(), **(custom_objects or {})}
    if isinstance(optimizer, dict):
        config = copy.deepcopy(optimizer)  # tf-keras lower-cases `class_name` in place
        cls = _class_of(config, objects) if "config" in config else None
        if cls is not None and hasattr(cls, "from_config"):
            inner = dict(config["config"])
            if cls in _builtin_optimizers().values():
                inner.pop("is_legacy_optimizer", None)
            try:
                optimizer = cls.from_config(inner, custom_objects=custom_objects)
            except TypeError:  # a from_config without custom_objects
                optimizer = cls.from_config(inner)
        else:
            optimizer = keras.optimizers.deserialize(
                config, custom_objects=objects, use_legacy_optimizer=False)
    elif isinstance(optimizer, str):
        if optimizer in objects:
            optimizer = objects[optimizer]()
        else:
            optimizer = keras.optimizers.get(optimizer, use_legacy_optimizer=False)
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(
            "`optimizer` must be a new-style tf-keras optimizer "
            "(tf.keras.optimizers.Optimizer, e.g. Adam); got "
            f"{type(optimizer).__name__}. Legacy optimizers such as larq's Bop/CaseOptimizer "
            "cannot be wrapped."
        )
    return optimizer


#: options of the tf-keras optimizer base class the wrapper forwards to the wrapped optimizer
FORWARDED_OPTIONS = ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm")


def _forwarded(name):
    """A property reading/writing ``name`` on the wrapped optimizer.

    tf-keras' base constructor assigns these attributes before the wrapped optimizer is attached;
    those assignments (its defaults) are ignored, everything after goes to the wrapped optimizer.
    """

    def fget(self):
        inner = self.__dict__.get("_inner_optimizer")
        return None if inner is None else getattr(inner, name)

    def fset(self, value):
        inner = self.__dict__.get("_inner_optimizer")
        if inner is not None:
            setattr(inner, name, value)

    return property(fget, fset, doc=f"The wrapped optimizer's ``{name}`` (forwarded).")


class OptimizerWrapper(keras.optimizers.Optimizer):
    r"""Base class: delegate the step to ``optimizer``, then run :meth:`extra_update` on the
    selected variables.

    One step of the wrapper, for gradients :math:`g` of variables :math:`w`:

    1. the wrapped optimizer's ``apply_gradients``: its gradient clipping, weight decay, update
       and the variables' constraints, exactly as without the wrapper;
    2. for every selected variable *that received a gradient* (a ``None`` gradient leaves the
       variable untouched, as in tf-keras), :meth:`extra_update`, then the variable's
       ``constraint`` again (so e.g. Larq's ``weight_clip`` always holds);
    3. with ``use_ema``, the moving average :math:`\bar w \leftarrow m \bar w + (1 - m) w` of
       every updated variable (and the overwrite every ``ema_overwrite_frequency`` steps).

    With the subclass's extra term off, steps 1 and 3 are the wrapped optimizer's own, so the
    wrapper produces the same weights.

    Subclasses implement :meth:`build_extra` (create per-variable state) and
    :meth:`extra_update` (one variable, inside ``extended.update``), and extend
    :meth:`get_config`.

    Args:
        optimizer: the new-style tf-keras optimizer to wrap (instance, config dict or name).
        select: ``"auto"`` (Larq kernels whose quantizer is binary), a regex matched against
            variable names, or a list of variable names.
        name: optimizer name.
        weight_decay, clipnorm, clipvalue, global_clipnorm: as for any tf-keras optimizer;
            forwarded to the wrapped optimizer (``ValueError`` if it already has a different
            value). ``None`` keeps the wrapped optimizer's own setting.
        use_ema, ema_momentum, ema_overwrite_frequency: as for any tf-keras optimizer; the
            wrapper keeps the average (after its extra update). A wrapped optimizer built with
            ``use_ema=True`` hands its EMA settings over to the wrapper.
        jit_compile: ``None`` keeps the wrapped optimizer's setting; a bool sets it (as tf-keras
            does, XLA is only used when a GPU is present).

    Raises:
        TypeError: for an optimizer that is not a new-style tf-keras optimizer, or one already
            wrapped by the same class.
        ValueError: for conflicting forwarded options (e.g. both ``clipnorm`` and
            ``global_clipnorm``, or a ``clipnorm`` different from the wrapped optimizer's).

    Example:
        ```python
        class Shrink(kw.optimizers.OptimizerWrapper):  # after each inner step: w <- 0.99 w
            def extra_update(self, var, step, extra):
                var.assign(0.99 * var)

        layer = lq.layers.QuantDense(2, kernel_quantizer="ste_sign", kernel_constraint="weight_clip")
        model = keras.Sequential([keras.Input((4,)), layer])
        model.compile(Shrink(keras.optimizers.Adam()), "mse")
        model.fit(np.ones((8, 4)), np.ones((8, 2)), verbose=0)
        ```
    """

    #: run the extra update inside the wrapped optimizer's per-variable update (one pass over
    #: the variables) rather than as a second pass; both give bit-identical weights (with
    #: several replicas in sync the second pass is used)
    fuse_updates = True

    weight_decay = _forwarded("weight_decay")
    clipnorm = _forwarded("clipnorm")
    clipvalue = _forwarded("clipvalue")
    global_clipnorm = _forwarded("global_clipnorm")
    jit_compile = _forwarded("jit_compile")

    def __init__(self, optimizer, select="auto", name=None, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, jit_compile=None, **kwargs):
        check_optional(check_str, name, "name")
        check_optional(check_non_negative, weight_decay, "weight_decay")
        for option, value in (("clipnorm", clipnorm), ("clipvalue", clipvalue),
                              ("global_clipnorm", global_clipnorm)):
            check_optional(check_positive, value, option)
        check_bool(use_ema, "use_ema")
        check_real(ema_momentum, "ema_momentum", low=0.0, high=1.0)
        check_optional(check_int, ema_overwrite_frequency, "ema_overwrite_frequency", low=1)
        check_optional(check_bool, jit_compile, "jit_compile")
        optimizer = resolve_inner_optimizer(optimizer)
        if type(optimizer) is type(self):
            raise TypeError(f"`optimizer` is already a {type(self).__name__}; wrap it only once.")
        if not isinstance(use_ema, bool):
            raise ValueError(f"`use_ema` must be a bool, got {use_ema!r}.")
        if getattr(optimizer, "use_ema", False):
            # the average must include the extra update: the wrapper takes the EMA over
            if use_ema and (ema_momentum != optimizer.ema_momentum or ema_overwrite_frequency
                            != optimizer.ema_overwrite_frequency):
                raise ValueError(
                    "Both the wrapper and the wrapped optimizer have `use_ema=True` with "
                    f"different settings (ema_momentum {ema_momentum!r} vs "
                    f"{optimizer.ema_momentum!r}, ema_overwrite_frequency "
                    f"{ema_overwrite_frequency!r} vs {optimizer.ema_overwrite_frequency!r}).")
            use_ema, ema_momentum = True, optimizer.ema_momentum
            ema_overwrite_frequency = optimizer.ema_overwrite_frequency
            optimizer.use_ema = False
            took_ema = True
        else:
            took_ema = False
        name = name or type(self).__name__
        # the wrapper's own variables get distinct names ("<name>/iteration" next to the wrapped
        # optimizer's "iteration"), as .h5 files store optimizer variables by name
        with tf.name_scope(name):
            super().__init__(name=name, use_ema=use_ema, ema_momentum=ema_momentum,
                             ema_overwrite_frequency=ema_overwrite_frequency, **kwargs)
        self._inner_optimizer = optimizer
        # the wrapped optimizer's own EMA setting, which get_config reports as the user gave it
        self._inner_took_ema = took_ema
        self._strategy = tf.distribute.get_strategy()
        given = dict(weight_decay=weight_decay, clipnorm=clipnorm, clipvalue=clipvalue,
                     global_clipnorm=global_clipnorm)
        for option, value in given.items():
            if value is None:
                continue
            current = getattr(optimizer, option)
            if current is not None and current != value:
                raise ValueError(
                    f"`{option}={value!r}` given to {type(self).__name__} but the wrapped "
                    f"{type(optimizer).__name__} already has {option}={current!r}; set it in "
                    "one place.")
            setattr(optimizer, option, value)
        if optimizer.clipnorm is not None and optimizer.global_clipnorm is not None:
            raise ValueError(
                "At most one of `clipnorm` and `global_clipnorm` can be set, got "
                f"clipnorm={optimizer.clipnorm!r}, global_clipnorm={optimizer.global_clipnorm!r}.")
        if jit_compile is not None:
            if not isinstance(jit_compile, bool):
                raise ValueError(f"`jit_compile` must be None or a bool, got {jit_compile!r}.")
            optimizer.jit_compile = jit_compile and bool(tf.config.list_physical_devices("GPU"))
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

    @lr.setter
    def lr(self, learning_rate):
        self._inner_optimizer.learning_rate = learning_rate

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Exclude variables from the (forwarded) weight decay of the wrapped optimizer."""
        self._inner_optimizer.exclude_from_weight_decay(var_list=var_list, var_names=var_names)

    def finalize_variable_values(self, var_list):
        """The wrapped optimizer's finalization, then the wrapper's EMA overwrite (if any)."""
        self._inner_optimizer.finalize_variable_values(var_list)
        if self.use_ema:
            ema_overwrite(self, var_list)

    # ------------------------------------------------------------------ state
    @property
    def variables(self):
        """The wrapper's variables (its ``iterations``, EMA averages, per-variable buffers)
        followed by the wrapped optimizer's (its ``iterations``, slots): what ``set_weights``,
        ``get_weights`` and ``.h5`` files transfer."""
        own = super().variables
        return type(own)(list(own) + list(self._inner_optimizer.variables))

    def get_weights(self):
        """The values of :attr:`variables` as numpy arrays."""
        return [v.numpy() for v in self.variables]

    def set_weights(self, weights):
        """Set :attr:`variables` (the wrapper's and the wrapped optimizer's) from ``weights``.

        Raises:
            ValueError: if the optimizer is not built or ``weights`` does not match in number
                or shapes.
        """
        if not optimizer_built(self):
            raise ValueError(
                "Call `optimizer.build(model.trainable_variables)` before `set_weights()`: "
                f"{type(self).__name__} has not created its variables yet.")
        variables = list(self.variables)
        weights = list(weights)
        if len(weights) != len(variables):
            raise ValueError(
                f"{type(self).__name__} has {len(variables)} variables (its own and the wrapped "
                f"optimizer's), got {len(weights)} weights.")
        for variable, weight in zip(variables, weights):
            if tuple(variable.shape) != tuple(getattr(weight, "shape", ())):
                raise ValueError(f"Optimizer variable {variable.name} has shape "
                                 f"{tuple(variable.shape)}, got a weight of shape "
                                 f"{tuple(getattr(weight, 'shape', ()))}.")
            variable.assign(weight)

    def save_own_variables(self, store):
        """``.keras`` files: the wrapper's own variables (the wrapped optimizer is saved as its
        child)."""
        for i, variable in enumerate(optimizer_own_variables(self)):
            store[str(i)] = variable.numpy()

    def load_own_variables(self, store):
        """``.keras`` / ``.weights.h5`` files: restore the wrapper's own variables.

        As a tf-keras optimizer does, a file holding a different number of variables (e.g.
        weights saved from a model compiled with another optimizer, or before the first
        step) is skipped with a warning, so ``model.load_weights`` still loads the layers.
        """
        own = optimizer_own_variables(self)
        if len(store.keys()) != len(own):
            tf.get_logger().warning(
                f"Skipping variable loading for optimizer '{self.name}' "
                f"({type(self).__name__}): the file holds {len(store.keys())} variables, the "
                f"optimizer has {len(own)}.")
            return
        for i, variable in enumerate(own):
            variable.assign(store[str(i)])

    def build(self, var_list):
        """Build the wrapped optimizer and the subclass's per-variable state."""
        var_list = list(var_list)
        super().build(var_list)
        # each optimizer's variables under its own name, as tf-keras names them when it builds
        # an optimizer in apply_gradients ("Adam/m/<var>", "CosineMomentum/momentum/<var>"), so
        # name-based tooling and checkpoints written without the wrapper line up
        with tf.name_scope(self._inner_optimizer.name):
            self._inner_optimizer.build(var_list)
        if getattr(self, "_extra_built", False):
            return
        self._slot_index = {}
        selected = [v for v in var_list if self.is_selected(v)]
        for i, var in enumerate(selected):
            self._slot_index[var_key(self, var)] = i
        with tf.name_scope(self.name):
            self.build_extra(selected)
        self._extra_built = True
        mark_built(self)

    def build_extra(self, selected):
        """Create the subclass's state for the ``selected`` variables (default: none)."""

    def slot_index(self, variable):
        """Position of ``variable`` among the selected ones, or None."""
        return getattr(self, "_slot_index", {}).get(var_key(self, variable))

    # ------------------------------------------------------------------ update
    def apply_gradients(self, grads_and_vars, name=None, skip_gradients_aggregation=False,
                        **kwargs):
        grads_and_vars = list(grads_and_vars)
        if not grads_and_vars:
            return self.iterations
        variables = [v for _, v in grads_and_vars]
        with tf.init_scope():
            self.build(variables)
        updated = [v for g, v in grads_and_vars if g is not None]
        selected = [v for v in updated if self.slot_index(v) is not None]
        context = self.before_inner_step(selected)
        inner = self._inner_optimizer
        # fused when one replica runs the step (with several, each replica thread would swap
        # the wrapped optimizer's update in and out concurrently: the two-pass update then)
        fused = (self.fuse_updates and not isinstance(inner, OptimizerWrapper)
                 and hasattr(inner, "_update_step")
                 and tf.distribute.get_strategy().num_replicas_in_sync == 1)
        if fused:
            # one pass: the extra update runs right after the wrapped optimizer's own update of
            # each selected variable, inside the same per-variable update tf-keras makes
            extra = {} if context is None else {
                self.slot_index(v): c for v, c in zip(selected, context)}
            inner._update_step = self._fused_step(inner._update_step, extra)
        try:
            inner.apply_gradients(
                grads_and_vars, name=name,
                skip_gradients_aggregation=skip_gradients_aggregation, **kwargs)
        finally:
            if fused:
                del inner._update_step  # back to the class's method
        selected = [] if fused else selected
        if tf.distribute.in_cross_replica_context():
            return self._apply_extra(tf.distribute.get_strategy(), selected, context, updated)
        return maybe_merge_call(self._apply_extra, self._strategy, selected, context, updated)

    def _fused_step(self, update_step, extra):
        """``update_step`` of the wrapped optimizer followed, for a selected variable, by the
        variable's constraint and :meth:`extra_update` (and the constraint again, as tf-keras
        applies it after every update): the same sequence as a separate second pass."""

        def step(gradient, variable):
            result = update_step(gradient, variable)
            index = self.slot_index(variable)
            if index is not None:
                with tf.control_dependencies([result] if result is not None else []):
                    constraint = getattr(variable, "constraint", None)
                    if constraint is not None:
                        variable.assign(constraint(variable))
                    self._constrained_update(variable, self.step_values(), extra.get(index))
            return result

        return step

    def before_inner_step(self, selected):
        """Values captured before the inner step, handed to :meth:`extra_update` (default None)."""
        return None

    def _apply_extra(self, distribution, selected, context, updated=()):
        step = self.step_values()
        for i, var in enumerate(selected):
            extra = None if context is None else context[i]
            distribution.extended.update(var, self._constrained_update, args=(step, extra),
                                         group=False)
        if self.use_ema and updated:
            ema_update(self, updated)
            if self.ema_overwrite_frequency:
                overwrite = (self.iterations + 1) % self.ema_overwrite_frequency == 0
                tf.cond(tf.cast(overwrite, tf.bool),
                        true_fn=lambda: ema_overwrite(self, updated), false_fn=lambda: None)
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
        """The tf-keras optimizer options (as the wrapped optimizer applies them), the wrapped
        optimizer's serialization and ``select``."""
        inner = self._inner_optimizer
        serialized = keras.optimizers.serialize(inner)
        if self._inner_took_ema:  # the wrapped optimizer as built: with its EMA (the wrapper
            # keeps the average; from_config hands it over again)
            serialized["config"].update(use_ema=True, ema_momentum=self.ema_momentum,
                                        ema_overwrite_frequency=self.ema_overwrite_frequency)
        return {
            "name": self.name,
            "weight_decay": inner.weight_decay,
            "clipnorm": inner.clipnorm,
            "global_clipnorm": inner.global_clipnorm,
            "clipvalue": inner.clipvalue,
            "use_ema": self.use_ema,
            "ema_momentum": self.ema_momentum,
            "ema_overwrite_frequency": self.ema_overwrite_frequency,
            "jit_compile": inner.jit_compile,
            "is_legacy_optimizer": False,
            "optimizer": serialized,
            "select": self.select if isinstance(self.select, str) else list(self.select),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config.pop("is_legacy_optimizer", None)
        inner = resolve_inner_optimizer(config.pop("optimizer"), custom_objects)
        return cls(inner, **config)


__all__ = ["OptimizerWrapper", "is_binary_quantizer", "binary_kernels", "binary_kernel_names",
           "variable_quantizer", "plain_name", "resolve_inner_optimizer",
           "BINARY_KERNEL_QUANTIZERS", "FORWARDED_OPTIONS"]
