import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from conftest import tiny_supernet

K = sl.keras
MODES = ["softmax", "gumbel", "gumbel_hard", "uniform", "fair"]


def test_softmax_output_is_weighted_sum_of_candidates():
    x = tf.random.uniform([2, 6, 6, 4], seed=1)
    op = sl.MixedOp(["skip_connect", "max_pool_3x3", "conv_3x3", "none"], temperature=2.0)
    y = op(x, training=False)
    p = sl.relax.softmax(op.arch("logits"), 2.0).numpy()
    expected = sum(p[i] * op.ops[i](x, training=False) for i in range(3))  # none adds 0
    np.testing.assert_allclose(y, expected, atol=1e-5)


@pytest.mark.parametrize("mode", ["gumbel_hard", "uniform", "fair"])
def test_single_path_modes_run_only_the_chosen_candidate(mode):
    # Eager calls: only the executed branch of tf.switch_case runs Python code
    # when not traced, so count executions with a tf.py_function side effect.
    executed = []

    def probe(tag):
        def fn(x):
            tf.py_function(lambda: executed.append(tag) or 0, [], tf.int32)
            return x

        return K.layers.Lambda(fn, name=f"probe_{tag}")

    op = sl.MixedOp([probe(i) for i in range(3)], mode=mode, seed=3)
    x = tf.ones([1, 4, 4, 2])
    step = tf.function(lambda x: op(x, training=True))
    for _ in range(9):
        executed.clear()
        step(x)
        assert len(executed) == 1, executed


def test_softmax_mode_runs_every_candidate():
    executed = []

    def probe(tag):
        def fn(x):
            tf.py_function(lambda: executed.append(tag) or 0, [], tf.int32)
            return x

        return K.layers.Lambda(fn, name=f"probe_all_{tag}")

    op = sl.MixedOp([probe(i) for i in range(3)], mode="softmax")
    tf.function(lambda x: op(x, training=True))(tf.ones([1, 4, 4, 2]))
    assert sorted(executed) == [0, 1, 2]


@pytest.mark.parametrize("mode", ["softmax", "gumbel"])
def test_fixed_choice_runs_only_that_candidate_in_soft_modes(mode):
    """set_choice is a variable: one traced inference call runs candidate 1 alone
    while it is fixed, and every candidate again once it is released. (Training
    steps traced while fixed call the op directly; see test_mixed_op_fixed.py.)"""
    executed = []

    def probe(tag):
        def fn(x):
            tf.py_function(lambda: executed.append(tag) or 0, [], tf.int32)
            return x * (tag + 1.0)

        return K.layers.Lambda(fn, name=f"probe_fixed_{mode}_{tag}")

    op = sl.MixedOp([probe(i) for i in range(3)], mode=mode)
    x = tf.ones([1, 4, 4, 2])
    op.build(x.shape)
    step = tf.function(lambda x: op(x, training=False))
    op.set_choice(1)
    np.testing.assert_array_equal(step(x), 2.0 * x)  # exactly candidate 1's output
    assert executed == [1]
    executed.clear()
    op.set_choice(None)
    step(x)
    assert sorted(executed) == [0, 1, 2]


@pytest.mark.parametrize("choice", [None, 0])
def test_fixed_choice_trains_binary_ops(choice):
    """The architecture gradient through larq's custom-gradient quantizers (a BARS
    edge); with a fixed choice the training output is exactly that op's and the
    logits take no part (no gradient)."""
    op = sl.MixedOp(["bin_conv_3x3_shortcut", "bin_shortcut", "zeroise"], mode="gumbel")
    x = tf.random.normal([2, 6, 6, 8], seed=4)
    op.build(x.shape)
    op.set_choice(choice)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            y = op(x, training=True)
            loss = tf.reduce_sum(y**2)
        return y, tape.gradient(loss, [op.arch("logits"), op.ops[0].trainable_weights[0]])

    y, (logits_grad, kernel_grad) = step(x)
    assert np.any(kernel_grad.numpy() != 0)
    if choice is None:
        assert np.all(np.isfinite(logits_grad))
    else:
        assert logits_grad is None
        np.testing.assert_allclose(y, op.ops[0](x, training=True), rtol=1e-6, atol=1e-6)


def test_gumbel_hard_gradient_reaches_logits_and_only_chosen_weights():
    op = sl.MixedOp(["conv_3x3", "conv_5x5"], mode="gumbel_hard", seed=5)
    x = tf.random.uniform([2, 6, 6, 3], seed=2)
    op(x)
    with tf.GradientTape() as tape:
        y = op(x, training=True)
        loss = tf.reduce_sum(y**2)
    grads = tape.gradient(loss, [op.arch("logits")] + op.trainable_weights[1:])
    assert np.any(grads[0].numpy() != 0)


@pytest.mark.parametrize("mode", MODES)
def test_sequential_and_functional(mode):
    seq = K.Sequential(
        [
            K.Input((8, 8, 1)),
            K.layers.Conv2D(4, 3, padding="same"),
            sl.MixedOp(["skip_connect", "sep_conv_3x3", "avg_pool_3x3"], mode=mode),
            K.layers.GlobalAveragePooling2D(),
            K.layers.Dense(10),
        ]
    )
    func = tiny_supernet(mode)
    x = np.random.rand(8, 8, 8, 1).astype("f")
    y = np.random.randint(0, 10, 8)
    for model in (seq, func):
        model.compile("adam", K.losses.SparseCategoricalCrossentropy(from_logits=True))
        hist = model.fit(x, y, epochs=2, verbose=0)
        assert np.all(np.isfinite(hist.history["loss"]))
        assert model.predict(x, verbose=0).shape == (8, 10)


