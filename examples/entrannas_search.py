"""EnTranNAS / EnTranNAS-DST cell search on digits: search, derive, retrain.

1. Builds ``models.entrannas.entrannas_supernet`` (first normal and reduction
   cells Engine, the rest Transit; feature sharing on; ``--bottleneck``,
   ``--dst``, ``--engine`` as asked) and searches it bi-level with
   ``searchlayers.SearchModel`` on ``datasets.search_pairs``; the temperature
   follows ``TemperatureScheduler.entrannas()`` (5.0 x 0.923 per epoch; DST:
   ``--temperature=1 --rate=0.9`` is the paper's ImageNet setting).
   Architecture optimizer: Adam (``--arch_lr``, betas 0.5/0.999, weight decay
   1e-3 in ``SearchModel``), as in the paper.
2. Prints the derived cells (``models.entrannas.genotype``; with ``--dst``
   nodes keep any number of inputs) and the accuracy of the supernet, whose
   Transit cells already run the derived sub-graph.
3. Derives the child (``searchlayers.derive``), checks it against the supernet
   with the choice fixed, retrains a fresh-weight copy, reports its test
   accuracy and cost, and exports it to TFLite (``child.tflite``, with a
   parity check against Keras).
4. The paper's Table 4 trend: one EnTranNAS-DST search per ``--lambdas``
   value (DST setting of the paper: temperature 1.0 x 0.9 per epoch) and the
   number of kept edges per cell type (N/R); a larger lambda raises the
   thresholds ``t_j`` and keeps fewer edges. ``--lambdas=`` skips it.
   Writes a JSON summary to ``--out``.

Example:
    python -m examples.entrannas_search --epochs=10 --out=out/entrannas
    python -m examples.entrannas_search --dst --dst_lambda=0.1 --temperature=1 --rate=0.9
    python -m examples.entrannas_search --epochs=3 --retrain_epochs=2 --lambdas=0,1   # quick
"""

import os
import time

from absl import flags

import numpy as np
import tensorflow as tf

import searchlayers as sl
from searchlayers import callbacks, cost, datasets, progress, schedules
from searchlayers import summary as summary_lib
from searchlayers._keras import keras

from examples import common
from models import entrannas

FLAGS = common.example_flags("out/entrannas_search")  # --out, --seed, --steps_per_epoch
flags.DEFINE_integer("epochs", 10, "Search epochs.", flag_values=FLAGS)
flags.DEFINE_integer("retrain_epochs", 15, "Epochs of the derived child's retraining.",
                     flag_values=FLAGS)
flags.DEFINE_bool("dst", False, "EnTranNAS-DST: learned thresholds, flexible topology.",
                  flag_values=FLAGS)
flags.DEFINE_float("dst_lambda", 0.1, "Threshold regularizer weight (DST).", flag_values=FLAGS)
flags.DEFINE_bool("sharing", True, "Feature sharing.", flag_values=FLAGS)
flags.DEFINE_bool("bottleneck", False, "1x1 bottleneck (ratio 4) around the ops.",
                  flag_values=FLAGS)
flags.DEFINE_enum("engine", "first", list(entrannas.ENGINE), "Which cells are Engine cells.",
                  flag_values=FLAGS)
flags.DEFINE_float("temperature", 5.0, "Initial temperature.", flag_values=FLAGS)
flags.DEFINE_float("rate", 0.923, "Temperature factor per epoch.", flag_values=FLAGS)
common.cell_space_flags(FLAGS, 6e-3, "Architecture Adam learning rate (paper: 6e-4 on "
                        "CIFAR-10 over far more steps than a digits search takes).")
flags.DEFINE_list("lambdas", ["0", "0.2", "1"], "DST lambdas of the edge-count sweep "
                  "(paper Table 4); empty to skip.", flag_values=FLAGS)


DST_TEMPERATURE, DST_RATE = 1.0, 0.9  # the paper's EnTranNAS-DST (ImageNet) schedule


