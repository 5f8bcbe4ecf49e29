import math
import warnings

import numpy as np
import pytest

import searchlayers as sl
from conftest import tiny_supernet
from searchlayers import decision

K = sl.keras


def _entropy(p):
    return -sum(q * math.log(q) for q in p if q > 0) / math.log(len(p))


def test_metrics_by_hand_on_fixed_distributions():
    rows = [[0.25] * 4, [1.0, 0.0, 0.0, 0.0], [0.7, 0.1, 0.1, 0.1]]
    h, top = decision.distribution_metrics(rows)
    np.testing.assert_allclose(h, [1.0, 0.0, _entropy(rows[2])], atol=1e-12)
    np.testing.assert_allclose(top, [0.25, 1.0, 0.7])
    assert _entropy(rows[2]) == pytest.approx(0.678390, abs=1e-6)  # 0.940448 / ln 4


def _mixed_op(logits):
    op = sl.MixedOp(["skip_connect", "none", "max_pool_3x3"], name="e")
    op(np.ones([1, 4, 4, 2], np.float32))
    op.arch("logits").assign(logits)
    return op


def test_layer_decision_categorical():
    flat = decision.layer_decision(_mixed_op([0.0, 0.0, 0.0]))
    assert flat["entropy"] == pytest.approx(1.0)
    assert flat["max_prob"] == pytest.approx(1 / 3)
    assert not flat["decided"] and flat["flips"] is None
    p = np.exp([2.0, 0.0, 0.0]) / np.exp([2.0, 0.0, 0.0]).sum()  # 0.787, 0.106, 0.106
    sharp = decision.layer_decision(_mixed_op([2.0, 0.0, 0.0]))
    assert sharp["max_prob"] == pytest.approx(p[0], rel=1e-5)
    assert sharp["entropy"] == pytest.approx(_entropy(p), rel=1e-5)
    assert sharp["decided"] and sharp["kind"] == "categorical" and sharp["choices"] == 3
    assert not decision.layer_decision(_mixed_op([2.0, 0.0, 0.0]), prob=0.8)["decided"]


def test_figs_masks_are_decided_only_when_every_channel_is_near_0_or_1():
    mask = sl.FiGSMask(name="m")
    mask(np.ones([1, 4], np.float32))
    mask.arch("logits").assign([5.0, -5.0, 4.7, -6.0])
    d = decision.layer_decision(mask)
    p = 1 / (1 + np.exp(-np.array([5.0, 5.0, 4.7, 6.0])))  # max(p, 1 - p) per channel
    assert d["kind"] == "bernoulli" and d["distributions"] == 4
    assert d["max_prob"] == pytest.approx(p.mean(), rel=1e-5)
    assert d["entropy"] == pytest.approx(np.mean([_entropy([q, 1 - q]) for q in p]), rel=1e-4)
    assert d["decided"] and d["decided_share"] == 1.0
    # 0 / 1 means P <= 0.01 or >= 0.99: |logit| >= log 99 = 4.595
    mask.arch("logits").assign([5.0, -5.0, 4.5, -6.0])  # p = 0.989: not yet
    d = decision.layer_decision(mask)
    assert not d["decided"] and d["decided_share"] == 0.75
    mask.arch("logits").assign([5.0, -5.0, 0.5, -4.5])  # p = 0.62 and 0.011
    assert decision.layer_decision(mask)["decided_share"] == 0.5


def test_summary_share_weighs_groups_by_their_distributions():
    wide, narrow = sl.FiGSMask(name="wide"), sl.FiGSMask(name="narrow")
    model = K.Sequential([K.Input((6,)), wide, K.layers.Dense(2), narrow])
    wide.arch("logits").assign([6.0, -6.0, 6.0, 6.0, -6.0, 0.0])  # 5 of 6 at 0 / 1
    narrow.arch("logits").assign([0.0, 6.0])  # 1 of 2
    s = decision.summary(model)
    assert (s["decided"], s["undecided"]) == (0, 2)
    assert s["decided_share"] == pytest.approx(6 / 8)  # channels, not groups: (5 + 1) / 8
    assert "75% of the distributions" in decision.format_summary(s)


def test_shared_keys_count_once():
    model = tiny_supernet()
    assert sorted(decision.model_decision(model)) == ["edge_c", "n"]
    s = decision.summary(model)
    assert s["decided"] + s["undecided"] == 2


class _Flip(K.callbacks.Callback):
    """Makes choice 0, then choice 1, then 0 ... the sharp argmax of every group."""

    def on_train_batch_begin(self, batch, logs=None):
        for layer in decision._groups(self.model).values():
            v = layer.arch("logits")
            v.assign(np.eye(v.shape[-1])[batch % 2] * 40.0 - 20.0)


