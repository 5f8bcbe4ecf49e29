"""What folding FiGS masks into BatchNorm would save: a measured prototype.

``figs_overhead`` finds masked networks 1.14-1.26x the plain step, against a
1.05x target. A mask after ``BN -> ReLU`` costs a multiply over the activation
forward and two multiplies and a reduction backward. For a linear or ReLU
activation and a mask ``m >= 0`` the same output is ``relu(BN(x; gamma * m,
beta * m))``: the mask scales BatchNorm's per-channel scale and offset, vectors,
and the passes over the activation disappear. The library does not do this
yet (it needs the BN to read its mask: see issue 14's notes); this benchmark
measures what it would give, so the design can be judged on numbers.

Three versions of the ``models.figs`` ResNet, all with the same hand-written
training-mode BatchNorm (``tf.nn.fused_batch_norm``), so only the mask differs:

* ``plain``: no masks;
* ``folded``: each BN owns a ``FiGSMask``, draws its training mask (FiGS eq. 2,
  the library's ``FiGSMask.mask``) and scales ``gamma`` and ``beta`` with it;
* ``after``: the library's ``FiGSMask`` after each BN (+ ReLU), where
  ``insert_masks`` puts it.

A step is ``benchmarks.common.train_step_fn`` (SGD over every trainable
variable); the sides run interleaved in one process and the ratio is the
median over rounds of the per-round ratio of median step times.

Example:
    python -m benchmarks.figs_fold            # about a minute on 2 CPU cores

Last run (15 rounds of 20 steps, 2 cores): 8x8 batch 128 folded 1.06x, after
1.19x; 32x32x3 batch 64 folded 1.00x, after 1.16x (``results/figs_fold.json``).
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
import numpy as np  # noqa: E402

import searchlayers as sl  # noqa: E402  (Keras-2 guard before TensorFlow)
import tensorflow as tf  # noqa: E402

from benchmarks.common import (  # noqa: E402
    interleaved, per_round, table, train_step_fn, write_json)

FLAGS = flags.FLAGS
flags.DEFINE_integer("rounds", 15, "Interleaved rounds per configuration (8x8 is noisy).")
flags.DEFINE_integer("steps", 20, "Timed steps per side per round.")

K = sl.keras
L = K.layers
SIDES = ("plain", "folded", "after")
# (input shape, batch): figs_overhead's digits-sized and CIFAR-sized ResNet
CONFIGS = [((8, 8, 1), 128), ((32, 32, 3), 64)]


class _BatchNorm(L.Layer):
    """Training-mode BatchNorm; with ``masked``, the mask of its own ``FiGSMask``
    (drawn by the library: ``FiGSMask.mask``) scales gamma and beta."""

    def __init__(self, masked=False, **kwargs):
        super().__init__(**kwargs)
        self.mask = sl.FiGSMask() if masked else None

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.gamma = self.add_weight("gamma", [channels], initializer="ones")
        self.beta = self.add_weight("beta", [channels], initializer="zeros")
        self.mean = self.add_weight("mean", [channels], initializer="zeros", trainable=False)
        self.var = self.add_weight("var", [channels], initializer="ones", trainable=False)
        if self.mask is not None:
            self.mask.build(input_shape)

    def call(self, x):
        gamma, beta = self.gamma, self.beta
        if self.mask is not None:
            m = self.mask.mask(training=True)
            gamma, beta = gamma * m, beta * m
        y, mean, var = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=1e-3)
        self.mean.assign(0.9 * self.mean + 0.1 * mean)
        self.var.assign(0.9 * self.var + 0.1 * var)
        return y


def resnet(side, shape, stages=((16, 1, 2), (32, 2, 2)), stem=16):
    """``models.figs.resnet``'s layout with ``_BatchNorm``; masks as ``side`` says."""
    def conv_bn(x, filters, kernel, strides=1, relu=True):
        x = L.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
        x = _BatchNorm(masked=side == "folded")(x)
        x = L.ReLU()(x) if relu else x
        return sl.FiGSMask()(x) if side == "after" else x

    inputs = K.Input(shape)
    x = conv_bn(inputs, stem, 3)
    for filters, stride, blocks in stages:
        for b in range(blocks):
            strides = stride if b == 0 else 1
            h = conv_bn(conv_bn(x, filters, 3, strides), filters, 3, relu=False)
            if strides != 1 or x.shape[-1] != filters:
                x = conv_bn(x, filters, 1, strides, relu=False)
            x = L.ReLU()(L.Add()([x, h]))
    outputs = L.Dense(10)(L.GlobalAveragePooling2D()(x))
    return K.Model(inputs, outputs)


def measure(shape, batch, rounds, steps):
    """Interleaved step times of the three sides on one input size."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((batch, *shape), dtype=np.float32))
    y = tf.constant(rng.integers(0, 10, batch).astype("int32"))
    fns = {side: train_step_fn(resnet(side, shape)) for side in SIDES}
    times = interleaved({s: (lambda f=f: f(x, y).numpy()) for s, f in fns.items()},
                        rounds=rounds, steps=steps)
    times = {s: per_round(times, s) for s in SIDES}
    ratios = {s: [t / p for t, p in zip(times[s], times["plain"])] for s in SIDES[1:]}
    return {"input": list(shape), "batch": batch,
            "step_ms": {s: 1e3 * statistics.median(t) for s, t in times.items()},
            "ratio": {s: statistics.median(r) for s, r in ratios.items()},
            "ratio_range": {s: [min(r), max(r)] for s, r in ratios.items()}}


def main(argv):
    del argv
    start = time.time()
    results = [measure(shape, batch, FLAGS.rounds, FLAGS.steps) for shape, batch in CONFIGS]
    rows = [["x".join(map(str, r["input"])) + f" b{r['batch']}", r["step_ms"]["plain"],
             r["step_ms"]["folded"], r["step_ms"]["after"], r["ratio"]["folded"],
             "{:.2f}-{:.2f}".format(*r["ratio_range"]["folded"]), r["ratio"]["after"],
             "{:.2f}-{:.2f}".format(*r["ratio_range"]["after"])] for r in results]
    print(table(rows, ["ResNet input", "plain ms", "folded ms", "after ms", "folded/plain",
                       "(rounds)", "after/plain", "(rounds)"]))
    path = write_json("figs_fold", {
        "config": {"rounds": FLAGS.rounds, "steps": FLAGS.steps, "device": "CPU",
                   "threads": os.cpu_count()},
        "results": results, "load_average": os.getloadavg(), "seconds": time.time() - start})
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
