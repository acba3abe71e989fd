"""Probe the edges (issue 14): bad constructor/function arguments, bad data files and labels,
CLI misuse. Prints counts of clear errors / unclear errors / silently accepted.

    python benchmarks/edge_probe.py            # ~2 min on 2 cores

Arguments: every public callable of keras_wreg (``__all__`` of the package and its
subpackages), every argument whose default is a number, a flag or a string, gets the bad values
of its kind (NaN, ±inf, a string for a number, a bool for a number, a list, a non-integer or
absurd count, a non-bool for a flag, an unknown option), plus the issue's examples. "Clear" =
ValueError/TypeError whose message names the argument and shows the value; "unclear" = any
other error; "accepted" = no error. Data: corrupt/empty/truncated files and bad labels must
raise an error naming the file. CLI: exit status != 0, one line on stderr, no traceback.
"""

import importlib
import inspect
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import keras_wreg as kw
from keras_wreg import data
from keras_wreg._compat import keras, lq, tf

MODULES = ["keras_wreg", "keras_wreg.regularizers", "keras_wreg.quantizers", "keras_wreg.layers",
           "keras_wreg.callbacks", "keras_wreg.optimizers", "keras_wreg.models",
           "keras_wreg.data", "keras_wreg.recipes", "keras_wreg.schedules"]
NAN, INF = float("nan"), float("inf")


def tiny_model():
    inputs = keras.Input((4,))
    return keras.Model(inputs, lq.layers.QuantDense(3, kernel_quantizer="ste_sign",
                                                    kernel_constraint="weight_clip")(inputs))


#: positional arguments needed to reach the checks
REQUIRED = {
    "CosineMomentum": lambda: ([keras.optimizers.Adam()], {}),
    "OptimizerWrapper": lambda: ([keras.optimizers.Adam()], {}),
    "DecoupledRegularization": lambda: ([keras.optimizers.Adam(), kw.WReg()], {}),
    "Ramp": lambda: ([0, 10], {}),
    "grid_stats": lambda: ([tiny_model()], {}),
    "ternary_stats": lambda: ([tiny_model()], {}),
    "compression_report": lambda: ([tiny_model()], {}),
    "compression_ratio": lambda: ([tiny_model()], {}),
    "strip_clustering": lambda: ([tiny_model()], {}),
    "initialize_centers": lambda: ([tiny_model()], {}),
    "kmeans_cluster_model": lambda: ([tiny_model(), 4], {}),
    "recalibrate_batchnorm": lambda: ([tiny_model(), tf.data.Dataset.from_tensors(
        np.zeros((2, 4), "float32"))], {}),
    "activation_balance": lambda: ([tiny_model(), np.zeros((2, 4), "float32")], {}),
    "initial_centers": lambda: ([np.linspace(-1, 1, 50), 4], {}),
    "hwgq": lambda: ([tf.ones((2, 2))], {}),
    "scaled_sign": lambda: ([tf.ones((3, 2))], {}),
    "rescaled_sigmoid_ternary": lambda: ([tf.ones((3, 3))], {}),
    "hwgq_block": lambda: ([keras.Input((4, 4, 8))], {}),
    "fda_unit": lambda: ([keras.Input((4, 4, 8))], {}),
    "cosine_ramp": lambda: ([tf.ones(3), 0.5], {}),
    "temperature_at": lambda: ([0.5, 1.0, 10.0], {}),
    "vgg_small": lambda: ([(8, 8, 1), 10], {}),
    "vgg_small_fp": lambda: ([(8, 8, 1), 10], {}),
    "vgg_small_hwgq": lambda: ([(8, 8, 1), 10], {}),
    "resnet18": lambda: ([(8, 8, 1), 10], {"width": 8}),
    "resnet18_fp": lambda: ([(8, 8, 1), 10], {}),
    "build": lambda: (["vgg_small", (8, 8, 1), 10], {}),
    "load_dataset": lambda: (["digits"], {}),
    "load_arrays": lambda: (["digits"], {}),
    "make_pipeline": lambda: ([np.zeros((2, 2, 2, 1), np.uint8), np.zeros(2, np.int64), 2], {}),
    "WeightHistograms": lambda: (["h.png"], {}),
    "plot_weight_histograms": lambda: ([[("a", [1.0])], "h.png"], {}),
}
SKIP = {"register_recipe", "Recipe", "DataSplits"}
#: free-form text (any string is valid) and regex-or-list arguments: no "bad option" exists
FREE_TEXT = ("name", "self", "title", "xlabel", "select")


