"""Deployment benchmark: LCE flatbuffer size, single-image latency and parity on CIFAR-10.

Three parts, one process:

1. **Size** — for binary VGG-small (two widths) and the binary ResNet-18: the Larq Compute
   Engine flatbuffer of the binary model (``keras_wreg.export.tflite_bytes(target="lce")``) vs
   the float32 TFLite flatbuffer of its full-precision twin (``vgg_small_fp``,
   ``resnet18_fp``, TensorFlow's converter), with Larq's ``ModelProfile`` memory prediction for
   the binary model beside it.
2. **Latency** — one 32×32×3 image, median of ``--runs`` runs, every configuration measured
   interleaved (run r of every configuration before run r+1 of any): LCE binary (default
   kernels, ``use_indirect_bgemm``, ``use_xnnpack``) and float TFLite (default, ``use_xnnpack``),
   1 and 2 threads, all in LCE's interpreter. On x86-64 LCE's binary kernels are its reference
   ones (LCE is optimized for ARMv8 only): these timings are not device timings.
3. **Parity** — binary VGG-small (``--parity-width``) trained ``--epochs`` epochs on the full
   CIFAR-10 training set (plain Larq recipe: ste_sign, weight_clip, Adam + cosine decay), then
   Keras vs LCE top-1 agreement and max |output difference| on the full 10,000-image test set,
   and both accuracies.

``python -m benchmarks.deploy`` writes ``benchmarks/results/deploy.md`` and ``deploy.json``
(the exact command, versions and every number). Options shrink it for a smoke run
(``--sizes-only``, ``--runs 20``, ``--test-subset``); ``--skip-latency`` / ``--skip-parity``
split it into two runs that can go side by side.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from keras_wreg._compat import keras, lq
from keras_wreg import data, export, models, recipes

from benchmarks.common import git_commit, markdown_table, versions, write_json

RESULTS = Path(__file__).resolve().parent / "results"

#: (label, binary builder, FP twin builder, width)
NETWORKS = [
    ("binary VGG-small w32", "vgg_small", "vgg_small_fp", 32),
    ("binary VGG-small w64", "vgg_small", "vgg_small_fp", 64),
    ("binary ResNet-18 w64", "resnet18", "resnet18_fp", 64),
]

LCE_OPTIONS = [("default", {}), ("indirect_bgemm", {"use_indirect_bgemm": True}),
               ("xnnpack", {"use_xnnpack": True})]
FLOAT_OPTIONS = [("default", {}), ("xnnpack", {"use_xnnpack": True})]


def build_pair(binary_name, fp_name, width, input_shape=(32, 32, 3), num_classes=10):
    """The binary network (plain Larq layer arguments) and its full-precision twin."""
    recipe = recipes.get("larq")
    binary = recipe.build_model(binary_name, input_shape, num_classes, recipe.params(),
                                width=width)
    fp = models.build(fp_name, input_shape, num_classes, width=width)
    return binary, fp


def size_row(label, binary, fp):
    """Flatbuffer sizes, LCE report and Larq's ModelProfile of one network."""
    lce_fb = export.tflite_bytes(binary, "lce")
    float_fb = export.tflite_bytes(fp, "tflite", require_quantized=False)
    report = export.flatbuffer_report(lce_fb)
    profile = lq.models.ModelProfile(binary)
    return {
        "network": label,
        "parameters": int(binary.count_params()),
        "lce_bytes": len(lce_fb),
        "float_tflite_bytes": len(float_fb),
        "ratio": len(float_fb) / len(lce_fb),
        "binary_convolutions": len(report["binary_convolutions"]),
        "packed_bytes": report["packed_bytes"],
        "lce_ops": report["ops"],
        "larq_profile_bytes": profile.memory / 8,
        "larq_profile_fp_bytes": profile.fp_equivalent_memory / 8,
        "larq_profile_ratio": profile.fp_equivalent_memory / profile.memory,
    }, lce_fb, float_fb


