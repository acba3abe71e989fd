"""Table-driven argument checks: every public object x every kind of bad value.

The table below lists, for every public callable of keras_wreg, how to call it and the kind of
each of its arguments. ``test_every_public_argument_is_in_the_table`` inspects the signatures,
so a new public object or a new argument fails the suite until it is classified here (and then
gets the bad values of its kind thrown at it).
"""

import importlib
import inspect
import math

import numpy as np
import pytest

import keras_wreg as kw
from keras_wreg import _validation as v
from keras_wreg._compat import keras, lq, tf

MODULES = ["keras_wreg", "keras_wreg.distillation", "keras_wreg.regularizers", "keras_wreg.quantizers", "keras_wreg.layers",
           "keras_wreg.callbacks", "keras_wreg.optimizers", "keras_wreg.models",
           "keras_wreg.data", "keras_wreg.recipes", "keras_wreg.export", "keras_wreg.schedules",
           "keras_wreg.training", "keras_wreg.alternate"]

#: arguments that take objects (models, tensors, arrays, files, datasets, callables): their
#: errors come from the objects themselves, not from a value table
OBJECT_ARGS = {"model", "x", "w", "d", "inputs", "data", "dataset", "path", "report", "cls",
               "quantizer", "optimizer", "kernel_quantizer", "input_quantizer", "probe", "y",
               "kernel_constraint", "kernel_regularizer", "activation_block", "select",
               "snapshots", "quantizers", "name_or_path", "regularizer", "schedule", "log_dir",
               "temperature_schedule", "teacher",
               "flatbuffer", "recipe", "params", "strategy", "callbacks", "record",
               "int8"}  # int8: calibration images (errors in test_fda_export)

NAN, INF = float("nan"), float("inf")
BAD = {
    # kind: bad values every argument of that kind must reject
    "real": [NAN, INF, -INF, "1.0", None, True, [1.0], 1e300],
    "real_unbounded": [NAN, INF, -INF, "1.0", None, True, [1.0]],
    "real?": [NAN, INF, -INF, "1.0", True, [1.0], 1e300],   # None allowed
    "int": [0.5, 2.0, NAN, INF, "3", None, True, 10**12],
    "int?": [0.5, 2.0, NAN, INF, "3", True, 10**12],
    "bool": ["yes", 1, 0.0, None],
    "bool?": ["yes", 1, 0.0],   # None allowed
    "choice": ["__bogus__", 3.5, True],
    "choice_or_bool": ["__bogus__", 3.5, 1],
    "choice?": ["__bogus__", 3.5, True],
    "str?": [5, 1.5, ["a"]],
    "alpha": [NAN, INF, -1.0, 0.0, "__bogus__", True, None],
    "shape": [5, "abc", (8, 8), (8, 0, 1), (8, 8.5, 1)],
    "path?": [5, 1.5, ["a"]],
    "name": [5, "", None, ["digits"]],
    "iterable?": ["abc", 5],
    "tensor_or_real": [NAN, INF, "1.0", True],
}


def _tiny_model():
    inputs = keras.Input((4,))
    x = lq.layers.QuantDense(3, kernel_quantizer="ste_sign", input_quantizer="ste_sign",
                             kernel_constraint="weight_clip")(inputs)
    return keras.Model(inputs, x)


def _input(shape=(4, 4, 8)):
    return keras.Input(shape)


def _fn(f, *args):
    return lambda **kw: f(*args, **kw)


def _model_fn(f, *args):
    return lambda **kw: f(_tiny_model(), *args, **kw)


def _adam():
    return keras.optimizers.Adam()


