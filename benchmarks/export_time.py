"""TFLite conversion time: ``export.to_tflite`` (converts one trace of the model's
inference call) against ``tf.lite.TFLiteConverter.from_keras_model`` (which
first writes the model as a SavedModel, tracing every layer's call functions).

Both sides convert the same model in one process, interleaved: each round
converts once per side in a rotating order; the reported ratio is the median
over rounds of to_tflite / from_keras_model. The two flatbuffers must agree:
same size, same signature, outputs within 1e-5 on random inputs.

Example:
    python -m benchmarks.export_time            # a few minutes on 2 CPU cores
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
import numpy as np  # noqa: E402

import searchlayers as sl  # noqa: E402  (Keras-2 guard before TensorFlow)
import tensorflow as tf  # noqa: E402
from searchlayers import export  # noqa: E402
from searchlayers.transforms import insert_masks  # noqa: E402

from benchmarks.applications import FAMILIES, forced_architecture  # noqa: E402
from benchmarks.common import table, write_json  # noqa: E402
from models.simple import float_cnn  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("rounds", 5, "Interleaved rounds (one conversion per side each).")

keras = sl.keras


def _derived_mobilenet_v2():
    """``benchmarks.applications``' MobileNetV2 (alpha 0.35, 32x32), derived with
    40 % of its mask channels off (as tests/test_applications_derive.py)."""
    masked = insert_masks(FAMILIES["MobileNetV2"]())
    return sl.derive(masked, architecture=forced_architecture(masked, 0.4))


MODELS = {
    "float_cnn (digits)": lambda: float_cnn(channels=(8, 16, 16)),
    "derived MobileNetV2 32x32": _derived_mobilenet_v2,
}


def _keras_model(model):
    with export.quiet_converter():
        return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def measure(name, rounds):
    """Interleaved conversion times of one model and the agreement of the two files."""
    model = MODELS[name]()
    sides = {"to_tflite": export.to_tflite, "from_keras_model": _keras_model}
    times, files = {side: [] for side in sides}, {}
    for r in range(rounds):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        for side in order:
            start = time.perf_counter()
            files[side] = sides[side](model)
            times[side].append(time.perf_counter() - start)
    x = np.random.default_rng(0).random((2, *model.input_shape[1:]), dtype=np.float32)
    a, b = (export.predict(files[side], x) for side in sides)
    signatures = [tf.lite.Interpreter(model_content=files[s]).get_signature_list() for s in sides]
    ratios = [t / k for t, k in zip(times["to_tflite"], times["from_keras_model"])]
    return {
        "model": name, "params": model.count_params(), "seconds": times,
        "ratio": statistics.median(ratios), "ratios": ratios,
        "bytes": {side: len(files[side]) for side in sides},
        "same_signature": signatures[0] == signatures[1],
        "max_abs_diff": float(np.abs(a - b).max()),
    }


def main(argv):
    del argv
    start = time.time()
    tf.get_logger().setLevel("ERROR")
    logging.set_verbosity(logging.WARNING)
    load = {"before": os.getloadavg()}
    results = [measure(name, FLAGS.rounds) for name in MODELS]
    load["after"] = os.getloadavg()
    rows = [[r["model"], r["params"], statistics.median(r["seconds"]["to_tflite"]),
             statistics.median(r["seconds"]["from_keras_model"]), r["ratio"],
             r["bytes"]["to_tflite"] == r["bytes"]["from_keras_model"], r["same_signature"],
             r["max_abs_diff"]] for r in results]
    print(table(rows, ["model", "params", "to_tflite s", "from_keras_model s",
                       "ratio (median of rounds)", "same size", "same signature",
                       "max |diff|"]))
    path = write_json("export_time", {
        "config": {"rounds": FLAGS.rounds, "device": "CPU", "threads": os.cpu_count()},
        "results": results, "load": load, "seconds": time.time() - start,
    })
    print(f"load average (1, 5, 15 min) before {load['before']}, after {load['after']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
