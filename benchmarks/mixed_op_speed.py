"""Train-step time of a MixedOp supernet against its candidates run alone.

Claims checked:

- softmax mode runs every candidate, so its step should cost about the *sum*
  of the candidates' steps (ratio close to 1.0: the mixing itself is cheap);
- single-path modes (``gumbel_hard``, ``uniform``) run one candidate per step,
  so a step should cost about one candidate's (the mean step time over many
  steps against the mean of the candidates' median step times, since the
  chosen op changes per step), far below softmax;
- ``set_choice(i)`` should cost what candidate ``i`` costs alone (target
  <= 1.3x), in every mode: a training step traced while the choice is fixed
  calls candidate ``i`` directly, no conditional and no one-hot mixture. It is
  measured in softmax, Gumbel and uniform MixedOps over the float candidates,
  and in softmax and Gumbel MixedOps over binary (larq) candidates, whose
  custom-gradient quantizers are what once kept the soft modes on the mixture.

Every model is ``Input -> layer -> GlobalAveragePooling -> Dense(10)``; the
layer is a ``MixedOp`` over the DARTS ops without ``none`` (or over binary
BNAS / BARS ops without ``zeroise`` and the float pools), or one candidate
(the same registered op) alone. A step is one compiled ``tf.function`` with a
``GradientTape`` and an SGD update (``benchmarks.common.train_step_fn``). All
models are traced and warmed up first, then timed in interleaved rounds.

Example:
    python -m benchmarks.mixed_op_speed            # ~5-8 minutes on 2 CPU cores
    python -m benchmarks.mixed_op_speed --quick    # 8x8x8 inputs, 2 rounds of 3 steps
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import searchlayers as sl  # noqa: E402  (Keras-2 guard before TensorFlow)
import tensorflow as tf  # noqa: E402
from searchlayers.layers import BARS_OPS, BNAS_OPS, DARTS_OPS, get_op  # noqa: E402

from benchmarks.common import (  # noqa: E402
    interleaved, per_round, table, train_step_fn, write_json)

keras = sl.keras
CANDIDATES = [op for op in DARTS_OPS if op != "none"]
BINARY = [op for op in dict.fromkeys(BNAS_OPS + BARS_OPS) if op.startswith("bin_")]
SINGLE_PATH = ("gumbel_hard", "uniform")
# The fixed-choice rows: candidate set -> the MixedOp modes measured with set_choice.
FIXED = {"float": (CANDIDATES, ("softmax", "gumbel", "uniform")),
         "binary": (BINARY, ("softmax", "gumbel"))}


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
    candidate fixed by ``set_choice`` in the modes ``FIXED`` lists (the step is
    traced after ``set_choice``, as it is in use).

    Example:
        >>> sorted(setups((8, 8, 4), 4))[:2]
        ['alone avg_pool_3x3', 'alone bin_conv_3x3']
    """
    models = {f"alone {op}": build(get_op(op, channels), shape)
              for op in CANDIDATES + BINARY}
    for mode in ("softmax", "gumbel", "gumbel_hard", "uniform"):
        models[mode] = build(sl.MixedOp(CANDIDATES, mode=mode), shape)
    for candidates, modes in FIXED.values():
        for mode in modes:
            for i, op in enumerate(candidates):
                model = build(sl.MixedOp(candidates, mode=mode), shape)
                [m for m in model.layers if isinstance(m, sl.MixedOp)][0].set_choice(i)
                models[f"{mode} set_choice {op}"] = model
    return models


def paired_ratios(calls, pairs):
    """``{"<mode> set_choice(<op>) / <op>": per-pair ratios}``: each fixed-choice
    step alternates with its op-alone step, ``pairs`` times (one warm-up, then a
    median of 3 steps per side), so a burst of load on a shared machine hits
    both sides of a ratio alike.

    Example:
        >>> paired_ratios({}, 3)
        {}
    """
    out = {}
    for candidates, modes in FIXED.values():
        for mode in modes:
            for op in candidates:
                if f"{mode} set_choice {op}" not in calls:
                    continue
                sides = {"fixed": calls[f"{mode} set_choice {op}"], "alone": calls[f"alone {op}"]}
                t = interleaved(sides, rounds=pairs, steps=3, warmup=1)
                out[f"{mode} set_choice({op}) / {op}"] = (
                    np.array(per_round(t, "fixed")) / np.array(per_round(t, "alone")))
    return out