# name -> (call factory, {argument: kind or (kind, [extra bad values])})
TABLE = {
    "Distiller": (lambda **k: kw.Distiller(**{"teacher": _tiny_model(), **k}), {
        "weight": ("real", [-0.1, 1.5]), "temperature": ("real", [0.0, -1.0]),
        "feature_weight": ("real", [-1.0]), "feature_layers": ("iterable?", [["a"]])}),
    "WReg": (None, {"strength": ("real", [-1.0, 1e7]), "alpha": "alpha",
                    "inner": "choice", "outer": "choice", "inner_weight": ("real", [-1.0]),
                    "outer_weight": ("real", [-1.0]), "reduce": "choice"}),
    "TernaryReg": (None, {"strength": ("real", [-0.1]), "delta": ("real", [0.0, -1.0]),
                          "threshold_value": ("real?", [0.0]), "variant": "choice",
                          "power": ("choice", [3, 1.5])}),
    "ClusterReg": (None, {"num_centers": ("int", [1, 10**8]), "form": "choice",
                          "strength": ("real", [-1.0]), "temperature": ("real", [0.0]),
                          "init": "choice", "center_grad_scale": ("real", [0.0]),
                          "reduce": "choice", "seed": ("int", [-1])}),
    "CosineMomentum": (lambda **k: kw.CosineMomentum(_adam(), **k), {
        "eta": ("real", [-1e-3]), "momentum": ("real", [1.0, -0.1]),
        "max_distance": ("real", [0.0]), "alpha": "alpha", "region": "choice",
        "mode": "choice", "mu_min": ("real", [1.0]), "mu_max": ("real", [1.0]),
        "decay_steps": ("int?", [0]), "name": ("str?", [None])}),
    "DecoupledRegularization": (lambda **k: kw.optimizers.DecoupledRegularization(
        _adam(), kw.WReg(), **k), {"scale_by_learning_rate": "bool", "name": "str?"}),
    "OptimizerWrapper": (lambda **k: kw.optimizers.OptimizerWrapper(_adam(), **k), {
        "name": "str?", "weight_decay": "real?", "clipnorm": ("real?", [0.0, -1.0]),
        "clipvalue": ("real?", [0.0]), "global_clipnorm": ("real?", [0.0]), "use_ema": "bool",
        "ema_momentum": ("real", [1.5, -0.1]), "ema_overwrite_frequency": ("int?", [0]),
        "jit_compile": "bool?"}),
    "to_tflite": (lambda **k: kw.export.to_tflite(_tiny_model(), "m.tflite", **k), {
        "target": "choice", "require_quantized": "bool", "int8_edges": "choice"}),
    "tflite_bytes": (lambda **k: kw.export.tflite_bytes(_tiny_model(), **k), {
        "target": "choice", "strip": "bool", "require_quantized": "bool",
        "int8_edges": "choice"}),
    "load_interpreter": (lambda **k: kw.export.load_interpreter(
        kw.export.tflite_bytes(_tiny_model()), **k), {
        "num_threads": ("int", [0]), "use_indirect_bgemm": "bool", "use_xnnpack": "bool"}),
    "QuantizationTensorBoard": (lambda **k: kw.callbacks.QuantizationTensorBoard("tb", **k), {
        "alpha": "alpha", "histograms": "bool"}),
    "Ramp": (lambda **k: kw.schedules.Ramp(**{"start_step": 0, "end_step": 10, **k}), {
        "start_step": ("int", [-1]), "end_step": ("int", [-1]), "shape": "choice",
        "initial": ("real", [-1.0]), "final": ("real", [-1.0]), "name": "str?"}),
    "RescaledSigmoidTernary": (None, {"temperature": ("real", [0.0]),
                                      "delta": ("real", [0.0]),
                                      "threshold_value": ("real?", [-1.0]),
                                      "scale": "bool", "r_min": ("real", [0.0, 1.5]),
                                      "relative_temperature": "bool"}),
    "rescaled_sigmoid_ternary": (_fn(kw.quantizers.rescaled_sigmoid_ternary, tf.ones((3, 3))), {
        "temperature": ("tensor_or_real", [0.0]), "delta": ("real", [0.0]),
        "threshold_value": ("real?", [-1.0]), "scale": "bool", "r_min": ("real", [0.0]),
        "relative_temperature": "bool"}),
    "HWGQ": (None, {"bits": ("int", [0, 5])}),
    "hwgq": (_fn(kw.quantizers.hwgq, tf.ones((2, 2))), {"bits": ("int", [0, 5])}),
    "ScaledSign": (None, {"clip_value": ("real?", [0.0, -1.0])}),
    "scaled_sign": (_fn(kw.quantizers.scaled_sign, tf.ones((3, 2))),
                    {"clip_value": ("real?", [0.0])}),
    "TemperatureScheduler": (None, {"t0": ("real", [0.0]), "t1": ("real", [0.0]),
                                    "schedule": "choice", "epochs": ("int?", [0]),
                                    "granularity": "choice",
                                    "quantizers": ("iterable?", [["abc"], [1.0]])}),
    "temperature_at": (lambda **k: kw.callbacks.temperature_at(**{"progress": 0.5, "t0": 1.0, "t1": 10.0, **k}), {
        "progress": "real_unbounded", "t0": ("real", [0.0]), "t1": ("real", [0.0]),
        "schedule": "choice"}),
    "ClusterCallback": (None, {"warmup_steps": ("int", [-1]), "reseed_every": ("int", [-1]),
                               "min_count": ("int", [0]), "duplicate_tol": ("real", [-1.0]),
                               "snap": "choice?", "init": "choice?",
                               "delay_steps": ("int", [-1]), "decoupled": "bool",
                               "quantize_step": ("int?", [-1])}),
    "ClusterQuantizer": (None, {"mode": "choice", "temperature": ("real", [0.0]),
                                "active": "bool"}),
    "set_cluster_phase": (_model_fn(kw.quantizers.set_cluster_phase), {"active": "bool",
                                                                      "temperature": ("real?", [0.0])}),
    "GridStats": (None, {"alpha": "alpha", "tolerance": ("real", [-1.0])}),
    "snap_binary": (_model_fn(kw.regularizers.snap_binary), {"alpha": "alpha",
                                                             "layers": "iterable?"}),
    "grid_stats": (_model_fn(kw.callbacks.grid_stats), {"alpha": "alpha",
                                                        "tolerance": ("real", [-1.0])}),
    "ActivationBalance": (None, {"every": ("int", [0])}),
    "TernaryPull": (None, {"strength": ("real", [-1.0, 1e7])}),
    "probe_from_dataset": (lambda **k: kw.callbacks.probe_from_dataset(
        tf.data.Dataset.from_tensor_slices((np.zeros((4, 2), "float32"), np.zeros(4))).batch(2),
        **k), {"max_examples": ("int", [0])}),
    "activation_balance": (_model_fn(kw.activation_balance, np.zeros((2, 4), "float32")),
                           {"batch_size": ("int", [0])}),
    "AlternateUpdate": (None, {"variant": "choice", "iterations": ("int", [0]),
                               "steps": ("int", [-1]), "learning_rate": ("real", [0.0]),
                               "alpha_learning_rate": ("real", [0.0]),
                               "num_batches": ("int", [0]), "recalibrate_bn": "bool",
                               "verbose": ("int", [3])}),
    "WeightHistograms": (lambda **k: kw.callbacks.WeightHistograms("h.png", **k),
                         {"grid": ("iterable?", [[NAN], ["a"]]), "title": "str?",
                          "scale": "choice?"}),
    "plot_weight_histograms": (
        lambda **k: kw.callbacks.plot_weight_histograms([("a", [1.0])], "h.png", **k),
        {"title": "str?", "grid": ("iterable?", [[INF]]), "bins": ("int", [0]),
         "xlabel": "str?"}),
    "TernaryStats": (None, {"delta": ("real", [0.0])}),
    "ternary_stats": (_model_fn(kw.callbacks.ternary_stats), {"delta": ("real", [0.0])}),
    "FeatureDistributionAdjust": (None, {"epsilon": ("real", [0.0, 2.0]), "center": "bool",
                                         "scale": "bool", "learn_rho": "bool"}),
    "GroupExcitation": (None, {"groups": ("int", [0]), "reduction": ("real", [0.5]),
                               "pool": "choice"}),
    "ThresholdSign": (None, {"groups": ("int", [0]), "input_dependent": "bool",
                             "balance_penalty": ("real", [-1.0])}),
    "PackableThresholdSign": (None, {"groups": ("int", [0]), "input_dependent": "bool",
                                     "balance_penalty": ("real", [-1.0])}),
    "fda_unit": (lambda **k: kw.layers.fda_unit(_input(), **k), {
        "groups": ("int", [0]), "reduction": ("real", [0.5]), "epsilon": ("real", [0.0]),
        "pool": "choice", "balance_penalty": ("real", [-1.0]), "name": "str?",
        "adjust": "bool", "excite": "bool", "zero_point": "bool"}),
    "hwgq_block": (lambda **k: kw.hwgq_block(_input(), **k), {
        "center": "bool", "scale": "bool", "momentum": ("real", [1.0, -0.5]),
        "epsilon": ("real", [0.0]), "name": "str?"}),
    "initialize_centers": (_model_fn(kw.initialize_centers), {"method": "choice?",
                                                              "force": "bool"}),
    "initial_centers": (lambda **k: kw.regularizers.initial_centers(
        np.linspace(-1, 1, 50), **{"num_centers": 4, **k}), {
        "num_centers": ("int", [1, 10**8]), "method": "choice", "seed": ("int", [-1]),
        "max_samples": ("int", [1])}),
    "strip_clustering": (_model_fn(kw.strip_clustering), {"snap": "bool"}),
    "compression_report": (_model_fn(kw.compression_report), {"max_levels": ("int", [0])}),
    "kmeans_cluster_model": (lambda **k: kw.kmeans_cluster_model(
        _tiny_model(), **{"num_centers": 4, **k}), {
        "num_centers": ("int", [1, 10**8]), "seed": ("int", [-1]),
        "max_samples": ("int", [1])}),
    "recalibrate_batchnorm": (_model_fn(kw.recalibrate_batchnorm, tf.data.Dataset.from_tensors(
        np.zeros((2, 4), "float32"))),
                              {"steps": ("int", [0])}),
    "compression_ratio": (lambda **k: kw.compression_ratio(_tiny_model(), **k),
                          {"include_scales": "bool"}),
    "cosine_ramp": (lambda **k: kw.optimizers.cosine_ramp(tf.ones(3), **{"max_distance": 0.5,
                                                                        **k}),
                    {"max_distance": ("tensor_or_real", [0.0])}),
    "vgg_small": (lambda **k: kw.models.vgg_small(**{"input_shape": (8, 8, 1),
                                                     "num_classes": 10, **k}), {
        "input_shape": "shape", "num_classes": ("int", [1]), "width": ("int", [0, 10**6]),
        "binary_classifier": "bool", "name": "str?"}),
    "vgg_small_fp": (lambda **k: kw.models.vgg_small_fp(**{"input_shape": (8, 8, 1),
                                                           "num_classes": 10, **k}), {
        "input_shape": "shape", "num_classes": ("int", [1]), "width": ("int", [0]),
        "name": "str?"}),
    "vgg_small_hwgq": (lambda **k: kw.models.vgg_small_hwgq(**{"input_shape": (8, 8, 1),
                                                               "num_classes": 10, **k}), {
        "input_shape": "shape", "num_classes": ("int", [1]), "width": ("int", [0]),
        "binary_classifier": "bool", "bn_center": "bool", "name": "str?"}),
    "resnet18": (lambda **k: kw.models.resnet18(**{"input_shape": (8, 8, 1),
                                                   "num_classes": 10, "width": 8, **k}), {
        "input_shape": "shape", "num_classes": ("int", [1]), "width": ("int", [0]),
        "fda": "choice_or_bool", "groups": ("int", [0]), "reduction": ("real", [0.5]),
        "epsilon": ("real", [0.0]), "pool": "choice", "balance_penalty": ("real", [-1.0]),
        "binary": "bool", "name": "str?"}),
    "resnet18_fp": (lambda **k: kw.models.resnet18_fp(**{"input_shape": (8, 8, 1),
                                                         "num_classes": 10, **k}), {
        "input_shape": "shape", "num_classes": ("int", [1]), "width": ("int", [0]),
        "name": "str?"}),
    "build": (lambda **k: kw.models.build(**{"name": "vgg_small", "input_shape": (8, 8, 1),
                                             "num_classes": 10, **k}), {
        "name": "choice", "input_shape": "shape", "num_classes": ("int", [1])}),
    "load_dataset": (lambda **k: kw.data.load_dataset(**{"name": "digits", **k}), {
        "name": "name", "data_dir": "path?", "batch_size": ("int", [0, 2**21]),
        "augment": "bool", "validation_split": ("real", [1.0, -0.1]),
        "train_subset": ("int?", [0]), "test_subset": ("int?", [0]), "seed": ("int", [-1]),
        "download": "bool", "split_seed": ("int?", [-1])}),
    "load_arrays": (lambda **k: kw.data.load_arrays(**{"name": "digits", **k}), {
        "name": "name", "data_dir": "path?", "download": "bool"}),
    "make_pipeline": (lambda **k: kw.data.make_pipeline(
        np.zeros((2, 2, 2, 1), np.uint8), np.zeros(2, np.int64), **{"batch_size": 2, **k}), {
        "batch_size": ("int", [0]), "shuffle": "bool", "augment": "bool",
        "seed": ("int", [-1]), "pad": ("int", [-1])}),
    "data_roots": (_fn(kw.data.data_roots), {"data_dir": "path?"}),
    "default_dataset": (_fn(kw.data.default_dataset), {"data_dir": "path?"}),
    "get": (lambda **k: kw.recipes.get(**{"name": "wreg", **k}), {"name": "choice"}),
    "TrainJob": (lambda **k: kw.TrainJob(**{"recipe": kw.recipes.get("larq"), "params": {},
                                            "dataset": "digits", "out": "run", **k}), {
        "width": "int", "epochs": "int", "batch_size": "int", "seed": ("int", [-1]),
        "validation_split": ("real", [1.0, -0.1]), "train_subset": ("int?", [0]),
        "test_subset": ("int?", [0]), "sync_batchnorm": "choice", "verbose": "choice",
        "augment": "bool", "export": "bool", "resume": "bool", "deterministic": "bool",
        "data_dir": "path?", "tensorboard": "path?", "name": "str?", "out": ("path?", [None])}),
}