def search(epochs=10, dst=False, dst_lambda=0.1, sharing=True, bottleneck=False, engine="first",
           temperature=5.0, rate=0.923, channels=8, cells=3, steps=3, batch_size=64,
           arch_lr=6e-3, lr=0.05, verbose=2, extra_callbacks=(), steps_per_epoch=None,
           schedule=None):
    """Builds and searches an EnTranNAS supernet on digits; returns ``(supernet, history)``.

    ``extra_callbacks`` run after the temperature schedule; ``steps_per_epoch``
    shortens the epochs. ``schedule="auto"`` / ``"paper"`` replaces ``temperature``,
    ``rate`` and ``arch_lr`` by ``schedules.SearchSchedule("entrannas")`` (or
    ``"entrannas_dst"``): the step-aware architecture learning rate and the
    temperature annealed per step over the run.

    Example:
        >>> supernet, history = search(epochs=2, dst=True)  # doctest: +SKIP
    """
    shape = datasets.info("digits").input_shape
    supernet = entrannas.entrannas_supernet(
        shape, 10, channels=channels, cells=cells, steps=steps, engine=engine, dst=dst,
        dst_lambda=dst_lambda, feature_sharing=sharing, bottleneck=bottleneck,
        temperature=temperature)
    data = datasets.search_pairs("digits", batch_size)
    model = sl.SearchModel(supernet, bilevel=True, arch_optimizer=keras.optimizers.Adam(
        arch_lr, beta_1=0.5, beta_2=0.999))
    per_epoch = steps_per_epoch or int(data.cardinality())
    model.compile(optimizer=common.sgd(lr, epochs * per_epoch), loss=common.LOSS,
                  metrics=["accuracy"])
    if schedule is None:
        schedule = callbacks.TemperatureScheduler.entrannas(start=temperature, rate=rate)
    else:
        schedule = schedules.SearchSchedule("entrannas_dst" if dst else "entrannas", schedule)
    history = model.fit(data.repeat() if steps_per_epoch else data, epochs=epochs,
                        verbose=verbose, steps_per_epoch=steps_per_epoch,
                        callbacks=[schedule, *extra_callbacks])
    return supernet, history.history


def retrain(child, epochs, batch_size=64, lr=0.05):
    """``examples.common.retrain`` with DARTS' recipe (fresh weights, SGD cosine);
    returns ``(model, test_accuracy)``.

    Example:
        >>> model, accuracy = retrain(child, epochs=5)  # doctest: +SKIP
    """
    return common.retrain(child, epochs, batch_size, lr)


def lambda_sweep(lambdas, epochs, seed=0, **options):
    """One DST search per lambda; rows of kept edges per cell type (as the paper
    counts them: kept input edges per node, ``entrannas.edge_counts``), kept
    ``(input, op)`` pairs (``ops``) and thresholds.

    Example:
        >>> rows = lambda_sweep([0.0, 1.0], epochs=2)  # doctest: +SKIP
        >>> sorted(rows[0])  # doctest: +SKIP
        ['derived_params', 'edges', 'lambda', 'ops', 'possible_edges', 'search_accuracy', 'thresholds']
    """
    rows, counter = [], progress.Counter(len(lambdas) or None, "lambda")
    for lam in lambdas:
        counter.begin(f"searching with dst_lambda={lam:g}")
        keras.utils.set_random_seed(seed)
        supernet, history = search(epochs, dst=True, dst_lambda=lam, temperature=DST_TEMPERATURE,
                                   rate=DST_RATE, verbose=0, **options)
        engines = [c for c in entrannas.cells(supernet) if c.role == "engine"]
        rows.append({
            "lambda": lam, "edges": entrannas.edge_counts(supernet),
            "ops": entrannas.op_counts(supernet),
            "possible_edges": sum(j + 2 for j in range(engines[0].steps)),
            "thresholds": {c.arch_key: [round(float(t), 3) for t in c.thresholds()]
                           for c in engines},
            "derived_params": sl.derive(supernet).count_params(),
            "search_accuracy": float(history["accuracy"][-1]),
        })
        r = rows[-1]
        print(f"lambda {lam:<5g} edges N/R {r['edges']['normal']}/{r['edges']['reduce']} "
              f"of {r['possible_edges']}  (ops kept {r['ops']['normal']}/{r['ops']['reduce']})  "
              f"t normal {r['thresholds']['normal']} reduce {r['thresholds']['reduce']}  "
              f"derived params {r['derived_params']}", flush=True)
        counter.end()
    return rows


