"""BARS (Zhao et al., 2021): joint search of binary cell topology and layout.

Macro level (sec. 4.1.1): ``stages`` stages; stage ``s`` has ``cells`` normal
cells and (for ``s > 0``) a reduction cell in front that halves the resolution
and doubles the channels. A ``GumbelDepthGate`` (the aggregation node, eq. 3)
mixes the stage input and its cells' outputs, so the stage's depth is searched
in ``0..cells``; ``WidthGate`` masks (eq. 4, widths 0.25 / 0.5 / 0.75 / 1.0)
sharing one key per stage multiply every feature map of the stage (the stem
output, each cell's preprocess output, nodes and output), so the stage's width
is searched.

Micro level (sec. 4.1.2): densely connected cells — node ``j`` sums an edge
from every earlier node, node 0 being the cell's single preprocess layer (a
binary 1x1 conv + BN that takes the previous cell's ``steps * C`` channels to
``C``); edges are ``MixedOp(BARS_OPS)``: binary conv 3x3 with an extra
shortcut, shortcut, none (``searchlayers.layers.BARS_OPS``, scalar XNOR
scaling). The cell output concatenates its nodes and adds the cell-level
shortcut (identity, or in a reduction cell the all-binary ``BinaryReduce``:
strided binary convs plus the spatially staggered input). Topologies are
shared stage-wise: the normal cells of a stage share ``arch_key
"s{s}_normal_e{e}"`` (and one Gumbel draw per step: gates and edges of a key
share a seed); each reduction cell has its own key. The stem and classifier
are float; everything in between is binary.

Search strategy (sec. 4.2, ``search_callbacks``): Gumbel-softmax for op,
depth and width (``mode="gumbel"``) with a temperature annealed towards 0,
the entropy schedule (``EntropyRegularizer.bars``: negative, then positive),
supernet warm-up (``ArchWarmup``), and the capacity term of eq. 7
(``FLOPsRegularizer(mode="multiplicative")`` on equivalent ops,
``FLOPs + BiOps / 64``, of the searched edges). Derivation (sec. 4.3,
``derive_bars``): sample ``K = 8`` architectures, keep the one with the lowest
validation loss under the supernet's weights (``none`` is a real choice).

Example:
    >>> from models.bars import bars_supernet
    >>> model = bars_supernet((8, 8, 1), 10, **DIGITS_CONFIG)
    >>> model.output_shape
    (None, 10)
"""

import collections
import re
import zlib

import numpy as np

from searchlayers import callbacks as cb
from searchlayers._keras import keras
from searchlayers.derive import best_of_k, derive
from searchlayers.layers import BARS_OPS, GumbelDepthGate, MixedOp, WidthGate
from searchlayers.layers.binary import BinaryConvBN, BinaryReduce
from searchlayers.layers.ops import BN_MOMENTUM
from searchlayers.layers.gates import WIDTHS
from searchlayers.regularizers import arch_groups, unwrap
from searchlayers.search import tie_arch_variables

L = keras.layers

SEARCH_CONFIG = dict(channels=16, stages=3, cells=3, steps=3)
"""A CIFAR-sized search network (the paper's exact layout is in its appendix)."""

DIGITS_CONFIG = dict(channels=16, stages=2, cells=2, steps=2)
"""Small enough to search on scikit-learn's digits (8x8) in about a minute."""

SCALING = "scalar"  # BARS: one XNOR factor per layer (sec. 3.1)


def _seed(key):
    """One seed per arch_key: layers sharing a choice draw the same noise."""
    return zlib.crc32(key.encode()) % (2**31)


class _Space:
    """The options every cell of one supernet shares."""

    def __init__(self, steps, ops, mode, temperature, widths, cell_shortcut, search_width):
        self.steps, self.ops, self.mode, self.temperature = steps, tuple(ops), mode, temperature
        self.widths, self.cell_shortcut, self.search_width = widths, cell_shortcut, search_width

    def width(self, x, key, groups, name):
        if not self.search_width:
            return x
        return WidthGate(self.widths, groups=groups, mode=self.mode, arch_key=key,
                         temperature=self.temperature, seed=_seed(key), name=name)(x)

    def edge(self, x, channels, strides, key, name):
        return MixedOp(self.ops, mode=self.mode, channels=channels, strides=strides,
                       arch_key=key, temperature=self.temperature, seed=_seed(key), name=name)(x)


