"""Binary (1-bit) candidate operations, built on Larq quantizers and layers.

* ``ScaledSign``: a 1-bit kernel quantizer ``scale * sign(W)`` with XNOR-Net
  scaling: ``scaling="channel"`` (``mean|W|`` per output filter, XNOR-Net,
  BNAS), ``"scalar"`` (one factor per layer, BARS) or ``None`` (plain sign).
  It is a registered Larq quantizer with ``precision = 1`` (as larq-zoo writes
  XNOR weight scaling), so ``lq.models.summary``, ``searchlayers.cost`` and LCE
  (which needs a kernel of ``+-scale`` per output channel) all see a binary
  kernel.
* ``QuantConv``: larq ``QuantConv2D`` with the LCE-friendly defaults
  (``input_quantizer="ste_sign"``, a 1-bit kernel quantizer,
  ``kernel_constraint="weight_clip"``, ``padding="same"`` with
  ``pad_values=1.0``, no bias) and the ``scaling`` option.
* ``BinaryConvShortcut``: BARS' binary conv with an extra shortcut,
  ``BN(QuantConv(x)) + shortcut(x)``.
* ``BinaryReduce``: BARS' information-keeping strided shortcut: two strided
  binary 1x1 convs, one on the input and one on the input staggered by one
  pixel, concatenated, plus the staggered subsampled input as shortcut.

Registered ``MixedOp`` candidates (BNAS op order ``BN(affine=False) -> sign ->
conv -> ReLU``, the sign being the conv's input quantizer)::

    bin_conv_3x3, bin_conv_5x5          binary conv
    bin_dil_conv_3x3, bin_dil_conv_5x5  binary conv, dilation 2
    bin_sep_conv_3x3                    binary depthwise + binary pointwise
    bin_conv_3x3_shortcut               BARS conv + shortcut
    bin_shortcut                        identity, or BinaryReduce when strided

Composite ops are ``keras.Sequential`` stacks of stock / larq layers where no
branch is needed, so cost, derivation and serialization see ordinary layers.

Example:
    >>> op = get_op("bin_conv_3x3", channels=8, strides=2)
    >>> op(tf.zeros([1, 8, 8, 8])).shape
    TensorShape([1, 4, 4, 8])
"""

import larq as lq
import tensorflow as tf

from searchlayers._keras import keras, register
from searchlayers.layers.ops import _subsample, register_op

L = keras.layers
SCALINGS = ("channel", "scalar", None)


def _check_scaling(scaling, where):
    if scaling not in SCALINGS:
        raise ValueError(
            f"{where}: unknown scaling {scaling!r}; allowed: 'channel' (per output "
            "filter, XNOR-Net), 'scalar' (one factor per layer, BARS) or None."
        )
    return scaling


@register  # 'searchlayers>ScaledSign' for Keras, plain 'ScaledSign' for larq's deserializer
@lq.utils.register_keras_custom_object
@lq.utils.set_precision(1)
class ScaledSign(lq.quantizers._BaseQuantizer):
    """1-bit quantizer ``scale * ste_sign(x)`` (XNOR-Net weight scaling).

    Args:
        scaling: ``"channel"``: ``scale = mean|x|`` over ``axes`` (default: all
            but the last axis, i.e. one factor per output filter of a conv
            kernel); ``"scalar"``: one ``mean|x|`` for the whole tensor;
            ``None``: no scale (``ste_sign``).
        axes: the axes averaged for ``"channel"`` (a depthwise kernel
            ``[kh, kw, cin, mult]`` uses ``(0, 1)``).
        clip_value: straight-through gradient clip of ``ste_sign``.

    The gradient flows through the scale too (as larq-zoo's
    ``xnor_weight_scale``).

    Example:
        >>> w = tf.constant([[0.5, -0.1], [-0.5, 0.3]])
        >>> ScaledSign("channel")(w).numpy().round(2).tolist()
        [[0.5, -0.2], [-0.5, 0.2]]
    """

    precision = 1

    def __init__(self, scaling="channel", axes=None, clip_value=1.0, **kwargs):
        self.scaling = _check_scaling(scaling, "ScaledSign")
        self.axes = None if axes is None else [int(a) for a in axes]
        self.clip_value = clip_value
        super().__init__(**kwargs)

    def _scale(self, x):
        if self.scaling == "scalar":
            return tf.reduce_mean(tf.abs(x))
        axes = self.axes if self.axes is not None else list(range(len(x.shape) - 1))
        return tf.reduce_mean(tf.abs(x), axis=axes, keepdims=True)

    def call(self, inputs):
        outputs = lq.quantizers.ste_sign(inputs, clip_value=self.clip_value)
        if self.scaling is not None:
            outputs = self._scale(inputs) * outputs
        return super().call(outputs)

    def get_config(self):
        return {**super().get_config(), "scaling": self.scaling, "axes": self.axes,
                "clip_value": self.clip_value}


