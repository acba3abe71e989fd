"""``keras-wreg`` command line: train and evaluate a quantized network (and tune it).

``keras-wreg train`` with no arguments runs the offline default: method ``wreg`` on a small
binary VGG-small, on MNIST from a local copy if one is found (``../shared/data``,
``$KERAS_WREG_DATA_DIR``), else on scikit-learn's bundled 8×8 digits — real data either way.
"""

import argparse
import json
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


def run_train(args):
    """The ``train`` job. Returns the metrics dict (also written to ``metrics.json``)."""
    strategy = _setup_scale(args)  # first: a multi-worker strategy precedes any TF op
    from keras_wreg import callbacks as kw_callbacks
    from keras_wreg import data, export, recipes
    from keras_wreg._compat import keras

    method, model_name, overrides, dataset = _resolve_config(args)
    recipe = recipes.get(method)
    params = recipe.params(overrides)
    _check_distributable(method, params, strategy)
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
    out = _worker_out(strategy, out)
    out.mkdir(parents=True, exist_ok=True)

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
        history = recipe.fit(model, splits.train, args.epochs, validation_data=splits.test,
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
        "seed": args.seed, "params": params, "test_accuracy": float(test_accuracy),
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
