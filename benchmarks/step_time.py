"""Step-time overhead of WReg / CosineMomentum over plain Larq, measured interleaved.

Timing separate training runs one after another is fragile on a shared machine (the load changes
between runs). Here every configuration's model is built and compiled once, then the script
alternates blocks of training steps on the *same* batches (larq, wreg, cm, wreg+cm, larq, ...),
so every configuration sees the same machine state, and reports the median step time of each as
a ratio to plain Larq.

    python -m benchmarks.step_time --suite efficacy_000 --configs larq,larq_clip2,cosine_momentum \
        --blocks 8 --steps 25 --repeats 3          # >= 200 timed steps per config and repeat
    python -m benchmarks.step_time --width 32 --blocks 8 --steps 25

``--suite`` picks the configuration table (``efficacy_000``: benchmarks/efficacy_000.py; the
retired ``binary`` table is at the commit named in ``results/step_time.md``'s history); the first
config is the reference of the ratios. Writes
``results/<stem>.md`` and ``.json`` (``ratios`` per repeat, ``ratio_median``, the model, width
and batch).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import common
from benchmarks import efficacy_000
from keras_wreg import data, recipes
from keras_wreg._compat import keras


#: the step-time statistic compared (see the markdown: step times here are bimodal)
QUANTILE = 20


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--steps", type=int, default=25, help="training steps per block")
    parser.add_argument("--suite", choices=["efficacy_000"], default="efficacy_000")
    parser.add_argument("--configs", default="larq,cosine_momentum,pull_ramp")
    parser.add_argument("--stem", default="step_time",
                        help="results/<stem>.md and .json")
    parser.add_argument("--repeats", type=int, default=1,
                        help="independent interleaved rounds; ratios are reported per repeat "
                             "and as their median")
    args = parser.parse_args(argv)
    suite = {"efficacy_000": efficacy_000}[args.suite]
    CONFIGS = suite.CONFIGS
    configs = args.configs.split(",")
    unknown = [c for c in configs if c not in CONFIGS or c == "bop"]
    if unknown:
        parser.error(f"unknown or untimeable configs {unknown}; known: {sorted(CONFIGS)}")
    splits = data.load_dataset(args.dataset, batch_size=args.batch_size, augment=False,
                               train_subset=args.batch_size * args.steps)
    batches = [b for b in splits.train]
    models = {}
    for name in configs:
        method, overrides = CONFIGS[name]
        recipe = recipes.get(method)
        params = recipe.params(overrides)
        keras.utils.set_random_seed(0)
        model = recipe.build_model("vgg_small", splits.input_shape, splits.num_classes, params,
                                   width=args.width)
        recipe.compile(model, params, total_steps=10_000)
        model.train_on_batch(*batches[0])  # trace + build outside the timing
        models[name] = model
    repeats, medians = [], []  # per repeat: {config: step seconds at QUANTILE / median}
    for _ in range(args.repeats):
        times = {name: [] for name in configs}
        for _ in range(args.blocks):
            for name in configs:
                model = models[name]
                for x, y in batches:
                    start = time.perf_counter()
                    model.train_on_batch(x, y)
                    times[name].append(time.perf_counter() - start)
        repeats.append({n: float(np.percentile(times[n], QUANTILE)) for n in configs})
        medians.append({n: statistics.median(times[n]) for n in configs})
    ratios = {n: [r[n] / r[configs[0]] for r in repeats] for n in configs}
    median_ratios = {n: [r[n] / r[configs[0]] for r in medians] for n in configs}
    rows = [[name, 1000 * statistics.median([r[name] for r in repeats]),
             statistics.median(ratios[name]), ", ".join(f"{v:.4f}" for v in ratios[name]),
             ", ".join(f"{v:.3f}" for v in median_ratios[name]),
             args.blocks * len(batches)] for name in configs]
    table = common.markdown_table(
        ["config", f"step (ms, {QUANTILE}th percentile)", f"ratio to {configs[0]}",
         "ratio per repeat", "ratio of medians per repeat", "steps timed per repeat"], rows)
    command = "python -m benchmarks.step_time " + " ".join(argv)
    text = "\n".join([
        "# Step time, interleaved", "", f"Command: `{command}` (commit {common.git_commit()})", "",
        f"VGG-small width {args.width}, batch {args.batch_size}, {args.dataset}; {args.repeats} "
        f"repeat(s) of {args.blocks} rounds of {args.steps} steps per configuration, "
        f"interleaved; `train_on_batch` wall time. The ratio compares the {QUANTILE}th "
        "percentile of each configuration's step times: on these shared virtual machines step "
        "times are bimodal (about 165 or 310 ms for the same step, whatever the configuration, "
        "as the host takes the CPU away), so a median flips between the two modes from one "
        "repeat to the next (ratios of medians, shown for reference); the low percentile "
        f"measures the step itself. Versions: {common.versions()}.", "", table, ""])
    efficacy_000.RESULTS.mkdir(parents=True, exist_ok=True)
    stem = args.stem
    Path(efficacy_000.RESULTS / f"{stem}.md").write_text(text)
    Path(efficacy_000.RESULTS / f"{stem}.json").write_text(json.dumps({
        "command": command, "commit": common.git_commit(), "model": "vgg_small",
        "width": args.width, "batch": args.batch_size, "dataset": args.dataset,
        "reference": configs[0], "repeats": args.repeats,
        "steps_per_repeat": args.blocks * len(batches),
        "step_seconds": {n: statistics.median([r[n] for r in repeats]) for n in configs},
        "statistic": f"{QUANTILE}th percentile of the step times per config and repeat "
                     "(step_seconds: its median over the repeats)",
        "ratios": ratios, "ratio_median": {n: statistics.median(ratios[n]) for n in configs},
        "ratios_of_medians": median_ratios,
        "versions": common.versions()}, indent=2))
    print(text)


if __name__ == "__main__":
    main()
