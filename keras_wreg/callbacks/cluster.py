"""Training-time helpers of :class:`keras_wreg.ClusterReg`: init, warm-up, re-seeding, snapping."""

import numpy as np

from keras_wreg import schedules
from keras_wreg._compat import keras, register, tf
from keras_wreg._validation import check_bool, check_choice, check_int, check_non_negative
from keras_wreg.quantizers.cluster import cluster_quantizers
from keras_wreg.regularizers.cluster import (
    INITS, clustered_weights, initialize_centers, snap_weights)
from keras_wreg._validation import check_model, validate_args

_SNAP_WHEN = (None, "end", "epoch", "batch")


@validate_args(model=check_model)
def cluster_stats(model):
    """Per clustered layer: mean squared distance to the nearest centre and dead centres."""
    stats = {}
    for layer, weight, reg in clustered_weights(model):
        w = weight.numpy().ravel()
        c = reg.get_centers()
        d = np.min((w[:, None] - c[None, :]) ** 2, axis=1)
        counts = np.bincount(np.argmin(np.abs(w[:, None] - c[None, :]), axis=1),
                             minlength=c.size)
        stats[layer.name] = {"mse": float(d.mean()), "dead": int((counts == 0).sum()),
                             "centers": c.tolist()}
    return stats


@register
class ClusterCallback(keras.callbacks.Callback):
    r"""Drives every :class:`~keras_wreg.ClusterReg` of the model during ``fit``.

    * ``on_train_begin``: initialise the centres from the current weights (regularizers already
      initialised, e.g. restored from a checkpoint, are kept), using each regularizer's ``init``.
    * delay and warm-up: the penalty factor at training step :math:`t` (counted over every
      ``fit`` call, in the ``step`` variable of each :class:`ClusterReg`, which checkpoints and
      ``BackupAndRestore`` carry, so a resumed run continues its warm-up) is :math:`s_t = 0` for :math:`t < D` and
      :math:`s_t = \min(1, (t - D + 1) / T)` after, :math:`D` = ``delay_steps``,
      :math:`T` = ``warmup_steps`` (:math:`T = 0`: a step to 1). With :math:`D > 0` the network
      first trains unregularized and the centres are re-initialised from its weights at step
      :math:`D` (clustering a trained network, not a random one).
    * ``on_epoch_end``: every ``reseed_every`` epochs, dead centres (fewer than ``min_count``
      weights) and duplicates are moved (:meth:`ClusterReg.reseed`); logs ``cluster_mse`` (mean
      over clustered layers of the mean squared distance to the nearest centre) and
      ``cluster_dead``.
    * ``schedule`` (a tf-keras ``LearningRateSchedule`` of the step, e.g.
      :class:`keras_wreg.schedules.Ramp`) replaces the delay/warm-up factor: :math:`s_t` =
      ``schedule(t)``, which may exceed 1 (continuation: the strength keeps growing). The centres
      are still re-initialised at step :math:`D` when ``delay_steps > 0``.
    * ``decoupled=True``: the penalty leaves the loss (the regularizers' factor is held at 0) and
      is applied after every optimizer step as its own proximal step (hard form), decoupled from
      Adam's normalisation (as AdamW decouples weight decay): with :math:`\eta_t` the
      optimizer's current learning rate, :math:`a = 2\eta_t s_t \lambda` (divided by the
      kernel size :math:`n` for ``reduce="mean"``) and :math:`b = a/(1+a)`,

      .. math::

          w_i \leftarrow w_i - b\,(w_i - c_{j(i)}),\qquad
          c_k \leftarrow c_k + \rho\, b\,(\bar w_k - c_k)

      (the exact proximal step of :math:`\eta_t s_t\lambda (w - c_j)^2` for fixed assignments,
      never overshooting; :math:`\bar w_k` the mean of the weights assigned to :math:`c_k`,
      :math:`\rho` the regularizer's ``center_grad_scale``: a damped Lloyd step).
    * STE phase: from training step ``quantize_step`` on, every
      :class:`~keras_wreg.quantizers.ClusterQuantizer` is switched on (the forward pass uses the
      centres, the task loss trains them); ``temperature_schedule`` (a schedule of the step) sets the
      soft quantizers' :math:`\tau` (annealing). The switch is a variable: checkpoints carry it.
    * snapping: ``snap="end"`` snaps the weights to their centres when training ends,
      ``"epoch"`` after every epoch, ``"batch"`` after every batch (projected training: the
      clustered weights always hold exactly K values, used for fine-tuning after a snap).

    Args:
        warmup_steps: :math:`T \ge 0`.
        delay_steps: :math:`D \ge 0`.
        reseed_every: epochs between re-seeding passes (0 = never).
        min_count: a centre with fewer weights than this is dead (>= 1).
        duplicate_tol: centres closer than this fraction of the weight range are duplicates.
        snap: ``None``, ``"end"``, ``"epoch"`` or ``"batch"``.
        init: override of the regularizers' ``init`` (``None`` keeps theirs).
        schedule: ``None`` or a schedule of the step giving :math:`s_t` (overrides the warm-up).
        decoupled: apply the penalty as a proximal step after the optimizer's (hard form only).
        quantize_step: ``None`` (leave the ClusterQuantizers as they are) or the step from which
            they are on (0: from the start).
        temperature_schedule: ``None`` or a schedule of the step giving the soft quantizers' :math:`\tau`.

    Raises:
        ValueError: for a negative ``warmup_steps`` or ``reseed_every``, ``min_count < 1``,
            a negative ``duplicate_tol``, an unknown ``snap``, a bad schedule, a negative
            ``quantize_step``, or (in ``on_train_begin``) ``decoupled`` with a regularizer whose
            form is not ``"hard"`` or ``quantize_step`` with no ClusterQuantizer in the model.

    Example:
        ```python
        reg = kw.ClusterReg(num_centers=4)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, kernel_regularizer=reg)])
        model.compile("adam", "mse")
        model.fit(np.ones((8, 4)), np.ones((8, 8)), verbose=0, callbacks=[kw.ClusterCallback(snap="end")])
        ```
    """

    def __init__(self, warmup_steps=0, reseed_every=1, min_count=1, duplicate_tol=1e-3,
                 snap=None, init=None, delay_steps=0, schedule=None, decoupled=False,
                 quantize_step=None, temperature_schedule=None):
        super().__init__()
        self.warmup_steps = check_int(warmup_steps, "warmup_steps", low=0)
        self.delay_steps = check_int(delay_steps, "delay_steps", low=0)
        self.reseed_every = check_int(reseed_every, "reseed_every", low=0)
        self.min_count = check_int(min_count, "min_count", low=1)
        self.duplicate_tol = check_non_negative(duplicate_tol, "duplicate_tol", high=1.0)
        self.snap = check_choice(snap, _SNAP_WHEN, "snap")
        self.init = None if init is None else check_choice(init, INITS, "init")
        self.schedule = schedules.get(schedule)
        self.decoupled = check_bool(decoupled, "decoupled")
        self.quantize_step = (None if quantize_step is None
                              else check_int(quantize_step, "quantize_step", low=0))
        self.temperature = schedules.get(temperature_schedule)
        self._quantizers = []
        self._phase = None
        self._tau = None
        self._clustered = []
        self._step = 0
        self.reseeded = 0

    @property
    def step(self):
        """Training steps seen so far (read from the regularizers' ``step`` variable)."""
        if self._clustered:
            return int(self._clustered[0][2].step.numpy())
        return self._step

    def _advance(self):
        for reg in {id(reg): reg for _, _, reg in self._clustered}.values():
            reg.step.assign_add(1)
        self._step += 1

    def get_config(self):
        return {"warmup_steps": self.warmup_steps, "reseed_every": self.reseed_every,
                "min_count": self.min_count, "duplicate_tol": self.duplicate_tol,
                "snap": self.snap, "init": self.init, "delay_steps": self.delay_steps,
                "schedule": schedules.serialize(self.schedule), "decoupled": self.decoupled,
                "quantize_step": self.quantize_step,
                "temperature_schedule": schedules.serialize(self.temperature)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def factor(self, step):
        """The penalty factor :math:`s_t` at training step ``step``."""
        if self.schedule is not None:
            return float(self.schedule(step))
        if step < self.delay_steps:
            return 0.0
        if self.warmup_steps == 0:
            return 1.0
        return min(1.0, (step - self.delay_steps + 1) / self.warmup_steps)

    def _set_warmup(self):
        factor = 0.0 if self.decoupled else self.factor(self.step)
        if factor != self._factor:
            for _, _, reg in self._clustered:
                reg.warmup.assign(factor)
            self._factor = factor

    def on_train_begin(self, logs=None):
        self._clustered = clustered_weights(self.model)
        self._factor = None
        if not self._clustered:
            raise ValueError("ClusterCallback: the model has no layer regularized by ClusterReg.")
        if self.decoupled:
            forms = {reg.form for _, _, reg in self._clustered}
            if forms != {"hard"}:
                raise ValueError(f"ClusterCallback(decoupled=True) needs form='hard' "
                                 f"regularizers, got forms {sorted(forms)}.")
        self._quantizers = [q for _, q in cluster_quantizers(self.model)]
        if self.quantize_step is not None and not self._quantizers:
            raise ValueError("ClusterCallback: `quantize_step` is set but the model has no "
                             "ClusterQuantizer.")
        self._phase = self._tau = None
        initialize_centers(self.model, method=self.init)
        self._set_warmup()
        self._set_phase()

    def _set_phase(self):
        if self.quantize_step is None:
            return
        step = self.step
        active = step >= self.quantize_step
        if active != self._phase:
            for q in self._quantizers:
                q.set_active(active)
            self._phase = active
        if active and self.temperature is not None:
            tau = float(self.temperature(step))
            if tau != self._tau:
                for q in self._quantizers:
                    q.set_temperature(max(tau, 1e-12))
                self._tau = tau

    def on_train_batch_begin(self, batch, logs=None):
        step = self.step
        if self.delay_steps and step == self.delay_steps:
            initialize_centers(self.model, method=self.init, force=True)
        if self.schedule is not None or step <= self.delay_steps + self.warmup_steps:
            self._set_warmup()
        self._set_phase()

    def on_train_batch_end(self, batch, logs=None):
        if self.decoupled:
            self._decoupled_step()
        self._advance()
        if self.snap == "batch":
            snap_weights(self.model)

    def _decoupled_step(self):
        s = self.factor(self.step)
        if s <= 0.0:
            return
        lr = current_learning_rate(self.model.optimizer)
        for _, weight, reg in self._clustered:
            a = 2.0 * lr * s * reg.strength
            if reg.reduce == "mean":
                a /= float(np.prod(weight.shape))
            if a > 0.0:
                _prox_step(weight, reg.centers, tf.constant(a / (1.0 + a), tf.float32),
                           tf.constant(reg.center_grad_scale, tf.float32))

    def on_epoch_end(self, epoch, logs=None):
        if self.reseed_every and (epoch + 1) % self.reseed_every == 0 \
                and self.step > self.delay_steps:
            for _, weight, reg in clustered_weights(self.model):
                self.reseeded += len(reg.reseed(weight.numpy(), min_count=self.min_count,
                                                duplicate_tol=self.duplicate_tol))
        if self.snap == "epoch":
            snap_weights(self.model)
        if logs is not None:
            stats = cluster_stats(self.model)
            logs["cluster_mse"] = float(np.mean([s["mse"] for s in stats.values()]))
            logs["cluster_dead"] = float(sum(s["dead"] for s in stats.values()))

    def on_train_end(self, logs=None):
        if self.snap == "end":
            snap_weights(self.model)


def current_learning_rate(optimizer):
    """The optimizer's learning rate at its current step (schedules evaluated), as a float."""
    lr = getattr(optimizer, "learning_rate", None)
    if lr is None:
        raise ValueError(f"The optimizer {optimizer!r} has no learning rate.")
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        lr = lr(optimizer.iterations)
    return float(keras.backend.get_value(lr))


@tf.function(reduce_retracing=True)
def _prox_values(w, c, b, rho):
    """New weights and centres of one decoupled proximal step (see :class:`ClusterCallback`)."""
    flat = tf.reshape(tf.cast(w, tf.float32), [-1])
    j = tf.argmin(tf.abs(flat[:, None] - c[None, :]), axis=1, output_type=tf.int32)
    k = tf.shape(c)[0]
    sums = tf.math.unsorted_segment_sum(flat, j, k)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(flat), j, k)
    means = tf.where(counts > 0, sums / tf.maximum(counts, 1.0), c)
    pulled = flat - b * (flat - tf.gather(c, j))
    return tf.reshape(pulled, tf.shape(w)), c + rho * b * (means - c)


def _prox_step(weight, centers, b, rho):
    new_w, new_c = _prox_values(tf.convert_to_tensor(weight), tf.convert_to_tensor(centers),
                                b, rho)
    weight.assign(tf.cast(new_w, weight.dtype))
    centers.assign(new_c)


__all__ = ["ClusterCallback", "cluster_stats", "current_learning_rate"]
