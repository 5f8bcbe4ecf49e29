"""Analytic cost model: MACs, parameters and memory, per layer and per model.

One implementation serves two uses:

* ``profile(model)`` counts a built Keras model exactly, layer by layer, and prints a
  table (float MACs, binary MACs, float and binary parameters, memory, equivalent ops).
* The formula functions (``conv_cost``, ``depthwise_cost``, ``dense_cost``) and
  ``layer_cost(layer, input_shape, cin=..., cout=...)`` accept fractional channel
  counts, including ``tf`` tensors, so search layers get a differentiable *expected*
  cost from the same code.

Conventions:

* A MAC is one multiply-accumulate (not 2 FLOPs). A convolution costs
  ``cout * out_h * out_w * (cin / groups) * kh * kw`` MACs; a transposed convolution
  uses the input positions instead of the output ones.
* A MAC is *binary* when both the layer's input quantizer and the weight's quantizer
  have precision 1 (larq's ``lq.models.summary`` rule: the precision of a MAC is the
  larger bitwidth of its operands). Larq layers whose kernel quantizer has precision 1
  store that kernel as binary parameters even when the input is float (then the MACs are
  float). Biases are always float.
* ``equivalent_ops = float_macs + binary_macs / 64`` (BARS, Table 2).
* ``memory_bytes`` is parameter storage: ``4 * float_params + binary_params / 8``.
* BatchNormalization is folded: 0 MACs, its ``count_params()`` (gamma, beta, moving
  mean and variance) are float parameters. Embedding is a table look-up: 0 MACs.
* ``elementwise`` counts element-wise arithmetic on activations, apart from MACs (and
  out of ``macs`` and ``equivalent_ops``): per output element, ``k - 1`` ops for a merge
  of ``k`` inputs (``Add``, ``Subtract``, ``Multiply``, ``Maximum``, ``Minimum``; ``k``
  for ``Average``), 1 for a per-channel scale (ConvNeXt's ``LayerScale``), ``PReLU`` or
  a TF binary op (``x + y``, ``x * 0.5``: ``TFOpLambda``), 2 for ``Rescaling`` (scale and
  offset) and ``Normalization`` (subtract, divide), and for ``LayerNormalization`` /
  ``GroupNormalization`` 4 plus 1 with a learned scale or offset (fvcore's norm count).
  Activations, pooling, softmax, padding, concatenation, reshapes and channel
  selection (``ChannelSelect``, derive's re-indexing) move or map data: not counted.
* Attention: ``MultiHeadAttention`` counts its query / key / value / output
  projections (``EinsumDense``, ``prod(output) * prod(contracted kernel dims)`` MACs)
  plus ``heads * Tq * Tv * (key_dim + value_dim)`` MACs for the scores and the weighted
  sum, and the query scaling as elementwise; ``Attention`` (dot) ``Tq * Tv * (dim +
  value dim)`` MACs (``Tq``, ``Tv``: query / value positions).
* A layer with weights whose cost this module does not know is a *gap*: it keeps its
  parameters and counts 0 MACs, ``profile`` warns with one line naming it and its
  parameters, marks it with ``*`` and ``Profile.complete`` is False. Weightless layers
  of unknown type count nothing (they have no MACs by the rules above).

Extension protocol: a layer that defines ``cost(input_shape) -> Cost`` is asked for its
cost instead of being dispatched on its type. Search layers (``MixedOp`` and friends)
implement it to report their expected cost under the current architecture distribution;
composite layers (``FactorizedReduce``, the binary composites) as the sum of their parts,
through ``layer_cost``, so a gap inside them is still reported (``collect_gaps``). A
user's layer declares its cost the same way:

    >>> import tensorflow as tf
    >>> from searchlayers._keras import keras
    >>> from searchlayers import cost
    >>> class Scale(keras.layers.Layer):      # y = x * w, one weight per channel
    ...     def build(self, input_shape):
    ...         self.w = self.add_weight("w", shape=input_shape[-1:])
    ...     def call(self, x):
    ...         return x * self.w
    ...     def cost(self, input_shape):
    ...         positions = input_shape[1] * input_shape[2]
    ...         return cost.Cost(float_params=input_shape[-1],
    ...                          elementwise=positions * input_shape[-1])
    >>> inputs = keras.Input((4, 4, 3))
    >>> p = cost.profile(keras.Model(inputs, Scale()(inputs)))
    >>> p.complete, p.total.elementwise, p.total.params
    (True, 48, 3)

Example:
    >>> from searchlayers._keras import keras
    >>> from searchlayers import cost
    >>> inputs = keras.Input((8, 8, 3))
    >>> model = keras.Model(inputs, keras.layers.Conv2D(4, 3, padding="same")(inputs))
    >>> cost.profile(model).total.float_macs    # 4 * 8 * 8 * 3 * 3 * 3
    6912
"""

import contextlib
import math
import threading
import warnings
from dataclasses import dataclass, fields

import numpy as np
import tensorflow as tf

