"""Macro-level search layers of BARS: ``WidthGate`` and ``GumbelDepthGate``.

* ``WidthGate`` (BARS eq. 4): one categorical choice among width fractions
  ``(0.25, 0.5, 0.75, 1.0)``; the input is multiplied by the relaxed mask
  ``sum_i m_i * M_i``, ``M_i`` keeping the first ``int(w_i * C)`` channels (of
  each of ``groups`` channel blocks). Gates with the same ``arch_key`` share the
  choice (BARS: one width per stage, applied to every feature map of it).
* ``GumbelDepthGate`` (BARS eq. 3): the aggregation node of a stage. It takes
  the list ``[y_0, ..., y_N]`` (the stage input and the outputs of its ``N``
  cells) and returns ``sum_i m_i * y_i``; the choice is the stage's depth.

``m`` is a Gumbel-softmax sample in training (``mode="gumbel"``, BARS eq. 5),
a straight-through one-hot (``"gumbel_hard"``) or the plain softmax
(``"softmax"``, the "without Gumbel" ablation), all from
``searchlayers.relax``; at inference ``softmax(alpha / T)`` (one-hot argmax for
``"gumbel_hard"``), as ``MixedOp`` does. ``set_choice`` fixes the choice.

Cost and derivation go through the shared machinery:

* expected cost: ``searchlayers.regularizers.expected_cost`` walks the graph
  (``searchlayers.slicing.expected_channels``); each layer is counted at the
  expected width of its input and output, a layer whose input and output are
  governed by the same width gate as ``sum_i p_i cost(w_i C_in, w_i C_out)``
  (BARS' ``E[w^2]``), and every layer is weighted by the probability that the
  stage's depth keeps it (``depth_weights``: ``P(depth >= i)`` for cell ``i``).
  The gates themselves cost nothing.
* derivation: ``searchlayers.derive`` slices every width-gated tensor to its
  kept channels (``searchlayers.slicing.ChannelPlan``) and replaces a depth gate
  by its chosen input; the cells after it are dropped (``live_nodes``).
"""

import numpy as np
import tensorflow as tf

from searchlayers import checks
from searchlayers._keras import keras, register
from searchlayers.layers.base import KeepChannels, Pick, channel_rule, derivation_of
from searchlayers.layers.choice import CategoricalChoice

MODES = ("gumbel", "gumbel_hard", "softmax")
WIDTHS = (0.25, 0.5, 0.75, 1.0)


