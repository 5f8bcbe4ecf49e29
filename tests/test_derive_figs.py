"""Derive with FiGS masks: channels sliced, weights inherited, outputs kept."""

import numpy as np
import pytest

import searchlayers as sl
from searchlayers.transforms import insert_masks

K = sl.keras


def _randomize(model, seed=0):
    """Random BN statistics and mask logits (some channels die, some live)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, K.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.normal(size=g.shape).astype("f"),
                               rng.normal(size=b.shape).astype("f"),
                               rng.normal(size=m.shape).astype("f"),
                               rng.random(v.shape).astype("f") + 0.5])
    sl.tie_arch_variables(model)
    for mask in sl.layers.figs_masks(model):
        mask.arch("logits").assign(rng.normal(size=mask.channels).astype("f"))


def _check_parity(model, strategy="expected", seed=0):
    child = sl.derive(model, strategy)
    assert not sl.layers.search_layers(child)
    sl.apply_architecture(model, child.architecture)
    x = np.random.default_rng(seed).random((4, *model.input_shape[1:]), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), child.predict(x, verbose=0), atol=1e-5)
    sl.apply_architecture(model, None)
    assert child.count_params() == sl.cost.profile(child).total.params
    return child


def _conv_bn(x, filters, kernel, strides=1, relu=True, name=None):
    h = K.layers.Conv2D(filters, kernel, strides=strides, padding="same", name=name)(x)
    h = K.layers.BatchNormalization(name=f"{name}_bn")(h)
    return K.layers.ReLU()(h) if relu else h


def small_resnet():
    x = K.Input((8, 8, 1))
    h = _conv_bn(x, 8, 3, name="stem")
    for i, (filters, stride) in enumerate([(8, 1), (12, 2)]):
        r = _conv_bn(h, filters, 3, stride, name=f"b{i}_c1")
        r = _conv_bn(r, filters, 3, relu=False, name=f"b{i}_c2")
        if stride != 1 or h.shape[-1] != filters:
            h = _conv_bn(h, filters, 1, stride, relu=False, name=f"b{i}_proj")
        h = K.layers.ReLU()(K.layers.Add()([h, r]))
    y = K.layers.Dense(10, name="head")(K.layers.GlobalAveragePooling2D()(h))
    return K.Model(x, y, name="resnet")


def test_resnet_derive_slices_channels_with_hand_count():
    model = insert_masks(small_resnet())
    _randomize(model)
    child = _check_parity(model)
    kept = {k: len(v) for k, v in child.architecture.choices.items()}
    g0 = kept["stem_mask"]  # stem + block 0 (identity residual) share one group
    assert kept["b0_c2_mask"] == g0
    a, b, g1 = kept["b0_c1_mask"], kept["b1_c1_mask"], kept["b1_c2_mask"]
    assert kept["b1_proj_mask"] == g1
    conv = lambda cin, cout, k: cin * cout * k * k + cout  # noqa: E731
    hand = (conv(1, g0, 3) + 4 * g0
            + conv(g0, a, 3) + 4 * a + conv(a, g0, 3) + 4 * g0
            + conv(g0, b, 3) + 4 * b + conv(b, g1, 3) + 4 * g1 + conv(g0, g1, 1) + 4 * g1
            + g1 * 10 + 10)
    assert child.count_params() == hand
    assert child.get_layer("head").get_weights()[0].shape == (g1, 10)
    assert not [layer for layer in child.layers if isinstance(layer, sl.layers.ChannelSelect)]


def test_argmax_strategy_matches_inference_mask():
    model = insert_masks(small_resnet())
    _randomize(model, seed=3)
    child = sl.derive(model, "argmax")
    x = np.random.default_rng(1).random((3, 8, 8, 1), dtype=np.float32)
    # argmax keeps the channels with logit > 0: the supernet's own inference mask
    np.testing.assert_allclose(model.predict(x, verbose=0), child.predict(x, verbose=0), atol=1e-5)


def mobilenet_like():
    x = K.Input((8, 8, 3))
    h = _conv_bn(x, 8, 3, name="stem")
    for i, (expand, out, stride) in enumerate([(16, 8, 1), (16, 12, 2)]):
        r = _conv_bn(h, expand, 1, name=f"e{i}")
        r = K.layers.DepthwiseConv2D(3, strides=stride, padding="same", name=f"dw{i}")(r)
        r = K.layers.ReLU(6.0)(K.layers.BatchNormalization(name=f"dw{i}_bn")(r))
        r = _conv_bn(r, out, 1, relu=False, name=f"p{i}")
        h = K.layers.Add()([h, r]) if stride == 1 and out == h.shape[-1] else r
    y = K.layers.Dense(5, name="head")(K.layers.GlobalAveragePooling2D()(h))
    return K.Model(x, y, name="mbv2")


def test_depthwise_network_derive():
    model = insert_masks(mobilenet_like())
    masks = {m.name: m for m in sl.layers.figs_masks(model)}
    assert masks["dw0_mask"].group == masks["e0_mask"].group is not None
    assert masks["p0_mask"].group == masks["stem_mask"].group is not None
    _randomize(model, seed=1)
    child = _check_parity(model)
    kept = {k: len(v) for k, v in child.architecture.choices.items()}
    dw = child.get_layer("dw0")
    assert dw.get_weights()[0].shape == (3, 3, kept["e0_mask"], 1)
    assert child.get_layer("p1").get_weights()[0].shape == (1, 1, kept["e1_mask"], kept["p1_mask"])


def test_sequential_masks_derive_to_sequential():
    model = K.Sequential([K.Input((6, 6, 2)), K.layers.Conv2D(6, 3), K.layers.ReLU(),
                          sl.FiGSMask(name="m"), K.layers.Flatten(), K.layers.Dense(4)])
    model.get_layer("m").arch("logits").assign([1.0, -1.0, 2.0, -2.0, 0.5, 3.0])
    child = _check_parity(model, "argmax")
    assert isinstance(child, K.Sequential)
    assert child.architecture.choices["m"] == [0, 2, 4, 5]
    assert child.layers[-1].get_weights()[0].shape == (16 * 4, 4)


def test_concatenate_and_mask_before_batchnorm_stay_exact():
    x = K.Input((5, 5, 2))
    a = sl.FiGSMask(name="ma")(K.layers.Conv2D(4, 1, name="ca")(x))
    b = sl.FiGSMask(name="mb")(K.layers.Conv2D(3, 1, name="cb")(x))
    c = K.layers.Concatenate()([a, b])
    # a mask before BatchNorm: BN turns the dropped zeros into constants
    h = sl.FiGSMask(name="mc")(K.layers.Conv2D(5, 1, name="cc")(c))
    h = K.layers.ReLU()(K.layers.BatchNormalization(name="bn")(h))
    y = K.layers.Conv2D(2, 1, name="out")(h)
    model = K.Model(x, y)
    _randomize(model, seed=2)
    model.get_layer("bn").set_weights([w + 1.0 for w in model.get_layer("bn").get_weights()])
    child = _check_parity(model)
    kept = child.architecture.choices
    # BN turns mc's dropped zeros into constants; the 1x1 "out" conv folds them into
    # its bias, so no 0/1 select layer refills them
    assert not [layer for layer in child.layers if isinstance(layer, sl.layers.ChannelSelect)]
    assert child.get_layer("out").get_weights()[0].shape == (1, 1, len(kept["mc"]), 2)
    assert child.get_layer("cc").get_weights()[0].shape == (
        1, 1, len(kept["ma"]) + len(kept["mb"]), len(kept["mc"]))


def test_plain_models_derive_unchanged():
    model = small_resnet()
    child = sl.derive(model)
    assert child.count_params() == model.count_params()
    x = np.ones((1, 8, 8, 1), "f")
    np.testing.assert_allclose(model.predict(x, verbose=0), child.predict(x, verbose=0), atol=1e-6)


def test_derived_model_keeps_input_name_and_derives_again():
    """A derived (or masked) model is an ordinary model: masks go in again and it derives
    again, keeping the input's name, also for an input made from a ``type_spec`` (whose
    KerasTensor has no name of its own)."""
    import tensorflow as tf

    x = K.Input(type_spec=tf.TensorSpec([None, 6, 6, 2], tf.float32), name="image")
    assert x.name is None  # the case that used to crash on ``t.name.split``
    h = K.layers.ReLU()(K.layers.Conv2D(6, 3, name="c1")(x))
    y = K.layers.Dense(3, name="head")(K.layers.GlobalAveragePooling2D()(h))
    model = insert_masks(K.Model(x, y))
    _randomize(model, seed=4)
    child = _check_parity(model)
    again = insert_masks(child)
    _randomize(again, seed=5)
    grandchild = _check_parity(again)
    plain = sl.derive(child)  # a model without search layers derives to a copy
    for m in (model, child, again, grandchild, plain):
        assert m.input_names == ["image"] and m.inputs[0].name == "image"
    assert grandchild.get_layer("c1").filters <= child.get_layer("c1").filters