from searchlayers import checks
from searchlayers._keras import keras, require_built
from searchlayers.graph import is_graph, nodes
from searchlayers.layers.channel_select import ChannelSelect


__all__ = [
    "Cost",
    "CostGapWarning",
    "Profile",
    "collect_gaps",
    "compare",
    "conv_cost",
    "dense_cost",
    "depthwise_cost",
    "elementwise_cost",
    "layer_cost",
    "profile",
]

_L = keras.layers
_SEPARABLE = (_L.SeparableConv1D, _L.SeparableConv2D)
_DEPTHWISE = (_L.DepthwiseConv1D, _L.DepthwiseConv2D)
_TRANSPOSE = (_L.Conv1DTranspose, _L.Conv2DTranspose, _L.Conv3DTranspose)
_CONV = (_L.Conv1D, _L.Conv2D, _L.Conv3D)
_MERGE_OPS = {_L.Add: 1, _L.Subtract: 1, _L.Multiply: 1, _L.Maximum: 1, _L.Minimum: 1,
              _L.Average: 0}  # ops per element: inputs - 1 (+ 1: Average divides)
_NORMS = (_L.LayerNormalization, _L.GroupNormalization)
# TF ops that Keras wraps as TFOpLambda layers: one op per output element.
_ELEMENTWISE_SYMBOLS = frozenset(
    f"{prefix}.{op}" for prefix in ("math", "__operators__")
    for op in ("add", "subtract", "sub", "multiply", "mul", "truediv", "divide",
               "maximum", "minimum", "squared_difference")
)


def _optional_class(module, name):
    """A Keras-internal class, or an empty tuple when this Keras lacks it."""
    try:
        return (getattr(__import__(module, fromlist=[name]), name),)
    except (ImportError, AttributeError):
        return ()


_LAYER_SCALE = _optional_class("tf_keras.src.applications.convnext", "LayerScale")
_TF_OP = _optional_class("tf_keras.src.layers.core.tf_op_layer", "TFOpLambda")

_METRICS = {
    "macs": lambda c: c.float_macs + c.binary_macs,
    "float_macs": lambda c: c.float_macs,
    "binary_macs": lambda c: c.binary_macs,
    "params": lambda c: c.params,
    "float_params": lambda c: c.float_params,
    "binary_params": lambda c: c.binary_params,
    "equivalent_ops": lambda c: c.equivalent_ops,
    "eq_ops": lambda c: c.equivalent_ops,
    "memory_bytes": lambda c: c.memory_bytes,
    "elementwise": lambda c: c.elementwise,
}


class CostGapWarning(UserWarning):
    """``profile`` met layers with weights whose cost it does not know."""


@dataclass(frozen=True)
class Cost:
    """Cost of a layer or model; values are Python numbers or ``tf`` tensors.

    ``memory_bytes`` defaults to ``4 * float_params + binary_params / 8``.
    ``elementwise`` counts element-wise ops, apart from the MACs (module docstring).

    Example:
        >>> c = Cost(float_macs=100, binary_macs=640, float_params=10)
        >>> c.equivalent_ops, c.memory_bytes, (2 * c + c).float_macs
        (110.0, 40.0, 300)
    """

    float_macs: object = 0
    binary_macs: object = 0
    float_params: object = 0
    binary_params: object = 0
    memory_bytes: object = None
    elementwise: object = 0

    # Makes numpy scalars defer to __rmul__ / __radd__ instead of broadcasting.
    __array_ufunc__ = None

    def __post_init__(self):
        if self.memory_bytes is None:
            memory = 4 * self.float_params + self.binary_params / 8
            object.__setattr__(self, "memory_bytes", memory)

    @classmethod
    def zero(cls):
        """The cost of nothing.

        Example:
            >>> Cost.zero().params
            0
        """
        return cls(0, 0, 0, 0, 0)

    @property
    def params(self):
        """All parameters: ``float_params + binary_params``.

        Example:
            >>> Cost(float_params=3, binary_params=64).params
            67
        """
        return self.float_params + self.binary_params

    @property
    def equivalent_ops(self):
        """``float_macs + binary_macs / 64`` (BARS Table 2 convention).

        Example:
            >>> Cost(float_macs=1, binary_macs=64).equivalent_ops
            2.0
        """
        return self.float_macs + self.binary_macs / 64

    def metric(self, name):
        """One quantity by name.

        Names: ``macs`` (float + binary), ``float_macs``, ``binary_macs``, ``params``,
        ``float_params``, ``binary_params``, ``equivalent_ops`` (alias ``eq_ops``),
        ``memory_bytes``, ``elementwise``.

        Example:
            >>> Cost(float_macs=5, binary_macs=64).metric("macs")
            69
        """
        if name not in _METRICS:
            raise ValueError(
                f"Unknown cost metric {name!r}; allowed: {', '.join(sorted(_METRICS))}."
            )
        return _METRICS[name](self)

    def operations(self):
        """The computation only (MACs and elementwise ops, no parameters or memory):
        what a repeated call of a shared layer adds.

        Example:
            >>> Cost(float_macs=5, float_params=2, elementwise=3).operations()
            Cost(float_macs=5, binary_macs=0, float_params=0, binary_params=0, memory_bytes=0.0, elementwise=3)
        """
        return Cost(float_macs=self.float_macs, binary_macs=self.binary_macs,
                    elementwise=self.elementwise)

    def _values(self):
        return [getattr(self, f.name) for f in fields(self)]

    def __add__(self, other):
        if isinstance(other, Cost):
            return Cost(*[a + b for a, b in zip(self._values(), other._values())])
        if _is_zero(other):
            return self
        return NotImplemented

    __radd__ = __add__  # so that sum([...]) works (it starts from 0)

    def __mul__(self, scalar):
        if isinstance(scalar, Cost):
            return NotImplemented
        return Cost(*[scalar * v for v in self._values()])

    __rmul__ = __mul__

    def __truediv__(self, scalar):
        return Cost(*[v / scalar for v in self._values()])


