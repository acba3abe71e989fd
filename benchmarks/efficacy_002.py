"""HWGQ-Net (2-bit HWGQ activations + ScaledSign weights) against Larq's DoReFa, on the protocol;
then AlternateUpdate against ordinary fine-tuning of the same trained HWGQ-Net.

Fine-tuning protocol (``../shared/design/PROTOCOL.md``), full CIFAR-10, VGG-small width 32 in
the HWGQ layout (``vgg_small_hwgq``: a BatchNorm without centre/scale before every activation
quantizer, as the reference code; binary first conv and classifier):

1. ``pretrain``: the shared float checkpoint (``benchmarks/results/efficacy_fp32``, 15 epochs,
   VGG-small w32). Its convolution and dense kernels have the shapes of the HWGQ layout's, so
   every arm starts from them (the layout's BatchNorms differ and start fresh, the same for
   every arm).
2. ``run --config C --seed S``: every arm trains 5 epochs from there (Adam, fresh cosine decay,
   same data, augmentation, batch and budget):
   * ``dorefa_*`` (the baseline side, plain Larq): ``DoReFa`` 2-bit activations with
     ``ste_sign`` or ``magnitude_aware_sign`` weights (``weight_clip``), at 5e-4 and 1e-3;
   * ``hwgq_*`` (keras_wreg): the ``hwgq`` recipe (HWGQ 2-bit, ``ScaledSign``, no clip) at four
     learning rates.
   The final weights are kept in the work folder for step 4.
3. ``assemble``: the protocol in code (selection on seed-0 validation per side, seeds 1-3).
4. ``alternate --seed S`` (after the runs): from the selected ``hwgq`` arm's trained model of
   seed S, (a) AlternateUpdate (``--variant``, chosen on seed 0 by validation) and (b) ordinary
   end-to-end fine-tuning of the same model (Adam 1e-4, one epoch), each timed; writes
   ``benchmarks/results/efficacy_002/alternate/<variant>-s<seed>.json``. ``assemble`` adds the
   ``alternate_update`` block when they exist.
5. ``export --seed 0``: the selected HWGQ-Net and DoReFa baseline through LCE, bit-packed,
   against the float twin's flatbuffer (``export-s0.json``, the ``export`` block).

    python -m benchmarks.efficacy_002 queue dorefa_ste_lr5e4:0 hwgq_lr5e4:0 ...
    python -m benchmarks.efficacy_002 alternate --seed 0 --variant A
    python -m benchmarks.efficacy_002 export --seed 0
    python -m benchmarks.efficacy_002 assemble
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import common
from keras_wreg import recipes
from keras_wreg._compat import keras, tf
from keras_wreg._introspect import latent
from keras_wreg.alternate import AlternateUpdate
from keras_wreg.models import compression_ratio

SUITE = "efficacy_002"
RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / SUITE
FLOAT_DIR = RESULTS / "efficacy_fp32"
START_CHECKPOINT = FLOAT_DIR / "pretrain.weights.h5"
#: 5 fine-tuning epochs (not the 10 of efficacy_000/003/004): 14 runs + step 4 fit one
#: 3-hour session on 2 CPU cores (about 80 s per epoch at width 32)
WIDTH, BATCH, PRETRAIN_EPOCHS, FINETUNE_EPOCHS, VALIDATION = 32, 128, 15, 5, 0.1
LR, FT_LR = 1e-3, 5e-4
SMOKE = False
PROTOCOL = "finetune-from-float: 15 float epochs + 5 fine-tuning epochs, 45k/5k/10k"
PROTOCOL_KEYS = ("learning_rate",)
MODEL = "vgg_small_hwgq"
#: ordinary fine-tuning of step 4: one epoch of Adam at this rate
END_TO_END_LR, END_TO_END_EPOCHS = 1e-4, 1

_DOREFA = {"activation": "dorefa", "activation_bits": 2, "clip": 1.0}
_HWGQ = {"bits": 2, "finetune": "none"}
CONFIGS = {
    "dorefa_ste_lr5e4": ("larq", {**_DOREFA, "kernel_quantizer": "ste_sign",
                                  "learning_rate": 5e-4}),
    "dorefa_ste_lr1e3": ("larq", {**_DOREFA, "kernel_quantizer": "ste_sign",
                                  "learning_rate": 1e-3}),
    "dorefa_mag_lr5e4": ("larq", {**_DOREFA, "kernel_quantizer": "magnitude_aware_sign",
                                  "learning_rate": 5e-4}),
    "dorefa_mag_lr1e3": ("larq", {**_DOREFA, "kernel_quantizer": "magnitude_aware_sign",
                                  "learning_rate": 1e-3}),
    "hwgq_lr2e4": ("hwgq", {**_HWGQ, "learning_rate": 2.5e-4}),
    "hwgq_lr5e4": ("hwgq", {**_HWGQ, "learning_rate": 5e-4}),
    "hwgq_lr1e3": ("hwgq", {**_HWGQ, "learning_rate": 1e-3}),
    "hwgq_lr2e3": ("hwgq", {**_HWGQ, "learning_rate": 2e-3}),
}
BASELINE_ARMS = {c for c, (r, _) in CONFIGS.items() if r == "larq"}
REFERENCE_ARMS = set()


def transfer_kernels(fp, model):
    """The float checkpoint's conv/dense kernels (and biases) into ``model``, in layer order."""
    source = [la for la in fp.layers if getattr(la, "kernel", None) is not None]
    target = [la for la in model.layers if getattr(la, "kernel", None) is not None]
    if [tuple(a.kernel.shape) for a in source] != [tuple(b.kernel.shape) for b in target]:
        raise ValueError("the float checkpoint's kernels do not match the HWGQ layout's")
    for a, b in zip(source, target):
        latent(b.kernel).assign(latent(a.kernel))
        if getattr(a, "bias", None) is not None and getattr(b, "bias", None) is not None:
            b.bias.assign(a.bias)


