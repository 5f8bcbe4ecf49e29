"""Random architectures at equal cost: the baseline every search must beat.

Li & Talwalkar (2019) and Yang et al. (2020, "NAS evaluation is frustratingly
hard") show that the comparison that matters is a searched child against
random children of the same space and the same cost, trained by the same
recipe. ``random_baseline`` does that:

1. ``sample_architectures`` draws architectures from the supernet's space by
   rejection sampling: a categorical choice (MixedOp, gates, EnTranNAS cells)
   uniformly at random (every other draw tilted towards cheap choices,
   ``p ~ exp(-beta * cost)`` with a random ``beta``, so that a child near the
   space's cheapest end has equal-cost rivals); a FiGS mask keeps each channel with probability ``q``
   (``q`` jittered around the searched child's kept fraction, so that equal
   cost is reachable). A draw is kept when its derived child's cost
   (``searchlayers.cost.profile``, in ``metric``) is within ``tolerance`` of
   the searched child's, and it is neither the searched architecture nor a
   repeat. A cheap pre-filter (the supernet's expected cost with the draw's
   choices fixed) avoids deriving hopeless draws. When ``max_tries`` draws
   do not give ``n`` architectures it raises, saying how many it found and
   the cost range it saw.
2. Each random child is derived from the supernet (``searchlayers.derive``)
   and trained by the caller's ``train(child, seed) -> accuracy`` (the same
   recipe, ``searchlayers.retrain``, as the searched child) for every seed.

Example:
    >>> result = random_baseline(supernet, child, train, n=5, seeds=(0, 1, 2))  # doctest: +SKIP
    >>> result["mean"], result["std"]  # doctest: +SKIP
    (0.91, 0.02)
"""

import json
import math

import numpy as np

from searchlayers import checks, cost, decision, evolution
from searchlayers import regularizers as reg
from searchlayers.budget import fixed_cost
from searchlayers.derive import choose, derive

TOLERANCE = 0.05


def child_cost(child, metric="macs"):
    """The cost of a plain (derived) model in ``metric``.

    Example:
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> child_cost(m, "params")
        8.0
    """
    return float(np.asarray(cost.profile(child).total.metric(metric)))


def _key(architecture):
    return json.dumps(architecture.choices, sort_keys=True)


def _kept_fraction(architecture, masks):
    fractions = [len(architecture.choices[m.name]) / m.channels
                 for m in masks if m.name in architecture.choices]
    return float(np.mean(fractions)) if fractions else 0.5


def _tilt(layer, metric):
    """Per-choice costs of a categorical layer scaled to 0..1 (None without them)."""
    if not callable(getattr(layer, "candidate_costs", None)):
        return None
    costs = np.array([float(np.asarray(c.metric(metric))) for c in layer.candidate_costs()])
    spread = costs.max() - costs.min()
    return (costs - costs.min()) / spread if spread > 0 else None


def _propose(supernet, groups, keep, rng, draw, tilts=None):
    """One random ``Architecture``: masks kept with prob ~``keep``; categorical
    choices uniform on even draws, on odd ones tilted towards cheap choices
    (``p ~ exp(-beta * cost)``, ``beta`` random) so that children far below the
    mean cost (a searched child near the space's floor) are drawn too."""
    saved = {}
    beta = 0.0 if draw % 2 == 0 else rng.uniform(0.0, 8.0)
    for key, layer in groups.items():
        for var in layer.arch_weights:
            saved[id(var)] = (var, var.numpy())
            if decision.is_bernoulli(layer):
                q = float(np.clip(keep * rng.uniform(0.7, 1.3), 0.02, 0.98))
                var.assign(np.full(var.shape, math.log(q / (1 - q)), np.float32))
            else:
                tilt = (tilts or {}).get(key) if beta else None
                var.assign(np.zeros(var.shape, np.float32) if tilt is None or
                           tilt.shape != tuple(var.shape) else (-beta * tilt).astype(np.float32))
    try:
        return choose(supernet, "sample", seed=draw)
    finally:
        for var, value in saved.values():
            var.assign(value)


def _rough_cost(supernet, metric):
    """``architecture -> cost`` for the pre-filter: a sum over the per-choice cost
    table when every search layer has a list of candidates (fast), else the
    supernet's expected cost with the choices fixed."""
    try:
        table = evolution.cost_table(reg.unwrap(supernet), metric)
    except (ValueError, TypeError, AttributeError):
        return lambda architecture: fixed_cost(supernet, architecture, metric)
    return lambda architecture: table.total(table.encode(architecture))


