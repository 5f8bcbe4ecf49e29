"""Export Keras models to TFLite / Larq Compute Engine flatbuffers, and check them.

* :func:`to_tflite`: float TFLite, or post-training full-integer int8 quantization
  calibrated on a representative dataset, or int8 from a quantization-aware model.
* :func:`quantize_aware`: a quantization-aware-training (QAT) copy of a plain
  model (tensorflow-model-optimization's ``quantize_model``): fine-tune it, then
  ``to_tflite(qat_model, quantize="int8")``.
* :func:`predict`: runs a flatbuffer on a batch (TFLite or LCE interpreter).
* :func:`to_lce`: Larq Compute Engine flatbuffer (binary convolutions become
  ``LceBconv2d``) via ``larq_compute_engine.convert_keras_model``.
* :func:`parity`: runs a flatbuffer (``tf.lite.Interpreter``, or
  ``larq_compute_engine.testing.Interpreter`` when it holds LCE ops) on given
  inputs against the Keras model.
* :func:`lce_report`: which binary convolutions of the Keras model became
  ``LceBconv2d`` in the flatbuffer, and why the others did not (when known).

Tolerances (max abs difference of the outputs, relative to ``max|keras output|``,
see :attr:`ParityReport.rel_max_diff`), used by the tests and the quickstart:

* float TFLite: ``FLOAT_ATOL = 1e-4`` absolute.
* int8 TFLite: ``INT8_RTOL = 0.1`` relative and most argmaxes equal; int8
  rounding of activations is the expected error.
* LCE: ``LCE_RTOL = 1e-3`` relative. Binary layers take the sign of their
  input, so a pre-activation within float rounding of zero may flip and move
  one example's output by more; check ``argmax_agreement`` too.

Example:
    >>> from searchlayers import export
    >>> flatbuffer = export.to_tflite(model, "model.tflite")
    >>> print(export.parity(model, flatbuffer, x_test))
    tflite: max|diff| ...e-0..., argmax agreement 100.0% over 16, size ... KiB
"""

import collections
import contextlib
import dataclasses
import os
import warnings

import numpy as np

from searchlayers import _logs, checks
from searchlayers._keras import keras, require_built
from searchlayers.cost import bits
import tensorflow as tf


FLOAT_ATOL = 1e-4
INT8_RTOL = 0.1
LCE_RTOL = 1e-3

_SIGN_QUANTIZERS = ("SteSign", "ApproxSign", "SwishSign")
_SCALED_SIGN_KERNELS = _SIGN_QUANTIZERS + ("MagnitudeAwareSign", "ScaledSign")


# ------------------------------------------------------------------- conversion


@contextlib.contextmanager
def quiet_converter():
    """Raises absl's log level to WARNING inside the block, then restores it, and
    drops TensorFlow's C++ notices of the block (``searchlayers._logs.quiet``):
    the TFLite / LCE converters and SavedModel export log many INFO lines.
    ``to_tflite`` and ``to_lce`` convert inside it; with an absl verbosity of
    INFO or more (``--verbosity=0``) it keeps every line.

    Example:
        >>> with quiet_converter():
        ...     flatbuffer = to_tflite(model)  # doctest: +SKIP
    """
    from absl import logging

    if _logs.verbose():
        yield
        return
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.WARNING)
    try:
        with _logs.quiet():
            yield
    finally:
        logging.set_verbosity(verbosity)


