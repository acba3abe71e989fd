"""``keras-wreg`` command line: train and evaluate a quantized network (and tune it).

``keras-wreg train`` with no arguments runs the offline default: method ``wreg`` on a small
binary VGG-small, on MNIST from a local copy if one is found (``../shared/data``,
``$KERAS_WREG_DATA_DIR``), else on scikit-learn's bundled 8×8 digits — real data either way.
Training is validated on a held-out share of the training set (``--validation-split``, 0.1);
the test set is evaluated once, at the end.

A user error (bad option value, missing or unreadable data, bad hyperparameter) ends with one
line ``keras-wreg: error: ...`` on stderr and exit status 1 (argparse usage errors: 2); add
``--debug`` (anywhere on the line) or set ``KERAS_WREG_DEBUG=1`` for the full traceback and
TensorFlow's start-up log lines.
"""

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from keras_wreg import _quiet
from keras_wreg._utils import parse_value
from keras_wreg._validation import check_int, check_real


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
    parser.add_argument("--validation-split", type=float, default=0.1,
                        help="share of the training set held out to validate each epoch "
                             "(0 = none); the test set is evaluated once, at the end")
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


def _resolve_config(args):
    from keras_wreg import data

    config = {}
    if args.config:
        try:
            config = json.loads(Path(args.config).read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"--config {args.config}: not valid JSON ({err}).") from None
        if not isinstance(config, dict):
            raise ValueError(f"--config {args.config}: expected a JSON object "
                             f"{{method, model, params}}, got {type(config).__name__}.")
        if not isinstance(config.get("params", {}), dict):
            raise ValueError(f"--config {args.config}: 'params' must be a JSON object.")
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


def run_train(args):
    """The ``train`` job. Returns the metrics dict (also written to ``metrics.json``)."""
    from keras_wreg import callbacks as kw_callbacks
    from keras_wreg import data, export, recipes
    from keras_wreg._compat import keras

    _check_train_args(args)
    method, model_name, overrides, dataset = _resolve_config(args)
    recipe = recipes.get(method)
    params = recipe.params(overrides)
    model_name = model_name or recipe.default_model
    keras.utils.set_random_seed(args.seed)

    splits = data.load_dataset(
        dataset, data_dir=args.data_dir, batch_size=args.batch_size, augment=args.augment,
        validation_split=args.validation_split, train_subset=args.train_subset,
        test_subset=args.test_subset, seed=args.seed,
    )
    print(f"[keras-wreg] data: {dataset} from {splits.source}: {splits.num_train} train / "
          f"{splits.num_validation} validation / {splits.num_test} test, input "
          f"{splits.input_shape}, {splits.num_classes} classes")

    out = Path(args.out or Path("runs") / f"{method}-{Path(str(dataset)).name}-"
               f"{datetime.now():%Y%m%d-%H%M%S}")
    out.mkdir(parents=True, exist_ok=True)

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
    history = recipe.fit(model, splits.train, args.epochs, validation_data=splits.validation,
                         callbacks=callbacks, params=params, verbose=args.verbose)
    train_seconds = time.perf_counter() - start
    test_loss, test_accuracy = model.evaluate(splits.test, verbose=0)[:2]

    summary = export.model_summary_text(model)
    print(summary)
    export.save_model(model, out / "model.keras")
    size = export.export_packed_weights(model, out / "packed_weights.npz")
    metrics = {
        "method": method, "model": model_name, "dataset": str(dataset), "source": splits.source,
        "width": args.width, "epochs": args.epochs, "batch_size": args.batch_size,
        "seed": args.seed, "validation_split": args.validation_split,
        "num_train": splits.num_train, "num_validation": splits.num_validation,
        "num_test": splits.num_test, "params": params, "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss), "train_seconds": train_seconds,
        "history": {k: [float(x) for x in v] for k, v in history.history.items()},
        "packed_size": size,
        "grid_stats": kw_callbacks.grid_stats(model, alpha=_grid_alpha(params)),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"[keras-wreg] test accuracy: {test_accuracy:.4f}  (train time {train_seconds:.1f} s)")
    print(f"[keras-wreg] wrote {out}/model.keras, metrics.json, weight_histograms.png, "
          f"packed_weights.npz ({size['compression_ratio']:.1f}x smaller than float32)")
    return metrics


def _check_train_args(args):
    """One clear error naming the option for out-of-range numeric options."""
    check_int(args.epochs, "--epochs", low=1, high=100_000)
    check_int(args.width, "--width", low=1, high=4096)
    check_int(args.batch_size, "--batch-size", low=1, high=2**20)
    check_int(args.seed, "--seed", low=0)
    check_real(args.validation_split, "--validation-split", low=0.0, high=1.0, high_open=True)
    if args.learning_rate is not None:
        check_real(args.learning_rate, "--learning-rate", low=0.0, low_open=True, high=10.0)
    for flag, value in (("--train-subset", args.train_subset),
                        ("--test-subset", args.test_subset), ("--centers", args.centers)):
        if value is not None:
            check_int(value, flag, low=1)


def _grid_alpha(params):
    alpha = params.get("alpha", 1.0)
    return alpha if isinstance(alpha, str) or (isinstance(alpha, (int, float)) and alpha > 0) \
        else 1.0


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with a pointer to ``--help``), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser(with_tune=False):
    """The argument parser. The ``tune`` sub-command loads KerasTuner (and Keras 3), so its
    arguments are only added when it is the command being run (``with_tune``)."""
    parser = _OneLineParser(
        prog="keras-wreg",
        description="Regularization-driven quantization-aware training for Keras/Larq.",
        epilog="Errors are one line; add --debug anywhere for the traceback and TensorFlow's "
               "start-up log.")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks and TensorFlow's log lines")
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


def _one_line(err):
    """The error as one line: its message (newlines folded), with the type name when the type
    says more than the message."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, KeyError):
        text = f"missing key {text}"
    if not isinstance(err, (ValueError, TypeError, OSError, KeyError, ImportError)):
        text = f"{type(err).__name__}: {text}"
    return text


def main(argv=None):
    """Run the command; returns the exit status (0 on success).

    Errors are reported as one line on stderr (exit status 1; 130 on Ctrl-C) unless ``--debug``
    is given, which re-raises them with the full traceback.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _quiet.debug_requested(argv)
    argv = [a for a in argv if a != "--debug"]
    _quiet.quiet_python_warnings()
    try:
        return _main(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print("keras-wreg: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - every error becomes one line (see --debug)
        if debug:
            raise
        print(f"keras-wreg: error: {_one_line(err)} (--debug shows the traceback)",
              file=sys.stderr)
        return 1


def _main(argv):
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
