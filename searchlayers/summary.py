"""One run summary: what was searched, how decided it ended, what was derived,
what it costs, how well it does, what was written.

Every example (and the sweep) ends with ``run_summary``: it prints the same
block and writes ``summary.json`` with the same keys (``KEYS``):

- ``method``, ``searched``: the method and the space in words;
- ``decision``: how decided the search ended (``searchlayers.decision.summary``
  without the per-layer rows: decided / undecided groups, medians, a verdict);
- ``architecture``: the derived architecture in words (``describe``);
- ``cost``: per model and metric; ``exact`` for derived (counted) models,
  ``expected`` for a supernet's probability-weighted cost, the kind named in
  the printed row;
- ``accuracy``: ``{name: value}`` (e.g. test accuracy of the retrained child);
- ``exports``: one entry per exported file: path, bytes, parity (max |diff|,
  agreement) when known;
- ``files``: every PNG / JSON / CSV the run wrote (``summary.json`` included);
- ``budget``: asked vs got (``searchlayers.budget.Fit.to_dict()``), or None;
- ``seconds``: the run's wall time, or None;
- ``notes``: lines the user should read (e.g. why a loss goes negative);
- ``details``: the example's own fields (history, genotype, ...).

Example:
    >>> s = run_summary("darts", "DARTS cell space on digits", out=None, echo=False,
    ...                 accuracy={"test": 0.9})
    >>> sorted(s) == sorted(KEYS)
    True
"""

import collections
import json
import math
import os

import numpy as np

KEYS = ("method", "searched", "decision", "architecture", "cost", "accuracy", "exports",
        "files", "budget", "seconds", "notes", "details")
METRICS = ("params", "macs")


def decision_of(model):
    """``decision.summary(model)`` without its per-layer rows, plus a ``verdict``
    ("decided", "undecided" or "no architecture distributions").

    Example:
        >>> import searchlayers as sl
        >>> m = sl.keras.Sequential([sl.keras.Input((4, 4, 2)),
        ...                          sl.MixedOp(["skip_connect", "none"])])
        >>> decision_of(m)["verdict"]
        'undecided'
    """
    from searchlayers import decision

    result = decision.summary(model)
    del result["layers"]
    groups = result["decided"] + result["undecided"]
    result["groups"] = groups
    result["verdict"] = ("no architecture distributions" if groups == 0 else
                         "decided" if result["undecided"] == 0 else "undecided")
    return _plain(result)


def describe(architecture, max_items=12):
    """The derived architecture in words: the count of each chosen op, or for
    channel choices (FiGS) the kept channels per layer.

    Example:
        >>> from searchlayers.architecture import Architecture
        >>> describe(Architecture({"a": 1, "b": 1, "c": 0},
        ...                       {"a": "sep_conv_3x3", "b": "sep_conv_3x3", "c": "none"}))
        '3 choices: sep_conv_3x3 x2, none x1'
        >>> describe(Architecture({"conv1_mask": [0, 2, 5]}))
        'kept channels: conv1_mask 3'
    """
    choices = dict(getattr(architecture, "choices", architecture) or {})
    names = dict(getattr(architecture, "names", None) or {})
    if not choices:
        return "no search layers"
    if all(isinstance(c, (list, tuple)) for c in choices.values()):
        items = [f"{k} {len(v)}" for k, v in sorted(choices.items())]
        more = f", ... {len(items) - max_items} more" if len(items) > max_items else ""
        return "kept channels: " + ", ".join(items[:max_items]) + more
    counts = collections.Counter(str(names.get(k, choices[k])) for k in choices)
    text = ", ".join(f"{op} x{n}" for op, n in counts.most_common(max_items))
    return f"{len(choices)} choices: {text}"


def cost_of(model, kind, metrics=METRICS):
    """``{metric: value, "kind": kind}`` of ``model``: ``kind="exact"`` counts the
    model (``cost.profile``), ``"expected"`` takes the probability-weighted cost
    of a supernet (``regularizers.expected_cost``).

    Example:
        >>> cost_of(child, "exact")  # doctest: +SKIP
        {'params': 12345.0, 'macs': 678901.0, 'kind': 'exact'}
    """
    from searchlayers import cost, regularizers

    if kind == "exact":
        total = cost.profile(model).total
        out = {m: float(np.asarray(total.metric(m))) for m in metrics}
    elif kind == "expected":
        out = {m: float(regularizers.expected_cost(model, m)) for m in metrics}
    else:
        raise ValueError(f"summary.cost_of: kind must be 'exact' or 'expected', got {kind!r}.")
    return {**out, "kind": kind}


def export_entry(path, parity=None):
    """One ``exports`` entry: the file's path and bytes, and its parity report
    (a ``export.parity`` result or dict) when given.

    Example:
        >>> export_entry("missing.tflite")["bytes"] is None
        True
    """
    entry = {"path": path, "bytes": None}
    if parity is not None:
        values = parity if isinstance(parity, dict) else vars(parity)
        entry.update({k: v for k, v in values.items() if k != "path"})
        entry["bytes"] = entry.get("size_bytes")
    if path and os.path.exists(path):
        entry["bytes"] = os.path.getsize(path)
    return _plain(entry)


def written(folder, suffixes=(".png", ".json", ".csv")):
    """The files under ``folder`` ending in ``suffixes``, sorted (for ``files``).

    Example:
        >>> written("/nonexistent")
        []
    """
    out = []
    for root, _, names in os.walk(folder):
        out.extend(os.path.join(root, n) for n in names if n.endswith(tuple(suffixes)))
    return sorted(out)


