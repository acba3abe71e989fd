"""Kill and resume: a SIGKILLed ``keras-wreg train`` continues from its last completed epoch;
the state a resume needs lives in variables that checkpoints carry; callbacks round-trip their
configs."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import keras_wreg as kw
from keras_wreg import callbacks as kwc
from keras_wreg import recipes, training
from keras_wreg._compat import keras, tf

EPOCHS = 4
KILL_AFTER = 2  # epoch-log lines before the SIGKILL
TRAIN_ARGS = ["train", "--dataset", "digits", "--epochs", str(EPOCHS), "--batch-size", "32",
              "--width", "4", "--seed", "3", "--verbose", "0", "--deterministic"]
#: resumed vs uninterrupted, same seed, op determinism: the only differences allowed are
#: float reassociation; measured max |difference| here: 0.0 (bitwise equal)
WEIGHT_ATOL = 1e-5


def _cli(out, *extra):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen([sys.executable, "-m", "keras_wreg.cli", *TRAIN_ARGS, "--out",
                             str(out), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def _rows(log):
    return len(log.read_text().splitlines()) if log.is_file() else 0


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    reference = _cli(whole)  # runs alongside the run that gets killed
    victim = _cli(killed)
    log = killed / "backup" / "epochs.jsonl"
    deadline = time.time() + 240
    # killed as soon as its KILL_AFTER-th epoch-log line is written: the row precedes the
    # epoch's backup, so the kill lands between the two or just after the backup (both are
    # allowed below: at most one epoch is lost)
    while _rows(log) < KILL_AFTER and victim.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert victim.poll() is None, ("the run ended before the kill", victim.stderr.read()[-2000:])
    rows_at_kill = _rows(log)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert rows_at_kill < EPOCHS and not (killed / "metrics.json").exists()

    resumed = _cli(killed, "--resume")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    out_ref, err_ref = reference.communicate(timeout=300)
    assert reference.returncode == 0, err_ref[-3000:]

    metrics = json.loads((killed / "metrics.json").read_text())
    expected = json.loads((whole / "metrics.json").read_text())
    assert len(metrics["history"]["loss"]) == EPOCHS == len(expected["history"]["loss"])
    # at most one epoch lost: the resumed run restarted at the last epoch logged before the
    # kill (or the one before, when the kill fell between the log line and the backup)
    assert rows_at_kill - 1 <= metrics["resumed_from_epoch"] <= rows_at_kill, (
        rows_at_kill, metrics["resumed_from_epoch"])
    assert metrics["resumed_from_epoch"] >= 1
    assert not (killed / "backup").exists() and (killed / "epochs.jsonl").is_file()
    a = keras.models.load_model(whole / "model.keras")
    b = keras.models.load_model(killed / "model.keras")
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wb, wa, atol=WEIGHT_ATOL, rtol=0)
    assert int(b.optimizer.iterations) == int(a.optimizer.iterations)
    np.testing.assert_allclose(metrics["history"]["loss"], expected["history"]["loss"],
                               atol=1e-5)
    assert metrics["test_accuracy"] == pytest.approx(expected["test_accuracy"], abs=1e-6)


def test_resume_of_a_finished_run_does_nothing_and_unfinished_run_is_not_overwritten(tmp_path):
    from keras_wreg import cli

    out = tmp_path / "run"
    (out / "backup").mkdir(parents=True)
    with pytest.raises(SystemExit, match="--resume"):
        cli.main(["train", "--dataset", "digits", "--out", str(out), "--epochs", "1"])
    with pytest.raises(SystemExit, match="--out"):
        cli.main(["train", "--resume"])
    (out / "backup").rmdir()
    (out / "metrics.json").write_text(json.dumps({"test_accuracy": 0.5}))
    assert cli.run_train(cli.build_parser().parse_args(
        ["train", "--out", str(out), "--resume"])) == {"test_accuracy": 0.5}


def _toy(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64")


def _dataset(seed=0):
    x, y = _toy()
    return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(96, seed=seed).batch(16)


class _Stop(keras.callbacks.Callback):
    """Raise after ``n`` epochs: a crash at an epoch boundary, in-process."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.n:
            raise KeyboardInterrupt


def _cluster_setup(seed=0):
    keras.utils.set_random_seed(seed)
    recipe = recipes.get("cluster")
    params = recipe.params({"num_centers": 3, "finetune": 1, "bn_recalibrate": 2,
                            "delay": 0.25, "warmup": 0.5})
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8, activation="relu", kernel_regularizer=recipe.make_regularizer(params)),
        keras.layers.Dense(2, activation="softmax",
                           kernel_regularizer=recipe.make_regularizer(params)),
    ])
    recipe.compile(model, params, 6 * 4)
    return recipe, params, model


