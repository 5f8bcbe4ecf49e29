"""Constrained evolutionary search: limits, known optimum, determinism, costs."""

import itertools

import numpy as np
import pytest

import searchlayers as sl
from models.spos import spos_supernet
from searchlayers.evolution import ChoiceTable, cost_table, evolutionary_search

OPS = ("mb_k3_e3", "mb_k3_e6", "mb_k5_e3", "mb_k7_e6")


@pytest.fixture(scope="module")
def supernet():
    # 6 search layers x 4 choices = 4096 subnets (small enough to enumerate).
    return spos_supernet(stages=((8, 2, 1), (16, 2, 2), (16, 2, 1)), stem_channels=8,
                         head_channels=16, ops=OPS)


def _all_rows(table):
    return np.array(list(itertools.product(*[range(n) for n in table.num_choices])))


def test_cost_table_agrees_with_the_derived_models_profile(supernet):
    table = cost_table(supernet, "macs")
    assert table.values.shape == (6, 4) and table.keys[0] == "layer0"
    for row in ([0] * 6, [3, 2, 1, 0, 3, 2]):
        child = sl.derive(supernet, architecture=table.decode(row))
        assert sl.cost.profile(child).total.metric("macs") == table.total(row)
    params = cost_table(supernet, "params")
    assert params.offset > 0 and params.name == "params"


def test_never_over_the_limit_and_no_duplicates(supernet):
    table = cost_table(supernet, "macs")
    limit = table.minimum() + 0.3 * (table.maximum() - table.minimum())
    seen = []

    def scorer(choices):
        seen.extend(map(tuple, choices))
        return choices.sum(axis=1).astype(float)  # rewards expensive ops: presses the limit

    result = evolutionary_search(supernet, limit, scorer=scorer, costs=table, seed=1)
    assert len(seen) == len(set(seen)) == result.evaluated
    assert max(table.total(np.array(seen))) <= limit
    for arch in result.top:
        assert arch.meta["macs"] <= limit and table.total(table.encode(arch)) <= limit
    assert result.evaluated > 500 and len(result.history) == 20


def test_finds_the_known_optimum_of_a_constructed_scorer(supernet):
    table = cost_table(supernet, "macs")
    weights = np.random.default_rng(3).random(table.values.shape)
    scorer = lambda choices: weights[np.arange(choices.shape[1]), choices].sum(axis=1)
    limit = table.minimum() + 0.4 * (table.maximum() - table.minimum())
    rows = _all_rows(table)
    feasible = rows[table.total(rows) <= limit]
    optimum = feasible[np.argmax(scorer(feasible))]
    result = evolutionary_search(supernet, limit, scorer=scorer, costs=table, seed=0)
    assert table.encode(result.best).tolist() == optimum.tolist()
    assert result.best.meta["score"] == pytest.approx(scorer(optimum[None])[0])
    scores = [a.meta["score"] for a in result.top]
    assert scores == sorted(scores, reverse=True) and len(result.top) == 10


def test_deterministic_for_a_seed(supernet):
    table = cost_table(supernet, "params")
    limit = (table.minimum() + table.maximum()) / 2
    runs = [evolutionary_search(supernet, limit, metric="params", scorer=lambda c: -c.std(1),
                                costs=table, seed=7, generations=5) for _ in range(2)]
    assert [a.choices for a in runs[0].top] == [a.choices for a in runs[1].top]
    assert runs[0].history == runs[1].history


def test_bn_scorer_is_the_default_and_derive_builds_the_best(supernet):
    result = evolutionary_search(supernet, limit=None, generations=2, seed=0)
    assert result.best.meta["scorer"] == "bn" and result.best.meta["score"] == 6.0
    child = sl.derive(supernet, architecture=result.best)
    assert child.output_shape == (None, 10)


def test_infeasible_limit_names_limit_and_minimum(supernet):
    table = cost_table(supernet, "macs")
    with pytest.raises(ValueError, match=r"limit macs <= 1,000.*costs " + f"{table.minimum():,.6g}"):
        evolutionary_search(supernet, 1000, costs=table)
    # The exact minimum is feasible: the only subnet that meets it is found.
    result = evolutionary_search(supernet, table.minimum(), costs=table, generations=1)
    assert result.best.meta["macs"] == table.minimum()


def test_bad_arguments(supernet):
    with pytest.raises(ValueError, match="unknown scorer"):
        evolutionary_search(supernet, scorer="magic")
    with pytest.raises(ValueError, match="population"):
        evolutionary_search(supernet, population=0)
    with pytest.raises(ValueError, match="Unknown cost metric"):
        cost_table(supernet, "watts")


def test_accuracy_scorer_uses_inherited_weights(data):
    model = spos_supernet(stages=((8, 1, 1),), stem_channels=8, head_channels=8,
                          ops=("mb_k3_e3", "mb_k5_e3"))
    model.compile(loss=sl.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    result = evolutionary_search(model, scorer="accuracy", validation_data=data,
                                 population=2, generations=1, mutations=1, crossovers=1)
    assert result.evaluated == 2 and result.best.meta["scorer"] == "accuracy"
    assert 0.0 <= result.best.meta["score"] <= 1.0
    assert int(model.get_layer("layer0").choice.numpy()) == -1  # choice cleared


def test_choice_table_groups_shared_keys():
    x = sl.keras.Input((4, 4, 4))
    a = sl.MixedOp(["mb_k3_e3", "mb_k5_e3"], mode="uniform", arch_key="k", name="a")(x)
    b = sl.MixedOp(["mb_k3_e3", "mb_k5_e3"], mode="uniform", arch_key="k", name="b")(a)
    model = sl.keras.Model(x, b)
    table = ChoiceTable.from_layers(model, lambda layer: [1.0, 2.0])
    assert table.keys == ["k"] and table.values.tolist() == [[2.0, 4.0]]
    assert table.decode([1]).choices == {"a": 1, "b": 1}
