"""Budgets as constraints: derive the architecture whose exact cost lands on a target.

A search under a cost term (``FLOPsRegularizer``, best in its ``mode="target"``
that adapts its strength until the expected cost sits on the budget) leaves
architecture *distributions*; the derived model's exact cost is a discrete
function of them and may miss the budget by a lot (argmax of an edge, or
FiGS' ``floor(sum p)`` channels). ``fit`` is the final trim / fill step of
derive: among the architectures the distributions rank highest it picks the
one whose exact cost is closest to the target.

- Categorical search layers (``MixedOp``: DARTS, GDAS, SNAS, BNAS, BN-NAS):
  the Lagrangian relaxation of the multiple-choice knapsack: each group takes
  ``argmax_c log p_c - mu * cost_c``, with ``mu`` (> 0 trims, < 0 fills)
  bisected until the total (``evolution.cost_table``: a number per layer and
  choice plus the fixed layers) is closest to the target; ``mu = 0`` is the
  argmax architecture. The Lagrangian reaches only the corners of the
  cost / probability hull, so single changes (least log probability lost per
  unit of cost) close the rest of the gap; and since deriving is not additive
  (an edge of ``none`` drops nodes), the table's goal is corrected by the gap
  between the exact and the table cost of the last pick (a few secant steps).
- ``FiGSMask`` networks: the channels of all mask groups ranked by logit
  (ties by group, then channel); the first ``k`` are kept (each mask keeps its
  most probable channel always) and ``k`` is bisected on the derived model's
  exact cost (one ``derive`` + ``cost.profile`` per step, about
  ``log2(channels)`` steps).

``fit`` never returns a child whose output does not depend on its input
(``connected``: in DARTS cells, "none" edges drop nodes, then whole cells),
and removes edges only where the search chose to or where the target is below
the cheapest child that keeps every edge. A target outside what the space can
derive (below its cheapest or above its dearest architecture) is said once (a
warning) and the closest achievable architecture is returned. ``achievable``
gives the range worth searching for and ``clamp`` moves a search's target
into it (in DARTS the floor is the cheapest child that removes no edge: below
it a cost term only pushes edges to "none"). ``Fit`` carries ``asked`` and ``got`` (the exact
cost of the derived model) for the run summary and the sweep report.

Example:
    >>> from searchlayers import budget
    >>> fit = budget.fit(supernet, target=2e5, metric="macs")  # doctest: +SKIP
    >>> child = sl.derive(supernet, architecture=fit.architecture)  # doctest: +SKIP
    >>> abs(fit.got / fit.asked - 1) <= 0.05  # doctest: +SKIP
    True
"""

import dataclasses
import warnings
import weakref

import numpy as np
import tensorflow as tf

from searchlayers import cost as cost_lib
from searchlayers import regularizers as reg
from searchlayers.derive import apply_architecture, choose, derive
from searchlayers.layers.base import derivation_of, search_layers
from searchlayers.layers.figs import figs_masks

TOLERANCE = 0.05  # "on budget": the derived cost within 5 % of the target
NO_EDGE_REMOVED = ("that removes no edge (below it only \"none\" edges cut the cost, and they "
                   "cut nodes, then the input, away)")


class BudgetWarning(UserWarning):
    """A budget the search space cannot meet (said once per ``fit``)."""


@dataclasses.dataclass
class Fit:
    """The result of ``fit``.

    Attributes:
        architecture: the chosen ``Architecture`` (``derive(model, architecture=...)``).
        metric: the cost metric.
        asked: the target.
        got: the exact cost of the derived model (its ``cost.profile``).
        argmax: the exact cost of the untrimmed derive rule (argmax / FiGS' expected).
        lowest, highest: the cheapest and dearest cost ``fit`` could reach.
        message: the one-line notice of an unreachable budget, or "".

    Example:
        >>> f = Fit(None, "params", 100.0, 103.0, 150.0, 50.0, 200.0)
        >>> f.ratio, f.on_budget
        (1.03, True)
    """

    architecture: object
    metric: str
    asked: float
    got: float
    argmax: float
    lowest: float
    highest: float
    message: str = ""

    @property
    def ratio(self):
        """``got / asked``."""
        return self.got / self.asked

    @property
    def on_budget(self):
        """``got`` within ``TOLERANCE`` of ``asked``."""
        return abs(self.ratio - 1.0) <= TOLERANCE

    def to_dict(self):
        """The JSON-friendly fields (no architecture).

        Example:
            >>> Fit(None, "params", 100.0, 103.0, 150.0, 50.0, 200.0).to_dict()["ratio"]
            1.03
        """
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del out["architecture"]
        return {**out, "ratio": self.ratio, "on_budget": self.on_budget}


