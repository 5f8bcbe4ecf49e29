"""BARS binary architecture search on digits: search, derive (best of K = 8),
retrain, LCE export.

1. Builds ``models.bars.bars_supernet`` (stages with a ``GumbelDepthGate`` and
   stage-wise ``WidthGate`` s; densely connected binary cells with one
   preprocess layer and a cell-level shortcut) and searches it bi-level with
   ``searchlayers.SearchModel`` on ``datasets.search_pairs``, with BARS'
   strategy (``models.bars.search_callbacks``): Gumbel temperature annealed
   ``1 -> 0.1``, the entropy schedule (negative, then positive), supernet
   warm-up, and eq. 7 (``(F / budget)^1`` over the budget) on the searched
   edges' equivalent ops (``FLOPs + BiOps / 64``), the budget by default the
   supernet's initial expected cost (a cap). ``ArchitectureLogger``
   draws the distributions per epoch (BARS Fig. 5).
2. Derives by sampling K = 8 architectures and keeping the lowest validation
   loss under the supernet's weights (``models.bars.derive_bars``).
3. Retrains the child briefly (from fresh weights, as BARS trains its
   discovered nets from scratch; ``--inherit`` fine-tunes the derived weights).
4. Exports it with ``export.to_lce``, checks with ``export.lce_report`` that
   every binary conv became ``LceBconv2d``, runs ``export.parity`` with LCE's
   interpreter, and prints the cost profile (float MACs, binary MACs,
   equivalent ops, size). Writes ``child.lce.tflite``, the architecture and
   ``summary.json`` to ``--out``.

Example:
    python -m examples.bars_search --epochs=30 --retrain_epochs=20 --out=out/bars
"""

import os
import time

from absl import flags

import searchlayers as sl
from searchlayers import callbacks, cost, datasets, export
from searchlayers import summary as summary_lib
from searchlayers import regularizers as reg
from searchlayers._keras import keras

from examples import common
from models import bars

FLAGS = common.example_flags("out/bars_search")  # --out, --seed, --steps_per_epoch
flags.DEFINE_integer("epochs", 30, "Search epochs (each: one pass over the search halves).",
                     flag_values=FLAGS)
flags.DEFINE_integer("warmup", 10, "Epochs of supernet warm-up (architecture frozen).",
                     flag_values=FLAGS)
flags.DEFINE_integer("retrain_epochs", 20, "Epochs of the derived child's retraining.",
                     flag_values=FLAGS)
flags.DEFINE_float("budget_ratio", 1.0,
                   "FLOPs budget of eq. 7 as a fraction of the supernet's initial expected "
                   "equivalent ops (0: no FLOPs term). Below 1 the term is the one "
                   "consistent arch gradient of a short search and drives every edge to "
                   "shortcut / none; lower it for long searches.", flag_values=FLAGS)
flags.DEFINE_enum("mode", "gumbel", ["gumbel", "gumbel_hard", "softmax"],
                  "Relaxation of op, depth and width (softmax: the no-Gumbel ablation).",
                  flag_values=FLAGS)
flags.DEFINE_bool("cell_shortcut", True, "Cell-level shortcut (False: the ablation).",
                  flag_values=FLAGS)
flags.DEFINE_integer("channels", 16, "Node channels of the first stage.", flag_values=FLAGS)
flags.DEFINE_integer("stages", 2, "Stages (each but the first starts with a reduction cell).",
                     flag_values=FLAGS)
flags.DEFINE_integer("cells", 2, "Normal cells per stage: the largest searched depth.",
                     flag_values=FLAGS)
flags.DEFINE_integer("steps", 2, "Nodes per cell.", flag_values=FLAGS)
flags.DEFINE_integer("k", 8, "Architectures sampled at derive time (BARS: 8).",
                     flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 64, "Batch size (each half of a bi-level pair).",
                     flag_values=FLAGS)
flags.DEFINE_float("lr", 3e-3, "Weight learning rate (Adam).", flag_values=FLAGS)
flags.DEFINE_float("arch_lr", 3e-3, "Architecture Adam learning rate (BARS: 3e-4).",
                   flag_values=FLAGS)
flags.DEFINE_bool("inherit", False, "Fine-tune the derived weights instead of retraining.",
                  flag_values=FLAGS)


def search(epochs=30, warmup=10, budget_ratio=1.0, mode="gumbel", cell_shortcut=True,
           channels=16, stages=2, cells=2, steps=2, batch_size=64, lr=3e-3, arch_lr=3e-3,
           log_dir=None, verbose=2, extra_callbacks=(), steps_per_epoch=None):
    """Builds and searches a BARS supernet on digits; returns ``(search_model, history)``.

    ``steps_per_epoch`` shortens the epochs.

    Example:
        >>> search_model, history = search(epochs=1, warmup=0)  # doctest: +SKIP
    """
    shape = datasets.info("digits").input_shape
    supernet = bars.bars_supernet(shape, 10, channels=channels, stages=stages, cells=cells,
                                  steps=steps, mode=mode, cell_shortcut=cell_shortcut)
    model = sl.SearchModel(supernet, bilevel=True, arch_optimizer=keras.optimizers.Adam(
        arch_lr, beta_1=0.5, beta_2=0.999))
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=common.LOSS, metrics=["accuracy"])
    budget = None
    if budget_ratio > 0:
        initial = float(reg.expected_cost(supernet, "equivalent_ops", search_only=True))
        budget = budget_ratio * initial
    found = bars.search_callbacks(epochs, warmup=warmup, budget=budget, mode=mode)
    if log_dir is not None:
        found.append(callbacks.ArchitectureLogger(log_dir, tensorboard=False))
    found.extend(extra_callbacks)
    data = datasets.search_pairs("digits", batch_size)
    history = model.fit(data.repeat() if steps_per_epoch else data, epochs=epochs,
                        verbose=verbose, steps_per_epoch=steps_per_epoch, callbacks=found)
    return model, {**history.history, "budget": budget}


