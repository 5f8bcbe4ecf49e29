"""Quantization-aware training (tfmot) of a derived FiGS model and its int8 export."""

import larq as lq
import numpy as np
import pytest

import searchlayers as sl
from searchlayers import export
from searchlayers.transforms import insert_masks

K = sl.keras


def _derived():
    x = K.Input((8, 8, 1), name="image")
    h = K.layers.Conv2D(16, 3, padding="same", use_bias=False, name="c1")(x)
    h = K.layers.ReLU()(K.layers.BatchNormalization(name="bn1")(h))
    h = K.layers.DepthwiseConv2D(3, padding="same", name="dw")(h)
    h = K.layers.Conv2D(16, 1, name="c2")(K.layers.ReLU()(h))
    y = K.layers.Dense(10, name="head")(K.layers.Flatten()(K.layers.ReLU()(h)))
    supernet = insert_masks(K.Model(x, y))
    sl.tie_arch_variables(supernet)
    for mask in sl.layers.figs_masks(supernet):
        mask.arch("logits").assign(np.linspace(-1, 3, mask.channels).astype("f"))
    return supernet, sl.derive(supernet, "expected")


LOSS = K.losses.SparseCategoricalCrossentropy(from_logits=True)


def test_qat_int8_flatbuffer_matches_the_qat_model():
    K.utils.set_random_seed(0)
    supernet, child = _derived()
    x, y = sl.datasets.arrays("digits", "train")
    child.compile(K.optimizers.Adam(1e-2), LOSS)
    child.fit(x[:512], y[:512], epochs=5, batch_size=32, verbose=0)  # logits of a few units
    qat = export.quantize_aware(child)
    assert export.is_quantize_aware(qat) and not export.is_quantize_aware(child)
    assert qat.count_params() > child.count_params()  # + quantizer ranges; child unchanged
    qat.compile(K.optimizers.Adam(1e-3), LOSS)
    qat.fit(x[:512], y[:512], epochs=1, batch_size=32, verbose=0)
    flatbuffer = export.to_tflite(qat, quantize="int8")  # ranges from QAT: no calibration
    ops = export.op_names(flatbuffer)
    assert ops[0] == "QUANTIZE" and ops[-1] == "DEQUANTIZE" and ops.count("DEQUANTIZE") == 1
    report = export.parity(qat, flatbuffer, x[:200])
    # the QAT model simulates the int8 grid, so the interpreter reproduces it closely
    assert np.abs(qat.predict(x[:200], verbose=0)).max() > 1.0
    assert report.rel_max_diff < export.INT8_RTOL and report.argmax_agreement >= 0.98
    np.testing.assert_allclose(export.predict(flatbuffer, x[:5]),
                               export.predict(flatbuffer, x[:200])[:5], atol=1e-6)


def test_quantize_aware_refuses_search_layers_and_unsupported_layers():
    supernet, _ = _derived()
    with pytest.raises(ValueError, match="search layers.*derive"):
        export.quantize_aware(supernet)
    binary = K.Sequential([K.Input((8, 8, 1)), lq.layers.QuantConv2D(4, 3, name="qc"),
                           K.layers.Flatten(), K.layers.Dense(2)])
    with pytest.raises(ValueError, match="cannot quantize.*qc"):
        export.quantize_aware(binary)
