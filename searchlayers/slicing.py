"""Channel bookkeeping over a Keras graph, for FiGS masks.

One walk of a model's layer graph serves two uses:

* ``expected_channels(model)`` — for every tensor, the mask probabilities that govern
  its channels from upstream (``p``: the nearest mask before it, passed through
  BatchNorm, activations, pooling, depthwise convolutions and residual adds) and from
  downstream (``q``: the mask it feeds through such layers). The expected cost of FiGS
  eq. 6 (``searchlayers.regularizers.figs_expected_cost``) counts each layer with
  ``cin = sum(p_in)`` and ``cout = sum(q_out)``.
* ``ChannelPlan(model, choices)`` — which channels of every tensor a derived network
  keeps when each mask keeps ``choices[mask_name]``, and the per-layer slicing rules
  (``slice_layer``) that ``searchlayers.derive`` applies while replaying the graph:
  a producer (Conv, Dense, SeparableConv) keeps the output channels that are needed
  downstream and the input channels that can be non-zero; BatchNorm, depthwise
  convolutions, activations and pooling keep the channels of their input; Add,
  Concatenate and Flatten map indices through.

Search layers and binary composites answer for themselves through the derivation
hook of ``searchlayers.layers.base`` (the protocol's one description): a
``KeepChannels`` layer (FiGS mask, width gate) is a ``"mask"``, a ``Pick`` (depth
gate) a ``"pick"`` (the chosen input passes, the cells after it are dropped), a
``Replace`` follows the rule of its replacement (a ``MixedOp``'s chosen candidate), a
``Drop`` is ``"zero"``, and a ``Sliceable`` (``BinaryConvShortcut``, ``BinaryReduce``,
...) narrows itself to leading channels per group (``layer.sliced``).

Layer kinds (``kind(layer)``): ``"mask"``, ``"reduce"`` (sums over input channels),
``"channelwise"`` (output channel ``c`` depends on input channel ``c`` only),
``"merge"`` (element-wise over same-shape inputs), ``"concat"``, ``"flatten"`` and
``"opaque"`` (anything else: it keeps every channel, derived as a plain copy).

The channel-rule registry (``register_channel_rule``, like tfmot's prune registry)
holds the kind of each stock Keras layer class: Conv / Dense / SeparableConv
reduce; BatchNormalization, depthwise (multiplier 1), activations (not softmax),
pooling, padding, cropping, up-sampling, Dropout (per-example noise), Rescaling,
Normalization, LayerNormalization over other axes than the channels, a Reshape
between one-position shapes (squeeze-excite) are channel-wise; Add / Multiply /
... merge (a one-channel input broadcasts); ``TFOpLambda`` / ``Lambda`` calls are
probed on random inputs (slicing before == slicing after: ``h + 3``, ``relu6``,
``/ 6``), a listed element-wise TF op of two tensors merges; larq's Quant*
layers follow their float classes. Dispatch, in tfmot's order: the layer's own
protocol (``base.channel_rule``: its ``derives_to``; another search layer or a
model is opaque), then the registry, then opaque.

Derivation never grows a model: a dropped channel is a known constant (0 after
its mask; BatchNorm, ``h + 3``, ... map it to other constants, computed by running
the layer); a Conv / Dense that reads it folds it into its bias, so the producer
computes only the kept channels. Only where an opaque layer reads dropped
channels does the mask stay as a weight-free fixed 0/1 ``Rescaling`` and its
producer keep its channels (``ChannelPlan.pinned``; derive warns, naming the
layers) — never a 0/1 select matrix of kept x full channels.
"""

import numpy as np
import tensorflow as tf

from searchlayers._keras import keras
from searchlayers.graph import call_node, ids, is_graph, nodes
from searchlayers.layers.base import (Drop, KeepChannels, Replace, SearchLayer, channel_rule,
                                      derivation_of, leading_closure, plain_type)  # noqa: F401
from searchlayers.layers.channel_select import ChannelSelect

_L = keras.layers
_REDUCE = (_L.Conv1D, _L.Conv2D, _L.Conv3D, _L.Dense, _L.SeparableConv1D, _L.SeparableConv2D)
_TRANSPOSE = (_L.Conv1DTranspose, _L.Conv2DTranspose, _L.Conv3DTranspose)
_DEPTHWISE = (_L.DepthwiseConv1D, _L.DepthwiseConv2D)
_POOL = (
    _L.MaxPooling1D, _L.MaxPooling2D, _L.MaxPooling3D,
    _L.AveragePooling1D, _L.AveragePooling2D, _L.AveragePooling3D,
    _L.GlobalAveragePooling1D, _L.GlobalAveragePooling2D, _L.GlobalAveragePooling3D,
    _L.GlobalMaxPooling1D, _L.GlobalMaxPooling2D, _L.GlobalMaxPooling3D,
)
_SHAPE_ONLY = (
    _L.ZeroPadding1D, _L.ZeroPadding2D, _L.ZeroPadding3D,
    _L.Cropping1D, _L.Cropping2D, _L.Cropping3D,
    _L.UpSampling1D, _L.UpSampling2D, _L.UpSampling3D,
    _L.SpatialDropout1D, _L.SpatialDropout2D, _L.SpatialDropout3D,
    _L.GaussianNoise, _L.GaussianDropout, _L.ActivityRegularization,
)
_ZERO_ACT = (_L.ReLU, _L.LeakyReLU, _L.ELU, _L.ThresholdedReLU)
_MERGE = (_L.Add, _L.Subtract, _L.Average, _L.Maximum, _L.Minimum, _L.Multiply)
# Activations with f(0) == 0: a zero channel stays zero.
_ZERO_FN = {"linear", "relu", "relu6", "elu", "selu", "tanh", "swish", "silu", "gelu",
            "softsign", "leaky_relu", "hard_silu", "hard_swish", "mish", None}
