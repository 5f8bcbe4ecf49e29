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

A target outside what the space can derive (below its cheapest or above its
dearest architecture) is said once (a warning) and the closest achievable
architecture is returned. ``Fit`` carries ``asked`` and ``got`` (the exact
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

import numpy as np

from searchlayers import cost as cost_lib
from searchlayers import regularizers as reg
from searchlayers.derive import choose, derive
from searchlayers.layers.base import search_layers
from searchlayers.layers.figs import figs_masks

TOLERANCE = 0.05  # "on budget": the derived cost within 5 % of the target


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
    child = derive(model, architecture=architecture)
    return float(np.asarray(cost_lib.profile(child).total.metric(metric)))


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
    layers = search_layers(model)
    masks = figs_masks(model)
    if masks and len(masks) == len(layers):
        result = _fit_channels(model, masks, target, metric)
    elif layers and all(hasattr(layer, "num_choices") for layer in layers):
        result = _fit_choices(model, target, metric, rule)
    else:
        kinds = sorted({type(layer).__name__ for layer in layers}) or ["none"]
        raise ValueError(
            f"budget.fit: model '{model.name}' has search layers {kinds}; fit handles "
            "networks of FiGSMask layers only, or of categorical layers (MixedOp) only."
        )
    if result.message:
        warnings.warn(result.message, BudgetWarning, stacklevel=2)
    return result


def _unreachable(asked, lowest, highest, metric, got):
    if lowest <= asked * (1 + TOLERANCE) and asked * (1 - TOLERANCE) <= highest:
        if abs(got / asked - 1.0) <= TOLERANCE:
            return ""
        return (f"budget {asked:,.0f} {metric} not met within {TOLERANCE:.0%}: the closest "
                f"architecture found derives {got:,.0f} {metric} ({got / asked:.0%} of the "
                f"budget; this space derives {lowest:,.0f} to {highest:,.0f}).")
    side = "cheapest" if asked < lowest else "dearest"
    return (f"budget {asked:,.0f} {metric} cannot be met: the {side} architecture this "
            f"search space derives costs {lowest if asked < lowest else highest:,.0f}; "
            f"derived the closest achievable, {got:,.0f} {metric}.")


# -- categorical layers -----------------------------------------------------------------
def _log_probs(model, table):
    by_name = {layer.name: layer for layer in search_layers(model)}
    out = np.full(table.values.shape, -np.inf)
    for r, names in enumerate(table.layers):
        p = np.asarray(by_name[names[0]].probabilities(), np.float64).reshape(-1)
        out[r, :len(p)] = np.log(np.maximum(p, 1e-12))
    return out


def _fit_choices(model, target, metric, rule):
    from searchlayers.evolution import cost_table

    table = cost_table(model, metric)
    logp = _log_probs(model, table)
    values = np.where(np.isnan(table.values), 0.0, table.values) / target

    def pick(mu):
        score = np.where(np.isnan(table.values), -np.inf, logp - mu * values)
        return np.argmax(score, axis=1)

    def solve(goal):  # the Lagrangian pick whose table total is closest to goal
        best = pick(0.0)
        low, high = -1.0, 1.0  # table.total(pick(mu)) falls as mu grows
        while table.total(pick(high)) > goal and high < 1e9:
            high *= 4.0
        while table.total(pick(low)) < goal and low > -1e9:
            low *= 4.0
        for _ in range(60):
            mid = 0.5 * (low + high)
            candidate = pick(mid)
            if abs(table.total(candidate) - goal) < abs(table.total(best) - goal):
                best = candidate
            if table.total(candidate) > goal:
                low = mid
            else:
                high = mid
        for candidate in (pick(low), pick(high)):
            if abs(table.total(candidate) - goal) < abs(table.total(best) - goal):
                best = candidate
        return best

    def repair(rows, goal):
        # The Lagrangian picks only the corners of the cost / probability hull: when the
        # distributions are near flat they jump by whole edges. Close the remaining gap
        # greedily by single changes, each losing the least log probability per unit of
        # cost it moves towards the goal.
        rows = np.array(rows)
        for _ in range(4 * len(rows)):
            gap = table.total(rows) - goal
            if abs(gap) <= TOLERANCE / 4 * target:
                break
            current = table.values[np.arange(len(rows)), rows]
            moved = np.abs(gap) - np.abs(gap - (current[:, None] - table.values))
            lost = logp[np.arange(len(rows)), rows][:, None] - logp
            ratio = np.where(np.isnan(table.values) | ~(moved > 0), np.inf,
                             np.maximum(lost, 0.0) / np.where(moved > 0, moved, 1.0))
            if not np.isfinite(ratio).any():
                break
            r, c = np.unravel_index(np.argmin(ratio), ratio.shape)
            rows[r] = c
        return rows

    start = choose(model, "argmax", rule=rule)
    argmax_rows = table.encode(start)
    found = {tuple(argmax_rows): (start, exact_cost(model, start, metric))}

    def exact(rows):  # (architecture, exact cost of its derived model), cached
        key = tuple(int(r) for r in rows)
        if key not in found:
            arch = table.decode(rows)
            arch = choose(model, "argmax", rule=_rule_of(arch))
            arch.meta.update(strategy="budget", target=target, metric=metric)
            found[key] = (arch, exact_cost(model, arch, metric))
        return found[key]

    argmax_exact = found[tuple(argmax_rows)][1]
    # The table leaves out what deriving changes beyond the chosen ops (edges of
    # "none" dropped, nodes removed): correct the table's goal by the gap between
    # the exact and the table cost of the last pick (a secant step), a few times.
    shift = argmax_exact - table.total(argmax_rows)
    rows = argmax_rows
    for _ in range(6):
        if abs(exact(rows)[1] / target - 1.0) <= TOLERANCE / 2:
            break
        rows = repair(solve(target - shift), target - shift)
        shift = exact(rows)[1] - table.total(rows)
    lowest = min(exact(pick(1e12))[1], exact(table.argmin())[1])
    highest = max(exact(pick(-1e12))[1], exact(np.nanargmax(table.values, axis=1))[1])
    architecture, got = min(found.values(), key=lambda item: abs(item[1] - target))
    lowest, highest = min(lowest, got), max(highest, got)
    message = _unreachable(target, lowest, highest, metric, got)
    return Fit(architecture, metric, target, got, argmax_exact, lowest, highest, message)


def _rule_of(architecture):
    """A ``choose`` rule returning ``architecture``'s choice of each layer."""
    def rule(layer):
        return architecture.choices.get(layer.name)

    return rule


# -- FiGS masks -------------------------------------------------------------------------
def _fit_channels(model, masks, target, metric):
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

    start = choose(model, "expected")
    argmax_exact = exact_cost(model, start, metric)
    costs = {}

    def cost_at(k):  # cost grows with k
        if k not in costs:
            costs[k] = exact_cost(model, architecture(k), metric)
        return costs[k]

    lo, hi = 0, len(entries)
    lowest, highest = cost_at(lo), cost_at(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cost_at(mid) < target:
            lo = mid
        else:
            hi = mid
    best = min(costs, key=lambda k: abs(costs[k] - target))
    if abs(argmax_exact - target) <= abs(costs[best] - target):
        arch, got = start, argmax_exact
    else:
        arch, got = architecture(best), costs[best]
    message = _unreachable(target, lowest, highest, metric, got)
    return Fit(arch, metric, target, got, argmax_exact, lowest, highest, message)


__all__ = ["BudgetWarning", "Fit", "TOLERANCE", "exact_cost", "fit"]
