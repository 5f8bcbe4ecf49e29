"""Architecture regularizers as differentiable tensor functions.

- ``entropy(model)``: entropy of the architecture distributions (BARS eq. 6,
  BNAS' diversity term), one value per group of layers sharing an ``arch_key``.
- ``expected_cost(model, metric)``: the supernet's expected MACs / params /
  binary ops / equivalent ops, from ``searchlayers.cost.profile`` (no second
  cost counter), differentiable in the architecture logits.
- ``figs_expected_cost(model, metric)``: FiGS eq. 6 for networks with
  ``FiGSMask`` layers (used by ``expected_cost`` when the model has masks).
- ``budget_multiplier(cost, budget)``: BARS eq. 7, ``(cost/budget)^theta``.
- ``threshold_penalty(betas)``: EnTranNAS-DST ``mean_j(-log sigmoid(beta_j))``.
- ``attach_loss`` / ``attach_loss_multiplier``: add a term to a model's loss
  once per key (re-fitting does not stack copies). The callbacks in
  ``searchlayers.callbacks`` drive these with scheduled coefficients.

Example:
    >>> import searchlayers as sl
    >>> op = sl.MixedOp(["skip_connect", "none"])
    >>> m = sl.keras.Sequential([sl.keras.Input((4, 4, 2)), op])
    >>> round(float(entropy(m)), 3)   # two near-equal choices: log 2
    0.693
"""

import warnings
import weakref

import tensorflow as tf
from tensorflow.python.saved_model import save_context  # pylint: disable=E0611

from searchlayers import checks
from searchlayers import cost as cost_lib
from searchlayers._keras import keras
from searchlayers.layers.base import SearchLayer, search_layers
from searchlayers.layers.base import threshold_penalty  # noqa: F401 (EnTranNAS-DST; lives with the layers)
from searchlayers.layers.figs import figs_masks
from searchlayers.search import SearchModel, tie_arch_variables

# Names accepted on top of ``searchlayers.cost.Cost.metric``'s.
METRIC_ALIASES = {"flops": "macs", "binary_ops": "binary_macs", "bops": "binary_macs"}
METRICS = tuple(sorted(set(cost_lib._METRICS) | set(METRIC_ALIASES)))
REDUCTIONS = ("mean", "sum")
# FiGS cost forms: the paper's expected cost (eq. 6) or MorphNet's linearised one.
FIGS_FORMS = ("expected", "morphnet")
MORPHNET_ALIVE = 0.1  # MorphNet's alive_threshold: a channel with p >= 0.1 counts alive

_EPS = 1e-12


def check_metric(metric, where="expected_cost"):
    """The ``Cost.metric`` name for ``metric`` (aliases resolved), or ValueError.

    Example:
        >>> check_metric("flops")
        'macs'
    """
    name = METRIC_ALIASES.get(metric, metric)
    if name not in cost_lib._METRICS:
        raise ValueError(
            f"{where}: unknown cost metric {metric!r}; allowed: {', '.join(METRICS)}."
        )
    return name


def unwrap(model):
    """The supernet inside a ``SearchModel``, or ``model`` itself.

    Example:
        >>> import searchlayers as sl
        >>> m = sl.keras.Sequential([sl.keras.Input((2,)), sl.keras.layers.Dense(1)])
        >>> unwrap(m) is m
        True
    """
    return model.model if isinstance(model, SearchModel) else model


def arch_groups(model):
    """``{arch_key or name: layer}``: one search layer per group that has logits.

    Layers sharing an ``arch_key`` share their distribution, so each group
    appears once. Single-path layers (no architecture variables) are left out.

    Example:
        >>> import searchlayers as sl
        >>> op = sl.MixedOp(["skip_connect", "none"], name="e")
        >>> m = sl.keras.Sequential([sl.keras.Input((4, 4, 2)), op])
        >>> list(arch_groups(m))
        ['e']
    """
    tie_arch_variables(model)
    groups = {}
    for layer in search_layers(model):
        if layer.built and layer.arch_weights:
            groups.setdefault(layer.arch_key or layer.name, layer)
    return groups


def categorical_entropy(probs):
    """``-sum p log p`` over the last axis (0 log 0 = 0, finite gradients).

    Example:
        >>> float(categorical_entropy([0.5, 0.5]))  # doctest: +ELLIPSIS
        0.693...
    """
    p = tf.convert_to_tensor(probs, tf.float32)
    return -tf.reduce_sum(p * tf.math.log(tf.maximum(p, _EPS)), axis=-1)


