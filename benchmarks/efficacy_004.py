"""Seed-004 efficacy benchmark: does ClusterReg at K=4 beat TF-MOT clustering? (issue 16)

Fine-tuning protocol, full CIFAR-10, VGG-small (width 32, BN, ReLU), every conv/dense kernel
clustered with K = 4 centres:

1. ``pretrain``: the full-precision network for 15 epochs (Adam 1e-3, cosine decay) on 45,000
   training images; the 5,000 others are a held-out validation split (seed 0). This float
   checkpoint (``benchmarks/results/efficacy_fp32``, shared with ``efficacy_003``) is the one
   starting point of every arm.
2. ``run --config C --seed S``: every arm fine-tunes it for 10 epochs (Adam 5e-4 with a fresh
   cosine decay, same data, augmentation, batch and budget; the seed sets data order and
   augmentation), so every run totals 25 epochs:
   * ``float``: the float network, continued (the float reference with the same total epochs);
   * ``tfmot``: TF-MOT ``cluster_weights`` (k-means++ centroids, trained by the loss), then its
     ``strip_clustering``;
   * ``cr_*``: the ``cluster`` recipe (ClusterReg, k-means init on the float weights), variants
     with the issue-16 levers (STE forward phase through the centres, hard or soft; decoupled
     proximal penalty; cosine ramp; continuation), then snap (+ BN re-estimation) and
     ``keras_wreg.strip_clustering``.
   The test accuracy is measured once, on the stripped (deployable) model. Each run backs up
   every epoch, resumes where it stopped, and writes
   ``benchmarks/results/efficacy_004/runs/<config>-s<seed>.json``.
3. ``assemble --baseline tfmot --winner W``: reads the run files (nothing typed in), writes
   ``benchmarks/results/efficacy_004.json`` / ``.md`` and the PNGs. Choose W on the validation
   accuracy of seed 0; the test numbers are only read here.

    PYTHONPATH=/tmp/tfmot_site python -m benchmarks.efficacy_004 pretrain
    PYTHONPATH=/tmp/tfmot_site python -m benchmarks.efficacy_004 queue tfmot:0 cr_ste_hard:0 ...
    python -m benchmarks.efficacy_004 assemble --baseline tfmot --winner cr_ste_hard

TF-MOT: ``pip install --no-deps --target /tmp/tfmot_site tensorflow-model-optimization==0.8.1``
(see ``benchmarks/requirements-cluster.txt``).
"""

import sys
from pathlib import Path

import numpy as np

from benchmarks import common
from keras_wreg import recipes
from keras_wreg._compat import keras
from keras_wreg.callbacks import fit_stage
from keras_wreg.export.clustering import strip_clustering
from keras_wreg.regularizers import clustered_weights

SUITE = "efficacy_004"
RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / SUITE
FLOAT_DIR = RESULTS / "efficacy_fp32"
WIDTH, BATCH, PRETRAIN_EPOCHS, FINETUNE_EPOCHS, VALIDATION = 32, 128, 15, 10, 0.1
LR, FT_LR, K = 1e-3, 5e-4, 4
SMOKE = False
HIST_LAYER = 3  # the 4th kernel (conv 2w): the histogram panels

_CR = {"num_centers": K, "learning_rate": FT_LR, "delay": 0.0, "init": "kmeans",
       "strength": 100.0, "warmup": 0.8, "bn_recalibrate": 50}