class _CategoricalGate(CategoricalChoice):
    """Base: one categorical choice (``CategoricalChoice``), relaxed by ``mode``."""

    def __init__(self, mode="gumbel", arch_key=None, temperature=1.0, seed=None, **kwargs):
        super().__init__(arch_key=arch_key, temperature=temperature, seed=seed, **kwargs)
        if mode not in MODES:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': unknown mode {mode!r}; "
                f"allowed: {', '.join(map(repr, MODES))}."
            )
        self.mode = mode

    def cost(self, input_shape=None):
        """A gate has no weights and no MACs; its effect on the cost of its
        neighbours is counted by ``searchlayers.regularizers.expected_cost``."""
        from searchlayers.cost import Cost

        return Cost.zero()

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@register
class WidthGate(_CategoricalGate):
    """Searches the width of the feature maps it multiplies (BARS eq. 4).

    Args:
        widths: the distinct width fractions to choose from, each in (0, 1]
            (BARS: 0.25, 0.5, 0.75, 1.0); built, each must keep a different
            channel count.
        groups: the channels are ``groups`` equal blocks (e.g. a cell's
            concatenated nodes), each keeping its first ``int(w * C / groups)``.
        mode: "gumbel", "gumbel_hard" or "softmax".
        arch_key: gates with the same key share one choice (one width per stage).
        temperature, seed: see ``SearchLayer``.

    Example:
        >>> import searchlayers as sl
        >>> model = sl.keras.Sequential([
        ...     sl.keras.Input((8, 8, 1)),
        ...     sl.keras.layers.Conv2D(8, 3, padding="same"),
        ...     WidthGate(arch_key="stage0"),
        ...     sl.keras.layers.GlobalAveragePooling2D(),
        ...     sl.keras.layers.Dense(10),
        ... ])
        >>> model(tf.ones([2, 8, 8, 1])).shape
        TensorShape([2, 10])
    """

    derives_to = KeepChannels  # derived: the neighbours keep the chosen channels

    def __init__(self, widths=WIDTHS, groups=1, mode="gumbel", arch_key=None, temperature=1.0,
                 seed=None, **kwargs):
        super().__init__(mode=mode, arch_key=arch_key, temperature=temperature, seed=seed,
                         **kwargs)
        where = f"WidthGate '{self.name}'"
        widths = checks.numbers(where, "widths", widths, low=0, low_open=True, high=1)
        checks.distinct(where, "widths", widths, "distinct fractions (a repeat is one "
                        "choice twice)")
        self.widths, self.groups = widths, checks.integer(where, "groups", groups, low=1)

    @property
    def choice_names(self):
        return [f"{w:g}" for w in self.widths]

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        channels = input_shape[-1] if input_shape.rank else None
        where = f"WidthGate '{self.name}'"
        if channels is None or channels % self.groups:
            raise ValueError(
                f"{where}: the input's channel (last) dimension must be known and a multiple "
                f"of groups={self.groups}; got shape {input_shape}."
            )
        self.channels = int(channels)
        per_group = self.channels // self.groups
        kept = [int(w * per_group) for w in self.widths]
        if min(kept) < 1:
            raise ValueError(
                f"{where}: width {self.widths[kept.index(min(kept))]:g} of {per_group} "
                f"channels per group keeps no channel; use fewer groups, more channels or "
                "larger widths."
            )
        if len(set(kept)) < len(kept):  # e.g. 0.5 and 0.6 of 8 channels: both keep 4
            i = next(i for i, n in enumerate(kept) if kept.index(n) < i)
            j = kept.index(kept[i])
            raise ValueError(
                f"{where}: widths must keep different channel counts, got widths "
                f"{self.widths[j]:g} and {self.widths[i]:g} both keeping {kept[i]} of "
                f"{per_group} channels per group (one choice twice); use other widths or "
                "more channels."
            )
        self.kept = tuple(kept)
        rows = np.zeros([len(kept), self.groups, per_group], np.float32)
        for i, n in enumerate(kept):
            rows[i, :, :n] = 1.0
        self._masks = rows.reshape(len(kept), self.channels)  # [choices, channels]
        self.build_choice()
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def _mask(self, weights):
        return tf.linalg.matvec(tf.constant(self._masks), weights, transpose_a=True)

    def call(self, x, training=None):
        return x * tf.cast(self._mask(self.mixing_weights(training)), x.dtype)

    def channel_probabilities(self):
        """``P(channel c is kept)`` under ``probabilities()`` (a vector)."""
        return self._mask(self.probabilities())

    def channel_choices(self):
        """``(probabilities, kept channel count of each choice)``."""
        return self.probabilities(), [n * self.groups for n in self.kept]

    def channel_keep(self, choice):
        """The boolean mask of the channels that choice ``choice`` keeps.

        Example:
            >>> gate = WidthGate(); _ = gate(tf.ones([1, 8]))
            >>> gate.channel_keep(0).astype(int).tolist()
            [1, 1, 0, 0, 0, 0, 0, 0]
        """
        return self._masks[int(choice)] > 0

    def derivation(self, choice):
        """``KeepChannels``: the leading channels of the chosen width (per group)."""
        return KeepChannels(self.channel_keep(self.check_choice(choice)))

    def get_config(self):
        return {**super().get_config(), "widths": self.widths, "groups": self.groups}


