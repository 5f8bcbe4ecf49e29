"""DARTS / SNAS / GDAS cell search on digits: search, derive, retrain, export.

1. Builds ``models.darts.darts_supernet`` in the method's mode (DARTS:
   ``softmax``, SNAS: ``gumbel``, GDAS: ``gumbel_hard``) and searches it with
   ``searchlayers.SearchModel`` (bi-level on ``datasets.search_pairs`` for
   DARTS and GDAS, joint on the training split for SNAS; ``--training``
   overrides). SNAS and GDAS anneal the temperature with
   ``TemperatureScheduler``; ``--entropy`` adds the BARS entropy schedule
   (``EntropyRegularizer.bars``: negative, exploring, to positive, committing).
2. Derives the child with ``searchlayers.derive`` (argmax per edge, ``none``
   edges dropped; ``--rule=top2`` uses DARTS' two-inputs-per-node rule).
3. Retrains the child from fresh weights (``keras.models.clone_model``),
   evaluates its test accuracy, exports it to TFLite and checks parity.
4. Prints the cost of the supernet against the child and the op mix per cell
   type, and writes a JSON summary to ``--out``.

Example:
    python -m examples.darts_search --method=darts --epochs=10 --out=out/darts
"""

import os
import time

from absl import flags

import tensorflow as tf

import searchlayers as sl
from searchlayers import callbacks, cost, datasets
from searchlayers import summary as summary_lib
from searchlayers._keras import keras

from examples import common
from models import darts

FLAGS = common.example_flags("out/darts_search")  # --out, --seed, --steps_per_epoch
flags.DEFINE_enum("method", "darts", ["darts", "snas", "gdas"], "Search method.",
                  flag_values=FLAGS)
flags.DEFINE_integer("epochs", 10, "Search epochs.", flag_values=FLAGS)
flags.DEFINE_integer("retrain_epochs", 15, "Epochs of the derived child's retraining.",
                     flag_values=FLAGS)
flags.DEFINE_bool("entropy", False, "Add the BARS entropy schedule (negative to positive).",
                  flag_values=FLAGS)
flags.DEFINE_enum("training", "auto", ["auto", "bilevel", "joint"],
                  "auto: bi-level for darts / gdas, joint for snas.", flag_values=FLAGS)
flags.DEFINE_enum("rule", "argmax", ["argmax", "top2"], "Derivation rule.", flag_values=FLAGS)
common.cell_space_flags(FLAGS, 3e-3, "Architecture Adam learning rate (DARTS: 3e-4 over "
                        "~100x more steps than a digits search takes).")


MODES = {"darts": "softmax", "snas": "gumbel", "gdas": "gumbel_hard"}
BILEVEL = {"darts": True, "snas": False, "gdas": True}


def search_callbacks(method, epochs, entropy, temperature=None):
    """Temperature schedule of the method (or ``temperature``, a
    ``TemperatureScheduler`` replacing it), plus the BARS entropy schedule if asked.

    Example:
        >>> [type(c).__name__ for c in search_callbacks("gdas", 10, entropy=True)]
        ['TemperatureScheduler', 'EntropyRegularizer']
    """
    result = []
    if temperature is not None:
        result.append(temperature)
    elif method == "snas":  # SNAS: starts at 1.0, annealed, never below 0.03
        result.append(callbacks.TemperatureScheduler("exponential", start=1.0, rate=0.9,
                                                     floor=0.03))
    elif method == "gdas":  # GDAS: linear 10 -> 0.1
        result.append(callbacks.TemperatureScheduler.gdas(epochs))
    if entropy:
        result.append(callbacks.EntropyRegularizer.bars(epochs))
    return result


def build(method="darts", mode=None, channels=8, cells=3, steps=3):
    """The DARTS supernet of ``method`` for digits (``mode`` overrides its ``MixedOp`` mode).

    Example:
        >>> build("gdas", channels=4, cells=3, steps=2).output_shape
        (None, 10)
    """
    shape = datasets.info("digits").input_shape
    return darts.darts_supernet(
        shape, 10, channels=channels, cells=cells, steps=steps, multiplier=steps,
        mode=mode or MODES[method], temperature=10.0 if method == "gdas" else 1.0)


def search(method="darts", epochs=10, entropy=False, bilevel=None, mode=None, channels=8,
           cells=3, steps=3, batch_size=64, arch_lr=3e-3, lr=0.05, verbose=2, supernet=None,
           extra_callbacks=(), temperature=None, steps_per_epoch=None):
    """Builds and searches a DARTS supernet on digits; returns ``(supernet, history)``.

    ``mode`` overrides the method's ``MixedOp`` mode, ``bilevel`` its training,
    ``temperature`` (a ``TemperatureScheduler``) its temperature schedule.
    ``supernet`` searches a model from ``build`` instead of building one;
    ``extra_callbacks`` join the method's (e.g. a ``FLOPsRegularizer``);
    ``steps_per_epoch`` shortens the epochs.

    Example:
        >>> supernet, history = search("darts", epochs=2)  # doctest: +SKIP
        >>> darts.op_mix(sl.choose(supernet))  # doctest: +SKIP
    """
    if supernet is None:
        supernet = build(method, mode, channels, cells, steps)
    bilevel = BILEVEL[method] if bilevel is None else bilevel
    if bilevel:
        data = datasets.search_pairs("digits", batch_size)
    else:
        data = datasets.load("digits", "train", batch_size=batch_size, drop_remainder=True)
    model = sl.SearchModel(supernet, bilevel=bilevel, arch_optimizer=keras.optimizers.Adam(
        arch_lr, beta_1=0.5, beta_2=0.999))
    per_epoch = steps_per_epoch or int(data.cardinality())
    model.compile(optimizer=common.sgd(lr, epochs * per_epoch), loss=common.LOSS,
                  metrics=["accuracy"])
    history = model.fit(
        data.repeat() if steps_per_epoch else data, epochs=epochs, verbose=verbose,
        steps_per_epoch=steps_per_epoch,
        callbacks=search_callbacks(method, epochs, entropy, temperature) + list(extra_callbacks))
    return supernet, history.history


