"""FiGS lambda sweep on digits, against a uniform width multiplier at equal parameters.

Claims checked (issue 4, FiGS sec. 4.3):

- the exported (derived) parameter count falls monotonically as the
  regularization strength lambda grows;
- at equal parameter counts, the FiGS architecture retrained for the same
  budget is at least as accurate as the network made narrower by a uniform
  width multiplier (Howard et al. 2017), the paper's baseline.

Protocol. ``models.figs.resnet`` (43,418 parameters) gets a ``FiGSMask`` after
every conv (``insert_masks``; residual groups). For each strength ``s`` the
supernet is searched from scratch: weights and mask logits trained jointly
(weights Adam 3e-3; logits Adam lr 1.0 with epsilon 1.0, as in the FiGS
appendix, so the step follows lambda) with the loss ``CE + s * E[params] / P0`` (FiGS eq. 6
through ``FLOPsRegularizer``; ``lambda = s / P0`` per parameter, ``P0`` the
initial expected cost), then derived with the paper's rule (``floor(sum p)``
channels per mask). The width baseline is ``resnet(width=w)`` with ``w``
chosen so that its parameter count is closest to the derived one. Both are
retrained *from scratch* (the paper's protocol) with the same budget (epochs,
optimizer, seeds) and scored on the digits test split (359 images); the
accuracy is the mean over the retraining seeds.

Columns: ``E[params]`` is eq. 6 at the end of the search; ``super val`` the
supernet's validation accuracy with deterministic masks (``logit > 0``) and the
BatchNorm statistics gathered under sampled masks, so it understates what the
architecture can do (retraining is the measure); ``alive`` is the other export
option (channels with ``logit > 0``), retrained the same way.

Writes ``benchmarks/results/figs_sweep.json`` and the Pareto plot
``benchmarks/results/figs_pareto.png`` (not committed); ``--quick`` writes
``figs_sweep_quick.json`` and ``figs_pareto_quick.png``.

Example:
    python -m benchmarks.figs_sweep            # ~15 minutes on 2 busy CPU cores
    python -m benchmarks.figs_sweep --quick    # 3 strengths, short runs
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

import searchlayers as sl  # noqa: E402  (Keras-2 guard before TensorFlow)
import tensorflow as tf  # noqa: E402
from searchlayers import cost, datasets  # noqa: E402
from searchlayers import retrain as retrain_lib  # noqa: E402
from searchlayers.transforms import insert_masks  # noqa: E402

from benchmarks.common import RESULTS, table, write_json  # noqa: E402
from models.figs import resnet  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_bool("quick", False, "3 strengths, 6 search and 8 retrain epochs, one seed.")
flags.DEFINE_list("strengths", ["0.5", "1", "2", "4", "8", "16", "32"],
                  "Strengths s (lambda = s / initial expected params).")
flags.DEFINE_float("arch_lr", 1.0, "Adam learning rate of the mask logits.")
flags.DEFINE_float("arch_epsilon", 1.0, "Adam epsilon of the mask logits (FiGS: 1.0).")
flags.DEFINE_integer("search_epochs", 12, "Epochs of architecture learning.")
flags.DEFINE_integer("retrain_epochs", 15, "Epochs of retraining from scratch.")
flags.DEFINE_integer("seeds", 2, "Retraining seeds per network.")

keras = sl.keras
LOSS = retrain_lib.LOSS
SHAPE, CLASSES, BATCH = (8, 8, 1), 10, 32


def search(strength, epochs, seed=0, arch_lr=1.0, arch_epsilon=1.0):
    """Searches a fresh masked ResNet at ``strength``; returns ``(derived, record)``.

    Mask logits use Adam with ``epsilon=1.0`` (FiGS appendix): small gradients
    are not normalized away, so the step size follows ``lambda`` and the sweep
    traces a trade-off instead of every strength driving all logits down alike.

    Example:
        >>> child, record = search(1.0, epochs=1)  # doctest: +SKIP
    """
    keras.utils.set_random_seed(seed)
    supernet = insert_masks(resnet(SHAPE, CLASSES))
    initial = float(sl.regularizers.expected_cost(supernet, "params"))
    arch_optimizer = keras.optimizers.legacy.Adam(arch_lr, epsilon=arch_epsilon)
    supernet.compile(sl.joint_optimizer(keras.optimizers.legacy.Adam(3e-3), arch_optimizer),
                     LOSS, metrics=["accuracy"])
    regularizer = sl.FLOPsRegularizer(metric="params", strength=strength, budget=initial)
    supernet.fit(datasets.load("digits", "train", batch_size=BATCH, seed=seed),
                 epochs=epochs, verbose=0, callbacks=[regularizer])
    _, val_accuracy = supernet.evaluate(datasets.load("digits", "validation", batch_size=256),
                                        verbose=0)  # deterministic masks (logit > 0)
    child = sl.derive(supernet, "expected")
    alive = sl.derive(supernet, "argmax")  # the option: channels alive at inference
    params = child.count_params()
    assert params == cost.profile(child).total.params  # derived == profile of kept channels
    return child, {
        "strength": strength, "lambda": strength / initial, "initial_expected_params": initial,
        "expected_params": float(regularizer.cost()), "params": params,
        "supernet_val_accuracy": float(val_accuracy),
        "kept": {k: len(v) for k, v in sorted(child.architecture.choices.items())},
        "alive_params": alive.count_params(), "alive_model": alive,
        "alive_kept": {k: len(v) for k, v in sorted(alive.architecture.choices.items())},
    }


def matched_width(params, iterations=14):
    """``(w, params)``: the width multiplier whose ResNet is closest to ``params``.

    Example:
        >>> matched_width(20000)[0]  # doctest: +SKIP
        0.66...
    """
    lo, hi, best = 0.01, 1.0, None
    for _ in range(iterations):  # the count is non-decreasing in w
        mid = (lo + hi) / 2
        count = resnet(SHAPE, CLASSES, width=mid).count_params()
        if best is None or abs(count - params) < abs(best[1] - params):
            best = (mid, count)
        lo, hi = (mid, hi) if count < params else (lo, mid)
    return best


def retrain(model, epochs, seed):
    """Test accuracy of ``model``'s architecture trained from scratch with ``seed``
    (``searchlayers.retrain``: fresh weights, frozen channel maps kept, Adam 3e-3).

    Example:
        >>> retrain(resnet(), epochs=1, seed=0)  # doctest: +SKIP
        0.5...
    """
    return retrain_lib.retrain(model, "digits", epochs, BATCH, optimizer="adam", lr=3e-3,
                               seed=seed)[1]


def mean_accuracy(model, epochs, seeds):
    accuracies = [retrain(model, epochs, seed) for seed in range(seeds)]
    return statistics.fmean(accuracies), accuracies


def plot(points, full, path):
    """Accuracy against parameters: FiGS points and the width-multiplier curve."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    figs = sorted(points, key=lambda p: p["params"])
    width = sorted(points, key=lambda p: p["width_params"])
    ax.plot([p["width_params"] for p in width] + [full["params"]],
            [p["width_accuracy"] for p in width] + [full["accuracy"]],
            "s--", color="tab:gray", label="uniform width multiplier")
    ax.plot([p["params"] for p in figs], [p["accuracy"] for p in figs], "o-",
            color="tab:red", label="FiGS, floor(sum p) export (paper)")
    alive = sorted(points, key=lambda p: p["alive_params"])
    ax.plot([p["alive_params"] for p in alive], [p["alive_accuracy"] for p in alive], "^:",
            color="tab:blue", label="FiGS, alive-channel export")
    for p in figs:
        ax.annotate(f"s={p['strength']:g}", (p["params"], p["accuracy"]),
                    textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("parameters")
    ax.set_ylabel("digits test accuracy")
    ax.set_title("FiGS vs uniform width on digits (ResNet, same retraining)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    del argv
    start = time.time()
    tf.get_logger().setLevel("ERROR")  # retracing notices of the many small models
    logging.set_verbosity(logging.WARNING)  # the TFLite converter's progress lines
    if FLAGS.quick:
        strengths, search_epochs, retrain_epochs, seeds = [1.0, 4.0, 16.0], 6, 8, 1
    else:
        strengths = [float(s) for s in FLAGS.strengths]
        search_epochs, retrain_epochs, seeds = (FLAGS.search_epochs, FLAGS.retrain_epochs,
                                                FLAGS.seeds)
    base = resnet(SHAPE, CLASSES)
    full_accuracy, full_runs = mean_accuracy(base, retrain_epochs, seeds)
    full = {"params": base.count_params(), "accuracy": full_accuracy, "runs": full_runs}
    points = []
    for strength in sorted(strengths):
        child, record = search(strength, search_epochs, arch_lr=FLAGS.arch_lr,
                               arch_epsilon=FLAGS.arch_epsilon)
        record["accuracy"], record["runs"] = mean_accuracy(child, retrain_epochs, seeds)
        record["alive_accuracy"], record["alive_runs"] = mean_accuracy(
            record.pop("alive_model"), retrain_epochs, seeds)
        w, count = matched_width(record["params"])
        width_model = resnet(SHAPE, CLASSES, width=w)
        record["width"], record["width_params"] = w, count
        record["width_accuracy"], record["width_runs"] = mean_accuracy(
            width_model, retrain_epochs, seeds)
        points.append(record)
        print(f"s={strength:g}: {record['params']:,} params, acc {record['accuracy']:.3f}; "
              f"width {w:.3f}: {count:,} params, acc {record['width_accuracy']:.3f}", flush=True)
    counts = [p["params"] for p in points]
    monotonic = all(a >= b for a, b in zip(counts, counts[1:]))
    rows = [[f"{p['strength']:g}", f"{p['lambda']:.2e}", round(p["expected_params"]),
             100 * p["supernet_val_accuracy"], p["params"], p["accuracy"] * 100,
             p["alive_params"], p["alive_accuracy"] * 100, f"{p['width']:.3f}",
             p["width_params"], p["width_accuracy"] * 100,
             (p["accuracy"] - p["width_accuracy"]) * 100] for p in points]
    rows.append(["full", "-", full["params"], "-", full["params"], full["accuracy"] * 100,
                 "-", "-", "1.000", full["params"], full["accuracy"] * 100, 0.0])
    print(table(rows, ["s", "lambda", "E[params]", "super val %", "FiGS params", "FiGS acc %",
                       "alive params", "alive acc %", "width", "width params", "width acc %",
                       "FiGS - width"]))
    wins = sum(p["accuracy"] >= p["width_accuracy"] for p in points)
    gap = 100 * statistics.fmean(p["accuracy"] - p["width_accuracy"] for p in points)
    print(f"\nderived params fall monotonically with lambda: {monotonic}; "
          f"FiGS >= width multiplier at {wins}/{len(points)} points "
          f"(mean difference {gap:+.2f} points)")
    png = os.path.join(RESULTS, "figs_pareto_quick.png" if FLAGS.quick else "figs_pareto.png")
    os.makedirs(RESULTS, exist_ok=True)
    plot(points, full, png)
    path = write_json("figs_sweep_quick" if FLAGS.quick else "figs_sweep", {
        "config": {"network": "models.figs.resnet", "dataset": "digits", "quick": FLAGS.quick,
                   "strengths": sorted(strengths), "search_epochs": search_epochs,
                   "retrain_epochs": retrain_epochs, "seeds": seeds, "batch": BATCH,
                   "arch_optimizer": f"Adam(lr={FLAGS.arch_lr}, epsilon={FLAGS.arch_epsilon})",
                   "weights_optimizer": "Adam(3e-3)",
                   "retrain": "from scratch, Adam 3e-3", "export": "expected (floor(sum p))"},
        "full": full, "points": points, "monotonic": monotonic, "figs_wins": wins,
        "seconds": time.time() - start,
    })
    print(f"wrote {path} and {png}")


if __name__ == "__main__":
    app.run(main)
