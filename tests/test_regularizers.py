import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from conftest import tiny_supernet
from searchlayers import cost, regularizers as reg

K = sl.keras


def _np_entropy(logits, temperature=1.0):
    z = np.asarray(logits, np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    return float(-(p * np.log(p)).sum())


def _set_logits(model, values):
    groups = reg.arch_groups(model)
    for key, logits in values.items():
        groups[key].arch("logits").assign(logits)


def test_entropy_matches_numpy_and_counts_shared_groups_once():
    model = tiny_supernet()
    groups = reg.arch_groups(model)
    assert sorted(groups) == ["edge_c", "n"]  # edge_a and edge_b share key "n"
    la, lc = [0.5, -1.0, 2.0, 0.0, 1.0], [3.0, 0.1, -2.0, 0.7]
    _set_logits(model, {"n": la, "edge_c": lc})
    groups["n"].temperature.assign(2.0)
    ha, hc = _np_entropy(la, 2.0), _np_entropy(lc)
    np.testing.assert_allclose(float(reg.entropy(model, "sum")), ha + hc, rtol=1e-5)
    np.testing.assert_allclose(float(reg.entropy(model, "mean")), (ha + hc) / 2, rtol=1e-5)
    assert len(reg.arch_groups(tiny_supernet(shared=False))) == 3


def test_entropy_is_finite_for_one_hot_and_differentiable():
    model = tiny_supernet()
    _set_logits(model, {"n": [1e4, 0, 0, 0, 0], "edge_c": [0.0, 0.0, 0.0, 0.0]})
    logits = [g.arch("logits") for g in reg.arch_groups(model).values()]
    with tf.GradientTape() as tape:
        h = reg.entropy(model, "sum")
    grads = tape.gradient(h, logits)
    np.testing.assert_allclose(float(h), np.log(4), rtol=1e-5)
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)


def test_entropy_errors():
    with pytest.raises(ValueError, match="reduction 'max'.*'mean', 'sum'"):
        reg.entropy(tiny_supernet(), "max")
    plain = K.Sequential([K.Input((3,)), K.layers.Dense(2)])
    with pytest.raises(ValueError, match="no built search layer"):
        reg.entropy(plain)


def test_expected_cost_is_profile_total_and_differentiable():
    model = tiny_supernet()
    sl.tie_arch_variables(model)  # (cost.profile alone does not tie shared keys)
    total = cost.profile(model).total
    for metric in ["macs", "params", "binary_macs", "equivalent_ops", "memory_bytes"]:
        np.testing.assert_allclose(
            float(reg.expected_cost(model, metric)), float(total.metric(metric)), rtol=1e-6
        )
    assert float(reg.expected_cost(model, "flops")) == float(reg.expected_cost(model, "macs"))
    assert float(reg.expected_cost(model, "binary_ops")) == float(total.binary_macs)
    wrapped = sl.SearchModel(model)
    assert float(reg.expected_cost(wrapped)) == float(reg.expected_cost(model))
    assert 0 < float(reg.expected_cost(model, search_only=True)) < float(total.metric("macs"))
    logits = [g.arch("logits") for g in reg.arch_groups(model).values()]
    with tf.GradientTape() as tape:
        c = reg.expected_cost(model)
    assert all(np.abs(g.numpy()).sum() > 0 for g in tape.gradient(c, logits))


def test_expected_cost_unknown_metric():
    with pytest.raises(ValueError, match="unknown cost metric 'latency'; allowed: .*flops"):
        reg.expected_cost(tiny_supernet(), "latency")


def test_budget_multiplier_under_and_over_budget():
    assert float(reg.budget_multiplier(50.0, 100.0)) == 1.0  # a = 0
    assert float(reg.budget_multiplier(300.0, 100.0)) == 3.0  # b = 1
    np.testing.assert_allclose(float(reg.budget_multiplier(25.0, 100.0, under=0.5)), 0.5)
    np.testing.assert_allclose(float(reg.budget_multiplier(200.0, 100.0, over=2.0)), 4.0)
    with pytest.raises(ValueError, match="budget must be a finite number > 0, got 0"):
        reg.budget_multiplier(1.0, 0)


def test_threshold_penalty_matches_numpy():
    betas = [tf.constant([0.0, 1.0]), tf.constant([-2.0])]
    b = np.array([0.0, 1.0, -2.0])
    expected = np.mean(-np.log(1 / (1 + np.exp(-b))))
    np.testing.assert_allclose(float(reg.threshold_penalty(betas)), expected, rtol=1e-6)


def test_attach_loss_once_per_key_and_multiplier_needs_search_model():
    model = K.Sequential([K.Input((2,)), K.layers.Dense(1)])
    five = lambda: tf.constant(5.0)  # noqa: E731
    assert reg.attach_loss(model, "a", lambda: tf.constant(1.0))
    assert reg.attach_loss(model, "a", five)  # replaced: True (retrace needed)
    assert not reg.attach_loss(model, "a", five)  # same callable: nothing to do
    assert reg.attach_loss(model, "b", lambda: tf.constant(2.0))
    assert sorted(float(x) for x in model.losses) == [2.0, 5.0]
    with pytest.raises(TypeError, match="needs a searchlayers.SearchModel.*Sequential"):
        reg.attach_loss_multiplier(model, "m", lambda: 1.0)
    search = sl.SearchModel(tiny_supernet())
    assert reg.attach_loss_multiplier(search, "m", lambda: 2.0)
    assert reg.attach_loss_multiplier(search, "m", lambda: 3.0)
    assert len(search._multipliers) == 1 and search._multipliers[0]() == 3.0


class _Opaque(K.layers.Layer):
    """A user layer with weights and no cost(): a gap in the cost model."""

    def build(self, input_shape):
        self.w = self.add_weight("w", shape=input_shape[-1:])

    def call(self, x):
        return x * self.w


def test_expected_cost_refuses_a_gap_inside_a_search_layer():
    x = K.Input((4, 4, 3))
    op = sl.MixedOp([_Opaque(name="scale_op"), "max_pool_3x3"], name="edge")
    model = K.Model(x, op(x))
    with pytest.raises(ValueError, match=r"expected_cost: .*incomplete.*scale_op \(3 params\) "
                                         r"in edge.*cost\(input_shape\)"):
        reg.expected_cost(model)


def test_expected_cost_counts_a_gap_outside_search_layers_as_a_constant():
    x = K.Input((4, 4, 3))
    h = _Opaque(name="fixed_scale")(x)
    op = sl.MixedOp(["conv_3x3", "max_pool_3x3"], name="edge")
    model = K.Model(x, op(h))
    op.arch("logits").assign([0.0, 0.0])
    with pytest.warns(cost.CostGapWarning, match=r"fixed_scale \(3 params\)"):
        macs = float(reg.expected_cost(model, "macs"))
    # p = 1/2 on a 3x3 conv of 3 -> 3 channels over 4x4 (the pool counts nothing)
    assert macs == pytest.approx(0.5 * 4 * 4 * 3 * 3 * 9)
    assert float(reg.expected_cost(model, "params", search_only=True)) == pytest.approx(
        0.5 * (3 * 3 * 9 + 2 * 3) + 0.5 * 2 * 3)  # conv kernel + BN statistics; pool's BN
