"""EnTranNAS Table 1 on digits: supernet accuracy vs its derived child's.

The paper (sec. 4.1, Table 1) searches with different sets of Engine cells,
then runs inference "only through the paths in the derived architecture" (the
child with the supernet's weights, no retraining) and compares the two
accuracies: with every cell an Engine cell (DARTS) the child loses a lot
(88.3% -> 64.0% on CIFAR-10); with only the first normal and first reduction
cells as Engine cells (EnTranNAS) it loses little (86.7% -> 86.2%), because
the Transit cells already compute the derived sub-graph during the search.

Here, for each row, ``examples.entrannas_search.search`` runs the bi-level
search on digits (same seeds, same settings, only the Engine cells differ);
``searchlayers.derive`` builds the child (top-2 inputs per node, or the
nonzero edges with DST) with inherited weights, and both are evaluated on the
digits test split (never seen by the search). Two protocols:

- ``as is``: every BatchNorm keeps the moving statistics of the search;
- ``BN re-estimated``: each network's BatchNorm moving statistics are
  recomputed on the train split in one pass (weights untouched). A digits
  search is ~20 steps per epoch and a Transit cell's op updates its moving
  averages (momentum 0.9) only on the steps that select it, so they can lag;
  this protocol removes that artifact for both networks alike and leaves the
  architecture gap.

Two diagnostics explain the drops: ``flips %``, the share of the last
epoch's search steps after which the derived sub-graph (what the Transit
cells train) changed, and ``outside %``, the share of the Engine cells' final
mixing weight on (edge, op) pairs that the child drops (0 would mean the
Engine cells already compute their derived cells).

Rows: ``all`` (DARTS), ``first`` (EnTranNAS), optionally ``last`` and
``first_dst`` (EnTranNAS-DST, whose Engine cells mix only the derived edges).

The claim needs a search that decides: the Engine cells' softmax near one op
per edge and the derived sub-graph (what the Transit cells train) stable.
``--schedule=auto`` (the default) uses the library's step-aware
``schedules.SearchSchedule("entrannas", "auto")``: the architecture learning
rate ``6 / S`` for ``S`` architecture steps and the temperature 5.0 -> 0.1
annealed per step over the run; ``--entropy=c`` adds the explore-then-commit
entropy term (``EntropyRegularizer``, linear ``-c -> +c`` per step, as
``examples.methods.commit``) so each edge commits to one op by the end.
``--schedule=fixed`` is the first runs' setting: Adam at ``--arch_lr`` and a
per-epoch temperature whose last epoch runs at the paper's last value
(``5.0 x rate^e``, ``rate = paper_rate(epochs)``); it ends undecided on digits
(op max ~0.4, flips ~80 %). A third diagnostic, ``op max``, is the Engine
cells' mean largest coefficient per edge (1: one op per edge; 1/7: uniform
over the 7 ops) -- how far the annealed softmax got from a mixture; ``decision``
is ``searchlayers.decision.summary`` of the supernet at the end.

Flags: ``--quick`` (4 epochs, ~5 minutes shared), ``--rows``, ``--schedule``,
``--entropy``; ``--epochs``, ``--cells``, ``--steps``, ``--channels``,
``--batch_size``, ``--rate`` override the preset when given (the rest of the
search is ``examples.entrannas_search.search``'s defaults).
Writes ``benchmarks/results/entrannas_table1.json`` and prints the table.

Example:
    python -m benchmarks.entrannas_table1            # ~20 minutes on 2 CPU cores
    python -m benchmarks.entrannas_table1 --quick
    python -m benchmarks.entrannas_table1 --rows=all,first,last,first_dst
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

import numpy as np  # noqa: E402

import searchlayers as sl  # noqa: E402  (Keras-2 guard before TensorFlow)
from benchmarks.common import table, write_json  # noqa: E402
from examples import entrannas_search  # noqa: E402
from models import entrannas  # noqa: E402
from searchlayers import datasets, decision, schedules  # noqa: E402
from searchlayers._keras import keras  # noqa: E402
from searchlayers.layers.entrannas import NONE_OPS  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    """The flags (defined when run, so the module imports as a library)."""
    flags.DEFINE_bool("quick", False, "Small preset (fewer cells, nodes and epochs).")
    flags.DEFINE_list("rows", ["all", "first"], "Rows: all, first, last, first_dst.")
    flags.DEFINE_integer("epochs", None, "Search epochs (preset: 24; quick 4).")
    flags.DEFINE_integer("cells", None, "Cells (preset: 6; quick 4).")
    flags.DEFINE_integer("steps", None, "Intermediate nodes per cell (preset: 2; quick 2).")
    flags.DEFINE_integer("channels", None, "Channels of the first cells (preset: 6; quick 4).")
    flags.DEFINE_integer("batch_size", None, "Batch size of each bi-level half (preset: 32).")
    flags.DEFINE_enum("schedule", "auto", SCHEDULES, "auto / paper: schedules.SearchSchedule "
                      "preset (arch learning rate and per-step temperature); fixed: --arch_lr "
                      "and the per-epoch --rate.")
    flags.DEFINE_float("entropy", 0.05, "Explore-then-commit entropy coefficient c (-c -> +c "
                       "per step); 0: none.")
    flags.DEFINE_float("rate", None, "fixed: temperature factor per epoch (default: "
                       "paper_rate(epochs)).")
    flags.DEFINE_float("arch_lr", 6e-3, "fixed: architecture Adam learning rate.")
    flags.DEFINE_float("lr", 0.05, "Weight SGD learning rate.")
    flags.DEFINE_list("seeds", ["0", "1"], "Random seeds (each row searched once per seed).")


SCHEDULES = ("auto", "paper", "fixed")
ROWS = {  # name -> entrannas_supernet options
    "all": dict(engine="all", dst=False),
    "first": dict(engine="first", dst=False),
    "last": dict(engine="last", dst=False),
    "first_dst": dict(engine="first", dst=True),
}
LABELS = {"all": "all (DARTS)", "first": "first (EnTranNAS)", "last": "last",
          "first_dst": "first, DST"}
# 6 cells (N N R N R N): 2 Engine + 4 Transit cells, near the paper's 2 of 8; 24 epochs
# (456 architecture steps): at 12 the all-Engine (DARTS) row still ended undecided
# (op max 0.91, flips 74 %), at 24 both rows decide; ~10 minutes per seed on 2 shared
# CPU cores. The first runs used 6 epochs and 4 cells (N R R N: 2 of 4 Engine cells)
# with --schedule=fixed.
FULL = dict(epochs=24, cells=6, steps=2, channels=6, batch_size=32)
QUICK = dict(epochs=4, cells=4, steps=2, channels=4, batch_size=32)
PAPER_EPOCHS = 50  # tau: 5.0 x 0.923 per epoch over 50 epochs; the last one runs at 0.099
PRESET_FLAGS = ("epochs", "cells", "steps", "channels", "batch_size")
PAPER = {"all (DARTS)": [88.29, 63.97], "one half": [87.45, 65.51], "last": [84.02, 83.35],
         "first": [86.68, 86.24]}
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


class SelectionChanges(keras.callbacks.Callback):
    """Per epoch, the fraction of search steps after which the derived
    sub-graph (what Transit cells run) changed.

    Example:
        >>> tracker = SelectionChanges()
        >>> _ = entrannas_search.search(epochs=2, extra_callbacks=[tracker])  # doctest: +SKIP
        >>> len(tracker.per_epoch)  # doctest: +SKIP
        2
    """

    def __init__(self):
        super().__init__()
        self.per_epoch = []

    def _current(self):
        return tuple(cell.selection().numpy().tobytes() for cell in self._cells)

    def on_train_begin(self, logs=None):
        supernet = getattr(self.model, "model", self.model)  # inside a SearchModel
        self._cells = list({c.arch_key: c for c in entrannas.cells(supernet)}.values())
        self._last = self._current()

    def on_epoch_begin(self, epoch, logs=None):
        self._changes, self._steps = 0, 0

    def on_train_batch_end(self, batch, logs=None):
        now = self._current()
        self._changes += now != self._last
        self._steps += 1
        self._last = now

    def on_epoch_end(self, epoch, logs=None):
        self.per_epoch.append(self._changes / max(self._steps, 1))


def mass_outside_child(supernet):
    """Per cell type, the share of the Engine cells' mixing weight (ops other than
    ``none``) on (edge, op) pairs the derived child drops: 0 when the Engine cell
    already computes its derived cell.

    Example:
        >>> model = entrannas.entrannas_supernet(channels=4, cells=3, steps=2)
        >>> sorted(mass_outside_child(model))
        ['normal', 'reduce']
    """
    out = {}
    for cell in entrannas.cells(supernet):
        if cell.role != "engine" or cell.arch_key in out:
            continue
        real = np.array([c not in NONE_OPS for c in cell.candidates])
        coeff = cell.coefficients().numpy()[:, real]
        kept = cell.selection().numpy()[:, real]
        out[cell.arch_key] = float(1.0 - (coeff * kept).sum() / coeff.sum())
    return out


def reestimate_bn(model, x):
    """Recomputes every BatchNorm's moving statistics of ``model`` on ``x``
    (one training-mode pass with momentum 0); weights are untouched.

    Example:
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.BatchNormalization()])
        >>> reestimate_bn(m, np.array([[0.0, 1.0], [2.0, 3.0]], "float32"))
        >>> m.layers[0].moving_mean.numpy().tolist()
        [1.0, 2.0]
    """
    norms = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
             if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [bn.momentum for bn in norms]
    for bn in norms:
        bn.momentum = 0.0  # moving <- batch statistics (read at call time)
    try:
        model(x, training=True)
    finally:
        for bn, momentum in zip(norms, saved):
            bn.momentum = momentum


def accuracy(model, x, y):
    """Top-1 accuracy of a logits model on arrays.

    Example:
        >>> accuracy(model, x_test, y_test)  # doctest: +SKIP
        0.93
    """
    logits = model.predict(x, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def run_row(name, config, seed=0):
    """One search and both evaluations; returns the row's dict.

    Example:
        >>> run_row("first", dict(QUICK, schedule="auto", entropy=0.05, lr=0.05))  # doctest: +SKIP
    """
    keras.utils.set_random_seed(seed)
    start = time.time()
    tracker = SelectionChanges()
    supernet, history = entrannas_search.search(
        **search_options(config), **ROWS[name], verbose=0,
        extra_callbacks=[tracker, *commit(config)])
    search_s = time.time() - start
    x_train, _ = datasets.arrays("digits", "train")
    x_test, y_test = datasets.arrays("digits", "test")
    arch = sl.choose(supernet)
    child = sl.derive(supernet, architecture=arch)  # inherited weights and BN statistics
    sl.apply_architecture(supernet, arch)  # the child is the supernet with its choice fixed
    parity = float(np.abs(child.predict(x_test[:64], verbose=0)
                          - supernet.predict(x_test[:64], verbose=0)).max())
    sl.apply_architecture(supernet, None)
    raw = accuracy(supernet, x_test, y_test), accuracy(child, x_test, y_test)
    reestimate_bn(supernet, x_train)
    reestimate_bn(child, x_train)
    bn = accuracy(supernet, x_test, y_test), accuracy(child, x_test, y_test)
    roles = [cell.role for cell in entrannas.cells(supernet)]
    return {
        "row": name, "label": LABELS[name], "options": ROWS[name], "seed": seed,
        "engine_cells": roles.count("engine"), "transit_cells": roles.count("transit"),
        "supernet_acc": raw[0], "child_acc": raw[1], "drop": raw[0] - raw[1],
        "supernet_acc_bn": bn[0], "child_acc_bn": bn[1], "drop_bn": bn[0] - bn[1],
        "search_train_acc": float(history["accuracy"][-1]),
        "selection_change_rate": [round(v, 3) for v in tracker.per_epoch],
        "engine_mass_outside_child": mass_outside_child(supernet),
        "engine_op_max_coefficient": op_sharpness(supernet),
        "final_temperature": float(entrannas.cells(supernet)[0].temperature),
        "decision": decided(supernet),
        "edge_counts": entrannas.edge_counts(supernet),
        "genotype": entrannas.genotype(supernet),
        "child_vs_fixed_supernet_max_abs_diff": parity,
        "search_seconds": search_s, "seconds": time.time() - start,
    }


def arch_steps(config):
    """Architecture steps of a search: ``epochs x`` bi-level pairs per epoch.

    Example:
        >>> arch_steps(dict(epochs=2, batch_size=32))
        38
    """
    pairs = datasets.search_pairs("digits", config["batch_size"])
    return config["epochs"] * int(pairs.cardinality())


def search_options(config):
    """``entrannas_search.search`` keywords of ``config``: a ``schedule`` preset, or
    (``"fixed"``) the per-epoch ``rate`` and a constant ``arch_lr``.

    Example:
        >>> sorted(search_options(dict(FULL, schedule="auto", entropy=0.0, rate=None,
        ...                            arch_lr=None, lr=0.05)))
        ['batch_size', 'cells', 'channels', 'epochs', 'lr', 'schedule', 'steps']
    """
    options = {k: config[k] for k in (*PRESET_FLAGS, "lr")}
    if config["schedule"] == "fixed":
        return dict(options, rate=config["rate"], arch_lr=config["arch_lr"])
    return dict(options, schedule=config["schedule"])


def commit(config, dst=False):
    """The explore-then-commit entropy term (``-c -> +c`` per step over the
    search, as ``examples.methods.commit``) for ``config["entropy"] = c``; [] for 0.

    Example:
        >>> [type(c).__name__ for c in commit(dict(entropy=0.05, epochs=1, batch_size=32))]
        ['EntropyRegularizer']
    """
    c = config["entropy"]
    if not c:
        return []
    return [sl.EntropyRegularizer("linear", start=-c, end=c, total=arch_steps(config),
                                  per="step")]


def decided(supernet):
    """``searchlayers.decision.summary`` of the searched supernet, without the
    per-layer details it repeats (largest probability and flips per group kept).

    Example:
        >>> model = entrannas.entrannas_supernet(channels=4, cells=3, steps=2)
        >>> d = decided(model)
        >>> d["decided"], d["undecided"], round(d["median_max_prob"], 2)
        (0, 2, 0.14)
    """
    result = decision.summary(supernet)
    layers = result.pop("layers")
    result["max_prob"] = {k: round(v["max_prob"], 4) for k, v in layers.items()}
    result["flips"] = {k: v["flips"] for k, v in layers.items()}
    return result


def paper_rate(epochs):
    """Temperature factor per epoch whose last epoch (index ``epochs - 1``) runs at
    the paper's last temperature, ``5.0 x 0.923^49`` (epoch 49 of 50).

    Example:
        >>> round(paper_rate(50), 6)
        0.923
        >>> round(5.0 * paper_rate(12) ** 11, 4) == round(5.0 * 0.923 ** 49, 4)
        True
    """
    return 0.923 ** ((PAPER_EPOCHS - 1) / max(int(epochs) - 1, 1))


def op_sharpness(supernet):
    """Per cell type, the Engine cells' mean largest coefficient per edge: 1 when
    every edge runs one op (feature selection), ``1 / ops`` for a uniform mixture.

    Example:
        >>> model = entrannas.entrannas_supernet(channels=4, cells=3, steps=2)
        >>> {k: round(v, 2) for k, v in op_sharpness(model).items()}
        {'normal': 0.14, 'reduce': 0.14}
    """
    out = {}
    for cell in entrannas.cells(supernet):
        if cell.role == "engine" and cell.arch_key not in out:
            out[cell.arch_key] = float(np.mean(np.max(cell.coefficients().numpy(), axis=1)))
    return out


def settings():
    """The preset (``--quick`` or full) with explicitly given search flags on top.

    Example:
        >>> sorted(settings())  # doctest: +SKIP
        ['arch_lr', 'arch_steps', 'batch_size', 'cells', 'channels', 'entropy', 'epochs', 'lr', 'rate', 'schedule', 'steps']
    """
    config = dict(QUICK if FLAGS.quick else FULL)
    config.update({k: FLAGS[k].value for k in PRESET_FLAGS if FLAGS[k].value is not None})
    config.update(schedule=FLAGS.schedule, entropy=FLAGS.entropy, lr=FLAGS.lr)
    if FLAGS.schedule == "fixed":
        rate = FLAGS.rate if FLAGS.rate is not None else paper_rate(config["epochs"])
        config.update(rate=rate, arch_lr=FLAGS.arch_lr)
    else:  # SearchSchedule sets both; recorded for the JSON
        steps = arch_steps(config)
        config.update(rate=None, arch_steps=steps, arch_lr=schedules.learning_rate(
            "entrannas", steps, FLAGS.schedule))
    return config


def report(result):
    """The printed table (accuracies in %).

    Example:
        >>> print(report({"rows": []}))
        Engine cells  seed  E/T  supernet  child  drop  supernet (BN)  child (BN)  drop (BN)  flips %  outside %  op max  decided
        ------------  ----  ---  --------  -----  ----  -------------  ----------  ---------  -------  ---------  ------  -------
    """
    rows = [[r["label"], r["seed"], f"{r['engine_cells']}/{r['transit_cells']}",
             100 * r["supernet_acc"], 100 * r["child_acc"], 100 * r["drop"],
             100 * r["supernet_acc_bn"], 100 * r["child_acc_bn"], 100 * r["drop_bn"],
             100 * r["selection_change_rate"][-1],
             100 * float(np.mean(list(r["engine_mass_outside_child"].values()))),
             float(np.mean(list(r["engine_op_max_coefficient"].values()))),
             f"{r['decision']['decided']}/{r['decision']['decided'] + r['decision']['undecided']}"]
            for r in result["rows"]]
    headers = ["Engine cells", "seed", "E/T", "supernet", "child", "drop", "supernet (BN)",
               "child (BN)", "drop (BN)", "flips %", "outside %", "op max", "decided"]
    return table(rows, headers)


SUMMARY_KEYS = ("supernet_acc", "child_acc", "drop", "supernet_acc_bn", "child_acc_bn", "drop_bn",
                "op_max", "last_epoch_flips")


def summary(rows):
    """Per row name, mean and std over its seeds of the accuracies, drops, the
    Engine cells' mean op max and the last epoch's flips; and decided searches.

    Example:
        >>> r = dict(row="all", supernet_acc=0.9, child_acc=0.5, drop=0.4, supernet_acc_bn=0.9,
        ...          child_acc_bn=0.6, drop_bn=0.3, selection_change_rate=[0.5, 0.1],
        ...          engine_op_max_coefficient={"normal": 1.0, "reduce": 0.8},
        ...          decision={"undecided": 0})
        >>> s = summary([r, dict(r, drop=0.2)])["all"]
        >>> s["seeds"], s["drop"], s["op_max"]["mean"], s["decided_searches"]
        (2, {'mean': 0.3, 'std': 0.1}, 0.9, 2)
    """
    out = {}
    for name in dict.fromkeys(r["row"] for r in rows):
        mine = [dict(r, op_max=float(np.mean(list(r["engine_op_max_coefficient"].values()))),
                     last_epoch_flips=r["selection_change_rate"][-1])
                for r in rows if r["row"] == name]
        out[name] = {k: {"mean": round(float(np.mean([r[k] for r in mine])), 4),
                         "std": round(float(np.std([r[k] for r in mine])), 4)}
                     for k in SUMMARY_KEYS}
        out[name].update(seeds=len(mine),
                         decided_searches=sum(r["decision"]["undecided"] == 0 for r in mine))
    return out


def main(argv):
    del argv
    unknown = [r for r in FLAGS.rows if r not in ROWS]
    if unknown:
        raise app.UsageError(f"--rows: unknown {unknown}; allowed: {', '.join(ROWS)}.")
    start, config, rows = time.time(), settings(), []
    runs = [(seed, name) for seed in (int(s) for s in FLAGS.seeds) for name in FLAGS.rows]
    for seed, name in runs:  # the JSON is rewritten after each row (a cut run keeps them)
        rows.append(run_row(name, config, seed))
        print(f"{name} seed {seed}: {rows[-1]['seconds']:.0f} s", flush=True)
        result = results(config, rows, time.time() - start, complete=len(rows) == len(runs))
        path = write_json("entrannas_table1", result)
    print("\n" + report(result))
    for name, s in result["summary"].items():
        print(f"{LABELS[name]}: drop {100 * s['drop']['mean']:.1f} +- "
              f"{100 * s['drop']['std']:.1f}, "
              f"drop (BN) {100 * s['drop_bn']['mean']:.1f} +- {100 * s['drop_bn']['std']:.1f}, "
              f"op max {s['op_max']['mean']:.3f}, decided {s['decided_searches']}/{s['seeds']}")
    print(f"\nwrote {path} ({result['seconds']:.0f} s)")


def results(config, rows, seconds, complete):
    """The JSON of the rows so far (``complete``: every seed and row ran).

    Example:
        >>> results({}, [], 1.0, False)["complete"]  # doctest: +SKIP
        False
    """
    return {
        "config": dict(config, quick=FLAGS.quick, seeds=FLAGS.seeds, dataset="digits",
                       split="test",
                       derivation="argmax (top-2 inputs per node; DST: nonzero edges)"),
        "rows": rows, "summary": summary(rows), "paper_table1_cifar10": PAPER,
        "seconds": seconds, "complete": complete,
        "notes": (
            "Accuracies on the digits test split (359 images); summary: mean and std "
            "over the seeds per row. 'child' is "
            "searchlayers.derive(supernet) with inherited weights, no retraining. "
            "'(BN)': both networks' BatchNorm moving statistics re-estimated on the "
            "train split in one pass (weights untouched). 'flips %': share of the last "
            "search epoch's steps after which the derived sub-graph changed "
            "(selection_change_rate: per epoch). 'outside %': share of the Engine "
            "cells' final mixing weight (ops other than none) on (edge, op) pairs the "
            "child drops, mean over cell types (engine_mass_outside_child). 'op max': "
            "the Engine cells' mean largest coefficient per edge (1 = one op per edge, "
            "1/7 = uniform; engine_op_max_coefficient). 'decided': groups (cell types) "
            "that searchlayers.decision calls decided (largest probability >= 0.6 on "
            "every edge, argmax flips <= 10 % of the last 50 steps; decision). "
            "Search space: the paper's 7 ops (no none). schedule 'auto': "
            "SearchSchedule('entrannas', 'auto') (arch_lr = 6 / arch_steps, "
            "temperature 5.0 -> 0.1 per step) with the explore-then-commit entropy term "
            "-entropy -> +entropy per step. Run niced on a 2-core machine shared with "
            "other jobs: seconds are wall time under load."
        ),
    }


if __name__ == "__main__":
    define_flags()
    app.run(main)
