"""Benchmark: what a KerasTuner search buys WReg + CosineMomentum vs the plain Larq baseline.

Both methods get the same search (tuner, trials, epochs per trial, seed), the same model, data and
split, in one process; each is also trained once with its recipe defaults (untuned) for the same
epochs. Reported: best validation accuracy of the search, test accuracy of the best model, test
accuracy of the untuned defaults, and wall time. Writes ``benchmarks/results/tuning.md`` plus PNGs
of the objective per trial.

    python -m benchmarks.tuning --quick     # reduced: CIFAR-10 subset, width 16 (~10 min, 2 CPUs)
    python -m benchmarks.tuning --full      # full size: all of CIFAR-10, width 64, 20 trials
"""

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras_wreg  # noqa: E402,F401  (first: sets the legacy-Keras switch)
from keras_wreg import recipes, tuning  # noqa: E402
from keras_wreg._compat import keras, tf  # noqa: E402

import keras_tuner as kt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

PRESETS = {
    "quick": dict(dataset="cifar10", train_subset=5000, test_subset=2000, width=16, epochs=4,
                  max_trials=5, tuner="random", batch_size=64),
    "full": dict(dataset="cifar10", train_subset=None, test_subset=None, width=64, epochs=20,
                 max_trials=20, tuner="bayesian", batch_size=128),
}


def tune_args(method, cfg, directory, seed):
    argv = ["--method", method, "--tuner", cfg["tuner"], "--max-trials", str(cfg["max_trials"]),
            "--epochs", str(cfg["epochs"]), "--dataset", cfg["dataset"],
            "--width", str(cfg["width"]), "--batch-size", str(cfg["batch_size"]),
            "--validation-split", "0.2", "--out", str(directory),
            "--seed", str(seed), "--overwrite", "--verbose", "0"]
    if cfg["train_subset"]:
        argv += ["--train-subset", str(cfg["train_subset"])]
    if cfg["test_subset"]:
        argv += ["--test-subset", str(cfg["test_subset"])]
    return tuning.add_tune_arguments(argparse.ArgumentParser(allow_abbrev=False)).parse_args(argv)


def train_defaults(method, args, seed):
    """Train the recipe defaults on the search's train split; test accuracy."""
    keras.utils.set_random_seed(seed)
    splits = tuning.command.load_search_data(args.dataset, args)
    recipe = recipes.get(method)
    params = recipe.params()
    steps = math.ceil(splits.num_train / args.batch_size) * args.epochs
    model = recipe.build_model(recipe.default_model, splits.input_shape, splits.num_classes,
                               params, width=args.width)
    recipe.compile(model, params, steps)
    recipe.fit(model, splits.train, epochs=args.epochs, validation_data=splits.validation,
               callbacks=recipe.callbacks(params, steps, model=model), params=params, verbose=0)
    return float(model.evaluate(splits.test, verbose=0)[1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="reduced run (default)")
    size.add_argument("--full", action="store_true", help="full-size run")
    parser.add_argument("--methods", nargs="+", default=["larq", "wreg"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default="runs/bench_tuning")
    opts = parser.parse_args(argv)
    preset = "full" if opts.full else "quick"
    cfg = PRESETS[preset]
    command = "python -m benchmarks.tuning " + " ".join(argv if argv is not None else sys.argv[1:])
    rows, plots = [], []
    RESULTS.mkdir(parents=True, exist_ok=True)
    for method in opts.methods:
        keras.utils.set_random_seed(opts.seed)
        args = tune_args(method, cfg, opts.workdir, opts.seed)
        start = time.perf_counter()
        result = tuning.run_tune(args)
        search_s = time.perf_counter() - start
        start = time.perf_counter()
        default_acc = train_defaults(method, args, opts.seed)
        default_s = time.perf_counter() - start
        png = RESULTS / f"tuning_{method}_objective.png"
        shutil.copyfile(result["plot_path"], png)
        plots.append(png.name)
        values = [v for _, _, v in result["trials"]]
        rows.append(dict(method=method, best_val=result["best_value"],
                         test_best=result["test_accuracy"], test_default=default_acc,
                         trials=len(values), median_val=sorted(values)[len(values) // 2],
                         search_s=search_s, default_s=default_s, config=result["config"]))
        print(json.dumps(rows[-1], default=str), flush=True)
    write_results(rows, plots, cfg, preset, command)
    return 0


def write_results(rows, plots, cfg, preset, command):
    label = ("**Reduced run** (CPU shared by several jobs; not a paper-scale number)"
             if preset == "quick" else "Full-size run")
    data_desc = (f"{cfg['dataset']} (JPEG q75 copy), train subset "
                 f"{cfg['train_subset'] or 'all'} (80 % train / 20 % validation, seeded), "
                 f"test subset {cfg['test_subset'] or 'all'}")
    lines = [
        "# KerasTuner search: WReg + CosineMomentum vs plain Larq", "",
        f"{label}: {data_desc}; model `vgg_small` width {cfg['width']}; tuner `{cfg['tuner']}`, "
        f"{cfg['max_trials']} trials x {cfg['epochs']} epochs, batch {cfg['batch_size']}, seed 0; "
        "the objective is validation accuracy; test accuracy is of the best trial's checkpoint. "
        "\"defaults\" = one training of the recipe's default hyperparameters, same data and "
        "epochs.", "",
        "One seed, a handful of trials: differences of a few points are within run-to-run noise. "
        "Wall times were measured on a CPU shared with other jobs and are not a speed comparison.",
        "",
        "| method | best val acc (search) | median val acc of trials | test acc, best trial | "
        "test acc, defaults (untuned) | search wall time | defaults wall time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['method']} | {r['best_val']:.4f} | {r['median_val']:.4f} | "
                     f"{r['test_best']:.4f} | {r['test_default']:.4f} | {r['search_s']:.0f} s "
                     f"({r['trials']} trials) | {r['default_s']:.0f} s |")
    lines += ["", "Best configurations found (the JSON `keras-wreg train --config` reads):", ""]
    for r in rows:
        lines.append(f"- `{r['method']}`: `{json.dumps(r['config']['params'], sort_keys=True)}`")
    lines += ["", "Objective per trial:", ""] + [f"![{p}]({p})" for p in plots]
    lines += ["", "Command:", "", "```", command.strip(), "```", "",
              f"Versions: Python {platform.python_version()}, TensorFlow {tf.__version__}, "
              f"tf-keras {keras.__version__}, Larq {version('larq')}, "
              f"KerasTuner {kt.__version__}; {os.cpu_count()} CPU cores, shared.", ""]
    (RESULTS / "tuning.md").write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
