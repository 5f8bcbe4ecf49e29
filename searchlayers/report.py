"""One Markdown page for a sweep folder (``searchlayers.tuning``).

``report(project_dir)`` reads every finished trial's ``result.json`` and writes:

* ``report.md``: a table with one row per trial (method, budget, lambda,
  temperature, the budget asked / got in absolute cost, accuracy, the random
  baseline's mean ± std when run, how decided the search ended, float and
  binary MACs, parameters, equivalent ops, TFLite / LCE size, search time), a
  line per trial on decision, budget and random baseline, and the figures
  below, each with a one-line caption saying how to read it;
* ``pareto.png``: test accuracy against equivalent ops, one colour per method,
  each method's Pareto front (no other trial of the method is both cheaper
  and more accurate) drawn as a line;
* ``architecture_<trial>.png``: how the architecture distributions moved over
  the search epochs, drawn by ``ArchitectureLogger`` from the trial's CSV.

Example:
    >>> from searchlayers import report
    >>> report.report("sweeps/sweep")  # doctest: +SKIP
    'sweeps/sweep/report.md'
"""

import os

from searchlayers import decision
from searchlayers.callbacks import ArchitectureLogger
from searchlayers.tuning import load_results

COLUMNS = (  # (header, record -> text)
    ("trial", lambda r: r["trial_id"]),
    ("method", lambda r: r["method"]),
    ("budget", lambda r: _used(r, "budget", f"{r['budget']:g}")),
    ("lambda", lambda r: _used(r, "lam", f"{r['lam']:g}")),
    ("temperature", lambda r: _used(r, "temperature", r["temperature"])),
    ("asked", lambda r: _budget_text(r)[0]),
    ("got", lambda r: _budget_text(r)[1]),
    ("accuracy", lambda r: f"{r['accuracy']:.3f}"),
    ("random ± std", lambda r: _random_text(r)),
    ("decided", lambda r: _decision_text(r)),
    ("float MACs", lambda r: _si(r["float_macs"])),
    ("binary MACs", lambda r: _si(r["binary_macs"])),
    ("params", lambda r: _si(r["params"])),
    ("eq. ops", lambda r: _si(r["equivalent_ops"])),
    ("size", lambda r: f"{r['size_bytes'] / 1024:.1f} KiB {r['size_format']}"),
    ("search s", lambda r: f"{r['search_seconds']:.1f}"),
)
PARETO_PNG = "pareto.png"
PARETO_CAPTION = ("How to read: one dot per trial's derived, retrained model; x: its cost "
                  "(log scale), y: its test accuracy; the line joins each method's "
                  "Pareto-optimal trials (no other trial of the method is cheaper and more "
                  "accurate); b: the budget fraction asked.")
ARCHITECTURE_CAPTION = ("How to read: one panel per architecture group; each line is a "
                        "candidate's probability after each search epoch; a decided group "
                        "ends with one line near 1 while the others fall to 0; flat lines "
                        "near 1 / (number of candidates) mean the search did not choose.")
REPORT_MD = "report.md"


# the record's value of each cost metric (searchlayers.cost METRICS, from the totals)
_METRIC_VALUE = {
    "macs": lambda r: float(r["float_macs"]) + float(r["binary_macs"]),
    "flops": lambda r: float(r["float_macs"]) + float(r["binary_macs"]),
    "float_macs": lambda r: float(r["float_macs"]),
    "binary_macs": lambda r: float(r["binary_macs"]),
    "binary_ops": lambda r: float(r["binary_macs"]),
    "params": lambda r: float(r["params"]),
    "equivalent_ops": lambda r: float(r["equivalent_ops"]),
    "memory_bytes": lambda r: float(r["memory_bytes"]),
}


def budget_asked_got(record):
    """``(metric, asked, got)`` of a trial: the absolute budget its cost term
    asked for (``FLOPsRegularizer`` logs it as ``budget_<metric>``) and the exact
    cost of the derived, retrained model in that metric; ``None`` for a trial
    with no budget term.

    Example:
        >>> budget_asked_got({"metric": "params", "params": 103.0,
        ...                   "history": {"budget_params": [100.0]}})
        ('params', 100.0, 103.0)
    """
    metric = record.get("metric", "equivalent_ops")
    history = record.get("history") or {}
    # the budget asked for, before a search moved an unreachable one (budget.clamp)
    asked = history.get(f"budget_requested_{metric}") or history.get(f"budget_{metric}")
    if not asked or metric not in _METRIC_VALUE:
        return None
    return metric, float(asked[-1]), _METRIC_VALUE[metric](record)