def exact_cost(model, architecture, metric):
    """The cost in ``metric`` of ``derive(model, architecture=architecture)``.

    Example:
        >>> exact_cost(supernet, sl.choose(supernet), "macs")  # doctest: +SKIP
        123456.0
    """
    return _measure(model, architecture, metric)[0]


# supernet -> {metric: traced expected_cost}; weak, so a dropped supernet frees it
_TRACED_COSTS = weakref.WeakKeyDictionary()


def fixed_cost(model, architecture, metric):
    """``expected_cost(model, metric)`` with ``architecture`` fixed: the cost
    model's count of that child, without deriving it (exact but for what
    deriving changes beyond the choices: dropped edges and nodes, biases folded
    from constant channels). ``fit`` and the random sampler evaluate it for up
    to hundreds of architectures, so it is traced once per model and metric
    (the fixed choices are variables the trace reads): an eager evaluation
    walks the graph and runs hundreds of small ops (0.07 s on a BARS supernet),
    and a derive costs 0.1-3 s.

    Example:
        >>> import searchlayers as sl
        >>> net = sl.keras.Sequential([sl.keras.Input((4,)), sl.FiGSMask(),
        ...                            sl.keras.layers.Dense(2)])
        >>> two = sl.choose(net, "expected", rule=lambda layer: [0, 3])
        >>> fixed_cost(net, two, "params")  # Dense: 2 inputs x 2 outputs + 2 biases
        6.0
    """
    costs = _TRACED_COSTS.setdefault(model, {})
    if metric not in costs:
        costs[metric] = tf.function(lambda: reg.expected_cost(model, metric), autograph=False)
    apply_architecture(model, architecture)
    try:
        return float(costs[metric]())
    finally:
        apply_architecture(model, None)


def connected(model, seed=0):
    """True when ``model``'s output depends on its input: two random inputs give
    different outputs (inference mode). A derived child whose every path from
    the input to the output went through a removed edge ("none") computes a
    constant: it is no network, whatever its cost.

    Example:
        >>> from searchlayers._keras import keras
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> connected(m)
        True
        >>> x = keras.Input((3,))
        >>> connected(keras.Model(x, keras.layers.Dense(2)(x * 0.0)))
        False
    """
    rng = np.random.default_rng(seed)
    inputs = [rng.normal(size=(2, *t.shape[1:])).astype(t.dtype.as_numpy_dtype)
              for t in model.inputs]
    outputs = model(inputs if len(inputs) > 1 else inputs[0], training=False)
    return any(not np.allclose(y[0], y[1], rtol=1e-5, atol=1e-7)
               for y in map(np.asarray, tf.nest.flatten(outputs)))


def _measure(model, architecture, metric):
    """``(exact cost, connected)`` of ``derive(model, architecture=architecture)``."""
    child = derive(model, architecture=architecture)
    return float(np.asarray(cost_lib.profile(child).total.metric(metric))), connected(child)


