"""EnTranNAS Table 3 on CPU: search-step time and peak memory per component.

Rows (accumulated top to bottom, as in the paper's Table 3):

1. ``DARTS``: every cell an Engine cell (``engine="all"``), per-edge weights;
2. ``+Engine&Transit-cell``: first normal / reduction cells Engine, others Transit;
3. ``+feature sharing``: one weight set and feature per (input state, op);
4. ``+bottleneck``: 1x1 conv channel reduction by 4 around the ops.

One process builds the four supernets (``models.entrannas``, the paper's 7 ops, 8
cells, 4 nodes per cell by default) and one compiled joint search step for
each (forward, gradients of weights and architecture, SGD update), traces and
warms them up, then measures them interleaved: every round runs one step of
each row in turn, so machine load hits all rows alike. Step time is the
median over rounds. Memory is TensorFlow's own allocator peak during a step
minus its usage just before (activations, gradients, temporaries of one step;
weights and optimizer slots are resident and excluded), the median over
rounds. ``tf.config.experimental.get_memory_info`` needs the BFC allocator on
CPU, so this module sets ``TF_CPU_ALLOCATOR_USE_BFC=true`` before TensorFlow
loads (run it as ``python -m``; memory is reported as n/a otherwise). Ratios
are to the DARTS row; ``batch x`` is the largest power-of-two batch multiple
that fits the DARTS row's step memory (the paper's "Batchsize" column).

Why our figures differ from the paper's (9.0 -> 1.5 GB, 6x; 0.73 -> 0.06
GPU-day, ~12x) is explained in the printed notes and the JSON ``notes``.

Example:
    python -m benchmarks.entrannas_table3            # a few minutes on 2 CPU cores
    python -m benchmarks.entrannas_table3 --quick    # ~1-2 minutes
"""

import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")  # allocator statistics on CPU

from absl import app, flags  # noqa: E402

import numpy as np  # noqa: E402

import searchlayers as sl  # noqa: E402  (Keras-2 guard before TensorFlow)
import tensorflow as tf  # noqa: E402
from benchmarks.common import table, write_json  # noqa: E402
from models.entrannas import entrannas_supernet  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    """The flags (defined when run, so the module imports as a library)."""
    flags.DEFINE_bool("quick", False, "Small preset (fewer cells, smaller images, 3 rounds).")
    flags.DEFINE_integer("batch", None, "Batch size (preset: 32; quick 16).")
    flags.DEFINE_integer("image", None, "Image side (preset: 16; quick 8).")
    flags.DEFINE_integer("channels", None, "Channels of the first cells (preset: 8).")
    flags.DEFINE_integer("cells", None, "Cells (preset: 8, the paper's; quick 5).")
    flags.DEFINE_integer("nodes", None, "Intermediate nodes per cell (preset: 4; quick 2).")
    flags.DEFINE_integer("rounds", None, "Timed rounds, one step per row each (preset: 5).")
    flags.DEFINE_integer("warmup", 1, "Untimed steps per row after tracing.")


ROWS = (
    ("DARTS", dict(engine="all", feature_sharing=False, bottleneck=False)),
    ("+Engine&Transit-cell", dict(engine="first", feature_sharing=False, bottleneck=False)),
    ("+feature sharing", dict(engine="first", feature_sharing=True, bottleneck=False)),
    ("+bottleneck", dict(engine="first", feature_sharing=True, bottleneck=True)),
)
FULL = dict(batch=32, image=16, channels=8, cells=8, nodes=4, rounds=5)
QUICK = dict(batch=16, image=8, channels=8, cells=5, nodes=2, rounds=3)
PAPER = {"memory_GB": [9.0, 4.5, 2.6, 1.5], "batch_x": [1, 2, 4, 8],
         "cost_gpu_day": [0.73, 0.22, 0.09, 0.06]}
NOTES = [
    "Paper 'Cost' is GPU-days at the largest batch that fits a GTX 1080 Ti (x1, x2, x4, "
    "x8): most of its ~12x comes from the memory savings buying larger batches that use "
    "the GPU better (fewer, fuller steps). We time a fixed batch on CPU, where step time "
    "is close to the work done, so our time ratio is the computation saved per step; at "
    "a fixed batch the paper's own saving is its memory ratio (~6x), not 12x.",
    "Paper 'Memory' is the whole GPU footprint (CUDA context, weights, the caching "
    "allocator's blocks) at batch 64; ours is TensorFlow's allocator peak of one step's "
    "transients (activations, gradients, temporaries), without resident weights.",
    "Two of the cells stay Engine cells and run every op, so rows 2-4 keep their full "
    "cost; the Transit saving grows with the share of Transit cells (6 of 8 here, as "
    "in the paper; fewer with --quick).",
    "On CPU with small tensors fixed per-op costs (tf.cond / switch_case dispatch, "
    "kernel launches) weigh more than on a GPU at CIFAR size; the bottleneck adds two "
    "1x1 conv + BN per node and runs the ops at C/4 channels (2 with --channels 8), "
    "so it saves memory but little or no time here. The network is also scaled down "
    "(image, channels, batch) to run in minutes on 2 CPU cores.",
]


def settings():
    """The preset (``--quick`` or full) with explicitly given flags on top.

    Example:
        >>> sorted(settings())  # doctest: +SKIP
        ['batch', 'cells', 'channels', 'image', 'nodes', 'rounds']
    """
    config = dict(QUICK if FLAGS.quick else FULL)
    config.update({k: FLAGS[k].value for k in config if FLAGS[k].value is not None})
    return config