def budget_searched(record):
    """The budget the trial's search aimed at instead of an unreachable asked one
    (``searchlayers.budget.clamp``), or None when it searched for the asked one.

    Example:
        >>> budget_searched({"metric": "macs", "history": {
        ...     "budget_requested_macs": [100.0], "budget_macs": [130.0]}})
        130.0
    """
    metric = record.get("metric", "equivalent_ops")
    history = record.get("history") or {}
    asked, searched = (history.get(f"budget_requested_{metric}"),
                       history.get(f"budget_{metric}"))
    if not asked or not searched or abs(searched[-1] / asked[-1] - 1) < 1e-6:
        return None
    return float(searched[-1])


def _budget_text(record):
    found = budget_asked_got(record)
    if found is None:
        return "-", "-"
    _, asked, got = found
    miss = ""
    if abs(got / asked - 1) > 0.05:
        miss = " (closest achievable)" if budget_searched(record) else " (missed)"
    return _si(asked), f"{_si(got)} = {got / asked:.0%}{miss}"


def _random_text(record):
    if record.get("random_error"):
        return "none at equal cost"
    if record.get("random_mean") is None:
        return "-"
    n = len(record.get("random_accuracies") or [])
    return f"{record['random_mean']:.3f} ± {record.get('random_std') or 0.0:.3f} (n={n})"


def _decision_text(record):
    if record.get("decided") is None:
        return "-"
    total = record["decided"] + record.get("undecided", 0)
    p, share = record.get("median_max_prob"), record.get("decided_share")
    return (f"{record['decided']}/{total}" + ("" if p is None else f", p {p:.2f}")
            + ("" if share is None else f", {share:.0%}"))


def _used(record, name, text):
    """``text``, or "-" when the trial's method ignores hyperparameter ``name``."""
    return text if name in record.get("uses", (name,)) else "-"


def _si(value):
    value = float(value)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:g}"