def to_tflite(model, path=None, quantize=None, representative_data=None,
              num_calibration=100, int8_io=False):
    """Converts a built Keras model to a TFLite flatbuffer; returns its bytes.

    Args:
        model: a built ``keras.Model``.
        path: where to write the flatbuffer (folders are created); optional.
        quantize: ``None`` (float32) or ``"int8"``: full-integer post-training
            quantization (weights and activations int8, int8 builtin ops only).
            A quantization-aware model (:func:`quantize_aware`) converts to int8
            with the ranges it learned (no calibration data needed).
        representative_data: inputs to calibrate int8 ranges: a numpy array
            (N, ...), or an iterable / ``tf.data.Dataset`` of input batches or of
            ``(x, y)`` batches. Required for ``"int8"`` (unless quantization-aware).
        num_calibration: how many examples of ``representative_data`` to use.
        int8_io: with ``"int8"``, make the model's input and output int8 too. The
            default keeps float32 input / output (quantize and dequantize ops at
            the ends) so the file is a drop-in replacement and parity is direct.

    Raises:
        ValueError: unbuilt model, unknown ``quantize``, missing calibration data.

    Example:
        >>> float_fb = to_tflite(model, "out/model.tflite")
        >>> int8_fb = to_tflite(model, quantize="int8", representative_data=x_train)
    """
    _check_built(model, "to_tflite")
    if quantize not in (None, "int8"):
        raise ValueError(f"to_tflite: quantize must be None or 'int8', got {quantize!r}.")
    num_calibration = checks.positive("to_tflite", "num_calibration", num_calibration,
                                      integer=True)
    checks.boolean("to_tflite", "int8_io", int8_io)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [_inference_function(model)], model)
    if quantize == "int8" and is_quantize_aware(model):
        # The fake-quant ranges learned in QAT fix every scale; all ops become int8.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    elif quantize == "int8":
        if representative_data is None:
            raise ValueError(
                "quantize='int8' needs representative_data (a few hundred typical "
                "inputs) to calibrate the activation ranges."
            )
        examples = _calibration(model, representative_data, num_calibration)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[None]] for x in examples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    with warnings.catch_warnings(), quiet_converter():  # float io: no input statistics
        warnings.filterwarnings("ignore", "Statistics for quantized inputs")
        flatbuffer = converter.convert()
    if quantize == "int8" and not _has_int8_tensors(flatbuffer):
        raise ValueError(
            f"to_tflite: quantize='int8' was asked but the converted file of model "
            f"'{model.name}' holds no int8 tensor; refusing to return a float model."
        )
    return _write(flatbuffer, path)


def to_lce(model, path=None):
    """Converts a built Keras / Larq model to an LCE flatbuffer; returns its bytes.

    Binary convolutions (larq ``QuantConv2D`` with sign input and kernel
    quantizers) become ``LceBconv2d`` with 1-bit packed weights; everything else
    stays a float TFLite op. Run it with ``larq_compute_engine.testing.Interpreter``
    (or :func:`parity`) on x86, or the LCE runtime on ARM.

    Raises:
        ValueError: unbuilt model.

    Example:
        >>> flatbuffer = to_lce(binary_model, "out/binary.lce.tflite")
        >>> lce_report(binary_model, flatbuffer)["all_lowered"]
        True
    """
    _check_built(model, "to_lce")
    import larq_compute_engine as lce

    with quiet_converter():
        flatbuffer = lce.convert_keras_model(model)
    return _write(flatbuffer, path)


def quantize_aware(model):
    """A quantization-aware-training copy of a plain Keras model (TF Model Optimization).

    Wraps every layer with int8 fake quantization
    (``tfmot.quantization.keras.quantize_model``: per-channel weights, per-tensor
    activations, BatchNorm folded into the preceding conv). Compile and fine-tune
    it briefly, then ``to_tflite(qat, quantize="int8")`` gives an int8 flatbuffer
    whose outputs match the QAT model's. Weights are copied; ``model`` is unchanged.

    Raises:
        ValueError: unbuilt model, a model with search layers (derive it first), or
            a layer tfmot cannot quantize (named, with tfmot's reason).

    Example:
        >>> qat = quantize_aware(sl.derive(supernet, "expected"))  # doctest: +SKIP
        >>> qat.compile(...); qat.fit(train, epochs=1)  # doctest: +SKIP
        >>> int8 = to_tflite(qat, "out/model_qat.tflite", quantize="int8")  # doctest: +SKIP
    """
    _check_built(model)
    from searchlayers.layers.base import search_layers

    found = [layer.name for layer in search_layers(model)]
    if found:
        raise ValueError(
            f"quantize_aware: model '{model.name}' still has search layers {found}; "
            "quantize the derived model: quantize_aware(searchlayers.derive(model, ...))."
        )
    import tensorflow_model_optimization as tfmot

    try:
        return tfmot.quantization.keras.quantize_model(model)
    except (RuntimeError, ValueError) as error:
        raise ValueError(
            f"quantize_aware: tensorflow-model-optimization cannot quantize model "
            f"'{model.name}': {error}"
        ) from error


