"""Distributed search with KerasTuner's chief/worker mode: one chief + two workers on loopback."""

import importlib.util
import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def _launcher():
    spec = importlib.util.spec_from_file_location(
        "distributed_tune", ROOT / "examples" / "distributed_tune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _result(log):
    lines = [l for l in log.splitlines() if l.startswith("[keras-wreg tune] result ")]
    assert lines, log[-3000:]
    return json.loads(lines[-1][len("[keras-wreg tune] result "):])


def test_chief_and_two_workers_on_loopback_complete_the_search_without_loss_or_repeat(tmp_path):
    launcher = _launcher()
    max_trials = 4
    args = ["--method", "larq", "--tuner", "random", "--max-trials", str(max_trials),
            "--epochs", "1", "--dataset", "digits", "--width", "2", "--batch-size", "64",
            "--validation-split", "0.2", "--out", str(tmp_path / "search"),
            "--project-name", "dist", "--verbose", "0", "--overwrite"]
    old_cwd = os.getcwd()
    os.chdir(ROOT)  # the subprocesses import this worktree's keras_wreg
    try:
        results = launcher.launch(args, workers=2, host="127.0.0.1", timeout=240,
                                  log_dir=str(tmp_path))
    finally:
        os.chdir(old_cwd)
    for tuner_id, (code, log) in results.items():
        assert code == 0, f"{tuner_id} failed:\n{log[-3000:]}"
    chief = _result(results["chief"][1])
    workers = {t: _result(results[t][1]) for t in ("tuner0", "tuner1")}
    assert chief["trials_run"] == []  # the chief only serves the oracle
    ran = [tid for w in workers.values() for tid in w["trials_run"]]
    # every trial ran exactly once, on some worker; none lost, none twice
    assert sorted(ran) == sorted(set(ran)) == [str(i) for i in range(max_trials)]
    assert all(w["role"] == "worker" for w in workers.values())
    # the chief's record: exactly max_trials completed trials, and the outputs of the job
    assert len(chief["trials"]) == max_trials
    assert all(status == "COMPLETED" for _, status, _ in chief["trials"])
    config = json.loads(Path(chief["config_path"]).read_text())
    assert set(config) == {"method", "model", "params"}
    assert Path(chief["plot_path"]).is_file()
    trial_files = sorted((tmp_path / "search" / "dist").glob("trial_*/trial.json"))
    assert len(trial_files) == max_trials
