"""What every method example does after its search: retrain the derived child on
digits, and export it (TFLite or LCE) with a parity check.

One implementation for all examples (DARTS, BNAS, BARS, EnTranNAS, BN-NAS, FiGS),
so a change of the retraining recipe or of the export report happens once.

Example:
    >>> from examples import common
    >>> model, accuracy = common.retrain(child, epochs=5)  # doctest: +SKIP
    >>> common.export_tflite(model, "out/darts")["max_abs_diff"] < 1e-4  # doctest: +SKIP
    True
"""

import os
import sys

from absl import app, flags

from searchlayers import datasets, export, progress
from searchlayers import retrain as retrain_lib

LOSS = retrain_lib.LOSS


def example_flags(out):
    """A new ``FlagValues`` holding the flags every example takes (``--out``,
    ``--seed``, ``--steps_per_epoch``); the example defines its own flags on it
    (``flag_values=FLAGS``). Each example owns its flags, so two examples import
    (and run, ``run_example``) in one process without clashing names.

    Example:
        >>> sorted(example_flags("out/x"))
        ['out', 'seed', 'steps_per_epoch']
    """
    values = flags.FlagValues()
    flags.DEFINE_string("out", out, "Folder of every file the run writes (summary.json, "
                        "PNGs, flatbuffers); the run summary lists them.", flag_values=values)
    flags.DEFINE_integer("seed", 0, "Random seed (weights, data order, sampling).",
                         flag_values=values)
    flags.DEFINE_integer("steps_per_epoch", None, "Steps of each search (or training) epoch "
                         "(default: one pass over the data); small for a quick try. "
                         "Retraining runs whole epochs.",
                         lower_bound=1, flag_values=values)
    return values


def cell_space_flags(values, arch_lr, arch_lr_help):
    """Defines the DARTS-style cell-space flags on ``values`` (``--channels``,
    ``--cells``, ``--steps``, ``--batch_size``, ``--lr``, ``--arch_lr``): the
    DARTS and EnTranNAS examples search the same space shape.

    Example:
        >>> v = example_flags("out/x"); cell_space_flags(v, 3e-3, "Architecture lr.")
        >>> v["cells"].default, v["arch_lr"].default
        (3, 0.003)
    """
    flags.DEFINE_integer("channels", 8, "Channels of the first cells.", flag_values=values)
    flags.DEFINE_integer("cells", 3, "Number of cells (reductions at 1/3 and 2/3).",
                         flag_values=values)
    flags.DEFINE_integer("steps", 3, "Intermediate nodes per cell.", flag_values=values)
    flags.DEFINE_integer("batch_size", 64, "Batch size (each half of a bi-level pair).",
                         flag_values=values)
    flags.DEFINE_float("arch_lr", arch_lr, arch_lr_help, flag_values=values)
    flags.DEFINE_float("lr", 0.05, "Weight SGD learning rate (cosine decay, momentum 0.9).",
                       flag_values=values)


def main(example_main, values):
    """``python -m examples.<name>``: ``absl.app.run(example_main)`` with the
    example's flags ``values`` (``example_flags``) joined to absl's own
    (``--help`` lists them, ``--verbosity`` works as usual).

    Example:
        >>> main(darts_search.main, darts_search.FLAGS)  # doctest: +SKIP
    """
    flags.FLAGS.append_flag_values(values)
    for flag in values._flags().values():  # --help lists the main module's key flags
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)

    def run(argv):
        values.mark_as_parsed()  # parsed through flags.FLAGS (the same Flag objects)
        return example_main(argv)

    app.run(run)


def run_example(module, argv=()):
    """Runs an example in this process: parses ``argv`` (e.g. ``["--epochs=1"]``)
    with the example's own flags (the others back at their defaults) and calls
    its ``main``. For tests and notebooks; ``python -m`` goes through ``main``.
    TensorFlow's logger gets its level back afterwards (the examples quiet it).

    Example:
        >>> from examples import quickstart
        >>> run_example(quickstart, ["--epochs=1", "--out=/tmp/q"])  # doctest: +SKIP
    """
    import tensorflow as tf

    values = module.FLAGS
    values.unparse_flags()
    values([module.__name__, *argv])
    level = tf.get_logger().level
    try:
        return module.main([module.__name__])
    finally:
        tf.get_logger().setLevel(level)


