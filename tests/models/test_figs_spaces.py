"""models.figs: both spaces take masks, derive exactly, and shrink."""

import numpy as np
import pytest

import searchlayers as sl
from models.figs import mobilenet_v2, resnet
from searchlayers.transforms import insert_masks


@pytest.mark.parametrize("build", [
    lambda: resnet((8, 8, 1), 10, stages=((8, 1, 2), (12, 2, 1)), stem=8),
    lambda: mobilenet_v2((8, 8, 1), 10, blocks=((2, 8, 1), (2, 12, 2), (2, 12, 1)), stem=8),
])
def test_space_masks_derive_and_shrink(build):
    base = build()
    supernet = insert_masks(base)
    rng = np.random.default_rng(0)
    sl.tie_arch_variables(supernet)
    for mask in sl.layers.figs_masks(supernet):
        mask.arch("logits").assign(rng.normal(size=mask.channels).astype("f"))
    child = sl.derive(supernet, "expected")
    sl.apply_architecture(supernet, child.architecture)
    x = rng.random((2, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(supernet.predict(x, verbose=0), child.predict(x, verbose=0),
                               atol=1e-5)
    assert child.count_params() < base.count_params()
    assert not [layer for layer in child.layers if isinstance(layer, sl.layers.ChannelSelect)]


@pytest.mark.parametrize("build", [resnet, mobilenet_v2])
def test_uniform_width_multiplier(build):
    full, half = build((8, 8, 1), 10), build((8, 8, 1), 10, width=0.5)
    assert full.count_params() == build((8, 8, 1), 10, width=1.0).count_params()
    for layer in full.layers:
        if isinstance(layer, sl.keras.layers.Conv2D) and not isinstance(
                layer, sl.keras.layers.DepthwiseConv2D):
            assert half.get_layer(layer.name).filters == max(1, round(layer.filters / 2))
    assert half.count_params() < 0.4 * full.count_params()  # conv params ~ width^2
