"""Distributed search within one trial: ``SearchModel`` under MirroredStrategy
on the two logical CPUs of conftest.

Reference: the same search on one device with the same seed and the same
global batches. The replicas see half a batch each; Keras scales the data loss
by 1 / replicas and sums the gradients, Gumbel noise is seeded by the shared
``sample_step`` (``ONLY_FIRST_REPLICA`` aggregation), so without batch
statistics the mirrored search is the single-device search up to float
rounding. BatchNormalization in training mode normalizes with each replica's
own half-batch statistics, which changes the gradients; synchronized
BatchNormalization (global-batch statistics) removes that difference.
"""

import contextlib

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from conftest import mirrored_strategy

K = sl.keras
LOSS = K.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.fixture(scope="module")
def strategy():
    return mirrored_strategy()


sl.register_op("plain_conv_3x3", lambda c, s: K.layers.Conv2D(c, 3, s, padding="same"))
OPS = ["none", "skip_connect", "plain_conv_3x3"]


def _supernet(batchnorm=None):
    """Stem (optionally BatchNorm) -> two Gumbel edges sharing a key -> head."""
    x = K.Input((8, 8, 1))
    h = K.layers.Conv2D(4, 3, padding="same", name="stem")(x)
    if batchnorm is not None:
        h = K.layers.BatchNormalization(synchronized=batchnorm == "sync", name="bn")(h)
    a = sl.MixedOp(OPS, mode="gumbel", arch_key="e", seed=3, name="edge_a")(h)
    b = sl.MixedOp(OPS, mode="gumbel", arch_key="e", seed=4, name="edge_b")(a)
    c = sl.MixedOp(OPS, mode="gumbel", seed=5, name="edge_c")(b)
    y = K.layers.Dense(10, name="head")(K.layers.GlobalAveragePooling2D()(c))
    return K.Model(x, y)


def _pairs(batch=16, n=64):
    rng = np.random.default_rng(0)
    x = rng.random((2 * n, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 10, 2 * n)
    train = tf.data.Dataset.from_tensor_slices((x[:n], y[:n])).batch(batch)
    val = tf.data.Dataset.from_tensor_slices((x[n:], y[n:])).batch(batch)
    return tf.data.Dataset.zip((train, val))


def _search(strategy=None, batchnorm=None, epochs=1, arch_optimizer="adam"):
    """A bilevel search with an additive cost term and an entropy term."""
    K.utils.set_random_seed(0)
    scope = strategy.scope() if strategy else contextlib.nullcontext()
    with scope:
        supernet = _supernet(batchnorm)
        arch_optimizer = (K.optimizers.Adam(0.05) if arch_optimizer == "adam"
                          else K.optimizers.SGD(10.0))
        model = sl.SearchModel(supernet, arch_optimizer=arch_optimizer)
        model.compile(K.optimizers.SGD(0.05), LOSS)
    cbs = [sl.FLOPsRegularizer(strength=1e-4), sl.EntropyRegularizer(start=0.1)]
    history = model.fit(_pairs(), epochs=epochs, verbose=0, callbacks=cbs)
    logits = np.concatenate([v.numpy().ravel() for v in sl.arch_variables(supernet)])
    return supernet, logits, history.history["loss"]


def test_mirrored_search_equals_single_device_search(strategy):
    single, single_logits, single_loss = _search()
    mirrored, mirrored_logits, mirrored_loss = _search(strategy)
    assert np.abs(single_logits).max() > 0.05  # the search moved the logits
    np.testing.assert_allclose(mirrored_logits, single_logits, atol=1e-5)
    np.testing.assert_allclose(mirrored_loss, single_loss, rtol=1e-5)  # not halved
    assert sl.choose(mirrored).choices == sl.choose(single).choices
    for var in sl.arch_variables(mirrored):  # one architecture on both replicas
        np.testing.assert_array_equal(var.values[0].numpy(), var.values[1].numpy())


def test_batchnorm_statistics_are_the_only_difference(strategy):
    """With SGD on the logits (Adam's per-coordinate normalization would hide
    the gradient differences) the logits' change shows the gradients."""
    _, single, _ = _search(batchnorm="local", arch_optimizer="sgd")
    _, local, _ = _search(strategy, batchnorm="local", arch_optimizer="sgd")
    _, synced, _ = _search(strategy, batchnorm="sync", arch_optimizer="sgd")
    moved = np.abs(single).max()  # ~4 after one epoch
    local_error, synced_error = np.abs(local - single).max(), np.abs(synced - single).max()
    # Per-replica (half-batch) statistics change the gradients (measured: 0.26% of
    # the logits' movement) ...
    assert local_error > 1e-3 * moved
    # ... and only they do: global-batch statistics give the single-device search
    # (measured: 2e-7) up to float rounding.
    assert synced_error < 1e-5 * moved
    assert local_error > 100 * synced_error


class _Logits(K.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.values = []

    def on_epoch_end(self, epoch, logs=None):
        self.values.append(np.concatenate(
            [v.numpy().ravel() for v in sl.arch_variables(self.model.model)]))


def test_arch_warmup_under_mirrored_strategy(strategy):
    record = _Logits()
    with strategy.scope():
        supernet = _supernet()
    initial = np.concatenate([v.numpy().ravel() for v in sl.arch_variables(supernet)])
    with strategy.scope():
        model = sl.SearchModel(supernet, arch_optimizer=K.optimizers.Adam(0.05))
        model.compile(K.optimizers.SGD(0.05), LOSS)
    model.fit(_pairs(), epochs=2, verbose=0, callbacks=[sl.ArchWarmup(1), record])
    np.testing.assert_array_equal(record.values[0], initial)  # frozen in epoch 0
    assert np.abs(record.values[1] - initial).max() > 0.01  # trains from epoch 1