def is_quantize_aware(model):
    """True when ``model`` has tfmot quantization wrappers (made by :func:`quantize_aware`).

    Example:
        >>> is_quantize_aware(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
        False
    """
    return any(
        type(layer).__name__ in ("QuantizeWrapper", "QuantizeWrapperV2")
        for layer in model._flatten_layers(include_self=False, recursive=True)
    )


def _inference_function(model):
    """``model(x, training=False)`` traced once with the model's input signature
    (batch size free), for the TFLite converter.

    ``TFLiteConverter.from_keras_model`` would first write the model as a
    SavedModel, and Keras' SavedModel serialization traces every layer's call
    functions, and reads it back; converting from this one trace gives the same
    file and signature without that detour. Time, median of 5 interleaved rounds:
    0.77x on a small CNN, 1.07x on a derived MobileNetV2, where the converter's
    own passes dominate; single rounds vary from 0.46x to 1.74x
    (``benchmarks/export_time.py``).
    """
    if not model.inputs:  # a subclassed model, called once (_check_built)
        spec = model._get_save_spec(dynamic_batch=True)
        return tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    # the signature's names, as from_keras_model gives them: inputs and outputs by layer
    spec = [tf.TensorSpec(t.shape, t.dtype, name=t._keras_history.layer.name)
            for t in model.inputs]

    def serve(x):
        outputs = tf.nest.flatten(model(x, training=False))
        return dict(zip(model.output_names, outputs))

    return tf.function(serve).get_concrete_function(spec[0] if len(spec) == 1 else spec)


def _check_built(model, where=None):
    require_built(model, "its input shape is unknown and it cannot be exported")
    if not model.inputs and model._get_save_spec() is None:
        raise ValueError(
            f"Model {model.name!r} is built but its input signature is unknown (a "
            "subclassed model built with build() only), so it cannot be exported. "
            "Call it once on a batch, model(x), before exporting."
        )
    from searchlayers.layers.base import search_layers

    left = [layer.name for layer in search_layers(model)] if where else []
    if left:  # documented choice: warn (a supernet exports, but computes every candidate)
        warnings.warn(
            f"{where}: model '{model.name}' still holds search layers {left}; the file "
            "computes the whole supernet. Export searchlayers.derive(model) instead.",
            stacklevel=3,
        )


def _write(flatbuffer, path):
    if path is not None:
        folder = os.path.dirname(os.fspath(path))
        if folder:
            os.makedirs(folder, exist_ok=True)
        with open(path, "wb") as f:
            f.write(flatbuffer)
    return flatbuffer


def _calibration(model, data, limit):
    """Up to ``limit`` calibration examples as one float32 array, checked before
    conversion: at least one example, all finite, each of the model's input shape."""
    where = "to_tflite(quantize='int8')"
    examples = []
    try:
        for batch in _batches(data):
            examples.extend(np.asarray(batch, dtype=np.float32)[: limit - len(examples)])
            if len(examples) >= limit:
                break
    except (TypeError, ValueError) as error:
        raise checks.ArgumentTypeError(
            f"{where}: representative_data must be an array (N, ...) or an iterable / "
            f"dataset of input batches, got {checks.show(data)} ({error})."
        ) from None
    array = checks.finite_array(where, "representative_data", examples)
    want = tuple(model.inputs[0].shape[1:]) if model.inputs else None
    if want is not None and not _fits(array.shape[1:], want):
        checks.fail(where, "the shape of each representative_data example",
                    array.shape[1:], f"the model's input shape {want}")
    return array.astype(np.float32)


def _fits(shape, want):
    return len(shape) == len(want) and all(w is None or s == w for s, w in zip(shape, want))


def _input_shape(flatbuffer):
    """The first input's shape without the batch axis (None: any size), or None
    when the file does not say."""
    schema = _schema()
    subgraph = schema.Model.GetRootAsModel(flatbuffer, 0).Subgraphs(0)
    if subgraph is None or not subgraph.InputsLength():
        return None
    tensor = subgraph.Tensors(subgraph.Inputs(0))
    signature = tensor.ShapeSignatureAsNumpy() if tensor.ShapeSignatureLength() else None
    shape = tensor.ShapeAsNumpy() if tensor.ShapeLength() else None
    dims = signature if signature is not None else shape
    if dims is None or len(dims) < 1:
        return None
    return tuple(None if d < 0 else int(d) for d in list(dims)[1:])