#: name -> (kind, overrides of the cluster recipe)
CONFIGS = {
    "float": ("float", {}),
    "tfmot": ("tfmot", {}),
    "cr_seed": ("cluster", _CR),  # the seed recipe as measured in issue 16 (penalty only)
    "cr_ste_hard": ("cluster", {**_CR, "warmup": 0.4, "ste": 0.5}),
    "cr_ste_hard_all": ("cluster", {**_CR, "warmup": 0.5, "ste": 1.0}),
    "cr_ste_soft": ("cluster", {**_CR, "warmup": 0.4, "ste": 0.5, "ste_mode": "soft"}),
    "cr_dec_ste": ("cluster", {**_CR, "warmup": 0.5, "ramp": "cosine", "decoupled": True,
                               "ste": 0.5}),
    "cr_ramp10_ste": ("cluster", {**_CR, "strength": 10.0, "warmup": 0.5, "ramp": "cosine",
                                  "ramp_final": 10.0, "ste": 0.5}),
    "cr_ste_hard_s10": ("cluster", {**_CR, "strength": 10.0, "warmup": 0.4, "ste": 0.5}),
    # the whole fine-tune through the centres (as TF-MOT), the penalty decoupled from Adam and
    # cosine-ramped over the run: it only damps assignment churn; hard (STE) or soft (DKM) forward
    "cr_all_hard_dec": ("cluster", {**_CR, "strength": 10.0, "warmup": 1.0, "ramp": "cosine",
                                    "decoupled": True, "ste": 1.0}),
    # control: the whole fine-tune through the centres with a light penalty in the loss (the
    # TF-MOT algorithm with keras_wreg's Layer-owned centres)
    "cr_all_hard": ("cluster", {**_CR, "strength": 1.0, "warmup": 0.0, "ste": 1.0}),
    # the winner's pull strength bracketed (session 5): lambda = 3 and 30
    "cr_all_hard_dec_l3": ("cluster", {**_CR, "strength": 3.0, "warmup": 1.0, "ramp": "cosine",
                                       "decoupled": True, "ste": 1.0}),
    "cr_all_hard_dec_l30": ("cluster", {**_CR, "strength": 30.0, "warmup": 1.0, "ramp": "cosine",
                                        "decoupled": True, "ste": 1.0}),
    "cr_all_soft_dec": ("cluster", {**_CR, "strength": 10.0, "warmup": 1.0, "ramp": "cosine",
                                    "decoupled": True, "ste": 1.0, "ste_mode": "soft",
                                    "ste_t0": 1.0, "ste_t1": 0.01}),
}


def _adam(steps):
    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(FT_LR, steps))


def _values_per_layer(model):
    return max(int(np.unique(layer.kernel.numpy()).size) for layer in model.layers
               if hasattr(layer, "kernel"))


def _kernel(model, index=HIST_LAYER):
    kernels = [layer.kernel for layer in model.layers if hasattr(layer, "kernel")]
    return np.asarray(getattr(kernels[index], "latent_variable", kernels[index]).numpy())


def _hist(model, float_kernel, centers):
    lim = float(np.abs(float_kernel).max())
    edges, start = common.histogram(float_kernel, -lim, lim)
    _, end = common.histogram(_kernel(model), -lim, lim)
    return {"hist_bins": edges, "hist_start": start, "hist_end": end,
            "hist_centers": [float(c) for c in centers]}


def train_arm(config, fp, splits, work, callbacks, verbose):
    kind, overrides = CONFIGS[config]
    train, val, steps, shape = splits
    total = FINETUNE_EPOCHS * steps
    start_kernel = _kernel(fp)
    if kind == "float":
        fp.compile(_adam(total), "sparse_categorical_crossentropy", metrics=["accuracy"])
        history = fit_stage(fp, train, FINETUNE_EPOCHS, backup_dir=work, validation_data=val,
                            callbacks=callbacks, verbose=verbose)
        return fp, history, {"values_per_layer": _values_per_layer(fp),
                             **_hist(fp, start_kernel, [])}
    if kind == "tfmot":
        import tensorflow_model_optimization as tfmot

        cl = tfmot.clustering.keras
        plain = strip_clustering(fp, snap=False)  # Larq layers without quantizers -> Keras
        clustered = cl.cluster_weights(
            plain, number_of_clusters=K,
            cluster_centroids_init=cl.CentroidInitialization.KMEANS_PLUS_PLUS)
        clustered.compile(_adam(total), "sparse_categorical_crossentropy", metrics=["accuracy"])
        history = fit_stage(clustered, train, FINETUNE_EPOCHS, backup_dir=work,
                            validation_data=val, callbacks=callbacks, verbose=verbose)
        before = clustered.evaluate(val, verbose=0, return_dict=True)["accuracy"]
        stripped = cl.strip_clustering(clustered)
        stripped.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        after = stripped.evaluate(val, verbose=0, return_dict=True)["accuracy"]
        values = np.unique(_kernel(stripped))
        return stripped, history, {"values_per_layer": _values_per_layer(stripped),
                                   "snap_drop": float(before - after),
                                   **_hist(stripped, start_kernel, values)}
    recipe = recipes.get("cluster")
    params = recipe.params(overrides)
    model = recipe.build_model("vgg_small", shape, 10, params, width=WIDTH)
    common.transfer_weights(fp, model)
    recipe.compile(model, params, total)
    history = recipe.fit(model, train, FINETUNE_EPOCHS, validation_data=val,
                         callbacks=callbacks, params=params, verbose=verbose, backup_dir=work)
    m = history.snap_metrics
    centers = clustered_weights(model)[HIST_LAYER][2].get_centers()
    stripped = strip_clustering(model)
    return stripped, history, {
        "params": params, "values_per_layer": _values_per_layer(stripped),
        "val_before_snap": m["before_snap"]["accuracy"],
        "val_after_snap_raw": m["after_snap_raw"]["accuracy"],
        "val_after_snap": m["after_snap"]["accuracy"],
        "snap_drop": float(m["before_snap"]["accuracy"] - m["after_snap"]["accuracy"]),
        **_hist(stripped, start_kernel, centers)}


