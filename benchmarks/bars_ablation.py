"""BARS ablations on digits (BARS Table 1, Fig. 5): Gumbel sampling and the cell-level shortcut.

Three searches of ``models.bars``, each with ``--seeds`` seeds:

* ``gumbel`` — BARS: Gumbel-softmax for op, depth and width;
* ``softmax`` — the same search with plain softmax mixing (DARTS), no sampling;
* ``gumbel, no cell shortcut`` — BARS without the cell-level shortcut.

The searches are long enough to decide: the architecture learning rate is the
step-aware ``"auto"`` rule (``searchlayers.schedules.learning_rate``: 6 / the
architecture steps after the warm-up), the Gumbel temperature goes 1 -> 0.1
per step over the run (``schedules.temperature``; softmax keeps T = 1, as
DARTS), and BARS' explore-then-commit entropy schedule goes ``-c -> +c`` per
step (``examples.methods.commit``, the demo's ``c = 0.1``). Eq. 7's FLOPs term
caps the searched edges' equivalent ops at ``--budget_ratio`` times the
supernet's initial expected value (1.0: a cap; below it the term is the only
consistent architecture gradient of so short a search and drives every edge
to shortcut / none).

Per run: how decided the search ended (``searchlayers.decision.summary``:
median and mean over architecture groups of the largest probability, groups
decided), the mean p(conv) and p(shortcut) over the edge groups per epoch
(Fig. 5, right), the argmax op mix and its parameter-free share (shortcut /
none), the derived net (best of K = 8 samples by validation loss, retrained
from scratch) with its test accuracy, and the seconds. Per variant: mean ± std
over the seeds.

Writes ``benchmarks/results/bars_ablation.json`` (after every run) and prints the table.

Example:
    python -m benchmarks.bars_ablation            # ~25 minutes niced on a shared 2-core box
    python -m benchmarks.bars_ablation --quick    # one seed, 8 epochs
"""

import time

from absl import app, flags

import numpy as np

from benchmarks.common import mean_std, table, write_json
from examples import bars_search, common, methods
from models import bars
from searchlayers import ArchWarmup, FLOPsRegularizer, SearchModel, datasets, decision, schedules
from searchlayers import regularizers as reg
from searchlayers import tuning
from searchlayers._keras import keras
from searchlayers.derive import choose

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "One seed, fewer epochs.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Random seeds (each: the three searches).")
flags.DEFINE_integer("epochs", 40, "Search epochs, warm-up included.")
flags.DEFINE_integer("warmup", 10, "Weight-only epochs (ArchWarmup).")
flags.DEFINE_integer("retrain", 10, "Retraining epochs of the derived child.")
flags.DEFINE_integer("channels", 8, "Node channels of the first stage.")
flags.DEFINE_float("entropy", 0.1, "Explore-then-commit entropy coefficient c (-c -> +c).")
flags.DEFINE_float("budget_ratio", 1.0,
                   "Eq. 7 budget as a fraction of the supernet's initial expected equivalent "
                   "ops of the searched edges (0: no FLOPs term).")

RUNS = [("gumbel", "gumbel", True), ("softmax", "softmax", True),
        ("gumbel, no cell shortcut", "gumbel", False)]
FREE = ("bin_shortcut", "zeroise")
SUMMARY = ("derived_accuracy", "median_max_prob", "mean_max_prob", "conv_probability_end",
           "shortcut_probability_end", "parameter_free_share", "seconds")


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


def _callbacks(supernet, mode, config, steps):
    """Temperature (Gumbel only), explore-then-commit entropy, warm-up, eq. 7."""
    found = [ArchWarmup(config["warmup"])]
    if mode != "softmax":
        found.append(schedules.temperature("bars", steps))
    spec = tuning.TrialSpec("bars", options={"entropy": config["entropy"]})
    found.extend(methods.commit(spec, steps))
    if config["budget_ratio"] > 0:  # BARS eq. 7, as models.bars.search_callbacks
        initial = float(reg.expected_cost(supernet, "equivalent_ops", search_only=True))
        found.append(FLOPsRegularizer(budget=config["budget_ratio"] * initial,
                                      metric="equivalent_ops", mode="multiplicative",
                                      under=0.0, over=1.0, search_only=True))
    return found


