"""Shared pieces of the benchmark scripts: timing, per-epoch evaluation, tables, plots."""

import json
import platform
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

from keras_wreg._compat import keras, lq, tf


class StepTimer(keras.callbacks.Callback):
    """Wall time of every training step (the first epoch's first 5 steps are warm-up)."""

    def __init__(self):
        super().__init__()
        self.times = []
        self._epoch = 0
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self._epoch > 0 or batch >= 5:
            self.times.append(time.perf_counter() - self._start)

    @property
    def median(self):
        return statistics.median(self.times) if self.times else float("nan")


class EpochTimer(keras.callbacks.Callback):
    """Wall time of every epoch."""

    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._t)


def epochs_to_reach(curve, target):
    """First epoch (1-based) whose accuracy is >= target, else None."""
    for i, acc in enumerate(curve):
        if acc >= target - 1e-12:
            return i + 1
    return None


def versions():
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "tf_keras": keras.__version__,
        "larq": getattr(lq, "__version__", "0.14"),
        "numpy": np.__version__,
        "cores": _cores(),
        "machine": platform.machine(),
    }


def _cores():
    import os

    return os.cpu_count()


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except Exception:  # not a git checkout
        return "unknown"


def markdown_table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines)


def _fmt(value):
    if isinstance(value, float):
        if value != value:
            return "n/a"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return "n/a" if value is None else str(value)


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    # sample standard deviation (ddof=1); undefined for a single value
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    return float(np.mean(values)), sd


def plot_curves(curves, path, title, ylabel="test accuracy"):
    """``curves``: {label: [list of per-seed curves]}; plots mean with a min–max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, runs in curves.items():
        arr = np.asarray(runs, dtype=float)
        epochs = np.arange(1, arr.shape[1] + 1)
        ax.plot(epochs, arr.mean(0), marker="o", label=label)
        if arr.shape[0] > 1:
            ax.fill_between(epochs, arr.min(0), arr.max(0), alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_json(path, payload):
    Path(path).write_text(json.dumps(payload, indent=2, default=str))


# --------------------------------------------------------------------------- efficacy suites
# Shared by benchmarks/efficacy_000.py, efficacy_003.py and efficacy_004.py: the 45k/5k split,
# per-epoch logs, result files, Welch's test.

def suite_workdir(root, suite):
    """The checkpoint directory of ``suite``: ``root`` or ``$KERAS_WREG_BENCH_DIR`` or
    ``~/.cache/keras_wreg/bench``, then ``suite``."""
    import os

    root = root or os.environ.get("KERAS_WREG_BENCH_DIR") or (
        Path.home() / ".cache" / "keras_wreg" / "bench")
    path = Path(root) / suite
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_splits(seed, batch, validation=0.1, smoke=False, dataset="cifar10"):
    """Training images minus a held-out validation split (always drawn with seed 0, so every
    run sees the same one; the training pipeline is shuffled/augmented with ``seed``) and the
    test set. ``smoke``: a few batches only. Returns ``(train, val, test, steps, input_shape,
    source)``."""
    import math

    from keras_wreg import data

    (x, y), (x_test, y_test), source = data.load_arrays(dataset)
    order = np.random.default_rng(0).permutation(len(x))
    n_val = int(round(len(x) * validation))
    x, y = x[order], y[order]
    if smoke:  # pipeline check only: a few batches
        n_val = min(n_val, 2 * batch)
        x, y = x[:n_val + 4 * batch], y[:n_val + 4 * batch]
        pick = np.random.default_rng(0).permutation(len(x_test))[:2 * batch]
        x_test, y_test = x_test[pick], y_test[pick]  # the test copy is sorted by class
    train = data.make_pipeline(x[n_val:], y[n_val:], batch, shuffle=True, augment=True, seed=seed)
    val = data.make_pipeline(x[:n_val], y[:n_val], batch)
    test = data.make_pipeline(x_test, y_test, batch)
    steps = math.ceil((len(x) - n_val) / batch)
    return train, val, test, steps, tuple(x.shape[1:]), source


def read_log(path):
    """Rows of a JSON-lines epoch log; a re-run epoch replaces its earlier row."""
    rows = {}
    if Path(path).exists():
        for line in Path(path).read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["epoch"]] = row
    return [rows[k] for k in sorted(rows)]


def welch(a, b):
    """Welch's t-test (two-sided) of mean(a) vs mean(b): (t, dof, p)."""
    from scipy import stats

    res = stats.ttest_ind(a, b, equal_var=False)
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return float(res.statistic), float(dof), float(res.pvalue)


