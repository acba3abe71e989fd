r"""The training engine: one path from a job (recipe, model, data, budget, strategy, output
folder) to a run folder and its metrics, used by the CLI, the tuner's trials and the benchmarks.

:func:`run` takes a :class:`TrainJob` and writes, as training goes, ``run.json`` (the job),
``backup/`` (a ``BackupAndRestore`` checkpoint per stage) and ``backup/epochs.jsonl`` (one line
per completed epoch); a killed job given again with ``resume=True`` continues from its last
completed epoch. At the end it evaluates the test set once and writes ``model.keras``,
``packed_weights.npz``, ``model.tflite`` (Larq Compute Engine, with its parity on test images),
``weight_histograms.png`` and ``metrics.json``. It reports progress through a ``log`` callable
(the CLI prints); it prints nothing itself.

Kill-and-resume for ``fit`` is Keras' own ``BackupAndRestore`` plus a per-epoch log.
A resumable training stage (:func:`fit_stage`) adds two callbacks *after* the caller's:

1. :class:`EpochLog` appends one JSON line per completed epoch (``{"stage", "epoch", "time",
   **logs}``, flushed and fsynced) to ``<backup_dir>/epochs.jsonl``;
2. ``tf.keras.callbacks.BackupAndRestore(<backup_dir>/<stage>)`` writes a TensorFlow checkpoint
   of the model *and everything it tracks* (weights, optimizer iterations and slots, the state of
   keras_wreg's optimizer wrappers, regularizer variables such as :class:`ClusterReg`'s centres
   and step counter, quantizer temperatures) at the end of every epoch, and restores it when
   ``fit`` starts again, which then continues at the next epoch.

They come last so that callbacks that change the model or the logs at the end of an epoch
(centre re-seeding, statistics) do so before the backup is written. A kill loses at most the
epoch in progress. If it lands between the log line and the backup, the epoch is run again and
its new line supersedes the old one (:func:`read_epoch_log` keeps the last line per epoch).

Data order: a seeded ``shuffle(..., reshuffle_each_iteration=True)`` draws a new order each time
an iterator is created, so a fresh process would replay the first epoch's order. Before ``fit``,
:func:`fit_stage` creates (without consuming) one iterator per epoch the backup has completed,
which puts the shuffle where the uninterrupted run had it. Random augmentation and dropout draw
from TensorFlow's global generator, which is not checkpointed: with them a resumed run is
statistically, not bitwise, the same run.

Multi-stage recipes give every stage its own ``stage`` name. Backups are kept when a stage ends
(``delete_checkpoint=False``), so resuming a run killed in a later stage restores a finished
stage in zero epochs (its final state) and goes on with the next.
"""

import dataclasses
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np

from keras_wreg import callbacks as kw_callbacks
from keras_wreg import data, distribute, export
from keras_wreg._compat import backup_saved_epoch, keras, register, tf
from keras_wreg._validation import (
    check_bool, check_choice, check_int, check_optional, check_real, check_str)
from keras_wreg._validation import check_dataset, check_model, optional_data, validate_args

EPOCH_LOG = "epochs.jsonl"