def assemble(args):
    mod = sys.modules[__name__]
    runs, payload, test = common.suite_payload(mod, args, skip=("float",))
    win = runs[args.winner]
    payload.update({
        "num_centers": K, "float": common.arm(runs, "float") if "float" in runs else None,
        "snap_drop": [r.get("snap_drop") for r in win],
        "values_per_layer": max(r["values_per_layer"] for r in win),
        "baseline_values_per_layer": max(r["values_per_layer"] for r in runs[args.baseline])})
    tail = ""
    if payload["float"] is not None:
        gap = float(np.mean(payload["float"]["test_accuracy"])
                    - np.mean(payload["winner"]["test_accuracy"]))
        payload["float_minus_winner"] = gap
        tail = f"; float − winner on test: {100 * gap:.2f} pt (target ≤ 1.00)"
    headers, rows = common.summary_rows(runs, extra=(
        ("snap drop (val, pt)", lambda rs: ", ".join(
            "n/a" if r.get("snap_drop") is None else f"{100 * r['snap_drop']:+.2f}" for r in rs)),
        ("values/layer", lambda rs: str(max(r["values_per_layer"] for r in rs)))))
    common.plot_run_curves(runs, RESULTS / f"{SUITE}_curves.png", (args.baseline, args.winner))
    panels = []
    for c in (args.baseline, args.winner):
        r = runs[c][0]
        if not panels:
            panels.append(("float checkpoint", r["hist_bins"], r["hist_start"], []))
        panels.append((f"{c}, stripped (seed {r['seed']}); dashed: centres", r["hist_bins"],
                       r["hist_end"], r["hist_centers"]))
    common.plot_histograms(panels, RESULTS / f"{SUITE}_histograms.png", "kernel weight")
    common.suite_report(
        mod, args, "# Seed 004 efficacy (issue 16): ClusterReg vs TF-MOT clustering, K = 4",
        f"CIFAR-10, 45,000 train / 5,000 held-out validation / 10,000 test; VGG-small w{WIDTH} "
        f"(BN, ReLU), batch {BATCH}, flip + 4 px crop. Shared float checkpoint: "
        f"{PRETRAIN_EPOCHS} epochs (val {100 * payload['pretrain_val_accuracy']:.2f} %, test "
        f"{100 * payload['pretrain_test_accuracy']:.2f} %). Every arm fine-tunes it for "
        f"{FINETUNE_EPOCHS} epochs (Adam {FT_LR:g}, fresh cosine decay): "
        f"{PRETRAIN_EPOCHS + FINETUNE_EPOCHS} epochs per run, the float arm included. Test "
        "accuracy of the stripped model, read once per run; selection on validation.",
        common.markdown_table(headers, rows), payload, test,
        f"{tail}; largest number of distinct kernel values in a clustered layer: "
        f"{payload['values_per_layer']}")


def main(argv=None):
    common.suite_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    main()
