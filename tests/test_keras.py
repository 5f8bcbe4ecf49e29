"""``searchlayers._keras``' layer mixins: a search layer joins a functional model
by its ``compute_output_shape`` (``ShapeOnlyConstruction``), with the shape and
dtype its call gives."""

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from searchlayers.layers.base import SearchLayer
from searchlayers.layers.entrannas import EnTranCell

K = sl.keras


class Traced(K.layers.Layer):
    """A candidate op that counts the times its ``call`` is traced or run."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = 0

    def call(self, x):
        self.calls += 1
        return 2.0 * x

    def compute_output_shape(self, input_shape):
        return input_shape


def test_connecting_a_mixed_op_does_not_trace_its_candidates():
    ops = [Traced(name="a"), Traced(name="b")]
    inputs = K.Input((4, 4, 3))
    model = K.Model(inputs, sl.MixedOp(ops)(inputs))
    assert [op.calls for op in ops] == [0, 0]  # built by MixedOp.build, not called
    assert all(op.built for op in ops)
    model(np.ones([1, 4, 4, 3], "float32"))  # a real call runs both (softmax mixture)
    assert [op.calls for op in ops] == [1, 1]


KINDS = ("depth_gate", "entrannas_cell", "figs_mask", "mixed_op", "width_gate")


def _search_layers():
    """(layer, input KerasTensors, eager inputs) of every search layer kind (``KINDS``)."""
    x4 = np.random.default_rng(0).random((2, 8, 8, 4)).astype("float32")
    return {
        "mixed_op": (sl.MixedOp(["sep_conv_3x3", "max_pool_3x3", "none"], channels=4,
                                strides=2), K.Input((8, 8, 4)), x4),
        "figs_mask": (sl.FiGSMask(), K.Input((8, 8, 4)), x4),
        "width_gate": (sl.WidthGate([0.5, 1.0]), K.Input((8, 8, 4)), x4),
        "depth_gate": (sl.GumbelDepthGate(), [K.Input((8, 8, 4)) for _ in range(3)],
                       [x4] * 3),
        "entrannas_cell": (EnTranCell(steps=2, reduction=True,
                                      candidates=["skip_connect", "sep_conv_3x3"]),
                           [K.Input((8, 8, 4)), K.Input((8, 8, 4))], [x4, x4]),
    }


@pytest.mark.parametrize("kind", KINDS)
def test_functional_output_has_the_shape_and_dtype_of_the_call(kind):
    layers = _search_layers()
    assert sorted(layers) == list(KINDS)
    layer, inputs, values = layers[kind]
    symbolic = layer(inputs)
    for training in (False, True):
        out = layer(values, training=training)
        assert symbolic.shape.as_list() == [None, *out.shape[1:]], (kind, training)
        assert symbolic.dtype == out.dtype
    model = K.Model(inputs, symbolic)
    assert model(values).shape == out.shape


def test_mixed_precision_output_dtype_is_the_compute_dtype():
    K.mixed_precision.set_global_policy("mixed_float16")
    try:
        inputs = K.Input((4, 4, 2))
        op = sl.MixedOp(["skip_connect", "avg_pool_3x3"])
        symbolic = op(inputs)
        assert symbolic.dtype == tf.float16 == op(tf.ones([1, 4, 4, 2])).dtype
    finally:
        K.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("network", ["bars", "entrannas_dst"])
def test_mixed_precision_architecture_state_stays_float32(network):
    """Under mixed_float16 the architecture variables, temperatures and choices
    are not autocast (a float16 read ties near logits): supernets whose gates
    and DST thresholds read them in float32 train, with float16 outputs."""
    from models import bars, entrannas

    K.mixed_precision.set_global_policy("mixed_float16")
    try:
        K.utils.set_random_seed(0)
        model = (bars.bars_supernet((8, 8, 1), 10, channels=4, stages=1, cells=1, steps=1)
                 if network == "bars" else
                 entrannas.entrannas_supernet((8, 8, 1), 10, channels=4, cells=3, steps=2,
                                              dst=True))
        sl.tie_arch_variables(model)
        with tf.GradientTape() as tape:
            y = model(tf.random.uniform([4, 8, 8, 1]), training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32)) + tf.add_n(model.losses or [0.0])
        arch = [v for v in model.trainable_variables if "arch_" in v.name]
        grads = tape.gradient(loss, arch)
    finally:
        K.mixed_precision.set_global_policy("float32")
    assert y.dtype == tf.float16 and arch
    assert all(g is not None and g.dtype == tf.float32 for g in grads)


def test_a_layer_without_its_own_output_shape_is_traced_as_usual():
    class Gate(SearchLayer):  # the SearchLayer docstring's example: no compute_output_shape
        def build(self, input_shape):
            self.logit = self.add_arch_weight("logit", [1])
            super().build(input_shape)

        def call(self, x):
            return tf.reduce_sum(x, -1, keepdims=True) * tf.sigmoid(self.logit)

    inputs = K.Input((5, 3))
    assert Gate()(inputs).shape.as_list() == [None, 5, 1]


def test_keras_masks_pass_through_as_usual():
    inputs = K.Input((6, 3))
    masked = K.layers.Masking(0.0)(inputs)
    out = sl.FiGSMask()(masked)
    assert out._keras_mask is not None and out._keras_mask.shape.as_list() == [None, 6]
