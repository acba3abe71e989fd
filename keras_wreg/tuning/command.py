"""The ``keras-wreg tune`` job: :func:`add_tune_arguments` + :func:`run_tune`.

``keras_wreg.cli`` wires the sub-command to these two functions; ``python -m keras_wreg.tuning``
runs the same job stand-alone. Distributed search needs no flag: set KerasTuner's
``KERASTUNER_TUNER_ID`` (``chief`` for the oracle, ``tuner0``, ``tuner1``, ... for workers),
``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` and start the same command once per
process with the same ``--directory``; the chief writes the results when every trial is done.
"""

import json
import math
import os
from pathlib import Path

import numpy as np

from keras_wreg._utils import parse_params
from keras_wreg import data, models, recipes
from keras_wreg.tuning.hypermodel import RecipeHyperModel
from keras_wreg.tuning.tuners import TUNERS, make_tuner


def add_tune_arguments(parser):
    """Add the ``keras-wreg tune`` options to an ``argparse`` (sub)parser; returns it."""
    parser.add_argument("--method", default="wreg", choices=sorted(recipes.RECIPES),
                        help="method (recipe) whose hyperparameters are searched")
    parser.add_argument("--tuner", default="random", choices=sorted(TUNERS),
                        help="KerasTuner algorithm")
    parser.add_argument("--max-trials", type=int, default=10,
                        help="trials of random/bayesian (hyperband: set by --epochs, --factor)")
    parser.add_argument("--epochs", type=int, default=5,
                        help="epochs per trial (hyperband: max epochs per model)")
    parser.add_argument("--factor", type=int, default=3, help="hyperband reduction factor")
    parser.add_argument("--executions-per-trial", type=int, default=1)
    parser.add_argument("--objective", default="val_accuracy")
    parser.add_argument("--dataset", default=None,
                        help="dataset name or path (default: mnist if present, else digits)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--model", action="append", default=None,
                        help=f"model in {sorted(models.MODELS)}; repeat to search over several")
    parser.add_argument("--width", type=int, default=None, help="base width of the model")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--test-subset", type=int, default=None)
    parser.add_argument("--validation-split", type=float, default=0.1,
                        help="share of the training set the objective is measured on")
    parser.add_argument("--augment", action="store_true")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="hold a recipe hyperparameter fixed (repeatable)")
    recipes.add_method_flags(parser)
    parser.add_argument("--out", "--directory", dest="out", default="runs/tune", metavar="DIR",
                        help="the search's run folder, as --out of train/export: KerasTuner's "
                             "trials in DIR/<project>, the best configuration in "
                             "DIR/best_config.json (--directory is an alias)")
    parser.add_argument("--project-name", default=None, help="default: <method>_<tuner>")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh (default: resume an existing search)")
    parser.add_argument("--teacher", default=None, metavar="MODEL.keras",
                        help="distil this float model into every trial's student (the space's "
                             "distill_weight and distill_temperature act through it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    return parser


def _is_worker():
    return "KERASTUNER_ORACLE_IP" in os.environ and "chief" not in os.environ.get(
        "KERASTUNER_TUNER_ID", "")


def load_search_data(dataset, args):
    """Train/validation/test pipelines for a search.

    Unlike ``data.load_dataset`` (which holds the validation share out of the *full* training
    set before subsetting), the validation share here is taken from the ``--train-subset``, so a
    reduced search also validates on a proportionally small, disjoint set; ``--test-subset`` is
    a seeded random sample of the test set (not its first N images, which are one class in a
    class-sorted copy such as the CIFAR-10 folders).
    """
    if not 0.0 <= args.validation_split < 1.0:
        raise ValueError(f"`--validation-split` must be in [0, 1), got {args.validation_split!r}.")
    for name in ("train_subset", "test_subset"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ValueError(f"`--{name.replace('_', '-')}` must be a positive int.")
    (x_train, y_train), (x_test, y_test), source = data.load_arrays(dataset, args.data_dir)
    order = np.random.default_rng(args.seed).permutation(len(x_train))
    x_train, y_train = x_train[order], y_train[order]
    if args.train_subset:
        x_train, y_train = x_train[:args.train_subset], y_train[:args.train_subset]
    if args.test_subset:
        # seeded shuffle first: class-per-folder copies (CIFAR-10 here) are sorted by class
        keep = np.random.default_rng(args.seed + 1).permutation(len(x_test))[:args.test_subset]
        x_test, y_test = x_test[np.sort(keep)], y_test[np.sort(keep)]
    n_val = int(round(len(x_train) * args.validation_split))
    x_val, y_val = x_train[:n_val], y_train[:n_val]
    x_train, y_train = x_train[n_val:], y_train[n_val:]
    bs = args.batch_size
    return data.DataSplits(
        train=data.make_pipeline(x_train, y_train, bs, shuffle=True, augment=args.augment,
                                 seed=args.seed),
        test=data.make_pipeline(x_test, y_test, bs),
        validation=data.make_pipeline(x_val, y_val, bs) if n_val else None,
        input_shape=tuple(x_train.shape[1:]),
        num_classes=int(max(y_train.max(), y_test.max())) + 1,
        num_train=len(x_train), num_test=len(x_test), num_validation=n_val, source=source)


def trial_history(tuner):
    """``[(trial_id, status, objective value or None)]`` in the order trials started."""
    oracle = tuner.oracle
    order = list(getattr(oracle, "start_order", [])) or sorted(oracle.trials)
    rows = []
    for trial_id in order:
        trial = oracle.trials[trial_id]
        value = trial.score if trial.score is not None else None
        rows.append((trial_id, str(trial.status), value))
    return rows


def plot_objective(rows, path, objective="val_accuracy", title=None):
    """PNG of the objective of each trial and the best so far; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    direction_max = not objective.endswith("loss")
    xs = [i + 1 for i, r in enumerate(rows) if r[2] is not None and math.isfinite(r[2])]
    ys = [r[2] for r in rows if r[2] is not None and math.isfinite(r[2])]
    best, running = [], None
    for y in ys:
        running = y if running is None else (max(running, y) if direction_max else min(running, y))
        best.append(running)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(xs, ys, "o", label="trial")
    ax.step(xs, best, where="post", label="best so far")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial (start order)")
    ax.set_ylabel(objective)
    ax.set_title(title or f"{objective} per trial")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def best_config(tuner, hypermodel):
    """``{"method", "model", "params"}`` of the best trial (what ``train --config`` reads)."""
    hp = tuner.get_best_hyperparameters(1)[0]
    model_name, params = hypermodel.sample(hp.copy())
    return {"method": hypermodel.method, "model": model_name, "params": params}


def run_tune(args):
    """Run the whole ``keras-wreg tune`` job described by parsed ``args``.

    Searches, prints KerasTuner's per-trial progress, and (except on distributed workers)
    writes the best configuration as JSON (``{"method", "model", "params"}``), a PNG of the
    objective per trial, and evaluates the best model on the test split.

    Returns:
        dict with ``role``, ``config`` (the best config), ``config_path``, ``plot_path``,
        ``best_value``, ``test_accuracy``, ``trials`` (rows of :func:`trial_history`) and
        ``trials_run`` (ids this process trained).

    Raises:
        ValueError: for a bad argument, or a ``--validation-split`` that leaves no validation
            image (the objective is never measured on the test set).
    """
    overrides = parse_params(args.param)
    overrides.update(recipes.method_flag_params(args))
    for name in ("max_trials", "epochs", "executions_per_trial"):
        if getattr(args, name) < 1:
            raise ValueError(f"`--{name.replace('_', '-')}` must be >= 1.")
    dataset = args.dataset or data.default_dataset(args.data_dir)
    splits = load_search_data(dataset, args)
    if splits.validation is None:  # the objective is never measured on the test set
        raise ValueError(f"`--validation-split` {args.validation_split!r} leaves the search no "
                         "validation images; the search never selects on the test set: pass a "
                         "share in (0, 1) that keeps at least one image.")
    validation = splits.validation
    recipe = recipes.get(args.method)
    model_names = args.model or [recipe.default_model]
    model_kwargs = {"width": args.width} if args.width else {}
    steps = max(1, math.ceil(splits.num_train / args.batch_size))
    hypermodel = RecipeHyperModel(
        args.method, splits.input_shape, splits.num_classes, model=model_names,
        model_kwargs=model_kwargs, overrides=overrides, steps_per_epoch=steps,
        epochs=args.epochs, teacher=args.teacher)
    project = args.project_name or f"{args.method}_{args.tuner}"
    tuner = make_tuner(
        args.tuner, hypermodel, objective=args.objective, max_trials=args.max_trials,
        max_epochs=args.epochs, factor=args.factor, seed=args.seed, directory=args.out,
        project_name=project, overwrite=args.overwrite,
        executions_per_trial=args.executions_per_trial)
    print(f"[keras-wreg tune] method={args.method} tuner={args.tuner} dataset={dataset} "
          f"({splits.num_train} train / {splits.num_validation} validation) "
          f"models={model_names} project={Path(args.out) / project}", flush=True)
    tuner.search(splits.train, validation_data=validation, epochs=args.epochs,
                 verbose=args.verbose)
    result = {"role": "worker" if _is_worker() else "chief-or-local",
              "trials_run": list(getattr(tuner, "trials_run", []))}
    if _is_worker():
        return result
    rows = trial_history(tuner)
    config = best_config(tuner, hypermodel)
    config_path = Path(args.out) / "best_config.json"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    plot_path = plot_objective(rows, config_path.with_suffix(".png"), args.objective,
                               title=f"{args.method} / {args.tuner}: {args.objective} per trial")
    best_trial = tuner.oracle.get_best_trials(1)[0]
    best_model = tuner.get_best_models(1)[0]
    test_metrics = best_model.evaluate(splits.test, verbose=0, return_dict=True)
    result.update(config=config, config_path=str(config_path), plot_path=plot_path,
                  best_value=best_trial.score, best_trial=best_trial.trial_id,
                  test_accuracy=float(test_metrics.get("accuracy", float("nan"))), trials=rows)
    if args.verbose:
        tuner.results_summary(num_trials=3)
        print(f"[keras-wreg tune] best {args.objective}={best_trial.score:.4f} "
              f"(trial {best_trial.trial_id}); test accuracy of its model "
              f"{result['test_accuracy']:.4f}", flush=True)
        print(f"[keras-wreg tune] wrote {config_path} and {plot_path}", flush=True)
    return result


def main(argv=None):
    """Stand-alone entry point: ``python -m keras_wreg.tuning --method wreg ...``."""
    import argparse

    parser = add_tune_arguments(argparse.ArgumentParser(
        prog="python -m keras_wreg.tuning", description=__doc__.splitlines()[0],
        allow_abbrev=False))
    args = parser.parse_args(argv)
    result = run_tune(args)
    print("[keras-wreg tune] result " + json.dumps(
        {k: v for k, v in result.items() if k != "config"}, default=str), flush=True)
    return 0


__all__ = ["add_tune_arguments", "run_tune", "parse_params", "plot_objective", "trial_history",
           "best_config", "main"]
