"""BN-NAS on digits: train only BN, search by BN indicator, derive, retrain, export.

1. Builds the single-path MobileNetV2 supernet (``models.spos``) and trains it
   for a few epochs with only BatchNorm's gamma / beta trainable
   (``transforms.train_only_batchnorm``): as in the paper (sec. 3.2, 3.4) the
   convolutions and the classifier stay at their random initialization from
   the start; there is no all-weights warm-up. ``--bn_only=last`` trains only
   each candidate's last BN (the authors' code; on digits it does not learn,
   since the stem / head BNs stay fixed too), ``none`` trains everything
   (SPOS). ``BNScoreEvaluator`` records the op scores and the epoch-to-epoch
   rank distance (early bird) and draws the rank similarity figure.
   The stage-transition layers (no shortcut) are a fixed op by default
   (``--transition_op``; see ``build_supernet`` for why), and the batch is
   small (16: ~80 steps per epoch) with Adam at 0.02: the recipe with which
   the BN-only supernet learns on digits (~75% training accuracy after 10
   epochs; with the transitions searched it stays at chance).
2. Searches subnets under a MACs limit with ``evolution.evolutionary_search``
   (BN indicator, ~1000 subnets); ``--compare_accuracy`` also runs SPOS'
   accuracy-with-inherited-weights search on the validation split.
3. Derives the best subnet (``searchlayers.derive``), retrains it from fresh
   weights, reports its test accuracy, exports it to TFLite and checks parity.
4. Prints the time of each stage and writes a JSON summary to ``--out``.

Example:
    python -m examples.bnnas_search --epochs=12 --limit_fraction=0.4 --out=out/bnnas
"""

import os
import time

from absl import flags

import tensorflow as tf

import searchlayers as sl
from searchlayers import cost, datasets, evolution, transforms
from searchlayers import summary as summary_lib
from searchlayers._keras import keras

from examples import common
from models import spos

TRANSITION_OP = "mb_k3_e6"  # MobileNetV2's block
SUPERNET_LR = 0.02
FLAGS = common.example_flags("out/bnnas_search")  # --out, --seed, --steps_per_epoch
flags.DEFINE_integer("epochs", 12, "Supernet epochs (BN-NAS: 10% of SPOS').", flag_values=FLAGS)
flags.DEFINE_enum("bn_only", "all", ["all", "last", "none"],
                  "Which weights train in the supernet: every BN (paper), each candidate's "
                  "last BN (authors' code), or everything (SPOS).", flag_values=FLAGS)
flags.DEFINE_integer("depth", 2, "Layers per stage of the three-stage supernet (the first "
                     "layer of the 2nd and 3rd stage is a transition).", lower_bound=1,
                     flag_values=FLAGS)
flags.DEFINE_enum("mode", "uniform", ["uniform", "fair"], "Single-path sampling.",
                  flag_values=FLAGS)
flags.DEFINE_bool("skip", False, "Offer an identity choice where a layer has a shortcut.",
                  flag_values=FLAGS)
flags.DEFINE_string("transition_op", TRANSITION_OP,
                    "Fixed op of the layers without a shortcut (stage transitions); '' searches "
                    "them too (a frozen-weight supernet then does not learn on digits).",
                    flag_values=FLAGS)
flags.DEFINE_float("limit", None, "MACs limit of the searched subnet (absolute).",
                   flag_values=FLAGS)
flags.DEFINE_float("limit_fraction", 0.4, "Without --limit: min + fraction * (max - min) MACs.",
                   flag_values=FLAGS)
flags.DEFINE_integer("generations", 20, "Evolution generations (50 subnets each).",
                     flag_values=FLAGS)
flags.DEFINE_bool("compare_accuracy", False, "Also search by validation accuracy (SPOS).",
                  flag_values=FLAGS)
flags.DEFINE_integer("retrain_epochs", 15, "Epochs of the derived subnet's retraining.",
                     flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 16, "Supernet batch size (small: more steps per epoch).",
                     flag_values=FLAGS)
flags.DEFINE_float("lr", SUPERNET_LR, "Supernet learning rate (Adam).", flag_values=FLAGS)


