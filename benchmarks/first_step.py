"""Time to the first step of each reference supernet, and where it goes.

For every supernet: the Keras build time, the time from ``fit`` to the end of
its first step, the steady step (median of the later steps), their ratio, how
many times the train step was traced, and a breakdown of one graph build:
Python tracing of the forward pass, of the backward pass (a ``GradientTape``
over every trainable variable, traced apart), and the first call of that
function (instantiation, grappler, first run) minus a steady call, grappler's
share of it and a steady call without grappler (the trade-off of turning it
off, which the test suite does: tests/conftest.py); and the number of ops in
the traced train step (``graph_ops``: load-independent, what tracing and
grappler scale with).

Two variants of ``fit``, each in a fresh process, interleaved per supernet:
``lazy`` (before: the optimizer slots and metrics are created inside the first
trace, so ``tf.function`` traces the step twice) and ``prebuilt`` (after:
``searchlayers.prebuild`` creates them first; ``SearchModel.fit`` does it).

Data: random digits-shaped batches (8x8x1, batch 64); the data pipeline is not
what is measured. Run: ``python -m benchmarks.first_step [--only darts_demo,bars]``.
"""

import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

from benchmarks.common import RESULTS, table

FLAGS = flags.FLAGS
flags.DEFINE_string("only", "", "Comma-separated supernets (default: all).")
flags.DEFINE_bool("quick", False, "Only darts_demo and figs_resnet, to first_step_quick.json.")
flags.DEFINE_string("one", "", "Internal: measure one supernet in this process.")
flags.DEFINE_string("variant", "prebuilt", "Internal: 'lazy' or 'prebuilt'.")
flags.DEFINE_integer("steps", 6, "Steps of the timed fit (the first, then steady ones).")
flags.DEFINE_bool("breakdown", True, "Also trace forward and backward apart.")
flags.DEFINE_string("json_out", os.path.join(RESULTS, "first_step.json"), "JSON output.")

BATCH, SHAPE = 64, (8, 8, 1)
SPOS_TRANSITION = "mb_k3_e6"  # examples.bnnas_search.TRANSITION_OP (its flags clash)


def _darts(method, cells, steps):
    def build():
        from examples import darts_search
        return darts_search.build(method, channels=8, cells=cells, steps=steps), True
    return build


def _bars():
    from models import bars
    return bars.bars_supernet(SHAPE, 10, channels=8, stages=2, cells=2, steps=2,
                              mode="gumbel"), True


def _bnas():
    from examples import bnas_search
    return bnas_search.build(channels=8, cells=3, steps=2), True


def _entrannas(dst):
    def build():
        from models import entrannas
        return entrannas.entrannas_supernet(SHAPE, 10, channels=8, cells=8, steps=4,
                                            dst=dst), True
    return build


def _spos():
    from models import spos
    return spos.spos_supernet(SHAPE, 10, mode="uniform", transition_op=SPOS_TRANSITION), False


def _figs(network):
    def build():
        from models import figs
        from searchlayers.transforms import insert_masks
        return insert_masks(getattr(figs, network)()), False
    return build


SUPERNETS = {
    "darts_demo": _darts("darts", 3, 2),   # the demo's: 3 cells x 2 nodes
    "darts_5x4": _darts("darts", 5, 4),
    "gdas": _darts("gdas", 3, 2),
    "bars": _bars,
    "bnas": _bnas,
    "entrannas_dst_8cells": _entrannas(True),
    "entrannas_8cells": _entrannas(False),
    "spos": _spos,
    "figs_resnet": _figs("resnet"),
    "figs_mobilenet_v2": _figs("mobilenet_v2"),
}


def _data(bilevel):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.random((BATCH, *SHAPE), dtype=np.float32)
    y = rng.integers(0, 10, BATCH)
    pair = (x, y)
    return tf.data.Dataset.from_tensors((pair, pair) if bilevel else pair).repeat()


def _breakdown(net):
    """Seconds of: autograph's first conversion, tracing forward (converted), tracing
    backward (forward + backward minus forward), first call minus a steady call
    (instantiation and grappler), grappler's share of that (the same minus the
    same with grappler off, measured second: it reuses the process's kernel
    caches, so the share is an upper bound), and a steady call with and without
    grappler (what turning it off would cost every step)."""
    import tensorflow as tf

    x = tf.random.uniform([BATCH, *SHAPE])
    traces = []
    for _ in range(2):  # the first also converts every call() with autograph (cached)
        forward = tf.function(lambda x: net(x, training=True))
        start = time.perf_counter()
        forward.get_concrete_function(x)
        traces.append(time.perf_counter() - start)
    trace_forward = traces[1]

    @tf.function
    def grads(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(net(x, training=True)))
        return tape.gradient(loss, net.trainable_variables)

    start = time.perf_counter()
    concrete = grads.get_concrete_function(x)
    trace_both = time.perf_counter() - start
    first_call, steady = _first_and_steady_call(concrete, x)
    # The same graph once more with grappler off: what its instantiation costs
    # without graph optimization, and what a step then costs.
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        plain = tf.function(grads.python_function).get_concrete_function(x)
        first_plain, steady_plain = _first_and_steady_call(plain, x)
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})
    return {"autograph_conversion_s": traces[0] - traces[1], "trace_forward_s": trace_forward,
            "trace_backward_s": trace_both - trace_forward,
            "instantiate_and_optimize_s": first_call - steady,
            "grappler_s": (first_call - steady) - (first_plain - steady_plain),
            "steady_call_s": steady, "steady_call_without_grappler_s": steady_plain}