def bad_values(default):
    if isinstance(default, bool):
        return ["yes", 1, 0.0, None]
    if isinstance(default, int):
        return [NAN, INF, "3", True, 0.5, 10**12, [1]]
    if isinstance(default, float):
        return [NAN, INF, -INF, "1.0", True, [1.0]]
    if isinstance(default, str):
        return ["__bogus__", 3.5]
    return []


def classify(call, argname, value):
    try:
        call()
    except (ValueError, TypeError) as err:
        message = str(err)
        shown = ("nan" in message if isinstance(value, float) and math.isnan(value)
                 else repr(value) in message or str(value) in message)
        return "clear" if argname in message and shown else "unclear", message
    except Exception as err:  # noqa: BLE001
        return "unclear", f"{type(err).__name__}: {err}"
    return "accepted", ""


def probe_arguments(work):
    results = []
    seen = set()
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if not callable(obj) or name in SKIP or id(obj) in seen or (
                    inspect.isclass(obj) and issubclass(obj, BaseException)):
                continue
            seen.add(id(obj))
            try:
                params = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)
            except (TypeError, ValueError):
                continue
            for p in params.parameters.values():
                if p.default is inspect.Parameter.empty or p.name in FREE_TEXT:
                    continue
                for value in bad_values(p.default):
                    if (p.name == "fda" and value in (1,)) or (p.name == "alpha"
                                                                and value == 3.5):
                        continue  # valid: fda accepts bools, alpha accepts numbers
                    args, kwargs = REQUIRED.get(name, lambda: ([], {}))()
                    kwargs = {**kwargs, p.name: value}
                    verdict, message = classify(lambda: obj(*args, **kwargs), p.name, value)
                    results.append((f"{name}({p.name}={value!r})", verdict, message))
    issue = [
        ("WReg(strength=nan)", lambda: kw.WReg(strength=NAN), "strength", NAN),
        ("CosineMomentum(eta=inf)", lambda: kw.CosineMomentum(keras.optimizers.Adam(),
                                                              eta=INF), "eta", INF),
        ("ScaledSign(clip_value=nan)", lambda: kw.ScaledSign(clip_value=NAN), "clip_value",
         NAN),
        ("RescaledSigmoidTernary(scale='no')", lambda: kw.RescaledSigmoidTernary(scale="no"),
         "scale", "no"),
        ("CosineMomentum(decay_steps=0.5)", lambda: kw.CosineMomentum(
            keras.optimizers.Adam(), decay_steps=0.5), "decay_steps", 0.5),
        ("TemperatureScheduler(quantizers='abc')",
         lambda: kw.TemperatureScheduler(quantizers="abc"), "quantizers", "abc"),
        ("ClusterReg(num_centers=10**8)", lambda: kw.ClusterReg(num_centers=10**8),
         "num_centers", 10**8),
        ("WReg(strength=-1)", lambda: kw.WReg(strength=-1.0), "strength", -1.0),
        ("TernaryReg(power=3)", lambda: kw.TernaryReg(power=3), "power", 3),
        ("HWGQ(bits=8)", lambda: kw.HWGQ(bits=8), "bits", 8),
        ("recipes wreg params strength='x'",
         lambda: kw.recipes.get("wreg").params({"strength": "x"}), "strength", "x"),
        ("recipes cluster params delay=2", lambda: kw.recipes.get("cluster").params(
            {"delay": 2.0}), "delay", 2.0),
    ]
    for label, call, argname, value in issue:
        verdict, message = classify(call, argname, value)
        results.append((label, verdict, message))
    return results