def build_supernet(transition_op=TRANSITION_OP, mode="uniform", skip=False, seed=0, depth=2):
    """The digits supernet of this example (``models.spos``, its three digits
    stages with ``depth`` layers each).

    ``transition_op`` fixes the layers without a shortcut (the first layer of a
    stage that changes stride or width) to one op; ``None`` or ``""`` searches
    them too. Why fixed: with every convolution frozen at its random
    initialization, each candidate of such a layer maps the features into its
    own unrelated random basis, so the frozen layers after it see a different
    representation every step. On digits (~80 steps per epoch) the BN-only
    supernet then stays at chance (loss 2.30 after 20 epochs), while with those
    layers fixed it reaches ~88% training accuracy with the same recipe; a
    searched layer with a shortcut only adds a gamma-scaled perturbation to a
    representation every path shares.

    Example:
        >>> [l.name for l in sl.layers.search_layers(build_supernet())]
        ['layer0', 'layer1', 'layer3', 'layer5']
        >>> [l.name for l in sl.layers.search_layers(build_supernet(depth=1))]
        ['layer0']
    """
    stages = tuple((channels, depth, stride) for channels, _, stride in spos.DIGITS_STAGES)
    return spos.spos_supernet(datasets.info("digits").input_shape, 10, stages, mode=mode,
                              skip=skip, transition_op=transition_op or None, seed=seed)


def train_supernet(epochs, bn_only="all", mode="uniform", skip=False, batch_size=16,
                   lr=SUPERNET_LR, log_dir=None, verbose=2, transition_op=TRANSITION_OP,
                   seed=0, patience=None, steps_per_epoch=None, depth=2):
    """Builds and trains the supernet; returns ``(supernet, evaluator)``.

    ``bn_only``: "all" / "last" (``transforms.train_only_batchnorm``: every
    convolution and the classifier stay at their random initialization, BN-NAS
    sec. 3.4) or "none" (every weight trains, SPOS). Adam at ``lr`` (0.02 for
    BN only, ~0.005 for all weights on digits); ``patience`` stops once the BN
    ranks are stable that many epochs (``BNScoreEvaluator``); ``steps_per_epoch``
    shortens the epochs; ``depth``: layers per stage (``build_supernet``).

    Example:
        >>> supernet, evaluator = train_supernet(2)  # doctest: +SKIP
        >>> evaluator.history[-1]["ranks"]  # doctest: +SKIP
    """
    supernet = build_supernet(transition_op, mode, skip, seed, depth)
    if bn_only != "none":
        transforms.train_only_batchnorm(supernet, which=bn_only)
    train = datasets.load("digits", "train", batch_size=batch_size, drop_remainder=True, seed=seed)
    supernet.compile(optimizer=keras.optimizers.Adam(lr), loss=common.LOSS, metrics=["accuracy"])
    evaluator = sl.BNScoreEvaluator(log_dir, patience=patience)
    sl.prebuild(supernet, train)  # the step is traced once, not twice
    supernet.fit(train.repeat() if steps_per_epoch else train, epochs=epochs, verbose=verbose,
                 steps_per_epoch=steps_per_epoch, callbacks=[evaluator])
    return supernet, evaluator


def search(supernet, limit=None, limit_fraction=0.4, generations=20, seed=0, scorer="bn",
           validation_data=None, skip=False):
    """Evolutionary search under a MACs limit; returns ``(result, limit)``.

    Example:
        >>> result, limit = search(supernet)  # doctest: +SKIP
        >>> result.best.meta["macs"] <= limit  # doctest: +SKIP
        True
    """
    costs = evolution.cost_table(supernet, "macs")
    if limit is None:
        limit = costs.minimum() + limit_fraction * (costs.maximum() - costs.minimum())
    result = evolution.evolutionary_search(
        supernet, limit, metric="macs", scorer=scorer, generations=generations, seed=seed,
        validation_data=validation_data, costs=costs, missing=0.0 if skip else None)
    return result, limit


def retrain(child, epochs, batch_size=64, lr=0.05, seed=0):
    """``examples.common.retrain``: a fresh-weight, every-layer-trainable copy of
    ``child`` (a child of a BN-only supernet inherits ``trainable=False`` flags),
    SGD cosine, seeded; returns ``(model, test_accuracy)``.

    Example:
        >>> model, accuracy = retrain(child, epochs=5)  # doctest: +SKIP
    """
    return common.retrain(child, epochs, batch_size, lr, unfreeze=True, seed=seed)


