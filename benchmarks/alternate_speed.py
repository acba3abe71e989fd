"""AlternateUpdate before and after it was made fast (issue 23): wall time of ``run`` on a
trained-for-a-step VGG-small HWGQ-Net, per layer, for the implementation kept as the reference
(``tests/alternate_reference.py``) and the current one, on the same model and batches (the two
are bit-identical, ``tests/test_alternate.py``), plus one full training step for scale.

    python -m benchmarks.alternate_speed            # ~5 min on 2 cores

Writes ``results/alternate_speed.{json,md}``.
"""

import sys
import time
from pathlib import Path

import numpy as np

import keras_wreg as kw
from benchmarks import common
from keras_wreg._compat import keras, tf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from alternate_reference import ReferenceAlternateUpdate  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
WIDTH, BATCHES = 32, 8
#: (variant, steps): variant B's steps cost a forward/backward pass of the layers after the
#: updated one each, so it runs fewer
SETTINGS = (("A", 20), ("B", 5))


def _model(x, y):
    keras.utils.set_random_seed(1)
    recipe = kw.recipes.get("hwgq")
    model = recipe.build_model("vgg_small_hwgq", (32, 32, 3), 10, recipe.params(), width=WIDTH)
    recipe.compile(model, recipe.params(), total_steps=10)
    model.fit(x[:256], y[:256], epochs=1, batch_size=128, verbose=0)
    return model


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    tf.config.experimental.enable_op_determinism()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128 * BATCHES, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, len(x))
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(128)
    rows = []
    for variant, steps in SETTINGS:
        for impl in (ReferenceAlternateUpdate, kw.AlternateUpdate):
            model = _model(x, y)
            au = impl(variant=variant, iterations=3, steps=steps, num_batches=BATCHES)
            start = time.perf_counter()
            reports = au.run(model, data)
            total = time.perf_counter() - start
            model.train_on_batch(x[:128], y[:128])
            start = time.perf_counter()
            for _ in range(5):
                model.train_on_batch(x[:128], y[:128])
            full_step = (time.perf_counter() - start) / 5
            rows.append({"implementation": "before" if impl is ReferenceAlternateUpdate
                         else "now", "variant": variant, "steps": steps,
                         "total_seconds": total,
                         "layer_seconds": [r["seconds"] for r in reports],
                         "full_step_seconds": full_step})
            print(rows[-1], flush=True)
    command = "python -m benchmarks.alternate_speed " + " ".join(argv)
    table = common.markdown_table(
        ["variant (steps)", "implementation", "total s", "per layer s", "full training step ms"],
        [[f"{r['variant']} ({r['steps']})", r["implementation"], r["total_seconds"],
          ", ".join(f"{s:.1f}" for s in r["layer_seconds"]), 1000 * r["full_step_seconds"]]
         for r in rows])
    text = "\n".join([
        "# AlternateUpdate wall time, before and after (issue 23)", "",
        f"Command: `{command}` (commit {common.git_commit()})", "",
        f"VGG-small HWGQ-Net w{WIDTH}, {BATCHES} batches of 128 random 32x32 images, 3 "
        "iterations per layer; the same model and batches for both implementations (they are "
        "bit-identical). 2 shared CPU cores: compare within a variant.", "", table, ""])
    common.write_json(RESULTS / "alternate_speed.json", {"rows": rows, "command": command,
                                                         "commit": common.git_commit(),
                                                         "versions": common.versions()})
    (RESULTS / "alternate_speed.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
