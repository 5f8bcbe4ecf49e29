"""Constrained evolutionary search over the discrete choices of a supernet.

SPOS' / BN-NAS' search (the authors' code): a population of 50 random subnets
under the cost limit; each generation keeps the top 10 seen so far, makes 25
mutations (every layer re-drawn with probability 0.1) and 25 uniform
crossovers of two top parents, tops the population up with random subnets,
and scores the new ones; 20 generations score about 1000 subnets. Duplicates
(of anything seen before) and subnets over the limit are rejected; mutation,
crossover and random filling give up after 10x their target number of tries.

Costs come from one ``ChoiceTable`` built once from the cost model
(``searchlayers.cost``): ``MixedOp.candidate_costs()`` per search layer and
choice, plus the fixed layers' cost from ``cost.profile``; a subnet's cost is
one gather and sum. Scores come from a pluggable scorer: ``"bn"`` (default, the
BN indicator of ``searchlayers.bn_score``, vectorised), ``"accuracy"``
(inherited weights on validation data, one ``evaluate`` per subnet, the SPOS
baseline), or any callable ``scorer(choices) -> scores`` taking an ``[N,
rows]`` int array of choice indices (rows: ``table.keys``) and returning ``N``
numbers, higher is better.

The result's architectures are ``searchlayers.derive.Architecture`` records
(choices keyed by layer name); ``derive(model, architecture=result.best)``
builds the subnet. A run is deterministic for a ``seed``.

Example:
    >>> from models.spos import spos_supernet
    >>> from searchlayers import evolution
    >>> model = spos_supernet(stages=((8, 2, 1), (16, 2, 2)))
    >>> costs = evolution.cost_table(model, "macs")
    >>> limit = (costs.minimum() + costs.maximum()) / 2
    >>> result = evolution.evolutionary_search(model, limit, generations=3, seed=0)
    >>> result.best.meta["macs"] <= limit
    True
"""

import dataclasses
import time

import numpy as np

from searchlayers import checks
from searchlayers import cost as cost_model
from searchlayers.architecture import Architecture
from searchlayers.derive import apply_architecture
from searchlayers.layers.base import search_layers

SCORERS = ("bn", "accuracy")


@dataclasses.dataclass
class ChoiceTable:
    """A number per (row, choice); a subnet's total is a gather and a sum.

    Rows are search layers, or groups of layers sharing an ``arch_key`` (they
    take one choice together; a row's value is the sum over its layers).
    ``values`` is ``[rows, max choices]``, NaN past a row's last choice;
    ``offset`` is added to every total (e.g. the fixed layers' cost).

    Example:
        >>> t = ChoiceTable(["a", "b"], [["a"], ["b"]], [["x", "y"], ["x", "y", "z"]],
        ...                 np.array([[1.0, 2.0, np.nan], [10.0, 20.0, 30.0]]), offset=0.5)
        >>> t.total([[0, 2], [1, 0]]).tolist(), t.minimum(), t.maximum()
        ([31.5, 12.5], 11.5, 32.5)
    """

    keys: list
    layers: list
    choice_names: list
    values: np.ndarray
    name: str = "value"
    offset: float = 0.0

    @classmethod
    def from_layers(cls, model, fn, name="value", offset=0.0):
        """One row per ``arch_key`` (or layer name); ``fn(layer)`` gives its per-choice values."""
        groups = {}
        for layer in search_layers(model):
            if not hasattr(layer, "num_choices"):
                raise ValueError(
                    f"ChoiceTable: search layer '{layer.name}' ({type(layer).__name__}) has "
                    "no discrete list of candidates (num_choices); only MixedOp-like layers "
                    "can be searched by evolution."
                )
            groups.setdefault(layer.arch_key or layer.name, []).append(layer)
        if not groups:
            raise ValueError(f"ChoiceTable: model '{model.name}' has no search layers.")
        width = max(layers[0].num_choices for layers in groups.values())
        values = np.full((len(groups), width), np.nan)
        for r, (key, layers) in enumerate(groups.items()):
            n = layers[0].num_choices
            if any(layer.num_choices != n for layer in layers):
                raise ValueError(
                    f"ChoiceTable: layers sharing arch_key {key!r} have different numbers of "
                    f"choices: {[(l.name, l.num_choices) for l in layers]}."
                )
            values[r, :n] = np.sum([np.asarray(fn(layer), np.float64) for layer in layers], axis=0)
        return cls(
            keys=list(groups),
            layers=[[layer.name for layer in layers] for layers in groups.values()],
            choice_names=[list(layers[0].choice_names) for layers in groups.values()],
            values=values,
            name=name,
            offset=float(offset),
        )

    @property
    def num_choices(self):
        """Number of choices per row, an int array."""
        return np.array([len(names) for names in self.choice_names], dtype=np.int64)

    def total(self, choices):
        """Totals of ``choices`` (``[N, rows]`` -> ``[N]``; one row -> a float)."""
        c = np.asarray(choices, dtype=np.int64)
        single = c.ndim == 1
        c = np.atleast_2d(c)
        out = self.values[np.arange(c.shape[1]), c].sum(axis=1) + self.offset
        return float(out[0]) if single else out

    def minimum(self):
        """The smallest possible total (each row's smallest value)."""
        return float(np.nanmin(self.values, axis=1).sum() + self.offset)

    def maximum(self):
        """The largest possible total."""
        return float(np.nanmax(self.values, axis=1).sum() + self.offset)

    def argmin(self):
        """The choices with the smallest total."""
        return np.nanargmin(self.values, axis=1).astype(np.int64)

    def encode(self, architecture):
        """The choice indices (one per row) of an ``Architecture``."""
        out = []
        for layers in self.layers:
            if layers[0] not in architecture.choices:
                raise ValueError(f"Architecture has no choice for search layer '{layers[0]}'.")
            out.append(int(architecture.choices[layers[0]]))
        return np.array(out, dtype=np.int64)

    def decode(self, choices, meta=None):
        """The ``Architecture`` (choices keyed by layer name) of one row of indices."""
        arch_choices, names = {}, {}
        for c, layers, labels in zip(choices, self.layers, self.choice_names):
            for layer in layers:
                arch_choices[layer] = int(c)
                names[layer] = labels[int(c)]
        return Architecture(arch_choices, names, dict(meta or {}))


