"""Tune WReg + CosineMomentum with KerasTuner on real data, then train the best configuration.

    python examples/tune_wreg.py                       # MNIST slice, a few minutes on a CPU
    python examples/tune_wreg.py --dataset cifar10 --train-subset 10000 --width 32 \
        --max-trials 12 --epochs 5 --final-epochs 30

Step 1 is exactly ``keras-wreg tune --method wreg`` (via ``keras_wreg.tuning.run_tune``): it
searches the WReg strength / alpha mode / branches, the CosineMomentum push, distance cap,
region and mode, the clip and the learning rate, and writes the best configuration as
``{"method", "model", "params"}`` JSON plus a PNG of the objective per trial. Step 2 reads that
JSON (the file ``keras-wreg train --config`` accepts) and trains it longer on the search's
training split (validated on the search's validation split), then reports the accuracy on the
held-out test subset, read once.
"""

import argparse
import json
import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_wreg import recipes, tuning  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--tuner", default="bayesian", choices=sorted(tuning.TUNERS))
    parser.add_argument("--max-trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial")
    parser.add_argument("--final-epochs", type=int, default=4)
    parser.add_argument("--train-subset", type=int, default=4000)
    parser.add_argument("--test-subset", type=int, default=2000)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", default="runs/example_tune_wreg")
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args(argv)

    tune_args = tuning.add_tune_arguments(argparse.ArgumentParser(allow_abbrev=False)).parse_args([
        "--method", "wreg", "--tuner", opts.tuner, "--max-trials", str(opts.max_trials),
        "--epochs", str(opts.epochs), "--dataset", opts.dataset, "--width", str(opts.width),
        "--train-subset", str(opts.train_subset), "--test-subset", str(opts.test_subset),
        "--batch-size", str(opts.batch_size), "--out", opts.out,
        "--seed", str(opts.seed), "--overwrite",
    ])
    result = tuning.run_tune(tune_args)
    config = json.loads(open(result["config_path"]).read())
    print(f"best configuration ({result['config_path']}):\n{json.dumps(config, indent=2)}")

    # Step 2: train the best configuration, as `keras-wreg train --config` would.
    recipe = recipes.get(config["method"])
    params = recipe.params(config["params"])
    splits = tuning.command.load_search_data(opts.dataset, tune_args)  # the search's splits
    steps = math.ceil(splits.num_train / opts.batch_size) * opts.final_epochs
    model = recipe.build_model(config["model"], splits.input_shape, splits.num_classes, params,
                               width=opts.width)
    recipe.compile(model, params, steps)
    recipe.fit(model, splits.train, epochs=opts.final_epochs, validation_data=splits.validation,
               callbacks=recipe.callbacks(params, steps, model=model), params=params, verbose=2)
    _, accuracy = model.evaluate(splits.test, verbose=0)
    print(f"search: best validation accuracy {result['best_value']:.4f} "
          f"({opts.max_trials} trials x {opts.epochs} epochs); "
          f"best configuration trained {opts.final_epochs} epochs: test accuracy {accuracy:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
