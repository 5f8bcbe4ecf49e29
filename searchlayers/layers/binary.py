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
* ``BinaryConvBN``: ``BN(QuantConv(x))``, BARS' binary preprocess layer.
* ``BinaryConvShortcut``: BARS' binary conv with an extra shortcut,
  ``BN(QuantConv(x)) + shortcut(x)``.
* ``BinaryReduce``: BARS' information-keeping strided shortcut: two strided
  binary 1x1 convs, one on the input and one on the input staggered by one
  pixel, interleaved, plus the staggered subsampled input as shortcut.
* ``slice_quant_kernel``: narrows a quantized kernel for a derived network
  (keeps the XNOR factor; returns what the cut zero inputs still add, since
  ``ste_sign(0) = +1``).

Registered ``MixedOp`` candidates (BNAS op order ``BN(affine=False) -> sign ->
conv -> ReLU``, the sign being the conv's input quantizer)::

    bin_conv_3x3, bin_conv_5x5          binary conv
    bin_dil_conv_3x3, bin_dil_conv_5x5  binary conv, dilation 2
    bin_sep_conv_3x3                    binary depthwise + binary pointwise
    bin_conv_3x3_shortcut               BARS conv + shortcut (scalar scaling)
    bin_shortcut                        identity, or BinaryReduce (scalar) when strided

Composite ops are ``keras.Sequential`` stacks of stock / larq layers where no
branch is needed, so cost, derivation and serialization see ordinary layers.

Example:
    >>> from searchlayers.layers import get_op
    >>> op = get_op("bin_conv_3x3", channels=8, strides=2)
    >>> op(tf.zeros([1, 8, 8, 8])).shape
    TensorShape([1, 4, 4, 8])
"""

import larq as lq
import numpy as np
import tensorflow as tf

from searchlayers import checks
from searchlayers._keras import PlainCall, keras, register
from searchlayers.layers.base import Sliceable, build_named
from searchlayers.layers.ops import BN_MOMENTUM, _subsample, register_op

L = keras.layers
SCALINGS = ("channel", "scalar", None)


def _check_scaling(scaling, where):
    # 'channel': per output filter (XNOR-Net); 'scalar': one factor per layer (BARS)
    return checks.choice(where, "scaling", scaling, SCALINGS)


def _quantizer_names():
    """The names larq resolves to a quantizer (for an error message only)."""
    names = []
    for name in dir(lq.quantizers):
        if name.startswith("_") or name in ("Quantizer", "NoOp", "NoOpQuantizer"):
            continue  # the base class; NoOp needs a precision
        try:
            lq.quantizers.get(name)
        except (TypeError, ValueError):
            continue
        names.append(name)
    return names + ["ScaledSign"]


def _check_quantizer(where, name, value):
    """``value`` if larq can make a quantizer of it (a name, a config dict, a
    callable or None); an unknown name lists the known ones."""
    if value is None or callable(value) or isinstance(value, dict):
        return value
    if not isinstance(value, str):
        raise checks.ArgumentTypeError(
            f"{where}: {name} must be a quantizer name, a larq quantizer or None, got "
            f"{checks.show(value)} ({type(value).__name__}).")
    try:
        lq.quantizers.get(value)
    except ValueError:
        allowed = ", ".join(map(repr, _quantizer_names()))
        raise ValueError(f"{where}: unknown {name} {value!r}; allowed: {allowed}, a larq "
                         "quantizer or None.") from None
    return value


@register  # 'searchlayers>ScaledSign' for Keras, plain 'ScaledSign' for larq's deserializer
@lq.utils.register_keras_custom_object
@lq.utils.set_precision(1)
class ScaledSign(PlainCall, lq.quantizers._BaseQuantizer):
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
        >>> np.round(ScaledSign("channel")(w).numpy(), 2)
        array([[ 0.5, -0.2],
               [-0.5,  0.2]], dtype=float32)
    """

    precision = 1

    def __init__(self, scaling="channel", axes=None, clip_value=1.0, **kwargs):
        self.scaling = _check_scaling(scaling, "ScaledSign")
        self.axes = None if axes is None else [
            checks.integer("ScaledSign", f"axes[{i}]", a)
            for i, a in enumerate(checks.sequence("ScaledSign", "axes", axes,
                                                  what="a list of axes"))]
        self.clip_value = checks.number("ScaledSign", "clip_value", clip_value, low=0,
                                        low_open=True, none_ok=True)
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
class QuantConv(PlainCall, lq.layers.QuantConv2D):
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
        where = f"QuantConv '{kwargs['name']}'" if kwargs.get("name") else "QuantConv"
        filters = checks.integer(where, "filters", filters, low=1)  # Keras' names no layer
        self.scaling = _check_scaling(scaling, where)
        _check_quantizer(where, "input_quantizer", input_quantizer)
        _check_quantizer(where, "kernel_quantizer", kernel_quantizer)
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
    return L.BatchNormalization(center=affine, scale=affine, momentum=BN_MOMENTUM)


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


# -- narrowing a quantized kernel (derivation) ---------------------------------------------
def input_zero(layer):
    """What ``layer``'s input quantizer makes of a zero input (0.0 without one).

    ``ste_sign(0) = +1``: a channel that is zero in the supernet still feeds a
    binary conv, so cutting it from a derived network needs ``slice_quant_kernel``'s
    offset.

    Example:
        >>> input_zero(QuantConv(4, 3))
        1.0
    """
    quantizer = getattr(layer, "input_quantizer", None)
    if quantizer is None:
        return 0.0
    return float(np.asarray(quantizer(tf.zeros([1])))[0])


def folds_zero_inputs(layer):
    """True when zero input channels of ``layer`` add the same constant at every
    output position (so a derived network may drop them and add the constant).

    Holds without padding (``"valid"``, 1x1 kernels, Dense) or when the padding
    value equals what the input quantizer makes of a zero (``QuantConv``:
    ``pad_values=1.0`` and ``ste_sign(0) = 1``).

    Example:
        >>> folds_zero_inputs(QuantConv(4, 3)), folds_zero_inputs(QuantConv(4, 3, pad_values=0.0))
        (True, False)
    """
    padding = getattr(layer, "padding", "valid")
    if padding == "valid" or all(k == 1 for k in getattr(layer, "kernel_size", (1,))):
        return True
    pad = float(getattr(layer, "pad_values", 0.0)) if padding == "same" else 0.0
    return pad == input_zero(layer)


def _scale_kind(quantizer):
    if isinstance(quantizer, ScaledSign):
        return quantizer.scaling
    if type(quantizer).__name__ == "MagnitudeAwareSign":
        return "channel"
    return None


def _scale_ratio(quantizer, full, kept, keep_out):
    """Factor that keeps the XNOR scale (mean |W|) of the narrowed kernel."""
    kind = _scale_kind(quantizer)
    if kind is None:
        return 1.0
    if kind == "scalar":
        old, new = np.abs(full).mean(), np.abs(kept).mean()
    else:
        axes = getattr(quantizer, "axes", None)
        axes = tuple(range(kept.ndim - 1)) if axes is None else tuple(axes)
        if kept.ndim - 2 not in axes:  # the scale does not average over inputs
            return 1.0
        old = np.abs(full[..., keep_out]).mean(axis=axes, keepdims=True)
        new = np.abs(kept).mean(axis=axes, keepdims=True)
    return np.where(new > 0, old / np.where(new > 0, new, 1.0), 1.0)


def slice_quant_kernel(layer, keep_in, keep_out):
    """``(kernel, offset)`` of a (larq) conv / dense narrowed to input channels
    ``keep_in`` and output channels ``keep_out``, for a derived network.

    * ``kernel``: the latent kernel, rescaled so that its quantized value keeps the
      supernet's XNOR factor (``ScaledSign`` and ``MagnitudeAwareSign`` average
      ``|W|`` over the input channels that are cut);
    * ``offset[o]``: what the removed input channels, zero in the supernet, still add
      to output ``o``: ``input_zero(layer) * sum`` of their quantized weights. Exact
      when ``folds_zero_inputs(layer)``; add it to a bias, or subtract it from the
      moving mean of the BatchNorm that follows.

    Example:
        >>> conv = QuantConv(2, 1, scaling=None); _ = conv(tf.ones([1, 2, 2, 3]))
        >>> kernel, offset = slice_quant_kernel(conv, [0], [0, 1])
        >>> kernel.shape, offset.shape
        ((1, 1, 1, 2), (2,))
    """
    w = layer.kernel.numpy()
    keep_in, keep_out = np.asarray(keep_in, int), np.asarray(keep_out, int)
    quantizer = getattr(layer, "kernel_quantizer", None)
    q = np.asarray(quantizer(tf.constant(w))) if quantizer is not None else w
    removed = np.setdiff1d(np.arange(w.shape[-2]), keep_in)
    offset = q[..., removed, :].sum(axis=tuple(range(w.ndim - 1)))[keep_out]
    kept = w[..., keep_in, :][..., keep_out]
    kept = kept * _scale_ratio(quantizer, w, kept, keep_out)
    return kept.astype(w.dtype), (input_zero(layer) * offset).astype(w.dtype)


# -- layers with a shortcut branch -------------------------------------------------------
SHORTCUTS = ("identity", "interleave", "mean")


def _stagger(x):
    """``x`` shifted up-left by one pixel (zero row/column at the far border)."""
    return tf.pad(x[:, 1:, 1:, :], [[0, 0], [0, 1], [0, 1], [0, 0]])


def _strided_shape(shape, strides):
    shape = tf.TensorShape(shape).as_list()
    for axis in (1, 2):
        if shape[axis] is not None:
            shape[axis] = -(-shape[axis] // strides)
    return shape


def _dims(t):
    """Reshape target of ``t`` without its channel axis (``-1`` for the batch)."""
    return [-1] + [d if d is not None else tf.shape(t)[i] for i, d in enumerate(t.shape[1:-1], 1)]


def _fit(t, channels, groups=1):
    """``t`` with each of its ``groups`` channel groups truncated or zero-padded so
    that there are ``channels`` in all (identity when they already match)."""
    have, want = t.shape[-1] // groups, channels // groups
    if have == want:
        return t
    dims = _dims(t)
    t = tf.reshape(t, dims + [groups, have])
    if have > want:
        t = t[..., :want]
    else:
        t = tf.pad(t, [[0, 0]] * (len(dims) + 1) + [[0, want - have]])
    return tf.reshape(t, dims + [channels])


def _interleave(a, b, channels, groups=1):
    """Per channel group ``[a0, b0, a1, b1, ...]``, fitted to ``channels``.

    ``b`` may have one channel less per group than ``a``, or be None (zeros).
    Interleaving (not concatenating) keeps a derived, narrower layer equal to the
    supernet's leading channels: output ``2j, 2j + 1`` depend on input ``j`` only.
    """
    k = a.shape[-1] // groups
    b = tf.zeros_like(a) if b is None else _fit(b, groups * k, groups)
    dims = _dims(a)
    pair = tf.stack([tf.reshape(a, dims + [groups, k]), tf.reshape(b, dims + [groups, k])], -1)
    return _fit(tf.reshape(pair, dims + [groups * 2 * k]), channels, groups)


def staggered_shortcut(x, channels, mode=None, groups=1):
    """BARS' strided shortcut: the input subsampled at two staggered offsets.

    ``mode="interleave"`` (default when ``channels = 2 * cin``): the two
    subsamplings interleaved channel by channel (``2j``: offset 0, ``2j + 1``:
    offset 1) within each of ``groups`` channel groups; ``"mean"`` (default when
    ``channels = cin``): their mean. The result is fitted (truncated or
    zero-padded per group) to ``channels``. Nothing is learned and no position
    is dropped twice.

    Example:
        >>> staggered_shortcut(tf.ones([1, 4, 4, 2]), 4).shape
        TensorShape([1, 2, 2, 4])
    """
    a = x[:, ::2, ::2, :]
    b = _stagger(x)[:, ::2, ::2, :]
    mode = mode or ("interleave" if channels == 2 * x.shape[-1] else "mean")
    if mode == "interleave":
        return _interleave(a, b, channels, groups)
    return _fit(0.5 * (a + b), channels, groups)


SHORTCUTS = {1: ("identity",), 2: ("interleave", "mean")}  # per stride; None: inferred


def _resolve_shortcut(where, mode, cin, channels, strides):
    """The shortcut of a layer: ``mode`` when given, else read off the shapes."""
    if mode is not None:
        allowed = SHORTCUTS[strides]
        if mode not in allowed:
            raise ValueError(
                f"{where}: shortcut {mode!r} is not possible at stride {strides}; "
                f"allowed: {', '.join(map(repr, allowed))} (or None to infer it)."
            )
        return mode
    ok = cin == channels if strides == 1 else cin in (channels, channels / 2)
    if not ok:
        need = "equal" if strides == 1 else "equal, or output twice the input"
        raise ValueError(
            f"{where}: a shortcut from {cin} to {channels} channels at stride {strides} is "
            f"not possible; channels must be {need}."
        )
    if strides == 1:
        return "identity"
    return "interleave" if channels == 2 * cin else "mean"


def _group_leading(groups, size, n):
    """Indices of the first ``n`` channels of each of ``groups`` blocks of ``size``."""
    return (np.arange(groups)[:, None] * size + np.arange(n)[None, :]).reshape(-1)


def _copy(layer, name):
    from searchlayers.layers.base import copy_layer

    return copy_layer(layer, layer._build_input_shape, name=name)


def _narrow_bn(new, old, keep, shift):
    """``new`` gets ``old``'s BatchNorm weights at channels ``keep``, the moving
    mean lowered by ``shift`` (``BN(z + s) = BN'(z)``)."""
    values = []
    for w in old.weights:
        value = w.numpy()[keep]
        if "moving_mean" in w.name:
            value = value - shift
        values.append(value)
    new.set_weights(values)


class _Composite(PlainCall, L.Layer):
    """A layer built from sub-layers; reports its cost as the sum of theirs.

    Derivation (``searchlayers.derive`` with width masks; the ``Sliceable``
    answer of the derivation hook) narrows it with
    ``sliced(keep_in, keep_out)`` — weights inherited, the contribution of the cut
    (zero) inputs folded into the BatchNorm — and writes it into the derived graph
    as plain larq / Keras layers with ``inline(x)``. ``input_channels`` /
    ``output_channels`` say which channels it can keep: by default the leading
    ones of each of its ``channel_groups`` groups (its shortcut needs that
    structure).
    """

    derives_to = Sliceable  # its own derivation hook (see SearchLayer's protocol)
    channel_groups = 1

    def derivation(self, choice=None):
        """``Sliceable``: derived, it narrows itself (``sliced``, ``inline``)."""
        return Sliceable(self)

    def _build_sub(self, layer, shape):
        build_named(layer, shape)
        return tf.TensorShape(layer.compute_output_shape(shape))

    def _sub_shapes(self, input_shape):
        raise NotImplementedError

    def cost(self, input_shape):
        from searchlayers import cost as cost_lib

        return sum(
            (cost_lib.layer_cost(layer, shape) for layer, shape in self._sub_shapes(input_shape)),
            cost_lib.Cost.zero(),
        )

    def input_channels(self, nonzero):
        """Input channels a narrower copy keeps, given the (boolean) nonzero ones.

        Example:
            >>> BinaryReduce(8, groups=2).input_channels(np.array([1, 0, 0, 0, 1, 1, 0, 0])).tolist()
            [0, 4, 5]
        """
        from searchlayers.layers.base import leading_closure

        return leading_closure(nonzero, self.channel_groups)

    def output_channels(self, wanted):
        """Output channels a narrower copy computes, given the (boolean) wanted ones."""
        from searchlayers.layers.base import leading_closure

        return leading_closure(wanted, self.channel_groups)

    def _narrow(self, n_in, name, **changes):
        """A built copy of this layer's config with ``changes`` and ``n_in`` input
        channels."""
        new = type(self).from_config({**self.get_config(), "name": name or self.name, **changes})
        shape = tf.TensorShape(self._build_input_shape).as_list()
        shape[-1] = n_in
        build_named(new, shape)
        return new

    def sliced(self, keep_in, keep_out, name=None):
        """The narrower layer of a derived network (see the class docstring)."""
        raise NotImplementedError

    def inline(self, x, name=None):
        """Applies copies of the sub-layers (and TF ops) to the Keras tensor ``x``."""
        raise NotImplementedError


@register
class BinaryConvBN(_Composite):
    """A binary conv and its BatchNorm, ``BN(QuantConv(x))``: BARS' single
    preprocess layer of a cell (the width change), binary like the rest.

    Example:
        >>> BinaryConvBN(4, 1)(tf.ones([1, 6, 6, 8])).shape
        TensorShape([1, 6, 6, 4])
    """

    def __init__(self, channels, kernel_size=3, strides=1, scaling="channel", affine=False,
                 **kwargs):
        super().__init__(**kwargs)
        where = f"{type(self).__name__} '{self.name}'"
        self.channels = checks.integer(where, "channels", channels, low=1)
        self.kernel_size = checks.integer(where, "kernel_size", kernel_size, low=1)
        self.strides = checks.integer(where, "strides", strides, low=1)
        self.affine = checks.boolean(where, "affine", affine)
        self.scaling = _check_scaling(scaling, f"{type(self).__name__} '{self.name}'")
        self.conv = QuantConv(self.channels, self.kernel_size, self.strides, scaling=scaling,
                              name=f"{self.name}_conv")
        self.bn = L.BatchNormalization(center=affine, scale=affine, momentum=BN_MOMENTUM,
                                         name=f"{self.name}_bn")

    def build(self, input_shape):
        self._build_sub(self.bn, self._build_sub(self.conv, input_shape))
        super().build(input_shape)

    def _sub_shapes(self, input_shape):
        return [(self.conv, input_shape), (self.bn, self.compute_output_shape(input_shape))]

    def call(self, x, training=None):
        return self.bn(self.conv(x), training=training)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(_strided_shape(input_shape, self.strides)[:-1] + [self.channels])

    def input_channels(self, nonzero):
        """Any channels: the nonzero ones (at least one)."""
        found = np.flatnonzero(nonzero)
        return found if len(found) else np.arange(1)

    def output_channels(self, wanted):
        """Any channels: the wanted ones (at least one)."""
        return self.input_channels(wanted)

    def _fixed(self):
        return {}

    def sliced(self, keep_in, keep_out, name=None):
        """Input channels ``keep_in`` and output channels ``keep_out`` (indices;
        see ``_Composite``).

        Example:
            >>> layer = BinaryConvBN(8, 3); _ = layer(tf.ones([1, 4, 4, 8]))
            >>> layer.sliced([0, 5], [0, 1, 2, 3]).compute_output_shape([None, 4, 4, 2])
            TensorShape([None, 4, 4, 4])
        """
        new = self._narrow(len(keep_in), name, channels=len(keep_out), **self._fixed())
        kernel, offset = slice_quant_kernel(self.conv, keep_in, keep_out)
        new.conv.set_weights([kernel])
        _narrow_bn(new.bn, self.bn, keep_out, offset)
        return new

    def inline(self, x, name=None):
        """``BN(QuantConv(x))`` with copied layers (see ``_Composite``).

        Example:
            >>> layer = BinaryConvBN(4, 1); _ = layer(tf.ones([1, 4, 4, 2]))
            >>> layer.inline(keras.Input((4, 4, 2)), "pre").shape
            TensorShape([None, 4, 4, 4])
        """
        name = name or self.name
        return _copy(self.bn, f"{name}_bn")(_copy(self.conv, f"{name}_conv")(x))

    def get_config(self):
        return {**super().get_config(), "channels": self.channels,
                "kernel_size": self.kernel_size, "strides": self.strides,
                "scaling": self.scaling, "affine": self.affine}


@register
class BinaryConvShortcut(BinaryConvBN):
    """BARS' binary conv with an extra shortcut: ``BN(QuantConv(x)) + shortcut(x)``.

    The shortcut is the identity at stride 1, else ``staggered_shortcut``
    (``shortcut``: None infers it from the channels; "identity", "interleave" or
    "mean" fix it, fitting the result to ``channels``).

    Example:
        >>> BinaryConvShortcut(8, 3)(tf.ones([1, 6, 6, 8])).shape
        TensorShape([1, 6, 6, 8])
    """

    def __init__(self, channels, kernel_size=3, strides=1, scaling="channel", affine=False,
                 shortcut=None, **kwargs):
        super().__init__(channels, kernel_size, strides, scaling, affine, **kwargs)
        if self.strides not in (1, 2):
            raise ValueError(
                f"BinaryConvShortcut '{self.name}': strides must be 1 or 2, got {strides}."
            )
        self.shortcut = checks.choice(f"BinaryConvShortcut '{self.name}'", "shortcut",
                                      shortcut, (None,) + SHORTCUTS[self.strides])

    def build(self, input_shape):
        self.shortcut_mode = _resolve_shortcut(
            f"BinaryConvShortcut '{self.name}'", self.shortcut, input_shape[-1], self.channels,
            self.strides)
        super().build(input_shape)

    def _shortcut(self, x):
        if self.shortcut_mode == "identity":
            return _fit(x, self.channels)
        return staggered_shortcut(x, self.channels, self.shortcut_mode)

    def call(self, x, training=None):
        return super().call(x, training) + self._shortcut(x)

    def input_channels(self, nonzero):
        return _Composite.input_channels(self, nonzero)  # the shortcut needs leading ones

    def output_channels(self, wanted):
        return _Composite.output_channels(self, wanted)

    def _fixed(self):
        return {"shortcut": self.shortcut_mode}

    def inline(self, x, name=None):
        name = name or self.name
        return L.Add(name=f"{name}_add")([super().inline(x, name), self._shortcut(x)])

    def get_config(self):
        return {**super().get_config(), "shortcut": self.shortcut}


@register
class BinaryReduce(_Composite):
    """BARS' information-keeping strided shortcut (all binary).

    ``BN(interleave(QuantConv1x1_s2(x), QuantConv1x1_s2(stagger(x)))) +
    staggered_shortcut(x)``: two stride-2 binary 1x1 convs, one on the input and
    one on the input shifted by one pixel, their outputs interleaved channel by
    channel; the shortcut keeps the subsampled input itself. Input channels must
    be ``channels`` or ``channels / 2``. With ``groups > 1`` the channels are
    ``groups`` blocks (a cell's concatenated nodes) interleaved block by block.
    The binary analogue of ``FactorizedReduce``.

    Example:
        >>> BinaryReduce(8)(tf.ones([1, 6, 6, 4])).shape
        TensorShape([1, 3, 3, 8])
    """

    def __init__(self, channels, scaling="channel", affine=False, shortcut=None, groups=1,
                 **kwargs):
        super().__init__(**kwargs)
        where = f"BinaryReduce '{self.name}'"
        self.channels = checks.integer(where, "channels", channels, low=1)
        self.groups = checks.integer(where, "groups", groups, low=1)
        if self.channels % self.groups:
            raise ValueError(
                f"BinaryReduce '{self.name}': channels={channels} must be a multiple of "
                f"groups={groups} (>= 1)."
            )
        self.scaling = _check_scaling(scaling, where)
        self.affine = checks.boolean(where, "affine", affine)
        self.shortcut = checks.choice(where, "shortcut", shortcut, (None,) + SHORTCUTS[2])
        per_group = self.channels // self.groups
        self.conv_a = QuantConv(self.groups * (per_group - per_group // 2), 1, 2,
                                padding="valid", scaling=scaling,
                                name=f"{self.name}_conv_a")
        self.conv_b = None
        if per_group // 2:
            self.conv_b = QuantConv(self.groups * (per_group // 2), 1, 2, padding="valid",
                                    scaling=scaling, name=f"{self.name}_conv_b")
        self.bn = L.BatchNormalization(center=affine, scale=affine, momentum=BN_MOMENTUM,
                                         name=f"{self.name}_bn")

    @property
    def channel_groups(self):
        return self.groups

    def build(self, input_shape):
        where = f"BinaryReduce '{self.name}'"
        cin = input_shape[-1]
        if cin is None or cin % self.groups:
            raise ValueError(f"{where}: {cin} input channels are not a multiple of "
                             f"groups={self.groups}.")
        self.shortcut_mode = _resolve_shortcut(where, self.shortcut, cin, self.channels, 2)
        for layer, shape in self._sub_shapes(input_shape):
            self._build_sub(layer, shape)
        super().build(input_shape)

    def _convs(self):
        return [c for c in (self.conv_a, self.conv_b) if c is not None]

    def _sub_shapes(self, input_shape):
        out = self.compute_output_shape(input_shape)
        return [(conv, input_shape) for conv in self._convs()] + [(self.bn, out)]

    def _mix(self, a, b):
        return _interleave(a, b, self.channels, self.groups)

    def _shortcut(self, x):
        return staggered_shortcut(x, self.channels, self.shortcut_mode, self.groups)

    def call(self, x, training=None):
        b = None if self.conv_b is None else self.conv_b(_stagger(x))
        y = self.bn(self._mix(self.conv_a(x), b), training=training)
        return y + self._shortcut(x)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(_strided_shape(input_shape, 2)[:-1] + [self.channels])

    def sliced(self, keep_in, keep_out, name=None):
        """The leading ``len(keep_in) / groups`` input and ``len(keep_out) / groups``
        output channels of every group.

        Example:
            >>> layer = BinaryReduce(8, groups=2); _ = layer(tf.ones([1, 4, 4, 4]))
            >>> layer.sliced([0, 2], [0, 1, 2, 4, 5, 6]).compute_output_shape([None, 4, 4, 2])
            TensorShape([None, 2, 2, 6])
        """
        g = self.groups
        cin = tf.TensorShape(self._build_input_shape)[-1] // g
        per_group = self.channels // g
        n_in, n_out = len(keep_in) // g, len(keep_out) // g
        n_a, n_b = n_out - n_out // 2, n_out // 2
        keep_in = _group_leading(g, cin, n_in)
        new = self._narrow(g * n_in, name, channels=g * n_out, shortcut=self.shortcut_mode)
        kernel, off_a = slice_quant_kernel(
            self.conv_a, keep_in, _group_leading(g, per_group - per_group // 2, n_a))
        new.conv_a.set_weights([kernel])
        offset = np.zeros([g, n_out], np.float32)
        offset[:, 0::2] = off_a.reshape(g, n_a)
        if n_b:
            kernel, off_b = slice_quant_kernel(
                self.conv_b, keep_in, _group_leading(g, per_group // 2, n_b))
            new.conv_b.set_weights([kernel])
            offset[:, 1::2] = off_b.reshape(g, n_b)
        _narrow_bn(new.bn, self.bn, _group_leading(g, per_group, n_out), offset.reshape(-1))
        return new

    def inline(self, x, name=None):
        """The layer as copied larq / Keras layers and TF ops on ``x``.

        Example:
            >>> layer = BinaryReduce(4); _ = layer(tf.ones([1, 4, 4, 2]))
            >>> layer.inline(keras.Input((4, 4, 2)), "down").shape
            TensorShape([None, 2, 2, 4])
        """
        name = name or self.name
        a = _copy(self.conv_a, f"{name}_conv_a")(x)
        b = None if self.conv_b is None else _copy(self.conv_b, f"{name}_conv_b")(_stagger(x))
        y = _copy(self.bn, f"{name}_bn")(self._mix(a, b))
        return L.Add(name=f"{name}_add")([y, self._shortcut(x)])

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "scaling": self.scaling,
                "affine": self.affine, "shortcut": self.shortcut, "groups": self.groups}


def _bin_shortcut(channels, strides):
    return L.Activation("linear") if strides == 1 else BinaryReduce(channels, scaling="scalar")


for _k in (3, 5):
    register_op(f"bin_conv_{_k}x{_k}", lambda c, s, k=_k: bnas_conv(c, k, s))
    register_op(f"bin_dil_conv_{_k}x{_k}", lambda c, s, k=_k: bnas_conv(c, k, s, dilation=2))
register_op("bin_sep_conv_3x3", lambda c, s: bnas_sep_conv(c, 3, s))
register_op("bin_conv_3x3_shortcut",
            lambda c, s: BinaryConvShortcut(c, 3, s, scaling="scalar"))
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
    "BinaryConvBN",
    "BinaryConvShortcut",
    "BinaryReduce",
    "QuantConv",
    "SCALINGS",
    "SHORTCUTS",
    "ScaledSign",
    "bnas_conv",
    "bnas_sep_conv",
    "binary_kernel_quantizer",
    "folds_zero_inputs",
    "input_zero",
    "quant_depthwise",
    "slice_quant_kernel",
    "staggered_shortcut",
]
