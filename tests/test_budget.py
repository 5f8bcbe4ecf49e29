"""Budgets as constraints: FLOPsRegularizer(mode="target") and budget.fit land the
derived model's exact cost within 5 % of the asked one (FiGS and a DARTS-family
search on digits); an unreachable budget is said once, with the closest cost."""

import warnings

import numpy as np
import pytest

import searchlayers as sl
from searchlayers import budget, cost, datasets
from searchlayers._keras import keras
from searchlayers.transforms import insert_masks

from examples import darts_search
from models import bars
from models.figs import resnet

K = sl.keras


def _figs_search(fraction):
    keras.utils.set_random_seed(0)
    base = resnet(datasets.info("digits").input_shape, 10)
    full = float(sl.regularizers.expected_cost(base, "params"))
    supernet = insert_masks(base)
    supernet.compile(sl.joint_optimizer(keras.optimizers.legacy.Adam(3e-3),
                                        keras.optimizers.legacy.Adam(0.05)),
                     "sparse_categorical_crossentropy")
    reg = sl.FLOPsRegularizer(budget=fraction * full, metric="params", mode="target",
                              strength=0.0)
    train = datasets.load("digits", "train", batch_size=32, seed=0).repeat()
    history = supernet.fit(train, epochs=2, steps_per_epoch=6, verbose=0, callbacks=[reg])
    return supernet, full, reg, history.history


@pytest.fixture(scope="module")
def figs():
    return _figs_search(0.5)


@pytest.fixture(scope="module")
def darts():
    keras.utils.set_random_seed(0)
    supernet = darts_search.build("snas", channels=4, cells=3, steps=1)
    full = float(sl.regularizers.expected_cost(supernet, "macs"))
    reg = sl.FLOPsRegularizer(budget=0.5 * full, metric="macs", mode="target", strength=0.0)
    supernet, history = darts_search.search("snas", 1, supernet=supernet, batch_size=32,
                                            verbose=0, extra_callbacks=[reg],
                                            steps_per_epoch=3)
    return supernet, full, reg, history


def _check_landed(supernet, target, metric):
    with warnings.catch_warnings():
        warnings.simplefilter("error", budget.BudgetWarning)  # a reachable budget: no notice
        fit = budget.fit(supernet, target, metric)
    child = sl.derive(supernet, architecture=fit.architecture)
    exact = float(np.asarray(cost.profile(child).total.metric(metric)))
    assert exact == fit.got  # "got" is the derived model's exact cost
    assert abs(exact / target - 1) <= 0.05, fit.to_dict()
    assert fit.on_budget and fit.message == ""
    return fit


def test_figs_target_mode_lands_within_5_percent(figs):
    supernet, full, reg, history = figs
    # the multiplier rose while the expected cost was over the budget
    assert history["expected_params"][0] > reg.budget and history["flops_strength"][0] > 0
    fit = _check_landed(supernet, 0.5 * full, "params")
    assert fit.lowest < fit.got < fit.highest == pytest.approx(full)


def test_darts_family_target_mode_lands_within_5_percent(darts):
    supernet, full, reg, history = darts
    assert history["expected_macs"][-1] > reg.budget and history["flops_strength"][-1] > 0
    fit = _check_landed(supernet, 0.5 * full, "macs")
    # the expected costs of the search are fractional; the derived one is a count
    assert fit.got == int(fit.got)


def test_unreachable_budget_said_once_with_the_closest_cost(darts):
    supernet, full, _, _ = darts
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = budget.fit(supernet, 0.001 * full, "macs")
    notices = [w for w in caught if issubclass(w.category, budget.BudgetWarning)]
    assert len(notices) == 1
    assert fit.got == fit.lowest and not fit.on_budget
    # the closest child still computes from its input; every edge "none" is cheaper
    # but a constant (its nodes, then its cells, dropped): never derived to a budget
    assert budget.connected(sl.derive(supernet, architecture=fit.architecture))
    none = sl.choose(supernet, "argmax", rule=lambda layer: 0)
    assert not budget.connected(sl.derive(supernet, architecture=none))
    assert budget.exact_cost(supernet, none, "macs") < fit.got
    text = str(notices[0].message)
    assert text == fit.message
    assert "cannot be met" in text and f"{fit.got:,.0f}" in text and "cheapest" in text
    with pytest.warns(budget.BudgetWarning, match="dearest"):
        over = budget.fit(supernet, 100 * full, "macs")
    assert over.got == over.highest


def test_clamp_moves_an_unreachable_search_target_once(darts):
    """A search asked for less than the cheapest child worth deriving searches for
    that child's cost (said once); a reachable target stays."""
    supernet, full, _, _ = darts
    low, high = budget.achievable(supernet, "macs")
    # DARTS: every edge "none" computes a constant, so the floor is the cheapest child
    # that removes no edge (all pools: no MACs of their own)
    pools = sl.choose(supernet, "argmax", rule=lambda layer: 1)
    assert low == budget.exact_cost(supernet, pools, "macs") and high > full
    with warnings.catch_warnings():
        warnings.simplefilter("error", budget.BudgetWarning)
        assert budget.clamp(supernet, (low + high) / 2, "macs") == ((low + high) / 2, "")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        target, message = budget.clamp(supernet, 0.001 * full, "macs", where="demo")
    assert [str(w.message) for w in caught] == [message]
    assert target == low
    assert message.startswith("demo: budget") and "removes no edge" in message
    assert f"searching for {low:,.0f}" in message
    # and fit, asked for the floor, lands on it (a child that computes)
    fit = budget.fit(supernet, low, "macs")
    assert fit.on_budget
    assert budget.connected(sl.derive(supernet, architecture=fit.architecture))


