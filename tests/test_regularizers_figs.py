"""FiGS expected cost (eq. 6) against hand counts; FLOPsRegularizer on masks."""

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from searchlayers.regularizers import expected_cost, figs_expected_cost

K = sl.keras


def _sig(v):
    return 1 / (1 + np.exp(-np.asarray(v, np.float64)))


def _two_conv():
    x = K.Input((6, 6, 2))
    h = K.layers.Conv2D(4, 3, padding="same", name="c1")(x)
    h = K.layers.ReLU()(K.layers.BatchNormalization(name="bn")(h))
    h = sl.FiGSMask(name="m1")(h)
    h = K.layers.Conv2D(3, 1, use_bias=False, name="c2")(h)
    y = sl.FiGSMask(name="m2")(h)
    model = K.Model(x, y)
    l1, l2 = [1.0, -2.0, 0.5, 3.0], [0.0, 2.0, -1.0]
    model.get_layer("m1").arch("logits").assign(l1)
    model.get_layer("m2").arch("logits").assign(l2)
    return model, _sig(l1).sum(), _sig(l2).sum()


def test_two_conv_hand_count():
    model, s1, s2 = _two_conv()
    # c1: cin 2 (unmasked input), cout s1 (+ bias); BN: 4 values per channel; c2: s1 x s2
    params = (2 * 9 * s1 + s1) + 4 * s1 + s1 * s2
    macs = 36 * 2 * 9 * s1 + 36 * s1 * s2
    assert float(figs_expected_cost(model, "params")) == pytest.approx(params, rel=1e-5)
    assert float(figs_expected_cost(model, "flops")) == pytest.approx(macs, rel=1e-5)
    # expected_cost (FLOPsRegularizer's path) dispatches to eq. 6 for masked models
    assert float(expected_cost(model, "params")) == pytest.approx(params, rel=1e-5)


def test_gradient_matches_eq6_and_all_on_gives_full_cost():
    model, s1, s2 = _two_conv()
    m1 = model.get_layer("m1")
    with tf.GradientTape() as tape:
        cost = figs_expected_cost(model, "params")
    grad = tape.gradient(cost, m1.arch("logits")).numpy()
    p1 = _sig([1.0, -2.0, 0.5, 3.0])
    np.testing.assert_allclose(grad, p1 * (1 - p1) * (18 + 1 + 4 + s2), rtol=1e-5)
    for name in ("m1", "m2"):
        model.get_layer(name).arch("logits").assign(tf.fill([model.get_layer(name).channels], 80.0))
    full = sl.cost.profile(model).total
    assert float(figs_expected_cost(model, "params")) == pytest.approx(full.params)
    assert float(figs_expected_cost(model, "macs")) == pytest.approx(full.float_macs)


def test_residual_group_and_depthwise_channels():
    x = K.Input((4, 4, 3))
    a = sl.FiGSMask(group="g", name="a")(K.layers.Conv2D(4, 1, use_bias=False, name="ca")(x))
    b = sl.FiGSMask(group="g", name="b")(K.layers.Conv2D(4, 1, use_bias=False, name="cb")(a))
    s = K.layers.Add()([a, b])
    d = K.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(s)
    d = sl.FiGSMask(group="g", name="d")(d)
    y = K.layers.Dense(2, use_bias=False, name="head")(K.layers.GlobalAveragePooling2D()(d))
    model = K.Model(x, y)
    sl.tie_arch_variables(model)
    logits = [2.0, -1.0, 0.0, 1.0]
    model.get_layer("a").arch("logits").assign(logits)
    s_ = _sig(logits).sum()
    # ca: 3 x s; cb: s x s; dw: 9 s; head: s x 2 (through GAP)
    params = 3 * s_ + s_ * s_ + 9 * s_ + 2 * s_
    assert float(figs_expected_cost(model, "params")) == pytest.approx(params, rel=1e-5)