# Activations that mix channels (never channel-wise).
_ACROSS_FN = {"softmax", "log_softmax"}
KINDS = ("mask", "reduce", "channelwise", "merge", "concat", "flatten", "pick",
         "sliceable", "opaque")


def _act_name(activation):
    if activation is None:
        return None
    return getattr(activation, "__name__", str(activation))


# -- the channel-rule registry ---------------------------------------------------------
_RULES = {}  # layer class -> (rule, resize)


def register_channel_rule(cls, rule, resize=None):
    """Declares how channels flow through the layers of class ``cls`` (and its
    subclasses without a rule of their own), like tfmot's prune registry.

    Args:
        cls: a Keras layer class.
        rule: one of ``"reduce"`` (sums over input channels: Conv, Dense; its
            ``kernel`` is ``[..., in, out]``, its ``bias`` ``[out]``),
            ``"channelwise"`` (output channel ``c`` depends on input channel ``c``
            only; weights whose last axis is the channel axis are sliced),
            ``"merge"`` (element-wise over inputs of one channel count, or a
            1-channel input broadcast), ``"concat"`` (last-axis concatenation),
            ``"flatten"`` (channels-last flatten) or ``"opaque"`` (every channel
            is kept); or a callable ``rule(layer) -> one of these`` deciding per
            layer.
        resize: for a ``"channelwise"`` layer whose config names its channel
            count: ``resize(config, kept_indices) -> config`` of the narrower copy
            (e.g. a ``Reshape`` to ``(1, 1, C)``).

    Dispatch (``kind``): the layer's own protocol (``derives_to``, see
    ``searchlayers.layers.base``), then this registry (the
    nearest class of the layer's MRO), then ``"opaque"``.

    Example:
        >>> class Twice(keras.layers.Layer):
        ...     def call(self, x):
        ...         return 2.0 * x
        >>> kind(Twice())
        'opaque'
        >>> register_channel_rule(Twice, "channelwise")
        >>> kind(Twice())
        'channelwise'
        >>> del _RULES[Twice]
    """
    if not isinstance(cls, type) or not issubclass(cls, keras.layers.Layer):
        raise TypeError(
            f"register_channel_rule: cls={cls!r} is not a Keras layer class; allowed: a "
            "subclass of keras.layers.Layer.")
    if not callable(rule) and rule not in KINDS[1:]:
        raise ValueError(
            f"register_channel_rule: rule={rule!r} for {cls.__name__}; allowed: "
            f"{', '.join(map(repr, KINDS[1:]))} or a callable layer -> rule.")
    if resize is not None and not callable(resize):
        raise TypeError(
            f"register_channel_rule: resize={resize!r} for {cls.__name__}; allowed: None or "
            "a callable (config, kept_indices) -> config.")
    _RULES[cls] = (rule, resize)


def _registered(layer):
    for klass in type(layer).__mro__:
        if klass in _RULES:
            return _RULES[klass]
    return None


def kind(layer):
    """The channel rule of ``layer`` (see the module docstring and
    ``register_channel_rule``).

    Example:
        >>> kind(keras.layers.BatchNormalization())
        'channelwise'
        >>> kind(keras.layers.Softmax())
        'opaque'
    """
    own = channel_rule(layer)  # the layer's own protocol: masks, gates, composites
    if own is not None:
        return own
    found = _registered(layer)
    if found is None:
        return "opaque"
    rule = found[0]
    result = rule(layer) if callable(rule) else rule
    return result if result in KINDS else "opaque"


def resize_config(layer, config, idx):
    """The config of a narrower copy of a channel-wise ``layer`` keeping ``idx``."""
    found = _registered(layer)
    if found is None or found[1] is None:
        return config
    return found[1](dict(config), np.asarray(idx, int))


def _last_axis(layer):
    shape = getattr(layer, "_build_input_shape", None)
    if shape is None:
        return -1
    if isinstance(shape, (list, tuple)) and shape and not isinstance(shape[0], (int, type(None))):
        shape = shape[0]  # a layer of several inputs (Concatenate)
    try:
        return len(tf.TensorShape(shape)) - 1
    except (TypeError, ValueError):
        return -1


def _is_last(layer, axes):
    axes = list(axes) if isinstance(axes, (list, tuple)) else [axes]
    return axes == [-1] or axes == [_last_axis(layer)]


def _channels_last(layer):
    return getattr(layer, "data_format", None) in (None, "channels_last")


def _only_node(layer):
    nodes = getattr(layer, "_inbound_nodes", [])
    return nodes[0] if len(nodes) == 1 else None


def _rule_reduce(layer):
    return "reduce" if getattr(layer, "groups", 1) == 1 and _channels_last(layer) else "opaque"


