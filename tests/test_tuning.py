"""keras_wreg.tuning: KerasTuner on tf-keras/Larq models, search spaces, resume, the tune job."""

import argparse
import os
import json
import math

import keras_tuner as kt
import numpy as np
import pytest

from keras_wreg import data, models, recipes, tuning
from keras_wreg._compat import keras, lq

# -- small real data shared by the search tests (sklearn's 8x8 handwritten digits) ------------


@pytest.fixture(scope="module")
def digits():
    (x_tr, y_tr), (x_te, y_te) = data.load_digits_arrays()
    train = data.make_pipeline(x_tr[:480], y_tr[:480], 64, shuffle=True, seed=0)
    val = data.make_pipeline(x_te[:200], y_te[:200], 100)
    return train, val, x_tr.shape[1:]


def _hypermodel(method, shape, width=4, **kwargs):
    return tuning.RecipeHyperModel(method, shape, 10, model_kwargs={"width": width}, **kwargs)


def _parse(argv):
    return tuning.add_tune_arguments(argparse.ArgumentParser()).parse_args(argv)


# -- search space ------------------------------------------------------------------------------

WREG_TUNED = {  # the hyperparameters METHODS.md / the issue document for WReg + CosineMomentum
    "learning_rate": "log", "strength": "log", "alpha": None, "inner": None, "outer": None,
    "eta": "log", "max_distance": "log", "momentum": "linear", "region": None, "mode": None,
    "clip": None,
}


@pytest.mark.parametrize("method", sorted(recipes.RECIPES))
def test_space_declares_every_hyperparameter_of_the_recipe(method):
    recipe = recipes.get(method)
    hm = _hypermodel(method, (8, 8, 1))
    hp = kt.HyperParameters()
    hm.declare_hyperparameters(hp)
    names = {h.name for h in hp.space}
    scalar = {k for k, v in recipe.defaults.items() if isinstance(v, (bool, int, float, str))}
    assert scalar <= names, f"missing from the space: {scalar - names}"
    assert names <= set(recipe.defaults), f"not a recipe parameter: {names - set(recipe.defaults)}"
    # the declared defaults are the recipe's defaults (apart from WReg's "1.0" spelling of alpha)
    _, params = hm.sample(hp)
    assert set(params) == set(recipe.defaults)


def test_wreg_space_tunes_the_documented_hyperparameters_with_log_sampling():
    hp = kt.HyperParameters()
    _hypermodel("wreg", (8, 8, 1)).declare_hyperparameters(hp)
    by_name = {h.name: h for h in hp.space}
    for name, sampling in WREG_TUNED.items():
        assert not isinstance(by_name[name], kt.engine.hyperparameters.Fixed), name
        if sampling:
            assert by_name[name].sampling == sampling, name
    assert set(by_name["alpha"].values) == {"1.0", "mean", "channel"}
    assert set(by_name["region"].values) == {"tail", "both"}
    assert set(by_name["mode"].values) == {"additive", "coefficient"}
    # WReg in the loss is off by default (the measured winner) and one switch of the search
    for switch in ("use_cosine_momentum", "reduce"):
        assert isinstance(by_name[switch], kt.engine.hyperparameters.Fixed)
    assert isinstance(by_name["use_wreg"], kt.engine.hyperparameters.Boolean)
    assert by_name["use_wreg"].default is False


def _configurations(space, seed=0, random_extra=2):
    """Every value of every Choice at least once (others random), plus a few random configs."""
    rng = np.random.default_rng(seed)

    def random_values():
        return {h.name: h.random_sample(int(rng.integers(1 << 30))) for h in space}

    configs = []
    for h in space:
        for value in getattr(h, "values", []) if isinstance(h, kt.engine.hyperparameters.Choice) \
                else []:
            cfg = random_values()
            cfg[h.name] = value
            configs.append(cfg)
    configs += [random_values() for _ in range(random_extra)]
    return configs


