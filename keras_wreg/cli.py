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
import shutil
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
    strategy = _setup_scale(args)  # first: a multi-worker strategy precedes any TF op
    from keras_wreg import callbacks as kw_callbacks
    from keras_wreg import data, export, recipes
    from keras_wreg._compat import keras, tf

    if getattr(args, "resume", False):
        finished = _prepare_resume(args)
        if finished is not None:
            return finished
    if getattr(args, "deterministic", False):
        tf.config.experimental.enable_op_determinism()
    _check_train_args(args)
    method, model_name, overrides, dataset = _resolve_config(args)
    recipe = recipes.get(method)
    params = recipe.params(overrides)
    _check_distributable(method, params, strategy)
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
    out = _worker_out(strategy, out)
    out.mkdir(parents=True, exist_ok=True)
    backup = out / "backup"
    if not getattr(args, "resume", False) and backup.exists():
        raise SystemExit(f"keras-wreg train: {out} holds an unfinished run (backup/); continue "
                         "it with --resume or choose another --out.")
    record = {k: v for k, v in vars(args).items() if k not in _RUN_INDEPENDENT}
    record["dataset"] = str(dataset)  # as resolved: a resume trains on the same data
    (out / "run.json").write_text(json.dumps(record, indent=2, default=str))

    with strategy.scope():
        model = recipe.build_model(model_name, splits.input_shape, splits.num_classes, params,
                                   width=args.width)
        model = _distribute_model(model, strategy, args)
        total_steps = args.epochs * len(splits.train)
        recipe.compile(model, params, total_steps)
    print(f"[keras-wreg] method {method}: {recipe.description}")
    print(f"[keras-wreg] params: {json.dumps(params, default=str)}")

    histograms = kw_callbacks.WeightHistograms(out / "weight_histograms.png",
                                               title=f"{method}: binary latent weights")
    callbacks = recipe.callbacks(params, total_steps, model) + [histograms]
    callbacks += _tensorboard_callbacks(args, out, params, splits.train)
    start = time.perf_counter()
    with strategy.scope():
        teacher = _load_teacher(args.teacher)
        history = recipe.fit(model, splits.train, args.epochs,
                             validation_data=splits.validation, callbacks=callbacks,
                             params=params, verbose=args.verbose, backup_dir=backup,
                             teacher=teacher)
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
        "resumed_from_epoch": int(getattr(history, "resumed_from", 0)),
        "packed_size": size, "teacher": args.teacher,
        "grid_stats": kw_callbacks.grid_stats(model, alpha=_grid_alpha(params)),
    }
    if not args.no_export:
        metrics["tflite"] = _export_after_training(model, out, splits,
                                                   require_quantized=method != "float")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log_name = kw_callbacks.resume.EPOCH_LOG
    if (backup / log_name).is_file():
        shutil.copyfile(backup / log_name, out / log_name)
    shutil.rmtree(backup, ignore_errors=True)
    print(f"[keras-wreg] test accuracy: {test_accuracy:.4f}  (train time {train_seconds:.1f} s)")
    print(f"[keras-wreg] wrote {out}/model.keras, metrics.json, weight_histograms.png, "
          f"packed_weights.npz ({size['compression_ratio']:.1f}x smaller than float32)")
    return metrics


def _load_teacher(path):
    """The ``--teacher`` model (None without one); a missing or unreadable file is a user
    error."""
    if path is None:
        return None
    from keras_wreg._compat import keras

    if not Path(path).is_file():
        raise ValueError(f"--teacher: no model file at {path}")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # a corrupt or foreign file
        raise ValueError(f"--teacher: cannot load {path}: {exc}") from exc


def _export_after_training(model, out, splits, num_images=256, require_quantized=True):
    """``model.tflite`` (LCE) next to ``model.keras`` with its size and parity; a model that
    cannot be exported gets a warning (the trained ``.keras`` file is already written)."""
    from keras_wreg import export

    path = out / "model.tflite"
    try:
        export.to_tflite(model, path, target="lce", require_quantized=require_quantized)
    except (export.ExportError, ValueError, TypeError) as exc:
        print(f"[keras-wreg] warning: no model.tflite: {exc}", file=sys.stderr)
        return None
    report = _deploy_report(model, path, _test_images(splits, num_images))
    print(_format_deploy_report(path, "lce", report, str(splits.source)))
    return report


