"""BN-NAS speed: scoring subnets by BN indicator, and the BN-only supernet step.

Measures, on the digits-sized SPOS supernet (``models.spos``):

1. the time to score 1000 subnets with the BN indicator (one numpy gather over
   the ``[layers, choices]`` score table; target < 0.01 s), next to the time
   to read the score table from the model, to run a full evolutionary search
   (~1000 subnets, cost limit), and to score subnets by validation accuracy
   with inherited weights (SPOS' way; per subnet, then extrapolated to 1000);
2. the supernet's training step time with only BatchNorm trainable against all
   weights trainable (paper: BN-only saves ~20% of the step), split into the
   forward pass, forward + gradients, and the whole step ``fit`` runs; at the
   digits size (8x8) and, in the full run, at 32x32 input, measured
   interleaved.

Why BN only saves less on digits than at 32x32: TensorFlow does not compute
the frozen weights' gradients (their Conv2DBackpropFilter / depthwise filter
gradients are pruned from the graph, also inside the ``tf.switch_case`` of a
single-path MixedOp), but at 8x8 the convolutions are tiny, so a step is
mostly per-op and per-variable overhead (the update of every trainable
variable, the unsampled candidates' zero gradients included) that freezing
the convolutions does not remove. With more compute per op the filter
gradients dominate and BN only costs a fraction of the step.

Writes ``benchmarks/results/bnnas[_quick].json`` and prints a table.

Example:
    python -m benchmarks.bnnas --quick
"""

import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import searchlayers as sl  # noqa: E402
from searchlayers import bn_score, datasets, evolution, transforms  # noqa: E402
from searchlayers._keras import keras  # noqa: E402

from benchmarks.common import table, time_calls, write_json  # noqa: E402
from models import spos  # noqa: E402

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def scoring(model, n=1000, seed=0):
    """Seconds to read the score table and to score ``n`` random subnets."""
    table_read = time_calls(lambda: bn_score.score_table(model), steps=5, warmup=1)
    scores = bn_score.score_table(model)
    rng = np.random.default_rng(seed)
    choices = np.floor(rng.random((n, len(scores.keys))) * scores.num_choices).astype(np.int64)
    score_n = time_calls(lambda: scores.total(choices), steps=50, warmup=5)
    costs = evolution.cost_table(model, "macs")
    limit = costs.minimum() + 0.4 * (costs.maximum() - costs.minimum())
    search = time_calls(lambda: evolution.evolutionary_search(model, limit, costs=costs),
                        steps=3, warmup=1)
    result = evolution.evolutionary_search(model, limit, costs=costs)
    return {"score_table_s": table_read["median_s"], f"score_{n}_subnets_s": score_n["median_s"],
            "evolution_s": search["median_s"], "evolution_subnets": result.evaluated}


def accuracy_scoring(model, subnets=5, seed=0):
    """Seconds per subnet scored by validation accuracy (inherited weights)."""
    model.compile(loss=LOSS, metrics=["accuracy"])
    validation = datasets.load("digits", "validation", batch_size=256)
    scorer = evolution.AccuracyScorer(model, validation)
    rng = np.random.default_rng(seed)
    n = scorer.table.num_choices
    choices = np.floor(rng.random((subnets, len(n))) * n).astype(np.int64)
    scorer(choices[:1])  # trace
    timed = time_calls(lambda: scorer(choices), steps=1, warmup=0)
    return timed["median_s"] / subnets


def executed_filter_gradients():
    """Filter-gradient kernels TensorFlow runs for a single-path ``tf.switch_case``
    of conv -> scale -> conv, when all weights or only the scales need gradients
    (a graph-mode trace of the executed nodes): the check that frozen weights'
    gradients are pruned, not computed and dropped."""
    tf1 = tf.compat.v1
    out = {}
    for name, frozen_convs in (("all weights", False), ("scales only", True)):
        graph = tf.Graph()
        with graph.as_default():
            x = tf.ones([8, 16, 16, 4])
            kernels = [tf1.get_variable(f"k{i}", [3, 3, 4, 4], use_resource=True) for i in range(2)]
            scales = [tf1.get_variable(f"g{i}", [4], use_resource=True) for i in range(2)]

            def branch(i):
                return lambda: tf.nn.conv2d(tf.nn.conv2d(x, kernels[i], 1, "SAME") * scales[i],
                                            kernels[i], 1, "SAME")

            y = tf.switch_case(tf.constant(0), [branch(0), branch(1)])
            grads = tf.gradients(tf.reduce_sum(y * y), scales if frozen_convs else kernels + scales)
            with tf1.Session(graph=graph) as session:
                session.run(tf1.global_variables_initializer())
                meta = tf1.RunMetadata()
                session.run(grads, options=tf1.RunOptions(trace_level=tf1.RunOptions.FULL_TRACE),
                            run_metadata=meta)
        labels = [n.timeline_label for d in meta.step_stats.dev_stats for n in d.node_stats]
        out[name] = sum("BackpropFilter" in label for label in labels)
    return out


