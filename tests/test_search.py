import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from conftest import tiny_supernet

K = sl.keras
LOSS = K.losses.SparseCategoricalCrossentropy(from_logits=True)


def _pairs(x, y, batch=8):
    half = len(x) // 2
    train = tf.data.Dataset.from_tensor_slices((x[:half], y[:half]))
    val = tf.data.Dataset.from_tensor_slices((x[half:], y[half:]))
    return tf.data.Dataset.zip((train.batch(batch), val.batch(batch)))


def _arch_values(model):
    return [v.numpy().copy() for v in sl.arch_variables(model)]


def test_arch_and_weight_split():
    model = tiny_supernet()
    arch, weights = sl.arch_variables(model), sl.weight_variables(model)
    assert {v.name.split("/")[-1] for v in arch} == {"arch_logits:0"}
    assert len(arch) == 2  # edge_a/edge_b share key "n"; edge_c
    assert not {id(v) for v in arch} & {id(v) for v in weights}
    assert len(arch) + len(weights) == len({id(v) for v in model.trainable_variables})


def test_unbuilt_model_is_clear_error():
    model = K.Sequential([sl.MixedOp(["skip_connect"])], name="unbuilt")
    with pytest.raises(ValueError, match="Model 'unbuilt' is not built"):
        sl.arch_variables(model)
    with pytest.raises(ValueError, match="not built"):
        sl.SearchModel(model)


def test_bilevel_updates_arch_on_validation_and_weights_on_train(data):
    x, y = data
    model = tiny_supernet()
    search = sl.SearchModel(model, bilevel=True)
    search.compile(K.optimizers.SGD(0.05), LOSS, metrics=["accuracy"])
    arch0 = _arch_values(model)
    w0 = [v.numpy().copy() for v in sl.weight_variables(model)]
    hist = search.fit(_pairs(x, y), epochs=2, verbose=0)
    assert np.isfinite(hist.history["loss"]).all() and "accuracy" in hist.history
    assert any(not np.allclose(a, b) for a, b in zip(arch0, _arch_values(model)))
    assert any(not np.allclose(a, v.numpy()) for a, v in zip(w0, sl.weight_variables(model)))
    # shared logits stay shared through training
    edge_a, edge_b = (model.get_layer(n) for n in ("edge_a", "edge_b"))
    assert edge_a.arch("logits") is edge_b.arch("logits")


def test_first_order_arch_step_matches_hand_computed_adam(data):
    """One bilevel step: arch Adam step on the validation batch's gradient + L2."""
    x, y = data
    model = tiny_supernet()
    model(x[:1])
    search = sl.SearchModel(model, bilevel=True)
    search.compile(K.optimizers.SGD(0.0), LOSS)  # weights frozen by lr 0
    arch = sl.arch_variables(model)
    before = [v.numpy().copy() for v in arch]
    with tf.GradientTape() as tape:
        loss = LOSS(y[16:24], model(x[16:24], training=True))
    grads = [g.numpy() + 1e-3 * b for g, b in zip(tape.gradient(loss, arch), before)]
    # Keras Adam's first step: -lr * g / (|g| + eps / sqrt(1 - beta_2)).
    search.fit(_pairs(x[:24][np.r_[0:8, 16:24]], y[np.r_[0:8, 16:24]]), epochs=1, verbose=0)
    for b, g, v in zip(before, grads, arch):
        expected = b - 3e-4 * g / (np.abs(g) + 1e-7 / np.sqrt(1 - 0.999))
        np.testing.assert_allclose(v.numpy(), expected, atol=3e-7)


def test_warmup_switch_freezes_arch(data):
    x, y = data
    model = tiny_supernet()
    search = sl.SearchModel(model, bilevel=False)
    search.compile(K.optimizers.SGD(0.05), LOSS)
    search.arch_enabled.assign(False)
    arch0 = _arch_values(model)
    search.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for a, b in zip(arch0, _arch_values(model)):
        np.testing.assert_array_equal(a, b)
    search.arch_enabled.assign(True)
    search.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert any(not np.allclose(a, b) for a, b in zip(arch0, _arch_values(model)))


@pytest.mark.parametrize("name", ["supernet", "supernet.h5"])
def test_model_checkpoint_saves_the_supernet(data, tmp_path, name):
    """``ModelCheckpoint`` (whole model, SavedModel or H5) on a search saves the
    supernet it trains, which loads back with its architecture state (both
    formats raised on a SearchModel)."""
    x, y = data
    model = tiny_supernet("gumbel")
    search = sl.SearchModel(model, bilevel=False, arch_optimizer=K.optimizers.Adam(0.1))
    search.compile(K.optimizers.SGD(0.05), LOSS)
    path = str(tmp_path / name)
    search.fit(x, y, batch_size=8, epochs=1, verbose=0,
               callbacks=[sl.EntropyRegularizer(), K.callbacks.ModelCheckpoint(path)])
    loaded = K.models.load_model(path)
    assert [type(l).__name__ for l in loaded.layers] == [type(l).__name__ for l in model.layers]
    moved = _arch_values(model)
    assert any(np.abs(v).max() > 0.01 for v in moved)  # the search moved the architecture
    for a, b in zip(_arch_values(loaded), moved):
        np.testing.assert_array_equal(a, b)


