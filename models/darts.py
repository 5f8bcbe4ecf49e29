"""The DARTS cell supernet (Liu et al., 2019), small enough to search on digits.

Topology (as in the authors' ``model_search.py``)::

    stem: conv3x3(stem_multiplier * channels) BN
    cells: normal cells, with reduction cells at 1/3 and 2/3 of the depth
        (a reduction cell doubles the channels; its edges from the two cell
        inputs have stride 2)
    head: global average pooling -> dense(num_classes)   (logits)

A cell takes the outputs of the two previous cells, preprocesses them to
``C`` channels (ReLU-Conv1x1-BN, or ``FactorizedReduce`` when the
previous-previous output has twice the resolution), then builds ``steps``
nodes: node ``j`` is the ``Add`` of one ``MixedOp`` per earlier state (the two
inputs and nodes ``0..j-1``). The cell output concatenates the last
``multiplier`` nodes.

All normal cells share one topology: the ``MixedOp`` of edge ``e`` has
``arch_key=f"normal_e{e}"`` (reduction cells: ``reduce_e{e}``), and is named
``cell{i}_{normal|reduce}_e{e}``. Edges are numbered as in DARTS: node 0's
inputs first (edges 0, 1), then node 1's (2, 3, 4), and so on.

Derivation is ``searchlayers.derive`` (argmax per edge, ``none`` edges
dropped). ``top2_architecture`` gives DARTS' own rule instead (best non-none op
per edge, two strongest incoming edges per node, the other edges ``none``);
``genotype`` reports it in DARTS' form.

Example:
    >>> from models.darts import darts_supernet, genotype
    >>> model = darts_supernet((8, 8, 1), 10, channels=4, cells=3, steps=2, multiplier=2)
    >>> model.output_shape
    (None, 10)
    >>> sorted(genotype(model))
    ['normal', 'reduce']
"""

import collections
import re

from searchlayers._keras import keras
from searchlayers.derive import Architecture, choose
from searchlayers.layers import DARTS_OPS, FactorizedReduce, MixedOp
from searchlayers.layers.ops import BN_MOMENTUM
from searchlayers.layers.base import search_layers
from searchlayers.search import tie_arch_variables

L = keras.layers
KINDS = ("normal", "reduce")
_NAME = re.compile(r"^cell(\d+)_(normal|reduce)_e(\d+)$")


# -- building -------------------------------------------------------------------------
def _relu_conv_bn(x, channels, name):
    x = L.ReLU(name=f"{name}_relu")(x)
    x = L.Conv2D(channels, 1, use_bias=False, name=f"{name}_conv")(x)
    return L.BatchNormalization(center=False, scale=False, momentum=BN_MOMENTUM,
                                name=f"{name}_bn")(x)


def edge_inputs(steps):
    """``[(node, input_index)]`` for every edge, in DARTS' edge order.

    Example:
        >>> edge_inputs(2)
        [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
    """
    return [(node, j) for node in range(steps) for j in range(node + 2)]


def darts_cell(s0, s1, channels, index, reduction, reduction_prev, steps=4, multiplier=4,
               ops=DARTS_OPS, mode="softmax", temperature=1.0):
    """Applies one DARTS search cell to the two previous states; returns its output.

    Example:
        >>> x = keras.Input((8, 8, 4))
        >>> darts_cell(x, x, 4, index=0, reduction=True, reduction_prev=False,
        ...            steps=2, multiplier=2).shape
        TensorShape([None, 4, 4, 8])
    """
    kind = "reduce" if reduction else "normal"
    prefix = f"cell{index}"
    if reduction_prev:
        s0 = FactorizedReduce(channels, name=f"{prefix}_pre0_fr")(s0)
    else:
        s0 = _relu_conv_bn(s0, channels, f"{prefix}_pre0")
    s1 = _relu_conv_bn(s1, channels, f"{prefix}_pre1")
    states = [s0, s1]
    edge = 0
    for node in range(steps):
        terms = []
        for j, h in enumerate(states):
            op = MixedOp(
                ops, mode=mode, channels=channels, strides=2 if reduction and j < 2 else 1,
                arch_key=f"{kind}_e{edge}", temperature=temperature,
                name=f"{prefix}_{kind}_e{edge}",
            )
            terms.append(op(h))
            edge += 1
        states.append(L.Add(name=f"{prefix}_node{node}")(terms))
    kept = states[-multiplier:]
    return kept[0] if multiplier == 1 else L.Concatenate(name=f"{prefix}_out")(kept)