def _rule_depthwise(layer):
    ok = layer.depth_multiplier == 1 and _channels_last(layer)
    return "channelwise" if ok else "opaque"


def _rule_batchnorm(layer):
    return "channelwise" if _is_last(layer, layer.axis) else "opaque"


def _rule_layer_norm(layer):
    """Exact only when the channel axis is not normalized over (per-channel statistics)
    and gamma / beta do not run along the channel axis."""
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    last = _last_axis(layer)
    if last < 0 or any(a in (-1, last) for a in axes):
        return "opaque"
    return "channelwise"


def _rule_last(layer):
    return "channelwise" if _channels_last(layer) else "opaque"


def _rule_activation(layer):
    return "opaque" if _act_name(layer.activation) in _ACROSS_FN else "channelwise"


def _rule_dropout(layer):
    shape = getattr(layer, "noise_shape", None)
    ok = shape is None or shape[-1] in (None, 1)
    return "channelwise" if ok else "opaque"


def _rule_concat(layer):
    return "concat" if _is_last(layer, layer.axis) else "opaque"


def _per_channel(value):
    return value is not None and np.size(value) > 1


def _rule_rescaling(layer):
    for value in (layer.scale, layer.offset):
        if _per_channel(value) and np.ndim(value) != 1:
            return "opaque"
    return "channelwise"


def _resizer(*keys):
    """A ``resize`` slicing the per-channel values of ``keys`` in a layer's config
    (``Rescaling`` scale / offset; ``Normalization`` mean / variance given as arguments)."""

    def resize(config, idx):
        for key in keys:
            if _per_channel(config.get(key)):
                config[key] = np.asarray(config[key])[idx].tolist()
        return config

    return resize


def _rule_normalization(layer):
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else (layer.axis,)
    given = [getattr(layer, k, None) for k in ("input_mean", "input_variance")]
    if not _is_last(layer, axis) or any(_per_channel(v) and np.ndim(v) != 1 for v in given):
        return "opaque"
    return "channelwise"


def _rule_reshape(layer):
    """A ``Reshape`` between two shapes with one position and the same channels
    (a squeeze-excite ``(C,) -> (1, 1, C)``) is channel-wise."""
    node = _only_node(layer)
    if node is None:
        return "opaque"
    a, b = node.keras_inputs[0], tf.nest.flatten(node.outputs)[0]
    if _channels(a) is None or _channels(a) != _channels(b):
        return "opaque"
    return "channelwise" if _positions(a) == 1 and _positions(b) == 1 else "opaque"


def _resize_reshape(config, idx):
    config["target_shape"] = tuple(config["target_shape"][:-1]) + (len(idx),)
    return config


# TF ops of two tensors that act element-wise (with broadcasting).
_BINARY_OPS = {"__operators__.add", "math.add", "math.multiply", "math.subtract",
               "math.truediv", "math.divide", "math.maximum", "math.minimum",
               "__operators__.sub", "math.add_v2"}
_PROBE = {}  # id(layer) -> (weakref, rule): the probe runs once per layer


def _rule_op(layer):
    """A ``TFOpLambda`` / ``Lambda`` call: channel-wise when, on random inputs,
    slicing the channels before the op equals slicing after it (``h + 3``,
    ``relu6``, ``x / 6``, hard-swish); a listed element-wise op of two tensors of
    one channel count is a merge; anything else opaque."""
    import weakref

    cached = _PROBE.get(id(layer))
    if cached is not None and cached[0]() is layer:
        return cached[1]
    rule = _probe_op(layer)
    _PROBE[id(layer)] = (weakref.ref(layer), rule)
    return rule


