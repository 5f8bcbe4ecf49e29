"""Multi-worker search across processes: ``MultiWorkerMirroredStrategy`` on
loopback, started by ``searchlayers.launch``.

Reference: the same searches in one process without a strategy, on the same
global batches (``tests/multiworker_worker.py``: DARTS, FiGS, BARS and a
BatchNorm-only single-path supernet, synchronized BatchNorm). The workers must
agree bit for bit after every epoch (arch variables, temperatures, sample
steps, probabilities, BN-NAS scores, a digest of every weight), and match the
single process to 1e-5. In the same launch (one launch saves minutes on two
cores) worker 1 is killed in the middle of DARTS' second epoch: the launcher
restarts both workers and the search resumes from ``BackupAndRestore`` to the
states of the uninterrupted single-process run. Every process has a timeout;
the launcher kills process groups, so the suite cannot hang.
"""

import io
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from searchlayers import launch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "multiworker_worker.py")
MODELS = ("darts", "figs", "bars", "bnnas")
TIMEOUT = 420


def _env():
    return dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
                MPLBACKEND="Agg", PYTHONPATH=ROOT)


def _states(out):
    """``{task: {model: [state after epoch e, ...]}}`` written under ``out``."""
    states = {}
    for name in sorted(os.listdir(out)):
        if name.startswith("state_") and name.endswith(".json"):
            with open(os.path.join(out, name)) as f:
                states[name[len("state_"):-len(".json")]] = json.load(f)
    return states


