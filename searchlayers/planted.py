"""Planted-answer tasks: tiny synthetic searches whose right answer is known.

Each task comes with its data, a supernet, the planted (correct) choice, and
the chance that a uniformly random architecture of the same space recovers
it. A search mechanism that cannot beat that chance on these tasks cannot be
trusted on real data; one that recovers the answer in most seeds at least
moves its distributions the right way in a short run.

**Receptive field** (``receptive_field_*``; one ``MixedOp``). Images are
``8 x 8`` binary noise; the label is ``x[3, 2] XOR x[3, 2 + distance]``
(default ``distance = 3``). The supernet is a pointwise (1x1) stem, one
``MixedOp`` over ``RF_CANDIDATES``, a pointwise ReLU layer and a linear
(Flatten + Dense) head. Every layer but the searched edge sees one pixel per
output, so the network computes ``sum_p g_p(x restricted to RF(p))`` with
``RF(p)`` the candidate's receptive field at position ``p``. XOR of two bits
is not linearly separable: if no ``RF(p)`` holds both pixels, for any fixed
rest of the image ``f(a) + g(b)`` misclassifies one of the four ``(a, b)``
cases, so such a network is at most 75 % accurate; one whose receptive field
holds both reaches 100 %. Of the candidates ``skip_connect`` (1x1),
``max_pool_3x3``, ``avg_pool_3x3``, ``conv_3x3`` (offsets -1..1: pairs up to 2
apart) and ``dil_conv_3x3`` (offsets -2, 0, 2: pairs 2 or 4 apart) none holds
two pixels 3 apart; only ``conv_5x5`` (offsets -2..2) does. Planted answer:
``conv_5x5``; a uniformly random pick recovers it with probability 1/6.

**BN-NAS** (``search_bn_score``): the receptive-field task with a
single-path edge over MobileNetV2 blocks ``mb_k3_e3``, ``mb_k3_e6``,
``mb_k5_e3``; only the 5x5 one holds both pixels. Planted answer:
``mb_k5_e3`` by the BN score; chance 1/3.

**EnTranNAS** (``entrannas_*``): the receptive-field task with one Engine
cell of one node (``top_k=1``) over ``ENTRAN_CANDIDATES``: the derived cell
keeps one edge with its best non-``none`` op; planted answer ``conv_5x5``,
chance 1/5. (The Transit cell, which runs the derived sub-graph, is not
part of this task.)

**Depth** (``depth_*``; one ``GumbelDepthGate``). The same XOR with the
pixels 4 apart (columns 2 and 6); the stage is three ``conv_3x3`` cells
(receptive field 3, 5, 7 at depth 1, 2, 3; 1 at depth 0, the pointwise stem)
and the gate picks its output among the stem and the cells. Depth 0 and 1 cannot
hold both pixels (at most 75 %); depth 2 and 3 can, and an additive MACs
penalty makes depth 3 cost more. Planted answer: depth 2; chance 1/4.

**Width** (``width_*``; one ``WidthGate``). The channel data with ``k = 4``
signal features of 8; the gate keeps the first ``w * 8`` inputs, ``w`` in
0.25, 0.5, 0.75, 1. Width 0.25 loses half the signal, 0.75 and 1 add noise
features and parameters (additive penalty). Planted answer: 0.5; chance 1/4.

**Channels** (``channel_*``; one ``FiGSMask``). Inputs are ``n`` i.i.d.
standard normal features; the label is ``x_0 + ... + x_{k-1} > 0`` (default
``n = 8, k = 3``), so features ``k..n-1`` are pure noise and every signal
feature carries a third of the signal. The supernet is ``FiGSMask`` on the
input, ``Dense(16, relu)``, ``Dense(2)``, searched with an additive
parameter-count penalty (``FLOPsRegularizer(metric="params")``): a noise
channel only costs, a signal channel pays for itself. Planted answer: the
kept set is exactly ``{0, ..., k-1}``; a random subset recovers it with
probability ``1 / 2**n`` (each channel kept or not), or ``1 / C(n, k)`` even
when told the right count ``k``.

The mask temperature matters here: with FiGS' ``tau = 0.001`` the
Logistic-Sigmoid mask is a hard 0/1 sample whose gradient reaches the logits
only near 0, while the cost term's gradient is smooth and constant, so every
logit is pushed to about 0 and noise decides which survive
(``benchmarks/planted.py``: 1 of 5 seeds); at ``tau = 0.1`` the data gradient
reaches every channel and the search keeps exactly ``{0, 1, 2}`` (5 of 5).

Example:
    >>> x, y = receptive_field_data(256, seed=0)
    >>> x.shape, bool(np.all(y == (x[:, 3, 2, 0] != x[:, 3, 5, 0])))
    ((256, 8, 8, 1), True)
    >>> chance(receptive_field_supernet())
    0.16666666666666666
"""

