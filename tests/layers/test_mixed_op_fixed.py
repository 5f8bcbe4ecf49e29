"""A fixed choice in training: the chosen candidate alone, for float and binary ops.

A training step traced while a ``MixedOp`` choice is fixed calls that candidate
directly (no ``switch_case`` / ``cond``, which larq's custom-gradient
quantizers cannot always differentiate through in TF 2.21). The reference is
the chosen op called alone: same output, same gradient, same compute ops.
"""

import collections

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl

K = sl.keras
MODES = ["softmax", "gumbel", "gumbel_hard", "uniform", "fair"]
BINARY = ["bin_shortcut", "bin_conv_3x3_shortcut", "bin_sep_conv_3x3", "zeroise"]
FLOAT = ["skip_connect", "sep_conv_3x3", "max_pool_3x3", "dil_conv_3x3"]
CONDITIONALS = {"Case", "StatelessCase", "If", "StatelessIf"}
COMPUTE = {"Conv2D", "DepthwiseConv2dNative", "Sign", "MaxPool", "AvgPool",
           "FusedBatchNormV3", "Conv2DBackpropFilter", "Conv2DBackpropInput"}


def _step(fn, variables):
    """A traced ``x -> (y, grads of sum(y^2))`` and its concrete graph's op types."""

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            y = fn(x)
            loss = tf.reduce_sum(y**2)
        return y, tape.gradient(loss, variables)

    return step


def _op_types(step, x):
    graph = step.get_concrete_function(x).graph
    return collections.Counter(op.type for op in graph.get_operations())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("candidates,index", [(BINARY, 1), (BINARY, 2), (FLOAT, 1)],
                         ids=["bin_conv_shortcut", "bin_sep_conv", "sep_conv"])
def test_fixed_training_step_is_the_chosen_op_alone(mode, candidates, index):
    x = tf.random.normal([2, 6, 6, 8], seed=4)
    op = sl.MixedOp(candidates, mode=mode, seed=2)
    op.build(x.shape)
    op.set_choice(index)
    chosen = op.ops[index]
    others = [w for i, o in enumerate(op.ops) if i != index for w in o.trainable_weights]
    alone = _step(lambda x: chosen(x, training=True), chosen.trainable_weights)
    fixed = _step(lambda x: op(x, training=True), chosen.trainable_weights + others
                  + [w for w in op.arch_weights if w.trainable])

    y_ref, g_ref = alone(x)
    y, grads = fixed(x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-6)
    n = len(chosen.trainable_weights)
    assert n > 0
    for g, r in zip(grads[:n], g_ref):
        np.testing.assert_allclose(g, r, rtol=1e-6, atol=1e-6)
    assert all(g is None for g in grads[n:])  # no other candidate, no logit, took part

    types, ref_types = _op_types(fixed, x), _op_types(alone, x)
    assert not CONDITIONALS & set(types)
    assert {t: types[t] for t in COMPUTE} == {t: ref_types[t] for t in COMPUTE}


@pytest.mark.parametrize("mode", MODES)
def test_fixed_training_step_runs_one_candidate(mode):
    executed = []

    def probe(tag):
        def fn(x):
            tf.py_function(lambda: executed.append(tag) or 0, [], tf.int32)
            return x * float(tag + 1)

        return K.layers.Lambda(fn, name=f"fixed_probe_{mode}_{tag}")

    op = sl.MixedOp([probe(i) for i in range(3)], mode=mode, seed=1)
    x = tf.ones([1, 4, 4, 2])
    op.build(x.shape)
    op.set_choice(2)
    step = tf.function(lambda x: op(x, training=True))
    for _ in range(3):
        executed.clear()
        np.testing.assert_array_equal(step(x), 3.0 * x)
        assert executed == [2]


@pytest.mark.parametrize("mode", ["softmax", "uniform"])
def test_step_traced_with_one_choice_refuses_another(mode):
    """The specialised step checks the choice variable: a stale trace fails with a
    message saying to retrace, and a new trace follows the new choice."""
    x = tf.random.normal([2, 6, 6, 8], seed=1)
    op = sl.MixedOp(BINARY, mode=mode)
    op.build(x.shape)
    op.set_choice(1)
    step = tf.function(lambda x: op(x, training=True))
    step(x)
    op.set_choice(0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="trace the step again"):
        step(x)
    fresh = tf.function(lambda x: op(x, training=True))
    np.testing.assert_allclose(fresh(x), op.ops[0](x, training=True), atol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_step_traced_free_follows_later_choices(mode):
    """A step traced while free reads the choice variable: fixing it afterwards
    gives exactly the chosen op (binary ops too), freeing it again still trains."""
    x = tf.random.normal([2, 6, 6, 8], seed=3)
    op = sl.MixedOp(BINARY, mode=mode, seed=5)
    op.build(x.shape)
    weights = op.ops[1].trainable_weights
    step = _step(lambda x: op(x, training=True), weights)
    step(x)
    op.set_choice(1)
    y, grads = step(x)
    np.testing.assert_allclose(y, op.ops[1](x, training=True), rtol=1e-6, atol=1e-6)
    assert all(np.all(np.isfinite(g)) for g in grads)
    op.set_choice(None)
    for _ in range(4):  # single-path modes draw bin_conv_3x3_shortcut among others
        y, grads = step(x)
        assert np.all(np.isfinite(y))


def test_fixed_choice_trains_under_fit():
    """Keras fit on a fixed binary supernet edge updates only the chosen op."""
    inputs = K.Input((6, 6, 8))
    edge = sl.MixedOp(BINARY, mode="gumbel", name="edge")
    outputs = K.layers.Dense(3)(K.layers.GlobalAveragePooling2D()(edge(inputs)))
    model = K.Model(inputs, outputs)
    edge.set_choice(1)
    model.compile(K.optimizers.SGD(0.1),
                  K.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [w.numpy() for o in edge.ops for w in o.trainable_weights]
    x = np.random.default_rng(0).normal(size=(8, 6, 6, 8)).astype("float32")
    model.fit(x, np.arange(8) % 3, epochs=1, batch_size=4, verbose=0)
    after = [w.numpy() for o in edge.ops for w in o.trainable_weights]
    owner = [i for i, o in enumerate(edge.ops) for _ in o.trainable_weights]
    changed = [i for i, b, a in zip(owner, before, after) if not np.array_equal(b, a)]
    assert changed and set(changed) == {1}
