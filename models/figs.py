"""FiGS search spaces for small images (digits): plain networks to put masks into.

FiGS needs no special search space: ``searchlayers.transforms.insert_masks``
puts a ``FiGSMask`` after every convolution / dense layer of an ordinary
network. These two are the reference ones:

* ``resnet`` — a small ResNet: stem, stages of basic blocks (two 3x3 convs,
  identity or 1x1 projection shortcut), global pooling, classifier. The
  residual ``Add`` joins tensors whose masks form one group per stage.
* ``mobilenet_v2`` — MobileNetV2-style inverted residuals: 1x1 expand, 3x3
  depthwise, 1x1 linear projection, residual when the shape allows. The
  depthwise convolution shares the mask group of its expansion.

Example:
    >>> from models.figs import resnet, mobilenet_v2
    >>> resnet((8, 8, 1), 10).output_shape, mobilenet_v2((8, 8, 1), 10).output_shape
    ((None, 10), (None, 10))
"""

from searchlayers._keras import keras

L = keras.layers


def scaled(filters, width):
    """``filters`` times a uniform width multiplier, rounded, at least 1.

    Example:
        >>> scaled(16, 0.5), scaled(16, 0.01)
        (8, 1)
    """
    return max(1, int(round(filters * width)))


def _conv_bn(x, filters, kernel, strides=1, relu=True, name=None):
    x = L.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                 name=f"{name}_conv")(x)
    x = L.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return L.ReLU(name=f"{name}_relu")(x) if relu else x


def resnet(input_shape=(8, 8, 1), num_classes=10, stages=((16, 1, 2), (32, 2, 2)),
           stem=16, name="figs_resnet", width=1.0):
    """A small ResNet; ``stages``: ``(filters, first stride, blocks)`` per stage.

    ``width``: a uniform width multiplier on every layer (the FiGS baseline).

    Example:
        >>> resnet((8, 8, 1), 10, stages=((8, 1, 1),), stem=8).count_params() > 0
        True
    """
    inputs = keras.Input(input_shape)
    x = _conv_bn(inputs, scaled(stem, width), 3, name="stem")
    for s, (filters, stride, blocks) in enumerate(stages):
        filters = scaled(filters, width)
        for b in range(blocks):
            prefix = f"s{s}b{b}"
            strides = stride if b == 0 else 1
            h = _conv_bn(x, filters, 3, strides, name=f"{prefix}_a")
            h = _conv_bn(h, filters, 3, relu=False, name=f"{prefix}_b")
            if strides != 1 or x.shape[-1] != filters:
                x = _conv_bn(x, filters, 1, strides, relu=False, name=f"{prefix}_proj")
            x = L.Add(name=f"{prefix}_add")([x, h])
            x = L.ReLU(name=f"{prefix}_out")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    outputs = L.Dense(num_classes, name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)


def mobilenet_v2(input_shape=(8, 8, 1), num_classes=10,
                 blocks=((6, 16, 1), (6, 16, 1), (6, 24, 2), (6, 24, 1)), stem=16,
                 name="figs_mobilenet_v2", width=1.0):
    """MobileNetV2-style net; ``blocks``: ``(expansion, out channels, stride)``.

    ``width``: a uniform width multiplier on every layer (the FiGS baseline).

    Example:
        >>> mobilenet_v2((8, 8, 1), 10, blocks=((2, 8, 1),), stem=8).count_params() > 0
        True
    """
    inputs = keras.Input(input_shape)
    x = _conv_bn(inputs, scaled(stem, width), 3, name="stem")
    for i, (expansion, filters, stride) in enumerate(blocks):
        prefix, filters = f"ir{i}", scaled(filters, width)
        h = _conv_bn(x, x.shape[-1] * expansion, 1, name=f"{prefix}_expand")
        h = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                              name=f"{prefix}_dw")(h)
        h = L.BatchNormalization(momentum=0.9, name=f"{prefix}_dw_bn")(h)
        h = L.ReLU(6.0, name=f"{prefix}_dw_relu")(h)
        h = _conv_bn(h, filters, 1, relu=False, name=f"{prefix}_project")
        if stride == 1 and x.shape[-1] == filters:
            h = L.Add(name=f"{prefix}_add")([x, h])
        x = h
    x = L.GlobalAveragePooling2D(name="pool")(x)
    outputs = L.Dense(num_classes, name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)


SPACES = {"resnet": resnet, "mobilenet_v2": mobilenet_v2}

__all__ = ["SPACES", "mobilenet_v2", "resnet", "scaled"]
