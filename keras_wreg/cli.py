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
    from keras_wreg import recipes

    recipes.add_method_flags(parser)  # each method's own flags (--centers, --finetune, ...)
    parser.add_argument("--out", default=None, help="output folder (default runs/<name>)")
    parser.add_argument("--teacher", default=None, metavar="MODEL.keras",
                        help="distil this float model (e.g. a `--method float` run's "
                             "model.keras) into the student: --param distill_weight=W "
                             "(0.5), distill_temperature=T (4)")
    parser.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    parser.add_argument("--no-export", action="store_true",
                        help="do not write model.tflite (Larq Compute Engine) next to model.keras")

    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last completed epoch (after a "
                             "kill); the run's saved arguments (run.json) are used")
    parser.add_argument("--deterministic", action="store_true",
                        help="TensorFlow op determinism: bitwise-reproducible runs (slower)")

    add_scale_arguments(parser)


def add_scale_arguments(parser):
    """Distribution, mixed precision and TensorBoard options of ``train``."""
    parser.add_argument("--strategy", default="default",
                        choices=("default", "mirrored", "multi_worker"),
                        help="tf.distribute strategy; multi_worker reads TF_CONFIG (see README)")
    parser.add_argument("--sync-batchnorm", default="auto", choices=("auto", "always", "never"),
                        help="BatchNorm statistics over the global batch: auto = when there are "
                             "several replicas")
    parser.add_argument("--mixed-precision", default=None, choices=("float16", "bfloat16"),
                        help="Keras mixed-precision policy (mixed_float16 / mixed_bfloat16)")
    parser.add_argument("--tensorboard", nargs="?", const="", default=None, metavar="LOG_DIR",
                        help="write TensorBoard logs + keras_wreg diagnostics "
                             "(default dir: <out>/tensorboard)")


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
    from keras_wreg import recipes

    params.update(recipes.method_flag_params(args))
    if args.learning_rate is not None:
        params["learning_rate"] = args.learning_rate
    dataset = args.dataset or config.get("dataset") or data.default_dataset(args.data_dir)
    return method, model, params, dataset


#: arguments that do not define the run (a resumed run takes the others from run.json)
_RUN_INDEPENDENT = ("command", "resume", "out", "verbose")


def _restore_run_args(args):
    """For ``--resume``: the run folder must be given; the run's own arguments (``run.json``)
    replace the command line's."""
    if not args.out:
        raise SystemExit("keras-wreg train: --resume needs --out RUN_FOLDER (the folder of "
                         "the run to continue).")
    saved = Path(args.out) / "run.json"
    if saved.is_file():
        for key, value in json.loads(saved.read_text()).items():
            if key not in _RUN_INDEPENDENT:
                setattr(args, key, value)


def _say(message):
    """Print an engine message: one line with the ``[keras-wreg]`` prefix, a block as it is."""
    message = str(message)
    print(message if "\n" in message else f"[keras-wreg] {message}")


def run_train(args):
    """The ``train`` job: the arguments become a :class:`keras_wreg.training.TrainJob` that
    :func:`keras_wreg.training.run` trains; returns its metrics (also in ``metrics.json``).

    The run folder is written as training goes: ``run.json`` (the arguments) first, then
    ``backup/`` (a Keras ``BackupAndRestore`` checkpoint per stage) and ``backup/epochs.jsonl``
    (one line per completed epoch). ``--resume`` continues a killed run from its last
    completed epoch; when the run finishes, the log moves to ``epochs.jsonl`` and the backup
    is removed.
    """
    strategy = _setup_scale(args)  # first: a multi-worker strategy precedes any TF op
    from keras_wreg import recipes, training

    if getattr(args, "resume", False):
        _restore_run_args(args)
    _check_train_args(args)
    method, model_name, overrides, dataset = _resolve_config(args)
    recipe = recipes.get(method)
    out = Path(args.out or Path("runs") / f"{method}-{Path(str(dataset)).name}-"
               f"{datetime.now():%Y%m%d-%H%M%S}")
    job = training.TrainJob(
        recipe=recipe, params=overrides, dataset=dataset, out=out, model=model_name,
        width=args.width, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
        validation_split=args.validation_split, augment=args.augment,
        train_subset=args.train_subset, test_subset=args.test_subset, data_dir=args.data_dir,
        strategy=strategy, sync_batchnorm=getattr(args, "sync_batchnorm", "auto"),
        tensorboard=getattr(args, "tensorboard", None), teacher=args.teacher,
        export=not args.no_export, resume=bool(getattr(args, "resume", False)),
        deterministic=bool(getattr(args, "deterministic", False)), verbose=args.verbose,
        record={k: v for k, v in vars(args).items() if k not in _RUN_INDEPENDENT}, name=method)
    try:
        return training.run(job, log=_say)
    except training.UnfinishedRunError as err:
        raise SystemExit(f"keras-wreg train: {err}") from None


