"""Serialization, resume and multi-replica behaviour of the search core."""

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from conftest import StopAt, mirrored_strategy, tiny_supernet

K = sl.keras
LOSS = K.losses.SparseCategoricalCrossentropy(from_logits=True)


def _state(model):
    return {
        v.name: v.numpy()
        for layer in sl.layers.search_layers(model)
        for v in layer.weights
        if any(k in v.name for k in ("arch_", "temperature", "sample_step", "choice"))
    }


def _trained(mode, data):
    x, y = data
    model = tiny_supernet(mode)
    sl.tie_arch_variables(model)  # plain compile + fit: its edges a and b share a key
    model.compile(sl.joint_optimizer(K.optimizers.legacy.Adam(0.01)), LOSS)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for layer in sl.layers.search_layers(model):
        layer.temperature.assign(0.37)
    return model


@pytest.mark.parametrize("fmt", ["h5", "tf"])
@pytest.mark.parametrize("mode", ["softmax", "gumbel_hard"])
def test_round_trip_keeps_architecture_state(tmp_path, data, fmt, mode):
    x, _ = data
    model = _trained(mode, data)
    path = str(tmp_path / ("m.h5" if fmt == "h5" else "m"))
    model.save(path, save_format=fmt, include_optimizer=False)
    loaded = K.models.load_model(path, compile=False)
    groups = sl.tie_arch_variables(loaded)  # shared keys are re-tied on the loaded model
    assert groups["n"][0].arch("logits") is groups["n"][1].arch("logits")
    before, after = _state(model), _state(loaded)
    assert sorted(before) == sorted(after) and len(before) >= 9
    for name in before:
        np.testing.assert_array_equal(before[name], after[name], err_msg=name)
    assert {type(l).__name__ for l in sl.layers.search_layers(loaded)} == {"MixedOp"}
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-5)
    assert sl.choose(loaded).choices == sl.choose(model).choices


def test_config_round_trip_with_layer_candidates():
    op = sl.MixedOp(
        ["skip_connect", K.layers.Conv2D(3, 3, padding="same", name="mine")],
        mode="gumbel", arch_key="k", temperature=2.5, seed=9, name="cfg",
    )
    clone = sl.MixedOp.from_config(op.get_config())
    assert clone.get_config() == op.get_config()
    assert clone.choice_names == ["skip_connect", "mine"]
    restored = K.utils.deserialize_keras_object(K.utils.serialize_keras_object(op))
    assert isinstance(restored, sl.MixedOp) and restored.mode == "gumbel"


def test_h5_round_trip_of_a_mixed_op_with_a_binary_layer_candidate(tmp_path):
    """The package's own layer as a candidate loads from H5 with no custom
    objects (tf_keras' H5 path looked it up by its bare class name and failed)."""
    x = K.Input((8, 8, 4))
    net = K.Model(x, sl.MixedOp([sl.QuantConv(4, 3, name="mine"), "skip_connect"], name="e")(x))
    net.save(tmp_path / "net.h5")
    loaded = K.models.load_model(tmp_path / "net.h5")
    assert isinstance(loaded.get_layer("e").ops[0], sl.QuantConv)
    batch = np.random.default_rng(0).normal(size=(2, 8, 8, 4)).astype("float32")
    np.testing.assert_array_equal(loaded(batch), net(batch))


def test_backup_and_restore_resumes_architecture_state(tmp_path, data):
    """An interrupted search resumed from its backup ends in exactly the state
    of an uninterrupted one (logits, temperature, noise stream)."""
    x, y = data

    def run(callbacks, model):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False, callbacks=callbacks)

    def fresh():
        model = tiny_supernet("gumbel", seed=4)
        sl.tie_arch_variables(model)
        model.compile(sl.joint_optimizer(K.optimizers.legacy.SGD(0.05)), LOSS)
        return model

    reference = fresh()
    initial = reference.get_weights()
    run([], reference)

    resumed = fresh()
    resumed.set_weights(initial)
    backup = K.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="interrupted"):
        run([backup, StopAt(2)], resumed)
    resumed = fresh()
    run([K.callbacks.BackupAndRestore(str(tmp_path / "backup"))], resumed)
    for name, value in _state(reference).items():
        np.testing.assert_allclose(_state(resumed)[name], value, rtol=1e-5, err_msg=name)


