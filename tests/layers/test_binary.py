"""Binary ops: each against a float Keras reference on sign-quantized inputs and
scaled sign kernels (padding with +1, as pad_values=1.0 does), binary-MAC counts
against larq's profile, serialization, LCE lowering."""

import math

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from searchlayers import cost
from searchlayers.layers import MixedOp, get_op
from searchlayers.layers.binary import (
    BinaryConvBN,
    BinaryConvShortcut,
    BinaryReduce,
    QuantConv,
    ScaledSign,
    bnas_conv,
    bnas_sep_conv,
    quant_depthwise,
)

K = sl.keras
RNG = np.random.default_rng(0)


def sign(x):
    return np.where(np.asarray(x) >= 0, 1.0, -1.0).astype("float32")


def scaled(w, scaling, axes=None):
    """sign(w) * the XNOR factor, in numpy."""
    if scaling is None:
        return sign(w)
    if scaling == "scalar":
        return sign(w) * np.abs(w).mean()
    axes = tuple(range(w.ndim - 1)) if axes is None else axes
    return sign(w) * np.abs(w).mean(axis=axes, keepdims=True)


def pad_same(x, kernel, strides, dilation=1, value=1.0):
    """Pads an NHWC array as 'same' padding would, with ``value``."""
    pads = [(0, 0)]
    for size in x.shape[1:3]:
        out = -(-size // strides)
        total = max((out - 1) * strides + (kernel - 1) * dilation + 1 - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, pads + [(0, 0)], constant_values=value)


def float_conv(x, kernel, strides=1, dilation=1):
    """Float Keras Conv2D ('valid', no bias) with the given kernel."""
    layer = K.layers.Conv2D(kernel.shape[-1], kernel.shape[:2], strides, padding="valid",
                            dilation_rate=dilation, use_bias=False)
    layer.build(x.shape)
    layer.set_weights([kernel])
    return layer(x).numpy()


def float_depthwise(x, kernel, strides=1):
    layer = K.layers.DepthwiseConv2D(kernel.shape[:2], strides, padding="valid",
                                     use_bias=False)
    layer.build(x.shape)
    layer.set_weights([kernel])
    return layer(x).numpy()


def randomize(layer):
    """Random weights in [-1, 1] (clip range) and random BN statistics."""
    values = []
    for w in layer.weights:
        leaf = w.name.split("/")[-1]
        if "moving_variance" in leaf:
            values.append(RNG.uniform(0.5, 2.0, w.shape))
        elif "moving_mean" in leaf:
            values.append(RNG.normal(0, 0.3, w.shape))
        else:
            values.append(RNG.uniform(-1, 1, w.shape))
    layer.set_weights([v.astype("float32") for v in values])


def bn_inference(bn, x):
    mean, var = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    y = (x - mean) / np.sqrt(var + bn.epsilon)
    if bn.scale:
        y = y * bn.gamma.numpy()
    if bn.center:
        y = y + bn.beta.numpy()
    return y


def interleave(a, b):
    """Channels a0, b0, a1, b1, ... (the staggered shortcut's order)."""
    return np.stack([a, b], -1).reshape(*a.shape[:-1], 2 * a.shape[-1])


def sub(op, cls):
    return [layer for layer in op.layers if isinstance(layer, cls)][0]


def test_scaled_sign_is_a_registered_one_bit_quantizer():
    w = RNG.uniform(-1, 1, (3, 3, 4, 5)).astype("float32")
    for scaling in ("channel", "scalar", None):
        q = ScaledSign(scaling)
        assert q.precision == 1
        np.testing.assert_allclose(q(w).numpy(), scaled(w, scaling), rtol=1e-6)
        again = lq.quantizers.get(tf.keras.utils.serialize_keras_object(q))
        assert isinstance(again, ScaledSign) and again.scaling == scaling
    per_channel = ScaledSign("channel")(w).numpy()
    assert [len(np.unique(np.abs(per_channel[..., c]).round(6))) for c in range(5)] == [1] * 5
    with pytest.raises(ValueError, match="unknown scaling 'filter'"):
        ScaledSign("filter")
    with pytest.raises(ValueError, match="unknown scaling"):
        QuantConv(4, 3, scaling="per_channel")


def test_ste_gradient_flows_to_weights_and_clips_inputs():
    conv = QuantConv(4, 3)
    x = tf.constant(RNG.normal(0, 1.5, (2, 5, 5, 3)).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = tf.reduce_sum(conv(x) ** 2)
    dx = tape.gradient(y, x).numpy()
    assert np.all(dx[np.abs(x.numpy()) > 1] == 0) and np.any(dx != 0)
    assert np.any(tape.gradient(y, conv.kernel).numpy() != 0)


@pytest.mark.parametrize("scaling", ["channel", "scalar", None])
@pytest.mark.parametrize("kernel,strides,dilation", [(3, 1, 1), (5, 2, 1), (3, 1, 2)])
def test_quant_conv_matches_float_reference(scaling, kernel, strides, dilation):
    conv = QuantConv(6, kernel, strides, dilation_rate=dilation, scaling=scaling)
    x = RNG.normal(size=(2, 7, 7, 4)).astype("float32")
    got = conv(x).numpy()
    want = float_conv(pad_same(sign(x), kernel, strides, dilation),
                      scaled(conv.kernel.numpy(), scaling), strides, dilation)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,kernel,dilation", [
    ("bin_conv_3x3", 3, 1), ("bin_conv_5x5", 5, 1),
    ("bin_dil_conv_3x3", 3, 2), ("bin_dil_conv_5x5", 5, 2),
])
@pytest.mark.parametrize("strides", [1, 2])
def test_bnas_conv_ops_match_reference(name, kernel, dilation, strides):
    op = get_op(name, channels=8, strides=strides)
    x = RNG.normal(size=(2, 8, 8, 4)).astype("float32")
    op.build(x.shape)
    randomize(op)
    got = op(x, training=False).numpy()
    bn, conv = sub(op, K.layers.BatchNormalization), sub(op, QuantConv)
    assert not bn.center and not bn.scale  # BN(affine=False) first (BNAS)
    step = strides if dilation == 1 else 1
    y = float_conv(pad_same(sign(bn_inference(bn, x)), kernel, step, dilation),
                   scaled(conv.kernel.numpy(), "channel"), step, dilation)
    if dilation > 1:
        y = y[:, ::strides, ::strides]
    np.testing.assert_allclose(got, np.maximum(y, 0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("strides", [1, 2])
def test_bin_sep_conv_matches_reference(strides):
    op = get_op("bin_sep_conv_3x3", channels=8, strides=strides)
    x = RNG.normal(size=(2, 8, 8, 4)).astype("float32")
    op.build(x.shape)
    randomize(op)
    got = op(x, training=False).numpy()
    bn = sub(op, K.layers.BatchNormalization)
    dw, pw = sub(op, lq.layers.QuantDepthwiseConv2D), sub(op, QuantConv)
    h = float_depthwise(pad_same(sign(bn_inference(bn, x)), 3, strides),
                        scaled(dw.depthwise_kernel.numpy(), "channel", axes=(0, 1)), strides)
    y = float_conv(sign(h), scaled(pw.kernel.numpy(), "channel"))
    np.testing.assert_allclose(got, np.maximum(y, 0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("strides,cin", [(1, 8), (2, 8), (2, 4)])
def test_conv_shortcut_matches_reference(strides, cin):
    op = get_op("bin_conv_3x3_shortcut", channels=8, strides=strides)
    x = RNG.normal(size=(2, 7, 7, cin)).astype("float32")
    op.build(x.shape)
    randomize(op)
    got = op(x, training=False).numpy()
    assert op.scaling == "scalar"  # BARS: one XNOR factor per layer
    y = bn_inference(op.bn, float_conv(pad_same(sign(x), 3, strides),
                                       scaled(op.conv.kernel.numpy(), "scalar"), strides))
    if strides == 1:
        short = x
    else:
        a = x[:, ::2, ::2]
        shifted = np.pad(x[:, 1:, 1:], [(0, 0), (0, 1), (0, 1), (0, 0)])
        b = shifted[:, ::2, ::2]
        short = interleave(a, b) if cin == 4 else (a + b) / 2
    np.testing.assert_allclose(got, y + short, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cin", [4, 8])
def test_binary_reduce_matches_reference(cin):
    op = BinaryReduce(8)
    x = RNG.normal(size=(2, 7, 7, cin)).astype("float32")
    op.build(x.shape)
    randomize(op)
    got = op(x, training=False).numpy()
    shifted = np.pad(x[:, 1:, 1:], [(0, 0), (0, 1), (0, 1), (0, 0)])
    a = float_conv(sign(x), scaled(op.conv_a.kernel.numpy(), "channel"), 2)
    b = float_conv(sign(shifted), scaled(op.conv_b.kernel.numpy(), "channel"), 2)
    y = bn_inference(op.bn, interleave(a, b))
    xa, xb = x[:, ::2, ::2], shifted[:, ::2, ::2]
    short = interleave(xa, xb) if cin == 4 else (xa + xb) / 2
    np.testing.assert_allclose(got, y + short, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="from 3 to 8 channels"):
        BinaryReduce(8)(tf.zeros([1, 4, 4, 3]))


def _flat_binary_model():
    x = K.Input((12, 12, 3))
    h = K.layers.Conv2D(32, 3, padding="same", use_bias=False)(x)
    h = QuantConv(32, 3, scaling="channel")(h)
    h = QuantConv(16, 5, 2, scaling="scalar")(h)
    h = QuantConv(16, 3, dilation_rate=2, scaling=None)(h)
    h = quant_depthwise(3, 2)(h)
    h = QuantConv(24, 1)(h)
    h = K.layers.GlobalAveragePooling2D()(h)
    return K.Model(x, K.layers.Dense(10)(h))


def test_binary_macs_agree_with_larq_profile():
    model = _flat_binary_model()
    larq_profile = lq.models.ModelProfile(model)
    total = cost.profile(model).total

    def larq_macs(precision):
        return sum(p.op_count("mac", precision) or 0 for p in larq_profile.layer_profiles)

    assert total.binary_macs == larq_macs(1) > 0
    assert total.float_macs == larq_macs(32) > 0
    assert total.binary_params == larq_profile.weight_count(bitwidth=1)
    assert total.equivalent_ops == pytest.approx(larq_macs(32) + larq_macs(1) / 64)


def test_composite_ops_report_their_cost():
    shape = (None, 8, 8, 8)
    conv = 8 * 8 * 8 * 8 * 9  # cout * H * W * cin * k^2
    op = bnas_conv(8, 3)
    op.build(shape)
    assert cost.layer_cost(op, shape).binary_macs == conv
    short = BinaryConvShortcut(8, 3)
    short.build(shape)
    assert cost.layer_cost(short, shape).binary_macs == conv
    reduce = BinaryReduce(8)
    reduce.build(shape)
    assert cost.layer_cost(reduce, shape).binary_macs == 4 * 4 * 8 * 8  # two 1x1 halves
    sep = bnas_sep_conv(8, 3)
    sep.build(shape)
    assert cost.layer_cost(sep, shape).binary_macs == 8 * 64 * 9 + 8 * 64 * 8
    mixed = MixedOp(["bin_conv_3x3", "bin_conv_3x3_shortcut", "zeroise"], name="m")
    mixed.build(shape)
    expected = sum(float(p) * c for p, c in zip(mixed.probabilities(), [conv, conv, 0]))
    assert float(mixed.cost().binary_macs) == pytest.approx(expected, rel=1e-6)


def _supernet():
    x = K.Input((8, 8, 8), name="image")
    ops = ["bin_conv_3x3", "bin_dil_conv_5x5", "bin_sep_conv_3x3", "bin_conv_3x3_shortcut",
           "max_pool_3x3", "zeroise"]
    h = MixedOp(ops, name="edge")(x)
    h = MixedOp(["bin_conv_3x3_shortcut", "bin_shortcut", "zeroise"], channels=16, strides=2,
                name="down")(h)
    h = QuantConv(16, 3, scaling="scalar", name="qc")(h)
    h = BinaryReduce(32, name="br")(h)
    y = K.layers.Dense(10)(K.layers.GlobalAveragePooling2D()(h))
    return K.Model(x, y)


def test_h5_round_trip(tmp_path):
    model = _supernet()
    x = RNG.normal(size=(2, 8, 8, 8)).astype("float32")
    model(x, training=True)  # move BN statistics
    path = str(tmp_path / "binary.h5")
    model.save(path)
    loaded = K.models.load_model(path)
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False),
                               rtol=1e-5, atol=1e-5)
    assert loaded.get_layer("qc").kernel_quantizer.scaling == "scalar"
    assert loaded.get_layer("edge").choice_names[0] == "bin_conv_3x3"


def test_derive_keeps_binary_op_and_weights():
    model = _supernet()
    arch = sl.Architecture({"edge": 0, "down": 0})
    sl.apply_architecture(model, arch)
    child = sl.derive(model, architecture=arch)
    x = RNG.normal(size=(2, 8, 8, 8)).astype("float32")
    np.testing.assert_allclose(child(x), model(x, training=False), rtol=1e-5, atol=1e-5)
    assert cost.profile(child).total.binary_macs > 0


def test_lce_lowers_scaled_binary_convs():
    from searchlayers import export

    x = K.Input((8, 8, 32))
    h = QuantConv(32, 3, scaling="channel")(x)
    h = K.layers.BatchNormalization()(h)
    h = QuantConv(32, 3, 2, scaling="scalar")(h)
    h = K.layers.BatchNormalization()(h)
    h = BinaryConvShortcut(32, 3, name="short")(h)  # BARS composites lower too
    h = BinaryReduce(64, name="reduce")(h)
    model = K.Model(x, K.layers.Dense(4)(K.layers.GlobalAveragePooling2D()(h)))
    for layer in model._flatten_layers(include_self=False):  # BN offsets keep
        if isinstance(layer, K.layers.BatchNormalization):  # pre-activations off 0
            randomize(layer)
    flatbuffer = export.to_lce(model)
    report = export.lce_report(model, flatbuffer)
    assert report["all_lowered"] and report["num_binary_convs"] == 2, report
    assert export.op_names(flatbuffer).count("LceBconv2d") == 2 + 1 + 2
    data = RNG.normal(size=(4, 8, 8, 32)).astype("float32")
    parity = export.parity(model, flatbuffer, data)
    assert parity.rel_max_diff < export.LCE_RTOL and math.isfinite(parity.max_abs_diff)


def test_bars_multiplicative_flops_on_binary_supernet():
    from searchlayers import regularizers as reg
    from searchlayers.layers import BARS_OPS

    x = K.Input((8, 8, 3))
    h = K.layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(x)
    h = MixedOp(BARS_OPS, mode="gumbel", name="e1")(h)
    h = MixedOp(BARS_OPS, mode="gumbel", channels=16, strides=2, name="e2")(h)
    model = K.Model(x, K.layers.Dense(10, name="head")(K.layers.GlobalAveragePooling2D()(h)))
    e1, e2 = model.get_layer("e1"), model.get_layer("e2")
    e1.arch("logits").assign([1.0, 0.0, -1.0])
    e2.arch("logits").assign([0.5, 0.2, 0.0])
    p1, p2 = e1.probabilities().numpy(), e2.probabilities().numpy()
    # binary MACs: conv 3x3 of each edge (+ BinaryReduce's two 1x1 halves on e2's shortcut)
    bin1 = p1[0] * 8 * 8 * 8 * 8 * 9
    bin2 = p2[0] * 16 * 4 * 4 * 8 * 9 + p2[1] * (8 * 4 * 4 * 8 * 2)
    floats = 8 * 8 * 8 * 3 * 9 + 16 * 10  # stem + head, always float
    want = floats + (bin1 + bin2) / 64
    assert float(reg.expected_cost(model, "binary_macs")) == pytest.approx(bin1 + bin2, rel=1e-5)
    assert float(reg.expected_cost(model, "equivalent_ops")) == pytest.approx(want, rel=1e-5)
    assert float(reg.expected_cost(model, "equivalent_ops", search_only=True)) == pytest.approx(
        (bin1 + bin2) / 64, rel=1e-5)

    search = sl.SearchModel(model)
    for budget, under, factor in [(2 * want, 0.0, 1.0), (2 * want, -0.5, 2 ** 0.5),
                                  (want / 4, 0.0, 4.0)]:
        cb = sl.FLOPsRegularizer(budget=budget, metric="equivalent_ops", mode="multiplicative",
                                 under=under)
        cb.set_model(search)
        assert float(cb.multiplier()) == pytest.approx(factor, rel=1e-4)
    with tf.GradientTape() as tape:  # over budget: the penalty pushes off the binary conv
        m = cb.multiplier()
    grad = tape.gradient(m, e1.arch("logits")).numpy()
    assert grad[0] > 0 > grad[2]  # conv gets costlier-weighted, zeroise cheaper


def test_binary_conv_bn_matches_reference():
    op = BinaryConvBN(6, 1, scaling="scalar")
    x = RNG.normal(size=(2, 5, 5, 8)).astype("float32")
    op.build(x.shape)
    randomize(op)
    want = bn_inference(op.bn, float_conv(sign(x), scaled(op.conv.kernel.numpy(), "scalar")))
    np.testing.assert_allclose(op(x, training=False), want, rtol=1e-4, atol=1e-4)
    assert BinaryConvBN.from_config(op.get_config()).get_config() == op.get_config()


@pytest.mark.parametrize("make,cin,keep_in,keep_out", [
    (lambda: BinaryConvBN(8, 3, scaling="channel"), 8, [0, 3, 5], [1, 2, 6]),
    (lambda: BinaryConvShortcut(8, 3, scaling="scalar"), 8, [0, 1, 2], [0, 1, 2, 3, 4]),
    (lambda: BinaryConvShortcut(8, 3, 2, scaling="scalar"), 4, [0, 1], [0, 1, 2]),
    (lambda: BinaryReduce(8, scaling="scalar", groups=2), 4, [0, 2], [0, 1, 2, 4, 5, 6]),
])
def test_sliced_composite_equals_supernet_on_zeroed_channels(make, cin, keep_in, keep_out):
    """Cut input channels are zero in the supernet, yet sign(0) = +1 feeds the
    binary convs: the narrower layer folds that into its BatchNorm and keeps the
    XNOR scale, so its outputs equal the supernet's kept outputs."""
    op = make()
    x = RNG.normal(size=(2, 6, 6, cin)).astype("float32")
    op.build(x.shape)
    randomize(op)
    zeroed = np.zeros_like(x)
    zeroed[..., keep_in] = x[..., keep_in]
    keep_in = op.input_channels(np.isin(np.arange(cin), keep_in))
    keep_out = op.output_channels(np.isin(np.arange(op.channels), keep_out))
    small = op.sliced(keep_in, keep_out, name="small")
    got = small(zeroed[..., keep_in], training=False)
    want = op(zeroed, training=False).numpy()[..., keep_out]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    inputs = K.Input((6, 6, len(keep_in)))
    flat = K.Model(inputs, small.inline(inputs, "inl"))  # plain larq / Keras layers
    np.testing.assert_allclose(flat(zeroed[..., keep_in]), got, rtol=1e-5, atol=1e-5)