class _DeployInputError(Exception):
    """Bad input of ``export``/``eval``: reported as one line naming the file."""

    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}")


def _load_keras(path):
    """The Keras model of a run folder or a ``.keras`` file, or a _DeployInputError."""
    from keras_wreg import export

    path = Path(path)
    if not path.exists():
        raise _DeployInputError(path, "no such file or folder")
    if path.is_dir():
        if not (path / "model.keras").is_file():
            raise _DeployInputError(path, "folder has no model.keras (not a keras-wreg run)")
        path = path / "model.keras"
    if path.suffix == ".tflite":
        raise _DeployInputError(path, "is a TFLite flatbuffer, already exported; give a "
                                      ".keras model or a run folder")
    if path.suffix != ".keras":
        raise _DeployInputError(path, "not a model: expected a .keras file or a run folder")
    try:
        return path, export.load_model(path)
    except Exception as exc:  # zip, HDF5, config and deserialization errors all mean the same
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _DeployInputError(path, f"not a loadable Keras model ({reason[:200]})") from exc


def _run_dataset(args, model_path):
    """--dataset, else the dataset recorded in the run's metrics.json, else the default."""
    from keras_wreg import data

    if args.dataset:
        return args.dataset
    metrics = Path(model_path).parent / "metrics.json"
    if metrics.is_file():
        try:
            return json.loads(metrics.read_text())["dataset"]
        except (ValueError, KeyError):
            pass
    return data.default_dataset(args.data_dir)


def _load_test(args, dataset, input_shape, path, test_subset=None):
    from keras_wreg import data

    splits = data.load_dataset(dataset, data_dir=args.data_dir, batch_size=256,
                               test_subset=test_subset, seed=0)
    if tuple(splits.input_shape) != tuple(input_shape):
        raise _DeployInputError(path, f"model input {tuple(input_shape)} does not match the "
                                      f"images of {dataset!r} {tuple(splits.input_shape)}")
    return splits


def _deploy_command(name, run):
    """Run ``run(args)``; bad input prints one line on stderr and gives exit code 2."""
    def wrapped(args):
        from keras_wreg import data, export

        try:
            return run(args)
        except _DeployInputError as exc:
            message = str(exc)
        except (export.ExportError, data.DatasetNotFoundError) as exc:
            message = f"{args.model}: {exc}"
        except (ValueError, TypeError, OSError) as exc:
            message = f"{args.model}: {exc}"
        print(f"keras-wreg {name}: error: {message}", file=sys.stderr)
        return 2

    return wrapped


def add_export_arguments(parser):
    parser.add_argument("model", help="a run folder (holding model.keras) or a .keras file")
    parser.add_argument("--target", default="lce", choices=("lce", "tflite"),
                        help="lce: Larq Compute Engine, binary convolutions bit-packed "
                             "(default); tflite: TensorFlow's converter, float32 ops")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="the run folder to write into, as --out of train/tune (default: "
                             "the model's folder); the file is model.tflite for lce, "
                             "model_float.tflite for tflite")
    parser.add_argument("--dataset", default=None,
                        help="test images for the parity check (default: the run's dataset)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--parity-images", type=int, default=256,
                        help="number of test images for the parity check (0: skip)")