def measure_latency(flatbuffers, runs, seed=0):
    """Median single-image latency (ms) of every configuration, interleaved.

    ``flatbuffers``: ``{network: (lce bytes, float bytes)}``. Returns a list of rows.
    """
    rng = np.random.default_rng(seed)
    configs = []
    for network, (lce_fb, float_fb) in flatbuffers.items():
        for threads in (1, 2):
            for kind, fb, options in ([("LCE binary", lce_fb, o) for o in LCE_OPTIONS]
                                      + [("float TFLite", float_fb, o) for o in FLOAT_OPTIONS]):
                name, kwargs = options
                interpreter = export.load_interpreter(fb, num_threads=threads, **kwargs)
                shape = (1, *interpreter.input_shapes[0][1:])
                image = rng.uniform(-1, 1, shape).astype(np.float32)
                for _ in range(3):  # warm-up
                    interpreter.interpreter.predict([image])
                configs.append({"network": network, "runtime": kind, "option": name,
                                "threads": threads, "interpreter": interpreter,
                                "image": image, "times": []})
    for _ in range(runs):
        for config in configs:
            start = time.perf_counter()
            config["interpreter"].interpreter.predict([config["image"]])
            config["times"].append(1e3 * (time.perf_counter() - start))
    rows = []
    for config in configs:
        rows.append({key: config[key] for key in ("network", "runtime", "option", "threads")}
                    | {"median_ms": statistics.median(config["times"]),
                       "runs": len(config["times"])})
    for row in rows:
        reference = next(r for r in rows if r["network"] == row["network"]
                         and r["threads"] == row["threads"] and r["runtime"] == "float TFLite"
                         and r["option"] == "default")
        row["ratio_to_float_default"] = row["median_ms"] / reference["median_ms"]
    return rows


def parity_run(width, epochs, test_subset, seed, train_subset=None, weights=None):
    """Train binary VGG-small on CIFAR-10 (or load ``weights`` trained elsewhere), then Keras vs
    LCE on the test set."""
    keras.utils.set_random_seed(seed)
    splits = data.load_dataset("cifar10", batch_size=128, augment=True, seed=seed,
                               train_subset=train_subset, test_subset=test_subset)
    recipe = recipes.get("larq")
    params = recipe.params()
    model = recipe.build_model("vgg_small", splits.input_shape, splits.num_classes, params,
                               width=width)
    recipe.compile(model, params, max(epochs, 1) * len(splits.train))
    start = time.perf_counter()
    if weights:
        model.load_weights(weights)
        epochs = f"loaded {weights}"
    else:
        recipe.fit(model, splits.train, epochs, verbose=2)
    train_seconds = time.perf_counter() - start
    keras_accuracy = float(model.evaluate(splits.test, verbose=0)[1])
    flatbuffer = export.tflite_bytes(model, "lce")
    images = np.concatenate([np.asarray(x) for x, _ in splits.test])
    labels = np.concatenate([np.asarray(y) for _, y in splits.test]).reshape(-1)
    start = time.perf_counter()
    outputs = export.tflite_predict(export.load_interpreter(flatbuffer), images)
    lce_seconds = time.perf_counter() - start
    reference = np.asarray(model.predict(images, batch_size=256, verbose=0))
    same = reference.argmax(-1) == outputs.argmax(-1)
    return {
        "model": f"binary VGG-small w{width} (larq recipe)", "epochs": epochs,
        "train_images": splits.num_train, "test_images": int(len(images)),
        "train_seconds": train_seconds, "lce_inference_seconds": lce_seconds,
        "keras_accuracy": keras_accuracy,
        "keras_accuracy_from_predict": float(np.mean(reference.argmax(-1) == labels)),
        "lce_accuracy": float(np.mean(outputs.argmax(-1) == labels)),
        "agreement": float(same.mean()), "disagreements": int((~same).sum()),
        "max_abs_diff": float(np.max(np.abs(reference - outputs))),
        "lce_bytes": len(flatbuffer),
    }