def layer_entropy(layer):
    """Entropy of each distribution of ``layer``, as a vector.

    A layer whose ``probabilities()`` are not categorical over the last axis
    (e.g. independent gates) provides its own ``entropy()`` method.

    Example:
        >>> import searchlayers as sl
        >>> op = sl.MixedOp(["skip_connect", "none"]); _ = op(tf.ones([1, 2, 2, 1]))
        >>> layer_entropy(op).shape
        TensorShape([1])
    """
    own = getattr(layer, "entropy", None)
    h = own() if callable(own) else categorical_entropy(layer.probabilities())
    return tf.reshape(h, [-1])


def entropy(model, reduction="mean"):
    """Entropy of the architecture distributions of ``model`` (differentiable).

    ``reduction="mean"`` averages over every distribution (BNAS' mean edge
    entropy); ``"sum"`` adds them (BARS eq. 6). Groups sharing an
    ``arch_key`` count once.

    Example:
        >>> import searchlayers as sl
        >>> op = sl.MixedOp(["skip_connect", "none"])
        >>> m = sl.keras.Sequential([sl.keras.Input((4, 4, 2)), op])
        >>> round(float(entropy(m, "sum")), 3)
        0.693
    """
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"entropy: unknown reduction {reduction!r}; "
            f"allowed: {', '.join(map(repr, REDUCTIONS))}."
        )
    groups = arch_groups(unwrap(model))
    if not groups:
        raise ValueError(
            f"entropy: model '{model.name}' has no built search layer with architecture "
            "logits (single-path layers have none)."
        )
    h = tf.concat([layer_entropy(layer) for layer in groups.values()], axis=0)
    return tf.reduce_mean(h) if reduction == "mean" else tf.reduce_sum(h)


def _as_float(value):
    if tf.is_tensor(value):
        return tf.cast(value, tf.float32)
    return tf.constant(float(value), tf.float32)  # Python ints may exceed int32


def expected_cost(model, metric="macs", search_only=False, form="expected"):
    """Expected cost of ``model`` under its architecture distributions.

    A float32 scalar, differentiable in the logits. ``metric``: any name of
    ``Cost.metric`` ("macs", "float_macs", "binary_macs", "params",
    "equivalent_ops", "memory_bytes", ...) or an alias ("flops" = "macs",
    "binary_ops" = "binary_macs"). ``search_only`` counts the search layers
    only (BARS leaves out the stem and the classifier). A model with
    ``FiGSMask`` layers is counted by ``figs_expected_cost`` (FiGS eq. 6, or
    MorphNet's linearised ``form="morphnet"``), so ``FLOPsRegularizer`` drives a
    FiGS search unchanged. A model with BARS' ``WidthGate`` / ``GumbelDepthGate``
    is counted by the same graph walk, at the expected widths and weighted by
    the probability that each cell is kept (``searchlayers.layers.gates``).

    Gaps (``searchlayers.cost``: a layer with weights whose cost is unknown): one
    inside a search layer's candidates, or whose width or depth is searched, is a
    ValueError naming it, since the search would see it as free; one elsewhere
    is a constant, counted as its parameters and 0 MACs, with a ``CostGapWarning``.

    Example:
        >>> import searchlayers as sl
        >>> m = sl.keras.Sequential([sl.keras.Input((3,)), sl.keras.layers.Dense(2)])
        >>> float(expected_cost(m, "flops"))
        6.0
    """
    if not isinstance(model, keras.Model):
        raise checks.ArgumentTypeError(
            f"expected_cost: model must be a keras.Model, got {checks.show(model)} "
            f"({type(model).__name__}).")
    name = check_metric(metric)
    _check_form(form, "expected_cost")
    net = unwrap(model)
    tie_arch_variables(net)
    if not figs_masks(net) and _gated(net):
        if form != "expected":
            raise ValueError(
                f"expected_cost: form={form!r} is a FiGS cost form, but model '{net.name}' "
                "has width / depth gates and no FiGSMask; use form='expected'."
            )
        with cost_lib.collect_gaps() as found:
            result = _figs_cost(net, form, search_only)
        _warn_gaps(net, found)
        return _as_float(result.metric(name))
    if figs_masks(net):
        if search_only:
            raise ValueError(
                f"expected_cost: search_only=True is not defined for model '{net.name}' "
                "with FiGS masks; FiGS counts the whole network (eq. 6)."
            )
        return figs_expected_cost(net, metric, form)
    if form != "expected":
        raise ValueError(
            f"expected_cost: form={form!r} is a FiGS cost form, but model '{net.name}' "
            "has no FiGSMask layers; use form='expected'."
        )
    profile = cost_lib.profile(net, warn=False)
    names = {layer.name for layer in search_layers(net)}
    _check_searched_gaps(profile, names, "expected_cost")
    rows = profile.rows
    if search_only:
        rows = [row for row in rows if _is_row_of(row[0], names)]
    elif not profile.complete:  # outside the searched layers: a constant, but say so
        warnings.warn(profile.gap_summary(), cost_lib.CostGapWarning, stacklevel=2)
    total = sum((c for _, _, c in rows), cost_lib.Cost.zero())
    return _as_float(total.metric(name))