def fit(model, target, metric="macs", rule=None):
    """The architecture of ``model`` whose derived cost is closest to ``target``.

    ``rule`` (``choose``'s: ``layer -> choice or None``) decides the layers it
    answers (e.g. BNAS' Zeroise gamma) when the budget needs no trimming.
    Returns a ``Fit``; warns (``BudgetWarning``) once when the target cannot
    be met.

    Example:
        >>> fit(supernet, 0.5 * initial_macs, "macs").on_budget  # doctest: +SKIP
        True
    """
    target = reg.check_positive(target, "target", "budget.fit")
    metric = reg.check_metric(metric, "budget.fit")
    masks = _space(model, "budget.fit")
    result = (_fit_channels(model, masks, target, metric) if masks else
              _fit_choices(model, target, metric, rule))
    if result.message:
        warnings.warn(result.message, BudgetWarning, stacklevel=2)
    return result


def _space(model, where):
    """The FiGS masks of a network of masks only, [] for one of categorical layers
    only; anything else is an error."""
    layers = search_layers(model)
    masks = figs_masks(model)
    if masks and len(masks) == len(layers):
        return masks
    if layers and all(hasattr(layer, "num_choices") for layer in layers):
        return []
    kinds = sorted({type(layer).__name__ for layer in layers}) or ["none"]
    raise ValueError(
        f"{where}: model '{model.name}' has search layers {kinds}; "
        f"{where.split('.')[-1]} handles "
        "networks of FiGSMask layers only, or of categorical layers (MixedOp) only."
    )


def achievable(model, metric="macs"):
    """``(lowest, highest)``: the exact costs of the cheapest and the dearest
    architecture worth searching for in ``model``'s space. Categorical spaces:
    the dearest choices; the cheapest choices when that child's output still
    depends on its input (``connected``: BARS, whose cells have a shortcut),
    else the cheapest choices that remove no edge (DARTS: below the all-pool
    child only "none" edges cut the cost, and they cut nodes, then the input
    away). FiGS: one channel per mask, and all channels.

    Example:
        >>> low, high = achievable(supernet, "macs")  # doctest: +SKIP
    """
    return _achievable(model, metric, "budget.achievable")[:2]


def _achievable(model, metric, where):
    """``(lowest, highest, what the lowest is)`` (see ``achievable``)."""
    metric = reg.check_metric(metric, where)
    masks = _space(model, where)
    if masks:
        architecture, n = _channel_architectures(model, masks, 1.0, metric)
        return (exact_cost(model, architecture(0), metric),
                exact_cost(model, architecture(n), metric), "(one channel per mask)")
    space = _Choices(model, metric, choose(model, "argmax"))
    _, lowest, what = space.floor()
    return lowest, space.exact(np.nanargmax(space.table.values, axis=1))[1], what


def clamp(model, target, metric="macs", where="budget.clamp"):
    """``(target, message)``: ``target`` moved into ``achievable(model, metric)``,
    with the one-line notice of the move (also warned once, ``BudgetWarning``;
    "" when none). For a search's cost term: below the cheapest child worth
    deriving it would push the distributions to where no network is (in DARTS:
    every edge "none").

    Example:
        >>> target, message = clamp(supernet, 0.1 * full, "macs")  # doctest: +SKIP
    """
    target = reg.check_positive(target, "target", where)
    lowest, highest, what = _achievable(model, metric, where)
    if lowest * (1 - TOLERANCE) <= target <= highest * (1 + TOLERANCE):
        return target, ""
    near = lowest if target < lowest else highest
    side = (f"cheapest architecture of this search space {what}" if target < lowest
            else "dearest architecture this search space derives")
    message = (f"{where}: budget {target:,.0f} {metric} cannot be met: the {side} costs "
               f"{near:,.0f}; searching for {near:,.0f} {metric} instead.")
    warnings.warn(message, BudgetWarning, stacklevel=2)
    return near, message


def _unreachable(asked, lowest, highest, metric, got):
    if lowest <= asked * (1 + TOLERANCE) and asked * (1 - TOLERANCE) <= highest:
        if abs(got / asked - 1.0) <= TOLERANCE:
            return ""
        return (f"budget {asked:,.0f} {metric} not met within {TOLERANCE:.0%}: the closest "
                f"architecture found derives {got:,.0f} {metric} ({got / asked:.0%} of the "
                f"budget; this space derives {lowest:,.0f} to {highest:,.0f}).")
    side = ("cheapest architecture of this search space whose output depends on its input"
            if asked < lowest else "dearest architecture this search space derives")
    return (f"budget {asked:,.0f} {metric} cannot be met: the {side} costs "
            f"{lowest if asked < lowest else highest:,.0f}; derived the closest achievable, "
            f"{got:,.0f} {metric}.")


