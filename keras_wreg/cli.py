"""``keras-wreg`` command line: train and evaluate a quantized network (and tune it).

``keras-wreg train`` with no arguments runs the offline default: method ``wreg`` on a small
binary VGG-small, on MNIST from a local copy if one is found (``../shared/data``,
``$KERAS_WREG_DATA_DIR``), else on scikit-learn's bundled 8×8 digits — real data either way.
"""

import argparse
import json
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

from keras_wreg._utils import parse_value


def _parse_param(text):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param needs KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), parse_value(value.strip())


def add_train_arguments(parser):
    parser.add_argument("--config", help="JSON {method, model, params} (e.g. from `tune`)")
    parser.add_argument("--dataset", default=None,
                        help="tfds name (cifar10, mnist, ...), a local folder, or 'digits'; "
                             "default: mnist if a local copy exists, else digits")
    parser.add_argument("--data-dir", default=None, help="folder holding local dataset copies")
    parser.add_argument("--model", default=None, help="network (default: the method's)")
    parser.add_argument("--method", default=None, help="method name (default: wreg)")
    parser.add_argument("--width", type=int, default=16, help="base width of the network")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--augment", action="store_true", help="flip + pad/crop augmentation")
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--test-subset", type=int, default=None)
    parser.add_argument("--param", action="append", type=_parse_param, default=[],
                        metavar="KEY=VALUE", help="override a method hyperparameter")
    parser.add_argument("--centers", type=int, default=None,
                        help="number of cluster centres (method cluster)")
    parser.add_argument("--finetune", default=None,
                        help="fine-tuning procedure (method hwgq: alternate|full|none)")
    parser.add_argument("--out", default=None, help="output folder (default runs/<name>)")
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last completed epoch (after a "
                             "kill); the run's saved arguments (run.json) are used")
    parser.add_argument("--deterministic", action="store_true",
                        help="TensorFlow op determinism: bitwise-reproducible runs (slower)")


def _resolve_config(args):
    from keras_wreg import data

    config = {}
    if args.config:
        config = json.loads(Path(args.config).read_text())
    method = args.method or config.get("method") or "wreg"
    model = args.model or config.get("model")
    params = dict(config.get("params", {}))
    for key, value in args.param:
        params[key] = value
    if args.centers is not None:
        params["num_centers"] = args.centers
    if args.finetune is not None:
        params["finetune"] = args.finetune
    if args.learning_rate is not None:
        params["learning_rate"] = args.learning_rate
    dataset = args.dataset or config.get("dataset") or data.default_dataset(args.data_dir)
    return method, model, params, dataset


#: arguments that do not define the run (a resumed run takes the others from run.json)
_RUN_INDEPENDENT = ("command", "resume", "out", "verbose")


def _prepare_resume(args):
    """For ``--resume``: the run folder must be given; the run's own arguments are restored.

    Returns the finished run's metrics when the run already completed, else None.
    """
    if not args.out:
        raise SystemExit("keras-wreg train: --resume needs --out RUN_FOLDER (the folder of "
                         "the run to continue).")
    out = Path(args.out)
    saved = out / "run.json"
    if saved.is_file():
        for key, value in json.loads(saved.read_text()).items():
            if key not in _RUN_INDEPENDENT:
                setattr(args, key, value)
    if (out / "metrics.json").is_file() and not (out / "backup").exists():
        print(f"[keras-wreg] {out} is a finished run; nothing to resume.")
        return json.loads((out / "metrics.json").read_text())
    return None