import math
import time

import numpy as np
import tensorflow as tf

from searchlayers import callbacks as cb
from searchlayers import checks, decision, schedules
from searchlayers._keras import keras
from searchlayers.derive import choose
from searchlayers.layers import FiGSMask, MixedOp
from searchlayers.search import SearchModel

RF_CANDIDATES = ("skip_connect", "max_pool_3x3", "avg_pool_3x3", "conv_3x3", "dil_conv_3x3",
                 "conv_5x5")
RF_ANSWER = "conv_5x5"
RF_ROW, RF_COL = 3, 2
MODES = {"darts": "softmax", "snas": "gumbel", "gdas": "gumbel_hard"}


# -- receptive field ------------------------------------------------------------------
def receptive_field_data(n, seed=0, distance=3, size=8):
    """``(x, y)``: ``n`` binary ``size x size x 1`` images, ``y = x[3, 2] XOR x[3, 2 + distance]``.

    Example:
        >>> x, y = receptive_field_data(4, seed=1)
        >>> x.dtype, sorted(set(x.ravel().tolist())) == [0.0, 1.0], y.dtype
        (dtype('float32'), True, dtype('int32'))
    """
    where = "planted.receptive_field_data"
    n = checks.integer(where, "n", n, low=1)
    size = checks.integer(where, "size", size, low=4)
    distance = checks.integer(where, "distance", distance, low=1)
    if RF_COL + distance >= size:
        raise ValueError(f"{where}: distance must be at most {size - 1 - RF_COL} for size "
                         f"{size} (the second pixel is column {RF_COL} + distance), "
                         f"got {distance}.")
    rng = np.random.default_rng(checks.integer(where, "seed", seed))
    x = rng.integers(0, 2, (n, size, size, 1)).astype(np.float32)
    y = (x[:, RF_ROW, RF_COL, 0] != x[:, RF_ROW, RF_COL + distance, 0]).astype(np.int32)
    return x, y


def receptive_field_supernet(mode="softmax", channels=8, candidates=RF_CANDIDATES, seed=0,
                             size=8):
    """Pointwise stem -> ``MixedOp(candidates)`` (name ``"edge"``) -> pointwise ReLU -> linear head.

    Example:
        >>> receptive_field_supernet().get_layer("edge").candidate_specs[-1]
        'conv_5x5'
    """
    keras.utils.set_random_seed(seed)
    x = keras.Input((size, size, 1), name="image")
    h = keras.layers.Conv2D(channels, 1, name="stem")(x)
    h = MixedOp(list(candidates), mode=mode, seed=seed, name="edge")(h)
    h = keras.layers.Conv2D(2 * channels, 1, activation="relu", name="pointwise")(h)
    y = keras.layers.Dense(2, name="head")(keras.layers.Flatten()(h))
    return keras.Model(x, y, name=f"planted_rf_{mode}")


def receptive_field_choice(model):
    """The candidate name the derived (argmax) architecture keeps on ``"edge"``."""
    edge = model.get_layer("edge")
    return edge.choice_names[int(choose(model).choices["edge"])]


BN_CANDIDATES = ("mb_k3_e3", "mb_k3_e6", "mb_k5_e3")
BN_ANSWER = "mb_k5_e3"


