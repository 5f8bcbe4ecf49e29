"""EnTranNAS-DST Table 4 trend on digits: kept edges per node as lambda rises.

EnTranNAS-DST (sec. 3.3) learns one threshold ``t_j = sigmoid(beta_j)`` per
node and keeps the ``(edge, op)`` entries whose node-normalized probability
exceeds it; ``lambda`` weighs the regularizer ``mean_j(-log t_j)`` that pushes
the thresholds up. The paper's Table 4 (CIFAR-10, 4 nodes, 14 possible input
edges per cell): lambda 0.05 / 0.1 / 0.2 keep 13 / 11 / 9 normal and 14 / 6 / 8
reduction edges -- fewer edges as lambda rises.

Here ``examples.entrannas_search.lambda_sweep`` (the example's own sweep) runs
one DST search per lambda (same seed and settings) and counts the kept input
edges per cell type as the paper does (``models.entrannas.edge_counts``);
``edges per node`` divides them by the nodes. Each search uses the step-aware
``schedules.SearchSchedule("entrannas_dst", "auto")`` (architecture learning
rate ``6 / S`` for ``S`` steps, never below the paper's 6e-3; temperature
1.0 -> 0.005 per step, the paper's DST end points) unless ``--schedule=fixed``
(``--arch_lr`` and the paper's per-epoch 1.0 x 0.9). A
``SearchRecords`` callback records, per search, the share of each epoch's
steps after which the derived sub-graph changed (``flips``), the thresholds
and ``searchlayers.decision.summary`` (largest softmax probability per edge):
a search is *decided* when its last epoch's flips are at most
``DECIDED_FLIPS`` and the median largest probability per edge is at least
``decision.CATEGORICAL_PROB`` -- the edge count it reports is then the search's answer,
not a snapshot of a moving selection.

Flags: ``--quick``, ``--lambdas``, ``--seeds``, ``--schedule``, ``--entropy``
(explore-then-commit term, 0 by default: pushing every edge's softmax to one
op makes every edge's best op score ``p_hat = 1`` and survive any threshold),
``--epochs``, ``--cells``, ``--steps``, ``--channels``, ``--batch_size``.
Writes ``benchmarks/results/entrannas_dst.json`` and prints the table.

Example:
    python -m benchmarks.entrannas_dst                 # ~20 minutes on 2 CPU cores
    python -m benchmarks.entrannas_dst --quick
    python -m benchmarks.entrannas_dst --lambdas=0,0.1,1 --seeds=0,1
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.common import table, write_json  # noqa: E402
from benchmarks.entrannas_table1 import (  # noqa: E402
    SCHEDULES, SelectionChanges, arch_steps, commit, decided)
from examples import entrannas_search  # noqa: E402
from searchlayers import decision, schedules  # noqa: E402

FLAGS = flags.FLAGS

# 4 cells (2 Engine), 3 nodes (9 possible input edges per cell), 4 epochs = 76
# architecture steps (the quick run's 3 already end decided: flips 0, max p 1.00);
# ~15 minutes for 3 lambdas on 2 heavily shared CPU cores.
FULL = dict(epochs=4, cells=4, steps=3, channels=4, batch_size=32)
QUICK = dict(epochs=3, cells=4, steps=3, channels=4, batch_size=32)
PRESET_FLAGS = ("epochs", "cells", "steps", "channels", "batch_size")
DECIDED_FLIPS = 0.1  # at most ~2 of a digits epoch's 19 steps change the sub-graph
PAPER_TABLE4 = {"nodes": 4, "possible_edges": 14,
                "edges": {"0.05": [13, 14], "0.1": [11, 6], "0.2": [9, 8]}}  # normal, reduce


def define_flags():
    """The flags (defined when run, so the module imports as a library)."""
    flags.DEFINE_bool("quick", False, "Small preset (3 epochs, 4 channels).")
    flags.DEFINE_list("lambdas", ["0", "2", "20"], "DST lambdas (the paper's are 0.05-0.2, "
                      "which a 3-epoch quick run showed too weak to prune here; Adam "
                      "normalizes the threshold gradient, so only a lambda that "
                      "outweighs the task loss's pull on beta moves t at full speed).")
    flags.DEFINE_list("seeds", ["0"], "Seeds (one search per lambda and seed).")
    flags.DEFINE_enum("schedule", "auto", SCHEDULES, "auto / paper: schedules.SearchSchedule"
                      "('entrannas_dst', ...); fixed: --arch_lr and 1.0 x 0.9 per epoch.")
    flags.DEFINE_float("entropy", 0.0, "Explore-then-commit entropy coefficient c; 0: none.")
    flags.DEFINE_float("arch_lr", 6e-3, "fixed: architecture Adam learning rate.")
    flags.DEFINE_float("lr", 0.05, "Weight SGD learning rate.")
    for name in PRESET_FLAGS:
        flags.DEFINE_integer(name, None, f"{name} (preset: {FULL[name]}; quick {QUICK[name]}).")


class SearchRecords(SelectionChanges):
    """``SelectionChanges`` that keeps one record per ``fit`` it is attached to:
    seconds, per-epoch flips and ``decided`` (the decision summary).

    Example:
        >>> records = SearchRecords()
        >>> rows = entrannas_search.lambda_sweep([0.0, 1.0], 2,
        ...                                      extra_callbacks=[records])  # doctest: +SKIP
        >>> len(records.records)  # doctest: +SKIP
        2
    """

    def __init__(self):
        super().__init__()
        self.records = []

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.per_epoch, self._start = [], time.time()

    def on_train_end(self, logs=None):
        supernet = getattr(self.model, "model", self.model)
        self.records.append({
            "search_seconds": time.time() - self._start,
            "selection_change_rate": [round(v, 3) for v in self.per_epoch],
            "decision": decided(supernet),
        })


def settings():
    """The preset with explicitly given flags on top (and the schedule's arch lr).

    Example:
        >>> sorted(settings())  # doctest: +SKIP
        ['arch_lr', 'arch_steps', 'batch_size', 'cells', 'channels', 'entropy', 'epochs', 'lr', 'schedule', 'steps']
    """
    config = dict(QUICK if FLAGS.quick else FULL)
    config.update({k: FLAGS[k].value for k in PRESET_FLAGS if FLAGS[k].value is not None})
    config.update(schedule=FLAGS.schedule, entropy=FLAGS.entropy, lr=FLAGS.lr)
    config["arch_steps"] = arch_steps(config)
    config["arch_lr"] = (FLAGS.arch_lr if FLAGS.schedule == "fixed" else
                         schedules.learning_rate("entrannas_dst", config["arch_steps"],
                                                 FLAGS.schedule))
    return config


def sweep(lambdas, seed, config):
    """``lambda_sweep`` rows for one seed, each with its search's record and
    ``edges_per_node`` (kept input edges / nodes, per cell type).

    Example:
        >>> rows = sweep([0.0, 1.0], 0, dict(QUICK, schedule="auto", entropy=0.0,
        ...              lr=0.05, arch_lr=None))  # doctest: +SKIP
        >>> sorted(rows[0]["edges_per_node"])  # doctest: +SKIP
        ['normal', 'reduce']
    """
    records = SearchRecords()
    options = {k: config[k] for k in (*PRESET_FLAGS, "lr") if k != "epochs"}
    if config["schedule"] == "fixed":
        options["arch_lr"] = config["arch_lr"]
    else:
        options["schedule"] = config["schedule"]
    rows = entrannas_search.lambda_sweep(
        lambdas, config["epochs"], seed, extra_callbacks=[records, *commit(config)], **options)
    for row, record in zip(rows, records.records):
        flips = record["selection_change_rate"][-1]
        row.update(record, seed=seed, last_epoch_flips=flips,
                   decided=bool(flips <= DECIDED_FLIPS and record["decision"]["median_max_prob"]
                                >= decision.CATEGORICAL_PROB),
                   edges_per_node={k: v / config["steps"] for k, v in row["edges"].items()},
                   possible_edges_per_node=row["possible_edges"] / config["steps"])
    return rows


def trend(rows):
    """Mean edges per node (both cell types, all seeds) per lambda, and whether it
    never rises as lambda rises.

    Example:
        >>> t = trend([{"lambda": 0.0, "edges_per_node": {"normal": 2.0, "reduce": 3.0}},
        ...            {"lambda": 1.0, "edges_per_node": {"normal": 1.0, "reduce": 2.0}}])
        >>> t["mean_edges_per_node"], t["non_increasing"]
        ({'0': 2.5, '1': 1.5}, True)
    """
    means = {}
    for lam in sorted({r["lambda"] for r in rows}):
        values = [v for r in rows if r["lambda"] == lam for v in r["edges_per_node"].values()]
        means[f"{lam:g}"] = float(np.mean(values))
    ordered = list(means.values())
    return {"mean_edges_per_node": means,
            "non_increasing": all(b <= a for a, b in zip(ordered, ordered[1:])),
            "first_to_last": ordered[-1] - ordered[0]}


def report(rows):
    """The printed table.

    Example:
        >>> print(report([]))
        lambda  seed  edges/node N  edges/node R  of  ops N/R  t normal  t reduce  flips %  max p  decided  seconds
        ------  ----  ------------  ------------  --  -------  --------  --------  -------  -----  -------  -------
    """
    body = [[f"{r['lambda']:g}", r["seed"], r["edges_per_node"]["normal"],
             r["edges_per_node"]["reduce"], r["possible_edges_per_node"],
             f"{r['ops']['normal']}/{r['ops']['reduce']}",
             " ".join(f"{t:.2f}" for t in r["thresholds"]["normal"]),
             " ".join(f"{t:.2f}" for t in r["thresholds"]["reduce"]),
             100 * r["last_epoch_flips"], r["decision"]["median_max_prob"],
             "yes" if r["decided"] else "no", r["search_seconds"]] for r in rows]
    headers = ["lambda", "seed", "edges/node N", "edges/node R", "of", "ops N/R", "t normal",
               "t reduce", "flips %", "max p", "decided", "seconds"]
    return table(body, headers)


def main(argv):
    del argv
    start = time.time()
    config = settings()
    lambdas = [float(v) for v in FLAGS.lambdas]
    rows = []
    for seed in (int(s) for s in FLAGS.seeds):
        rows += sweep(lambdas, seed, config)
    result = {
        "config": dict(config, quick=FLAGS.quick, lambdas=lambdas, seeds=FLAGS.seeds,
                       dataset="digits", engine="first"),
        "rows": rows, "trend": trend(rows), "paper_table4_cifar10": PAPER_TABLE4,
        "decided_searches": sum(r["decided"] for r in rows), "searches": len(rows),
        "seconds": time.time() - start,
        "notes": (
            "edges: kept input edges per cell type, as the paper counts them (an input "
            "edge of a node is kept when any op on it is; models.entrannas.edge_counts); "
            "edges_per_node divides by the nodes (steps); ops: kept (input, op) pairs. "
            "flips: share of each epoch's steps after which the derived sub-graph (what "
            "the Transit cells run) changed; decided: last epoch's flips <= "
            f"{DECIDED_FLIPS} and median largest probability >= "
            f"{decision.CATEGORICAL_PROB}. decision: searchlayers.decision.summary "
            "(largest softmax probability per edge; its flips are per-edge op argmax changes over the last "
            "50 steps). thresholds: t_j = sigmoid(beta_j) per node of the Engine cells. "
            "Why a decided DST search keeps edges: an edge whose best op reaches p ~ 1 "
            "(the annealed temperature makes every edge's softmax one-hot) has p_hat = "
            "p / max_node p = 1 and survives any threshold t < 1; only entries pruned "
            "before their edge decided stay pruned (a pruned entry gets no task gradient). "
            "So the kept edges fall with lambda only where the threshold outruns the "
            "edges' decision. "
            "Run niced on a 2-core machine shared with other jobs: seconds are wall time "
            "under load."
        ),
    }
    print("\n" + report(rows))
    print(f"\nmean edges per node by lambda: {result['trend']['mean_edges_per_node']} "
          f"(non-increasing: {result['trend']['non_increasing']}); decided "
          f"{result['decided_searches']}/{result['searches']}")
    print(f"\nwrote {write_json('entrannas_dst', result)} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    define_flags()
    app.run(main)
