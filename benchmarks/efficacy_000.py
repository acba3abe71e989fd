"""WReg / CosineMomentum against plain Larq (binary VGG-small), on the fine-tuning protocol.

Fine-tuning protocol, full CIFAR-10, binary VGG-small (width 32):

1. ``pretrain``: plain Larq (ste_sign, weight_clip 1, Adam 1e-3 with cosine decay) for 20 epochs
   on 45,000 training images; the 5,000 others are a held-out validation split (seed 0). The
   weights are the one shared starting point of every arm.
2. ``run --config C --seed S``: every arm fine-tunes that checkpoint for 10 epochs (Adam 1e-3
   with a fresh cosine decay, same data, augmentation, batch and budget; the seed sets the data
   order and augmentation) and logs, per epoch, validation accuracy, training accuracy, the
   sign-flip rate of the binary kernels and the fraction of latent weights near the grid. The
   test set is evaluated once, after the last epoch. Each (config, seed) run checkpoints every
   epoch (Keras ``BackupAndRestore``), resumes where it stopped, and writes its own result file
   ``benchmarks/results/efficacy_000/runs/<config>-s<seed>.json``.
3. ``assemble``: applies the protocol in code (``common.assemble_suite``): per side the best
   seed-0 validation accuracy is selected, seeds 1-3 are compared; run files that break a rule
   are refused. Writes ``benchmarks/results/efficacy_000.json`` / ``.md`` and the PNGs.

    python -m benchmarks.efficacy_000 pretrain
    python -m benchmarks.efficacy_000 queue larq:0 larq_clip2:0 pull_ramp:0 ...
    python -m benchmarks.efficacy_000 assemble

Checkpoints live in ``--workdir`` (default ``$KERAS_WREG_BENCH_DIR`` or
``~/.cache/keras_wreg/bench``); run it from a separate clone (autograph re-reads source files).
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import common
from keras_wreg._introspect import latent
from keras_wreg import callbacks as kw_callbacks
from keras_wreg import recipes
from keras_wreg._compat import keras, lq, tf
from keras_wreg._grid import resolve_alpha
from keras_wreg.training import fit_stage

RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "efficacy_000"
PRETRAIN_DIR = OUT  # the plain-Larq checkpoint of `pretrain_model`, every arm's start
FLOAT_DIR = None
START_CHECKPOINT = OUT / "pretrain.weights.h5"
WIDTH, BATCH, PRETRAIN_EPOCHS, FINETUNE_EPOCHS, VALIDATION, LR = 32, 128, 20, 10, 0.1, 1e-3

SMOKE = False
SUITE = "efficacy_000"
PROTOCOL = "finetune-from-larq: 20 Larq epochs + 10 fine-tuning epochs, 45k/5k/10k"
PROTOCOL_KEYS = ()  # the fine-tuning learning rate is the recipes' default (1e-3)

_PULL_OFF = {"use_wreg": False, "use_cosine_momentum": False}
#: name -> (recipe, overrides on the recipe defaults); "bop" is Larq's latent-free optimizer
CONFIGS = {
    "larq": ("larq", {}),
    "larq_clip2": ("larq", {"clip": 2.0}),
    "cosine_momentum": ("wreg", {"use_wreg": False}),
    "pull_ramp": ("wreg", {**_PULL_OFF, "pull": 1.0}),
    "pull_ramp10": ("wreg", {**_PULL_OFF, "pull": 10.0}),
    "pull_ramp+cm": ("wreg", {"use_wreg": False, "pull": 1.0}),
    "wreg_loss": ("wreg", {"use_wreg": True, "use_cosine_momentum": False, "strength": 3e-6}),
    "larq_scaled_clip2": ("larq", {"clip": 2.0, "kernel_quantizer": "magnitude_aware_sign"}),
    "pull_ramp_scaled": ("wreg", {**_PULL_OFF, "pull": 1.0,
                                  "kernel_quantizer": "magnitude_aware_sign"}),
    "bop": ("larq", {}),
}
#: the baseline side: Larq's own binary training (its clip, quantizers and optimizer variants)
BASELINE_ARMS = {"larq", "larq_clip2", "larq_scaled_clip2", "bop"}
REFERENCE_ARMS = set()
BOP = {"optimizer": "Bop (Larq defaults) on binary kernels, Adam on the rest"}


def kernel_values(model):
    """Latent values of every binary kernel, and the same in grid units w / alpha_c."""
    raw, scaled = [], []
    for var in kw_callbacks.binary_kernels(model):
        w = tf.convert_to_tensor(latent(var))
        raw.append(w.numpy().ravel())
        scaled.append((w / resolve_alpha(w, "channel")).numpy().ravel())
    return np.concatenate(raw), np.concatenate(scaled)


class KernelStats(keras.callbacks.Callback):
    """Adds to each epoch's logs (and so to the engine's epoch log): the sign-flip rate of the
    binary kernels, the fraction of weights near the grid, and the epoch's wall time."""

    def on_epoch_begin(self, epoch, logs=None):
        self._signs = np.sign(kernel_values(self.model)[0])
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        wall = time.perf_counter() - self._t
        raw, scaled = kernel_values(self.model)
        logs = logs if logs is not None else {}
        logs.update(flip_rate=float(np.mean(np.sign(raw) != self._signs)),
                    near_grid=float(np.mean(np.abs(np.abs(scaled) - 1) <= 0.1)),
                    epoch_seconds=wall)
        print(f"[efficacy] epoch {epoch + 1}: val {logs.get('val_accuracy', float('nan')):.4f} "
              f"flips {logs['flip_rate']:.4f} near-grid {logs['near_grid']:.3f} ({wall:.0f} s)",
              flush=True)


