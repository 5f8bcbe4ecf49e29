import json

import numpy as np
import pytest

import searchlayers as sl
from conftest import tiny_supernet
from searchlayers import baselines, cost
from searchlayers.transforms import insert_masks

K = sl.keras
OPS = ["skip_connect", "conv_3x3", "max_pool_3x3", "sep_conv_3x3"]


@pytest.fixture(scope="module")
def chain():
    """Six independent edges of four ops: 4096 architectures, many costs."""
    x = K.Input((8, 8, 1))
    h = K.layers.Conv2D(4, 3, padding="same")(x)
    for i in range(6):
        h = sl.MixedOp(OPS, seed=i, name=f"edge{i}")(h)
    y = K.layers.Dense(10)(K.layers.GlobalAveragePooling2D()(h))
    model = K.Model(x, y)
    for i, layer in enumerate(sl.layers.search_layers(model)):  # a definite searched pick
        layer.arch("logits").assign(np.eye(4)[i % 4] * 3.0)
    return model


def _check(found, searched, target, metric, tolerance):
    keys = [json.dumps(a.choices, sort_keys=True) for a, _, _ in found]
    assert len(set(keys)) == len(keys)
    assert json.dumps(searched.choices, sort_keys=True) not in keys
    for _, child, value in found:
        measured = float(np.asarray(cost.profile(child).total.metric(metric)))
        assert measured == pytest.approx(value)
        assert abs(measured / target - 1) <= tolerance


def test_sampler_meets_the_cost_tolerance_and_never_repeats_the_searched_child(chain):
    child = sl.derive(chain, "argmax")
    target = baselines.child_cost(child, "macs")
    found = baselines.sample_architectures(chain, child.architecture, n=5, metric="macs")
    _check(found, child.architecture, target, "macs", 0.05)


def test_figs_masks_sample_channel_subsets_at_equal_params():
    x = K.Input((8, 8, 1))
    h = K.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    h = K.layers.Conv2D(8, 3, padding="same", activation="relu")(h)
    y = K.layers.Dense(10)(K.layers.GlobalAveragePooling2D()(h))
    supernet = insert_masks(K.Model(x, y))
    for layer in sl.layers.search_layers(supernet):
        n = layer.channels
        layer.arch("logits").assign(np.where(np.arange(n) < n // 2, 3.0, -3.0))
    child = sl.derive(supernet, "expected")
    target = baselines.child_cost(child, "params")
    found = baselines.sample_architectures(supernet, child.architecture, n=3, metric="params",
                                           tolerance=0.1)
    _check(found, child.architecture, target, "params", 0.1)


def test_a_space_too_small_gives_a_clear_error():
    model = tiny_supernet()
    child = sl.derive(model, "argmax")
    with pytest.raises(RuntimeError, match=r"found \d of 50 random architectures within "
                                           r"\+-5% of the searched child's macs"):
        baselines.sample_architectures(model, child.architecture, n=50, max_tries=100)
    with pytest.raises(ValueError, match="sample_architectures: tolerance must be a number"):
        baselines.sample_architectures(model, child.architecture, tolerance=2)


def test_random_baseline_trains_each_child_with_each_seed(chain):
    child = sl.derive(chain, "argmax")
    calls = []

    def train(c, seed):
        calls.append(seed)
        return 0.5 + 0.1 * seed

    r = baselines.random_baseline(chain, child, train, n=2, seeds=(0, 1))
    assert calls == [0, 1, 0, 1] and r["accuracies"] == [[0.5, 0.6], [0.5, 0.6]]
    assert r["mean"] == pytest.approx(0.55) and r["std"] == pytest.approx(np.std([.5, .6, .5, .6],
                                                                                ddof=1))