def _plain(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return value if math.isfinite(value) else None


@register
class EpochLog(keras.callbacks.Callback):
    """Append one JSON line per completed epoch to ``path`` (flushed to disk at once).

    Args:
        path: the JSON-lines file (created with its folder if needed).
        stage: a label stored in every line (for multi-stage recipes).

    Example:
        ```python
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        model.compile("adam", "mse")
        model.fit(np.ones((8, 4)), np.ones((8, 2)), epochs=2, verbose=0,
                  callbacks=[kw.training.EpochLog("epochs.jsonl")])
        print(kw.training.read_epoch_log("epochs.jsonl")["train"][-1]["loss"])
        ```
    """

    def __init__(self, path, stage="train"):
        super().__init__()
        self.path = str(path)
        self.stage = str(stage)

    def on_epoch_end(self, epoch, logs=None):
        row = {"stage": self.stage, "epoch": int(epoch), "time": time.time()}
        row.update({k: _plain(v) for k, v in (logs or {}).items()})
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def get_config(self):
        return {"path": self.path, "stage": self.stage}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def read_epoch_log(path):
    """``{stage: [row, ...]}`` from an :class:`EpochLog` file, one row per epoch (the last line
    written for it), in epoch order; ``{}`` if there is no file. A torn last line (a kill during
    the write) is ignored."""
    path = Path(path)
    if not path.is_file():
        return {}
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        rows[(row["stage"], row["epoch"])] = row
    out = {}
    for (stage, _), row in sorted(rows.items(), key=lambda kv: kv[0][1]):
        out.setdefault(stage, []).append(row)
    return out


def history_from_log(rows):
    """A ``History.history``-style dict (metric -> list over epochs) from log rows."""
    keys = []
    for row in rows:
        keys += [k for k in row if k not in ("stage", "epoch", "time") and k not in keys]
    return {k: [row.get(k, float("nan")) for row in rows] for k in keys}


def completed_epochs(stage_dir):
    """Epochs a ``BackupAndRestore`` backup in ``stage_dir`` has completed (0 if none)."""
    epoch = backup_saved_epoch(stage_dir)
    return 0 if epoch is None else epoch + 1


@validate_args(model=check_model, train=check_dataset, validation_data=optional_data)
def fit_stage(model, train, epochs, *, backup_dir=None, stage="train", callbacks=(),
              distiller=None, **fit_kwargs):
    """``model.fit(train, epochs=epochs, ...)``, resumable when ``backup_dir`` is given.

    With ``distiller`` (a :class:`~keras_wreg.distillation.Distiller`), the stage distils its
    teacher into ``model`` (attached for the stage, detached after).

    With ``backup_dir``, the stage's backup is ``<backup_dir>/<stage>`` and its epochs are
    logged to ``<backup_dir>/epochs.jsonl``; the returned History holds *every* epoch of the
    stage (those run before a kill too, from the log), and ``history.resumed_from`` the number
    of epochs restored from the backup (0 for a fresh start).

    Raises:
        ValueError: if ``stage`` is empty or contains a path separator.
    """
    if distiller is not None:
        distiller.attach(model)
        try:
            return fit_stage(model, train, epochs, backup_dir=backup_dir, stage=stage,
                             callbacks=callbacks, **fit_kwargs)
        finally:
            distiller.detach(model)
    callbacks = list(callbacks)
    if backup_dir is None:
        history = model.fit(train, epochs=epochs, callbacks=callbacks, **fit_kwargs)
        history.resumed_from = 0
        return history
    if not stage or os.sep in stage or "/" in stage:
        raise ValueError(f"`stage` must be a plain folder name, got {stage!r}.")
    stage_dir = Path(backup_dir) / stage
    done = completed_epochs(stage_dir)
    if hasattr(train, "cardinality"):
        for _ in range(min(done, epochs)):
            iter(train)  # advance a seeded reshuffling pipeline past the completed epochs
    log_path = Path(backup_dir) / EPOCH_LOG
    callbacks += [EpochLog(log_path, stage=stage),
                  keras.callbacks.BackupAndRestore(str(stage_dir), save_freq="epoch",
                                                   delete_checkpoint=False)]
    history = model.fit(train, epochs=epochs, callbacks=callbacks, **fit_kwargs)
    rows = [r for r in read_epoch_log(log_path).get(stage, []) if r["epoch"] < epochs]
    if rows:
        history.history = history_from_log(rows)
        history.epoch = [r["epoch"] for r in rows]
    history.resumed_from = min(done, epochs)
    return history


# --------------------------------------------------------------------------- the engine

#: files of a run folder (``backup/`` exists only while the run is unfinished)
RUN_FILE, METRICS_FILE, BACKUP_DIR = "run.json", "metrics.json", "backup"


#: ``TrainJob.sync_batchnorm`` values
SYNC_BATCHNORM = ("auto", "always", "never")


class UnfinishedRunError(ValueError):
    """The output folder holds an unfinished run and the job does not resume it.

    Example:
        ```python
        import os
        os.makedirs("runs/killed/backup", exist_ok=True)  # a run killed mid-way leaves backup/
        job = kw.TrainJob(kw.recipes.get("larq"), params={}, dataset="digits", out="runs/killed")
        try:
            kw.training.run(job)
        except kw.training.UnfinishedRunError as err:
            print(err)  # resume=True continues it
        ```
    """


@dataclasses.dataclass
class TrainJob:
    """What :func:`run` trains: a recipe with its hyperparameters, a network, data, a budget,
    a strategy and an output folder.

    ``width``, ``epochs``, ``batch_size``, ``seed``, ``validation_split``, ``augment``,
    ``train_subset``, ``test_subset`` and ``data_dir`` mean what they mean for
    :func:`keras_wreg.data.load_dataset` and the model builders; every field is checked when
    the job is made (a ``ValueError`` naming it).

    Attributes:
        recipe: a :class:`~keras_wreg.recipes.Recipe` instance (``recipes.get(name)``).
        params: the recipe's hyperparameters (completed by ``recipe.params``).
        dataset: a dataset name, folder or ``"digits"`` for :func:`keras_wreg.data.load_dataset`.
        out: the run folder.
        model: the network (default: the recipe's ``default_model``).
        strategy: a ``tf.distribute.Strategy`` (default: the current one); build it before any
            other TensorFlow op (:func:`keras_wreg.distribute.make_strategy`).
        sync_batchnorm: ``"auto"`` (synchronized BatchNorm with several replicas), ``"always"``
            or ``"never"``.
        tensorboard: a log folder for TensorBoard and the quantization diagnostics; ``""`` for
            ``<out>/tensorboard``; None for none.
        teacher: a float model (or ``.keras`` path) to distil into the student, or None.
        callbacks: extra Keras callbacks (after the recipe's).
        export: also write ``model.tflite`` through Larq Compute Engine.
        resume: continue the unfinished run in ``out`` (else ``out`` must not hold one).
        deterministic: TensorFlow op determinism.
        verbose: Keras' ``verbose``.
        record: what ``run.json`` records (default: the job's plain fields).
        name: the method's name in the metrics (default: ``recipe.name``).

    Example:
        ```python
        job = kw.TrainJob(kw.recipes.get("wreg"), params={}, dataset="digits", out="runs/example",
                          epochs=1, width=2, export=False, verbose=0)
        metrics = kw.training.run(job, log=print)  # run.json, model.keras, metrics.json in runs/example
        print(metrics["test_accuracy"])
        ```
    """

    recipe: object
    params: dict
    dataset: object
    out: object
    model: object = None
    width: int = 16
    epochs: int = 3
    batch_size: int = 128
    seed: int = 0
    validation_split: float = 0.1
    augment: bool = False
    train_subset: object = None
    test_subset: object = None
    data_dir: object = None
    strategy: object = None
    sync_batchnorm: str = "auto"
    tensorboard: object = None
    teacher: object = None
    callbacks: tuple = ()
    export: bool = True
    resume: bool = False
    deterministic: bool = False
    verbose: int = 1
    record: object = None
    name: object = None

    def __post_init__(self):
        if not all(callable(getattr(self.recipe, attr, None))
                   for attr in ("params", "build_model", "compile", "fit")):
            raise TypeError(f"`recipe` must be a keras_wreg Recipe (recipes.get(name)), got "
                            f"{self.recipe!r}.")
        if self.params is not None and not isinstance(self.params, dict):
            raise TypeError(f"`params` must be a dict of hyperparameters, got {self.params!r}.")
        self.width = check_int(self.width, "width", low=1, high=4096)
        self.epochs = check_int(self.epochs, "epochs", low=1, high=100_000)
        self.batch_size = check_int(self.batch_size, "batch_size", low=1, high=2**20)
        self.seed = check_int(self.seed, "seed", low=0)
        self.validation_split = check_real(self.validation_split, "validation_split", low=0.0,
                                           high=1.0, high_open=True)
        for field in ("train_subset", "test_subset"):
            setattr(self, field, check_optional(check_int, getattr(self, field), field, low=1))
        self.sync_batchnorm = check_choice(self.sync_batchnorm, SYNC_BATCHNORM, "sync_batchnorm")
        self.verbose = check_choice(self.verbose, (0, 1, 2), "verbose")
        for field in ("augment", "export", "resume", "deterministic"):
            setattr(self, field, check_bool(getattr(self, field), field))
        for field in ("out", "data_dir", "tensorboard"):
            value = getattr(self, field)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"`{field}` must be a folder path, got {value!r}.")
        if self.out is None:
            raise TypeError("`out` must be a folder path, got None.")
        self.name = check_optional(check_str, self.name, "name")


