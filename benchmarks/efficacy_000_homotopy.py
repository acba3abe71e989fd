"""The W-regularizer as the binarizer (full-precision forward, ramped pull, snap) vs plain Larq.

Fine-tuning protocol of ``efficacy_000`` (``../shared/design/PROTOCOL.md``): full CIFAR-10
(45,000 / 5,000 / 10,000), VGG-small w32 with binary activations, started from the shared
20-epoch plain-Larq checkpoint (``results/efficacy_000/pretrain.weights.h5``), 10 epochs (Adam
1e-3, fresh cosine decay). The ``wreg`` recipe with ``forward="latent"``: the kernels are full
precision in the forward pass, the decoupled W-pull ramps them onto ±alpha_c, then
``snap_binary`` and 50 batches of BatchNorm re-estimation leave a plain ±alpha binary model
(evaluated and exported as such).

* baseline side: plain Larq's four settings of ``efficacy_000`` (same protocol, checkpoint and
  data), shared rather than run twice;
* keras_wreg side: three homotopies (ramp shape and final strength).

``assemble`` selects by the rule, compares seeds 1-3 (target: >= plain Larq + 0.5 pt, p < 0.05)
and reports for every run the near-grid fraction before the snap, the snap's change and the
re-estimation's change of validation accuracy (separately), so a loss can be placed: in the
pre-snap accuracy or in the snap.

    python -m benchmarks.efficacy_000_homotopy queue hom_cos_p1:0 hom_lin_p1:0 hom_cos_p10:0
    python -m benchmarks.efficacy_000_homotopy complete && ... assemble
"""

import sys
from pathlib import Path

import numpy as np

from benchmarks import common

SUITE = "efficacy_000_homotopy"
RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / SUITE
FLOAT_DIR = None  # the start is the plain-Larq checkpoint, loaded in train_arm
START_CHECKPOINT = RESULTS / "efficacy_000" / "pretrain.weights.h5"
WIDTH, BATCH, PRETRAIN_EPOCHS, FINETUNE_EPOCHS, VALIDATION = 32, 128, 20, 10, 0.1
LR = 1e-3
SMOKE = False
PROTOCOL = "finetune-from-larq: 20 Larq epochs + 10 fine-tuning epochs, 45k/5k/10k"
PROTOCOL_KEYS = ()
TARGET_PT = 0.5  # the target: >= plain Larq + 0.5 pt, p < 0.05

_HOM = {"forward": "latent", "use_wreg": False, "use_cosine_momentum": False,
        "pull_start": 0.0, "pull_end": 1.0, "snap": True, "bn_recalibrate": 50}
CONFIGS = {
    "hom_cos_p1": ("wreg", {**_HOM, "pull": 1.0, "pull_shape": "cosine"}),
    "hom_lin_p1": ("wreg", {**_HOM, "pull": 1.0, "pull_shape": "linear"}),
    "hom_cos_p10": ("wreg", {**_HOM, "pull": 10.0, "pull_shape": "cosine"}),
}
SHARED_RUNS = {"efficacy_000": ["larq", "larq_clip2", "larq_scaled_clip2", "bop"]}
BASELINE_ARMS = set(SHARED_RUNS["efficacy_000"])
REFERENCE_ARMS = set()


def train_arm(config, _, splits, work, callbacks, verbose):
    # the smoke check's width-8 model has no checkpoint
    start = None if SMOKE else (lambda model: model.load_weights(START_CHECKPOINT))
    model, history, extra = common.fit_recipe(*CONFIGS[config], splits, work, callbacks, verbose,
                                              epochs=FINETUNE_EPOCHS, width=WIDTH, start=start)
    m = history.snap_metrics
    return model, history, {
        **extra, "near_grid_before_snap": m["near_grid"],
        "val_before_snap": m["before_snap"]["accuracy"],
        "val_after_snap_raw": m["after_snap_raw"]["accuracy"],
        "val_after_snap": m["after_snap"]["accuracy"],
        # the model evaluated and selected is the snapped one, not the last epoch's
        "final_val_accuracy": m["after_snap"]["accuracy"]}


def _snap(r):
    if r.get("val_after_snap_raw") is None:
        return "—"
    return (f"near-grid {r['near_grid_before_snap']:.3f}; snap "
            f"{100 * (r['val_after_snap_raw'] - r['val_before_snap']):+.2f} pt; BN "
            f"{100 * (r['val_after_snap'] - r['val_after_snap_raw']):+.2f} pt")


def assemble(args):
    def add(runs, payload):
        payload["snap"] = {r["seed"]: {k: r.get(k) for k in (
            "near_grid_before_snap", "val_before_snap", "val_after_snap_raw", "val_after_snap")}
            for r in runs[payload["selection"]["winner"]]}
        diff, p = payload["winner_minus_baseline_pt"], payload["welch_p"]
        payload.update(target_pt=TARGET_PT, target_met=bool(
            diff is not None and p is not None and diff >= TARGET_PT and p < 0.05))
        reported = [v for s, v in payload["snap"].items() if s in common.REPORTED_SEEDS]
        if not reported:
            return None
        pre, raw, post = (100 * np.mean([v[k] for v in reported]) for k in (
            "val_before_snap", "val_after_snap_raw", "val_after_snap"))
        return (f" Target (>= plain Larq + {TARGET_PT} pt, p < 0.05): "
                f"{'met' if payload['target_met'] else 'not met'}. Where the winner stands, mean "
                f"validation over the reported seeds: {pre:.2f} % before the snap, {raw:.2f} % "
                f"after it ({raw - pre:+.2f} pt), {post:.2f} % after BatchNorm re-estimation "
                f"({post - raw:+.2f} pt).")

    common.report_suite(
        sys.modules[__name__], args, "# The W-regularizer as the binarizer vs plain Larq",
        "Binary-activation VGG-small w32 from the shared 20-epoch Larq checkpoint, 10 epochs; "
        "the homotopy arms train the latent kernels in the forward pass under a ramped "
        "decoupled W-pull, then snap to ±alpha_c and re-estimate BatchNorm (the test accuracy is "
        "the snapped binary model's). Plain-Larq arms are efficacy_000's (shared).", add=add,
        extra=(("snap (seed 0 or first run)", lambda rs: _snap(rs[0])),))


if __name__ == "__main__":
    common.suite_main(sys.modules[__name__])
