"""Tests of searchlayers.cost: exact counts against hand computation and larq."""

import json

import numpy as np
import pytest

from searchlayers._keras import keras
import larq as lq
import tensorflow as tf

from searchlayers import cost
from searchlayers.cost import Cost

L = keras.layers


def _model(input_shape, *layers):
    """A Functional model chaining ``layers`` after an input of ``input_shape``."""
    inputs = x = keras.Input(input_shape)
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x)


def _single(layer, input_shape):
    """Total cost of a model holding only ``layer``; checks params against Keras."""
    _model(input_shape, layer)
    total = cost.layer_cost(layer, (None, *input_shape))
    assert total.params == layer.count_params()
    return total


# --- Cost arithmetic -----------------------------------------------------------------


def test_cost_arithmetic_and_metrics():
    a = Cost(float_macs=100, binary_macs=640, float_params=10, binary_params=64)
    b = Cost(float_macs=1, float_params=2)
    assert a.memory_bytes == 4 * 10 + 64 / 8
    assert a.params == 74
    assert a.equivalent_ops == 100 + 640 / 64
    assert (a + b).float_macs == 101 and (a + b).memory_bytes == 48 + 8
    assert (2 * a).binary_macs == 1280 and (a * 0.5).float_params == 5
    assert (a / 2).float_macs == 50
    assert sum([a, b, b]).float_params == 14
    assert (np.float32(3) * b).float_macs == 3
    assert Cost.zero() + a == a
    assert a.metric("macs") == 740
    assert a.metric("eq_ops") == a.metric("equivalent_ops") == 110
    for name in ("float_macs", "binary_macs", "params", "memory_bytes"):
        assert a.metric(name) == getattr(a, name)
    with pytest.raises(ValueError, match="flops.*allowed.*equivalent_ops"):
        a.metric("flops")


def test_cost_with_tensor_scalar():
    a = Cost(float_macs=10, binary_macs=64, float_params=1)
    p = tf.constant(0.25)
    for scaled in (p * a, a * p):
        assert float(scaled.float_macs) == 2.5
        assert float(scaled.equivalent_ops) == pytest.approx(2.75)
        assert float(scaled.memory_bytes) == 1.0


# --- float layers against hand computation -------------------------------------------


@pytest.mark.parametrize(
    "kwargs, input_shape, out_hw",
    [
        (dict(kernel_size=3), (8, 8, 3), (6, 6)),
        (dict(kernel_size=3, strides=2, padding="same"), (9, 9, 3), (5, 5)),
        (dict(kernel_size=3, strides=2, padding="valid"), (9, 9, 3), (4, 4)),
        (dict(kernel_size=3, dilation_rate=2), (10, 10, 3), (6, 6)),
        (dict(kernel_size=(3, 1), dilation_rate=2, padding="same"), (7, 7, 3), (7, 7)),
        (dict(kernel_size=(1, 5), padding="valid"), (6, 9, 3), (6, 5)),
    ],
)
def test_conv2d_exact(kwargs, input_shape, out_hw):
    layer = L.Conv2D(8, **kwargs)
    kh, kw = layer.kernel_size
    c = _single(layer, input_shape)
    assert c.float_macs == 8 * out_hw[0] * out_hw[1] * 3 * kh * kw
    assert c.binary_macs == 0 and c.binary_params == 0
    assert c.float_params == 8 * 3 * kh * kw + 8
    assert c.memory_bytes == 4 * c.float_params


def test_grouped_conv_without_bias():
    layer = L.Conv2D(8, 3, groups=4, padding="same", use_bias=False)
    c = _single(layer, (6, 6, 12))
    assert c.float_macs == 8 * 6 * 6 * (12 // 4) * 9
    assert c.float_params == 8 * 3 * 9


def test_depthwise_exact():
    layer = L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2)
    c = _single(layer, (8, 8, 5))
    assert c.float_macs == 5 * 2 * 4 * 4 * 9
    assert c.float_params == 5 * 2 * 9 + 10


