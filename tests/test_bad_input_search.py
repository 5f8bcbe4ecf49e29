"""Bad input in the two long paths of issue 13: a search fed NaN stops with the
documented FloatingPointError (never derives from NaN), and int8 export with
unusable calibration data raises before conversion while a good int8 export
really holds int8 tensors (read from the flatbuffer, checked by the TFLite
interpreter)."""

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from searchlayers import export
from searchlayers.search import NonFiniteGuard, SearchModel

K = sl.keras
LOSS = K.losses.SparseCategoricalCrossentropy(from_logits=True)
RNG = np.random.default_rng(0)
X = RNG.normal(size=(16, 8, 8, 1)).astype(np.float32)
Y = RNG.integers(0, 10, 16).astype(np.int32)


def _supernet(name="net"):
    return K.Sequential([
        K.Input((8, 8, 1)),
        K.layers.Conv2D(4, 3, padding="same"),
        sl.MixedOp(["conv_3x3", "skip_connect", "none"], name="edge"),
        K.layers.GlobalAveragePooling2D(),
        K.layers.Dense(10),
    ], name=name)


def _nan_pairs(train=True, val=False):
    x_bad = X.copy()
    x_bad[3, 4, 4, 0] = np.nan  # one NaN pixel
    return tf.data.Dataset.from_tensor_slices((
        (x_bad if train else X, Y), (x_bad if val else X, Y))).batch(8)


def test_nan_in_the_training_split_stops_at_the_first_step():
    net = _supernet("net_train_nan")
    search = SearchModel(net)
    search.compile(K.optimizers.SGD(0.1), LOSS)
    with pytest.raises(FloatingPointError, match=r"^SearchModel: the search became non-finite "
                       r"at epoch 1, step 1: loss=nan, .*Check the data for NaN/inf "
                       r"\(np.isfinite\(x\).all\(\)\)"):
        search.fit(_nan_pairs(), epochs=2, verbose=0)


def test_nan_in_the_validation_split_stops_and_derive_refuses():
    net = _supernet()
    search = SearchModel(net)
    search.compile(K.optimizers.SGD(0.1), LOSS)
    with pytest.raises(FloatingPointError, match=r"SearchModel: the search became non-finite "
                       r"at epoch 1, step 1: loss=.*, non-finite architecture variables "
                       r"\['edge/arch_logits:0'\]\. Check the data for NaN/inf"):
        search.fit(_nan_pairs(train=False, val=True), epochs=2, verbose=0)
    logits = net.get_layer("edge").arch("logits").numpy()
    assert np.isnan(logits).all()  # what argmax would have turned into candidate 0
    for call in (lambda: sl.derive(net), lambda: sl.choose(net, "argmax"),
                 lambda: sl.choose(net, "sample")):
        with pytest.raises(FloatingPointError, match=r"model 'net' has non-finite architecture "
                           r"variables \['edge/arch_logits:0'\]; the search diverged"):
            call()


def test_stop_policy_warns_and_ends_training():
    search = SearchModel(_supernet("net_stop"))
    search.compile(K.optimizers.SGD(0.1), LOSS)
    with pytest.warns(UserWarning, match=r"became non-finite at epoch 1, step 1.*Training "
                      r"stopped"):
        history = search.fit(_nan_pairs(), epochs=3, verbose=0,
                             callbacks=[NonFiniteGuard("stop")])
    assert len(history.history["loss"]) == 1  # stopped in the first epoch