def test_bars_space_fit_lands_within_5_percent():
    """Gates scale their stage's cost (no per-choice table): fit linearizes the
    exact cost around its pick; an unreachable target is clamped to the cheapest
    child (depth 0, narrowest widths: it still computes, the cells' shortcut)."""
    keras.utils.set_random_seed(1)
    net = bars.bars_supernet(datasets.info("digits").input_shape, 10, channels=4, stages=2,
                             cells=1, steps=1)
    for layer in sl.regularizers.arch_groups(net).values():  # a searched-looking state
        logits = layer.arch("logits")
        logits.assign(np.random.default_rng(0).normal(0, 1, logits.shape).astype("float32"))
    full = float(sl.regularizers.expected_cost(net, "equivalent_ops"))
    _check_landed(net, 0.5 * full, "equivalent_ops")
    low, _ = budget.achievable(net, "equivalent_ops")
    with pytest.warns(budget.BudgetWarning, match="cannot be met"):
        assert budget.clamp(net, 0.5 * low, "equivalent_ops")[0] == low


def test_target_mode_multiplier_by_hand():
    """strength = integral + damping * v, integral += rate * v * every / steps."""
    x = K.Input((4, 4, 1))
    h = sl.FiGSMask(name="m")(K.layers.Conv2D(4, 1, use_bias=False, name="c")(x))
    model = K.Model(x, h)
    model.get_layer("m").arch("logits").assign([80.0, 80.0, 80.0, 80.0])  # all kept
    full = 4.0  # params of c: 1 x 4
    reg = sl.FLOPsRegularizer(budget=2.0, metric="params", mode="target", strength=0.5,
                              rate=2.0, damping=3.0, every=5)
    reg.set_model(model)
    reg.set_params({"steps": 10, "epochs": 1, "verbose": 0})
    reg.on_train_begin()
    v = full / 2.0 - 1.0  # relative violation 1.0
    reg.on_train_batch_end(0)
    assert float(reg.strength.numpy()) == pytest.approx(0.5 + 2.0 * v * 5 / 10 + 3.0 * v)
    reg.on_train_batch_end(3)  # not a multiple of every: unchanged
    assert float(reg.strength.numpy()) == pytest.approx(0.5 + 1.0 + 3.0)
    model.get_layer("m").arch("logits").assign([80.0, -80.0, -80.0, -80.0])  # 1 of 4 kept
    reg.on_train_batch_end(5)  # v = 1/2 - 1: the integral falls, the P part turns negative
    assert float(reg.strength.numpy()) == pytest.approx(1.5 + 2.0 * -0.5 * 0.5 + 3.0 * -0.5,
                                                        abs=1e-4)
    assert sl.FLOPsRegularizer.from_config(reg.get_config()).damping == 3.0


def _bias_folding_net():
    """mask -> Concatenate -> BN (beta != 0) -> ReLU -> bias-free 1x1 conv: a
    dropped channel is a non-zero constant after BN, which derive folds into a
    bias the cost model does not count (DenseNet's pattern)."""
    x = K.Input((4, 4, 2))
    a = sl.FiGSMask(name="a_mask")(K.layers.Conv2D(6, 1, name="a")(x))
    b = sl.FiGSMask(name="b_mask")(K.layers.Conv2D(6, 1, name="b")(x))
    h = K.layers.BatchNormalization(beta_initializer="ones", name="bn")(
        K.layers.Concatenate(name="cat")([a, b]))
    y = K.layers.Conv2D(16, 1, use_bias=False, name="c")(K.layers.ReLU(name="relu")(h))
    net = K.Model(x, K.layers.Dense(3, name="head")(K.layers.Flatten(name="flat")(y)))
    rng = np.random.default_rng(0)
    for mask in sl.layers.figs_masks(net):
        mask.arch("logits").assign(rng.normal(size=6).astype("float32"))
    return net


def test_channel_fit_equals_an_all_exact_bisection_where_the_cost_model_is_off():
    """budget.fit brackets the target with ``fixed_cost`` and bisects on with exact
    costs; it lands where a bisection on exact costs alone (every child derived)
    lands, also where the cost model misses derive's folded biases."""
    net = _bias_folding_net()
    masks = sl.layers.figs_masks(net)
    architecture, n = budget._channel_architectures(net, masks, 1.0, "params")
    exact = [budget.exact_cost(net, architecture(k), "params") for k in range(n + 1)]
    model = [budget.fixed_cost(net, architecture(k), "params") for k in range(n + 1)]
    # targets the cost model brackets wrongly: above its count of child k, but nearer
    # to child k - 1's exact cost than to child k's (derive adds 16 biases, more than
    # half a channel's 23 parameters)
    targets = [m + 1 for e, m, below in zip(exact[1:], model[1:], exact)
               if below < m + 1 < (below + e) / 2]
    assert exact == sorted(exact) and len(targets) >= 3
    start = budget.exact_cost(net, sl.choose(net, "expected"), "params")
    for target in targets:
        fit = budget.fit(net, target, "params")
        above = next(k for k in range(n + 1) if exact[k] >= target)  # the exact bracket
        want = min([exact[above - 1], exact[above], start], key=lambda c: abs(c - target))
        assert abs(fit.got - target) == abs(want - target), (target, fit.to_dict())
        assert fit.got == budget.exact_cost(net, fit.architecture, "params")
    assert (fit.lowest, fit.highest) == (exact[0], exact[-1])