def load_runs(runs_dir):
    """``{config: [result dicts sorted by seed]}`` from ``runs_dir/*.json``."""
    runs = {}
    for path in sorted(Path(runs_dir).glob("*.json")):
        r = json.loads(path.read_text())
        runs.setdefault(r["config"], []).append(r)
    for rs in runs.values():
        rs.sort(key=lambda r: r["seed"])
    return runs


def mean_sd_text(values):
    """``"m ± sd"`` in percent (sample sd), or the single value."""
    values = [100 * v for v in values]
    if len(values) < 2:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def arm(runs, config):
    """The ``{"config", "test_accuracy", "seeds"}`` entry of an assembled efficacy JSON."""
    rs = runs[config]
    return {"config": config, "test_accuracy": [r["test_accuracy"] for r in rs],
            "seeds": [r["seed"] for r in rs]}


def compare(runs, baseline, winner):
    """Welch's (t, dof, p) of the winner's vs the baseline's test accuracies (None if < 2)."""
    a = [r["test_accuracy"] for r in runs[winner]]
    b = [r["test_accuracy"] for r in runs[baseline]]
    if len(a) < 2 or len(b) < 2:
        return None, None, None
    return tuple(None if v != v else v for v in welch(a, b))  # NaN (identical values) -> None


def summary_rows(runs, extra=()):
    """Markdown rows per config, best validation first: config, seeds, val, test (+ extra
    ``(header, fn(list of runs) -> str)``)."""
    rows = []
    for c, rs in sorted(runs.items(), key=lambda kv: -np.mean(
            [r["final_val_accuracy"] for r in kv[1]])):
        rows.append([c, ",".join(str(r["seed"]) for r in rs),
                     mean_sd_text([r["final_val_accuracy"] for r in rs]),
                     mean_sd_text([r["test_accuracy"] for r in rs])]
                    + [fn(rs) for _, fn in extra])
    headers = ["config", "seeds", "val acc % (selection)", "test acc % (mean ± sample sd)"]
    return headers + [h for h, _ in extra], rows


def plot_run_curves(runs, path, highlight=(), xlabel="fine-tuning epoch"):
    """Mean validation curve of every config (highlighted ones thicker)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for c, rs in runs.items():
        n = min(len(r["val_curve"]) for r in rs)
        arr = np.asarray([r["val_curve"][:n] for r in rs])
        ax.plot(np.arange(1, n + 1), arr.mean(0), marker="o", ms=3, label=f"{c} (n={len(rs)})",
                linewidth=2.5 if c in highlight else 1.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_histograms(panels, path, xlabel="weight"):
    """One bar panel per ``(title, bins, counts, vlines)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.4), squeeze=False)
    for ax, (title, bins, counts, vlines) in zip(axes[0], panels):
        bins = np.asarray(bins)
        centers = 0.5 * (bins[1:] + bins[:-1])
        ax.bar(centers, counts, width=centers[1] - centers[0])
        for v in vlines or ():
            ax.axvline(v, color="tab:red", linestyle="--", linewidth=0.8)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def transfer_weights(src, dst):
    """Copy ``src``'s weights into ``dst`` layer by layer, ignoring ClusterReg state in either
    (the float checkpoint into a clustered or ternary twin of the same network)."""
    from keras_wreg.regularizers import clustered_weights

    skip = {id(v) for m in (src, dst) for _, _, r in clustered_weights(m) for v in r.weights}
    a_layers = [la for la in src.layers if [v for v in la.weights if id(v) not in skip]]
    b_layers = [la for la in dst.layers if [v for v in la.weights if id(v) not in skip]]
    if len(a_layers) != len(b_layers):
        raise ValueError(f"{len(a_layers)} layers with weights in the source, "
                         f"{len(b_layers)} in the target.")
    for a, b in zip(a_layers, b_layers):
        va = [v for v in a.weights if id(v) not in skip]
        vb = [v for v in b.weights if id(v) not in skip]
        if [tuple(v.shape) for v in va] != [tuple(v.shape) for v in vb]:
            raise ValueError(f"weights of {a.name} and {b.name} differ in shape.")
        for x, y in zip(va, vb):
            y.assign(x)


