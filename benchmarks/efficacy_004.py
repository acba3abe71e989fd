"""ClusterReg (K = 4 trainable centres) against TF-MOT weight clustering, on the protocol.

Fine-tuning protocol (``../shared/design/PROTOCOL.md``), full CIFAR-10, VGG-small (width 32,
BN, ReLU), every conv/dense kernel clustered with K = 4 centres:

1. ``pretrain``: the full-precision network for 15 epochs (Adam 1e-3, cosine decay) on 45,000
   training images; the 5,000 others are a held-out validation split (seed 0). This float
   checkpoint (``benchmarks/results/efficacy_fp32``, shared with ``efficacy_003``) is the one
   starting point of every arm.
2. ``run --config C --seed S``: every arm fine-tunes it for 10 epochs (Adam, 5e-4 unless the
   arm says, fresh cosine decay, same data, augmentation, batch and budget; the seed sets data
   order and augmentation), so every run totals 25 epochs:
   * ``float``: the float network, continued (the reference, never selected);
   * ``tfmot*`` (the baseline side): TF-MOT ``cluster_weights`` (centroid init and learning
     rate per arm), its ``strip_clustering``, then the same BatchNorm re-estimation the
     ClusterReg side gets (except the original ``tfmot`` arm, which has none);
   * ``cr_*`` (the keras_wreg side): the ``cluster`` recipe with the levers of each arm, then
     snap, BN re-estimation and ``keras_wreg.strip_clustering``.
   The test accuracy is measured once, on the stripped (deployable) model. Each run backs up
   every epoch, resumes where it stopped, and writes
   ``benchmarks/results/efficacy_004/runs/<config>-s<seed>.json``.
3. ``assemble``: applies the protocol in code (``common.assemble_suite``): per side the best
   seed-0 validation accuracy is selected, seeds 1-3 are compared; it refuses run files that
   break a rule. Writes ``benchmarks/results/efficacy_004.json`` / ``.md`` and the PNGs.

    PYTHONPATH=/tmp/tfmot_site python -m benchmarks.efficacy_004 queue tfmot_bn:0 ...
    python -m benchmarks.efficacy_004 assemble

TF-MOT: ``pip install --no-deps --target /tmp/tfmot_site tensorflow-model-optimization==0.8.1``
(see ``benchmarks/requirements-cluster.txt``).
"""

import sys
from pathlib import Path

import numpy as np

from benchmarks import common
from keras_wreg._introspect import latent
from keras_wreg import recipes
from keras_wreg._compat import keras
from keras_wreg.training import fit_stage
from keras_wreg.export.clustering import recalibrate_batchnorm, strip_clustering
from keras_wreg.regularizers import clustered_weights

SUITE = "efficacy_004"
RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / SUITE
FLOAT_DIR = RESULTS / "efficacy_fp32"
START_CHECKPOINT = FLOAT_DIR / "pretrain.weights.h5"
WIDTH, BATCH, PRETRAIN_EPOCHS, FINETUNE_EPOCHS, VALIDATION = 32, 128, 15, 10, 0.1
LR, FT_LR, K = 1e-3, 5e-4, 4
SMOKE = False
PROTOCOL = "finetune-from-float: 15 float epochs + 10 fine-tuning epochs, 45k/5k/10k"
#: the fine-tuning learning rate belongs to the protocol (the recipe's default is 1e-3)
PROTOCOL_KEYS = ("learning_rate",)
#: select on the validation accuracy of the model the test reads: snapped/stripped and with
#: its BatchNorm re-estimated (the last training epoch's is that of the model before)
SELECTION_FIELD = "val_after_snap"
HIST_LAYER = 3  # the 4th kernel (conv 2w): the histogram panels

#: what every ClusterReg arm pins (the recipe's defaults of the time included: the defaults have
#: since moved to the measured winner, and an arm must keep meaning what its run files record)
_CR = {"num_centers": K, "learning_rate": FT_LR, "delay": 0.0, "init": "kmeans",
       "strength": 100.0, "warmup": 0.8, "bn_recalibrate": 50, "ramp": "linear",
       "decoupled": False}