#: public callables with object arguments only (nothing for a value table)
OBJECT_ONLY = {
    "distillation_loss", "attention_loss", "logit_outputs",  # tensor math on logits
    "binary_kernel_names", "snap_weights", "clustered_weights", "ternary_quantizers",
    "extra_flops", "binary_kernels", "binary_layers", "binarizing_layers", "cluster_stats",
    "is_binary_quantizer", "compression_table", "load_digits_arrays", "Recipe",
    "register_recipe", "DataSplits", "DatasetNotFoundError", "DataError", "check_labels",
    "check_splits", "serialize", "save_model", "load_model",
    "quantized_kernels", "export_packed_weights", "load_packed_weights", "model_summary_text",
    # model/file/object arguments only (their errors are tested in test_export, test_resume,
    # test_retrofit and test_scale)
    "apply", "diagnostics", "latent_kernels", "EpochLog", "fit_stage", "read_epoch_log",
    "history_from_log", "completed_epochs", "ExportError", "BinaryDenseAsConv", "OnePaddedBinaryConv2D",
    "strip_for_inference", "quantized_layers", "tflite_predict", "parity", "evaluate_tflite",
    "flatbuffer_report", "float32_size", "bind_cluster_quantizers", "cluster_quantizers",
    "deploy_report", "format_deploy_report", "latent_kernel", "format_report",
    "Int8Conv2D", "Int8Dense",  # Keras layers + measured ranges (errors in test_fda_export)
    # inference layers built by strip_for_inference (levels/units errors in
    # test_multilevel_export)
    "MultiLevelBinaryConv2D", "MultiLevelBinaryDense",
    # the training engine: a job object in (its fields are in TABLE), files and models
    "run", "UnfinishedRunError", "finished_metrics", "load_teacher", "sample_images",
    "grid_alpha", "method_flags", "add_method_flags", "method_flag_params",
}