def bars_cell(x, channels, prefix, edge_key, stage_key, space, reduction=False, prev_key=None):
    """One densely connected BARS cell on ``x`` (``steps * C_prev`` channels);
    returns its ``steps * channels``-channel output.

    Example:
        >>> space = _Space(2, BARS_OPS, "gumbel", 1.0, WIDTHS, True, True)
        >>> bars_cell(keras.Input((8, 8, 16)), 8, "c", "n", "s0_width", space).shape
        TensorShape([None, 8, 8, 16])
    """
    steps = space.steps
    c_prev = x.shape[-1] // steps
    h = BinaryConvBN(c_prev, 1, scaling=SCALING, name=f"{prefix}_pre")(x)
    nodes = [space.width(h, prev_key if reduction else stage_key, 1, f"{prefix}_pre_width")]
    edge = 0
    for j in range(1, steps + 1):
        edges = []
        for i in range(j):
            strides = 2 if reduction and i == 0 else 1
            edges.append(space.edge(nodes[i], channels, strides, f"{edge_key}_e{edge}",
                                    f"{prefix}_e{edge}"))
            edge += 1
        node = edges[0] if len(edges) == 1 else L.Add(name=f"{prefix}_n{j}")(edges)
        nodes.append(space.width(node, stage_key, 1, f"{prefix}_n{j}_width"))
    out = nodes[1] if steps == 1 else L.Concatenate(name=f"{prefix}_concat")(nodes[1:])
    if space.cell_shortcut:
        short = x
        if reduction:
            short = BinaryReduce(steps * channels, scaling=SCALING, groups=steps,
                                 name=f"{prefix}_shortcut")(x)
        out = L.Add(name=f"{prefix}_skip")([out, short])
    return space.width(out, stage_key, steps, f"{prefix}_width")


def bars_supernet(input_shape=(32, 32, 3), num_classes=10, channels=16, stages=3, cells=3,
                  steps=3, ops=BARS_OPS, mode="gumbel", temperature=1.0, widths=WIDTHS,
                  cell_shortcut=True, search_depth=True, search_width=True,
                  name="bars_supernet"):
    """The BARS supernet as a Functional Keras model (logits output).

    Args:
        input_shape, num_classes: the data.
        channels: node channels of the first stage (doubled per stage).
        stages, cells, steps: stages, normal cells per stage (the largest depth),
            nodes per cell.
        ops: edge candidates (default: binary conv 3x3 + shortcut, shortcut, none).
        mode: relaxation of every choice ("gumbel"; "softmax" for the ablation).
        widths: the width fractions of the ``WidthGate`` s.
        cell_shortcut: the cell-level shortcut (False: the ablation).
        search_depth, search_width: add the depth / width gates.

    Example:
        >>> m = bars_supernet((8, 8, 1), 10, channels=8, stages=2, cells=1, steps=1)
        >>> sorted(arch_groups(m))[:3]
        ['s0_depth', 's0_normal_e0', 's0_width']
    """
    if stages < 1 or cells < 0 or steps < 1:
        raise ValueError(
            f"bars_supernet: need stages >= 1, cells >= 0 and steps >= 1; got "
            f"stages={stages}, cells={cells}, steps={steps}."
        )
    space = _Space(steps, ops, mode, temperature, widths, cell_shortcut, search_width)
    inputs = keras.Input(input_shape, name="image")
    x = L.Conv2D(steps * channels, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = L.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = space.width(x, "s0_width", steps, "stem_width")
    c = channels
    for s in range(stages):
        key = f"s{s}_width"
        if s > 0:
            c *= 2
            x = bars_cell(x, c, f"s{s}r", f"s{s}_reduce", key, space, reduction=True,
                          prev_key=f"s{s - 1}_width")
        outs = [x]
        for i in range(1, cells + 1):
            outs.append(bars_cell(outs[-1], c, f"s{s}c{i}", f"s{s}_normal", key, space))
        if search_depth and cells:
            x = GumbelDepthGate(mode=mode, temperature=temperature, name=f"s{s}_depth")(outs)
        else:
            x = outs[-1]
    x = L.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, L.Dense(num_classes, name="classifier")(x), name=name)
    tie_arch_variables(model)
    return model