def run_summary(method, searched, out=None, decision=None, architecture=None, cost=None,
                accuracy=None, exports=(), files=(), budget=None, notes=(), details=None,
                seconds=None, echo=True):
    """The run's summary as a dict (``KEYS``); printed as a table when ``echo``
    and written to ``out/summary.json`` when ``out`` (then listed in ``files``).

    ``decision``: a ``decision_of`` dict (or a model, summarized here);
    ``architecture``: words or an ``Architecture`` (``describe``); ``cost``:
    ``{model name: cost_of(...)}``; ``budget``: a ``budget.Fit``, its
    ``to_dict()`` or ``{"metric", "asked", "got"}``.

    Example:
        >>> s = run_summary("figs", "ResNet masks", echo=False,
        ...                 budget={"metric": "params", "asked": 100.0, "got": 103.0})
        >>> s["budget"]["ratio"], s["budget"]["on_budget"]
        (1.03, True)
    """
    if decision is not None and not isinstance(decision, dict):
        decision = decision_of(decision)
    if architecture is not None and not isinstance(architecture, str):
        architecture = describe(architecture)
    if budget is not None and hasattr(budget, "to_dict"):
        budget = budget.to_dict()
    if budget is not None:
        budget = dict(budget)
        ratio = budget["got"] / budget["asked"]
        budget.setdefault("ratio", ratio)
        budget.setdefault("on_budget", abs(ratio - 1.0) <= 0.05)
    files = [str(f) for f in files]
    if out is not None:
        path = os.path.join(out, "summary.json")
        if path not in files:
            files.append(path)
    result = _plain({
        "method": method, "searched": searched, "decision": decision,
        "architecture": architecture, "cost": dict(cost or {}),
        "accuracy": dict(accuracy or {}), "exports": list(exports), "files": files,
        "budget": budget, "seconds": seconds, "notes": list(notes), "details": details or {},
    })
    if out is not None:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "summary.json"), "w") as f:
            json.dump(result, f, indent=2, default=str)
    if echo:
        print(format_table(result))
    return result


def _number(value):
    if value is None:
        return "-"
    if isinstance(value, float) and value != int(value):
        return f"{value:,.2f}"
    return f"{int(value):,}"


def format_table(result):
    """The printed block of a ``run_summary`` result.

    Example:
        >>> print(format_table(run_summary("x", "a space", echo=False)))
        ==== Run summary: x ====
        searched      a space
        decision      -
        architecture  -
    """
    lines = [f"==== Run summary: {result['method']} ====",
             f"{'searched':<13} {result['searched']}"]
    d = result.get("decision")
    if d and not d.get("groups"):
        lines.append(f"{'decision':<13} {d['verdict']} (no learned architecture "
                     "probabilities to judge)")
    elif d:
        flips = "" if d.get("max_flips") is None else f", most argmax flips {d['max_flips']:.2f}"
        lines.append(f"{'decision':<13} {d['verdict']}: {d['decided']} of {d['groups']} "
                     f"groups decided (median largest probability "
                     f"{_fmt(d['median_max_prob'])}{flips})")
    else:
        lines.append(f"{'decision':<13} -")
    lines.append(f"{'architecture':<13} {result.get('architecture') or '-'}")
    costs = result.get("cost") or {}
    if costs:
        metrics = [m for m in METRICS if any(m in c for c in costs.values())] or sorted(
            {m for c in costs.values() for m in c if m != "kind"})
        lines.append(f"{'cost':<26}" + "".join(f"{m:>14}" for m in metrics))
        for name, c in costs.items():
            label = f"{name} ({c.get('kind', 'exact')})"
            lines.append(f"  {label:<24}" + "".join(f"{_number(c.get(m)):>14}" for m in metrics))
    b = result.get("budget")
    if b:
        state = "on budget" if b["on_budget"] else "MISSED"
        lines.append(f"{'budget':<13} asked {_number(b['asked'])} / got {_number(b['got'])} "
                     f"{b['metric']} = {b['ratio']:.1%} ({state}, tolerance 5%)")
        if b.get("message"):
            lines.append(f"{'':<13} {b['message']}")
    for name, value in (result.get("accuracy") or {}).items():
        lines.append(f"{'accuracy':<13} {name} {_fmt(value, 3)}")
    for e in result.get("exports") or []:
        size = "-" if e.get("bytes") is None else f"{e['bytes'] / 1024:,.1f} KiB"
        parity = ""
        if e.get("max_abs_diff") is not None:
            parity = f", parity max |diff| {e['max_abs_diff']:.1e}"
        if e.get("argmax_agreement") is not None:
            parity += f", argmax agreement {e['argmax_agreement']:.1%}"
        lines.append(f"{'export':<13} {e.get('path')} ({size}{parity})")
    if result.get("seconds") is not None:
        lines.append(f"{'time':<13} {result['seconds']:,.0f} s")
    for path in result.get("files") or []:
        lines.append(f"{'wrote':<13} {path}")
    for note in result.get("notes") or []:
        lines.append(f"{'note':<13} {note}")
    return "\n".join(lines)


def _fmt(value, digits=2):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _plain(value):
    """JSON-friendly copy (numpy scalars and arrays to Python; NaN to None)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


__all__ = ["KEYS", "cost_of", "decision_of", "describe", "export_entry", "format_table",
           "run_summary", "written"]
