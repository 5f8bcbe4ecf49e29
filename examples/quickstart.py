"""Quickstart: a float CNN and its binarized twin on digits, profiled and exported.

Trains ``models.simple.float_cnn`` and ``models.simple.binary_cnn`` (larq
``QuantConv2D``, LCE-friendly) on scikit-learn's bundled digits, prints their
cost profiles side by side, exports float TFLite and int8 TFLite of the float
model and LCE (plus float TFLite, for the size comparison) of the binary one,
checks each file against its Keras model and prints the sizes.

Example:
    python -m examples.quickstart --epochs 3 --out out/quickstart
"""

import os
import time

from absl import flags, logging

from searchlayers._keras import keras
from searchlayers import cost, datasets, export
from searchlayers import summary
import tensorflow as tf

from examples import common
from models.simple import binary_cnn, float_cnn

FLAGS = common.example_flags("out/quickstart")  # --out, --seed, --steps_per_epoch
flags.DEFINE_integer("epochs", 3, "Training epochs of each model.", flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 32, "Training batch size.", flag_values=FLAGS)

CHANNELS = (32, 128, 128)


def train(model, epochs, batch_size, seed, learning_rate, steps_per_epoch=None):
    """Compiles and fits ``model`` on digits; returns its test accuracy.
    ``steps_per_epoch`` shortens the epochs.

    Example:
        >>> train(float_cnn(), 1, 64, seed=0, learning_rate=1e-3)  # doctest: +SKIP
        0.9...
    """
    model.compile(
        keras.optimizers.Adam(learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    train_ds = datasets.load("digits", "train", batch_size=batch_size, seed=seed)
    val_ds = datasets.load("digits", "validation", batch_size=256)
    model.fit(train_ds.repeat() if steps_per_epoch else train_ds, validation_data=val_ds,
              epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=2)
    _, accuracy = model.evaluate(datasets.load("digits", "test", batch_size=256), verbose=0)
    logging.info("%s: test accuracy %.3f", model.name, accuracy)
    return accuracy


def export_all(float_model, binary_model, out):
    """Exports the flatbuffers, checks parity; returns ``{file name: ParityReport}``.

    Example:
        >>> reports = export_all(float_model, binary_model, "out/quickstart")  # doctest: +SKIP
        >>> reports["binary_cnn.lce.tflite"].argmax_agreement  # doctest: +SKIP
        1.0
    """
    x_test, _ = datasets.arrays("digits", "test")
    calibration, _ = datasets.arrays("digits", "validation")
    with export.quiet_converter():  # SavedModel / converter INFO chatter
        files = {
            "float_cnn.tflite": (float_model, export.to_tflite(
                float_model, os.path.join(out, "float_cnn.tflite"))),
            "float_cnn.int8.tflite": (float_model, export.to_tflite(
                float_model, os.path.join(out, "float_cnn.int8.tflite"),
                quantize="int8", representative_data=calibration)),
            "binary_cnn.float.tflite": (binary_model, export.to_tflite(
                binary_model, os.path.join(out, "binary_cnn.float.tflite"))),
            "binary_cnn.lce.tflite": (binary_model, export.to_lce(
                binary_model, os.path.join(out, "binary_cnn.lce.tflite"))),
        }
    logging.info("wrote %s to %s", ", ".join(files), out)
    reports = {name: export.parity(model, flatbuffer, x_test)
               for name, (model, flatbuffer) in files.items()}
    lce_report = export.lce_report(binary_model, files["binary_cnn.lce.tflite"][1])
    print("\nBinary convolutions in the LCE file:")
    print(export.format_lce_report(lce_report))
    return reports


TOLERANCES = {  # file name -> (ParityReport attribute, bound); see searchlayers.export
    "float_cnn.tflite": ("max_abs_diff", export.FLOAT_ATOL),
    "float_cnn.int8.tflite": ("rel_max_diff", export.INT8_RTOL),
    "binary_cnn.float.tflite": ("max_abs_diff", export.FLOAT_ATOL),
    "binary_cnn.lce.tflite": ("rel_max_diff", export.LCE_RTOL),
}


def print_exports(reports):
    """Prints size and parity of each file against its tolerance; returns all passed.

    Example:
        >>> print_exports({"float_cnn.tflite": export.parity(m, flat, x)})  # doctest: +SKIP
        True
    """
    print("\nExported flatbuffers (parity against the Keras model on the digits test split):")
    passed = True
    for name, report in reports.items():
        attribute, bound = TOLERANCES[name]
        ok = getattr(report, attribute) < bound
        passed = passed and ok
        print(f"  {name:<25} {'ok  ' if ok else 'FAIL'} {report}")
    ratio = (reports["binary_cnn.float.tflite"].size_bytes
             / reports["binary_cnn.lce.tflite"].size_bytes)
    print(f"  binary twin: LCE file is {ratio:.1f}x smaller than its float TFLite file")
    return passed


def main(argv):
    del argv
    start = time.time()
    tf.get_logger().setLevel("ERROR")  # TensorFlow's SavedModel / converter chatter
    keras.utils.set_random_seed(FLAGS.seed)
    shape = datasets.info("digits").input_shape
    float_model = float_cnn(shape, 10, channels=CHANNELS)
    binary_model = binary_cnn(shape, 10, channels=CHANNELS)
    accuracy = {
        "float_cnn": train(float_model, FLAGS.epochs, FLAGS.batch_size, FLAGS.seed, 3e-3,
                           FLAGS.steps_per_epoch),
        "binary_cnn": train(binary_model, FLAGS.epochs, FLAGS.batch_size, FLAGS.seed, 1e-2,
                            FLAGS.steps_per_epoch),
    }
    print("\nCost profiles:")
    print(cost.compare(cost.profile(float_model), cost.profile(binary_model),
                       names=["float_cnn", "binary_cnn"]))
    print("\nTest accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()))
    reports = export_all(float_model, binary_model, FLAGS.out)
    passed = print_exports(reports)
    print()
    summary.run_summary(
        "quickstart", f"no search: a float CNN and its binarized twin (larq), channels "
        f"{CHANNELS}, {FLAGS.epochs} epochs each on digits", out=FLAGS.out, decision=float_model,
        architecture="float_cnn and binary_cnn (models.simple), as built",
        cost={m.name: summary.cost_of(m, "exact") for m in (float_model, binary_model)},
        accuracy={f"test ({name})": value for name, value in accuracy.items()},
        exports=[summary.export_entry(os.path.join(FLAGS.out, name), report)
                 for name, report in reports.items()],
        files=summary.written(FLAGS.out), details={"seed": FLAGS.seed},
        seconds=time.time() - start)
    if not passed:
        raise SystemExit("A flatbuffer is outside its parity tolerance (FAIL above).")


if __name__ == "__main__":
    common.main(main, FLAGS)
