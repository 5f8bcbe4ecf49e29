"""Searched child vs random children at equal cost, on digits, per method.

For each method (the sweep methods of ``examples.methods``: DARTS, GDAS, FiGS,
BNAS) and each seed, one ``searchlayers.tuning.run_spec`` trial searches with
the step-aware ``"auto"`` architecture learning rate
(``searchlayers.schedules.learning_rate``), derives the child, retrains it, and
retrains ``--random`` random children of the same space whose cost is within
+-5 % of the searched child's (``searchlayers.baselines``), with the same
recipe (the method's retrain, ``searchlayers.retrain``) and seed.

Reported per method: the searched accuracy (mean +- std over seeds), the
random children's (mean +- std over all children and seeds), the difference
searched - random (mean over seeds of the per-seed difference, with a 95 %
Student-t confidence interval over seeds), whether the search beat random (the
interval's lower end above 0), and how decided the searches ended
(``searchlayers.decision``: median largest probability, decided groups).

Writes ``benchmarks/results/search_vs_random.json`` and prints the table.

Example:
    python -m benchmarks.search_vs_random                  # ~1 hour on a busy 2-core box
    python -m benchmarks.search_vs_random --quick          # one seed, 2 random, darts only
    python -m benchmarks.search_vs_random --methods=bars --merge   # add a method
"""

import json
import math
import os
import statistics
import time

from absl import app, flags

from benchmarks.common import RESULTS, table, write_json
from searchlayers import datasets, schedules, tuning

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "darts only, one seed, 2 random children, 2 epochs.")
flags.DEFINE_list("methods", ["darts", "gdas", "figs", "bnas"], "Registered sweep methods.")
flags.DEFINE_integer("seeds", 3, "Seeds per method.")
flags.DEFINE_integer("random", 5, "Random children at equal cost per seed.")
flags.DEFINE_integer("epochs", 4, "Search epochs.")
flags.DEFINE_integer("retrain_epochs", 4, "Retraining epochs (searched and random alike).")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_float("entropy", None, "Explore-then-commit entropy coefficient (the demo's 0.1: "
                   "examples.methods.commit); results go to search_vs_random_commit.json.")
flags.DEFINE_bool("merge", False, "Keep the methods of an earlier run with the same settings "
                  "(add --methods to it).")

# Sizes of the spaces (small: 2 shared cores). DARTS family: C = 8, 3 cells of 2 nodes.
OPTIONS = {"darts": {"channels": 8, "cells": 3, "steps": 2},
           "gdas": {"channels": 8, "cells": 3, "steps": 2},
           "bnas": {"channels": 8, "cells": 3, "steps": 2},
           "figs": {}}
SCHEDULE = {"darts": "darts", "gdas": "gdas", "bnas": "bnas", "figs": "figs", "snas": "snas",
            "bars": "bars"}
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def arch_steps(method, epochs, batch_size):
    """Architecture steps of a search: epochs x steps per epoch (bi-level pairs for
    the DARTS-space methods, the train split for FiGS' joint search)."""
    if method == "figs":
        per_epoch = int(datasets.load("digits", "train", batch_size=batch_size).cardinality())
    else:
        per_epoch = int(datasets.search_pairs("digits", batch_size=batch_size).cardinality())
    return epochs * per_epoch


def interval(diffs):
    """``(mean, low, high)``: 95 % Student-t interval of the mean of ``diffs``."""
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return mean, float("nan"), float("nan")
    half = T95.get(len(diffs) - 1, 1.96) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half