def test_flops_regularizer_shrinks_masks():
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 6, 6, 2), dtype=np.float32), rng.integers(0, 3, 32)
    inp = K.Input((6, 6, 2))
    h = sl.FiGSMask(name="m")(K.layers.ReLU()(K.layers.Conv2D(8, 3, padding="same")(inp)))
    model = K.Model(inp, K.layers.Dense(3)(K.layers.GlobalAveragePooling2D()(h)))
    before = float(expected_cost(model, "flops"))
    model.compile(sl.joint_optimizer(K.optimizers.legacy.Adam(0.01), K.optimizers.legacy.Adam(0.5)),
                  K.losses.SparseCategoricalCrossentropy(from_logits=True))
    cb = sl.FLOPsRegularizer(metric="flops", mode="additive", strength=1.0, budget=before)
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[cb])
    assert history.history["expected_flops"][-1] < 0.7 * before


def test_nested_model_counts_its_masks():
    inner, s1, s2 = _two_conv()
    x = K.Input((6, 6, 2))
    outer = K.Model(x, inner(x))
    direct = float(figs_expected_cost(inner, "params"))
    assert float(figs_expected_cost(outer, "params")) == pytest.approx(direct, rel=1e-6)


def test_morphnet_form_gradient_and_value_by_hand():
    """MorphNet's linearised form on the two-conv example: the conv c2 costs
    ``N1 * s2 + s1 * N2 - N1 * N2`` (``N`` = channels with p >= 0.1)."""
    model, _, _ = _two_conv()
    m1, m2 = model.get_layer("m1"), model.get_layer("m2")
    l1, l2 = [1.0, -3.0, 0.5, 3.0], [0.0, 2.0, -2.0]
    m1.arch("logits").assign(l1)
    m2.arch("logits").assign(l2)
    p1, p2 = _sig(l1), _sig(l2)
    s1, s2 = p1.sum(), p2.sum()
    n1, n2 = 3.0, 3.0  # sigmoid(-3) = 0.047 is dead, sigmoid(-2) = 0.119 alive (>= 0.1)
    with tf.GradientTape(persistent=True) as tape:
        cost = figs_expected_cost(model, "params", form="morphnet")
    # c1 (unmasked input, 2 x 9 + bias) and BN are linear in s1: as in eq. 6
    assert float(cost) == pytest.approx(19 * s1 + 4 * s1 + n1 * s2 + s1 * n2 - n1 * n2, rel=1e-5)
    np.testing.assert_allclose(tape.gradient(cost, m1.arch("logits")),
                               p1 * (1 - p1) * (19 + 4 + n2), rtol=1e-5)
    np.testing.assert_allclose(tape.gradient(cost, m2.arch("logits")),
                               p2 * (1 - p2) * n1, rtol=1e-5)
    # at a 0/1 network the linearised form is the exact cost, like eq. 6
    for m, logits in ((m1, [30.0, -30.0, 30.0, 30.0]), (m2, [30.0, 30.0, -30.0])):
        m.arch("logits").assign(logits)
    exact = float(figs_expected_cost(model, "params"))
    assert float(figs_expected_cost(model, "params", form="morphnet")) == pytest.approx(exact)
    assert exact == pytest.approx(19 * 3 + 4 * 3 + 3 * 2)


def test_form_is_checked_and_reaches_the_regularizer():
    model, _, _ = _two_conv()
    cb = sl.FLOPsRegularizer(metric="params", form="morphnet")
    cb.set_model(model)
    want = float(figs_expected_cost(model, "params", form="morphnet"))
    assert float(cb.cost()) == pytest.approx(want)
    assert sl.FLOPsRegularizer.from_config(cb.get_config()).form == "morphnet"
    with pytest.raises(ValueError, match="unknown form 'l1'.*'expected', 'morphnet'"):
        sl.FLOPsRegularizer(form="l1")
    plain = K.Sequential([K.Input((3,)), K.layers.Dense(2)])
    with pytest.raises(ValueError, match="no FiGSMask"):
        expected_cost(plain, "params", form="morphnet")
