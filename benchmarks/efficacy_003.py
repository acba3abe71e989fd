"""The ternary recipe (TernaryReg + RescaledSigmoidTernary) against Larq's ste_tern, on the protocol.

Fine-tuning protocol, full CIFAR-10, VGG-small (width 32, BN, ReLU activations, ternary
conv/dense kernels):

1. ``pretrain``: the full-precision network for 15 epochs (Adam 1e-3, cosine decay) on 45,000
   training images; the 5,000 others are a held-out validation split (seed 0). This float
   checkpoint (``benchmarks/results/efficacy_fp32``, shared with ``efficacy_004``) is the one
   starting point of every arm.
2. ``run --config C --seed S``: every arm fine-tunes it for 10 epochs (same data,
   augmentation, batch and budget; Adam with a fresh cosine decay; the seed sets data order and
   augmentation), so every run totals 25 epochs:
   * ``ste_tern_*``: Larq's ``ste_tern`` kernels, TWN threshold (0.7 mean|W|) or a fixed one, at
     5e-4 and 1e-3;
   * ``tern_*``: the ``ternary`` recipe (stage 1: float kernels + TernaryReg, in the loss or
     decoupled and ramped; stage 2: RescaledSigmoidTernary with a temperature schedule; stage
     epochs are part of the 10).
   The test accuracy is measured once, on the final ternary model. Each run backs up every
   epoch, resumes where it stopped, and writes
   ``benchmarks/results/efficacy_003/runs/<config>-s<seed>.json``.
3. ``assemble``: applies the protocol in code (``common.assemble_suite``): per side (the
   baseline side is Larq's ``ste_tern`` without a keras_wreg pull) the best seed-0 validation
   accuracy is selected, seeds 1-3 are compared; run files that break a rule are refused.
   Writes ``benchmarks/results/efficacy_003.json`` / ``.md`` and the PNGs.

    python -m benchmarks.efficacy_003 pretrain
    python -m benchmarks.efficacy_003 queue ste_tern_twn:0 tern_seed:0 tern_dec_ramp:0 ...
    python -m benchmarks.efficacy_003 assemble
"""

import sys
from pathlib import Path

import numpy as np

from benchmarks import common
from keras_wreg._introspect import latent
from keras_wreg._compat import lq

SUITE = "efficacy_003"
RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / SUITE
FLOAT_DIR = RESULTS / "efficacy_fp32"
START_CHECKPOINT = FLOAT_DIR / "pretrain.weights.h5"
WIDTH, BATCH, PRETRAIN_EPOCHS, FINETUNE_EPOCHS, VALIDATION = 32, 128, 15, 10, 0.1
LR, FT_LR = 1e-3, 5e-4
SMOKE = False
PROTOCOL = "finetune-from-float: 15 float epochs + 10 fine-tuning epochs, 45k/5k/10k"
#: the fine-tuning learning rate belongs to the protocol (the recipe's default is 1e-3)
PROTOCOL_KEYS = ("learning_rate",)
HIST_LAYER = 3

_LR = {"learning_rate": FT_LR}
#: the ternary arms pin the seed recipe's settings they ran with (the recipe's defaults moved to
#: the measured winner since), so every arm keeps meaning what its run files record
_T = {**_LR, "stage1_fraction": 0.5, "strength": 0.1, "decoupled": False, "ramp": "none",
      "t1": 100.0, "schedule": "exponential"}
_DEC = {**_T, "decoupled": True, "ramp": "cosine"}
#: name -> (recipe, overrides of its defaults)
CONFIGS = {
    "ste_tern_twn": ("ste_tern", {**_LR, "ternary_weight_networks": True}),
    "ste_tern_twn_lr1e3": ("ste_tern", {"learning_rate": 1e-3, "ternary_weight_networks": True}),
    "ste_tern_fixed": ("ste_tern", {**_LR, "ternary_weight_networks": False,
                                    "threshold_value": 0.05}),
    "ste_tern_fixed02": ("ste_tern", {**_LR, "ternary_weight_networks": False,
                                      "threshold_value": 0.02}),
    "ste_tern_fixed_lr1e3": ("ste_tern", {"learning_rate": 1e-3, "ternary_weight_networks": False,
                                          "threshold_value": 0.05}),
    "tern_seed": ("ternary", _T),  # the seed recipe as first measured
    # a lever on the quantized network itself: TernaryPull (decoupled proximal pull of
    # the latent kernels to alpha*t after each Adam step, cosine-ramped over the run), the
    # lever that made ClusterReg win in efficacy_004; on Larq's own ste_tern, and on ours
    "ste_tern_twn_pull": ("ste_tern", {**_LR, "ternary_weight_networks": True, "pull": 10.0,
                                       "pull_ramp": "cosine"}),
    "tern_q_pull": ("ternary", {**_T, "stage1_fraction": 0.0, "pull": 10.0,
                                "pull_ramp": "cosine"}),
    # a weaker pull (lambda = 1)
    "tern_q_pull1": ("ternary", {**_T, "stage1_fraction": 0.0, "pull": 1.0,
                                 "pull_ramp": "cosine"}),
    "tern_dec_t": ("ternary", {**_DEC, "strength": 30.0, "stage1_fraction": 0.3,
                               "schedule": "cosine", "t1": 10.0}),
}


