"""Train-step time of a MixedOp supernet against its candidates run alone.

Claims checked:

- softmax mode runs every candidate, so its step should cost about the *sum*
  of the candidates' steps (ratio close to 1.0: the mixing itself is cheap);
- single-path modes (``gumbel_hard``, ``uniform``) run one candidate per step,
  so a step should cost about one candidate's (the mean step time over many
  steps against the mean of the candidates' median step times, since the
  chosen op changes per step), far below softmax;
- ``set_choice(i)`` should cost what candidate ``i`` costs alone in a
  uniform-mode MixedOp. A softmax-mode MixedOp runs op ``i`` alone only at
  inference; its training step computes the one-hot mixture (every candidate),
  because the gradient of larq's custom-gradient quantizers inside a
  ``switch_case`` branch fails in TF 2.21. Both are measured.

Every model is ``Input -> layer -> GlobalAveragePooling -> Dense(10)``; the
layer is a ``MixedOp`` over the DARTS ops without ``none``, or one candidate
(the same registered op) alone. A step is one compiled ``tf.function`` with a
``GradientTape`` and an SGD update (``benchmarks.common.train_step_fn``). All
models are traced and warmed up first, then timed in interleaved rounds.

Example:
    python -m benchmarks.mixed_op_speed            # ~1-2 minutes on 2 CPU cores
    python -m benchmarks.mixed_op_speed --quick    # 8x8x8 inputs, 2 rounds of 3 steps
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import searchlayers as sl  # noqa: E402  (Keras-2 guard before TensorFlow)
import tensorflow as tf  # noqa: E402
from searchlayers.layers import DARTS_OPS, get_op  # noqa: E402

from benchmarks.common import (  # noqa: E402
    interleaved, per_round, table, train_step_fn, write_json)

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


def setups(shape, channels):
    """``{name: model}``: each candidate alone, each MixedOp mode, and each
    candidate fixed by ``set_choice`` in a softmax and a uniform MixedOp.

    Example:
        >>> sorted(setups((8, 8, 4), 4))[:2]
        ['alone avg_pool_3x3', 'alone dil_conv_3x3']
    """
    models = {f"alone {op}": build(get_op(op, channels), shape) for op in CANDIDATES}
    for mode in ("softmax", "gumbel", "gumbel_hard", "uniform"):
        models[mode] = build(sl.MixedOp(CANDIDATES, mode=mode), shape)
    for mode in ("softmax", "uniform"):
        for i, op in enumerate(CANDIDATES):
            model = build(sl.MixedOp(CANDIDATES, mode=mode), shape)
            [m for m in model.layers if isinstance(m, sl.MixedOp)][0].set_choice(i)
            models[f"{mode} set_choice {op}"] = model
    return models


def run(batch=64, image=16, channels=32, steps=10, rounds=5):
    """Measures every configuration interleaved; returns the JSON-ready result dict.

    Single-path modes change op every step, so they are compared by their mean
    step time; everything else by the median. Ratios are taken per round and
    the median over rounds is reported (with the range).

    Example:
        >>> run(batch=8, image=8, channels=8, steps=2, rounds=1)["ratios"]  # doctest: +SKIP
    """
    start = time.time()
    shape = (image, image, channels)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(batch, *shape)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, size=batch).astype("int32"))
    calls = {}
    for name, model in setups(shape, channels).items():
        step = train_step_fn(model)
        calls[name] = lambda step=step: step(x, y).numpy()
    times = interleaved(calls, rounds=rounds, steps=steps)

    def rounds_of(name):
        return np.array(per_round(times, name, "mean_s" if name in SINGLE_PATH else "median_s"))

    alone = np.array([rounds_of(f"alone {op}") for op in CANDIDATES])  # [ops, rounds]
    total, mean = alone.sum(0), alone.mean(0)
    ratio_rounds = {
        "softmax / sum(candidates)": rounds_of("softmax") / total,
        "gumbel / sum(candidates)": rounds_of("gumbel") / total,
        "gumbel_hard / mean(candidate)": rounds_of("gumbel_hard") / mean,
        "uniform / mean(candidate)": rounds_of("uniform") / mean,
        "gumbel_hard / softmax": rounds_of("gumbel_hard") / rounds_of("softmax"),
        "uniform / softmax": rounds_of("uniform") / rounds_of("softmax"),
    }
    for mode in ("softmax", "uniform"):
        for i, op in enumerate(CANDIDATES):
            ratio_rounds[f"{mode} set_choice({op}) / {op}"] = (
                rounds_of(f"{mode} set_choice {op}") / alone[i])
    ms = {name: 1e3 * float(np.median(rounds_of(name))) for name in calls}
    return {
        "config": {"batch": batch, "input": list(shape), "steps": steps, "rounds": rounds,
                   "candidates": CANDIDATES, "device": "CPU", "threads": os.cpu_count(),
                   "timing": "interleaved rounds; median over rounds of per-round ratios"},
        "candidate_ms": {op: ms[f"alone {op}"] for op in CANDIDATES},
        "mode_ms": {m: ms[m] for m in ("softmax", "gumbel", "gumbel_hard", "uniform")},
        "set_choice_ms": {m: {op: ms[f"{m} set_choice {op}"] for op in CANDIDATES}
                          for m in ("softmax", "uniform")},
        "ratios": {k: float(np.median(v)) for k, v in ratio_rounds.items()},
        "ratio_range": {k: [float(v.min()), float(v.max())] for k, v in ratio_rounds.items()},
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
    parser.add_argument("--steps", type=int, default=10, help="Timed steps per round.")
    parser.add_argument("--rounds", type=int, default=5, help="Interleaved rounds.")
    parser.add_argument("--quick", action="store_true",
                        help="8x8x8 inputs, 2 rounds of 3 steps; writes *_quick.json.")
    args = parser.parse_args()
    if args.quick:
        args.image, args.channels, args.steps, args.rounds = 8, 8, 3, 2
    result = run(args.batch, args.image, args.channels, args.steps, args.rounds)
    print(report(result))
    name = "mixed_op_speed_quick" if args.quick else "mixed_op_speed"
    print(f"\nwrote {write_json(name, result)} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
