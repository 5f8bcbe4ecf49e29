"""WidthGate and GumbelDepthGate: relaxation, hand-computed expected cost, derive
parity (supernet under a fixed choice vs the derived model), persistence,
MirroredStrategy, bad input."""

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from searchlayers import cost, relax
from searchlayers import regularizers as reg
from searchlayers.layers import GumbelDepthGate, QuantConv, WidthGate
from conftest import mirrored_strategy

K = sl.keras
RNG = np.random.default_rng(0)
WIDTHS = np.array([2, 4, 6, 8])  # kept channels of 8 at 0.25 / 0.5 / 0.75 / 1.0


def _stage(depth_mode="gumbel"):
    """conv -> width gate; two more convs each gated by the same key; depth gate."""
    x = K.Input((8, 8, 1), name="image")
    h = K.layers.Conv2D(8, 3, padding="same", name="c1")(x)
    h = WidthGate(arch_key="w", name="g1")(h)
    y1 = WidthGate(arch_key="w", name="g2")(K.layers.Conv2D(8, 3, padding="same", name="c2")(h))
    y2 = WidthGate(arch_key="w", name="g3")(K.layers.Conv2D(8, 3, padding="same", name="c3")(y1))
    d = GumbelDepthGate(mode=depth_mode, name="depth")([h, y1, y2])
    y = K.layers.Dense(10, name="head")(K.layers.GlobalAveragePooling2D()(d))
    return K.Model(x, y)


def _set_logits(model):
    model.get_layer("g1").arch("logits").assign([0.3, -0.2, 0.5, 0.1])
    model.get_layer("depth").arch("logits").assign([0.2, -0.4, 0.6])
    sl.tie_arch_variables(model)


def test_width_gate_masks_leading_channels_of_each_group():
    gate = WidthGate(groups=2, mode="softmax", temperature=0.5, name="w")
    x = tf.ones([1, 2, 2, 8])
    gate(x)
    gate.arch("logits").assign([0.1, 0.7, -0.3, 0.2])
    p = relax.softmax(gate.arch("logits"), 0.5).numpy()
    per_channel = p @ (np.arange(4)[None, :] < np.array([1, 2, 3, 4])[:, None])
    want = np.tile(per_channel, 2)
    np.testing.assert_allclose(gate(x, training=True)[0, 0, 0], want, rtol=1e-6)
    np.testing.assert_allclose(gate.channel_probabilities(), want, rtol=1e-6)
    gate.set_choice(1)  # 0.5: the first 2 of each block of 4
    assert gate(x, training=True)[0, 0, 0].numpy().tolist() == [1, 1, 0, 0, 1, 1, 0, 0]
    assert gate.channel_keep(2).tolist() == [True] * 3 + [False] + [True] * 3 + [False]
    assert gate.choice_names == ["0.25", "0.5", "0.75", "1"]


def test_gumbel_samples_come_from_relax_and_inference_is_softmax():
    gate = WidthGate(temperature=0.7, seed=5, name="w")
    x = tf.ones([1, 8])
    gate(x)
    gate.arch("logits").assign([0.5, -1.0, 0.2, 0.9])
    step = int(gate.sample_step.numpy())
    got = gate(x, training=True)[0].numpy()
    m = relax.gumbel_softmax(gate.arch("logits"), 0.7, seed=[5, step + 1]).numpy()
    masks = (np.arange(8)[None, :] < WIDTHS[:, None]).astype("float32")
    np.testing.assert_allclose(got, m @ masks, rtol=1e-5)
    p = tf.nn.softmax(gate.arch("logits") / 0.7).numpy()
    np.testing.assert_allclose(gate(x, training=False)[0], p @ masks, rtol=1e-5)

    depth = GumbelDepthGate(mode="gumbel_hard", seed=3, name="d")
    ys = [tf.fill([1, 3], float(i)) for i in range(3)]
    depth(ys)
    depth.arch("logits").assign([0.1, 2.0, -0.3])
    out = depth(ys, training=True).numpy()
    assert out[0, 0] in (0.0, 1.0, 2.0)  # one input, not a mixture
    assert float(depth(ys, training=False)[0, 0]) == 1.0  # argmax at inference


def test_depth_gate_mixes_and_reach_probabilities():
    gate = GumbelDepthGate(mode="softmax", name="d")
    ys = [tf.constant(RNG.normal(size=(2, 4)), tf.float32) for _ in range(3)]
    gate(ys)
    gate.arch("logits").assign([0.2, -0.4, 0.6])
    p = tf.nn.softmax(gate.arch("logits")).numpy()
    want = sum(p[i] * ys[i].numpy() for i in range(3))
    np.testing.assert_allclose(gate(ys, training=True), want, rtol=1e-6)
    np.testing.assert_allclose(gate.reach_probabilities(), [1.0, p[1] + p[2], p[2]], rtol=1e-6)
    gate.set_choice(2)
    np.testing.assert_array_equal(gate(ys, training=True), ys[2])


