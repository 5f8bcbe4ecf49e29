"""The sweep report (``searchlayers.report``) from a real two-trial sweep."""

import os

import pytest
from matplotlib import image

from searchlayers import report, tuning

import examples.methods  # noqa: F401  (registers darts and figs)

TINY = dict(channels=2, cells=1, steps=1, network={"stages": [[4, 1, 1]], "stem": 4})
SETTINGS = dict(epochs=2, steps_per_epoch=2, retrain_epochs=0, batch_size=32, options=TINY)


def test_pareto_front_by_hand():
    points = [(4.0, 0.9), (1.0, 0.5), (2.0, 0.7), (3.0, 0.6), (2.0, 0.65), (5.0, 0.9)]
    # (3, 0.6) and (2, 0.65) lose to (2, 0.7); (5, 0.9) to (4, 0.9)
    assert report.pareto_front(points) == [1, 2, 0]
    assert report.pareto_front([(1.0, 0.5), (1.0, 0.5)]) == [0, 1]  # ties dominate nothing


def test_markdown_table_pads_columns():
    text = report.markdown_table(["method", "acc"], [["darts", "0.9"], ["figs", "0.85"]])
    assert text.splitlines() == [
        "| method | acc  |",
        "|--------|------|",
        "| darts  | 0.9  |",
        "| figs   | 0.85 |",
    ]


def test_report_of_a_sweep_folder_without_trials_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no finished trials"):
        report.report(str(tmp_path))


def test_report_renders_table_and_pngs(tmp_path):
    hp = tuning.search_space(["darts", "figs"], budgets=[0.5])
    tuner = tuning.SweepTuner("grid", hp, directory=str(tmp_path), project_name="sweep",
                              overwrite=True, settings=SETTINGS)
    tuner.search(verbose=0)
    project = str(tmp_path / "sweep")
    records = tuning.load_results(project)
    assert [r["method"] for r in records] == ["darts", "figs"]

    path = report.report(project)
    with open(path) as f:
        text = f.read()
    rows = [line for line in text.splitlines() if line.startswith("| 0")]
    assert len(rows) == len(records)  # one row per trial
    for row, r in zip(rows, records):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[:3] == [r["trial_id"], r["method"], "0.5"]
        assert cells[4] == ("default" if r["method"] == "darts" else "-")  # figs: no temperature
        assert cells[7] == f"{r['accuracy']:.3f}" and cells[14].endswith("TFLite")
        # asked: the absolute budget asked for; got: the derived model's exact cost
        metric, asked, got = report.budget_asked_got(r)
        history = r["history"]
        assert metric == r["metric"] and asked == history[f"budget_requested_{metric}"][-1]
        assert got == (r["params"] if metric == "params"
                       else r["float_macs"] + r["binary_macs"])
        assert cells[5] == report._si(asked) and cells[6].startswith(
            f"{report._si(got)} = {got / asked:.0%}")
        # the cost term searched for the asked budget, or for the closest achievable one
        searched = report.budget_searched(r)
        assert (searched or asked) == history[f"budget_{metric}"][-1]
        if abs(got / asked - 1) > 0.05:
            assert cells[6].endswith("(closest achievable)" if searched else "(missed)")
        assert cells[8] == "-"  # no random baseline asked for
        if r["method"] == "darts":  # 2 edges, both still near uniform after 4 steps
            assert cells[9].startswith(f"{r['decided']}/2, p ")
    assert "## Decision, budget and random baseline per trial" in text
    assert f"*{report.PARETO_CAPTION}*" in text
    assert text.count(f"*{report.ARCHITECTURE_CAPTION}*") == len(records)
    pngs = ["pareto.png"] + [f"architecture_{r['trial_id']}.png" for r in records]
    for name in pngs:
        assert f"]({name})" in text
        pixels = image.imread(os.path.join(project, name))
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.std() > 0  # drawn
