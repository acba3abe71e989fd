"""The trained models of ``efficacy_001`` deployed through Larq Compute Engine (issue 24, part 2):
for the selected winner, the selected baseline and the float twin, the runs' final weights
(kept by the suite in ``$KERAS_WREG_BENCH_DIR/efficacy_001/final/``, their sha256 in the run
files) are exported with float32 edges and with int8 edges (the first convolution and the
classifier, both and each alone, calibrated on 512 held-out validation images), and run in
LCE's interpreter on the full CIFAR-10 test set (10,000 images).

    python -m benchmarks.efficacy_001_deploy [--seed 1] [--limit N]

The winner and the baseline are the arms the protocol's rule selects from the seed-0 run files
(``common.suite_select``, the selection ``assemble`` reports), so the export can run as soon as
their seed's runs exist.

Writes ``results/efficacy_001_deploy.{json,md}``: per model and edge type, the flatbuffer bytes
(and its ratio to the float twin's float32 flatbuffer), bit-packed convolutions
(``LceBconv2d``) out of the model's binary convolutions, int8 ops, Keras and LCE test accuracy
and their top-1 agreement (target >= 99.5 %), and the accuracy change int8 edges cost.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from benchmarks import common
from benchmarks import efficacy_001 as suite
from keras_wreg._compat import keras, lq
from keras_wreg._introspect import flat_layers, is_binary_quantizer

AGREEMENT_TARGET = 0.995
CALIBRATION = 512


def binary_convolutions(model):
    """The model's binary convolutions: ``QuantConv2D`` layers (nested models included) whose
    kernel quantizer is binary."""
    return [layer for layer in flat_layers(model) if isinstance(layer, lq.layers.QuantConv2D)
            and is_binary_quantizer(layer.kernel_quantizer)]


def load_run_model(run, workdir, input_shape=(32, 32, 3)):
    """The model of a run file (images of ``input_shape``), rebuilt from its recipe and params,
    with the final weights the suite kept (checked against the sha256 the run file records)."""
    from keras_wreg import recipes

    kept = run.get("final_weights")
    if not kept:
        raise SystemExit(f"run {run['config']}-s{run['seed']} kept no final weights (the suite "
                         "keeps them from KEEP_WEIGHTS = True on): run it again")
    path = Path(workdir) / kept["file"]
    if not path.exists():
        raise SystemExit(f"no weights at {path} (set KERAS_WREG_BENCH_DIR or --workdir)")
    if common.sha256_file(path) != kept["sha256"]:
        raise SystemExit(f"{path} is not the file run {run['config']}-s{run['seed']} recorded")
    recipe = recipes.get(run["recipe"])
    model = recipe.build_model(run["model"], tuple(input_shape), 10, recipe.params(run["params"]),
                               width=run["width"])
    model.load_weights(path)
    return model


#: the export variants of a binary model: edges kept float32, then int8 edges (both, the first
#: convolution alone, the classifier alone: ``int8_edges``)
VARIANTS = (("float32", None), ("int8", "both"), ("int8 first", "first"),
            ("int8 classifier", "classifier"))


def measure(model, images, labels, calibration, float_bytes=None, binary=True):
    """Rows for ``model`` exported with float32 edges and, if binary, with each int8 variant."""
    from keras_wreg import export

    keras_top1 = model.predict(images, verbose=0, batch_size=256).argmax(1)
    keras_acc = float(np.mean(keras_top1 == labels))
    rows = []
    for edges, which in (VARIANTS if binary else VARIANTS[:1]):
        target = "lce" if binary else "tflite"
        int8 = calibration if which else None
        print(f"[efficacy_001_deploy] {model.name}: {target}, {edges} edges, {len(images)} "
              "images in LCE's interpreter ...", flush=True)
        flatbuffer = export.tflite_bytes(model, target, int8=int8, int8_edges=which or "both",
                                         require_quantized=binary)
        report = export.flatbuffer_report(flatbuffer)
        top1 = export.tflite_predict(export.load_interpreter(flatbuffer), images).argmax(1)
        rows.append({"edges": edges,
                     "bytes": len(flatbuffer),
                     "bytes_vs_float_twin": (len(flatbuffer) / float_bytes
                                             if float_bytes else None),
                     "binary_convolutions": len(binary_convolutions(model)),
                     "bit_packed_convolutions": len(report["binary_convolutions"]),
                     "int8_ops": report["int8_ops"],
                     "keras_test_accuracy": keras_acc,
                     "lce_test_accuracy": float(np.mean(top1 == labels)),
                     "agreement": float(np.mean(top1 == keras_top1))})
        print(rows[-1], flush=True)
    for row in rows[1:]:
        row["int8_accuracy_change_pt"] = 100 * (row["lce_test_accuracy"]
                                                - rows[0]["lce_test_accuracy"])
    return rows


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--seed", type=int, default=common.REPORTED_SEEDS[0],
                        help="whose runs to export (default: the first reported seed)")
    parser.add_argument("--limit", type=int, default=None,
                        help="the first N test images only (a pipeline check)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--smoke", action="store_true",
                        help="the smoke suite's runs and results (in /tmp)")
    parser.add_argument("--render", action="store_true",
                        help="rewrite results/efficacy_001_deploy.md from its JSON (no export)")
    args = parser.parse_args(argv)
    if args.smoke:
        common.smoke_mode(suite)
    if args.render:
        payload = json.loads((suite.RESULTS / "efficacy_001_deploy.json").read_text())
        (suite.RESULTS / "efficacy_001_deploy.md").write_text(text := report(payload))
        print(text)
        return payload
    selection = common.suite_select(suite, common.load_suite_runs(suite)[0])
    if selection["baseline"] is None or selection["winner"] is None:
        raise SystemExit("efficacy_001's seed-0 runs select no baseline or no winner yet")
    workdir = common.suite_workdir(args.workdir, suite.SUITE).parent
    runs = {}
    for role, config in (("float", "float"), ("baseline", selection["baseline"]),
                         ("winner", selection["winner"])):
        path = Path(suite.OUT) / "runs" / f"{config}-s{args.seed}.json"
        if not path.exists():
            raise SystemExit(f"no run file {path}")
        runs[role] = json.loads(path.read_text())

    _, val, test, _, _, _ = common.load_splits(args.seed, suite.BATCH, suite.VALIDATION,
                                               suite.SMOKE)
    images = np.concatenate([x.numpy() for x, _ in test])
    labels = np.concatenate([y.numpy() for _, y in test]).ravel()
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    calibration = np.concatenate([x.numpy() for x, _ in val])[:CALIBRATION]

    shape = images.shape[1:]
    rows = {"float": measure(load_run_model(runs["float"], workdir, shape), images, labels,
                             calibration, binary=False)}
    float_bytes = rows["float"][0]["bytes"]
    rows["float"][0]["bytes_vs_float_twin"] = 1.0
    for role in ("baseline", "winner"):
        keras.backend.clear_session()
        rows[role] = measure(load_run_model(runs[role], workdir, shape), images, labels,
                             calibration, float_bytes)
    winner = rows["winner"]
    payload = {
        "suite": "efficacy_001_deploy", "seed": args.seed,
        "selection": {"rule": selection["rule"], "seed": selection["seed"],
                      "baseline": selection["baseline"], "winner": selection["winner"]},
        "configs": {role: runs[role]["config"] for role in runs},
        "test_images": int(len(images)), "calibration_images": int(len(calibration)),
        "agreement_target": AGREEMENT_TARGET,
        # the target is the bit-packed model's (float32 edges); int8 edges are reported
        "agreement_target_met": all(r["agreement"] >= AGREEMENT_TARGET for r in winner
                                    if r["edges"] == "float32"),
        "rows": rows, "commit": common.git_commit(), "versions": common.versions(),
        "command": "python -m benchmarks.efficacy_001_deploy " + " ".join(argv),
    }
    out = suite.RESULTS
    out.mkdir(parents=True, exist_ok=True)
    common.write_json(out / "efficacy_001_deploy.json", payload)
    (out / "efficacy_001_deploy.md").write_text(text := report(payload))
    print(text)
    return payload


def report(payload):
    """The Markdown report of a deploy payload (``--render`` rewrites it from the JSON)."""
    headers = ["model", "config", "edges", "bytes", "vs float twin", "bit-packed / binary convs",
               "int8 ops", "Keras test %", "LCE test %", "top-1 agreement %",
               "int8 change pt"]
    rows = payload["rows"]
    table = common.markdown_table(headers, [
        [role, payload["configs"][role], r["edges"], f"{r['bytes']:,}",
         f"{r['bytes_vs_float_twin']:.3f}",
         f"{r['bit_packed_convolutions']} / {r['binary_convolutions']}",
         ", ".join(f"{op} {n}" for op, n in r["int8_ops"].items()) or "—",
         f"{100 * r['keras_test_accuracy']:.2f}", f"{100 * r['lce_test_accuracy']:.2f}",
         f"{100 * r['agreement']:.2f}",
         f"{r['int8_accuracy_change_pt']:+.2f}" if "int8_accuracy_change_pt" in r else "—"]
        for role in ("winner", "baseline", "float") for r in rows[role]])
    sel = payload["selection"]
    met = "met" if payload["agreement_target_met"] else "NOT met"
    return "\n".join([
        "# efficacy_001's models deployed through LCE", "",
        f"Command: `{payload['command']}` (commit {payload['commit']})", "",
        f"Arms selected by the protocol's rule on seed {sel['seed']} (winner `{sel['winner']}`, "
        f"baseline `{sel['baseline']}`); seed {payload['seed']}'s runs; "
        f"{payload['test_images']:,} CIFAR-10 test images; int8 edges calibrated on "
        f"{payload['calibration_images']} held-out validation images. The float twin is exported "
        "as plain TFLite (float32).", "", table, "",
        f"Winner's Keras-vs-LCE top-1 agreement target (float32 edges) >= "
        f"{100 * payload['agreement_target']:.1f} %: {met}. Int8 edges are reported, not held "
        "to it.", ""])


if __name__ == "__main__":
    main()
