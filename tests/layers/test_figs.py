"""FiGSMask: sampling, inference mask, choices, grouping, serialization."""

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from searchlayers.layers.figs import FiGSMask, MaskingLayer
from conftest import StopAt, mirrored_strategy

K = sl.keras


def _mask(logits, **kwargs):
    layer = FiGSMask(**kwargs)
    layer.build([None, len(logits)])
    layer.arch("logits").assign(np.asarray(logits, np.float32))
    return layer


def test_alias_defaults_and_probabilities():
    assert MaskingLayer is FiGSMask and sl.MaskingLayer is FiGSMask
    layer = FiGSMask()
    layer.build([None, 4, 4, 3])
    assert [w.name.split("/")[-1].split(":")[0] for w in layer.arch_weights] == ["arch_logits"]
    np.testing.assert_allclose(layer.probabilities(), [0.924142] * 3, atol=1e-5)
    assert float(layer.temperature) == pytest.approx(0.001)


@pytest.mark.parametrize(
    "make",
    [
        lambda: K.layers.Conv2D(6, 3, padding="same"),
        lambda: K.layers.DepthwiseConv2D(3, padding="same"),
        lambda: K.layers.SeparableConv2D(6, 3, padding="same"),
        lambda: lq.layers.QuantConv2D(6, 3, padding="same", kernel_quantizer="ste_sign",
                                      kernel_constraint="weight_clip"),
        lambda: lq.layers.QuantDepthwiseConv2D(3, padding="same"),
    ],
)
def test_sequential_add_after_conv_like_layers(make):
    model = K.Sequential([K.Input((6, 6, 4)), make()])
    model.add(FiGSMask(name="mask"))
    mask = model.get_layer("mask")
    channels = model.output_shape[-1]
    logits = np.linspace(-2, 2, channels).astype("f") + 0.1
    mask.arch("logits").assign(logits)
    x = np.random.default_rng(0).random((2, 6, 6, 4), dtype=np.float32)
    y = model(x).numpy()
    dead = logits <= 0
    assert np.all(y[..., dead] == 0) and np.any(y[..., ~dead] != 0)


def test_functional_after_dense_and_quant_dense():
    x = K.Input((5,))
    h = FiGSMask(name="m1")(K.layers.Dense(7)(x))
    y = FiGSMask(name="m2")(lq.layers.QuantDense(3)(h))
    model = K.Model(x, y)
    assert model.output_shape == (None, 3)
    assert model.get_layer("m1").channels == 7


def test_statistics_match_sigmoid_and_noise_is_per_channel():
    logits = np.repeat([-2.0, 0.0, 1.5], 3000).astype("f")
    layer = _mask(logits, seed=3)
    x = tf.ones([2, 2, 2, logits.size])
    y = layer(x, training=True).numpy()
    # one sample per channel, shared over the batch and positions
    np.testing.assert_array_equal(y, np.broadcast_to(y[:1, :1, :1], y.shape))
    m = y[0, 0, 0]
    assert np.mean(np.abs(m - 0.5) > 0.49) > 0.99  # near 0/1 at tau = 0.001
    for value, group in zip([-2.0, 0.0, 1.5], np.split(m, 3)):
        p = 1 / (1 + np.exp(-value))
        assert abs(np.mean(group > 0.5) - p) < 0.035
    # the next step draws fresh noise
    assert not np.array_equal(layer(x, training=True).numpy()[0, 0, 0], m)


def test_inference_mask_and_training_flag_as_tensor():
    layer = _mask([1.0, -1.0, 0.2])
    x = tf.ones([1, 3])
    np.testing.assert_array_equal(layer(x), [[1, 0, 1]])
    np.testing.assert_array_equal(layer(x, training=tf.constant(False)), [[1, 0, 1]])


def test_gradients_reach_logits_soft_and_hard():
    for hard in (False, True):
        layer = _mask([0.0, 0.0, 0.0, 0.0], hard=hard, temperature=1.0)
        with tf.GradientTape() as tape:
            y = layer(tf.ones([2, 4]), training=True)
            loss = tf.reduce_sum(y * tf.constant([1.0, 2.0, 3.0, 4.0]))
        grad = tape.gradient(loss, layer.arch("logits"))
        assert np.all(np.isfinite(grad)) and np.any(grad.numpy() != 0)
        if hard:
            assert set(np.unique(y.numpy())) <= {0.0, 1.0}


def test_keep_one_keeps_the_best_channel():
    layer = _mask([-3.0, -1.0, -2.0], keep_one=True)
    np.testing.assert_array_equal(layer(tf.ones([1, 3])), [[0, 1, 0]])
    y = layer(tf.ones([1, 3]), training=True).numpy()
    assert y[0, 1] == 1.0
    assert layer.sample_choice("argmax") == [1]