def _has_int8_tensors(flatbuffer):
    schema = _schema()
    fb = schema.Model.GetRootAsModel(flatbuffer, 0)
    return any(
        fb.Subgraphs(s).Tensors(t).Type() == schema.TensorType.INT8
        for s in range(fb.SubgraphsLength())
        for t in range(fb.Subgraphs(s).TensorsLength())
    )


def _batches(data):
    """Yields input batches of ``data`` (an array, a dataset, or an iterable)."""
    if isinstance(data, np.ndarray):
        yield data
        return
    if isinstance(data, tf.data.Dataset):
        data = data.as_numpy_iterator()
    for item in data:
        yield item[0] if isinstance(item, (tuple, list)) else item


# ----------------------------------------------------------------------- parity


@dataclasses.dataclass
class ParityReport:
    """How closely a flatbuffer reproduces its Keras model on some inputs.

    Example:
        >>> report = parity(model, flatbuffer, x_test)
        >>> report.max_abs_diff < FLOAT_ATOL
        True
        >>> print(report)
        tflite: max|diff| ...e-0..., argmax agreement 100.0% over 16, size ... KiB
    """

    max_abs_diff: float
    mean_abs_diff: float
    rel_max_diff: float  # max_abs_diff / max|keras output|
    argmax_agreement: float  # fraction of examples with the same argmax
    size_bytes: int
    num_examples: int
    interpreter: str  # "tflite" or "lce"

    def __str__(self):
        return (
            f"{self.interpreter}: max|diff| {self.max_abs_diff:.3g} "
            f"(relative {self.rel_max_diff:.3g}), mean|diff| {self.mean_abs_diff:.3g}, "
            f"argmax agreement {self.argmax_agreement:.1%} over {self.num_examples}, "
            f"size {self.size_bytes / 1024:.1f} KiB"
        )


def parity(model, flatbuffer, inputs, lce=None):
    """Runs ``flatbuffer`` and ``model`` on ``inputs``; returns a :class:`ParityReport`.

    Args:
        model: the Keras model the flatbuffer came from (single input/output).
        flatbuffer: bytes from :func:`to_tflite` / :func:`to_lce`, or a file path.
        inputs: a numpy batch of model inputs (float, as the Keras model takes).
        lce: run with the LCE interpreter; default: when the file holds LCE ops.
            int8 inputs/outputs are (de)quantized with the file's own scales.

    Example:
        >>> report = parity(model, to_lce(model), x_test)
        >>> report.rel_max_diff < LCE_RTOL
        True
    """
    flatbuffer, inputs, lce = _checked(flatbuffer, inputs, lce)
    if not len(inputs) or not np.isfinite(inputs).all():  # no report to give: say so
        checks.fail("export.parity", "inputs", f"{len(inputs)} examples" if not len(inputs)
                    else "inputs holding NaN or inf", "a batch of >= 1 example, all finite")
    got = _run(flatbuffer, inputs, lce).reshape(len(inputs), -1)
    want = np.asarray(model(inputs, training=False), dtype=np.float32).reshape(len(inputs), -1)
    diff = np.abs(got - want)
    return ParityReport(
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(diff.mean()),
        rel_max_diff=float(diff.max() / max(np.abs(want).max(), 1e-12)),
        argmax_agreement=float(np.mean(got.argmax(-1) == want.argmax(-1))),
        size_bytes=len(flatbuffer),
        num_examples=len(inputs),
        interpreter="lce" if lce else "tflite",
    )


def predict(flatbuffer, inputs, lce=None):
    """Runs ``flatbuffer`` on a float batch ``inputs``; returns float outputs (N, ...).

    int8 inputs / outputs are (de)quantized with the file's own scales. ``lce``:
    use the LCE interpreter; default: when the file holds LCE ops.

    Example:
        >>> logits = predict(to_tflite(model, quantize="int8", representative_data=x), x)
        >>> accuracy = (logits.argmax(-1) == y).mean()  # doctest: +SKIP
    """
    return _run(*_checked(flatbuffer, inputs, lce))