def sample_architectures(supernet, architecture, n=5, metric="macs", tolerance=TOLERANCE,
                         target=None, seed=0, max_tries=2000):
    """``n`` random architectures of ``supernet`` whose derived cost is within
    ``tolerance`` of the searched ``architecture``'s (see the module docstring).

    Args:
        supernet: the searched supernet (its space is sampled).
        architecture: the searched child's ``Architecture`` (never returned).
        n: how many.
        metric: the cost metric (``searchlayers.cost.Cost.metric`` names).
        tolerance: relative cost tolerance (0.05: +-5 %).
        target: the searched child's cost (default: derived and measured).
        seed: seed of the draws.
        max_tries: draws before giving up.

    Returns:
        ``[(architecture, child, cost)]``: the derived children (weights
        inherited from the supernet) and their costs.

    Example:
        >>> found = sample_architectures(supernet, child.architecture, n=5)  # doctest: +SKIP
    """
    where = "sample_architectures"
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{where}: n must be an integer >= 1, got {n!r}.")
    if not (isinstance(tolerance, (int, float)) and 0 < tolerance < 1):
        raise ValueError(f"{where}: tolerance must be a number in (0, 1), got {tolerance!r}.")
    groups = reg.arch_groups(reg.unwrap(supernet))
    masks = [layer for layer in groups.values() if decision.is_bernoulli(layer)]
    if target is None:
        target = child_cost(derive(supernet, architecture=architecture), metric)
    keep = _kept_fraction(architecture, masks)
    rough_cost = _rough_cost(supernet, metric)
    fixed_target = rough_cost(architecture)
    rng = np.random.default_rng(seed)
    tilts = {key: _tilt(layer, metric) for key, layer in groups.items()
             if not decision.is_bernoulli(layer)}
    seen, found, costs = {_key(architecture)}, [], []
    for draw in range(max_tries):
        candidate = _propose(supernet, groups, keep, rng, seed * max_tries + draw, tilts)
        if _key(candidate) in seen:
            continue
        seen.add(_key(candidate))
        rough = rough_cost(candidate)
        costs.append(rough / fixed_target)
        if abs(rough / fixed_target - 1) > 3 * tolerance:
            continue
        child = derive(supernet, architecture=candidate)
        value = child_cost(child, metric)
        if abs(value / target - 1) <= tolerance:
            found.append((candidate, child, value))
            if len(found) == n:
                return found
    seen_range = f"{min(costs):.2f}..{max(costs):.2f}" if costs else "none"
    raise RuntimeError(
        f"{where}: found {len(found)} of {n} random architectures within +-{tolerance:.0%} of "
        f"the searched child's {metric} ({target:.4g}) in {max_tries} draws (their costs "
        f"ranged {seen_range} x the searched child's). Raise tolerance or max_tries, or "
        "compare at a cost the space samples more often.")


def random_baseline(supernet, child, train, n=5, seeds=(0,), metric="macs",
                    tolerance=TOLERANCE, seed=0, max_tries=2000, found=None):
    """Random children at the searched ``child``'s cost, each trained by ``train``.

    Args:
        supernet, n, metric, tolerance, seed, max_tries: see ``sample_architectures``.
        child: the searched child (a derived model carrying ``.architecture``).
        train: ``train(child, seed) -> accuracy``: the searched child's recipe.
        seeds: training seeds per random child.
        found: ``sample_architectures``' result when it was drawn already (a
            multi-worker search draws it on every worker in step); None: drawn here.

    Returns:
        ``dict(mean, std, accuracies [n][seeds], costs, target, tolerance, metric,
        architectures)``; ``mean`` / ``std`` over every random child and seed.

    Example:
        >>> r = random_baseline(supernet, child, lambda c, s: retrain(c, seed=s)[1])  # doctest: +SKIP
    """
    where = "random_baseline"
    if not callable(train):
        raise checks.ArgumentTypeError(f"{where}: train must be a callable train(child, seed) "
                                       f"-> accuracy, got {checks.show(train)}.")
    seeds = [checks.integer(where, f"seeds[{i}]", s) for i, s in
             enumerate(checks.sequence(where, "seeds", seeds, what="a list of integer seeds"))]
    if getattr(child, "architecture", None) is None:
        raise ValueError(f"{where}: child must be a derived model carrying .architecture "
                         f"(searchlayers.derive's output), got model '{child.name}' without one.")
    target = child_cost(child, metric)
    if found is None:
        found = sample_architectures(supernet, child.architecture, n, metric, tolerance,
                                     target, seed, max_tries)
    accuracies = [[float(train(random_child, s)) for s in seeds] for _, random_child, _ in found]
    flat = np.asarray(accuracies).reshape(-1)
    return dict(
        mean=float(flat.mean()),
        std=float(flat.std(ddof=1)) if flat.size > 1 else 0.0,
        accuracies=accuracies,
        costs=[c for _, _, c in found],
        target=target,
        tolerance=tolerance,
        metric=metric,
        architectures=[a.names or a.choices for a, _, _ in found],
    )


__all__ = ["TOLERANCE", "child_cost", "random_baseline", "sample_architectures"]
