"""Are an efficacy arm's training steps identical at two package commits?

PROTOCOL.md: every seed of a reported arm runs at one package commit, unless a check shows that
the arm trains identically at the commits involved. This script is that check. For each commit
it checks the tree out (``git worktree``, detached, under ``--tmp``), and runs the arm's own
code at that commit on a tiny problem: the suite module's ``build`` (``efficacy_000``) or
``train_arm`` (the suites built on ``common.run_efficacy``) at width 8 for 2 epochs of 4
batches of 16 seeded random images, with TensorFlow's op determinism. It then compares every
weight of the trained models bit for bit and appends the verdict to
``benchmarks/results/equivalence.json`` (``common.assemble_suite`` reads it).

    python -m benchmarks.equivalence --suite efficacy_000 --config cosine_momentum
    python -m benchmarks.equivalence --suite efficacy_003 --config ste_tern_fixed --commits 041e7f4 HEAD

Without ``--commits`` the commits are those of the arm's run files (plus HEAD). The TF-MOT
arms need TF-MOT on ``PYTHONPATH`` (see ``efficacy_004``).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RECORDS = REPO / "benchmarks" / "results" / "equivalence.json"

# Runs inside the checked-out tree of one commit; uses only APIs every checked commit has.
DRIVER = r"""
import os, sys, tempfile
import numpy as np
sys.path.insert(0, os.getcwd())
import keras_wreg  # noqa: F401  (switches tf.keras to tf-keras)
from keras_wreg import data, models
from keras_wreg._compat import keras, tf
import importlib
suite, config, out = sys.argv[1:4]
tf.config.experimental.enable_op_determinism()
mod = importlib.import_module("benchmarks." + suite)
keras.utils.set_random_seed(1)
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (96, 32, 32, 3)).astype("uint8")
y = rng.integers(0, 10, 96).astype("int64")
train = data.make_pipeline(x[:64], y[:64], 16, shuffle=True, augment=True, seed=1)
val = data.make_pipeline(x[64:], y[64:], 16)
mod.WIDTH = 8
if suite == "efficacy_000":
    mod.FINETUNE_EPOCHS = 2
    model, _ = mod.build(config, (32, 32, 3), 8, 1)
    keras.utils.set_random_seed(1)
    model.fit(train, epochs=2, verbose=0)
else:
    mod.FINETUNE_EPOCHS = 2
    keras.utils.set_random_seed(0)
    fp = models.build("vgg_small_fp", (32, 32, 3), 10, width=8)
    keras.utils.set_random_seed(1)
    with tempfile.TemporaryDirectory() as work:
        model, _, _ = mod.train_arm(config, fp, (train, val, 4, (32, 32, 3)), work, [], 0)
np.savez(out, *model.get_weights())
"""


def _git(*args):
    return subprocess.run(["git", *args], cwd=REPO, check=True, capture_output=True,
                          text=True).stdout.strip()


def run_commit(commit, suite, config, tmp):
    """Train the arm at ``commit``; returns the list of its final weights."""
    tree = Path(tmp) / f"tree-{commit}"
    if not tree.exists():
        _git("worktree", "add", "--detach", str(tree), commit)
    out = Path(tmp) / f"{suite}-{config}-{commit}.npz"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tree)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    proc = subprocess.run([sys.executable, "-c", DRIVER, suite, config, str(out)], cwd=tree,
                          env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{commit}: the arm failed to train:\n{proc.stderr[-3000:]}")
    with np.load(out) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


def compare(weights):
    """(identical bit for bit, largest absolute difference) of every commit's weights against
    the first commit's."""
    ref = weights[0]
    identical, worst = True, 0.0
    for other in weights[1:]:
        if len(other) != len(ref) or any(a.shape != b.shape for a, b in zip(ref, other)):
            return False, float("inf")
        for a, b in zip(ref, other):
            identical &= bool(np.array_equal(a, b))
            worst = max(worst, float(np.max(np.abs(a.astype("float64") - b))) if a.size else 0.0)
    return identical, worst


def run_commits(suite, config):
    commits = set()
    for path in (REPO / "benchmarks" / "results" / suite / "runs").glob(f"{config}-s*.json"):
        commits.add(json.loads(path.read_text())["commit"].replace("+dirty", ""))
    return sorted(commits)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--suite", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--commits", nargs="+", help="default: the arm's run files' commits")
    parser.add_argument("--tmp", default=None, help="where the worktrees go (default: a temp dir)")
    args = parser.parse_args(argv)
    commits = args.commits or run_commits(args.suite, args.config) + ["HEAD"]
    commits = list(dict.fromkeys(_git("rev-parse", "--short", c) for c in commits))
    tmp = args.tmp or tempfile.mkdtemp(prefix="kw-equivalence-")
    try:
        weights = []
        for commit in commits:
            print(f"[equivalence] {args.suite} {args.config} at {commit}", flush=True)
            weights.append(run_commit(commit, args.suite, args.config, tmp))
    finally:
        _git("worktree", "prune")
    identical, worst = compare(weights)
    record = {"suite": args.suite, "config": args.config, "commits": commits,
              "identical": identical, "max_abs_difference": worst,
              "check": "width 8, 2 epochs x 4 batches of 16 seeded random images, op "
                       "determinism, every weight compared bit for bit",
              "command": f"python -m benchmarks.equivalence --suite {args.suite} --config "
                         f"{args.config} --commits {' '.join(commits)}"}
    records = json.loads(RECORDS.read_text()) if RECORDS.exists() else []
    records = [r for r in records if not (r["suite"] == args.suite and r["config"] ==
                                          args.config and r["commits"] == commits)] + [record]
    RECORDS.write_text(json.dumps(records, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
