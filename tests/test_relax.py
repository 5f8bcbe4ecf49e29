import numpy as np
import pytest
import tensorflow as tf

from searchlayers import relax


def _many(fn, n):
    return np.stack([fn(i).numpy() for i in range(n)])


def test_softmax_temperature():
    logits = tf.constant([1.0, 2.0, 3.0])
    expected = np.exp(np.array([1, 2, 3]) / 5.0)
    np.testing.assert_allclose(relax.softmax(logits, 5.0), expected / expected.sum(), rtol=1e-6)


def test_gumbel_argmax_follows_softmax_in_expectation():
    logits = tf.constant([0.5, -1.0, 1.5, 0.0])
    p = tf.nn.softmax(logits).numpy()
    samples = _many(lambda i: relax.gumbel_softmax(logits, 1.0, seed=[7, i]), 4000)
    freq = np.bincount(samples.argmax(1), minlength=4) / len(samples)
    # Gumbel-max: argmax of the sample is distributed as softmax(logits).
    np.testing.assert_allclose(freq, p, atol=0.03)
    assert np.allclose(samples.sum(1), 1.0, atol=1e-5)


def test_gumbel_hard_is_one_hot_forward_with_soft_gradient():
    logits = tf.Variable([0.3, -0.2, 0.1])
    w = tf.constant([1.0, 2.0, 3.0])
    with tf.GradientTape(persistent=True) as tape:
        hard = relax.gumbel_softmax(logits, 0.7, seed=[1, 2], hard=True)
        soft = relax.gumbel_softmax(logits, 0.7, seed=[1, 2], hard=False)
        lh, ls = tf.reduce_sum(hard * w), tf.reduce_sum(soft * w)
    assert sorted(hard.numpy().tolist()) == [0.0, 0.0, 1.0]
    assert hard.numpy().argmax() == soft.numpy().argmax()
    np.testing.assert_allclose(tape.gradient(lh, logits), tape.gradient(ls, logits), rtol=1e-6)


def test_logistic_sigmoid_matches_sigmoid_probability():
    logits = tf.constant([-1.0, 0.0, 2.0])
    samples = _many(lambda i: relax.logistic_sigmoid(logits, 0.001, seed=[3, i]), 4000)
    np.testing.assert_allclose((samples > 0.5).mean(0), tf.sigmoid(logits), atol=0.03)
    hard = relax.logistic_sigmoid(logits, 0.5, seed=[3, 1], hard=True).numpy()
    assert set(hard.tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("temperature", [1e-12, 1e-30])
def test_extreme_logits_and_tiny_temperature_are_finite(temperature):
    logits = tf.constant([1e30, -1e30, 0.0, 3e38])
    for out in (
        relax.softmax(logits, temperature),
        relax.gumbel_softmax(logits, temperature, seed=[0, 0]),
        relax.gumbel_softmax(logits, temperature, seed=[0, 0], hard=True),
        relax.logistic_sigmoid(logits, temperature, seed=[0, 0]),
    ):
        assert np.all(np.isfinite(out.numpy()))
    np.testing.assert_allclose(relax.softmax(logits, temperature).numpy().sum(), 1.0)


def test_uniform_and_fair_single_path():
    picks = np.array([int(relax.uniform_choice(4, [5, i])) for i in range(2000)])
    np.testing.assert_allclose(np.bincount(picks, minlength=4) / 2000, 0.25, atol=0.04)
    fair = [int(relax.fair_choice(3, seed=11, step=s)) for s in range(30)]
    for block in range(10):  # every choice exactly once per block of 3 steps
        assert sorted(fair[3 * block : 3 * block + 3]) == [0, 1, 2]
    assert fair[:3] != fair[3:6] or fair[3:6] != fair[6:9]  # order varies


def test_noise_is_a_function_of_the_seed():
    a = relax.gumbel_noise([5], [1, 2]).numpy()
    np.testing.assert_array_equal(a, relax.gumbel_noise([5], [1, 2]).numpy())
    assert not np.array_equal(a, relax.gumbel_noise([5], [1, 3]).numpy())


@pytest.mark.parametrize("bad", [0.0, -1.0, 1e-7, float("nan"), float("inf")])
def test_bad_temperature(bad):
    with pytest.raises(ValueError, match="temperature must be a finite number >= 1e-06"):
        relax.check_temperature(bad, "layer 'x'")
