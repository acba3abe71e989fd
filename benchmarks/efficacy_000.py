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
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import common
from keras_wreg._introspect import latent
from keras_wreg import callbacks as kw_callbacks
from keras_wreg import recipes
from keras_wreg.training import EPOCH_LOG, fit_stage, read_epoch_log
from keras_wreg._compat import keras, lq, tf
from keras_wreg._grid import resolve_alpha

RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "efficacy_000"
PRETRAIN_WEIGHTS = OUT / "pretrain.weights.h5"
START_CHECKPOINT = PRETRAIN_WEIGHTS
WIDTH, BATCH, PRETRAIN_EPOCHS, FINETUNE_EPOCHS, VALIDATION = 32, 128, 20, 10, 0.1

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


def workdir(args):
    root = args.workdir or os.environ.get("KERAS_WREG_BENCH_DIR") or (
        Path.home() / ".cache" / "keras_wreg" / "bench")
    path = Path(root) / "efficacy_000"
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_splits(seed, dataset="cifar10"):
    """45k train (pipeline shuffled with ``seed``), 5k validation and the test set.

    The validation split is always drawn with seed 0, so every run sees the same held-out set.
    """
    return common.load_splits(seed, BATCH, VALIDATION, SMOKE, dataset)


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


def train_run(config, seed, args, pretrain=False):
    """Train one (config, seed) run to the end (resuming if interrupted); write its result."""
    name = "pretrain" if pretrain else f"{config}-s{seed}"
    result_path = OUT / ("pretrain.json" if pretrain else f"runs/{name}.json")
    if result_path.exists():
        print(f"[efficacy] {name}: done ({result_path})", flush=True)
        return json.loads(result_path.read_text())
    if not pretrain and not PRETRAIN_WEIGHTS.exists():
        raise SystemExit(f"no pretrained checkpoint at {PRETRAIN_WEIGHTS}: run `pretrain` first")
    tf.config.experimental.enable_op_determinism()
    work = workdir(args) / name
    work.mkdir(parents=True, exist_ok=True)
    epochs = PRETRAIN_EPOCHS if pretrain else FINETUNE_EPOCHS
    keras.utils.set_random_seed(seed)
    train, val, test, steps, input_shape, split = load_splits(seed)
    model, params = build(config, input_shape, epochs * steps, seed)
    if not pretrain:
        model.load_weights(PRETRAIN_WEIGHTS)
    start_raw, start_scaled = kernel_values(model)
    timer = common.StepTimer()
    # the engine's resumable stage: BackupAndRestore + the per-epoch log (training.fit_stage);
    # the backup is removed only after the result file is written
    print(f"[efficacy] {name}: {epochs} epochs, {steps} steps/epoch, params {params}", flush=True)
    began = time.perf_counter()
    fit_stage(model, train, epochs, backup_dir=work, callbacks=[timer, KernelStats()],
              validation_data=val, verbose=args.verbose)
    wall = time.perf_counter() - began
    log = read_epoch_log(work / EPOCH_LOG).get("train", [])
    if len(log) != epochs:
        raise RuntimeError(f"{name}: expected {epochs} logged epochs, found {len(log)}")
    result_path.parent.mkdir(parents=True, exist_ok=True)
    if pretrain:  # model weights only (an uncompiled view of the same layers: no optimizer)
        keras.Model(model.inputs, model.outputs).save_weights(PRETRAIN_WEIGHTS)
    _, test_acc = model.evaluate(test, verbose=0)  # the only read of the test set
    end_raw, end_scaled = kernel_values(model)
    bins = np.linspace(-3, 3, 121)
    mod = sys.modules[__name__]
    fields = common.protocol_fields(
        mod, config, recipe=CONFIGS[config][0], params={**params, **(BOP if config == "bop" else {})},
        checkpoint=PRETRAIN_WEIGHTS, learning_rate=params["learning_rate"], lr_schedule="cosine",
        split=split)
    if pretrain:
        fields.update(start_checkpoint=None, pretrain_epochs=0)
    result = {
        "config": config, "seed": seed, **fields, "epochs": epochs, "width": WIDTH,
        "batch_size": BATCH, "val_curve": [r["val_accuracy"] for r in log],
        "train_curve": [r["accuracy"] for r in log],
        "flip_rate": [r["flip_rate"] for r in log], "near_grid": [r["near_grid"] for r in log],
        "final_val_accuracy": log[-1]["val_accuracy"], "test_accuracy": float(test_acc),
        "median_step_seconds": timer.median if timer.times else None,
        "wall_seconds_last_session": wall,
        "hist_bins": bins.tolist(),
        "hist_start": np.histogram(np.clip(start_scaled, -3, 3), bins)[0].tolist(),
        "hist_end": np.histogram(np.clip(end_scaled, -3, 3), bins)[0].tolist(),
        "latent_abs_mean_end": float(np.mean(np.abs(end_raw))),
        "versions": common.versions(), "commit": common.git_commit(),
        "command": "python -m benchmarks.efficacy_000 " + (
            "pretrain" if pretrain else f"run --config {config} --seed {seed}"),
    }
    common.write_json(result_path, result)
    shutil.rmtree(work / "train", ignore_errors=True)
    print(f"[efficacy] {name}: val {result['final_val_accuracy']:.4f} test "
          f"{result['test_accuracy']:.4f} ({wall / 60:.1f} min)", flush=True)
    return result