def markdown_table(headers, rows):
    """A Markdown pipe table, padded so it also reads well as plain text.

    Example:
        >>> print(markdown_table(["a", "bb"], [["1", "2"]]))
        | a | bb |
        |---|----|
        | 1 | 2  |
    """
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows)]

    def line(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def summary_table(records):
    """The trials as a Markdown table (``COLUMNS``), one row per record.

    Example:
        >>> print(summary_table([]).splitlines()[0])  # doctest: +NORMALIZE_WHITESPACE
        | trial | method | budget | lambda | temperature | asked | got | accuracy | random ± std | decided | float MACs | binary MACs | params | eq. ops | size | search s |
    """
    return markdown_table([h for h, _ in COLUMNS], [[f(r) for _, f in COLUMNS] for r in records])


def _decision_lines(records):
    """One line per trial: how decided its search ended and searched vs random."""
    lines = []
    for r in records:
        parts = []
        if r.get("decided") is not None:
            total = r["decided"] + r.get("undecided", 0)
            median = r.get("median_max_prob")
            state = ("decided" if r.get("undecided", 0) == 0 else
                     "decided by the median" if median is not None
                     and median >= decision.CATEGORICAL_PROB else "UNDECIDED")
            parts.append(f"{state}: {r['decided']} of {total} groups fully decided (median "
                         f"largest probability {float('nan') if median is None else median:.2f}"
                         f", bar {decision.CATEGORICAL_PROB:g})"
                         + ("" if r.get("decided_share") is None else
                            f"; {r['decided_share']:.0%} of the distributions (edges; FiGS: "
                            f"channels at P <= {1 - decision.MASK_PROB:g} or >= "
                            f"{decision.MASK_PROB:g}) decided"))
        if r.get("random_mean") is not None:
            diff = r["accuracy"] - r["random_mean"]
            parts.append(f"searched {r['accuracy']:.3f} vs random {r['random_mean']:.3f} ± "
                         f"{r.get('random_std') or 0.0:.3f} ({diff:+.3f})")
        found = budget_asked_got(r)
        if found:
            metric, asked, got = found
            parts.append(f"budget asked {asked:,.0f} / got {got:,.0f} {metric} "
                         f"({got / asked:.1%})")
            if budget_searched(r):
                parts.append(f"unreachable: searched for the closest achievable, "
                             f"{budget_searched(r):,.0f}")
        if parts:
            lines.append(f"- trial {r['trial_id']} ({r['method']}): " + "; ".join(parts))
    return ["## Decision, budget and random baseline per trial", "", *lines, ""] if lines else []


def pareto_front(points):
    """Indices of the points ``(cost, accuracy)`` that no other point dominates
    (cost <= and accuracy >=, one of them strictly), sorted by cost.

    Example:
        >>> pareto_front([(1, 0.5), (2, 0.9), (3, 0.8), (2, 0.6)])
        [0, 1]
    """
    front = []
    for i, (c, a) in enumerate(points):
        dominated = any(c2 <= c and a2 >= a and (c2 < c or a2 > a) for c2, a2 in points)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def pareto_summary(records, cost="equivalent_ops"):
    """One line per method listing its Pareto-optimal trials, cheapest first.

    Example:
        >>> pareto_summary([{"method": "figs", "trial_id": "0", "accuracy": 0.9,
        ...                  "equivalent_ops": 2e4}])
        ['figs: trial 0 (20.00k eq. ops, accuracy 0.900)']
    """
    lines = []
    for method in sorted({r["method"] for r in records}):
        mine = [r for r in records if r["method"] == method]
        front = pareto_front([(float(r[cost]), float(r["accuracy"])) for r in mine])
        parts = [f"trial {mine[i]['trial_id']} ({_si(mine[i][cost])} "
                 f"{'eq. ops' if cost == 'equivalent_ops' else cost}, "
                 f"accuracy {mine[i]['accuracy']:.3f})" for i in front]
        lines.append(f"{method}: " + ", ".join(parts))
    return lines


def plot_pareto(records, path, cost="equivalent_ops"):
    """Accuracy against ``cost`` per method with each method's Pareto front; returns ``path``.

    Example:
        >>> plot_pareto(load_results("sweeps/sweep"), "pareto.png")  # doctest: +SKIP
        'pareto.png'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for i, method in enumerate(sorted({r["method"] for r in records})):
        mine = [r for r in records if r["method"] == method]
        points = [(float(r[cost]), float(r["accuracy"])) for r in mine]
        color = f"C{i}"
        ax.scatter(*zip(*points), color=color, label=method, zorder=3)
        front = [points[j] for j in pareto_front(points)]
        ax.step(*zip(*front), where="post", color=color, alpha=0.7)
        for (x, y), r in zip(points, mine):
            ax.annotate(f"b={r['budget']:g}", (x, y), textcoords="offset points",
                        xytext=(4, 4), fontsize="x-small")
    ax.set_xscale("log")
    ax.set_xlabel(cost.replace("_", " ") + " (derived model)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Accuracy vs cost, Pareto front per method")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_architecture(record, path):
    """The trial's architecture distributions per epoch (``ArchitectureLogger``'s
    CSV and plot); returns ``path``, or None when the trial logged none.

    Example:
        >>> plot_architecture(load_results("sweeps/sweep")[0], "a.png")  # doctest: +SKIP
        'a.png'
    """
    logger = ArchitectureLogger(record["trial_dir"])
    if not logger.load():
        return None
    return logger.plot(path)


def report(project_dir, out_dir=None):
    """Writes ``report.md`` and its PNGs for the sweep in ``project_dir``; returns
    the Markdown path. ``out_dir`` defaults to ``project_dir``.

    Example:
        >>> report("sweeps/sweep")  # doctest: +SKIP
        'sweeps/sweep/report.md'
    """
    records = load_results(project_dir)
    if not records:
        raise ValueError(
            f"report: no finished trials (trial_*/result.json) under {project_dir!r}."
        )
    out_dir = out_dir or project_dir
    os.makedirs(out_dir, exist_ok=True)
    plot_pareto(records, os.path.join(out_dir, PARETO_PNG))
    methods = sorted({r["method"] for r in records})
    lines = [
        f"# Sweep report: {os.path.basename(os.path.normpath(project_dir))}",
        "",
        f"{len(records)} trials, methods {', '.join(methods)}. Costs are those of the "
        "derived, retrained model (`searchlayers.cost.profile`; eq. ops = float MACs + "
        "binary MACs / 64); accuracy is on the test split; size is the TFLite flatbuffer "
        "(LCE for binary methods); search time covers build, search and derive. "
        "*asked*: the absolute budget of the trial's cost term (budget x the supernet's "
        "expected cost when the search starts); *got*: the derived model's exact cost in "
        "the same metric, as a share of asked (\"missed\" outside +-5 %). *random*: test "
        "accuracy, mean +- std over n random architectures of the same space at the "
        "searched child's cost (+-5 %), retrained alike (`random_baseline`). *decided*: "
        "architecture groups that ended decided / all, the median largest probability, "
        "and the share of all distributions decided (edges; FiGS: mask channels at "
        "P(mask = 1) <= 0.01 or >= 0.99) (`searchlayers.decision`).",
        "",
        summary_table(records),
        "",
        *_decision_lines(records),
        "## Accuracy vs cost",
        "",
        f"![Pareto fronts]({PARETO_PNG})",
        "",
        f"*{PARETO_CAPTION}*",
        "",
        "Pareto-optimal trials per method:",
        "",
        *(f"- {line}" for line in pareto_summary(records)),
        "",
        "## Architecture distributions during the search",
    ]
    for record in records:
        name = f"architecture_{record['trial_id']}.png"
        png = plot_architecture(record, os.path.join(out_dir, name))
        title = f"### Trial {record['trial_id']}: {record['method']}, budget {record['budget']:g}"
        lines += ["", title, ""]
        lines.append(f"![trial {record['trial_id']}]({name})" if png else "(no epochs logged)")
        if png:
            lines += ["", f"*{ARCHITECTURE_CAPTION}*"]
    path = os.path.join(out_dir, REPORT_MD)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path
