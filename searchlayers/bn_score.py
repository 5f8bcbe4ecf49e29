"""BN-NAS' BatchNorm indicator: score candidate ops and subnets without data.

The score of candidate ``n`` of search layer ``l`` is ``mean_c |gamma_c|`` of
that candidate's *last* BatchNormalization (paper eq. 3; beta is unused); the
score of a subnet is the sum over its layers (eq. 4). ``score_table(model)``
puts the op scores in a ``[layers, choices]`` table (a
``searchlayers.evolution.ChoiceTable``) so that many architectures are scored
at once by one numpy gather: ``table.total(choices)`` for a ``[N, layers]``
array of choice indices.

Layers sharing an ``arch_key`` take one choice together (as in
``searchlayers.derive.choose``): they make one row, the sum of their scores.

A candidate without an affine BatchNormalization (an identity or zero op, a
DARTS op with ``scale=False``) has no score: ``score_table`` raises unless
``missing=`` gives it one (e.g. ``0.0``).

Example:
    >>> from searchlayers import bn_score
    >>> from models.spos import spos_supernet
    >>> model = spos_supernet(stages=((8, 2, 1),))
    >>> table = bn_score.score_table(model)
    >>> table.values.shape, float(table.values[0, 0])   # gamma starts at 1
    ((2, 6), 1.0)
    >>> table.total([[0, 5], [1, 1]]).tolist()
    [2.0, 2.0]
"""

import numpy as np

from searchlayers import checks
from searchlayers._keras import keras
from searchlayers.layers.base import search_layers

BN = keras.layers.BatchNormalization


def last_batchnorm(op):
    """The last BatchNormalization of a candidate op, or None.

    ``op.last_bn`` when the op defines it, else the last BatchNormalization among
    the op's layers in order (nested layers included; for a Sequential, the order
    of its layers).

    Example:
        >>> from searchlayers.layers import get_op
        >>> last_batchnorm(get_op("mb_k3_e3", 4, 1)).name.startswith("batch_normalization")
        True
        >>> last_batchnorm(keras.layers.Activation("linear")) is None
        True
    """
    explicit = getattr(op, "last_bn", None)
    if explicit is not None:
        return explicit
    found = None
    for layer in op._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, BN):
            found = layer
    return found


def op_score(op):
    """``mean(|gamma|)`` of ``op``'s last BN; NaN when it has none (or no gamma).

    Example:
        >>> from searchlayers.layers import get_op
        >>> op = get_op("mb_k3_e6", 4, 1); _ = op(tf.zeros([1, 4, 4, 4]))
        >>> op_score(op)
        1.0
    """
    bn = last_batchnorm(op)
    if bn is None or getattr(bn, "gamma", None) is None:
        return float("nan")
    gamma = bn.gamma.numpy()
    bad = int(gamma.size - np.isfinite(gamma).sum())
    if bad:  # NaN must keep meaning "no BN": a diverged gamma is an error, not "no score"
        raise FloatingPointError(
            f"bn_score.op_score: gamma of BatchNormalization '{bn.name}' (the last of op "
            f"'{op.name}') has {bad} NaN or inf of its {gamma.size} entries; a BN score needs "
            "finite gammas (did the supernet's training diverge?)."
        )
    return float(np.mean(np.abs(gamma)))


def _scored_layers(model):
    layers = search_layers(model)
    if not layers:
        raise ValueError(f"bn_score: model '{model.name}' has no search layers.")
    for layer in layers:
        if not hasattr(layer, "ops") or not layer.built:
            raise ValueError(
                f"bn_score: search layer '{layer.name}' ({type(layer).__name__}) is not a "
                "built choice among candidate ops (MixedOp); the BN indicator scores ops."
            )
    return layers


def bn_scores(model):
    """``{layer name: np.ndarray of op scores, one per candidate}`` (NaN: no BN).

    Example:
        >>> from models.spos import spos_supernet
        >>> scores = bn_scores(spos_supernet(stages=((8, 1, 1),)))
        >>> list(scores), scores["layer0"].shape
        (['layer0'], (6,))
    """
    return {
        layer.name: np.array([op_score(op) for op in layer.ops], dtype=np.float64)
        for layer in _scored_layers(model)
    }


