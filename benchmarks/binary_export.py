"""LCE flatbuffer size vs float TFLite size for derived BARS and BNAS networks.

Searches each space briefly on digits (``examples.bars_search`` /
``examples.bnas_search``), derives the network (BARS: best of K = 8 by
validation loss; BNAS: the Zeroise-gamma rule), and converts it twice: with
``export.to_tflite`` (binary convs stay float ops with float kernels) and with
``export.to_lce`` (binary convs become ``LceBconv2d`` with bit-packed kernels).
Reports both sizes and their ratio, the number of ``LceBconv2d`` ops against
the binary convs of the Keras model (``export.lce_report``), the parity of the
LCE file against Keras on the test split, and ``cost.profile``'s parameter
memory estimate (``4 * float params + binary params / 8`` bytes).

Writes ``benchmarks/results/binary_export.json`` and prints the table.

Example:
    python -m benchmarks.binary_export            # about 2 minutes alone
    python -m benchmarks.binary_export --quick
"""

import time

from absl import app, flags

from benchmarks.common import table, write_json
from examples import bars_search, bnas_search, common
from models import bars, bnas
from searchlayers import cost, datasets
from searchlayers._keras import keras

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Shorter searches.")
flags.DEFINE_integer("seed", 0, "Random seed.")


def derived_bars(epochs, warmup, seed=0):
    """A BARS network derived after a short search (best of 8).

    Example:
        >>> child = derived_bars(1, 0)  # doctest: +SKIP
    """
    keras.utils.set_random_seed(seed)
    model, _ = bars_search.search(epochs, warmup, verbose=0)
    child, _, _ = bars.derive_bars(model, datasets.arrays("digits", "validation"), seed=seed)
    return child


def derived_bnas(epochs, seed=0):
    """A BNAS network derived after a short search (Zeroise gamma = 1).

    Example:
        >>> child = derived_bnas(1)  # doctest: +SKIP
    """
    keras.utils.set_random_seed(seed)
    supernet, _ = bnas_search.search(epochs, verbose=0)
    return bnas.derive_bnas(supernet)


def measure(model):
    """Sizes, LCE lowering and parity of one Keras model.

    Example:
        >>> measure(child)["lce_bconv2d"]  # doctest: +SKIP
        11
    """
    report, parity, lce, tflite = common.export_lce(model)
    total = cost.profile(model).total
    return dict(
        float_tflite_bytes=len(tflite), lce_bytes=len(lce), size_ratio=len(tflite) / len(lce),
        binary_convs=report["num_binary_convs"], lce_bconv2d=report["num_lce_bconv2d"],
        all_lowered=report["all_lowered"],
        not_lowered=[r["layer"] for r in report["binary_convs"] if not r["lowered"]],
        parity_rel_max_diff=parity.rel_max_diff, parity_argmax=parity.argmax_agreement,
        float_params=int(total.float_params), binary_params=int(total.binary_params),
        estimated_param_bytes=float(total.memory_bytes),
        binary_macs=int(total.binary_macs), float_macs=int(total.float_macs),
    )


def run(quick=False, seed=0):
    """Both networks; returns the JSON dict.

    Example:
        >>> run(quick=True)["nets"]["bars"]["all_lowered"]  # doctest: +SKIP
        True
    """
    epochs = dict(bars=(3, 1), bnas=1) if quick else dict(bars=(6, 2), bnas=2)
    nets = {}
    start = time.time()
    nets["bars"] = measure(derived_bars(*epochs["bars"], seed=seed))
    nets["bars"]["seconds"] = time.time() - start
    start = time.time()
    nets["bnas"] = measure(derived_bnas(epochs["bnas"], seed=seed))
    nets["bnas"]["seconds"] = time.time() - start
    return {"nets": nets, "search_epochs": epochs, "quick": quick, "seed": seed,
            "dataset": "digits"}


def main(argv):
    del argv
    start = time.time()
    result = run(FLAGS.quick, FLAGS.seed)
    result["seconds"] = time.time() - start
    result["machine"] = "2 CPU cores shared with other benchmark runs (times are not comparable)"
    path = write_json("binary_export", result)
    rows = [[name, r["float_tflite_bytes"] / 1024, r["lce_bytes"] / 1024, r["size_ratio"],
             f"{r['lce_bconv2d']}/{r['binary_convs']}", r["parity_rel_max_diff"],
             100 * r["parity_argmax"], r["estimated_param_bytes"] / 1024]
            for name, r in result["nets"].items()]
    print(table(rows, ["net", "TFLite KiB", "LCE KiB", "ratio", "LceBconv2d/binary convs",
                       "parity rel", "argmax %", "param KiB (profile)"]))
    print(f"wrote {path} ({result['seconds']:.0f}s)")


if __name__ == "__main__":
    app.run(main)