def cost_table(model, metric="macs"):
    """The ``ChoiceTable`` of a supernet's cost: per search layer and choice, plus
    the fixed layers' total as ``offset`` (one ``cost.profile`` of the model).

    Example:
        >>> from models.spos import spos_supernet
        >>> t = cost_table(spos_supernet(stages=((8, 1, 1),)), "params")
        >>> t.values.shape, t.offset > 0
        ((1, 6), True)
    """
    cost_model.Cost.zero().metric(metric)  # unknown metric: ValueError naming the allowed ones
    layers = search_layers(model)
    kinds = {layer.name: type(layer).__name__ for layer in layers}
    profile = cost_model.profile(model)
    fixed = 0.0
    for name, kind, c in profile.rows:
        if kinds.get(name.split("/")[-1]) == kind:
            continue  # a search layer: counted per choice
        fixed += float(np.asarray(c.metric(metric)))

    def per_choice(layer):
        return [float(np.asarray(c.metric(metric))) for c in layer.candidate_costs()]

    return ChoiceTable.from_layers(model, per_choice, metric, offset=fixed)


class BNScorer:
    """The BN indicator (``bn_score.score_table``), read once; vectorised scoring.

    Example:
        >>> from models.spos import spos_supernet
        >>> scorer = BNScorer(spos_supernet(stages=((8, 2, 1),)))
        >>> scorer(np.zeros([3, 2], dtype=int)).tolist()
        [2.0, 2.0, 2.0]
    """

    name = "bn"

    def __init__(self, model, missing=None):
        from searchlayers import bn_score

        self.table = bn_score.score_table(model, missing=missing)

    def __call__(self, choices):
        return self.table.total(np.atleast_2d(choices))


class AccuracyScorer:
    """SPOS' baseline: each subnet's validation metric with inherited weights.

    Fixes the supernet to each subnet (``apply_architecture``), runs
    ``model.evaluate`` on ``validation_data`` (a dataset or an ``(x, y)`` pair)
    and returns ``metric`` (``"loss"`` is negated: higher is better). The model
    must be compiled. The fixed choice is cleared afterwards.

    Example:
        >>> scorer = AccuracyScorer(supernet, (x_val, y_val))  # doctest: +SKIP
    """

    name = "accuracy"

    def __init__(self, model, validation_data, metric="accuracy", steps=None):
        if getattr(model, "compiled_loss", None) is None:
            raise ValueError(f"AccuracyScorer: model '{model.name}' must be compiled.")
        if validation_data is None:
            raise ValueError("AccuracyScorer needs validation_data (a dataset or (x, y)).")
        self.model, self.data, self.metric, self.steps = model, validation_data, metric, steps
        self.table = ChoiceTable.from_layers(model, lambda layer: np.zeros(layer.num_choices))

    def _evaluate(self):
        kwargs = dict(steps=self.steps, verbose=0, return_dict=True)
        if isinstance(self.data, (tuple, list)):
            result = self.model.evaluate(*self.data[:2], **kwargs)
        else:
            result = self.model.evaluate(self.data, **kwargs)
        if self.metric not in result:
            raise ValueError(
                f"AccuracyScorer: model '{self.model.name}' reports {sorted(result)}, not "
                f"{self.metric!r}; compile it with that metric or pass metric=."
            )
        value = float(result[self.metric])
        return -value if self.metric == "loss" else value

    def __call__(self, choices):
        out = []
        try:
            for row in np.atleast_2d(choices):
                apply_architecture(self.model, self.table.decode(row))
                out.append(self._evaluate())
        finally:
            apply_architecture(self.model, None)
        return np.array(out, dtype=np.float64)