def pretrain_float(out_dir, workdir, *, width, epochs, batch, learning_rate=1e-3, smoke=False,
                   verbose=2, validation=0.1, tag="efficacy"):
    """Train (or find) the shared float checkpoint: full-precision VGG-small (ReLU) for
    ``epochs`` epochs on the training split (seed 0), resumable per epoch. Writes
    ``out_dir/pretrain.weights.h5`` and ``out_dir/pretrain.json``; returns the result dict."""
    from keras_wreg import models
    from keras_wreg.callbacks import fit_stage

    out_dir = Path(out_dir)
    result_path = out_dir / "pretrain.json"
    if result_path.exists() and (out_dir / "pretrain.weights.h5").exists():
        return json.loads(result_path.read_text())
    tf.config.experimental.enable_op_determinism()
    work = Path(workdir) / "pretrain"
    work.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    train, val, test, steps, shape, source = load_splits(0, batch, validation, smoke)
    model = models.build("vgg_small_fp", shape, 10, width=width)
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
        learning_rate, epochs * steps)), "sparse_categorical_crossentropy", metrics=["accuracy"])
    timer = EpochTimer()
    began = time.perf_counter()
    print(f"[{tag}] float pretraining: {epochs} epochs, {steps} steps/epoch", flush=True)
    history = fit_stage(model, train, epochs, backup_dir=work, validation_data=val,
                        callbacks=[timer], verbose=verbose)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_weights(out_dir / "pretrain.weights.h5")
    drop_optimizer_state(out_dir / "pretrain.weights.h5")
    _, test_acc = model.evaluate(test, verbose=0)
    result = {"config": "float_pretrain", "seed": 0, "epochs": epochs, "width": width,
              "batch_size": batch, "learning_rate": learning_rate, "data": source,
              "val_curve": history.history["val_accuracy"],
              "final_val_accuracy": history.history["val_accuracy"][-1],
              "test_accuracy": float(test_acc), "epoch_seconds_last_session": timer.times,
              "wall_seconds_last_session": time.perf_counter() - began,
              "versions": versions(), "commit": git_commit()}
    write_json(result_path, result)
    import shutil

    shutil.rmtree(work / "train", ignore_errors=True)
    return result


def drop_optimizer_state(path):
    """Empty the ``optimizer`` group of a ``.weights.h5`` file in place: every arm compiles a
    fresh optimizer, and Adam's slots would triple the committed checkpoint's size."""
    import h5py

    with h5py.File(path, "r+") as f:
        if "optimizer" in f:
            del f["optimizer"]
            f.create_group("optimizer")
        f.flush()
    tmp = Path(str(path) + ".tmp")  # h5py does not shrink a file on delete: repack it
    with h5py.File(path, "r") as f, h5py.File(tmp, "w") as g:
        for key in f.keys():
            f.copy(f[key], g, name=key)
        for key, value in f.attrs.items():
            g.attrs[key] = value
    tmp.replace(path)


def load_float(weights, input_shape, width):
    """The float VGG-small with the shared checkpoint loaded."""
    from keras_wreg import models

    model = models.build("vgg_small_fp", input_shape, 10, width=width)
    model.load_weights(weights)
    return model


def run_efficacy(suite, out, config, seed, train_arm, *, float_dir, width, batch, workdir=None,
                 validation=0.1, smoke=False, verbose=2, command=""):
    """One resumable (config, seed) run of an efficacy suite; writes and returns its result.

    ``train_arm(config, float_model, splits, work, callbacks, verbose)`` fine-tunes a model
    from the shared float checkpoint (``splits`` = ``(train, val, steps, input_shape)``; it
    must pass ``backup_dir=work`` to ``fit_stage``/the recipe so every epoch is backed up) and
    returns ``(final model, history, extra result fields)``. The test set is read once, here,
    on the final model. The backup is removed only after the result file is written.
    """
    import shutil

    out = Path(out)
    name = f"{config}-s{seed}"
    result_path = out / "runs" / f"{name}.json"
    if result_path.exists():
        print(f"[{suite}] {name}: done ({result_path})", flush=True)
        return json.loads(result_path.read_text())
    weights = Path(float_dir) / "pretrain.weights.h5"
    if not weights.exists():
        raise SystemExit(f"no float checkpoint at {weights}: run `pretrain` first")
    tf.config.experimental.enable_op_determinism()
    work = suite_workdir(workdir, suite) / name
    work.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    train, val, test, steps, shape, source = load_splits(seed, batch, validation, smoke)
    float_model = load_float(weights, shape, width)
    timer = StepTimer()
    began = time.perf_counter()
    print(f"[{suite}] {name}: {steps} steps/epoch", flush=True)
    model, history, extra = train_arm(config, float_model, (train, val, steps, shape), work,
                                      [timer], verbose)
    wall = time.perf_counter() - began
    if not model._is_compiled:
        model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    test_acc = float(model.evaluate(test, verbose=0, return_dict=True)["accuracy"])  # only read
    curve = [float(v) for v in history.history["val_accuracy"]]
    result = {"config": config, "seed": seed, "width": width, "batch_size": batch,
              "data": source, "epochs": len(curve), "val_curve": curve,
              "train_curve": [float(v) for v in history.history.get("accuracy", [])],
              "final_val_accuracy": curve[-1], "test_accuracy": test_acc,
              "median_step_seconds": timer.median if timer.times else None,
              "wall_seconds_last_session": wall, "versions": versions(),
              "commit": git_commit(), "command": command, **extra}
    result_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(result_path, result)
    shutil.rmtree(work, ignore_errors=True)
    print(f"[{suite}] {name}: val {curve[-1]:.4f} test {test_acc:.4f} ({wall / 60:.1f} min)",
          flush=True)
    return result