def finished_metrics(out):
    """The metrics of the finished run in folder ``out``, or None (no run, or unfinished)."""
    out = Path(out)
    if (out / METRICS_FILE).is_file() and not (out / BACKUP_DIR).exists():
        return json.loads((out / METRICS_FILE).read_text())
    return None


def load_teacher(teacher):
    """A teacher model from a model or a ``.keras`` path (None for None); ValueError for a
    missing or unreadable file."""
    if teacher is None or isinstance(teacher, keras.Model):
        return teacher
    path = Path(teacher)
    if not path.is_file():
        raise ValueError(f"`teacher` (--teacher): no model file at {path}")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # a corrupt or foreign file
        raise ValueError(f"`teacher` (--teacher): cannot load {path}: {exc}") from exc


def sample_images(dataset, count):
    """The first ``count`` images of a batched ``(x, y)`` dataset (None if it is empty)."""
    images, seen = [], 0
    for x, _ in dataset:
        images.append(np.asarray(x))
        seen += len(images[-1])
        if seen >= count:
            break
    return np.concatenate(images)[:count] if images else None


def grid_alpha(params):
    """The grid scale of a recipe's params for the diagnostics (1 when it has none)."""
    alpha = params.get("alpha", 1.0)
    return alpha if isinstance(alpha, str) or (isinstance(alpha, (int, float)) and alpha > 0) \
        else 1.0


