"""Does a DARTS-space search on digits drift to parameter-free ops, and does
the entropy schedule change it?

DARTS is known to drift towards ``skip_connect`` / ``none`` edges. This runs
the same cell search (``examples.darts_search.search``) with searches long
enough to decide: the architecture learning rate is the step-aware ``"auto"``
rule (``examples.methods.arch_lr``: ``searchlayers.schedules``, 6 / the
architecture steps after the warm-up epoch), for each of ``--seeds``:

- ``softmax``: plain DARTS, no entropy term (allowed to collapse);
- ``softmax+entropy``: DARTS with BARS' explore-then-commit entropy schedule,
  the demo's (``examples.methods.commit``: coefficient ``-c -> +c`` per step,
  ``c = 0.1``);
- ``softmax, 4x arch lr`` (``--runs``): plain DARTS at four times the auto
  rate (plain softmax at the auto rate ends undecided: its edges' gradients
  do not keep one sign over ~100 steps);
- ``gumbel+entropy`` (``--runs``, not by default): SNAS-style Gumbel-softmax,
  joint training, annealed temperature, the same entropy schedule.

For each run: how decided the search ended (``searchlayers.decision.summary``:
median largest probability over the edges, edges decided), the argmax op mix
(what ``searchlayers.derive`` builds; ``none`` edges are dropped), DARTS' top-2
genotype mix, the share of parameter-free edges (``none`` + ``skip_connect``)
per cell type, the mean edge entropy at the end; per variant mean ± std over
the seeds.

Example:
    python -m benchmarks.darts_collapse                 # ~20 minutes niced on 2 shared cores
    python -m benchmarks.darts_collapse --quick         # 3 epochs, one seed
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import searchlayers as sl  # noqa: E402  (Keras-2 guard before TensorFlow)
from searchlayers import ArchWarmup, decision, regularizers, tuning  # noqa: E402

from benchmarks.common import RESULTS, mean_std, table, write_json  # noqa: E402
from examples import methods  # noqa: E402
from examples.darts_search import search  # noqa: E402
from models import darts  # noqa: E402

RUNS = {  # name -> (method, explore-then-commit entropy, multiple of the auto arch lr)
    "softmax": ("darts", False, 1.0),
    "softmax+entropy": ("darts", True, 1.0),
    "softmax, 4x arch lr": ("darts", False, 4.0),
    "gumbel+entropy": ("snas", True, 1.0),
}
SUMMARY = ("median_max_prob", "parameter_free_normal", "parameter_free_reduce",
           "parameter_free_all", "mean_edge_entropy", "seconds")


def run_one(name, epochs, seed=0, warmup=1, entropy=0.1, channels=8, cells=3, steps=3):
    """One search; returns its decision metrics, op mixes, collapse shares and final entropy.

    Example:
        >>> run_one("softmax", epochs=2)  # doctest: +SKIP
    """
    method, commits, scale = RUNS[name]
    sl.keras.utils.set_random_seed(seed)
    start = time.time()
    spec = tuning.TrialSpec(method, epochs=epochs,
                            options={"warmup": warmup, **({"entropy": entropy} if commits else {})})
    per_epoch = methods._steps_per_epoch(method, spec)
    arch_lr = scale * methods.arch_lr(method, spec)
    supernet, history = search(
        method, epochs, channels=channels, cells=cells, steps=steps, arch_lr=arch_lr, verbose=0,
        extra_callbacks=[ArchWarmup(warmup), *methods.commit(spec, epochs * per_epoch)])
    decided = decision.summary(supernet)
    argmax = darts.op_mix(sl.choose(supernet))
    free = darts.collapse_fraction(argmax)
    edges = {kind: sum(counts.values()) for kind, counts in argmax.items()}
    return {
        "seed": seed, "arch_lr": arch_lr, "arch_steps": (epochs - warmup) * per_epoch,
        "median_max_prob": decided["median_max_prob"],
        "edges_decided": decided["decided"], "edges": len(decided["layers"]),
        "max_flips": decided["max_flips"],
        "argmax_mix": argmax,
        "top2_mix": darts.op_mix(darts.top2_architecture(supernet)),
        "parameter_free_share": free,
        "parameter_free_normal": free["normal"], "parameter_free_reduce": free["reduce"],
        "parameter_free_all": sum(free[k] * edges[k] for k in edges) / max(sum(edges.values()),
                                                                           1),
        "mean_edge_entropy": float(regularizers.entropy(supernet, "mean")),
        "final_search_accuracy": float(history["accuracy"][-1]),
        "genotype": darts.genotype(supernet),
        "seconds": time.time() - start,
    }


def report(summary):
    """A table: one row per variant, mean ± std over the seeds.

    Example:
        >>> print(report({}))
        run  median max p  param-free normal  param-free reduce  param-free all  entropy
        ---  ------------  -----------------  -----------------  --------------  -------
    """
    rows = [[name] + [f"{s[m][0]:.2f} ± {s[m][1]:.2f}" for m in SUMMARY[:-1]]
            for name, s in summary.items()]
    return table(rows, ["run", "median max p", "param-free normal", "param-free reduce",
                        "param-free all", "entropy"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=1, help="Weight-only epochs first.")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--entropy", type=float, default=0.1,
                        help="Explore-then-commit entropy coefficient c (-c -> +c per step).")
    parser.add_argument("--runs", nargs="*", default=["softmax", "softmax+entropy"],
                        choices=list(RUNS))
    parser.add_argument("--extend", action="store_true",
                        help="Add these runs to the existing JSON (its other variants kept).")
    parser.add_argument("--quick", action="store_true",
                        help="3 epochs, one seed; writes darts_collapse_quick.json.")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.seeds = 3, args.seeds[:1]
    start = time.time()
    runs = {name: [] for name in args.runs}
    name = "darts_collapse_quick" if args.quick else "darts_collapse"
    previous = {}
    if args.extend:
        with open(os.path.join(RESULTS, f"{name}.json")) as f:
            previous = json.load(f)
        runs = {**previous["runs"], **runs}
    config = {"epochs": args.epochs, "warmup": args.warmup, "seeds": args.seeds,
              "entropy": args.entropy, "arch_lr": "auto (examples.methods.arch_lr)",
              "space": "examples.darts_search (channels 8, cells 3, steps 3), batch 64",
              "quick": args.quick}
    configs = {**previous.get("configs", {run: previous.get("config") for run in runs}),
               **{run: config for run in args.runs}}
    for seed in args.seeds:
        for run in args.runs:
            r = run_one(run, args.epochs, seed, args.warmup, args.entropy)
            runs[run].append(r)
            print(f"seed {seed} {run}: median max p {r['median_max_prob']:.2f}, param-free "
                  f"{r['parameter_free_all']:.2f}, {r['seconds']:.0f}s", flush=True)
            summary = {"configs": configs, "runs": runs, "summary": mean_std(runs, SUMMARY),
                       "machine": "2 CPU cores shared with other engineers' runs, niced "
                                  "(nice -n 19): times are inflated and not comparable",
                       "seconds": previous.get("seconds", 0) + time.time() - start}
            path = write_json(name, summary)
    print(report(summary["summary"]))
    print(f"\nwrote {path} ({summary['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
