"""The recipe registry: one entry per method, used by the CLI, the tuner and the benchmarks.

A :class:`Recipe` turns a flat dict of hyperparameters (``params``) into the building blocks of a
method: the keyword arguments of the quantized layers (quantizers, constraint, regularizer), the
optimizer, the callbacks, and its KerasTuner search space. Adding a method is one subclass
decorated with :func:`register_recipe` in its own module, imported in ``recipes/__init__.py``.
"""

import copy
import functools

from keras_wreg import models
from keras_wreg._compat import keras
from keras_wreg.training import fit_stage
from keras_wreg.distillation import Distiller
from keras_wreg._validation import (
    check_bool, check_choice, check_int, check_non_negative, check_positive, check_real, check_str)
from keras_wreg._validation import check_dataset, check_model, optional_data, validate_args

RECIPES = {}


def register_recipe(cls):
    """Class decorator: make ``cls`` available as ``recipes.get(cls.name)``."""
    if not cls.name or cls.name in RECIPES:
        raise ValueError(f"Recipe name {cls.name!r} is empty or already registered.")
    RECIPES[cls.name] = cls
    return cls


def get(name):
    """A fresh instance of the recipe registered as ``name``."""
    check_choice(name, sorted(RECIPES), "method")
    return RECIPES[name]()


def method_flags():
    """``{flag: (hyperparameter, type, help)}`` of every registered recipe's ``cli_flags``.

    Raises:
        ValueError: if two recipes give one flag to different hyperparameters.
    """
    flags = {}
    for name in sorted(RECIPES):
        for flag, spec in RECIPES[name].cli_flags.items():
            if flags.setdefault(flag, spec)[0] != spec[0]:
                raise ValueError(f"Recipes disagree on {flag}: {flags[flag][0]} vs {spec[0]}.")
    return flags


def add_method_flags(parser):
    """Add every recipe's command-line flags to an argparse ``parser`` (default None)."""
    for flag, (key, kind, text) in method_flags().items():
        parser.add_argument(flag, type=kind, default=None,
                            help=f"{text} (= --param {key}=VALUE)")


def method_flag_params(args):
    """``{hyperparameter: value}`` of the recipe flags given on a parsed command line."""
    out = {}
    for flag, (key, _, _) in method_flags().items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value is not None:
            out[key] = value
    return out


def fraction(high_open=False):
    """A check for a number in [0, 1] (or [0, 1))."""
    return functools.partial(check_real, low=0.0, high=1.0, high_open=high_open)


def choice(*choices):
    """A check for one of ``choices``."""
    return lambda value, name: check_choice(value, choices, name)


def optional(check):
    """``check`` that lets None through."""
    return lambda value, name: None if value is None else check(value, name)


def count(low=0, high=10**7):
    """A check for an int in [low, high]."""
    return functools.partial(check_int, low=low, high=high)


def real(low=None, high=None, **kwargs):
    """A check for a finite number in a range."""
    return functools.partial(check_real, low=low, high=high, **kwargs)


#: distillation hyperparameters every recipe has (they act only when ``fit`` gets a teacher):
#: those of the measured winner of ``benchmarks/efficacy_kd`` (``cm_kd_t2_w09``, selected on
#: seed-0 validation from 2 (T, w) settings; it ties plain Larq, see ``benchmarks/RESULTS.md``)
DISTILL_DEFAULTS = {"distill_weight": 0.9, "distill_temperature": 2.0}

#: checks every recipe applies to these keys when it has them
COMMON_CHECKS = {
    "distill_weight": functools.partial(check_real, low=0.0, high=1.0),
    "distill_temperature": functools.partial(check_positive, high=1e3),
    "learning_rate": functools.partial(check_positive, high=10.0),
    "strength": check_non_negative,
    "temperature": check_positive,
    "delta": functools.partial(check_positive, high=100.0),
}


