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

Width gates (``searchlayers.layers.WidthGate``) are masks too: a categorical choice of
leading channels. A ``GumbelDepthGate`` is a ``"pick"`` (the chosen input passes, the
cells after it are dropped); a ``MixedOp`` follows the rule of its chosen candidate;
binary composites (``BinaryConvShortcut``, ``BinaryReduce``, ...) are ``"sliceable"``:
they narrow themselves to leading channels per group (``layer.sliced``).

Layer kinds (``kind(layer)``): ``"mask"``, ``"reduce"`` (sums over input channels),
``"channelwise"`` (output channel ``c`` depends on input channel ``c`` only),
``"merge"`` (element-wise over same-shape inputs), ``"concat"``, ``"flatten"`` and
``"opaque"`` (anything else: it keeps every channel, derived as a plain copy).
"""

import numpy as np
import tensorflow as tf

from searchlayers._keras import keras
from searchlayers.layers.base import SearchLayer
from searchlayers.layers.figs import FiGSMask

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
    _L.Dropout, _L.SpatialDropout1D, _L.SpatialDropout2D, _L.SpatialDropout3D,
    _L.GaussianNoise, _L.GaussianDropout, _L.ActivityRegularization,
)
_ZERO_ACT = (_L.ReLU, _L.LeakyReLU, _L.ELU, _L.ThresholdedReLU)
_MERGE = (_L.Add, _L.Subtract, _L.Average, _L.Maximum, _L.Minimum, _L.Multiply)
# Activations with f(0) == 0: a zero channel stays zero.
_ZERO_FN = {"linear", "relu", "relu6", "elu", "selu", "tanh", "swish", "silu", "gelu",
            "softsign", "leaky_relu", "hard_silu", "hard_swish", "mish", None}


def _act_name(activation):
    if activation is None:
        return None
    return getattr(activation, "__name__", str(activation))


def kind(layer):
    """The channel rule of ``layer`` (see the module docstring).

    Example:
        >>> kind(keras.layers.BatchNormalization())
        'channelwise'
    """
    own = getattr(type(layer), "channel_kind", None)  # gates, binary composites
    if isinstance(own, str):
        return own
    if isinstance(layer, FiGSMask):
        return "mask"
    if isinstance(layer, (SearchLayer, keras.Model)):
        return "opaque"
    if isinstance(layer, _DEPTHWISE):
        return "channelwise" if layer.depth_multiplier == 1 else "opaque"
    if isinstance(layer, _REDUCE):
        return "reduce" if getattr(layer, "groups", 1) == 1 else "opaque"
    if isinstance(layer, _L.BatchNormalization):
        axes = list(layer.axis) if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        last = axes == [-1] or axes == [_last_axis(layer)]
        return "channelwise" if last else "opaque"
    if isinstance(layer, _POOL + _SHAPE_ONLY + _ZERO_ACT + (_L.Activation, _L.PReLU)):
        last = getattr(layer, "data_format", None) in (None, "channels_last")
        return "channelwise" if last else "opaque"
    if isinstance(layer, _MERGE):
        return "merge"
    if isinstance(layer, _L.Concatenate):
        return "concat" if layer.axis == -1 else "opaque"
    if isinstance(layer, _L.Flatten):
        last = getattr(layer, "data_format", None) in (None, "channels_last")
        return "flatten" if last else "opaque"
    return "opaque"


def _last_axis(layer):
    shape = getattr(layer, "_build_input_shape", None)
    if shape is None:
        return -1
    return len(tf.TensorShape(shape)) - 1


def zero_preserving(layer):
    """True when a zero input channel gives a zero output channel."""
    if isinstance(layer, FiGSMask) or isinstance(layer, _POOL + _SHAPE_ONLY + _ZERO_ACT):
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
        if not getattr(model, "_is_graph_network", False):
            raise TypeError(
                f"FiGS channel analysis needs a Functional or Sequential model with an "
                f"Input; '{model.name}' ({type(model).__name__}) has no layer graph."
            )
        self.model = model
        self.calls, self.tensors, self.consumers = [], {}, {}
        for x in model.inputs:
            self.tensors[str(id(x))] = x
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                if node.is_input:
                    continue
                ins = [str(id(t)) for t in tf.nest.flatten(node.keras_inputs)]
                outs = list(node.flat_output_ids)
                for t in tf.nest.flatten(node.keras_inputs):
                    self.tensors[str(id(t))] = t
                for t in tf.nest.flatten(node.outputs):
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
    if callable(getattr(layer, "channel_choices", None)):  # WidthGate
        return _Prob(key, layer.channel_probabilities(), layer.channel_choices())
    return _Prob(key, tf.sigmoid(layer.arch("logits")))


def _combine(probs):
    """Several governing vectors of one tensor: one group or ``1 - prod(1 - p_i)``."""
    if any(p is None for p in probs):
        return None
    if all(p.key == probs[0].key for p in probs):
        return probs[0]
    alive = 1.0 - tf.reduce_prod(tf.stack([1.0 - p.p for p in probs]), axis=0)
    return _Prob(tuple(sorted(str(p.key) for p in probs)), alive)


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
        elif k in ("merge", "pick"):
            value = _combine([p[i] for i in ins])
        elif k == "concat" and all(graph.channels(i) for i in ins):
            parts = [p[i] for i in ins]
            value = None if all(v is None for v in parts) else _Prob(
                ("concat",) + tuple(None if v is None else str(v.key) for v in parts),
                tf.concat([_ones(graph.channels(i)) if v is None else v.p
                           for i, v in zip(ins, parts)], 0))
        elif k == "flatten" and p[ins[0]] is not None and graph.positions(ins[0]):
            src = p[ins[0]]
            value = _Prob(("flat", str(src.key)), tf.tile(src.p, [graph.positions(ins[0])]))
        else:
            value = None
        for o in outs:
            p[o] = value
    q = {}
    for layer, node, ins, outs in reversed(graph.calls):
        for o in outs:
            if o not in q:
                q[o] = _downstream(graph, o, q)
    for tid in graph.tensors:
        if tid not in q:
            q[tid] = _downstream(graph, tid, q)
    return graph, p, q


def _downstream(graph, tid, q):
    if tid in graph.output_ids:
        return None
    found = []
    for layer, node, pos in graph.consumers.get(tid, []):
        k = kind(layer)
        outs = list(node.flat_output_ids)
        if k == "mask":
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
                found.append(_Prob(("slice", str(above.key), pos),
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
    without a known channel axis. Invariant: every channel of a supernet tensor
    outside ``present`` is zero or read by no consumer. ``live`` holds the ids of
    the nodes the derived model keeps (depth gates drop the cells after their
    choice); the others are neither planned nor replayed.
    """

    def __init__(self, model, choices):
        from searchlayers.layers.gates import live_nodes

        self.graph = graph = Graph(model)
        self.choices = choices
        self.live = live_nodes(graph, choices)
        self.kept = {}
        for layer, _, _, _ in graph.calls:
            if isinstance(layer, FiGSMask):
                keep = np.zeros([layer.channels], bool)
                keep[np.asarray(choices[layer.name], int)] = True
                self.kept[layer.name] = keep
            elif kind(layer) == "mask":
                self.kept[layer.name] = layer.channel_keep(choices[layer.name])
        nz = {tid: (_all(graph.channels(tid)) if graph.channels(tid) else None)
              for tid in graph.tensors}
        for layer, node, ins, outs in graph.calls:
            if id(node) not in self.live:
                continue
            value = self._nonzero(layer, ins, outs, nz)
            for o in outs:
                nz[o] = value if value is not None else (
                    _all(graph.channels(o)) if graph.channels(o) else None)
        self.nz = nz
        needed = {}
        for tid in graph.tensors:
            needed[tid] = None if graph.channels(tid) is None else np.zeros(
                [graph.channels(tid)], bool)
        for tid in graph.output_ids:
            if needed.get(tid) is not None:
                needed[tid][:] = True
        for layer, node, ins, outs in reversed(graph.calls):
            if id(node) in self.live:
                self._need(layer, ins, outs, needed, nz)
        self.present = {
            tid: None if v is None else np.flatnonzero(v) for tid, v in needed.items()
        }

    def target(self, layer):
        """The layer whose channel rule applies: a ``MixedOp``'s chosen candidate."""
        from searchlayers.layers.mixed_op import MixedOp

        if isinstance(layer, MixedOp) and self.choices.get(layer.name) is not None:
            return layer.ops[int(self.choices[layer.name])]
        return layer

    def kind_of(self, layer):
        """``kind`` of ``target(layer)``; ``"zero"`` for a chosen Zeroise."""
        from searchlayers.layers.ops import Zeroise

        target = self.target(layer)
        return "zero" if isinstance(target, Zeroise) else kind(target)

    def pick(self, layer):
        """The input index a depth gate passes."""
        return int(self.choices[layer.name])

    def _nonzero(self, layer, ins, outs, nz):
        g = self.graph
        k = self.kind_of(layer)
        if k == "zero" and g.channels(outs[0]):
            return np.zeros([g.channels(outs[0])], bool)
        if any(nz.get(i) is None for i in ins):
            return None
        if k == "pick":
            return nz[ins[self.pick(layer)]].copy()
        if k == "mask":
            return nz[ins[0]] & self.kept[layer.name]
        if k == "channelwise" and zero_preserving(self.target(layer)):
            return nz[ins[0]].copy()
        if k == "merge":
            return np.logical_or.reduce([nz[i] for i in ins])
        if k == "concat":
            return np.concatenate([nz[i] for i in ins])
        if k == "flatten" and g.positions(ins[0]):
            return np.tile(nz[ins[0]], g.positions(ins[0]))
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
            needed[ins[0]] |= out & self.kept[layer.name]
        elif k == "channelwise":
            needed[ins[0]] |= out
        elif k == "merge":
            for i in ins:
                if g.channels(i) != len(out):
                    needed[i][:] = True  # broadcasting: keep it whole
                else:
                    needed[i] |= out
        elif k == "concat":
            start = 0
            for i in ins:
                n = g.channels(i)
                needed[i] |= out[start:start + n]
                start += n
        elif k == "flatten" and g.positions(ins[0]):
            needed[ins[0]] |= out.reshape([-1, g.channels(ins[0])]).any(axis=0)
        elif k == "reduce" and _folds(self.target(layer)):
            needed[ins[0]] |= nz[ins[0]]
        else:
            for i in ins:
                needed[i][:] = True