def binary_kernel_quantizer(scaling, axes=None):
    """The 1-bit kernel quantizer for ``scaling`` ("ste_sign" when None).

    Example:
        >>> binary_kernel_quantizer(None)
        'ste_sign'
    """
    _check_scaling(scaling, "binary_kernel_quantizer")
    return "ste_sign" if scaling is None else ScaledSign(scaling, axes=axes)


@register
class QuantConv(lq.layers.QuantConv2D):
    """A binary convolution: sign input, 1-bit (optionally scaled) kernel.

    A larq ``QuantConv2D`` (LCE lowers it to ``LceBconv2d``) with defaults
    ``input_quantizer="ste_sign"``, ``kernel_constraint="weight_clip"``,
    ``padding="same"``, ``pad_values=1.0``, ``use_bias=False`` and a
    ``ScaledSign(scaling)`` kernel quantizer. Every other ``QuantConv2D``
    argument is accepted.

    Args:
        filters, kernel_size, strides: as ``Conv2D``.
        scaling: "channel" (default), "scalar" or None; see ``ScaledSign``.
        kernel_quantizer: overrides the one ``scaling`` gives.

    Example:
        >>> conv = QuantConv(8, 3, scaling="scalar")
        >>> conv(tf.ones([1, 6, 6, 4])).shape
        TensorShape([1, 6, 6, 8])
    """

    def __init__(self, filters, kernel_size, strides=1, padding="same", scaling="channel",
                 input_quantizer="ste_sign", kernel_quantizer=None,
                 kernel_constraint="weight_clip", pad_values=1.0, use_bias=False, **kwargs):
        self.scaling = _check_scaling(scaling, f"QuantConv '{kwargs.get('name', '')}'")
        if kernel_quantizer is None:
            kernel_quantizer = binary_kernel_quantizer(scaling)
        super().__init__(
            filters, kernel_size, strides=strides, padding=padding,
            input_quantizer=input_quantizer, kernel_quantizer=kernel_quantizer,
            kernel_constraint=kernel_constraint, pad_values=pad_values, use_bias=use_bias,
            **kwargs,
        )

    def get_config(self):
        return {**super().get_config(), "scaling": self.scaling}


def quant_depthwise(kernel_size, strides=1, scaling="channel", **kwargs):
    """A binary depthwise conv (larq ``QuantDepthwiseConv2D``, sign input,
    per-channel scaled 1-bit kernel, ``pad_values=1.0``).

    Example:
        >>> quant_depthwise(3)(tf.ones([1, 4, 4, 2])).shape
        TensorShape([1, 4, 4, 2])
    """
    return lq.layers.QuantDepthwiseConv2D(
        kernel_size, strides=strides, padding="same", pad_values=1.0, use_bias=False,
        input_quantizer="ste_sign",
        depthwise_quantizer=binary_kernel_quantizer(scaling, axes=(0, 1)),
        depthwise_constraint="weight_clip", **kwargs,
    )


def _bn(affine=False):
    return L.BatchNormalization(center=affine, scale=affine)


def bnas_conv(channels, kernel, strides=1, dilation=1, scaling="channel", affine=False):
    """BNAS' binary conv: ``BN -> sign -> conv -> ReLU`` as a ``keras.Sequential``.

    With ``dilation > 1`` and ``strides > 1`` the dilated conv runs at stride 1
    and a 1x1 stride-``s`` max-pool picks the strided output (TF cannot
    combine both).

    Example:
        >>> bnas_conv(8, 3, strides=2, dilation=2)(tf.ones([1, 8, 8, 4])).shape
        TensorShape([1, 4, 4, 8])
    """
    conv_strides = strides if dilation == 1 else 1
    conv = QuantConv(channels, kernel, conv_strides, dilation_rate=dilation, scaling=scaling)
    tail = _subsample(strides) if dilation > 1 else []
    return keras.Sequential([_bn(affine), conv, *tail, L.ReLU()])