def test_multistage_recipe_resumes_each_stage(tmp_path):
    """Cluster recipe (train, snap, fine-tune) interrupted in stage 1, then resumed to the end
    (the fine-tuning stage runs in the resumed call, from the recomputed snap)."""
    tf.config.experimental.enable_op_determinism()
    recipe, params, model = _cluster_setup()
    whole = recipe.fit(model, _dataset(), 4, params=params, verbose=0)
    expected = model.get_weights()

    backup = tmp_path / "backup"
    for crash in ([_Stop(2)], None):  # killed after 2 epochs of stage 1, then run to the end
        recipe, params, model = _cluster_setup()
        try:
            history = recipe.fit(model, _dataset(), 4, params=params, verbose=0,
                                 backup_dir=backup, callbacks=crash or ())
        except KeyboardInterrupt:
            continue
    # the crash came from a user callback, before that epoch's backup: epoch 2 is run again
    assert history.resumed_from == 1
    assert len(history.history["loss"]) == 4 == len(whole.history["loss"])
    for a, b in zip(expected, model.get_weights()):
        np.testing.assert_allclose(b, a, atol=1e-6)
    # a finished stage restores in zero epochs: a third call changes nothing
    recipe, params, again = _cluster_setup()
    recipe.fit(again, _dataset(), 4, params=params, verbose=0, backup_dir=backup)
    for a, b in zip(expected, again.get_weights()):
        np.testing.assert_allclose(b, a, atol=1e-6)


def test_cluster_step_counter_is_checkpointed(tmp_path):
    recipe, params, model = _cluster_setup()
    callback = kw.ClusterCallback(warmup_steps=6, delay_steps=4)
    model.fit(_dataset(), epochs=1, verbose=0, callbacks=[callback])
    assert callback.step == 6
    regs = [reg for _, _, reg in kw.regularizers.clustered_weights(model)]
    assert all(int(reg.step.numpy()) == 6 for reg in regs)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    centers = [reg.get_centers() for reg in regs]
    _, _, fresh = _cluster_setup()
    tf.train.Checkpoint(model=fresh).restore(path)
    resumed = kw.ClusterCallback(warmup_steps=6, delay_steps=4)
    resumed.set_model(fresh)
    resumed.on_train_begin()
    assert resumed.step == 6  # warm-up continues, the delayed re-initialisation does not rerun
    fresh_regs = [reg for _, _, reg in kw.regularizers.clustered_weights(fresh)]
    for c, reg in zip(centers, fresh_regs):
        np.testing.assert_array_equal(reg.get_centers(), c)
    assert float(fresh_regs[0].warmup.numpy()) == pytest.approx(resumed.factor(6))


CALLBACKS = [
    lambda tmp: kw.ClusterCallback(warmup_steps=3, delay_steps=2, snap="epoch", init="linear"),
    lambda tmp: kw.GridStats(alpha="channel", tolerance=0.2),
    lambda tmp: kw.ActivationBalance(probe=np.zeros((2, 3), "float32"), every=2),
    lambda tmp: kwc.WeightHistograms(str(tmp / "h.png"), grid=(-0.5, 0.5), title="t"),
    lambda tmp: kwc.TernaryStats(delta=0.6),
    lambda tmp: kw.AlternateUpdate(variant="B", iterations=2),
    lambda tmp: kw.TemperatureScheduler(2.0, 50.0, schedule="cosine"),
    lambda tmp: training.EpochLog(str(tmp / "log.jsonl"), stage="s"),
    lambda tmp: kwc.QuantizationTensorBoard(str(tmp / "tb"), alpha="channel",
                                            probe=np.ones((2, 3), "float32"), histograms=False),
]


@pytest.mark.parametrize("make", CALLBACKS, ids=lambda m: "")
def test_every_callback_round_trips_its_config(tmp_path, make):
    callback = make(tmp_path)
    config = keras.utils.serialize_keras_object(callback)
    assert config["registered_name"].startswith("keras_wreg>")
    json.dumps(config)  # plain Python values
    clone = keras.utils.deserialize_keras_object(json.loads(json.dumps(config)))
    assert type(clone) is type(callback)
    assert clone.get_config() == callback.get_config()


def test_epoch_log_keeps_the_last_line_per_epoch_and_ignores_a_torn_line(tmp_path):
    log = tmp_path / "e.jsonl"
    lines = [{"stage": "a", "epoch": 0, "time": 1, "loss": 3.0},
             {"stage": "a", "epoch": 1, "time": 2, "loss": 2.0},
             {"stage": "a", "epoch": 1, "time": 3, "loss": 1.5}]
    log.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"stage": "a", "ep')
    rows = training.read_epoch_log(log)["a"]
    assert [r["loss"] for r in rows] == [3.0, 1.5]
    assert training.history_from_log(rows) == {"loss": [3.0, 1.5]}
    assert training.completed_epochs(tmp_path / "nothing") == 0