def _folds(layer):
    """A reduce layer may drop zero input channels (see ``binary.folds_zero_inputs``)."""
    from searchlayers.layers.binary import folds_zero_inputs, input_zero

    if not hasattr(layer, "input_quantizer"):
        return True  # float: a zero channel adds nothing
    if getattr(layer, "kernel", None) is None:  # larq separable: no offset rule
        return input_zero(layer) == 0.0 and folds_zero_inputs(layer)
    return folds_zero_inputs(layer)


def leading_closure(mask, groups=1):
    """Indices of the shortest leading run of each of ``groups`` channel blocks that
    covers the ``True`` entries of ``mask`` (at least one channel per block).

    Example:
        >>> leading_closure(np.array([1, 0, 1, 0, 0, 0, 1, 0], bool), groups=2).tolist()
        [0, 1, 2, 4, 5, 6]
    """
    blocks = np.asarray(mask, bool).reshape(groups, -1)
    size = blocks.shape[1]
    runs = [max(int(np.flatnonzero(b).max()) + 1 if b.any() else 1, 1) for b in blocks]
    return np.concatenate([g * size + np.arange(n) for g, n in enumerate(runs)])


# -- per-layer slicing rules ------------------------------------------------------------
def select(x, src, dst, allowed=None, name=None):
    """Re-indexes the channels of ``x`` (holding supernet channels ``src``) to ``dst``.

    A channel of ``dst`` that is not in ``src`` (or not ``allowed``) is zero. Identity
    when ``src == dst`` and all are allowed; otherwise a bias-free ``Dense`` with a
    0/1 matrix (exact, plain Keras).
    """
    src, dst = np.asarray(src, int), np.asarray(dst, int)
    ok = np.ones(len(src), bool) if allowed is None else np.asarray(allowed)[src]
    if len(src) == len(dst) and np.array_equal(src, dst) and ok.all():
        return x
    matrix = (src[:, None] == dst[None, :]) & ok[:, None]
    # a fixed channel map, not a weight: retraining the derived model leaves it alone
    layer = keras.layers.Dense(len(dst), use_bias=False, name=name, trainable=False)
    y = layer(x)
    layer.set_weights([matrix.astype(np.float32)])
    return y


def _from_config(layer, **changes):
    config = layer.get_config()
    config.update(changes)
    return type(layer).from_config(config)


def _expand(idx, multiplier):
    idx = np.asarray(idx, int)
    return (idx[:, None] * multiplier + np.arange(multiplier)[None, :]).reshape(-1)


def slice_reduce(layer, x, in_idx, out_idx, name=None):
    """A Conv / Dense / SeparableConv whose kernel keeps input channels ``in_idx``
    (of the old input) and output channels ``out_idx``; applied to ``x``.

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


def slice_channelwise(layer, x, idx, channels, name=None):
    """A channel-wise layer (BN, depthwise conv, PReLU, ...) keeping channels ``idx``."""
    idx = np.asarray(idx, int)
    new = _from_config(layer, **({"name": name} if name else {}))
    y = new(x)
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


__all__ = [
    "ChannelPlan",
    "Graph",
    "expected_channels",
    "kind",
    "leading_closure",
    "select",
    "slice_channelwise",
    "slice_reduce",
    "zero_preserving",
]
