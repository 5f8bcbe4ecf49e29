"""BN-NAS speed: scoring subnets by BN indicator, and the BN-only supernet step.

Measures, on the digits-sized SPOS supernet (``models.spos``):

1. the time to score 1000 subnets with the BN indicator (one numpy gather over
   the ``[layers, choices]`` score table; target < 0.01 s), next to the time
   to read the score table from the model, to run a full evolutionary search
   (~1000 subnets, cost limit), and to score subnets by validation accuracy
   with inherited weights (SPOS' way; per subnet, then extrapolated to 1000);
2. the supernet's training step time with only BatchNorm trainable against all
   weights trainable (paper: BN-only saves ~20% of the step), split into the
   forward pass, forward + gradients, and the whole step ``fit`` runs,
   measured interleaved, at the digits size (8x8, batch 64) and, in the full
   run, at a size where compute dominates per-op overhead (32x32 input, batch
   32, every width x2; ``--size IMAGE:BATCH:WIDTH`` picks others);
3. the conv gradient ops of each setting's train function, counted in its
   graph as traced and as optimized by grappler (the graph the executor runs,
   recorded with run metadata on the first call): the check that the frozen
   weights' filter gradients are not computed, rather than computed and
   dropped.

Why BN only saves what it saves (details in the JSON ``notes``): the traced
graph holds the filter-gradient ops of every conv (the gradient of a
``tf.switch_case`` is built for all its inputs), but grappler prunes those of
frozen kernels, so they do not run; the input gradients still run (they carry
the gradient down to the first BNs), so BN only removes the filter gradients
(about a third of the conv FLOPs of a step) and the frozen variables' updates.

Writes ``benchmarks/results/bnnas[_quick].json`` and prints a table.

Example:
    python -m benchmarks.bnnas --quick
    python -m benchmarks.bnnas --noscoring --size 32:32:2 --parts 'train step'
"""

import collections
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from tensorflow.python.eager import context  # noqa: E402

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


GRAD_OPS = ("Conv2DBackpropFilter", "DepthwiseConv2dNativeBackpropFilter",
            "Conv2DBackpropInput", "DepthwiseConv2dNativeBackpropInput")


def _op_counts(graph_def):
    """Counts of the conv gradient op types in a GraphDef and its function library
    (the ``tf.switch_case`` branches and their gradient functions live there)."""
    counts = collections.Counter(node.op for node in graph_def.node)
    for function in graph_def.library.function:
        counts.update(node.op for node in function.node_def)
    return {op: counts[op] for op in GRAD_OPS}


def call_recording_graphs(fn):
    """Calls ``fn`` once (its first call: trace + grappler) with run metadata on;
    returns the conv gradient op counts of the largest function it ran (the
    train function) before graph optimization (as traced) and after (the graph
    the executor runs: ``Case`` lowered to Switch/Merge, dead nodes pruned)."""
    ctx = context.context()
    ctx.enable_run_metadata()
    try:
        fn()
        metadata = ctx.export_run_metadata()
    finally:
        ctx.disable_run_metadata()
    graphs = max(metadata.function_graphs,
                 key=lambda g: sum(_op_counts(g.pre_optimization_graph).values()))
    return {"traced": _op_counts(graphs.pre_optimization_graph),
            "optimized": _op_counts(graphs.post_optimization_graph)}


SETTINGS = (("all weights", None), ("BN only (all BN)", "all"), ("BN only (last BN)", "last"))
PARTS = ("forward", "forward+gradients", "train step")


def supernet(image_size, width=1.0):
    """The digits supernet (``models.spos`` defaults) with every width times ``width``."""
    scale = lambda c: max(1, int(round(c * width)))
    stages = tuple((scale(c), d, s) for c, d, s in spos.DIGITS_STAGES)
    return spos.spos_supernet(input_shape=(image_size, image_size, 1), stages=stages,
                              stem_channels=scale(16), head_channels=scale(64))


