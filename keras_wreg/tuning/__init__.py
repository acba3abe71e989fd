"""Hyperparameter search for keras_wreg methods with KerasTuner, on tf-keras (Larq) models."""

from keras_wreg.tuning.hypermodel import RecipeHyperModel
from keras_wreg.tuning.tuners import (
    TUNERS,
    BayesianOptimization,
    Hyperband,
    RandomSearch,
    SaveBestEpoch,
    TfKerasTunerMixin,
    best_epoch_metrics,
    make_tuner,
)

__all__ = ["RecipeHyperModel", "RandomSearch", "BayesianOptimization", "Hyperband",
           "TfKerasTunerMixin", "SaveBestEpoch", "best_epoch_metrics", "make_tuner", "TUNERS"]
from keras_wreg.tuning.command import add_tune_arguments, run_tune  # noqa: E402

__all__ += ["add_tune_arguments", "run_tune"]