class Recipe:
    """Base recipe: plain Larq-style training with Adam and a cosine learning-rate decay.

    Subclasses override ``defaults``, :meth:`layer_kwargs`, :meth:`make_optimizer`,
    :meth:`callbacks`, :meth:`search_space` and, for multi-stage methods, :meth:`fit`.

    Example:
        ```python
        recipe = kw.recipes.get("wreg")  # the building blocks of one method
        params = recipe.params({"learning_rate": 1e-3})  # defaults + checked overrides
        model = recipe.build_model("vgg_small", (28, 28, 1), 10, params, width=4)
        recipe.compile(model, params, total_steps=100)
        ```
    """

    name = ""
    description = ""
    #: model used when the caller does not name one
    default_model = "vgg_small"
    #: every hyperparameter of the method with its default (flat, JSON-serializable)
    defaults = {"learning_rate": 1e-3}
    #: ``key -> check(value, key)`` for hyperparameters whose range is known here; the others
    #: are checked by type against their default (bool, int, float, str) and by the objects
    #: they are passed to
    param_checks = {}
    #: whether the trained model quantizes something (its export must hold quantized ops)
    quantizes = True
    #: command-line flags of the method: ``{flag: (hyperparameter, type, help)}``; ``keras-wreg
    #: train --flag V`` is ``--param hyperparameter=V``
    cli_flags = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.defaults = {**cls.defaults, **DISTILL_DEFAULTS}

    def params(self, overrides=None):
        """Defaults updated with ``overrides``; unknown keys or bad values raise ValueError
        (TypeError for a wrong type) naming the hyperparameter."""
        params = copy.deepcopy(self.defaults)
        if overrides is not None and not isinstance(overrides, dict):
            raise TypeError(f"`params` must be a dict of hyperparameters, got {overrides!r}.")
        for key, value in (overrides or {}).items():
            if key not in params:
                raise ValueError(
                    f"Unknown hyperparameter {key!r} for method {self.name!r}; "
                    f"known: {sorted(params)}."
                )
            params[key] = self.check_param(key, value)
        return params

    def check_param(self, key, value):
        """Check one hyperparameter value (see :attr:`param_checks`); returns it."""
        check = {**COMMON_CHECKS, **self.param_checks}.get(key)
        if check is not None:
            return check(value, key)
        default = self.defaults.get(key)
        if isinstance(default, bool):
            return check_bool(value, key)
        if isinstance(default, int):
            return check_int(value, key, low=0, high=10**7)
        if isinstance(default, float):
            return check_real(value, key)
        if isinstance(default, str):
            return check_str(value, key)
        return value

    def check_distributable(self, params, strategy):
        """Raise ValueError if the method with ``params`` cannot train under ``strategy`` (a
        ``tf.distribute.Strategy``); every ``Model.fit`` recipe can."""
        return None

    # -- building blocks -------------------------------------------------------------
    def layer_kwargs(self, params):
        """Keyword arguments for the quantized layers of a model builder."""
        return {}

    def learning_rate(self, params, total_steps):
        """Cosine decay from ``params['learning_rate']`` to 0 over ``total_steps``."""
        lr = params["learning_rate"]
        if total_steps and total_steps > 0:
            return keras.optimizers.schedules.CosineDecay(lr, decay_steps=int(total_steps))
        return lr

    def make_optimizer(self, params, total_steps, model=None):
        return keras.optimizers.Adam(self.learning_rate(params, total_steps))

    def callbacks(self, params, total_steps, model=None):
        return []

    def search_space(self, hp):
        """Sample every hyperparameter from a KerasTuner ``HyperParameters`` object."""
        return {"learning_rate": hp.Float("learning_rate", 1e-4, 1e-2, sampling="log",
                                          default=self.defaults["learning_rate"]),
                "distill_weight": hp.Float("distill_weight", 0.0, 1.0,
                                           default=self.defaults["distill_weight"]),
                "distill_temperature": hp.Float("distill_temperature", 1.0, 16.0,
                                                sampling="log",
                                                default=self.defaults["distill_temperature"])}

    # -- assembly --------------------------------------------------------------------
    def build_model(self, model_name, input_shape, num_classes, params, **model_kwargs):
        """Build the (uncompiled) network ``model_name`` wired with this method's layers."""
        kwargs = dict(self.layer_kwargs(params))
        if model_name.endswith("_fp"):
            kwargs = {}
        kwargs.update(model_kwargs)
        return models.build(model_name, input_shape, num_classes, **kwargs)

    @validate_args(model=check_model)
    def distiller(self, params, teacher):
        """The :class:`~keras_wreg.distillation.Distiller` of ``teacher`` (a model or a
        ``.keras`` path) with ``params``' ``distill_weight`` and ``distill_temperature``; None
        without a teacher."""
        if teacher is None:
            return None
        params = self.params(params)
        return Distiller(teacher, weight=params["distill_weight"],
                         temperature=params["distill_temperature"])

    def compile(self, model, params, total_steps):
        model.compile(
            optimizer=self.make_optimizer(params, total_steps, model=model),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model

    @validate_args(model=check_model, train=check_dataset, validation_data=optional_data)
    def fit(self, model, train, epochs, validation_data=None, callbacks=(), params=None,
            verbose=1, backup_dir=None, teacher=None, **fit_kwargs):
        """Train ``model``; multi-stage methods override this. Returns the History.

        With ``teacher`` (a model or a ``.keras`` path) every stage distils it into ``model``
        (:class:`~keras_wreg.distillation.Distiller`, ``distill_weight`` and
        ``distill_temperature`` from ``params``); the saved model holds no teacher.

        With ``backup_dir``, training is resumable: every epoch is backed up with Keras'
        ``BackupAndRestore`` (model, optimizer and regularizer state) and logged to
        ``<backup_dir>/epochs.jsonl``; calling ``fit`` again with the same arguments after a
        kill continues from the last completed epoch (:func:`keras_wreg.training.fit_stage`).
        """
        return fit_stage(model, train, epochs, backup_dir=backup_dir, stage="train",
                         validation_data=validation_data, callbacks=list(callbacks),
                         verbose=verbose, distiller=self.distiller(params, teacher),
                         **fit_kwargs)


__all__ = ["Recipe", "RECIPES", "register_recipe", "get", "method_flags", "add_method_flags",
           "method_flag_params"]