def step_parts(which, image_size, batch_size, width=1.0, parts=PARTS):
    """Timed callables of one supernet: the forward pass, forward + gradients of
    the trainable variables (no update), and the training step ``fit`` runs
    (``model.train_function`` on an iterator: gradients, optimizer update, BN
    statistics). ``train_on_batch`` is not used: its per-call Python overhead
    (~40 ms) would hide the difference. Also returns the number of trainable
    variables and the conv gradient op counts of the train function's graph,
    recorded on its first call."""
    keras.utils.set_random_seed(0)
    model = supernet(image_size, width)
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
    graph_ops = call_recording_graphs(fns["train step"])
    return {p: fns[p] for p in parts}, len(variables), graph_ops, model.count_params()


def step_times(image_size, batch_size, rounds, width=1.0, parts=PARTS):
    """Median seconds of each part for each setting, measured interleaved; the
    trainable-variable counts, the train graphs' conv gradient op counts, and the
    supernet's parameter count."""
    fns, counts, graph_ops = {}, {}, {}
    for name, which in SETTINGS:
        fns[name], counts[name], graph_ops[name], params = step_parts(
            which, image_size, batch_size, width, parts)
    times = {(n, p): [] for n in fns for p in parts}
    for fn in (f for by_part in fns.values() for f in by_part.values()):
        for _ in range(3):
            fn()  # trace and warm up
    for _ in range(rounds):  # interleaved: a load change hits every setting alike
        for name, by_part in fns.items():
            for part, fn in by_part.items():
                start = time.perf_counter()
                fn()
                times[(name, part)].append(time.perf_counter() - start)
    medians = {n: {p: statistics.median(times[(n, p)]) for p in parts} for n in fns}
    return medians, counts, graph_ops, params


FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "Fewer timing rounds, digits size only (8x8, width 1).")
flags.DEFINE_multi_string("size", None,
                          "Step-time configuration IMAGE:BATCH:WIDTH (input side, batch, width "
                          "multiplier of every layer); repeatable. Default: 8:64:1 (digits) and "
                          "32:32:2 (compute dominates per-op overhead).")
flags.DEFINE_list("parts", list(PARTS), f"Step parts to time, of {list(PARTS)}.")
flags.DEFINE_integer("rounds", None, "Interleaved timing rounds (default 10 quick, 20 full).")
flags.DEFINE_bool("scoring", True, "Also time the scoring of subnets (BN indicator, accuracy).")

NOTES = (
    "Machine shared with other jobs (2 CPU cores, load ~5): absolute times are inflated and "
    "noisy; ratios are measured interleaved in one process, so a load change hits every "
    "setting alike. 'forward' does the same work in every setting: its ratio (~1) is the "
    "noise floor. "
    "(1) The frozen weights' gradients are not run. The traced train function "
    "(graph_ops.traced) holds every conv filter-gradient op (Conv2DBackpropFilter / "
    "DepthwiseConv2dNativeBackpropFilter) in all three settings, because the gradient of a "
    "single-path MixedOp's tf.switch_case (a Case op) is built for all branch inputs, frozen "
    "kernels included; after grappler (graph_ops.optimized: the graph the executor runs, "
    "recorded with run metadata; Case lowered to Switch/Merge, dead outputs pruned) the "
    "BN-only graphs hold none of them and the all-weights graph all of them. Per step one "
    "candidate per layer runs, so all-weights runs 14 Conv2D and 6 depthwise filter "
    "gradients a step (stem, head, 2 pointwise + 1 depthwise per layer), BN only none. "
    "(2) The input gradients (Conv2DBackpropInput / DepthwiseConv2dNativeBackpropInput) still "
    "run: they carry the gradient down to the first BNs' gamma / beta. So BN only removes the "
    "filter gradients (about a third of a step's convolution FLOPs: forward, input gradient, "
    "filter gradient) and the optimizer update of the frozen variables (SGD momentum, one op "
    "per trainable variable: 332 -> 220 'all', 72 'last'); 'last' also skips the input "
    "gradients below the first search layer's last BNs (61 vs 73 Conv2D, 30 vs 36 depthwise "
    "input-gradient ops). This is the saving forward+gradients and train step show; read "
    "them against the forward ratio. Expected: at most ~1/3 of the gradient pass saved, "
    "more for 'last'; at the larger size each call takes seconds under load and fewer "
    "rounds fit, so its ratios are noisier than the digits size's. "
    "(3) The figures committed before this run (BN only / all = 1.01 'all', 0.95 'last') "
    "were measured with train_on_batch, one setting after the other: its per-call Python "
    "overhead (~40 ms of a ~76 ms step) and load changes between settings hid the "
    "difference. The paper's ~0.8 is a GPU ImageNet-size supernet."
)