def test_sample_choice_strategies_and_set_choice():
    logits = [3.0, -1.0, 0.5, -4.0, 1.0]
    layer = _mask(logits)
    p = 1 / (1 + np.exp(-np.array(logits)))
    k = int(np.floor(p.sum()))
    assert layer.sample_choice() == sorted(np.argsort(-np.array(logits))[:k].tolist())
    assert layer.sample_choice("argmax") == [0, 2, 4] == layer.sample_choice("alive")
    sample = layer.sample_choice("sample", seed=1)
    assert sample == layer.sample_choice("sample", seed=1) and all(0 <= i < 5 for i in sample)
    assert _mask([-5.0, -6.0]).sample_choice("argmax") == [0]  # never empty
    layer.set_choice([1, 3])
    np.testing.assert_array_equal(layer(tf.ones([1, 5]), training=True), [[0, 1, 0, 1, 0]])
    np.testing.assert_array_equal(layer.probabilities(), [0, 1, 0, 1, 0])
    layer.set_choice(None)
    np.testing.assert_array_equal(layer(tf.ones([1, 5])), [[1, 0, 1, 0, 1]])
    with pytest.raises(ValueError, match=r"choice must be a non-empty list of distinct channel indices in 0\.\."):
        layer.set_choice([7])
    with pytest.raises(ValueError, match="unknown strategy"):
        layer.sample_choice("best")


def test_groups_share_logits_and_choose_once():
    x = K.Input((4, 4, 3))
    a = FiGSMask(group="g", name="a")(K.layers.Conv2D(3, 1)(x))
    b = FiGSMask(group="g", name="b")(K.layers.Conv2D(3, 1)(x))
    model = K.Model(x, K.layers.Add()([a, b]))
    sl.tie_arch_variables(model)
    assert model.get_layer("a").arch("logits") is model.get_layer("b").arch("logits")
    assert len(sl.arch_variables(model)) == 1
    model.get_layer("a").arch("logits").assign([3.0, -1.0, 2.0])
    arch = sl.choose(model, "expected")
    assert arch.choices["a"] == arch.choices["b"] == [0, 2]
    # one noise stream per group: in training both draw the same mask every step
    a, b = model.get_layer("a"), model.get_layer("b")
    a.arch("logits").assign([0.0, 0.0, 0.0])
    draws = [(a.mask(training=True).numpy(), b.mask(training=True).numpy()) for _ in range(8)]
    assert all(np.array_equal(ma, mb) for ma, mb in draws)
    assert len({tuple(ma.round()) for ma, _ in draws}) > 1  # but a new draw each step
    assert FiGSMask(group="g", seed=5).seed == 5


def test_errors_name_the_layer():
    with pytest.raises(ValueError, match="FiGSMask 'bad'.*unknown"):
        FiGSMask(name="bad").build(tf.TensorShape([None, 4, None]))
    with pytest.raises(ValueError, match="group"):
        FiGSMask(group="a", arch_key="b")


def test_entropy_and_cost():
    layer = _mask([0.0, 30.0])
    np.testing.assert_allclose(layer.entropy(), [np.log(2), 0.0], atol=1e-6)
    assert layer.cost().params == 0


def _masked_model():
    x = K.Input((6, 6, 2))
    h = K.layers.Conv2D(5, 3, padding="same")(x)
    h = FiGSMask(group="g", temperature=0.01, keep_one=True, hard=True, name="mask")(h)
    return K.Model(x, K.layers.Dense(3)(K.layers.GlobalAveragePooling2D()(h)))


def test_config_round_trip():
    layer = FiGSMask(temperature=0.01, hard=True, keep_one=True, group="g",
                     initial_logit=1.0, seed=4, name="cfg")
    clone = FiGSMask.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.group == "g" and clone.hard and clone.keep_one


@pytest.mark.parametrize("fmt", ["h5", "tf"])
def test_save_load_keeps_logits_temperature_and_choice(tmp_path, fmt):
    model = _masked_model()
    mask = model.get_layer("mask")
    mask.arch("logits").assign([2.0, -1.0, 0.5, -0.5, 1.0])
    mask.temperature.assign(0.37)
    x = np.random.default_rng(0).random((2, 6, 6, 2), dtype=np.float32)
    path = str(tmp_path / ("m.h5" if fmt == "h5" else "m"))
    model.save(path, save_format=fmt, include_optimizer=False)
    loaded = K.models.load_model(path, compile=False)
    got = loaded.get_layer("mask")
    assert isinstance(got, FiGSMask) and got.group == "g" and got.hard
    np.testing.assert_array_equal(got.arch("logits").numpy(), mask.arch("logits").numpy())
    assert float(got.temperature) == pytest.approx(0.37)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def _search_net(seed=0):
    keras_init = K.initializers.GlorotUniform(seed)
    x = K.Input((6, 6, 2), name="image")
    h = K.layers.Conv2D(6, 3, padding="same", kernel_initializer=keras_init, name="c1")(x)
    h = FiGSMask(seed=1, name="m1")(K.layers.ReLU()(h))
    h = K.layers.Conv2D(6, 3, padding="same", kernel_initializer=keras_init, name="c2")(h)
    h = FiGSMask(seed=2, name="m2")(K.layers.ReLU()(h))
    y = K.layers.Dense(3, kernel_initializer=keras_init)(K.layers.GlobalAveragePooling2D()(h))
    return K.Model(x, y)