def test_separable_exact():
    layer = L.SeparableConv2D(16, 3, depth_multiplier=2, padding="valid")
    c = _single(layer, (7, 7, 4))
    depthwise = 4 * 2 * 5 * 5 * 9
    pointwise = 16 * 5 * 5 * 8
    assert c.float_macs == depthwise + pointwise
    assert c.float_params == 4 * 2 * 9 + 8 * 16 + 16


def test_dense_exact():
    assert _single(L.Dense(10), (32,)).float_macs == 320
    c = _single(L.Dense(6, use_bias=False), (5, 4))  # applied at 5 positions
    assert c.float_macs == 5 * 4 * 6 and c.float_params == 24


def test_zero_mac_layers():
    model = _model(
        (6, 6, 4), L.BatchNormalization(name="bn"), L.ReLU(), L.MaxPool2D(),
        L.AveragePooling2D(), L.Dropout(0.5), L.Flatten(), L.Reshape((4, 1)),
        L.Activation("relu"),
    )
    p = cost.profile(model)
    assert p.total.float_macs == 0 and p.total.binary_macs == 0
    assert p.total.float_params == 4 * 4  # gamma, beta, moving mean and variance
    assert p.rows[0] == ("bn", "BatchNormalization", p.rows[0][2])
    assert not p.uncounted


def test_nested_sequential_in_functional():
    inner = keras.Sequential(
        [keras.Input((8, 8, 4)), L.Conv2D(6, 3, padding="same", name="conv"),
         L.BatchNormalization(name="bn")],
        name="inner",
    )
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 1, name="stem")(inputs)
    x = inner(x)
    x = L.Add()([x, x])
    x = L.GlobalAveragePooling2D()(x)
    outputs = L.Dense(2, name="head")(x)
    model = keras.Model(inputs, outputs, name="outer")
    p = cost.profile(model)
    names = [name for name, _, _ in p.rows]
    assert names[:3] == ["stem", "inner/conv", "inner/bn"]
    stem = 4 * 64 * 3
    conv = 6 * 64 * 4 * 9
    assert p.total.float_macs == stem + conv + 6 * 2
    assert p.total.params == model.count_params()
    assert cost.layer_cost(inner, (None, 8, 8, 4)).float_macs == conv
    assert cost.layer_cost(model, (None, 8, 8, 3)) == p.total


def test_unbuilt_sequential_chains_shapes():
    model = keras.Sequential([L.Conv2D(4, 3, strides=2), L.Flatten(), L.Dense(2)])
    c = cost.layer_cost(model, (None, 9, 9, 3))
    assert c.float_macs == 4 * 4 * 4 * 3 * 9 + 64 * 2
    assert not model.built


def test_shared_layer_counts_params_once_and_macs_per_call():
    shared = L.Dense(4, name="shared")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, shared(shared(inputs)))
    p = cost.profile(model)
    assert p.total.float_macs == 2 * 16
    assert p.total.params == 20


# --- larq layers against hand computation and lq.models.summary ----------------------


def _larq_model():
    binary = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                  kernel_constraint="weight_clip", use_bias=False)
    return _model(
        (12, 12, 3),
        L.Conv2D(16, 3, name="float_conv"),
        lq.layers.QuantConv2D(32, 3, padding="same", pad_values=1.0, name="bin_conv",
                              **binary),
        L.BatchNormalization(name="bn"),
        lq.layers.QuantConv2D(8, 3, strides=2, kernel_quantizer="ste_sign",
                              kernel_constraint="weight_clip", name="kernel_only"),
        lq.layers.QuantDepthwiseConv2D(3, input_quantizer="ste_sign",
                                       depthwise_quantizer="ste_sign",
                                       depthwise_constraint="weight_clip",
                                       use_bias=False, name="bin_dw"),
        lq.layers.QuantSeparableConv2D(8, 1, input_quantizer="ste_sign",
                                       depthwise_quantizer="ste_sign",
                                       pointwise_quantizer="ste_sign",
                                       depthwise_constraint="weight_clip",
                                       pointwise_constraint="weight_clip",
                                       name="bin_sep"),
        L.MaxPool2D(name="pool"),
        L.Flatten(name="flatten"),
        lq.layers.QuantDense(10, name="bin_dense", **binary),
        lq.layers.QuantDense(3, name="float_dense"),
    )


