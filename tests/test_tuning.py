"""Sweeps with keras-tuner (``searchlayers.tuning``) over the examples' methods.

Tiny spaces and one-step epochs keep the trials to seconds; what is checked is
the sweep machinery: trials, resume, distributed search. Chief / worker tuning
(keras-tuner's gRPC oracle) is tested with a multi-worker tuner in
``tests/test_multiworker.py``.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from searchlayers import budget, tuning

import examples.methods as methods
from conftest import mirrored_strategy

TINY = dict(channels=2, cells=1, steps=1, network={"stages": [[4, 1, 1]], "stem": 4})
SETTINGS = dict(epochs=1, steps_per_epoch=2, retrain_epochs=0, batch_size=32, options=TINY)


def _statuses(project_dir):
    out = {}
    for name in sorted(os.listdir(project_dir)):
        path = os.path.join(project_dir, name, "trial.json")
        if os.path.exists(path):
            with open(path) as f:
                trial = json.load(f)
            out[trial["trial_id"]] = trial["status"]
    return out


def test_search_space_makes_method_specific_values_conditional():
    hp = tuning.search_space(["darts", "figs"], budgets=[0.5, 0.25], temperatures=["gdas"])
    assert [p.name for p in hp.space] == ["method", "budget", "lam", "temperature"]
    hp.values["method"] = "figs"
    assert hp.is_active("budget") and not hp.is_active("temperature")  # figs has no temperature
    with pytest.raises(ValueError, match="Unknown search method 'nope'; registered: .*darts"):
        tuning.search_space(["nope"])


def test_trial_spec_reads_values_settings_and_hyperband_epochs(tmp_path):
    hp = tuning.search_space(["darts"], budgets=[0.5], temperatures=["snas"])
    tuner = tuning.SweepTuner("grid", hp, directory=str(tmp_path), settings=SETTINGS)
    trial = tuner.oracle.create_trial("tuner0")
    trial.hyperparameters.values["tuner/epochs"] = 3  # as Hyperband sets it
    spec = tuner.trial_spec(trial)
    assert (spec.method, spec.budget, spec.temperature, spec.epochs) == ("darts", 0.5, "snas", 3)
    assert spec.options == TINY and spec.log_dir.endswith(f"trial_{trial.trial_id}")
    assert type(spec.temperature_scheduler()).__name__ == "TemperatureScheduler"


def test_bad_settings_are_clear_errors(tmp_path):
    hp = tuning.search_space(["figs"])
    with pytest.raises(ValueError, match=r"unknown settings \['epoch'\]"):
        tuning.SweepTuner("grid", hp, directory=str(tmp_path), settings={"epoch": 1})
    with pytest.raises(ValueError, match="unknown oracle 'anneal'"):
        tuning.SweepTuner("anneal", hp, directory=str(tmp_path))
    with pytest.raises(ValueError, match="unknown temperature schedule 'hot'"):
        tuning.TrialSpec("darts", temperature="hot")
    with pytest.raises(ValueError, match="budget"):
        tuning.TrialSpec("darts", budget=0.0)


def test_sweep_is_interrupted_and_resumed_without_repeating_finished_trials(tmp_path):
    calls = []

    def search(spec):  # FiGS, interrupted (like Ctrl-C) when the second trial starts
        calls.append(spec.budget)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return methods.figs(spec)

    tuning.register_method("figs_interrupted", search, methods.figs_retrain)
    hp = tuning.search_space(["figs_interrupted"], budgets=[1.0, 0.5])

    def tuner(overwrite):
        return tuning.SweepTuner("grid", hp, directory=str(tmp_path), project_name="sweep",
                                 overwrite=overwrite, settings=SETTINGS)

    with pytest.raises(KeyboardInterrupt):
        tuner(True).search()
    project = str(tmp_path / "sweep")
    assert [r["budget"] for r in tuning.load_results(project)] == [1.0]
    tuner(False).search()
    records = tuning.load_results(project)
    assert [r["budget"] for r in records] == [1.0, 0.5]
    assert calls == [1.0, 0.5, 0.5]  # the finished trial did not run again
    assert set(_statuses(project).values()) == {"COMPLETED"} and len(_statuses(project)) == 2
    for r in records:  # each trial recorded what the issue asks for
        assert 0.0 <= r["accuracy"] <= 1.0 and r["float_macs"] > 0 and r["size_bytes"] > 0
        assert r["architecture"] and r["search_seconds"] > 0
        assert os.path.exists(os.path.join(r["trial_dir"], "architecture.csv"))
        arch = sl.Architecture.load(os.path.join(r["trial_dir"], tuning.ARCHITECTURE))
        assert arch.names == r["architecture"]


@pytest.fixture(scope="module")
def strategy():
    return mirrored_strategy()


@pytest.mark.parametrize("name", ["darts", "figs", "bnas", "bars"])
def test_every_method_searches_under_mirrored_strategy(name, strategy):
    """One architecture across the replicas (see test_search_mirrored for the
    comparison with single-device search)."""
    options = {**TINY, "channels": 4, **({"stages": 1} if name == "bars" else {})}
    spec = tuning.TrialSpec(name, budget=0.5, strategy=strategy,
                            **{**SETTINGS, "options": options})
    sl.keras.backend.clear_session()
    with strategy.scope():
        searched = tuning.get_method(name).search(spec)
    arch = sl.arch_variables(searched.supernet)
    assert arch
    for var in arch:
        first, second = (v.numpy() for v in var.values)
        np.testing.assert_array_equal(first, second, err_msg=var.name)
        assert np.isfinite(first).all()
    meta = searched.child.architecture.meta
    if meta["strategy"] == "budget":  # derived to the budget (searchlayers.budget.fit)
        again = budget.fit(searched.supernet, meta["target"], meta["metric"]).architecture
    else:
        again = sl.choose(searched.supernet, meta["strategy"])
    assert searched.child.architecture.choices == again.choices
    assert np.isfinite(searched.history["loss"]).all()