class _UnknownSizeError(ValueError):
    """A shape with an unknown (None) size where the cost needs it."""

    def __init__(self, message, layer=None):
        super().__init__(message)
        self.layer = layer


def _is_zero(x):
    return isinstance(x, (int, float)) and x == 0


def _prod(values):
    """Product of a sequence of ints; an int ``k`` means the square ``(k, k)``."""
    if isinstance(values, (int, np.integer)):
        return int(values) ** 2
    if any(v is None for v in values):
        raise _UnknownSizeError(f"Cannot count cost over an unknown spatial size {values}.")
    return math.prod(int(v) for v in values)


def _dims(where, name, values, square=True):
    """``values`` (a shape, or with ``square`` an int ``k``: ``(k, k)``) if every size
    is an integer >= 0 or None (unknown); a negative, fractional or non-number size
    names ``name[i]``. ``2.0`` passes (a whole number)."""
    if isinstance(values, tf.TensorShape) or (type(values) is int and values >= 0 and square):
        return values
    if type(values) is tuple and all(v is None or (type(v) is int and v >= 0) for v in values):
        return values  # a Keras shape: the common case, no further test
    if square and checks.is_number(values):
        checks.integer(where, name, values, low=0)
        return values
    what = "an integer or a list of sizes" if square else "a shape (a list of sizes)"
    for i, v in enumerate(checks.sequence(where, name, values, nonempty=False, what=what)):
        if v is not None and not (type(v) is int and v >= 0):  # the common case costs one test
            checks.integer(where, f"{name}[{i}]", v, low=0,
                           allowed="an integer >= 0 or None (unknown)")
    return values


def _amount(where, name, value, low_open=False):
    """``value`` unchanged if it is a number >= 0 (> 0 with ``low_open``) or a tensor
    (an expected count); a string, bool, None, NaN or negative number is an error."""
    if type(value) in (int, float) and (value > 0 if low_open else value >= 0) \
            and value != math.inf:  # the common case: one test (NaN fails the comparison)
        return value
    if checks.is_number(value) or value is None or isinstance(value, (str, bytes, bool)):
        checks.number(where, name, value, low=0, low_open=low_open)
    return value


def _count(where, name, value):
    """``value`` if it is an integer >= 1 (``groups``, ``depth_multiplier``)."""
    return value if type(value) is int and value >= 1 else checks.integer(where, name, value,
                                                                          low=1)


def _div(a, b):
    """``a / b``, kept an int when both are ints and ``b`` divides ``a``."""
    if isinstance(a, int) and isinstance(b, int) and a % b == 0:
        return a // b
    return a / b


def _weights_cost(macs, kernel_params, bias_params, binary, binary_kernel):
    """Puts MACs and parameters on the float or binary side."""
    return Cost(
        float_macs=0 if binary else macs,
        binary_macs=macs if binary else 0,
        float_params=bias_params + (0 if binary_kernel else kernel_params),
        binary_params=kernel_params if binary_kernel else 0,
    )


def conv_cost(
    cin, cout, kernel_size, out_hw, groups=1, binary=False, use_bias=True,
    binary_kernel=None,
):
    """Cost of a (grouped) convolution; ``cin``/``cout`` may be fractional or tensors.

    MACs = ``cout * prod(out_hw) * (cin / groups) * prod(kernel_size)``. ``binary``
    marks binary MACs and a binary kernel; ``binary_kernel`` overrides the latter (a
    1-bit kernel with a float input). An int ``kernel_size`` or ``out_hw`` means a
    square, as in Keras; pass tuples for other ranks (``(k,)`` for 1-D).

    Example:
        >>> c = conv_cost(3, 8, (3, 3), (16, 16))
        >>> c.float_macs, c.float_params
        (55296, 224)
    """
    _amount("conv_cost", "cin", cin)
    _amount("conv_cost", "cout", cout)
    _dims("conv_cost", "kernel_size", kernel_size)
    _dims("conv_cost", "out_hw", out_hw)
    _count("conv_cost", "groups", groups)
    if binary_kernel is None:
        binary_kernel = binary
    kernel = _div(cin, groups) * _prod(kernel_size) * cout
    macs = kernel * _prod(out_hw)
    return _weights_cost(macs, kernel, cout if use_bias else 0, binary, binary_kernel)