def test_finite_search_is_not_stopped():
    net = _supernet("net_ok")
    search = SearchModel(net)
    search.compile(K.optimizers.SGD(0.01), LOSS)
    pairs = tf.data.Dataset.from_tensor_slices(((X, Y), (X, Y))).batch(8)
    history = search.fit(pairs, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert sl.choose(net).choices["edge"] in (0, 1, 2)


# -- int8 export -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def child():
    net = _supernet("exported")
    net.compile("adam", LOSS)
    net.fit(X, Y, epochs=1, verbose=0)
    return sl.derive(net, architecture=sl.Architecture({"edge": 0}))


@pytest.mark.parametrize("data, pattern", [
    ([], r"representative_data must be a non-empty array"),
    (np.zeros((0, 8, 8, 1), np.float32), r"representative_data must be a non-empty array"),
    (tf.data.Dataset.from_tensor_slices(np.zeros((0, 8, 8, 1), np.float32)).batch(4),
     r"representative_data must be a non-empty array"),
    (np.full((4, 8, 8, 1), np.nan, np.float32),
     r"representative_data must be finite, but 256 of its 256 entries are NaN or inf"),
    (np.where(np.arange(4 * 64).reshape(4, 8, 8, 1) == 5, np.inf, 0.0),
     r"representative_data must be finite, but 1 of its 256 entries are NaN or inf"),
    (np.zeros((4, 8, 8), np.float32), r"the shape of each representative_data example must "
     r"be the model's input shape \(8, 8, 1\), got \(8, 8\)"),
    (np.zeros((4, 9, 9, 1), np.float32), r"the shape of each representative_data example must "
     r"be the model's input shape \(8, 8, 1\), got \(9, 9, 1\)"),
    ("calibration.npy", r"representative_data must be an array \(N, \.\.\.\) or an iterable"),
], ids=["empty-list", "zero-rows", "empty-dataset", "all-nan", "one-inf", "rank",
        "wrong-size", "string"])
def test_int8_with_unusable_calibration_raises(child, data, pattern):
    with pytest.raises(ValueError, match=r"to_tflite\(quantize='int8'\): " + pattern):
        export.to_tflite(child, quantize="int8", representative_data=data)


def test_successful_int8_export_holds_int8_tensors(child):
    flatbuffer = export.to_tflite(child, quantize="int8", representative_data=X)
    assert export._has_int8_tensors(flatbuffer)
    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    kinds = {d["dtype"] for d in interpreter.get_tensor_details()}
    assert np.int8 in kinds
    conv_weights = [d for d in interpreter.get_tensor_details()
                    if d["dtype"] == np.int8 and len(d["shape"]) == 4]
    assert conv_weights  # the conv kernel itself is int8, not only the activations
    # and the float export of the same model holds none
    assert not export._has_int8_tensors(export.to_tflite(child))
    # predict checks the example shape against the file's input
    with pytest.raises(ValueError, match=r"export.predict: the shape of each input example "
                       r"must be the file's input shape \(8, 8, 1\), got \(9, 9, 1\)"):
        export.predict(flatbuffer, np.zeros((2, 9, 9, 1), np.float32))


def test_joint_optimizer_without_architecture_variables():
    """A single-path supernet (no arch_* logits) compiled with joint_optimizer
    used to fail inside fit with larq's "Optimizer ... did not claim any
    variables"; it now trains its weights with the weights optimizer and warns."""
    plain = K.Sequential([K.Input((8, 8, 1)), K.layers.Flatten(), K.layers.Dense(10)],
                         name="single_path")
    plain.compile(sl.joint_optimizer(K.optimizers.legacy.SGD(0.1)), LOSS)
    before = plain.layers[-1].kernel.numpy().copy()
    with pytest.warns(UserWarning, match=r"joint_optimizer: the model has no trainable "
                      r"architecture variables \(arch_\*\), so only the weights optimizer runs"):
        plain.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    assert not np.allclose(plain.layers[-1].kernel.numpy(), before)


def test_exporting_a_supernet_warns_and_points_to_derive():
    net = _supernet("still_a_supernet")
    with pytest.warns(UserWarning, match=r"to_tflite: model 'still_a_supernet' still holds "
                      r"search layers \['edge'\]; the file computes the whole supernet\. "
                      r"Export searchlayers.derive\(model\) instead"):
        flatbuffer = export.to_tflite(net)
    assert export.predict(flatbuffer, X[:2]).shape == (2, 10)