def assemble(args):
    mod = sys.modules[__name__]
    runs, payload = common.assemble_suite(mod, args.preliminary)
    sel = payload["selection"]
    base, win = runs[sel["baseline"]], runs[sel["winner"]]
    # epochs for the winner to reach the baseline's final validation accuracy (same seed)
    by_seed = {r["seed"]: r for r in base}
    ratios = []
    for r in common.reported(win):
        if r["seed"] in by_seed:
            reach = common.epochs_to_reach(r["val_curve"], by_seed[r["seed"]]["final_val_accuracy"])
            ratios.append(None if reach is None else reach / len(r["val_curve"]))
    payload.update({
        "step_time_ratio": _step_ratio(sel["winner"]),
        "epochs_to_baseline_ratio": (None if not ratios or None in ratios
                                     else float(np.mean(ratios))),
        "epochs_to_baseline_per_seed": ratios})
    pre = json.loads((OUT / "pretrain.json").read_text())

    def last(key, fmt):
        return lambda rs: fmt.format(np.mean([r[key][-1] for r in rs]))

    headers, rows = common.summary_rows(runs, sel, extra=(
        ("train acc (last epoch, augmented, all seeds)", last("train_curve", "{:.4f}")),
        ("flip rate, last epoch", last("flip_rate", "{:.4f}")),
        ("near grid (0.1 α_c)", last("near_grid", "{:.3f}"))))
    _plots(runs, (sel["baseline"], sel["winner"]))
    common.write_suite(
        mod, payload, "# WReg / CosineMomentum vs plain Larq, fine-tuning protocol",
        f"CIFAR-10 (JPEG q75 copy), 45,000 train / 5,000 held-out validation / 10,000 test; "
        f"binary VGG-small w{WIDTH}, batch {BATCH}, flip + 4 px crop. Shared checkpoint: plain "
        f"Larq {PRETRAIN_EPOCHS} epochs (val {100 * pre['final_val_accuracy']:.2f} %, test "
        f"{100 * pre['test_accuracy']:.2f} %). Every arm fine-tunes it for {FINETUNE_EPOCHS} "
        f"epochs with Adam 1e-3 and a fresh cosine decay; test read once per run. Epochs for "
        f"the winner to reach the baseline's final validation accuracy / {FINETUNE_EPOCHS}, per "
        f"reported seed: {ratios}; step-time ratio (interleaved): {payload['step_time_ratio']}.",
        [common.selection_table(runs, sel), "", "Arms:", "", common.markdown_table(headers, rows)],
        ["efficacy_000_curves.png", "efficacy_000_flips.png", "efficacy_000_histograms.png"])


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for key, fname, ylabel in (("val_curve", "curves", "validation accuracy"),
                               ("flip_rate", "flips", "sign-flip rate per epoch")):
        fig, ax = plt.subplots(figsize=(7.5, 4.4))
        for c, rs in runs.items():
            arr = np.asarray([r[key] for r in rs])
            ep = np.arange(1, arr.shape[1] + 1)
            ax.plot(ep, arr.mean(0), marker="o", ms=3, label=f"{c} (n={len(rs)})",
                    linewidth=2.5 if c in chosen else 1.2)
        ax.set_xlabel("fine-tuning epoch")
        ax.set_ylabel(ylabel)
        if key == "flip_rate":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(RESULTS / f"efficacy_000_{fname}.png", dpi=110)
        plt.close(fig)
    shown = [c for c in chosen if c in runs]
    fig, axes = plt.subplots(1, len(shown) + 1, figsize=(5 * (len(shown) + 1), 3.4))
    first = runs[shown[0]][0]
    centers = 0.5 * (np.asarray(first["hist_bins"][1:]) + np.asarray(first["hist_bins"][:-1]))
    panels = [("shared checkpoint", first["hist_start"])] + [
        (f"{c}: end (seed {runs[c][0]['seed']})", runs[c][0]["hist_end"]) for c in shown]
    for ax, (label, counts) in zip(axes, panels):
        ax.bar(centers, counts, width=centers[1] - centers[0])
        for g in (-1, 1):
            ax.axvline(g, color="tab:red", linestyle="--", linewidth=1)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("latent weight / α_c (grid at ±1)")
    fig.tight_layout()
    fig.savefig(RESULTS / "efficacy_000_histograms.png", dpi=110)
    plt.close(fig)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = common.efficacy_parser(__doc__, CONFIGS)
    args = parser.parse_args(argv)
    if args.smoke:
        global SMOKE, OUT, PRETRAIN_WEIGHTS, RESULTS, WIDTH, PRETRAIN_EPOCHS, FINETUNE_EPOCHS
        SMOKE, WIDTH, PRETRAIN_EPOCHS, FINETUNE_EPOCHS = True, 8, 1, 2
        RESULTS = Path("/tmp/efficacy_smoke")
        OUT = RESULTS / "efficacy_000"
        PRETRAIN_WEIGHTS = OUT / "pretrain.weights.h5"
    if args.command == "pretrain":
        train_run("larq", 0, args, pretrain=True)
    elif args.command == "run":
        train_run(args.config, args.seed, args)
    elif args.command == "backfill":
        common.backfill_runs(sys.modules[__name__])
    elif args.command == "complete":
        for config, seed in common.missing_reported(sys.modules[__name__]):
            train_run(config, seed, args)
    elif args.command == "queue":
        if not PRETRAIN_WEIGHTS.exists():
            train_run("larq", 0, args, pretrain=True)
        for config, seed in common.queue_jobs(args.jobs, CONFIGS):
            train_run(config, seed, args)
    else:
        assemble(args)


if __name__ == "__main__":
    main()
