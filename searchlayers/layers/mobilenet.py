"""MobileNetV2 inverted-residual candidate ops (SPOS / FairNAS / BN-NAS space).

Registered op names ``mb_k{3,5,7}_e{3,6}`` (``MB_OPS``): kernel size x
expansion ratio. Each op is a ``keras.Sequential``::

    conv1x1(e * channels) BN ReLU6 -> depthwise kxk (stride) BN ReLU6 -> conv1x1(channels) BN

ending with BatchNormalization, so the BN indicator (``searchlayers.bn_score``)
reads the op's last BN. The expansion is relative to the op's *output*
channels (a registered factory only knows ``(channels, strides)``); it equals
MobileNetV2's ``e * input channels`` wherever input and output widths agree.

The residual connection of a MobileNetV2 block lives outside the op (an
``Add`` around the ``MixedOp`` in ``models.spos``), so the ``"zeroise"`` op of
the same layer makes the whole layer an identity (ProxylessNAS' "skip").

Example:
    >>> op = get_op("mb_k5_e3", channels=8, strides=2)
    >>> op(tf.zeros([1, 8, 8, 4])).shape
    TensorShape([1, 4, 4, 8])
    >>> type(op.layers[-1]).__name__
    'BatchNormalization'
"""

import tensorflow as tf  # noqa: F401  (doctest namespace)

from searchlayers._keras import keras
from searchlayers.layers.ops import get_op, register_op  # noqa: F401

L = keras.layers
KERNELS = (3, 5, 7)
EXPANSIONS = (3, 6)
MB_OPS = tuple(f"mb_k{k}_e{e}" for k in KERNELS for e in EXPANSIONS)


def inverted_residual(channels, strides=1, kernel=3, expansion=6, momentum=0.9):
    """The MobileNetV2 inverted bottleneck without its shortcut, as a Sequential.

    Example:
        >>> op = inverted_residual(4, kernel=3, expansion=3)
        >>> [type(l).__name__ for l in op.layers][-2:]
        ['Conv2D', 'BatchNormalization']
    """
    hidden = int(round(channels * expansion))
    return keras.Sequential(
        [
            L.Conv2D(hidden, 1, use_bias=False),
            L.BatchNormalization(momentum=momentum),
            L.ReLU(6.0),
            L.DepthwiseConv2D(kernel, strides, padding="same", use_bias=False),
            L.BatchNormalization(momentum=momentum),
            L.ReLU(6.0),
            L.Conv2D(channels, 1, use_bias=False),
            L.BatchNormalization(momentum=momentum),
        ]
    )


def _factory(kernel, expansion):
    def factory(channels, strides):
        return inverted_residual(channels, strides, kernel, expansion)

    return factory


for _k in KERNELS:
    for _e in EXPANSIONS:
        register_op(f"mb_k{_k}_e{_e}", _factory(_k, _e))