def test_expected_cost_hand_computed():
    model = _stage()
    _set_logits(model)
    p = model.get_layer("g1").probabilities().numpy()
    q = model.get_layer("depth").probabilities().numpy()
    reach = np.cumsum(q[::-1])[::-1]  # P(depth >= i)
    conv1 = 64 * 9 * 1 * 8 * (p @ WIDTHS) / 8  # output gated: E[w] * full
    conv = 64 * 9 * 8 * 8 * (p @ WIDTHS**2) / 64  # same gate in and out: E[w^2] * full
    head = 10 * (p @ WIDTHS)  # input gated
    want = conv1 + reach[1] * conv + reach[2] * conv + head
    assert float(reg.expected_cost(model, "macs")) == pytest.approx(want, rel=1e-5)
    params = ((9 * 8 + 8) * (p @ WIDTHS) / 8  # c1 kernel + bias
              + (reach[1] + reach[2]) * (9 * (p @ WIDTHS**2) + p @ WIDTHS)  # c2, c3
              + 10 * (p @ WIDTHS) + 10)  # head
    assert float(reg.expected_cost(model, "params")) == pytest.approx(params, rel=1e-5)
    assert float(model.get_layer("depth").cost().params) == 0  # gates cost nothing


def test_expected_cost_of_independent_gates_multiplies_expected_widths():
    x = K.Input((4, 4, 2))
    h = WidthGate(arch_key="a", name="a")(K.layers.Conv2D(8, 1, use_bias=False, name="c1")(x))
    h = WidthGate(arch_key="b", name="b")(K.layers.Conv2D(8, 1, use_bias=False, name="c2")(h))
    model = K.Model(x, h)
    model.get_layer("a").arch("logits").assign([1.0, 0.0, 0.0, -1.0])
    model.get_layer("b").arch("logits").assign([-0.5, 0.5, 0.0, 0.3])
    ea = model.get_layer("a").probabilities().numpy() @ WIDTHS
    eb = model.get_layer("b").probabilities().numpy() @ WIDTHS
    want = 16 * 2 * ea + 16 * ea * eb
    assert float(reg.expected_cost(model, "macs")) == pytest.approx(want, rel=1e-5)


def test_derive_keeps_chosen_depth_and_slices_width():
    model = _stage()
    x = RNG.random((3, 8, 8, 1)).astype("float32")
    for width in range(4):
        for depth in range(3):
            arch = sl.Architecture({"g1": width, "g2": width, "g3": width, "depth": depth})
            sl.apply_architecture(model, arch)
            child = sl.derive(model, architecture=arch)
            np.testing.assert_allclose(child(x), model(x, training=False), atol=1e-5)
            names = {layer.name for layer in child.layers}
            assert names >= {"c1", "head"} and {f"c{i}" for i in (2, 3)} & names == {
                f"c{i}" for i in range(2, depth + 2)}  # cells after the depth are dropped
            assert child.get_layer("c1").filters == WIDTHS[width]
            assert not any(isinstance(layer, (WidthGate, GumbelDepthGate))
                           for layer in child.layers)
            # the expected cost under the fixed choice is the derived model's cost
            for metric in ("macs", "params"):
                assert float(reg.expected_cost(model, metric)) == pytest.approx(
                    cost.profile(child).total.metric(metric))
    sl.apply_architecture(model, None)


def test_derive_width_through_a_binary_conv_folds_cut_inputs():
    """sign(0) = +1: the cut (zero) inputs of a binary conv still add a constant,
    which the derived conv carries as a bias; its XNOR scale is kept."""
    x = K.Input((6, 6, 3))
    h = K.layers.Conv2D(8, 3, padding="same", name="stem")(x)
    h = WidthGate(arch_key="w", name="g1")(h)
    h = QuantConv(8, 3, scaling="channel", name="qc")(h)
    h = K.layers.BatchNormalization(name="bn")(h)
    h = WidthGate(arch_key="w", name="g2")(h)
    h = QuantConv(4, 3, scaling="scalar", name="qc2")(h)
    model = K.Model(x, K.layers.Dense(3)(K.layers.GlobalAveragePooling2D()(h)))
    model.get_layer("bn").set_weights([RNG.uniform(0.5, 2, 8), RNG.normal(0, 0.5, 8),
                                       RNG.normal(0, 0.5, 8), RNG.uniform(0.5, 2, 8)])
    arch = sl.Architecture({"g1": 1, "g2": 1})
    sl.apply_architecture(model, arch)
    child = sl.derive(model, architecture=arch)
    data = RNG.normal(size=(4, 6, 6, 3)).astype("float32")
    np.testing.assert_allclose(child(data), model(data, training=False), atol=1e-4)
    qc = child.get_layer("qc")
    assert qc.kernel.shape == (3, 3, 4, 4) and qc.use_bias and np.abs(qc.bias.numpy()).max() > 0
    assert child.get_layer("qc2").kernel.shape == (3, 3, 4, 4)
    sl.apply_architecture(model, None)