def sgd(lr, steps, alpha=0.01):
    """``searchlayers.retrain.sgd`` (SGD, momentum 0.9, cosine to ``alpha * lr``).

    Example:
        >>> round(float(sgd(0.05, 100).learning_rate), 4)
        0.05
    """
    return retrain_lib.sgd(lr, steps, alpha)


def retrain(child, epochs, batch_size=64, lr=0.05, optimizer="sgd", alpha=0.01, inherit=False,
            unfreeze=False, seed=None, validation=False, verbose=0):
    """``searchlayers.retrain.retrain`` on digits; returns ``(model, test_accuracy)``.

    ``validation`` passes the digits validation split to ``fit``.

    Example:
        >>> model, accuracy = retrain(child, epochs=5)  # doctest: +SKIP
    """
    val = datasets.load("digits", "validation", batch_size=256) if validation else None
    with progress.phase(f"retraining the child ({epochs} epochs)"):
        return retrain_lib.retrain(child, "digits", epochs, batch_size, optimizer, lr, alpha,
                                   inherit, unfreeze, seed, val, verbose)


def export_tflite(model, out, name="child.tflite"):
    """Writes the float TFLite flatbuffer ``out/name``; returns the parity report
    on the digits test split as a dict (with ``path``).

    Example:
        >>> export_tflite(model, "out/darts")["max_abs_diff"] < 1e-4  # doctest: +SKIP
        True
    """
    path = None if out is None else os.path.join(out, name)
    with progress.phase(f"exporting {name}"), export.quiet_converter():
        flatbuffer = export.to_tflite(model, path)
    x_test, _ = datasets.arrays("digits", "test")
    return {"path": path, **vars(export.parity(model, flatbuffer, x_test))}


def export_lce(model, out=None, name="child.lce.tflite"):
    """LCE flatbuffer of a larq model (written to ``out/name`` when ``out``) and
    its float TFLite twin; returns ``(lce_report, parity, lce_bytes, tflite_bytes)``.

    ``lce_report`` says which binary convolutions became ``LceBconv2d``;
    ``parity`` compares the LCE interpreter with Keras on the digits test split.

    Example:
        >>> report, parity, lce, tfl = export_lce(model)  # doctest: +SKIP
        >>> report["all_lowered"], len(lce) < len(tfl)  # doctest: +SKIP
        (True, True)
    """
    with progress.phase(f"exporting {name} (and its float twin)"), export.quiet_converter():
        lce = export.to_lce(model, None if out is None else os.path.join(out, name))
        tflite = export.to_tflite(model)
    x_test, _ = datasets.arrays("digits", "test")
    return export.lce_report(model, lce), export.parity(model, lce, x_test), lce, tflite


def finish(method, searched, out, supernet=None, child=None, architecture=None, accuracy=None,
           exports=(), budget=None, notes=(), details=None, supernet_kind="expected",
           decision=None, seconds=None):
    """The run summary every example ends with (``searchlayers.summary.run_summary``):
    how decided ``supernet``'s search ended, its cost (``supernet_kind``:
    "expected" for a probability-weighted supernet, "exact" for a plain network)
    against ``child``'s exact cost, and every PNG / JSON / CSV under ``out``.
    ``decision`` (a ``summary.decision_of`` dict) replaces ``supernet``'s;
    ``seconds``: the run's wall time. Prints the table, writes
    ``out/summary.json``; returns the dict.

    Example:
        >>> finish("darts", "DARTS cells", "out/darts", supernet, child)  # doctest: +SKIP
    """
    from searchlayers import summary

    costs = {}
    if supernet is not None:
        costs["supernet"] = summary.cost_of(supernet, supernet_kind)
    if child is not None:
        costs["derived"] = summary.cost_of(child, "exact")
    if architecture is None and child is not None:
        architecture = getattr(child, "architecture", None)
    files = summary.written(out) if out else []
    print()
    return summary.run_summary(
        method, searched, out=out,
        decision=decision if decision is not None or supernet is None
        else summary.decision_of(supernet),
        architecture=architecture, cost=costs, accuracy=accuracy, exports=exports,
        files=[f for f in files if not f.endswith("summary.json")], budget=budget,
        notes=notes, details=details, seconds=seconds)