def _size(text):
    try:
        image, batch, width = text.split(":")
        return int(image), int(batch), float(width)
    except ValueError:
        raise app.UsageError(f"--size={text!r}: expected IMAGE:BATCH:WIDTH, e.g. 32:32:2.")


def main(argv):
    del argv
    tf.get_logger().setLevel("ERROR")
    unknown = sorted(set(FLAGS.parts) - set(PARTS))
    if unknown:
        raise app.UsageError(f"--parts: unknown {unknown}; allowed: {list(PARTS)}.")
    parts = tuple(p for p in PARTS if p in FLAGS.parts)
    rounds = FLAGS.rounds or (10 if FLAGS.quick else 20)
    sizes = [_size(t) for t in (FLAGS.size or (["8:64:1"] if FLAGS.quick else ["8:64:1", "32:32:2"]))]
    model = spos.spos_supernet()
    results = {
        "device": platform.processor() or platform.machine(),
        "tensorflow": tf.__version__,
        "quick": FLAGS.quick,
        "supernet": {"search_layers": len(sl.layers.search_layers(model)),
                     "choices_per_layer": 6, "params": model.count_params()},
        "rounds": rounds,
        "notes": NOTES,
    }
    if FLAGS.scoring:
        score = scoring(model)
        per_subnet = accuracy_scoring(model, subnets=3 if FLAGS.quick else 5)
        results["scoring"] = {**score, "accuracy_per_subnet_s": per_subnet,
                              "accuracy_1000_subnets_s_extrapolated": per_subnet * 1000}
        rows = [
            ["read BN score table", score["score_table_s"] * 1e3],
            ["score 1000 subnets (BN indicator)", score["score_1000_subnets_s"] * 1e3],
            [f"evolution ({score['evolution_subnets']} subnets, BN)", score["evolution_s"] * 1e3],
            ["score 1000 subnets (val accuracy, extrap.)", per_subnet * 1000 * 1e3],
        ]
        print(table(rows, ["measure", "ms"]))
    steps = {}
    for image, batch, width in sizes:
        label = f"{image}x{image} input, batch {batch}, width x{width:g}"
        medians, counts, graph_ops, params = step_times(image, batch, rounds, width, parts)
        ratios = {n: {p: t[p] / medians["all weights"][p] for p in parts}
                  for n, t in medians.items()}
        steps[label] = {"image_size": image, "batch_size": batch, "width": width,
                        "supernet_params": params, "step_time_s": medians,
                        "step_time_ratio_vs_all": ratios, "trainable_variables": counts,
                        "graph_ops": graph_ops}
        rows = [[f"{name} ({counts[name]} vars)"] + [medians[name][p] * 1e3 for p in parts]
                + [ratios[name][parts[-1]]] for name in medians]
        print(f"\nsupernet step, {label} (ms; ratio: {parts[-1]} vs all weights)")
        print(table(rows, ["trainable", *parts, "ratio"]))
        rows = [[f"{name} {stage}"] + [graph_ops[name][stage][op] for op in GRAD_OPS]
                for name in graph_ops for stage in ("traced", "optimized")]
        print("\nconv gradient ops in the train function's graph")
        print(table(rows, ["graph", "Conv2D filter", "depthwise filter", "Conv2D input",
                           "depthwise input"]))
    results["steps"] = steps
    path = write_json("bnnas_quick" if FLAGS.quick else "bnnas", results)
    print(f"Wrote {path}")


if __name__ == "__main__":
    app.run(main)
