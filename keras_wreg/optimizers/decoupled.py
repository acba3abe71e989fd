r"""Decoupled regularization: a regularizer's pull applied as its own step, outside the optimizer."""

from keras_wreg import schedules
from keras_wreg._compat import keras, register, tf
from keras_wreg._validation import check_bool
from keras_wreg.optimizers.wrapper import OptimizerWrapper


@register
class DecoupledRegularization(OptimizerWrapper):
    r"""Applies a regularizer's gradient as a separate step after the wrapped optimizer's step.

    Adaptive optimizers divide every gradient by its running RMS, so a penalty added to the loss
    becomes a full learning-rate step for weights whose task gradient is small, pinning them to
    the penalty's minima (the reason AdamW decouples weight decay, Loshchilov & Hutter 2019).
    This wrapper keeps the penalty out of the loss and, after the inner step, moves every
    selected variable down the penalty's own gradient:

    .. math::

        w \leftarrow \mathrm{inner\_step}(w, g_\mathrm{task}) \quad\text{then}\quad
        w \leftarrow w - \eta_t\, s(t)\, \nabla_w R(w)

    with :math:`\eta_t` the wrapped optimizer's current learning rate (its schedule included,
    when ``scale_by_learning_rate``; else :math:`\eta_t = 1`), :math:`s(t)` the ``schedule``
    evaluated at the wrapper's step counter (1 when None; e.g. a late
    :class:`keras_wreg.schedules.Ramp` for continuation) and :math:`R` the ``regularizer`` (its
    own strength included; for :class:`keras_wreg.WReg` with ``reduce="sum"`` the gradient is
    per weight). Any Keras regularizer works; its gradient is taken with autodiff. The variable's
    constraint (e.g. Larq's ``weight_clip``) is applied again after the pull.

    Do not also give the same regularizer to the layers (that would apply it twice, once
    through the loss).

    Args:
        optimizer: the new-style tf-keras optimizer to wrap (e.g. ``Adam``).
        regularizer: the Keras regularizer whose pull is applied (instance or config).
        schedule: ``None`` or a tf-keras ``LearningRateSchedule`` of the step giving :math:`s(t)`.
        scale_by_learning_rate: multiply by the inner learning rate (default True).
        select: ``"auto"`` (the kernels of Larq layers with a binary kernel quantizer), a regex
            matched against variable names, or a list of names.
        name: optimizer name.

    Raises:
        TypeError: if ``optimizer`` is not a new-style tf-keras optimizer.
        ValueError: for a regularizer that is not callable or an invalid schedule/select.

    Example:
        ```python
        opt = kw.DecoupledRegularization(keras.optimizers.Adam(1e-3), kw.WReg(strength=1e-4))
        layer = lq.layers.QuantDense(2, kernel_quantizer="ste_sign", kernel_constraint="weight_clip")
        model = keras.Sequential([keras.Input((4,)), layer])
        model.compile(opt, "mse")
        model.fit(np.ones((8, 4)), np.ones((8, 2)), verbose=0)
        ```
    """

    def __init__(self, optimizer, regularizer, schedule=None, scale_by_learning_rate=True,
                 select="auto", name="DecoupledRegularization", **kwargs):
        super().__init__(optimizer, select=select, name=name, **kwargs)
        if isinstance(regularizer, (dict, str)):
            regularizer = keras.regularizers.get(regularizer)
        if regularizer is None or not callable(regularizer):
            raise ValueError(f"`regularizer` must be a Keras regularizer, got {regularizer!r}.")
        self.regularizer = regularizer
        self.schedule = schedules.get(schedule)
        self.scale_by_learning_rate = check_bool(scale_by_learning_rate, "scale_by_learning_rate")

    def current_scale(self):
        r""":math:`\eta_t\,s(t)` at the current step (a float32 scalar)."""
        scale = tf.constant(1.0, tf.float32)
        if self.schedule is not None:
            scale = scale * tf.cast(self.schedule(self.iterations), tf.float32)
        if self.scale_by_learning_rate:
            scale = scale * tf.cast(self.inner_optimizer.learning_rate, tf.float32)
        return scale

    def regularizer_gradient(self, w):
        r""":math:`\nabla_w R(w)` for a tensor ``w``."""
        w = tf.convert_to_tensor(w)
        with tf.GradientTape() as tape:
            tape.watch(w)
            penalty = self.regularizer(w)
        grad = tape.gradient(penalty, w)
        return tf.zeros_like(w) if grad is None else grad

    def step_values(self):
        return self.current_scale()

    def extra_update(self, var, scale, _):
        w = tf.convert_to_tensor(var)
        var.assign_sub(tf.cast(scale, var.dtype) * self.regularizer_gradient(w))

    def get_config(self):
        return {
            **super().get_config(),
            "regularizer": keras.regularizers.serialize(self.regularizer),
            "schedule": schedules.serialize(self.schedule),
            "scale_by_learning_rate": self.scale_by_learning_rate,
        }


__all__ = ["DecoupledRegularization"]