def depthwise_cost(
    channels, kernel_size, out_hw, depth_multiplier=1, binary=False, use_bias=True,
    binary_kernel=None,
):
    """Cost of a depthwise convolution over ``channels`` input channels.

    MACs = ``channels * depth_multiplier * prod(out_hw) * prod(kernel_size)``.

    Example:
        >>> depthwise_cost(4, 3, (8, 8), depth_multiplier=2).float_macs
        4608
    """
    _amount("depthwise_cost", "channels", channels)
    _dims("depthwise_cost", "kernel_size", kernel_size)
    _dims("depthwise_cost", "out_hw", out_hw)
    _count("depthwise_cost", "depth_multiplier", depth_multiplier)
    if binary_kernel is None:
        binary_kernel = binary
    cout = channels * depth_multiplier
    kernel = cout * _prod(kernel_size)
    macs = kernel * _prod(out_hw)
    return _weights_cost(macs, kernel, cout if use_bias else 0, binary, binary_kernel)


def dense_cost(
    units_in, units_out, binary=False, use_bias=True, binary_kernel=None, positions=1
):
    """Cost of a dense layer applied at ``positions`` positions (1 for a flat input).

    Example:
        >>> c = dense_cost(64, 10)
        >>> c.float_macs, c.params
        (640, 650)
    """
    _amount("dense_cost", "units_in", units_in)
    _amount("dense_cost", "units_out", units_out)
    _amount("dense_cost", "positions", positions)
    if binary_kernel is None:
        binary_kernel = binary
    kernel = units_in * units_out
    bias = units_out if use_bias else 0
    return _weights_cost(kernel * positions, kernel, bias, binary, binary_kernel)


def bits(quantizer):
    """Bitwidth of a larq quantizer as larq's summary reads it (32 when absent).

    Example:
        >>> import larq as lq
        >>> bits(lq.quantizers.SteSign()), bits(None)
        (1, 32)
    """
    return getattr(quantizer, "precision", None) or 32


def _binary_flags(layer, quantizer_attr):
    """(binary MACs, binary kernel) for the weight quantized by ``quantizer_attr``."""
    kernel_bits = bits(getattr(layer, quantizer_attr, None))
    input_bits = bits(getattr(layer, "input_quantizer", None))
    return max(kernel_bits, input_bits) == 1, kernel_bits == 1


def _shape_tuple(shape):
    if isinstance(shape, tf.TensorShape):
        return tuple(shape.as_list())
    return tuple(shape)


def _conv_layer_cost(layer, in_shape, out_shape, cin, cout):
    binary, binary_kernel = _binary_flags(layer, "kernel_quantizer")
    spatial = in_shape[1:-1] if isinstance(layer, _TRANSPOSE) else out_shape[1:-1]
    return conv_cost(
        in_shape[-1] if cin is None else cin,
        out_shape[-1] if cout is None else cout,
        layer.kernel_size, spatial, groups=getattr(layer, "groups", 1),
        binary=binary, use_bias=layer.use_bias, binary_kernel=binary_kernel,
    )


def _depthwise_layer_cost(layer, in_shape, out_shape, cin, cout):
    binary, binary_kernel = _binary_flags(layer, "depthwise_quantizer")
    multiplier = layer.depth_multiplier
    if cin is None:
        cin = in_shape[-1] if cout is None else cout / multiplier
    return depthwise_cost(
        cin, layer.kernel_size, out_shape[1:-1], depth_multiplier=multiplier,
        binary=binary, use_bias=layer.use_bias, binary_kernel=binary_kernel,
    )


def _separable_layer_cost(layer, in_shape, out_shape, cin, cout):
    cin = in_shape[-1] if cin is None else cin
    cout = out_shape[-1] if cout is None else cout
    multiplier = layer.depth_multiplier
    dw_binary, dw_kernel = _binary_flags(layer, "depthwise_quantizer")
    pw_binary, pw_kernel = _binary_flags(layer, "pointwise_quantizer")
    depthwise = depthwise_cost(
        cin, layer.kernel_size, out_shape[1:-1], depth_multiplier=multiplier,
        binary=dw_binary, use_bias=False, binary_kernel=dw_kernel,
    )
    pointwise = conv_cost(
        cin * multiplier, cout, 1, out_shape[1:-1], binary=pw_binary,
        use_bias=layer.use_bias, binary_kernel=pw_kernel,
    )
    return depthwise + pointwise


def _dense_layer_cost(layer, in_shape, out_shape, cin, cout):
    binary, binary_kernel = _binary_flags(layer, "kernel_quantizer")
    return dense_cost(
        in_shape[-1] if cin is None else cin,
        layer.units if cout is None else cout,
        binary=binary, use_bias=layer.use_bias, binary_kernel=binary_kernel,
        positions=_prod(out_shape[1:-1]),
    )


