"""The EnTranNAS / EnTranNAS-DST supernet (Yang et al., 2021, Fig. 4).

The DARTS macro-structure (stem, cells with reduction cells at 1/3 and 2/3 of
the depth, global pooling, classifier; cell inputs preprocessed as in
``models.darts``), but every cell is one ``EnTranCell`` layer. By default
(``engine="first"``) the first normal and the first reduction cell are Engine
cells and every other cell is a Transit cell that shares its kind's
architecture (``arch_key`` ``"normal"`` / ``"reduce"``) and runs only the
currently derived sub-graph. ``engine="all"`` gives the DARTS supernet
(every cell differentiable), ``engine="last"`` makes the last cell of each
kind the Engine cell (the paper's Table 1 ablations).

Cells are named ``cell{i}_{normal|reduce}``. Derivation is
``searchlayers.derive``; ``genotype`` reads the searched cells.

Example:
    >>> from models.entrannas import entrannas_supernet, genotype
    >>> model = entrannas_supernet((8, 8, 1), 10, channels=4, cells=3, steps=2)
    >>> model.output_shape
    (None, 10)
    >>> [c.role for c in cells(model)]
    ['engine', 'engine', 'transit']
"""

from models.darts import _relu_conv_bn
from searchlayers._keras import keras
from searchlayers.derive import choose
from searchlayers.layers import DARTS_OPS, FactorizedReduce
from searchlayers.layers.base import search_layers
from searchlayers.layers.entrannas import NONE_OPS, EnTranCell
from searchlayers.layers.ops import BN_MOMENTUM
from searchlayers.search import tie_arch_variables

L = keras.layers
KINDS = ("normal", "reduce")
ENGINE = ("first", "last", "all")
# The paper's standard CIFAR-10 space "has 7 operations" (sec. 4.2): the DARTS
# candidates without 'none'. With 'none' an annealed Engine cell zeroes the
# edges where 'none' wins, while the derived cell (which never keeps 'none')
# runs a real op there, so the child differs from the supernet it came from.
ENTRANNAS_OPS = tuple(op for op in DARTS_OPS if op not in NONE_OPS)


def _engine_cells(kinds, engine):
    """Indices of the Engine cells for a list of cell kinds."""
    if engine == "all":
        return set(range(len(kinds)))
    chosen = set()
    for kind in KINDS:
        idx = [i for i, k in enumerate(kinds) if k == kind]
        if idx:
            chosen.add(idx[0] if engine == "first" else idx[-1])
    return chosen