def retrain(child, epochs, batch_size=64, lr=3e-3, inherit=False):
    """``examples.common.retrain`` with Adam (fresh weights unless ``inherit``);
    returns ``(model, test_accuracy)``.

    Example:
        >>> model, accuracy = retrain(child, epochs=2)  # doctest: +SKIP
    """
    return common.retrain(child, epochs, batch_size, lr, optimizer="adam", inherit=inherit)


def run(epochs=30, warmup=10, retrain_epochs=20, out="out/bars_search", budget_ratio=1.0,
        mode="gumbel", cell_shortcut=True, channels=16, stages=2, cells=2, steps=2, k=8,
        batch_size=64, lr=3e-3, arch_lr=3e-3, inherit=False, seed=0, verbose=2,
        steps_per_epoch=None):
    """The whole pipeline; returns the summary dict (also written to ``out``).

    Example:
        >>> run(epochs=1, warmup=0, retrain_epochs=1)["lce"]["all_lowered"]  # doctest: +SKIP
        True
    """
    os.makedirs(out, exist_ok=True)
    keras.utils.set_random_seed(seed)
    start = time.time()
    model, history = search(epochs, warmup, budget_ratio, mode, cell_shortcut, channels, stages,
                            cells, steps, batch_size, lr, arch_lr, os.path.join(out, "arch"),
                            verbose, steps_per_epoch=steps_per_epoch)
    searched = time.time() - start
    supernet = model.model
    expected = float(reg.expected_cost(supernet, "equivalent_ops", search_only=True))
    child, best, scored = bars.derive_bars(model, datasets.arrays("digits", "validation"), k=k,
                                           seed=seed)
    best.save(os.path.join(out, "architecture.json"))
    trained, accuracy = retrain(child, retrain_epochs, batch_size, lr, inherit)
    report, parity, lce, tflite = common.export_lce(trained, out)
    profile = cost.profile(trained)
    print(f"searched in {searched:.0f}s; layout {bars.layout(best)}; ops {bars.op_mix(best)}")
    print("val loss of the K samples:", [round(loss, 3) for loss, _ in scored])
    print(export.format_lce_report(report))
    print(parity)
    print(f"LCE flatbuffer {len(lce) / 1024:.1f} KiB vs float TFLite {len(tflite) / 1024:.1f} KiB")
    print(cost.compare(profile, names=["child"]))
    summary = dict(
        config=dict(mode=mode, cell_shortcut=cell_shortcut, channels=channels, stages=stages,
                    cells=cells, steps=steps, epochs=epochs, warmup=warmup, k=k),
        budget=history["budget"], expected_equivalent_ops=expected,
        search_loss=[float(v) for v in history.get("loss", [])],
        layout={str(s): v for s, v in bars.layout(best).items()}, op_mix=bars.op_mix(best),
        shortcut_probability=bars.shortcut_probability(model),
        scored=[dict(val_loss=loss, sample=a.meta["sample"]) for loss, a in scored],
        test_accuracy=accuracy,
        child_cost=profile.to_dict()["total"],
        lce=dict(all_lowered=report["all_lowered"], num_binary_convs=report["num_binary_convs"],
                 num_lce_bconv2d=report["num_lce_bconv2d"], bytes=len(lce)),
        float_tflite_bytes=len(tflite),
        parity=dict(rel_max_diff=parity.rel_max_diff, argmax_agreement=parity.argmax_agreement),
        seed=seed,
    )
    lce_path = os.path.join(out, "child.lce.tflite")
    common.finish(
        "bars", f"BARS binary cells on digits ({stages} stages x {cells} cells, {steps} nodes, "
        f"{channels} channels; {mode}, cell shortcut {cell_shortcut}, {epochs} epochs after "
        f"{warmup} warm-up)", out, supernet, trained,
        architecture=f"layout {bars.layout(best)}; ops {bars.op_mix(best)}",
        accuracy={"test (retrained child)": accuracy},
        exports=[summary_lib.export_entry(lce_path, parity)],
        notes=[f"BARS cost term: budget {history['budget']:,.0f} equivalent ops of the search "
               f"layers; expected at the end {expected:,.0f} (expected, search layers only)"]
        if history.get("budget") else [], details=summary, supernet_kind="expected",
        seconds=time.time() - start)
    return summary


def main(argv):
    del argv
    run(FLAGS.epochs, FLAGS.warmup, FLAGS.retrain_epochs, FLAGS.out, FLAGS.budget_ratio,
        FLAGS.mode, FLAGS.cell_shortcut, FLAGS.channels, FLAGS.stages, FLAGS.cells, FLAGS.steps,
        FLAGS.k, FLAGS.batch_size, FLAGS.lr, FLAGS.arch_lr, FLAGS.inherit, FLAGS.seed,
        steps_per_epoch=FLAGS.steps_per_epoch)


if __name__ == "__main__":
    common.main(main, FLAGS)
