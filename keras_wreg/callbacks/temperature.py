r"""Temperature schedule for :class:`keras_wreg.RescaledSigmoidTernary` (seed 003)."""

import math

from keras_wreg._compat import keras, register
from keras_wreg._validation import (
    check_choice, check_int, check_iterable, check_optional, check_positive, check_real)
from keras_wreg.quantizers.ternary import RescaledSigmoidTernary, ternary_quantizers

SCHEDULES = ("exponential", "linear", "cosine")
GRANULARITIES = ("epoch", "batch")


def temperature_at(progress, t0, t1, schedule="exponential"):
    r"""The temperature at ``progress`` :math:`p = e/E \in [0, 1]` (clipped):

    - exponential: :math:`T = T_0\,(T_1/T_0)^{p}`
    - linear: :math:`T = T_0 + (T_1 - T_0)\,p`
    - cosine: :math:`T = T_1 + (T_0 - T_1)\,(1 + \cos \pi p)/2`
    """
    p = min(max(check_real(progress, "progress"), 0.0), 1.0)
    t0 = check_positive(t0, "t0")
    t1 = check_positive(t1, "t1")
    check_choice(schedule, SCHEDULES, "schedule")
    if schedule == "exponential":
        return t0 * (t1 / t0) ** p
    if schedule == "linear":
        return t0 + (t1 - t0) * p
    if schedule == "cosine":
        return t1 + (t0 - t1) * 0.5 * (1.0 + math.cos(math.pi * p))
    raise ValueError(f"`schedule` must be one of {SCHEDULES}, got {schedule!r}.")


@register
class TemperatureScheduler(keras.callbacks.Callback):
    r"""Raises the temperature of every :class:`RescaledSigmoidTernary` of the model during ``fit``.

    With :math:`e` the epoch (or step) index and :math:`E` the last one of this ``fit`` call:

    .. math::

        T(e) = T_0\,(T_1/T_0)^{e/E}\ \text{(exponential)},\quad
        T_0 + (T_1-T_0)\,e/E\ \text{(linear)},\quad
        T_1 + (T_0-T_1)\,\tfrac{1+\cos(\pi e/E)}{2}\ \text{(cosine)}

    so the first epoch runs at :math:`T_0` and the last at :math:`T_1`. With the quantizer's
    default relative temperature (:math:`T_{\mathrm{eff}} = \tau/\operatorname{std}(W)`),
    :math:`T_0 = 1` is flat (STE-like) and :math:`T_1 = 100` concentrates the gradient around
    :math:`\pm\Delta` (docs/methods.md, seed 003). The value is *assigned* to the quantizers' variable,
    so compiled ``train_step`` graphs read it without retracing. The current value is also written
    to the logs as ``temperature``.

    Args:
        t0: start temperature :math:`T_0 > 0` (1.0).
        t1: end temperature :math:`T_1 \ge T_0` (100.0).
        schedule: ``"exponential"`` (default), ``"linear"`` or ``"cosine"``.
        epochs: :math:`E + 1`, the number of epochs the schedule spans; None (default) takes the
            ``epochs`` of the ``fit`` call.
        granularity: ``"epoch"`` (update at each epoch start) or ``"batch"`` (each step).
        quantizers: quantizers to drive; None finds them in the model at train start.

    Raises:
        ValueError: for a non-positive :math:`T_0`, :math:`T_1 < T_0`, an unknown schedule or
            granularity, or a non-positive ``epochs``.

    Example:
        ```python
        q = kw.RescaledSigmoidTernary()
        model = keras.Sequential([keras.Input((4,)), lq.layers.QuantDense(2, kernel_quantizer=q)])
        model.compile("adam", "mse")
        model.fit(np.ones((8, 4)), np.ones((8, 2)), epochs=2, verbose=0,
                  callbacks=[kw.TemperatureScheduler(t0=1.0, t1=100.0)])
        ```
    """

    def __init__(self, t0=1.0, t1=100.0, schedule="exponential", epochs=None,
                 granularity="epoch", quantizers=None):
        super().__init__()
        self.t0 = check_positive(t0, "t0")
        self.t1 = check_positive(t1, "t1")
        if self.t1 < self.t0:
            raise ValueError(f"`t1` must be >= `t0` (the temperature rises), got t0={t0!r}, "
                             f"t1={t1!r}.")
        self.schedule = check_choice(schedule, SCHEDULES, "schedule")
        self.epochs = check_optional(check_int, epochs, "epochs", low=1, high=10**7)
        self.granularity = check_choice(granularity, GRANULARITIES, "granularity")
        self._quantizers = check_optional(
            check_iterable, quantizers, "quantizers", item_types=RescaledSigmoidTernary,
            item_name="RescaledSigmoidTernary quantizer")
        self._targets = []
        self._epoch = 0
        self.current = self.t0

    def temperature(self, epoch, step=0, steps_per_epoch=1):
        """The scheduled temperature at ``epoch`` (and ``step`` within it, for batch updates)."""
        epochs = self.epochs or (self.params or {}).get("epochs") or 1
        if self.granularity == "batch":
            total = max(epochs * steps_per_epoch - 1, 1)
            progress = (epoch * steps_per_epoch + step) / total
        else:
            progress = epoch / max(epochs - 1, 1)
        return temperature_at(progress, self.t0, self.t1, self.schedule)

    def _apply(self, value):
        self.current = float(value)
        for q in self._targets:
            q.set_temperature(self.current)

    def on_train_begin(self, logs=None):
        self._targets = (self._quantizers if self._quantizers is not None
                         else ternary_quantizers(self.model))
        if not self._targets:
            raise ValueError("TemperatureScheduler found no RescaledSigmoidTernary quantizer in "
                             "the model; pass `quantizers=` or use the quantizer in the layers.")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._apply(self.temperature(epoch))

    def on_train_batch_begin(self, batch, logs=None):
        if self.granularity == "batch":
            steps = (self.params or {}).get("steps") or 1
            self._apply(self.temperature(self._epoch, batch, steps))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["temperature"] = self.current

    def get_config(self):
        return {"t0": self.t0, "t1": self.t1, "schedule": self.schedule, "epochs": self.epochs,
                "granularity": self.granularity}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


__all__ = ["TemperatureScheduler", "temperature_at", "SCHEDULES"]
