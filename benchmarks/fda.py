"""Seed 001 benchmark: feature-distribution-guided binary ResNet-18 vs plain Larq, on CIFAR-10.

Runs in one process, same ResNet-18 layout (Bi-Real style, see keras_wreg.models.resnet18), data,
seed, optimizer (Adam, cosine decay) and epochs for every arm:

(fp)     full-precision twin (resnet18_fp)
(larq)   binary ResNet-18, plain Larq: ste_sign activations and weights, weight_clip
(static) binary ResNet-18, learnable static threshold sign(x - tau_c) only (RSign-like)
(fda)    binary ResNet-18 with FeatureDistributionAdjust + GroupExcitation + ThresholdSign

All binary arms use the same weights (ste_sign + weight_clip), so they differ only in the
activation path. Writes benchmarks/results/fda.md, fda.json, fda_curves.png and
fda_balance.png (the fraction of +1 among binarized activations per layer and over epochs).

``--quick`` (default) is the reduced run used on a shared 2-core CPU (CIFAR-10 subset, width 16,
few epochs); ``--full`` is ResNet-18 (width 64) on all of CIFAR-10 with augmentation.

    python -m benchmarks.fda --quick
    python -m benchmarks.fda --full
"""

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import keras_wreg  # noqa: E402,F401
from benchmarks.common import (git_commit, markdown_table, versions,  # noqa: E402
                               write_json)
from benchmarks import common
from keras_wreg._introspect import latent
from keras_wreg import data, recipes  # noqa: E402
from keras_wreg._compat import keras, lq  # noqa: E402
from keras_wreg.callbacks import ActivationBalance  # noqa: E402
from keras_wreg.layers import extra_flops  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

PRESETS = {
    "quick": dict(train_subset=6000, test_subset=2000, width=16, epochs=8, batch_size=64),
    "full": dict(train_subset=None, test_subset=None, width=64, epochs=120, batch_size=128),
}

ARMS = {
    "fp": ("fda", "resnet18_fp", {}),
    "larq": ("larq", "resnet18", {}),
    "static": ("fda", "resnet18", {"variant": "static"}),
    "fda": ("fda", "resnet18", {"variant": "full"}),
}
LABELS = {
    "fp": "full precision (resnet18_fp)",
    "larq": "binary, plain Larq (ste_sign)",
    "static": "binary, static learnable threshold (RSign-like)",
    "fda": "binary, FDA + group excitation + learnable zero point",
}

#: the paper's reported gap to full precision (ResNet-18, CIFAR-10), in points
PAPER_GAP = 0.4


EpochTimer = common.EpochTimer


def conv_macs(model):
    """Multiply-accumulates per example: binary (Larq QuantConv2D with a binary kernel) vs
    full precision (Conv2D, Dense)."""
    binary = fp = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            shape = layer.output_shape
            kernel = layer.kernel
            kernel = latent(kernel)
            per_output = int(np.prod(kernel.shape[:-1]))
            macs = int(np.prod(shape[1:])) * per_output
            if isinstance(layer, lq.layers.QuantConv2D) and layer.kernel_quantizer is not None:
                binary += macs
            else:
                fp += macs
    return binary, fp


def train_arm(arm, splits, cfg, args):
    method, model_name, overrides = ARMS[arm]
    keras.utils.set_random_seed(args.seed)
    recipe = recipes.get(method)
    params = recipe.params({"learning_rate": args.lr, **overrides})
    model = recipe.build_model(model_name, splits.input_shape, splits.num_classes, params,
                               width=cfg["width"])
    steps = cfg["epochs"] * len(splits.train)
    recipe.compile(model, params, total_steps=steps)
    balance = ActivationBalance().set_probe(args.probe)
    timer = EpochTimer()
    hist = model.fit(splits.train, epochs=cfg["epochs"], validation_data=splits.test,
                     callbacks=[timer, balance], verbose=2)
    binary_macs, fp_macs = conv_macs(model)
    return dict(
        acc=[float(v) for v in hist.history["val_accuracy"]],
        train_acc=[float(v) for v in hist.history["accuracy"]],
        train_s=float(sum(timer.times)), params=int(model.count_params()),
        balance=balance.history, extra_flops=extra_flops(model)["total"],
        binary_macs=binary_macs, fp_macs=fp_macs,
    )