def search(mode, cell_shortcut, config):
    """Bi-level BARS search with the step-aware settings; returns ``(model, arch_lr)``."""
    supernet = bars.bars_supernet(datasets.info("digits").input_shape, 10,
                                  **{**bars.DIGITS_CONFIG, "channels": config["channels"]},
                                  mode=mode, cell_shortcut=cell_shortcut)
    data = datasets.search_pairs("digits", 64)
    per_epoch = int(data.cardinality())
    arch_steps = (config["epochs"] - config["warmup"]) * per_epoch
    arch_lr = schedules.learning_rate("bars", arch_steps)
    model = SearchModel(supernet, bilevel=True, arch_optimizer=keras.optimizers.Adam(
        arch_lr, beta_1=0.5, beta_2=0.999))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=common.LOSS, metrics=["accuracy"])
    probe = _Probe()
    model.fit(data, epochs=config["epochs"], verbose=0,
              callbacks=[*_callbacks(supernet, mode, config, config["epochs"] * per_epoch),
                         probe])
    return model, probe, arch_lr, arch_steps


def one_run(mode, cell_shortcut, config, seed=0):
    """Search, derive (best of 8), retrain; returns the row's numbers.

    Example:
        >>> one_run("softmax", True, dict(epochs=2, warmup=1, retrain=1, channels=8,
        ...                               entropy=0.1, budget_ratio=1.0))  # doctest: +SKIP
    """
    keras.utils.set_random_seed(seed)
    start = time.time()
    model, probe, arch_lr, arch_steps = search(mode, cell_shortcut, config)
    decided = decision.summary(model.model)
    mix, free = _argmax_mix(model.model)
    child, best, _ = bars.derive_bars(model, datasets.arrays("digits", "validation"), k=8,
                                      seed=seed)
    _, accuracy = bars_search.retrain(child, config["retrain"])
    return dict(
        mode=mode, cell_shortcut=cell_shortcut, seed=seed, arch_lr=arch_lr,
        arch_steps=arch_steps,
        median_max_prob=decided["median_max_prob"],
        mean_max_prob=float(np.mean([d["max_prob"] for d in decided["layers"].values()])),
        groups_decided=decided["decided"], groups=len(decided["layers"]),
        max_prob_per_group={k: round(d["max_prob"], 4) for k, d in decided["layers"].items()},
        shortcut_probability=probe.shortcut, conv_probability=probe.conv,
        shortcut_probability_end=probe.shortcut[-1], conv_probability_end=probe.conv[-1],
        argmax_mix=mix, parameter_free_share=free,
        derived_mix=bars.op_mix(best), derived_layout={str(k): v for k, v in
                                                       bars.layout(best).items()},
        derived_accuracy=accuracy, seconds=time.time() - start,
    )


def run(config, seeds, on_run=None):
    """All variants x seeds; returns ``{variant: [run, ...]}``. ``on_run(runs)``
    is called after every run (writes the JSON so far)."""
    runs = {name: [] for name, _, _ in RUNS}
    for seed in seeds:
        for name, mode, short in RUNS:
            runs[name].append(one_run(mode, short, config, seed))
            r = runs[name][-1]
            print(f"seed {seed} {name}: median max p {r['median_max_prob']:.2f}, "
                  f"p(conv) {r['conv_probability_end']:.2f}, acc {r['derived_accuracy']:.3f}, "
                  f"{r['seconds']:.0f}s", flush=True)
            if on_run:
                on_run(runs)
    return runs


def _result(config, seeds, runs, start):
    return {"config": {**config, "k": 8, "seeds": seeds, "batch_size": 64,
                       "arch_lr": "auto (schedules.learning_rate)"},
            "runs": runs, "summary": mean_std(runs, SUMMARY), "dataset": "digits",
            "seconds": time.time() - start,
            "machine": "2 CPU cores shared with other engineers' runs, niced (nice -n 19): "
                       "times are inflated and not comparable"}


def main(argv):
    del argv
    start = time.time()
    seeds = [int(s) for s in FLAGS.seeds][:1 if FLAGS.quick else None]
    config = dict(epochs=8 if FLAGS.quick else FLAGS.epochs,
                  warmup=2 if FLAGS.quick else FLAGS.warmup,
                  retrain=3 if FLAGS.quick else FLAGS.retrain, channels=FLAGS.channels,
                  entropy=FLAGS.entropy, budget_ratio=FLAGS.budget_ratio, quick=FLAGS.quick)
    runs = run(config, seeds,
               lambda r: write_json("bars_ablation", _result(config, seeds, r, start)))
    result = _result(config, seeds, runs, start)
    path = write_json("bars_ablation", result)
    rows = []
    for name, s in result["summary"].items():
        rows.append([name] + [f"{s[m][0]:.2f} ± {s[m][1]:.2f}" for m in SUMMARY])
    print(table(rows, ["search", "acc", "median max p", "mean max p", "p(conv)",
                       "p(shortcut)", "param-free", "seconds"]))
    print(f"wrote {path} ({result['seconds']:.0f}s)")


if __name__ == "__main__":
    app.run(main)