@register
class GumbelDepthGate(_CategoricalGate):
    """Searches the depth of a stage (BARS eq. 3): ``sum_i m_i * y_i`` over the
    list ``[y_0, ..., y_N]`` of the stage input and its cells' outputs.

    Derived, the stage keeps its chosen depth ``d``: the output is ``y_d`` and
    the cells after it are dropped. ``reach_probabilities()`` gives
    ``P(depth >= i)``, the probability that cell ``i`` is kept.

    Args:
        mode: "gumbel", "gumbel_hard" or "softmax".
        arch_key, temperature, seed: see ``SearchLayer``.

    Example:
        >>> import searchlayers as sl
        >>> x = sl.keras.Input((8, 8, 4))
        >>> y1 = sl.keras.layers.Conv2D(4, 3, padding="same")(x)
        >>> y2 = sl.keras.layers.Conv2D(4, 3, padding="same")(y1)
        >>> out = GumbelDepthGate()([x, y1, y2])
        >>> sl.keras.Model(x, out)(tf.ones([1, 8, 8, 4])).shape
        TensorShape([1, 8, 8, 4])
    """

    derives_to = Pick  # derived: the chosen input passes

    @property
    def choice_names(self):
        return [str(i) for i in range(getattr(self, "depths", 0))]

    def build(self, input_shape):
        where = f"GumbelDepthGate '{self.name}'"
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) < 2:
            raise ValueError(
                f"{where}: expects a list [y_0, ..., y_N] of at least 2 tensors (the stage "
                f"input and its cells' outputs), got input shape {input_shape}."
            )
        shapes = [tf.TensorShape(s) for s in input_shape]
        if any(s[1:] != shapes[0][1:] for s in shapes):
            raise ValueError(
                f"{where}: all inputs must have the same shape, got "
                f"{[s.as_list() for s in shapes]}."
            )
        self.depths = len(shapes)
        self.build_choice()
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape[0])

    def call(self, inputs, training=None):
        w = self.mixing_weights(training)
        return tf.add_n([y * tf.cast(w[i], y.dtype) for i, y in enumerate(inputs)])

    def reach_probabilities(self):
        """``P(depth >= i)`` for ``i = 0..N`` (1 for the stage input).

        Example:
            >>> gate = GumbelDepthGate(); _ = gate([tf.ones([1, 2])] * 3)
            >>> gate.set_choice(1); gate.reach_probabilities().numpy().tolist()
            [1.0, 1.0, 0.0]
        """
        return tf.math.cumsum(self.probabilities(), reverse=True)

    def derivation(self, choice):
        """``Pick``: the chosen depth's input passes (the cells after it are dropped)."""
        return Pick(self.check_choice(choice))


def gate_layers(model):
    """The ``WidthGate`` and ``GumbelDepthGate`` layers inside ``model``.

    Example:
        >>> gate_layers(keras.Sequential([keras.layers.Dense(2)]))
        []
    """
    return [
        layer for layer in model._flatten_layers(include_self=True, recursive=True)
        if isinstance(layer, (WidthGate, GumbelDepthGate))
    ]


# -- graph rules used by the cost walk and by derive -------------------------------------
def depth_weights(graph):
    """``{id(node): weight}``: the probability that the derived network keeps
    each call of ``graph`` (a ``searchlayers.slicing.Graph``).

    A call whose outputs reach the model's outputs only through depth gate
    inputs ``S`` is kept with probability ``sum_{k in S} p_k`` (cell ``i`` of a
    stage: ``P(depth >= i)``); calls with another path to the outputs keep
    weight 1. Several gates multiply (exact for stages in series). Calls not
    listed have weight 1.
    """
    weights = {}
    for gate, gate_node, gate_ins, _ in graph.calls:
        if channel_rule(gate) != "pick":
            continue
        probs = gate.probabilities()
        avoid = {t: t in graph.output_ids for t in graph.tensors}  # reaches out, not via gate
        reach = {t: set() for t in graph.tensors}  # gate inputs it reaches
        for layer, node, ins, outs in reversed(graph.calls):
            if node is gate_node:
                for k, t in enumerate(ins):
                    reach[t].add(k)
                continue
            free = any(avoid[o] for o in outs)
            found = set().union(*(reach[o] for o in outs))
            for t in ins:
                avoid[t] = avoid[t] or free
                reach[t] |= found
            if not free and found:
                w = tf.reduce_sum(tf.gather(probs, sorted(found)))
                weights[id(node)] = weights.get(id(node), 1.0) * w
    return weights


