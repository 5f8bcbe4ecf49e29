"""A small float CNN and its binarized (Larq, LCE-friendly) twin.

Both have the same topology::

    conv3x3(c0) BN [ReLU] -> conv3x3(c1) BN [ReLU] -> maxpool2 -> conv3x3(c2) BN [ReLU]
    -> global average pool -> dense(num_classes)   (logits)

In the binary twin the first conv and the classifier stay float; the two inner
convs are larq ``QuantConv2D`` with ``ste_sign`` input and kernel quantizers,
``weight_clip``, ``pad_values=1.0`` and no bias, each followed by
BatchNormalization and no activation (the next sign is the non-linearity), so
LCE lowers them to ``LceBconv2d`` with the BatchNorm fused.

Example:
    >>> from models.simple import float_cnn, binary_cnn
    >>> model = binary_cnn((8, 8, 1), 10)
    >>> model.output_shape
    (None, 10)
"""

from searchlayers._keras import keras


def float_cnn(input_shape=(8, 8, 1), num_classes=10, channels=(32, 64, 64), name="float_cnn"):
    """Returns the float CNN (logits output).

    Example:
        >>> float_cnn((8, 8, 1), 10, channels=(8, 16, 16)).count_params() > 0
        True
    """
    inputs = keras.Input(input_shape)
    x = inputs
    for i, c in enumerate(channels):
        if i == 2:
            x = keras.layers.MaxPool2D()(x)
        x = keras.layers.Conv2D(c, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes)(x)
    return keras.Model(inputs, outputs, name=name)


def binary_conv(channels, **kwargs):
    """Returns an LCE-friendly binary ``QuantConv2D`` 3x3 (sign input and kernel).

    Example:
        >>> binary_conv(64).pad_values
        1.0
    """
    import larq as lq

    return lq.layers.QuantConv2D(
        channels, 3, padding="same", pad_values=1.0, use_bias=False,
        input_quantizer="ste_sign", kernel_quantizer="ste_sign",
        kernel_constraint="weight_clip", **kwargs,
    )


def binary_cnn(input_shape=(8, 8, 1), num_classes=10, channels=(32, 64, 64), name="binary_cnn"):
    """Returns the binarized twin of :func:`float_cnn` (float first conv and head).

    Example:
        >>> sum("quant_conv2d" in l.name for l in binary_cnn().layers)
        2
    """
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(channels[0], 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    for i, c in enumerate(channels[1:], start=1):
        if i == 2:
            x = keras.layers.MaxPool2D()(x)
        x = binary_conv(c)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes)(x)
    return keras.Model(inputs, outputs, name=name)