def _checked(flatbuffer, inputs, lce):
    """``(bytes, float32 inputs, lce)``: the file read and checked, the inputs
    checked against its input shape, ``lce`` decided from its ops when None."""
    flatbuffer = _read(flatbuffer)
    try:
        inputs = np.asarray(inputs, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise checks.ArgumentTypeError(
            f"export.predict: inputs must be an array of numbers (N, ...), got "
            f"{checks.show(inputs)} ({error})."
        ) from None
    want = _input_shape(flatbuffer)
    if want is not None and not _fits(inputs.shape[1:], want):
        checks.fail("export.predict", "the shape of each input example", inputs.shape[1:],
                    f"the file's input shape {tuple(w for w in want)}")
    if lce is None:
        lce = any(op.startswith("Lce") for op in op_names(flatbuffer))
    return flatbuffer, inputs, lce


def _run(flatbuffer, inputs, lce):
    return (_run_lce if lce else _run_tflite)(flatbuffer, inputs)


def _read(flatbuffer):
    if isinstance(flatbuffer, (bytes, bytearray)):
        data = bytes(flatbuffer)
    elif isinstance(flatbuffer, (str, os.PathLike)):
        with open(flatbuffer, "rb") as f:
            data = f.read()
    else:
        raise checks.ArgumentTypeError(
            f"export: flatbuffer must be bytes or a file path, got {checks.show(flatbuffer)}."
        )
    if data[4:8] != b"TFL3":  # the TFLite file identifier
        raise ValueError(
            f"export: flatbuffer is not a TFLite flatbuffer (no 'TFL3' identifier in "
            f"{len(data)} bytes); pass what to_tflite / to_lce returned or wrote."
        )
    return data


def _quantize(x, dtype, scale, zero_point):
    if dtype in (np.int8, np.uint8) and scale:
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)
    return x.astype(dtype)


def _dequantize(y, scale, zero_point):
    if y.dtype in (np.int8, np.uint8) and scale:
        return (y.astype(np.float32) - zero_point) * scale
    return y.astype(np.float32)


def _run_tflite(flatbuffer, inputs):
    """Runs a plain TFLite flatbuffer on a batch with ``tf.lite.Interpreter``."""
    with warnings.catch_warnings():  # "tf.lite.Interpreter is deprecated" (still works)
        warnings.simplefilter("ignore", UserWarning)
        interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    inp = interpreter.get_input_details()[0]
    with _logs.quiet():  # "Created TensorFlow Lite XNNPACK delegate for CPU."
        interpreter.resize_tensor_input(inp["index"], list(inputs.shape))
        interpreter.allocate_tensors()
        inp = interpreter.get_input_details()[0]
        out = interpreter.get_output_details()[0]
        interpreter.set_tensor(inp["index"], _quantize(inputs, inp["dtype"],
                                                       *inp["quantization"]))
        interpreter.invoke()
    return _dequantize(interpreter.get_tensor(out["index"]), *out["quantization"])


def _run_lce(flatbuffer, inputs):
    """Runs a flatbuffer with LCE's interpreter (reference kernels on x86)."""
    import larq_compute_engine as lce

    interpreter = lce.testing.Interpreter(flatbuffer)
    dtype = np.dtype(interpreter.input_types[0])
    in_scale, in_zero = interpreter.input_scales[0] or 0.0, interpreter.input_zero_points[0] or 0
    out_scale, out_zero = interpreter.output_scales[0] or 0.0, interpreter.output_zero_points[0] or 0
    outputs = interpreter.predict(_quantize(inputs, dtype, in_scale, in_zero))
    return _dequantize(np.asarray(outputs), out_scale, out_zero)


# ------------------------------------------------------------ flatbuffer reading


def _schema():
    from larq_compute_engine.mlir.python import tflite_schema

    return tflite_schema


def _operators(flatbuffer):
    """Yields ``(op_name, operator, subgraph)`` for every op of every subgraph."""
    schema = _schema()
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    builtin = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if code.CustomCode():
            codes.append(code.CustomCode().decode())
        else:
            number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            codes.append(builtin.get(number, str(number)))
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for j in range(subgraph.OperatorsLength()):
            op = subgraph.Operators(j)
            yield codes[op.OpcodeIndex()], op, subgraph