def _batchnorm_cost(layer, in_shape, out_shape, cin, cout):
    if cin is None and cout is None:
        return Cost(float_params=layer.count_params())
    channels = cout if cout is not None else cin
    per_channel = len(layer.weights) if layer.built else 2 + layer.center + layer.scale
    return Cost(float_params=per_channel * channels)


def elementwise_cost(shape, ops=1, channels=None):
    """``ops`` element-wise ops per element of one example of ``shape`` (batch left out);
    ``channels`` overrides the last axis (fractional or a tensor allowed).

    Example:
        >>> elementwise_cost((None, 4, 4, 8), ops=2).elementwise
        256
    """
    _amount("elementwise_cost", "ops", ops)
    if channels is not None:
        _amount("elementwise_cost", "channels", channels)
    shape = _shape_tuple(_dims("elementwise_cost", "shape", shape, square=False))
    elements = _prod(shape[1:]) if channels is None else _prod(shape[1:-1]) * channels
    return Cost(elementwise=ops * elements)


def _channels(cin, cout):
    return cout if cout is not None else cin


def _params(layer, cin, cout, per_channel):
    """``count_params()``, or ``per_channel`` times the overriding channel count."""
    channels = _channels(cin, cout)
    if channels is None:
        return layer.count_params() if layer.built else 0
    return per_channel * channels


def _inputs(in_shape):
    """The shapes of a call's inputs, as a list (one shape for a single input)."""
    if in_shape and isinstance(in_shape[0], (tuple, list, tf.TensorShape)):
        return [_shape_tuple(s) for s in in_shape]
    return [in_shape]


def _merge_cost(layer, in_shape, out_shape, cin, cout):
    extra = next(ops for kind, ops in _MERGE_OPS.items() if isinstance(layer, kind))
    ops = len(_inputs(in_shape)) - 1 + (1 - extra)
    return elementwise_cost(out_shape, ops, _channels(cin, cout))


def _scale_cost(ops):
    """Per-element layers: ``ops`` ops per output element, parameters per channel."""
    def count(layer, in_shape, out_shape, cin, cout):
        channels = _channels(cin, cout)
        per_channel = 0
        if channels is not None and layer.built and layer.count_params():
            per_channel = layer.count_params() / out_shape[-1]
        params = _params(layer, cin, cout, per_channel)
        return elementwise_cost(out_shape, ops, channels) + Cost(float_params=params)

    return count


def _norm_cost(layer, in_shape, out_shape, cin, cout):
    affine = int(layer.scale or layer.center)
    params = _params(layer, cin, cout, int(layer.scale) + int(layer.center))
    return elementwise_cost(out_shape, 4 + affine, _channels(cin, cout)) + Cost(
        float_params=params)


def _tf_op_cost(layer, in_shape, out_shape, cin, cout):
    if layer.symbol not in _ELEMENTWISE_SYMBOLS or out_shape is None:
        return Cost.zero()
    return elementwise_cost(out_shape, 1, _channels(cin, cout))


def _einsum_dense_cost(layer, in_shape, out_shape, cin, cout):
    """``prod(output) * prod(contracted kernel dims)`` MACs (batch left out)."""
    kernel_spec, output_spec = layer.equation.split(",")[1].split("->")
    contracted = _prod([
        size for axis, size in zip(kernel_spec, layer.kernel.shape) if axis not in output_spec
    ])
    macs = _prod(out_shape[1:]) * contracted
    bias = 0 if layer.bias is None else int(np.prod(layer.bias.shape))
    return Cost(float_macs=macs, float_params=int(np.prod(layer.kernel.shape)) + bias)


def _attention_cost(layer, in_shape, out_shape, cin, cout):
    """Dot-product (``Attention``) or additive (``AdditiveAttention``, ``score_mode=
    "concat"``) attention: the scores and the weighted sum of the values."""
    shapes = _inputs(in_shape)
    query, value = shapes[0], shapes[1]
    tq, tv = _prod(query[1:-1]), _prod(value[1:-1])
    scores = tq * tv * query[-1]
    result = Cost(float_macs=scores + tq * tv * value[-1], float_params=layer.count_params())
    additive = isinstance(layer, _L.AdditiveAttention) or (
        getattr(layer, "score_mode", "dot") == "concat")
    if additive:  # tanh(q + k) before the weighted sum over dim: one add per term
        result = result + Cost(elementwise=scores)
    elif getattr(layer, "use_scale", False):
        result = result + Cost(elementwise=tq * tv)
    return result


