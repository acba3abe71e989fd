"""KerasTuner tuners that accept tf-keras (Larq) models.

KerasTuner 1.4.8 checks every built model against Keras 3's ``Model`` and drives training with
Keras 3 callbacks, so a tf-keras model (what Larq builds) is rejected before ``fit``
(keras-team/keras-tuner#1039). :class:`TfKerasTunerMixin` replaces the Keras-specific part of
``Tuner``: the documented extension points ``run_trial`` and ``load_model``, plus the private
build and checkpoint-path methods ``_build_hypermodel``, ``_try_build`` and
``_get_checkpoint_fname`` (and the helper ``_deepcopy_callbacks``), which KerasTuner does not
document; their presence in the installed KerasTuner is checked when this module is imported
(:func:`keras_wreg._compat.check_private_api`). It leaves KerasTuner's split intact: the Oracle proposes, the Tuner runs, the HyperModel defines the
space and the fit. Nothing is aliased process-wide: Keras 3 and tf-keras live side by side.

Per trial (``executions_per_trial`` runs), the mixin

1. builds with ``hypermodel.build(hp)`` (for Hyperband's warm-started trials it restores the
   parent trial's checkpoint, weights *and* optimizer state, so a cosine schedule continues),
2. fits through ``hypermodel.fit`` with tf-keras callbacks: the user's (deep-copied), one that
   forwards epoch/batch events to the tuner's ``on_epoch_end`` & co., and :class:`SaveBestEpoch`
   which writes a TensorFlow checkpoint of the best epoch (by the objective), one per execution,
3. honours Hyperband's ``tuner/epochs`` and ``tuner/initial_epoch``,
4. keeps the best execution: its checkpoint becomes the trial's, and its best-epoch metrics are
   what the Oracle receives (with ``executions_per_trial > 1`` the mean and standard deviation
   of the objective over the executions are reported too, as ``<objective>_mean`` and
   ``<objective>_std``).

``load_model(trial)`` rebuilds the trial's model and restores that checkpoint, so
``get_best_models`` returns compiled models whose evaluation reproduces the reported objective,
whatever ``executions_per_trial``.
Resuming (``overwrite=False``) and chief/worker distribution are KerasTuner's own.
"""

import copy
import gc
import glob
import math
import os
import shutil

import keras_tuner as kt
import numpy as np

from keras_wreg._compat import check_private_api, compiled_user_metrics, keras
from keras_wreg.tuning.hypermodel import is_tf_keras_model


check_private_api(("keras_tuner",))


class SaveBestEpoch(keras.callbacks.Callback):
    """Save a TF checkpoint (weights + optimizer) whenever the objective improves.

    Args:
        objective: a ``keras_tuner.Objective``.
        filepath: checkpoint prefix (TensorFlow format; no ``.h5``).
    """

    def __init__(self, objective, filepath):
        super().__init__()
        self.objective = objective
        self.filepath = filepath
        self.best_value = -math.inf if objective.direction == "max" else math.inf

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not self.objective.has_value(logs):
            self.model.save_weights(self.filepath)
            return
        value = float(self.objective.get_value(logs))
        if math.isfinite(value) and self.objective.better_than(value, self.best_value):
            self.best_value = value
            self.model.save_weights(self.filepath)


