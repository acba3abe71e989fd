"""Step time of bfloat16 mixed precision vs float32 on this machine, measured interleaved.

The same method, model and data are built once per policy (``mixed_bfloat16`` and
``float32``); then ``--rounds`` rounds alternate the two, each timing ``--steps`` training steps
of ``train_on_batch`` after a warm-up, so both see the same machine load. Writes
``benchmarks/results/mixed_precision.md`` (table, command, versions).

    python benchmarks/mixed_precision.py --method wreg --width 16 --rounds 5 --steps 20
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import keras_wreg  # noqa: F401  (sets the legacy-Keras switch)
from keras_wreg import data, distribute, recipes
from keras_wreg._compat import keras, lq, tf

POLICIES = ("float32", "bfloat16")


def build(method, policy, width, dataset, batch_size):
    previous = distribute.set_mixed_precision(policy)
    try:
        recipe = recipes.get(method)
        params = recipe.params()
        splits = data.load_dataset(dataset, batch_size=batch_size, train_subset=batch_size * 8)
        keras.utils.set_random_seed(0)
        model = recipe.build_model(recipe.default_model, splits.input_shape,
                                   splits.num_classes, params, width=width)
        recipe.compile(model, params, 1000)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    batches = [b for b in splits.train.take(4)]
    return model, batches


def time_steps(model, batches, steps):
    start = time.perf_counter()
    for i in range(steps):
        x, y = batches[i % len(batches)]
        model.train_on_batch(x, y)
    return (time.perf_counter() - start) / steps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--method", default="wreg")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                             "mixed_precision.md"))
    args = parser.parse_args(argv)
    models = {p: build(args.method, p, args.width, args.dataset, args.batch_size)
              for p in POLICIES}
    for model, batches in models.values():  # warm-up: trace and first steps
        time_steps(model, batches, 3)
    times = {p: [] for p in POLICIES}
    for r in range(args.rounds):
        order = POLICIES if r % 2 == 0 else POLICIES[::-1]
        for p in order:
            times[p].append(time_steps(*models[p], args.steps))
        print(f"round {r}: " + ", ".join(f"{p} {times[p][-1] * 1e3:.1f} ms" for p in POLICIES),
              flush=True)
    ratios = [b / f for b, f in zip(times["bfloat16"], times["float32"])]
    med = {p: statistics.median(v) for p, v in times.items()}
    ratio = statistics.median(ratios)
    lines = [
        "# bfloat16 vs float32 step time (interleaved)",
        "",
        f"Command: `python benchmarks/mixed_precision.py {' '.join(sys.argv[1:] if argv is None else argv)}`",
        f"Versions: TensorFlow {tf.__version__}, tf-keras {keras.__version__}, Larq "
        f"{lq.__version__}; CPU only ({len(tf.config.list_physical_devices('CPU'))} device), "
        "shared 2-core machine.",
        f"Setup: method `{args.method}`, its default model at width {args.width}, "
        f"{args.dataset}, batch {args.batch_size}; {args.rounds} rounds alternating the order, "
        f"{args.steps} `train_on_batch` steps each after 3 warm-up steps.",
        "",
        "| policy | median step (ms) | per round (ms) |",
        "|---|---:|---|",
    ]
    for p in POLICIES:
        lines.append(f"| {'mixed_bfloat16' if p == 'bfloat16' else p} | {med[p] * 1e3:.1f} | "
                     + ", ".join(f"{t * 1e3:.1f}" for t in times[p]) + " |")
    lines += ["", f"**bfloat16 / float32 step-time ratio: {ratio:.2f}** (median of the "
                  f"per-round ratios; min {min(ratios):.2f}, max {max(ratios):.2f}).", ""]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