def histogram(values, lo, hi, bins=120):
    """``(edges, counts)`` of ``values`` clipped to ``[lo, hi]`` (JSON-able lists)."""
    edges = np.linspace(lo, hi, bins + 1)
    counts = np.histogram(np.clip(np.asarray(values).ravel(), lo, hi), edges)[0]
    return edges.tolist(), counts.tolist()


def efficacy_parser(doc, configs, extra_assemble=()):
    """The shared command line: ``pretrain``, ``run --config C --seed S``, ``queue c:s ...``,
    ``assemble --baseline B --winner W``; ``--smoke`` and ``--workdir``/``--verbose``."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("pretrain", "run", "queue"):
        p = sub.add_parser(name)
        p.add_argument("--workdir", default=None)
        p.add_argument("--verbose", type=int, default=2)
        if name == "run":
            p.add_argument("--config", required=True, choices=sorted(configs))
            p.add_argument("--seed", type=int, default=0)
        if name == "queue":
            p.add_argument("jobs", nargs="+", help="config:seed items, run in order")
    p = sub.add_parser("assemble")
    p.add_argument("--baseline", required=True)
    p.add_argument("--winner", required=True)
    for flag, kwargs in extra_assemble:
        p.add_argument(flag, **kwargs)
    parser.add_argument("--smoke", action="store_true",
                        help="pipeline check: width 8, 1+2 epochs, a few batches, results in /tmp")
    return parser


def queue_jobs(jobs, configs):
    """``[(config, seed)]`` from ``config:seed`` items (SystemExit for an unknown config)."""
    out = []
    for job in jobs:
        config, _, seed = job.partition(":")
        if config not in configs:
            raise SystemExit(f"unknown config {config!r}; known: {sorted(configs)}")
        out.append((config, int(seed or 0)))
    return out


def verdict(payload, baseline, winner, t, dof, p):
    """``Winner − baseline on test: +x.xx pt (Welch t, dof, p)`` for the assembled payload."""
    diff = 100 * (np.mean(payload["winner"]["test_accuracy"])
                  - np.mean(payload["baseline"]["test_accuracy"]))
    return (f"Winner `{winner}` − baseline `{baseline}` on test: {diff:+.2f} pt "
            f"(Welch t = {t if t is None else round(t, 3)}, dof = "
            f"{dof if dof is None else round(dof, 2)}, p = {p if p is None else round(p, 4)})")


def suite_pretrain(mod, args):
    """The shared float checkpoint of a suite module (its WIDTH, PRETRAIN_EPOCHS, ...)."""
    return pretrain_float(mod.FLOAT_DIR, suite_workdir(args.workdir, "efficacy_fp32"),
                          width=mod.WIDTH, epochs=mod.PRETRAIN_EPOCHS, batch=mod.BATCH,
                          learning_rate=mod.LR, smoke=mod.SMOKE, verbose=args.verbose,
                          validation=mod.VALIDATION, tag=mod.SUITE)


def suite_run(mod, config, seed, args):
    """One (config, seed) run of a suite module (its ``train_arm``)."""
    return run_efficacy(
        mod.SUITE, mod.OUT, config, seed, mod.train_arm, float_dir=mod.FLOAT_DIR,
        width=mod.WIDTH, batch=mod.BATCH, workdir=args.workdir, validation=mod.VALIDATION,
        smoke=mod.SMOKE, verbose=args.verbose,
        command=f"python -m benchmarks.{mod.SUITE} run --config {config} --seed {seed}")


def suite_main(mod, argv=None):
    """The command line of an efficacy suite module (efficacy_003, efficacy_004): ``--smoke``
    switches the module to width 8, 1 + 2 epochs, a few batches, results in /tmp."""
    import sys

    args = efficacy_parser(mod.__doc__, mod.CONFIGS).parse_args(
        sys.argv[1:] if argv is None else argv)
    if args.smoke:
        mod.SMOKE, mod.WIDTH, mod.PRETRAIN_EPOCHS, mod.FINETUNE_EPOCHS = True, 8, 1, 2
        mod.RESULTS = Path("/tmp/efficacy_smoke")
        mod.OUT, mod.FLOAT_DIR = mod.RESULTS / mod.SUITE, mod.RESULTS / "efficacy_fp32"
    if args.command == "pretrain":
        suite_pretrain(mod, args)
    elif args.command == "run":
        suite_run(mod, args.config, args.seed, args)
    elif args.command == "queue":
        jobs = queue_jobs(args.jobs, mod.CONFIGS)
        suite_pretrain(mod, args)
        for config, seed in jobs:
            suite_run(mod, config, seed, args)
    else:
        mod.assemble(args)


def suite_payload(mod, args, skip=()):
    """The assembled comparison of an efficacy suite module from its run files (nothing typed
    in): ``(runs, payload, (t, dof, p))``. The payload has the fields every suite writes
    (dataset, model, width, epochs, command, baseline, winner, Welch test, the other arms as
    ``references`` except those in ``skip``, the shared float checkpoint's accuracies)."""
    runs = load_runs(mod.OUT / "runs")
    pre = json.loads((mod.FLOAT_DIR / "pretrain.json").read_text())
    t, dof, p = compare(runs, args.baseline, args.winner)
    suite = mod.SUITE
    command = (f"python -m benchmarks.{suite} pretrain; python -m benchmarks.{suite} queue "
               f"<config>:<seed> ...; python -m benchmarks.{suite} assemble --baseline "
               f"{args.baseline} --winner {args.winner}")
    payload = {
        "dataset": "cifar10", "model": "vgg_small", "width": mod.WIDTH,
        "epochs": mod.PRETRAIN_EPOCHS + mod.FINETUNE_EPOCHS,
        "pretrain_epochs": mod.PRETRAIN_EPOCHS, "finetune_epochs": mod.FINETUNE_EPOCHS,
        "command": command,
        "baseline": arm(runs, args.baseline), "winner": arm(runs, args.winner),
        "welch_p": p, "welch_t": t, "welch_dof": dof,
        "references": [arm(runs, c) for c in runs
                       if c not in (args.baseline, args.winner, *skip)],
        "pretrain_val_accuracy": pre["final_val_accuracy"],
        "pretrain_test_accuracy": pre["test_accuracy"],
    }
    return runs, payload, (t, dof, p)


def suite_report(mod, args, title, setup, table, payload, test, verdict_tail=""):
    """Write ``<suite>.json`` and ``<suite>.md`` (title, command, ``setup`` text, the table,
    the verdict and the PNGs, which the caller has drawn) and print the markdown."""
    suite = mod.SUITE
    write_json(mod.RESULTS / f"{suite}.json", payload)
    text = "\n".join([
        title, "", f"Command: `{payload['command']}`", "", setup, "", table, "",
        verdict(payload, args.baseline, args.winner, *test) + verdict_tail + ".", "",
        f"![curves]({suite}_curves.png) ![histograms]({suite}_histograms.png)", ""])
    (mod.RESULTS / f"{suite}.md").write_text(text)
    print(text)


__all__ = ["StepTimer", "EpochTimer", "epochs_to_reach", "versions", "git_commit", "markdown_table",
           "mean_std", "plot_curves", "write_json", "suite_workdir", "load_splits", "read_log",
           "welch", "load_runs", "mean_sd_text", "arm", "compare", "summary_rows",
           "plot_run_curves", "plot_histograms", "transfer_weights", "pretrain_float",
           "load_float", "run_efficacy", "histogram", "efficacy_parser", "queue_jobs",
           "suite_pretrain", "suite_run", "suite_main", "verdict", "suite_payload", "suite_report"]
