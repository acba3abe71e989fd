"""Int8 edges next to bit-packed binary convolutions (issue 24): the first convolution and the
classifier exported as int8 (``to_tflite(..., int8=calibration images)``) against float32 edges,
for the FDA ResNet-18 and the plain Larq VGG-small trained on MNIST.

    python -m benchmarks.int8_edges            # ~5 min on 2 cores

Writes ``results/int8_edges.{json,md}``: flatbuffer bytes, int8 and bit-packed op counts, test
accuracy in LCE's interpreter, the Keras model's accuracy and the top-1 agreement between them.
"""

import sys
from pathlib import Path

import numpy as np

import keras_wreg as kw
from benchmarks import common
from keras_wreg._compat import keras

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = (("fda", "resnet18"), ("larq", "vgg_small"))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    splits = kw.data.load_dataset("mnist", batch_size=128, train_subset=20000,
                                  validation_split=0.0)
    x_test = np.concatenate([x.numpy() for x, _ in splits.test])
    y_test = np.concatenate([y.numpy() for _, y in splits.test])
    calibration = np.concatenate([x.numpy() for x, _ in splits.train.take(4)])
    rows = []
    for method, model_name in MODELS:
        keras.utils.set_random_seed(0)
        recipe = kw.recipes.get(method)
        params = recipe.params()
        model = recipe.build_model(model_name, splits.input_shape, 10, params, width=16)
        recipe.compile(model, params, 2 * len(splits.train))
        model.fit(splits.train, epochs=2, verbose=2)
        keras_top1 = model.predict(x_test, verbose=0).argmax(1)
        for int8 in (None, calibration):
            flatbuffer = kw.export.tflite_bytes(model, "lce", int8=int8)
            top1 = kw.export.tflite_predict(kw.export.load_interpreter(flatbuffer),
                                            x_test).argmax(1)
            report = kw.export.flatbuffer_report(flatbuffer)
            rows.append({"method": method, "model": model_name,
                         "edges": "int8" if int8 is not None else "float32",
                         "bytes": len(flatbuffer), "int8_ops": report["int8_ops"],
                         "binary_convolutions": len(report["binary_convolutions"]),
                         "lce_accuracy": float(np.mean(top1 == y_test)),
                         "keras_accuracy": float(np.mean(keras_top1 == y_test)),
                         "agreement": float(np.mean(top1 == keras_top1))})
            print(rows[-1], flush=True)
    command = "python -m benchmarks.int8_edges " + " ".join(argv)
    table = common.markdown_table(
        ["method", "edges", "bytes", "int8 ops", "bit-packed convs", "LCE test %",
         "Keras test %", "top-1 agreement %"],
        [[r["method"], r["edges"], r["bytes"], r["int8_ops"] or "—", r["binary_convolutions"],
          100 * r["lce_accuracy"], 100 * r["keras_accuracy"], 100 * r["agreement"]]
         for r in rows])
    text = "\n".join([
        "# Int8 edges next to bit-packed convolutions", "",
        f"Command: `{command}` (commit {common.git_commit()})", "",
        "MNIST, 20,000 training images, 2 epochs, width 16, seed 0; 10,000 test images; "
        "calibration: 4 training batches (512 images).", "", table, ""])
    common.write_json(RESULTS / "int8_edges.json", {"rows": rows, "command": command,
                                                    "commit": common.git_commit(),
                                                    "versions": common.versions()})
    (RESULTS / "int8_edges.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
