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
    """The package commit (short hash), ``+dirty`` when the package or benchmark sources
    differ from it (such a run cannot be repeated from its commit)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=root).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "keras_wreg", "benchmarks/*.py"],
                               capture_output=True, text=True, check=True, cwd=root).stdout
    except Exception:  # not a git checkout
        return "unknown"
    return head + ("+dirty" if dirty.strip() else "")


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
    test set: :func:`keras_wreg.data.load_dataset` with ``split_seed=0``. ``smoke``: a few
    batches only. Returns ``(train, val, test, steps, input_shape, split)``, ``split`` the sizes
    ``{"train", "validation", "test"}``."""
    import math

    from keras_wreg import data

    if not smoke:
        splits = data.load_dataset(dataset, batch_size=batch, augment=True,
                                   validation_split=validation, seed=seed, split_seed=0)
        split = {"train": splits.num_train, "validation": splits.num_validation,
                 "test": splits.num_test}
        return (splits.train, splits.validation, splits.test,
                math.ceil(splits.num_train / batch), tuple(splits.input_shape), split)
    (x, y), (x_test, y_test), _ = data.load_arrays(dataset)  # pipeline check: a few batches
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    n_val = min(int(round(len(x) * validation)), 2 * batch)
    x, y = x[:n_val + 4 * batch], y[:n_val + 4 * batch]
    pick = np.random.default_rng(0).permutation(len(x_test))[:2 * batch]
    x_test, y_test = x_test[pick], y_test[pick]  # the test copy is sorted by class
    train = data.make_pipeline(x[n_val:], y[n_val:], batch, shuffle=True, augment=True, seed=seed)
    val = data.make_pipeline(x[:n_val], y[:n_val], batch)
    test = data.make_pipeline(x_test, y_test, batch)
    steps = math.ceil((len(x) - n_val) / batch)
    split = {"train": len(x) - n_val, "validation": n_val, "test": len(x_test)}
    return train, val, test, steps, tuple(x.shape[1:]), split


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


def summary_rows(runs, sel, extra=()):
    """Markdown rows per arm, by side and seed-0 validation: the selection value, the reported
    seeds and their test accuracy (+ ``extra`` ``(header, fn(list of runs) -> str)``)."""
    rows = []
    side = lambda c: sel["side"].get(c, "reference")  # noqa: E731
    for c, rs in sorted(runs.items(), key=lambda kv: (side(kv[0]),
                                                      -sel["validation"].get(kv[0], 0))):
        rep = reported(rs)
        val = sel["validation"].get(c)
        rows.append([side(c), f"**{c}**" if c in (sel["baseline"], sel["winner"]) else c,
                     "n/a" if val is None else f"{100 * val:.2f}",
                     ",".join(str(r["seed"]) for r in rep) or "—",
                     mean_sd_text([r["test_accuracy"] for r in rep]) if rep else "—"]
                    + [fn(rs) for _, fn in extra])
    headers = ["side", "arm", f"val % seed {SELECTION_SEED} (selection)", "reported seeds",
               "test % (mean ± sample sd, reported seeds)"]
    return headers + [h for h, _ in extra], rows


def plot_run_curves(runs, path, highlight=(), xlabel="fine-tuning epoch", key="val_curve",
                    ylabel="validation accuracy", log=False):
    """Mean per-epoch ``key`` curve of every config (highlighted ones thicker)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for c, rs in runs.items():
        n = min(len(r[key]) for r in rs)
        arr = np.asarray([r[key][:n] for r in rs])
        ax.plot(np.arange(1, n + 1), arr.mean(0), marker="o", ms=3, label=f"{c} (n={len(rs)})",
                linewidth=2.5 if c in highlight else 1.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
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


def fit_recipe(method, overrides, splits, work, callbacks, verbose, *, epochs, width,
               model="vgg_small", start=None, **fit_kwargs):
    """The body of a suite's ``train_arm``: the recipe's model (``model`` builder, ``width``),
    ``start(model)`` (a checkpoint or the float weights), the recipe's optimizer over ``epochs``
    (fresh cosine decay) and callbacks, and its resumable fit backed up in ``work``. Returns
    ``(model, history, extra)``, ``extra`` the run-file fields of the arm's settings."""
    from keras_wreg import recipes

    train, val, steps, shape = splits
    recipe = recipes.get(method)
    params = recipe.params(overrides)
    net = recipe.build_model(model, shape, 10, params, width=width)
    if start is not None:
        start(net)
    total = epochs * steps
    recipe.compile(net, params, total)
    callbacks = list(callbacks) + recipe.callbacks(params, total, net)
    history = recipe.fit(net, train, epochs, validation_data=val, callbacks=callbacks,
                         params=params, verbose=verbose, backup_dir=work, **fit_kwargs)
    return net, history, {"recipe": method, "params": params,
                          "learning_rate": params["learning_rate"], "lr_schedule": "cosine"}


