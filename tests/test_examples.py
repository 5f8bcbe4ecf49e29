"""Examples end with the same run summary: figs_search and the sweep, run as a user
would (``python -m examples.<name>`` with their smallest flags), write summary.json
with ``searchlayers.summary.KEYS``; the sweep prints its trial counter.

Only these two run here (about 10-25 s of CPU each); the other examples (DARTS,
BNAS, BARS, EnTranNAS, BN-NAS) call the same ``examples.common.finish`` and take
one to several minutes even with their smallest flags.
"""

import json
import os
import re
import subprocess
import sys

from searchlayers import summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_USE_LEGACY_KERAS="1", MPLBACKEND="Agg")
ENV.pop("TF_CPP_MIN_LOG_LEVEL", None)


def _run(*args):
    done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=ENV, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    return done.stdout


def test_figs_search_summary(tmp_path):
    out = _run("examples.figs_search", "--search_epochs=1", "--retrain_epochs=0",
               f"--out={tmp_path}")
    with open(tmp_path / "summary.json") as f:
        s = json.load(f)
    assert tuple(s) == summary.KEYS
    assert s["method"] == "figs" and s["cost"]["derived"]["kind"] == "exact"
    b = s["budget"]
    assert b["metric"] == "params" and b["got"] == s["cost"]["derived"]["params"]
    assert b["asked"] == 0.5 * s["cost"]["supernet"]["params"]  # --target 0.5 of the network
    assert b["on_budget"] == (abs(b["got"] / b["asked"] - 1) <= 0.05)
    assert s["exports"][0]["path"].endswith("resnet_figs.tflite") and s["exports"][0]["bytes"] > 0
    assert s["exports"][0]["max_abs_diff"] < 1e-4
    assert str(tmp_path / "summary.json") in s["files"]
    assert "==== Run summary: figs ====" in out and "budget        asked" in out
    # quiet by default under absl.app.run too: no TensorFlow banner, converter or
    # absl INFO line (absl reports INFO after parsing flags unless -v is given)
    assert not re.search(r"^([IWE]\d{4} |INFO:|WARNING: All log)", out, re.M), out[:2000]


def test_sweep_prints_trial_counter_and_writes_summary(tmp_path):
    options = {"network": {"stages": [[4, 1, 1]], "stem": 4}}
    out = _run("examples.sweep", f"--out={tmp_path}", "--methods=figs", "--budgets=0.5,0.25",
               "--epochs=1", "--steps_per_epoch=2", "--retrain_epochs=0", "--batch_size=32",
               f"--options={json.dumps(options)}")
    assert "[trial 1/2] method figs budget 0.5" in out
    assert "[trial 2/2] method figs budget 0.25" in out and "[trial 2/2] done in" in out
    project = tmp_path / "sweep"
    with open(project / "summary.json") as f:
        s = json.load(f)
    assert tuple(s) == summary.KEYS and s["method"] == "sweep" and len(s["accuracy"]) == 2
    assert str(project / "report.md") in s["files"]
    assert sum(note.startswith("trial ") and "budget asked" in note for note in s["notes"]) == 2