@dataclasses.dataclass
class SearchResult:
    """What ``evolutionary_search`` found.

    ``best`` and ``top`` (best first) are ``Architecture`` records whose
    ``meta`` holds the score, the cost (under the metric's name), the limit and
    the scorer; ``history`` has one entry per generation; ``evaluated`` counts
    the subnets scored; ``costs`` is the cost ``ChoiceTable``.
    """

    best: Architecture
    top: list
    history: list
    evaluated: int
    costs: ChoiceTable
    seconds: float = 0.0


def _check_count(value, what, minimum=0):
    return checks.integer("evolutionary_search", what, value, low=minimum)


def _make_scorer(scorer, model, validation_data, missing):
    if callable(scorer):
        return scorer
    if scorer == "bn":
        return BNScorer(model, missing=missing)
    if scorer == "accuracy":
        return AccuracyScorer(model, validation_data)
    raise ValueError(
        f"evolutionary_search: unknown scorer {scorer!r}; allowed: {', '.join(SCORERS)} or "
        "a callable scorer(choices) -> scores."
    )


class _Search:
    """The mutable state of one run (the population bookkeeping)."""

    def __init__(self, costs, limit, rng, max_tries_factor):
        self.costs, self.limit, self.rng = costs, limit, rng
        self.n = costs.num_choices
        self.factor = max_tries_factor
        self.seen = set()
        self.rows, self.scores, self.found_in = [], [], []

    def _accept(self, child):
        key = tuple(int(c) for c in child)
        if key in self.seen:
            return False
        if self.limit is not None and self.costs.total(child) > self.limit:
            return False
        self.seen.add(key)
        return True

    def _random_row(self):
        return np.floor(self.rng.random(len(self.n)) * self.n).astype(np.int64)

    def random(self, count):
        out, tries = [], 0
        while len(out) < count and tries < self.factor * count:
            tries += 1
            child = self._random_row()
            if self._accept(child):
                out.append(child)
        return out

    def mutate(self, parents, count, prob):
        out, tries = [], 0
        while len(out) < count and tries < self.factor * count:
            tries += 1
            parent = parents[self.rng.integers(len(parents))]
            mask = self.rng.random(len(self.n)) < prob
            child = np.where(mask, self._random_row(), parent)
            if self._accept(child):
                out.append(child)
        return out

    def crossover(self, parents, count):
        out, tries = [], 0
        while len(out) < count and tries < self.factor * count:
            tries += 1
            a = parents[self.rng.integers(len(parents))]
            b = parents[self.rng.integers(len(parents))]
            child = np.where(self.rng.random(len(self.n)) < 0.5, a, b)
            if self._accept(child):
                out.append(child)
        return out

    def score(self, rows, scorer, generation):
        if not rows:
            return
        values = np.asarray(scorer(np.stack(rows)), dtype=np.float64).reshape(-1)
        if values.shape[0] != len(rows):
            raise ValueError(
                f"evolutionary_search: the scorer returned {values.shape[0]} scores for "
                f"{len(rows)} subnets."
            )
        if np.isnan(values).all():
            raise FloatingPointError(
                f"evolutionary_search: the scorer gave NaN for all {len(rows)} subnets of "
                f"generation {generation}, so none can be ranked; allowed: finite scores "
                "(check the scorer's validation data for NaN/inf, or give BN scoring a "
                "`missing` value for candidates without BatchNorm).")
        self.rows += rows
        self.scores += values.tolist()
        self.found_in += [generation] * len(rows)

    def top(self, k):
        scores = np.array(self.scores)
        scores = np.where(np.isnan(scores), -np.inf, scores)
        order = np.lexsort((np.arange(len(scores)), -scores))  # best first, then oldest
        return [int(i) for i in order[:k]]