def test_mirrored_strategy_keeps_one_architecture(data):
    x, y = data
    strategy = mirrored_strategy()
    with strategy.scope():
        model = tiny_supernet("gumbel_hard", seed=2)
        sl.tie_arch_variables(model)
        model.compile(sl.joint_optimizer(K.optimizers.legacy.SGD(0.05)), LOSS)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    for var in sl.arch_variables(model) + [l.sample_step for l in sl.layers.search_layers(model)]:
        values = [v.numpy() for v in var.values]
        assert len(values) == 2
        np.testing.assert_array_equal(values[0], values[1], err_msg=var.name)
    assert sl.choose(model).choices  # derive reads the mirrored logits


def test_replicas_draw_the_same_sample():
    strategy = mirrored_strategy()
    with strategy.scope():
        op = sl.MixedOp(["skip_connect", "none", "max_pool_3x3"], mode="gumbel", seed=1)
        op.build(tf.TensorShape([None, 4, 4, 2]))

    @tf.function
    def weights():
        return strategy.run(lambda: op.mixing_weights(training=True))

    per_replica = strategy.experimental_local_results(weights())
    np.testing.assert_array_equal(per_replica[0].numpy(), per_replica[1].numpy())


def test_keras3_already_resolved_is_a_clear_import_error():
    code = (
        "import os; os.environ.pop('TF_USE_LEGACY_KERAS', None)\n"
        "import tensorflow as tf; tf.keras.layers.Dense\n"
        "import searchlayers\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_USE_LEGACY_KERAS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode != 0
    assert "ImportError" in out.stderr and "TF_USE_LEGACY_KERAS=1" in out.stderr


def test_import_after_tensorflow_gives_keras2():
    code = (
        "import tensorflow as tf\n"
        "import searchlayers, tf_keras\n"
        "from tensorflow.keras.optimizers.legacy import Optimizer\n"
        "import larq\n"
        "assert tf.keras.layers.Dense is tf_keras.layers.Dense\n"
        "assert Optimizer is tf_keras.optimizers.legacy.Optimizer\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_USE_LEGACY_KERAS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def _repeated_weight_names(model):
    names = [w.name for w in model.weights]
    return sorted({n for n in names if names.count(n) > 1})


def test_weight_names_are_unique_in_supernets_and_children():
    """Keras builds an op's layers in a scratch graph of its own, where it names
    them "conv2d", ... again: two edges' weights shared one name, and H5 saving
    of an optimizer failed (``ModelCheckpoint``). Op layers are named after their
    edge; layers built directly get their own name scope."""
    from examples import bnas_search
    from models import bars, darts, entrannas, spos

    nets = [darts.darts_supernet((8, 8, 1), 10, channels=4, cells=2, steps=2, multiplier=2),
            bars.bars_supernet((8, 8, 1), 10, channels=4, stages=1, cells=2, steps=2),
            entrannas.entrannas_supernet((8, 8, 1), 10, channels=4, cells=2, steps=2),
            spos.spos_supernet(stages=((4, 2, 1),), stem_channels=4, head_channels=8,
                               ops=["mb_k3_e3", "mb_k5_e3"]),
            bnas_search.build(channels=4, cells=2, steps=1)]  # binary ops: larq's layers
    for net in nets:
        child = sl.derive(net, "sample", seed=0)
        assert _repeated_weight_names(net) == [] and _repeated_weight_names(child) == [], net.name


def test_h5_checkpoint_of_a_user_sequential_with_a_mixed_op(tmp_path, data):
    """A user's Sequential (default layer names) with a MixedOp of built-in ops:
    ``ModelCheckpoint(.h5)`` after an epoch raised "name already exists"; so did
    saving its derived child after fit."""
    x, y = data
    net = K.Sequential([K.Input((8, 8, 1)), K.layers.Conv2D(4, 3, padding="same"),
                        sl.MixedOp(["conv_3x3", "sep_conv_3x3", "skip_connect"], name="e"),
                        K.layers.GlobalAveragePooling2D(), K.layers.Dense(10)])
    net.compile(sl.joint_optimizer(), LOSS)
    net.fit(x, y, epochs=1, verbose=0,
            callbacks=[K.callbacks.ModelCheckpoint(str(tmp_path / "net.h5"))])
    child = sl.derive(net, architecture={"e": 1})
    child.compile("adam", LOSS)
    child.fit(x, y, epochs=1, verbose=0)
    child.save(tmp_path / "child.h5")
    for model, path in ((net, "net.h5"), (child, "child.h5")):
        loaded = K.models.load_model(tmp_path / path)
        np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
