"""Feature-distribution-guided binary activations on a binary ResNet-18 (seed 001)."""

from keras_wreg._compat import lq
from keras_wreg.callbacks import ActivationBalance
from keras_wreg.models.resnet import FDA_MODES
from keras_wreg.quantizers import ScaledSign
from keras_wreg._validation import check_non_negative, check_positive, check_real
from keras_wreg.recipes.base import Recipe, choice, count, optional, register_recipe
from keras_wreg._validation import check_dataset, check_model, optional_data, validate_args

KERNEL_QUANTIZERS = ("ste_sign", "scaled_sign")


@register_recipe
class FDARecipe(Recipe):
    """Binary ResNet-18 whose activations go through FeatureDistributionAdjust, GroupExcitation
    and a learnable-threshold sign (``variant="full"``), or only a learnable static threshold
    (``variant="static"``, RSign-like); ``variant="none"`` is plain Larq activations
    (``activation``: ``ste_sign`` or Bi-Real's ``approx_sign``); the ablations
    ``"no_excite"``, ``"no_adjust"`` and ``"adjust_only"`` switch parts of ``"full"`` off
    (:data:`keras_wreg.models.resnet.FDA_PARTS`).

    Weights: ``kernel_quantizer="ste_sign"`` with ``weight_clip(clip)`` (default, the same as
    the plain Larq baseline, so the comparison isolates the activation path) or
    ``"scaled_sign"`` (per-channel α·sign(W), no clip). Adam with cosine decay. The
    :class:`~keras_wreg.callbacks.ActivationBalance` callback logs ``act_pos_frac`` and
    ``act_imbalance`` every epoch on the first 256 training images.

    ``keras-wreg train --model resnet18 --method fda --param variant=static``
    """

    name = "fda"
    description = "FDA + group excitation + learnable zero point sign, binary ResNet-18"
    default_model = "resnet18"
    #: the measured winner of ``benchmarks/efficacy_001`` (selected on seed-0 validation from 5
    #: FDA arms: the full method at learning rate 2e-3, 66.08 %; at 1e-3, 61.40 %)
    defaults = {
        "learning_rate": 2e-3,
        "variant": "full",
        "groups": 4,
        "reduction": 4,
        "epsilon": 1e-5,
        "pool": "channel",
        "balance_penalty": 0.0,
        "kernel_quantizer": "ste_sign",
        "clip": 1.0,
        "activation": "ste_sign",
    }
    param_checks = {
        "variant": choice(*FDA_MODES),
        "kernel_quantizer": choice(*KERNEL_QUANTIZERS),
        "reduction": lambda v, k: check_real(v, k, low=1.0, high=1e4),
        "pool": choice("channel", "group"),
        "clip": optional(lambda v, k: check_non_negative(v, k, high=1e3)),
        "groups": count(low=1, high=4096),
        "epsilon": lambda v, k: check_positive(v, k, high=1.0),
        "balance_penalty": check_non_negative,
        "activation": choice("ste_sign", "approx_sign"),
    }

    def params(self, overrides=None):
        params = super().params(overrides)
        if params["variant"] not in FDA_MODES:
            raise ValueError(f"`variant` must be one of {FDA_MODES}, got {params['variant']!r}.")
        if params["kernel_quantizer"] not in KERNEL_QUANTIZERS:
            raise ValueError(f"`kernel_quantizer` must be one of {KERNEL_QUANTIZERS}, "
                             f"got {params['kernel_quantizer']!r}.")
        return params

    def layer_kwargs(self, params):
        if params["kernel_quantizer"] == "scaled_sign":
            kernel = dict(kernel_quantizer=ScaledSign(), kernel_constraint=None)
        else:
            clip = params["clip"]
            kernel = dict(kernel_quantizer="ste_sign",
                          kernel_constraint=lq.constraints.WeightClip(clip) if clip else None)
        return dict(
            input_quantizer=params["activation"], fda=params["variant"], groups=int(params["groups"]),
            reduction=params["reduction"], epsilon=float(params["epsilon"]), pool=params["pool"],
            balance_penalty=float(params["balance_penalty"]), **kernel)

    def build_model(self, model_name, input_shape, num_classes, params, **model_kwargs):
        if not model_name.startswith("resnet18"):
            raise ValueError(f"method 'fda' needs a resnet18 model (resnet18 or resnet18_fp), "
                             f"got `model`={model_name!r}.")
        return super().build_model(model_name, input_shape, num_classes, params, **model_kwargs)

    def callbacks(self, params, total_steps, model=None):
        return [ActivationBalance()]

    def search_space(self, hp):
        out = super().search_space(hp)
        out.update(
            variant=hp.Choice("variant", [m for m in FDA_MODES if m != "none"],
                              default=self.defaults["variant"]),
            activation=hp.Choice("activation", ["ste_sign", "approx_sign"],
                                 default=self.defaults["activation"]),
            groups=hp.Choice("groups", [1, 2, 4, 8], default=self.defaults["groups"]),
            reduction=hp.Choice("reduction", [1, 2, 4], default=self.defaults["reduction"]),
        )
        return out

    @validate_args(model=check_model, train=check_dataset, validation_data=optional_data)
    def fit(self, model, train, epochs, validation_data=None, callbacks=(), params=None,
            verbose=1, **fit_kwargs):
        """Like the base fit; an :class:`ActivationBalance` without a probe gets the first 256
        training images."""
        for callback in callbacks:
            if isinstance(callback, ActivationBalance) and callback.probe is None:
                callback.set_probe_from_dataset(train, max_examples=256)
        return super().fit(model, train, epochs, validation_data=validation_data,
                           callbacks=callbacks, params=params, verbose=verbose, **fit_kwargs)


__all__ = ["FDARecipe", "KERNEL_QUANTIZERS"]