def op_names(flatbuffer):
    """Returns the op names of a flatbuffer in execution order (custom ops by name).

    Example:
        >>> op_names(to_lce(binary_model))
        ['CONV_2D', 'LceQuantize', 'LceBconv2d', 'LceBMaxPool2d', ...]
    """
    return [name for name, _, _ in _operators(_read(flatbuffer))]


def _bconv_signatures(flatbuffer):
    """Returns ``(out_channels, kh, kw, out_h, out_w)`` of every LceBconv2d op."""
    signatures = []
    for name, op, subgraph in _operators(flatbuffer):
        if name != "LceBconv2d":
            continue
        kernel = subgraph.Tensors(op.Inputs(1)).ShapeAsNumpy()  # [Cout, kh, kw, packed Cin]
        output = subgraph.Tensors(op.Outputs(0)).ShapeAsNumpy()  # [1, H, W, C]
        signatures.append((int(kernel[0]), int(kernel[1]), int(kernel[2]),
                           int(output[1]), int(output[2])))
    return signatures


# ------------------------------------------------------------------ LCE report


def _quantizer_name(quantizer):
    return None if quantizer is None else type(quantizer).__name__


def _quant_convs(model):
    """Returns the larq QuantConv2D layers of ``model`` (nested models included)."""
    import larq as lq

    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(_quant_convs(layer))
        elif isinstance(layer, lq.layers.QuantConv2D):
            found.append(layer)
    return found


def is_binary_conv(layer):
    """True for a larq ``QuantConv2D`` whose input and kernel quantizers are 1-bit.

    Example:
        >>> sum(is_binary_conv(layer) for layer in binary_model.layers)
        2
    """
    import larq as lq

    return (
        isinstance(layer, lq.layers.QuantConv2D)
        and bits(layer.input_quantizer) == 1
        and bits(layer.kernel_quantizer) == 1
    )


def lowering_blockers(layer):
    """Returns why LCE would not lower this conv to ``LceBconv2d`` (empty: no reason).

    The rules of LCE 0.16: sign input quantizer (ste_sign, approx_sign,
    swish_sign), kernel quantized to +-scale per output channel (ste_sign,
    approx_sign, swish_sign, magnitude_aware_sign), channels_last, and for
    grouped convs a multiple of 32 input channels per group.

    Example:
        >>> conv = QuantConv2D(64, 3, input_quantizer="ste_tern", kernel_quantizer="ste_sign",
        ...                    kernel_constraint="weight_clip")
        >>> _ = conv(keras.Input((4, 4, 32)))
        >>> lowering_blockers(conv)
        ['input quantizer SteTern is not sign-like (ste_sign, approx_sign, swish_sign)']
    """
    reasons = []
    name = _quantizer_name(layer.input_quantizer)
    if name not in _SIGN_QUANTIZERS:
        reasons.append(f"input quantizer {name} is not sign-like "
                       "(ste_sign, approx_sign, swish_sign)")
    name = _quantizer_name(layer.kernel_quantizer)
    if name not in _SCALED_SIGN_KERNELS:
        reasons.append(f"kernel quantizer {name} does not give +-scale per output "
                       "channel (ste_sign, magnitude_aware_sign, ...)")
    if layer.data_format != "channels_last":
        reasons.append(f"data_format {layer.data_format} (LCE needs channels_last)")
    groups = getattr(layer, "groups", 1)
    per_group = int(layer.input_shape[-1]) // groups
    if groups != 1 and per_group % 32:
        reasons.append(f"groups={groups} with {per_group} input channels per group "
                       "(grouped binary convs need a multiple of 32 per group)")
    return reasons


def _performance_notes(layer):
    """Lowered-but-slower hints (REFERENCE.md: LCE's fast path)."""
    notes = []
    if layer.padding == "same" and getattr(layer, "pad_values", 0.0) != 1.0:
        notes.append("padding='same' with pad_values != 1.0 needs a padding "
                     "correction; pad_values=1.0 is the fast path")
    in_channels = int(layer.input_shape[-1])
    if in_channels % 32:
        notes.append(f"{in_channels} input channels (a multiple of 32 packs fully)")
    if layer.filters % 8:
        notes.append(f"{layer.filters} output channels (prefer a multiple of 8)")
    return notes