SETTINGS = (("all weights", None), ("BN only (all BN)", "all"), ("BN only (last BN)", "last"))
PARTS = ("forward", "forward+gradients", "train step")


def step_parts(which, image_size, batch_size):
    """Timed callables of one supernet: the forward pass, forward + gradients of
    the trainable variables (no update), and the training step ``fit`` runs
    (``model.train_function`` on an iterator: gradients, optimizer update, BN
    statistics). ``train_on_batch`` is not used: its per-call Python overhead
    (~40 ms) would hide the difference."""
    keras.utils.set_random_seed(0)
    model = spos.spos_supernet(input_shape=(image_size, image_size, 1))
    if which:
        transforms.train_only_batchnorm(model, which=which)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss=LOSS)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((batch_size, image_size, image_size, 1), dtype=np.float32))
    y = tf.constant(rng.integers(0, 10, batch_size))
    variables = model.trainable_variables

    @tf.function
    def forward():
        return LOSS(y, model(x, training=True))

    @tf.function
    def gradients():
        with tf.GradientTape() as tape:
            loss = LOSS(y, model(x, training=True))
        return tf.add_n([tf.reduce_sum(g) for g in tape.gradient(loss, variables) if g is not None])

    model.make_train_function()
    batches = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
    fns = {"forward": lambda: forward().numpy(), "forward+gradients": lambda: gradients().numpy(),
           "train step": lambda: model.train_function(batches)["loss"].numpy()}
    return fns, len(variables)


def step_times(image_size, batch_size, rounds):
    """Median seconds of each part for each setting, measured interleaved."""
    fns, counts = {}, {}
    for name, which in SETTINGS:
        fns[name], counts[name] = step_parts(which, image_size, batch_size)
    times = {(n, p): [] for n in fns for p in PARTS}
    for fn in (f for parts in fns.values() for f in parts.values()):
        for _ in range(3):
            fn()  # trace and warm up
    for _ in range(rounds):  # interleaved: a load change hits every setting alike
        for name, parts in fns.items():
            for part, fn in parts.items():
                start = time.perf_counter()
                fn()
                times[(name, part)].append(time.perf_counter() - start)
    medians = {n: {p: statistics.median(times[(n, p)]) for p in PARTS} for n in fns}
    return medians, counts


FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Fewer timing rounds, no 32x32 step timing.")


def main(argv):
    del argv
    tf.get_logger().setLevel("ERROR")
    rounds = 10 if FLAGS.quick else 30
    model = spos.spos_supernet()
    score = scoring(model)
    per_subnet = accuracy_scoring(model, subnets=3 if FLAGS.quick else 5)
    sizes = (("digits 8x8", 8),) if FLAGS.quick else (("digits 8x8", 8), ("32x32 input", 32))
    steps, counts = {}, {}
    for label, size in sizes:
        steps[label], counts = step_times(size, 64, rounds)
    filter_grads = executed_filter_gradients()
    ratios = {label: {n: {p: t[p] / by["all weights"][p] for p in PARTS} for n, t in by.items()}
              for label, by in steps.items()}
    results = {
        "device": platform.processor() or platform.machine(),
        "tensorflow": tf.__version__,
        "quick": FLAGS.quick,
        "supernet": {"search_layers": len(sl.layers.search_layers(model)),
                     "choices_per_layer": 6, "params": model.count_params()},
        "scoring": {**score, "accuracy_per_subnet_s": per_subnet,
                    "accuracy_1000_subnets_s_extrapolated": per_subnet * 1000},
        "step_time_s": steps,
        "step_time_ratio_vs_all": ratios,
        "trainable_variables": counts,
        "executed_filter_gradient_kernels": filter_grads,
        "batch_size": 64,
        "rounds": rounds,
    }
    path = write_json("bnnas_quick" if FLAGS.quick else "bnnas", results)
    rows = [
        ["read BN score table", score["score_table_s"] * 1e3],
        ["score 1000 subnets (BN indicator)", score["score_1000_subnets_s"] * 1e3],
        [f"evolution ({score['evolution_subnets']} subnets, BN)", score["evolution_s"] * 1e3],
        ["score 1000 subnets (val accuracy, extrap.)", per_subnet * 1000 * 1e3],
    ]
    print(table(rows, ["measure", "ms"]))
    for label, by in steps.items():
        rows = [[f"{name} ({counts[name]} vars)"]
                + [by[name][p] * 1e3 for p in PARTS] + [ratios[label][name]["train step"]]
                for name in by]
        print(f"\nsupernet step, {label}, batch 64 (ms; ratio: train step vs all weights)")
        print(table(rows, ["trainable", *PARTS, "ratio"]))
    print("\nexecuted conv filter-gradient kernels in a switch_case (all weights / scales "
          f"only): {filter_grads['all weights']} / {filter_grads['scales only']}")
    print(f"Wrote {path}")


if __name__ == "__main__":
    app.run(main)