def main(argv):
    del argv
    tf.get_logger().setLevel("ERROR")
    keras.utils.set_random_seed(FLAGS.seed)
    os.makedirs(FLAGS.out, exist_ok=True)
    times = {}
    start = time.perf_counter()
    supernet, evaluator = train_supernet(FLAGS.epochs, FLAGS.bn_only, FLAGS.mode, FLAGS.skip,
                                         FLAGS.batch_size, FLAGS.lr, FLAGS.out,
                                         transition_op=FLAGS.transition_op, seed=FLAGS.seed,
                                         steps_per_epoch=FLAGS.steps_per_epoch,
                                         depth=FLAGS.depth)
    times["supernet_training"] = time.perf_counter() - start

    t = time.perf_counter()
    result, limit = search(supernet, FLAGS.limit, FLAGS.limit_fraction, FLAGS.generations,
                           FLAGS.seed, skip=FLAGS.skip)
    times["search_bn_indicator"] = time.perf_counter() - t
    print(f"\nBN-indicator search: {result.evaluated} subnets in {result.seconds:.3f} s; "
          f"best {result.best.names}\n  score {result.best.meta['score']:.4f}, "
          f"MACs {result.best.meta['macs']:,.0f} <= limit {limit:,.0f}")
    compared = None
    if FLAGS.compare_accuracy:
        t = time.perf_counter()
        validation = datasets.load("digits", "validation", batch_size=256)
        acc, _ = search(supernet, limit, generations=FLAGS.generations, seed=FLAGS.seed,
                        scorer="accuracy", validation_data=validation)
        times["search_accuracy"] = time.perf_counter() - t
        compared = {"architecture": acc.best.names, "meta": acc.best.meta,
                    "evaluated": acc.evaluated}
        print(f"Accuracy search: {acc.evaluated} subnets in {acc.seconds:.1f} s; "
              f"best {acc.best.names} (val accuracy {acc.best.meta['score']:.3f})")

    t = time.perf_counter()
    child = sl.derive(supernet, architecture=result.best)
    times["derive"] = time.perf_counter() - t
    t = time.perf_counter()
    model, accuracy = retrain(child, FLAGS.retrain_epochs, seed=FLAGS.seed)
    times["retrain"] = time.perf_counter() - t
    print(f"Derived subnet: test accuracy {accuracy:.3f} after {FLAGS.retrain_epochs} epochs")
    t = time.perf_counter()
    exported = common.export_tflite(model, FLAGS.out)
    times["export_tflite"] = time.perf_counter() - t
    print(f"TFLite {exported['path']}: max |diff| {exported['max_abs_diff']:.2e}, "
          f"argmax agreement {exported['argmax_agreement']:.3f}")

    profiles = [cost.profile(supernet), cost.profile(model)]
    print("\n" + cost.compare(*profiles, names=["supernet (expected)", "derived"]))
    print("\nStage times:")
    for stage, seconds in times.items():
        print(f"  {stage:<22} {seconds:9.3f} s")
    summary = {
        "config": {k: getattr(FLAGS, k) for k in ("epochs", "depth", "bn_only", "mode", "skip",
                                                   "transition_op", "batch_size", "lr",
                                                   "generations", "retrain_epochs", "seed")},
        "limit_macs": limit, "architecture": result.best.names, "meta": result.best.meta,
        "evaluated": result.evaluated, "search_history": result.history,
        "rank_distance_per_epoch": [h["distance"] for h in evaluator.history],
        "accuracy_search": compared, "test_accuracy": accuracy, "tflite": exported,
        "cost": {"derived": profiles[1].to_dict()["total"]}, "seconds": times,
        "seed": FLAGS.seed,
    }
    result.best.save(os.path.join(FLAGS.out, "architecture.json"))
    derived_macs = summary_lib.cost_of(model, "exact")["macs"]
    common.finish(
        "bnnas", f"BN-NAS single-path supernet on digits ({FLAGS.epochs} epochs, "
        f"{'all weights' if FLAGS.bn_only == 'none' else 'BN only'} trained; evolution on the BN "
        f"indicator, {result.evaluated} subnets)", FLAGS.out, supernet, model,
        architecture=result.best, accuracy={"test (retrained subnet)": accuracy},
        exports=[summary_lib.export_entry(exported["path"], exported)],
        notes=[f"MACs limit {limit:,.0f}; derived {derived_macs:,.0f} MACs "
               f"({derived_macs / limit:.0%} of the limit: a ceiling, not a target)",
               "supernet (expected) is the mean over the uniformly sampled choices; the "
               "derived subnet is chosen by BN score under the MACs limit, not for fewer "
               "params, so it can have more params than that mean",
               "bn_rank_similarity.png (paper Fig. 4): how alike the BN-score rankings of "
               "the candidate ops are between two epochs (1 - distance / max distance; 1 = "
               "the same ranking: the early-bird signal that the supernet can stop)"],
        details=summary, seconds=time.perf_counter() - start)


if __name__ == "__main__":
    common.main(main, FLAGS)
