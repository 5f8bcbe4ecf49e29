"""The run summary (searchlayers.summary) on a fixed fake result: its table and JSON."""

import json
import os

import pytest

import searchlayers as sl
from searchlayers import summary
from searchlayers.architecture import Architecture


@pytest.fixture
def fake(tmp_path, capsys):
    flat = tmp_path / "child.tflite"
    flat.write_bytes(b"\0" * 2048)
    png = tmp_path / "architecture.png"
    png.write_bytes(b"png")
    decision = {"decided": 3, "undecided": 1, "groups": 4, "median_max_prob": 0.71,
                "median_entropy": 0.4, "max_flips": 0.25, "verdict": "undecided"}
    arch = Architecture({"e0": 4, "e1": 4, "e2": 0},
                        {"e0": "sep_conv_3x3", "e1": "sep_conv_3x3", "e2": "none"})
    result = summary.run_summary(
        "darts", "DARTS cell space on digits (3 cells)", out=str(tmp_path), decision=decision,
        architecture=arch,
        cost={"supernet": {"params": 1234.5, "macs": 325271.84, "kind": "expected"},
              "derived": {"params": 1000.0, "macs": 200000.0, "kind": "exact"}},
        accuracy={"test": 0.9512},
        exports=[summary.export_entry(str(flat), {"max_abs_diff": 3e-7,
                                                  "argmax_agreement": 1.0})],
        files=[str(png)],
        budget={"metric": "macs", "asked": 200000.0, "got": 212000.0},
        notes=["a note"], details={"epochs": 3}, seconds=42.4)
    return tmp_path, result


def test_json_has_every_key_and_the_figures(fake, capsys):
    folder, result = fake
    with open(folder / "summary.json") as f:
        written = json.load(f)
    assert written == result
    assert tuple(written) == summary.KEYS
    assert written["architecture"] == "3 choices: sep_conv_3x3 x2, none x1"
    assert written["budget"]["ratio"] == pytest.approx(1.06)
    assert written["budget"]["on_budget"] is False  # 6 % over: outside the 5 % tolerance
    assert written["exports"][0]["bytes"] == 2048
    assert written["files"] == [str(folder / "architecture.png"), str(folder / "summary.json")]
    assert written["cost"]["supernet"]["kind"] == "expected"
    assert written["seconds"] == 42.4


def test_printed_table(fake, capsys):
    folder, _ = fake
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "==== Run summary: darts ===="
    assert lines[1] == "searched      DARTS cell space on digits (3 cells)"
    assert lines[2] == ("decision      undecided: 3 of 4 groups decided (median largest "
                        "probability 0.71, most argmax flips 0.25)")
    assert lines[3] == "architecture  3 choices: sep_conv_3x3 x2, none x1"
    assert lines[4].split() == ["cost", "params", "macs"]
    # expected costs keep their fraction and say so; exact ones are counts
    assert lines[5].split() == ["supernet", "(expected)", "1,234.50", "325,271.84"]
    assert lines[6].split() == ["derived", "(exact)", "1,000", "200,000"]
    assert lines[7] == ("budget        asked 200,000 / got 212,000 macs = 106.0% "
                        "(MISSED, tolerance 5%)")
    assert lines[8] == "accuracy      test 0.951"
    assert lines[9] == (f"export        {folder / 'child.tflite'} (2.0 KiB, parity max |diff| "
                        "3.0e-07, argmax agreement 100.0%)")
    assert lines[10] == "time          42 s"
    assert lines[11:] == [f"wrote         {folder / 'architecture.png'}",
                          f"wrote         {folder / 'summary.json'}",
                          "note          a note"]


def test_budget_fit_and_model_inputs():
    from searchlayers.budget import Fit

    op = sl.MixedOp(["skip_connect", "none"], name="e")
    model = sl.keras.Sequential([sl.keras.Input((4, 4, 2)), op])
    op.arch("logits").assign([[5.0, 0.0]] if op.arch("logits").shape.rank == 2 else [5.0, 0.0])
    fit = Fit(None, "params", 100.0, 97.0, 150.0, 50.0, 200.0)
    s = summary.run_summary("m", "one edge", decision=model, budget=fit, echo=False,
                            cost={"supernet": summary.cost_of(model, "expected"),
                                  "derived": summary.cost_of(model, "exact")})
    # softmax([5, 0]) = 0.993: decided
    assert s["decision"]["verdict"] == "decided" and s["decision"]["groups"] == 1
    assert "layers" not in s["decision"]
    assert s["budget"]["got"] == 97.0 and s["budget"]["on_budget"] is True
    assert s["cost"]["supernet"]["kind"] == "expected" and s["cost"]["derived"]["params"] == 0
    with pytest.raises(ValueError, match=r"summary.cost_of: kind must be 'exact' or "
                                         r"'expected', got 'mean'"):
        summary.cost_of(model, "mean")


def test_channel_architecture_in_words():
    arch = Architecture({"b_mask": [0, 1], "a_mask": [0, 1, 2, 3]})
    assert summary.describe(arch) == "kept channels: a_mask 4, b_mask 2"
    assert summary.written(os.devnull + "_missing") == []


def test_single_path_supernet_has_no_decision_to_judge(capsys):
    model = sl.keras.Sequential([sl.keras.Input((4,)), sl.keras.layers.Dense(2)])
    s = summary.run_summary("bnnas", "single path", decision=model)
    assert s["decision"]["verdict"] == "no architecture distributions"
    assert s["decision"]["groups"] == 0 and s["decision"]["median_max_prob"] is None  # NaN
    assert ("decision      no architecture distributions (no learned architecture "
            "probabilities to judge)") in capsys.readouterr().out