# -- categorical layers -----------------------------------------------------------------
def _log_probs(model, table):
    by_name = {layer.name: layer for layer in search_layers(model)}
    out = np.full(table.values.shape, -np.inf)
    for r, names in enumerate(table.layers):
        p = np.asarray(by_name[names[0]].probabilities(), np.float64).reshape(-1)
        out[r, :len(p)] = np.log(np.maximum(p, 1e-12))
    return out


def _cost_table(model, metric):
    """``evolution.cost_table``, or None when a search layer has no per-choice
    costs (gates: a ``WidthGate`` scales its neighbours' cost, it has none)."""
    from searchlayers.evolution import cost_table

    if not all(hasattr(layer, "candidate_costs") for layer in search_layers(model)):
        return None
    return cost_table(model, metric)


def _local_table(model, metric, architecture):
    """The cost table of the single changes around ``architecture``: per group and
    choice, the supernet's cost with every choice fixed (``baselines``' fixed
    cost, exact up to what deriving drops) minus ``architecture``'s, which is the
    offset. For spaces whose cost is not additive (gates scale whole stages);
    ``_fit_choices`` rebuilds it around each pick."""
    from searchlayers.evolution import ChoiceTable

    table = ChoiceTable.from_layers(model, lambda layer: np.zeros(layer.num_choices), metric)
    base_rows = table.encode(architecture)
    base = fixed_cost(model, table.decode(base_rows), metric)
    values = np.full(table.values.shape, np.nan)
    for r, n in enumerate(table.num_choices):
        for c in range(n):
            rows = base_rows.copy()
            rows[r] = c
            values[r, c] = 0.0 if c == base_rows[r] else (
                fixed_cost(model, table.decode(rows), metric) - base)
    return dataclasses.replace(table, values=values, offset=base)


def _zero_choices(model, table):
    """``[rows, choices]``: True where the choice removes its edge (``Drop``)."""
    by_name = {layer.name: layer for layer in search_layers(model)}
    zero = np.zeros(table.values.shape, bool)
    for r, names in enumerate(table.layers):
        for c in range(int(table.num_choices[r])):
            zero[r, c] = getattr(derivation_of(by_name[names[0]], c), "kind", None) == "zero"
    return zero


class _Choices:
    """The categorical space of ``model`` under one metric: its cost table (or
    the local one, rebuilt around each pick), log probabilities, and the exact
    cost and connectivity of every architecture measured (cached)."""

    def __init__(self, model, metric, start, meta=None):
        self.model, self.metric, self.meta = model, metric, dict(meta or {})
        self.table = _cost_table(model, metric)
        self.local = self.table is None
        if self.local:
            self.table = _local_table(model, metric, start)
        self.logp = _log_probs(model, self.table)
        self.zero = _zero_choices(model, self.table)
        self.found = {}

    def exact(self, rows):
        """``(architecture, exact cost, connected)`` of one row of choice indices."""
        key = tuple(int(r) for r in rows)
        if key not in self.found:
            arch = choose(self.model, "argmax", rule=_rule_of(self.table.decode(rows)))
            arch.meta.update(self.meta)
            self.found[key] = (arch, *_measure(self.model, arch, self.metric))
        return self.found[key]

    def relinearize(self, rows):
        if self.local:
            self.table = _local_table(self.model, self.metric, self.exact(rows)[0])

    def floor(self):
        """``(rows, cost, what)``: the cheapest architecture whose output depends on
        its input if that is the all-cheapest one; else the cheapest that removes
        no edge (``what`` says which). Below it only removed edges cut the cost,
        and they take whole nodes, then the input, away."""
        values = np.where(np.isnan(self.table.values), np.inf, self.table.values)
        cheapest = np.argmin(values, axis=1)
        _, cost, connected = self.exact(cheapest)
        if connected:
            return cheapest, cost, "whose output depends on its input"
        kept = np.where(self.zero, np.inf, values)
        rows = np.where(np.isfinite(kept).any(axis=1), np.argmin(kept, axis=1), cheapest)
        return rows, self.exact(rows)[1], NO_EDGE_REMOVED