def test_loss_multiplier_scales_data_loss(data):
    x, y = data
    model = tiny_supernet()
    search = sl.SearchModel(model, bilevel=False)
    search.compile(K.optimizers.SGD(0.0), LOSS)
    search.arch_enabled.assign(False)
    base = search.fit(x, y, batch_size=32, epochs=1, verbose=0).history["loss"][0]
    search.add_loss_multiplier(lambda: tf.constant(3.0))
    search.compile(K.optimizers.SGD(0.0), LOSS)  # retrace with the multiplier
    scaled = search.fit(x, y, batch_size=32, epochs=1, verbose=0).history["loss"][0]
    np.testing.assert_allclose(scaled, 3 * base, rtol=1e-4)


def test_joint_training_with_plain_fit_and_case_optimizer(data):
    x, y = data
    model = tiny_supernet("gumbel")
    model.compile(sl.joint_optimizer(K.optimizers.legacy.SGD(0.05)), LOSS)
    arch0 = _arch_values(model)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert any(not np.allclose(a, b) for a, b in zip(arch0, _arch_values(model)))


def test_layers_sharing_a_key_must_be_tied_for_a_plain_fit(data):
    """Plain compile + fit runs no entry point of ours: layers sharing an arch_key
    trained logits of their own and derive kept one (found by a user trial)."""
    x, y = data
    model = tiny_supernet("softmax")
    model.compile(sl.joint_optimizer(), K.losses.SparseCategoricalCrossentropy(True))
    with pytest.raises(ValueError, match=r"joint_optimizer: search layers \['edge_a', "
                       r"'edge_b'\] share arch_key='n' but train architecture variables of "
                       r"their own.*call searchlayers.tie_arch_variables\(model\) before fit"):
        model.fit(x, y, epochs=1, verbose=0)
    model = tiny_supernet("softmax")
    sl.tie_arch_variables(model)
    model.compile(sl.joint_optimizer(), K.losses.SparseCategoricalCrossentropy(True))
    model.fit(x, y, epochs=1, verbose=0)
    a, b = (model.get_layer(n).arch("logits") for n in ("edge_a", "edge_b"))
    assert a is b and np.abs(a.numpy()).max() > 1e-3  # one set of logits, trained
    x = K.Input((8, 8, 4))
    y = sl.MixedOp(["conv_3x3", "skip_connect"], arch_key="q", name="one")(x)
    y = sl.MixedOp(["max_pool_3x3", "skip_connect"], arch_key="q", name="two")(y)
    with pytest.raises(ValueError, match=r"MixedOp 'two' and 'one' share arch_key='q' but "
                       r"differ: .*'choices': \['max_pool_3x3', 'skip_connect'\]"):
        sl.tie_arch_variables(K.Model(x, y))


def test_labelled_validation_data_as_keras_takes_it():
    """``SearchModel.fit(validation_data=)`` checks it like ``best_of_k``: a
    search's pairs are refused, what Keras reads is not (the first version
    counted the inputs of a list or dict as rows)."""
    from searchlayers.search import check_labelled

    a, b = K.Input((4,), name="a"), K.Input((4,), name="b")
    two = K.Model([a, b], [K.layers.Dense(2)(a), K.layers.Dense(3)(b)])
    x1, x2, y = np.zeros((16, 4)), np.zeros((16, 4)), np.zeros(16)
    for data in (([x1, x2], y), ((x1, x2), y), ({"a": x1, "b": x2}, [y, y]),
                 ([x1, x2], y, np.ones(16)),
                 tf.data.Dataset.from_tensors(({"a": x1, "b": x2, "id": y}, y))):
        check_labelled(data, "t", two)
    pairs = tf.data.Dataset.from_tensors(((x1, y), (x1, y)))
    with pytest.raises(ValueError, match=r"t: validation_data must be \(x, y\) batches whose "
                       r"x holds the model's 2 input\(s\).*got 'batches whose x holds 1 tensors"):
        check_labelled(tf.data.Dataset.from_tensors(((x1,), y)), "t", two)
    one = K.Sequential([K.Input((4,)), K.layers.Dense(2)])
    with pytest.raises(ValueError, match="x holds 2 tensors"):
        check_labelled(pairs, "t", one)
    with pytest.raises(ValueError, match=r"got 'x of 16 and y of 8 rows'"):
        check_labelled((x1, y[:8]), "t", one)