def _multi_head_attention_cost(layer, in_shape, out_shape, cin, cout):
    shapes = _inputs(in_shape)
    query = shapes[0]
    value = shapes[1] if len(shapes) > 1 else query
    key = shapes[2] if len(shapes) > 2 else value
    heads, key_dim, value_dim = layer._num_heads, layer._key_dim, layer._value_dim
    tq, tv = _prod(query[1:-1]), _prod(value[1:-1])
    context = (*query[:-1], heads, value_dim)
    parts = [(layer._query_dense, query), (layer._key_dense, key),
             (layer._value_dense, value), (layer._output_dense, context)]
    total = sum((layer_cost(dense, shape) for dense, shape in parts), Cost.zero())
    matmuls = heads * tq * tv * (key_dim + value_dim)
    return total + Cost(float_macs=matmuls, elementwise=heads * tq * key_dim)


def _moves_data(layer, in_shape, out_shape, cin, cout):
    return Cost.zero()


def _table_cost(layer, in_shape, out_shape, cin, cout):
    return Cost(float_params=layer.count_params() if layer.built else 0)


# (layer classes, counter(layer, in_shape, out_shape, cin, cout)); first match wins, so
# subclasses come before their bases (DepthwiseConv2D is a Conv2D).
_COUNTERS = (
    (_SEPARABLE, _separable_layer_cost),
    (_DEPTHWISE, _depthwise_layer_cost),
    (_CONV, _conv_layer_cost),
    ((_L.Dense,), _dense_layer_cost),
    ((_L.EinsumDense,), _einsum_dense_cost),
    ((_L.MultiHeadAttention,), _multi_head_attention_cost),
    ((_L.Attention, _L.AdditiveAttention), _attention_cost),
    ((_L.BatchNormalization,), _batchnorm_cost),
    ((_L.Embedding,), _table_cost),
    (_NORMS, _norm_cost),
    ((_L.Normalization, _L.Rescaling), _scale_cost(2)),
    (_LAYER_SCALE + (_L.PReLU,), _scale_cost(1)),
    (tuple(_MERGE_OPS), _merge_cost),
    (_TF_OP, _tf_op_cost),
    ((ChannelSelect,), _moves_data),
)


# The gap collectors of this thread (``collect_gaps``), innermost last.
_STATE = threading.local()


def _collectors():
    if not hasattr(_STATE, "stack"):
        _STATE.stack = []
    return _STATE.stack


@contextlib.contextmanager
def collect_gaps():
    """Collects the layers that ``layer_cost`` could not count while the block runs.

    Yields a list that receives each layer with weights whose cost is unknown (counted
    as its parameters and 0 MACs), including those met inside a search or composite
    layer's ``cost()``; nested blocks each see every gap.

    Example:
        >>> from searchlayers._keras import keras
        >>> class Opaque(keras.layers.Layer):
        ...     def build(self, shape):
        ...         self.w = self.add_weight("w", shape=[3])
        ...     def call(self, x):
        ...         return x * self.w
        >>> layer = Opaque(name="opaque"); _ = layer(tf.ones([1, 3]))
        >>> with collect_gaps() as gaps:
        ...     _ = layer_cost(layer, (None, 3), (None, 3))
        >>> [g.name for g in gaps]
        ['opaque']
    """
    found = []
    stack = _collectors()
    stack.append(found)
    try:
        yield found
    finally:
        stack.pop()


def _record_gap(layer):
    for found in _collectors():
        if all(g is not layer for g in found):
            found.append(layer)


def layer_cost(layer, input_shape, output_shape=None, cin=None, cout=None):
    """Cost of one layer (or nested model) for an NHWC ``input_shape``.

    ``cin``/``cout`` override the input/output channel counts (fractional numbers or
    ``tf`` tensors allowed): this is how search layers get expected costs. A layer with
    a ``cost(input_shape)`` method is asked for its own cost. A graph model (Functional,
    built Sequential) is the sum of its layers at their recorded shapes; a Sequential
    without a graph chains ``compute_output_shape`` from ``input_shape``.

    Example:
        >>> from searchlayers._keras import keras
        >>> conv = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)
        >>> layer_cost(conv, (None, 16, 16, 4)).float_macs       # 8*8*8*4*3*3
        18432
        >>> layer_cost(conv, (None, 16, 16, 4), cout=2.5).float_macs
        5760.0
    """
    for name, value in (("cin", cin), ("cout", cout)):
        if value is not None:
            _amount("layer_cost", name, value)
    if callable(getattr(layer, "cost", None)):
        return layer.cost(input_shape)
    if isinstance(layer, keras.Model):
        return sum((c for _, _, c, _ in _model_rows(layer, input_shape)), Cost.zero())
    in_shape = _shape_tuple(input_shape)
    if output_shape is None:
        output_shape = _output_shape(layer, input_shape)
    out_shape = None if output_shape is None else _shape_tuple(output_shape)
    for kinds, count in _COUNTERS:
        if isinstance(layer, kinds):
            return count(layer, in_shape, out_shape, cin, cout)
    if layer.built and layer.weights:
        _record_gap(layer)
    return Cost(float_params=layer.count_params() if layer.built else 0)


def _output_shape(layer, input_shape):
    """``layer.compute_output_shape``; None for a TF-op layer that cannot say."""
    try:
        return layer.compute_output_shape(input_shape)
    except NotImplementedError:
        if isinstance(layer, _TF_OP):
            return None
        raise


