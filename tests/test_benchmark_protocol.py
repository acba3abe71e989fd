"""The efficacy protocol (../shared/design/PROTOCOL.md) as the benchmark code enforces it, and the
committed results held to it: complete run records, arms that mean what their run files say,
recipe defaults that are the selected winners' parameters, one commit per arm or a recorded
equivalence check, selection in code on seed 0 with seeds 1-3 reported."""

import copy
import importlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import common, equivalence  # noqa: E402
from keras_wreg import recipes  # noqa: E402
from keras_wreg.recipes.base import DISTILL_DEFAULTS  # noqa: E402

SUITES = ("efficacy_000", "efficacy_001", "efficacy_003", "efficacy_004")
#: suites with committed runs whose keras_wreg winner is a method option, not the recipe's
#: default (their records are held to the protocol; the defaults rule applies to SUITES)
RECORDED = SUITES + ("efficacy_002", "efficacy_000_homotopy", "efficacy_000_scratch")
#: every efficacy suite module, those whose runs are still to come included
ALL_SUITES = SUITES + ("efficacy_002", "efficacy_kd", "efficacy_000_scratch",
                       "efficacy_000_homotopy")


def _suite(name):
    return importlib.import_module(f"benchmarks.{name}")


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_every_arm_is_a_valid_recipe_configuration_and_both_sides_exist(suite):
    mod = _suite(suite)
    for config, (recipe, overrides) in mod.CONFIGS.items():
        if recipe in recipes.RECIPES:
            recipes.get(recipe).params(overrides)  # raises for a bad key or value
    candidates = set(mod.CONFIGS) - set(mod.REFERENCE_ARMS)
    if getattr(mod, "SHARED_RUNS", None):  # the baseline's runs come from another suite
        candidates |= set(mod.BASELINE_ARMS)
    assert mod.BASELINE_ARMS and set(mod.BASELINE_ARMS) <= candidates
    assert candidates - set(mod.BASELINE_ARMS), "no keras_wreg arm"
    assert {"SUITE", "PROTOCOL", "PROTOCOL_KEYS", "START_CHECKPOINT"} <= set(vars(mod))


@pytest.mark.parametrize("suite", RECORDED)
def test_committed_run_files_hold_every_protocol_field(suite):
    mod = _suite(suite)
    runs = common.load_runs(mod.OUT / "runs")
    assert runs
    problems = [p for rs in runs.values() for r in rs for p in common.run_problems(r)]
    assert problems == []
    for rs in runs.values():
        for r in rs:
            assert r["split"] == common.CIFAR10_SPLIT
            start = r["start_checkpoint"]
            if mod.START_CHECKPOINT is None:  # from scratch: every arm from the seed's init
                assert start["path"] is None and start["sha256"] is None
                assert r["pretrain_epochs"] == 0 and "random" in start["from"]
            else:
                assert not Path(start["path"]).is_absolute()
                assert len(start["sha256"]) == 64


@pytest.mark.parametrize("suite", RECORDED)
def test_every_arm_still_builds_the_params_its_run_files_record(suite):
    """A recipe default that moves must not silently change what an arm name means."""
    mod = _suite(suite)
    for config, rs in common.load_runs(mod.OUT / "runs").items():
        recipe, overrides = mod.CONFIGS[config]
        recorded = {k: v for k, v in rs[0]["params"].items() if k != "optimizer"}
        if recipe in recipes.RECIPES:
            params = recipes.get(recipe).params(overrides)
            # keys added since a run, at values that keep the behaviour the run had: the
            # distillation settings (they act only with a teacher, which no run had) and the
            # wreg recipe's latent forward (off), snap (latent only) and pull shape (cosine,
            # the Ramp default the runs used)
            added = {k: params.pop(k) for k in list(params) if k not in recorded}
            allowed = {**DISTILL_DEFAULTS, "forward": "binary", "snap": True,
                       "bn_recalibrate": 50, "pull_shape": "cosine",
                       "activation": "ste_sign", "activation_bits": 2}
            assert {k: allowed.get(k, "<not allowed>") for k in added} == added, config
            assert params == recorded, config
        elif recipe == "tfmot":
            assert dict(overrides) == recorded, config


@pytest.mark.parametrize("suite", SUITES)
def test_recipe_defaults_are_the_selected_winners_params(suite):
    """PROTOCOL.md: the recipe's defaults are the measured winner's parameters, except the
    keys the suite lists as the protocol's (the fine-tuning learning rate)."""
    mod = _suite(suite)
    runs = common.load_runs(mod.OUT / "runs")
    sel = common.suite_select(mod, runs)
    winner = runs[sel["winner"]][0]
    defaults = recipes.get(winner["recipe"]).params()
    differ = {k: (defaults.get(k), v) for k, v in winner["params"].items()
              if k not in mod.PROTOCOL_KEYS and defaults.get(k) != v}
    assert differ == {}, f"{suite}: {sel['winner']} ran with {differ} (default, winner)"
    assert set(mod.PROTOCOL_KEYS) <= set(defaults)


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_assembled_results_name_the_model_and_width_the_arms_trained(suite):
    mod = _suite(suite)
    path = mod.RESULTS / f"{suite}.json"
    if not path.exists():
        pytest.skip(f"{suite} is not assembled yet")
    payload = json.loads(path.read_text())
    assert (payload["model"], payload["width"]) == (getattr(mod, "MODEL", "vgg_small"), mod.WIDTH)


