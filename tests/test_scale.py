"""Distributed training, mixed precision, TensorBoard diagnostics (issue 15)."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from keras_wreg import callbacks as kw_callbacks
from keras_wreg import cli, data, distribute, recipes
from keras_wreg._compat import keras, lq, tf

ROOT = Path(__file__).resolve().parent.parent
#: tolerance of the two-worker run vs one process with the same global batch (both with
#: synchronized BN); measured max |difference| of any weight: 6.8e-6 (float reduction order).
MULTI_WORKER_TOL = 1e-4


@pytest.fixture(autouse=True)
def _float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def _launcher():
    spec = importlib.util.spec_from_file_location(
        "multi_worker_train", ROOT / "examples" / "multi_worker_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _weights(path):
    from keras_wreg import export

    return export.load_model(path).get_weights()


# ----------------------------------------------------------------------------- distribution
@pytest.mark.slow
def test_two_workers_on_loopback_agree_and_match_one_process(tmp_path, capsys):
    args = ["--dataset", "digits", "--width", "4", "--batch-size", "32", "--train-subset",
            "128", "--test-subset", "32", "--epochs", "1", "--verbose", "0", "--seed", "0",
            "--sync-batchnorm", "always"]
    start = time.perf_counter()
    old = os.getcwd()
    os.chdir(ROOT)  # the workers import this worktree's keras_wreg
    try:
        results = _launcher().launch(args + ["--out", str(tmp_path / "multi")], workers=2,
                                     timeout=420, log_dir=str(tmp_path))
    finally:
        os.chdir(old)
    wall = time.perf_counter() - start
    for index, (code, log) in results.items():
        assert code == 0, f"worker {index} failed:\n{log[-3000:]}"
    assert "2 replica(s), this process is worker 0 (chief)" in results[0][1]
    chief = _weights(tmp_path / "multi" / "model.keras")
    other = _weights(tmp_path / "multi" / "worker-1" / "model.keras")
    for a, b in zip(chief, other):  # synchronous all-reduce: bit-identical replicas
        np.testing.assert_array_equal(a, b)

    cli.main(["train", *args, "--out", str(tmp_path / "single")])
    single = _weights(tmp_path / "single" / "model.keras")
    initial = keras.models.clone_model(keras.models.load_model(
        tmp_path / "single" / "model.keras", compile=False)).get_weights()
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(chief, single))
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(single, initial))
    print(f"two workers vs one process: max |dw| = {diff:.2e} (wall {wall:.0f} s)")
    assert diff <= MULTI_WORKER_TOL < moved  # training moved weights far more than the gap
    metrics = [json.loads((tmp_path / p / "metrics.json").read_text())
               for p in ("multi", "single")]
    assert metrics[0]["history"]["loss"] == pytest.approx(metrics[1]["history"]["loss"],
                                                          rel=1e-4)


@pytest.mark.slow
def test_methods_under_two_replica_mirrored_strategy():
    """wreg with pull (CosineMomentum over DecoupledRegularization) and cluster (ClusterReg
    centres, ClusterCallback, snap, fine-tune) on two logical CPUs equal one device; the
    two-stage ternary recipe (TemperatureScheduler) trains with finite weights."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "mirrored_methods.py"), "wreg", "cluster",
         "ternary"], capture_output=True, text=True, timeout=900, cwd=ROOT,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    results = {r["method"]: r for r in (json.loads(line[len("RESULT "):])
                                         for line in proc.stdout.splitlines()
                                         if line.startswith("RESULT "))}
    assert set(results) == {"wreg", "cluster", "ternary"}, proc.stdout[-2000:] + proc.stderr[-3000:]
    for method, r in results.items():
        assert r["replicas"] == 2 and r["finite"], r
    for method in ("wreg", "cluster"):
        assert results[method]["max_abs_diff"] < 1e-4, results[method]
    # ternary: stage 1 rebuilds the model from its config (per-replica BN statistics there)
    assert results["ternary"]["loss_two"] == pytest.approx(results["ternary"]["loss_one"],
                                                           rel=0.05)


def test_strategy_arguments_are_checked(monkeypatch):
    with pytest.raises(ValueError, match="strategy"):
        distribute.make_strategy("parameter_server")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribute.make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="JSON"):
        distribute.check_tf_config()
    bad_index = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}
    with pytest.raises(ValueError, match="index"):
        distribute.check_tf_config(bad_index)
    with pytest.raises(ValueError, match="task"):
        distribute.check_tf_config({"cluster": {"worker": ["a:1"]}, "task": {"type": "ps"}})
    good = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    assert distribute.check_tf_config(good) == ("worker", 1, 2)
    assert distribute.worker_role(tf.distribute.get_strategy()) == (None, 0, True)
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "--strategy", "tpu"])


def test_alternate_update_is_refused_under_a_strategy():
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
    hwgq = recipes.get("hwgq")
    params = hwgq.params({"finetune": "alternate"})
    with pytest.raises(ValueError, match="AlternateUpdate"):
        hwgq.check_distributable(params, mirrored)
    hwgq.check_distributable(params, tf.distribute.get_strategy())  # fine
    hwgq.check_distributable(hwgq.params({"finetune": "full"}), mirrored)
    for name in recipes.RECIPES:  # every other method trains through Model.fit
        if name != "hwgq":
            recipes.get(name).check_distributable(recipes.get(name).params(), mirrored)