@pytest.mark.parametrize("method", sorted(recipes.RECIPES))
def test_every_sampled_configuration_builds_compiles_and_trains_a_step(method):
    # fda's `groups` choices (up to 8) must divide the width
    width = 8 if method == "fda" else 2
    hm = _hypermodel(method, (8, 8, 1), width=width, steps_per_epoch=4, epochs=2)
    space_hp = kt.HyperParameters()
    hm.declare_hyperparameters(space_hp)
    x = np.random.default_rng(0).uniform(-1, 1, (8, 8, 8, 1)).astype("float32")
    y = np.arange(8) % 10
    configs = _configurations(space_hp.space)
    assert len(configs) >= 2
    for cfg in configs:
        hp = space_hp.copy()
        hp.values.update(cfg)
        model = hm.build(hp)
        assert isinstance(model, keras.Model) and model.optimizer is not None
        _, params = hm.sample(hp.copy())
        for name, value in cfg.items():  # the sampled value reaches the recipe's params
            # (a recipe may map a string choice to a number, e.g. WReg's alpha "1.0" -> 1.0);
            # a conditional hyperparameter whose condition fails is not used
            if not hp.is_active(name):
                continue
            assert params[name] == value or str(params[name]) == str(value), name
        model.run_eagerly = True  # no tracing per configuration: keeps the test fast
        loss = model.train_on_batch(x, y)
        loss = loss[0] if isinstance(loss, list) else loss
        assert math.isfinite(loss), cfg
        keras.backend.clear_session()


def test_overrides_are_fixed_in_the_space_and_in_the_params():
    hm = _hypermodel("wreg", (8, 8, 1), overrides={"strength": 3e-5, "region": "both"})
    fixed = hm.fixed_hyperparameters()
    hp = fixed.copy()
    _, params = hm.sample(hp)
    by_name = {h.name: h for h in hp.space}
    assert isinstance(by_name["strength"], kt.engine.hyperparameters.Fixed)
    assert params["strength"] == 3e-5 and params["region"] == "both"


def test_model_choice_over_several_models():
    hm = tuning.RecipeHyperModel("larq", (8, 8, 1), 10, model=["vgg_small", "vgg_small_fp"],
                                 model_kwargs={"width": 2})
    hp = kt.HyperParameters()
    hm.declare_hyperparameters(hp)
    assert set(hp.space[0].values) == {"vgg_small", "vgg_small_fp"}
    hp.values["model"] = "vgg_small_fp"
    model = hm.build(hp)
    assert not any(isinstance(layer, lq.layers.QuantConv2D) and layer.kernel_quantizer
                   for layer in model.layers)


@pytest.mark.parametrize("kwargs, word", [
    (dict(method="nope"), "method"),
    (dict(model="resnet_nope"), "model"),
    (dict(overrides={"not_a_param": 1}), "not_a_param"),
    (dict(num_classes=1), "num_classes"),
    (dict(steps_per_epoch=0), "steps_per_epoch"),
])
def test_hypermodel_bad_arguments(kwargs, word):
    args = dict(method="wreg", input_shape=(8, 8, 1), num_classes=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=word):
        tuning.RecipeHyperModel(**args)


@pytest.mark.parametrize("kwargs, word", [
    (dict(kind="grid"), "kind"),
    (dict(kind="random", max_trials=0), "max_trials"),
    (dict(kind="hyperband", max_epochs=None), "max_epochs"),
    (dict(kind="hyperband", max_epochs=2, factor=1), "factor"),
])
def test_make_tuner_bad_arguments(kwargs, word, tmp_path):
    hm = _hypermodel("larq", (8, 8, 1))
    with pytest.raises(ValueError, match=word):
        tuning.make_tuner(hypermodel=hm, directory=str(tmp_path), **kwargs)


def test_best_epoch_metrics_picks_the_objective_optimum():
    history = keras.callbacks.History()
    history.history = {"loss": [3.0, 2.0, 1.0], "val_accuracy": [0.2, 0.7, 0.5]}
    metrics, epoch = tuning.best_epoch_metrics(history, kt.Objective("val_accuracy", "max"))
    assert epoch == 1 and metrics == {"loss": 2.0, "val_accuracy": 0.7}
    metrics, epoch = tuning.best_epoch_metrics(history, kt.Objective("loss", "min"))
    assert epoch == 2 and metrics["loss"] == 1.0


def test_keras3_model_is_rejected_with_a_clear_error(tmp_path, digits):
    import keras as keras3

    def build(hp):
        hp.Float("lr", 1e-3, 1e-2)
        return keras3.Sequential([keras3.Input((8, 8, 1)), keras3.layers.Flatten(),
                                  keras3.layers.Dense(10)])

    tuner = tuning.RandomSearch(build, objective="val_accuracy", max_trials=1,
                                directory=str(tmp_path), project_name="k3")
    with pytest.raises(kt.errors.FatalTypeError, match="tf-keras"):
        tuner.search(digits[0], validation_data=digits[1], epochs=1, verbose=0)


