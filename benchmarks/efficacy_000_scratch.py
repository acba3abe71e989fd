"""Cosine momentum from scratch: does it converge faster than plain Larq (seed 000's claim)?

Protocol (``../shared/design/PROTOCOL.md``): full CIFAR-10 (45,000 / 5,000 / 10,000), binary
VGG-small w32 (``ste_sign`` weights and activations) from random initialisation, the same
``EPOCHS`` for every arm (Adam, cosine decay to 0 over the run), per-epoch validation curves.

* baseline side, plain Larq (``weight_clip`` 1): learning rate 1e-3 (Larq's usual), 5e-4 and
  2e-3 (as many settings as the keras_wreg side);
* keras_wreg side: ``CosineMomentum`` at two strengths (eta 1e-3, the default, and 1e-2) and
  the W-regularizer applied decoupled with a ramp over the last third.

``assemble`` selects per side on seed 0, compares seeds 1-3 and reports
``epochs_to_baseline_per_seed`` (the first epoch at which the winner's validation accuracy
reaches the baseline's *final* validation accuracy, as a fraction of the budget, per reported
seed; the target is <= 0.7 on every seed), the final test accuracy with Welch's p, and a plot
of the mean ± sd validation curves.

    python -m benchmarks.efficacy_000_scratch queue larq:0 larq_lr5e4:0 ... && ... complete
    python -m benchmarks.efficacy_000_scratch assemble
"""

import sys
from pathlib import Path

import numpy as np

from benchmarks import common

SUITE = "efficacy_000_scratch"
RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / SUITE
FLOAT_DIR = None  # from random initialisation
START_CHECKPOINT = None
WIDTH, BATCH, PRETRAIN_EPOCHS, FINETUNE_EPOCHS, VALIDATION = 32, 128, 0, 20, 0.1
LR = 1e-3
SMOKE = False
PROTOCOL = "from-scratch: 20 epochs from random initialisation, 45k/5k/10k"
PROTOCOL_KEYS = ()
TARGET_FRACTION = 0.7

_CM = {"use_wreg": False}
CONFIGS = {
    "larq": ("larq", {}),
    "larq_lr5e4": ("larq", {"learning_rate": 5e-4}),
    "larq_lr2e3": ("larq", {"learning_rate": 2e-3}),
    "cm": ("wreg", _CM),
    "cm_eta1e2": ("wreg", {**_CM, "eta": 1e-2}),
    "pull_ramp": ("wreg", {"use_wreg": False, "use_cosine_momentum": False, "pull": 1.0}),
}
BASELINE_ARMS = {c for c, (r, _) in CONFIGS.items() if r == "larq"}
REFERENCE_ARMS = set()


def train_arm(config, _, splits, work, callbacks, verbose):
    return common.fit_recipe(*CONFIGS[config], splits, work, callbacks, verbose,
                             epochs=FINETUNE_EPOCHS, width=WIDTH)


def epochs_to_baseline(win_runs, base_runs):
    """Per reported seed: first epoch (as a fraction of the budget) at which the winner's
    validation curve reaches the baseline's final validation accuracy of that seed, or None."""
    by_seed = {r["seed"]: r for r in base_runs}
    out = {}
    for r in common.reported(win_runs):
        if r["seed"] in by_seed:
            reach = common.epochs_to_reach(r["val_curve"],
                                           by_seed[r["seed"]]["final_val_accuracy"])
            out[r["seed"]] = None if reach is None else reach / len(r["val_curve"])
    return out


def _plot(runs, chosen, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for c in chosen:
        rs = common.reported(runs[c]) or runs[c]
        arr = np.asarray([r["val_curve"] for r in rs])
        ep = np.arange(1, arr.shape[1] + 1)
        mean, sd = arr.mean(0), arr.std(0, ddof=1) if len(arr) > 1 else np.zeros(arr.shape[1])
        ax.plot(ep, mean, marker="o", ms=3, label=f"{c} (seeds {[r['seed'] for r in rs]})")
        ax.fill_between(ep, mean - sd, mean + sd, alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (mean ± sd)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def assemble(args):
    def add(runs, payload):
        sel = payload["selection"]
        per_seed = epochs_to_baseline(runs[sel["winner"]], runs[sel["baseline"]])
        payload.update(
            epochs_to_baseline_per_seed=per_seed, target_fraction=TARGET_FRACTION,
            convergence_target_met=bool(per_seed) and all(
                v is not None and v <= TARGET_FRACTION for v in per_seed.values()))
        _plot(runs, (sel["baseline"], sel["winner"]), RESULTS / f"{SUITE}_mean_sd.png")
        return (f" Epochs to the baseline's final validation accuracy / budget, per reported "
                f"seed: {per_seed} (target <= {TARGET_FRACTION} on every seed: "
                f"{'met' if payload['convergence_target_met'] else 'not met'}).")

    common.report_suite(
        sys.modules[__name__], args, "# Cosine momentum from scratch vs plain Larq",
        f"CIFAR-10, 45,000 / 5,000 / 10,000; binary VGG-small w{WIDTH} from random "
        f"initialisation, {FINETUNE_EPOCHS} epochs, Adam with a cosine decay.", add=add,
        pngs=[f"{SUITE}_mean_sd.png"], xlabel="epoch")


if __name__ == "__main__":
    common.suite_main(sys.modules[__name__])
