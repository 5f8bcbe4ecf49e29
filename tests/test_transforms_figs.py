"""insert_masks: where FiGS masks go, how they group, and that outputs are kept."""

import larq as lq
import numpy as np
import pytest

import searchlayers as sl
from searchlayers.transforms import insert_masks
from test_derive_figs import mobilenet_like, small_resnet

K = sl.keras


def _masks(model):
    return {m.name: m for m in sl.layers.figs_masks(model)}


def test_resnet_masks_after_bn_and_relu_grouped_across_add():
    base = small_resnet()
    model = insert_masks(base)
    masks = _masks(model)
    assert sorted(masks) == sorted(
        ["stem_mask", "b0_c1_mask", "b0_c2_mask", "b1_c1_mask", "b1_c2_mask", "b1_proj_mask"]
    )
    assert "head_mask" not in masks  # skip_output
    # the mask follows the conv's BN (and ReLU): its input comes from that layer
    producer = masks["stem_mask"]._inbound_nodes[0].inbound_layers
    assert isinstance(producer, K.layers.ReLU)
    producer = masks["b0_c2_mask"]._inbound_nodes[0].inbound_layers
    assert isinstance(producer, K.layers.BatchNormalization)
    group = lambda n: masks[n].group  # noqa: E731
    assert group("stem_mask") == group("b0_c2_mask") is not None
    assert group("b1_c2_mask") == group("b1_proj_mask") is not None
    assert group("stem_mask") != group("b1_c2_mask")
    assert group("b0_c1_mask") is None and group("b1_c1_mask") is None
    sl.tie_arch_variables(model)
    assert masks["stem_mask"].arch("logits") is masks["b0_c2_mask"].arch("logits")
    # all masks on (logit 2.5 > 0): the inference output equals the original's
    x = np.random.default_rng(0).random((2, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), base.predict(x, verbose=0), atol=1e-6)
    # masks add no network weights
    assert sl.cost.profile(model).total.params == sl.cost.profile(base).total.params
    assert not sl.layers.figs_masks(base)  # the input model is unchanged


def test_depthwise_shares_group_with_its_input():
    model = insert_masks(mobilenet_like(), temperature=0.01, keep_one=True)
    masks = _masks(model)
    assert masks["dw0_mask"].group == masks["e0_mask"].group is not None
    assert masks["dw1_mask"].group == masks["e1_mask"].group is not None
    assert masks["p0_mask"].group == masks["stem_mask"].group
    assert masks["p1_mask"].group is None
    assert all(m.keep_one and float(m.temperature) == pytest.approx(0.01) for m in masks.values())


def test_concatenate_keeps_separate_masks_and_output_mask_optional():
    x = K.Input((4, 4, 2))
    a = K.layers.Conv2D(3, 1, name="a")(x)
    b = K.layers.Conv2D(3, 1, name="b")(x)
    y = K.layers.Conv2D(2, 1, name="out")(K.layers.Concatenate()([a, b]))
    model = K.Model(x, y)
    masks = _masks(insert_masks(model))
    assert sorted(masks) == ["a_mask", "b_mask"]
    assert masks["a_mask"].group is None and masks["b_mask"].group is None
    assert "out_mask" in _masks(insert_masks(model, skip_output=False))


def test_sequential_with_dense_and_larq_layers():
    model = K.Sequential([
        K.Input((6, 6, 2)),
        lq.layers.QuantConv2D(4, 3, kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                              name="qconv"),
        K.layers.BatchNormalization(name="qbn"),
        K.layers.Flatten(name="flat"),
        K.layers.Dense(8, activation="relu", name="hidden"),
        K.layers.Dense(3, name="head"),
    ])
    masked = insert_masks(model)
    assert isinstance(masked, K.Sequential)
    assert [l.name for l in masked.layers] == [
        "qconv", "qbn", "qconv_mask", "flat", "hidden", "hidden_mask", "head"]
    child = sl.derive(masked, "expected")
    sl.apply_architecture(masked, child.architecture)
    x = np.random.default_rng(0).random((2, 6, 6, 2), dtype=np.float32)
    np.testing.assert_allclose(masked.predict(x, verbose=0), child.predict(x, verbose=0), atol=1e-5)