def _fit_choices(model, target, metric, rule):
    start = choose(model, "argmax", rule=rule)
    space = _Choices(model, metric, start, dict(strategy="budget", target=target, metric=metric))

    def pick(mu):
        table = space.table
        values = np.where(np.isnan(table.values), 0.0, table.values) / target
        score = np.where(np.isnan(table.values) | ~allowed, -np.inf, space.logp - mu * values)
        return np.argmax(score, axis=1)

    def solve(goal):  # the Lagrangian pick whose table total is closest to goal
        total = space.table.total
        best = pick(0.0)
        low, high = -1.0, 1.0  # total(pick(mu)) falls as mu grows
        while total(pick(high)) > goal and high < 1e9:
            high *= 4.0
        while total(pick(low)) < goal and low > -1e9:
            low *= 4.0
        for _ in range(60):
            mid = 0.5 * (low + high)
            candidate = pick(mid)
            if abs(total(candidate) - goal) < abs(total(best) - goal):
                best = candidate
            if total(candidate) > goal:
                low = mid
            else:
                high = mid
        for candidate in (pick(low), pick(high)):
            if abs(total(candidate) - goal) < abs(total(best) - goal):
                best = candidate
        return best

    def repair(rows, goal):
        # The Lagrangian picks only the corners of the cost / probability hull: when the
        # distributions are near flat they jump by whole edges. Close the remaining gap
        # greedily by single changes, each losing the least log probability per unit of
        # cost it moves towards the goal.
        table, logp = space.table, space.logp
        rows = np.array(rows)
        for _ in range(4 * len(rows)):
            gap = table.total(rows) - goal
            if abs(gap) <= TOLERANCE / 4 * target:
                break
            current = table.values[np.arange(len(rows)), rows]
            moved = np.abs(gap) - np.abs(gap - (current[:, None] - table.values))
            lost = logp[np.arange(len(rows)), rows][:, None] - logp
            ratio = np.where(np.isnan(table.values) | ~(moved > 0) | ~allowed, np.inf,
                             np.maximum(lost, 0.0) / np.where(moved > 0, moved, 1.0))
            if not np.isfinite(ratio).any():
                break
            r, c = np.unravel_index(np.argmin(ratio), ratio.shape)
            rows[r] = c
        return rows

    argmax_rows = space.table.encode(start)
    space.found[tuple(argmax_rows)] = (start, *_measure(model, start, metric))
    argmax_exact = space.found[tuple(argmax_rows)][1]
    _, lowest, what = space.floor()
    allowed = np.ones(space.table.values.shape, bool)
    if what == NO_EDGE_REMOVED and target >= lowest * (1 - TOLERANCE):
        # reachable without removing edges: remove only those the search removed
        allowed = ~space.zero
        allowed[np.arange(len(argmax_rows)), argmax_rows] = True
    goal = target
    # The table leaves out what deriving changes beyond the chosen ops (edges of
    # "none" dropped, nodes removed): correct the table's goal by the gap between
    # the exact and the table cost of the last pick (a secant step), a few times.
    rows = argmax_rows
    shift = argmax_exact - space.table.total(rows)
    for _ in range(6):
        _, got, connected = space.exact(rows)
        if connected and abs(got / goal - 1.0) <= TOLERANCE / 2:
            break
        previous, rows = rows, repair(solve(goal - shift), goal - shift)
        if np.array_equal(rows, previous):  # converged (e.g. on the cheapest architecture)
            break
        space.relinearize(rows)
        shift = space.exact(rows)[1] - space.table.total(rows)
    table = space.table
    highest = space.exact(np.nanargmax(table.values, axis=1))[1]
    live = [(arch, cost) for arch, cost, connected in space.found.values() if connected]
    if not live:  # not even the argmax child depends on its input: keep the closest
        live = [(arch, cost) for arch, cost, _ in space.found.values()]
    architecture, got = min(live, key=lambda item: abs(item[1] - target))
    lowest = min([lowest] + [cost for _, cost in live])
    highest = max(highest, got)
    message = _unreachable(target, lowest, highest, metric, got)
    return Fit(architecture, metric, target, got, argmax_exact, lowest, highest, message)


