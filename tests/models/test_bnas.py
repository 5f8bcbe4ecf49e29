"""BNAS: binary cell space, inter-cell skips, Zeroise-gamma derivation."""

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from models.bnas import (
    SEARCH_CONFIG,
    bnas_architecture,
    bnas_supernet,
    cell_choices,
    derive_bnas,
    evaluation_network,
    zeroise_gamma_choice,
    zeroise_gamma_rule,
    zeroise_gamma_scores,
)
from searchlayers.layers import BNAS_OPS, MixedOp, Zeroise, search_layers

K = sl.keras
OPS = ("zeroise", "max_pool_3x3", "bin_conv_3x3", "bin_dil_conv_3x3")
TINY = dict(channels=4, cells=4, steps=1, multiplier=1)


def tiny(**kwargs):
    return bnas_supernet((8, 8, 1), 10, **{"ops": OPS, **TINY, **kwargs})


@pytest.fixture(scope="module")
def shared():
    """One tiny supernet for the tests that only read it (building is slow)."""
    return tiny()


@pytest.fixture
def model(shared):
    sl.apply_architecture(shared, None)
    yield shared
    sl.apply_architecture(shared, None)


def test_search_space_and_config_follow_the_paper():
    assert set(BNAS_OPS) == {"zeroise", "max_pool_3x3", "avg_pool_3x3", "bin_dil_conv_3x3",
                             "bin_dil_conv_5x5", "bin_conv_3x3", "bin_conv_5x5"}
    assert SEARCH_CONFIG["channels"] == 16 and SEARCH_CONFIG["cells"] == 8


def test_builds_with_inter_cell_skips(model):
    assert model(tf.zeros([2, 8, 8, 1])).shape == (2, 10)
    names = {layer.name for layer in model.layers}
    # cell 0: no skip; cells 1, 2 reduce (BN -> conv k2 s2); cell 3 normal (identity add)
    assert "cell0_skip" not in names
    assert {"cell1_skip_conv", "cell2_skip_conv", "cell3_skip"} <= names
    assert "cell3_skip_conv" not in names
    conv = model.get_layer("cell1_skip_conv")
    assert conv.kernel_size == (2, 2) and conv.strides == (2, 2)
    assert isinstance(model.get_layer("cell1_skip_bn"), K.layers.BatchNormalization)
    layers = search_layers(model)
    assert len(layers) == 4 * 2 and all(layer.mode == "softmax" for layer in layers)
    assert sorted(sl.tie_arch_variables(model)) == ["normal_e0", "normal_e1",
                                                    "reduce_e0", "reduce_e1"]
    plain = bnas_supernet((8, 8, 1), 10, ops=OPS, channels=4, cells=2, steps=1, multiplier=1,
                          skip=False)
    assert not any("_skip" in layer.name for layer in plain.layers)


def test_normal_cell_of_zeroise_edges_passes_previous_output(model):
    zero = OPS.index("zeroise")
    sl.apply_architecture(model, sl.Architecture(
        {layer.name: zero for layer in search_layers(model)}))
    probe = K.Model(model.inputs, [model.get_layer("cell2_skip").output,
                                   model.get_layer("cell3_skip").output])
    before, after = probe(np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype("float32"),
                          training=False)
    np.testing.assert_allclose(after, before, atol=1e-6)  # concat(zeros) + previous


def test_zeroise_gamma_scores_divide_only_the_zeroise_column():
    names = ["zeroise", "max_pool_3x3", "bin_conv_3x3"]
    np.testing.assert_allclose(zeroise_gamma_scores([0.5, 0.3, 0.2], names, 2.0),
                               [0.25, 0.3, 0.2])
    with pytest.raises(ValueError, match="gamma must be > 0"):
        zeroise_gamma_scores([0.5, 0.5], ["zeroise", "a"], 0.0)


