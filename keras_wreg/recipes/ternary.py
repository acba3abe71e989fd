r"""Ternary-weight recipes: Larq ``ste_tern`` (the baseline) and the two-stage seed-003 recipe.

``keras-wreg train --method ternary --param stage1_fraction=0.5 --param strength=0.1`` runs

1. stage 1: the same network with full-precision kernels and :class:`TernaryReg` on every
   kernel that will be ternary (a config clone of the model, trained, then its weights copied
   back), for ``round(stage1_fraction * epochs)`` epochs;
2. stage 2: the ternary network (:class:`RescaledSigmoidTernary` kernels) with a fresh optimizer
   and :class:`TemperatureScheduler`, for the remaining epochs.

``stage1_fraction=0`` gives the quantizer alone (one stage). Activations are full precision
with ReLU by default (the TWN setting); ``activation="ste_sign"`` makes them binary.

Issue 16 levers for stage 1: ``decoupled=True`` applies TernaryReg as its own step after Adam's
(:class:`keras_wreg.optimizers.DecoupledRegularization`, :math:`w \leftarrow w - \eta_t s(t)
\lambda\nabla R`; the penalty leaves the loss, so Adam's normalisation does not turn it into a
full step for weights with small task gradients) and ``ramp`` (``"none"``, ``"linear"`` or
``"cosine"``) ramps :math:`s(t)` from 0 to 1 between the fractions ``ramp_start`` and
``ramp_end`` of stage 1 (:class:`keras_wreg.schedules.Ramp`; decoupled only). The stage-2
temperature schedule (``t0``, ``t1``, ``schedule``) is searchable.
"""

import copy

from keras_wreg._compat import keras
from keras_wreg.training import fit_stage
from keras_wreg.callbacks.temperature import TemperatureScheduler
from keras_wreg.callbacks.ternary_pull import TernaryPull
from keras_wreg.callbacks.ternary_stats import TernaryStats
from keras_wreg.optimizers.decoupled import DecoupledRegularization
from keras_wreg.optimizers.wrapper import plain_name
from keras_wreg.quantizers.ternary import RescaledSigmoidTernary
from keras_wreg._validation import check_non_negative, check_positive
from keras_wreg.recipes.base import Recipe, choice, fraction, real, register_recipe
from keras_wreg.regularizers.ternary_reg import TernaryReg
from keras_wreg.schedules import Ramp
from keras_wreg._validation import check_dataset, check_model, optional_data, validate_args

_ACTIVATIONS = ("relu", "ste_sign")


def _relu_block(x):
    return keras.layers.Activation("relu")(x)


def _activation_kwargs(activation):
    if activation not in _ACTIVATIONS:
        raise ValueError(f"`activation` must be one of {_ACTIVATIONS}, got {activation!r}.")
    if activation == "relu":
        return dict(input_quantizer=None, activation_block=_relu_block)
    return dict(input_quantizer="ste_sign")


_PULL_RAMPS = ("none", "linear", "cosine")


def _pull_callbacks(params, steps):
    """``[TernaryPull]`` when ``pull > 0`` (ramped from 0 over ``steps`` by ``pull_ramp``)."""
    if not params["pull"]:
        return []
    schedule = None
    if params["pull_ramp"] != "none":
        schedule = Ramp.over_training(max(1, int(steps or 1)), 0.0, 1.0,
                                      shape=params["pull_ramp"])
    return [TernaryPull(params["pull"], schedule=schedule)]


def _pull_space(hp, defaults):
    """The pull's hyperparameters; the ramp is conditional on a non-zero pull."""
    pull = hp.Choice("pull", [0.0, 1.0, 10.0, 100.0], default=defaults["pull"])
    with hp.conditional_scope("pull", [1.0, 10.0, 100.0]):
        ramp = hp.Choice("pull_ramp", list(_PULL_RAMPS), default=defaults["pull_ramp"])
    return {"pull": pull, "pull_ramp": ramp if pull and ramp is not None else "none"}


@register_recipe
class SteTernRecipe(Recipe):
    """Larq's ``ste_tern`` kernels (fixed threshold or TWN threshold), Adam, no clip."""

    name = "ste_tern"
    description = "Larq baseline: ste_tern kernels (fixed or TWN threshold), Adam (cosine decay)"
    defaults = {"learning_rate": 1e-3, "ternary_weight_networks": True, "threshold_value": 0.05,
                "activation": "relu", "pull": 0.0, "pull_ramp": "none"}
    param_checks = {"activation": choice(*_ACTIVATIONS), "threshold_value": check_positive,
                    "pull": check_non_negative, "pull_ramp": choice(*_PULL_RAMPS)}

    def layer_kwargs(self, params):
        quantizer = {"class_name": "SteTern", "config": {
            "threshold_value": params["threshold_value"],
            "ternary_weight_networks": bool(params["ternary_weight_networks"])}}
        return dict(kernel_quantizer=quantizer, kernel_constraint=None,
                    **_activation_kwargs(params["activation"]))

    def callbacks(self, params, total_steps, model=None):
        return [TernaryStats()] + _pull_callbacks(params, total_steps)

    def search_space(self, hp):
        params = super().search_space(hp)
        params.update(_pull_space(hp, self.defaults))
        return params