def _test_images(splits, num_images):
    import numpy as np

    images = []
    for x, _ in splits.test:
        images.append(np.asarray(x))
        if sum(len(i) for i in images) >= num_images:
            break
    return np.concatenate(images)[:num_images] if images else None


def _deploy_report(model, path, images):
    from keras_wreg import export

    report = {"path": str(path), "bytes": path.stat().st_size,
              "float32_bytes": export.float32_size(model)}
    report["ratio"] = report["float32_bytes"] / report["bytes"]
    flat = export.flatbuffer_report(path)
    report["binary_convolutions"] = len(flat["binary_convolutions"])
    report["packed_bytes"] = flat["packed_bytes"]
    report["parity"] = None
    if images is not None and len(images):
        parity = export.parity(model, path, images)
        parity.pop("mismatches")
        report["parity"] = parity
    return report


def _format_deploy_report(path, target, report, source):
    kib = 1024.0
    lines = [
        f"[keras-wreg] wrote {path} (target {target}): {report['bytes'] / kib:.1f} KiB; "
        f"float32 model {report['float32_bytes'] / kib:.1f} KiB: "
        f"{report['ratio']:.1f}x smaller",
        f"[keras-wreg] bit-packed: {report['binary_convolutions']} binary convolutions "
        f"(LceBconv2d), {report['packed_bytes'] / kib:.1f} KiB of 1-bit weights",
    ]
    parity = report.get("parity")
    if parity:
        lines.append(f"[keras-wreg] parity Keras vs TFLite on {parity['n']} test images "
                     f"({source}): top-1 agreement {100 * parity['agreement']:.2f} %, "
                     f"max |output difference| {parity['max_abs_diff']:.3g}")
    return "\n".join(lines)


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
        dataset = _run_dataset(args, path)
        splits = _load_test(args, dataset, model.input_shape[1:], path,
                            test_subset=args.parity_images)
        images, source = _test_images(splits, args.parity_images), str(dataset)
    report = _deploy_report(model, out, images)
    print(_format_deploy_report(out, args.target, report, source))
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


def _check_distributable(method, params, strategy):
    from keras_wreg import distribute

    distribute.check_distributable(method, params, strategy)


def _worker_out(strategy, out):
    """The chief writes to ``out``; another worker of a multi-worker run to
    ``out/worker-<index>`` (every worker must save, as TensorFlow's multi-worker guide says)."""
    from keras_wreg import distribute

    task, index, chief = distribute.worker_role(strategy)
    return out if chief else out / f"{task}-{index}"


def _distribute_model(model, strategy, args):
    """Synchronized BatchNorm (``--sync-batchnorm``): ``auto`` when the strategy has several
    replicas, ``always`` also on one (the same formulas as a multi-worker run: tf-keras' fused
    one-device BN updates its moving variance with the unbiased batch variance, the
    synchronized one with the biased variance), ``never`` keeps per-replica statistics."""
    from keras_wreg import distribute

    mode = getattr(args, "sync_batchnorm", "auto")
    if mode == "always" or (mode == "auto" and strategy.num_replicas_in_sync > 1):
        model = distribute.synchronize_batch_norm(model)
    return model


def _tensorboard_callbacks(args, out, params, train):
    """Keras' TensorBoard callback plus :class:`~keras_wreg.callbacks.QuantizationTensorBoard`
    for ``--tensorboard`` (placed last, so the recipe callbacks' log entries are written too)."""
    if getattr(args, "tensorboard", None) is None:
        return []
    from keras_wreg import callbacks as kw_callbacks
    from keras_wreg._compat import keras

    log_dir = Path(args.tensorboard) if args.tensorboard else out / "tensorboard"
    diagnostics = kw_callbacks.QuantizationTensorBoard(log_dir, alpha=_grid_alpha(params))
    diagnostics.set_probe_from_dataset(train, max_examples=256)
    print(f"[keras-wreg] TensorBoard logs: {log_dir}  (tensorboard --logdir {log_dir})")
    return [diagnostics, keras.callbacks.TensorBoard(str(log_dir), histogram_freq=0,
                                                     profile_batch=0)]

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