def probe_files(work):
    results = []

    def case(label, build, path_in_message):
        folder = work / label
        build(folder)
        try:
            data.load_arrays(str(folder))
        except Exception as err:  # noqa: BLE001
            ok = str(path_in_message(folder)) in str(err)
            results.append((label, "clear" if ok else "unclear", str(err)))
            return
        results.append((label, "accepted", ""))

    def pair(y_train, y_test):
        def build(folder):
            folder.mkdir(parents=True)
            np.savez(folder / "train.npz", x=np.zeros((len(y_train), 4, 4, 1), np.uint8),
                     y=np.asarray(y_train))
            np.savez(folder / "test.npz", x=np.zeros((len(y_test), 4, 4, 1), np.uint8),
                     y=np.asarray(y_test))
        return build

    def broken_train(content):
        def build(folder):
            pair([0, 1], [0, 1])(folder)
            content(folder / "train.npz")
        return build

    from PIL import Image

    def tree(damage):
        def build(folder):
            for split in ("train", "test"):
                for c in ("a", "b"):
                    (folder / split / c).mkdir(parents=True)
                    for i in range(2):
                        Image.fromarray(np.full((5, 5), 30 * i, np.uint8)).save(
                            folder / split / c / f"{i}.png")
            damage(folder / "train" / "b" / "1.png")
        return build

    train = lambda f: f / "train.npz"  # noqa: E731
    test = lambda f: f / "test.npz"  # noqa: E731
    bad_image = lambda f: f / "train" / "b" / "1.png"  # noqa: E731
    case("negative_label", pair([0, 1, -1], [0]), train)
    case("float_label", pair([0, 1.5, 1], [0]), train)
    case("nan_label", pair([0, NAN, 1], [0]), train)
    case("test_label_unknown", pair([0, 1, 1], [5]), test)
    case("single_class", pair([2, 2, 2], [2]), train)
    case("empty_npz_file", broken_train(lambda p: p.write_bytes(b"")), train)
    case("text_not_npz", broken_train(lambda p: p.write_text("hello")), train)
    case("npz_without_arrays", broken_train(lambda p: np.savez(p)), train)
    case("npy_not_npz", broken_train(lambda p: np.save(open(p, "wb"), np.zeros(3))), train)
    case("npz_no_examples", broken_train(lambda p: np.savez(
        p, x=np.zeros((0, 4, 4, 1), np.uint8), y=np.zeros(0))), train)
    case("empty_image", tree(lambda p: p.write_bytes(b"")), bad_image)
    case("corrupt_image", tree(lambda p: p.write_bytes(b"garbage" * 10)), bad_image)
    case("truncated_image", tree(lambda p: p.write_bytes(p.read_bytes()[:30])), bad_image)
    case("odd_shape_image", tree(lambda p: Image.fromarray(
        np.zeros((6, 5), np.uint8)).save(p)), bad_image)
    return results


def probe_cli(work):
    script = Path(sys.executable).with_name("keras-wreg")
    bad_json = work / "bad.json"
    bad_json.write_text("{oops")
    cases = [
        ["train", "--epochs", "0"], ["train", "--epochs", "three"],
        ["train", "--validation-split", "2"], ["train", "--batch-size", "0"],
        ["train", "--dataset", "digits", "--param", "strength=nan"],
        ["train", "--dataset", "digits", "--param", "nonsense=1"],
        ["train", "--dataset", "digits", "--method", "nope"],
        ["train", "--dataset", "/nonexistent/data"], ["train", "--config", str(bad_json)],
        ["train", "--dataset", str(work / "negative_label")],
        ["train", "--dataset", str(work / "corrupt_image")],
        ["tune", "--max-trials", "0", "--dataset", "digits"],
        ["bogus-command"],
    ]
    results = []
    env = {**os.environ, "KERAS_WREG_CACHE_DIR": str(work / "cache")}
    for argv in cases:
        run = subprocess.run([str(script), *argv], capture_output=True, text=True, env=env,
                             cwd=work, timeout=900)
        lines = run.stderr.strip().splitlines()
        clear = (run.returncode != 0 and "Traceback" not in run.stderr and len(lines) == 1
                 and lines[0].startswith("keras-wreg") and ": error: " in lines[0])
        verdict = "accepted" if run.returncode == 0 else ("clear" if clear else "unclear")
        results.append((" ".join(argv), verdict, lines[-1] if lines else ""))
    return results


def main():
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.chdir(work)
        os.environ["KERAS_WREG_CACHE_DIR"] = str(work / "cache")
        sections = {"arguments": probe_arguments(work), "data files and labels": probe_files(work)}
        if "--no-cli" not in sys.argv:
            sections["CLI"] = probe_cli(work)
    summary = {}
    for section, results in sections.items():
        counts = {k: sum(1 for _, v, _ in results if v == k)
                  for k in ("clear", "unclear", "accepted")}
        summary[section] = {"total": len(results), **counts}
        print(f"\n## {section}: {len(results)} probes, {counts}")
        for label, verdict, message in results:
            if verdict != "clear" or "-v" in sys.argv:
                print(f"  [{verdict}] {label}: {message[:160]}")
    print(json.dumps(summary, indent=2))
    return 0 if all(s["clear"] == s["total"] for s in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