def search_bn_score(seed=0, epochs=10, n=2048, batch=64, lr=0.01):
    """BN-NAS on the receptive-field task: a single-path (``mode="uniform"``)
    edge over ``BN_CANDIDATES`` (MobileNetV2 blocks; their ReLU6 after the
    depthwise kxk conv makes the cross term, so only ``mb_k5_e3`` holds both
    pixels 3 apart), trained with plain ``fit``; the choice is the candidate
    with the largest BN score (``searchlayers.bn_score``, paper eq. 3)."""
    from searchlayers import bn_score

    model = receptive_field_supernet("uniform", candidates=BN_CANDIDATES, seed=seed)
    x, y = receptive_field_data(n, seed=seed)
    model.compile(keras.optimizers.Adam(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    initial = BN_CANDIDATES[int(np.argmax(np.asarray(bn_score.score_table(model).values)[0]))]
    start = time.perf_counter()
    hist = model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    scores = np.asarray(bn_score.score_table(model).values)[0]
    got = BN_CANDIDATES[int(np.argmax(scores))]
    return dict(choice=got, recovered=got == BN_ANSWER, initial=initial,
                steps=epochs * -(-n // batch), seconds=round(seconds, 2),
                scores=[round(float(v), 4) for v in scores], max_prob=None, arch_lr=None,
                accuracy=round(float(hist.history["accuracy"][-1]), 4))


# conv_5x5 not last: with all logits equal the derivation's tie-break keeps the last op.
ENTRAN_CANDIDATES = ("none", "conv_5x5", "skip_connect", "max_pool_3x3", "conv_3x3",
                     "dil_conv_3x3")


def entrannas_supernet(channels=8, seed=0, size=8):
    """The receptive-field supernet with one EnTranNAS Engine cell (name
    ``"cell"``; one node, ``top_k=1``: the derived cell keeps one edge and its
    best non-``none`` op) in place of the edge."""
    from searchlayers.layers import EnTranCell

    keras.utils.set_random_seed(seed)
    x = keras.Input((size, size, 1), name="image")
    h = keras.layers.Conv2D(channels, 1, name="stem")(x)
    h = EnTranCell(list(ENTRAN_CANDIDATES), steps=1, multiplier=1, top_k=1, seed=seed,
                   name="cell")([h, h])
    h = keras.layers.Conv2D(2 * channels, 1, activation="relu", name="pointwise")(h)
    y = keras.layers.Dense(2, name="head")(keras.layers.Flatten()(h))
    return keras.Model(x, y, name="planted_entrannas")


def entrannas_choice(model):
    """The op of the one edge the derived cell keeps."""
    record = choose(model).choices["cell"]
    return record[0][0][1]


def search_entrannas(seed=0, epochs=10, n=2048, batch=64, lr=0.003):
    """EnTranNAS Engine search of the receptive-field task with
    ``SearchSchedule("entrannas", "auto")`` (temperature 5 -> 0.1 over the run)."""
    model = entrannas_supernet(seed=seed)
    x, y = receptive_field_data(n, seed=seed)
    xv, yv = receptive_field_data(n, seed=seed + 1000)
    return _run(model, _pairs(x, y, xv, yv, batch, seed), "entrannas", epochs, lr, [],
                entrannas_choice, RF_ANSWER)


# -- channels -------------------------------------------------------------------------
def channel_data(n, seed=0, features=8, k=3):
    """``(x, y)``: ``n`` rows of ``features`` standard normals, ``y = sum(x[:, :k]) > 0``.

    Example:
        >>> x, y = channel_data(5, seed=0)
        >>> x.shape, bool(np.all(y == (x[:, :3].sum(1) > 0)))
        ((5, 8), True)
    """
    where = "planted.channel_data"
    n = checks.integer(where, "n", n, low=1)
    features = checks.integer(where, "features", features, low=2)
    k = checks.integer(where, "k", k, low=1)
    if k >= features:
        raise ValueError(f"{where}: k must be below features ({features}) so that some "
                         f"channels are noise, got k={k}.")
    rng = np.random.default_rng(checks.integer(where, "seed", seed))
    x = rng.standard_normal((n, features)).astype(np.float32)
    return x, (x[:, :k].sum(1) > 0).astype(np.int32)


def channel_supernet(features=8, hidden=16, seed=0, temperature=0.001):
    """``FiGSMask`` (name ``"mask"``) on the input -> ``Dense(hidden, relu)`` -> ``Dense(2)``.

    Example:
        >>> channel_supernet().get_layer("mask").channels
        8
    """
    keras.utils.set_random_seed(seed)
    x = keras.Input((features,), name="features")
    h = FiGSMask(temperature=temperature, seed=seed, name="mask")(x)
    h = keras.layers.Dense(hidden, activation="relu", name="hidden")(h)
    return keras.Model(x, keras.layers.Dense(2, name="head")(h), name="planted_channels")


def channel_choice(model):
    """The sorted tuple of input channels the derived mask keeps (logit > 0)."""
    return tuple(int(i) for i in choose(model).choices["mask"])


# -- depth ----------------------------------------------------------------------------
DEPTH_DISTANCE, DEPTH_ANSWER, DEPTH_CELLS = 4, 2, 3


def depth_supernet(cells=DEPTH_CELLS, channels=8, mode="gumbel", seed=0, size=8):
    """Pointwise stem -> ``cells`` cells ``conv_3x3`` (ReLU-Conv-BN, receptive
    field +2 each) -> ``GumbelDepthGate`` (name ``"gate"``) over the stem and
    the cells' outputs -> pointwise ReLU -> linear head.

    Example:
        >>> depth_supernet().get_layer("gate").depths
        4
    """
    from searchlayers.layers import GumbelDepthGate
    from searchlayers.layers.ops import get_op

    keras.utils.set_random_seed(seed)
    x = keras.Input((size, size, 1), name="image")
    ys = [keras.layers.Conv2D(channels, 1, name="stem")(x)]
    for i in range(cells):
        ys.append(get_op("conv_3x3", channels)(ys[-1]))
    h = GumbelDepthGate(mode=mode, seed=seed, name="gate")(ys)
    h = keras.layers.Conv2D(2 * channels, 1, activation="relu", name="pointwise")(h)
    y = keras.layers.Dense(2, name="head")(keras.layers.Flatten()(h))
    return keras.Model(x, y, name=f"planted_depth_{mode}")


def depth_choice(model):
    """The depth the derived (argmax) gate keeps."""
    return int(choose(model).choices["gate"])


def search_depth(seed=0, epochs=20, n=2048, batch=64, lr=0.01, strength=0.03, warmup=4,
                 method="bars"):
    """Bi-level search of the depth gate on ``receptive_field_data(distance=4)``
    with ``SearchSchedule(method, "auto")`` and an additive MACs penalty
    ``strength * macs / macs(supernet)``: depth 2 is the shallowest stage whose
    receptive field (5) holds both pixels; deeper stages cost more."""
    data = [receptive_field_data(n, seed=s, distance=DEPTH_DISTANCE) for s in (seed, seed + 1000)]
    return _search_penalized(depth_supernet(seed=seed), data, "macs", strength, batch, seed,
                             method, epochs, lr, depth_choice, DEPTH_ANSWER, warmup)


def _search_penalized(model, data, metric, strength, batch, seed, method, epochs, lr, read,
                      answer, warmup):
    """``_run`` on ``data`` (train and validation ``(x, y)``) with an additive
    ``strength * cost / cost(supernet)`` penalty in ``metric``."""
    from searchlayers import cost

    full = float(cost.profile(model).total.metric(metric))
    reg = cb.FLOPsRegularizer(budget=full, metric=metric, strength=strength)
    (x, y), (xv, yv) = data
    return _run(model, _pairs(x, y, xv, yv, batch, seed), method, epochs, lr, [reg], read,
                answer, warmup)


# -- width ----------------------------------------------------------------------------
WIDTH_K, WIDTH_ANSWER = 4, "0.5"


def width_supernet(features=8, hidden=16, mode="gumbel", seed=0):
    """``WidthGate`` (name ``"width"``, widths 0.25 .. 1.0) on the input ->
    ``Dense(hidden, relu)`` -> ``Dense(2)``.

    Example:
        >>> width_supernet().get_layer("width").choice_names
        ['0.25', '0.5', '0.75', '1']
    """
    from searchlayers.layers import WidthGate

    keras.utils.set_random_seed(seed)
    x = keras.Input((features,), name="features")
    h = WidthGate(mode=mode, seed=seed, name="width")(x)
    h = keras.layers.Dense(hidden, activation="relu", name="hidden")(h)
    return keras.Model(x, keras.layers.Dense(2, name="head")(h), name="planted_width")


def width_choice(model):
    """The width (a name such as ``"0.5"``) the derived (argmax) gate keeps."""
    gate = model.get_layer("width")
    return gate.choice_names[int(choose(model).choices["width"])]


def search_width(seed=0, epochs=20, n=2048, batch=64, lr=0.01, strength=0.03, warmup=4,
                 method="bars"):
    """Bi-level search of the width gate on ``channel_data(k=4)`` with
    ``SearchSchedule(method, "auto")`` and an additive parameter penalty: the
    gate keeps the first ``w * 8`` features, the label needs the first 4, so
    0.25 loses half the signal and 0.75 / 1.0 add only noise and cost.
    Planted answer: ``"0.5"``; chance 1/4."""
    data = [channel_data(n, seed=s, k=WIDTH_K) for s in (seed, seed + 1000)]
    return _search_penalized(width_supernet(seed=seed), data, "params", strength, batch, seed,
                             method, epochs, lr, width_choice, WIDTH_ANSWER, warmup)


# -- chance ---------------------------------------------------------------------------
def chance(model, k=None):
    """The probability that a uniformly random architecture of ``model``'s space
    is the planted one: ``1 / candidates`` for the receptive-field edge,
    ``1 / 2**n`` for an ``n``-channel mask (``1 / C(n, k)`` given the count ``k``).

    Example:
        >>> chance(channel_supernet()), chance(channel_supernet(), k=3)
        (0.00390625, 0.017857142857142856)
    """
    layer = _searched(model)
    if isinstance(layer, FiGSMask):
        n = layer.channels
        return 1.0 / (math.comb(n, k) if k is not None else 2 ** n)
    if layer.name == "cell":  # one kept edge; its op is one of the non-none candidates
        return 1.0 / sum(c != "none" for c in layer.candidates)
    return 1.0 / len(layer.choice_names)


def _searched(model):
    for name in ("edge", "mask", "gate", "width", "cell"):
        try:
            return model.get_layer(name)
        except ValueError:
            continue
    raise ValueError(f"planted: model '{model.name}' is not a planted-task supernet "
                     "(no layer named 'edge', 'mask', 'gate', 'width' or 'cell').")


def random_recovery(model, answer, draws=600, seed=0):
    """Fraction of ``draws`` random architectures (``choose(model, "sample")``
    on the untrained supernet) equal to ``answer`` (a candidate name or a
    channel tuple): random sampling's recovery rate, estimated.

    For the mask, ``"sample"`` draws a Logistic-Sigmoid mask at the initial
    logits; :func:`chance` gives the uniform rate.
    """
    layer = _searched(model)
    hits = 0
    for i in range(draws):
        arch = choose(model, "sample", seed=seed * 100003 + i)
        c = arch.choices[layer.name]
        if isinstance(layer, FiGSMask):
            got = tuple(int(j) for j in c)
        elif layer.name == "cell":  # EnTranNAS: the op of the kept edge
            got = c[0][0][1]
        elif isinstance(layer, MixedOp) or layer.name == "width":
            got = layer.choice_names[int(c)]
        else:  # the depth gate
            got = int(c)
        hits += got == answer
    return hits / draws


# -- search ---------------------------------------------------------------------------
def _pairs(x, y, xv, yv, batch, seed):
    w = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed).batch(
        batch, drop_remainder=True)
    a = tf.data.Dataset.from_tensor_slices((xv, yv)).shuffle(len(xv), seed=seed + 1).batch(
        batch, drop_remainder=True)
    return tf.data.Dataset.zip((w, a))


def search_receptive_field(method="darts", seed=0, epochs=10, n=2048, batch=64, lr=0.003,
                           preset="auto"):
    """Bi-level search of the receptive-field edge with ``SearchSchedule(method, "auto")``.

    ``method``: "darts" (softmax), "snas" (Gumbel-softmax) or "gdas" (hard
    Gumbel). ``preset="paper"``: the papers' settings instead (e.g. DARTS'
    architecture learning rate 3e-4). Returns ``dict(choice, recovered, steps,
    seconds, max_prob, arch_lr, accuracy)``.
    """
    if method not in MODES:
        raise ValueError(f"planted.search_receptive_field: unknown method {method!r}; "
                         f"allowed: {', '.join(map(repr, MODES))}.")
    model = receptive_field_supernet(MODES[method], seed=seed)
    x, y = receptive_field_data(n, seed=seed)
    xv, yv = receptive_field_data(n, seed=seed + 1000)
    return _run(model, _pairs(x, y, xv, yv, batch, seed), method, epochs, lr, [],
                receptive_field_choice, RF_ANSWER, preset=preset)


def search_channels(seed=0, epochs=10, n=2048, batch=64, lr=0.003, strength=0.1, k=3,
                    features=8, warmup=2, temperature=0.001, arch_lr=None):
    """Bi-level FiGS search of the channel mask (``SearchSchedule("figs", "auto")``)
    with an additive parameter penalty ``strength * params / params(supernet)``,
    after ``warmup`` epochs of weights only (``ArchWarmup``: the cost term
    would otherwise close every channel before the weights use any)."""
    model = channel_supernet(features=features, seed=seed, temperature=temperature)
    x, y = channel_data(n, seed=seed, features=features, k=k)
    xv, yv = channel_data(n, seed=seed + 1000, features=features, k=k)
    full = sum(int(np.prod(w.shape)) for w in model.trainable_weights
               if "arch" not in w.name)
    reg = cb.FLOPsRegularizer(budget=full, metric="params", strength=strength)
    return _run(model, _pairs(x, y, xv, yv, batch, seed), "figs", epochs, lr, [reg],
                channel_choice, tuple(range(k)), warmup, arch_lr)


def _run(model, pairs, method, epochs, lr, extra, pick, answer, warmup=0, arch_lr=None,
         preset="auto"):
    search = SearchModel(model, bilevel=True, arch_optimizer=None if arch_lr is None else
                         keras.optimizers.Adam(arch_lr, beta_1=0.5, beta_2=0.999))
    search.compile(keras.optimizers.Adam(lr),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                   metrics=["accuracy"])
    sched = schedules.SearchSchedule(method, preset, warmup=warmup, lr=arch_lr is None)
    if warmup:
        extra = [cb.ArchWarmup(warmup), *extra]
    tracker = decision.DecisionTracker(verbose=0, warn=False)
    initial = pick(model)  # the derived pick at the initial logits (1e-3 randn: any)
    start = time.perf_counter()
    hist = search.fit(pairs, epochs=epochs, verbose=0, callbacks=[sched, tracker, *extra])
    seconds = time.perf_counter() - start
    got = pick(model)
    d = decision.layer_decision(_searched(model))
    listed = (lambda c: list(c) if isinstance(c, tuple) else c)
    return dict(choice=listed(got), recovered=got == answer, initial=listed(initial),
                steps=sched.arch_steps, seconds=round(seconds, 2),
                max_prob=round(d["max_prob"], 4), decided_share=d["decided_share"],
                arch_lr=sched.arch_lr or arch_lr,
                accuracy=round(float(hist.history["accuracy"][-1]), 4))


__all__ = [
    "BN_ANSWER",
    "BN_CANDIDATES",
    "DEPTH_ANSWER",
    "RF_ANSWER",
    "RF_CANDIDATES",
    "chance",
    "depth_choice",
    "depth_supernet",
    "channel_choice",
    "channel_data",
    "channel_supernet",
    "random_recovery",
    "receptive_field_choice",
    "receptive_field_data",
    "receptive_field_supernet",
    "search_channels",
    "search_bn_score",
    "search_depth",
    "search_entrannas",
    "entrannas_choice",
    "entrannas_supernet",
    "ENTRAN_CANDIDATES",
    "search_width",
    "width_choice",
    "width_supernet",
    "WIDTH_ANSWER",
    "search_receptive_field",
]