# -- searches ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["random", "bayesian", "hyperband"])
def test_tuner_searches_a_larq_model_and_best_models_reproduce_the_objective(
        kind, digits, tmp_path, capsys):
    train, val, shape = digits
    hm = _hypermodel("larq", shape, width=4, steps_per_epoch=8, epochs=2)
    tuner = tuning.make_tuner(kind, hm, max_trials=2, max_epochs=2, factor=2,
                              directory=str(tmp_path), project_name=kind)
    tuner.search(train, validation_data=val, epochs=2, verbose=0)
    trials = tuner.oracle.trials
    assert len(trials) >= 2
    assert all(t.status == "COMPLETED" for t in trials.values())
    best_trial = tuner.oracle.get_best_trials(1)[0]
    best_model = tuner.get_best_models(1)[0]
    assert isinstance(best_model, keras.Model)
    assert any(isinstance(l, lq.layers.QuantConv2D) for l in best_model.layers)
    _, accuracy = best_model.evaluate(val, verbose=0)
    assert accuracy == pytest.approx(best_trial.score, abs=1e-6)
    best_hp = tuner.get_best_hyperparameters(1)[0]
    assert best_hp.values == best_trial.hyperparameters.values
    tuner.results_summary(1)
    assert "Score" in capsys.readouterr().out
    if kind == "hyperband":
        # warm-started trials continue from their parent's checkpoint (weights and optimizer)
        children = [t for t in trials.values() if "tuner/trial_id" in t.hyperparameters.values]
        assert children, "hyperband ran no second-round trial"
        child = children[0]
        assert child.hyperparameters.values["tuner/initial_epoch"] > 0
        parent = tuner.oracle.get_trial(child.hyperparameters.values["tuner/trial_id"])
        parent_model = tuner.load_model(parent)
        warm = tuner._build_hypermodel(child.hyperparameters)
        for a, b in zip(parent_model.get_weights(), warm.get_weights()):
            np.testing.assert_array_equal(a, b)
        # the optimizer state comes along: the learning-rate schedule continues, not restarts
        assert int(warm.optimizer.iterations) == int(parent_model.optimizer.iterations) > 0
        x, _ = next(iter(val))
        np.testing.assert_allclose(parent_model.predict(x, verbose=0),
                                   warm.predict(x, verbose=0), atol=1e-6)
    if kind == "random":
        # a best model survives .keras save/load
        path = tmp_path / "best.keras"
        best_model.save(path)
        reloaded = keras.models.load_model(path)
        x, _ = next(iter(val))
        np.testing.assert_allclose(reloaded.predict(x, verbose=0),
                                   best_model.predict(x, verbose=0), atol=1e-6)


class _Interrupting(tuning.RandomSearch):
    """Raises KeyboardInterrupt (a Ctrl-C) in the middle of its ``interrupt_at``-th trial."""

    interrupt_at = None

    def run_trial(self, trial, *args, **kwargs):
        done = len(getattr(self, "trials_run", []))
        if self.interrupt_at is not None and done + 1 == self.interrupt_at:
            self.__dict__.setdefault("trials_run", []).append(trial.trial_id)
            raise KeyboardInterrupt
        return super().run_trial(trial, *args, **kwargs)


def test_interrupted_search_resumes_and_finishes_with_exactly_max_trials(digits, tmp_path):
    train, val, shape = digits
    hm = _hypermodel("wreg", shape, width=2, steps_per_epoch=8, epochs=1)
    kwargs = dict(objective="val_accuracy", max_trials=4, seed=1, directory=str(tmp_path),
                  project_name="resume")
    first = _Interrupting(hm, **kwargs)
    first.interrupt_at = 3
    with pytest.raises(KeyboardInterrupt):
        first.search(train, validation_data=val, epochs=1, verbose=0)
    assert first.trials_run == ["0", "1", "2"]
    statuses = {t.trial_id: t.status for t in first.oracle.trials.values()}
    assert statuses == {"0": "COMPLETED", "1": "COMPLETED", "2": "RUNNING"}

    second = _Interrupting(hm, overwrite=False, **kwargs)  # reloads the project
    second.search(train, validation_data=val, epochs=1, verbose=0)
    # the interrupted trial is re-run, the completed ones are not, and no extra trial appears
    assert second.trials_run == ["2", "3"]
    trials = second.oracle.trials
    assert sorted(trials) == ["0", "1", "2", "3"]
    assert all(t.status == "COMPLETED" for t in trials.values())
    assert second.remaining_trials == 0
    assert len(second.get_best_models(2)) == 2


# -- the tune job (CLI functions), end to end on real MNIST -------------------------------------


