"""The SPOS / BN-NAS supernet: building, candidate ops, derivation parity."""

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from models.spos import spos_supernet
from searchlayers.layers import MB_OPS, MixedOp, get_op, search_layers

OPS = ("mb_k3_e3", "mb_k7_e6")


@pytest.fixture(autouse=True)
def _fresh_layer_names():
    """Layers made here outside a model take auto-names; reset them afterwards so
    later tests in the same worker get the default names they expect."""
    yield
    sl.keras.backend.clear_session()


def test_mb_ops_are_registered_and_end_with_batchnorm():
    assert set(MB_OPS) <= set(sl.op_names()) and len(MB_OPS) == 6
    for name in MB_OPS:
        op = get_op(name, channels=8, strides=2)
        assert op(tf.zeros([1, 8, 8, 4])).shape == (1, 4, 4, 8)
        assert isinstance(op.layers[-1], sl.keras.layers.BatchNormalization)
    op = get_op("mb_k5_e6", channels=8, strides=1)
    op.build((None, 8, 8, 8))
    assert op.layers[0].filters == 48 and op.layers[3].kernel_size == (5, 5)


@pytest.mark.parametrize("mode", ["uniform", "fair"])
def test_builds_single_path_layers(mode):
    model = spos_supernet(stages=((8, 2, 1), (16, 1, 2)), ops=OPS, mode=mode)
    assert model(tf.zeros([2, 8, 8, 1]), training=True).shape == (2, 10)
    layers = search_layers(model)
    assert [l.name for l in layers] == ["layer0", "layer1", "layer2"]
    assert all(isinstance(l, MixedOp) and l.mode == mode for l in layers)
    # Shortcut (Add) only where stride 1 and widths agree (stem is 16 wide here).
    assert [l.name for l in model.layers if l.name.endswith("_add")] == ["layer1_add"]


def test_skip_adds_zeroise_only_where_there_is_a_shortcut():
    model = spos_supernet(stages=((16, 2, 1), (24, 1, 2)), ops=OPS, skip=True)
    names = {l.name: l.choice_names for l in search_layers(model)}
    assert names == {"layer0": [*OPS, "zeroise"], "layer1": [*OPS, "zeroise"], "layer2": list(OPS)}


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="single path"):
        spos_supernet(mode="softmax")
    with pytest.raises(ValueError, match="channels, depth, stride"):
        spos_supernet(stages=((8, 0, 1),))


def test_derived_subnet_matches_supernet_and_drops_skipped_layers():
    model = spos_supernet(stages=((16, 2, 1),), ops=OPS, skip=True)
    arch = sl.Architecture({"layer0": 2, "layer1": 1})  # layer0 skipped (zeroise)
    child = sl.derive(model, architecture=arch)
    sl.apply_architecture(model, arch)
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(model(x, training=False), child(x, training=False), atol=1e-5)
    assert not any(l.name.startswith("layer0") for l in child.layers)
    costs = sl.evolution.cost_table(model, "macs")
    assert sl.cost.profile(child).total.metric("macs") == costs.total([2, 1])


def test_transition_op_fixes_the_non_residual_layers():
    model = spos_supernet(stages=((16, 1, 1), (24, 2, 2)), ops=OPS, transition_op="mb_k3_e3")
    assert [l.name for l in search_layers(model)] == ["layer0", "layer2"]
    fixed = model.get_layer("fixed1")
    assert not isinstance(fixed, MixedOp) and fixed.output_shape == (None, 4, 4, 24)