#: name -> (kind, overrides of the cluster recipe)
CONFIGS = {
    "float": ("float", {"learning_rate": FT_LR}),
    # the baseline side: TF-MOT cluster_weights, then strip_clustering (+ the BN re-estimation
    # the ClusterReg side gets after its snap): as many settings as the keras_wreg side tried
    "tfmot": ("tfmot", {"learning_rate": FT_LR, "init": "kmeans++", "bn_recalibrate": 0}),
    "tfmot_bn": ("tfmot", {"learning_rate": FT_LR, "init": "kmeans++", "bn_recalibrate": 50}),
    "tfmot_bn_lr1e3": ("tfmot", {"learning_rate": 1e-3, "init": "kmeans++",
                                 "bn_recalibrate": 50}),
    "tfmot_bn_lr2e4": ("tfmot", {"learning_rate": 2.5e-4, "init": "kmeans++",
                                 "bn_recalibrate": 50}),
    "tfmot_bn_linear": ("tfmot", {"learning_rate": FT_LR, "init": "linear",
                                  "bn_recalibrate": 50}),
    "tfmot_bn_density": ("tfmot", {"learning_rate": FT_LR, "init": "density",
                                   "bn_recalibrate": 50}),
    "cr_ste_hard": ("cluster", {**_CR, "warmup": 0.4, "ste": 0.5}),
    # the whole fine-tune through the centres (as TF-MOT), the penalty decoupled from Adam and
    # cosine-ramped over the run: it only damps assignment churn; hard (STE) or soft (DKM) forward
    "cr_all_hard_dec": ("cluster", {**_CR, "strength": 10.0, "warmup": 1.0, "ramp": "cosine",
                                    "decoupled": True, "ste": 1.0}),
    # control: the whole fine-tune through the centres with a light penalty in the loss (the
    # TF-MOT algorithm with keras_wreg's Layer-owned centres)
    "cr_all_hard": ("cluster", {**_CR, "strength": 1.0, "warmup": 0.0, "ste": 1.0}),
    # the winner's pull strength bracketed: lambda = 3 and 30
    "cr_all_hard_dec_l3": ("cluster", {**_CR, "strength": 3.0, "warmup": 1.0, "ramp": "cosine",
                                       "decoupled": True, "ste": 1.0}),
    "cr_all_hard_dec_l30": ("cluster", {**_CR, "strength": 30.0, "warmup": 1.0, "ramp": "cosine",
                                        "decoupled": True, "ste": 1.0}),
    "cr_all_soft_dec": ("cluster", {**_CR, "strength": 10.0, "warmup": 1.0, "ramp": "cosine",
                                    "decoupled": True, "ste": 1.0, "ste_mode": "soft",
                                    "ste_t0": 1.0, "ste_t1": 0.01}),
}


BASELINE_ARMS = {c for c, (kind, _) in CONFIGS.items() if kind == "tfmot"}
REFERENCE_ARMS = {"float"}
_TFMOT_INIT = {"kmeans++": "KMEANS_PLUS_PLUS", "linear": "LINEAR", "density": "DENSITY_BASED"}


def _adam(steps, lr=FT_LR):
    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps))


def _values_per_layer(model):
    """Distinct kernel values of every layer with a kernel (a list, one entry per layer)."""
    return [int(np.unique(layer.kernel.numpy()).size) for layer in model.layers
            if hasattr(layer, "kernel")]


def _kernel(model, index=HIST_LAYER):
    kernels = [layer.kernel for layer in model.layers if hasattr(layer, "kernel")]
    return np.asarray(latent(kernels[index]).numpy())


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
    protocol = {"learning_rate": overrides.get("learning_rate", FT_LR), "lr_schedule": "cosine"}
    if kind == "float":
        fp.compile(_adam(total), "sparse_categorical_crossentropy", metrics=["accuracy"])
        history = fit_stage(fp, train, FINETUNE_EPOCHS, backup_dir=work, validation_data=val,
                            callbacks=callbacks, verbose=verbose)
        return fp, history, {"recipe": "float", "params": {"learning_rate": FT_LR}, **protocol,
                             "values_per_layer": _values_per_layer(fp),
                             **_hist(fp, start_kernel, [])}
    if kind == "tfmot":
        import tensorflow_model_optimization as tfmot

        cl = tfmot.clustering.keras
        plain = strip_clustering(fp, snap=False)  # Larq layers without quantizers -> Keras
        clustered = cl.cluster_weights(
            plain, number_of_clusters=K, cluster_centroids_init=getattr(
                cl.CentroidInitialization, _TFMOT_INIT[overrides["init"]]))
        clustered.compile(_adam(total, overrides["learning_rate"]),
                          "sparse_categorical_crossentropy", metrics=["accuracy"])
        history = fit_stage(clustered, train, FINETUNE_EPOCHS, backup_dir=work,
                            validation_data=val, callbacks=callbacks, verbose=verbose)
        before = clustered.evaluate(val, verbose=0, return_dict=True)["accuracy"]
        stripped = cl.strip_clustering(clustered)
        stripped.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        raw = stripped.evaluate(val, verbose=0, return_dict=True)["accuracy"]
        after = raw
        if overrides["bn_recalibrate"]:  # the same post-processing as the ClusterReg side
            recalibrate_batchnorm(stripped, train, int(overrides["bn_recalibrate"]))
            after = stripped.evaluate(val, verbose=0, return_dict=True)["accuracy"]
        values = np.unique(_kernel(stripped))
        return stripped, history, {"recipe": "tfmot", "params": dict(overrides), **protocol,
                                   "values_per_layer": _values_per_layer(stripped),
                                   "val_before_snap": float(before),
                                   "val_after_snap_raw": float(raw),
                                   "val_after_snap": float(after),
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
        "recipe": "cluster", "params": params, **protocol,
        "values_per_layer": _values_per_layer(stripped),
        "val_before_snap": m["before_snap"]["accuracy"],
        "val_after_snap_raw": m["after_snap_raw"]["accuracy"],
        "val_after_snap": m["after_snap"]["accuracy"],
        **_hist(stripped, start_kernel, centers)}


