"""A sweep of search methods and budgets with keras-tuner, and its report.

Runs one trial per setting of (method, budget, lambda, temperature) through
``searchlayers.tuning.SweepTuner`` (methods of ``examples.methods``): search,
derive, retrain, measure (accuracy, cost profile, TFLite / LCE size, search
time); then writes ``report.md`` with the table and the Pareto / architecture
PNGs (``searchlayers.report``) and prints the table.

Resume a stopped sweep with ``--overwrite=false`` (finished trials are kept).
Distributed tuning: start the same command once with
``KERASTUNER_TUNER_ID=chief`` and once per worker (``KERASTUNER_TUNER_ID=
tuner0``, ``tuner1``, ...), all with ``KERASTUNER_ORACLE_IP`` /
``KERASTUNER_ORACLE_PORT`` and the same ``--directory``; the chief writes the
report when every trial is done. ``--mirrored`` searches each trial under
``tf.distribute.MirroredStrategy`` (``--logical_cpus=2`` splits the CPU);
``--multiworker`` under ``MultiWorkerMirroredStrategy`` over the ``TF_CONFIG``
cluster of a tuner's worker processes (``python -m searchlayers.launch
--workers 2 -- python -m examples.sweep --multiworker ...``, all with one
``KERASTUNER_TUNER_ID``): that cluster's chief takes the trials from the Oracle
and the others search each one with it.

The defaults are ``make demo``: DARTS and FiGS on digits, budgets 0.5 and
0.25 of the supernet's cost, 4 trials, each with 2 random children at its
searched child's cost (the random baseline).

Example:
    python -m examples.sweep --methods=darts,figs --budgets=0.5,0.25 --out=out/sweep
    python -m examples.sweep --report_only --out=out/sweep
"""

import json
import os
import time

from absl import app, flags

import tensorflow as tf

from searchlayers import progress, report, summary, tuning

FLAGS = flags.FLAGS
# The demo's searches decide: the architecture learning rate is the step-aware
# "auto" rule (searchlayers.schedules: 6 / architecture steps, not DARTS' 3e-4 of
# 20k steps), and BARS' explore-then-commit entropy schedule (up to 0.1) picks
# among the choices the budget term cannot tell apart (pools and "none" cost no
# MACs); FiGS masks at temperature 0.1 (the data gradient reaches every channel,
# searchlayers.planted) with FiGS' "auto" explore-then-commit entropy
# (schedules.figs_commit: every channel ends at P <= 0.01 or >= 0.99). DARTS
# space: C = 8, 3 cells of 2 nodes, one warm-up epoch.
DEMO_OPTIONS = {
    "darts": {"channels": 8, "cells": 3, "steps": 2, "warmup": 1, "arch_lr": "auto",
              "entropy": 0.1},
    "figs": {"mask_temperature": 0.1, "arch_lr": "auto"},
}
flags.DEFINE_string("out", "out/sweep", "Sweep folder (keras-tuner directory).")
flags.DEFINE_string("project", "sweep", "Project name: the sweep is <out>/<project>.")
flags.DEFINE_list("methods", ["darts", "figs"], "Registered methods to sweep.")
flags.DEFINE_list("budgets", ["0.5", "0.25"], "Budgets: fractions of the supernet's cost.")
flags.DEFINE_list("lams", ["0.1"], "Cost-term strengths lambda (loss + lambda * cost / target).")
flags.DEFINE_list("temperatures", ["default"],
                  f"Temperature schedules, of: {', '.join(tuning.TEMPERATURES)}.")
flags.DEFINE_enum("oracle", "grid", list(tuning.ORACLES), "keras-tuner Oracle.")
flags.DEFINE_integer("max_trials", None, "Most trials (grid: all by default).")
flags.DEFINE_enum("objective", "accuracy", list(tuning.METRICS), "The Oracle's objective.")
flags.DEFINE_integer("max_epochs", 4, "Hyperband: most search epochs of a trial.")
flags.DEFINE_integer("epochs", 5, "Search epochs per trial.")
flags.DEFINE_integer("retrain_epochs", 4, "Retraining epochs of each derived model.")
flags.DEFINE_integer("steps_per_epoch", None, "Shorter search epochs (default: all data).")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_string("metric", None, "Cost metric of the budgets (default: the method's).")
flags.DEFINE_string("options", json.dumps(DEMO_OPTIONS),
                    "JSON of method options (examples.methods); a method's name keys "
                    "its own, e.g. {\"darts\": {\"channels\": 4}}.")
flags.DEFINE_bool("overwrite", True, "Start afresh; false resumes the sweep in --out.")
flags.DEFINE_bool("mirrored", False, "Search under MirroredStrategy (all local devices).")
flags.DEFINE_bool("multiworker", False, "Search each trial under MultiWorkerMirroredStrategy "
                  "over the TF_CONFIG cluster (searchlayers.launch); its chief takes the trials.")
flags.DEFINE_integer("logical_cpus", 1, "Split the CPU into this many logical devices.")
flags.DEFINE_bool("report_only", False, "Only write the report of the sweep in --out.")
flags.DEFINE_integer("random_baseline", 2, "Random children of each trial's space at its "
                     "searched child's cost (+-5 %), retrained alike (0: none).")