def test_sequential_supernet_derives_a_narrower_sequential():
    model = K.Sequential([
        K.Input((8, 8, 1)),
        K.layers.Conv2D(8, 3, padding="same", name="conv"),
        WidthGate(name="gate"),
        K.layers.GlobalAveragePooling2D(),
        K.layers.Dense(10, name="head"),
    ])
    arch = sl.Architecture({"gate": 2})
    sl.apply_architecture(model, arch)
    child = sl.derive(model, architecture=arch)
    assert isinstance(child, K.Sequential) and child.get_layer("conv").filters == 6
    x = RNG.random((2, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(child(x), model(x, training=False), atol=1e-5)


def test_choose_sample_and_entropy_cover_the_gates():
    model = _stage()
    arch = sl.choose(model, "sample", seed=3)
    assert arch.choices["g1"] == arch.choices["g2"] == arch.choices["g3"]  # one key
    assert arch.names["depth"] in ("0", "1", "2")
    assert sorted(reg.arch_groups(model)) == ["depth", "w"]
    want = np.log(4) + np.log(3)  # near-uniform initial logits
    assert float(reg.entropy(model, "sum")) == pytest.approx(want, rel=1e-3)


def test_config_round_trip():
    gate = WidthGate((0.5, 1.0), groups=2, mode="softmax", arch_key="k", temperature=2.0,
                     seed=4, name="w")
    clone = WidthGate.from_config(gate.get_config())
    assert clone.get_config() == gate.get_config() and clone.widths == [0.5, 1.0]
    depth = GumbelDepthGate(mode="gumbel_hard", seed=2, name="d")
    assert GumbelDepthGate.from_config(depth.get_config()).get_config() == depth.get_config()


@pytest.mark.parametrize("fmt", ["h5", "tf"])
def test_save_load_keeps_gate_state(tmp_path, fmt):
    model = _stage()
    _set_logits(model)
    model.get_layer("depth").set_choice(1)
    model.get_layer("g1").temperature.assign(0.4)
    path = str(tmp_path / ("m.h5" if fmt == "h5" else "m"))
    model.save(path, save_format=fmt, include_optimizer=False)
    loaded = K.models.load_model(path, compile=False)
    sl.tie_arch_variables(loaded)  # shared keys re-tie (every package entry point does)
    for name in ("g1", "g3", "depth"):
        got, want = loaded.get_layer(name), model.get_layer(name)
        assert type(got) is type(want)
        np.testing.assert_array_equal(got.arch("logits").numpy(), want.arch("logits").numpy())
        assert int(got.choice.numpy()) == int(want.choice.numpy())
    assert float(loaded.get_layer("g1").temperature) == pytest.approx(0.4)
    x = RNG.random((2, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)


def test_mirrored_strategy_draws_one_sample_per_step():
    strategy = mirrored_strategy()
    x = RNG.random((32, 8, 8, 1)).astype("float32")
    y = RNG.integers(0, 10, 32)
    with strategy.scope():
        model = _stage()
        sl.tie_arch_variables(model)
        model.compile(sl.joint_optimizer(K.optimizers.legacy.Adam(0.01),
                                         K.optimizers.legacy.Adam(0.05)),
                      K.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    gates = [model.get_layer(n) for n in ("g1", "depth")]
    for var in sl.arch_variables(model) + [g.sample_step for g in gates]:
        first, second = [v.numpy() for v in var.values]
        np.testing.assert_array_equal(first, second, err_msg=var.name)
    assert np.abs(gates[1].arch("logits").numpy()).max() > 1e-2  # it trained

    @tf.function
    def draw():
        return strategy.run(lambda: gates[0].mixing_weights(training=True))

    a, b = strategy.experimental_local_results(draw())
    np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("make,match", [
    (lambda: WidthGate((0.5, 1.5), name="w"), r"WidthGate 'w': widths\[1\] must be a finite number in \(0, 1\], got 1.5"),
    (lambda: WidthGate(groups=0, name="w"), r"WidthGate 'w': groups must be an integer >= 1, got 0"),
    (lambda: WidthGate(mode="hard", name="w"), r"'w': unknown mode 'hard'; allowed: 'gumbel'"),
    (lambda: WidthGate(groups=3, name="w")(tf.ones([1, 8])), r"'w': .* multiple of groups=3"),
    (lambda: WidthGate((0.1, 1.0), name="w")(tf.ones([1, 4])),
     r"'w': width 0.1 of 4 channels .* keeps no channel"),
    (lambda: GumbelDepthGate(name="d")(tf.ones([1, 4])),
     r"GumbelDepthGate 'd': expects a list .* at least 2"),
    (lambda: GumbelDepthGate(name="d")([tf.ones([1, 4]), tf.ones([1, 5])]),
     r"'d': all inputs must have the same shape"),
])
def test_bad_input_names_the_layer_and_the_value(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_choice_and_strategy():
    gate = GumbelDepthGate(name="d")
    gate([tf.ones([1, 2])] * 3)
    with pytest.raises(ValueError, match=r"GumbelDepthGate 'd': choice must be an integer index in 0..2 .*got 3"):
        gate.set_choice(3)
    with pytest.raises(ValueError, match=r"unknown strategy 'best'; allowed: 'argmax'"):
        gate.sample_choice("best")