@register_recipe
class TernaryRecipe(Recipe):
    """Seed 003: full precision + TernaryReg, then RescaledSigmoidTernary + TemperatureScheduler.

    Defaults: the best keras_wreg ternary arm on a held-out validation split
    (``benchmarks/efficacy_003``, arm ``tern_dec_t``). Stage 1 takes 30 % of the epochs, and
    TernaryReg (λ = 30) is applied there as a decoupled step whose strength ramps along a cosine.
    Stage 2 anneals the temperature along a cosine from 1 to 10. The seed's recipe is
    ``stage1_fraction=0.5, strength=0.1, decoupled=False, t1=100, schedule="exponential"``.
    """

    name = "ternary"
    description = ("two-stage ternary: TernaryReg on full-precision kernels, then "
                   "RescaledSigmoidTernary + TemperatureScheduler")
    defaults = {
        "learning_rate": 1e-3,
        "stage1_fraction": 0.3,
        "strength": 30.0,
        "variant": "cosine",
        "delta": 0.7,
        "stage2_strength": 0.0,
        "t0": 1.0,
        "t1": 10.0,
        "schedule": "cosine",
        "r_min": 0.01,
        "scale": True,
        "activation": "relu",
        "decoupled": True,
        "ramp": "cosine",
        "ramp_start": 0.0,
        "ramp_end": 1.0,
        "pull": 0.0,
        "pull_ramp": "none",
    }
    param_checks = {
        "pull": check_non_negative,
        "pull_ramp": choice(*_PULL_RAMPS),
        "ramp": choice("none", "linear", "cosine"),
        "ramp_start": fraction(),
        "ramp_end": fraction(),
        "stage1_fraction": fraction(high_open=True),
        "variant": choice("cosine", "multiwell"),
        "schedule": choice("exponential", "linear", "cosine"),
        "activation": choice(*_ACTIVATIONS),
        "stage2_strength": check_non_negative,
        "t0": check_positive,
        "t1": check_positive,
        "r_min": real(0.0, 1.0, low_open=True),
    }

    # -- building blocks -------------------------------------------------------------
    def quantizer_config(self, params):
        return {"class_name": "RescaledSigmoidTernary", "config": {
            "temperature": params["t0"], "delta": params["delta"], "r_min": params["r_min"],
            "scale": bool(params["scale"])}}

    def regularizer(self, params, strength):
        return TernaryReg(strength=strength, delta=params["delta"], variant=params["variant"])

    def layer_kwargs(self, params):
        reg = (self.regularizer(params, params["stage2_strength"])
               if params["stage2_strength"] else None)
        return dict(kernel_quantizer=self.quantizer_config(params), kernel_constraint=None,
                    kernel_regularizer=reg, **_activation_kwargs(params["activation"]))

    def callbacks(self, params, total_steps, model=None):
        stage2 = None if total_steps is None else \
            int(round(total_steps * (1.0 - params["stage1_fraction"])))
        return [TemperatureScheduler(params["t0"], params["t1"], schedule=params["schedule"]),
                TernaryStats(delta=params["delta"])] + _pull_callbacks(params, stage2)

    def search_space(self, hp):
        params = super().search_space(hp)
        params.update(
            stage1_fraction=hp.Choice("stage1_fraction", [0.0, 0.15, 0.3, 0.5, 0.75],
                                      default=self.defaults["stage1_fraction"]),
            strength=hp.Float("strength", 1e-3, 100.0, sampling="log",
                              default=self.defaults["strength"]),
            variant=hp.Choice("variant", ["cosine", "multiwell"], default="cosine"),
            t1=hp.Float("t1", 10.0, 1000.0, sampling="log", default=self.defaults["t1"]),
            schedule=hp.Choice("schedule", ["exponential", "linear", "cosine"],
                               default=self.defaults["schedule"]),
            r_min=hp.Float("r_min", 1e-3, 1.0, sampling="log", default=self.defaults["r_min"]),
            t0=hp.Float("t0", 0.1, 10.0, sampling="log", default=self.defaults["t0"]),
            decoupled=hp.Boolean("decoupled", default=self.defaults["decoupled"]),
        )
        params.update(_pull_space(hp, self.defaults))
        # the ramp scales the decoupled step only: a conditional hyperparameter, so the tuner
        # neither samples nor reports it for trials in which the penalty is in the loss
        with hp.conditional_scope("decoupled", [True]):
            ramp = hp.Choice("ramp", ["none", "linear", "cosine"],
                             default=self.defaults["ramp"])
        params["ramp"] = ramp if params["decoupled"] and ramp is not None else "none"
        return params

    def stage1_model(self, model, params):
        """A full-precision clone of ``model``: every layer with a kernel quantizer loses it and
        gets :class:`TernaryReg` instead (same weights layout, so ``set_weights`` copies across);
        with ``decoupled`` the layers get no regularizer (the optimizer applies it, see
        :meth:`stage1_optimizer`).
        """
        config = copy.deepcopy(model.get_config())
        reg = None if params["decoupled"] else keras.regularizers.serialize(
            self.regularizer(params, params["strength"]))
        changed = 0
        for layer in config.get("layers", []):
            cfg = layer.get("config", {})
            if cfg.get("kernel_quantizer") is not None:
                cfg["kernel_quantizer"] = None
                cfg["kernel_regularizer"] = copy.deepcopy(reg)
                changed += 1
        if not changed:
            raise ValueError("The model has no layer with a kernel quantizer to train in stage 1.")
        clone = model.__class__.from_config(config)
        clone.set_weights(model.get_weights())
        return clone

    def stage1_optimizer(self, model, params, total_steps, select=()):
        """Stage 1's optimizer: the recipe's Adam, wrapped by
        :class:`~keras_wreg.optimizers.DecoupledRegularization` (TernaryReg on the kernels that
        will be ternary, ``select``: the names of their layers, ramped by ``ramp``) when
        ``decoupled``. The wrapper selects variables by name; Larq kernels are all called
        ``kernel``, so every kernel of ``model`` with that name is selected (in ``vgg_small`` all
        kernels are ternary)."""
        optimizer = self.make_optimizer(params, total_steps, model=model)
        if not params["decoupled"]:
            if params["ramp"] != "none":
                raise ValueError("`ramp` needs `decoupled=True` (the ramp scales the decoupled "
                                 f"step), got ramp={params['ramp']!r}.")
            return optimizer
        if not params["ramp_start"] <= params["ramp_end"]:
            raise ValueError(f"need `ramp_start` <= `ramp_end`, got {params['ramp_start']!r} > "
                             f"{params['ramp_end']!r}.")
        schedule = None
        if params["ramp"] != "none":
            schedule = Ramp.over_training(max(1, int(total_steps or 1)), params["ramp_start"],
                                          params["ramp_end"], shape=params["ramp"])
        # tf-keras names Larq kernels "kernel" without the layer scope: select by those names
        names = sorted({plain_name(model.get_layer(name).kernel) for name in select})
        return DecoupledRegularization(optimizer, self.regularizer(params, params["strength"]),
                                       schedule=schedule, select=names)

    # -- training ------------------------------------------------------------------
    def stage_epochs(self, params, epochs):
        fraction = params["stage1_fraction"]
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"`stage1_fraction` must be in [0, 1), got {fraction!r}.")
        stage1 = int(round(fraction * epochs))
        stage1 = min(stage1, epochs - 1) if epochs > 1 else 0
        return stage1, epochs - stage1

    @validate_args(model=check_model, train=check_dataset, validation_data=optional_data)
    def fit(self, model, train, epochs, validation_data=None, callbacks=(), params=None,
            verbose=1, backup_dir=None, teacher=None, **fit_kwargs):
        """Stage 1 (full precision + TernaryReg) then stage 2 (ternary + temperature schedule).

        With ``backup_dir`` both stages are resumable (backups ``stage1`` and ``stage2``; a run
        killed in stage 2 restores stage 1's final state in zero epochs and goes on).

        Returns the stage-2 History whose ``history`` holds both stages concatenated (plus a
        ``stage`` list), so curves span all ``epochs``; a key logged in only one stage (e.g.
        ``temperature``) is NaN in the other.
        """
        params = self.params(params)
        distiller = self.distiller(params, teacher)
        e1, e2 = self.stage_epochs(params, epochs)
        steps = int(train.cardinality()) if hasattr(train, "cardinality") else -1
        steps = steps if steps > 0 else None
        callbacks = list(callbacks)
        # the temperature schedule and the pull act on the ternary kernels: stage 2 only
        plain = [c for c in callbacks if not isinstance(c, (TemperatureScheduler, TernaryPull))]
        merged = {}
        if e1:
            stage1 = self.stage1_model(model, params)
            select = [layer.name for layer in model.layers
                      if getattr(layer, "kernel_quantizer", None) is not None]
            stage1.compile(optimizer=self.stage1_optimizer(stage1, params,
                                                           e1 * steps if steps else None,
                                                           select=select),
                           loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            h1 = fit_stage(stage1, train, e1, backup_dir=backup_dir, stage="stage1",
                           validation_data=validation_data, callbacks=plain, verbose=verbose,
                           distiller=distiller, **fit_kwargs)
            model.set_weights(stage1.get_weights())
            merged = {k: list(v) for k, v in h1.history.items()}
            merged["stage"] = [1] * e1
        self.compile(model, params, e2 * steps if steps else None)
        if not any(isinstance(c, TemperatureScheduler) for c in callbacks):
            callbacks.append(TemperatureScheduler(params["t0"], params["t1"],
                                                  schedule=params["schedule"]))
        h2 = fit_stage(model, train, e2, backup_dir=backup_dir, stage="stage2",
                       validation_data=validation_data, callbacks=callbacks, verbose=verbose,
                       distiller=distiller, **fit_kwargs)
        for key, values in h2.history.items():
            merged[key] = merged.get(key, [float("nan")] * e1) + list(values)
        merged["stage"] = merged.get("stage", []) + [2] * e2
        h2.history = merged
        return h2


__all__ = ["TernaryRecipe", "SteTernRecipe"]
