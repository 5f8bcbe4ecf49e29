"""Test set-up: Keras 2, quiet TensorFlow, and two logical CPUs for
MirroredStrategy tests (logical devices must exist before TF initializes)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import searchlayers  # noqa: E402,F401  (Keras-2 guard before TensorFlow use)
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
except RuntimeError:  # already initialized by an earlier import
    pass

# No graph optimization (grappler) in the test processes: tests trace many small
# graphs and run each a few times, where optimizing a graph costs more than it
# saves (the suite took about 7 % longer with it). Users run with it on; that it
# changes nothing our searches compute is tests/test_graph_optimizer.py.
tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


import numpy as np  # noqa: E402
import pytest  # noqa: E402


class StopAt(searchlayers.keras.callbacks.Callback):
    """Interrupts ``fit`` at the start of ``epoch`` (a stopped search, for the
    BackupAndRestore resume tests)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("interrupted")


def mirrored_strategy():
    """MirroredStrategy over the two logical CPUs, reducing through one device.

    Not collectives: collective instance keys of two strategies made in one
    process (every test module makes its own) collide, and a reduction then
    mixes up tensors of different shapes.
    """
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    assert len(devices) == 2, "conftest sets up two logical CPUs"
    return tf.distribute.MirroredStrategy(devices, tf.distribute.ReductionToOneDevice())


def tiny_supernet(mode="softmax", channels=8, ops=None, shared=True, seed=0):
    """Conv stem -> two edges sharing one key -> Add -> strided edge -> head."""
    K = searchlayers.keras
    ops = ops or ["none", "skip_connect", "sep_conv_3x3", "max_pool_3x3", "conv_3x3"]
    key = "n" if shared else None
    x = K.Input((8, 8, 1), name="image")
    h = K.layers.Conv2D(channels, 3, padding="same", name="stem")(x)
    a = searchlayers.MixedOp(ops, mode=mode, arch_key=key, seed=seed, name="edge_a")(h)
    b = searchlayers.MixedOp(ops, mode=mode, arch_key=key, seed=seed + 1, name="edge_b")(h)
    s = K.layers.Add(name="node")([a, b, h])
    c = searchlayers.MixedOp(
        [o for o in ops if o != "none"], mode=mode, strides=2, seed=seed + 2, name="edge_c"
    )(s)
    y = K.layers.Dense(10, name="head")(K.layers.GlobalAveragePooling2D()(c))
    return K.Model(x, y, name=f"tiny_{mode}")


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.random((32, 8, 8, 1), dtype=np.float32), rng.integers(0, 10, 32)
