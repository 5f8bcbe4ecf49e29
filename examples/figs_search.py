"""FiGS on digits: insert masks, search under a cost target, derive, retrain, export.

1. Builds a plain network of ``models.figs`` (``--space resnet`` or
   ``mobilenet_v2``) and puts a ``FiGSMask`` after every conv / dense layer
   (``searchlayers.transforms.insert_masks``; residual adds share groups).
2. Architecture learning: weights and mask logits train jointly; the loss is
   ``task + strength * E[cost] / target`` (FiGS eq. 6 through
   ``FLOPsRegularizer(mode="additive")``), ``--metric params`` or ``flops``;
   the search stops once the expected cost is at most the target.
   ``--schedule auto`` (the default) adds ``searchlayers.schedules.figs_commit``
   over the search's steps: explore, then commit every channel to
   ``P(mask = 1) <= 0.01`` or ``>= 0.99`` (``decision.MASK_PROB``); the
   summary's ``decision.decided_share`` is the share of channels there (the
   additive mode may stop at the target before the commit has ended).
3. Derives the slimmer network (``derive(strategy="expected")``: each mask keeps
   its ``floor(sum p)`` most probable channels, weights sliced), retrains it
   briefly, exports float TFLite and checks parity, and prints the before /
   after cost.

Example:
    python -m examples.figs_search --space resnet --metric params --target 0.5
"""

import os
import time

from absl import flags, logging
import tensorflow as tf

import searchlayers as sl
from searchlayers import budget, cost, datasets, export, schedules
from searchlayers import summary as summary_lib
from searchlayers._keras import keras
from searchlayers.decision import MASK_PROB
from searchlayers.transforms import insert_masks

from examples import common
from models.figs import SPACES

FLAGS = common.example_flags("out/figs")  # --out, --seed, --steps_per_epoch
flags.DEFINE_enum("space", "resnet", sorted(SPACES), "Network to put masks into.",
                  flag_values=FLAGS)
flags.DEFINE_enum("metric", "params", ["params", "flops"], "Cost to search under.",
                  flag_values=FLAGS)
flags.DEFINE_float("target", 0.5, "Target cost as a fraction of the unmasked network's.",
                   flag_values=FLAGS)
flags.DEFINE_enum("mode", "target", ["target", "additive"],
                  "target: the strength is a Lagrange multiplier that settles the expected "
                  "cost on the target and the derived model is fit to it exactly "
                  "(searchlayers.budget); additive: FiGS eq. 6 with a fixed strength, "
                  "stopped at the first epoch at or under the target.", flag_values=FLAGS)
flags.DEFINE_float("strength", 1.0, "Regularization strength lambda (on cost / target); "
                   "the starting value in the target mode.", flag_values=FLAGS)
flags.DEFINE_integer("search_epochs", 8, "Most epochs of architecture learning.",
                     flag_values=FLAGS)
flags.DEFINE_integer("retrain_epochs", 3, "Epochs of retraining the derived network.",
                     flag_values=FLAGS)
flags.DEFINE_float("arch_lr", 0.05, "Adam learning rate of the mask logits.", flag_values=FLAGS)
flags.DEFINE_enum("schedule", "auto", ["auto", "paper"], "auto: FiGS' explore-then-commit "
                  "entropy term (schedules.figs_commit) ends the masks at 0 / 1; paper: none.",
                  flag_values=FLAGS)
flags.DEFINE_integer("batch_size", 32, "Batch size.", flag_values=FLAGS)


class StopAtTarget(keras.callbacks.Callback):
    """Stops the search at the end of the first epoch whose expected cost <= target.

    Example:
        >>> StopAtTarget(sl.FLOPsRegularizer(metric="params"), 1e4).target
        10000.0
    """

    def __init__(self, regularizer, target):
        super().__init__()
        self.regularizer, self.target = regularizer, float(target)

    def on_epoch_end(self, epoch, logs=None):
        expected = float(self.regularizer.cost())
        logging.info("epoch %d: expected %s %.0f (target %.0f)",
                     epoch, self.regularizer.metric, expected, self.target)
        if expected <= self.target:
            self.model.stop_training = True


def train_steps(batch_size):
    """Steps per epoch of the search (the digits train split at ``batch_size``).

    Example:
        >>> train_steps(32) > 0
        True
    """
    return int(datasets.load("digits", "train", batch_size=batch_size).cardinality())