def plot(results, cfg, out):
    out_dir, stem = Path(out).parent, Path(out).stem
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for arm, res in results.items():
        ax.plot(np.arange(1, len(res["acc"]) + 1), res["acc"], marker="o", label=LABELS[arm])
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"ResNet-18 w{cfg['width']} on CIFAR-10 (JPEG q75), reduced run")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / f"{stem}_curves.png", dpi=110)
    plt.close(fig)

    binary_arms = [a for a in results if results[a]["balance"] and
                   results[a]["balance"][-1]["positive_fraction"]]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for arm in binary_arms:
        last = results[arm]["balance"][-1]
        axes[0].plot(range(1, len(last["positive_fraction"]) + 1),
                     list(last["positive_fraction"].values()), marker="o", label=LABELS[arm])
        axes[1].plot(range(1, len(last["channel_imbalance"]) + 1),
                     list(last["channel_imbalance"].values()), marker="o", label=LABELS[arm])
        epochs = [h["epoch"] for h in results[arm]["balance"]]
        axes[2].plot(epochs, [h["mean_channel_imbalance"] for h in results[arm]["balance"]],
                     marker="o", label=LABELS[arm])
    axes[0].axhline(0.5, color="k", lw=0.8, ls="--")
    axes[0].set_title("fraction of +1 per binary layer (end of training)")
    axes[0].set_xlabel("binary layer (1 = first)")
    axes[0].set_ylim(0, 1)
    axes[1].set_title("per-channel imbalance mean_c |p_c - 1/2| (end)")
    axes[1].set_xlabel("binary layer (1 = first)")
    axes[2].set_title("mean per-channel imbalance over training")
    axes[2].set_xlabel("epoch (0 = init)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / f"{stem}_balance.png", dpi=110)
    plt.close(fig)


def write_results(out, preset, cfg, args, command, results, splits, wall):
    fp_best = max(results["fp"]["acc"]) if "fp" in results else None
    rows = []
    for arm, res in results.items():
        final, best = res["acc"][-1], max(res["acc"])
        gap = (fp_best - best) * 100 if fp_best is not None else None
        last_balance = res["balance"][-1] if res["balance"] else None
        rows.append([
            LABELS[arm], final, best, res["train_acc"][-1],
            None if gap is None else f"{gap:.2f}",
            None if not last_balance or not last_balance["positive_fraction"]
            else f"{last_balance['mean_positive_fraction']:.3f}",
            None if not last_balance or not last_balance["positive_fraction"]
            else f"{last_balance['mean_channel_imbalance']:.3f}",
            f"{res['train_s']:.0f}", f"{res['extra_flops'] / 1e6:.3f}",
        ])
    table = markdown_table(
        ["arm", "final test acc", "best test acc", "final train acc", "gap to FP (pt, best)",
         "+1 fraction", "channel imbalance", "train s", "extra FP MFLOPs/img"], rows)

    lines = [
        "# Seed 001: feature-distribution-guided binary ResNet-18 (REDUCED RUN)"
        if preset == "quick" else "# Seed 001: feature-distribution-guided binary ResNet-18",
        "",
    ]
    if preset == "quick":
        lines += [
            f"**Reduced run** on a shared 2-core CPU: CIFAR-10 (JPEG q75) subset of "
            f"{splits.num_train} train / {splits.num_test} test images, ResNet-18 at base width "
            f"{cfg['width']} (not 64), {cfg['epochs']} epochs, one seed. These numbers are far "
            "from converged and not comparable with the paper's full-size result; they compare "
            "the arms at one small, equal budget. The full-size run is `python -m "
            "benchmarks.fda --full` (width 64, all of CIFAR-10, 120 epochs).",
            "",
        ]
    lines += [
        f"Command: `{command}`", "",
        f"Settings: {cfg}, Adam lr {args.lr} with cosine decay to 0, augmentation "
        f"(flip + 4-px reflect crop): {args.augment}, seed {args.seed}, batch {cfg['batch_size']}."
        f" Binary arms: ste_sign weights with weight_clip(1); first conv, 1×1 downsampling "
        f"shortcuts and classifier full precision. Balance probe: first {len(args.probe)} "
        f"training images, inference mode. Wall time {wall / 60:.1f} min.",
        "",
        table, "",
    ]
    if {"fp", "fda", "larq"} <= set(results):
        gap = (max(results["fp"]["acc"]) - max(results["fda"]["acc"])) * 100
        margin = (max(results["fda"]["acc"]) - max(results["larq"]["acc"])) * 100
        target = 2 * PAPER_GAP
        lines += [
            "## Against the issue's targets (best test accuracy over epochs)",
            "",
            f"- Gap FP − FDA: **{gap:.2f} pt** (target ≤ {target:.1f} pt, i.e. 2× the paper's "
            f"{PAPER_GAP} pt): **{'met' if gap <= target else 'not met'}** at this budget.",
            f"- FDA − plain Larq: **{margin:+.2f} pt**.",
            f"- static threshold − plain Larq: "
            f"**{(max(results['static']['acc']) - max(results['larq']['acc'])) * 100:+.2f} pt**."
            if "static" in results else "",
            "- One seed only: differences of about a point or less are within run-to-run noise "
            "on 2,000 test images (binomial std ≈ 1 pt at 50-70 % accuracy).",
            "",
        ]
    res = results.get("fda") or next(iter(results.values()))
    lines += [
        "## Cost of the FDA modules",
        "",
        f"Per 32×32 image at width {cfg['width']}: binary MACs {res['binary_macs'] / 1e6:.2f} M, "
        f"full-precision MACs (stem, 1×1 shortcuts, classifier) {res['fp_macs'] / 1e6:.3f} M; "
        f"the FDA arm adds {results.get('fda', res)['extra_flops'] / 1e6:.3f} M full-precision "
        f"FLOPs (FeatureDistributionAdjust ≈7 FLOPs/activation, GroupExcitation pooling + MLP, "
        f"threshold subtraction; counted by `keras_wreg.layers.extra_flops`), the static "
        f"threshold {results['static']['extra_flops'] / 1e6:.3f} M"
        if "static" in results else "",
        ". BN and PReLU FLOPs (present in every arm) are not counted. Larq's `lq.models.summary`"
        " counts these binary convolutions as 32-bit MACs because binarization is a separate "
        "layer (not the conv's `input_quantizer`); the split above is the right one.",
        "",
        f"Figures: `{Path(out).stem}_curves.png` (test accuracy per epoch), "
        f"`{Path(out).stem}_balance.png` (fraction of +1 per binary layer, per-channel imbalance "
        "per layer, and over epochs).",
        "",
        f"![accuracy]({Path(out).stem}_curves.png)", "",
        f"![balance]({Path(out).stem}_balance.png)", "",
        f"Versions: {versions()}, git {git_commit()}.",
    ]
    Path(out).write_text("\n".join(lines) + "\n")


def load_cifar10(cfg, args):
    """The training subset as ``data.load_dataset`` makes it, a *random* (seeded) test subset,
    and the first 256 training images as the balance probe.

    ``data.load_dataset(test_subset=N)`` keeps the first N test images, and the CIFAR-10 folder
    copy lists the test set class by class (the first 2,000 are airplanes and automobiles), so
    the test subset is drawn here with a seeded permutation instead.
    """
    splits = data.load_dataset("cifar10", data_dir=args.data_dir, batch_size=cfg["batch_size"],
                               augment=args.augment, train_subset=cfg["train_subset"],
                               test_subset=None, seed=args.seed)
    (x_train, y_train), (x_test, y_test), _ = data.load_arrays("cifar10", args.data_dir)
    train_order = np.random.default_rng(args.seed).permutation(len(x_train))  # as load_dataset
    probe_ds = data.make_pipeline(x_train[train_order[:256]], y_train[train_order[:256]], 256)
    probe = np.concatenate([np.asarray(x) for x, _ in probe_ds])
    if cfg["test_subset"]:
        order = np.random.default_rng(args.seed + 1).permutation(len(x_test))
        order = order[:cfg["test_subset"]]
        x_test, y_test = x_test[order], y_test[order]
        splits = dataclasses.replace(
            splits, test=data.make_pipeline(x_test, y_test, cfg["batch_size"]),
            num_test=len(x_test))
    counts = np.bincount(y_test, minlength=splits.num_classes)
    print(f"test subset: {len(y_test)} images, per class {counts.tolist()}", flush=True)
    return splits, probe


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="reduced run (default)")
    mode.add_argument("--full", action="store_true", help="ResNet-18 w64, all of CIFAR-10")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--train-subset", type=int)
    parser.add_argument("--test-subset", type=int)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-augment", dest="augment", action="store_false")
    parser.add_argument("--arms", default="fp,larq,static,fda")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=str(RESULTS / "fda.md"))
    args = parser.parse_args(argv)
    preset = "full" if args.full else "quick"
    cfg = dict(PRESETS[preset])
    for key in ("epochs", "width", "train_subset", "test_subset"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    command = "python -m benchmarks.fda " + " ".join(sys.argv[1:] if argv is None else argv)

    start = time.perf_counter()
    splits, args.probe = load_cifar10(cfg, args)
    results = {}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for arm in args.arms.split(","):
        print(f"=== {arm}: {LABELS[arm]}", flush=True)
        results[arm] = train_arm(arm, splits, cfg, args)
        print(f"    best test acc {max(results[arm]['acc']):.4f}  "
              f"({results[arm]['train_s']:.0f} s)", flush=True)
        write_json(out.with_suffix(".json"), dict(preset=preset, cfg=cfg, results=results,
                                                  command=command, versions=versions()))
    wall = time.perf_counter() - start
    plot(results, cfg, out)
    write_results(out, preset, cfg, args, command, results, splits, wall)
    print(out.read_text())


if __name__ == "__main__":
    main()
