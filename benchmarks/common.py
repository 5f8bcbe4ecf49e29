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


def interleaved(calls, rounds=5, steps=10, warmup=3, round_warmup=1):
    """Times every ``calls[name]()`` in interleaved rounds (rotating order).

    Each round runs ``round_warmup`` untimed and ``steps`` timed calls of every
    entry, so a change of load on a shared machine hits all sides alike and
    per-round ratios stay meaningful (``steps=1, round_warmup=0``: the sides
    alternate call by call). Returns ``{name: [time_calls(...) dict per round]}``.

    Example:
        >>> t = interleaved({"a": lambda: None, "b": lambda: None}, rounds=2, steps=2)
        >>> [len(t["a"]), sorted(t["a"][0])]
        [2, ['mean_s', 'median_s', 'min_s', 'steps']]
    """
    names = list(calls)
    for name in names:  # trace and warm up every side before any timing
        time_calls(calls[name], steps=1, warmup=warmup)
    times = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            times[name].append(time_calls(calls[name], steps=steps, warmup=round_warmup))
    return times


def per_round(times, name, statistic="median_s"):
    """The ``statistic`` of ``name`` in each round of ``interleaved``'s result.

    Example:
        >>> per_round({"a": [{"median_s": 1.0}, {"median_s": 3.0}]}, "a")
        [1.0, 3.0]
    """
    return [t[statistic] for t in times[name]]


def train_step_fn(model, regularizer=None, lr=0.01):
    """A compiled SGD train step ``step(x, y) -> loss`` over every trainable variable.

    ``regularizer()``, when given, is added to the loss. Variables without a
    gradient (e.g. candidates a single-path step did not run) are skipped.

    Example:
        >>> step = train_step_fn(model)  # doctest: +SKIP
        >>> float(step(x, y))  # doctest: +SKIP
    """
    import tensorflow as tf

    from searchlayers._keras import keras

    optimizer = keras.optimizers.SGD(lr)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
            if regularizer is not None:
                loss += regularizer()
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
        return loss

    return step


def mean_std(runs, metrics):
    """``{variant: {metric: [mean, std]}}`` over each variant's runs (population
    std); variants without runs are left out.

    Example:
        >>> mean_std({"a": [{"x": 1.0}, {"x": 3.0}], "b": []}, ["x"])
        {'a': {'x': [2.0, 1.0]}}
    """
    import numpy as np

    return {name: {m: [float(np.mean([r[m] for r in rs])), float(np.std([r[m] for r in rs]))]
                   for m in metrics} for name, rs in runs.items() if rs}


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
