"""int8 deployment of a FiGS-derived network on digits: float vs PTQ vs QAT.

Claim checked (issue 4): the derived float model can be exported as int8
TFLite by post-training quantization (``export.to_tflite(quantize="int8")``
calibrated on training images) and after quantization-aware training
(``export.quantize_aware``: tfmot ``quantize_model``, a brief fine-tune, then
``to_tflite(quantize="int8")``); the table puts both int8 accuracies next to
the float accuracy. The full (unmasked) ResNet goes through the same steps as a
reference.

Protocol. ``benchmarks.figs_sweep.search`` searches the masked
``models.figs.resnet`` at ``--strength`` and derives it (``floor(sum p)``
channels); the derived network (weights inherited) and the full ResNet (from
scratch) are trained ``--train_epochs`` (Adam 3e-3). Float accuracy is the Keras
model's; every int8 accuracy is measured by running the flatbuffer in the
TFLite interpreter (``export.predict``) on the digits test split (359 images).
QAT fine-tunes ``--qat_epochs`` with Adam 1e-4 starting from the float weights.

Example:
    python -m benchmarks.figs_int8            # ~3 minutes on 2 busy CPU cores
    python -m benchmarks.figs_int8 --quick    # short training
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
import numpy as np  # noqa: E402

import searchlayers as sl  # noqa: E402  (Keras-2 guard before TensorFlow)
import tensorflow as tf  # noqa: E402
from searchlayers import datasets, export  # noqa: E402

from benchmarks.common import table, write_json  # noqa: E402
# figs_sweep defines the shared "quick" flag (absl flags are process-wide).
from benchmarks.figs_sweep import BATCH, CLASSES, LOSS, SHAPE, search  # noqa: E402
from models.figs import resnet  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_float("strength", 4.0, "FiGS strength s of the searched network.")
flags.DEFINE_integer("int8_search_epochs", 12, "Epochs of architecture learning.")
flags.DEFINE_integer("train_epochs", 15, "Float training epochs of each network.")
flags.DEFINE_integer("qat_epochs", 3, "Quantization-aware fine-tuning epochs.")
flags.DEFINE_integer("calibration", 300, "Training images calibrating post-training int8.")

keras = sl.keras


def accuracy(logits, labels):
    return float(np.mean(np.argmax(logits, -1) == labels))


def train(model, epochs, lr, seed=0):
    """Trains ``model`` in place (Adam ``lr``) on the digits training split."""
    keras.utils.set_random_seed(seed)
    model.compile(keras.optimizers.Adam(lr), LOSS)
    model.fit(datasets.load("digits", "train", batch_size=BATCH, seed=seed),
              epochs=epochs, verbose=0)
    return model


def int8_row(name, model, train_epochs, qat_epochs, calibration):
    """Float, post-training int8 and QAT int8 test accuracy of one float network.

    Example:
        >>> int8_row("full", resnet(), 1, 1, 100)["qat_int8"]  # doctest: +SKIP
    """
    x_train, _ = datasets.arrays("digits", "train")
    x_test, y_test = datasets.arrays("digits", "test")
    train(model, train_epochs, 3e-3)
    float_fb = export.to_tflite(model)
    ptq_fb = export.to_tflite(model, quantize="int8", representative_data=x_train,
                              num_calibration=calibration)
    qat = train(export.quantize_aware(model), qat_epochs, 1e-4)
    qat_fb = export.to_tflite(qat, quantize="int8")
    return {
        "network": name, "params": model.count_params(),
        "float": accuracy(model.predict(x_test, verbose=0), y_test),
        "float_tflite": accuracy(export.predict(float_fb, x_test), y_test),
        "ptq_int8": accuracy(export.predict(ptq_fb, x_test), y_test),
        "qat_keras": accuracy(qat.predict(x_test, verbose=0), y_test),
        "qat_int8": accuracy(export.predict(qat_fb, x_test), y_test),
        "kib": {"float": len(float_fb) / 1024, "ptq_int8": len(ptq_fb) / 1024,
                "qat_int8": len(qat_fb) / 1024},
        "qat_parity": str(export.parity(qat, qat_fb, x_test)),
        "ops_qat_int8": sorted(set(export.op_names(qat_fb))),
    }


def main(argv):
    del argv
    start = time.time()
    tf.get_logger().setLevel("ERROR")  # retracing notices of the many small models
    logging.set_verbosity(logging.WARNING)  # the TFLite converter's progress lines
    quick = FLAGS.quick
    search_epochs = 4 if quick else FLAGS.int8_search_epochs
    train_epochs = 4 if quick else FLAGS.train_epochs
    qat_epochs = 1 if quick else FLAGS.qat_epochs
    child, record = search(FLAGS.strength, search_epochs)
    record.pop("alive_model")  # (the sweep retrains it; here only the paper export)
    print(f"FiGS s={FLAGS.strength:g}: derived {record['params']:,} params", flush=True)
    rows = [int8_row(f"FiGS derived (s={FLAGS.strength:g})", child, train_epochs, qat_epochs,
                     FLAGS.calibration),
            int8_row("full ResNet", resnet(SHAPE, CLASSES), train_epochs, qat_epochs,
                     FLAGS.calibration)]
    print(table([[r["network"], r["params"], 100 * r["float"], 100 * r["ptq_int8"],
                  100 * r["qat_int8"], r["kib"]["float"], r["kib"]["ptq_int8"],
                  r["kib"]["qat_int8"]] for r in rows],
                ["network", "params", "float %", "PTQ int8 %", "QAT int8 %", "float KiB",
                 "PTQ KiB", "QAT KiB"]))
    for r in rows:
        print(f"{r['network']}: float TFLite {100 * r['float_tflite']:.2f}%, QAT Keras "
              f"{100 * r['qat_keras']:.2f}%; QAT int8 file vs QAT model: {r['qat_parity']}")
    path = write_json("figs_int8_quick" if quick else "figs_int8", {
        "config": {"strength": FLAGS.strength, "search_epochs": search_epochs,
                   "train_epochs": train_epochs, "qat_epochs": qat_epochs,
                   "calibration": FLAGS.calibration, "quick": quick,
                   "test_images": int(len(datasets.arrays("digits", "test")[1]))},
        "search": record, "rows": rows, "seconds": time.time() - start,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