def test_larq_layers_by_hand():
    p = cost.profile(_larq_model())
    rows = {name: c for name, _, c in p.rows}
    b = rows["bin_conv"]
    assert (b.float_macs, b.binary_macs) == (0, 32 * 10 * 10 * 16 * 9)
    assert (b.float_params, b.binary_params) == (0, 32 * 16 * 9)
    assert b.memory_bytes == 32 * 16 * 9 / 8
    k = rows["kernel_only"]  # float input, 1-bit kernel: float MACs, binary kernel
    assert (k.float_macs, k.binary_macs) == (8 * 4 * 4 * 32 * 9, 0)
    assert (k.float_params, k.binary_params) == (8, 8 * 32 * 9)
    d = rows["bin_dense"]
    assert (d.binary_macs, d.binary_params, d.float_params) == (80, 80, 0)
    assert rows["float_dense"].float_macs == 30
    assert rows["bn"].float_params == 4 * 32 and rows["bn"].float_macs == 0


def test_larq_agrees_with_lq_models_summary():
    model = _larq_model()
    p = cost.profile(model)
    larq_profile = lq.models.ModelProfile(model)
    larq_layers = {lp.name: lp for lp in larq_profile.layer_profiles}
    for name, _, c in p.rows:
        lp = larq_layers[name]
        assert c.binary_macs == (lp.op_count("mac", 1) or 0), name
        assert c.float_macs + c.binary_macs == (lp.op_count("mac") or 0), name
        assert c.binary_params == lp.weight_count(bitwidth=1), name
    assert p.total.binary_macs == larq_profile.op_count("mac", 1) > 0
    assert p.total.metric("macs") == larq_profile.op_count("mac")
    lines = []
    lq.models.summary(model, print_fn=lines.append)  # the printed summary still works
    assert lines


# --- fractional and differentiable channel counts -----------------------------------


def test_fractional_channels_and_gradients():
    conv = L.Conv2D(8, 3, strides=2, padding="same", groups=1)
    shape = (None, 16, 16, 4)
    cin = tf.Variable(2.5)
    cout = tf.Variable(6.0)
    with tf.GradientTape(persistent=True) as tape:
        c = cost.layer_cost(conv, shape, cin=cin, cout=cout)
        ops, params = c.metric("eq_ops"), c.params
    assert float(c.float_macs) == pytest.approx(6 * 8 * 8 * 2.5 * 9)
    assert float(tape.gradient(ops, cin)) == pytest.approx(6 * 8 * 8 * 9)
    assert float(tape.gradient(params, cout)) == pytest.approx(2.5 * 9 + 1)
    memory_grad = float(tape.gradient(c.memory_bytes, cout))
    assert memory_grad == pytest.approx(4 * (2.5 * 9 + 1))


def test_fractional_binary_and_depthwise_dense():
    w = tf.Variable(3.0)
    with tf.GradientTape(persistent=True) as tape:
        dw = cost.depthwise_cost(w, (3, 3), (4, 4), depth_multiplier=2, binary=True)
        dense = cost.layer_cost(L.Dense(5), (None, 7), cin=w)
        ops = dw.equivalent_ops
    assert float(dw.binary_macs) == 3 * 2 * 16 * 9 and dw.float_macs == 0
    assert float(tape.gradient(ops, w)) == pytest.approx(2 * 16 * 9 / 64)
    assert float(tape.gradient(dw.memory_bytes, w)) == pytest.approx(2 * 9 / 8 + 4 * 2)
    assert float(tape.gradient(dense.float_macs, w)) == 5


