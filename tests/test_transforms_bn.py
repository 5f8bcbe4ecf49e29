"""train_only_batchnorm: only BN gamma / beta learn; statistics keep updating."""

import numpy as np
import pytest

import searchlayers as sl
from models.spos import spos_supernet
from searchlayers.bn_score import last_batchnorm
from searchlayers.layers import search_layers
from searchlayers.transforms import train_only_batchnorm

BN = sl.keras.layers.BatchNormalization
OPS = ("mb_k3_e3", "mb_k5_e6")


@pytest.fixture(autouse=True)
def _fresh_layer_names():
    """Layers made here outside a model take auto-names; reset them afterwards so
    later tests in the same worker get the default names they expect."""
    yield
    sl.keras.backend.clear_session()


def _model():
    return spos_supernet(stages=((8, 1, 1), (8, 1, 1)), stem_channels=8, head_channels=8, ops=OPS)


def _fit(model, data):
    x, y = data
    model.compile(optimizer=sl.keras.optimizers.SGD(0.1),
                  loss=sl.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)


def _by_kind(model):
    """(bn layers, non-BN leaf layers with weights)."""
    bns, others = [], []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if list(layer._flatten_layers(include_self=False, recursive=False)):
            continue
        if isinstance(layer, BN):
            bns.append(layer)
        elif layer.weights and not isinstance(layer, sl.SearchLayer):
            others.append(layer)
    return bns, others


def _snapshot(layers):
    return [[w.numpy().copy() for w in layer.weights] for layer in layers]


def test_all_trains_every_bn_and_nothing_else(data):
    model = train_only_batchnorm(_model(), which="all")
    bns, others = _by_kind(model)
    leaf = {w.name.split("/")[-1] for w in model.trainable_weights}
    assert leaf == {"gamma:0", "beta:0"} and len(model.trainable_weights) == 2 * len(bns)
    assert all(bn.trainable for bn in bns) and not any(l.trainable for l in others)
    frozen, stats = _snapshot(others), _snapshot(bns)
    _fit(model, data)
    for before, layer in zip(frozen, others):  # convs and the classifier: bit-identical
        for a, w in zip(before, layer.weights):
            assert np.array_equal(a, w.numpy()), w.name
    for name in ("stem_bn", "head_bn"):
        bn = model.get_layer(name)
        before = stats[bns.index(bn)]
        for i in range(4):  # gamma, beta, moving mean, moving variance all moved
            assert not np.array_equal(before[i], bn.weights[i].numpy()), bn.weights[i].name


def test_last_trains_only_each_candidates_last_bn(data):
    model = train_only_batchnorm(_model(), which="last")
    last = [last_batchnorm(op) for layer in search_layers(model) for op in layer.ops]
    assert {id(v) for v in model.trainable_weights} == {
        id(v) for bn in last for v in (bn.gamma, bn.beta)}
    bns, _ = _by_kind(model)
    inner = [bn for bn in bns if all(bn is not l for l in last)]
    assert all(bn.trainable for bn in bns)  # so they still normalize with batch statistics
    before = _snapshot(inner)
    _, others = _by_kind(model)
    # Every weight but the last BNs' gamma / beta and the BN moving statistics.
    learned = {id(v) for bn in last for v in (bn.gamma, bn.beta)}
    frozen = [w for layer in others + inner for w in layer.weights
              if id(w) not in learned and "moving_" not in w.name]
    assert len(frozen) == sum(len(l.weights) for l in others) + 2 * len(inner)
    frozen_before = [w.numpy().copy() for w in frozen]
    gammas_before = [bn.gamma.numpy().copy() for bn in last]
    _fit(model, data)
    for a, w in zip(frozen_before, frozen):  # convs, classifier, inner BN affine: bit-identical
        assert np.array_equal(a, w.numpy()), w.name
    assert any(not np.array_equal(a, bn.gamma.numpy())  # the last BNs' gammas did learn
               for a, bn in zip(gammas_before, last))
    stem = inner.index(model.get_layer("stem_bn"))
    assert np.array_equal(before[stem][0], inner[stem].gamma.numpy())  # gamma fixed
    assert not np.array_equal(before[stem][2], inner[stem].moving_mean.numpy())  # stats move
    # Weight order is kept: derive still copies the right values.
    arch = sl.Architecture({"layer0": 1, "layer1": 0})
    child = sl.derive(model, architecture=arch)
    sl.apply_architecture(model, arch)
    x = data[0][:4]
    np.testing.assert_allclose(model(x, training=False), child(x, training=False), atol=1e-5)


def test_switching_back_to_all_restores_bn_affine():
    model = _model()
    n_all = len(train_only_batchnorm(model, "all").trainable_weights)
    assert len(train_only_batchnorm(model, "last").trainable_weights) == 2 * 2 * len(OPS)
    assert len(train_only_batchnorm(model, "all").trainable_weights) == n_all


def test_bad_which_is_rejected():
    with pytest.raises(ValueError, match="which='first'"):
        train_only_batchnorm(_model(), which="first")