def test_synchronize_batch_norm_keeps_weights_and_outputs():
    model = recipes.get("wreg").build_model("vgg_small", (8, 8, 1), 10,
                                            recipes.get("wreg").params(), width=2)
    synced = distribute.synchronize_batch_norm(model)
    bns = [l for l in synced.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and all(l.synchronized for l in bns)
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(model(x), synced(x), atol=1e-6)
    assert distribute.synchronize_batch_norm(synced) is synced  # nothing left to change


# ----------------------------------------------------------------------------- mixed precision
@pytest.fixture(scope="module")
def digits_tiny():
    return data.load_dataset("digits", batch_size=32, train_subset=64, test_subset=32)


def _train_tiny(method, precision, splits, width=2):
    distribute.set_mixed_precision(precision)
    recipe = recipes.get(method)
    params = recipe.params({"bn_recalibrate": 1} if method == "cluster" else None)
    model = recipe.build_model(recipe.default_model, splits.input_shape, splits.num_classes,
                               params, width=width)
    before = [w.copy() for w in model.get_weights()]
    recipe.compile(model, params, 4)
    history = recipe.fit(model, splits.train, 2, callbacks=recipe.callbacks(params, 4, model),
                         params=params, verbose=0)
    return model, before, history


@pytest.mark.parametrize("method,precision", [
    *[(m, "bfloat16") for m in ("larq", "wreg", "ste_tern", "ternary", "cluster", "hwgq",
                                "fda")],
    ("wreg", "float16"),      # LossScaleOptimizer around CosineMomentum
    ("ternary", "float16"),
])
def test_every_method_trains_under_mixed_precision(method, precision, digits_tiny):
    model, before, history = _train_tiny(method, precision, digits_tiny,
                                         width=4 if method == "fda" else 2)
    policy = "mixed_" + precision
    assert keras.mixed_precision.global_policy().name == policy
    compute = [l.compute_dtype for l in model.layers if isinstance(
        l, (lq.layers.QuantConv2D, keras.layers.Conv2D))]
    assert compute and set(compute) == {precision}  # convolutions run in low precision
    assert model.layers[-1].dtype_policy.compute_dtype == "float32"  # softmax stays float32
    assert model.output.dtype == tf.float32
    assert all(np.isfinite(v) for v in history.history["loss"])
    after = model.get_weights()
    floats = [w for w in after if np.issubdtype(w.dtype, np.floating)]  # (ClusterReg's int step)
    assert floats and all(w.dtype == np.float32 and np.isfinite(w).all() for w in floats)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))  # it trained
    if precision == "float16":
        assert type(model.optimizer).__name__ == "LossScaleOptimizerV3"


def test_mixed_precision_argument_is_checked():
    with pytest.raises(ValueError, match="mixed_precision"):
        distribute.set_mixed_precision("int8")
    assert distribute.set_mixed_precision("bfloat16") == "float32"
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "--mixed-precision", "float8"])


# ----------------------------------------------------------------------------- TensorBoard
def _tags(log_dir):
    tags = set()
    for path in Path(log_dir).rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags.add((path.parent.name, value.tag))
    return tags


def test_diagnostics_of_every_kind_reach_tensorboard(tmp_path):
    """One model with a binary, a ternary and a clustered kernel and a binarized activation."""
    import keras_wreg as kw

    inputs = keras.Input((8, 8, 1))
    x = lq.layers.QuantConv2D(4, 3, kernel_quantizer="ste_sign", use_bias=False,
                              kernel_constraint=lq.constraints.WeightClip(2.0),
                              kernel_regularizer=kw.WReg(strength=1e-4), name="binary")(inputs)
    x = lq.quantizers.SteSign()(x)
    x = lq.layers.QuantConv2D(4, 3, kernel_quantizer=kw.RescaledSigmoidTernary(),
                              use_bias=False, name="ternary")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="clustered",
                                 kernel_regularizer=kw.ClusterReg(4))(x)
    model = keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 8, 8, 1)).astype("float32"), rng.integers(0, 10, 64)
    board = kw_callbacks.QuantizationTensorBoard(tmp_path, probe=x[:32])
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[
        kw.ClusterCallback(), kw.TemperatureScheduler(1.0, 10.0), board,
        keras.callbacks.TensorBoard(str(tmp_path), profile_batch=0)])
    tags = _tags(tmp_path)
    expected = {"grid/quant_error", "grid/near_grid", "grid/sign_flip_rate", "ternary/sparsity",
                "ternary/temperature", "cluster/usage", "activation/positive_fraction",
                "activation/channel_imbalance", "latent/binary", "latent/ternary",
                "latent/clustered"}
    assert {("diagnostics", t) for t in expected} <= tags, sorted(tags)
    assert ("train", "epoch_loss") in tags
    steps = {}
    for path in (tmp_path / "diagnostics").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == "ternary/temperature":
                    steps[event.step] = float(tf.make_ndarray(value.tensor))
    assert steps == pytest.approx({0: 1.0, 1: 1.0, 2: 10.0})  # the schedule, per epoch


@pytest.mark.slow
def test_train_tensorboard_flag_writes_keras_and_package_tags(tmp_path):
    cli.main(["train", "--dataset", "digits", "--width", "2", "--batch-size", "64",
              "--train-subset", "128", "--test-subset", "64", "--epochs", "1", "--verbose", "0",
              "--out", str(tmp_path / "run"), "--tensorboard"])
    tags = _tags(tmp_path / "run" / "tensorboard")
    assert {("train", "epoch_loss"), ("train", "epoch_near_grid"),
            ("validation", "epoch_accuracy"), ("diagnostics", "grid/near_grid"),
            ("diagnostics", "grid/sign_flip_rate"),
            ("diagnostics", "latent/quant_conv2d")} <= tags, sorted(tags)
