"""The BN indicator: op scores, vectorised subnet scores, rank stability callback."""

import json
import os

import numpy as np
import pytest

import searchlayers as sl
from searchlayers import bn_score
from conftest import mirrored_strategy

K = sl.keras
L = K.layers


@pytest.fixture(autouse=True)
def _fresh_layer_names():
    """Layers made here outside a model take auto-names; reset them afterwards so
    later tests in the same worker get the default names they expect."""
    yield
    sl.keras.backend.clear_session()


def _candidate(name, with_relu_after=False):
    layers = [L.Conv2D(4, 1, use_bias=False), L.BatchNormalization(name=f"{name}_bn1"),
              L.ReLU(), L.Conv2D(4, 1, use_bias=False), L.BatchNormalization(name=f"{name}_bn2")]
    return K.Sequential(layers + ([L.ReLU()] if with_relu_after else []), name=name)


def hand_model(skip=False):
    """Two MixedOps of hand-made candidates; last BN gammas set by hand."""
    x = K.Input((4, 4, 4))
    cands = lambda p: [_candidate(f"{p}_a"), _candidate(f"{p}_b", True)] + (
        [L.Activation("linear", name=f"{p}_id")] if skip else [])
    h = sl.MixedOp(cands("m0"), mode="uniform", name="m0")(x)
    h = sl.MixedOp(cands("m1"), mode="uniform", name="m1")(h)
    model = K.Model(x, L.Dense(2)(L.GlobalAveragePooling2D()(h)))
    gammas = {"m0_a": [1.0, -3.0, 1.0, 3.0], "m0_b": [0.5] * 4,
              "m1_a": [0.1, 0.1, 0.1, -0.1], "m1_b": [2.0, 0.0, 0.0, 0.0]}
    for layer in sl.layers.search_layers(model):
        for op in layer.ops:
            if op.name in gammas:
                op.get_layer(f"{op.name}_bn2").gamma.assign(gammas[op.name])
                op.get_layer(f"{op.name}_bn1").gamma.assign([9.0] * 4)  # not the last BN
    return model


def test_op_scores_are_mean_abs_gamma_of_the_last_bn():
    scores = bn_score.bn_scores(hand_model())
    np.testing.assert_allclose(scores["m0"], [2.0, 0.5])
    np.testing.assert_allclose(scores["m1"], [0.1, 0.5])


def test_vectorised_subnet_scores_are_sums():
    table = bn_score.score_table(hand_model())
    choices = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_allclose(table.total(choices), [2.1, 2.5, 0.6, 1.0])
    assert table.total([0, 1]) == pytest.approx(2.5)
    assert table.decode([0, 1]).names == {"m0": "m0_a", "m1": "m1_b"}


def test_candidates_without_bn_need_a_missing_score():
    model = hand_model(skip=True)
    with pytest.raises(ValueError, match="m0:m0_id.*missing="):
        bn_score.score_table(model)
    table = bn_score.score_table(model, missing=0.25)
    np.testing.assert_allclose(table.values[:, 2], [0.25, 0.25])
    assert np.isnan(bn_score.bn_scores(model)["m0"][2])


def test_model_without_mixed_ops_is_rejected():
    model = K.Sequential([K.Input((2,)), L.Dense(1)])
    with pytest.raises(ValueError, match="no search layers"):
        bn_score.bn_scores(model)


def test_ranks_and_rank_distance():
    r = bn_score.ranks({"a": [0.3, 0.9, 0.1]})
    assert r["a"].tolist() == [1, 0, 2]
    same = {"a": [0, 1, 2], "b": [1, 0]}
    assert bn_score.rank_distance(same, same) == 0.0
    assert bn_score.rank_distance(same, {"a": [2, 1, 0], "b": [0, 1]}) == pytest.approx(1.0)