class _TunerEvents(keras.callbacks.Callback):
    """Forward tf-keras training events to the ``Tuner.on_*`` hooks."""

    def __init__(self, tuner, trial):
        super().__init__()
        self.tuner = tuner
        self.trial = trial

    def on_epoch_begin(self, epoch, logs=None):
        self.tuner.on_epoch_begin(self.trial, self.model, epoch, logs=logs)

    def on_train_batch_begin(self, batch, logs=None):
        self.tuner.on_batch_begin(self.trial, self.model, batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.tuner.on_batch_end(self.trial, self.model, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self.tuner.on_epoch_end(self.trial, self.model, epoch, logs=logs)


def best_epoch_metrics(history, objective):
    """``(metrics, epoch)`` of the best epoch of a tf-keras History by ``objective``."""
    hist = history.history
    num_epochs = max((len(v) for v in hist.values()), default=0)
    if num_epochs == 0:
        raise kt.errors.FailedTrialError("fit() ran no epoch (empty training data?).")
    best, best_metrics, best_value = 0, None, None
    for epoch in range(num_epochs):
        metrics = {k: float(v[epoch]) for k, v in hist.items() if epoch < len(v)}
        if not objective.has_value(metrics):
            raise kt.errors.FatalValueError(
                f"The objective {objective.name!r} is not among the logged metrics "
                f"{sorted(metrics)}; pass validation data for a 'val_' objective.")
        value = float(objective.get_value(metrics))
        metrics[objective.name] = value
        if best_metrics is None or objective.better_than(value, best_value):
            best, best_metrics, best_value = epoch, metrics, value
    return best_metrics, best


class TfKerasTunerMixin:
    """Mix in before a KerasTuner tuner class to tune tf-keras models (see the module doc)."""

    # -- build ---------------------------------------------------------------------
    def _build_hypermodel(self, hp):
        with kt.engine.tuner.maybe_distribute(self.distribution_strategy):
            model = self.hypermodel.build(hp)
            self._override_compile_args(model)
            parent = hp.values.get("tuner/trial_id")
            if parent and is_tf_keras_model(model):
                # Hyperband: continue the parent trial (weights and optimizer state).
                model.load_weights(self._get_checkpoint_fname(parent)).expect_partial()
            return model

    def _try_build(self, hp):
        keras.backend.clear_session()
        gc.collect()
        model = self._build_hypermodel(hp)
        if not is_tf_keras_model(model):
            raise kt.errors.FatalTypeError(
                "Expected the HyperModel to return a tf-keras Model (the kind Larq builds); "
                f"got {type(model)}. Use the plain KerasTuner tuners for Keras 3 models.")
        if self.max_model_size:
            size = int(sum(np.prod(w.shape) for w in model.trainable_weights))
            if size > self.max_model_size:
                raise kt.errors.FailedTrialError(f"Oversized model: {size} parameters.")
        return model

    def _override_compile_args(self, model):
        if not (self.optimizer or self.loss or self.metrics):
            return
        optimizer = self.optimizer
        if optimizer is not None and not isinstance(optimizer, str):
            optimizer = optimizer.__class__.from_config(optimizer.get_config())
        model.compile(optimizer=optimizer or model.optimizer, loss=self.loss or model.loss,
                      metrics=self.metrics or compiled_user_metrics(model))

    # -- run -----------------------------------------------------------------------
    def run_trial(self, trial, *args, **kwargs):
        hp = trial.hyperparameters
        self.__dict__.setdefault("trials_run", []).append(trial.trial_id)
        if "tuner/epochs" in hp.values:
            kwargs["epochs"] = hp.values["tuner/epochs"]
            kwargs["initial_epoch"] = hp.values["tuner/initial_epoch"]
        objective = self.oracle.objective
        user_callbacks = kwargs.pop("callbacks", None) or []
        results, prefixes = [], []
        for execution in range(self.executions_per_trial):
            prefixes.append(self._execution_checkpoint(trial.trial_id, execution))
            fit_kwargs = copy.copy(kwargs)
            callbacks = self._deepcopy_callbacks(user_callbacks)
            callbacks += [_TunerEvents(self, trial), SaveBestEpoch(objective, prefixes[-1])]
            fit_kwargs["callbacks"] = callbacks
            model = self._try_build(hp)
            history = self.hypermodel.fit(hp, model, *args, **fit_kwargs)
            if not isinstance(history, keras.callbacks.History):
                raise kt.errors.FatalTypeError(
                    f"HyperModel.fit() must return the tf-keras History, got {type(history)}.")
            metrics, _ = best_epoch_metrics(history, objective)
            results.append(metrics)
        best = 0
        for i, metrics in enumerate(results):
            if objective.better_than(metrics[objective.name], results[best][objective.name]):
                best = i
        self._keep_execution(prefixes, best, self._get_checkpoint_fname(trial.trial_id))
        reported = dict(results[best])
        if len(results) > 1:
            values = [m[objective.name] for m in results]
            reported[f"{objective.name}_mean"] = float(np.mean(values))
            reported[f"{objective.name}_std"] = float(np.std(values))
        return reported

    def _execution_checkpoint(self, trial_id, execution):
        return os.path.join(self.get_trial_dir(trial_id), f"execution_{execution}")

    @staticmethod
    def _keep_execution(prefixes, best, target):
        """Make the best execution's checkpoint the trial's (``target``); drop the others."""
        for i, prefix in enumerate(prefixes):
            for path in glob.glob(glob.escape(prefix) + ".*"):
                if i == best:
                    shutil.copyfile(path, target + path[len(prefix):])
                os.remove(path)

    def _get_checkpoint_fname(self, trial_id):
        # TensorFlow checkpoint format: holds the optimizer state too (Hyperband warm start).
        return os.path.join(self.get_trial_dir(trial_id), "checkpoint")

    def load_model(self, trial):
        hp = trial.hyperparameters.copy()
        hp.values.pop("tuner/trial_id", None)  # the trial's own checkpoint supersedes its parent
        model = self._try_build(hp)
        with kt.engine.tuner.maybe_distribute(self.distribution_strategy):
            model.load_weights(self._get_checkpoint_fname(trial.trial_id)).expect_partial()
        return model


class RandomSearch(TfKerasTunerMixin, kt.RandomSearch):
    """``keras_tuner.RandomSearch`` for tf-keras/Larq models (same arguments)."""


class BayesianOptimization(TfKerasTunerMixin, kt.BayesianOptimization):
    """``keras_tuner.BayesianOptimization`` for tf-keras/Larq models (same arguments)."""


class Hyperband(TfKerasTunerMixin, kt.Hyperband):
    """``keras_tuner.Hyperband`` for tf-keras/Larq models (same arguments).

    Trials of later rounds warm-start from their parent's best checkpoint (weights and optimizer
    state) and train from ``tuner/initial_epoch`` to ``tuner/epochs``.
    """


TUNERS = {"random": RandomSearch, "bayesian": BayesianOptimization, "hyperband": Hyperband}


def make_tuner(kind, hypermodel, *, objective="val_accuracy", max_trials=10, max_epochs=None,
               factor=3, seed=0, directory=None, project_name=None, overwrite=False,
               hyperparameters=None, **kwargs):
    """One of :data:`TUNERS` with the usual arguments.

    Args:
        kind: ``"random"``, ``"bayesian"`` or ``"hyperband"``.
        hypermodel: a HyperModel building tf-keras models (e.g. :class:`RecipeHyperModel`).
        objective: KerasTuner objective (default ``"val_accuracy"``, maximised).
        max_trials: trials of random/bayesian search (> 0); for Hyperband the budget is set by
            ``max_epochs`` and ``factor`` instead.
        max_epochs: Hyperband's maximum epochs per model (>= 1; required for ``"hyperband"``).
        factor: Hyperband's reduction factor (>= 2).
        seed, directory, project_name, overwrite: as in KerasTuner.
        hyperparameters: pre-declared ``HyperParameters`` (default: the hypermodel's fixed
            overrides when it has ``fixed_hyperparameters()``).
        **kwargs: passed to the tuner (``executions_per_trial``, ``max_model_size``, ...).

    Raises:
        ValueError: unknown ``kind``, bad ``max_trials``, ``max_epochs`` or ``factor``.
    """
    if kind not in TUNERS:
        raise ValueError(f"`kind` must be one of {sorted(TUNERS)}, got {kind!r}.")
    if hyperparameters is None and hasattr(hypermodel, "fixed_hyperparameters"):
        hyperparameters = hypermodel.fixed_hyperparameters()
    common = dict(hypermodel=hypermodel, objective=objective, seed=seed, directory=directory,
                  project_name=project_name, overwrite=overwrite,
                  hyperparameters=hyperparameters, **kwargs)
    if kind == "hyperband":
        if not isinstance(max_epochs, int) or max_epochs < 1:
            raise ValueError(f"`max_epochs` must be an int >= 1 for hyperband, got {max_epochs!r}.")
        if not isinstance(factor, int) or factor < 2:
            raise ValueError(f"`factor` must be an int >= 2, got {factor!r}.")
        return Hyperband(max_epochs=max_epochs, factor=factor, **common)
    if not isinstance(max_trials, int) or max_trials < 1:
        raise ValueError(f"`max_trials` must be a positive int, got {max_trials!r}.")
    return TUNERS[kind](max_trials=max_trials, **common)


__all__ = ["TfKerasTunerMixin", "RandomSearch", "BayesianOptimization", "Hyperband",
           "SaveBestEpoch", "best_epoch_metrics", "make_tuner", "TUNERS"]
