"""BN-NAS speed: scoring subnets by BN indicator, and the BN-only supernet step.

Measures, on the digits-sized SPOS supernet (``models.spos``):

1. the time to score 1000 subnets with the BN indicator (one numpy gather over
   the ``[layers, choices]`` score table; target < 0.01 s), next to the time
   to read the score table from the model, to run a full evolutionary search
   (~1000 subnets, cost limit), and to score subnets by validation accuracy
   with inherited weights (SPOS' way; per subnet, then extrapolated to 1000);
2. the supernet's training step time with only BatchNorm trainable against all
   weights trainable (paper: BN-only saves ~20% of the step).

Writes ``benchmarks/results/bnnas.json`` and prints a table.

Example:
    python -m benchmarks.bnnas
"""

import os
import platform

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import searchlayers as sl  # noqa: E402
from searchlayers import bn_score, datasets, evolution, transforms  # noqa: E402
from searchlayers._keras import keras  # noqa: E402

from benchmarks.common import table, time_calls, write_json  # noqa: E402
from models import spos  # noqa: E402

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def scoring(model, n=1000, seed=0):
    """Seconds to read the score table and to score ``n`` random subnets."""
    table_read = time_calls(lambda: bn_score.score_table(model), steps=5, warmup=1)
    scores = bn_score.score_table(model)
    rng = np.random.default_rng(seed)
    choices = np.floor(rng.random((n, len(scores.keys))) * scores.num_choices).astype(np.int64)
    score_n = time_calls(lambda: scores.total(choices), steps=50, warmup=5)
    costs = evolution.cost_table(model, "macs")
    limit = costs.minimum() + 0.4 * (costs.maximum() - costs.minimum())
    search = time_calls(lambda: evolution.evolutionary_search(model, limit, costs=costs),
                        steps=3, warmup=1)
    result = evolution.evolutionary_search(model, limit, costs=costs)
    return {"score_table_s": table_read["median_s"], f"score_{n}_subnets_s": score_n["median_s"],
            "evolution_s": search["median_s"], "evolution_subnets": result.evaluated}


def accuracy_scoring(model, subnets=5, seed=0):
    """Seconds per subnet scored by validation accuracy (inherited weights)."""
    model.compile(loss=LOSS, metrics=["accuracy"])
    validation = datasets.load("digits", "validation", batch_size=256)
    scorer = evolution.AccuracyScorer(model, validation)
    rng = np.random.default_rng(seed)
    n = scorer.table.num_choices
    choices = np.floor(rng.random((subnets, len(n))) * n).astype(np.int64)
    scorer(choices[:1])  # trace
    timed = time_calls(lambda: scorer(choices), steps=1, warmup=0)
    return timed["median_s"] / subnets


def step_time(bn_only, batch_size=64, steps=30):
    """Median seconds of one supernet training step (``train_on_batch``)."""
    keras.utils.set_random_seed(0)
    model = spos.spos_supernet()
    if bn_only:
        transforms.train_only_batchnorm(model, which=bn_only)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss=LOSS)
    x, y = datasets.arrays("digits", "train")
    x, y = x[:batch_size], y[:batch_size]
    timed = time_calls(lambda: model.train_on_batch(x, y), steps=steps, warmup=5)
    return timed["median_s"], len(model.trainable_weights)


def main():
    tf.get_logger().setLevel("ERROR")
    model = spos.spos_supernet()
    score = scoring(model)
    per_subnet = accuracy_scoring(model)
    steps = {name: step_time(which) for name, which in
             (("all weights", None), ("BN only (all BN)", "all"), ("BN only (last BN)", "last"))}
    base = steps["all weights"][0]
    results = {
        "device": platform.processor() or platform.machine(),
        "tensorflow": tf.__version__,
        "supernet": {"search_layers": len(sl.layers.search_layers(model)),
                     "choices_per_layer": 6, "params": model.count_params()},
        "scoring": {**score, "accuracy_per_subnet_s": per_subnet,
                    "accuracy_1000_subnets_s_extrapolated": per_subnet * 1000},
        "step_time_s": {k: v[0] for k, v in steps.items()},
        "trainable_variables": {k: v[1] for k, v in steps.items()},
        "step_time_ratio_vs_all": {k: v[0] / base for k, v in steps.items()},
    }
    path = write_json("bnnas", results)
    rows = [
        ["read BN score table", score["score_table_s"] * 1e3],
        ["score 1000 subnets (BN indicator)", score["score_1000_subnets_s"] * 1e3],
        [f"evolution ({score['evolution_subnets']} subnets, BN)", score["evolution_s"] * 1e3],
        ["score 1000 subnets (val accuracy, extrap.)", per_subnet * 1000 * 1e3],
    ] + [[f"train step: {k}", v[0] * 1e3] for k, v in steps.items()]
    print(table(rows, ["measure", "ms"]))
    print("\nstep time vs all weights: " + ", ".join(
        f"{k} {v:.2f}x" for k, v in results["step_time_ratio_vs_all"].items()))
    print(f"Wrote {path}")
    return results


if __name__ == "__main__":
    main()