#: the baseline side: Larq's own ste_tern (no keras_wreg pull); the float twin of efficacy_004
#: is the reference
BASELINE_ARMS = {c for c, (r, o) in CONFIGS.items() if r == "ste_tern" and not o.get("pull")}
REFERENCE_ARMS = set()


def _kernels(model):
    return [layer.kernel for layer in model.layers if hasattr(layer, "kernel")]


def _scaled(kernel):
    w = np.asarray(latent(kernel).numpy())
    return w / max(float(np.mean(np.abs(w))), 1e-12)


def _levels(model):
    """Distinct values of every kernel as the layers use it (quantized), one per layer."""
    with lq.context.quantized_scope(True):
        return [int(np.unique(np.asarray(k.numpy())).size) for k in _kernels(model)]


def train_arm(config, fp, splits, work, callbacks, verbose):
    start = []

    def begin(model):
        common.transfer_weights(fp, model)
        start.append(_scaled(_kernels(model)[HIST_LAYER]))

    model, history, extra = common.fit_recipe(*CONFIGS[config], splits, work, callbacks, verbose,
                                              epochs=FINETUNE_EPOCHS, width=WIDTH, start=begin)
    edges, h_start = common.histogram(start[0], -4, 4)
    _, h_end = common.histogram(_scaled(_kernels(model)[HIST_LAYER]), -4, 4)
    return model, history, {**extra, "levels_per_layer": _levels(model),
                            "stage": history.history.get("stage"), "hist_bins": edges,
                            "hist_start": h_start, "hist_end": h_end}


def _levels_text(r):
    v = r["levels_per_layer"]
    return ("max " + str(v) + " (per layer not recorded)") if isinstance(v, int) else str(v)


def assemble(args):
    def add(runs, payload):
        sel = payload["selection"]
        for key in ("winner", "baseline"):
            payload[key]["levels_per_layer"] = [
                r["levels_per_layer"] for r in common.reported(runs[sel[key]])]
        first = runs[sel["baseline"]][0]
        panels = [("float checkpoint", first["hist_bins"], first["hist_start"], [-0.7, 0.7])] + [
            (f"{c}: end (seed {runs[c][0]['seed']})", runs[c][0]["hist_bins"],
             runs[c][0]["hist_end"], [-0.7, 0.7]) for c in (sel["baseline"], sel["winner"])]
        common.plot_histograms(panels, RESULTS / f"{SUITE}_histograms.png",
                               "latent weight / mean|W| (dashed: TWN threshold)")
        # the ceiling: efficacy_004's float arm continues the same checkpoint for 10 epochs
        ceiling = common.load_runs(RESULTS / "efficacy_004" / "runs").get("float")
        if ceiling and payload["baseline"]["test_accuracy"]:
            entry = common.float_block(payload, ceiling, ())
            room = 100 * (np.mean(entry["test_accuracy"])
                          - np.mean(payload["baseline"]["test_accuracy"]))
            return (f" The float twin (efficacy_004 `float`, seeds {entry['seeds']}) "
                    f"leaves {room:+.2f} pt of room above the baseline.")

    common.report_suite(
        sys.modules[__name__], args, "# Ternary recipe vs Larq ste_tern, fine-tuning protocol",
        f"CIFAR-10, 45,000 train / 5,000 held-out validation / 10,000 test; VGG-small w{WIDTH} "
        f"(BN, ReLU), ternary conv/dense kernels, batch {BATCH}, flip + 4 px crop. Shared float "
        f"checkpoint: {common.pretrain_text(sys.modules[__name__])}. Every arm fine-tunes it for "
        f"{FINETUNE_EPOCHS} epochs ({PRETRAIN_EPOCHS + FINETUNE_EPOCHS} per run). Test read "
        "once per run.", add=add,
        extra=(("levels per layer (first run)", lambda rs: _levels_text(rs[0])),),
        pngs=[f"{SUITE}_histograms.png"])


if __name__ == "__main__":
    common.suite_main(sys.modules[__name__])
