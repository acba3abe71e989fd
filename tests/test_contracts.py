"""Contracts a user meets: every tf-keras optimizer, wrapped, reloads with its state; a wrapper's
config says what the optimizer does; slot names keep the wrapped optimizer's prefix; the fused
update equals the two-pass one; integer, model and dataset arguments are checked by type; one
command-line vocabulary."""

import numpy as np
import pytest

import keras_wreg as kw
from keras_wreg import cli
from keras_wreg._compat import keras, lq, tf
from keras_wreg._validation import ArgumentTypeError

OPTIMIZERS = ["Adam", "AdamW", "Adamax", "Ftrl", "Nadam", "SGD", "RMSprop", "Adagrad",
              "Adadelta", "Lion", "Adafactor"]


def _model():
    keras.utils.set_random_seed(0)
    x = inputs = keras.Input((6,))
    x = lq.layers.QuantDense(8, kernel_quantizer="ste_sign",
                             kernel_constraint=lq.constraints.WeightClip(0.3))(x)
    x = lq.layers.QuantDense(3, kernel_quantizer="ste_sign", input_quantizer="ste_sign",
                             kernel_constraint=lq.constraints.WeightClip(0.3))(x)
    return keras.Model(inputs, x)


def _data():
    rng = np.random.RandomState(0)
    return rng.randn(32, 6).astype("float32"), rng.randn(32, 3).astype("float32")


def _wrap(kind, inner):
    if kind == "cosine_momentum":
        return kw.CosineMomentum(inner, eta=1e-2)
    return kw.DecoupledRegularization(inner, kw.WReg(1e-2))


def _trained(optimizer, epochs=2):
    model = _model()
    model.compile(optimizer, "mse")
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0)
    return model


@pytest.mark.parametrize("kind", ["cosine_momentum", "decoupled"])
@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_every_wrapped_optimizer_reloads_with_its_state(tmp_path, kind, name, fmt):
    model = _trained(_wrap(kind, getattr(keras.optimizers, name)()))
    path = tmp_path / f"m.{fmt}"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.optimizer) is type(model.optimizer)
    assert type(loaded.optimizer.inner_optimizer).__name__ == name
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
    # and it goes on exactly as the original would (not for Nadam: tf-keras saves no Nadam
    # `_u_product`, so a plain Nadam drifts after a reload too, by 1.1e-3 after one step)
    if name == "Nadam":
        return
    x, y = _data()
    model.train_on_batch(x[:8], y[:8])
    loaded.train_on_batch(x[:8], y[:8])
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["AdamW", "Nadam"])
def test_wrapped_optimizer_loads_from_a_savedmodel(tmp_path, name):
    """tf-keras restores no optimizer state from a SavedModel (not for a plain Adam either);
    the wrapper loads with its class, its wrapped optimizer and its settings."""
    model = _trained(kw.CosineMomentum(getattr(keras.optimizers, name)(), eta=3e-3))
    model.save(tmp_path / "sm", save_format="tf")
    loaded = keras.models.load_model(tmp_path / "sm")
    assert type(loaded.optimizer) is kw.CosineMomentum
    assert type(loaded.optimizer.inner_optimizer).__name__ == name
    assert loaded.optimizer.eta == pytest.approx(3e-3)


@pytest.mark.parametrize("nested", [False, True])
def test_config_reports_the_ema_the_wrapped_optimizer_was_built_with(nested):
    inner = keras.optimizers.Adam(1e-2, use_ema=True, ema_overwrite_frequency=3)
    if nested:
        inner = kw.DecoupledRegularization(inner, kw.WReg(1e-2))
    optimizer = kw.CosineMomentum(inner)
    config = optimizer.get_config()
    assert config["use_ema"] is True and config["ema_overwrite_frequency"] == 3
    assert config["optimizer"]["config"]["use_ema"] is True
    clone = kw.CosineMomentum.from_config(config)
    assert clone.use_ema and clone.ema_overwrite_frequency == 3
    for a, b in zip(_trained(optimizer, 3).get_weights(), _trained(clone, 3).get_weights()):
        np.testing.assert_array_equal(a, b)


def test_slot_variables_keep_the_wrapped_optimizers_name_prefix():
    plain = _trained(keras.optimizers.Adam())
    keras.backend.clear_session()  # the same layer names in both models
    wrapped = _trained(kw.CosineMomentum(keras.optimizers.Adam()))
    plain_names = [v.name for v in plain.optimizer.variables]
    inner_names = [v.name for v in wrapped.optimizer.inner_optimizer.variables]
    assert inner_names == plain_names and any(n.startswith("Adam/m/") for n in inner_names)
    own = [v.name for v in wrapped.optimizer.variables][:2]
    assert all(n.startswith("CosineMomentum/") for n in own)