def run_train(args):
    """The ``train`` job. Returns the metrics dict (also written to ``metrics.json``).

    The run folder is written as training goes: ``run.json`` (the arguments) first, then
    ``backup/`` (a Keras ``BackupAndRestore`` checkpoint per stage) and ``backup/epochs.jsonl``
    (one line per completed epoch). ``--resume`` continues a killed run from its last
    completed epoch; when the run finishes, the log moves to ``epochs.jsonl`` and the backup
    is removed.
    """
    from keras_wreg import callbacks as kw_callbacks
    from keras_wreg import data, export, recipes
    from keras_wreg._compat import keras, tf

    if getattr(args, "resume", False):
        finished = _prepare_resume(args)
        if finished is not None:
            return finished
    if getattr(args, "deterministic", False):
        tf.config.experimental.enable_op_determinism()
    method, model_name, overrides, dataset = _resolve_config(args)
    recipe = recipes.get(method)
    params = recipe.params(overrides)
    model_name = model_name or recipe.default_model
    keras.utils.set_random_seed(args.seed)

    splits = data.load_dataset(
        dataset, data_dir=args.data_dir, batch_size=args.batch_size, augment=args.augment,
        train_subset=args.train_subset, test_subset=args.test_subset, seed=args.seed,
    )
    print(f"[keras-wreg] data: {dataset} from {splits.source}: {splits.num_train} train / "
          f"{splits.num_test} test, input {splits.input_shape}, {splits.num_classes} classes")

    out = Path(args.out or Path("runs") / f"{method}-{Path(str(dataset)).name}-"
               f"{datetime.now():%Y%m%d-%H%M%S}")
    out.mkdir(parents=True, exist_ok=True)
    backup = out / "backup"
    if not getattr(args, "resume", False) and backup.exists():
        raise SystemExit(f"keras-wreg train: {out} holds an unfinished run (backup/); continue "
                         "it with --resume or choose another --out.")
    record = {k: v for k, v in vars(args).items() if k not in _RUN_INDEPENDENT}
    record["dataset"] = str(dataset)  # as resolved: a resume trains on the same data
    (out / "run.json").write_text(json.dumps(record, indent=2, default=str))

    model = recipe.build_model(model_name, splits.input_shape, splits.num_classes, params,
                               width=args.width)
    total_steps = args.epochs * len(splits.train)
    recipe.compile(model, params, total_steps)
    print(f"[keras-wreg] method {method}: {recipe.description}")
    print(f"[keras-wreg] params: {json.dumps(params, default=str)}")

    histograms = kw_callbacks.WeightHistograms(out / "weight_histograms.png",
                                               title=f"{method}: binary latent weights")
    callbacks = recipe.callbacks(params, total_steps, model) + [histograms]
    start = time.perf_counter()
    history = recipe.fit(model, splits.train, args.epochs, validation_data=splits.test,
                         callbacks=callbacks, params=params, verbose=args.verbose,
                         backup_dir=backup)
    train_seconds = time.perf_counter() - start
    test_loss, test_accuracy = model.evaluate(splits.test, verbose=0)[:2]

    summary = export.model_summary_text(model)
    print(summary)
    export.save_model(model, out / "model.keras")
    size = export.export_packed_weights(model, out / "packed_weights.npz")
    metrics = {
        "method": method, "model": model_name, "dataset": str(dataset), "source": splits.source,
        "width": args.width, "epochs": args.epochs, "batch_size": args.batch_size,
        "seed": args.seed, "params": params, "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss), "train_seconds": train_seconds,
        "history": {k: [float(x) for x in v] for k, v in history.history.items()},
        "resumed_from_epoch": int(getattr(history, "resumed_from", 0)),
        "packed_size": size,
        "grid_stats": kw_callbacks.grid_stats(model, alpha=_grid_alpha(params)),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log_name = kw_callbacks.resume.EPOCH_LOG
    if (backup / log_name).is_file():
        shutil.copyfile(backup / log_name, out / log_name)
    shutil.rmtree(backup, ignore_errors=True)
    print(f"[keras-wreg] test accuracy: {test_accuracy:.4f}  (train time {train_seconds:.1f} s)")
    print(f"[keras-wreg] wrote {out}/model.keras, metrics.json, weight_histograms.png, "
          f"packed_weights.npz ({size['compression_ratio']:.1f}x smaller than float32)")
    return metrics


def _grid_alpha(params):
    alpha = params.get("alpha", 1.0)
    return alpha if isinstance(alpha, str) or (isinstance(alpha, (int, float)) and alpha > 0) \
        else 1.0


def build_parser(with_tune=False):
    """The argument parser. The ``tune`` sub-command loads KerasTuner (and Keras 3), so its
    arguments are only added when it is the command being run (``with_tune``)."""
    parser = argparse.ArgumentParser(
        prog="keras-wreg",
        description="Regularization-driven quantization-aware training for Keras/Larq.")
    sub = parser.add_subparsers(dest="command")
    train = sub.add_parser("train", help="train and evaluate a quantized network")
    add_train_arguments(train)
    sub.add_parser("methods", help="list the registered methods")
    tune_help = "KerasTuner search over a method's hyperparameters"
    if with_tune:
        from keras_wreg import tuning

        tuning.add_tune_arguments(sub.add_parser("tune", help=tune_help))
    else:
        sub.add_parser("tune", help=tune_help, add_help=False)
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(with_tune=bool(argv) and argv[0] == "tune")
    args = parser.parse_args(argv or ["train"])
    if args.command in (None, "train"):
        if args.command is None:
            args = parser.parse_args(["train"])
        run_train(args)
    elif args.command == "methods":
        from keras_wreg import recipes

        for name, cls in sorted(recipes.RECIPES.items()):
            print(f"{name:10s} {cls.description}")
    elif args.command == "tune":
        from keras_wreg import tuning

        tuning.run_tune(args)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
