"""BARS ablations on digits (BARS Table 1, Fig. 5): Gumbel sampling and the cell-level shortcut.

Three searches of ``models.bars`` with the strategy of ``examples.bars_search``
(entropy schedule, warm-up, eq. 7 FLOPs term with the budget at
``--budget_ratio`` times the supernet's initial expected equivalent ops of the
searched edges; default 1.0, a cap: at 0.5 the term is the only consistent
arch gradient of so short a search (Adam normalizes its size away) and drives
every choice to shortcut / none identically with and without Gumbel):

* ``gumbel`` — BARS: Gumbel-softmax for op, depth and width;
* ``softmax`` — the same search with plain softmax mixing (DARTS), no sampling;
* ``gumbel, no cell shortcut`` — BARS without the cell-level shortcut.

For each: the mean probability of the shortcut and of the binary conv over the
edge groups along the search (Fig. 5, right), the argmax op mix and the share of
parameter-free argmax edges (shortcut / none: "collapse"), and the test accuracy
of the derived net (best of K = 8 by validation loss, retrained from scratch).

Writes ``benchmarks/results/bars_ablation.json`` and prints the table.

Example:
    python -m benchmarks.bars_ablation            # 12 minutes on a busy 2-core box, mostly tracing
    python -m benchmarks.bars_ablation --quick    # smaller, about 3 minutes alone
"""

import time

from absl import app, flags

import numpy as np

from benchmarks.common import table, write_json
from examples import bars_search
from models import bars
from searchlayers import datasets
from searchlayers._keras import keras
from searchlayers.derive import choose

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Fewer epochs and channels.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_float("budget_ratio", 1.0,
                   "Eq. 7 budget as a fraction of the supernet's initial expected equivalent "
                   "ops of the searched edges (0: no FLOPs term).")

RUNS = [("gumbel", "gumbel", True), ("softmax", "softmax", True),
        ("gumbel, no cell shortcut", "gumbel", False)]
FREE = ("bin_shortcut", "zeroise")


class _Probe(keras.callbacks.Callback):
    """Mean probability of the shortcut and of the conv per epoch."""

    def __init__(self):
        super().__init__()
        self.shortcut, self.conv = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.shortcut.append(bars.shortcut_probability(self.model))
        self.conv.append(bars.shortcut_probability(self.model, "bin_conv_3x3_shortcut"))


def _argmax_mix(supernet):
    mix = bars.op_mix(choose(supernet, "argmax"))
    total = {}
    for counts in mix.values():
        for op, n in counts.items():
            total[op] = total.get(op, 0) + n
    edges = sum(total.values())
    return total, sum(total.get(op, 0) for op in FREE) / edges


def one_run(mode, cell_shortcut, config, seed=0):
    """Search, derive (best of 8), retrain; returns the row's numbers.

    Example:
        >>> one_run("softmax", True, dict(epochs=1, warmup=0, retrain=0, channels=8,
        ...                               arch_lr=1e-2))  # doctest: +SKIP
    """
    keras.utils.set_random_seed(seed)
    start = time.time()
    probe = _Probe()
    model, history = bars_search.search(config["epochs"], config["warmup"],
                                        config["budget_ratio"], mode, cell_shortcut,
                                        channels=config["channels"],
                                        arch_lr=config["arch_lr"], verbose=0,
                                        extra_callbacks=[probe])
    mix, free = _argmax_mix(model.model)
    child, best, _ = bars.derive_bars(model, datasets.arrays("digits", "validation"), k=8,
                                      seed=seed)
    _, accuracy = bars_search.retrain(child, config["retrain"])
    return dict(
        mode=mode, cell_shortcut=cell_shortcut, shortcut_probability=probe.shortcut,
        conv_probability=probe.conv, argmax_mix=mix, parameter_free_share=free,
        derived_mix=bars.op_mix(best), derived_layout={str(k): v for k, v in
                                                       bars.layout(best).items()},
        derived_accuracy=accuracy, budget=history["budget"],
        expected_equivalent_ops=history.get("expected_equivalent_ops"),
        search_loss=history.get("loss"), seconds=time.time() - start,
    )


def run(quick=False, seed=0, budget_ratio=1.0):
    """All runs; returns the JSON dict.

    Example:
        >>> run(quick=True)["runs"]["softmax"]["derived_accuracy"]  # doctest: +SKIP
    """
    config = (dict(epochs=8, warmup=2, retrain=6, channels=8, arch_lr=1e-2) if quick
              else dict(epochs=40, warmup=10, retrain=10, channels=8, arch_lr=1e-2))
    config["budget_ratio"] = budget_ratio
    runs = {name: one_run(mode, short, config, seed) for name, mode, short in RUNS}
    return {"config": {**config, "k": 8, "seed": seed, "quick": quick},
            "runs": runs, "dataset": "digits"}


def main(argv):
    del argv
    start = time.time()
    result = run(FLAGS.quick, FLAGS.seed, FLAGS.budget_ratio)
    result["seconds"] = time.time() - start
    result["machine"] = "2 CPU cores shared with other benchmark runs (times are not comparable)"
    path = write_json("bars_ablation", result)
    rows = []
    for name, r in result["runs"].items():
        mix = r["argmax_mix"]
        rows.append([name, r["shortcut_probability"][-1], r["conv_probability"][-1],
                     f"{mix.get('bin_conv_3x3_shortcut', 0)}/{mix.get('bin_shortcut', 0)}/"
                     f"{mix.get('zeroise', 0)}", 100 * r["parameter_free_share"],
                     100 * r["derived_accuracy"]])
    print(table(rows, ["search", "p(shortcut)", "p(conv)", "argmax conv/short/none",
                       "param-free %", "derived acc %"]))
    print("p(shortcut) per epoch:", {n: np.round(r["shortcut_probability"], 3).tolist()
                                     for n, r in result["runs"].items()})
    print(f"wrote {path} ({result['seconds']:.0f}s)")


if __name__ == "__main__":
    app.run(main)
