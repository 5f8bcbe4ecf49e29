"""Small helpers shared by the benchmarks: timing, JSON output, tables.

Example:
    >>> from benchmarks.common import time_calls, table
    >>> time_calls(lambda: None, steps=3, warmup=1)["steps"]
    3
    >>> print(table([["a", 1.5]], ["name", "value"]))
    name  value
    ----  -----
    a      1.50
"""

import json
import os
import statistics
import time

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def time_calls(fn, steps=20, warmup=3):
    """Runs ``fn()`` ``warmup`` times untimed, then ``steps`` times timed.

    ``fn`` must block until its work is done (e.g. return a value that was
    read back with ``.numpy()``). Returns seconds: median, mean, min.

    Example:
        >>> time_calls(lambda: sum(range(100)), steps=5)["median_s"] >= 0
        True
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "mean_s": statistics.fmean(times),
            "min_s": min(times), "steps": steps}


def write_json(name, data):
    """Writes ``data`` to ``benchmarks/results/<name>.json``; returns the path.

    A ``--quick`` run (``data["quick"]`` or ``data["config"]["quick"]`` true)
    writes ``<name>_quick.json`` instead (git-ignored), so it never replaces
    the full run's figures.

    Example:
        >>> write_json("example", {"ratio": 1.0})  # doctest: +SKIP
        '.../benchmarks/results/example.json'
    """
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    if (data.get("quick") or config.get("quick")) and not name.endswith("_quick"):
        name += "_quick"
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.json")
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=str)
    return path


def _cell(value):
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def table(rows, headers):
    """A plain-text table: first column left-aligned, the others right-aligned.

    Example:
        >>> print(table([["x", 2]], ["k", "v"]))
        k  v
        -  -
        x  2
    """
    cells = [[_cell(v) for v in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row):
        parts = [row[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(row[1:], widths[1:])]
        return "  ".join(parts).rstrip()

    rule = ["-" * w for w in widths]
    return "\n".join([line(cells[0]), line(rule), *(line(r) for r in cells[1:])])