def _first_and_steady_call(concrete, x, calls=5):
    """Seconds of the first call of ``concrete`` and the median of ``calls`` more."""
    start = time.perf_counter()
    concrete(x)
    first = time.perf_counter() - start
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        concrete(x)
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def measure(name, variant, steps, breakdown):
    """One supernet in this process: build, the timed fit, the breakdown."""
    import tensorflow as tf

    import searchlayers as sl
    from searchlayers import search
    from searchlayers._keras import keras

    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    net, bilevel = SUPERNETS[name]()
    build_s = time.perf_counter() - start
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if bilevel:
        model = sl.SearchModel(net, bilevel=True)
        model.compile(keras.optimizers.SGD(0.05, momentum=0.9), loss, metrics=["accuracy"])
    else:
        model = net
        model.compile(sl.joint_optimizer(keras.optimizers.legacy.Adam(3e-3)), loss,
                      metrics=["accuracy"])
    if variant == "lazy":
        search.prebuild = lambda *args, **kwargs: None  # SearchModel.fit looks it up here
    traces, step = [], model.train_step

    def counted(data):
        traces.append(tf.compat.v1.get_default_graph())  # the train function's graph
        return step(data)

    model.train_step = counted
    ends = []
    timer = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: ends.append(time.perf_counter()))
    data = _data(bilevel)
    start = time.perf_counter()
    if variant == "prebuilt" and not bilevel:
        search.prebuild(model, data)
    model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    first = ends[0] - start
    steady = statistics.median(b - a for a, b in zip(ends[1:], ends[2:]))
    result = {"supernet": name, "variant": variant, "build_s": build_s, "first_step_s": first,
              "steady_step_s": steady, "first_over_steady": first / steady,
              "traces": len(traces), "params": int(net.count_params()),
              # load-independent size of what is traced and optimized before step 1
              "graph_ops": len(traces[-1].get_operations())}
    if breakdown and variant == "prebuilt":
        result.update(_breakdown(net))
    return result


def _child(name, variant):
    """Runs ``measure`` in a fresh process (no trace cache or memory shared)."""
    cmd = [sys.executable, "-m", "benchmarks.first_step", f"--one={name}",
           f"--variant={variant}", f"--steps={FLAGS.steps}",
           f"--breakdown={FLAGS.breakdown}"]
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv):
    del argv
    if FLAGS.one:
        print(json.dumps(measure(FLAGS.one, FLAGS.variant, FLAGS.steps, FLAGS.breakdown)))
        return
    names = [n for n in FLAGS.only.split(",") if n] or list(SUPERNETS)
    if FLAGS.quick:
        names = ["darts_demo", "figs_resnet"]
        FLAGS.json_out = FLAGS.json_out.replace(".json", "_quick.json")
    started = time.time()
    results = {}
    if os.path.exists(FLAGS.json_out):  # a partial run (--only) adds to the earlier supernets
        with open(FLAGS.json_out) as f:
            results = {r["supernet"]: r for r in json.load(f)["results"]}
    for i, name in enumerate(names):
        order = ["lazy", "prebuilt"] if i % 2 == 0 else ["prebuilt", "lazy"]  # interleaved
        try:
            runs = {variant: _child(name, variant) for variant in order}
        except subprocess.CalledProcessError as error:
            print(f"{name}: failed\n{error.stderr[-2000:]}", flush=True)
            continue
        lazy, pre = runs["lazy"], runs["prebuilt"]
        results[name] = {"supernet": name, "lazy": lazy, "prebuilt": pre,
                         "first_step_ratio": pre["first_step_s"] / lazy["first_step_s"],
                         "steady_step_ratio": pre["steady_step_s"] / lazy["steady_step_s"],
                         "load_average": os.getloadavg()[0], "commit": _commit()}
        print(f"{name}: first step {lazy['first_step_s']:.1f} s -> {pre['first_step_s']:.1f} s",
              flush=True)
        _write(results, started)
    print(table([_row(r) for r in results.values()], HEADER))


HEADER = ["supernet", "build s", "first s (before)", "first s (after)", "steady s",
          "first/steady before", "first/steady after", "traces", "graph ops", "trace fwd s",
          "trace bwd s", "instantiate s", "grappler s", "steady off/on", "load"]


def _row(r):
    lazy, pre = r["lazy"], r["prebuilt"]
    return [r["supernet"], pre["build_s"], lazy["first_step_s"], pre["first_step_s"],
            pre["steady_step_s"], lazy["first_over_steady"], pre["first_over_steady"],
            f"{lazy['traces']}/{pre['traces']}", pre.get("graph_ops", 0),
            pre.get("trace_forward_s", 0.0),
            pre.get("trace_backward_s", 0.0), pre.get("instantiate_and_optimize_s", 0.0),
            pre.get("grappler_s", 0.0),
            pre.get("steady_call_without_grappler_s", 0.0) / pre.get("steady_call_s", 1.0),
            r.get("load_average", 0.0)]


def _commit():
    """The code a row measured (a partial run keeps older rows: each says its commit)."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=os.path.dirname(RESULTS)).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _write(results, started):
    os.makedirs(os.path.dirname(FLAGS.json_out), exist_ok=True)
    with open(FLAGS.json_out, "w") as f:
        json.dump({"benchmark": "first_step", "batch": BATCH, "input_shape": SHAPE,
                   "steps": FLAGS.steps, "wall_s": time.time() - started,
                   "machine": f"{os.cpu_count()} cores; load_average per row: the "
                              "machine was shared with other work",
                   "results": list(results.values())}, f, indent=2)


if __name__ == "__main__":
    app.run(main)