@pytest.mark.parametrize("suite", RECORDED)
def test_arms_that_ran_at_several_commits_have_an_equivalence_record(suite):
    runs = common.load_runs(_suite(suite).OUT / "runs")
    assert common.commit_problems(suite, runs) == []


def test_equivalence_records_are_checks_that_can_fail():
    records = common.load_equivalence()
    assert any(not r["identical"] for r in records)  # a drifted arm was caught
    assert all(len(r["commits"]) >= 2 for r in records)
    same = [np.arange(6.0).reshape(2, 3), np.ones(4)]
    assert equivalence.compare([same, copy.deepcopy(same)]) == (True, 0.0)
    moved = [same[0] + 1e-7 * (np.arange(6).reshape(2, 3) == 4), same[1]]
    identical, worst = equivalence.compare([same, moved])
    assert not identical and 0 < worst < 1e-6


# --------------------------------------------------------------------------- synthetic suites
def _run(config, seed, val, test, **changes):
    run = {"config": config, "seed": seed, "recipe": "larq", "params": {"learning_rate": 1e-3},
           "protocol": "p", "dataset": "cifar10", "data": "cifar10",
           "split": dict(common.CIFAR10_SPLIT),
           "start_checkpoint": {"path": "ckpt.h5", "sha256": "0" * 64}, "pretrain_epochs": 1,
           "epochs": 2, "batch_size": 8, "learning_rate": 1e-3, "lr_schedule": "cosine",
           "val_curve": [val - 0.1, val], "train_curve": [0.1, 0.2], "final_val_accuracy": val,
           "test_accuracy": test, "test_reads": 1, "wall_seconds_last_session": 1.0,
           "commit": "aaaaaaa", "command": "x"}
    run.update(changes)
    return run


def _fake(tmp_path, runs, baselines=("base_a", "base_b")):
    (tmp_path / "runs").mkdir(exist_ok=True)
    for r in runs:
        (tmp_path / "runs" / f"{r['config']}-s{r['seed']}.json").write_text(json.dumps(r))
    return types.SimpleNamespace(SUITE="fake", OUT=tmp_path, BASELINE_ARMS=set(baselines),
                                 REFERENCE_ARMS={"float"}, WIDTH=8, FINETUNE_EPOCHS=2,
                                 PRETRAIN_EPOCHS=1, PROTOCOL="p", PROTOCOL_KEYS=())


def _complete(**win_changes):
    """Two arms a side; seed 0 selects base_b and kw_b; seeds 1-3 decide."""
    runs = [_run("base_a", 0, 0.70, 0.99), _run("base_b", 0, 0.72, 0.10),
            _run("kw_a", 0, 0.80, 0.99), _run("kw_b", 0, 0.81, 0.10),
            _run("float", 0, 0.95, 0.95)]
    for s, (b, w) in zip((1, 2, 3), ((0.70, 0.75), (0.71, 0.76), (0.72, 0.74))):
        runs += [_run("base_b", s, 0.7, b), _run("kw_b", s, 0.8, w, **win_changes)]
    return runs


def test_assemble_selects_on_seed_0_and_compares_seeds_1_to_3(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "EQUIVALENCE", tmp_path / "none.json")
    runs, payload = common.assemble_suite(_fake(tmp_path, _complete()))
    sel = payload["selection"]
    assert (sel["baseline"], sel["winner"]) == ("base_b", "kw_b")  # not the test-best arms
    assert "float" not in sel["validation"]  # the reference is never a candidate
    assert sel["tried"] == {"baseline": 2, "keras_wreg": 2}
    assert payload["winner"]["seeds"] == [1, 2, 3] and payload["baseline"]["seeds"] == [1, 2, 3]
    assert payload["winner"]["test_accuracy"] == [0.75, 0.76, 0.74]  # seed 0's 0.10 is not in
    assert payload["winner_minus_baseline_pt"] == pytest.approx(4.0)
    assert payload["welch_p"] < 0.05 and payload["verdict"] == "beats"
    assert payload["preliminary"] is False and payload["gaps"] == []
    assert payload["winner"]["params"] == {"learning_rate": 1e-3}
    assert "| baseline | **base_b** | 72.00 |" in common.selection_table(runs, sel)


