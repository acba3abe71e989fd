r"""Decoupled proximal pull of ternary latent weights to their TWN projection (seed 003)."""

from keras_wreg._introspect import latent
from keras_wreg import schedules
from keras_wreg._compat import keras, register, tf
from keras_wreg._validation import check_non_negative
from keras_wreg.callbacks.cluster import current_learning_rate
from keras_wreg.callbacks.ternary_stats import ternary_layers
from keras_wreg._grid import ternary_pattern, ternary_scale, ternary_threshold


def _threshold_args(quantizer):
    """``(delta, threshold_value)`` of a ternary kernel quantizer: ours
    (:class:`~keras_wreg.RescaledSigmoidTernary`) or Larq's ``SteTern`` (TWN rule: δ = 0.7)."""
    if hasattr(quantizer, "delta"):
        return float(quantizer.delta), quantizer.threshold_value
    if getattr(quantizer, "ternary_weight_networks", False):
        return 0.7, None
    return 0.7, float(getattr(quantizer, "threshold_value", 0.05))


@tf.function(reduce_retracing=True)
def _pull(w, b, delta, threshold_value, fixed):
    threshold = tf.cond(fixed, lambda: threshold_value,
                        lambda: ternary_threshold(w, delta=delta))
    t = ternary_pattern(w, threshold)
    target = ternary_scale(w, t) * t
    return w - b * (w - target)


@register
class TernaryPull(keras.callbacks.Callback):
    r"""Pull every ternary latent kernel towards its ternary projection after each optimizer step
    (the decoupled, proximal form of :class:`~keras_wreg.TernaryReg`'s multi-well penalty).

    For each layer whose kernel quantizer is ternary (:class:`~keras_wreg.RescaledSigmoidTernary`
    or Larq's ``ste_tern``), with the threshold rule of that quantizer, after the optimizer step:

    .. math::

        \Delta = \delta\,\mathrm{mean}|W|\ (\text{or the fixed } \Delta),\quad
        t = \operatorname{sign}(W)\,\mathbb 1[|W| > \Delta],\quad
        \alpha = \mathrm{mean}_{t_i\ne0}|w_i| \\
        a_t = 2\,\eta_t\,s_t\,\lambda,\qquad
        W \leftarrow W - \frac{a_t}{1 + a_t}\,(W - \alpha t)

    the exact proximal step of :math:`\eta_t s_t \lambda \|W - \alpha t\|^2` for the current
    :math:`(\alpha, t)` (:math:`\eta_t`: the optimizer's learning rate at that step, :math:`s_t`:
    the ``schedule``, 1 without one). It leaves the loss, so Adam's normalisation never turns it
    into a full step for weights with small task gradients, and each step moves a weight a
    fraction :math:`a_t/(1+a_t) < 1` of its distance to the grid: scale-free, never past the
    target, and :math:`W = \alpha t` is a fixed point. The pattern :math:`t` is unchanged by the
    pull (it only shrinks distances), so the forward pass of a ``ste_tern`` layer changes only
    through the optimizer, while the straight-through gradient is taken nearer to the point it
    approximates. ``strength=0`` (or a schedule at 0) leaves training bit-identical to plain
    training.

    Usage (Larq's own quantizer, or keras_wreg's)::

        model.fit(x, y, callbacks=[TernaryPull(10.0, schedule=Ramp(0, total_steps))])

    The step count is the optimizer's ``iterations``, so a resumed run continues its schedule.

    Args:
        strength: :math:`\lambda \ge 0`.
        schedule: a schedule of the step (e.g. :class:`~keras_wreg.schedules.Ramp`, any tf-keras
            ``LearningRateSchedule``, or its config dict), or None for a constant factor 1.

    Raises:
        ValueError: for a negative or non-finite ``strength``, a ``schedule`` that is not a
            schedule, or (when training begins) a model with no ternary kernel.

    Example:
        ```python
        layer = lq.layers.QuantDense(2, kernel_quantizer="ste_tern")
        model = keras.Sequential([keras.Input((4,)), layer])
        model.compile("adam", "mse")
        model.fit(np.ones((8, 4)), np.ones((8, 2)), verbose=0, callbacks=[kw.TernaryPull(strength=0.5)])
        ```
    """

    def __init__(self, strength=1.0, schedule=None):
        super().__init__()
        self.strength = check_non_negative(strength, "strength", high=1e6)
        self.schedule = schedules.get(schedule)
        self._layers = []

    def get_config(self):
        return {"strength": self.strength, "schedule": schedules.serialize(self.schedule)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def factor(self, step):
        """:math:`s_t` at training step ``step``."""
        return 1.0 if self.schedule is None else float(self.schedule(step))

    def on_train_begin(self, logs=None):
        self._layers = []
        for layer in ternary_layers(self.model):
            delta, threshold_value = _threshold_args(layer.kernel_quantizer)
            self._layers.append((latent(layer.kernel),
                                 delta, threshold_value))
        if not self._layers:
            raise ValueError("TernaryPull found no layer with a ternary kernel quantizer "
                             "(RescaledSigmoidTernary or Larq's ste_tern) in the model.")

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy()) - 1  # the step just taken
        a = 2.0 * current_learning_rate(self.model.optimizer) * self.factor(step) * self.strength
        if a <= 0.0:
            return
        b = tf.constant(a / (1.0 + a), tf.float32)
        for variable, delta, threshold_value in self._layers:
            fixed = threshold_value is not None
            new = _pull(tf.cast(tf.convert_to_tensor(variable), tf.float32), b,
                        tf.constant(delta, tf.float32),
                        tf.constant(threshold_value if fixed else 0.0, tf.float32),
                        tf.constant(fixed))
            variable.assign(tf.cast(new, variable.dtype))


__all__ = ["TernaryPull"]