def _is_row_of(row, names):
    """Whether a profile row (``outer/inner`` for nested models) is a layer of ``names``."""
    return row in names or row.split("/")[-1] in names


def _check_searched_gaps(profile, searched, where):
    """ValueError when a search layer's expected cost met a layer of unknown cost:
    it would be counted as free, biasing the search toward it."""
    gaps = {row: found for row, found in profile.gaps.items()
            if _is_row_of(row, searched)}
    if gaps:
        summary = cost_lib.Profile(profile.name, [], gaps=gaps).gap_summary()
        raise ValueError(
            f"{where}: the expected cost of the search layers is incomplete, so the "
            f"search would see these layers as free; {summary}."
        )


def _gated(net):
    from searchlayers.layers.gates import gate_layers

    return bool(gate_layers(net))


def _check_form(form, where):
    checks.choice(where, "form", form, FIGS_FORMS)


def figs_expected_cost(model, metric="params", form="expected"):
    """FiGS eq. 6: the expected cost of a network with ``FiGSMask`` layers.

    Walks the layer graph (``searchlayers.slicing.expected_channels``): each
    Conv / Dense / SeparableConv is counted by ``searchlayers.cost.layer_cost``
    with fractional channels ``cin = sum(p_in)`` (the mask upstream of its input,
    through BatchNorm, activations, pooling and residual adds) and ``cout =
    sum(p_out)`` (the mask its output feeds, through the same layers): so each
    channel ``i`` costs ``pi_i * (sum pi_in + sum pi_out)`` times the layer's
    per-connection cost. Depthwise convolutions and BatchNorm count ``sum(p)``
    channels. Unmasked layers count their full cost; a layer called twice
    counts its parameters once; a nested Functional / Sequential model is
    counted the same way inside (its inputs and outputs unmasked). A float32
    scalar, differentiable in the logits.

    ``form="morphnet"``: MorphNet's linearised regularizer instead. A Conv /
    Dense layer costs ``f(N_in, r_out) + f(r_in, N_out) - f(N_in, N_out)``,
    where ``f(cin, cout)`` is the same ``layer_cost``, ``r = sum(p)`` and ``N``
    the (constant) number of alive channels, ``p >= MORPHNET_ALIVE``: the
    first-order expansion of the cost around the alive network. Its gradient
    is MorphNet's ``coeff * (N_alive_in * sum r_out + N_alive_out * sum r_in)``
    and its value the cost of the alive network; channel-wise layers (BN,
    depthwise) are linear in ``r`` and count as in eq. 6.

    Strength: ``lambda`` about ``1 / initial cost`` makes the cost term
    comparable to the cross-entropy; ``FLOPsRegularizer(strength=s,
    budget=initial_cost)`` adds ``s * cost / initial_cost``. On digits
    (``benchmarks/figs_sweep.py``, ResNet of 43k params, 12 epochs) s = 1 keeps
    ~80 % of the parameters, s = 4 ~46 %, s = 8 ~15 %; s >= 16 starves the
    residual stream. That needs the logits' optimizer to follow the gradient's
    size, as FiGS' Adam with ``epsilon=1.0`` does; with Adam's default epsilon
    every logit steps at about the learning rate and ``lambda`` mostly sets the
    direction, not the speed.

    Example:
        >>> import searchlayers as sl
        >>> x = sl.keras.Input((4, 4, 1))
        >>> h = sl.FiGSMask()(sl.keras.layers.Conv2D(2, 1, use_bias=False)(x))
        >>> m = sl.keras.Model(x, sl.keras.layers.Conv2D(1, 1, use_bias=False)(h))
        >>> round(float(figs_expected_cost(m, "params")), 3)   # 2 p + 2 p, p = sigmoid(2.5)
        3.697
    """
    name = check_metric(metric, "figs_expected_cost")
    _check_form(form, "figs_expected_cost")
    net = unwrap(model)
    tie_arch_variables(net)
    with cost_lib.collect_gaps() as found:
        result = _figs_cost(net, form)
    _warn_gaps(net, found)
    return _as_float(result.metric(name))