def evolutionary_search(model, limit=None, metric="macs", scorer="bn", population=50,
                        top_k=10, mutations=25, crossovers=25, mutation_prob=0.1,
                        generations=20, seed=0, validation_data=None, missing=None,
                        max_tries_factor=10, costs=None):
    """Searches the supernet's subnets with ``cost <= limit``, maximizing the score.

    Args:
        model: a built supernet whose search layers are MixedOps.
        limit: the largest allowed cost (``metric``); None: unconstrained.
        metric: ``searchlayers.cost`` metric: "macs", "params", "equivalent_ops", ...
        scorer: "bn", "accuracy" (needs ``validation_data`` and a compiled model),
            or a callable ``scorer(choices [N, rows]) -> [N] scores``.
        population, top_k, mutations, crossovers, mutation_prob, generations:
            the evolution's sizes (defaults: the BN-NAS / SPOS code).
        seed: seed of the numpy Generator; the same seed gives the same result.
        missing: BN score of candidates without a BN (see ``bn_score.score_table``).
        max_tries_factor: mutation / crossover / random fill give up after this
            times their target number of tries.
        costs: a precomputed ``cost_table(model, metric)`` (reused, not recounted).

    Returns:
        a ``SearchResult``; ``result.best`` is an ``Architecture``.

    Raises:
        ValueError: when no subnet can meet ``limit`` (it names the limit and the
            smallest achievable cost), or for bad arguments.

    Example:
        >>> from models.spos import spos_supernet
        >>> model = spos_supernet(stages=((8, 2, 1),))
        >>> evolutionary_search(model, limit=1.0)
        Traceback (most recent call last):
        ...
        ValueError: evolutionary_search: no subnet meets the limit macs <= 1: the cheapest ...
    """
    start = time.perf_counter()
    population = _check_count(population, "population", 1)
    top_k = _check_count(top_k, "top_k", 1)
    mutations = _check_count(mutations, "mutations")
    crossovers = _check_count(crossovers, "crossovers")
    generations = _check_count(generations, "generations")
    max_tries_factor = _check_count(max_tries_factor, "max_tries_factor", 1)
    checks.number("evolutionary_search", "mutation_prob", mutation_prob, low=0, high=1)
    limit = checks.number("evolutionary_search", "limit", limit, low=0, low_open=True,
                          none_ok=True)
    costs = cost_table(model, metric) if costs is None else costs
    if costs.name != metric:
        raise ValueError(
            f"evolutionary_search: the given cost table counts {costs.name!r}, not {metric!r}."
        )
    if limit is not None:
        limit = float(limit)
        cheapest = costs.minimum()
        if cheapest > limit:
            raise ValueError(
                f"evolutionary_search: no subnet meets the limit {metric} <= {limit:,.6g}: "
                f"the cheapest subnet of model '{model.name}' costs {cheapest:,.6g} {metric} "
                "(its fixed layers alone cost "
                f"{costs.offset:,.6g}). Raise the limit to at least {cheapest:,.6g}."
            )
    score_fn = _make_scorer(scorer, model, validation_data, missing)
    state = _Search(costs, limit, np.random.default_rng(seed), max_tries_factor)

    first = state.random(population)
    if not first:  # random draws all failed: start from the cheapest subnet
        cheapest_row = costs.argmin()
        state.seen.add(tuple(int(c) for c in cheapest_row))
        first = [cheapest_row]
    state.score(first, score_fn, 0)
    history = []
    for generation in range(generations):
        top = state.top(top_k)
        top_scores = [state.scores[i] for i in top]
        history.append(dict(generation=generation, best_score=top_scores[0],
                            mean_top_score=float(np.mean(top_scores)),
                            evaluated=len(state.rows)))
        parents = [state.rows[i] for i in top]
        children = state.mutate(parents, mutations, float(mutation_prob))
        children += state.crossover(parents, crossovers)
        children += state.random(max(population - len(children), 0))
        state.score(children, score_fn, generation + 1)

    scorer_name = getattr(score_fn, "name", getattr(score_fn, "__name__", type(score_fn).__name__))
    top = []
    for i in state.top(top_k):
        row = state.rows[i]
        meta = {"score": state.scores[i], metric: costs.total(row), "limit": limit,
                "metric": metric, "scorer": scorer_name, "generation": state.found_in[i],
                "seed": seed, "strategy": "evolution"}
        top.append(costs.decode(row, meta))
    return SearchResult(best=top[0], top=top, history=history, evaluated=len(state.rows),
                        costs=costs, seconds=time.perf_counter() - start)


__all__ = [
    "AccuracyScorer",
    "BNScorer",
    "ChoiceTable",
    "SCORERS",
    "SearchResult",
    "cost_table",
    "evolutionary_search",
]