def main(argv):
    del argv
    start = time.time()
    tf.get_logger().setLevel("ERROR")
    keras.utils.set_random_seed(FLAGS.seed)
    os.makedirs(FLAGS.out, exist_ok=True)
    supernet, history = search(
        FLAGS.epochs, FLAGS.dst, FLAGS.dst_lambda, FLAGS.sharing, FLAGS.bottleneck,
        FLAGS.engine, FLAGS.temperature, FLAGS.rate, FLAGS.channels, FLAGS.cells, FLAGS.steps,
        FLAGS.batch_size, FLAGS.arch_lr, FLAGS.lr, steps_per_epoch=FLAGS.steps_per_epoch)
    search_s = time.time() - start
    supernet.compile(loss=common.LOSS, metrics=["accuracy"])
    test = datasets.load("digits", "test", batch_size=256)
    _, super_acc = supernet.evaluate(test, verbose=0)
    geno = entrannas.genotype(supernet)
    print(f"\nSupernet test accuracy {super_acc:.3f} (Transit cells run the derived cells)")
    for kind, record in geno.items():
        print(f"{kind}: " + " | ".join(
            f"node{j}<-" + ",".join(f"{op}({i})" for i, op in node) for j, node in enumerate(record)))
    arch = sl.choose(supernet)
    child = sl.derive(supernet, architecture=arch)
    x_test, _ = datasets.arrays("digits", "test")
    sl.apply_architecture(supernet, arch)
    gap = float(np.abs(child.predict(x_test, verbose=0)
                       - supernet.predict(x_test, verbose=0)).max())
    sl.apply_architecture(supernet, None)
    print(f"derived vs fixed supernet: max |diff| {gap:.2e}")
    model, accuracy = retrain(child, FLAGS.retrain_epochs, FLAGS.batch_size, FLAGS.lr)
    print(f"Derived child: test accuracy {accuracy:.3f} after {FLAGS.retrain_epochs} epochs")
    profiles = [cost.profile(supernet), cost.profile(model)]
    print("\n" + cost.compare(*profiles, names=["supernet", "derived"]))
    tflite = common.export_tflite(model, FLAGS.out)
    print(f"TFLite {tflite['path']}: max |diff| {tflite['max_abs_diff']:.2e}")
    sweep = []
    if FLAGS.lambdas:
        print(f"\nEnTranNAS-DST kept edges (input edges per node, summed) per cell type "
              "for several lambdas (paper Table 4, 4 nodes = 14 possible edges: "
              "0.05 -> 13/14, 0.1 -> 11/6, 0.2 -> 9/8 normal/reduce):")
        sweep = lambda_sweep(
            [float(v) for v in FLAGS.lambdas], FLAGS.epochs, FLAGS.seed, sharing=FLAGS.sharing,
            bottleneck=FLAGS.bottleneck, engine=FLAGS.engine, channels=FLAGS.channels,
            cells=FLAGS.cells, steps=FLAGS.steps, batch_size=FLAGS.batch_size,
            arch_lr=FLAGS.arch_lr, lr=FLAGS.lr, steps_per_epoch=FLAGS.steps_per_epoch)
    summary = {
        "dst": FLAGS.dst, "dst_lambda": FLAGS.dst_lambda, "sharing": FLAGS.sharing,
        "bottleneck": FLAGS.bottleneck, "engine": FLAGS.engine, "epochs": FLAGS.epochs,
        "config": {"channels": FLAGS.channels, "cells": FLAGS.cells, "steps": FLAGS.steps},
        "search_history": {k: [float(v) for v in vs] for k, vs in history.items()},
        "genotype": geno, "edge_counts": entrannas.edge_counts(supernet),
        "supernet_test_accuracy": float(super_acc), "derived_parity_max_abs_diff": gap,
        "test_accuracy": accuracy, "search_seconds": search_s,
        "cost": {"supernet": profiles[0].to_dict()["total"],
                 "derived": profiles[1].to_dict()["total"]},
        "tflite": tflite, "lambda_sweep": sweep, "seed": FLAGS.seed,
    }
    edges, ops = entrannas.edge_counts(supernet), entrannas.op_counts(supernet)
    summary["op_counts"] = ops
    words = "; ".join(f"{kind}: {edges[kind]} edges, {ops[kind]} ops" for kind in edges)
    common.finish(
        "entrannas-dst" if FLAGS.dst else "entrannas",
        f"EnTranNAS cells on digits ({FLAGS.cells} cells, {FLAGS.steps} nodes, "
        f"{FLAGS.channels} channels, Engine {FLAGS.engine}, {FLAGS.epochs} epochs)",
        FLAGS.out, supernet, model, architecture=f"{words} (edges: kept input edges per "
        "node, as the paper counts; ops: kept (input, op) pairs)",
        accuracy={"test (retrained child)": accuracy, "test (supernet)": float(super_acc)},
        exports=[summary_lib.export_entry(tflite["path"], tflite)], details=summary,
        seconds=time.time() - start)


if __name__ == "__main__":
    common.main(main, FLAGS)
