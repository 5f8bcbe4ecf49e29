"""BatchNorm momentum of the DARTS space: the DARTS code's PyTorch BatchNorm2d
momentum 0.1 is Keras' 0.9 (Keras' default 0.99 leaves the moving statistics
far from the data after a short retrain, and the model fails at inference)."""

import searchlayers as sl
from searchlayers.layers.ops import BN_MOMENTUM

from models.darts import darts_supernet


def test_every_batchnorm_of_the_darts_space_uses_pytorch_momentum():
    model = darts_supernet((8, 8, 1), 10, channels=4, cells=3, steps=2, multiplier=2)
    bns = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
           if isinstance(layer, sl.keras.layers.BatchNormalization)]
    assert len(bns) > 20  # stem, preprocessing, FactorizedReduce and the ops' own
    assert BN_MOMENTUM == 0.9 and {bn.momentum for bn in bns} == {0.9}
    child = sl.derive(model)  # the derived layers keep it
    assert {bn.momentum for bn in child._flatten_layers(include_self=False, recursive=True)
            if isinstance(bn, sl.keras.layers.BatchNormalization)} == {0.9}