def darts_supernet(input_shape=(8, 8, 1), num_classes=10, channels=8, cells=5, steps=4,
                   multiplier=4, ops=DARTS_OPS, mode="softmax", temperature=1.0,
                   stem_multiplier=3, name="darts_supernet"):
    """The DARTS search network as a Functional Keras model (logits output).

    Args:
        input_shape: ``(height, width, channels)`` of the images.
        num_classes: size of the logits.
        channels: ``C`` of the first cells (doubled at each reduction cell).
        cells: number of cells; reduction cells sit at ``cells // 3`` and
            ``2 * cells // 3``.
        steps: intermediate nodes per cell.
        multiplier: how many of the last nodes the cell output concatenates.
        ops: candidate op names of every edge (``searchlayers.layers.op_names()``).
        mode: any ``MixedOp`` mode: "softmax" (DARTS), "gumbel" (SNAS),
            "gumbel_hard" (GDAS), "uniform", "fair".
        temperature: initial relaxation temperature of every edge.
        stem_multiplier: stem channels are ``stem_multiplier * channels``.

    Example:
        >>> m = darts_supernet(channels=4, cells=3, steps=2, multiplier=2, mode="gumbel")
        >>> len(search_layers(m))  # 3 cells x 5 edges
        15
    """
    if cells < 1 or steps < 1 or not 1 <= multiplier <= steps:
        raise ValueError(
            f"darts_supernet: need cells >= 1, steps >= 1 and 1 <= multiplier <= steps; "
            f"got cells={cells}, steps={steps}, multiplier={multiplier}."
        )
    inputs = keras.Input(input_shape, name="image")
    x = L.Conv2D(stem_multiplier * channels, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = L.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    s0 = s1 = x
    c, reduction_prev = channels, False
    for i in range(cells):
        reduction = i in (cells // 3, 2 * cells // 3)
        c = c * 2 if reduction else c
        out = darts_cell(s0, s1, c, i, reduction, reduction_prev, steps, multiplier,
                         ops, mode, temperature)
        s0, s1, reduction_prev = s1, out, reduction
    x = L.GlobalAveragePooling2D(name="pool")(s1)
    outputs = L.Dense(num_classes, name="classifier")(x)
    model = keras.Model(inputs, outputs, name=name)
    tie_arch_variables(model)
    return model


# -- reading the search result ---------------------------------------------------------
def _edge_layers(model):
    """``{kind: {edge: first MixedOp of that shared edge}}``."""
    tie_arch_variables(model)
    edges = {kind: {} for kind in KINDS}
    for layer in search_layers(model):
        match = _NAME.match(layer.name)
        if match:
            edges[match.group(2)].setdefault(int(match.group(3)), layer)
    return edges


def _steps(num_edges):
    steps, total = 0, 0
    while total < num_edges:
        steps += 1
        total += steps + 1
    return steps


def _top2(edges):
    """DARTS' parse of one cell type: ``{edge: op index}`` of the kept edges."""
    kept = {}
    if not edges:
        return kept
    names = next(iter(edges.values())).choice_names
    allowed = [i for i, n in enumerate(names) if n != "none"] or list(range(len(names)))
    probs = {e: layer.probabilities().numpy() for e, layer in edges.items()}
    by_node = collections.defaultdict(list)
    for e, (node, _) in enumerate(edge_inputs(_steps(len(edges)))):
        by_node[node].append(e)
    for node_edges in by_node.values():
        best = {e: max(allowed, key=lambda i: probs[e][i]) for e in node_edges}
        for e in sorted(node_edges, key=lambda e: -probs[e][best[e]])[:2]:
            kept[e] = best[e]
    return kept


def genotype(model):
    """DARTS' genotype: per cell type, ``[(op, input_index)]`` two per node.

    For each node the two incoming edges whose strongest non-``none`` op has the
    highest probability are kept, each with that op. ``input_index`` 0 and 1 are
    the cell inputs, ``k + 2`` is node ``k``.

    Example:
        >>> genotype(model)["normal"][:2]  # doctest: +SKIP
        [('sep_conv_3x3', 1), ('skip_connect', 0)]
    """
    result = {}
    for kind, edges in _edge_layers(model).items():
        inputs = edge_inputs(_steps(len(edges)))
        kept = _top2(edges)
        names = next(iter(edges.values())).choice_names if edges else []
        result[kind] = [(names[i], inputs[e][1]) for e, i in sorted(kept.items())]
    return result


def top2_architecture(model):
    """An ``Architecture`` following DARTS' derivation rule (see ``genotype``).

    Kept edges take their best non-``none`` op, every other edge ``none``; build
    it with ``searchlayers.derive(model, architecture=arch)``.

    Example:
        >>> child = sl.derive(model, architecture=top2_architecture(model))  # doctest: +SKIP
    """
    arch = choose(model, "argmax")
    edges = _edge_layers(model)
    kept = {kind: _top2(layers) for kind, layers in edges.items()}
    for layer in search_layers(model):
        match = _NAME.match(layer.name)
        if not match:
            continue
        if "none" not in layer.choice_names:
            raise ValueError(
                f"top2_architecture: MixedOp '{layer.name}' has no 'none' candidate "
                f"(candidates: {layer.choice_names}); DARTS' top-2 rule drops edges to 'none'."
            )
        choice = kept[match.group(2)].get(int(match.group(3)), layer.choice_names.index("none"))
        arch.choices[layer.name] = choice
        arch.names[layer.name] = layer.choice_names[choice]
    arch.meta["strategy"] = "darts_top2"
    return arch


def op_mix(architecture):
    """Counts of each chosen op per cell type, each shared edge counted once.

    Takes an ``Architecture`` (or its ``names`` dict); a collapsed search shows
    up as mostly ``skip_connect`` / ``none``.

    Example:
        >>> op_mix({"cell0_normal_e0": "skip_connect", "cell2_normal_e0": "skip_connect",
        ...         "cell1_reduce_e0": "max_pool_3x3"})
        {'normal': {'skip_connect': 1}, 'reduce': {'max_pool_3x3': 1}}
    """
    names = architecture.names if isinstance(architecture, Architecture) else architecture
    seen, mix = set(), {kind: collections.Counter() for kind in KINDS}
    for layer_name, op in sorted(names.items()):
        match = _NAME.match(layer_name)
        if not match or (match.group(2), match.group(3)) in seen:
            continue
        seen.add((match.group(2), match.group(3)))
        mix[match.group(2)][op] += 1
    return {kind: dict(sorted(counts.items())) for kind, counts in mix.items()}


def collapse_fraction(mix):
    """Share of parameter-free edges (``none``, ``skip_connect``) per cell type.

    Example:
        >>> collapse_fraction({"normal": {"skip_connect": 3, "sep_conv_3x3": 1}, "reduce": {}})
        {'normal': 0.75, 'reduce': 0.0}
    """
    result = {}
    for kind, counts in mix.items():
        total = sum(counts.values())
        free = counts.get("none", 0) + counts.get("skip_connect", 0)
        result[kind] = free / total if total else 0.0
    return result


__all__ = [
    "collapse_fraction",
    "darts_cell",
    "darts_supernet",
    "edge_inputs",
    "genotype",
    "op_mix",
    "top2_architecture",
]
