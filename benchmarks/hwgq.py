"""Seed 002 benchmark: HWGQ + scaled binary weights (+ alternating update) vs Larq DoReFa.

Runs in one process, same VGG-small layout, data, seed and epochs for every arm:

(a) Larq baseline: DoReFa 2-bit activations + ste_sign weights (weight_clip)
(b) HWGQ 2-bit activations + ScaledSign weights
(c) (b), then AlternateUpdate (variant A and variant B)
(d) (b), then ordinary full fine-tuning, epoch by epoch, until it reaches (c)'s accuracy

and writes benchmarks/results/hwgq.md (+ PNGs). ``--quick`` is the reduced run used on a
shared 2-core CPU (CIFAR-10 subset, narrow network, few epochs); ``--full`` is HWGQ's
VGG-small (width 128) on all of CIFAR-10.

    python -m benchmarks.hwgq --quick
    python -m benchmarks.hwgq --full
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import keras_wreg  # noqa: E402
from benchmarks import common
from keras_wreg import AlternateUpdate, compression_ratio, data, recipes  # noqa: E402
from keras_wreg._clone import clone  # noqa: E402
from keras_wreg._compat import keras, lq, tf  # noqa: E402
from keras_wreg.alternate import format_report  # noqa: E402
from keras_wreg.models import compression_table, vgg_small_hwgq  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

PRESETS = {
    "quick": dict(train_subset=8000, test_subset=2000, width=32, epochs=8, batch_size=64,
                  ft_max_epochs=3),
    "full": dict(train_subset=None, test_subset=None, width=128, epochs=200, batch_size=128,
                 ft_max_epochs=20),
}


EpochTimer = common.EpochTimer


def build(arm, shape, classes, width):
    if arm == "a":
        return vgg_small_hwgq(shape, classes, width=width, kernel_quantizer="ste_sign",
                              input_quantizer=lq.quantizers.DoReFa(2, mode="activations"),
                              kernel_constraint="weight_clip", name="a_dorefa")
    recipe = recipes.get("hwgq")
    return recipe.build_model("vgg_small_hwgq", shape, classes, recipe.params(), width=width)


def train_arm(arm, splits, cfg, args):
    keras.utils.set_random_seed(args.seed)
    model = build(arm, splits.input_shape, splits.num_classes, cfg["width"])
    recipe = recipes.get("hwgq")
    params = recipe.params({"learning_rate": args.lr})
    steps = cfg["epochs"] * int(np.ceil(splits.num_train / cfg["batch_size"]))
    recipe.compile(model, params, total_steps=steps)
    timer = EpochTimer()
    hist = model.fit(splits.train, epochs=cfg["epochs"], validation_data=splits.test,
                     callbacks=[timer], verbose=2)
    return model, dict(acc=hist.history["val_accuracy"], train_s=sum(timer.times))


def evaluate(model, splits):
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return float(model.evaluate(splits.test, verbose=0)[1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="reduced run (default)")
    mode.add_argument("--full", action="store_true", help="VGG-small w128, all of CIFAR-10")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--train-subset", type=int)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ft-lr", type=float, default=1e-4)
    parser.add_argument("--au-steps", type=int, default=20)
    parser.add_argument("--au-iterations", type=int, default=3)
    parser.add_argument("--au-batches", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "hwgq.md"))
    args = parser.parse_args(argv)
    preset = "full" if args.full else "quick"
    cfg = dict(PRESETS[preset])
    for key in ("epochs", "width", "train_subset"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    command = "python -m benchmarks.hwgq " + " ".join(argv if argv is not None else sys.argv[1:])

    splits = data.load_dataset("cifar10", batch_size=cfg["batch_size"], augment=preset == "full",
                               train_subset=cfg["train_subset"], test_subset=cfg["test_subset"],
                               seed=args.seed)
    wall = time.perf_counter()
    results = {}
    models = {}
    for arm in ("a", "b"):
        print(f"== training arm ({arm})", flush=True)
        models[arm], results[arm] = train_arm(arm, splits, cfg, args)
    base = models["b"]
    base_acc = evaluate(clone(base), splits)

    # (c) alternating update, both variants, from the same (b) weights
    au_reports = {}
    for variant in ("A", "B"):
        model = clone(base)
        au = AlternateUpdate(variant=variant, iterations=args.au_iterations,
                             steps=args.au_steps, learning_rate=args.ft_lr,
                             num_batches=args.au_batches)
        start = time.perf_counter()
        reports = au.run(model, splits.train)
        seconds = time.perf_counter() - start
        results[f"c{variant}"] = dict(acc=evaluate(model, splits), seconds=seconds)
        au_reports[variant] = reports
        print(f"(c{variant}) acc {results[f'c{variant}']['acc']:.4f} in {seconds:.1f} s",
              flush=True)

    # (d) full fine-tuning epoch by epoch until it reaches the best (c) accuracy
    target = max(results["cA"]["acc"], results["cB"]["acc"])
    model = clone(base)
    model.compile(keras.optimizers.Adam(args.ft_lr), "sparse_categorical_crossentropy",
                  ["accuracy"])
    d_curve, d_time, reached = [], 0.0, None
    for epoch in range(cfg["ft_max_epochs"]):
        start = time.perf_counter()
        model.fit(splits.train, epochs=1, verbose=0)
        d_time += time.perf_counter() - start
        acc = float(model.evaluate(splits.test, verbose=0)[1])
        d_curve.append((d_time, acc))
        print(f"(d) epoch {epoch + 1}: acc {acc:.4f}, {d_time:.1f} s", flush=True)
        if reached is None and acc >= target:
            reached = d_time
            break
    results["d"] = dict(curve=d_curve, reached=reached, target=target)
    wall = time.perf_counter() - wall

    cr = {arm: compression_ratio(models[arm]) for arm in ("a", "b")}
    write_results(args.out, preset, cfg, args, command, results, base_acc, au_reports, cr,
                  models["b"], wall)


def write_results(out, preset, cfg, args, command, results, base_acc, au_reports, cr, model_b,
                  wall):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    a, b = results["a"], results["b"]
    d = results["d"]
    best_c = max(("cA", "cB"), key=lambda k: results[k]["acc"])
    c = results[best_c]
    reduced = preset == "quick"
    lines = [
        "# Seed 002: HWGQ + scaled binary weights + alternating update",
        "",
        ("**REDUCED RUN** (shared 2-core CPU): " if reduced else "Full run: ")
        + f"CIFAR-10 (JPEG q75) train subset {cfg['train_subset'] or 50000}, test subset "
        f"{cfg['test_subset'] or 10000}, VGG-small width {cfg['width']} "
        f"(HWGQ's VGG-small is width 128), {cfg['epochs']} epochs, batch {cfg['batch_size']}, "
        f"Adam lr {args.lr} cosine decay, seed {args.seed}. These numbers are not comparable "
        "with the paper's; the full-size run is `python -m benchmarks.hwgq --full`.",
        "",
        f"Command: `{command}`  ",
        f"Versions: Python {platform.python_version()}, TensorFlow {tf.__version__}, tf-keras "
        f"{keras.__version__}, Larq {lq.__version__}, keras_wreg {keras_wreg.__version__}; "
        f"total wall time {wall / 60:.1f} min.",
        "",
        "## Accuracy and compression",
        "",
        "| arm | test accuracy | best epoch acc | train time (s) | compression ratio |",
        "|---|---:|---:|---:|---:|",
        f"| (a) Larq DoReFa 2-bit act + ste_sign weights | {a['acc'][-1]:.4f} | "
        f"{max(a['acc']):.4f} | {a['train_s']:.0f} | {cr['a']['ratio']:.1f}x |",
        f"| (b) HWGQ 2-bit act + ScaledSign weights | {b['acc'][-1]:.4f} | {max(b['acc']):.4f} "
        f"| {b['train_s']:.0f} | {cr['b']['ratio']:.1f}x |",
        f"| (c-A) (b) + AlternateUpdate variant A | {results['cA']['acc']:.4f} | | "
        f"{results['cA']['seconds']:.1f} (fine-tune) | {cr['b']['ratio']:.1f}x |",
        f"| (c-B) (b) + AlternateUpdate variant B | {results['cB']['acc']:.4f} | | "
        f"{results['cB']['seconds']:.1f} (fine-tune) | {cr['b']['ratio']:.1f}x |",
    ]
    for i, (t, acc) in enumerate(d["curve"]):
        lines.append(f"| (d) (b) + full fine-tuning, epoch {i + 1} | {acc:.4f} | | "
                     f"{t:.1f} (fine-tune, cumulative) | {cr['b']['ratio']:.1f}x |")
    gain = b["acc"][-1] - a["acc"][-1]
    lines += [
        "",
        "## Targets of issue #6 (measured)",
        "",
        f"- (b) - (a) = {100 * gain:+.2f} points (target >= +1.0): "
        f"{'met' if gain >= 0.01 else 'NOT met'}.",
    ]
    if d["reached"] is not None:
        ratio = c["seconds"] / d["reached"]
        lines.append(f"- best (c) = {best_c}: {c['acc']:.4f} in {c['seconds']:.1f} s; (d) "
                     f"reached that accuracy after {d['reached']:.1f} s: time ratio (c)/(d) = "
                     f"{ratio:.2f} (target <= 0.2): {'met' if ratio <= 0.2 else 'NOT met'}.")
    else:
        lines.append(f"- best (c) = {best_c}: {c['acc']:.4f} in {c['seconds']:.1f} s; (d) did "
                     f"not reach it within {len(d['curve'])} epochs "
                     f"({d['curve'][-1][1]:.4f} after {d['curve'][-1][0]:.1f} s), so (c)/(d) < "
                     f"{c['seconds'] / d['curve'][-1][0]:.2f}.")
    lines += [
        f"- (b) accuracy before fine-tuning (re-evaluated): {base_acc:.4f}.",
        f"- compression ratio of (b): {cr['b']['ratio']:.1f}x (target >= 25x; binary "
        "classifier, per-channel scales and BN statistics counted as 32-bit).",
        "",
        "## AlternateUpdate per-layer reports",
        "",
    ]
    for variant, reports in au_reports.items():
        lines += [f"### variant {variant}", "", format_report(reports), ""]
    lines += ["## Compression ratio of (b), per layer", "", compression_table(cr["b"]), ""]
    lines += ["![accuracy curves](hwgq_curves.png)", ""]
    out.write_text("\n".join(lines) + "\n")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(a["acc"]) + 1)
    axes[0].plot(epochs, a["acc"], "o-", label="(a) Larq DoReFa + ste_sign")
    axes[0].plot(epochs, b["acc"], "o-", label="(b) HWGQ + ScaledSign")
    axes[0].set(xlabel="epoch", ylabel="test accuracy", title="training")
    axes[0].legend()
    ts = [0.0] + [t for t, _ in d["curve"]]
    axes[1].plot(ts, [base_acc] + [acc for _, acc in d["curve"]], "o-", label="(d) full FT")
    for key, marker in (("cA", "s"), ("cB", "^")):
        axes[1].plot([0, results[key]["seconds"]], [base_acc, results[key]["acc"]],
                     marker + "--", label=f"(c) AlternateUpdate {key[1]}")
    axes[1].set(xlabel="fine-tuning wall time (s)", ylabel="test accuracy", title="fine-tuning")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(out.parent / "hwgq_curves.png", dpi=100)
    print(out.read_text())


if __name__ == "__main__":
    main()