def _memory():
    """TensorFlow's CPU allocator statistics, or None without the BFC allocator."""
    try:
        return tf.config.experimental.get_memory_info("CPU:0")
    except (ValueError, RuntimeError):
        return None


def build_step(options, batch, image, channels, cells, nodes):
    """One row's supernet and compiled joint search step ``step(x, y) -> loss``.

    Example:
        >>> model, step = build_step(ROWS[1][1], 8, 8, 4, 3, 2)  # doctest: +SKIP
    """
    keras = sl.keras
    model = entrannas_supernet((image, image, 3), 10, channels=channels, cells=cells,
                               steps=nodes, **options)
    variables = model.trainable_variables  # weights and architecture together
    opt = keras.optimizers.SGD(0.01)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True)) + tf.add_n(model.losses or [0.0])
        grads = tape.gradient(loss, variables)
        opt.apply_gradients((g, v) for g, v in zip(grads, variables) if g is not None)
        return loss

    return model, step


def _timed(step, x, y):
    """One step: (seconds, transient allocator peak in bytes or None)."""
    before = _memory()
    if before is not None:
        tf.config.experimental.reset_memory_stats("CPU:0")
        before = _memory()["current"]
    start = time.perf_counter()
    step(x, y).numpy()
    seconds = time.perf_counter() - start
    peak = None if before is None else _memory()["peak"] - before
    return seconds, peak


def run(batch, image, channels, cells, nodes, rounds, warmup=1):
    """Builds, traces and warms up every row, then times them interleaved.

    Example:
        >>> run(8, 8, 4, 3, 2, rounds=1)["rows"][0]["row"]  # doctest: +SKIP
        'DARTS'
    """
    start = time.time()
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(batch, image, image, 3)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, batch).astype("int32"))
    rows, steps = [], []
    for name, options in ROWS:
        sl.keras.utils.set_random_seed(0)
        model, step = build_step(options, batch, image, channels, cells, nodes)
        t0 = time.perf_counter()
        step.get_concrete_function(x, y)  # trace only
        rows.append({"row": name, "options": options, "params": int(model.count_params()),
                     "trace_s": time.perf_counter() - t0, "times": [], "peaks": []})
        steps.append(step)
    # Warm up only once every function exists: a step's first run after the
    # function library grew re-optimizes its graph (tens of seconds here).
    for row, step in zip(rows, steps):
        t0 = time.perf_counter()
        for _ in range(warmup):
            step(x, y).numpy()
        row["warmup_s"] = time.perf_counter() - t0
    for _ in range(rounds):  # interleaved: one step of each row per round
        for row, step in zip(rows, steps):
            seconds, peak = _timed(step, x, y)
            row["times"].append(seconds)
            row["peaks"].append(peak)
    for row in rows:
        row["step_s"] = float(np.median(row["times"]))
        peaks = [p for p in row["peaks"] if p is not None]
        row["memory_mb"] = float(np.median(peaks)) / 2**20 if peaks else None
    base = rows[0]
    for row in rows:
        row["time_ratio"] = row["step_s"] / base["step_s"]
        row["memory_ratio"] = (row["memory_mb"] / base["memory_mb"]
                               if row["memory_mb"] and base["memory_mb"] else None)
        row["batch_x"] = (2 ** int(math.floor(math.log2(1 / row["memory_ratio"]) + 1e-9))
                          if row["memory_ratio"] else None)
    return {
        "config": dict(batch=batch, image=image, channels=channels, cells=cells, nodes=nodes,
                       rounds=rounds, warmup=warmup, device="CPU", interleaved=True,
                       memory="TF BFC CPU allocator: peak during one step - usage before it"),
        "rows": rows, "paper_table3": PAPER, "notes": NOTES, "seconds": time.time() - start,
    }


def _num(value, fmt):
    return "n/a" if value is None else format(value, fmt)


def report(result):
    """The printed table.

    Example:
        >>> print(report({"rows": []}))
        row  step ms  time x  memory MB  memory x  batch x  paper memory x  paper cost x  params
        ---  -------  ------  ---------  --------  -------  --------------  ------------  ------
    """
    paper_mem = [m / PAPER["memory_GB"][0] for m in PAPER["memory_GB"]]
    paper_cost = [c / PAPER["cost_gpu_day"][0] for c in PAPER["cost_gpu_day"]]
    rows = [[r["row"], r["step_s"] * 1000, r["time_ratio"], _num(r["memory_mb"], ".1f"),
             _num(r["memory_ratio"], ".2f"), _num(r["batch_x"], "d"),
             paper_mem[i], paper_cost[i], r["params"]]
            for i, r in enumerate(result["rows"])]
    headers = ["row", "step ms", "time x", "memory MB", "memory x", "batch x",
               "paper memory x", "paper cost x", "params"]
    return table(rows, headers)


def main(argv):
    del argv
    result = run(**settings(), warmup=FLAGS.warmup)
    result["config"]["quick"] = FLAGS.quick
    print(report(result))
    print("\nWhy the ratios differ from the paper's:")
    for note in NOTES:
        print(f"- {note}")
    print(f"\nwrote {write_json('entrannas_table3', result)} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    define_flags()
    app.run(main)
