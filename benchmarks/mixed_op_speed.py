"""Train-step time of a MixedOp supernet against its candidates run alone.

Claims checked:

- softmax mode runs every candidate, so its step should cost about the *sum*
  of the candidates' steps (ratio close to 1.0: the mixing itself is cheap);
- single-path modes (``gumbel_hard``, ``uniform``) run one candidate per step,
  so a step should cost about one candidate's (the mean step time over many
  steps against the mean of the candidates' median step times, since the
  chosen op changes per step), far below softmax;
- ``set_choice(i)`` should cost what candidate ``i`` costs alone; measured on
  a softmax-mode and a uniform-mode MixedOp.

Every model is ``Input -> layer -> GlobalAveragePooling -> Dense(10)``; the
layer is a ``MixedOp`` over the DARTS ops without ``none``, or one candidate
(the same registered op) alone. A step is one compiled ``tf.function`` with a
``GradientTape`` and an SGD update; warm-up excluded, median of the timed steps.

Example:
    python -m benchmarks.mixed_op_speed            # ~1-2 minutes on 2 CPU cores
    python -m benchmarks.mixed_op_speed --quick    # 8x8x8 inputs, 5 steps
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import searchlayers as sl  # noqa: E402  (Keras-2 guard before TensorFlow)
import tensorflow as tf  # noqa: E402
from searchlayers.layers import DARTS_OPS, get_op  # noqa: E402

from benchmarks.common import table, time_calls, write_json  # noqa: E402

keras = sl.keras
CANDIDATES = [op for op in DARTS_OPS if op != "none"]
SINGLE_PATH = ("gumbel_hard", "uniform")


def build(layer, shape):
    """``Input(shape) -> layer -> GAP -> Dense(10)``.

    Example:
        >>> build(get_op("skip_connect", 4), (8, 8, 4)).output_shape
        (None, 10)
    """
    inputs = keras.Input(shape)
    x = keras.layers.GlobalAveragePooling2D()(layer(inputs))
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def train_step_fn(model):
    """A compiled train step ``step(x, y) -> loss`` (gradients of every variable).

    Example:
        >>> step = train_step_fn(model)  # doctest: +SKIP
        >>> float(step(x, y))  # doctest: +SKIP
    """
    optimizer = keras.optimizers.SGD(0.01)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, variables)
        pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
        optimizer.apply_gradients(pairs)
        return loss

    return step


def step_time(model, x, y, steps, warmup=3, statistic="median_s"):
    """Train-step seconds of ``model`` on ``(x, y)`` (median, or ``"mean_s"``).

    Example:
        >>> step_time(model, x, y, steps=10)  # doctest: +SKIP
        0.0123
    """
    step = train_step_fn(model)
    return time_calls(lambda: step(x, y).numpy(), steps=steps, warmup=warmup)[statistic]


def fixed_choice_times(mode, shape, x, y, steps):
    """``{op: step seconds}`` of one ``mode`` MixedOp model under ``set_choice(i)``.

    Example:
        >>> fixed_choice_times("uniform", (8, 8, 4), x, y, steps=5)  # doctest: +SKIP
    """
    model = build(sl.MixedOp(CANDIDATES, mode=mode), shape)
    mixed = [layer for layer in model.layers if isinstance(layer, sl.MixedOp)][0]
    times = {}
    for i, op in enumerate(CANDIDATES):
        mixed.set_choice(i)
        times[op] = step_time(model, x, y, steps)
    return times


def run(batch=64, image=16, channels=32, steps=20):
    """Measures every configuration; returns the JSON-ready result dict.

    Example:
        >>> run(batch=8, image=8, channels=8, steps=3)["ratios"]  # doctest: +SKIP
    """
    start = time.time()
    shape = (image, image, channels)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(batch, *shape)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, size=batch).astype("int32"))
    alone = {op: step_time(build(get_op(op, channels), shape), x, y, steps)
             for op in CANDIDATES}
    modes = {}
    for mode in ("softmax", "gumbel", "gumbel_hard", "uniform"):
        model = build(sl.MixedOp(CANDIDATES, mode=mode), shape)
        if mode in SINGLE_PATH:  # the op varies per step: the mean of many steps
            modes[mode] = step_time(model, x, y, 5 * steps, statistic="mean_s")
        else:
            modes[mode] = step_time(model, x, y, steps)
    fixed = {mode: fixed_choice_times(mode, shape, x, y, steps)
             for mode in ("softmax", "uniform")}
    total, mean = sum(alone.values()), float(np.mean(list(alone.values())))
    ratios = {
        "softmax / sum(candidates)": modes["softmax"] / total,
        "gumbel / sum(candidates)": modes["gumbel"] / total,
        "gumbel_hard / mean(candidate)": modes["gumbel_hard"] / mean,
        "uniform / mean(candidate)": modes["uniform"] / mean,
        "gumbel_hard / softmax": modes["gumbel_hard"] / modes["softmax"],
        "uniform / softmax": modes["uniform"] / modes["softmax"],
    }
    for mode, times in fixed.items():
        ratios.update({f"{mode} set_choice({op}) / {op}": times[op] / alone[op]
                       for op in CANDIDATES})
    return {
        "config": {"batch": batch, "input": list(shape), "steps": steps,
                   "candidates": CANDIDATES, "device": "CPU",
                   "threads": os.cpu_count()},
        "candidate_ms": {op: 1e3 * t for op, t in alone.items()},
        "mode_ms": {m: 1e3 * t for m, t in modes.items()},
        "set_choice_ms": {m: {op: 1e3 * t for op, t in times.items()}
                          for m, times in fixed.items()},
        "ratios": ratios,
        "seconds": time.time() - start,
    }


def report(result):
    """The result as two tables: step times and ratios.

    Example:
        >>> print(report(run(steps=3)))  # doctest: +SKIP
    """
    fixed = result["set_choice_ms"]
    rows = [[op, result["candidate_ms"][op], fixed["softmax"][op], fixed["uniform"][op]]
            for op in CANDIDATES]
    rows += [[f"MixedOp {m}", t, "", ""] for m, t in result["mode_ms"].items()]
    times = table(rows, ["model", "step ms", "softmax set_choice ms",
                         "uniform set_choice ms"])
    ratios = table([[k, v] for k, v in result["ratios"].items()], ["ratio", "value"])
    return f"{times}\n\n{ratios}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image", type=int, default=16)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--quick", action="store_true",
                        help="8x8x8 inputs, 5 steps; writes mixed_op_speed_quick.json.")
    args = parser.parse_args()
    if args.quick:
        args.image, args.channels, args.steps = 8, 8, 5
    result = run(args.batch, args.image, args.channels, args.steps)
    print(report(result))
    name = "mixed_op_speed_quick" if args.quick else "mixed_op_speed"
    print(f"\nwrote {write_json(name, result)} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