def run_method(method, seeds, random, epochs, retrain_epochs, batch_size, entropy=None):
    steps = arch_steps(method, epochs, batch_size)
    lr = schedules.learning_rate(SCHEDULE[method], steps)
    trials = []
    for seed in range(seeds):
        start = time.perf_counter()
        spec = tuning.TrialSpec(method, epochs=epochs, retrain_epochs=retrain_epochs,
                                batch_size=batch_size, seed=seed, random_baseline=random,
                                options={**OPTIONS.get(method, {}), "arch_lr": lr,
                                         **({"entropy": entropy} if entropy else {})})
        record = tuning.run_spec(spec)
        trials.append({k: record.get(k) for k in (
            "accuracy", "random_mean", "random_std", "random_accuracies", "random_costs",
            "decided", "undecided", "median_max_prob", "architecture", "search_seconds",
            "retrain_seconds")})
        trials[-1]["seconds"] = time.perf_counter() - start
        print(f"{method} seed {seed}: searched {record['accuracy']:.3f}, random "
              f"{record['random_mean']:.3f} +- {record['random_std']:.3f}, median max p "
              f"{record.get('median_max_prob', float('nan')):.2f}", flush=True)
    searched = [t["accuracy"] for t in trials]
    rand = [a for t in trials for a in t["random_accuracies"]]
    diff, low, high = interval([t["accuracy"] - t["random_mean"] for t in trials])
    return {
        "arch_steps": steps, "arch_lr": lr, "metric": spec.cost_metric(), "trials": trials,
        "searched_mean": statistics.fmean(searched),
        "searched_std": statistics.stdev(searched) if len(searched) > 1 else 0.0,
        "random_mean": statistics.fmean(rand),
        "random_std": statistics.stdev(rand) if len(rand) > 1 else 0.0,
        "difference": diff, "ci95": [low, high],
        "beats_random": bool(low > 0) if not math.isnan(low) else None,
        "median_max_prob": statistics.median(t["median_max_prob"] for t in trials
                                             if t["median_max_prob"] is not None)
        if any(t["median_max_prob"] is not None for t in trials) else None,
    }


def _table(results):
    rows = []
    for method, r in results.items():
        verdict = {True: "yes", False: "no", None: "n/a"}[r["beats_random"]]
        rows.append([method, f"{r['searched_mean']:.3f} +- {r['searched_std']:.3f}",
                     f"{r['random_mean']:.3f} +- {r['random_std']:.3f}",
                     f"{r['difference']:+.3f} [{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}]",
                     verdict, r["median_max_prob"]])
    return table(rows, ["method", "searched", "random (equal cost)", "difference [95% CI]",
                        "beats random", "median max p"])


DEFAULTS = {"entropy": None}  # settings added after the first full run, at their defaults


def _name():
    return "search_vs_random_commit" if FLAGS.entropy else "search_vs_random"


def _previous(config):
    """Methods of an earlier full run with the same settings (``--merge``)."""
    path = os.path.join(RESULTS, f"{_name()}.json")
    if not os.path.exists(path):
        return {}, 0.0
    with open(path) as f:
        old = json.load(f)
    # a run from before a setting existed ran at its default
    same = {**DEFAULTS, **{k: v for k, v in old.get("config", {}).items() if k != "methods"}}
    if same != {k: v for k, v in config.items() if k != "methods"}:
        raise ValueError(f"search_vs_random --merge: {path} was run with other settings "
                         f"({same}); allowed: the same settings but for --methods.")
    return old["results"], old.get("seconds", 0.0)


def main(argv):
    del argv
    import examples.methods  # noqa: F401  (registers the methods)

    methods = ["darts"] if FLAGS.quick else FLAGS.methods
    seeds, random = (1, 2) if FLAGS.quick else (FLAGS.seeds, FLAGS.random)
    epochs = 2 if FLAGS.quick else FLAGS.epochs
    retrain_epochs = 2 if FLAGS.quick else FLAGS.retrain_epochs
    config = dict(quick=FLAGS.quick, methods=methods, seeds=seeds, random=random, epochs=epochs,
                  retrain_epochs=retrain_epochs, batch_size=FLAGS.batch_size, tolerance=0.05,
                  options=OPTIONS, entropy=FLAGS.entropy)
    results, seconds = _previous(config) if FLAGS.merge and not FLAGS.quick else ({}, 0.0)
    start = time.perf_counter()
    for method in methods:
        results[method] = run_method(method, seeds, random, epochs, retrain_epochs,
                                     FLAGS.batch_size, FLAGS.entropy)
        # written after every method: a long run that stops keeps what it measured
        path = write_json(_name(), {
            "config": {**config, "methods": list(results)}, "results": results,
            "seconds": seconds + time.perf_counter() - start,
            "complete": all(m in results for m in methods),
            "not_beating_random": [m for m, r in results.items() if not r["beats_random"]],
        })
    print(_table(results))
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