# -- search strategy -------------------------------------------------------------------------
def search_callbacks(epochs, warmup=1, budget=None, metric="equivalent_ops", mode="gumbel",
                     temperature=(1.0, 0.1), entropy=(-0.01, 0.01), under=0.0, over=1.0):
    """BARS' search strategy as callbacks for ``SearchModel.fit``.

    * ``TemperatureScheduler``: linear ``temperature[0] -> temperature[1]`` over
      the epochs (Gumbel modes only: plain softmax keeps T = 1, as DARTS);
    * ``EntropyRegularizer.bars``: coefficient ``entropy[0] -> entropy[1]``;
    * ``ArchWarmup(warmup)``: weights only for the first epochs;
    * with a ``budget``: ``FLOPsRegularizer`` of eq. 7 (multiplicative,
      ``(cost / budget)^over`` above the budget, ``^under`` below) on the
      searched edges' ``metric``.

    Example:
        >>> [type(c).__name__ for c in search_callbacks(10, budget=1e4)]
        ['TemperatureScheduler', 'EntropyRegularizer', 'ArchWarmup', 'FLOPsRegularizer']
    """
    total = max(int(epochs) - 1, 1)
    found = []
    if mode != "softmax":
        found.append(cb.TemperatureScheduler("linear", start=temperature[0],
                                             end=temperature[1], total=total))
    found.append(cb.EntropyRegularizer.bars(epochs, start=entropy[0], end=entropy[1]))
    found.append(cb.ArchWarmup(warmup))
    if budget is not None:
        found.append(cb.FLOPsRegularizer(budget=budget, metric=metric, mode="multiplicative",
                                         under=under, over=over, search_only=True))
    return found


def derive_bars(model, validation_data, k=8, seed=0):
    """BARS' derive: ``best_of_k`` (sample ``k``, keep the lowest validation loss
    with the supernet's weights) then ``derive``; ``model`` is the compiled
    ``SearchModel`` (or compiled supernet). Returns ``(child, best, scored)``.

    Example:
        >>> child, best, scored = derive_bars(search, (x_val, y_val))  # doctest: +SKIP
    """
    net = unwrap(model)
    if net is not model and getattr(net, "compiled_loss", None) is None:
        net.compile(loss=model.loss)  # score with the search's data loss
    best, scored = best_of_k(net, validation_data, k=k, seed=seed)
    return derive(net, architecture=best), best, scored


# -- reading architectures ---------------------------------------------------------------
_EDGE = re.compile(r"^s(\d+)(r|c\d+)_e(\d+)$")


def op_mix(architecture):
    """Counts of the chosen ops, each stage-wise shared edge once:
    ``{"normal": {...}, "reduce": {...}}``.

    Example:
        >>> op_mix(Architecture({}, {"s0c1_e0": "bin_shortcut", "s0c2_e0": "bin_shortcut",
        ...                          "s1r_e0": "zeroise"}))  # doctest: +SKIP
        {'normal': {'bin_shortcut': 1}, 'reduce': {'zeroise': 1}}
    """
    seen, mix = set(), {"normal": collections.Counter(), "reduce": collections.Counter()}
    for layer, op in sorted(architecture.names.items()):
        match = _EDGE.match(layer)
        if not match:
            continue
        stage, cell, edge = match.groups()
        kind = "reduce" if cell == "r" else "normal"
        if (stage, kind, edge) in seen:
            continue
        seen.add((stage, kind, edge))
        mix[kind][op] += 1
    return {kind: dict(sorted(counts.items())) for kind, counts in mix.items()}


def layout(architecture):
    """``{stage: {"depth": d, "width": w}}`` of a BARS architecture.

    Example:
        >>> layout(arch)  # doctest: +SKIP
        {0: {'depth': 2, 'width': 0.75}, 1: {'depth': 1, 'width': 1.0}}
    """
    found = collections.defaultdict(dict)
    for layer, name in architecture.names.items():
        depth = re.match(r"^s(\d+)_depth$", layer)
        if depth:
            found[int(depth.group(1))]["depth"] = int(name)
        elif layer == "stem_width" or re.match(r"^s\d+c\d+_width$", layer):
            stage = 0 if layer == "stem_width" else int(layer[1:layer.index("c")])
            found[stage].setdefault("width", float(name))
    return dict(sorted(found.items()))


def shortcut_probability(model, op="bin_shortcut"):
    """Mean probability of ``op`` over the edge groups (BARS Fig. 5, right).

    Example:
        >>> round(shortcut_probability(bars_supernet((8, 8, 1), 10, **DIGITS_CONFIG)), 2)
        0.33
    """
    values = []
    for layer in arch_groups(unwrap(model)).values():
        if isinstance(layer, MixedOp) and op in layer.choice_names:
            values.append(float(layer.probabilities()[layer.choice_names.index(op)]))
    return float(np.mean(values)) if values else float("nan")


__all__ = [
    "DIGITS_CONFIG",
    "SEARCH_CONFIG",
    "bars_cell",
    "bars_supernet",
    "derive_bars",
    "layout",
    "op_mix",
    "search_callbacks",
    "shortcut_probability",
]
