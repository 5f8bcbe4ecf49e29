"""Train-step time of a FiGS-masked network against the same network without masks.

Claim checked (issue 14, was 1.10x in issue 4): inserting ``FiGSMask`` layers
after every conv / dense layer (``searchlayers.transforms.insert_masks``) costs
at most 1.05x the step time of the unmasked network. ``insert_masks`` folds each
mask it can into a neighbour's weights (``searchlayers.layers.figs_fold``); the
side ``multiply`` is the same masks with ``fold=False`` (a multiply over the
activation per mask), what the fold saves. Also measured: the full FiGS search
step, masks plus the FiGS eq. 6 expected-cost regularizer in the loss.

Both sides are the same ``models.figs`` network (same weights); a step is one
compiled ``tf.function``: forward in training mode, loss, ``GradientTape``
over every trainable variable (for the masked model the mask logits too), one
SGD update. The machine is shared and its speed drifts within a second, so the
sides run in one process and alternate step by step (rotating order,
``--steps`` steps of each); the reported ratio is the side's median step time
over the plain network's, with the range of that ratio over ``--blocks``
consecutive blocks of the run. (Rounds of 20 steps per side, as before, gave
ratios that moved by 0.1 between runs of the same code.) The load average
before and after is recorded, and the TF ops of each side's traced step (what
a mask adds per step).

Example:
    python -m benchmarks.figs_overhead            # a few minutes on 2 CPU cores
    python -m benchmarks.figs_overhead --quick    # digits-sized inputs only, 100 steps per side
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
import numpy as np  # noqa: E402

import searchlayers as sl  # noqa: E402  (Keras-2 guard before TensorFlow)
import tensorflow as tf  # noqa: E402
from searchlayers.regularizers import figs_expected_cost  # noqa: E402
from searchlayers.transforms import insert_masks  # noqa: E402

from benchmarks.common import (  # noqa: E402
    interleaved, per_round, table, train_step_fn, write_json)
from models.figs import SPACES  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Digits-sized inputs only, 100 steps per side.")
flags.DEFINE_integer("steps", 600, "Timed steps per side, alternating with the other sides.")
flags.DEFINE_integer("blocks", 6, "Consecutive blocks of the run the ratio's range is over.")

keras = sl.keras
TARGET = 1.05
# (space, input shape, batch): digits-sized, and a CIFAR-sized ResNet
CONFIGS = [
    ("resnet", (8, 8, 1), 128),
    ("mobilenet_v2", (8, 8, 1), 128),
    ("resnet", (32, 32, 3), 64),
]


def sides(space, shape):
    """``{name: step}``: the plain network, it with (folded) masks, masks + eq. 6
    loss, and the masks multiplying (``fold=False``); and the masks' fold counts.

    Example:
        >>> sorted(sides("resnet", (8, 8, 1))[0])  # doctest: +SKIP
        ['masked', 'masked+cost', 'multiply', 'plain']
    """
    base = SPACES[space](shape, 10)
    masked = insert_masks(base)
    full = float(figs_expected_cost(masked, "params"))
    masks = sl.layers.figs_masks(masked)
    return {
        "plain": train_step_fn(base),
        "masked": train_step_fn(masked),
        "masked+cost": train_step_fn(
            masked, lambda: figs_expected_cost(masked, "params") / full),
        "multiply": train_step_fn(insert_masks(base, fold=False)),
    }, {"masks": len(masks), "folded": sum(m.folded_into is not None for m in masks)}


def measure(space, shape, batch, steps, blocks):
    """Alternating step times of one configuration; returns its result dict.

    Example:
        >>> measure("resnet", (8, 8, 1), 32, steps=2, blocks=1)["ratio"]  # doctest: +SKIP
    """
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((batch, *shape), dtype=np.float32))
    y = tf.constant(rng.integers(0, 10, batch).astype("int32"))
    steps_by_side, counts = sides(space, shape)
    times = interleaved({name: (lambda step=step: step(x, y).numpy())
                         for name, step in steps_by_side.items()},
                        rounds=steps, steps=1, warmup=5, round_warmup=0)
    times = {name: per_round(times, name) for name in times}
    size = max(1, steps // blocks)
    ratios = {name: [statistics.median(t[i:i + size]) / statistics.median(
        times["plain"][i:i + size]) for i in range(0, size * blocks, size)]
        for name, t in times.items() if name != "plain"}
    ratio = {name: statistics.median(t) / statistics.median(times["plain"])
             for name, t in times.items()}
    ops = {name: len(step.get_concrete_function(x, y).graph.get_operations())
           for name, step in steps_by_side.items()}
    return {
        "space": space, "input": list(shape), "batch": batch, **counts,
        "step_ms": {name: 1e3 * statistics.median(t) for name, t in times.items()},
        "ratio": ratio["masked"], "ratio_with_cost": ratio["masked+cost"],
        "ratio_multiply": ratio["multiply"],
        "ratio_range": [min(ratios["masked"]), max(ratios["masked"])],
        "block_ratios": ratios,
        "graph_ops": ops, "ops_per_mask": (ops["masked"] - ops["plain"]) / counts["masks"],
    }


def main(argv):
    del argv
    start = time.time()
    tf.get_logger().setLevel("ERROR")  # retracing notices of the many small models
    logging.set_verbosity(logging.WARNING)  # the TFLite converter's progress lines
    load = {"before": os.getloadavg()}
    configs = CONFIGS[:2] if FLAGS.quick else CONFIGS
    steps = 100 if FLAGS.quick else FLAGS.steps
    results = [measure(space, shape, batch, steps, FLAGS.blocks)
               for space, shape, batch in configs]
    load["after"] = os.getloadavg()
    rows = [[f"{r['space']} {'x'.join(map(str, r['input']))} b{r['batch']}",
             f"{r['folded']}/{r['masks']}", r["step_ms"]["plain"], r["step_ms"]["masked"],
             r["step_ms"]["masked+cost"], r["step_ms"]["multiply"], r["ratio"],
             "{:.2f}-{:.2f}".format(*r["ratio_range"]), r["ratio_with_cost"],
             r["ratio_multiply"], r["ops_per_mask"]]
            for r in results]
    print(table(rows, ["network", "folded", "plain ms", "masked ms", "+cost ms",
                       "multiply ms", "masked/plain", "(blocks)", "+cost/plain",
                       "multiply/plain", "ops/mask"]))
    worst = max(r["ratio"] for r in results)
    print(f"\nworst masked/plain ratio {worst:.3f} (target <= {TARGET:.2f}: "
          f"{'met' if worst <= TARGET else 'NOT met'})")
    path = write_json("figs_overhead_quick" if FLAGS.quick else "figs_overhead", {
        "config": {"steps": steps, "blocks": FLAGS.blocks, "alternating": True,
                   "quick": FLAGS.quick, "device": "CPU",
                   "threads": os.cpu_count(), "target": TARGET},
        "results": results, "worst_ratio": worst, "target_met": worst <= TARGET,
        "seconds": time.time() - start,
    })
    print(f"load average (1, 5, 15 min) before {load['before']}, after {load['after']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
