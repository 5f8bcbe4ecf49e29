"""BNAS (Kim et al., 2020): the binary cell search space and its derivation.

Search space (Table 3, ``searchlayers.layers.BNAS_OPS``): zeroise,
max_pool_3x3, avg_pool_3x3, bin_dil_conv_3x3 / 5x5, bin_conv_3x3 / 5x5, every
binary op in BNAS' order ``BN(affine=False) -> sign -> conv -> ReLU``.

Cell template (BNAS sec. 4.2, "TB"): a DARTS cell (``models.darts.darts_cell``:
float ReLU-Conv1x1-BN preprocess, ``steps`` nodes of ``MixedOp(mode="softmax")``
edges, concat of the last ``multiplier`` nodes) plus an inter-cell skip:

* normal cell: ``output = concat(nodes) + previous cell output``;
* reduction cell: ``output = concat(nodes) + Conv(k=2, s=2)(BN(previous output))``
  (a float shortcut conv);
* cell 0 has no skip (the stem's channels differ).

Edges share their topology by cell type (``arch_key="normal_e{e}"`` /
``"reduce_e{e}"``), named ``cell{i}_{normal|reduce}_e{e}`` as in
``models.darts``, whose ``genotype`` / ``op_mix`` helpers read BNAS models too.

Derivation: one op per edge (BNAS keeps Zeroise in the final architecture),
chosen with the Zeroise transferability rule ``p* = max(p_zero / gamma,
p_op1, ..., p_opn)`` (eq. 5): ``searchlayers.choose(model, rule=
zeroise_gamma_rule(gamma))``; ``gamma = 1`` is the plain argmax. Zeroise edges
disappear from the derived model.

Example:
    >>> from models.bnas import bnas_supernet, derive_bnas
    >>> model = bnas_supernet((8, 8, 1), 10, channels=8, cells=3, steps=2, multiplier=2)
    >>> child = derive_bnas(model, gamma=2.0)  # doctest: +SKIP
"""

import numpy as np

from models.darts import darts_cell
from searchlayers._keras import keras
from searchlayers.derive import choose, derive
from searchlayers.layers import BNAS_OPS, MixedOp
from searchlayers.layers.base import search_layers
from searchlayers.layers.ops import BN_MOMENTUM
from searchlayers.search import tie_arch_variables

L = keras.layers
ZERO_NAMES = ("zeroise", "none")

SEARCH_CONFIG = dict(channels=16, cells=8, steps=4, multiplier=4, stem_multiplier=3)
"""BNAS search network (sec. 5: C = 16, 8 cells)."""

EVAL_CONFIG = dict(channels=36, cells=20, steps=4, multiplier=4, stem_multiplier=3)
"""A DARTS-sized evaluation network (BNAS-A-like on CIFAR-10); scale ``channels``
and ``cells`` for the larger BNAS variants."""


def inter_cell_skip(cell_out, prev, reduction, index):
    """Adds BNAS' inter-cell skip to a cell output; returns the new output.

    Example:
        >>> x = keras.Input((8, 8, 4)); y = keras.Input((4, 4, 8))
        >>> inter_cell_skip(y, x, reduction=True, index=1).shape
        TensorShape([None, 4, 4, 8])
    """
    channels = cell_out.shape[-1]
    if reduction:
        prev = L.BatchNormalization(momentum=BN_MOMENTUM,
                                    name=f"cell{index}_skip_bn")(prev)
        prev = L.Conv2D(channels, 2, 2, padding="same", use_bias=False,
                        name=f"cell{index}_skip_conv")(prev)
    elif prev.shape[-1] != channels:
        raise ValueError(
            f"bnas: cell {index} is a normal cell with {channels} output channels but the "
            f"previous cell gives {prev.shape[-1]}; the inter-cell skip needs them equal."
        )
    return L.Add(name=f"cell{index}_skip")([cell_out, prev])