def _probe_op(layer):
    node = _only_node(layer)
    if node is None or layer.weights:
        return "opaque"
    ins = tf.nest.flatten(node.keras_inputs)
    outs = tf.nest.flatten(node.outputs)
    if len(outs) != 1 or not ins or any(_channels(t) is None for t in ins + outs):
        return "opaque"
    if len(ins) == 2:
        symbol = getattr(layer, "symbol", None)
        sizes = {_channels(t) for t in ins}
        if symbol in _BINARY_OPS and len(sizes) == 1 and _channels(outs[0]) in sizes:
            return "merge"
        return "opaque"
    if len(ins) != 1 or ins[0].shape.rank != outs[0].shape.rank:
        return "opaque"
    if _channels(ins[0]) != _channels(outs[0]) or _channels(ins[0]) < 2:
        return "opaque"
    shape = [2] + [3 if d is None else d for d in ins[0].shape.as_list()[1:]]
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32) * 3.0
    c = shape[-1]
    try:
        full = call_node(node, [tf.constant(x)]).numpy()
        for idx in (np.arange(0, c, 2), np.arange(c // 2, c)):
            part = call_node(node, [tf.constant(x[..., idx])]).numpy()
            if part.shape != full[..., idx].shape or not np.allclose(
                    part, full[..., idx], rtol=1e-5, atol=1e-6, equal_nan=True):
                return "opaque"
    except Exception:  # noqa: BLE001 (an op that cannot take fewer channels)
        return "opaque"
    return "channelwise"


for _cls in _REDUCE:
    register_channel_rule(_cls, _rule_reduce)
for _cls in _DEPTHWISE:
    register_channel_rule(_cls, _rule_depthwise)
register_channel_rule(_L.BatchNormalization, _rule_batchnorm)
register_channel_rule(_L.LayerNormalization, _rule_layer_norm)
for _cls in _POOL + _SHAPE_ONLY + _ZERO_ACT + (_L.PReLU,):
    register_channel_rule(_cls, _rule_last)
register_channel_rule(_L.Activation, _rule_activation)
register_channel_rule(_L.Dropout, _rule_dropout)
register_channel_rule(_L.AlphaDropout, _rule_dropout)
for _cls in _MERGE:
    register_channel_rule(_cls, "merge")
register_channel_rule(_L.Concatenate, _rule_concat)
register_channel_rule(_L.Flatten, lambda layer: "flatten" if _channels_last(layer) else "opaque")
register_channel_rule(_L.Reshape, _rule_reshape, _resize_reshape)
register_channel_rule(_L.Rescaling, _rule_rescaling, _resizer("scale", "offset"))
register_channel_rule(_L.Normalization, _rule_normalization, _resizer("mean", "variance"))
register_channel_rule(_L.Lambda, _rule_op)
if hasattr(_L, "Identity"):
    register_channel_rule(_L.Identity, "channelwise")
try:
    from tf_keras.src.layers.core.tf_op_layer import TFOpLambda as _TFOpLambda
except ImportError:  # pragma: no cover
    _TFOpLambda = None
if _TFOpLambda is not None:
    register_channel_rule(_TFOpLambda, _rule_op)


def _register_larq():
    """larq's Quant* layers: the rules of the float layers they extend (their input
    quantizer is handled by ``slice_reduce``)."""
    try:
        import larq as lq
    except ImportError:  # pragma: no cover
        return
    for name in ("QuantConv1D", "QuantConv2D", "QuantConv3D", "QuantDense",
                 "QuantSeparableConv1D", "QuantSeparableConv2D"):
        cls = getattr(lq.layers, name, None)
        if cls is not None:
            register_channel_rule(cls, _rule_reduce)
    for name in ("QuantDepthwiseConv2D",):
        cls = getattr(lq.layers, name, None)
        if cls is not None:
            register_channel_rule(cls, _rule_depthwise)


_register_larq()


def zero_preserving(layer):
    """True when a zero input channel gives a zero output channel."""
    if channel_rule(layer) == "mask" or isinstance(layer, _POOL + _SHAPE_ONLY + _ZERO_ACT):
        return True
    if isinstance(layer, (_L.Dropout, _L.Reshape)):
        return True
    if isinstance(layer, _L.Activation):
        return _act_name(layer.activation) in _ZERO_FN
    if isinstance(layer, _DEPTHWISE):
        return not layer.use_bias and _act_name(layer.activation) in _ZERO_FN
    if isinstance(layer, _L.PReLU):
        return True
    return False


def _channels(tensor):
    shape = tensor.shape
    if shape.rank is None or shape.rank < 2 or shape[-1] is None:
        return None
    return int(shape[-1])


def _positions(tensor):
    """Number of positions (product of the non-batch, non-channel dims)."""
    dims = tensor.shape.as_list()[1:-1]
    if any(d is None for d in dims):
        return None
    return int(np.prod(dims)) if dims else 1


class Graph:
    """The layer calls of a graph model in topological order.

    Each entry: ``(layer, node, in_ids, out_ids)``; ``tensors`` maps an id to the
    model's KerasTensor and ``consumers`` an id to ``[(layer, node, position)]``.
    """

    def __init__(self, model):
        if not is_graph(model):
            raise TypeError(
                f"FiGS channel analysis needs a Functional or Sequential model with an "
                f"Input; '{model.name}' ({type(model).__name__}) has no layer graph."
            )
        self.model = model
        self.calls, self.tensors, self.consumers = [], {}, {}
        for x in model.inputs:
            self.tensors[str(id(x))] = x
        for node in nodes(model):
            ins, outs = ids(node.keras_inputs), list(node.flat_output_ids)
            for t in tf.nest.flatten(node.keras_inputs) + tf.nest.flatten(node.outputs):
                self.tensors[str(id(t))] = t
            for pos, tid in enumerate(ins):
                self.consumers.setdefault(tid, []).append((node.layer, node, pos))
            self.calls.append((node.layer, node, ins, outs))
        self.output_ids = {str(id(x)) for x in model.outputs}

    def channels(self, tid):
        return _channels(self.tensors[tid])

    def positions(self, tid):
        return _positions(self.tensors[tid])


# -- expected channels (FiGS eq. 6) ----------------------------------------------------
class _Prob:
    """A probability vector with the key of the mask group it comes from.

    ``choices``: for a width gate, ``(choice probabilities, kept channel count of
    each choice)``; None for independent (FiGS) masks and derived vectors.
    """

    def __init__(self, key, p, choices=None):
        self.key, self.p, self.choices = key, p, choices


def _mask_prob(layer):
    key = layer.arch_key or layer.name
    return _Prob(key, layer.channel_probabilities(), layer.channel_choices())


def _combine(probs):
    """Several governing vectors of one tensor: one group or ``1 - prod(1 - p_i)``."""
    if any(p is None for p in probs):
        return None
    if all(p.key == probs[0].key for p in probs):
        return probs[0]
    alive = 1.0 - tf.reduce_prod(tf.stack([1.0 - p.p for p in probs]), axis=0)
    return _Prob(tuple(sorted(_short(p.key) for p in probs)), alive)


def _short(key):
    """A bounded-size name for a group key (derived keys nest: a digest past 64 chars)."""
    import hashlib

    text = key if isinstance(key, str) else repr(key)
    if len(text) <= 64:
        return text
    return "#" + hashlib.sha1(text.encode()).hexdigest()[:16]


def _multiplies(layer):
    return isinstance(layer, _L.Multiply) or getattr(layer, "symbol", None) == "math.multiply"


def _product(probs):
    """A product's channel is alive when every factor's is: ``prod p_i`` (an
    unmasked factor counts 1; a squeeze-excite gate leaves the feature map's ``p``)."""
    known = [p for p in probs if p is not None]
    if not known:
        return None
    if all(p.key == known[0].key for p in known):
        return known[0]
    value = tf.reduce_prod(tf.stack([p.p for p in known]), axis=0)
    return _Prob(("mul",) + tuple(sorted(_short(p.key) for p in known)), value)


def _ones(n):
    return tf.ones([n], tf.float32)


def expected_channels(model):
    """``(graph, p, q)``: per tensor id, the upstream (``p``) and downstream (``q``)
    mask probabilities that govern its channels, or ``None`` (not masked).

    Example:
        >>> from searchlayers.layers.figs import FiGSMask
        >>> x = keras.Input((4, 4, 1)); h = keras.layers.Conv2D(3, 1)(x)
        >>> graph, p, q = expected_channels(keras.Model(x, FiGSMask()(h)))
        >>> float(tf.reduce_sum(q[str(id(h))].p))  # doctest: +ELLIPSIS
        2.77...
    """
    graph = Graph(model)
    p = {tid: None for tid in graph.tensors}
    for layer, node, ins, outs in graph.calls:
        k = kind(layer)
        if k == "mask":
            value = _mask_prob(layer)
        elif k == "channelwise":
            value = p[ins[0]]
        elif k == "merge" and _multiplies(layer):
            value = _product([p[i] for i in ins])
        elif k in ("merge", "pick"):
            value = _combine([p[i] for i in ins])
        elif k == "concat" and all(graph.channels(i) for i in ins):
            parts = [p[i] for i in ins]
            value = None if all(v is None for v in parts) else _Prob(
                ("concat",) + tuple(None if v is None else _short(v.key) for v in parts),
                tf.concat([_ones(graph.channels(i)) if v is None else v.p
                           for i, v in zip(ins, parts)], 0))
        elif k == "flatten" and p[ins[0]] is not None and graph.positions(ins[0]):
            src = p[ins[0]]
            value = _Prob(("flat", _short(src.key)), tf.tile(src.p, [graph.positions(ins[0])]))
        else:
            value = None
        for o in outs:
            p[o] = value
    q = {}
    for layer, node, ins, outs in reversed(graph.calls):
        for o in outs:
            if o not in q:
                q[o] = _downstream(graph, o, q, p)
    for tid in graph.tensors:
        if tid not in q:
            q[tid] = _downstream(graph, tid, q, p)
    return graph, p, q


def _downstream(graph, tid, q, p=None):
    """The probabilities that the derived network keeps each channel of ``tid``:
    what its consumers read (a mask's, passed back through channel-wise layers);
    a Conv / Dense reads the channels that can be non-zero (``p[tid]``); an
    opaque layer or a model output reads every channel (None)."""
    if tid in graph.output_ids:
        return None
    found = []
    for layer, node, pos in graph.consumers.get(tid, []):
        k = kind(layer)
        outs = list(node.flat_output_ids)
        if k == "reduce" and p is not None:
            found.append(p.get(tid))
        elif k == "mask":
            found.append(_mask_prob(layer))
        elif k in ("channelwise", "merge", "pick"):
            found.append(q.get(outs[0]))
        elif k == "concat":
            ins = [str(id(t)) for t in tf.nest.flatten(node.keras_inputs)]
            sizes = [graph.channels(i) for i in ins]
            above = q.get(outs[0])
            if above is None or None in sizes:
                found.append(None)
            else:
                start = sum(sizes[:pos])
                found.append(_Prob(("slice", _short(above.key), pos),
                                   above.p[start:start + sizes[pos]]))
        else:
            found.append(None)
    if not found:
        return None
    return _combine(found)


# -- derivation plan -----------------------------------------------------------------
def _all(n):
    return np.ones([n], bool)


class ChannelPlan:
    """Which channels of each tensor a derived model keeps.

    ``choices``: ``{layer_name: choice}`` (a FiGS mask: kept channel indices; a width
    gate, depth gate or MixedOp: the index of its choice). ``present[tid]`` is a sorted
    index array (into the supernet tensor's channels) or ``None`` for a tensor
    without a known channel axis. ``const[tid]``: per channel, the value the channel
    has at every position of every input when it is a known constant (a dropped
    channel is 0; BatchNorm, activations and ``h + 3`` map constants to
    constants), NaN otherwise. Invariant: every channel of a supernet tensor
    outside ``present`` is a known constant or read by no consumer; a Conv / Dense
    reading a constant channel it does not keep adds the channel's contribution to
    its bias (``slice_reduce(fold=...)``). ``pinned``: the masks whose dropped
    channels an opaque layer still reads: derived as a fixed 0/1 ``Rescaling``
    (no weights) after their producer, which keeps its channels. ``live`` holds the
    ids of the nodes the derived model keeps (depth gates drop the cells after
    their choice); the others are neither planned nor replayed.
    """

    def __init__(self, model, choices):
        from searchlayers.layers.gates import live_nodes

        self.graph = graph = Graph(model)
        self.choices, self._derivations = choices, {}
        self.live = live_nodes(graph, choices)
        self.kept = {}  # mask name -> the channels it keeps (its KeepChannels)
        for layer, _, _, _ in graph.calls:
            found = self.derivation(layer)
            if isinstance(found, KeepChannels):
                self.kept[layer.name] = found.mask
        const = {tid: (_unknown(graph.channels(tid)) if graph.channels(tid) else None)
                 for tid in graph.tensors}
        for layer, node, ins, outs in graph.calls:
            if id(node) not in self.live:
                continue
            value = self._constant(layer, node, ins, outs, const)
            for o in outs:
                n = graph.channels(o)
                ok = value is not None and n is not None and len(value) == n
                const[o] = value if ok else (_unknown(n) if n else None)
        self.const = const
        self.nz = {tid: None if v is None else ~(v == 0.0) for tid, v in const.items()}
        self.pinned = set()
        while True:
            needed = self._needed()
            pins = {layer.name for layer, node, ins, outs in graph.calls
                    if layer.name in self.kept and layer.name not in self.pinned
                    and id(node) in self.live and needed.get(outs[0]) is not None
                    and (needed[outs[0]] & ~self.kept[layer.name]).any()}
            if not pins:
                break
            self.pinned |= pins
        self.present = {
            tid: None if v is None else np.flatnonzero(v) for tid, v in needed.items()
        }
        # opaque layers that read a dropped (constant) channel: why masks are pinned
        self.opaque_readers = sorted({
            layer.name for layer, node, ins, outs in graph.calls
            if id(node) in self.live and self.kind_of(layer) == "opaque"
            and any(const.get(i) is not None and not np.isnan(const[i]).all() for i in ins)})

    def _needed(self):
        graph = self.graph
        needed = {}
        for tid in graph.tensors:
            needed[tid] = None if graph.channels(tid) is None else np.zeros(
                [graph.channels(tid)], bool)
        for tid in graph.output_ids:
            if needed.get(tid) is not None:
                needed[tid][:] = True
        for layer, node, ins, outs in reversed(graph.calls):
            if id(node) in self.live:
                self._need(layer, ins, outs, needed, self.nz)
        return needed

    def derivation(self, layer):
        """``layer``'s own derivation hook for its choice (None: no hook, or a
        search layer without a choice), computed once."""
        if id(layer) not in self._derivations:
            choice = self.choices.get(layer.name)
            free = isinstance(layer, SearchLayer) and choice is None
            self._derivations[id(layer)] = None if free else derivation_of(layer, choice)
        return self._derivations[id(layer)]

    def target(self, layer):
        """The layer whose channel rule applies: a ``Replace``'s layer (a
        ``MixedOp``'s chosen candidate), else ``layer``."""
        found = self.derivation(layer)
        return found.layer if isinstance(found, Replace) else layer

    def kind_of(self, layer):
        """``kind`` of ``target(layer)``; ``"zero"`` for a ``Drop``."""
        found = self.derivation(layer)
        return "zero" if isinstance(found, Drop) else kind(self.target(layer))

    def pick(self, layer):
        """The input index a depth gate passes."""
        return self.derivation(layer).index

    def fold(self, layer, tid, held):
        """``(indices, values)``: the constant non-zero channels of tensor ``tid``
        that a reduce ``layer`` reads but the derived input does not hold."""
        value = self.const[tid]
        idx = np.setdiff1d(np.flatnonzero(~np.isnan(value) & (value != 0.0)), held)
        return idx, value[idx]

    def _constant(self, layer, node, ins, outs, const):
        g = self.graph
        k = self.kind_of(layer)
        if k == "zero" and g.channels(outs[0]):
            return np.zeros([g.channels(outs[0])])
        if any(const.get(i) is None for i in ins):
            return None
        if k == "pick":
            return const[ins[self.pick(layer)]].copy()
        if k == "mask":
            return np.where(self.kept[layer.name], const[ins[0]], 0.0)
        if k == "concat":
            return np.concatenate([const[i] for i in ins])
        if k == "flatten" and g.positions(ins[0]):
            return np.tile(const[ins[0]], g.positions(ins[0]))
        if k in ("channelwise", "merge") and len(outs) == 1 and g.channels(outs[0]):
            return _evaluate_constant(self.target(layer), node, [const[i] for i in ins],
                                      g.channels(outs[0]), merge=k == "merge")
        if k == "reduce" and len(outs) == 1 and g.channels(outs[0]) and not any(
                np.isnan(const[i]).any() for i in ins):  # e.g. after an edge chosen 'none'
            return _evaluate_constant(self.target(layer), node, [const[i] for i in ins],
                                      g.channels(outs[0]))
        return None

    def _need(self, layer, ins, outs, needed, nz):
        g = self.graph
        k = self.kind_of(layer)
        out = needed.get(outs[0]) if outs else None
        for i in ins:
            if needed.get(i) is None:
                return  # no channel axis: nothing to slice
        wanted = [needed.get(o) for o in outs]
        if k == "zero" or (wanted and all(w is not None and not w.any() for w in wanted)):
            return  # a chosen Zeroise, or no consumer reads the output: reads nothing
        if out is None and k not in ("reduce", "opaque", "sliceable"):
            k = "opaque"
        if k == "pick":
            needed[ins[self.pick(layer)]] |= out
        elif k == "sliceable":  # see binary._Composite
            needed[ins[0]][self.target(layer).input_channels(nz[ins[0]])] = True
        elif k == "mask":
            needed[ins[0]] |= out if layer.name in self.pinned else out & self.kept[layer.name]
        elif k == "channelwise":
            needed[ins[0]] |= out
        elif k == "merge":
            for i in ins:
                if g.channels(i) == len(out):
                    needed[i] |= out
                else:
                    needed[i][:] = True  # broadcasting: keep it whole
        elif k == "concat":
            start = 0
            for i in ins:
                n = g.channels(i)
                needed[i] |= out[start:start + n]
                start += n
        elif k == "flatten" and g.positions(ins[0]):
            needed[ins[0]] |= out.reshape([-1, g.channels(ins[0])]).any(axis=0)
        elif k == "reduce" and _folds(self.target(layer)):
            if _folds_constants(self.target(layer)):
                needed[ins[0]] |= np.isnan(self.const[ins[0]])
            else:
                needed[ins[0]] |= nz[ins[0]]
        else:
            for i in ins:
                needed[i][:] = True


def _unknown(n):
    return np.full([n], np.nan)


def _evaluate_constant(layer, node, consts, channels, merge=False):
    """Per output channel, the constant a channel-wise or element-wise call gives
    when its inputs' channels are the constants ``consts`` (NaN: not constant).

    The layer runs (inference) on inputs of the call's shape (batch 1) filled with
    the constants; an output channel counts as constant when it is equal at every
    position (so padding and convolution borders are caught).
    """
    known = [~np.isnan(c) for c in consts]
    if not any(k.any() for k in known):
        return None
    tensors = []
    for kt, c in zip(tf.nest.flatten(node.keras_inputs), consts):
        shape = [1] + [4 if d is None else d for d in kt.shape.as_list()[1:]]
        if int(np.prod(shape)) > 4_000_000:
            return None
        tensors.append(tf.constant(np.broadcast_to(np.nan_to_num(c).astype(np.float32),
                                                   shape)))
    try:
        y = call_node(node, tensors, layer)
        y = tf.nest.flatten(y)[0].numpy().astype(np.float64)
    except Exception:  # noqa: BLE001 (a layer that cannot run on its own)
        return None
    y = y.reshape([-1, y.shape[-1]])
    if y.shape[-1] != channels:
        return None
    flat = np.abs(y - y[:1]) <= 1e-6 * (1.0 + np.abs(y[:1]))
    value = np.where(flat.all(axis=0), y[0], np.nan)
    ok = np.ones([channels], bool)
    for k in known:
        if len(k) == channels:
            ok &= k
        elif len(k) == 1 or not k.all():  # broadcast, or a reduce over channels
            ok &= bool(k.all())
    if merge and isinstance(layer, _L.Multiply):  # a zero factor zeroes the product
        for c in consts:
            zero = (c == 0.0) if len(c) == channels else np.broadcast_to(c == 0.0, [channels])
            value = np.where(zero, 0.0, value)
            ok |= zero
    return np.where(ok, value, np.nan)


def _folds_constants(layer):
    """A float Conv / Dense whose every output position sees the whole kernel (a
    Dense, a 1x1 or a 'valid' convolution): a constant input channel adds a
    constant to each output, which the bias takes."""
    if hasattr(layer, "input_quantizer") or isinstance(layer, (_L.SeparableConv1D,
                                                                _L.SeparableConv2D)):
        return False
    if isinstance(layer, _L.Dense):
        return True
    size = np.atleast_1d(getattr(layer, "kernel_size", ()))
    return getattr(layer, "padding", "valid") == "valid" or bool(np.all(size == 1))


def _folds(layer):
    """A reduce layer may drop zero input channels (see ``binary.folds_zero_inputs``)."""
    from searchlayers.layers.binary import folds_zero_inputs, input_zero

    if not hasattr(layer, "input_quantizer"):
        return True  # float: a zero channel adds nothing
    if getattr(layer, "kernel", None) is None:  # larq separable: no offset rule
        return input_zero(layer) == 0.0 and folds_zero_inputs(layer)
    return folds_zero_inputs(layer)


# -- per-layer slicing rules ------------------------------------------------------------
def select(x, src, dst, allowed=None, name=None):
    """Re-indexes the channels of ``x`` (holding supernet channels ``src``) to ``dst``.

    A channel of ``dst`` that is not in ``src`` (or not ``allowed``) is zero. Identity
    when ``src == dst`` and all are allowed; otherwise a weight-free
    ``ChannelSelect`` (a gather: exact, and retraining leaves it alone).

    Example:
        >>> x = tf.constant([[1.0, 2.0]])          # holds supernet channels 3 and 5
        >>> select(x, [3, 5], [5, 4, 3]).numpy().tolist()
        [[2.0, 0.0, 1.0]]
    """
    src, dst = np.asarray(src, int), np.asarray(dst, int)
    ok = np.ones(len(src), bool) if allowed is None else np.asarray(allowed)[src]
    if len(src) == len(dst) and np.array_equal(src, dst) and ok.all():
        return x
    position = {int(s): i for i, s in enumerate(src) if ok[i]}
    return ChannelSelect([position.get(int(d), -1) for d in dst], name=name)(x)


def _from_config(layer, **changes):
    config = layer.get_config()
    config.update(changes)
    return plain_type(layer).from_config(config)


def _expand(idx, multiplier):
    idx = np.asarray(idx, int)
    return (idx[:, None] * multiplier + np.arange(multiplier)[None, :]).reshape(-1)


def slice_reduce(layer, x, in_idx, out_idx, name=None, fold=None):
    """A Conv / Dense / SeparableConv whose kernel keeps input channels ``in_idx``
    (of the old input) and output channels ``out_idx``; applied to ``x``.

    ``fold``: ``(indices, values)`` of input channels that are the constants
    ``values`` everywhere and are not kept: their contribution (``sum`` over the
    kernel window of ``kernel[..., j, o] * value_j``) goes into the bias (only for a
    layer whose every output sees the whole window, see ``_folds_constants``).
    A larq layer's kernel keeps its XNOR scale, and what its cut (zero) inputs add
    through the input quantizer (``ste_sign(0) = +1``) becomes a bias
    (``binary.slice_quant_kernel``)."""
    in_idx, out_idx = np.asarray(in_idx, int), np.asarray(out_idx, int)
    size = "units" if isinstance(layer, _L.Dense) else "filters"
    changes = {size: len(out_idx), **({"name": name} if name else {})}
    kernel = offset = None
    if hasattr(layer, "input_quantizer") and getattr(layer, "kernel", None) is not None:
        from searchlayers.layers.binary import slice_quant_kernel

        kernel, offset = slice_quant_kernel(layer, in_idx, out_idx)
        offset = offset if np.any(offset) else None
    if fold is not None and len(fold[0]):
        full = layer.kernel.numpy()
        per_channel = full.reshape([-1, full.shape[-2], full.shape[-1]]).sum(axis=0)
        extra = (np.asarray(fold[1], np.float64)[:, None]
                 * per_channel[np.asarray(fold[0], int)]).sum(axis=0)[out_idx]
        offset = extra.astype(np.float32) + (0.0 if offset is None else offset)
    if offset is not None:
        changes["use_bias"] = True
    new = _from_config(layer, **changes)
    y = new(x)
    sliced = []
    for w in layer.weights:
        value = w.numpy()
        if w is getattr(layer, "kernel", None):
            value = value[..., in_idx, :][..., out_idx] if kernel is None else kernel
        elif w is getattr(layer, "depthwise_kernel", None):
            value = value[..., in_idx, :]
        elif w is getattr(layer, "pointwise_kernel", None):
            mult = layer.depth_multiplier
            value = value[..., _expand(in_idx, mult), :][..., out_idx]
        elif w is getattr(layer, "bias", None):
            value = value[out_idx] + (0.0 if offset is None else offset)
        else:
            raise ValueError(
                f"derive: cannot slice weight {w.name!r} of layer '{layer.name}' "
                f"({type(layer).__name__}) to kept channels."
            )
        sliced.append(value)
    if offset is not None and getattr(layer, "bias", None) is None:
        sliced.append(offset)  # the bias follows the kernel
    new.set_weights(sliced)
    return y


def slice_channelwise(layer, x, idx, channels, name=None, node=None, args=None):
    """A channel-wise layer (BN, depthwise conv, PReLU, an element-wise TF op,
    ...) keeping channels ``idx``: weights whose last axis runs over the channels
    are sliced, the config narrowed by the layer's registered ``resize``.

    ``node`` / ``args``: the supernet call and its derived inputs (``x`` first),
    so a TF op keeps its constant arguments."""
    idx = np.asarray(idx, int)
    config = resize_config(layer, layer.get_config(), idx)
    if name:
        config["name"] = name
    new = plain_type(layer).from_config(config)
    y = new(x) if node is None else call_node(node, args, new)
    sliced = []
    for w in layer.weights:
        value = w.numpy()
        if w is getattr(layer, "depthwise_kernel", None):
            value = value[..., idx, :]
        elif value.ndim and value.shape[-1] == channels:
            value = value[..., idx]
        sliced.append(value)
    new.set_weights(sliced)
    return y


def fixed_mask(x, scale, name=None):
    """``x`` times a fixed per-channel 0/1 vector: a ``Rescaling`` (no weights, plain
    Keras), for a mask whose dropped channels an opaque layer still reads."""
    scale = np.asarray(scale, np.float32)
    if scale.all():
        return x
    return _L.Rescaling(scale=scale.tolist(), offset=0.0, name=name)(x)


__all__ = [
    "KINDS",
    "ChannelPlan",
    "fixed_mask",
    "register_channel_rule",
    "resize_config",
    "Graph",
    "expected_channels",
    "kind",
    "leading_closure",
    "select",
    "slice_channelwise",
    "slice_reduce",
    "zero_preserving",
]
