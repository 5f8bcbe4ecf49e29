"""BN-NAS ranking quality: Kendall tau of the BN indicator and of SPOS' accuracy
indicator against the accuracy of subnets trained from scratch (paper sec. 4.5.2).

On the digits supernet of ``examples.bnnas_search`` (every layer with a
shortcut searched over the six MobileNetV2 ops, the paper's space; ``--skip``
adds the identity):

1. draws ``--subnets`` distinct random subnets (at least 20 in the full run);
2. trains each from fresh weights for ``--scratch_epochs`` (short budget),
   once per seed in ``--scratch_seeds``; the ground truth is the mean test accuracy.
   The tau between two seeds' accuracies is the noise ceiling: no indicator
   can agree with the ground truth much better than the ground truth agrees
   with itself;
3. trains two supernets for ``--supernet_epochs``: BN only (BN-NAS: every
   convolution and the classifier frozen at their random initialization) and
   all weights (SPOS), and scores the same subnets on each with the BN
   indicator (``bn_score``, sum of mean |gamma|; an identity layer scores 0)
   and with the validation
   accuracy with inherited weights (``evolution.AccuracyScorer``);
4. reports Kendall tau-b (``scipy.stats.kendalltau``) and its p-value of every
   indicator against the ground truth, the subnet's MACs as a trivial
   baseline, and the time each indicator takes.

Read the taus against the noise ceiling. On digits the subnets of this space
differ by less than the seed-to-seed spread of their from-scratch accuracy:
the tau between two seeds was 0.12 (20 subnets, 3 epochs, 97.1-98.7%), 0.17
with the identity choice (2 epochs), -0.14 after 8 epochs (14 subnets). So
every indicator's tau here is within noise of 0, and this run cannot confirm
or refute the paper's Fig. 6 (BN tau ~ SPOS tau on CIFAR-10, 100 subnets);
it measures the procedure and the indicators' cost, and is the experiment to
run on a dataset where the architectures differ.

Writes ``benchmarks/results/bnnas_kendall[_quick][_skip].json`` and prints a
table.

Example:
    python -m benchmarks.bnnas_kendall            # 20 subnets, a few minutes
    python -m benchmarks.bnnas_kendall --quick    # smaller, ~1-2 minutes
"""

import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from scipy import stats  # noqa: E402

import searchlayers as sl  # noqa: E402
from searchlayers import datasets, evolution  # noqa: E402
from searchlayers._keras import keras  # noqa: E402

from benchmarks.common import table, write_json  # noqa: E402
from examples import bnnas_search  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Smaller run: 10 subnets, one seed, fewer epochs.")
flags.DEFINE_integer("subnets", 20, "Subnets trained from scratch (the paper: 100).")
flags.DEFINE_integer("scratch_epochs", 3, "From-scratch epochs per subnet (short budget).")
flags.DEFINE_list("scratch_seeds", ["0", "1"], "From-scratch seeds per subnet (accuracy averaged).")
flags.DEFINE_integer("supernet_epochs", 8, "Epochs of each supernet.")
flags.DEFINE_float("bn_lr", bnnas_search.SUPERNET_LR, "Adam lr of the BN-only supernet.")
flags.DEFINE_float("all_lr", 0.005, "Adam lr of the all-weights supernet.")
flags.DEFINE_integer("seed", 0, "Random seed (subnet draw, supernets).")
flags.DEFINE_bool("skip", False, "Offer an identity choice where a layer has a shortcut.")

QUICK = dict(subnets=10, scratch_epochs=2, scratch_seeds=["0", "1"], supernet_epochs=4)


def sample_rows(costs, n, seed):
    """``n`` distinct random subnets (rows of choice indices), uniformly drawn."""
    total = int(np.prod(costs.num_choices))
    if n > total:
        raise ValueError(f"bnnas_kendall: asked for {n} subnets, the space has {total}.")
    rng = np.random.default_rng(seed)
    rows, seen = [], set()
    while len(rows) < n:
        row = np.floor(rng.random(len(costs.num_choices)) * costs.num_choices).astype(np.int64)
        if tuple(row) not in seen:
            seen.add(tuple(row))
            rows.append(row)
    return np.stack(rows)


def ground_truth(supernet, costs, rows, epochs, seeds):
    """``[subnets, seeds]`` test accuracy of each subnet trained from scratch."""
    acc = np.zeros((len(rows), len(seeds)))
    for i, row in enumerate(rows):
        child = sl.derive(supernet, architecture=costs.decode(row))
        for j, seed in enumerate(seeds):
            _, acc[i, j] = bnnas_search.retrain(child, epochs, seed=1000 * seed + i)
    return acc


def indicators(supernet, rows, validation, skip):
    """BN indicator and inherited-weight validation accuracy of ``rows``; seconds of each."""
    start = time.perf_counter()
    bn = evolution.BNScorer(supernet, missing=0.0 if skip else None)(rows)
    bn_s = time.perf_counter() - start
    start = time.perf_counter()
    acc = evolution.AccuracyScorer(supernet, validation)(rows)
    return {"bn": (np.asarray(bn), bn_s), "accuracy": (np.asarray(acc), time.perf_counter() - start)}


