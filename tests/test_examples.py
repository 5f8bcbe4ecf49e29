"""Every example ends with the same run summary (``searchlayers.summary``): run with
its smallest flags, it prints the block last and writes summary.json with
``summary.KEYS``, and every file the block lists exists.

The examples run in this process (``examples.common.run_example``: each example
owns its flags, so they import side by side), except figs_search, which runs as
a user would (``python -m``, through ``absl.app.run``) and also checks that such
a run prints no TensorFlow / absl notice. The sweep has its own test (in this
process too; tests/test_multiworker.py runs it as chief and worker processes).
"""

import importlib
import json
import os
import re
import subprocess
import sys

import pytest

from searchlayers import summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_USE_LEGACY_KERAS="1", MPLBACKEND="Agg")
ENV.pop("TF_CPP_MIN_LOG_LEVEL", None)
SEARCH = ["--epochs=1", "--steps_per_epoch=2", "--retrain_epochs=1"]
SMALLEST = {  # example -> (method in its summary, its smallest flags)
    "quickstart": ("quickstart", ["--epochs=1", "--steps_per_epoch=2"]),
    "darts_search": ("darts", SEARCH + ["--channels=4", "--cells=1", "--steps=1"]),
    "bnas_search": ("bnas", SEARCH + ["--channels=4", "--cells=1", "--steps=1"]),
    "bars_search": ("bars", SEARCH + ["--warmup=0", "--channels=4", "--stages=1", "--cells=1",
                                      "--steps=1", "--k=2"]),
    "entrannas_search": ("entrannas", SEARCH + ["--channels=4", "--cells=1", "--steps=1",
                                                "--lambdas="]),
    "bnnas_search": ("bnnas", SEARCH + ["--depth=1", "--generations=1"]),
}


def check_summary(out, folder, method):
    """summary.json of the run in ``folder`` has every key, the printed ``out``
    ends with its block, and the files it lists exist; returns the summary."""
    with open(os.path.join(folder, "summary.json")) as f:
        s = json.load(f)
    assert tuple(s) == summary.KEYS and s["method"] == method
    assert out.rstrip().endswith(summary.format_table(s)), out[-3000:]
    assert os.path.join(folder, "summary.json") in s["files"]
    for path in s["files"] + [e["path"] for e in s["exports"]]:
        assert os.path.isfile(path) and path.startswith(str(folder)), path
    for e in s["exports"]:
        assert e["bytes"] == os.path.getsize(e["path"]) > 0
    assert s["accuracy"] and all(0 <= a <= 1 for a in s["accuracy"].values())
    assert "derived" in s["cost"] or method == "quickstart"
    assert s["seconds"] > 0 and s["architecture"]
    return s


def test_examples_import_side_by_side():
    # each example owns its flags: same names, different meanings, one process
    from absl import flags

    names = [*SMALLEST, "figs_search"]
    modules = {n: importlib.import_module(f"examples.{n}") for n in names}
    assert all(m.FLAGS is not flags.FLAGS for m in modules.values())
    outs = {m.FLAGS["out"].default for m in modules.values()}
    assert len(outs) == len(names)  # each writes to its own folder by default
    modes = [modules[n].FLAGS["mode"].parser.enum_values for n in ("bars_search", "figs_search")]
    assert modes == [["gumbel", "gumbel_hard", "softmax"], ["target", "additive"]]


# two steps of search are undecided, and the examples say so
@pytest.mark.filterwarnings("ignore::searchlayers.decision.UndecidedSearchWarning")
@pytest.mark.parametrize("name", sorted(SMALLEST))
def test_example_ends_with_the_run_summary(name, tmp_path, capsys):
    from examples import common
    from searchlayers._keras import keras

    module = importlib.import_module(f"examples.{name}")
    method, argv = SMALLEST[name]
    assert {"out", "seed"} <= set(module.FLAGS)  # every example takes --seed and --out
    try:
        assert common.run_example(module, [*argv, f"--out={tmp_path}", "--seed=1"]) is None
    finally:
        keras.backend.clear_session()
    s = check_summary(capsys.readouterr().out, tmp_path, method)
    assert s["details"]["seed"] == 1
    if name == "bnas_search":  # the diversity term can take the loss below zero
        assert any("loss can be negative" in note for note in s["notes"])
    if name == "bnnas_search":
        assert str(tmp_path / "bn_rank_similarity.png") in s["files"]
    if name == "bars_search":
        assert any(p.endswith(".png") for p in s["files"])  # ArchitectureLogger's plots


def _run(*args):
    done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=ENV, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    return done.stdout


def test_figs_search_summary(tmp_path):
    out = _run("examples.figs_search", "--search_epochs=1", "--steps_per_epoch=2",
               "--retrain_epochs=1", f"--out={tmp_path}")
    s = check_summary(out, tmp_path, "figs")
    assert s["cost"]["derived"]["kind"] == "exact"
    b = s["budget"]
    assert b["metric"] == "params" and b["got"] == s["cost"]["derived"]["params"]
    assert b["asked"] == 0.5 * s["cost"]["supernet"]["params"]  # --target 0.5 of the network
    assert b["on_budget"] == (abs(b["got"] / b["asked"] - 1) <= 0.05)
    assert s["exports"][0]["path"].endswith("resnet_figs.tflite")
    assert s["exports"][0]["max_abs_diff"] < 1e-4
    assert "budget        asked" in out
    share = s["decision"]["decided_share"]  # mask channels at P <= 0.01 or >= 0.99
    assert 0 <= share <= 1 and f"Mask channels at 0 / 1 (P <= 0.01 or >= 0.99): {share:.0%}" in out
    # quiet by default under absl.app.run too: no TensorFlow banner, converter or
    # absl INFO line (absl reports INFO after parsing flags unless -v is given)
    assert not re.search(r"^([IWE]\d{4} |INFO:|WARNING: All log)", out, re.M), out[:2000]


def test_sweep_prints_trial_counter_and_writes_summary(tmp_path, capsys):
    import tensorflow as tf

    from examples import common, sweep

    options = {"network": {"stages": [[4, 1, 1]], "stem": 4}}
    level = tf.get_logger().level
    common.run_example(sweep, [f"--out={tmp_path}", "--methods=figs", "--budgets=0.5,0.25",
                               "--epochs=1", "--steps_per_epoch=2", "--retrain_epochs=0",
                               "--batch_size=32", f"--options={json.dumps(options)}"])
    assert tf.get_logger().level == level  # run_example gives the quieted logger's level back
    out = capsys.readouterr().out
    assert "[trial 1/2] method figs budget 0.5" in out
    assert "[trial 2/2] method figs budget 0.25" in out and "[trial 2/2] done in" in out
    project = tmp_path / "sweep"
    with open(project / "summary.json") as f:
        s = json.load(f)
    assert tuple(s) == summary.KEYS and s["method"] == "sweep" and len(s["accuracy"]) == 2
    assert str(project / "report.md") in s["files"]
    assert sum(note.startswith("trial ") and "budget asked" in note for note in s["notes"]) == 2