#: (object, argument) -> the name its message uses (the CLI's word for it)
ALIASES = {("build", "name"): "model", ("get", "name"): "method"}


def _public_callables():
    found = {}
    for name in MODULES:
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", []):
            obj = getattr(module, attr)
            if callable(obj) and not attr.startswith("_") and attr not in found:
                found[attr] = obj
    return found


def _kind(spec):
    return (spec, []) if isinstance(spec, str) else spec


def _cases():
    cases = []
    for name, (factory, args) in TABLE.items():
        for arg, spec in args.items():
            kind, extra = _kind(spec)
            for bad in BAD[kind] + extra:
                cases.append(pytest.param(name, arg, bad, id=f"{name}-{arg}-{bad!r}"[:90]))
    return cases


def test_every_public_argument_is_in_the_table():
    public = _public_callables()
    missing = []
    for name, obj in public.items():
        if name in OBJECT_ONLY:
            continue
        if name not in TABLE:
            missing.append(name)
            continue
        target = obj.__init__ if inspect.isclass(obj) else obj
        for param in list(inspect.signature(target).parameters.values()):
            if param.name in ("self",) or param.kind in (param.VAR_POSITIONAL,
                                                         param.VAR_KEYWORD):
                continue
            if param.name not in OBJECT_ARGS and param.name not in TABLE[name][1]:
                missing.append(f"{name}({param.name})")
    assert not missing, f"not classified in TABLE (add a row): {missing}"
    assert not set(TABLE) - set(public), "TABLE lists objects that are not public"


