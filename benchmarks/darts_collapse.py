"""Does a DARTS-space search on digits collapse to parameter-free ops?

DARTS is known to drift towards ``skip_connect`` / ``none`` edges. This runs
the same cell search (``examples.darts_search.search``) three ways and reports
the op mix per cell type of the derived architecture:

- ``softmax``: plain DARTS, no entropy term (allowed to collapse);
- ``softmax+entropy``: DARTS with the BARS entropy schedule
  (``EntropyRegularizer.bars``: coefficient linear from -0.01, exploring, to
  +0.01, committing);
- ``gumbel+entropy``: SNAS-style Gumbel-softmax, joint training, annealed
  temperature, the same entropy schedule.

The architecture learning rate defaults to 0.03 (DARTS: 3e-4 over ~20k
steps); at 3e-3 the distributions stay near uniform (entropy ~ln 8) after 15
epochs and the argmax mix says nothing. For each: the argmax op mix (what ``searchlayers.derive`` builds; ``none``
edges are dropped), DARTS' top-2 genotype mix, the share of parameter-free
edges (``none`` + ``skip_connect``), and the mean edge entropy at the end.

Example:
    python -m benchmarks.darts_collapse                 # ~4 minutes on 2 CPU cores
    python -m benchmarks.darts_collapse --quick         # 3 epochs
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import searchlayers as sl  # noqa: E402  (Keras-2 guard before TensorFlow)
from searchlayers import regularizers  # noqa: E402

from benchmarks.common import table, write_json  # noqa: E402
from examples.darts_search import search  # noqa: E402
from models import darts  # noqa: E402

RUNS = {  # name -> search() arguments
    "softmax": dict(method="darts", entropy=False),
    "softmax+entropy": dict(method="darts", entropy=True),
    "gumbel+entropy": dict(method="snas", entropy=True),
}


def run_one(name, epochs, seed=0, **config):
    """One search; returns its op mixes, collapse shares and final entropy.

    Example:
        >>> run_one("softmax", epochs=1, method="darts", entropy=False)  # doctest: +SKIP
    """
    sl.keras.utils.set_random_seed(seed)
    start = time.time()
    supernet, history = search(epochs=epochs, verbose=0, **{**RUNS[name], **config})
    argmax = darts.op_mix(sl.choose(supernet))
    top2 = darts.op_mix(darts.top2_architecture(supernet))
    return {
        "argmax_mix": argmax,
        "top2_mix": top2,
        "parameter_free_share": darts.collapse_fraction(argmax),
        "mean_edge_entropy": float(regularizers.entropy(supernet, "mean")),
        "final_search_accuracy": float(history["accuracy"][-1]),
        "genotype": darts.genotype(supernet),
        "seconds": time.time() - start,
    }


def _mix_text(counts):
    return ", ".join(f"{op} {n}" for op, n in counts.items()) or "-"


def report(results):
    """A table: one row per run and cell type.

    Example:
        >>> print(report({}))
        run  cell  param-free  argmax op mix  entropy
        ---  ----  ----------  -------------  -------
    """
    rows = []
    for name, r in results.items():
        for kind in darts.KINDS:
            rows.append([name, kind, r["parameter_free_share"][kind],
                         _mix_text(r["argmax_mix"][kind]), r["mean_edge_entropy"]])
    return table(rows, ["run", "cell", "param-free", "argmax op mix", "entropy"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arch_lr", type=float, default=0.03,
                        help="Architecture Adam learning rate; large enough that the "
                        "distributions move in a ~135-step digits search.")
    parser.add_argument("--runs", nargs="*", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--quick", action="store_true",
                        help="3 epochs; writes darts_collapse_quick.json.")
    args = parser.parse_args()
    if args.quick:
        args.epochs = 3
    start = time.time()
    results = {name: run_one(name, args.epochs, args.seed, arch_lr=args.arch_lr)
               for name in args.runs}
    print(report(results))
    summary = {"epochs": args.epochs, "seed": args.seed, "arch_lr": args.arch_lr,
               "runs": results,
               "config": "examples.darts_search defaults (channels 8, cells 3, steps 3)",
               "seconds": time.time() - start}
    name = "darts_collapse_quick" if args.quick else "darts_collapse"
    print(f"\nwrote {write_json(name, summary)} ({summary['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
