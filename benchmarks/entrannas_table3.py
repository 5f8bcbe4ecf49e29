"""EnTranNAS Table 3 on CPU: search-step time and peak memory per component.

Rows (accumulated top to bottom, as in the paper's Table 3):

1. ``DARTS``: every cell an Engine cell (``engine="all"``), per-edge weights;
2. ``+Engine&Transit-cell``: first normal / reduction cells Engine, others Transit;
3. ``+feature sharing``: one weight set and feature per (input state, op);
4. ``+bottleneck``: 1x1 conv channel reduction by 4 around the ops.

Each row runs in a fresh Python process: it builds ``models.entrannas``'s
supernet (DARTS ops, 8 cells, 4 steps by default), traces one compiled joint
search step (forward, gradients of weights and architecture, SGD update),
runs warm-up steps, then timed steps. Step time is the median of the timed
steps. Memory is TensorFlow's own allocator peak during the timed steps minus
its usage before them (activations, gradients, temporaries of one step):
``tf.config.experimental.get_memory_info`` does not work with the default CPU
allocator, so every row runs with ``TF_CPU_ALLOCATOR_USE_BFC=true`` (the BFC
allocator, which keeps these statistics; set before TensorFlow loads). The
process RSS growth (psutil, ``ru_maxrss``) is recorded too, but it also holds
graph optimization and allocator caching. Ratios are to the DARTS row.

Example:
    python -m benchmarks.entrannas_table3                 # a few minutes on 2 CPU cores
    python -m benchmarks.entrannas_table3 --image 16 --batch 32 --steps 5   # quicker
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")  # allocator statistics on CPU

from benchmarks.common import table, write_json  # noqa: E402

ROWS = (
    ("DARTS", dict(engine="all", feature_sharing=False, bottleneck=False)),
    ("+Engine&Transit-cell", dict(engine="first", feature_sharing=False, bottleneck=False)),
    ("+feature sharing", dict(engine="first", feature_sharing=True, bottleneck=False)),
    ("+bottleneck", dict(engine="first", feature_sharing=True, bottleneck=True)),
)


def measure(row, batch, image, channels, cells, steps, timed, warmup):
    """Builds row ``row``'s supernet and measures it (in this process)."""
    import numpy as np
    import psutil

    import searchlayers as sl
    import tensorflow as tf
    from models.entrannas import entrannas_supernet

    keras = sl.keras
    name, options = ROWS[row]
    model = entrannas_supernet((image, image, 3), 10, channels=channels, cells=cells,
                               steps=steps, **options)
    variables = model.trainable_variables
    opt = keras.optimizers.SGD(0.01)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True)) + tf.add_n(model.losses or [0.0])
        grads = tape.gradient(loss, variables)
        opt.apply_gradients((g, v) for g, v in zip(grads, variables) if g is not None)
        return loss

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(batch, image, image, 3)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, batch).astype("int32"))
    start = time.perf_counter()
    step.get_concrete_function(x, y)  # trace only
    trace_s = time.perf_counter() - start
    rss0 = psutil.Process().memory_info().rss
    for _ in range(warmup):
        step(x, y).numpy()
    tf.config.experimental.reset_memory_stats("CPU:0")
    before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    times = []
    for _ in range(timed):
        start = time.perf_counter()
        step(x, y).numpy()
        times.append(time.perf_counter() - start)
    tf_peak = tf.config.experimental.get_memory_info("CPU:0")["peak"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {
        "row": name, "options": options, "step_s": float(np.median(times)),
        "memory_mb": (tf_peak - before) / 2**20,
        "rss_growth_mb": max(peak - rss0, 0) / 2**20, "trace_s": trace_s,
        "params": int(model.count_params()),
    }


def run(batch=64, image=32, channels=16, cells=8, steps=4, timed=10, warmup=2):
    """All rows, each in its own process; returns the result dict."""
    start = time.time()
    rows = []
    for row in range(len(ROWS)):
        cmd = [sys.executable, "-m", "benchmarks.entrannas_table3", "--child", str(row),
               "--batch", str(batch), "--image", str(image), "--channels", str(channels),
               "--cells", str(cells), "--nodes", str(steps), "--steps", str(timed),
               "--warmup", str(warmup)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    base = rows[0]
    for r in rows:
        r["time_ratio"] = r["step_s"] / base["step_s"]
        r["memory_ratio"] = r["memory_mb"] / base["memory_mb"] if base["memory_mb"] else None
    return {
        "config": dict(batch=batch, image=image, channels=channels, cells=cells, steps=steps,
                       timed_steps=timed, warmup=warmup, device="CPU",
                       memory="TF BFC CPU allocator: peak during timed steps - usage before; "
                              "fresh process per row"),
        "rows": rows, "seconds": time.time() - start,
        "paper_table3": {"memory_GB": [9.0, 4.5, 2.6, 1.5], "cost_gpu_day": [0.73, 0.22, 0.09, 0.06]},
    }


def report(result):
    """The printed table.

    Example:
        >>> print(report(run(image=8, batch=8, cells=3, steps=2, timed=2)))  # doctest: +SKIP
    """
    rows = [[r["row"], r["step_s"] * 1000, r["time_ratio"], r["memory_mb"],
             r["memory_ratio"] if r["memory_ratio"] is not None else "n/a",
             r["rss_growth_mb"], r["params"]]
            for r in result["rows"]]
    headers = ["row", "step ms", "time x", "TF peak MB", "memory x", "RSS growth MB", "params"]
    return table(rows, headers)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image", type=int, default=32)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--cells", type=int, default=8)
    parser.add_argument("--nodes", type=int, default=4, help="intermediate nodes per cell")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child, args.batch, args.image, args.channels, args.cells,
                                 args.nodes, args.steps, args.warmup)))
        return
    result = run(args.batch, args.image, args.channels, args.cells, args.nodes, args.steps,
                 args.warmup)
    print(report(result))
    print(f"\nwrote {write_json('entrannas_table3', result)} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
