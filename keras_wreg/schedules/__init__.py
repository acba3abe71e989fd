r"""Strength schedules: how much of a regularizer acts at each training step.

A schedule is a tf-keras ``LearningRateSchedule`` (so it serializes like one and is evaluated
inside compiled graphs from the optimizer's step counter, which checkpoints carry: a resumed run
continues the schedule where it stopped). keras_wreg's optimizer wrappers multiply their extra
term by it.
"""

import math

from keras_wreg._compat import keras, register, tf
from keras_wreg._validation import (
    check_choice, check_int, check_non_negative, check_optional, check_real, check_str)

SHAPES = ("linear", "cosine")


@register
class Ramp(keras.optimizers.schedules.LearningRateSchedule):
    r"""A continuation ramp of a regularizer's strength, from ``initial`` to ``final``.

    With :math:`t` the step, :math:`t_0` = ``start_step``, :math:`t_1` = ``end_step`` and
    :math:`p = \operatorname{clip}\big((t - t_0)/(t_1 - t_0), 0, 1\big)`:

    .. math::

        s(t) = s_0 + (s_1 - s_0)\,\rho(p),\qquad
        \rho(p) = p \ \text{(linear)}\quad\text{or}\quad \tfrac12\big(1 - \cos \pi p\big)
        \ \text{(cosine)}

    so :math:`s = s_0` before :math:`t_0` and :math:`s = s_1` after :math:`t_1` (a step at
    :math:`t_0` if :math:`t_1 = t_0`). This is the continuation used by regularized quantization
    methods (ProxQuant, Bai et al. 2019; BinaryRelax, Yin et al. 2018): early steps are free to
    flip signs, the grid pull wins late.

    Args:
        start_step: :math:`t_0 \ge 0`, the step where the ramp begins.
        end_step: :math:`t_1 \ge t_0`, the step where it reaches ``final``.
        shape: ``"linear"`` or ``"cosine"`` (default; C¹ at both ends).
        initial: :math:`s_0 \ge 0` (default 0).
        final: :math:`s_1 \ge 0` (default 1).

    Raises:
        ValueError: for negative or non-finite steps or values, ``end_step < start_step`` or an
            unknown shape.

    Example:
        ```python
        ramp = kw.schedules.Ramp(0, 100, shape="cosine", final=1e-4)  # 0 -> 1e-4 over 100 steps
        print([float(ramp(step)) for step in (0, 50, 100)])
        ```
    """

    def __init__(self, start_step, end_step, shape="cosine", initial=0.0, final=1.0, name=None):
        super().__init__()
        self.start_step = check_int(start_step, "start_step", low=0)
        self.end_step = check_int(end_step, "end_step", low=0)
        if self.end_step < self.start_step:
            raise ValueError(f"`end_step` must be >= `start_step`, got start_step={start_step!r},"
                             f" end_step={end_step!r}.")
        self.shape = check_choice(shape, SHAPES, "shape")
        self.initial = check_non_negative(initial, "initial")
        self.final = check_non_negative(final, "final")
        self.name = check_optional(check_str, name, "name")

    @classmethod
    def over_training(cls, total_steps, start=2 / 3, end=1.0, **kwargs):
        """The ramp over the fraction ``[start, end]`` of ``total_steps`` training steps."""
        total_steps = check_int(total_steps, "total_steps", low=1)
        start = check_real(start, "start", low=0.0, high=1.0)
        end = check_real(end, "end", low=0.0, high=1.0)
        if not start <= end <= 1:
            raise ValueError(f"need 0 <= start <= end <= 1, got start={start!r}, end={end!r}.")
        return cls(round(start * total_steps), round(end * total_steps), **kwargs)

    def __call__(self, step):
        t = tf.cast(step, tf.float32)
        span = float(max(self.end_step - self.start_step, 1))
        p = tf.clip_by_value((t - float(self.start_step)) / span, 0.0, 1.0)
        if self.end_step == self.start_step:
            p = tf.cast(t >= float(self.start_step), tf.float32)
        rho = p if self.shape == "linear" else 0.5 * (1.0 - tf.cos(math.pi * p))
        return self.initial + (self.final - self.initial) * rho

    def get_config(self):
        return {"start_step": self.start_step, "end_step": self.end_step, "shape": self.shape,
                "initial": self.initial, "final": self.final, "name": self.name}


def get(schedule):
    """``None`` (constant 1), a schedule instance, a config dict, or a number (constant)."""
    if schedule is None or isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return schedule
    if isinstance(schedule, dict):
        return keras.optimizers.schedules.deserialize(schedule)
    raise ValueError(f"`schedule` must be None, a tf-keras LearningRateSchedule (e.g. "
                     f"keras_wreg.schedules.Ramp) or its config dict, got {schedule!r}.")


def serialize(schedule):
    """A JSON-able form of ``schedule`` for ``get_config`` (None stays None)."""
    if schedule is None:
        return None
    return keras.optimizers.schedules.serialize(schedule)


__all__ = ["Ramp", "get", "serialize", "SHAPES"]
