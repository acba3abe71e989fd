"""Defaults search for WReg + CosineMomentum on a held-out validation split (never the test set).

Every setting trains the same binary VGG-small with the same seed, data order and budget; the
plain Larq baseline is trained once alongside. Settings are ``;``-separated lists of
``key=value`` overrides of the ``wreg`` recipe, e.g.

    python -m benchmarks.sweep_binary --train-subset 15000 --epochs 4 --width 16 \
        --settings "strength=1e-5;strength=1e-4;strength=1e-4,alpha=channel"

Writes ``benchmarks/results/sweep_binary[_TAG].md`` (+ ``.json``).
"""

import argparse
import sys
import time
from pathlib import Path

from benchmarks import common
from benchmarks.binary import RESULTS, run_config
from keras_wreg import data
from keras_wreg.cli import _parse_param


def parse_setting(text):
    text = text.strip()
    if not text or text == "defaults":
        return {}
    return dict(_parse_param(part) for part in text.split(","))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--validation", type=float, default=0.1)
    parser.add_argument("--settings", required=True, help="';'-separated override lists")
    parser.add_argument("--config", default="wreg+cosine_momentum",
                        help="benchmarks.binary config the settings apply to")
    parser.add_argument("--tag", default="")
    parser.add_argument("--verbose", type=int, default=0)
    args = parser.parse_args(argv)
    if not 0 < args.validation < 1:
        parser.error("--validation must be in (0, 1): the sweep never looks at the test set")
    settings = [parse_setting(s) for s in args.settings.split(";")]
    splits = data.load_dataset(args.dataset, batch_size=args.batch_size, augment=True,
                               validation_split=args.validation, train_subset=args.train_subset,
                               seed=0)
    began = time.perf_counter()
    baseline = run_config("larq", splits, args, args.seed, {}, splits.validation)
    print(f"[sweep] larq: {baseline['final']:.4f}", flush=True)
    rows = [["larq (baseline)", "—", baseline["final"], baseline["best"], 1.0,
             baseline["stats"].get("near_grid_channel")]]
    runs = [baseline]
    for setting in settings:
        run = run_config(args.config, splits, args, args.seed, setting, splits.validation)
        runs.append(run)
        print(f"[sweep] {setting}: {run['final']:.4f}", flush=True)
        rows.append([args.config, ", ".join(f"{k}={v}" for k, v in setting.items()) or "defaults",
                     run["final"], run["best"], run["step_time"] / baseline["step_time"],
                     run["stats"].get("near_grid_channel")])
    wall = time.perf_counter() - began
    command = "python -m benchmarks.sweep_binary " + " ".join(
        f'"{a}"' if (" " in a or ";" in a) else a for a in argv)
    stem = "sweep_binary" + (f"_{args.tag}" if args.tag else "")
    table = common.markdown_table(
        ["config", "overrides", "final val acc", "best val acc", "step time / larq",
         "within 0.1α_c"], rows)
    text = "\n".join([
        f"# Sweep ({stem})", "", f"Command: `{command}` (commit {common.git_commit()})", "",
        f"Validation: {splits.num_validation} images held out from the training set "
        f"(seeded split); {splits.num_train} train images; VGG-small width {args.width}; "
        f"{args.epochs} epochs; seed {args.seed}; wall {wall / 60:.1f} min.", "", table, ""])
    RESULTS.mkdir(parents=True, exist_ok=True)
    Path(RESULTS / f"{stem}.md").write_text(text)
    for r in runs:
        r.pop("end_values", None)
    common.write_json(RESULTS / f"{stem}.json", {"command": command, "runs": runs})
    print(text)


if __name__ == "__main__":
    main()
