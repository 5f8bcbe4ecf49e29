import numpy as np
import pytest

import searchlayers as sl
from searchlayers import datasets, retrain

K = sl.keras


def _child():
    x = K.Input((8, 8, 1))
    h = K.layers.Flatten()(x)
    h = K.layers.Dense(16, activation="relu", name="hidden")(h)
    m = K.layers.Dense(8, use_bias=False, trainable=False, name="map")  # like a 0/1 channel map
    h = m(h)
    return K.Model(x, K.layers.Dense(10, name="head")(h))


def test_fresh_copy_reinitializes_weights_but_keeps_frozen_layers():
    child = _child()
    copy = retrain.fresh_copy(child)
    assert not np.array_equal(copy.get_layer("hidden").kernel.numpy(),
                              child.get_layer("hidden").kernel.numpy())
    np.testing.assert_array_equal(copy.get_layer("map").kernel.numpy(),
                                  child.get_layer("map").kernel.numpy())
    assert not copy.get_layer("map").trainable
    assert retrain.fresh_copy(child, unfreeze=True).get_layer("map").trainable


def test_same_seed_same_result_and_frozen_map_unchanged():
    child = _child()
    a, acc_a = retrain.retrain(child, "digits", epochs=3, optimizer="adam", lr=1e-2, seed=3)
    _, acc_b = retrain.retrain(child, "digits", epochs=3, optimizer="adam", lr=1e-2, seed=3)
    assert acc_a == acc_b and acc_a > 0.3  # 10 classes: chance is 0.1
    np.testing.assert_array_equal(a.get_layer("map").kernel.numpy(),
                                  child.get_layer("map").kernel.numpy())
    x, y = datasets.arrays("digits", "test")
    assert acc_a == pytest.approx(np.mean(np.argmax(a.predict(x, verbose=0), -1) == y))


def test_arrays_as_data_and_zero_epochs():
    x, y = datasets.arrays("digits", "train")
    xt, yt = datasets.arrays("digits", "test")
    model, acc = retrain.retrain(_child(), ((x, y), (xt, yt)), epochs=0, seed=0)
    assert 0.0 <= acc <= 1.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(optimizer="rmsprop"), "optimizer must be 'sgd' or 'adam'"),
    (dict(epochs=-1), "epochs must be an integer >= 0"),
    (dict(lr=0), "lr must be a finite number > 0"),
    (dict(data=[1, 2, 3]), "data must be a dataset name"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=f"retrain: {match}"):
        retrain.retrain(_child(), **kwargs)