def score_table(model, missing=None):
    """The ``ChoiceTable`` of op scores (rows: search layers or shared keys).

    Args:
        missing: score of candidates without a BN (identity, zero); None raises
            a ValueError naming them.

    Example:
        >>> from models.spos import spos_supernet
        >>> t = score_table(spos_supernet(stages=((8, 2, 1),), skip=True), missing=0.0)
        >>> t.choice_names[1][-1], float(t.values[1, -1])
        ('zeroise', 0.0)
    """
    from searchlayers.evolution import ChoiceTable

    layers = _scored_layers(model)
    scores = {layer.name: np.array([op_score(op) for op in layer.ops]) for layer in layers}
    bad = [
        f"{layer.name}:{name}"
        for layer in layers
        for name, s in zip(layer.choice_names, scores[layer.name])
        if np.isnan(s)
    ]
    if bad and missing is None:
        raise ValueError(
            f"bn_score: candidates without an affine BatchNormalization have no BN score: "
            f"{', '.join(bad)}. Give them one with missing=<score> (e.g. 0.0), or leave "
            "such ops out of the search space (BN-NAS does)."
        )
    if bad:
        missing = checks.number("bn_score.score_table", "missing", missing)
        scores = {k: np.where(np.isnan(v), missing, v) for k, v in scores.items()}
    return ChoiceTable.from_layers(model, lambda layer: scores[layer.name], "bn_score")


def _score_rows(where, scores, missing):
    """``{layer: float array}`` of ``scores``; NaN becomes ``missing`` (if given); any
    other NaN or inf score is an error naming the layer and the candidates."""
    if not isinstance(scores, dict):
        raise checks.ArgumentTypeError(
            f"{where}: scores must be a dict of layer name -> scores, got "
            f"{checks.show(scores)} ({type(scores).__name__}).")
    if missing is not None:
        missing = checks.number(where, "missing", missing, finite=False,
                                allowed="a number (+-inf allowed) or None")
    rows = {}
    for name, s in scores.items():
        s = np.asarray(s, dtype=np.float64)
        if s.ndim != 1:
            checks.fail(where, f"scores[{name!r}]", s, "a list of scores, one per candidate")
        nan = np.isnan(s) if missing is not None else np.zeros(s.shape, bool)
        bad = np.flatnonzero(~np.isfinite(s) & ~nan)
        if bad.size:
            raise ValueError(
                f"{where}: scores[{name!r}] must be finite, but candidates {bad.tolist()} "
                f"score {s[bad].tolist()} (NaN: a candidate without BN; give missing=, e.g. "
                "-inf to rank it last)."
            )
        rows[name] = np.where(nan, missing, s)
    return rows


def ranks(scores, missing=None):
    """Rank of each candidate (0 = highest score) per layer, ties by index.

    Args:
        scores: ``{layer: scores}``, e.g. ``bn_scores(model)``.
        missing: the score of a NaN entry (a candidate without BN; ``-inf`` ranks it
            last); None: a NaN or inf score is a ``ValueError``, never a silent rank.

    Example:
        >>> ranks({"a": np.array([0.2, 0.9, 0.5])})["a"].tolist()
        [2, 0, 1]
        >>> ranks({"a": [0.2, float("nan"), 0.5]}, missing=-np.inf)["a"].tolist()
        [1, 2, 0]
    """
    out = {}
    for name, s in _score_rows("bn_score.ranks", scores, missing).items():
        order = np.argsort(-s, kind="stable")
        r = np.empty(len(order), dtype=np.int64)
        r[order] = np.arange(len(order))
        out[name] = r
    return out


def rank_vector(scores, missing=None):
    """All layers' ranks concatenated (the paper's "rank vector", Fig. 4);
    ``missing`` as in ``ranks``.

    Example:
        >>> rank_vector({"a": [0.1, 0.3], "b": [0.5, 0.2]}).tolist()
        [1, 0, 0, 1]
    """
    if not scores:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(list(ranks(scores, missing).values()))


def rank_distance(a, b):
    """Normalized L2 distance of two rankings ``{layer: ranks}``, in [0, 1].

    0: the same ranking in every layer; 1: every layer's ranking reversed (the
    largest L2 distance between permutations).

    Example:
        >>> rank_distance({"a": [0, 1, 2]}, {"a": [2, 1, 0]})
        1.0
        >>> rank_distance({"a": [0, 1], "b": [0, 1]}, {"a": [0, 1], "b": [1, 0]})
        0.7071067811865476
    """
    if sorted(a) != sorted(b):
        raise ValueError(f"rank_distance: the rankings cover different layers: {sorted(a)} vs {sorted(b)}.")
    sq, worst = 0.0, 0.0
    for name in a:
        ra, rb = np.asarray(a[name], np.float64), np.asarray(b[name], np.float64)
        if ra.shape != rb.shape or ra.ndim != 1:  # else numpy broadcasts one over the other
            raise ValueError(f"rank_distance: layer {name!r} has rankings of different "
                             f"lengths: {ra.tolist()} vs {rb.tolist()}.")
        n = len(ra)
        sq += float(np.sum((ra - rb) ** 2))
        worst += float(np.sum((2 * np.arange(n) - (n - 1)) ** 2))
    return float(np.sqrt(sq / worst)) if worst > 0 else 0.0


__all__ = [
    "bn_scores",
    "last_batchnorm",
    "op_score",
    "rank_distance",
    "rank_vector",
    "ranks",
    "score_table",
]