def _single_shape(shapes):
    """The shape of a single-input call, as it is seen by the cost formulas."""
    return shapes[0] if isinstance(shapes, list) and len(shapes) == 1 else shapes


def _graph_calls(model):
    """(layer, input_shape, output_shape) for every call in a graph network."""
    for node in nodes(model):
        yield node.layer, _single_shape(node.input_shapes), _single_shape(node.output_shapes)


def _chained_calls(model, input_shape):
    """(layer, input_shape, output_shape) for a Sequential without a graph."""
    shape = input_shape if input_shape is not None else model._build_input_shape
    for layer in model.layers:
        out_shape = layer.compute_output_shape(shape)
        yield layer, shape, out_shape
        shape = out_shape


def _model_calls(model, input_shape=None):
    if is_graph(model):
        return _graph_calls(model)
    if isinstance(model, keras.Sequential):
        return _chained_calls(model, input_shape)
    raise ValueError(
        f"Cannot count the cost of subclassed model {model.name!r}: its layers have no "
        "recorded graph. Give it a `cost(input_shape)` method returning a Cost."
    )


def _model_rows(model, input_shape=None, prefix=""):
    """(name, class name, Cost, gaps) per leaf layer call, nested models flattened.

    ``gaps`` lists the layers with weights that the call's count could not count (the
    layer itself, or sub-layers met inside its ``cost()``); empty when all is counted.
    A layer called several times contributes its parameters once and its operations
    (MACs, elementwise) per call.
    """
    seen = set()
    for layer, in_shape, out_shape in _model_calls(model, input_shape):
        name = prefix + layer.name
        has_hook = callable(getattr(layer, "cost", None))
        if isinstance(layer, keras.Model) and not has_hook:
            yield from _model_rows(layer, in_shape, prefix=name + "/")
            continue
        with collect_gaps() as gaps:
            try:
                cost = layer_cost(layer, in_shape, out_shape)
            except _UnknownSizeError as error:
                if error.layer is not None:
                    raise
                error.layer = name
                raise _UnknownSizeError(
                    f"{error.args[0][:-1]} at layer '{name}' ({type(layer).__name__}); build "
                    "the model on a fixed input size, e.g. keras.Input((224, 224, 3)).",
                    layer=name) from None
        if id(layer) in seen:
            cost = cost.operations()
        seen.add(id(layer))
        yield name, type(layer).__name__, cost, gaps


def _to_number(x):
    """A Python int (when integral) or float from a number or a tensor."""
    value = float(np.asarray(x))
    return int(value) if value.is_integer() else value


def _fmt(x):
    value = _to_number(x)
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


_COLUMNS = (
    ("float MACs", lambda c: c.float_macs),
    ("binary MACs", lambda c: c.binary_macs),
    ("float params", lambda c: c.float_params),
    ("binary params", lambda c: c.binary_params),
    ("memory KiB", lambda c: c.memory_bytes / 1024),
    ("eq. ops", lambda c: c.equivalent_ops),
)


def _format_table(rows, headers, title=None, total=False, left=1):
    """Fixed-width table: ``left`` text columns left-aligned, numbers right-aligned.

    With ``total`` the last row is set apart by a rule.
    """
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells):
        padded = [
            str(c).ljust(w) if i < left else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths))
        ]
        return "  ".join(padded).rstrip()

    rule = "-" * len(line(headers))
    body = [line(r) for r in rows]
    if total:
        body.insert(len(body) - 1, rule)
    lines = [line(headers), rule, *body]
    return "\n".join(([title] if title else []) + lines)