def test_zeroise_gamma_rule_on_a_logit_table(model):
    # One row of logits per shared edge; softmax probabilities in the comments.
    table = {
        "normal_e0": [np.log(0.5), np.log(0.3), np.log(0.1), np.log(0.1)],  # z .5 vs .3
        "normal_e1": [np.log(0.7), np.log(0.1), np.log(0.1), np.log(0.1)],  # z .7 vs .1
        "reduce_e0": [np.log(0.1), np.log(0.2), np.log(0.6), np.log(0.1)],  # conv wins
        "reduce_e1": [np.log(0.4), np.log(0.1), np.log(0.1), np.log(0.4)],  # tie z / dil
    }
    for key, layers in sl.tie_arch_variables(model).items():
        layers[0].arch("logits").assign(table[key])

    def by_key(arch):
        return {key: op for key, op in cell_choices(arch).items()}

    assert by_key(bnas_architecture(model, gamma=1.0)) == {
        "normal_e0": "zeroise", "normal_e1": "zeroise", "reduce_e0": "bin_conv_3x3",
        "reduce_e1": "zeroise"}  # argmax (first of a tie)
    assert by_key(bnas_architecture(model, gamma=2.0)) == {
        "normal_e0": "max_pool_3x3", "normal_e1": "zeroise", "reduce_e0": "bin_conv_3x3",
        "reduce_e1": "bin_dil_conv_3x3"}  # .25 < .3; .35 > .1; .2 < .4
    assert by_key(bnas_architecture(model, gamma=8.0))["normal_e1"] == "max_pool_3x3"
    arch = sl.choose(model, rule=zeroise_gamma_rule(2.0))
    assert arch.meta["rule"] == "zeroise_gamma(2)"
    # shared edges get one choice; layers without a Zeroise fall back to argmax
    assert len({arch.choices[n] for n in arch.choices if n.endswith("normal_e0")}) == 1
    no_zero = MixedOp(["max_pool_3x3", "bin_conv_3x3"], name="nz")
    no_zero.build((None, 4, 4, 4))
    assert zeroise_gamma_choice(no_zero, 2.0) is None


def test_derived_model_matches_supernet_and_drops_zeroise(model):
    for i, (key, layers) in enumerate(sorted(sl.tie_arch_variables(model).items())):
        layers[0].arch("logits").assign(np.roll([3.0, 2.0, 1.0, 0.0], i))
    arch = bnas_architecture(model, gamma=1.5)
    child = derive_bnas(model, gamma=1.5)
    x = np.random.default_rng(1).normal(size=(3, 8, 8, 1)).astype("float32")
    sl.apply_architecture(model, arch)
    try:
        expected = model(x, training=False).numpy()
    finally:
        sl.apply_architecture(model, None)
    np.testing.assert_allclose(child(x, training=False).numpy(), expected, atol=1e-5)
    flat = child._flatten_layers(include_self=False, recursive=True)
    assert not any(isinstance(layer, (MixedOp, Zeroise)) for layer in flat)
    assert child.count_params() < model.count_params()


def test_evaluation_network_builds_the_searched_cell(model):
    choices = cell_choices(bnas_architecture(model))
    choices["reduce_e0"] = "bin_conv_3x3"  # cells=2: both cells reduce
    net = evaluation_network(choices, (8, 8, 1), 10, **{**TINY, "cells": 2, "channels": 8})
    assert net(tf.zeros([1, 8, 8, 1])).shape == (1, 10)
    assert sl.cost.profile(net).total.binary_macs > 0
    with pytest.raises(ValueError, match="no op for edge"):
        evaluation_network({"normal_e0": "bin_conv_3x3"}, (8, 8, 1), 10, **TINY)


def test_bilevel_search_with_bnas_diversity_moves_logits():
    model = tiny(cells=1, ops=("zeroise", "avg_pool_3x3", "bin_conv_3x3"))
    search = sl.SearchModel(model, bilevel=True, arch_optimizer=K.optimizers.Adam(0.05))
    search.compile(optimizer=K.optimizers.SGD(0.05),
                   loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, size=8).astype("int32")
    data = tf.data.Dataset.from_tensors(((x, y), (x, y))).repeat(2)
    before = [v.numpy().copy() for v in sl.arch_variables(model)]
    history = search.fit(data, epochs=1, verbose=0,
                         callbacks=[sl.EntropyRegularizer.bnas(lam=1.0, tau=7.7)])
    assert np.isfinite(history.history["loss"]).all()
    after = [v.numpy() for v in sl.arch_variables(model)]
    assert all(np.abs(a - b).max() > 1e-4 for a, b in zip(after, before))


def test_every_batchnorm_uses_pytorch_momentum(model):
    """PyTorch's BatchNorm momentum 0.1 (the BNAS code's) is Keras' 0.9: the stem,
    the reduction skip and the binary ops' own BatchNorms, kept by derivation."""
    def momenta(net):
        return {layer.momentum for layer in net._flatten_layers(include_self=False,
                                                                recursive=True)
                if isinstance(layer, K.layers.BatchNormalization)}

    assert momenta(model) == {0.9}
    assert momenta(sl.derive(model)) == {0.9}
