"""Distillation from the float twin: what it adds to plain Larq and to keras_wreg's methods.

Fine-tuning protocol of ``efficacy_000`` (``../shared/design/PROTOCOL.md``): full CIFAR-10
(45,000 / 5,000 / 10,000), binary VGG-small w32 (``ste_sign`` weights and activations) started
from the shared 20-epoch plain-Larq checkpoint (``results/efficacy_000/pretrain.weights.h5``),
10 fine-tuning epochs (Adam 1e-3, fresh cosine decay). The teacher is the shared float
checkpoint of the same network (``results/efficacy_fp32``: VGG-small w32, 15 epochs, test
83.45 %), frozen, in inference mode (:class:`keras_wreg.Distiller`).

Sides (selection by code on seed-0 validation, seeds 1-3 reported, ``common.assemble_suite``):

* baseline, plain Larq with no teacher: the four Larq settings of ``efficacy_000`` (the same
  protocol, checkpoint and data), shared rather than run twice (``SHARED_RUNS``);
* keras_wreg: the distilled arms, as many settings for Larq + distillation (``larq_kd_*``:
  (T, w) in {(4, 0.5), (2, 0.9)}) as for keras_wreg's binary method + distillation (``cm_kd_*``:
  CosineMomentum, efficacy_000's selected keras_wreg arm, at the same two (T, w)); four settings
  in all, as many as the plain-Larq side.

``assemble`` reports the suite's comparison (best keras_wreg arm, distillation allowed, vs plain
Larq) and, with Welch's test on seeds 1-3, the two questions of issue 26 as ``distillation``
blocks: Larq + distillation vs plain Larq (what distillation alone gives), and the best
keras_wreg method + distillation vs Larq + distillation (what the method adds on top).

The ternary block: ``tern_kd`` (the ``ternary`` recipe's defaults + distillation, from the float
checkpoint as in ``efficacy_003``) against that suite's ``ste_tern`` arms, seed 0 at least.

    python -m benchmarks.efficacy_kd queue larq_kd_t4_w05:0 cm_kd_t4_w05:0 ...
    python -m benchmarks.efficacy_kd complete
    python -m benchmarks.efficacy_kd assemble
"""

import sys
from pathlib import Path

import numpy as np

from benchmarks import common

SUITE = "efficacy_kd"
RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / SUITE
FLOAT_DIR = RESULTS / "efficacy_fp32"  # the teacher
STUDENT_CHECKPOINT = RESULTS / "efficacy_000" / "pretrain.weights.h5"
START_CHECKPOINT = STUDENT_CHECKPOINT
WIDTH, BATCH, PRETRAIN_EPOCHS, FINETUNE_EPOCHS, VALIDATION = 32, 128, 20, 10, 0.1
LR = 1e-3
SMOKE = False
PROTOCOL = "finetune-from-larq: 20 Larq epochs + 10 fine-tuning epochs, 45k/5k/10k"
PROTOCOL_KEYS = ()

#: (T, w) settings, the same two for Larq + distillation and for keras_wreg + distillation
_KD = ((4.0, 0.5), (2.0, 0.9))


def _kd(t, w):
    return {"distill_temperature": t, "distill_weight": w}


def _name(prefix, t, w):
    return f"{prefix}_t{int(t)}_w{str(w).replace('.', '')}"


#: name -> (recipe, overrides); every arm here distils the float teacher. keras_wreg's binary
#: method is CosineMomentum, efficacy_000's selected keras_wreg arm (seed-0 validation 72.60 %
#: against 71.86 % for the decoupled W-pull), so it is the one distilled.
CONFIGS = {
    **{_name("larq_kd", t, w): ("larq", _kd(t, w)) for t, w in _KD},
    **{_name("cm_kd", t, w): ("wreg", {"use_wreg": False, **_kd(t, w)}) for t, w in _KD},
    # ternary + distillation, from the float checkpoint (efficacy_003's protocol)
    "tern_kd": ("ternary", {"learning_rate": 5e-4, **_kd(4.0, 0.5)}),
}
SHARED_RUNS = {"efficacy_000": ["larq", "larq_clip2", "larq_scaled_clip2", "bop"]}
BASELINE_ARMS = set(SHARED_RUNS["efficacy_000"])
#: not candidates of the binary comparison (another student, another protocol)
REFERENCE_ARMS = {"tern_kd"}
GROUPS = {"larq_kd": [c for c in CONFIGS if c.startswith("larq_kd")],
          "kw_kd": [c for c in CONFIGS if c.startswith("cm_kd")]}


