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


__all__ = ["StepTimer", "EpochTimer", "epochs_to_reach", "versions", "git_commit", "markdown_table",
           "mean_std", "plot_curves", "write_json"]
