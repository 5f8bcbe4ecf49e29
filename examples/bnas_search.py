"""BNAS binary cell search on digits: search, derive (Zeroise gamma), retrain, LCE export.

1. Builds ``models.bnas.bnas_supernet`` (Table 3 binary ops, inter-cell skips,
   ``MixedOp(mode="softmax")``) and searches it bi-level with
   ``searchlayers.SearchModel`` on ``datasets.search_pairs`` and BNAS'
   diversity term ``EntropyRegularizer.bnas(lam, tau)``.
2. Derives one op per edge with the Zeroise transferability rule
   ``p* = max(p_zero / gamma, p_op...)`` (``models.bnas.derive_bnas``).
3. Retrains the child from fresh weights, evaluates its test accuracy.
4. Exports it with ``export.to_lce``, checks with ``export.lce_report`` that
   every binary conv became ``LceBconv2d``, and runs ``export.parity`` with
   LCE's interpreter. Writes ``child.lce.tflite`` and ``summary.json`` to
   ``--out``.

Example:
    python -m examples.bnas_search --epochs=5 --retrain_epochs=10 --out=out/bnas
"""

import os
import time

from absl import flags

import searchlayers as sl
from searchlayers import callbacks, cost, datasets, export
from searchlayers import summary as summary_lib
from searchlayers._keras import keras

from examples import common
from models import bnas, darts

FLAGS = common.example_flags("out/bnas_search")  # --out, --seed, --steps_per_epoch
flags.DEFINE_integer("epochs", 5, "Search epochs.", flag_values=FLAGS)
flags.DEFINE_integer("retrain_epochs", 10, "Epochs of the derived child's retraining.",
                     flag_values=FLAGS)
flags.DEFINE_float("gamma", 1.0, "Zeroise gamma (BNAS eq. 5): how strongly the 'no "
                   "connection' op is discounted when deriving; 1 = plain argmax.",
                   flag_values=FLAGS)
flags.DEFINE_float("lam", 1.0, "Diversity strength lambda (BNAS: 1.0): rewards spread-out "
                   "op distributions early in the search.", flag_values=FLAGS)
flags.DEFINE_float("tau", 7.7, "Diversity annealing tau in epochs (BNAS: 7.7).",
                   flag_values=FLAGS)
flags.DEFINE_integer("channels", 8, "Channels of the first cells (BNAS search: 16).",
                     flag_values=FLAGS)
flags.DEFINE_integer("cells", 3, "Number of cells (BNAS search: 8).", flag_values=FLAGS)
flags.DEFINE_integer("steps", 2, "Intermediate nodes per cell (BNAS: 4).", flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 64, "Batch size (each half of a bi-level pair).",
                     flag_values=FLAGS)
flags.DEFINE_float("arch_lr", 3e-3, "Architecture Adam learning rate.", flag_values=FLAGS)
flags.DEFINE_float("lr", 0.025, "Weight SGD learning rate (cosine decay, BNAS: 0.025).",
                   flag_values=FLAGS)


def build(channels=8, cells=3, steps=2):
    """The BNAS supernet for digits.

    Example:
        >>> build(channels=8, cells=3, steps=2).output_shape
        (None, 10)
    """
    shape = datasets.info("digits").input_shape
    return bnas.bnas_supernet(shape, 10, channels=channels, cells=cells, steps=steps,
                              multiplier=steps)


def search(epochs=5, channels=8, cells=3, steps=2, lam=1.0, tau=7.7, batch_size=64,
           arch_lr=3e-3, lr=0.025, verbose=2, supernet=None, extra_callbacks=(),
           steps_per_epoch=None):
    """Builds and searches a BNAS supernet on digits; returns ``(supernet, history)``.

    ``supernet`` searches a model from ``build`` instead of building one;
    ``extra_callbacks`` join BNAS' diversity term; ``steps_per_epoch`` shortens
    the epochs.

    Example:
        >>> supernet, history = search(epochs=1)  # doctest: +SKIP
    """
    if supernet is None:
        supernet = build(channels, cells, steps)
    data = datasets.search_pairs("digits", batch_size)
    model = sl.SearchModel(supernet, bilevel=True, arch_optimizer=keras.optimizers.Adam(
        arch_lr, beta_1=0.5, beta_2=0.999))
    per_epoch = steps_per_epoch or int(data.cardinality())
    model.compile(optimizer=common.sgd(lr, epochs * per_epoch, alpha=0.04), loss=common.LOSS,
                  metrics=["accuracy"])
    history = model.fit(data.repeat() if steps_per_epoch else data, epochs=epochs,
                        verbose=verbose, steps_per_epoch=steps_per_epoch,
                        callbacks=[callbacks.EntropyRegularizer.bnas(lam, tau),
                                   *extra_callbacks])
    return supernet, history.history


