import math

import numpy as np
import pytest

from searchlayers import decision, planted
from searchlayers._keras import keras


def _dependent_positions(sub, x, pixel):
    """Output positions (row, col) of ``sub`` that change when ``pixel`` flips in any image."""
    flipped = x.copy()
    flipped[:, pixel[0], pixel[1], 0] = 1.0 - flipped[:, pixel[0], pixel[1], 0]
    diff = np.abs(sub(flipped, training=False).numpy() - sub(x, training=False).numpy())
    return {tuple(p) for p in np.argwhere(diff.max(axis=(0, 3)) > 1e-6)}


def test_receptive_field_task_construction():
    """Only conv_5x5 has an output position that sees both label pixels (the
    planted answer), checked by flipping each pixel through every fixed
    candidate; the label is their XOR; random picks the answer 1 time in 6."""
    x, y = planted.receptive_field_data(64, seed=3)
    np.testing.assert_array_equal(y, np.logical_xor(x[:, 3, 2, 0], x[:, 3, 5, 0]))
    net = planted.receptive_field_supernet()
    edge = net.get_layer("edge")
    sub = keras.Model(net.input, edge.output)
    both = {}
    for i, name in enumerate(edge.choice_names):
        edge.set_choice(i)
        both[name] = _dependent_positions(sub, x, (3, 2)) & _dependent_positions(sub, x, (3, 5))
    assert both.pop("conv_5x5") == {(r, c) for r in range(1, 6) for c in (3, 4)}
    assert both == {n: set() for n in planted.RF_CANDIDATES if n != "conv_5x5"}
    assert planted.chance(net) == 1 / 6
    # untrained, the derived pick is the argmax of the 1e-3 randn initial logits
    net = planted.receptive_field_supernet(seed=1)  # seed 0 starts at conv_5x5 (1e-3 randn)
    assert planted.receptive_field_choice(net) == "avg_pool_3x3"


def test_channel_task_construction():
    x, y = planted.channel_data(1000, seed=0)
    np.testing.assert_array_equal(y, x[:, :3].sum(1) > 0)
    net = planted.channel_supernet()
    assert planted.chance(net) == 2.0 ** -8
    assert planted.chance(net, k=3) == 1 / math.comb(8, 3)
    # untrained: every channel kept (initial logit 2.5), not the planted set
    assert planted.channel_choice(net) == tuple(range(8))


def test_darts_recovers_the_planted_op():
    r = planted.search_receptive_field("darts", seed=1, epochs=10, lr=0.003)
    assert r["initial"] == "avg_pool_3x3" and r["choice"] == "conv_5x5" and r["recovered"]
    assert r["steps"] == 320 and r["arch_lr"] == pytest.approx(6 / 320)
    assert r["accuracy"] > 0.95
    assert r["max_prob"] >= decision.CATEGORICAL_PROB  # the auto schedule decides


def test_figs_keeps_exactly_the_signal_channels():
    r = planted.search_channels(seed=0, epochs=20, lr=0.01, warmup=4, strength=0.1,
                                temperature=0.1)
    assert r["choice"] == [0, 1, 2] and r["recovered"]
    assert r["steps"] == 16 * 32 and r["arch_lr"] == 0.2  # (20 - 4) epochs x 32 steps
    # the auto schedule's commit (schedules.figs_commit) ends every channel at 0 / 1
    # (decision.MASK_PROB: P(mask = 1) <= 0.01 or >= 0.99) within those steps
    assert decision.MASK_PROB == 0.99 and r["decided_share"] == 1.0
    assert r["max_prob"] >= decision.MASK_PROB


def test_depth_task_construction():
    """Depth 2 is the shallowest stage output that sees both pixels 4 apart."""
    x, y = planted.receptive_field_data(64, seed=5, distance=4)
    np.testing.assert_array_equal(y, np.logical_xor(x[:, 3, 2, 0], x[:, 3, 6, 0]))
    net = planted.depth_supernet()
    gate = net.get_layer("gate")
    sub = keras.Model(net.input, gate.output)
    both = []
    for d in range(gate.depths):
        gate.set_choice(d)
        both.append(_dependent_positions(sub, x, (3, 2)) & _dependent_positions(sub, x, (3, 6)))
    assert both[:2] == [set(), set()]
    assert both[2] == {(r, 4) for r in range(1, 6)}  # the 5x5 field centred between them
    assert both[3] >= both[2]
    assert planted.chance(net) == 1 / 4 == 1 / (planted.DEPTH_CELLS + 1)


