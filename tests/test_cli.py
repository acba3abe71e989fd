import json

import pytest

from keras_wreg import cli, data, recipes

pytestmark = pytest.mark.slow


def test_default_resolves_to_real_offline_data():
    args = cli.build_parser().parse_args(["train"])
    method, model, params, dataset = cli._resolve_config(args)
    assert method == "wreg" and dataset in ("mnist", "digits") and params == {}
    assert data.default_dataset(data_dir="/nonexistent") in ("mnist", "digits")


def test_train_job_writes_outputs(tmp_path, capsys):
    out = tmp_path / "run"
    # the offline default dataset (MNIST when a local copy exists, else the bundled digits)
    dataset = data.default_dataset()
    budget = ["--epochs", "1"] if dataset == "mnist" else ["--epochs", "4", "--batch-size", "32"]
    cli.main(["train", "--train-subset", "6000", "--test-subset", "500", *budget,
              "--width", "16", "--out", str(out), "--verbose", "0", "--param", "strength=1e-4"])
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "Total" in printed  # lq.models.summary
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == dataset
    assert metrics["test_accuracy"] > 0.3 and metrics["params"]["strength"] == 1e-4
    # validated on a held-out 10 % of the training data, the test set only at the end
    (x_train, _), (x_test, _), _ = data.load_arrays(dataset)
    assert metrics["num_validation"] == round(0.1 * len(x_train))  # 6000 for MNIST
    assert metrics["num_test"] == min(500, len(x_test))
    assert "val_accuracy" in metrics["history"]
    for name in ("model.keras", "weight_histograms.png", "packed_weights.npz"):
        assert (out / name).stat().st_size > 0
    from keras_wreg import export

    loaded = export.load_model(out / "model.keras")
    assert type(loaded.optimizer).__name__ == "CosineMomentum"


def test_config_file_and_unknown_param(tmp_path):
    config = tmp_path / "best.json"
    config.write_text(json.dumps({"method": "larq", "model": "vgg_small",
                                  "params": {"learning_rate": 0.002}}))
    args = cli.build_parser().parse_args(["train", "--config", str(config)])
    assert cli._resolve_config(args)[:3] == ("larq", "vgg_small", {"learning_rate": 0.002})
    with pytest.raises(ValueError, match="nonsense"):
        cli.main(["train", "--dataset", "digits", "--param", "nonsense=1", "--out",
                  str(tmp_path / "x"), "--debug"])


def test_missing_tfds_dataset_gives_clear_error(tmp_path, capsys):
    code = cli.main(["train", "--dataset", "svhn_cropped", "--data-dir", str(tmp_path),
                     "--out", str(tmp_path / "y")])
    err = capsys.readouterr().err
    assert code == 1 and "svhn_cropped" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(data.DatasetNotFoundError, match="svhn_cropped"):
        cli.main(["--debug", "train", "--dataset", "svhn_cropped", "--data-dir", str(tmp_path),
                  "--out", str(tmp_path / "y")])


def test_tune_subcommand_is_wired(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["tune", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--tuner" in out and "--max-trials" in out


def test_methods_lists_every_recipe(capsys):
    from keras_wreg import recipes

    cli.main(["methods"])
    out = capsys.readouterr().out
    assert all(name in out for name in recipes.RECIPES)


@pytest.mark.parametrize("method", sorted(recipes.RECIPES))
def test_train_runs_every_method_with_its_defaults(method, tmp_path, capsys):
    """The main job with each recipe's *default* hyperparameters, to the end (model summary,
    metrics, .keras), so a default that breaks a later step (e.g. a quantizer Larq's summary
    cannot profile) fails here. Tiny budget: digits, width 4, two epochs."""
    out = tmp_path / method
    cli.main(["train", "--dataset", "digits", "--method", method, "--epochs", "2",
              "--batch-size", "64", "--width", "4", "--out", str(out), "--verbose", "0",
              "--no-export"])
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "Total" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == method
    # the saved model is the one that was evaluated: reloaded, it scores the same on the same
    # test split (a real check, unlike a bound on an accuracy)
    from keras_wreg import export

    splits = data.load_dataset("digits", batch_size=64, validation_split=0.1, seed=0)
    loaded = export.load_model(out / "model.keras")
    loaded.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    accuracy = loaded.evaluate(splits.test, verbose=0, return_dict=True)["accuracy"]
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=1e-6)
