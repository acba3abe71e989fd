"""Seed 004 benchmark: ClusterReg vs post-training k-means vs TF-MOT ``cluster_weights``.

One process, one seed, one data split, one network (VGG-small with BN and ReLU, every conv/dense
kernel clustered). Protocol:

1. train the full-precision (FP) network for ``--epochs`` epochs (Adam, cosine decay);
2. for every K: starting from that same FP model, each clustering method gets the same
   ``--finetune-epochs`` epochs with the same optimizer and schedule:
   * **ClusterReg** (``recipes.get("cluster")``, centres initialised by k-means on the trained
     weights, penalty ramped over the first half, then snap + BN re-estimation), measured before
     the snap, right after it, and after the BN re-estimation;
   * **TF-MOT** ``cluster_weights`` (k-means++ centroids, trained centroids), then
     ``strip_clustering``;
   * **post-training k-means** of the FP model (no training), raw and with the same BN
     re-estimation.

Usage::

    python -m benchmarks.cluster --quick   # reduced: 10k/2k CIFAR-10 images, width 16 (~10 min)
    python -m benchmarks.cluster             # full: all of CIFAR-10, width 64, 60 + 20 epochs

TF-MOT is optional (``pip install --no-deps tensorflow-model-optimization==0.8.1``; its own
``absl-py~=1.2`` pin is older than our stack's, so install it without dependencies, e.g. into a
separate ``--target`` directory on ``PYTHONPATH``). Without it, that column is skipped.
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

import keras_wreg
from keras_wreg import data, models, recipes
from keras_wreg._compat import keras, lq, tf
from keras_wreg.export.clustering import (compression_report, kmeans_cluster_model,
                                          recalibrate_batchnorm, strip_clustering)
from keras_wreg.regularizers import clustered_weights

RESULTS = Path(__file__).resolve().parent / "results"

PRESETS = {
    "quick": dict(train_subset=10000, test_subset=2000, width=16, epochs=15, finetune_epochs=6,
                  ks=(2, 4, 8, 16), batch_size=64),
    "full": dict(train_subset=None, test_subset=None, width=64, epochs=60, finetune_epochs=20,
                 ks=(2, 4, 8, 16), batch_size=128),
    "smoke": dict(train_subset=512, test_subset=256, width=8, epochs=1, finetune_epochs=1,
                  ks=(4,), batch_size=64),
}


def _accuracy(model, ds):
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return float(model.evaluate(ds, verbose=0)[1])


def _copy_weights(src, dst):
    """Copy weights layer by layer, ignoring ClusterReg state in either model."""
    skip = {id(v) for m in (src, dst) for _, _, r in clustered_weights(m) for v in r.weights}
    for a, b in zip(src.layers, dst.layers):
        va = [v for v in a.weights if id(v) not in skip]
        vb = [v for v in b.weights if id(v) not in skip]
        assert len(va) == len(vb), (a.name, b.name)
        for x, y in zip(va, vb):
            y.assign(x)


def _lr(lr, steps):
    return keras.optimizers.schedules.CosineDecay(lr, decay_steps=int(steps))


def _tfmot():
    try:
        import tensorflow_model_optimization as tfmot  # noqa: F401
    except ImportError:
        return None
    return tfmot


def _levels(model):
    return [int(np.unique(l.kernel.numpy()).size) for l in model.layers if hasattr(l, "kernel")]


def run(args):
    cfg = dict(PRESETS[args.preset])
    for key in ("epochs", "finetune_epochs", "width", "train_subset", "test_subset"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if args.ks:
        cfg["ks"] = tuple(int(k) for k in args.ks.split(","))
    keras.utils.set_random_seed(args.seed)
    splits = data.load_dataset("cifar10", batch_size=cfg["batch_size"], augment=False,
                               train_subset=cfg["train_subset"], seed=args.seed)
    if cfg["test_subset"]:
        # data.load_dataset's test_subset keeps the *first* N test images, which for the
        # class-per-folder copy are all one class; draw a seeded random subset instead.
        _, (x_test, y_test), _ = data.load_arrays("cifar10")
        pick = np.random.default_rng(args.seed).permutation(len(x_test))[:cfg["test_subset"]]
        splits.test = data.make_pipeline(x_test[pick], y_test[pick], cfg["batch_size"])
    steps = len(splits.train)
    rows, timings, hist = [], {}, {}

    # 1. full precision
    t0 = time.perf_counter()
    fp = models.build("vgg_small_fp", splits.input_shape, splits.num_classes, width=cfg["width"])
    fp.compile(keras.optimizers.Adam(_lr(args.lr, steps * cfg["epochs"])),
               "sparse_categorical_crossentropy", metrics=["accuracy"])
    fp.fit(splits.train, epochs=cfg["epochs"], verbose=args.verbose)
    fp_acc = _accuracy(fp, splits.test)
    timings["fp"] = time.perf_counter() - t0
    fp_report = compression_report(fp)
    print(f"FP: {fp_acc:.4f} ({timings['fp']:.0f} s)", flush=True)
    fp_plain = strip_clustering(fp, snap=False)  # Larq layers without quantizers -> Keras
    fp_plain.set_weights(fp.get_weights())
    tfmot = _tfmot()

    for k in cfg["ks"]:
        row = {"K": k}
        # 2a. ClusterReg, starting from the FP weights
        keras.utils.set_random_seed(args.seed)
        recipe = recipes.get("cluster")
        params = recipe.params({"num_centers": k, "learning_rate": args.ft_lr, "delay": 0.0,
                                "warmup": args.warmup, "init": "kmeans", "strength": args.strength})
        model = recipe.build_model("vgg_small", splits.input_shape, splits.num_classes, params,
                                   width=cfg["width"])
        _copy_weights(fp, model)
        recipe.compile(model, params, steps * cfg["finetune_epochs"])
        t0 = time.perf_counter()
        history = recipe.fit(model, splits.train, cfg["finetune_epochs"],
                             validation_data=splits.test, params=params, verbose=args.verbose)
        timings[f"clusterreg_k{k}"] = time.perf_counter() - t0
        m = history.snap_metrics
        row["clusterreg_before_snap"] = m["before_snap"]["accuracy"]
        row["clusterreg_after_snap_raw"] = m["after_snap_raw"]["accuracy"]
        row["clusterreg_after_snap"] = m["after_snap"]["accuracy"]
        stripped = strip_clustering(model)
        row["clusterreg_levels"] = _levels(stripped)
        row["clusterreg_stripped"] = _accuracy(stripped, splits.test)
        report = compression_report(stripped)
        row["compressed_kib"] = report["compressed_kib"]
        row["ratio"] = report["ratio"]
        if k == 4 or not hist:
            i = [j for j, layer in enumerate(fp.layers) if hasattr(layer, "kernel")][3]
            hist = {"fp": fp.layers[i].kernel.numpy().ravel().tolist(),
                    "clustered": stripped.layers[i].kernel.numpy().ravel().tolist(),
                    "layer": fp.layers[i].name, "K": k,
                    "centers": clustered_weights(model)[3][2].get_centers().tolist()}

        # 2b. post-training k-means
        km = kmeans_cluster_model(fp_plain, k, seed=args.seed)
        row["kmeans_raw"] = _accuracy(km, splits.test)
        recalibrate_batchnorm(km, splits.train, 50)
        row["kmeans_bn"] = _accuracy(km, splits.test)

        # 2c. TF-MOT
        if tfmot is not None:
            keras.utils.set_random_seed(args.seed)
            cl = tfmot.clustering.keras
            base = keras.models.clone_model(fp_plain)
            base.set_weights(fp_plain.get_weights())
            clustered = cl.cluster_weights(
                base, number_of_clusters=k,
                cluster_centroids_init=cl.CentroidInitialization.KMEANS_PLUS_PLUS)
            clustered.compile(keras.optimizers.Adam(_lr(args.ft_lr,
                                                         steps * cfg["finetune_epochs"])),
                              "sparse_categorical_crossentropy", metrics=["accuracy"])
            t0 = time.perf_counter()
            clustered.fit(splits.train, epochs=cfg["finetune_epochs"], verbose=args.verbose)
            timings[f"tfmot_k{k}"] = time.perf_counter() - t0
            tm = cl.strip_clustering(clustered)
            row["tfmot"] = _accuracy(tm, splits.test)
            row["tfmot_levels"] = _levels(tm)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return cfg, fp_acc, fp_report, rows, timings, hist, tfmot


def _versions(tfmot):
    import sklearn

    v = {"python": platform.python_version(), "tensorflow": tf.__version__,
         "tf_keras": keras.__version__, "larq": lq.__version__, "numpy": np.__version__,
         "scikit-learn": sklearn.__version__, "keras_wreg": keras_wreg.__version__}
    if tfmot is not None:
        v["tensorflow-model-optimization"] = tfmot.__version__
    return v


def write(args, cfg, fp_acc, fp_report, rows, timings, hist, tfmot, wall):
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "cluster" if args.preset == "full" else f"cluster_{args.preset}"
    pct = lambda x: f"{100 * x:.2f}" if isinstance(x, float) else "n/a"  # noqa: E731
    lines = [
        f"# Seed 004 — ClusterReg vs post-training k-means vs TF-MOT ({args.preset} run)", "",
    ]
    if args.preset != "full":
        lines += [f"**REDUCED benchmark** (preset `{args.preset}`): CIFAR-10 (JPEG q75) subset "
                  f"{cfg['train_subset']} train / {cfg['test_subset']} test images, VGG-small "
                  f"width {cfg['width']}, {cfg['epochs']} FP epochs + {cfg['finetune_epochs']} "
                  "clustering epochs, one seed. Not comparable with paper numbers; the full "
                  "run is `python -m benchmarks.cluster` (all 50k/10k images, width 64, 60 + 20 "
                  "epochs).", ""]
    lines += [
        f"Command: `{' '.join(['python', '-m', 'benchmarks.cluster'] + sys.argv[1:])}`  ",
        f"Seed {args.seed}; wall time {wall / 60:.1f} min on a shared 2-core CPU.  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in _versions(tfmot).items()), "",
        "Network: VGG-small (6 conv + 1 dense, BN, ReLU); every conv/dense kernel clustered, "
        "biases/BN in float32. All clustering methods start from the same trained FP model and "
        f"get the same {cfg['finetune_epochs']} epochs (Adam {args.ft_lr:g}, cosine decay). "
        f"ClusterReg: hard form, strength {args.strength:g} (sum), k-means init, linear ramp over "
        f"the first {args.warmup:g} of the stage, snap, then 50-batch BN re-estimation. "
        "Post-training k-means: scikit-learn KMeans per kernel, no training.", "",
        f"Full precision (FP): **{pct(fp_acc)} %** test accuracy, "
        f"{fp_report['float_bits'] / 8 / 1024:.1f} KiB float32.", "",
        "| K | ClusterReg before snap | after snap (raw) | after snap + BN | snap drop (pt) | "
        "TF-MOT | k-means PTQ | k-means PTQ + BN | levels/layer (ClusterReg) | size KiB | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        drop = 100 * (r["clusterreg_before_snap"] - r["clusterreg_after_snap"])
        lines.append(
            f"| {r['K']} | {pct(r['clusterreg_before_snap'])} | "
            f"{pct(r['clusterreg_after_snap_raw'])} | **{pct(r['clusterreg_after_snap'])}** | "
            f"{drop:+.2f} | {pct(r.get('tfmot'))} | {pct(r['kmeans_raw'])} | "
            f"{pct(r['kmeans_bn'])} | {max(r['clusterreg_levels'])} | "
            f"{r['compressed_kib']:.1f} | {r['ratio']:.1f}x |")
    lines += ["", "Size: n·⌈log₂K⌉ + 32·K bits per clustered kernel plus 32 bits per other "
              "parameter (measured on the stripped model by `compression_report`).", "",
              "Wall time per stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()),
              ""]
    if hist:
        lines += [f"![weight histogram]({name}_hist.png)", ""]
        _plot(hist, RESULTS / f"{name}_hist.png")
    (RESULTS / f"{name}.md").write_text("\n".join(lines))
    (RESULTS / f"{name}.json").write_text(json.dumps(
        {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
         "fp_accuracy": fp_acc, "rows": rows, "timings": timings}, indent=2))
    print("\n".join(lines))


def _plot(hist, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharex=True)
    axes[0].hist(hist["fp"], bins=120, color="gray")
    axes[0].set_title(f"{hist['layer']}: trained full-precision kernel")
    axes[1].hist(hist["clustered"], bins=120, color="tab:blue")
    for c in hist["centers"]:
        for ax in axes:
            ax.axvline(c, color="tab:red", lw=0.8, ls="--")
    axes[1].set_title(f"after ClusterReg (K={hist['K']}) + snap; dashed: learned centres")
    for ax in axes:
        ax.set_xlabel("weight")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", dest="preset", action="store_const", const="quick")
    group.add_argument("--smoke", dest="preset", action="store_const", const="smoke")
    parser.set_defaults(preset="full")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--finetune-epochs", dest="finetune_epochs", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--train-subset", dest="train_subset", type=int)
    parser.add_argument("--test-subset", dest="test_subset", type=int)
    parser.add_argument("--ks", help="comma-separated K values, e.g. 2,4,8,16")
    parser.add_argument("--lr", type=float, default=1e-3, help="FP learning rate")
    parser.add_argument("--ft-lr", dest="ft_lr", type=float, default=5e-4,
                        help="learning rate of the clustering stage (all methods)")
    parser.add_argument("--strength", type=float, default=100.0,
                        help="ClusterReg strength (reduce='sum')")
    parser.add_argument("--warmup", type=float, default=0.8,
                        help="fraction of the clustering stage over which the strength ramps up")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = run(args)
    write(args, *out, wall=time.perf_counter() - start)


if __name__ == "__main__":
    main()