def write_report(payload, path_md):
    lines = ["# Deployment: Larq Compute Engine flatbuffers, latency, parity", "",
             f"Command: `{payload['command']}` (commit {payload['commit']})", "",
             f"Versions: {payload['versions']}; larq-compute-engine "
             f"{payload['lce_version']}. Wall time {payload['wall_seconds'] / 60:.1f} min.", ""]
    lines += ["## Size: LCE binary flatbuffer vs float32 TFLite of the full-precision twin", "",
              markdown_table(
                  ["network", "parameters", "LCE binary (KiB)", "float TFLite twin (KiB)",
                   "ratio", "LceBconv2d", "packed 1-bit weights (KiB)",
                   "Larq ModelProfile (KiB)", "ModelProfile ratio"],
                  [[r["network"], r["parameters"], r["lce_bytes"] / 1024,
                    r["float_tflite_bytes"] / 1024, r["ratio"], r["binary_convolutions"],
                    r["packed_bytes"] / 1024, r["larq_profile_bytes"] / 1024,
                    r["larq_profile_ratio"]] for r in payload["sizes"]]), ""]
    if payload.get("latency"):
        lines += ["## Single-image latency (ms, median), interleaved, this x86-64 CPU", "",
                  "LCE's x86-64 interpreter uses its reference binary kernels (LCE is optimized "
                  "for ARMv8 only): these are **not** device timings. Other jobs shared the 2 "
                  "cores during the run.", "",
                  markdown_table(["network", "runtime", "option", "threads", "median (ms)",
                                  "ratio to float TFLite default", "runs"],
                                 [[r["network"], r["runtime"], r["option"], r["threads"],
                                   r["median_ms"], r["ratio_to_float_default"], r["runs"]]
                                  for r in payload["latency"]]), ""]
    if payload.get("parity"):
        p = payload["parity"]
        lines += ["## Parity Keras vs LCE on the CIFAR-10 test set", "",
                  markdown_table(["model", "epochs", "train images", "test images",
                                  "Keras accuracy", "LCE accuracy", "top-1 agreement",
                                  "disagreements", "max |output diff|", "train (s)"],
                                 [[p["model"], p["epochs"], p["train_images"],
                                   p["test_images"], p["keras_accuracy"], p["lce_accuracy"],
                                   p["agreement"], p["disagreements"], p["max_abs_diff"],
                                   p["train_seconds"]]]), ""]
    Path(path_md).write_text("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--runs", type=int, default=200, help="latency runs per configuration")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (parity)")
    parser.add_argument("--parity-width", type=int, default=32)
    parser.add_argument("--weights", default=None,
                        help="parity: load these trained weights (e.g. benchmarks/results/"
                             "efficacy_000/pretrain.weights.h5, 20 epochs) instead of training")
    parser.add_argument("--test-subset", type=int, default=None,
                        help="parity on a subset of the test set (default: all 10,000)")
    parser.add_argument("--train-subset", type=int, default=None,
                        help="train on a subset (smoke runs only; default: all 50,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes-only", action="store_true")
    parser.add_argument("--skip-parity", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "deploy"),
                        help="output path without suffix (.md and .json are written)")
    args = parser.parse_args(argv)
    import larq_compute_engine

    start = time.perf_counter()
    payload = {"command": "python -m benchmarks.deploy " + " ".join(argv or sys.argv[1:]),
               "commit": git_commit(), "versions": versions(),
               "lce_version": getattr(larq_compute_engine, "__version__", "0.16.0"),
               "sizes": [], "latency": None, "parity": None}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save():  # after every part, so a long run leaves what it measured so far
        payload["wall_seconds"] = time.perf_counter() - start
        write_json(out.with_suffix(".json"), payload)
        write_report(payload, out.with_suffix(".md"))

    flatbuffers = {}
    for label, binary_name, fp_name, width in NETWORKS:
        binary, fp = build_pair(binary_name, fp_name, width)
        row, lce_fb, float_fb = size_row(label, binary, fp)
        payload["sizes"].append(row)
        flatbuffers[label] = (lce_fb, float_fb)
        print(f"[deploy] {label}: LCE {row['lce_bytes']} B, float twin "
              f"{row['float_tflite_bytes']} B, ratio {row['ratio']:.1f}", flush=True)
    save()
    if not args.sizes_only:
        if not args.skip_latency:
            payload["latency"] = measure_latency(flatbuffers, args.runs, seed=args.seed)
            print("[deploy] latency done", flush=True)
            save()
        if not args.skip_parity:
            payload["parity"] = parity_run(args.parity_width, args.epochs, args.test_subset,
                                           args.seed, args.train_subset, args.weights)
            print(f"[deploy] parity: {payload['parity']}", flush=True)
    save()
    print(f"[deploy] wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return payload


if __name__ == "__main__":
    main()