def _worker_out(strategy, out):
    """The chief writes to ``out``; another worker of a multi-worker run to
    ``out/<task>-<index>`` (every worker must save, as TensorFlow's multi-worker guide says)."""
    task, index, chief = distribute.worker_role(strategy)
    return out if chief else out / f"{task}-{index}"


def _tensorboard_callbacks(job, out, train, log):
    """Keras' TensorBoard callback plus :class:`~keras_wreg.callbacks.QuantizationTensorBoard`
    (last, so the recipe callbacks' log entries are written too)."""
    if job.tensorboard is None:
        return []
    log_dir = Path(job.tensorboard) if job.tensorboard else out / "tensorboard"
    diagnostics = kw_callbacks.QuantizationTensorBoard(log_dir, alpha=grid_alpha(job.params))
    diagnostics.set_probe_from_dataset(train, max_examples=256)
    log(f"TensorBoard logs: {log_dir}  (tensorboard --logdir {log_dir})")
    return [diagnostics, keras.callbacks.TensorBoard(str(log_dir), histogram_freq=0,
                                                     profile_batch=0)]


def _export(model, out, splits, require_quantized, log, num_images=256):
    """``model.tflite`` (LCE) next to ``model.keras`` with its deploy report; a model that
    cannot be exported gets a warning (the trained ``.keras`` file is already written)."""
    path = out / "model.tflite"
    try:
        export.to_tflite(model, path, target="lce", require_quantized=require_quantized)
    except (export.ExportError, ValueError, TypeError) as exc:
        log(f"warning: no model.tflite: {exc}")
        return None
    report = export.deploy_report(model, path, sample_images(splits.test, num_images))
    for line in export.format_deploy_report(report, "lce", str(splits.source)):
        log(line)
    return report


def _plain_record(job):
    fields = {f.name: getattr(job, f.name) for f in dataclasses.fields(job)
              if f.name not in ("recipe", "strategy", "callbacks", "record", "teacher")}
    fields["teacher"] = job.teacher if isinstance(job.teacher, (str, os.PathLike)) else None
    return {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in fields.items()}