def _figs_cost(net, form="expected", search_only=False):
    """The ``Cost`` (tensor fields) of FiGS eq. 6 (or MorphNet's form) for one graph model.

    Width gates and depth gates (``searchlayers.layers.gates``) correct each call's
    cost (``width_cost``) and weight it by the probability that it is kept
    (``depth_weights``); ``search_only`` counts the search layers' calls only.
    """
    from searchlayers import slicing
    from searchlayers.layers.gates import depth_weights, width_cost

    graph, p, q = slicing.expected_channels(net)
    weights = depth_weights(graph)
    searched = {id(layer) for layer in search_layers(net)} if search_only else None

    def total(prob):
        return None if prob is None else tf.reduce_sum(prob.p)

    def alive(prob):
        if prob is None:
            return None
        return tf.reduce_sum(tf.stop_gradient(tf.cast(prob.p >= MORPHNET_ALIVE, tf.float32)))

    seen, result = set(), cost_lib.Cost.zero()
    for layer, node, ins, outs in graph.calls:
        kind = slicing.kind(layer)
        if kind == "mask" or (searched is not None and id(layer) not in searched):
            continue
        in_shape = cost_lib._single_shape(node.input_shapes)
        out_shape = cost_lib._single_shape(node.output_shapes)
        cin = cout = None
        if kind == "reduce":
            cin, cout = total(p[ins[0]]), total(q[outs[0]])
        elif kind == "channelwise" and layer.weights:
            cin = total(q[outs[0]])
            cin = total(p[ins[0]]) if cin is None else cin
        with cost_lib.collect_gaps() as found:
            if getattr(layer, "_is_graph_network", False) and (
                    figs_masks(layer) or _gated(layer)):
                c = _figs_cost(layer, form, search_only)
            elif cin is None and cout is None:
                c = cost_lib.layer_cost(layer, in_shape, out_shape)
            elif kind == "reduce" and form == "morphnet":
                n_in, n_out = alive(p[ins[0]]), alive(q[outs[0]])

                def f(a, b):
                    return cost_lib.layer_cost(layer, in_shape, out_shape, cin=a, cout=b)

                c = f(n_in, cout) + f(cin, n_out) + (-1.0) * f(n_in, n_out)
            else:
                c = cost_lib.layer_cost(layer, in_shape, out_shape, cin=cin, cout=cout)
        if found and (cin is not None or cout is not None or id(node) in weights
                      or isinstance(layer, SearchLayer)):
            _refuse_gaps(net, found, "expected_cost")  # its op, width or depth is searched
        if kind != "mask" and ins and outs:
            c = width_cost(c, layer, kind, in_shape, out_shape, p[ins[0]], q[outs[0]])
        if id(node) in weights:
            c = weights[id(node)] * c
        if id(layer) in seen:
            c = c.operations()
        seen.add(id(layer))
        result = result + c
    return result


def _refuse_gaps(net, found, where):
    gaps = {g.name: [(g.name, g.count_params())] for g in found}
    _check_searched_gaps(cost_lib.Profile(net.name, [], gaps=gaps), set(gaps), where)


def _warn_gaps(net, found):
    """A layer of unknown cost outside the searched part: a constant, but said."""
    if found:
        gaps = {g.name: [(g.name, g.count_params())] for g in found}
        summary = cost_lib.Profile(net.name, [], gaps=gaps).gap_summary()
        warnings.warn(summary, cost_lib.CostGapWarning, stacklevel=3)


def check_positive(value, what, where):
    """``float(value)`` if it is a finite number > 0, else ValueError
    (``searchlayers.checks.positive``; a string or bool is a TypeError).

    Example:
        >>> check_positive(2, "budget", "FLOPsRegularizer")
        2.0
    """
    return checks.positive(where, what, value)