def search(supernet, metric, target, strength, epochs, arch_lr, batch_size, seed, verbose=2,
           extra_callbacks=(), steps_per_epoch=None, mode="additive"):
    """Joint architecture learning; returns the ``FLOPsRegularizer`` used.

    ``extra_callbacks`` join the search's; ``steps_per_epoch`` shortens the epochs.
    ``mode="additive"`` stops at the first epoch whose expected cost is at most
    the target; ``"target"`` runs every epoch with the multiplier adapting.

    Example:
        >>> search(insert_masks(resnet()), "params", 2e4, 2.0, 1, 0.05, 32, 0)  # doctest: +SKIP
    """
    supernet.compile(
        sl.joint_optimizer(keras.optimizers.legacy.Adam(3e-3),
                           keras.optimizers.legacy.Adam(arch_lr)),
        common.LOSS, metrics=["accuracy"])
    regularizer = sl.FLOPsRegularizer(budget=target, metric=metric, mode=mode,
                                      strength=strength)
    stop = [StopAtTarget(regularizer, target)] if mode == "additive" else []
    for callback in extra_callbacks:  # FiGS' commit ends on the child fitted to the target
        if isinstance(callback, schedules.FigsCommit):
            callback.to_budget(target, metric)
    train = datasets.load("digits", "train", batch_size=batch_size, seed=seed)
    val = datasets.load("digits", "validation", batch_size=256)
    sl.prebuild(supernet, train)  # the step is traced once, not twice
    supernet.fit(train.repeat() if steps_per_epoch else train, validation_data=val,
                 epochs=epochs, verbose=verbose, steps_per_epoch=steps_per_epoch,
                 callbacks=[regularizer, *stop, *extra_callbacks])
    return regularizer


def retrain(model, epochs, batch_size, seed):
    """Fine-tunes the derived network's inherited weights (Adam 3e-3,
    ``examples.common.retrain``); returns its test accuracy.

    Example:
        >>> retrain(child, 1, 32, 0)  # doctest: +SKIP
        0.9...
    """
    return common.retrain(model, epochs, batch_size, 3e-3, optimizer="adam", inherit=True,
                          seed=seed, verbose=2)[1]


def main(argv):
    del argv
    start = time.time()
    tf.get_logger().setLevel("ERROR")
    keras.utils.set_random_seed(FLAGS.seed)
    shape = datasets.info("digits").input_shape
    base = SPACES[FLAGS.space](shape, 10)
    full = sl.regularizers.expected_cost(base, FLAGS.metric)
    target = FLAGS.target * float(full)
    supernet = insert_masks(base)
    print(f"{base.name}: {float(full):,.0f} {FLAGS.metric}; target {target:,.0f}; "
          f"{len(sl.layers.figs_masks(supernet))} masks")
    per_epoch = FLAGS.steps_per_epoch or train_steps(FLAGS.batch_size)
    commit = schedules.figs_commit(FLAGS.search_epochs * per_epoch, FLAGS.schedule)
    search(supernet, FLAGS.metric, target, FLAGS.strength, FLAGS.search_epochs,
           FLAGS.arch_lr, FLAGS.batch_size, FLAGS.seed, mode=FLAGS.mode,
           steps_per_epoch=FLAGS.steps_per_epoch, extra_callbacks=[commit] if commit else [])
    fit = None
    if FLAGS.mode == "target":
        fit = budget.fit(supernet, target, FLAGS.metric)  # trims / fills to the target
        child = sl.derive(supernet, architecture=fit.architecture)
    else:
        child = sl.derive(supernet, "expected")
    print("kept channels: " + ", ".join(
        f"{name.replace('_conv_mask', '')} {len(kept)}"
        for name, kept in sorted(child.architecture.choices.items())))
    decision = summary_lib.decision_of(supernet)  # before retraining the child
    print(f"Mask channels at 0 / 1 (P <= {1 - MASK_PROB:.2g} or >= {MASK_PROB:g}): "
          f"{decision['decided_share']:.0%}; {decision['decided']} of {decision['groups']} "
          "mask groups decided")
    accuracy = retrain(child, FLAGS.retrain_epochs, FLAGS.batch_size, FLAGS.seed)
    print("\nCost before / after:")
    print(cost.compare(cost.profile(base), cost.profile(child), names=["supernet", "derived"]))
    os.makedirs(FLAGS.out, exist_ok=True)
    path = os.path.join(FLAGS.out, f"{FLAGS.space}_figs.tflite")
    with export.quiet_converter():
        flatbuffer = export.to_tflite(child, path)
    x_test, _ = datasets.arrays("digits", "test")
    report = export.parity(child, flatbuffer, x_test)
    print(f"\nDerived test accuracy {accuracy:.3f}; {path}: {report}")
    exact = float(summary_lib.cost_of(child, "exact")[FLAGS.metric])
    common.finish(
        "figs", f"FiGS channel masks in {base.name} on digits ({FLAGS.metric} target "
        f"{FLAGS.target:g} of the unmasked network, mode {FLAGS.mode}, "
        f"{FLAGS.search_epochs} epochs)", FLAGS.out, base, child, decision=decision,
        architecture=child.architecture, accuracy={"test (fine-tuned child)": accuracy},
        exports=[summary_lib.export_entry(path, report)],
        budget=fit if fit is not None else {"metric": FLAGS.metric, "asked": target,
                                            "got": exact},
        details={"space": FLAGS.space, "unmasked_cost": float(full), "mode": FLAGS.mode,
                 "schedule": FLAGS.schedule, "seed": FLAGS.seed},
        supernet_kind="exact", seconds=time.time() - start)
    if report.max_abs_diff >= export.FLOAT_ATOL:
        raise SystemExit("The TFLite file is outside its parity tolerance.")


if __name__ == "__main__":
    common.main(main, FLAGS)