def _flat(state):
    """Every number of one epoch's state, by name."""
    out = {}
    for part in ("arch", "temperature", "sample_step", "probabilities", "bn_scores"):
        for key, value in state.get(part, {}).items():
            out[f"{part}/{key}"] = np.asarray(value, dtype=np.float64)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One 2-worker launch of the four searches, worker 1 killed in epoch 1 of
    DARTS and both restarted once; and, at the same time, the single-process
    reference (no strategy) on the same global batches."""
    root = tmp_path_factory.mktemp("multiworker")
    multi, single = root / "multi", root / "single"
    multi.mkdir()
    single.mkdir()
    reference = subprocess.Popen([sys.executable, WORKER, f"--out={single}"], env=_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 start_new_session=True)
    try:
        log = io.StringIO()
        status = launch.launch([sys.executable, WORKER, f"--out={multi}", "--kill_epoch=1"],
                               workers=2, timeout=TIMEOUT, restarts=1, env=_env(), output=log)
        single_log = reference.communicate(timeout=TIMEOUT)[0]
    finally:
        if reference.poll() is None:
            os.killpg(reference.pid, signal.SIGKILL)
            reference.wait()
    assert status == 0, log.getvalue()[-4000:]
    assert reference.returncode == 0, single_log[-4000:]
    return root, log.getvalue(), _states(multi), _states(single)["single"]


def test_launcher_starts_workers_with_loopback_tf_config(capsys):
    code = ("import json, os; c = json.loads(os.environ['TF_CONFIG']); "
            "print(c['task']['index'], *c['cluster']['worker'])")
    log = io.StringIO()
    assert launch.launch([sys.executable, "-c", code], workers=2, timeout=60, output=log) == 0
    lines = sorted(log.getvalue().splitlines())
    assert [line.split()[:3] for line in lines] == [["[worker", "0]", "0"],
                                                    ["[worker", "1]", "1"]]
    addresses = lines[0].split()[3:]
    assert addresses == lines[1].split()[3:] and len(set(addresses)) == 2
    assert all(a.startswith("127.0.0.1:") for a in addresses)


def test_launcher_command_line_runs_the_command_without_warnings():
    """The runbook's command: ``python -m searchlayers.launch ... -- command``
    (runpy warned when the package had imported ``launch`` already)."""
    done = subprocess.run([sys.executable, "-m", "searchlayers.launch", "--workers", "1", "--",
                           sys.executable, "-c", "print('ran')"], env=_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[worker 0] ran" in done.stdout
    assert "Warning" not in done.stdout + done.stderr, done.stderr[-2000:]


def test_launcher_kills_the_others_when_one_fails_and_times_out():
    fail = ("import json, os, sys, time; i = json.loads(os.environ['TF_CONFIG'])['task']['index']; "
            "sys.exit(3) if i == 1 else time.sleep(60)")
    log = io.StringIO()
    assert launch.launch([sys.executable, "-c", fail], workers=2, timeout=50, output=log) == 3
    assert launch.launch([sys.executable, "-c", "import time; time.sleep(60)"], workers=2,
                         timeout=1, output=log) == 124
    assert "timeout after 1 s" in log.getvalue()
    with pytest.raises(ValueError, match="launch: workers must be an integer >= 1, got 0"):
        launch.launch(["true"], workers=0)


def test_workers_agree_bit_for_bit_and_match_one_process(runs):
    _, _, states, reference = runs
    assert set(states) == {"task0", "task1"}
    for name in MODELS:
        first, second = states["task0"][name], states["task1"][name]
        assert len(first) == len(second) == len(reference[name]) == 3  # epochs
        for epoch, (a, b, ref) in enumerate(zip(first, second, reference[name])):
            assert a == b, f"{name} epoch {epoch}: workers differ"  # bit-identical
            flat, expected = _flat(a), _flat(ref)
            assert flat.keys() == expected.keys()
            if name == "bnnas":  # per-worker BN statistics: only the path stream
                expected = {k: v for k, v in expected.items()
                            if k.split("/")[0] in ("sample_step", "temperature")}
            for key, value in expected.items():
                np.testing.assert_allclose(flat[key], value, atol=1e-5, rtol=0,
                                           err_msg=f"{name} epoch {epoch} {key}")
        moved = np.concatenate([np.ravel(v) for v in first[-1]["arch"].values()] or [[0.0]])
        if name != "bnnas":  # single path: no logits
            assert np.abs(moved).max() > 0.01, name  # the searches moved the architecture
        steps = first[-1]["sample_step"]
        # noise was drawn every step (the masks of a FiGS model draw jointly: their
        # first mask counts the steps, layers.figs_draw)
        assert steps and (max if name == "figs" else min)(steps.values()) > 0, name


def test_only_the_chief_writes_logs(runs):
    root = runs[0]
    logs = root / "multi" / "logs"
    assert sorted(os.listdir(logs)) == ["task0"]  # worker 1 wrote nothing
    for name in MODELS:
        assert (logs / "task0" / name / "architecture.csv").exists()
    assert (logs / "task0" / "bnnas" / "bn_scores.json").exists()


def test_killed_worker_restarts_and_resumes_from_backup(runs):
    """Worker 1 was SIGKILLed in DARTS' epoch 1; the launcher killed worker 0
    and restarted both, which resumed DARTS from ``BackupAndRestore`` after
    epoch 0 (not from scratch: epoch 0's state is still the first attempt's)
    and reached the uninterrupted single-process states (previous test)."""
    _, log, states, reference = runs
    assert "a worker exited with status -9; restarting all workers (1 of 1)" in log
    for task in ("task0", "task1"):
        assert [s["attempt"] for s in states[task]["darts"]] == ["0", "1", "1"]
        assert [s["attempt"] for s in states[task]["figs"]] == ["1", "1", "1"]
    resumed = states["task0"]["darts"][1]
    for key, value in _flat(reference["darts"][1]).items():
        np.testing.assert_allclose(_flat(resumed)[key], value, atol=1e-5, rtol=0, err_msg=key)


def test_sweep_trials_each_searched_by_two_workers_once(tmp_path):
    """keras-tuner's gRPC Oracle on a chief; one tuner (``tuner0``) made of two
    worker processes: its chief takes each trial, the other searches it too.
    The chief's report covers every trial; each trial also trains one random
    child at its cost (drawn by both workers in step: the chief alone drawing
    it crashed a multi-worker sweep)."""
    from searchlayers import tuning

    budgets = ["0.5", "0.25"]
    tiny = {"network": {"stages": [[4, 1, 1]], "stem": 4}}
    command = [sys.executable, "-m", "examples.sweep", f"--out={tmp_path}", "--methods=figs",
               f"--budgets={','.join(budgets)}", "--epochs=1", "--steps_per_epoch=2",
               "--retrain_epochs=0", "--batch_size=32", "--random_baseline=1",
               f"--options={json.dumps(tiny)}"]
    env = dict(_env(), KERASTUNER_ORACLE_IP="127.0.0.1",
               KERASTUNER_ORACLE_PORT=str(launch.free_ports(1)[0]))
    chief = subprocess.Popen(command, cwd=ROOT, env={**env, "KERASTUNER_TUNER_ID": "chief"},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    log = io.StringIO()
    try:
        status = launch.launch([*command, "--multiworker"], workers=2, timeout=TIMEOUT,
                               env={**env, "KERASTUNER_TUNER_ID": "tuner0"}, output=log)
        chief_log = chief.communicate(timeout=120)[0]
    finally:
        if chief.poll() is None:
            os.killpg(chief.pid, 9)
            chief.wait()
    assert status == 0, log.getvalue()[-4000:]
    assert chief.returncode == 0, chief_log[-3000:]
    project = tmp_path / "sweep"
    records = tuning.load_results(str(project))
    assert sorted(r["budget"] for r in records) == [0.25, 0.5]
    assert {r["tuner_id"] for r in records} == {"tuner0"}
    assert {r["replicas"] for r in records} == {2}  # each trial searched by both workers
    assert all(len(r["random_accuracies"]) == 1 for r in records), records
    with open(project / "oracle.json") as f:
        assert sorted(json.load(f)["run_times"].values()) == [1, 1]  # each trial once
    statuses = [json.loads((project / name / "trial.json").read_text())["status"]
                for name in sorted(os.listdir(project)) if name.startswith("trial_")]
    assert statuses == ["COMPLETED", "COMPLETED"]
    assert log.getvalue().count("Worker tuner0 done") == 2  # both processes of tuner0
    assert "| figs" in chief_log and (project / "report.md").exists()


def test_one_replica_strategy_searches_bilevel():
    """A strategy of one replica (a 1-worker cluster, the benchmark's baseline)
    still merges optimizer updates across replicas, so the architecture step
    cannot sit in ``tf.cond`` (it failed with "merge_call called while defining
    a new graph"); warm-up off then on retraces instead."""
    import tensorflow as tf

    import searchlayers as sl
    from models.darts import darts_supernet

    K = sl.keras
    K.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 1)).astype("float32")
    y = np.arange(8) % 10
    pairs = tf.data.Dataset.from_tensor_slices(((x, y), (x, y))).batch(4)
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        net = darts_supernet((8, 8, 1), 10, channels=4, cells=1, steps=1, multiplier=1,
                             ops=["skip_connect", "max_pool_3x3"])
        model = sl.SearchModel(net, arch_optimizer=K.optimizers.Adam(0.1))
        model.compile(K.optimizers.SGD(0.01), K.losses.SparseCategoricalCrossentropy(True))
    before = [v.numpy().copy() for v in sl.arch_variables(net)]
    model.fit(pairs, epochs=2, verbose=0, callbacks=[sl.ArchWarmup(1)])
    after = [v.numpy() for v in sl.arch_variables(net)]
    assert any(np.abs(a - b).max() > 0.01 for a, b in zip(after, before))
