"""The relaxations at any temperature and logit gap (issue 13, "safe at any
representable temperature"): finite, summing to 1, exactly one-hot where the
exact answer rounds to one-hot in float32; below ``TEMPERATURE_FLOOR`` the
constructors and the scheduler refuse, and the graph clamps to the floor."""

import numpy as np
import pytest
import tensorflow as tf

from searchlayers import relax
from searchlayers.callbacks import TemperatureScheduler

TEMPERATURES = [1e-8, 1e-7, 1e-6, 1e-5, 1e-3, 1e-1, 1.0, 10.0, 1e3]
GAPS = [0.0, 1e-6, 1e-3, 1.0, 30.0, 1e3, 1e10, 1e30]


def _exact(logits, temperature):
    """float64 softmax of the float32 logits at the clamped temperature."""
    t = max(temperature, relax.TEMPERATURE_FLOOR)
    z = np.asarray(logits, np.float32).astype(np.float64) / t
    z -= z.max()
    p = np.exp(z)
    return p / p.sum()


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_softmax_is_finite_normalized_and_exact(temperature):
    for gap in GAPS:
        for logits in ([gap, 0.0], [0.0, -gap, gap / 2], [-gap, -gap, 0.0]):
            got = relax.softmax(tf.constant(logits, tf.float32), temperature).numpy()
            want = _exact(logits, temperature)
            assert np.isfinite(got).all(), (temperature, logits, got)
            assert abs(got.sum() - 1.0) < 1e-6, (temperature, logits, got)
            np.testing.assert_allclose(got, want, atol=1e-6, err_msg=str((temperature, logits)))
            one_hot = want.astype(np.float32)
            if set(np.unique(one_hot)) <= {0.0, 1.0}:  # the exact answer is one-hot
                np.testing.assert_array_equal(got, one_hot, err_msg=str((temperature, logits)))


@pytest.mark.parametrize("temperature", [t for t in TEMPERATURES if t < relax.TEMPERATURE_FLOOR])
def test_below_the_floor_is_refused_and_clamped(temperature):
    with pytest.raises(ValueError, match=r"temperature must be a finite number >= 1e-06"):
        relax.check_temperature(temperature, "MixedOp 'op'")
    logits = tf.constant([1e-6, 0.0, -3.0])
    np.testing.assert_array_equal(relax.softmax(logits, temperature),
                                  relax.softmax(logits, relax.TEMPERATURE_FLOOR))


def test_extreme_logits_and_temperatures_are_one_hot_not_uniform():
    # the cases: T=1e-30 on [2, 1] gave [0.5, 0.5]; 1e-45 gave NaN
    for t in (1e-30, 1e-45, 0.0):
        np.testing.assert_array_equal(relax.softmax(tf.constant([2.0, 1.0]), t), [1.0, 0.0])
    big = tf.constant([3e38, -3e38, 3e38 * 0.99])
    np.testing.assert_array_equal(relax.softmax(big, 1e-6), [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(relax.softmax(-big, 1e-6), [0.0, 1.0, 0.0])
    hard = relax.gumbel_softmax(tf.constant([3e38, -3e38]), 1e-6, seed=[1, 2], hard=True)
    np.testing.assert_array_equal(hard, [1.0, 0.0])
    soft = relax.gumbel_softmax(tf.constant([-3e38, 3e38]), 1e-6, seed=[1, 2])
    np.testing.assert_array_equal(soft, [0.0, 1.0])
    gates = relax.logistic_sigmoid(tf.constant([3e38, -3e38, 2.0]), 1e-6, seed=None)
    np.testing.assert_array_equal(gates, [1.0, 0.0, 1.0])


def test_gradient_is_finite_at_the_floor():
    logits = tf.Variable([1.0, 1.0 + 1e-7, -2.0])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(relax.softmax(logits, relax.TEMPERATURE_FLOOR) * [1.0, 2.0, 3.0])
    assert np.isfinite(tape.gradient(loss, logits).numpy()).all()


def test_scheduler_refuses_an_underflowing_temperature():
    cb = TemperatureScheduler("exponential", start=1e-5, rate=0.01)
    assert cb.value(0) == pytest.approx(1e-5)
    with pytest.raises(ValueError, match=r"TemperatureScheduler at t=1: temperature must be a "
                       r"finite number >= 1e-06, got 1(\.0+1)?e-07"):
        cb.value(1)
    with pytest.raises(ValueError, match=r"TemperatureScheduler floor: temperature must be"):
        TemperatureScheduler("exponential", start=1.0, floor=0.0)


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_noisy_relaxations_are_finite_and_normalized(temperature):
    """Gumbel-softmax (soft and hard) and the Logistic-Sigmoid gates over the same
    grid: finite, a distribution (or a probability per gate), hard samples
    exactly one-hot / 0-1; the deterministic gate equals the exact float64 one."""
    for gap in GAPS:
        logits = tf.constant([gap, 0.0, -gap, gap / 3], tf.float32)
        soft = relax.gumbel_softmax(logits, temperature, seed=[3, 4]).numpy()
        assert np.isfinite(soft).all() and abs(soft.sum() - 1.0) < 1e-6, (temperature, gap)
        hard = relax.gumbel_softmax(logits, temperature, seed=[3, 4], hard=True).numpy()
        assert sorted(hard.tolist()) == [0.0, 0.0, 0.0, 1.0], (temperature, gap, hard)
        gates = relax.logistic_sigmoid(logits, temperature, seed=[5, 6]).numpy()
        assert np.isfinite(gates).all() and ((0 <= gates) & (gates <= 1)).all()
        hard_gates = relax.logistic_sigmoid(logits, temperature, seed=[5, 6], hard=True)
        assert set(np.unique(hard_gates.numpy())) <= {0.0, 1.0}
        mean = relax.logistic_sigmoid(logits, temperature).numpy()
        t = max(temperature, relax.TEMPERATURE_FLOOR)
        z = logits.numpy().astype(np.float64) / t
        e = np.exp(-np.abs(z))  # the stable float64 sigmoid
        want = np.where(z >= 0, 1 / (1 + e), e / (1 + e))
        np.testing.assert_allclose(mean, want, atol=1e-6, err_msg=str((temperature, gap)))
