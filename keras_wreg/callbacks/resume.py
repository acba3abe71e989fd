r"""Kill-and-resume for ``fit``: Keras' own ``BackupAndRestore`` plus a per-epoch log.

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

import json
import math
import os
import time
from pathlib import Path

from keras_wreg._compat import backup_saved_epoch, keras, register
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


__all__ = ["EpochLog", "read_epoch_log", "history_from_log", "completed_epochs", "fit_stage",
           "EPOCH_LOG"]
