"""Transit cells with feature sharing: edges that select shared features, not conditionals.

Claim checked (issue 14): in an EnTranNAS Transit cell with feature sharing
the features are computed already (or zeros, under one ``tf.cond`` per
``(input state, op)``), so an edge only has to select them. Version 0.1 did
that with conditionals: a ``tf.cond`` around a ``tf.switch_case`` per edge
(EnTranNAS, one op per edge) or a ``tf.cond`` per ``(edge, op)`` (DST). They
skip no computation, yet each has branch functions to trace and instantiate,
forward and backward. The library (``searchlayers.layers.entrannas``) now
selects without them: a gather from the input state's stacked features
(EnTranNAS), a 0/1-masked sum (DST). It must cut the first step and keep the
steady step within 5 %. (A masked sum for EnTranNAS edges, tried first,
multiplies all 7 features where one is taken: 1.00-1.15x steady-step time
over 5 runs, median 1.08x; the gather was 1.04x in its first run.)

Sides: ``conditional`` (0.1's edges, written here and patched into the
Transit cells) and ``select`` (the library), on the same ``models.entrannas``
supernet (same weights), with and without DST. Per side: the first call of the
compiled train step (trace + instantiation + first run; the sides run in this
order in one process, so the second side's first call may gain from warm
caches: the fresh-process figures are ``benchmarks/first_step.py``'s), the TF
ops and conditionals of the traced step, and the steady step: the sides
alternate call by call (``--steps`` each) and the ratio is the median step
over the conditional side's, with its range over ``--blocks`` consecutive
blocks.

Example:
    python -m benchmarks.transit_edges            # ~12 minutes on 2 CPU cores
    python -m benchmarks.transit_edges --quick    # 3 cells, 40 steps per side
"""

import os
import statistics
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
import numpy as np  # noqa: E402

import searchlayers as sl  # noqa: E402  (Keras-2 guard before TensorFlow)
import tensorflow as tf  # noqa: E402

from benchmarks.common import interleaved, per_round, table, train_step_fn, write_json  # noqa
from models.entrannas import cells, entrannas_supernet  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "3 cells, 40 steps per side.")
flags.DEFINE_integer("steps", 400, "Timed steps per side, alternating with the other side.")
flags.DEFINE_integer("blocks", 8, "Consecutive blocks of the run the ratio's range is over.")

BATCH, SHAPE = 64, (8, 8, 1)
TARGET = 1.05


def conditional_edge(self, e, mask, live, feature, source, stacks):
    """Version 0.1's Transit edge with feature sharing (the reference side)."""
    del stacks
    zeros = lambda: self._zeros(source(self.edges[e][1]))  # noqa: E731
    row = mask[e]
    if self.dst:
        return tf.add_n([tf.cond(row[k] > 0, lambda f=feature(e, k): f, zeros)
                         for k in live])
    branches = [zeros] * self.num_ops
    for k in live:
        branches[k] = lambda f=feature(e, k): f
    index = tf.argmax(row, output_type=tf.int32)
    return tf.cond(tf.reduce_max(row) > 0, lambda: tf.switch_case(index, branches), zeros)


def _model(dst, num_cells, side):
    sl.keras.utils.set_random_seed(0)
    model = entrannas_supernet(SHAPE, 10, channels=8, cells=num_cells, steps=4, dst=dst)
    if side == "conditional":
        for cell in cells(model):
            if cell.role == "transit":
                cell._transit_edge = types.MethodType(conditional_edge, cell)
    return model


def measure(dst, num_cells, steps, blocks):
    """Both sides of one supernet; returns its result dict."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((BATCH, *SHAPE), dtype=np.float32))
    y = tf.constant(rng.integers(0, 10, BATCH).astype("int32"))
    fns, first, ops, conds = {}, {}, {}, {}
    for name in ("conditional", "select"):
        fns[name] = train_step_fn(_model(dst, num_cells, name))
        start = time.perf_counter()
        fns[name](x, y).numpy()
        first[name] = time.perf_counter() - start
        graph = fns[name].get_concrete_function(x, y).graph
        ops[name] = len(graph.get_operations())
        conds[name] = _conditionals(graph)
    times = interleaved({name: (lambda f=f: f(x, y).numpy()) for name, f in fns.items()},
                        rounds=steps, steps=1, warmup=3, round_warmup=0)
    times = {name: per_round(times, name) for name in times}
    size = max(1, steps // blocks)
    blocks_ratio = [statistics.median(times["select"][i:i + size])
                    / statistics.median(times["conditional"][i:i + size])
                    for i in range(0, size * blocks, size)]
    return {"supernet": f"entrannas{'_dst' if dst else ''}_{num_cells}cells", "dst": dst,
            "select": "masked sum" if dst else "gather",
            "cells": num_cells, "first_call_s": first, "graph_ops": ops,
            "conditionals": conds,
            "step_ms": {name: 1e3 * statistics.median(t) for name, t in times.items()},
            "steady_ratio": statistics.median(times["select"])
            / statistics.median(times["conditional"]),
            "steady_ratio_range": [min(blocks_ratio), max(blocks_ratio)]}


def _conditionals(graph):
    """``If`` / ``Case`` ops in ``graph`` and in every function it calls."""
    count = sum(op.type in ("If", "StatelessIf", "Case", "StatelessCase")
                for op in graph.get_operations())
    library = graph.as_graph_def().library.function
    return count + sum(node.op in ("If", "StatelessIf", "Case", "StatelessCase")
                       for f in library for node in f.node_def)


def main(argv):
    del argv
    started = time.time()
    tf.get_logger().setLevel("ERROR")
    num_cells, steps = (3, 40) if FLAGS.quick else (8, FLAGS.steps)
    load = {"before": os.getloadavg()}
    results = [measure(dst, num_cells, steps, FLAGS.blocks) for dst in (True, False)]
    load["after"] = os.getloadavg()
    rows = [[r["supernet"], r["select"], r["first_call_s"]["conditional"],
             r["first_call_s"]["select"], r["conditionals"]["conditional"],
             r["conditionals"]["select"], r["graph_ops"]["conditional"],
             r["graph_ops"]["select"], r["step_ms"]["conditional"], r["step_ms"]["select"],
             r["first_call_s"]["select"] / r["first_call_s"]["conditional"],
             r["steady_ratio"], "{:.2f}-{:.2f}".format(*r["steady_ratio_range"])]
            for r in results]
    print(table(rows, ["supernet", "select by", "first s (cond)", "first s (select)",
                       "conds (cond)", "conds (select)", "ops (cond)", "ops (select)",
                       "step ms (cond)", "step ms (select)", "first ratio", "steady ratio",
                       "(blocks)"]))
    worst = max(r["steady_ratio"] for r in results)
    print(f"\nworst steady ratio {worst:.3f} (target <= {TARGET:.2f}: "
          f"{'met' if worst <= TARGET else 'NOT met'})")
    write_json("transit_edges", {
        "config": {"steps": steps, "blocks": FLAGS.blocks, "batch": BATCH,
                   "input": list(SHAPE), "quick": FLAGS.quick, "device": "CPU",
                   "cores": os.cpu_count()},
        "load_average": load, "wall_s": time.time() - started, "results": results})


if __name__ == "__main__":
    app.run(main)