def train_arm(config, teacher, splits, work, callbacks, verbose):
    """Fine-tune the student of ``config`` with ``teacher`` (the float checkpoint that
    ``common.run_efficacy`` loaded) distilled into it."""
    method = CONFIGS[config][0]
    if method == "ternary":
        start = FLOAT_DIR / "pretrain.weights.h5"
        begin = lambda model: common.transfer_weights(teacher, model)  # noqa: E731
    else:  # the smoke check's width-8 student has no checkpoint
        start = STUDENT_CHECKPOINT
        begin = None if SMOKE else (lambda model: model.load_weights(STUDENT_CHECKPOINT))
    model, history, extra = common.fit_recipe(*CONFIGS[config], splits, work, callbacks, verbose,
                                              epochs=FINETUNE_EPOCHS, width=WIDTH, start=begin,
                                              teacher=teacher)
    return model, history, {
        **extra, "start_checkpoint": common.checkpoint_identity(start),
        "teacher_checkpoint": common.checkpoint_identity(FLOAT_DIR / "pretrain.weights.h5"),
        "distill_loss_curve": [float(v) for v in history.history.get("distill_loss", [])]}


def _group_comparison(runs, sel, group, reference):
    """The best arm of ``group`` on seed-0 validation vs ``reference`` on seeds 1-3."""
    best = common.group_winners(sys.modules[__name__], runs)[group]
    if best is None or reference not in runs:
        return None
    val = {c: sel["validation"][c] for c in GROUPS[group] if c in sel["validation"]}
    a = [r["test_accuracy"] for r in common.reported(runs[best])]
    b = [r["test_accuracy"] for r in common.reported(runs[reference])]
    t = dof = p = None
    if len(a) > 1 and len(b) > 1:
        t, dof, p = (None if v != v else v for v in common.welch(a, b))
    diff = 100 * (np.mean(a) - np.mean(b)) if a and b else None
    return {"selected": best, "validation": val, "reference": reference,
            "arm": common.arm_entry(runs[best]), "reference_arm": common.arm_entry(
                runs[reference]), "difference_pt": diff, "welch_t": t, "welch_dof": dof,
            "welch_p": p, "verdict": None if diff is None else common.verdict_word(diff, p)}


def assemble(args):
    lines = ["", "What distillation adds:", ""]  # filled by add, read after it

    def add(runs, payload):
        sel = payload["selection"]
        larq_kd = _group_comparison(runs, sel, "larq_kd", sel["baseline"])
        kw_kd = _group_comparison(runs, sel, "kw_kd", larq_kd["selected"]) if larq_kd else None
        payload["distillation"] = {"larq_kd_vs_larq": larq_kd, "kw_kd_vs_larq_kd": kw_kd}
        if "tern_kd" in runs:
            ternary = common.load_runs(RESULTS / "efficacy_003" / "runs")
            payload["ternary"] = {"tern_kd": common.arm_entry(runs["tern_kd"], (0, 1, 2, 3)),
                                  "ste_tern": {c: common.arm_entry(rs, (0, 1, 2, 3))
                                               for c, rs in ternary.items()
                                               if c.startswith("ste_tern") and "pull" not in c}}
        for key, block in payload["distillation"].items():
            if block:
                lines.append(f"- {key}: `{block['selected']}` vs `{block['reference']}`: " + (
                    f"{block['verdict']} ({block['difference_pt']:+.2f} pt, p = "
                    f"{block['welch_p']})" if block["difference_pt"] is not None
                    else "the reported seeds are not run"))

    def distill_loss(rs):
        curve = rs[0].get("distill_loss_curve")
        return "{:.3f} → {:.3f}".format(curve[0], curve[-1]) if curve else "—"

    common.report_suite(
        sys.modules[__name__], args,
        "# Distillation from the float twin vs plain Larq, fine-tuning protocol",
        "Binary VGG-small w32 students from the shared 20-epoch Larq checkpoint, 10 fine-tuning "
        "epochs; teacher: the shared float checkpoint (frozen). Plain-Larq arms are "
        "efficacy_000's (same protocol, shared).", add=add,
        extra=(("distill loss, first → last epoch (first run)", distill_loss),),
        tables=lines)


if __name__ == "__main__":
    common.suite_main(sys.modules[__name__])
