"""Helper of test_scale.py, run as a subprocess: every method trained a few steps on two logical
CPU replicas (MirroredStrategy) and on one device, both with synchronized BatchNorm; prints one
JSON line per method with the largest weight difference."""

import json
import sys

import keras_wreg  # noqa: F401  (sets the legacy-Keras switch)
from keras_wreg._compat import keras, tf

CASES = {
    "wreg": {"pull": 1e-3, "pull_start": 0.0},         # CosineMomentum(DecoupledRegularization)
    "cosine_coefficient": {"mode": "coefficient"},    # CosineMomentum, coefficient mode
    "cluster": {"delay": 0.25, "warmup": 0.25, "bn_recalibrate": 2, "finetune": 1},
    "ternary": {"stage1_fraction": 0.5},              # two stages + TemperatureScheduler
    "hwgq": {"finetune": "full"},
}


def run(method, overrides, strategy, epochs=1):
    from keras_wreg import data, distribute, recipes

    recipe = recipes.get("wreg" if method == "cosine_coefficient" else method)
    params = recipe.params(overrides)
    keras.utils.set_random_seed(0)
    splits = data.load_dataset("digits", batch_size=32, train_subset=128, test_subset=32)
    with strategy.scope():
        model = recipe.build_model(recipe.default_model, splits.input_shape, splits.num_classes,
                                   params, width=4)
        model = distribute.synchronize_batch_norm(model)
        total = epochs * len(splits.train)
        recipe.compile(model, params, total)
        callbacks = recipe.callbacks(params, total, model)
        history = recipe.fit(model, splits.train, epochs, callbacks=callbacks, params=params,
                             verbose=0)
    return model.get_weights(), history.history


def main():
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    import numpy as np

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    for method in sys.argv[1:] or CASES:
        one, h1 = run(method, CASES[method], tf.distribute.get_strategy())
        two, h2 = run(method, CASES[method], mirrored)
        diff = max(float(np.max(np.abs(a - b))) for a, b in zip(one, two))
        finite = all(np.isfinite(w).all() for w in two)
        print("RESULT " + json.dumps({"method": method, "max_abs_diff": diff, "finite": finite,
                                      "replicas": mirrored.num_replicas_in_sync,
                                      "loss_one": h1["loss"], "loss_two": h2["loss"]}),
              flush=True)


if __name__ == "__main__":
    main()