def final_weights(config, seed, workdir=None):
    """Where a run keeps its final weights for step 4 (the work folder, not the repository)."""
    return common.suite_workdir(workdir, SUITE) / "models" / f"{config}-s{seed}.weights.h5"


def train_arm(config, fp, splits, work, callbacks, verbose, seed=0):
    model, history, extra = common.fit_recipe(
        *CONFIGS[config], splits, work, callbacks, verbose, epochs=FINETUNE_EPOCHS, width=WIDTH,
        model=MODEL, start=lambda model: transfer_kernels(fp, model))
    path = final_weights(config, seed, Path(work).parent.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(path)
    return model, history, {**extra, "model": MODEL,
                            "compression_ratio": compression_ratio(model)["ratio"]}


# --------------------------------------------------------------------------- step 4
def trained_model(config, seed, shape, steps, workdir=None):
    """The model ``config`` trained on ``seed`` (its final weights from the work folder)."""
    weights = final_weights(config, seed, workdir)
    if not weights.exists():
        raise SystemExit(f"no trained model at {weights}: run `run --config {config} --seed "
                         f"{seed}` first")
    method, overrides = CONFIGS[config]
    recipe = recipes.get(method)
    params = recipe.params(overrides)
    model = recipe.build_model(MODEL, shape, 10, params, width=WIDTH)
    recipe.compile(model, params, steps)
    model.load_weights(weights)
    return model


def _accuracy(model, data):
    return float(model.evaluate(data, verbose=0, return_dict=True)["accuracy"])


def alternate(seed, variant, workdir=None, verbose=2):
    """Step 4 for one seed: AlternateUpdate vs ordinary fine-tuning of the selected HWGQ-Net."""
    runs = common.load_runs(OUT / "runs")
    winner = common.select(runs, BASELINE_ARMS, REFERENCE_ARMS)["winner"]
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)
    train, val, test, steps, shape, split = common.load_splits(seed, BATCH, VALIDATION, SMOKE)

    def trained():
        return trained_model(winner, seed, shape, steps, workdir)

    out = {"seed": seed, "winner": winner, "variant": variant}
    model = trained()
    out["before"] = {"val_accuracy": _accuracy(model, val), "test_accuracy": _accuracy(model, test)}
    au = AlternateUpdate(variant=variant)
    start = time.perf_counter()
    reports = au.run(model, train)
    out["alternate"] = {"val_accuracy": _accuracy(model, val), "test_accuracy": _accuracy(model, test),
                        "wall_seconds": time.perf_counter() - start, "config": au.get_config(),
                        "layer_seconds": [r["seconds"] for r in reports]}
    model = trained()
    model.compile(keras.optimizers.Adam(END_TO_END_LR), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    timer = common.StepTimer()
    start = time.perf_counter()
    history = model.fit(train, epochs=END_TO_END_EPOCHS, validation_data=val, callbacks=[timer],
                        verbose=verbose)
    out["end_to_end"] = {"val_accuracy": float(history.history["val_accuracy"][-1]),
                         "test_accuracy": _accuracy(model, test),
                         "wall_seconds": time.perf_counter() - start,
                         "config": {"learning_rate": END_TO_END_LR, "epochs": END_TO_END_EPOCHS},
                         "median_step_seconds": timer.median}
    # one AlternateUpdate weight step on one layer against one full training step
    full_step = timer.median if timer.times and np.isfinite(timer.median) else None
    out["layer_step_ratio"] = (float(np.median(out["alternate"]["layer_seconds"]))
                               / max(au.iterations * au.steps, 1) / full_step
                               if full_step else None)
    out.update(commit=common.git_commit(), versions=common.versions(),
               command=f"python -m benchmarks.{SUITE} alternate --seed {seed} --variant {variant}")
    path = OUT / "alternate" / f"{variant}-s{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    common.write_json(path, out)
    print(f"[{SUITE}] alternate {variant}-s{seed}: before {out['before']['test_accuracy']:.4f}, "
          f"AlternateUpdate {out['alternate']['test_accuracy']:.4f} "
          f"({out['alternate']['wall_seconds']:.0f} s), end-to-end "
          f"{out['end_to_end']['test_accuracy']:.4f} ({out['end_to_end']['wall_seconds']:.0f} s)")
    return out


def export(seed=common.SELECTION_SEED, workdir=None, images=1000):
    """Part 3: the selected HWGQ-Net and the selected DoReFa baseline of ``seed`` through LCE
    (HWGQ / DoReFa activations before binary weights are bit-packed as thermometer planes,
    :mod:`keras_wreg.export.multilevel`), against the flatbuffer of the float twin
    (``vgg_small_fp`` w32, TFLite's converter); Keras-vs-LCE top-1 agreement and the
    flatbuffer's accuracy on the first ``images`` test images. (No int8 variant: the first
    convolution already has binary weights and the classifier is packed; at width 8 ``int8=``
    made the flatbuffer larger.)"""
    import tempfile

    from keras_wreg import export as kx
    from keras_wreg import models

    runs = common.load_runs(OUT / "runs")
    sel = common.select(runs, BASELINE_ARMS, REFERENCE_ARMS)
    _, _, test, steps, shape, _ = common.load_splits(seed, BATCH, VALIDATION, SMOKE)
    xs, ys = (np.concatenate([b[i].numpy() for b in test]) for i in (0, 1))
    xs, ys = xs[:images], ys[:images]
    twin = models.build("vgg_small_fp", shape, 10, width=WIDTH)
    out = {"seed": seed, "images": int(len(xs)),
           "float_twin": {"model": f"vgg_small_fp w{WIDTH}", "target": "tflite",
                          "bytes": len(kx.tflite_bytes(twin, "tflite", require_quantized=False))},
           "arms": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for config in (sel["winner"], sel["baseline"]):
            model = trained_model(config, seed, shape, steps, workdir)
            path = Path(tmp) / f"{config}.tflite"
            kx.to_tflite(model, path)
            report = kx.deploy_report(model, path, xs)
            flat = kx.flatbuffer_report(path)
            predicted = kx.tflite_predict(str(path), xs).argmax(-1)
            out["arms"][config] = {
                "bytes": report["bytes"], "float32_bytes": report["float32_bytes"],
                "ratio_vs_float_twin": out["float_twin"]["bytes"] / report["bytes"],
                "ratio_counted": compression_ratio(model)["ratio"],
                "binary_convolutions": report["binary_convolutions"],
                "packed_bytes": report["packed_bytes"], "int8_ops": flat["int8_ops"],
                "agreement": report["parity"]["agreement"],
                "max_abs_diff": report["parity"]["max_abs_diff"],
                "keras_accuracy": float(np.mean(
                    model.predict(xs, batch_size=256, verbose=0).argmax(-1) == ys)),
                "flatbuffer_accuracy": float(np.mean(predicted == ys))}
    out.update(commit=common.git_commit(), versions=common.versions(),
               command=f"python -m benchmarks.{SUITE} export --seed {seed}")
    path = OUT / f"export-s{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    common.write_json(path, out)
    for name, arm in out["arms"].items():
        print(f"[{SUITE}] export {name}: {arm['bytes']} B, {arm['ratio_vs_float_twin']:.1f}x "
              f"the float twin's {out['float_twin']['bytes']} B, "
              f"{arm['binary_convolutions']} LceBconv2d, agreement {arm['agreement']:.4f}")
    return out


def alternate_block():
    """The JSON ``alternate_update`` block from step 4's files (None without them): the variant
    is the one with the better seed-0 validation accuracy; seeds 1-3 are reported."""
    files = [json.loads(p.read_text()) for p in sorted((OUT / "alternate").glob("*.json"))]
    if not files:
        return None
    seed0 = [f for f in files if f["seed"] == common.SELECTION_SEED]
    if not seed0:
        return None
    variant = max(seed0, key=lambda f: (f["alternate"]["val_accuracy"], f["variant"]))["variant"]
    rep = [f for f in files if f["variant"] == variant and f["seed"] in common.REPORTED_SEEDS]

    def arm(key, config):
        return {"config": config, "seeds": [f["seed"] for f in rep],
                "test_accuracy": [f[key]["test_accuracy"] for f in rep],
                "wall_seconds": [f[key].get("wall_seconds") for f in rep]}

    block = {"variant": variant, "baseline": arm("before", "HWGQ-Net before fine-tuning"),
             "winner": arm("alternate", f"AlternateUpdate variant {variant}"),
             "end_to_end": arm("end_to_end", f"Adam {END_TO_END_LR}, {END_TO_END_EPOCHS} epoch"),
             "layer_step_ratio": [f["layer_step_ratio"] for f in rep]}
    # AlternateUpdate's wall time to reach end-to-end's final validation accuracy, over
    # end-to-end's wall time: only its end point is measured, so the ratio exists when that end
    # point already reaches it
    block["time_ratio"] = [
        f["alternate"]["wall_seconds"] / f["end_to_end"]["wall_seconds"]
        if f["alternate"]["val_accuracy"] >= f["end_to_end"]["val_accuracy"] else None
        for f in rep]
    if len(rep) >= 2:
        a, b = block["winner"]["test_accuracy"], block["baseline"]["test_accuracy"]
        t, dof, p = common.welch(a, b)
        diff = 100 * (np.mean(a) - np.mean(b))
        block["difference_pt"], block["p_value"] = float(diff), float(p)
        block["verdict"] = common.verdict_word(diff, p)
    return block


def _alternate_table(au):
    """Step 4 as Markdown: test accuracy and wall time per reported seed."""
    rows = ["## AlternateUpdate vs ordinary fine-tuning (step 4, variant "
            f"{au['variant']} chosen on seed 0)", "",
            "| seed | HWGQ-Net % | AlternateUpdate % (s) | end-to-end % (s) | layer step / full "
            "step |", "|---|---|---|---|---|"]
    for i, seed in enumerate(au["baseline"]["seeds"]):
        rows.append(f"| {seed} | {100 * au['baseline']['test_accuracy'][i]:.2f} | "
                    f"{100 * au['winner']['test_accuracy'][i]:.2f} "
                    f"({au['winner']['wall_seconds'][i]:.0f}) | "
                    f"{100 * au['end_to_end']['test_accuracy'][i]:.2f} "
                    f"({au['end_to_end']['wall_seconds'][i]:.0f}) | "
                    f"{au['layer_step_ratio'][i]:.2f} |")
    if "verdict" in au:
        rows += ["", f"AlternateUpdate vs HWGQ-Net before it: {au['verdict']} "
                 f"({au['difference_pt']:+.2f} pt, p = {common.p_text(au['p_value'])}); "
                 f"time_ratio {au['time_ratio']} (None: never reaches end-to-end's final "
                 "validation accuracy)."]
    rows.append("")
    return "\n".join(rows)


def _export_table(ex):
    """Part 3 as Markdown: flatbuffer sizes against the float twin's."""
    rows = [f"## Export through LCE (seed {ex['seed']}; float twin {ex['float_twin']['model']}: "
            f"{ex['float_twin']['bytes']:,} B)", "",
            "| arm | flatbuffer B | × float twin | × counted | LceBconv2d | packed B | "
            f"agreement ({ex['images']} test images) | accuracy Keras / flatbuffer % |",
            "|---|---|---|---|---|---|---|---|"]
    for name, a in ex["arms"].items():
        rows.append(f"| {name} | {a['bytes']:,} | {a['ratio_vs_float_twin']:.1f} | "
                    f"{a['ratio_counted']:.1f} | {a['binary_convolutions']} | "
                    f"{a['packed_bytes']:,} | {100 * a['agreement']:.1f} % | "
                    f"{100 * a['keras_accuracy']:.1f} / {100 * a['flatbuffer_accuracy']:.1f} |")
    return "\n".join(rows + [""])


def assemble(args):
    block = [""]  # filled by add, read after it

    def add(runs, payload):
        payload["compression_ratio"] = runs[payload["selection"]["winner"]][0].get(
            "compression_ratio")
        payload["alternate_update"] = au = alternate_block()
        if au:
            block.append(_alternate_table(au))
        exported = OUT / f"export-s{common.SELECTION_SEED}.json"
        payload["export"] = ex = json.loads(exported.read_text()) if exported.exists() else None
        if ex:
            block.append(_export_table(ex))

    common.report_suite(
        sys.modules[__name__], args, "# HWGQ-Net vs Larq DoReFa, fine-tuning protocol",
        f"CIFAR-10, 45,000 train / 5,000 held-out validation / 10,000 test; {MODEL} w{WIDTH}, "
        f"batch {BATCH}, flip + 4 px crop. Start: the shared float checkpoint's kernels "
        f"of {common.pretrain_text(sys.modules[__name__])}; every arm trains "
        f"{FINETUNE_EPOCHS} epochs. Test read once per run.", add=add, tables=block)


def _step_args(step, argv, add):
    """The parsed arguments of step ``step`` (``add(parser)`` adds its own); ``--smoke``,
    ``--workdir`` are shared, and ``--smoke`` switches the module to its pipeline check."""
    parser = argparse.ArgumentParser(prog=f"benchmarks.{SUITE} {step}", allow_abbrev=False)
    add(parser)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        common.smoke_mode(sys.modules[__name__])
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "export":
        args = _step_args("export", argv[1:], lambda p: (
            p.add_argument("--seed", type=int, default=common.SELECTION_SEED),
            p.add_argument("--images", type=int, default=1000)))
        return export(args.seed, args.workdir, args.images)
    if argv and argv[0] == "alternate":
        args = _step_args("alternate", argv[1:], lambda p: (
            p.add_argument("--seed", type=int, required=True),
            p.add_argument("--variant", choices=("A", "B"), default="A"),
            p.add_argument("--verbose", type=int, default=2)))
        return alternate(args.seed, args.variant, args.workdir, args.verbose)
    common.suite_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    main()