def run(job, log=None):
    """Train, evaluate, save and export one :class:`TrainJob`; returns its metrics (also in
    ``<out>/metrics.json``). ``log(message)`` receives progress lines (default: none).

    A finished run given again with ``resume=True`` returns its metrics without training.

    Raises:
        ValueError: ``out`` holds an unfinished run and ``resume`` is off; the recipe cannot run
            under the strategy; bad parameters or data.
    """
    log = log or (lambda message: None)
    name = job.name or job.recipe.name
    out = Path(job.out)
    if job.resume:
        finished = finished_metrics(out)
        if finished is not None:
            log(f"{out} is a finished run; nothing to resume.")
            return finished
    strategy = job.strategy or tf.distribute.get_strategy()
    out = _worker_out(strategy, out)
    backup = out / BACKUP_DIR
    if not job.resume and backup.exists():
        raise UnfinishedRunError(f"{out} holds an unfinished run (backup/); continue it with "
                                 "--resume (resume=True) or choose another --out.")
    if job.deterministic:
        tf.config.experimental.enable_op_determinism()
    params = job.recipe.params(job.params)
    job.recipe.check_distributable(params, strategy)
    model_name = job.model or job.recipe.default_model
    keras.utils.set_random_seed(job.seed)

    splits = data.load_dataset(
        job.dataset, data_dir=job.data_dir, batch_size=job.batch_size, augment=job.augment,
        validation_split=job.validation_split, train_subset=job.train_subset,
        test_subset=job.test_subset, seed=job.seed)
    log(f"data: {job.dataset} from {splits.source}: {splits.num_train} train / "
        f"{splits.num_validation} validation / {splits.num_test} test, input "
        f"{splits.input_shape}, {splits.num_classes} classes")

    out.mkdir(parents=True, exist_ok=True)
    record = dict(job.record) if job.record is not None else _plain_record(job)
    record["dataset"] = str(job.dataset)  # as resolved: a resume trains on the same data
    (out / RUN_FILE).write_text(json.dumps(record, indent=2, default=str))

    with strategy.scope():
        model = job.recipe.build_model(model_name, splits.input_shape, splits.num_classes,
                                       params, width=job.width)
        if job.sync_batchnorm == "always" or (job.sync_batchnorm == "auto"
                                              and strategy.num_replicas_in_sync > 1):
            model = distribute.synchronize_batch_norm(model)
        total_steps = job.epochs * len(splits.train)
        job.recipe.compile(model, params, total_steps)
    log(f"method {name}: {job.recipe.description}")
    log(f"params: {json.dumps(params, default=str)}")

    histograms = kw_callbacks.WeightHistograms(out / "weight_histograms.png",
                                               title=f"{name}: binary latent weights")
    callbacks = job.recipe.callbacks(params, total_steps, model) + [histograms]
    callbacks += list(job.callbacks) + _tensorboard_callbacks(job, out, splits.train, log)
    start = time.perf_counter()
    with strategy.scope():
        teacher = load_teacher(job.teacher)
        history = job.recipe.fit(model, splits.train, job.epochs,
                                 validation_data=splits.validation, callbacks=callbacks,
                                 params=params, verbose=job.verbose, backup_dir=backup,
                                 teacher=teacher)
    train_seconds = time.perf_counter() - start
    for line in getattr(history, "report", ()):
        log(line)
    test_loss, test_accuracy = model.evaluate(splits.test, verbose=0)[:2]

    log(export.model_summary_text(model))
    export.save_model(model, out / "model.keras")
    size = export.export_packed_weights(model, out / "packed_weights.npz")
    metrics = {
        "method": name, "model": model_name, "dataset": str(job.dataset),
        "source": splits.source, "width": job.width, "epochs": job.epochs,
        "batch_size": job.batch_size, "seed": job.seed,
        "validation_split": job.validation_split, "num_train": splits.num_train,
        "num_validation": splits.num_validation, "num_test": splits.num_test,
        "params": params, "test_accuracy": float(test_accuracy), "test_loss": float(test_loss),
        "train_seconds": train_seconds,
        "history": {k: [float(x) for x in v] for k, v in history.history.items()},
        "resumed_from_epoch": int(getattr(history, "resumed_from", 0)),
        "packed_size": size, "teacher": record.get("teacher"),
        "grid_stats": kw_callbacks.grid_stats(model, alpha=grid_alpha(params)),
    }
    if job.export:
        metrics["tflite"] = _export(model, out, splits, job.recipe.quantizes, log)
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    if (backup / EPOCH_LOG).is_file():
        shutil.copyfile(backup / EPOCH_LOG, out / EPOCH_LOG)
    shutil.rmtree(backup, ignore_errors=True)
    log(f"test accuracy: {test_accuracy:.4f}  (train time {train_seconds:.1f} s)")
    log(f"wrote {out}/model.keras, metrics.json, weight_histograms.png, packed_weights.npz "
        f"({size['compression_ratio']:.1f}x smaller than float32)")
    return metrics


__all__ = ["TrainJob", "run", "UnfinishedRunError", "finished_metrics", "load_teacher", "sample_images", "grid_alpha",
           "EpochLog", "read_epoch_log", "history_from_log", "completed_epochs", "fit_stage",
           "EPOCH_LOG", "RUN_FILE", "METRICS_FILE", "BACKUP_DIR"]