def _run_export(args):
    """The ``export`` job: convert, print size, ratio to float32 and parity."""
    from keras_wreg import export

    path, model = _load_keras(args.model)
    name = f"{path.stem}{'' if args.target == 'lce' else '_float'}.tflite"
    if args.out and Path(args.out).suffix == ".tflite":
        raise _DeployInputError(Path(args.out), "--out is a folder (the run folder, as for "
                                "train and tune); the file in it is named " + name)
    out = Path(args.out) / name if args.out else path.with_name(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        export.to_tflite(model, out, target=args.target)
    except export.ExportError as exc:
        raise _DeployInputError(path, str(exc)) from exc
    images, source = None, "no parity check"
    if args.parity_images > 0:
        from keras_wreg.training import sample_images

        dataset = _run_dataset(args, path)
        splits = _load_test(args, dataset, model.input_shape[1:], path,
                            test_subset=args.parity_images)
        images, source = sample_images(splits.test, args.parity_images), str(dataset)
    report = export.deploy_report(model, out, images)
    for line in export.format_deploy_report(report, args.target, source):
        print(f"[keras-wreg] {line}")
    return 0


def add_eval_arguments(parser):
    parser.add_argument("model", help="a .keras file, a .tflite file (run in LCE's "
                                      "interpreter) or a run folder (its model.keras)")
    parser.add_argument("--dataset", default=None,
                        help="dataset to evaluate on (default: the run's dataset)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--test-subset", type=int, default=None,
                        help="evaluate on a seeded random subset of the test set")


def _run_eval(args):
    """The ``eval`` job: top-1 accuracy of a .keras or .tflite model on a test set."""
    import numpy as np

    from keras_wreg import export

    path = Path(args.model)
    if path.suffix == ".tflite":
        if not path.is_file():
            raise _DeployInputError(path, "no such file")
        try:
            interpreter = export.load_interpreter(path)
        except (ValueError, RuntimeError) as exc:
            raise _DeployInputError(path, f"not a loadable TFLite model ({exc})") from exc
        input_shape = tuple(interpreter.input_shapes[0][1:])
        splits = _load_test(args, _run_dataset(args, path), input_shape, path,
                            args.test_subset)
        result = export.evaluate_tflite(interpreter, splits.test)
        kind = "TFLite (LCE interpreter)"
    else:
        path, model = _load_keras(path)
        splits = _load_test(args, _run_dataset(args, path), model.input_shape[1:], path,
                            args.test_subset)
        correct = total = 0
        for x, y in splits.test:
            predicted = np.asarray(model.predict(x, verbose=0)).argmax(-1)
            correct += int(np.sum(predicted == np.asarray(y).reshape(-1)))
            total += len(predicted)
        result = {"accuracy": correct / max(total, 1), "n": total}
        kind = "Keras"
    print(f"[keras-wreg] {path} ({kind}) on {splits.source}: accuracy "
          f"{result['accuracy']:.4f} on {result['n']} test images")
    return 0


run_export = _deploy_command("export", _run_export)
run_eval = _deploy_command("eval", _run_eval)

def _setup_scale(args):
    """The strategy of ``--strategy`` (created before any TensorFlow op) and the global
    mixed-precision policy of ``--mixed-precision`` (set before the model is built)."""
    from keras_wreg import distribute

    strategy = distribute.make_strategy(getattr(args, "strategy", "default"))
    precision = getattr(args, "mixed_precision", None)
    distribute.set_mixed_precision(precision)
    task, index, chief = distribute.worker_role(strategy)
    print(f"[keras-wreg] strategy {getattr(args, 'strategy', 'default')}: "
          f"{strategy.num_replicas_in_sync} replica(s)"
          + (f", this process is {task} {index}{' (chief)' if chief else ''}" if task else "")
          + (f"; mixed precision {precision}" if precision else ""))
    return strategy


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
                        ("--test-subset", args.test_subset)):
        if value is not None:
            check_int(value, flag, low=1)
    from keras_wreg import recipes

    for flag, (_, kind, _) in recipes.method_flags().items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if kind is int and value is not None:
            check_int(value, flag, low=1)


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with a pointer to ``--help``), exit status 2,
    and no abbreviated flags (``--out`` never silently stands for ``--output``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

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
    add_export_arguments(sub.add_parser(
        "export", help="convert a trained model to TFLite (Larq Compute Engine)"))
    add_eval_arguments(sub.add_parser("eval", help="accuracy of a .keras or .tflite model"))
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
    elif args.command == "export":
        return run_export(args)
    elif args.command == "eval":
        return run_eval(args)
    elif args.command == "tune":
        from keras_wreg import tuning

        tuning.run_tune(args)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