def derive_child(supernet, rule="argmax"):
    """The derived child model (``searchlayers.derive``) under ``rule``.

    Example:
        >>> child = derive_child(supernet, "top2")  # doctest: +SKIP
    """
    arch = darts.top2_architecture(supernet) if rule == "top2" else sl.choose(supernet)
    return sl.derive(supernet, architecture=arch)


def retrain(child, epochs, batch_size=64, lr=0.05):
    """``examples.common.retrain`` with DARTS' recipe (fresh weights, SGD cosine,
    validation each epoch); returns ``(model, test_accuracy)``.

    Example:
        >>> model, accuracy = retrain(child, epochs=5)  # doctest: +SKIP
    """
    return common.retrain(child, epochs, batch_size, lr, validation=True)


def print_op_mix(mix):
    """Prints the op counts per cell type (one line per type).

    Example:
        >>> print_op_mix({"normal": {"skip_connect": 2}, "reduce": {}})
        normal: skip_connect x2
        reduce: -
    """
    for kind, counts in mix.items():
        text = ", ".join(f"{op} x{n}" for op, n in counts.items()) or "-"
        print(f"{kind}: {text}")


def main(argv):
    del argv
    start = time.time()
    tf.get_logger().setLevel("ERROR")
    keras.utils.set_random_seed(FLAGS.seed)
    os.makedirs(FLAGS.out, exist_ok=True)
    bilevel = None if FLAGS.training == "auto" else FLAGS.training == "bilevel"
    supernet, history = search(
        FLAGS.method, FLAGS.epochs, FLAGS.entropy, bilevel, channels=FLAGS.channels,
        cells=FLAGS.cells, steps=FLAGS.steps, batch_size=FLAGS.batch_size,
        arch_lr=FLAGS.arch_lr, lr=FLAGS.lr, steps_per_epoch=FLAGS.steps_per_epoch)
    search_s = time.time() - start
    child = derive_child(supernet, FLAGS.rule)
    model, accuracy = retrain(child, FLAGS.retrain_epochs, FLAGS.batch_size, FLAGS.lr)
    print(f"\nDerived child: test accuracy {accuracy:.3f} after {FLAGS.retrain_epochs} epochs")
    exported = common.export_tflite(model, FLAGS.out)
    print(f"\nTFLite {exported['path']}: max |diff| {exported['max_abs_diff']:.2e}")
    profiles = [cost.profile(supernet), cost.profile(model)]
    print("\n" + cost.compare(*profiles, names=["supernet", "derived"]))
    mix = darts.op_mix(child.architecture)
    print("\nOp mix per cell type (each shared edge once):")
    print_op_mix(mix)
    summary = {
        "method": FLAGS.method, "mode": MODES[FLAGS.method], "entropy": FLAGS.entropy,
        "bilevel": BILEVEL[FLAGS.method] if bilevel is None else bilevel,
        "rule": FLAGS.rule, "epochs": FLAGS.epochs, "retrain_epochs": FLAGS.retrain_epochs,
        "config": {"channels": FLAGS.channels, "cells": FLAGS.cells, "steps": FLAGS.steps},
        "search_history": {k: [float(v) for v in vs] for k, vs in history.items()},
        "genotype": darts.genotype(supernet), "op_mix": mix,
        "architecture": child.architecture.names, "test_accuracy": accuracy,
        "cost": {"supernet": profiles[0].to_dict()["total"],
                 "derived": profiles[1].to_dict()["total"]},
        "tflite": exported, "search_seconds": search_s, "seed": FLAGS.seed,
    }
    common.finish(
        FLAGS.method, f"DARTS cell space on digits ({FLAGS.cells} cells, {FLAGS.steps} nodes, "
        f"{FLAGS.channels} channels; MixedOp mode {MODES[FLAGS.method]}, "
        f"{'bi-level' if summary['bilevel'] else 'joint'}, {FLAGS.epochs} epochs)",
        FLAGS.out, supernet, model, architecture=child.architecture,
        accuracy={"test (retrained child)": accuracy},
        exports=[summary_lib.export_entry(exported["path"], exported)], details=summary,
        seconds=time.time() - start)


if __name__ == "__main__":
    common.main(main, FLAGS)
