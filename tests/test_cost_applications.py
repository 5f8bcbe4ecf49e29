"""The cost model counts stock ``tf_keras.applications`` networks completely: no layer
with weights is left uncounted, every parameter is accounted for, and the MACs agree
with the papers' published figures."""

import warnings

import pytest

from searchlayers import cost
from searchlayers._keras import keras

APPLICATIONS = ("MobileNetV2", "MobileNetV3Small", "EfficientNetB0", "ResNet50",
                "DenseNet121", "ConvNeXtTiny")
# The smallest input each accepts with weights=None; 32x32 for all of them.
SMALL = dict(weights=None, input_shape=(32, 32, 3), classes=10)


def _build(name, **kwargs):
    with warnings.catch_warnings():  # "input size is not one of the weights' sizes"
        warnings.simplefilter("ignore", UserWarning)
        return getattr(keras.applications, name)(**kwargs)


@pytest.fixture(scope="module")
def built():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = _build(name, **SMALL)
        return cache[name]

    return get


@pytest.mark.parametrize("name", APPLICATIONS)
def test_application_is_counted_completely(built, name):
    model = built(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", cost.CostGapWarning)
        p = cost.profile(model)
    assert p.complete, p.gap_summary()
    assert p.total.params == model.count_params()
    assert p.total.metric("macs") > 0
    # every layer with weights contributes its parameters and some computation
    leaves = {layer.name: layer for layer in model._flatten_layers(include_self=False)}
    for row_name, kind, c in p.rows:
        # nested models give rows "outer/inner"; DenseNet's own names hold "/"
        layer = leaves.get(row_name) or leaves[row_name.split("/")[-1]]
        if layer.weights and kind != "BatchNormalization":  # folded: parameters only
            assert c.metric("macs") + c.elementwise > 0, row_name


def test_convnext_layer_norms_and_scales_are_elementwise(built):
    p = cost.profile(built("ConvNeXtTiny"))
    norms = [c for _, kind, c in p.rows if kind == "LayerNormalization"]
    scales = [c for _, kind, c in p.rows if kind == "LayerScale"]
    assert len(norms) == 23 and len(scales) == 18  # 18 blocks + stem / downsampling norms
    assert all(c.elementwise > 0 and c.metric("macs") == 0 for c in norms + scales)


# Published multiply-accumulate counts at 224x224, 1000 classes.
PUBLISHED = {
    "MobileNetV2": 300e6,  # Sandler et al. 2018, Table 4: 300M multiply-adds
    "ConvNeXtTiny": 4.5e9,  # Liu et al. 2022, Table 1: 4.5G FLOPs (fvcore: MACs)
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_macs_agree_with_the_papers(name):
    p = cost.profile(_build(name, weights=None))
    assert p.complete
    assert p.total.metric("macs") == pytest.approx(PUBLISHED[name], rel=0.02)