flags.DEFINE_integer("seed", 0, "Random seed (the Oracle's and every trial's).")
flags.DEFINE_integer("verbose", 0, "Verbosity of the searches' fit.")


def grid_size(methods, budgets, lams, temperatures):
    """How many trials a grid over these settings runs: per method, the product
    of the settings it uses (``tuning.search_space`` makes the others conditional).

    Example:
        >>> import examples.methods  # noqa: F401
        >>> grid_size(["darts", "figs"], [0.5, 0.25], [0.1], ["default"])  # figs: no temperature
        4
    """
    total = 0
    for name in methods:
        uses = tuning.get_method(name).uses
        count = 1
        for hp, values in (("budget", budgets), ("lam", lams), ("temperature", temperatures)):
            if hp in uses:
                count *= len(values)
        total += count
    return total


class ProgressTuner(tuning.SweepTuner):
    """A ``SweepTuner`` that prints ``[trial 2/4] darts budget 0.25 ...`` as each
    trial starts and its time (and the estimate of what is left) as it ends
    (``searchlayers.progress.Counter``).

    Example:
        >>> tuner = ProgressTuner("grid", hp, total=4, directory="out")  # doctest: +SKIP
    """

    def __init__(self, *args, total=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.total = total
        self.counter = progress.Counter(total, "trial")

    def on_trial_begin(self, trial):
        super().on_trial_begin(trial)
        values = trial.hyperparameters.values
        text = " ".join(f"{k} {values[k]}" for k in ("method", "budget", "lam", "temperature")
                        if k in values and trial.hyperparameters.is_active(k))
        self.counter.begin(f"{text}: searching, retraining, exporting")

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        self.counter.end()


def make_tuner():
    """The ``SweepTuner`` the flags describe.

    Example:
        >>> make_tuner().search()  # doctest: +SKIP
    """
    import examples.methods  # noqa: F401  (registers the methods)

    space = tuning.search_space(FLAGS.methods, [float(b) for b in FLAGS.budgets],
                                [float(v) for v in FLAGS.lams], FLAGS.temperatures)
    settings = dict(epochs=FLAGS.epochs, retrain_epochs=FLAGS.retrain_epochs,
                    steps_per_epoch=FLAGS.steps_per_epoch, batch_size=FLAGS.batch_size,
                    seed=FLAGS.seed, metric=FLAGS.metric, options=json.loads(FLAGS.options),
                    verbose=FLAGS.verbose)
    oracle_kwargs = {"max_epochs": FLAGS.max_epochs} if FLAGS.oracle == "hyperband" else {}
    total = None
    if FLAGS.oracle == "grid":
        total = grid_size(FLAGS.methods, FLAGS.budgets, FLAGS.lams, FLAGS.temperatures)
    if FLAGS.max_trials:
        total = min(total or FLAGS.max_trials, FLAGS.max_trials)
    return ProgressTuner(
        FLAGS.oracle, space, total=total, max_trials=FLAGS.max_trials, objective=FLAGS.objective,
        directory=FLAGS.out, project_name=FLAGS.project, overwrite=FLAGS.overwrite,
        settings=settings, seed=FLAGS.seed, random_baseline=FLAGS.random_baseline,
        strategy="multiworker" if FLAGS.multiworker else "mirrored" if FLAGS.mirrored else None,
        oracle_kwargs=oracle_kwargs)


def _split_cpu(count):
    if count > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def main(argv):
    del argv
    start = time.time()
    tf.get_logger().setLevel("ERROR")
    _split_cpu(FLAGS.logical_cpus)
    project_dir = os.path.join(FLAGS.out, FLAGS.project)
    if not FLAGS.report_only:
        tuner = make_tuner()
        tuner.search(verbose=1 if FLAGS.verbose else 0)
        if tuning.is_worker():
            print(f"Worker {os.environ['KERASTUNER_TUNER_ID']} done.")
            return
    path = report.report(project_dir)
    records = tuning.load_results(project_dir)
    print(f"\nSweep {project_dir}: {len(records)} trials in {time.time() - start:.0f} s\n")
    print(report.summary_table(records))
    print("\nPareto-optimal trials (accuracy vs equivalent ops):")
    for line in report.pareto_summary(records):
        print(f"  {line}")
    print(f"\nReport: {path}")
    asked_got = {r["trial_id"]: report.budget_asked_got(r) for r in records}
    summary.run_summary(
        "sweep", f"{len(records)} trials of {', '.join(sorted({r['method'] for r in records}))} "
        f"({FLAGS.oracle} oracle)", out=project_dir,
        accuracy={f"trial {r['trial_id']} ({r['method']}, budget {r['budget']:g})": r["accuracy"]
                  for r in records},
        files=[f for f in summary.written(project_dir, (".png", ".md"))
               if os.path.dirname(f) == project_dir],
        notes=[f"trial {r['trial_id']}: budget asked {a[1]:,.0f} / got {a[2]:,.0f} {a[0]} "
               f"({a[2] / a[1]:.1%}" + (f"; unreachable, searched for the closest achievable, "
                                        f"{report.budget_searched(r):,.0f})"
                                        if report.budget_searched(r) else ")")
               for r in records for a in [asked_got[r["trial_id"]]] if a],
        details={"records": len(records), "seconds": time.time() - start})


if __name__ == "__main__":
    app.run(main)