def transfer_weights(src, dst):
    """Copy ``src``'s weights into ``dst`` layer by layer (the layers that own weights, in
    order), ignoring ClusterReg state in either (the float checkpoint into a clustered or
    ternary twin of the same network)."""
    from keras_wreg._clone import copy_layer_weights, leaf_layers
    from keras_wreg.regularizers import clustered_weights

    skip = {id(v) for m in (src, dst) for _, _, r in clustered_weights(m) for v in r.weights}
    a, b = ([la for la in leaf_layers(m) if [v for v in la.weights if id(v) not in skip]]
            for m in (src, dst))
    if len(a) != len(b):
        raise ValueError(f"{len(a)} layers with weights in the source, {len(b)} in the target.")
    for x, y in zip(a, b):
        copy_layer_weights(x, y, skip=skip, target_skip=skip)


def pretrain(out_dir, workdir, *, width, epochs, batch, learning_rate=1e-3, smoke=False,
             verbose=2, validation=0.1, tag="efficacy", build=None):
    """Train (or find) a suite's shared starting checkpoint for ``epochs`` epochs on the
    training split (seed 0), resumable per epoch: the full-precision VGG-small (ReLU) with Adam
    and cosine decay, or ``build(input_shape, total_steps)``'s compiled model. Writes
    ``out_dir/pretrain.weights.h5`` and ``out_dir/pretrain.json``; returns the result dict."""
    from keras_wreg import models
    from keras_wreg.training import fit_stage

    out_dir = Path(out_dir)
    result_path = out_dir / "pretrain.json"
    if result_path.exists() and (out_dir / "pretrain.weights.h5").exists():
        return json.loads(result_path.read_text())
    tf.config.experimental.enable_op_determinism()
    work = Path(workdir) / "pretrain"
    work.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    train, val, test, steps, shape, split = load_splits(0, batch, validation, smoke)
    if build is None:
        model = models.build("vgg_small_fp", shape, 10, width=width)
        model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
            learning_rate, epochs * steps)), "sparse_categorical_crossentropy",
            metrics=["accuracy"])
    else:
        model = build(shape, epochs * steps)
    timer = EpochTimer()
    began = time.perf_counter()
    print(f"[{tag}] pretraining: {epochs} epochs, {steps} steps/epoch", flush=True)
    history = fit_stage(model, train, epochs, backup_dir=work, validation_data=val,
                        callbacks=[timer], verbose=verbose)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_weights(out_dir / "pretrain.weights.h5")
    drop_optimizer_state(out_dir / "pretrain.weights.h5")
    _, test_acc = model.evaluate(test, verbose=0)
    result = {"config": "float_pretrain" if build is None else "pretrain", "seed": 0,
              "epochs": epochs, "width": width,
              "batch_size": batch, "learning_rate": learning_rate, "lr_schedule": "cosine",
              "dataset": "cifar10", "data": "cifar10", "split": split,
              "command": f"python -m benchmarks.{tag} pretrain",
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


def run_efficacy(mod, config, seed, *, workdir=None, verbose=2):
    """One resumable (config, seed) run of an efficacy suite module; writes and returns its
    run file (every field PROTOCOL.md asks for, see :data:`RUN_FIELDS`).

    ``mod.train_arm(config, float_model, splits, work, callbacks, verbose)`` fine-tunes a model
    from the shared float checkpoint (``splits`` = ``(train, val, steps, input_shape)``; it
    must pass ``backup_dir=work`` to ``fit_stage``/the recipe so every epoch is backed up) and
    returns ``(final model, history, extra)``; ``extra`` holds at least ``recipe``, ``params``,
    ``learning_rate`` and ``lr_schedule``. The test set is read once, here, on the final model.
    The backup is removed only after the result file is written.
    """
    import shutil

    suite = mod.SUITE
    name = f"{config}-s{seed}"
    result_path = Path(mod.OUT) / "runs" / f"{name}.json"
    if result_path.exists():
        print(f"[{suite}] {name}: done ({result_path})", flush=True)
        return json.loads(result_path.read_text())
    weights = Path(mod.FLOAT_DIR) / "pretrain.weights.h5" if mod.FLOAT_DIR else None
    if weights is not None and not weights.exists():
        raise SystemExit(f"no float checkpoint at {weights}: run `pretrain` first")
    start = mod.START_CHECKPOINT
    if start is not None and not Path(start).exists():
        raise SystemExit(f"no starting checkpoint at {start}: run `pretrain` first")
    tf.config.experimental.enable_op_determinism()
    work = suite_workdir(workdir, suite) / name
    work.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    train, val, test, steps, shape, split = load_splits(seed, mod.BATCH, mod.VALIDATION,
                                                         mod.SMOKE)
    float_model = load_float(weights, shape, mod.WIDTH) if weights else None
    timer = StepTimer()
    began = time.perf_counter()
    print(f"[{suite}] {name}: {steps} steps/epoch", flush=True)
    import inspect

    seeded = {"seed": seed} if "seed" in inspect.signature(mod.train_arm).parameters else {}
    model, history, extra = mod.train_arm(config, float_model, (train, val, steps, shape), work,
                                          [timer], verbose, **seeded)
    wall = time.perf_counter() - began
    if not model._is_compiled:
        model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    test_acc = float(model.evaluate(test, verbose=0, return_dict=True)["accuracy"])  # only read
    curve = [float(v) for v in history.history["val_accuracy"]]
    fields = protocol_fields(mod, config, recipe=extra.pop("recipe"), params=extra.pop("params"),
                             checkpoint=mod.START_CHECKPOINT,
                             learning_rate=extra.pop("learning_rate"),
                             lr_schedule=extra.pop("lr_schedule"), split=split)
    result = {"config": config, "seed": seed, **fields, "width": mod.WIDTH,
              "batch_size": mod.BATCH, "epochs": len(curve), "val_curve": curve,
              "train_curve": [float(v) for v in history.history.get("accuracy", [])],
              "final_val_accuracy": curve[-1], "test_accuracy": test_acc,
              "median_step_seconds": timer.median if timer.times else None,
              "wall_seconds_last_session": wall, "versions": versions(),
              "commit": git_commit(),
              "command": f"python -m benchmarks.{suite} run --config {config} --seed {seed}",
              **extra}
    if getattr(mod, "KEEP_WEIGHTS", False):  # for a later export of the trained model
        kept = suite_workdir(workdir, suite) / "final" / f"{name}.weights.h5"
        kept.parent.mkdir(parents=True, exist_ok=True)
        model.save_weights(kept)
        result["final_weights"] = {"file": f"{suite}/final/{kept.name}",
                                   "sha256": sha256_file(kept)}
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
    ``assemble [--preliminary]``; ``--smoke`` and ``--workdir``/``--verbose``."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0], allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("complete", help="run the reported seeds the selected arms lack")
    p.add_argument("--workdir", default=None)
    p.add_argument("--verbose", type=int, default=2)
    for name in ("pretrain", "run", "queue"):
        p = sub.add_parser(name)
        p.add_argument("--workdir", default=None)
        p.add_argument("--verbose", type=int, default=2)
        if name == "run":
            p.add_argument("--config", required=True, choices=sorted(configs))
            p.add_argument("--seed", type=int, default=0)
        if name == "queue":
            p.add_argument("jobs", nargs="+", help="config:seed items, run in order")
    p = sub.add_parser("assemble", help="select by the protocol's rule and compare seeds 1-3")
    p.add_argument("--preliminary", action="store_true",
                   help="let missing seeds and unequal effort through (written to "
                        "results/preliminary/, marked as such)")
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


def suite_pretrain(mod, args):
    """The shared starting checkpoint of a suite module (its WIDTH, PRETRAIN_EPOCHS, ...): the
    float one in ``FLOAT_DIR``, or, for a suite with ``PRETRAIN_DIR``, the model of its
    ``pretrain_model(input_shape, total_steps)``; none for a suite that trains from scratch."""
    out = getattr(mod, "PRETRAIN_DIR", None) or mod.FLOAT_DIR
    if not out:
        return None
    return pretrain(out, suite_workdir(args.workdir, Path(out).name), width=mod.WIDTH,
                    epochs=mod.PRETRAIN_EPOCHS, batch=mod.BATCH, learning_rate=mod.LR,
                    smoke=mod.SMOKE, verbose=args.verbose, validation=mod.VALIDATION,
                    tag=mod.SUITE, build=getattr(mod, "pretrain_model", None))


def suite_run(mod, config, seed, args):
    """One (config, seed) run of a suite module (its ``train_arm``)."""
    return run_efficacy(mod, config, seed, workdir=args.workdir, verbose=args.verbose)


def smoke_mode(mod):
    """Switch a suite module to its pipeline check: width 8, 1 + 2 epochs, a few batches,
    results in /tmp."""
    mod.SMOKE, mod.WIDTH, mod.PRETRAIN_EPOCHS, mod.FINETUNE_EPOCHS = True, 8, 1, 2
    mod.RESULTS = Path("/tmp/efficacy_smoke")
    mod.OUT = mod.RESULTS / mod.SUITE
    mod.FLOAT_DIR = mod.RESULTS / "efficacy_fp32" if mod.FLOAT_DIR else None
    if mod.FLOAT_DIR and mod.START_CHECKPOINT:  # the smoke run starts from its own checkpoint
        mod.START_CHECKPOINT = mod.FLOAT_DIR / "pretrain.weights.h5"
    if getattr(mod, "PRETRAIN_DIR", None):
        mod.PRETRAIN_DIR = mod.OUT
        mod.START_CHECKPOINT = mod.OUT / "pretrain.weights.h5"


def suite_main(mod, argv=None):
    """The command line of an efficacy suite module (efficacy_003, efficacy_004): ``--smoke``
    switches the module to width 8, 1 + 2 epochs, a few batches, results in /tmp."""
    import sys

    args = efficacy_parser(mod.__doc__, mod.CONFIGS).parse_args(
        sys.argv[1:] if argv is None else argv)
    if args.smoke:
        smoke_mode(mod)
    if args.command == "pretrain":
        suite_pretrain(mod, args)
    elif args.command == "run":
        suite_run(mod, args.config, args.seed, args)
    elif args.command == "queue":
        jobs = queue_jobs(args.jobs, mod.CONFIGS)
        suite_pretrain(mod, args)
        for config, seed in jobs:
            suite_run(mod, config, seed, args)
    elif args.command == "complete":
        for config, seed in missing_reported(mod):
            suite_run(mod, config, seed, args)
    else:
        mod.assemble(args)


# --------------------------------------------------------------------------- the protocol
# ../shared/design/PROTOCOL.md in code: what a run file must hold, which seeds select and which
# are reported, equal effort, one package commit per arm (or a recorded equivalence check), and
# the words of the verdict. `assemble_suite` refuses a suite that breaks a rule.

REPO = Path(__file__).resolve().parent.parent
SELECTION_SEED = 0
REPORTED_SEEDS = (1, 2, 3)
CIFAR10_SPLIT = {"train": 45000, "validation": 5000, "test": 10000}
#: fields every run file of an efficacy suite holds (PROTOCOL.md, "Runs")
RUN_FIELDS = ("config", "seed", "recipe", "params", "protocol", "dataset", "split",
              "start_checkpoint", "pretrain_epochs", "epochs", "batch_size", "learning_rate",
              "lr_schedule", "val_curve", "train_curve", "final_val_accuracy", "test_accuracy",
              "test_reads", "wall_seconds_last_session", "commit", "command")
EQUIVALENCE = Path(__file__).resolve().parent / "results" / "equivalence.json"


def sha256_file(path):
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def repo_path(path):
    """``path`` relative to the repository (run files name no absolute machine path)."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return path.name


def checkpoint_identity(path):
    """``{"path": <relative to the repository>, "sha256": ...}`` of a starting checkpoint
    (``None``: a run from random initialisation, which the seed determines)."""
    if path is None:
        return {"path": None, "sha256": None, "from": "random initialisation (the seed)"}
    return {"path": repo_path(path), "sha256": sha256_file(path)}


def protocol_fields(mod, config, *, recipe, params, checkpoint, learning_rate, lr_schedule,
                    split):
    """The run-file fields of PROTOCOL.md that name the protocol and the arm's settings."""
    return {"recipe": recipe, "params": params, "protocol": mod.PROTOCOL, "dataset": "cifar10",
            "data": "cifar10", "split": split,
            "start_checkpoint": checkpoint_identity(checkpoint),
            "pretrain_epochs": mod.PRETRAIN_EPOCHS, "learning_rate": learning_rate,
            "lr_schedule": lr_schedule, "test_reads": 1}


def run_problems(run):
    """What a run file lacks or holds against the protocol (empty when it is complete)."""
    name = f"{run.get('config')}-s{run.get('seed')}"
    problems = [f"{name}: no `{k}`" for k in RUN_FIELDS if run.get(k) is None]
    if run.get("test_reads") not in (None, 1):
        problems.append(f"{name}: the test set was read {run['test_reads']} times")
    bad = [k for k, v in run.items() if isinstance(v, str) and v.startswith("/")]
    problems += [f"{name}: absolute machine path in `{k}`" for k in bad]
    return problems


def load_equivalence():
    return json.loads(EQUIVALENCE.read_text()) if EQUIVALENCE.exists() else []


def load_suite_runs(mod):
    """``(runs, origin)``: the suite's run files plus the arms it shares with another suite of
    the same protocol (``mod.SHARED_RUNS = {suite: [config, ...]}``, e.g. a baseline that is
    not run twice); ``origin[config]`` is the suite whose files hold the arm."""
    runs = load_runs(Path(mod.OUT) / "runs")
    origin = {c: mod.SUITE for c in runs}
    for suite, configs in getattr(mod, "SHARED_RUNS", {}).items():
        other = load_runs(Path(mod.OUT).parent / suite / "runs")
        for config in configs:
            if config in other:
                runs[config], origin[config] = other[config], suite
    return runs, origin


def commit_problems(suite, runs, records=None, origin=None):
    """Arms whose seeds ran at several package commits with no recorded check that the arm's
    training steps are identical at those commits (``benchmarks/equivalence.py``)."""
    records = load_equivalence() if records is None else records
    problems = []
    for config, rs in runs.items():
        suite_of = (origin or {}).get(config, suite)
        commits = sorted({r.get("commit") for r in rs})
        if len(commits) < 2:
            continue
        covered = any(e["suite"] == suite_of and e["config"] == config and e["identical"]
                      and set(commits) <= set(e["commits"]) for e in records)
        if not covered:
            problems.append(f"{config}: seeds ran at commits {commits} and no equivalence "
                            f"record shows identical steps (python -m benchmarks.equivalence "
                            f"--suite {suite_of} --config {config})")
    return problems


def suite_select(mod, runs):
    """:func:`select` with a suite module's arms and its ``SELECTION_FIELD`` (default
    ``final_val_accuracy``; a suite whose tested model is post-processed after training, such
    as the snapped and BN-re-estimated clustered models, names the validation accuracy of that
    model)."""
    return select(runs, mod.BASELINE_ARMS, mod.REFERENCE_ARMS,
                  field=getattr(mod, "SELECTION_FIELD", "final_val_accuracy"))


def select(runs, baseline_arms, reference_arms=(), seed=SELECTION_SEED,
           field="final_val_accuracy"):
    """The coded selection rule: per side, the arm with the best validation accuracy
    (``field`` of its run file) of the selection seed (ties: the alphabetically first).
    ``reference_arms`` (the float twin) are not candidates. Returns ``{"seed", "field",
    "rule", "validation", "side", "baseline", "winner", "tried"}``."""
    val, side = {}, {}
    for config, rs in sorted(runs.items()):
        if config in reference_arms:
            continue
        chosen = [r for r in rs if r["seed"] == seed]
        if chosen:
            val[config] = chosen[0].get(field, chosen[0]["final_val_accuracy"])
            side[config] = "baseline" if config in baseline_arms else "keras_wreg"

    def best(which):
        arms = sorted(c for c in val if side[c] == which)
        return max(arms, key=lambda c: (val[c], -arms.index(c))) if arms else None

    return {"seed": seed, "field": field,
            "rule": f"per side, the best validation accuracy ({field}) of seed "
            f"{seed} (ties: alphabetically first); seeds {list(REPORTED_SEEDS)} are reported",
            "validation": val, "side": side, "baseline": best("baseline"),
            "winner": best("keras_wreg"),
            "tried": {s: sum(v == s for v in side.values()) for s in ("baseline", "keras_wreg")}}


def missing_reported(mod):
    """``[(config, seed)]``: the reported seeds the arms selected by the rule have not run."""
    runs = load_suite_runs(mod)[0]
    sel = suite_select(mod, runs)
    done = {(c, r["seed"]) for c, rs in runs.items() for r in rs}
    arms = [sel[w] for w in ("winner", "baseline") if sel[w]]
    arms += [a for a in group_winners(mod, runs).values() if a and a not in arms]
    return [(a, s) for a in arms for s in REPORTED_SEEDS if (a, s) not in done]


def group_winners(mod, runs):
    """``{group: arm}``: the selection rule applied within each of a suite's ``GROUPS`` (arms
    compared among themselves, such as the distilled Larq arms); their winners' seeds 1-3 are
    reported too."""
    field = getattr(mod, "SELECTION_FIELD", "final_val_accuracy")
    return {g: select({c: runs[c] for c in arms if c in runs}, (), field=field)["winner"]
            for g, arms in getattr(mod, "GROUPS", {}).items()}


def verdict_word(diff, p):
    """PROTOCOL.md's words: "beats" only for p < 0.05 and a positive difference."""
    if p is None:
        return "not tested (fewer than 2 reported seeds per side)"
    if p < 0.05:
        return "beats" if diff > 0 else "loses to"
    return f"ties (p = {p:.2f})"


def reported(rs):
    return [r for r in rs if r["seed"] in REPORTED_SEEDS]


def arm_entry(rs, seeds=REPORTED_SEEDS):
    rs = [r for r in rs if r["seed"] in seeds]
    return {"config": rs[0]["config"] if rs else None,
            "recipe": rs[0].get("recipe") if rs else None,
            "params": rs[0].get("params") if rs else None,
            "test_accuracy": [r["test_accuracy"] for r in rs],
            "val_accuracy": [r["final_val_accuracy"] for r in rs],
            "seeds": [r["seed"] for r in rs], "commits": sorted({r["commit"] for r in rs})}


def assemble_suite(mod, preliminary=False):
    """Apply the protocol to a suite module's run files: check every run file, the commits,
    equal effort and the reported seeds, select by the rule, compare on seeds 1-3.

    Refuses (``SystemExit`` listing every problem) a suite whose runs break a rule; with
    ``preliminary`` only missing seeds and unequal effort are let through, and the payload says
    so (``preliminary: true``, ``gaps``). Returns ``(runs, payload)``."""
    runs, origin = load_suite_runs(mod)
    problems = [p for rs in runs.values() for r in rs for p in run_problems(r)]
    problems += commit_problems(mod.SUITE, runs, origin=origin)
    for config, rs in runs.items():
        if len({json.dumps(r.get("params"), sort_keys=True) for r in rs}) > 1:
            problems.append(f"{config}: seeds ran with different params")
    sel = suite_select(mod, runs)
    gaps = []
    if sel["tried"]["baseline"] < sel["tried"]["keras_wreg"]:
        gaps.append(f"unequal effort: {sel['tried']['baseline']} baseline settings vs "
                    f"{sel['tried']['keras_wreg']} keras_wreg settings on seed {sel['seed']}")
    for which in ("baseline", "winner"):
        config = sel[which]
        if config is None:
            gaps.append(f"no {which} arm has a seed-{sel['seed']} run")
            continue
        missing = sorted(set(REPORTED_SEEDS) - {r["seed"] for r in runs[config]})
        if missing:
            gaps.append(f"{which} {config}: reported seeds {missing} not run")
    if sel["baseline"] is None or sel["winner"] is None:
        problems.append("nothing to compare: " + "; ".join(g for g in gaps if g.startswith("no ")))
    if problems or (gaps and not preliminary):
        raise SystemExit("refusing to assemble " + mod.SUITE + ":\n  " + "\n  ".join(
            problems + gaps) + ("\n(--preliminary lets missing seeds and unequal effort "
                                "through, marked as such)" if not problems else ""))
    base, win = runs[sel["baseline"]], runs[sel["winner"]]
    a = [r["test_accuracy"] for r in reported(win)]
    b = [r["test_accuracy"] for r in reported(base)]
    t = dof = p = None
    if len(a) > 1 and len(b) > 1:
        t, dof, p = (None if v != v else v for v in welch(a, b))
    diff = 100 * (np.mean(a) - np.mean(b)) if a and b else None
    refs = [c for c in runs if c not in (sel["baseline"], sel["winner"])]
    payload = {
        "dataset": "cifar10", "model": getattr(mod, "MODEL", "vgg_small"), "width": mod.WIDTH,
        "epochs": mod.FINETUNE_EPOCHS, "pretrain_epochs": mod.PRETRAIN_EPOCHS,
        "protocol": mod.PROTOCOL, "split": dict(CIFAR10_SPLIT),
        "command": f"python -m benchmarks.{mod.SUITE} assemble",
        "selection": sel, "protocol_keys": list(mod.PROTOCOL_KEYS),
        "baseline": arm_entry(base), "winner": arm_entry(win),
        "selection_runs": {c: arm_entry(runs[c], (SELECTION_SEED,)) for c in sel["validation"]},
        "references": [arm_entry(runs[c]) for c in refs if reported(runs[c])],
        "winner_minus_baseline_pt": diff, "welch_t": t, "welch_dof": dof, "welch_p": p,
        "verdict": None if diff is None else verdict_word(diff, p),
        "preliminary": bool(gaps), "gaps": gaps,
    }
    return runs, payload


def selection_table(runs, sel):
    """Markdown: every arm tried on the selection seed, by side, best first, chosen marked."""
    rows = []
    for config in sorted(sel["validation"], key=lambda c: (sel["side"][c], -sel["validation"][c])):
        chosen = config in (sel["baseline"], sel["winner"])
        rows.append([sel["side"][config], f"**{config}**" if chosen else config,
                     f"{100 * sel['validation'][config]:.2f}"])
    return markdown_table(["side", "arm", f"val % (seed {sel['seed']})"], rows)


def comparison_text(payload):
    """The verdict sentence in the protocol's words."""
    b, w = payload["baseline"], payload["winner"]
    if payload["winner_minus_baseline_pt"] is None:
        return "No comparison: the reported seeds are not run"
    p = payload["welch_p"]
    verdict = payload["verdict"].replace("loses to", "loses")
    said = f"`{w['config']}` vs `{b['config']}`: {verdict}"
    return (f"{said} on test over seeds "
            f"{w['seeds']} / {b['seeds']}: {mean_sd_text(w['test_accuracy'])} % vs "
            f"{mean_sd_text(b['test_accuracy'])} %, {payload['winner_minus_baseline_pt']:+.2f} pt "
            f"(Welch t = {_r(payload['welch_t'], 3)}, dof = {_r(payload['welch_dof'], 2)}, "
            f"p = {p_text(p)})" + (" — PRELIMINARY: " + "; ".join(payload["gaps"])
                                  if payload["preliminary"] else ""))


def p_text(p):
    """A p-value as written in the reports: 4 decimals, or ``<1e-4`` style below 1e-4 (never
    "0.0")."""
    if p is None:
        return None
    return f"{p:.1e}" if 0 < p < 1e-4 else f"{round(p, 4)}"


def _r(value, digits):
    return None if value is None else round(value, digits)


def report_suite(mod, args, title, setup, *, add=None, extra=(), tables=(), pngs=(),
                 xlabel="fine-tuning epoch"):
    """A suite's ``assemble``: :func:`assemble_suite`, then ``add(runs, payload)`` (the suite's
    own JSON blocks and plots; it may return a sentence for the setup), the arms' table with
    ``extra`` columns (see :func:`summary_rows`), the validation curves and
    :func:`write_suite`. Returns ``(runs, payload)``."""
    runs, payload = assemble_suite(mod, args.preliminary)
    sel = payload["selection"]
    tail = (add(runs, payload) if add else "") or ""
    headers, rows = summary_rows(runs, sel, extra=extra)
    plot_run_curves(runs, mod.RESULTS / f"{mod.SUITE}_curves.png",
                    (sel["baseline"], sel["winner"]), xlabel=xlabel)
    write_suite(mod, payload, title, setup + tail,
                [selection_table(runs, sel), "", "Arms:", "", markdown_table(headers, rows),
                 *tables], [f"{mod.SUITE}_curves.png", *pngs])
    return runs, payload


def float_block(payload, float_runs, keys=("winner",), scale=100):
    """``payload["float"]``: the float twin's arm (seeds 0-3, the reference, never selected)
    and ``float_minus_<key>`` for each of ``keys`` (in points; ``scale=1``: as a fraction)."""
    payload["float"] = arm_entry(float_runs, (SELECTION_SEED, *REPORTED_SEEDS))
    for key in keys:
        if payload["float"]["test_accuracy"] and payload[key]["test_accuracy"]:
            payload[f"float_minus_{key}"] = float(scale * (
                np.mean(payload["float"]["test_accuracy"])
                - np.mean(payload[key]["test_accuracy"])))
    return payload["float"]


def pretrain_text(mod):
    """The setup sentence of a suite's shared starting checkpoint."""
    path = Path(getattr(mod, "PRETRAIN_DIR", None) or mod.FLOAT_DIR) / "pretrain.json"
    pre = json.loads(path.read_text())
    return (f"{mod.PRETRAIN_EPOCHS} epochs (val {100 * pre['final_val_accuracy']:.2f} %, test "
            f"{100 * pre['test_accuracy']:.2f} %)")


def write_suite(mod, payload, title, setup, tables, pngs):
    """``<suite>.json`` / ``.md`` (``preliminary/`` for a preliminary assembly); prints it."""
    out = mod.RESULTS / ("preliminary" if payload["preliminary"] else "")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{mod.SUITE}.json", payload)
    text = "\n".join([title, "", f"Command: `{payload['command']}`", "", setup, "",
                      "Selection (coded rule: " + payload["selection"]["rule"] + "):", "",
                      *tables, "", comparison_text(payload) + ".", "",
                      " ".join(f"![{p}]({'../' if payload['preliminary'] else ''}{p})"
                               for p in pngs), ""])
    (out / f"{mod.SUITE}.md").write_text(text)
    print(text)