def entrannas_supernet(input_shape=(8, 8, 1), num_classes=10, channels=8, cells=8, steps=4,
                       multiplier=None, ops=ENTRANNAS_OPS, engine="first", dst=False,
                       feature_sharing=True, bottleneck=False, bottleneck_ratio=4,
                       dst_lambda=0.1, temperature=5.0, stem_multiplier=3, top_k=2,
                       name="entrannas_supernet"):
    """The EnTranNAS search network as a Functional Keras model (logits output).

    Args:
        input_shape, num_classes: images and classes.
        channels: ``C`` of the first cells (doubled at each reduction cell).
        cells: number of cells (8 in the paper); reduction at ``cells // 3``
            and ``2 * cells // 3``.
        steps: intermediate nodes per cell (4: the paper's 6 nodes).
        multiplier: nodes concatenated into the cell output (default ``steps``).
        ops: candidate op names (default ``ENTRANNAS_OPS``: the paper's 7-op
            standard space, the DARTS ops without ``none``).
        engine: "first" (paper), "last" or "all" (DARTS).
        dst: EnTranNAS-DST (learned per-node thresholds, flexible topology).
        feature_sharing, bottleneck, bottleneck_ratio, top_k: see ``EnTranCell``.
        dst_lambda: threshold regularizer weight (added by each Engine cell).
        temperature: initial temperature (5.0; anneal with
            ``TemperatureScheduler.entrannas()``).
        stem_multiplier: stem channels are ``stem_multiplier * channels``.

    Example:
        >>> m = entrannas_supernet(channels=4, cells=3, steps=2, dst=True)
        >>> sorted(v.name.split("/")[-1] for v in sl.arch_variables(m))  # doctest: +SKIP
        ['arch_betas:0', 'arch_betas:0', 'arch_logits:0', 'arch_logits:0']
    """
    if engine not in ENGINE:
        raise ValueError(f"entrannas_supernet: unknown engine {engine!r}; allowed: {ENGINE}.")
    multiplier = steps if multiplier is None else multiplier
    if cells < 1 or steps < 1 or not 1 <= multiplier <= steps:
        raise ValueError(
            f"entrannas_supernet: need cells >= 1, steps >= 1 and 1 <= multiplier <= steps; "
            f"got cells={cells}, steps={steps}, multiplier={multiplier}."
        )
    kinds = ["reduce" if i in (cells // 3, 2 * cells // 3) else "normal" for i in range(cells)]
    engines = _engine_cells(kinds, engine)
    inputs = keras.Input(input_shape, name="image")
    x = L.Conv2D(stem_multiplier * channels, 3, padding="same", use_bias=False,
                 name="stem_conv")(inputs)
    x = L.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    s0 = s1 = x
    c, reduction_prev = channels, False
    for i, kind in enumerate(kinds):
        reduction = kind == "reduce"
        c = c * 2 if reduction else c
        prefix = f"cell{i}"
        if reduction_prev:
            p0 = FactorizedReduce(c, name=f"{prefix}_pre0_fr")(s0)
        else:
            p0 = _relu_conv_bn(s0, c, f"{prefix}_pre0")
        p1 = _relu_conv_bn(s1, c, f"{prefix}_pre1")
        cell = EnTranCell(
            ops, steps=steps, multiplier=multiplier,
            role="engine" if i in engines else "transit", reduction=reduction, dst=dst,
            feature_sharing=feature_sharing, bottleneck=bottleneck,
            bottleneck_ratio=bottleneck_ratio, top_k=top_k, dst_lambda=dst_lambda,
            arch_key=kind, temperature=temperature, name=f"{prefix}_{kind}",
        )
        s0, s1, reduction_prev = s1, cell([p0, p1]), reduction
    x = L.GlobalAveragePooling2D(name="pool")(s1)
    outputs = L.Dense(num_classes, name="classifier")(x)
    model = keras.Model(inputs, outputs, name=name)
    tie_arch_variables(model)
    return model


def cells(model):
    """The ``EnTranCell`` layers of ``model``, in order.

    Example:
        >>> [c.name for c in cells(model)]  # doctest: +SKIP
        ['cell0_normal', 'cell1_reduce', 'cell2_normal']
    """
    return [layer for layer in search_layers(model) if isinstance(layer, EnTranCell)]


def genotype(model, strategy="argmax"):
    """``{kind: [[ [input, op], ... ] per node]}``: the derived cell of each kind.

    Input 0/1 are the cell inputs, ``m + 2`` is node ``m``. With ``dst=True``
    nodes have any number of inputs.

    Example:
        >>> genotype(model)["normal"][0]  # doctest: +SKIP
        [[0, 'sep_conv_3x3'], [1, 'skip_connect']]
    """
    arch = choose(model, strategy)
    out = {}
    for cell in cells(model):
        out.setdefault(cell.arch_key, arch.choices[cell.name])
    return out


def record_counts(record):
    """``(edges, ops)`` of one derived cell record ``[[ [input, op], ... ] per node]``.

    ``edges`` counts as the paper does (EnTranNAS Table 4, "edges"): the kept
    input edges, i.e. the distinct inputs of each node, summed over nodes;
    ``ops`` the kept ``(input, op)`` pairs (under DST an edge may keep several
    ops, so ``ops >= edges``).

    Example:
        >>> record_counts([[[0, "sep_conv_3x3"], [0, "skip_connect"], [1, "max_pool_3x3"]],
        ...                [[2, "dil_conv_3x3"]]])
        (3, 4)
    """
    edges = sum(len({int(i) for i, _ in node}) for node in record)
    return edges, sum(len(node) for node in record)


def edge_counts(model):
    """``{kind: kept input edges}`` of the derived cells, as the paper counts
    them (Table 4: a node's edge from an input is kept when any op on it is).

    Example:
        >>> edge_counts(model)  # doctest: +SKIP
        {'normal': 8, 'reduce': 8}
    """
    return {kind: record_counts(record)[0] for kind, record in genotype(model).items()}


def op_counts(model):
    """``{kind: kept (input, op) pairs}`` of the derived cells (``>= edge_counts``).

    Example:
        >>> op_counts(model)  # doctest: +SKIP
        {'normal': 9, 'reduce': 8}
    """
    return {kind: record_counts(record)[1] for kind, record in genotype(model).items()}


__all__ = ["ENTRANNAS_OPS", "cells", "edge_counts", "entrannas_supernet", "genotype",
           "op_counts", "record_counts"]