def bnas_sep_conv(channels, kernel, strides=1, scaling="channel", affine=False):
    """Binary separable conv: ``BN -> sign -> depthwise -> sign -> 1x1 -> ReLU``.

    Each of the nested convs has its own scaled binary kernel and binarized
    input (BNAS eq. 4), the reason BNAS leaves it out of its space.

    Example:
        >>> bnas_sep_conv(8, 3)(tf.ones([1, 6, 6, 4])).shape
        TensorShape([1, 6, 6, 8])
    """
    return keras.Sequential([
        _bn(affine),
        quant_depthwise(kernel, strides, scaling),
        QuantConv(channels, 1, scaling=scaling),
        L.ReLU(),
    ])


# -- layers with a shortcut branch -------------------------------------------------------
def _stagger(x):
    """``x`` shifted up-left by one pixel (zero row/column at the far border)."""
    return tf.pad(x[:, 1:, 1:, :], [[0, 0], [0, 1], [0, 1], [0, 0]])


def _halve(shape):
    shape = tf.TensorShape(shape).as_list()
    for axis in (1, 2):
        if shape[axis] is not None:
            shape[axis] = -(-shape[axis] // 2)
    return shape


def _check_shortcut(where, cin, channels, strides):
    ok = cin == channels if strides == 1 else cin in (channels, channels / 2)
    if not ok:
        need = "equal" if strides == 1 else "equal, or output twice the input"
        raise ValueError(
            f"{where}: a shortcut from {cin} to {channels} channels at stride {strides} is "
            f"not possible; channels must be {need}."
        )


def staggered_shortcut(x, channels):
    """BARS' strided shortcut: the input subsampled at two staggered offsets.

    Output channels ``2 * cin``: the two subsamplings concatenated; ``cin``:
    their mean. Nothing is learned and no position is dropped twice.

    Example:
        >>> staggered_shortcut(tf.ones([1, 4, 4, 2]), 4).shape
        TensorShape([1, 2, 2, 4])
    """
    a = x[:, ::2, ::2, :]
    b = _stagger(x)[:, ::2, ::2, :]
    if channels == 2 * x.shape[-1]:
        return tf.concat([a, b], axis=-1)
    return 0.5 * (a + b)


class _Composite(L.Layer):
    """A layer built from sub-layers; reports its cost as the sum of theirs."""

    def _build_sub(self, layer, shape):
        with tf.name_scope(layer.name):  # unique weight names (H5 needs them)
            layer.build(shape)
        return tf.TensorShape(layer.compute_output_shape(shape))

    def _sub_shapes(self, input_shape):
        raise NotImplementedError

    def cost(self, input_shape):
        from searchlayers import cost as cost_lib

        return sum(
            (cost_lib.layer_cost(layer, shape) for layer, shape in self._sub_shapes(input_shape)),
            cost_lib.Cost.zero(),
        )


@register
class BinaryConvShortcut(_Composite):
    """BARS' binary conv with an extra shortcut: ``BN(QuantConv(x)) + shortcut(x)``.

    The shortcut is the identity at stride 1, else ``staggered_shortcut``.

    Example:
        >>> BinaryConvShortcut(8, 3)(tf.ones([1, 6, 6, 8])).shape
        TensorShape([1, 6, 6, 8])
    """

    def __init__(self, channels, kernel_size=3, strides=1, scaling="channel", affine=False,
                 **kwargs):
        super().__init__(**kwargs)
        self.channels, self.kernel_size = int(channels), int(kernel_size)
        self.strides, self.scaling, self.affine = int(strides), scaling, bool(affine)
        self.conv = QuantConv(self.channels, self.kernel_size, self.strides, scaling=scaling,
                              name="conv")
        self.bn = L.BatchNormalization(center=affine, scale=affine, name="bn")

    def build(self, input_shape):
        _check_shortcut(f"BinaryConvShortcut '{self.name}'", input_shape[-1], self.channels,
                        self.strides)
        self._build_sub(self.bn, self._build_sub(self.conv, input_shape))
        super().build(input_shape)

    def _sub_shapes(self, input_shape):
        return [(self.conv, input_shape), (self.bn, self.compute_output_shape(input_shape))]

    def call(self, x, training=None):
        y = self.bn(self.conv(x), training=training)
        return y + (x if self.strides == 1 else staggered_shortcut(x, self.channels))

    def compute_output_shape(self, input_shape):
        shape = _halve(input_shape) if self.strides > 1 else tf.TensorShape(input_shape).as_list()
        return tf.TensorShape(shape[:-1] + [self.channels])

    def get_config(self):
        return {**super().get_config(), "channels": self.channels,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "scaling": self.scaling, "affine": self.affine}


@register
class BinaryReduce(_Composite):
    """BARS' information-keeping strided shortcut (all binary).

    ``BN(concat(QuantConv1x1_s2(x), QuantConv1x1_s2(stagger(x)))) +
    staggered_shortcut(x)``: two stride-2 binary 1x1 convs, one on the input
    and one on the input shifted by one pixel, each producing half of
    ``channels``; the shortcut keeps the subsampled input itself. Input
    channels must be ``channels`` or ``channels / 2``. The binary analogue of
    ``FactorizedReduce``.

    Example:
        >>> BinaryReduce(8)(tf.ones([1, 6, 6, 4])).shape
        TensorShape([1, 3, 3, 8])
    """

    def __init__(self, channels, scaling="channel", affine=False, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.scaling, self.affine = int(channels), scaling, bool(affine)
        half = self.channels // 2
        self.conv_a = QuantConv(half, 1, 2, padding="valid", scaling=scaling, name="conv_a")
        self.conv_b = QuantConv(self.channels - half, 1, 2, padding="valid", scaling=scaling,
                                name="conv_b")
        self.bn = L.BatchNormalization(center=affine, scale=affine, name="bn")

    def build(self, input_shape):
        _check_shortcut(f"BinaryReduce '{self.name}'", input_shape[-1], self.channels, 2)
        for layer, shape in self._sub_shapes(input_shape):
            self._build_sub(layer, shape)
        super().build(input_shape)

    def _sub_shapes(self, input_shape):
        out = self.compute_output_shape(input_shape)
        return [(self.conv_a, input_shape), (self.conv_b, input_shape), (self.bn, out)]

    def call(self, x, training=None):
        y = tf.concat([self.conv_a(x), self.conv_b(_stagger(x))], axis=-1)
        return self.bn(y, training=training) + staggered_shortcut(x, self.channels)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(_halve(input_shape)[:-1] + [self.channels])

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "scaling": self.scaling,
                "affine": self.affine}


def _bin_shortcut(channels, strides):
    return L.Activation("linear") if strides == 1 else BinaryReduce(channels)


for _k in (3, 5):
    register_op(f"bin_conv_{_k}x{_k}", lambda c, s, k=_k: bnas_conv(c, k, s))
    register_op(f"bin_dil_conv_{_k}x{_k}", lambda c, s, k=_k: bnas_conv(c, k, s, dilation=2))
register_op("bin_sep_conv_3x3", lambda c, s: bnas_sep_conv(c, 3, s))
register_op("bin_conv_3x3_shortcut", lambda c, s: BinaryConvShortcut(c, 3, s))
register_op("bin_shortcut", _bin_shortcut)

BNAS_OPS = (
    "zeroise",
    "max_pool_3x3",
    "avg_pool_3x3",
    "bin_dil_conv_3x3",
    "bin_dil_conv_5x5",
    "bin_conv_3x3",
    "bin_conv_5x5",
)
"""BNAS' search space (Table 3)."""

BARS_OPS = ("bin_conv_3x3_shortcut", "bin_shortcut", "zeroise")
"""BARS' edge candidates: binary conv 3x3 with shortcut, shortcut, none."""

__all__ = [
    "BARS_OPS",
    "BNAS_OPS",
    "BinaryConvShortcut",
    "BinaryReduce",
    "QuantConv",
    "SCALINGS",
    "ScaledSign",
    "bnas_conv",
    "bnas_sep_conv",
    "binary_kernel_quantizer",
    "quant_depthwise",
    "staggered_shortcut",
]