def tau(x, y):
    """Kendall tau-b and its two-sided p-value (NaN when one side is constant)."""
    result = stats.kendalltau(x, y)
    return float(result.statistic), float(result.pvalue)


def run(subnets, retrain_epochs, seeds, supernet_epochs, bn_lr, all_lr, seed, skip):
    """The whole measurement; returns the JSON-ready results."""
    tf.get_logger().setLevel("ERROR")
    keras.utils.set_random_seed(seed)
    space = bnnas_search.build_supernet(skip=skip)
    costs = evolution.cost_table(space, "macs")
    rows = sample_rows(costs, subnets, seed)

    start = time.perf_counter()
    truth = ground_truth(space, costs, rows, retrain_epochs, seeds)
    truth_s = time.perf_counter() - start
    target = truth.mean(axis=1)

    validation = datasets.load("digits", "validation", batch_size=256)
    supernets, scores = {}, {}
    for name, bn_only, lr in (("BN only", "all", bn_lr), ("all weights", "none", all_lr)):
        keras.utils.set_random_seed(seed)
        start = time.perf_counter()
        model, evaluator = bnnas_search.train_supernet(supernet_epochs, bn_only, skip=skip,
                                                       lr=lr, verbose=0, seed=seed)
        train_s = time.perf_counter() - start
        supernets[name] = {
            "train_s": train_s, "bn_only": bn_only, "lr": lr,
            "train_accuracy": float(model.history.history["accuracy"][-1]),
            "rank_distance_per_epoch": [h["distance"] for h in evaluator.history],
        }
        for indicator, (values, seconds) in indicators(model, rows, validation, skip).items():
            scores[f"{name} / {indicator}"] = {"values": values.tolist(), "seconds": seconds,
                                               "tau": tau(values, target)}
    scores["MACs (baseline)"] = {"values": costs.total(rows).tolist(), "seconds": 0.0,
                                 "tau": tau(costs.total(rows), target)}
    ceiling = tau(truth[:, 0], truth[:, 1]) if truth.shape[1] > 1 else (float("nan"),) * 2
    return {
        "device": platform.processor() or platform.machine(),
        "tensorflow": tf.__version__,
        "config": dict(subnets=subnets, retrain_epochs=retrain_epochs, seeds=seeds,
                       supernet_epochs=supernet_epochs, bn_lr=bn_lr, all_lr=all_lr, seed=seed,
                       skip=skip,
                       transition_op=bnnas_search.TRANSITION_OP, search_layers=len(costs.keys),
                       space_size=int(np.prod(costs.num_choices))),
        "subnets": [costs.decode(r).names for r in rows],
        "from_scratch_accuracy": truth.tolist(),
        "from_scratch_mean": target.tolist(),
        "from_scratch_s": truth_s,
        "noise_ceiling_tau": ceiling,
        "supernets": supernets,
        "indicators": scores,
    }


def report(results):
    """The printed table."""
    rows = [[name, s["tau"][0], s["tau"][1], s["seconds"] * 1e3]
            for name, s in results["indicators"].items()]
    rows.append(["seed vs seed (noise ceiling)", *results["noise_ceiling_tau"], float("nan")])
    acc = np.asarray(results["from_scratch_mean"])
    lines = [
        table(rows, ["indicator (supernet / score)", "tau", "p", "ms"]),
        f"\n{len(acc)} subnets trained from scratch ({results['config']['retrain_epochs']} epochs, "
        f"seeds {results['config']['seeds']}): test accuracy {acc.min():.3f}..{acc.max():.3f} "
        f"(mean {acc.mean():.3f}), {results['from_scratch_s']:.0f} s",
    ]
    for name, s in results["supernets"].items():
        lines.append(f"supernet {name}: train accuracy {s['train_accuracy']:.3f} after "
                     f"{results['config']['supernet_epochs']} epochs, {s['train_s']:.0f} s")
    return "\n".join(lines)


def main(argv):
    del argv
    config = {k: FLAGS[k].value for k in QUICK}
    if FLAGS.quick:
        config.update({k: v for k, v in QUICK.items() if not FLAGS[k].present})
    start = time.perf_counter()
    results = run(config["subnets"], config["scratch_epochs"],
                  [int(s) for s in config["scratch_seeds"]], config["supernet_epochs"],
                  FLAGS.bn_lr, FLAGS.all_lr, FLAGS.seed, FLAGS.skip)
    results["total_s"] = time.perf_counter() - start
    results["quick"] = FLAGS.quick
    name = "bnnas_kendall" + ("_quick" if FLAGS.quick else "") + ("_skip" if FLAGS.skip else "")
    path = write_json(name, results)
    print(report(results))
    print(f"total {results['total_s']:.0f} s\nWrote {path}")


if __name__ == "__main__":
    app.run(main)