def _layer_signature(layer):
    kh, kw = layer.kernel_size
    _, height, width, _ = layer.output_shape
    return (layer.filters, kh, kw, height, width)


def _match_bconvs(layers, signatures):
    """Returns, per layer, whether an LceBconv2d op of the same signature exists.

    Ops are handed out once each, first to layers that no rule keeps from
    lowering, so that look-alike layers are told apart by the rules.
    """
    remaining = collections.Counter(signatures)
    lowered = [False] * len(layers)
    by_likelihood = sorted(range(len(layers)), key=lambda i: bool(lowering_blockers(layers[i])))
    for i in by_likelihood:
        signature = _layer_signature(layers[i])
        if remaining[signature] > 0:
            remaining[signature] -= 1
            lowered[i] = True
    return lowered


def lce_report(model, flatbuffer):
    """Says which binary convs of ``model`` became ``LceBconv2d`` in ``flatbuffer``.

    Keras layers are matched to ``LceBconv2d`` ops by (output channels, kernel
    size, output height and width); a binary conv left without a match did not
    lower, and its ``reasons`` come from :func:`lowering_blockers` ("unknown"
    when no rule explains it). When look-alike layers compete for fewer ops, the
    ops go first to layers that no rule blocks.

    Returns:
        A dict with ``binary_convs`` (one dict per binary QuantConv2D: ``layer``,
        ``lowered``, ``reasons``, ``notes``), ``num_binary_convs``,
        ``num_lce_bconv2d`` (ops in the file), ``all_lowered`` and ``op_counts``.

    Example:
        >>> report = lce_report(binary_model, to_lce(binary_model))
        >>> report["all_lowered"], report["num_lce_bconv2d"]
        (True, 2)
    """
    flatbuffer = _read(flatbuffer)
    layers = list(filter(is_binary_conv, _quant_convs(model)))
    lowered = _match_bconvs(layers, _bconv_signatures(flatbuffer))
    rows = []
    for layer, done in zip(layers, lowered):
        reasons = [] if done else (lowering_blockers(layer) or ["unknown"])
        rows.append(dict(layer=layer.name, lowered=done, reasons=reasons,
                         notes=_performance_notes(layer)))
    names = op_names(flatbuffer)
    return dict(
        binary_convs=rows,
        num_binary_convs=len(rows),
        num_lce_bconv2d=names.count("LceBconv2d"),
        all_lowered=all(row["lowered"] for row in rows),
        op_counts=dict(collections.Counter(names)),
    )


def format_lce_report(report):
    """Returns a short text table of an :func:`lce_report` dict.

    Example:
        >>> print(format_lce_report(lce_report(binary_model, to_lce(binary_model))))
        quant_conv2d... LceBconv2d
        quant_conv2d... LceBconv2d
        2/2 binary convs lowered to LceBconv2d (2 LceBconv2d ops in the file)
    """
    width = max([len(row["layer"]) for row in report["binary_convs"]] + [5])
    lines = []
    for row in report["binary_convs"]:
        status = "LceBconv2d" if row["lowered"] else "NOT lowered: " + "; ".join(row["reasons"])
        if row["notes"]:
            status += " (note: " + "; ".join(row["notes"]) + ")"
        lines.append(f"{row['layer']:<{width}}  {status}")
    lowered = sum(row["lowered"] for row in report["binary_convs"])
    lines.append(f"{lowered}/{report['num_binary_convs']} binary convs lowered to "
                 f"LceBconv2d ({report['num_lce_bconv2d']} LceBconv2d ops in the file)")
    return "\n".join(lines)


__all__ = [
    "FLOAT_ATOL",
    "INT8_RTOL",
    "LCE_RTOL",
    "ParityReport",
    "format_lce_report",
    "is_binary_conv",
    "is_quantize_aware",
    "lce_report",
    "lowering_blockers",
    "op_names",
    "parity",
    "predict",
    "quantize_aware",
    "quiet_converter",
    "to_lce",
    "to_tflite",
]