def _rule_of(architecture):
    """A ``choose`` rule returning ``architecture``'s choice of each layer."""
    def rule(layer):
        return architecture.choices.get(layer.name)

    return rule


# -- FiGS masks -------------------------------------------------------------------------
def _channel_architectures(model, masks, target, metric):
    """``(architecture(k), n)``: the architecture keeping the ``k`` most probable
    (group, channel) entries besides each mask's best, for ``k`` in ``0..n``."""
    def key(mask):  # masks of one group share logits and keep the same channels
        return mask.group if mask.group is not None else mask.name

    logits = {}
    for mask in masks:
        logits.setdefault(key(mask), np.asarray(mask.arch("logits").numpy(), np.float64))
    # every (group, channel) once, most probable first (ties: by group, then channel),
    # so the k-th architecture keeps exactly k channels more than none, one at a time
    entries = sorted(((-z, g, c) for g, values in logits.items()
                      for c, z in enumerate(values)), key=lambda e: (e[0], str(e[1]), e[2]))
    by_key = {mask.name: key(mask) for mask in masks}

    def architecture(k):
        kept = {g: {int(np.argmax(z))} for g, z in logits.items()}
        for _, g, c in entries[:k]:
            kept[g].add(c)

        def rule(layer):
            return sorted(kept[by_key[layer.name]])

        arch = choose(model, "expected", rule=rule)
        arch.meta.update(strategy="budget", target=target, metric=metric)
        return arch

    return architecture, len(entries)


def _bisect(cost_at, lo, hi, target):
    """``(lo, hi)``, neighbours with ``cost_at(lo) < target <= cost_at(hi)`` for a
    ``cost_at`` that grows with ``k`` (an end when the target is outside)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cost_at(mid) < target:
            lo = mid
        else:
            hi = mid
    return lo, hi


def _fit_channels(model, masks, target, metric):
    architecture, n = _channel_architectures(model, masks, target, metric)
    start = choose(model, "expected")
    argmax_exact = exact_cost(model, start, metric)
    costs = {}

    def cost_at(k):  # the derived child's cost; grows with k
        if k not in costs:
            costs[k] = exact_cost(model, architecture(k), metric)
        return costs[k]

    lowest, highest = cost_at(0), cost_at(n)
    # Bracket the target with the cost model's count (milliseconds; a derive takes
    # 0.1-3 s), then check the bracket with exact costs and bisect on: where the
    # two differ (folded biases), the exact bisection takes over.
    lo, hi = _bisect(lambda k: fixed_cost(model, architecture(k), metric), 0, n, target)
    if lo > 0 and cost_at(lo) >= target:
        lo, hi = 0, lo
    elif hi < n and cost_at(hi) < target:
        lo, hi = hi, n
    _bisect(cost_at, lo, hi, target)  # for the exact costs it measures into ``costs``
    best = min(costs, key=lambda k: abs(costs[k] - target))
    if abs(argmax_exact - target) <= abs(costs[best] - target):
        arch, got = start, argmax_exact
    else:
        arch, got = architecture(best), costs[best]
    message = _unreachable(target, lowest, highest, metric, got)
    return Fit(arch, metric, target, got, argmax_exact, lowest, highest, message)


__all__ = ["BudgetWarning", "Fit", "TOLERANCE", "achievable", "clamp", "connected", "exact_cost",
           "fit", "fixed_cost"]