@pytest.mark.parametrize("make", [
    lambda: kw.CosineMomentum(keras.optimizers.Adam(1e-2), eta=1e-2),
    lambda: kw.CosineMomentum(keras.optimizers.Adam(1e-2), mode="coefficient"),
    lambda: kw.CosineMomentum(keras.optimizers.AdamW(1e-2, weight_decay=0.1), use_ema=True,
                              ema_overwrite_frequency=3, clipnorm=0.5),
    lambda: kw.DecoupledRegularization(keras.optimizers.Adam(
        keras.optimizers.schedules.CosineDecay(1e-2, 20)), kw.WReg(1e-2)),
], ids=["additive", "coefficient", "ema_decay_clip", "decoupled_schedule"])
def test_fused_update_equals_the_two_pass_update_bit_for_bit(make):
    fused, two_pass = make(), make()
    two_pass.fuse_updates = False
    a, b = _trained(fused, 3), _trained(two_pass, 3)
    for x, y in zip(a.get_weights() + [v.numpy() for v in a.optimizer.variables],
                    b.get_weights() + [v.numpy() for v in b.optimizer.variables]):
        np.testing.assert_array_equal(x, y)
    # the extra update did act (a different result from the plain wrapped optimizer)
    plain = _trained(make().inner_optimizer, 3)
    assert not all(np.array_equal(x, y) for x, y in zip(a.get_weights(), plain.get_weights()))


@pytest.mark.parametrize("make, argname", [
    (lambda v: kw.HWGQ(bits=v), "bits"),
    (lambda v: kw.ClusterReg(num_centers=v), "num_centers"),
    (lambda v: kw.recipes.get("cluster").params({"num_centers": v}), "num_centers"),
    (lambda v: kw.recipes.get("fda").params({"groups": v}), "groups"),
])
@pytest.mark.parametrize("value", [2.0, np.float32(4.0), "2"])
def test_integer_arguments_refuse_non_integer_types(make, argname, value):
    with pytest.raises(ArgumentTypeError, match=f"`{argname}` must be an int"):
        make(value)
    make(np.int64(2) if argname != "groups" else 2)  # integer types pass


@pytest.mark.parametrize("call, argname", [
    (lambda a: kw.strip_clustering(a), "model"),
    (lambda a: kw.export.strip_for_inference(a), "model"),
    (lambda a: kw.callbacks.grid_stats(a), "model"),
    (lambda a: kw.export.recalibrate_batchnorm(_model(), a), "dataset"),
    (lambda a: kw.callbacks.probe_from_dataset(a), "dataset"),
    (lambda a: kw.recipes.get("larq").fit(_model(), a, 1), "train"),
])
def test_an_array_where_a_model_or_dataset_belongs_is_refused(call, argname):
    with pytest.raises(ArgumentTypeError, match=f"`{argname}` must be a"):
        call(np.zeros((4, 6), "float32"))


def test_dataset_arguments_take_datasets():
    x, y = _data()
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    assert kw.export.recalibrate_batchnorm(_model(), data, 2) == 2
    assert kw.callbacks.probe_from_dataset(data, 5).shape == (5, 6)


def test_command_line_flags_mean_one_thing_and_are_never_abbreviated(tmp_path, capsys):
    parser = cli.build_parser(with_tune=True)
    assert parser.parse_args(["tune", "--out", "runs/x"]).out == "runs/x"
    assert parser.parse_args(["tune", "--directory", "runs/x"]).out == "runs/x"  # old name
    assert parser.parse_args(["export", "m.keras", "--out", "d"]).out == "d"
    assert parser.parse_args(["train", "--out", "d"]).out == "d"
    for argv in (["train", "--ou", "d"], ["tune", "--outp", "x"], ["tune", "--output", "x"],
                 ["export", "m.keras", "--targ", "lce"]):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(argv)
        assert exc.value.code == 2
    capsys.readouterr()


def test_export_out_is_a_folder(tmp_path, capsys):
    model = _model()
    model.save(tmp_path / "model.keras")
    code = cli.main(["export", str(tmp_path / "model.keras"), "--out",
                     str(tmp_path / "x.tflite"), "--parity-images", "0"])
    assert code == 2 and "--out is a folder" in capsys.readouterr().err


MODULES = ["keras_wreg", "keras_wreg.regularizers", "keras_wreg.quantizers", "keras_wreg.layers",
           "keras_wreg.callbacks", "keras_wreg.optimizers", "keras_wreg.models",
           "keras_wreg.data", "keras_wreg.export", "keras_wreg.distillation"]


def _model_or_data_functions():
    import importlib
    import inspect

    found = {}
    for name in MODULES:
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", []):
            obj = getattr(module, attr)
            if inspect.isfunction(obj) and attr not in found:
                params = inspect.signature(obj).parameters
                for arg in ("model", "dataset", "train"):
                    if arg in params:
                        found[f"{attr}({arg})"] = (obj, arg)
    return found


@pytest.mark.parametrize("key", sorted(_model_or_data_functions()))
def test_every_public_function_refuses_an_array_for_a_model_or_dataset(key):
    """The class of check: every public function taking a model or a dataset names the
    argument when given an array (before doing anything with it)."""
    fn, arg = _model_or_data_functions()[key]
    with pytest.raises(ArgumentTypeError, match=f"`{arg}` must be a"):
        fn(**{arg: np.zeros((4, 6), "float32")})