def build(config, input_shape, total_steps, seed):
    method, overrides = CONFIGS[config]
    recipe = recipes.get(method)
    params = recipe.params(overrides)
    keras.utils.set_random_seed(seed)
    model = recipe.build_model("vgg_small", input_shape, 10, params, width=WIDTH)
    if config == "bop":
        lr = keras.optimizers.schedules.CosineDecay(params["learning_rate"], total_steps)
        optimizer = lq.optimizers.CaseOptimizer(
            (lq.optimizers.Bop.is_binary_variable, lq.optimizers.Bop()),
            default_optimizer=keras.optimizers.legacy.Adam(lr))
        model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    else:
        recipe.compile(model, params, total_steps)
    return model, params


def pretrain_model(input_shape, total_steps):
    """The shared checkpoint's network: plain Larq (the ``larq`` arm), seed 0."""
    return build("larq", input_shape, total_steps, 0)[0]


def train_arm(config, _, splits, work, callbacks, verbose, seed=0):
    """Fine-tune the shared plain-Larq checkpoint with ``config`` (the engine's resumable
    stage); the run file gets the per-epoch flip rate and near-grid fraction, and latent-weight
    histograms (grid units) at the start and the end."""
    train, val, steps, shape = splits
    model, params = build(config, shape, FINETUNE_EPOCHS * steps, seed)
    model.load_weights(START_CHECKPOINT)
    start_scaled = kernel_values(model)[1]
    history = fit_stage(model, train, FINETUNE_EPOCHS, backup_dir=work,
                        callbacks=[*callbacks, KernelStats()], validation_data=val,
                        verbose=verbose)
    end_raw, end_scaled = kernel_values(model)
    bins = np.linspace(-3, 3, 121)
    return model, history, {
        "recipe": CONFIGS[config][0], "params": {**params, **(BOP if config == "bop" else {})},
        "learning_rate": params["learning_rate"], "lr_schedule": "cosine",
        "flip_rate": [float(v) for v in history.history["flip_rate"]],
        "near_grid": [float(v) for v in history.history["near_grid"]], "hist_bins": bins.tolist(),
        "hist_start": np.histogram(np.clip(start_scaled, -3, 3), bins)[0].tolist(),
        "hist_end": np.histogram(np.clip(end_scaled, -3, 3), bins)[0].tolist(),
        "latent_abs_mean_end": float(np.mean(np.abs(end_raw)))}


def assemble(args):
    ratios = []

    def add(runs, payload):
        sel = payload["selection"]
        base, win = runs[sel["baseline"]], runs[sel["winner"]]
        # epochs for the winner to reach the baseline's final validation accuracy (same seed)
        by_seed = {r["seed"]: r for r in base}
        for r in common.reported(win):
            if r["seed"] in by_seed:
                reach = common.epochs_to_reach(r["val_curve"],
                                               by_seed[r["seed"]]["final_val_accuracy"])
                ratios.append(None if reach is None else reach / len(r["val_curve"]))
        payload.update({
            "step_time_ratio": _step_ratio(sel["winner"]),
            "epochs_to_baseline_ratio": (None if not ratios or None in ratios
                                         else float(np.mean(ratios))),
            "epochs_to_baseline_per_seed": ratios})
        _plots(runs, (sel["baseline"], sel["winner"]))
        return (f"Epochs for the winner to reach the baseline's final validation accuracy / "
                f"{FINETUNE_EPOCHS}, per reported seed: {ratios}; step-time ratio "
                f"(interleaved): {payload['step_time_ratio']}.")

    def last(key, fmt):
        return lambda rs: fmt.format(np.mean([r[key][-1] for r in rs]))

    common.report_suite(
        sys.modules[__name__], args, "# WReg / CosineMomentum vs plain Larq, fine-tuning protocol",
        f"CIFAR-10 (JPEG q75 copy), 45,000 train / 5,000 held-out validation / 10,000 test; "
        f"binary VGG-small w{WIDTH}, batch {BATCH}, flip + 4 px crop. Shared checkpoint: plain "
        f"Larq {common.pretrain_text(sys.modules[__name__])}. Every arm fine-tunes it for "
        f"{FINETUNE_EPOCHS} epochs with Adam 1e-3 and a fresh cosine decay; test read once per "
        "run. ", add=add,
        extra=(("train acc (last epoch, augmented, all seeds)", last("train_curve", "{:.4f}")),
               ("flip rate, last epoch", last("flip_rate", "{:.4f}")),
               ("near grid (0.1 α_c)", last("near_grid", "{:.3f}"))),
        pngs=["efficacy_000_flips.png", "efficacy_000_histograms.png"])


def _step_ratio(winner):
    """The winner's step time over plain Larq's (``benchmarks/step_time.py``, interleaved)."""
    path = RESULTS / "step_time.json"
    if not path.exists():
        return None
    measured = json.loads(path.read_text())
    if measured.get("reference") != "larq":
        return None
    return measured.get("ratio_median", {}).get(winner)


def _plots(runs, chosen):
    common.plot_run_curves(runs, RESULTS / "efficacy_000_flips.png", chosen, key="flip_rate",
                           ylabel="sign-flip rate per epoch", log=True)
    first = runs[chosen[0]][0]
    panels = [("shared checkpoint", first["hist_bins"], first["hist_start"], (-1, 1))] + [
        (f"{c}: end (seed {runs[c][0]['seed']})", first["hist_bins"], runs[c][0]["hist_end"],
         (-1, 1)) for c in chosen if c in runs]
    common.plot_histograms(panels, RESULTS / "efficacy_000_histograms.png",
                           "latent weight / α_c (grid at ±1)")


if __name__ == "__main__":
    common.suite_main(sys.modules[__name__])
