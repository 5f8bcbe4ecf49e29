"""The DARTS cell supernet: building, shared topology, search steps, derivation."""

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from models.darts import darts_supernet, genotype, op_mix, top2_architecture
from searchlayers.layers import MixedOp, search_layers

TINY = dict(channels=4, cells=3, steps=2, multiplier=2)
OPS = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3")


def tiny(mode="softmax", **kwargs):
    return darts_supernet((8, 8, 1), 10, ops=OPS, mode=mode, **{**TINY, **kwargs})


@pytest.mark.parametrize("mode", ["softmax", "gumbel", "gumbel_hard", "uniform", "fair"])
def test_builds_in_every_mode(mode):
    model = tiny(mode)
    out = model(tf.zeros([2, 8, 8, 1]), training=True)
    assert out.shape == (2, 10)
    assert len(search_layers(model)) == 3 * 5  # cells x edges of 2 nodes


def test_cells_share_topology_by_key():
    model = darts_supernet((8, 8, 1), 10, ops=OPS, channels=4, cells=5, steps=2, multiplier=2)
    groups = sl.tie_arch_variables(model)
    assert sorted(groups) == sorted([f"normal_e{e}" for e in range(5)]
                                    + [f"reduce_e{e}" for e in range(5)])
    for layers in groups.values():
        first = layers[0].arch("logits")
        assert all(layer.arch("logits") is first for layer in layers)
    assert len(groups["normal_e0"]) == 3 and len(groups["reduce_e0"]) == 2
    assert len(sl.arch_variables(model)) == 10


def test_reduction_cells_halve_resolution_and_double_channels():
    model = darts_supernet((8, 8, 1), 10, ops=OPS, channels=4, cells=3, steps=2, multiplier=2)
    outs = {layer.name: layer.output.shape for layer in model.layers if layer.name.endswith("_out")}
    assert outs == {"cell0_out": (None, 8, 8, 8), "cell1_out": (None, 4, 4, 16),
                    "cell2_out": (None, 2, 2, 32)}
    assert any(layer.name == "cell2_pre0_fr" for layer in model.layers)  # after a reduction


def _compiled_search(model, bilevel):
    search = sl.SearchModel(model, bilevel=bilevel,
                            arch_optimizer=sl.keras.optimizers.Adam(0.05))
    search.compile(optimizer=sl.keras.optimizers.SGD(0.05),
                   loss=sl.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return search


def test_bilevel_search_moves_arch_logits():
    model = tiny("softmax")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, size=16).astype("int32")
    data = tf.data.Dataset.from_tensors(((x, y), (x, y))).repeat(3)
    before = [v.numpy().copy() for v in sl.arch_variables(model)]
    history = _compiled_search(model, bilevel=True).fit(data, epochs=1, verbose=0)
    after = [v.numpy() for v in sl.arch_variables(model)]
    assert np.isfinite(history.history["loss"]).all()
    assert all(np.abs(a - b).max() > 1e-4 for a, b in zip(after, before))


def test_genotype_and_op_mix():
    model = tiny("softmax")
    geno = genotype(model)
    assert [len(geno[kind]) for kind in ("normal", "reduce")] == [4, 4]  # 2 nodes x top-2
    assert all(op != "none" for kind in geno for op, _ in geno[kind])
    mix = op_mix(sl.choose(model))
    assert sum(mix["normal"].values()) == 5 and sum(mix["reduce"].values()) == 5
    top2 = op_mix(top2_architecture(model))
    assert top2["normal"].get("none") == 1  # 5 edges, 4 kept


@pytest.mark.parametrize("rule", ["argmax", "top2"])
def test_derived_model_matches_supernet(rule):
    model = tiny("softmax")
    # Distinct logits so the choice is not a tie, with 'none' winning some edges.
    for i, var in enumerate(sl.arch_variables(model)):
        var.assign(np.roll(np.arange(len(OPS), dtype="float32"), i))
    arch = sl.choose(model) if rule == "argmax" else top2_architecture(model)
    derived = sl.derive(model, architecture=arch)
    x = np.random.default_rng(1).normal(size=(4, 8, 8, 1)).astype("float32")
    sl.apply_architecture(model, arch)
    try:
        expected = model(x, training=False).numpy()
    finally:
        sl.apply_architecture(model, None)
    np.testing.assert_allclose(derived(x, training=False).numpy(), expected, atol=1e-5)
    assert derived.count_params() < model.count_params()
    assert not any(isinstance(layer, MixedOp)
                   for layer in derived._flatten_layers(include_self=False, recursive=True))