def _message_shows(message, value):
    if isinstance(value, float) and math.isnan(value):
        return "nan" in message
    return repr(value) in message or str(value) in message or (
        isinstance(value, (int, float)) and repr(float(value)) in message)


@pytest.mark.parametrize("name,arg,bad", _cases())
def test_bad_argument_is_rejected_with_a_clear_error(name, arg, bad, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    factory, _ = TABLE[name]
    call = factory or _public_callables()[name]
    with pytest.raises((TypeError, ValueError)) as info:
        call(**{arg: bad})
    message = str(info.value)
    arg = ALIASES.get((name, arg), arg)
    assert f"`{arg}`" in message or f"`{arg}[" in message, message
    assert _message_shows(message, bad) or isinstance(bad, (list, tuple)), message


@pytest.mark.parametrize("name", sorted(TABLE))
def test_defaults_are_accepted(name, tmp_path, monkeypatch):
    """The table's call factories are valid: the errors above come from the bad value."""
    if name in ("load_dataset", "load_arrays"):
        pytest.skip("loads data; covered by test_data")
    monkeypatch.chdir(tmp_path)
    factory, _ = TABLE[name]
    (factory or _public_callables()[name])()


@pytest.mark.parametrize("method", sorted(kw.recipes.RECIPES))
def test_recipe_params_reject_bad_values_of_every_key(method):
    """Every hyperparameter of every recipe (a new one too) rejects a value of the wrong kind."""
    recipe = kw.recipes.get(method)
    for key, default in recipe.defaults.items():
        if isinstance(default, bool):
            bads = [1, "yes", None]
        elif isinstance(default, (int, float)):
            bads = [NAN, INF, "1", True]
        else:
            bads = ["__bogus__", ["x"]]
        for bad in bads:
            with pytest.raises((TypeError, ValueError), match=f"`{key}`"):
                recipe.params({key: bad})
    assert recipe.params() == recipe.defaults


def test_nan_strength_and_inf_eta_are_rejected_by_name():
    with pytest.raises(ValueError, match="strength.*nan"):
        kw.WReg(strength=NAN)
    with pytest.raises(ValueError, match="eta.*inf"):
        kw.CosineMomentum(_adam(), eta=INF)
    with pytest.raises(ValueError, match="clip_value.*nan"):
        kw.ScaledSign(clip_value=NAN)
    with pytest.raises(TypeError, match="scale.*'no'"):
        kw.RescaledSigmoidTernary(scale="no")
    with pytest.raises(ValueError, match="decay_steps.*0.5"):
        kw.CosineMomentum(_adam(), decay_steps=0.5)
    with pytest.raises(TypeError, match="quantizers.*abc"):
        kw.TemperatureScheduler(quantizers="abc")
    with pytest.raises(ValueError, match="num_centers.*100000000"):
        kw.ClusterReg(num_centers=10**8)


def test_type_errors_are_also_value_errors():
    """Wrong types raise a TypeError that callers catching ValueError still catch."""
    with pytest.raises(ValueError):
        kw.WReg(strength="1")
    with pytest.raises(TypeError):
        kw.WReg(strength="1")


def test_validators_accept_what_they_should():
    assert isinstance(v.check_int(np.int64(3), "n"), int) and v.check_int(10**4, "n") == 10000
    assert v.check_real(np.float32(0.5), "x") == 0.5
    assert v.check_bool(np.bool_(True), "f") is True
    assert v.check_choice("b", ("a", "b"), "c") == "b"
    assert v.check_iterable((1, 2), "xs") == [1, 2]
    assert v.check_shape([8, 8, 1], "s", rank=3) == (8, 8, 1)
    with pytest.raises(ValueError, match="`c` must be one of 1, 2, got True"):
        v.check_choice(True, (1, 2), "c")


@pytest.mark.parametrize("builder", ["vgg_small", "resnet18", "vgg_small_hwgq"])
@pytest.mark.parametrize("arg", ["kernel_quantizer", "input_quantizer", "kernel_constraint"])
def test_builders_name_an_unknown_quantizer_or_constraint(builder, arg):
    if builder == "vgg_small_hwgq" and arg == "input_quantizer":
        pytest.skip("an int means HWGQ bits there; covered by hwgq_block")
    for bad in ("__bogus__", 3.5):
        with pytest.raises(ValueError, match=f"`{arg}`.*{bad}"):
            kw.models.build(builder, (8, 8, 1), 10, width=8, **{arg: bad})


@pytest.mark.parametrize("bad", ["3", 9, [1], 2.0, None])
def test_hwgq_block_names_a_bad_quantizer(bad):
    with pytest.raises((TypeError, ValueError), match="`quantizer`"):
        kw.hwgq_block(keras.Input((4, 4, 8)), bad)