def live_nodes(graph, choices):
    """``{id(node)}`` of the calls a derived network keeps: those that reach an
    output when every depth gate (a ``Pick``) passes only its chosen input."""
    live_tensors, live = set(graph.output_ids), set()
    for layer, node, ins, outs in reversed(graph.calls):
        if not any(o in live_tensors for o in outs):
            continue
        live.add(id(node))
        if channel_rule(layer) == "pick" and layer.name in choices:
            live_tensors.add(ins[derivation_of(layer, choices[layer.name]).index])
        else:
            live_tensors.update(ins)
    return live


def width_cost(cost, layer, kind, in_shape, out_shape, p_in, q_out):
    """``cost`` of one call corrected for width gates (see the module docstring).

    ``p_in`` / ``q_out``: the ``searchlayers.slicing`` probabilities governing
    the call's input and output (``choices`` set when a width gate governs).

    * a Conv / Dense (``"reduce"``) whose input and output the same width gate
      governs: ``sum_i p_i * layer_cost(cin_i, cout_i)`` (the FiGS walk's
      ``cost(E[cin], E[cout])`` is exact for independent sides already);
    * a layer counted by its own ``cost()`` (``MixedOp``, binary composites):
      MACs and binary parameters times ``E[f_in * f_out]``, float parameters
      (per-output BatchNorm statistics) times ``E[f_out]``, ``f`` the kept
      fraction of each side. Exact for the BARS / BNAS binary ops.
    """
    from searchlayers import cost as cost_lib

    width_in = p_in if p_in is not None and p_in.choices is not None else None
    width_out = q_out if q_out is not None and q_out.choices is not None else None
    if width_in is None and width_out is None:
        return cost
    same = width_in is not None and width_out is not None and width_in.key == width_out.key
    if kind == "reduce":
        if not same:
            return cost
        probs, cins = width_in.choices
        couts = width_out.choices[1]
        return sum(probs[i] * cost_lib.layer_cost(layer, in_shape, out_shape, cin=a, cout=b)
                   for i, (a, b) in enumerate(zip(cins, couts)))
    if kind not in ("opaque", "sliceable") or not _single(in_shape) or not _single(out_shape):
        return cost
    c_in, c_out = in_shape[-1], out_shape[-1]
    if same:
        probs, cins = width_in.choices
        couts = width_out.choices[1]
        both = sum(probs[i] * (a / c_in) * (b / c_out) for i, (a, b) in enumerate(zip(cins, couts)))
        out = sum(probs[i] * (b / c_out) for i, b in enumerate(couts))
    else:
        f_in = 1.0 if width_in is None else tf.reduce_sum(width_in.p) / c_in
        out = 1.0 if width_out is None else tf.reduce_sum(width_out.p) / c_out
        both = f_in * out
    return cost_lib.Cost(float_macs=both * cost.float_macs, binary_macs=both * cost.binary_macs,
                         float_params=out * cost.float_params,
                         binary_params=both * cost.binary_params)


def _single(shape):
    """True for one known shape (not a list of shapes) with a known channel axis."""
    if isinstance(shape, (list, tuple)) and shape and not isinstance(shape[0], (int, type(None))):
        return False
    shape = tf.TensorShape(shape)
    return shape.rank is not None and shape.rank >= 2 and shape[-1] is not None


__all__ = [
    "GumbelDepthGate",
    "MODES",
    "WIDTHS",
    "WidthGate",
    "depth_weights",
    "gate_layers",
    "live_nodes",
    "width_cost",
]