def retrain(child, epochs, batch_size=64, lr=0.025):
    """``examples.common.retrain`` with BNAS' recipe (fresh weights, SGD cosine
    from 0.025); returns ``(model, test_accuracy)``.

    Example:
        >>> model, accuracy = retrain(child, epochs=2)  # doctest: +SKIP
    """
    return common.retrain(child, epochs, batch_size, lr, alpha=0.04)


NEGATIVE_LOSS = ("the search loss can be negative: BNAS' diversity term subtracts "
                 "lam * exp(-epoch / tau) times the mean entropy of the edges' op "
                 "distributions (up to lam * log(ops)) from the cross-entropy, to keep "
                 "exploring early; it fades as the epochs pass")


def run(epochs=5, retrain_epochs=10, out="out/bnas_search", gamma=1.0, lam=1.0, tau=7.7,
        channels=8, cells=3, steps=2, batch_size=64, arch_lr=3e-3, lr=0.025, verbose=2,
        seed=None, steps_per_epoch=None):
    """The whole pipeline; returns the summary dict (also written to ``out``).

    Example:
        >>> run(epochs=1, retrain_epochs=1)["lce"]["all_lowered"]  # doctest: +SKIP
        True
    """
    os.makedirs(out, exist_ok=True)
    start = time.time()
    if seed is not None:
        keras.utils.set_random_seed(seed)
    supernet, history = search(epochs, channels, cells, steps, lam, tau, batch_size, arch_lr,
                               lr, verbose, steps_per_epoch=steps_per_epoch)
    arch = bnas.bnas_architecture(supernet, gamma)
    child = bnas.derive_bnas(supernet, gamma)
    model, accuracy = retrain(child, retrain_epochs, batch_size, lr)
    report, parity, _, _ = common.export_lce(model, out)
    print(export.format_lce_report(report))
    print(parity)
    print(cost.compare(cost.profile(supernet), cost.profile(model),
                       names=["supernet", "child"]))
    summary = dict(
        gamma=gamma, cells=bnas.cell_choices(arch), op_mix=darts.op_mix(arch),
        search_loss=[float(v) for v in history.get("loss", [])],
        test_accuracy=accuracy,
        child_cost=cost.profile(model).to_dict()["total"],
        lce=dict(all_lowered=report["all_lowered"],
                 num_binary_convs=report["num_binary_convs"],
                 num_lce_bconv2d=report["num_lce_bconv2d"]),
        parity=dict(rel_max_diff=parity.rel_max_diff, argmax_agreement=parity.argmax_agreement,
                    size_bytes=parity.size_bytes),
    )
    losses = summary["search_loss"]
    notes = [NEGATIVE_LOSS + (f" (this run: lowest {min(losses):.3f})"
                              if losses and min(losses) < 0 else "")]
    common.finish(
        "bnas", f"BNAS binary cells on digits ({cells} cells, {steps} nodes, {channels} "
        f"channels; softmax bi-level, diversity lam {lam:g} tau {tau:g}, {epochs} epochs; "
        f"Zeroise gamma {gamma:g})", out, supernet, model, architecture=arch,
        accuracy={"test (retrained child)": accuracy},
        exports=[summary_lib.export_entry(os.path.join(out, "child.lce.tflite"), parity)],
        notes=notes, details={**summary, "seed": seed}, seconds=time.time() - start)
    return summary


def main(argv):
    del argv
    run(FLAGS.epochs, FLAGS.retrain_epochs, FLAGS.out, FLAGS.gamma, FLAGS.lam, FLAGS.tau,
        FLAGS.channels, FLAGS.cells, FLAGS.steps, FLAGS.batch_size, FLAGS.arch_lr, FLAGS.lr,
        seed=FLAGS.seed, steps_per_epoch=FLAGS.steps_per_epoch)


if __name__ == "__main__":
    common.main(main, FLAGS)