def test_evaluator_tracks_ranks_stops_when_stable_and_plots(tmp_path):
    model = hand_model()
    cb = sl.BNScoreEvaluator(str(tmp_path), patience=2)
    cb.set_model(model)
    cb.on_train_begin()
    bn = model.get_layer("m1").ops[0].get_layer("m1_a_bn2")
    logs = [{} for _ in range(4)]
    for epoch, gamma in enumerate([0.1, 0.9, 0.8, 0.7]):  # m1 ranks flip once, then hold
        bn.gamma.assign([gamma] * 4)
        cb.on_epoch_end(epoch, logs[epoch])
        if epoch < 3:
            assert not model.stop_training
    assert np.isnan(logs[0]["bn_rank_distance"])
    assert [h["distance"] for h in cb.history[1:]] == [pytest.approx(0.5 ** 0.5), 0.0, 0.0]
    assert model.stop_training and cb.stopped_epoch == 3
    assert cb.history[-1]["ranks"] == {"m0": [0, 1], "m1": [0, 1]}
    sim = cb.similarity()
    assert sim.shape == (4, 4) and sim[0, 0] == 1.0 and sim[0, 1] == 0.0 and sim[1, 3] == 1.0
    cb.on_train_end()
    with open(cb.png_path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert json.load(open(cb.json_path))[-1]["scores"]["m1"] == pytest.approx([0.7, 0.5])
    again = sl.BNScoreEvaluator.from_config(cb.get_config())
    assert again.get_config() == cb.get_config()
    assert K.utils.get_registered_name(sl.BNScoreEvaluator) == "searchlayers>BNScoreEvaluator"


def test_evaluator_in_fit(data):
    from models.spos import spos_supernet

    model = spos_supernet(stages=((8, 1, 1),), stem_channels=8, head_channels=8,
                          ops=("mb_k3_e3", "mb_k5_e3"))
    sl.transforms.train_only_batchnorm(model)
    model.compile(optimizer=K.optimizers.Adam(0.05),
                  loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    cb = sl.BNScoreEvaluator()
    hist = model.fit(*data, batch_size=16, epochs=3, verbose=0, callbacks=[cb])
    assert len(cb.history) == 3 and len(hist.history["bn_rank_distance"]) == 3
    assert cb.history[-1]["scores"]["layer0"] != [1.0, 1.0]  # gammas learned


def _small_bn_only_supernet(strategy=None):
    from models.spos import spos_supernet

    def build():
        model = spos_supernet(stages=((8, 1, 1),), stem_channels=8, head_channels=8,
                              ops=("mb_k3_e3", "mb_k5_e3"))
        sl.transforms.train_only_batchnorm(model)
        model.compile(optimizer=K.optimizers.Adam(0.05),
                      loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    if strategy is None:
        return build()
    with strategy.scope():
        return build()


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(patience=0), "patience must be an integer >= 1 or None, got 0"),
    (dict(patience=1.5), "patience must be an integer >= 1 or None, got 1.5"),
    (dict(tolerance=2.0), r"tolerance must be a number in \[0, 1\], got 2.0"),
    (dict(tolerance="x"), r"tolerance must be a number in \[0, 1\], got 'x'"),
    (dict(min_epochs=-1), "min_epochs must be an integer >= 0, got -1"),
    (dict(append=True), "append=True reads the history from log_dir"),
])
def test_evaluator_bad_arguments_name_the_value(kwargs, pattern):
    with pytest.raises(ValueError, match=f"BNScoreEvaluator: {pattern}"):
        sl.BNScoreEvaluator(**kwargs)


def test_evaluator_on_a_model_without_mixed_ops_and_plot_without_path():
    cb = sl.BNScoreEvaluator()
    cb.set_model(K.Sequential([K.Input((2,)), L.Dense(1)], name="plain"))
    with pytest.raises(ValueError, match="model 'plain' has no search layers"):
        cb.on_train_begin()
    with pytest.raises(ValueError, match="give a path"):
        cb.plot()


def test_evaluator_serializes_by_registered_name(tmp_path):
    cb = sl.BNScoreEvaluator(str(tmp_path), patience=3, tolerance=0.1, min_epochs=2, append=True)
    config = K.utils.serialize_keras_object(cb)
    assert config["registered_name"] == "searchlayers>BNScoreEvaluator"
    restored = K.utils.deserialize_keras_object(config)
    assert type(restored) is sl.BNScoreEvaluator and restored.get_config() == cb.get_config()


class _Crash(K.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise RuntimeError("interrupted")


def test_evaluator_resumes_its_history_after_backup_and_restore(data, tmp_path):
    x, y = data
    model = _small_bn_only_supernet()
    backup = K.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    first = sl.BNScoreEvaluator(str(tmp_path), append=True)
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(x, y, batch_size=16, epochs=4, verbose=0, callbacks=[backup, first, _Crash()])
    assert [h["epoch"] for h in first.history] == [0, 1]
    resumed = sl.BNScoreEvaluator(str(tmp_path), append=True)  # fresh, as after a restart
    model.fit(x, y, batch_size=16, epochs=4, verbose=0,
              callbacks=[K.callbacks.BackupAndRestore(str(tmp_path / "backup")), resumed])
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2, 3]
    assert resumed.history[:2] == first.history
    assert resumed.history[2]["distance"] == pytest.approx(bn_score.rank_distance(
        first.history[1]["ranks"], resumed.history[2]["ranks"]))
    assert resumed.history[3]["scores"] == {
        k: pytest.approx(v.tolist()) for k, v in bn_score.bn_scores(model).items()}
    assert resumed.similarity().shape == (4, 4)


def test_evaluator_under_mirrored_strategy(data):
    import tensorflow as tf

    strategy = mirrored_strategy()
    model = _small_bn_only_supernet(strategy)
    cb = sl.BNScoreEvaluator()
    model.fit(*data, batch_size=16, epochs=2, verbose=0, callbacks=[cb])
    gamma = model.get_layer("layer0").ops[1].layers[-1].gamma
    assert cb.history[-1]["scores"]["layer0"][1] == pytest.approx(
        float(np.mean(np.abs(gamma.numpy()))))
    assert cb.history[-1]["scores"]["layer0"] != [1.0, 1.0]
