"""The cost model counts every layer of the reference search spaces and their children,
and hand counts of the layers it learned last (FactorizedReduce, LayerNormalization,
Normalization); a MixedOp's expected cost at a one-hot choice is its derived layer's."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from models.bars import bars_supernet
from models.bnas import bnas_supernet
from models.darts import darts_supernet
from models.entrannas import entrannas_supernet
from models.figs import mobilenet_v2, resnet
from models.spos import spos_supernet
from searchlayers import cost
from searchlayers.layers import DARTS_OPS, FactorizedReduce, MixedOp, search_layers
from searchlayers.transforms import insert_masks

K = sl.keras
L = K.layers

# Small members of every reference space; each has a reduction (strided) part.
SPACES = {
    "darts": lambda: darts_supernet((8, 8, 1), 10, channels=4, cells=3, steps=1,
                                    multiplier=1),
    "bars": lambda: bars_supernet((8, 8, 1), 10, channels=8, stages=2, cells=1, steps=2),
    "bnas": lambda: bnas_supernet((8, 8, 1), 10, channels=4, cells=3, steps=1,
                                  multiplier=1),
    "entrannas": lambda: entrannas_supernet(channels=4, cells=3, steps=2),
    "entrannas_dst": lambda: entrannas_supernet(channels=4, cells=3, steps=2, dst=True,
                                                bottleneck=True),
    "spos": lambda: spos_supernet(stages=((8, 1, 1), (16, 1, 2)), skip=True),
    "figs_resnet": lambda: insert_masks(
        resnet((8, 8, 1), 10, stages=((8, 1, 2), (12, 1, 1)), stem=8)),
    "figs_mobilenet": lambda: insert_masks(
        mobilenet_v2((8, 8, 1), 10, blocks=((1, 8, 1), (2, 12, 2)), stem=8)),
}
# Spaces with DARTS' skip_connect: their children keep strided skips (FactorizedReduce).
WITH_SKIP = ("darts", "entrannas", "entrannas_dst")


def _favour(model, op, margin=5.0):
    """Logits that make ``op`` the argmax wherever it is a candidate."""
    sl.tie_arch_variables(model)
    for layer in search_layers(model):
        names = list(getattr(layer, "choice_names", []))
        if op in names and "logits" in layer._arch:
            logits = np.zeros(layer.arch("logits").shape, np.float32)
            logits[..., names.index(op)] = margin
            layer.arch("logits").assign(logits)


def _child(name, model):
    if name.startswith("figs"):
        return sl.derive(model, "expected")
    if name in ("bars", "spos"):  # single-path / gated: a sampled architecture
        return sl.derive(model, architecture=sl.choose(model, "sample", seed=0))
    _favour(model, "skip_connect")
    return sl.derive(model)


@pytest.fixture(scope="module")
def spaces():
    built = {}
    for name, build in SPACES.items():
        model = build()
        built[name] = (model, _child(name, model))
    return built


def _leaves(model):
    return model._flatten_layers(include_self=False, recursive=True)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_reference_supernet_and_child_are_counted_completely(spaces, name):
    supernet, child = spaces[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error", cost.CostGapWarning)
        for model in (supernet, child):
            p = cost.profile(model)
            assert p.complete, p.gap_summary()
            assert p.total.metric("macs") > 0
    if name in WITH_SKIP:  # the strided skip is there, and costs what it computes
        skips = [layer for layer in _leaves(child) if isinstance(layer, FactorizedReduce)]
        assert skips
        rows = dict((n.split("/")[-1], c) for n, _, c in cost.profile(child).rows)
        assert all(rows[s.name].float_macs > 0 for s in skips if s.name in rows)


# --- hand counts ---------------------------------------------------------------------


def test_factorized_reduce_by_hand():
    # 6x6x6 -> 3x3x6: conv_a (3 out) on the input, conv_b (3 out) on the shifted input,
    # each 1x1 stride 2 without bias over 3x3 positions; BN without gamma/beta keeps
    # its moving mean and variance.
    model = K.Sequential([K.Input((6, 6, 6)), FactorizedReduce(6, name="fr")])
    c = cost.profile(model).total
    assert c.float_macs == 2 * (3 * 3 * 6 * 3)
    assert c.float_params == 2 * (6 * 3) + 2 * 6
    # odd width and odd split: 5x5x4 -> 3x3x5, halves of 2 and 3 channels
    model = K.Sequential([K.Input((5, 5, 4)), FactorizedReduce(5, name="fr")])
    fr = model.layers[0]
    assert (fr.conv_a.filters, fr.conv_b.filters) == (2, 3)
    c = cost.profile(model).total
    assert c.float_macs == 3 * 3 * 4 * 2 + 3 * 3 * 4 * 3
    assert c.float_params == 4 * 2 + 4 * 3 + 2 * 5
    assert c.elementwise == 0 and c.binary_macs == 0


def test_layer_normalization_by_hand():
    model = K.Sequential([K.Input((4, 4, 8)), L.LayerNormalization()])
    c = cost.profile(model).total
    # fvcore's norm: 4 ops per element (mean, subtract, variance, divide) + 1 affine
    assert c.elementwise == 4 * 4 * 8 * 5 and c.float_params == 2 * 8
    assert c.metric("macs") == 0
    plain = K.Sequential([K.Input((4, 8)), L.LayerNormalization(center=False, scale=False)])
    c = cost.profile(plain).total
    assert c.elementwise == 4 * 8 * 4 and c.float_params == 0


def test_normalization_and_rescaling_by_hand():
    norm = L.Normalization(axis=-1)
    norm.adapt(np.arange(2 * 4 * 4 * 3, dtype="float32").reshape(2, 4, 4, 3))
    model = K.Sequential([K.Input((4, 4, 3)), norm, L.Rescaling(1 / 255.0, offset=-1)])
    p = cost.profile(model)
    (_, _, n), (_, _, r) = p.rows
    assert n.elementwise == 2 * 4 * 4 * 3  # subtract the mean, divide by the std
    assert n.float_params == 3 + 3 + 1  # mean, variance per channel, the sample count
    assert r.elementwise == 2 * 4 * 4 * 3 and r.params == 0
    assert p.complete and p.total.metric("macs") == 0


# --- the search's expected cost agrees with the derived layer -------------------------


def test_one_hot_strided_skip_expected_cost_equals_derived_profile():
    x = K.Input((8, 8, 6))
    op = MixedOp(list(DARTS_OPS), strides=2, name="edge")
    model = K.Model(x, op(x))
    index = op.choice_names.index("skip_connect")
    op.set_choice(index)
    expected = cost.layer_cost(op, (None, 8, 8, 6))
    child = sl.derive(model, architecture=sl.Architecture({"edge": index}))
    derived = cost.profile(child)
    assert [kind for _, kind, _ in derived.rows] == ["FactorizedReduce"]
    for metric in ("float_macs", "params", "memory_bytes", "elementwise"):
        assert float(expected.metric(metric)) == pytest.approx(
            float(derived.total.metric(metric))), metric
    assert derived.total.float_macs == 2 * (4 * 4 * 6 * 3)
    # the strided skip is no longer as cheap as a pool: it computes two 1x1 convs
    pool = cost.layer_cost(op.ops[op.choice_names.index("max_pool_3x3")], (None, 8, 8, 6))
    assert float(expected.float_macs) > float(pool.float_macs) == 0
    # and a soft distribution is the probability-weighted sum of the candidates
    op.set_choice(None)
    probs = op.probabilities().numpy()
    costs = [float(c.float_macs) for c in op.candidate_costs()]
    assert float(op.cost().float_macs) == pytest.approx(float(np.dot(probs, costs)), rel=1e-5)
    assert tf.is_tensor(op.cost().float_macs)