@pytest.mark.parametrize("change, message", [
    ({"split": None}, "no `split`"),
    ({"start_checkpoint": None}, "no `start_checkpoint`"),
    ({"params": None}, "no `params`"),
    ({"test_reads": 2}, "read 2 times"),
    ({"data": "/work/shared/data/cifar10"}, "absolute machine path in `data`"),
    ({"commit": "bbbbbbb"}, "no equivalence record"),
    ({"params": {"learning_rate": 5e-4}}, "different params"),
])
def test_assemble_refuses_runs_that_break_a_rule(tmp_path, monkeypatch, change, message):
    monkeypatch.setattr(common, "EQUIVALENCE", tmp_path / "none.json")
    runs = _complete()
    runs[-1].update(change)  # kw_b seed 3
    with pytest.raises(SystemExit, match=message.replace("(", r"\(")):
        common.assemble_suite(_fake(tmp_path, runs), preliminary=True)


def test_mixed_commits_pass_with_a_recorded_identical_check(tmp_path, monkeypatch):
    records = tmp_path / "equivalence.json"
    monkeypatch.setattr(common, "EQUIVALENCE", records)
    runs = _complete()
    runs[-1]["commit"] = "bbbbbbb"
    mod = _fake(tmp_path, runs)
    entry = {"suite": "fake", "config": "kw_b", "commits": ["aaaaaaa", "bbbbbbb"]}
    records.write_text(json.dumps([{**entry, "identical": False}]))
    with pytest.raises(SystemExit, match="kw_b: seeds ran at commits"):
        common.assemble_suite(mod)
    records.write_text(json.dumps([{**entry, "identical": True}]))
    assert common.assemble_suite(mod)[1]["winner"]["commits"] == ["aaaaaaa", "bbbbbbb"]


def test_unequal_effort_and_missing_seeds_are_refused_or_marked(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "EQUIVALENCE", tmp_path / "none.json")
    runs = [r for r in _complete() if r["config"] != "base_a"]  # 1 baseline setting vs 2
    runs = [r for r in runs if not (r["config"] == "kw_b" and r["seed"] == 3)]
    mod = _fake(tmp_path, runs)
    with pytest.raises(SystemExit, match="unequal effort: 1 baseline settings vs 2"):
        common.assemble_suite(mod)
    payload = common.assemble_suite(mod, preliminary=True)[1]
    assert payload["preliminary"] is True
    assert any("reported seeds [3] not run" in g for g in payload["gaps"])
    assert common.missing_reported(mod) == [("kw_b", 3)]


@pytest.mark.parametrize("diff, p, word", [
    (1.0, 0.01, "beats"), (-1.0, 0.01, "loses to"), (0.3, 0.33, "ties (p = 0.33)"),
    (-0.3, 0.2, "ties (p = 0.20)"), (2.0, None, "not tested"),
])
def test_verdict_words_match_the_protocol(diff, p, word):
    assert common.verdict_word(diff, p).startswith(word)


def test_assemble_takes_no_hand_picked_arms():
    parser = common.efficacy_parser("doc", {"a": None})
    with pytest.raises(SystemExit):
        parser.parse_args(["assemble", "--baseline", "a", "--winner", "a"])
    assert parser.parse_args(["assemble"]).command == "assemble"


def test_deploy_loads_only_the_weights_a_run_file_recorded(tmp_path):
    """efficacy_001_deploy rebuilds a run's model from its recipe and params and loads the final
    weights the suite kept, refusing a file whose sha256 is not the one the run recorded."""
    from benchmarks import efficacy_001_deploy as deploy
    from keras_wreg._compat import keras

    recipe = recipes.get("fda")
    params = recipe.params({"variant": "full"})
    keras.utils.set_random_seed(0)
    model = recipe.build_model("resnet18", (32, 32, 3), 10, params, width=4)
    path = tmp_path / "efficacy_001" / "final" / "fda_full-s1.weights.h5"
    path.parent.mkdir(parents=True)
    model.save_weights(path)
    run = {"config": "fda_full", "seed": 1, "recipe": "fda", "params": params,
           "model": "resnet18", "width": 4,
           "final_weights": {"file": "efficacy_001/final/fda_full-s1.weights.h5",
                             "sha256": common.sha256_file(path)}}
    loaded = deploy.load_run_model(run, tmp_path)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert len(deploy.binary_convolutions(loaded)) == 16
    assert deploy.binary_convolutions(
        recipe.build_model("resnet18_fp", (32, 32, 3), 10, params, width=4)) == []
    with pytest.raises(SystemExit, match="not the file"):
        deploy.load_run_model({**run, "final_weights": {**run["final_weights"],
                                                        "sha256": "0" * 64}}, tmp_path)
    with pytest.raises(SystemExit, match="no final weights"):
        deploy.load_run_model({k: v for k, v in run.items() if k != "final_weights"}, tmp_path)