def run(batch=64, image=16, channels=32, steps=10, rounds=15, pairs=30):
    """Measures every configuration interleaved; returns the JSON-ready result dict.

    Single-path modes change op every step, so they are compared by their mean
    step time; everything else by the median. Ratios are taken per round and
    the median over rounds is reported (with the range). The fixed-choice
    ratios are also measured paired (``paired_ratios``); the worst op per mode
    (``set_choice_max_ratio``) is taken from those.

    Example:
        >>> run(batch=8, image=8, channels=8, steps=2, rounds=1)["ratios"]  # doctest: +SKIP
    """
    start, load = time.time(), os.getloadavg()
    shape = (image, image, channels)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(batch, *shape)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, size=batch).astype("int32"))
    calls = {}
    for name, model in setups(shape, channels).items():
        step = train_step_fn(model)
        calls[name] = lambda step=step: step(x, y).numpy()
    times = interleaved(calls, rounds=rounds, steps=steps)
    paired = paired_ratios(calls, pairs)

    def rounds_of(name):
        return np.array(per_round(times, name, "mean_s" if name in SINGLE_PATH else "median_s"))

    alone = {op: rounds_of(f"alone {op}") for op in CANDIDATES + BINARY}
    floats = np.array([alone[op] for op in CANDIDATES])  # [ops, rounds]
    total, mean = floats.sum(0), floats.mean(0)
    ratio_rounds = {
        "softmax / sum(candidates)": rounds_of("softmax") / total,
        "gumbel / sum(candidates)": rounds_of("gumbel") / total,
        "gumbel_hard / mean(candidate)": rounds_of("gumbel_hard") / mean,
        "uniform / mean(candidate)": rounds_of("uniform") / mean,
        "gumbel_hard / softmax": rounds_of("gumbel_hard") / rounds_of("softmax"),
        "uniform / softmax": rounds_of("uniform") / rounds_of("softmax"),
    }
    fixed_ms = {}
    for candidates, modes in FIXED.values():
        for mode in modes:
            for op in candidates:
                ratio_rounds[f"{mode} set_choice({op}) / {op}"] = (
                    rounds_of(f"{mode} set_choice {op}") / alone[op])
                fixed_ms.setdefault(mode, {})[op] = f"{mode} set_choice {op}"
    ratios = {k: float(np.median(v)) for k, v in ratio_rounds.items()}
    ms = {name: 1e3 * float(np.median(rounds_of(name))) for name in calls}
    return {
        "config": {"batch": batch, "input": list(shape), "steps": steps, "rounds": rounds,
                   "pairs": pairs,
                   "candidates": CANDIDATES, "binary_candidates": BINARY,
                   "fixed_modes": {k: list(m) for k, (_, m) in FIXED.items()},
                   "device": "CPU", "threads": os.cpu_count(),
                   "loadavg_start": list(load), "loadavg_end": list(os.getloadavg()),
                   "timing": "interleaved rounds; median over rounds of per-round ratios"},
        "candidate_ms": {op: ms[f"alone {op}"] for op in CANDIDATES + BINARY},
        "mode_ms": {m: ms[m] for m in ("softmax", "gumbel", "gumbel_hard", "uniform")},
        "set_choice_ms": {m: {op: ms[name] for op, name in ops.items()}
                          for m, ops in fixed_ms.items()},
        "set_choice_paired_ratios": {k: float(np.median(v)) for k, v in paired.items()},
        "set_choice_paired_range": {k: [float(v.min()), float(v.max())]
                                    for k, v in paired.items()},
        "set_choice_max_ratio": {
            f"{kind} {m}": max(float(np.median(paired[f"{m} set_choice({op}) / {op}"]))
                               for op in cands)
            for kind, (cands, modes) in FIXED.items() for m in modes},
        "ratios": ratios,
        "ratio_range": {k: [float(v.min()), float(v.max())] for k, v in ratio_rounds.items()},
        "seconds": time.time() - start,
    }


def report(result):
    """The result as two tables: step times and ratios.

    Example:
        >>> print(report(run(steps=3)))  # doctest: +SKIP
    """
    fixed = result["set_choice_ms"]
    modes = list(fixed)
    rows = [[op, result["candidate_ms"][op], *[fixed[m].get(op, "") for m in modes]]
            for op in result["candidate_ms"]]
    rows += [[f"MixedOp {m}", t, *[""] * len(modes)] for m, t in result["mode_ms"].items()]
    times = table(rows, ["model", "step ms", *[f"{m} set_choice ms" for m in modes]])
    ratios = table([[k, v, *result["ratio_range"][k]] for k, v in result["ratios"].items()],
                   ["ratio", "median", "min", "max"])
    paired = table([[k, v, *result["set_choice_paired_range"][k]]
                    for k, v in result["set_choice_paired_ratios"].items()],
                   ["paired ratio", "median", "min", "max"])
    worst = table([[k, v] for k, v in result["set_choice_max_ratio"].items()],
                  ["set_choice / op alone (paired), worst op", "median ratio"])
    load = result["config"]
    return (f"{times}\n\n{ratios}\n\n{paired}\n\n{worst}\n\nload average (1, 5, 15 min): "
            f"start {load['loadavg_start']}, end {load['loadavg_end']}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image", type=int, default=16)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="Timed steps per round.")
    parser.add_argument("--rounds", type=int, default=15, help="Interleaved rounds.")
    parser.add_argument("--pairs", type=int, default=30,
                        help="Alternations per fixed-choice / op-alone pair.")
    parser.add_argument("--quick", action="store_true",
                        help="8x8x8 inputs, 2 rounds of 3 steps; writes *_quick.json.")
    args = parser.parse_args()
    if args.quick:
        args.image, args.channels, args.steps, args.rounds, args.pairs = 8, 8, 3, 2, 3
    result = run(args.batch, args.image, args.channels, args.steps, args.rounds, args.pairs)
    print(report(result))
    name = "mixed_op_speed_quick" if args.quick else "mixed_op_speed"
    print(f"\nwrote {write_json(name, result)} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
