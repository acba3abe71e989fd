"""Seed 000 benchmark: plain Larq vs + WReg vs + CosineMomentum vs both (and the FP twin).

Every configuration trains the same binary VGG-small on the same data order, seed, augmentation
and epoch budget, in one process; test accuracy is measured after every epoch.

    python -m benchmarks.binary --quick                       # smoke run on a CIFAR-10 subset
    python -m benchmarks.binary --width 32 --epochs 8 --seeds 0 1   # headline (full CIFAR-10)
    python -m benchmarks.binary --tune ...                    # defaults search on a held-out split

Writes ``benchmarks/results/binary[_quick|_tune].md`` (+ ``.json`` and PNGs).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import common
from keras_wreg._introspect import latent
from keras_wreg import callbacks as kw_callbacks
from keras_wreg import data, recipes
from keras_wreg._compat import keras

RESULTS = Path(__file__).resolve().parent / "results"

#: name -> (recipe, overrides applied on top of the recipe defaults and of --param)
CONFIGS = {
    "larq": ("larq", {}),
    "wreg": ("wreg", {"use_cosine_momentum": False}),
    "cosine_momentum": ("wreg", {"use_wreg": False}),
    "wreg+cosine_momentum": ("wreg", {}),
    "full_precision": ("larq", {}),
}


def run_config(name, splits, args, seed, params_override, eval_data):
    method, overrides = CONFIGS[name]
    recipe = recipes.get(method)
    params = recipe.params({**(params_override if method == "wreg" else {}), **overrides})
    keras.utils.set_random_seed(seed)
    model_name = "vgg_small_fp" if name == "full_precision" else "vgg_small"
    model = recipe.build_model(model_name, splits.input_shape, splits.num_classes, params,
                               width=args.width)
    total_steps = args.epochs * len(splits.train)
    recipe.compile(model, params, total_steps)
    timer = common.StepTimer()
    cbs = [timer] + (recipe.callbacks(params, total_steps, model) if name != "full_precision"
                     else [])
    began = time.perf_counter()
    history = recipe.fit(model, splits.train, args.epochs, validation_data=eval_data,
                         callbacks=cbs, params=params, verbose=args.verbose)
    wall = time.perf_counter() - began
    curve = [float(a) for a in history.history["val_accuracy"]]
    stats = kw_callbacks.grid_stats(model, alpha=1.0) if name != "full_precision" else {}
    return {
        "config": name, "seed": seed, "params": params, "curve": curve,
        "final": curve[-1], "best": max(curve), "step_time": timer.median, "wall": wall,
        "stats": stats, "end_values": _kernel_values(model),
    }


def _kernel_values(model):
    kernels = kw_callbacks.binary_kernels(model)
    if not kernels:
        return None
    return np.concatenate([np.asarray(latent(k).numpy()).ravel()
                           for k in kernels])


def summarize(runs, configs, seeds):
    by = {c: [r for r in runs if r["config"] == c] for c in configs}
    base_final = {r["seed"]: r["final"] for r in by.get("larq", [])}
    base_step = {r["seed"]: r["step_time"] for r in by.get("larq", [])}
    rows = []
    for c in configs:
        rs = by[c]
        if not rs:
            continue
        final, final_sd = common.mean_std([r["final"] for r in rs])
        best, best_sd = common.mean_std([r["best"] for r in rs])
        reach = [common.epochs_to_reach(r["curve"], base_final[r["seed"]])
                 for r in rs if r["seed"] in base_final]
        ratio = [r["step_time"] / base_step[r["seed"]] for r in rs if r["seed"] in base_step]
        qerr = common.mean_std([r["stats"].get("quant_error_channel") for r in rs])[0]
        near = common.mean_std([r["stats"].get("near_grid_channel") for r in rs])[0]
        qerr1 = common.mean_std([r["stats"].get("quant_error") for r in rs])[0]
        near1 = common.mean_std([r["stats"].get("near_grid") for r in rs])[0]
        rows.append([
            c, f"{100 * final:.2f} ± {100 * final_sd:.2f}", f"{100 * best:.2f} ± {100 * best_sd:.2f}",
            "/".join("—" if e is None else str(e) for e in reach) or "n/a",
            f"{np.mean(ratio):.3f}" if ratio else "n/a",
            qerr1, near1, qerr, near,
        ])
    headers = ["config", "final acc % (mean ± sd)", "best acc %",
               "epochs to larq final (per seed)", "step time / larq",
               "quant err (α=1)", "within 0.1α (α=1)", "quant err (α_c)", "within 0.1α_c"]
    return common.markdown_table(headers, rows)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--repeat-configs", default=None,
                        help="configs trained for every seed after the first (default: all)")
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--test-subset", type=int, default=None)
    parser.add_argument("--validation", type=float, default=0.0,
                        help="hold out this fraction of train and evaluate on it (tuning)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="override a wreg-recipe hyperparameter for the wreg configs")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 5k train / 2k test images, width 16, 2 epochs, 1 seed")
    parser.add_argument("--tag", default=None, help="suffix of the results files")
    parser.add_argument("--verbose", type=int, default=2)
    args = parser.parse_args(argv)
    if args.quick:
        args.train_subset = args.train_subset or 5000
        args.test_subset = args.test_subset or 2000
        args.width, args.epochs, args.seeds = 16, 2, [args.seeds[0]]
    from keras_wreg.cli import _parse_param

    overrides = dict(_parse_param(p) for p in args.param)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for c in configs:
        if c not in CONFIGS:
            parser.error(f"unknown config {c!r}; known: {sorted(CONFIGS)}")

    splits = data.load_dataset(
        args.dataset, data_dir=args.data_dir, batch_size=args.batch_size,
        augment=not args.no_augment, validation_split=args.validation,
        train_subset=args.train_subset, test_subset=args.test_subset, seed=0,
    )
    eval_data = splits.validation if args.validation else splits.test
    eval_name = "validation (held out from train)" if args.validation else "test"
    began = time.perf_counter()
    runs = []
    repeat = configs if args.repeat_configs is None else [
        c.strip() for c in args.repeat_configs.split(",") if c.strip()]
    for index, seed in enumerate(args.seeds):
        for c in (configs if index == 0 else [c for c in configs if c in repeat]):
            print(f"[bench] seed {seed} config {c}", flush=True)
            runs.append(run_config(c, splits, args, seed, overrides, eval_data))
            print(f"[bench]   final {runs[-1]['final']:.4f} best {runs[-1]['best']:.4f} "
                  f"step {1000 * runs[-1]['step_time']:.1f} ms", flush=True)
    wall = time.perf_counter() - began

    tag = args.tag or ("quick" if args.quick else ("tune" if args.validation else ""))
    stem = "binary" + (f"_{tag}" if tag else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    table = summarize(runs, configs, args.seeds)
    curves = {c: [r["curve"] for r in runs if r["config"] == c] for c in configs}
    common.plot_curves(curves, RESULTS / f"{stem}_accuracy.png",
                       f"{args.dataset} ({eval_name}), VGG-small w{args.width}")
    larq_run = next((r for r in runs if r["config"] == "larq"), None)
    best_wreg = next((r for r in runs if r["config"] == "wreg+cosine_momentum"), None)
    if larq_run and best_wreg:
        kw_callbacks.plot_weight_histograms(
            [("larq: end", larq_run["end_values"]),
             ("wreg+cosine_momentum: end", best_wreg["end_values"])],
            RESULTS / f"{stem}_histograms.png", title="binary latent weights after training",
            grid=[-1.0, 1.0])
    command = "python -m benchmarks.binary " + " ".join(argv)
    info = common.versions()
    text = "\n".join([
        f"# Binary benchmark ({stem})", "",
        f"Command: `{command}` (commit {common.git_commit()})", "",
        f"Data: {args.dataset} from {splits.source}, {splits.num_train} train images, "
        f"evaluated on {eval_name} ({splits.num_validation or splits.num_test} images); "
        f"augmentation {'off' if args.no_augment else 'flip + 4px crop'}; batch {args.batch_size}; "
        f"VGG-small width {args.width}; {args.epochs} epochs; seeds {args.seeds}; "
        f"Adam 1e-3 with cosine decay for every config.",
        f"wreg overrides: {overrides or 'none (library defaults)'}", "",
        f"Versions: {info}. Wall time of the whole run: {wall / 60:.1f} min.", "",
        table, "",
        "Per-epoch accuracy (mean over seeds):", "",
        common.markdown_table(["config"] + [f"e{i + 1}" for i in range(args.epochs)],
                              [[c] + [float(np.mean(col)) for col in zip(*curves[c])]
                               for c in configs if curves[c]]),
        "", f"![accuracy]({stem}_accuracy.png)" +
        (f" ![histograms]({stem}_histograms.png)" if larq_run and best_wreg else ""), "",
    ])
    (RESULTS / f"{stem}.md").write_text(text)
    for r in runs:
        r.pop("end_values")
    common.write_json(RESULTS / f"{stem}.json", {"command": command, "runs": runs,
                                                 "versions": info, "wall_seconds": wall})
    print(text)
    return runs


if __name__ == "__main__":
    main()
