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
  argmax architecture.
- ``FiGSMask`` networks: each mask keeps the channels whose logit is at least
  a global threshold (its most probable channel always); the threshold is
  bisected over the logits on the derived model's exact cost (one
  ``derive`` + ``cost.profile`` per step, about ``log2(channels)`` steps).

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
        return ""
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

    start = choose(model, "argmax", rule=rule)
    argmax_rows = table.encode(start)
    argmax_exact = exact_cost(model, start, metric)
    shift = argmax_exact - table.total(argmax_rows)  # what the table leaves out
    lowest = table.minimum() + shift
    highest = table.maximum() + shift

    def total(rows):
        return table.total(rows) + shift

    rows, best = argmax_rows, abs(argmax_exact - target)
    low, high = -1.0, 1.0  # total(pick(mu)) falls as mu grows: bracket the target
    while total(pick(high)) > target and high < 1e9:
        high *= 4.0
    while total(pick(low)) < target and low > -1e9:
        low *= 4.0
    for _ in range(80):
        mid = 0.5 * (low + high)
        candidate = pick(mid)
        if abs(total(candidate) - target) < best:
            rows, best = candidate, abs(total(candidate) - target)
        if total(candidate) > target:
            low = mid
        else:
            high = mid
    for candidate in (pick(low), pick(high)):
        if abs(total(candidate) - target) < best:
            rows, best = candidate, abs(total(candidate) - target)
    if np.array_equal(rows, argmax_rows):
        architecture, got = start, argmax_exact
    else:
        architecture = table.decode(rows, {"strategy": "budget", "target": target,
                                           "metric": metric})
        architecture = choose(model, "argmax", rule=_rule_of(architecture))
        architecture.meta.update(strategy="budget", target=target, metric=metric)
        got = exact_cost(model, architecture, metric)
    message = _unreachable(target, lowest, highest, metric, got)
    return Fit(architecture, metric, target, got, argmax_exact, lowest, highest, message)


def _rule_of(architecture):
    """A ``choose`` rule returning ``architecture``'s choice of each layer."""
    def rule(layer):
        return architecture.choices.get(layer.name)

    return rule


# -- FiGS masks -------------------------------------------------------------------------
def _fit_channels(model, masks, target, metric):
    logits = {mask.name: np.asarray(mask.arch("logits").numpy(), np.float64) for mask in masks}
    thresholds = np.unique(np.concatenate(list(logits.values())))  # ascending

    def architecture(threshold):
        def rule(layer):
            z = logits[layer.name]
            kept = set(np.flatnonzero(z >= threshold).tolist()) | {int(np.argmax(z))}
            return sorted(int(i) for i in kept)

        arch = choose(model, "expected", rule=rule)
        arch.meta.update(strategy="budget", target=target, metric=metric)
        return arch

    start = choose(model, "expected")
    argmax_exact = exact_cost(model, start, metric)
    costs = {}

    def cost_at(i):  # index into thresholds; cost falls as i grows
        if i not in costs:
            costs[i] = exact_cost(model, architecture(thresholds[i]), metric)
        return costs[i]

    lo, hi = 0, len(thresholds) - 1
    highest, lowest = cost_at(lo), cost_at(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cost_at(mid) > target:
            lo = mid
        else:
            hi = mid
    best = min(costs, key=lambda i: abs(costs[i] - target))
    if abs(argmax_exact - target) <= abs(costs[best] - target):
        arch, got = start, argmax_exact
    else:
        arch, got = architecture(thresholds[best]), costs[best]
    message = _unreachable(target, lowest, highest, metric, got)
    return Fit(arch, metric, target, got, argmax_exact, lowest, highest, message)


__all__ = ["BudgetWarning", "Fit", "TOLERANCE", "exact_cost", "fit"]