def _snap_numbers(r):
    """(snap, BN re-estimation) effects on validation accuracy in points: the raw snap
    (after − before) and the re-estimation (after it − after the raw snap), separately."""
    if r.get("val_after_snap_raw") is None:
        return None, None
    return (100 * (r["val_after_snap_raw"] - r["val_before_snap"]),
            100 * (r["val_after_snap"] - r["val_after_snap_raw"]))


def _per_layer(r):
    v = r["values_per_layer"]
    return ("max " + str(v) + " (per layer not recorded)") if isinstance(v, int) else str(v)


def assemble(args):
    def add(runs, payload):
        sel = payload["selection"]
        payload["num_centers"] = K
        for key in ("winner", "baseline"):
            rep = common.reported(runs[sel[key]])
            payload[key]["snap_change_pt"] = [_snap_numbers(r)[0] for r in rep]
            payload[key]["bn_reestimation_change_pt"] = [_snap_numbers(r)[1] for r in rep]
            payload[key]["values_per_layer"] = [r["values_per_layer"] for r in rep]
        panels = []
        for c in (sel["baseline"], sel["winner"]):
            r = runs[c][0]
            if not panels:
                panels.append(("float checkpoint", r["hist_bins"], r["hist_start"], []))
            panels.append((f"{c}, stripped (seed {r['seed']}); dashed: centres", r["hist_bins"],
                           r["hist_end"], r["hist_centers"]))
        common.plot_histograms(panels, RESULTS / f"{SUITE}_histograms.png", "kernel weight")
        if "float" in runs and payload["winner"]["test_accuracy"]:
            entry = common.float_block(payload, runs["float"], scale=1)
            return (f" Float twin (seeds {entry['seeds']}) − winner on test: "
                    f"{100 * payload['float_minus_winner']:.2f} pt (target ≤ 1.00).")

    def snaps(rs):
        return "; ".join("n/a" if _snap_numbers(r)[0] is None else
                         "{:+.2f} / {:+.2f}".format(*_snap_numbers(r)) for r in rs)

    common.report_suite(
        sys.modules[__name__], args,
        "# ClusterReg (K = 4) vs TF-MOT clustering, fine-tuning protocol",
        f"CIFAR-10, 45,000 train / 5,000 held-out validation / 10,000 test; VGG-small w{WIDTH} "
        f"(BN, ReLU), batch {BATCH}, flip + 4 px crop. Shared float checkpoint: "
        f"{common.pretrain_text(sys.modules[__name__])}. Every arm fine-tunes it for "
        f"{FINETUNE_EPOCHS} epochs (Adam, fresh cosine decay; 5e-4 unless the arm says). The "
        "snap and the BatchNorm re-estimation are reported as two numbers; the test accuracy is "
        "that of the stripped model, read once per run.", add=add,
        extra=(("snap / BN re-estimation (val pt, per seed)", snaps),
               ("distinct values per layer (seed 0 or first)", lambda rs: _per_layer(rs[0]))),
        pngs=[f"{SUITE}_histograms.png"])


if __name__ == "__main__":
    common.suite_main(sys.modules[__name__])
