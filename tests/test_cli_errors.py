"""CLI misuse: one clear line on stderr, non-zero exit, no traceback (``--debug`` shows it)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_wreg import cli

SCRIPT = Path(sys.executable).with_name("keras-wreg")


def _run(capsys, *argv):
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err


def _bad_npz(folder):
    folder.mkdir()
    np.savez(folder / "train.npz", x=np.zeros((4, 4, 4, 1), np.uint8), y=[0, 1, -3, 1])
    np.savez(folder / "test.npz", x=np.zeros((2, 4, 4, 1), np.uint8), y=[0, 1])
    return folder


@pytest.mark.parametrize("argv,words", [
    (["train", "--epochs", "0"], ["--epochs", "0"]),
    (["train", "--validation-split", "1.5"], ["--validation-split", "1.5"]),
    (["train", "--validation-split", "nan"], ["--validation-split", "nan"]),
    (["train", "--batch-size", "-4"], ["--batch-size", "-4"]),
    (["train", "--width", "0"], ["--width"]),
    (["train", "--learning-rate", "inf"], ["--learning-rate", "inf"]),
    (["train", "--dataset", "digits", "--param", "strength=-1"], ["strength", "-1"]),
    (["train", "--dataset", "digits", "--param", "eta=nan"], ["eta", "nan"]),
    (["train", "--dataset", "digits", "--param", "nonsense=1"], ["nonsense"]),
    (["train", "--dataset", "digits", "--method", "nope"], ["method", "nope"]),
    (["train", "--dataset", "digits", "--model", "nope"], ["model", "nope"]),
    (["train", "--dataset", "digits", "--method", "cluster", "--centers", "100000000"],
     ["num_centers", "100000000"]),
    (["train", "--dataset", "/nonexistent/folder/x"], ["/nonexistent/folder/x"]),
    (["train", "--config", "/nonexistent/best.json"], ["/nonexistent/best.json"]),
])
def test_user_errors_are_one_line(capsys, tmp_path, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    code, err = _run(capsys, *argv, "--out", str(tmp_path / "run"))
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert lines[0].startswith("keras-wreg: error: ") and "Traceback" not in err
    assert all(w in lines[0] for w in words), lines[0]


def test_bad_config_and_bad_data_files_are_named(capsys, tmp_path):
    config = tmp_path / "best.json"
    config.write_text("{not json")
    code, err = _run(capsys, "train", "--config", str(config))
    assert code == 1 and str(config) in err and "not valid JSON" in err
    config.write_text(json.dumps([1, 2]))
    code, err = _run(capsys, "train", "--config", str(config))
    assert code == 1 and "JSON object" in err
    folder = _bad_npz(tmp_path / "bad")
    code, err = _run(capsys, "train", "--dataset", str(folder), "--out", str(tmp_path / "o"))
    assert code == 1 and str(folder / "train.npz") in err and "-3" in err
    assert len(err.strip().splitlines()) == 1


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="--epochs"):
        cli.main(["train", "--epochs", "0", "--debug"])


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--epochs", "three"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid int value: 'three'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_console_script_quiet_start_and_one_line_error(tmp_path):
    """The real entry point: no TensorFlow start-up lines, no AutoGraph warning, one error
    line; --debug brings the traceback back."""
    assert SCRIPT.exists(), SCRIPT
    env = {**os.environ, "KERAS_WREG_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    env.pop("KERAS_WREG_DEBUG", None)
    ok = subprocess.run([str(SCRIPT), "train", "--dataset", "digits", "--epochs", "1",
                         "--width", "4", "--verbose", "0", "--out", str(tmp_path / "run")],
                        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr.strip() == "", ok.stderr  # no I0000/cuInit lines, no AutoGraph warning
    assert "test accuracy" in ok.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["num_validation"] > 0 and "val_loss" in metrics["history"]
    bad = subprocess.run([str(SCRIPT), "train", "--epochs", "-2"], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=600)
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0, bad.stderr
    assert "--epochs" in bad.stderr and "Traceback" not in bad.stderr
    debug = subprocess.run([str(SCRIPT), "train", "--epochs", "-2", "--debug"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