class Profile:
    """Per-layer and total costs of a model, as built by ``profile(model)``.

    ``rows`` is a list of ``(layer_name, layer_class, Cost)``; nested models appear as
    their leaf layers named ``outer/inner``. ``uncounted`` names the rows whose count
    met a layer with weights of unknown cost (counted as its parameters and 0 MACs);
    ``gaps`` maps each such row to ``[(layer name, parameters), ...]`` of those layers
    (the row's layer itself, or sub-layers of a search or composite layer);
    ``complete`` is True when there is none.

    Example:
        >>> from searchlayers._keras import keras
        >>> model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(4, name="dense")])
        >>> p = profile(model)
        >>> p.rows[0][:2], p.total.float_macs, p.to_dict()["total"]["params"]
        (('dense', 'Dense'), 64, 68)
    """

    def __init__(self, name, rows, uncounted=(), gaps=None):
        self.name = name
        self.rows = list(rows)
        self.gaps = dict(gaps or {})
        self.uncounted = set(uncounted) | set(self.gaps)
        self.total = sum((cost for _, _, cost in self.rows), Cost.zero())

    @property
    def complete(self):
        """True when every layer with weights was counted (no gap).

        Example:
            >>> from searchlayers._keras import keras
            >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
            >>> profile(m).complete
            True
        """
        return not self.uncounted

    def gap_summary(self):
        """One line naming the uncounted layers and their parameters ('' if none).

        Example:
            >>> Profile("m", [], gaps={"cell/op": [("scale", 8)]}).gap_summary()
            "model 'm': 1 layer with weights has no known cost (counted as its parameters and 0 MACs): scale (8 params) in cell/op; give it a cost(input_shape) method returning a searchlayers.cost.Cost"
        """
        if not self.uncounted:
            return ""
        parts = []
        for row in sorted(self.uncounted):
            for layer, params in self.gaps.get(row, [(row, None)]):
                where = "" if layer == row else f" in {row}"
                count = "" if params is None else f" ({_fmt(params)} params)"
                parts.append(f"{layer}{count}{where}")
        n = len(parts)
        return (
            f"model '{self.name}': {n} layer{'s' if n > 1 else ''} with weights "
            f"{'have' if n > 1 else 'has'} no known cost (counted as "
            f"{'their' if n > 1 else 'its'} parameters and 0 MACs): {', '.join(parts)}; give "
            f"{'them' if n > 1 else 'it'} a cost(input_shape) method returning a "
            "searchlayers.cost.Cost"
        )

    def table(self):
        """The per-layer table with a total line, as a string.

        Example:
            >>> from searchlayers._keras import keras
            >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
            >>> profile(m).table().splitlines()[-1].split()
            ['Total', '2', '0', '3', '0', '0.01', '2']
        """
        headers = ["layer", "type", *(h for h, _ in _COLUMNS)]
        rows = [
            [name + (" *" if name in self.uncounted else ""), kind,
             *(_fmt(get(cost)) for _, get in _COLUMNS)]
            for name, kind, cost in self.rows
        ]
        rows.append(["Total", "", *(_fmt(get(self.total)) for _, get in _COLUMNS)])
        title = f"{self.name} cost"
        text = _format_table(rows, headers, title=title, total=True, left=2)
        if self.uncounted:
            text += "\n* " + self.gap_summary()
        return text

    def __str__(self):
        return self.table()

    def to_dict(self):
        """JSON-friendly dict: ``{"name", "layers": [...], "total": {...}}``.

        Example:
            >>> from searchlayers._keras import keras
            >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
            >>> profile(m).to_dict()["layers"][0]["float_macs"]
            2
        """
        def numbers(cost):
            names = ["float_macs", "binary_macs", "float_params", "binary_params",
                     "memory_bytes", "params", "equivalent_ops"]
            return {n: _to_number(cost.metric(n)) for n in names}

        layers = [
            {"name": name, "class": kind, "counted": name not in self.uncounted,
             **numbers(cost)}
            for name, kind, cost in self.rows
        ]
        return {"name": self.name, "layers": layers, "total": numbers(self.total),
                "complete": self.complete}


def profile(model, print_fn=None, warn=True):
    """Counts a built model layer by layer; returns a ``Profile``.

    The table is passed to ``print_fn`` (e.g. ``print``) when one is given; ``print``
    the returned profile to show it later. Raises ValueError for an unbuilt model.
    When a layer with weights has no known cost, ``Profile.complete`` is False and a
    ``CostGapWarning`` is issued with one line naming the layers and their parameter
    counts (``warn=False`` leaves it out).

    Example:
        >>> from searchlayers._keras import keras
        >>> conv = keras.layers.Conv2D(2, 3)
        >>> model = keras.Sequential([keras.Input((4, 4, 1)), conv])
        >>> profile(model).total.float_macs          # 2 * 2 * 2 * 1 * 3 * 3
        72
    """
    require_built(model, "its layer shapes are unknown")
    from searchlayers.search import tie_arch_variables  # search layers share keys

    tie_arch_variables(model)
    rows, gaps = [], {}
    for name, kind, cost, found in _model_rows(model):
        rows.append((name, kind, cost))
        if found:
            gaps[name] = [(_gap_name(layer, name), layer.count_params()) for layer in found]
    result = Profile(model.name, rows, gaps=gaps)
    if print_fn is not None:
        print_fn(result.table())
    if warn and not result.complete:
        warnings.warn(result.gap_summary(), CostGapWarning, stacklevel=2)
    return result


def _gap_name(layer, row):
    """The row's own name when the row is the gap, else the sub-layer's name."""
    return row if row == layer.name or row.endswith("/" + layer.name) else layer.name


def compare(*profiles, names=None):
    """Side-by-side totals of several profiles, as a table string.

    Example:
        >>> from searchlayers._keras import keras
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> table = compare(profile(m), profile(m), names=["a", "b"])
        >>> table.splitlines()[0].split()
        ['metric', 'a', 'b']
    """
    names = list(names) if names is not None else [p.name for p in profiles]
    if len(names) != len(profiles):
        raise ValueError(
            f"compare got {len(profiles)} profiles but {len(names)} names."
        )
    rows = [[label, *(_fmt(get(p.total)) for p in profiles)] for label, get in _COLUMNS]
    return _format_table(rows, ["metric", *names])