def bnas_supernet(input_shape=(32, 32, 3), num_classes=10, channels=16, cells=8, steps=4,
                  multiplier=4, ops=BNAS_OPS, mode="softmax", temperature=1.0,
                  stem_multiplier=3, skip=True, name="bnas_supernet"):
    """The BNAS search network as a Functional Keras model (logits output).

    Reduction cells at ``cells // 3`` and ``2 * cells // 3`` double the
    channels, as in DARTS. The stem conv and the classifier stay float.

    Args:
        input_shape, num_classes: the data.
        channels, cells, steps, multiplier, stem_multiplier: the network size
            (``SEARCH_CONFIG`` / ``EVAL_CONFIG``).
        ops: candidate op names of every edge (default: Table 3).
        mode: ``MixedOp`` mode ("softmax" in BNAS).
        skip: add the inter-cell skips ("TB"; False gives the plain DARTS
            template, BNAS' "No Skip" ablation).

    Example:
        >>> m = bnas_supernet((8, 8, 1), 10, channels=8, cells=3, steps=2, multiplier=2)
        >>> len(search_layers(m))  # 3 cells x 5 edges
        15
    """
    if cells < 1 or steps < 1 or not 1 <= multiplier <= steps:
        raise ValueError(
            f"bnas_supernet: need cells >= 1, steps >= 1 and 1 <= multiplier <= steps; "
            f"got cells={cells}, steps={steps}, multiplier={multiplier}."
        )
    inputs = keras.Input(input_shape, name="image")
    x = L.Conv2D(stem_multiplier * channels, 3, padding="same", use_bias=False,
                 name="stem_conv")(inputs)
    x = L.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    s0 = s1 = x
    c, reduction_prev = channels, False
    for i in range(cells):
        reduction = i in (cells // 3, 2 * cells // 3)
        c = c * 2 if reduction else c
        out = darts_cell(s0, s1, c, i, reduction, reduction_prev, steps, multiplier,
                         ops, mode, temperature)
        if skip and i > 0:
            out = inter_cell_skip(out, s1, reduction, i)
        s0, s1, reduction_prev = s1, out, reduction
    x = L.GlobalAveragePooling2D(name="pool")(s1)
    outputs = L.Dense(num_classes, name="classifier")(x)
    model = keras.Model(inputs, outputs, name=name)
    tie_arch_variables(model)
    return model


# -- derivation --------------------------------------------------------------------------
def zeroise_gamma_choice(layer, gamma=1.0, zero_names=ZERO_NAMES):
    """BNAS eq. 5: ``argmax [p_zero / gamma, p_op1, ..., p_opn]`` for one layer.

    ``gamma > 1`` keeps Zeroise only where it is clearly the best (the
    transferability knob); ``gamma = 1`` is the argmax. Returns ``None`` for a
    layer without a Zeroise candidate or without probabilities (so
    ``choose`` falls back to its strategy).

    Example:
        >>> zeroise_gamma_choice(edge, gamma=2.0)  # doctest: +SKIP
        3
    """
    names = getattr(layer, "choice_names", None)
    if not names or not any(n in zero_names for n in names):
        return None
    probs = np.asarray(layer.probabilities(), dtype=np.float64).reshape(-1)
    return int(np.argmax(zeroise_gamma_scores(probs, names, gamma, zero_names)))


def zeroise_gamma_scores(probs, names, gamma=1.0, zero_names=ZERO_NAMES):
    """The scores of eq. 5: the Zeroise entries divided by ``gamma``.

    Example:
        >>> zeroise_gamma_scores([0.5, 0.3, 0.2], ["zeroise", "a", "b"], gamma=2.0).tolist()
        [0.25, 0.3, 0.2]
    """
    gamma = float(gamma)
    if not gamma > 0:
        raise ValueError(f"zeroise gamma must be > 0, got {gamma!r}.")
    scores = np.array(probs, dtype=np.float64)
    for i, name in enumerate(names):
        if name in zero_names:
            scores[i] /= gamma
    return scores


def zeroise_gamma_rule(gamma=1.0, zero_names=ZERO_NAMES):
    """A ``searchlayers.choose(..., rule=...)`` rule applying eq. 5 to every edge.

    Example:
        >>> arch = sl.choose(model, rule=zeroise_gamma_rule(2.0))  # doctest: +SKIP
    """

    def rule(layer):
        return zeroise_gamma_choice(layer, gamma, zero_names)

    rule.__name__ = f"zeroise_gamma({float(gamma):g})"
    return rule


def bnas_architecture(model, gamma=1.0):
    """The ``Architecture`` BNAS derives: one op per edge under eq. 5.

    Example:
        >>> bnas_architecture(model, gamma=2.0).meta["rule"]  # doctest: +SKIP
        'zeroise_gamma(2)'
    """
    return choose(model, "argmax", rule=zeroise_gamma_rule(gamma))


def derive_bnas(model, gamma=1.0):
    """The derived (plain Keras) BNAS network; Zeroise edges are dropped.

    Example:
        >>> child = derive_bnas(model, gamma=2.0)  # doctest: +SKIP
    """
    return derive(model, architecture=bnas_architecture(model, gamma))


def cell_choices(architecture):
    """``{arch_key: op name}`` of a BNAS / DARTS architecture (one per shared edge).

    Example:
        >>> cell_choices(arch)["normal_e0"]  # doctest: +SKIP
        'bin_conv_3x3'
    """
    result = {}
    for layer_name, op in architecture.names.items():
        parts = layer_name.split("_")
        if len(parts) == 3 and parts[0].startswith("cell"):
            result.setdefault(f"{parts[1]}_{parts[2]}", op)
    return result


def evaluation_network(choices, input_shape=(32, 32, 3), num_classes=10, **config):
    """The evaluation network of a searched cell: ``choices`` (``{arch_key: op
    name}``, e.g. ``cell_choices(arch)``) built at ``config`` (default
    ``EVAL_CONFIG``), with fresh weights.

    Example:
        >>> net = evaluation_network(cell_choices(arch), (8, 8, 1), 10, channels=8,
        ...                          cells=3, steps=2, multiplier=2)  # doctest: +SKIP
    """
    config = {**EVAL_CONFIG, **config}
    cells, steps = config["cells"], config["steps"]
    kinds = {"reduce" if i in (cells // 3, 2 * cells // 3) else "normal" for i in range(cells)}
    edges = steps * (steps + 3) // 2
    missing = sorted(f"{k}_e{e}" for k in kinds for e in range(edges)
                     if f"{k}_e{e}" not in choices)
    if missing:
        raise ValueError(
            f"evaluation_network: no op for edge(s) {missing}; got {sorted(choices)}. "
            f"Was the architecture searched with steps={steps}?"
        )
    ops = sorted(set(choices.values()), key=str)
    supernet = bnas_supernet(input_shape, num_classes, ops=ops, name="bnas_eval_supernet",
                             **config)
    chosen, names = {}, {}
    for layer in search_layers(supernet):
        if not isinstance(layer, MixedOp):
            continue
        key = layer.arch_key
        chosen[layer.name] = layer.choice_names.index(choices[key])
        names[layer.name] = choices[key]
    from searchlayers.derive import Architecture

    arch = Architecture(chosen, names, {"strategy": "bnas_eval"})
    net = derive(supernet, architecture=arch)
    return keras.Model(net.inputs, net.outputs, name="bnas_eval")


__all__ = [
    "EVAL_CONFIG",
    "SEARCH_CONFIG",
    "ZERO_NAMES",
    "bnas_architecture",
    "bnas_supernet",
    "cell_choices",
    "derive_bnas",
    "evaluation_network",
    "inter_cell_skip",
    "zeroise_gamma_choice",
    "zeroise_gamma_rule",
    "zeroise_gamma_scores",
]
