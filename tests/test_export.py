"""Tests of searchlayers.export: TFLite float / int8, LCE, parity, LCE report."""

import numpy as np
import pytest

from searchlayers import datasets, export
from searchlayers._keras import keras
import tensorflow as tf

from models.simple import binary_cnn, float_cnn

larq = pytest.importorskip("larq")
pytest.importorskip("larq_compute_engine")


def _fit_briefly(model, epochs=1):
    """A short fit so BatchNorm statistics and weights are not at their init."""
    x, y = datasets.arrays("digits", "search_weights")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0)
    return model


@pytest.fixture(scope="module")
def digits_test():
    return datasets.arrays("digits", "test", limit=128)[0]


@pytest.fixture(scope="module")
def float_model():
    tf.random.set_seed(0)
    return _fit_briefly(float_cnn((8, 8, 1), 10, channels=(8, 16, 16)))


@pytest.fixture(scope="module")
def binary_model():
    tf.random.set_seed(0)
    return _fit_briefly(binary_cnn((8, 8, 1), 10, channels=(32, 128, 128)))


def test_float_tflite_parity(float_model, digits_test, tmp_path):
    path = tmp_path / "sub" / "float.tflite"
    flatbuffer = export.to_tflite(float_model, path)
    assert path.read_bytes() == flatbuffer
    report = export.parity(float_model, path, digits_test)
    assert report.interpreter == "tflite"
    assert report.max_abs_diff < export.FLOAT_ATOL
    assert report.argmax_agreement == 1.0
    assert report.size_bytes == len(flatbuffer)


def test_int8_tflite_parity(float_model, digits_test):
    calibration = datasets.arrays("digits", "validation")[0]
    flatbuffer = export.to_tflite(float_model, quantize="int8", representative_data=calibration)
    ops = set(export.op_names(flatbuffer))
    assert "QUANTIZE" in ops and "CONV_2D" in ops
    report = export.parity(float_model, flatbuffer, digits_test)
    assert report.rel_max_diff < export.INT8_RTOL
    assert report.argmax_agreement >= 0.9
    assert report.size_bytes < len(export.to_tflite(float_model))


def test_int8_io_and_dataset_calibration(float_model, digits_test):
    calibration = datasets.load("digits", "validation", batch_size=32)  # (x, y) batches
    flatbuffer = export.to_tflite(float_model, quantize="int8", int8_io=True,
                                  representative_data=calibration)
    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    report = export.parity(float_model, flatbuffer, digits_test)
    assert report.rel_max_diff < export.INT8_RTOL


def test_int8_needs_representative_data(float_model):
    with pytest.raises(ValueError, match="representative_data"):
        export.to_tflite(float_model, quantize="int8")
    with pytest.raises(ValueError, match="int8"):
        export.to_tflite(float_model, quantize="int4")


def test_binary_twin_lce(binary_model, digits_test, tmp_path):
    lce_flatbuffer = export.to_lce(binary_model, tmp_path / "binary.lce.tflite")
    float_flatbuffer = export.to_tflite(binary_model)

    report = export.lce_report(binary_model, lce_flatbuffer)
    assert report["num_binary_convs"] == 2
    assert report["num_lce_bconv2d"] == 2
    assert report["all_lowered"], export.format_lce_report(report)
    assert "CONV_2D" in report["op_counts"]  # the float first layer

    parity = export.parity(binary_model, lce_flatbuffer, digits_test)
    assert parity.interpreter == "lce"
    assert parity.rel_max_diff < export.LCE_RTOL
    assert parity.argmax_agreement >= 0.99
    assert len(float_flatbuffer) >= 10 * len(lce_flatbuffer)


def test_lce_report_explains_convs_that_do_not_lower():
    inputs = keras.Input((8, 8, 32))
    x = larq.layers.QuantConv2D(32, 3, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                                kernel_constraint="weight_clip", groups=2, use_bias=False)(inputs)
    x = larq.layers.QuantConv2D(32, 3, input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                                kernel_constraint="weight_clip", padding="same")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    report = export.lce_report(model, export.to_lce(model))
    grouped, zero_padded = report["binary_convs"]
    assert not grouped["lowered"] and "groups=2" in grouped["reasons"][0]
    assert zero_padded["lowered"] and "pad_values" in zero_padded["notes"][0]
    assert not report["all_lowered"]
    assert "NOT lowered: groups=2" in export.format_lce_report(report)


def test_unbuilt_model_is_a_clear_error():
    model = keras.Sequential([keras.layers.Dense(4)], name="never_built")
    for convert in (export.to_tflite, export.to_lce):
        with pytest.raises(ValueError, match="'never_built' is not built.*build"):
            convert(model)


def test_subclassed_model_without_input_signature_is_a_clear_error():
    class Tiny(keras.Model):
        def __init__(self):
            super().__init__(name="tiny")
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    model = Tiny()
    model.build((None, 5))
    with pytest.raises(ValueError, match="'tiny' is built but its input signature"):
        export.to_tflite(model)
    model(np.zeros((1, 5), np.float32))  # now it has one
    assert export.parity(model, export.to_tflite(model), np.ones((2, 5))).max_abs_diff < 1e-6


def test_not_a_model_is_a_type_error():
    with pytest.raises(TypeError, match="keras.Model"):
        export.to_tflite(keras.layers.Dense(3))