def test_layer_cost_on_unbuilt_layer_with_overrides():
    layer = lq.layers.QuantConv2D(8, 3, input_quantizer="ste_sign",
                                  kernel_quantizer="ste_sign", use_bias=False)
    c = cost.layer_cost(layer, (None, 6, 6, 4), cin=1.5, cout=4)
    assert c.binary_macs == 4 * 4 * 4 * 1.5 * 9 and c.float_macs == 0
    assert c.binary_params == 4 * 1.5 * 9 and c.float_params == 0


# --- protocol, bad input and output -------------------------------------------------


class _WithCost(L.Layer):
    def cost(self, input_shape):
        return Cost(float_macs=input_shape[-1] * 100)


def test_cost_hook_is_used():
    p = cost.profile(_model((3,), _WithCost(name="searchy"), L.Dense(2)))
    assert p.rows[0] == ("searchy", "_WithCost", Cost(float_macs=300))
    assert p.total.float_macs == 306


class _Opaque(L.Layer):
    """A user layer with weights and no cost(): the cost model cannot count it."""

    def build(self, input_shape):
        self.w = self.add_weight("w", shape=input_shape[-1:])

    def call(self, x):
        return x * self.w


def test_unknown_weighted_layer_is_flagged():
    with pytest.warns(cost.CostGapWarning) as record:
        p = cost.profile(_model((4, 4, 2), _Opaque(name="opaque"), L.Dense(3, name="d")))
    assert p.uncounted == {"opaque"} and p.complete is False
    assert p.gaps == {"opaque": [("opaque", 2)]}
    assert p.total.float_params == 2 + 9 and p.total.float_macs == 4 * 4 * 2 * 3
    message = str(record[0].message)
    assert "\n" not in message and "opaque (2 params)" in message and "'d'" not in message
    assert "opaque *" in p.table() and "no known cost" in p.table()
    layers = p.to_dict()["layers"]
    assert layers[0]["counted"] is False and layers[1]["counted"] is True
    assert p.to_dict()["complete"] is False


def test_unbuilt_model_raises():
    model = keras.Sequential([L.Dense(3)], name="lazy_net")
    message = "'lazy_net' is not built.*call it on an input"
    with pytest.raises(ValueError, match=message):
        cost.profile(model)


def test_subclassed_model_raises():
    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="subnet")
            self.dense = L.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(tf.zeros((1, 3)))
    with pytest.raises(ValueError, match="subnet.*cost\\(input_shape\\)"):
        cost.profile(net)


def test_table_dict_and_compare():
    model = _larq_model()
    printed = []
    p = cost.profile(model, print_fn=printed.append)
    text = str(p)
    assert printed == [text] == [p.table()]
    lines = text.splitlines()
    assert lines[0] == f"{model.name} cost"
    assert "float MACs" in lines[1] and "eq. ops" in lines[1]
    assert lines[-1].startswith("Total")
    assert len({len(line) for line in lines[1:3]}) == 1  # header as wide as its rule
    data = json.loads(json.dumps(p.to_dict()))
    assert data["total"]["binary_macs"] == p.total.binary_macs
    assert isinstance(data["total"]["float_macs"], int)
    assert len(data["layers"]) == len(p.rows)
    float_model = _model((12, 12, 3), L.Conv2D(16, 3))
    side = cost.compare(cost.profile(float_model), p, names=["float", "binary"])
    assert side.splitlines()[0].split() == ["metric", "float", "binary"]
    assert "binary MACs" in side and "eq. ops" in side
    with pytest.raises(ValueError, match="2 profiles but 1 names"):
        cost.compare(p, p, names=["only"])


def test_unknown_spatial_size_names_the_layer():
    x = keras.Input((None, None, 3))
    model = keras.Model(x, L.Conv2D(2, 3, name="conv")(L.Rescaling(0.5, name="scale")(x)))
    with pytest.raises(ValueError, match=r"unknown spatial size \(None, None, 3\) at layer "
                                         r"'scale' \(Rescaling\); build the model on a fixed"):
        cost.profile(model)
