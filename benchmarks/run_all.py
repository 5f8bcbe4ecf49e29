"""Runs every benchmark in ``benchmarks/``, one subprocess each, and prints a summary.

Each benchmark writes its own ``benchmarks/results/<name>.json`` and table;
this only sequences them (one at a time, so timings do not disturb each other)
and reports which ran and how long each took. ``--quick`` is passed on to the
benchmarks that define that flag.

Example:
    python -m benchmarks.run_all --quick
    python -m benchmarks.run_all --only mixed_op_speed figs_overhead
"""

import argparse
import os
import pkgutil
import subprocess
import sys
import time

from benchmarks.common import table, write_json

HERE = os.path.dirname(os.path.abspath(__file__))
NOT_BENCHMARKS = {"applications", "common", "run_all"}


def benchmark_names():
    """The benchmark modules of this folder, sorted.

    Example:
        >>> "mixed_op_speed" in benchmark_names()
        True
    """
    return sorted(m.name for m in pkgutil.iter_modules([HERE])
                  if m.name not in NOT_BENCHMARKS)


def accepts_quick(name):
    """Whether the benchmark defines a ``--quick`` flag (absl or argparse)."""
    with open(os.path.join(HERE, f"{name}.py")) as f:
        source = f.read()
    return '"quick"' in source or "'--quick'" in source or '"--quick"' in source


def run(name, quick):
    """Runs one benchmark module; returns ``(exit status, seconds)``."""
    command = [sys.executable, "-m", f"benchmarks.{name}"]
    if quick and accepts_quick(name):
        command.append("--quick")
    start = time.time()
    status = subprocess.call(command, cwd=os.path.dirname(HERE))
    return status, time.time() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Smaller runs where supported.")
    parser.add_argument("--only", nargs="*", choices=benchmark_names(),
                        help="Run only these benchmarks.")
    args = parser.parse_args()
    rows = []
    for name in args.only or benchmark_names():
        print(f"\n=== benchmarks.{name}", flush=True)
        status, seconds = run(name, args.quick)
        rows.append([name, "ok" if status == 0 else f"exit {status}", seconds])
    print("\n" + table(rows, ["benchmark", "status", "seconds"]))
    write_json("run_all", {"quick": args.quick, "runs": rows})
    sys.exit(0 if all(r[1] == "ok" for r in rows) else 1)


if __name__ == "__main__":
    main()