def test_width_task_construction():
    """Width 0.5 passes exactly the 4 signal features; random picks it 1 time in 4."""
    net = planted.width_supernet()
    gate = net.get_layer("width")
    x, _ = planted.channel_data(16, seed=1)
    seen = []
    for i in range(4):
        gate.set_choice(i)
        base = net(x, training=False).numpy()
        seen.append([j for j in range(8) if not np.allclose(
            net(x + 5.0 * np.eye(8, dtype=np.float32)[j], training=False).numpy(), base)])
    assert seen == [[0, 1], [0, 1, 2, 3], [0, 1, 2, 3, 4, 5], list(range(8))]
    assert gate.choice_names[1] == planted.WIDTH_ANSWER and planted.chance(net) == 1 / 4


def test_bn_nas_candidates_construction():
    """Of the MobileNetV2 blocks only the 5x5 one sees both pixels 3 apart."""
    x, _ = planted.receptive_field_data(64, seed=4)
    net = planted.receptive_field_supernet("uniform", candidates=planted.BN_CANDIDATES)
    edge = net.get_layer("edge")
    sub = keras.Model(net.input, edge.output)
    both = {}
    for i, name in enumerate(edge.choice_names):
        edge.set_choice(i)
        both[name] = bool(_dependent_positions(sub, x, (3, 2))
                          & _dependent_positions(sub, x, (3, 5)))
    assert both == {"mb_k3_e3": False, "mb_k3_e6": False, "mb_k5_e3": True}
    assert planted.BN_ANSWER == "mb_k5_e3" and planted.chance(net) == 1 / 3


def test_entrannas_untrained_cell_does_not_hold_the_answer():
    """The planted op is not where the derivation's tie-break lands; chance 1/5."""
    net = planted.entrannas_supernet()
    assert planted.entrannas_choice(net) == "dil_conv_3x3"
    assert planted.chance(net) == 1 / 5


def test_figs_commit_to_budget_ends_decided_on_the_fitted_child():
    # budget: the 3-channel child's params (Dense(3 -> 16) + Dense(16 -> 2) = 64 + 34),
    # so the fitted child is the planted answer {0, 1, 2} and the masks commit to it
    from searchlayers import budget, regularizers, schedules
    from searchlayers.callbacks import ArchWarmup, FLOPsRegularizer
    from searchlayers.search import SearchModel

    model = planted.channel_supernet(seed=0, temperature=0.1)
    x, y = planted.channel_data(2048, seed=0)
    xv, yv = planted.channel_data(2048, seed=1000)
    pairs = planted._pairs(x, y, xv, yv, 64, 0)
    epochs, warmup, target = 12, 4, 3 * 16 + 16 + 16 * 2 + 2
    steps = (epochs - warmup) * 32
    search = SearchModel(model, bilevel=True, arch_optimizer=keras.optimizers.Adam(
        schedules.learning_rate("figs", steps), beta_1=0.5, beta_2=0.999))
    search.compile(keras.optimizers.Adam(0.01),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    commit = schedules.figs_commit(epochs * 32).to_budget(target, "params")
    cost = FLOPsRegularizer(budget=target, metric="params", mode="target", strength=0.1)
    search.fit(pairs, epochs=epochs, verbose=0, callbacks=[ArchWarmup(warmup), cost, commit])
    d = decision.layer_decision(model.get_layer("mask"))
    assert d["decided_share"] == 1.0  # every channel at P <= 0.01 or >= 0.99
    assert planted.channel_choice(model) == (0, 1, 2)  # the decided masks ...
    fit = budget.fit(model, target, "params")
    assert fit.architecture.choices["mask"] == [0, 1, 2] and fit.got == target  # ... are the fit
    assert float(regularizers.expected_cost(model, "params")) == pytest.approx(target, rel=0.01)
