"""FiGS on models nobody here wrote: ``tf_keras.applications`` (weights=None, 32x32,
10 classes, no training). ``insert_masks``, ~40 % of every mask group forced off,
``derive``: the derived model is smaller in parameters AND MACs than the original,
computes what the masked supernet computes, has no 0/1 select layer (every layer of
these families has a channel rule), and its ``cost.profile`` equals the FiGS
expected cost (eq. 6) at the saturated mask."""

import numpy as np
import pytest
import searchlayers as sl
from benchmarks.applications import (FAMILIES, SHAPE, forced_architecture,
                                     randomize_batchnorm, saturate)
from searchlayers.regularizers import figs_expected_cost
from searchlayers.transforms import insert_masks

OFF = 0.4


def macs(model):
    return float(sl.cost.profile(model).total.metric("macs"))


_BUILT = {}  # each family is built, masked and derived once per test session


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request):
    return _build(request.param)


def _build(name):
    if name not in _BUILT:
        _BUILT[name] = _derive(name)
    return _BUILT[name]


def _derive(name):
    base = FAMILIES[name]()
    randomize_batchnorm(base)
    masked = insert_masks(base)
    arch = forced_architecture(masked, OFF)
    child = sl.derive(masked, architecture=arch)
    x = np.random.default_rng(1).random((2, *SHAPE), dtype=np.float32) * 255.0
    sl.apply_architecture(masked, arch)
    want = masked(x, training=False).numpy()
    sl.apply_architecture(masked, None)
    saturate(masked, arch)
    return dict(name=name, base=base, masked=masked, arch=arch, child=child,
                x=x, want=want)


def test_derived_model_is_smaller_exact_and_select_free(family):
    base, masked, child = family["base"], family["masked"], family["child"]
    assert len(sl.layers.figs_masks(masked)) >= 10
    assert not sl.layers.search_layers(child)
    assert child.count_params() < base.count_params()
    assert macs(child) < macs(base)
    got = child(family["x"], training=False).numpy()
    np.testing.assert_allclose(got, family["want"], rtol=1e-5, atol=1e-5)
    assert np.abs(family["want"]).max() > 0.05  # the comparison is not 0 == 0
    # every layer of these families has a rule: no 0/1 select, no pinned mask
    assert not [l.name for l in child.layers
                if isinstance(l, sl.layers.ChannelSelect) or l.name.endswith("_fixed")]
    assert child.output_shape == (None, 10)


def folded_biases(masked, child):
    """Bias parameters derive added: a bias-free Conv / Dense reading a dropped
    channel that BatchNorm turned into a non-zero constant takes the constant's
    contribution as a bias (DenseNet: mask -> Concatenate -> BN -> ReLU -> 1x1 conv)."""
    added = 0
    for layer in child.layers:
        if getattr(layer, "use_bias", False) and getattr(layer, "bias", None) is not None:
            old = masked.get_layer(layer.name)
            added += 0 if old.use_bias else int(np.prod(layer.bias.shape))
    return added


def test_expected_cost_at_the_forced_mask_is_the_derived_cost(family):
    """FiGS eq. 6 with p in {0, 1} counts exactly what derive builds (MACs: float32
    sums of ~1e7, so up to a rounding), but for the biases that folding constant
    channels adds (eq. 6 does not know them; only DenseNet has any here)."""
    profile = sl.cost.profile(family["child"]).total
    added = folded_biases(family["masked"], family["child"])
    assert (added > 0) == (family["name"] == "DenseNet121")
    assert float(figs_expected_cost(family["masked"], "params")) + added == profile.params
    assert float(figs_expected_cost(family["masked"], "macs")) == pytest.approx(
        float(profile.metric("macs")), rel=1e-6)


def test_classifier_heads_are_never_masked(family):
    """MobileNetV3's ``Logits`` conv reaches the output through ``Flatten`` only; the
    other families' ``Dense`` is the output: no class can be dropped."""
    names = {m.name for m in sl.layers.figs_masks(family["masked"])}
    assert not {"Logits_mask", "predictions_mask", "fc1000_mask"} & names
    if family["name"] == "MobileNetV3Small":
        assert family["child"].get_layer("Logits").filters == 10


def test_tflite_parity_of_the_smallest_derived_family():
    from searchlayers import export

    built = _build("MobileNetV2")
    base, child = built["base"], built["child"]
    x = np.random.default_rng(4).random((3, *SHAPE), dtype=np.float32) * 255.0
    flatbuffer = export.to_tflite(child)
    report = export.parity(child, flatbuffer, x)
    assert report.rel_max_diff < 1e-5 and report.argmax_agreement == 1.0
    assert report.size_bytes < 4 * base.count_params()  # float32 weights of the original