@pytest.mark.slow
def test_run_tune_on_real_data_writes_config_json_and_plot_and_learns(tmp_path):
    # no --dataset: the tune job's offline default (local MNIST, else the bundled digits)
    epochs = "2" if data.default_dataset() == "mnist" else "5"
    args = _parse([
        "--method", "larq", "--tuner", "random", "--max-trials", "2", "--epochs", epochs,
        "--width", "16", "--train-subset", "2500", "--test-subset", "500",
        "--batch-size", "64", "--validation-split", "0.2", "--out", str(tmp_path),
        "--verbose", "0", "--seed", "0",
    ])
    result = tuning.run_tune(args)
    config = json.loads(open(result["config_path"]).read())
    assert set(config) == {"method", "model", "params"}
    assert config["method"] == "larq" and config["model"] in models.MODELS
    recipes.get("larq").params(config["params"])  # what `train --config` does with it
    trials = result["trials"]
    assert len(trials) == 2 and all(status == "COMPLETED" for _, status, _ in trials)
    assert result["best_value"] == max(v for _, _, v in trials)
    png = open(result["plot_path"], "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert result["test_accuracy"] > 0.3  # chance is 0.1


def test_parse_params_and_bad_items():
    assert tuning.command.parse_params(["strength=1e-5", "region=both", "use_wreg=false",
                                        "clip=None"]) == {
        "strength": 1e-5, "region": "both", "use_wreg": False, "clip": None}
    with pytest.raises(ValueError, match="--param"):
        tuning.command.parse_params(["strength"])


def test_tuner_level_optimizer_override_recompiles_the_tf_keras_model(tmp_path):
    hm = _hypermodel("larq", (8, 8, 1), width=2)
    tuner = tuning.make_tuner("random", hm, max_trials=1, directory=str(tmp_path),
                              optimizer=keras.optimizers.SGD(0.25))
    model = tuner._try_build(tuner.oracle.get_space())
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.25)
    x = np.zeros((4, 8, 8, 1), "float32")
    _, accuracy = model.evaluate(x, np.zeros(4), verbose=0)  # the accuracy metric is kept
    assert 0.0 <= accuracy <= 1.0


def test_several_executions_keep_the_best_one_and_best_models_reproduce_it(digits, tmp_path):
    train, val, shape = digits
    hm = _hypermodel("larq", shape, width=4, steps_per_epoch=4, epochs=2)
    tuner = tuning.make_tuner("random", hm, max_trials=1, directory=str(tmp_path),
                              executions_per_trial=2)
    tuner.search(train, validation_data=val, epochs=2, verbose=0)
    trial = tuner.oracle.get_best_trials(1)[0]
    metrics = trial.metrics.metrics
    assert "val_accuracy_mean" in metrics and "val_accuracy_std" in metrics
    mean = trial.metrics.get_last_value("val_accuracy_mean")
    assert trial.score >= mean  # the kept execution is the best one
    _, accuracy = tuner.get_best_models(1)[0].evaluate(val, verbose=0)
    assert accuracy == pytest.approx(trial.score, abs=1e-6)
    files = sorted(os.listdir(tuner.get_trial_dir(trial.trial_id)))
    assert not any(f.startswith("execution_") for f in files)


@pytest.mark.slow
def test_tune_wreg_example_searches_then_trains_the_best_configuration(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "tune_wreg.py"
    spec = importlib.util.spec_from_file_location("tune_wreg", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--dataset", "digits", "--max-trials", "1", "--epochs", "1",
                        "--final-epochs", "1", "--width", "4", "--train-subset", "512",
                        "--test-subset", "128", "--out", str(tmp_path / "tune")]) == 0
    out = capsys.readouterr().out
    assert "best configuration trained 1 epochs: test accuracy" in out
    assert "val_accuracy" in out  # validated on the search's validation split
    config = json.loads((tmp_path / "tune" / "best_config.json").read_text())
    assert config["method"] == "wreg" and (tmp_path / "tune" / "best_config.png").exists()


@pytest.mark.parametrize("share", ["0", "0.001"])
def test_a_search_without_validation_images_is_refused_not_run_on_the_test_set(tmp_path, share):
    args = _parse(["--method", "larq", "--dataset", "digits", "--max-trials", "1", "--epochs",
                   "1", "--train-subset", "100", "--validation-split", share,
                   "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="validation-split.*test set"):
        tuning.run_tune(args)
    assert not any(tmp_path.iterdir())  # refused before any trial
