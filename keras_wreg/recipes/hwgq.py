"""HWGQ activations + scaled binary weights, optionally fine-tuned by alternating update
(seed 002)."""

import time

from keras_wreg._compat import keras, tf
from keras_wreg.alternate import AlternateUpdate, format_report
from keras_wreg.training import fit_stage
from keras_wreg.quantizers import HWGQ, ScaledSign
from keras_wreg._validation import check_positive
from keras_wreg.recipes.base import Recipe, choice, count, register_recipe
from keras_wreg._validation import check_dataset, check_model, optional_data, validate_args

FINETUNE = ("none", "alternate", "full")


@register_recipe
class HWGQRecipe(Recipe):
    """HWGQ 2-bit activations, ScaledSign weights (no clip), Adam; then optional fine-tuning.

    ``fit`` trains the binary model for ``epochs``; with ``finetune="alternate"`` it then runs
    :class:`~keras_wreg.AlternateUpdate` (``variant``, ``iterations``, ``steps``,
    ``finetune_learning_rate``, ``num_batches``) on the training data, with
    ``finetune="full"`` it trains the whole model ``finetune_epochs`` more epochs at
    ``finetune_learning_rate``. The fine-tuning report (per layer: what was done and its time)
    is kept in ``history.finetune``, its lines in ``history.report``.
    """

    name = "hwgq"
    description = "HWGQ activations + ScaledSign weights; --finetune alternate|full"
    default_model = "vgg_small_hwgq"
    defaults = {
        "learning_rate": 1e-3,
        "bits": 2,
        "finetune": "none",
        "variant": "A",
        "iterations": 3,
        "steps": 20,
        "num_batches": 8,
        "finetune_learning_rate": 1e-4,
        "finetune_epochs": 1,
    }
    param_checks = {
        "finetune": choice(*FINETUNE),
        "bits": choice(1, 2, 3, 4),
        "variant": choice("A", "B", "a", "b"),
        "iterations": count(low=1, high=10**6),
        "num_batches": count(low=1, high=10**6),
        "finetune_epochs": count(high=10**5),
        "steps": count(high=10**7),
        "finetune_learning_rate": lambda v, k: check_positive(v, k, high=10.0),
    }

    def params(self, overrides=None):
        params = super().params(overrides)
        if params["finetune"] not in FINETUNE:
            raise ValueError(f"`finetune` must be one of {FINETUNE}, got {params['finetune']!r}.")
        HWGQ(int(params["bits"]))  # validates bits
        return params

    def layer_kwargs(self, params):
        return dict(kernel_quantizer=ScaledSign(), input_quantizer=HWGQ(int(params["bits"])),
                    kernel_constraint=None)

    cli_flags = {"--finetune": ("finetune", str, "fine-tuning procedure: alternate|full|none")}

    def check_distributable(self, params, strategy):
        """:class:`~keras_wreg.AlternateUpdate` (``finetune="alternate"``) is refused under a
        strategy with replicas or workers: it fine-tunes layer by layer with its own optimizer
        and cached batches outside ``Model.fit``, which ``tf.distribute`` does not split or
        synchronize. Train distributed with ``finetune="full"`` or ``"none"``, then run the
        alternating update on one device."""
        if strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
            return
        if self.params(params)["finetune"] == "alternate":
            raise ValueError(
                "`finetune='alternate'` (AlternateUpdate) cannot be distributed: it trains layer "
                "by layer with its own optimizer outside Model.fit. Use --strategy default, or "
                "--finetune full/none and run AlternateUpdate afterwards on one device.")

    def alternate_update(self, params):
        return AlternateUpdate(variant=params["variant"], iterations=int(params["iterations"]),
                               steps=int(params["steps"]),
                               learning_rate=float(params["finetune_learning_rate"]),
                               num_batches=int(params["num_batches"]))

    def search_space(self, hp):
        out = super().search_space(hp)
        out["bits"] = hp.Choice("bits", [1, 2, 3, 4], default=2)
        return out

    @validate_args(model=check_model, train=check_dataset, validation_data=optional_data)
    def fit(self, model, train, epochs, validation_data=None, callbacks=(), params=None,
            verbose=1, backup_dir=None, teacher=None, **fit_kwargs):
        """Training, then the fine-tuning; with ``backup_dir`` the training and a ``"full"``
        fine-tuning are resumable (backups ``train`` and ``finetune``); the alternating update
        is re-run from the restored end-of-training state."""
        params = self.params(params)
        distiller = self.distiller(params, teacher)
        history = fit_stage(model, train, epochs, backup_dir=backup_dir, stage="train",
                            validation_data=validation_data, callbacks=list(callbacks),
                            verbose=verbose, distiller=distiller, **fit_kwargs)
        history.finetune = None
        if params["finetune"] == "alternate":
            start = time.perf_counter()
            reports = self.alternate_update(params).run(model, train)
            history.finetune = dict(kind="alternate", reports=reports,
                                    seconds=time.perf_counter() - start)
            history.report = [format_report(reports),
                              f"alternating update: {history.finetune['seconds']:.1f} s"]
        elif params["finetune"] == "full":
            start = time.perf_counter()
            model.compile(optimizer=keras.optimizers.Adam(float(params["finetune_learning_rate"])),
                          loss=model.loss, metrics=["accuracy"])
            fit_stage(model, train, int(params["finetune_epochs"]), backup_dir=backup_dir,
                      stage="finetune", verbose=verbose, distiller=distiller)
            history.finetune = dict(kind="full", epochs=int(params["finetune_epochs"]),
                                    seconds=time.perf_counter() - start)
            history.report = [f"full fine-tuning: {history.finetune['seconds']:.1f} s"]
        return history


__all__ = ["HWGQRecipe", "FINETUNE"]
