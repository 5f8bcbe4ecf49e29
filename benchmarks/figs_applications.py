"""FiGS derivation on ``tf_keras.applications`` families: what derive builds.

Per family (weights=None, 32x32x3 input, 10 classes, no training): the number of
FiGS masks (and mask groups) ``insert_masks`` puts in, then at two pruning levels
(a random 25 % / 50 % of every mask group's channels forced off) the parameters
and MACs (``searchlayers.cost.profile``) of the original and of the derived
model, the 0/1 select layers and pinned masks left in the derived model (0 when
every layer has a channel rule), the derive time (one run, a shared machine:
indicative only), the float32 TFLite file size, the FiGS eq. 6 expected cost at
the saturated forced mask against the derived model's profile, and the largest
difference between the derived model and the masked supernet on a random batch.

Example:
    python -m benchmarks.figs_applications          # ~5 minutes on 2 CPU cores
    python -m benchmarks.figs_applications --quick  # the two MobileNets only
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
import numpy as np  # noqa: E402

import searchlayers as sl  # noqa: E402  (Keras-2 guard before TensorFlow)
import tensorflow as tf  # noqa: E402
from searchlayers import export  # noqa: E402
from searchlayers.regularizers import figs_expected_cost  # noqa: E402
from searchlayers.transforms import insert_masks  # noqa: E402

from benchmarks.applications import (FAMILIES, SHAPE, forced_architecture,  # noqa: E402
                                     randomize_batchnorm, saturate)
from benchmarks.common import table, write_json  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "MobileNetV2 and MobileNetV3Small only.")
flags.DEFINE_list("families", None, "Only these families (default: all five).")

LEVELS = (0.25, 0.5)


def _cost(model):
    total = sl.cost.profile(model).total
    return int(total.params), int(total.metric("macs"))


def measure(name):
    base = FAMILIES[name]()
    randomize_batchnorm(base)
    params, macs = _cost(base)
    start = time.perf_counter()
    masked = insert_masks(base)
    mask_s = time.perf_counter() - start
    masks = sl.layers.figs_masks(masked)
    x = np.random.default_rng(1).random((2, *SHAPE), dtype=np.float32) * 255.0
    result = {"family": name, "params": params, "macs": macs, "masks": len(masks),
              "groups": len({m.arch_key or m.name for m in masks}),
              "insert_masks_s": mask_s, "tflite_bytes": len(export.to_tflite(base)),
              "levels": []}
    for off in LEVELS:
        arch = forced_architecture(masked, off)
        start = time.perf_counter()
        child = sl.derive(masked, architecture=arch)
        derive_s = time.perf_counter() - start
        sl.apply_architecture(masked, arch)
        diff = float(np.abs(masked(x, training=False).numpy()
                            - child(x, training=False).numpy()).max())
        sl.apply_architecture(masked, None)
        saturate(masked, arch)
        expected = (float(figs_expected_cost(masked, "params")),
                    float(figs_expected_cost(masked, "macs")))
        c_params, c_macs = _cost(child)
        result["levels"].append({
            "off": off, "params": c_params, "macs": c_macs,
            "params_ratio": c_params / params, "macs_ratio": c_macs / macs,
            "selects": len([l for l in child.layers if isinstance(l, sl.layers.ChannelSelect)]),
            "pinned": len([l for l in child.layers if l.name.endswith("_fixed")]),
            "derive_s": derive_s, "tflite_bytes": len(export.to_tflite(child)),
            "expected_params": expected[0], "expected_macs": expected[1],
            "max_abs_diff": diff,
        })
    return result


def main(argv):
    del argv
    start = time.time()
    tf.get_logger().setLevel("ERROR")
    logging.set_verbosity(logging.WARNING)
    names = ["MobileNetV2", "MobileNetV3Small"] if FLAGS.quick else list(FAMILIES)
    names = FLAGS.families or names
    results = []
    for name in names:
        results.append(measure(name))
        print(f"{name} done ({time.time() - start:.0f} s)", flush=True)
        _write(results, start)  # each family as it is done (a long run on a busy machine)
    rows = []
    for r in results:
        for lv in r["levels"]:
            rows.append([
                f"{r['family']} -{int(lv['off'] * 100)}%", r["masks"],
                f"{r['params'] / 1e6:.3f}M -> {lv['params'] / 1e6:.3f}M",
                f"{r['macs'] / 1e6:.2f}M -> {lv['macs'] / 1e6:.2f}M",
                f"{lv['expected_params'] / 1e6:.3f}M",
                lv["selects"] + lv["pinned"], f"{lv['derive_s']:.1f}",
                f"{r['tflite_bytes'] / 1e6:.2f} -> {lv['tflite_bytes'] / 1e6:.2f}",
                f"{lv['max_abs_diff']:.1e}"])
    print(table(rows, ["family, channels off", "masks", "params", "MACs", "eq.6 params",
                       "selects", "derive s", "TFLite MB", "max |diff|"]))
    print(f"wrote {_write(results, start)}")


def _write(results, start):
    return write_json("figs_applications", {
        "config": {"input": list(SHAPE), "classes": 10, "levels": list(LEVELS),
                   "quick": FLAGS.quick, "device": "CPU", "threads": os.cpu_count()},
        "results": results, "seconds": time.time() - start,
    })


if __name__ == "__main__":
    app.run(main)