def _compile(model):
    model.compile(sl.joint_optimizer(K.optimizers.legacy.SGD(0.05), K.optimizers.legacy.SGD(2.0)),
                  K.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _arch_state(model):
    return {v.name: v.numpy() for m in sl.layers.figs_masks(model) for v in m.weights}


def _figs_data():
    rng = np.random.default_rng(0)
    return rng.random((32, 6, 6, 2), dtype=np.float32), rng.integers(0, 3, 32)


def test_interrupted_search_resumes_mask_state(tmp_path):
    """BackupAndRestore: an interrupted FiGS search ends in the state of an
    uninterrupted one (logits, temperature, noise step)."""
    x, y = _figs_data()

    def run(model, callbacks):
        reg = sl.FLOPsRegularizer(metric="params", strength=0.5, budget=200.0)
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False,
                  callbacks=[reg, *callbacks])

    reference = _compile(_search_net())
    initial = reference.get_weights()
    run(reference, [])
    resumed = _compile(_search_net())
    resumed.set_weights(initial)
    with pytest.raises(RuntimeError, match="interrupted"):
        run(resumed, [K.callbacks.BackupAndRestore(str(tmp_path / "b")), StopAt(2)])
    resumed = _compile(_search_net(seed=7))  # other weights: only the backup can match
    resumed.get_layer("m1").arch("logits").assign(tf.fill([6], -1.0))
    run(resumed, [K.callbacks.BackupAndRestore(str(tmp_path / "b"))])
    want, got = _arch_state(reference), _arch_state(resumed)
    assert any("sample_step" in k for k in want) and any("logits" in k for k in want)
    assert int(reference.get_layer("m1").sample_step.numpy()) == 12  # 3 epochs x 4 steps
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-5, err_msg=name)


def test_mirrored_strategy_keeps_one_mask_per_layer():
    x, y = _figs_data()
    strategy = mirrored_strategy()
    with strategy.scope():
        model = _compile(_search_net())
    model.fit(x, y, batch_size=16, epochs=2, verbose=0,
              callbacks=[sl.FLOPsRegularizer(metric="params", strength=0.5, budget=200.0)])
    masks = sl.layers.figs_masks(model)
    for var in sl.arch_variables(model) + [m.sample_step for m in masks]:
        values = [v.numpy() for v in var.values]
        assert len(values) == 2
        np.testing.assert_array_equal(values[0], values[1], err_msg=var.name)
    assert float(masks[0].arch("logits").numpy().mean()) != 2.5  # the logits did train

    @tf.function
    def draw():
        return strategy.run(lambda: masks[0].mask(training=True))

    first, second = strategy.experimental_local_results(draw())
    np.testing.assert_array_equal(first.numpy(), second.numpy())  # one noise per step


def _reference_train_output(layer, x):
    """The mask's original training formulation (relax.logistic_sigmoid, keep_one
    on top, then ``where(choice_is_fixed(), choice, mask)``), with the layer's
    noise seed for the next step, for the fused layer to match."""
    logits = layer.arch("logits")
    seed = tf.stack([tf.constant(layer.seed, tf.int64), layer.sample_step + 1])
    m = sl.relax.logistic_sigmoid(logits, layer.temperature, seed, hard=layer.hard)
    if layer.keep_one:
        best = tf.one_hot(tf.argmax(logits), layer.channels, dtype=m.dtype)
        m = m + (1.0 - m) * best
    return x * tf.where(layer.choice_is_fixed(), layer.choice, m)


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("keep_one", [False, True])
@pytest.mark.parametrize("fixed", [None, [1, 3]])
@pytest.mark.parametrize("temperature", [0.001, 0.5])
def test_fused_training_mask_matches_the_reference(hard, keep_one, fixed, temperature,
                                                   compiled):
    # Logits near zero so that, at tau = 0.5, the sigmoid is not saturated and the
    # gradient is not trivially zero; one logit so large that z / tau overflows.
    layer = _mask([0.3, -0.2, 1e36, -0.05, 0.8], hard=hard, keep_one=keep_one,
                  temperature=temperature, seed=11)
    layer.set_choice(fixed)
    x = tf.constant(np.random.default_rng(3).normal(size=(4, 3, 5)), tf.float32)
    dy = tf.constant(np.random.default_rng(4).normal(size=(4, 3, 5)), tf.float32)
    logits = layer.arch("logits")

    def step():
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            want = _reference_train_output(layer, x)
            got = layer(x, training=True)
            want_loss, got_loss = tf.reduce_sum(want * dy), tf.reduce_sum(got * dy)
        return [got, want] + [tape.gradient(loss, var) for var in (x, logits)
                              for loss in (got_loss, want_loss)]

    step = tf.function(step) if compiled else step
    for _ in range(3):  # three steps: three noise draws
        got, want, gx, gx_want, gl, gl_want = step()
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(gx, gx_want, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(gl, gl_want, rtol=1e-6, atol=1e-6)
        if fixed is None and temperature == 0.5:  # the comparison is not vacuous
            assert np.abs(gl.numpy()).max() > 1e-3
    assert int(layer.sample_step) == 3