def budget_multiplier(cost, budget, under=0.0, over=1.0):
    """BARS eq. 7 factor ``(cost / budget)^theta``: ``theta = over`` when
    ``cost >= budget``, ``under`` otherwise (defaults as in the BARS code).

    Example:
        >>> float(budget_multiplier(200.0, 100.0)), float(budget_multiplier(50.0, 100.0))
        (2.0, 1.0)
    """
    budget = check_positive(budget, "budget", "budget_multiplier")
    under = checks.number("budget_multiplier", "under", under)
    over = checks.number("budget_multiplier", "over", over)
    ratio = _as_float(cost) / budget
    exponent = tf.where(ratio >= 1.0, over, under)
    return tf.pow(ratio, exponent)


# model -> {(kind, key): fn}; the model holds one lambda per key that calls the
# current fn, so re-attaching (a new fit, a new callback) replaces, never stacks;
# a detached term (fn None) adds 0 / multiplies by 1 (Keras cannot remove a loss).
_TERMS = weakref.WeakKeyDictionary()
_NEUTRAL = {"loss": 0.0, "multiplier": 1.0}


def _attach(model, kind, key, fn, add):
    terms = _TERMS.setdefault(model, {})
    if (kind, key) not in terms:
        add(lambda: _term(terms, kind, key))
    previous, terms[(kind, key)] = terms.get((kind, key)), fn
    return previous != fn


def _term(terms, kind, key):
    fn = terms[(kind, key)]
    # Not into a SavedModel (ModelCheckpoint while a search runs): it would capture
    # the callback's variables, and a reloaded model keep a penalty of a finished
    # search. TensorFlow has no public test for "being exported".
    if fn is None or save_context.in_save_context():
        return tf.constant(_NEUTRAL[kind])
    return fn()


def detach(model, key):
    """Takes the term ``key`` (an added loss or a multiplier) out of ``model``'s
    loss until it is attached again; returns True when it was attached (a train
    or test function traced with it must then be rebuilt).

    Example:
        >>> import searchlayers as sl
        >>> m = sl.keras.Sequential([sl.keras.Input((2,)), sl.keras.layers.Dense(1)])
        >>> attach_loss(m, "k", lambda: tf.constant(2.0)), detach(m, "k"), detach(m, "k")
        (True, True, False)
        >>> [float(x) for x in m.losses]
        [0.0]
    """
    terms = _TERMS.get(model, {})
    attached = [term for term in (("loss", key), ("multiplier", key)) if terms.get(term)]
    for term in attached:
        terms[term] = None
    return bool(attached)


def attach_loss(model, key, fn):
    """Adds ``fn()`` (a zero-argument callable) to ``model``'s loss.

    One term per ``key``: attaching again replaces the callable. Returns True
    when the term is new or its callable changed (a train function traced
    before must then be rebuilt), False when ``fn`` was already attached.

    Example:
        >>> import searchlayers as sl
        >>> m = sl.keras.Sequential([sl.keras.Input((2,)), sl.keras.layers.Dense(1)])
        >>> two = lambda: tf.constant(2.0)
        >>> one = lambda: tf.constant(1.0)
        >>> attach_loss(m, "k", one), attach_loss(m, "k", two), attach_loss(m, "k", two)
        (True, True, False)
        >>> [float(x) for x in m.losses]
        [2.0]
    """
    return _attach(model, "loss", key, fn, model.add_loss)


def attach_loss_multiplier(model, key, fn, where="attach_loss_multiplier"):
    """Multiplies ``model``'s data loss by ``fn()``; ``model`` must be a ``SearchModel``.

    One factor per ``key``, as in ``attach_loss``; returns True when it changed.

    Example:
        >>> attach_loss_multiplier(search_model, "flops", lambda: 1.0)  # doctest: +SKIP
        True
    """
    if not callable(getattr(model, "add_loss_multiplier", None)):
        raise TypeError(
            f"{where}: a multiplicative loss term needs a searchlayers.SearchModel, but "
            f"model '{model.name}' is a {type(model).__name__}. Wrap it: "
            "`search = searchlayers.SearchModel(model)`, then compile and fit `search`."
        )
    return _attach(model, "multiplier", key, fn, model.add_loss_multiplier)


__all__ = [
    "FIGS_FORMS",
    "METRICS",
    "MORPHNET_ALIVE",
    "arch_groups",
    "attach_loss",
    "attach_loss_multiplier",
    "budget_multiplier",
    "categorical_entropy",
    "check_metric",
    "detach",
    "entropy",
    "expected_cost",
    "figs_expected_cost",
    "layer_entropy",
    "threshold_penalty",
    "unwrap",
]
