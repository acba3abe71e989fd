"""KerasTuner search spaces over every method registered in :mod:`keras_wreg.recipes`.

The space of a method is its recipe's own :meth:`~keras_wreg.recipes.Recipe.search_space`, so a
method added to the registry (ternary, cluster, hwgq, ...) is searchable without touching this
module. Every other scalar hyperparameter of the recipe (switches such as ``use_wreg``, ``reduce``)
is declared as ``hp.Fixed`` at its default, so the tuner's space lists *all* of a method's
hyperparameters and ``--param key=value`` overrides are recorded in the trial files.
"""

import math

import keras_tuner as kt

from keras_wreg import models, recipes
from keras_wreg._compat import keras

#: hyperparameter names the tuner itself uses (never recipe parameters)
RESERVED = ("model", "tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round",
            "tuner/trial_id")


def _is_fixable(value):
    return isinstance(value, (bool, int, float, str)) and not (
        isinstance(value, float) and not math.isfinite(value))


class RecipeHyperModel(kt.HyperModel):
    r"""A KerasTuner ``HyperModel`` for one keras_wreg method on one (or a choice of) model(s).

    ``build(hp)`` samples the method's parameters with ``recipe.search_space(hp)``, declares the
    remaining scalar defaults as ``hp.Fixed``, applies ``overrides``, builds the network with
    ``recipe.build_model`` and compiles it with ``recipe.compile``. ``fit`` goes through
    ``recipe.fit`` (so multi-stage methods keep their schedule) with the recipe's callbacks.

    The learning-rate schedule of a recipe decays over ``steps_per_epoch * epochs`` steps
    (Hyperband: its ``max_epochs``); with ``steps_per_epoch=None`` the rate is constant.

    Args:
        method: a name in ``recipes.RECIPES``.
        input_shape: input shape of the images, e.g. ``(32, 32, 3)``.
        num_classes: number of classes (>= 2).
        model: a name in ``models.MODELS``, or a list of names (then ``"model"`` is a
            ``hp.Choice``); ``None`` uses the recipe's ``default_model``.
        model_kwargs: extra keyword arguments for the builder (e.g. ``{"width": 16}``).
        overrides: ``{name: value}`` recipe parameters held fixed (not searched).
        steps_per_epoch: training steps per epoch (for the learning-rate schedule), or None.
        epochs: epochs the schedule spans (the search's ``epochs`` / Hyperband's ``max_epochs``).
        name: HyperModel name.

    Raises:
        ValueError: unknown ``method``, ``model``, override key, or a bad ``num_classes``.
    """

    def __init__(self, method, input_shape, num_classes, model=None, model_kwargs=None,
                 overrides=None, steps_per_epoch=None, epochs=None, name=None, teacher=None):
        super().__init__(name=name or f"keras_wreg_{method}", tunable=True)
        # a teacher (model or .keras path) for every trial: the search space's distill_weight
        # and distill_temperature act through it (no effect without one)
        self.teacher = teacher
        self.recipe = recipes.get(method)  # raises ValueError naming `method`
        self.method = method
        names = model if model is not None else self.recipe.default_model
        names = [names] if isinstance(names, str) else list(names)
        if not names:
            raise ValueError("`model` must name at least one model.")
        for n in names:
            if n not in models.MODELS:
                raise ValueError(f"`model` must be in {sorted(models.MODELS)}, got {n!r}.")
        self.model_names = names
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes` must be an int >= 2, got {num_classes!r}.")
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.model_kwargs = dict(model_kwargs or {})
        self.overrides = dict(overrides or {})
        self.recipe.params(self.overrides)  # raises ValueError naming an unknown key
        for key in self.overrides:
            if key in RESERVED:
                raise ValueError(f"`overrides` may not set the reserved name {key!r}.")
        if steps_per_epoch is not None and (not isinstance(steps_per_epoch, int)
                                            or steps_per_epoch <= 0):
            raise ValueError(f"`steps_per_epoch` must be None or a positive int, "
                             f"got {steps_per_epoch!r}.")
        if epochs is not None and (not isinstance(epochs, int) or epochs <= 0):
            raise ValueError(f"`epochs` must be None or a positive int, got {epochs!r}.")
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs

    # -- the space -------------------------------------------------------------------
    def fixed_hyperparameters(self):
        """A ``HyperParameters`` holding the overrides as ``Fixed`` (give it to the tuner)."""
        hp = kt.HyperParameters()
        for key, value in self.overrides.items():
            if _is_fixable(value):
                hp.Fixed(key, value)
        return hp

    def sample(self, hp):
        """``(model_name, params)`` for ``hp``: declares the whole space on ``hp`` as a side effect.

        ``params`` is the recipe's full parameter dict (defaults, sampled values, overrides),
        exactly what ``keras-wreg train --config`` consumes.
        """
        if len(self.model_names) > 1:
            model_name = hp.Choice("model", self.model_names, default=self.model_names[0])
        else:
            model_name = self.model_names[0]
        sampled = dict(self.recipe.search_space(hp))
        for key, value in self.recipe.defaults.items():
            if key not in sampled and _is_fixable(self.overrides.get(key, value)):
                sampled[key] = hp.Fixed(key, self.overrides.get(key, value))
        sampled.update(self.overrides)
        return model_name, self.recipe.params(sampled)

    def declare_hyperparameters(self, hp):
        self.sample(hp)

    def total_steps(self, epochs=None):
        epochs = epochs or self.epochs
        if self.steps_per_epoch is None or not epochs:
            return None
        return int(self.steps_per_epoch * epochs)

    # -- build and fit ---------------------------------------------------------------
    def build(self, hp):
        model_name, params = self.sample(hp)
        model = self.recipe.build_model(model_name, self.input_shape, self.num_classes, params,
                                        **self.model_kwargs)
        self.recipe.compile(model, params, self.total_steps())
        self._built = (id(model), params)  # read by fit(); kept off the model's tracked state
        return model

    def fit(self, hp, model, *args, callbacks=None, epochs=1, validation_data=None,
            verbose=0, **kwargs):
        """Train with ``recipe.fit`` and the recipe's callbacks; returns the History."""
        built = getattr(self, "_built", None)
        params = built[1] if built and built[0] == id(model) else self.sample(hp)[1]
        extra = list(self.recipe.callbacks(params, self.total_steps(), model=model))
        if args:
            train, args = args[0], args[1:]
        else:
            train = kwargs.pop("x")
        if args:
            raise ValueError("Pass the training data as the only positional argument; "
                             "everything else by keyword (validation_data=..., epochs=...).")
        return self.recipe.fit(model, train, epochs=epochs, validation_data=validation_data,
                               callbacks=list(callbacks or []) + extra, params=params,
                               verbose=verbose, teacher=self.teacher, **kwargs)


def is_tf_keras_model(obj):
    """True for a tf-keras (Keras 2) model, the kind Larq builds."""
    return isinstance(obj, keras.Model)


__all__ = ["RecipeHyperModel", "RESERVED", "is_tf_keras_model"]