def test_candidate_shape_mismatch_names_candidates():
    op = sl.MixedOp([K.layers.Conv2D(4, 1, name="c4"), K.layers.Conv2D(6, 1, name="c6")], name="bad")
    with pytest.raises(ValueError, match=r"MixedOp 'bad'.*c4: .*4\).*c6: .*6\)"):
        op(tf.ones([1, 4, 4, 2]))


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"unknown candidate op 'sep_conv_9x9'.*Registered ops:.*skip_connect"):
        sl.MixedOp(["skip_connect", "sep_conv_9x9"])
    with pytest.raises(ValueError, match=r"unknown mode 'argmax'.*softmax, gumbel"):
        sl.MixedOp(["skip_connect"], mode="argmax")
    with pytest.raises(ValueError, match=r"MixedOp 'hot'.*temperature must be a finite number >= 1e-06, got 0.0"):
        sl.MixedOp(["skip_connect"], temperature=0, name="hot")
    with pytest.raises(TypeError, match="op name or a Keras layer"):
        sl.MixedOp([3])
    op = sl.MixedOp(["skip_connect", "none"])
    op(tf.ones([1, 2, 2, 1]))
    with pytest.raises(ValueError, match=r"choice must be an integer index in 0..1 .*got 5"):
        op.set_choice(5)


def test_unknown_channels_is_clear_error():
    op = sl.MixedOp(["conv_3x3"], name="nochan")
    with pytest.raises(ValueError, match="nochan.*channel dimension is unknown"):
        op.build(tf.TensorShape([None, 4, 4, None]))


def test_register_user_op():
    @sl.register_op("user_conv_1x1")
    def _factory(channels, strides):
        return K.layers.Conv2D(channels, 1, strides, name="user_conv")

    op = sl.MixedOp(["user_conv_1x1", "skip_connect"])
    assert op(tf.ones([1, 4, 4, 3])).shape == (1, 4, 4, 3)
    assert "user_conv_1x1" in sl.op_names()


def test_arch_key_sharing_and_replicas_agree_on_noise():
    model = tiny_supernet("gumbel")
    groups = sl.tie_arch_variables(model)
    a, b = groups["n"]
    assert a.arch("logits") is b.arch("logits")
    assert len(sl.arch_variables(model)) == 2  # shared 'n' + edge_c
    # The sample step advances once per training call and seeds the noise.
    before = int(a.sample_step.numpy())
    a(tf.ones([1, 8, 8, 8]), training=True)
    assert int(a.sample_step.numpy()) == before + 1


def test_expected_cost_is_differentiable_and_matches_candidates():
    from searchlayers import cost

    op = sl.MixedOp(["skip_connect", "conv_3x3"], name="costed")
    op(tf.ones([1, 6, 6, 4]))
    op.arch("logits").assign([0.0, 0.0])
    conv_macs = 6 * 6 * 4 * 4 * 9
    with tf.GradientTape() as tape:
        expected = op.cost().float_macs
    np.testing.assert_allclose(float(expected), 0.5 * conv_macs, rtol=1e-6)
    grad = tape.gradient(expected, op.arch("logits")).numpy()
    np.testing.assert_allclose(grad, [-0.25 * conv_macs, 0.25 * conv_macs], rtol=1e-5)
    assert cost.layer_cost(op, [1, 6, 6, 4]).float_macs is not None


def test_none_candidate_on_a_feature_vector():
    """'none' beside Dense candidates on a [batch, features] input (it raised an
    IndexError: its shape assumed an image)."""
    inputs = sl.keras.Input((16,))
    edge = sl.MixedOp([sl.keras.layers.Dense(8, name="fc"), "identity", "none"], name="e")
    model = sl.keras.Model(inputs, edge(sl.keras.layers.Dense(8)(inputs)))
    x = np.random.default_rng(0).normal(size=(4, 16)).astype("float32")
    assert model(x).shape == (4, 8)
    edge.arch("logits").assign([0.0, 0.0, 5.0])
    child = sl.derive(model)
    assert child.architecture.names == {"e": "none"}
    np.testing.assert_array_equal(child(x), np.zeros((4, 8), np.float32))


def test_a_registered_op_may_be_a_functional_model():
    """Naming an op after its edge left a functional op's layers alone (renaming
    them broke its config, and derive)."""
    from searchlayers.layers import ops

    def factory(channels, strides):
        x = sl.keras.Input((None, None, channels))
        return sl.keras.Model(x, sl.keras.layers.Conv2D(channels, 3, strides, "same")(x))

    ops.register_op("test_functional_op", factory)
    model = sl.keras.Sequential([sl.keras.Input((8, 8, 4)),
                                 sl.MixedOp(["test_functional_op", "skip_connect"], name="e")])
    child = sl.derive(model, architecture={"e": 0})
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 4)).astype("float32")
    sl.apply_architecture(model, child.architecture)
    np.testing.assert_allclose(child(x), model(x), atol=1e-6)
