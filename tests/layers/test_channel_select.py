"""ChannelSelect: a hand-computed re-indexing with a zero channel, the 0/1 matrix it
replaced in ``slicing.select``, config / H5 / SavedModel round trips, TFLite parity
(float and int8), its cost, bad input."""

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from searchlayers import cost, export, slicing
from searchlayers.layers import ChannelSelect

K = sl.keras
RNG = np.random.default_rng(0)


def test_hand_computed_reindexing_with_a_zero_channel():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # channel c of row r: 4r + c
    y = ChannelSelect([3, -1, 0, 0, 2])(tf.constant(x)).numpy()
    assert y.shape == (2, 3, 5)
    np.testing.assert_array_equal(y[0, 1], [7.0, 0.0, 4.0, 4.0, 6.0])
    np.testing.assert_array_equal(y[..., 1], np.zeros((2, 3)))
    np.testing.assert_array_equal(y[..., 0], x[..., 3])


@pytest.mark.parametrize("allowed", [None, [True, True, False, True, True, True]])
def test_select_equals_the_zero_one_matrix_it_replaced(allowed):
    """``slicing.select`` was ``x @ M`` with ``M[i, j] = (src[i] == dst[j]) & allowed[src[i]]``."""
    src, dst = np.array([5, 2, 0, 3]), np.array([0, 1, 2, 3, 4, 5])
    x = RNG.normal(size=(3, len(src))).astype(np.float32)
    ok = np.ones(len(src), bool) if allowed is None else np.asarray(allowed)[src]
    matrix = ((src[:, None] == dst[None, :]) & ok[:, None]).astype(np.float32)
    inputs = K.Input((len(src),))
    model = K.Model(inputs, slicing.select(inputs, src, dst, allowed, name="sel"))
    assert isinstance(model.get_layer("sel"), ChannelSelect) and not model.weights
    np.testing.assert_array_equal(model(x).numpy(), x @ matrix)


def test_select_of_the_same_channels_is_the_identity():
    x = K.Input((3,))
    assert slicing.select(x, [4, 1, 7], [4, 1, 7]) is x


def _tiny_model():
    x = K.Input((5, 5, 3), name="image")
    h = K.layers.Conv2D(6, 3, padding="same", name="conv")(x)
    h = ChannelSelect([5, -1, 0, 2], name="select")(h)
    y = K.layers.Dense(2, name="head")(K.layers.GlobalAveragePooling2D()(h))
    return K.Model(x, y)


def test_config_round_trip():
    layer = ChannelSelect(np.array([2, -1, 1]), name="cfg")
    config = layer.get_config()
    assert config["indices"] == [2, -1, 1] and config["trainable"] is False
    clone = ChannelSelect.from_config(config)
    assert clone.get_config() == config
    x = tf.constant(RNG.normal(size=(2, 3)).astype(np.float32))
    np.testing.assert_array_equal(clone(x).numpy(), layer(x).numpy())
    assert K.utils.get_registered_name(ChannelSelect) == "searchlayers>ChannelSelect"


@pytest.mark.parametrize("fmt", ["h5", "tf"])
def test_save_load_round_trip(tmp_path, fmt):
    model = _tiny_model()
    x = RNG.normal(size=(2, 5, 5, 3)).astype(np.float32)
    path = str(tmp_path / ("m.h5" if fmt == "h5" else "m"))
    model.save(path, save_format=fmt, include_optimizer=False)
    loaded = K.models.load_model(path, compile=False)
    got = loaded.get_layer("select")
    assert isinstance(got, ChannelSelect) and got.indices == (5, -1, 0, 2)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)


def test_tflite_float_and_int8_parity():
    model = _tiny_model()
    x = RNG.normal(size=(16, 5, 5, 3)).astype(np.float32)
    report = export.parity(model, export.to_tflite(model), x)  # builtin ops only
    assert report.max_abs_diff < export.FLOAT_ATOL
    int8 = export.to_tflite(model, quantize="int8", representative_data=x)
    report = export.parity(model, int8, x)
    assert report.rel_max_diff < 0.1  # int8 rounding, not a wrong channel (those are O(1))


def test_cost_is_data_movement():
    p = cost.profile(_tiny_model(), print_fn=lambda *_: None)
    rows = {name: c for name, _, c in p.rows}
    assert p.complete and rows["select"] == cost.Cost.zero()


@pytest.mark.parametrize("indices, message", [
    (3, "indices must be a non-empty 1-D list of ints, got 3 (int)"),
    ("0,1", "indices must be a non-empty 1-D list of ints, got '0,1' (str)"),
    ([], "indices must be a non-empty 1-D list of ints with at least one entry, got []"),
    ([[0, 1]], "indices[0] must be -1 or an input channel (an integer >= 0), got [0, 1] (list)"),
    ([0, 1.5], "indices[1] must be -1 or an input channel (an integer >= 0), got 1.5"),
    ([0, -2], "indices[1] must be -1 or an input channel (an integer >= 0), got -2"),
])
def test_bad_indices(indices, message):
    with pytest.raises(ValueError) as error:
        ChannelSelect(indices, name="bad")
    text = str(error.value)
    assert text == f"ChannelSelect 'bad': {message}." and "\n" not in text


def test_index_beyond_the_input_channels():
    with pytest.raises(ValueError) as error:
        ChannelSelect([0, 4], name="bad")(tf.ones([1, 4]))
    assert str(error.value) == ("ChannelSelect 'bad': indices[1] must be -1 or an input "
                                "channel 0..3 (the input has 4 channels), got 4.")


def test_derive_selects_the_kept_channels_of_an_opaque_output():
    """A mask after a softmax over channels (opaque: every output channel depends on
    every input channel): the softmax is kept whole and a ChannelSelect passes the
    mask's kept channels on; the child computes what the masked supernet computes."""
    x = K.Input((6, 6, 3))
    h = K.layers.Softmax(name="sm")(K.layers.Conv2D(6, 3, padding="same", name="c1")(x))
    h = K.layers.Conv2D(4, 3, padding="same", name="c2")(sl.layers.FiGSMask(name="m")(h))
    model = K.Model(x, K.layers.Dense(2, name="head")(K.layers.GlobalAveragePooling2D()(h)))
    arch = sl.Architecture({"m": [4, 0, 1]})
    child = sl.derive(model, architecture=arch)
    sl.apply_architecture(model, arch)
    selects = [l for l in child.layers if isinstance(l, ChannelSelect)]
    assert [l.indices for l in selects] == [(0, 1, 4)]
    assert child.get_layer("c2").kernel.shape[-2] == 3  # reads the 3 kept channels only
    data = RNG.normal(size=(4, 6, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(child(data).numpy(), model(data).numpy(), atol=1e-6)
    assert export.parity(child, export.to_tflite(child), data).max_abs_diff < export.FLOAT_ATOL
