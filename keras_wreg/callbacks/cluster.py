"""Training-time helpers of :class:`keras_wreg.ClusterReg`: init, warm-up, re-seeding, snapping."""

import numpy as np

from keras_wreg._compat import keras, register
from keras_wreg._validation import check_choice, check_int, check_non_negative
from keras_wreg.regularizers.cluster import (
    INITS, clustered_weights, initialize_centers, snap_weights)

_SNAP_WHEN = (None, "end", "epoch", "batch")


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

    Raises:
        ValueError: for a negative ``warmup_steps`` or ``reseed_every``, ``min_count < 1``,
            a negative ``duplicate_tol`` or an unknown ``snap``.
    """

    def __init__(self, warmup_steps=0, reseed_every=1, min_count=1, duplicate_tol=1e-3,
                 snap=None, init=None, delay_steps=0):
        super().__init__()
        self.warmup_steps = check_int(warmup_steps, "warmup_steps", low=0)
        self.delay_steps = check_int(delay_steps, "delay_steps", low=0)
        self.reseed_every = check_int(reseed_every, "reseed_every", low=0)
        self.min_count = check_int(min_count, "min_count", low=1)
        self.duplicate_tol = check_non_negative(duplicate_tol, "duplicate_tol", high=1.0)
        self.snap = check_choice(snap, _SNAP_WHEN, "snap")
        self.init = None if init is None else check_choice(init, INITS, "init")
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
                "snap": self.snap, "init": self.init, "delay_steps": self.delay_steps}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def factor(self, step):
        """The penalty factor :math:`s_t` at training step ``step``."""
        if step < self.delay_steps:
            return 0.0
        if self.warmup_steps == 0:
            return 1.0
        return min(1.0, (step - self.delay_steps + 1) / self.warmup_steps)

    def _set_warmup(self):
        factor = self.factor(self.step)
        if factor != self._factor:
            for _, _, reg in self._clustered:
                reg.warmup.assign(factor)
            self._factor = factor

    def on_train_begin(self, logs=None):
        self._clustered = clustered_weights(self.model)
        self._factor = None
        if not self._clustered:
            raise ValueError("ClusterCallback: the model has no layer regularized by ClusterReg.")
        initialize_centers(self.model, method=self.init)
        self._set_warmup()

    def on_train_batch_begin(self, batch, logs=None):
        step = self.step
        if self.delay_steps and step == self.delay_steps:
            initialize_centers(self.model, method=self.init, force=True)
        if step <= self.delay_steps + self.warmup_steps:
            self._set_warmup()

    def on_train_batch_end(self, batch, logs=None):
        self._advance()
        if self.snap == "batch":
            snap_weights(self.model)

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


__all__ = ["ClusterCallback", "cluster_stats"]
