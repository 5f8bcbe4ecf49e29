"""BNAS Table 1 on digits: conv, dilated conv and separable conv, float vs binary.

BNAS (sec. 4.1) builds a small CNN that repeats one layer type three times,
followed by three fully connected layers, and trains it in floating point and
binarized: convs and dilated convs lose a little accuracy when binarized,
separable convs collapse to chance (nested binary convs accumulate
quantization error). This reproduces the experiment on scikit-learn's digits
(8x8, 10 classes; chance = 10%).

Network: float stem conv 3x3 -> 3 x layer -> flatten -> dense, dense, dense
(logits). Layers (``searchlayers.layers.binary``): binary ``bnas_conv``
(``BN -> sign -> conv -> ReLU``, XNOR per-channel scaling), dilation 2, and
``bnas_sep_conv`` (``BN -> sign -> depthwise -> sign -> 1x1 -> ReLU``); the
float twins drop the signs and use float kernels.

Writes ``benchmarks/results/bnas_table1.json`` and prints the table.

Example:
    python -m benchmarks.bnas_table1 --epochs=30
"""

import time

from absl import app, flags

import numpy as np
import tensorflow as tf

from benchmarks.common import table, write_json
from searchlayers import cost, datasets
from searchlayers._keras import keras
from searchlayers.layers.binary import bnas_conv, bnas_sep_conv

FLAGS = flags.FLAGS
flags.DEFINE_integer("epochs", 30, "Training epochs per network.")
flags.DEFINE_integer("channels", 32, "Channels of every conv layer.")
flags.DEFINE_integer("repeats", 1, "Seeds per cell (mean accuracy reported).")
flags.DEFINE_float("lr", 1e-3, "Adam learning rate.")

L = keras.layers
KINDS = [("conv", 3), ("conv", 5), ("dil_conv", 3), ("dil_conv", 5), ("sep_conv", 3),
         ("sep_conv", 5)]


def float_layer(kind, channels, kernel):
    """The float twin: ``BN -> conv -> ReLU`` (separable: depthwise then 1x1).

    Example:
        >>> float_layer("sep_conv", 8, 3)(tf.ones([1, 8, 8, 4])).shape
        TensorShape([1, 8, 8, 8])
    """
    bn = L.BatchNormalization(center=False, scale=False)
    if kind == "sep_conv":
        convs = [L.DepthwiseConv2D(kernel, padding="same", use_bias=False),
                 L.Conv2D(channels, 1, use_bias=False)]
    else:
        convs = [L.Conv2D(channels, kernel, padding="same", use_bias=False,
                          dilation_rate=2 if kind == "dil_conv" else 1)]
    return keras.Sequential([bn, *convs, L.ReLU()])


def binary_layer(kind, channels, kernel):
    """The binary layer of ``kind`` (BNAS order, XNOR per-channel scaling).

    Example:
        >>> binary_layer("dil_conv", 8, 3)(tf.ones([1, 8, 8, 4])).shape
        TensorShape([1, 8, 8, 8])
    """
    if kind == "sep_conv":
        return bnas_sep_conv(channels, kernel)
    return bnas_conv(channels, kernel, dilation=2 if kind == "dil_conv" else 1)


def network(kind, kernel, binary, channels=32, input_shape=(8, 8, 1), num_classes=10):
    """Stem, three layers of ``kind``, three dense layers (logits).

    Example:
        >>> network("conv", 3, True, channels=8).output_shape
        (None, 10)
    """
    make = binary_layer if binary else float_layer
    inputs = keras.Input(input_shape)
    x = L.Conv2D(channels, 3, padding="same", use_bias=False)(inputs)
    for _ in range(3):
        x = make(kind, channels, kernel)(x)
    x = L.Flatten()(x)
    x = L.Dense(128, activation="relu")(x)
    x = L.Dense(64, activation="relu")(x)
    return keras.Model(inputs, L.Dense(num_classes)(x), name=f"{kind}_{kernel}")


def train_and_test(model, epochs, lr):
    """Trains on digits' train split; returns the test accuracy.

    Example:
        >>> train_and_test(network("conv", 3, True, 8), 1, 1e-3) >= 0  # doctest: +SKIP
        True
    """
    model.compile(keras.optimizers.Adam(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(datasets.load("digits", "train", batch_size=64), epochs=epochs, verbose=0)
    _, accuracy = model.evaluate(datasets.load("digits", "test", batch_size=256), verbose=0)
    return float(accuracy)


def run(epochs=30, channels=32, repeats=1, lr=1e-3):
    """All cells of the table; returns ``{"rows": [...], ...}``.

    Example:
        >>> run(epochs=1, channels=8)["rows"][0]["layer"]  # doctest: +SKIP
        'conv 3x3'
    """
    rows = []
    for kind, kernel in KINDS:
        row = {"layer": f"{kind} {kernel}x{kernel}"}
        for binary in (False, True):
            accs = []
            for seed in range(repeats):
                tf.keras.utils.set_random_seed(seed)
                model = network(kind, kernel, binary, channels)
                accs.append(train_and_test(model, epochs, lr))
            key = "binary" if binary else "float"
            row[f"{key}_acc"] = float(np.mean(accs))
            total = cost.profile(model).total
            row[f"{key}_binary_macs"] = int(total.binary_macs)
            row[f"{key}_float_macs"] = int(total.float_macs)
        rows.append(row)
    return {"rows": rows, "epochs": epochs, "channels": channels, "repeats": repeats,
            "dataset": "digits", "chance": 0.1}


def main(argv):
    del argv
    start = time.time()
    result = run(FLAGS.epochs, FLAGS.channels, FLAGS.repeats, FLAGS.lr)
    result["seconds"] = time.time() - start
    path = write_json("bnas_table1", result)
    print(table([[r["layer"], 100 * r["float_acc"], 100 * r["binary_acc"],
                  r["binary_binary_macs"]] for r in result["rows"]],
                ["layer", "FP acc %", "binary acc %", "binary MACs"]))
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