def _search(model):
    search = sl.SearchModel(model, bilevel=False, arch_optimizer=K.optimizers.Adam(0.0))
    search.compile(K.optimizers.SGD(0.0), K.losses.SparseCategoricalCrossentropy(from_logits=True))
    return search


def _fit(model, callbacks, epochs=1):
    search = _search(model)
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 8, 8, 1), dtype=np.float32), rng.integers(0, 10, 32)
    search.fit(x, y, batch_size=8, epochs=epochs, verbose=0, callbacks=callbacks)
    return search


def test_undecided_warning_fires_on_a_flat_search_and_not_on_a_decided_one(capsys):
    tracker = decision.DecisionTracker(verbose=1)
    with pytest.warns(decision.UndecidedSearchWarning, match="architecture learning rate"):
        _fit(tiny_supernet(), [tracker])
    assert tracker.result["undecided"] == 2 and tracker.steps == 4
    assert "0 of 2 groups decided" in capsys.readouterr().out

    model = tiny_supernet()
    for layer in decision._groups(model).values():
        v = layer.arch("logits")
        v.assign(np.eye(v.shape[-1])[1] * 10.0)
    tracker = decision.DecisionTracker()
    with warnings.catch_warnings():
        warnings.simplefilter("error", decision.UndecidedSearchWarning)
        _fit(model, [tracker])
    assert tracker.result["decided"] == 2
    assert all(d["flips"] == 0.0 for d in tracker.result["layers"].values())


def test_a_sharp_but_flipping_argmax_is_undecided():
    tracker = decision.DecisionTracker(warn=False)
    _fit(tiny_supernet(), [_Flip(), tracker])
    for d in tracker.result["layers"].values():
        assert d["max_prob"] > 0.99 and d["flips"] >= 0.75 and not d["decided"]


class _FlipInFirstEpoch(_Flip):
    """Flips in epoch 0 only, then holds choice 1."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        super().on_train_batch_begin(batch if self.epoch == 0 else 1, logs)


@pytest.mark.parametrize("same_model", [False, True])
def test_a_resumed_search_keeps_its_decision_history(tmp_path, same_model):
    """Stopped after 2 of 4 epochs and resumed from ``BackupAndRestore`` (in a
    new model, as after a restart, or in the same one), the tracker reports
    what the uninterrupted search's does: 16 steps, and the first epoch's flips
    still in the window (a fresh history: 8 steps, no flips)."""
    from conftest import StopAt

    def fit(search, tracker, extra, backup=None):
        backups = [K.callbacks.BackupAndRestore(str(backup))] if backup else []
        search.fit(np.zeros((32, 8, 8, 1), np.float32), np.zeros(32), batch_size=8, epochs=4,
                   verbose=0, callbacks=[*backups, _FlipInFirstEpoch(), tracker, *extra])
        return tracker

    uninterrupted = fit(_search(tiny_supernet()), decision.DecisionTracker(warn=False), [])
    assert uninterrupted.steps == 16
    # epoch 0's flips (3, or 4 if the initial pick was not choice 0), none after
    assert all(d["flips"] >= 3 / 16 for d in uninterrupted.result["layers"].values())
    search, tracker = _search(tiny_supernet()), decision.DecisionTracker(warn=False)
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(search, tracker, [StopAt(2)], backup=tmp_path)
    if not same_model:
        search, tracker = _search(tiny_supernet()), decision.DecisionTracker(warn=False)
    resumed = fit(search, tracker, [], backup=tmp_path)
    assert resumed.steps == 16 and resumed.result == uninterrupted.result


def test_search_model_fit_adds_a_tracker_by_default():
    with pytest.warns(decision.UndecidedSearchWarning):
        _fit(tiny_supernet(), [])


def test_tracker_config_and_bad_arguments():
    tracker = decision.DecisionTracker(window=7, every=2, verbose=0, warn=False)
    assert decision.DecisionTracker.from_config(tracker.get_config()).get_config() == \
        tracker.get_config()
    with pytest.raises(ValueError, match="DecisionTracker: window must be an integer >= 1"):
        decision.DecisionTracker(window=0)


def test_architecture_logger_writes_the_decision_metrics(tmp_path):
    import csv

    logger = sl.callbacks.ArchitectureLogger(tmp_path, tensorboard=False)
    search = _fit(tiny_supernet(), [logger, decision.DecisionTracker(warn=False)], epochs=2)
    with open(tmp_path / "decision.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["epoch"], r["key"]) for r in rows] == [
        ("0", "n"), ("0", "edge_c"), ("1", "n"), ("1", "edge_c")]
    now = decision.model_decision(search)
    for r in rows[2:]:
        assert float(r["max_prob"]) == pytest.approx(now[r["key"]]["max_prob"], rel=1e-5)
        assert float(r["entropy"]) == pytest.approx(now[r["key"]]["entropy"], rel=1e-5)
        assert r["flips"] == "0" and r["decided"] == "0"
    assert (tmp_path / "architecture.png").exists()
