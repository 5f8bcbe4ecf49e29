import copy
import csv
import glob
import math
import os

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from conftest import StopAt, mirrored_strategy, tiny_supernet
from searchlayers import cost, regularizers as reg
from searchlayers.callbacks import (
    ArchitectureLogger,
    ArchWarmup,
    EntropyRegularizer,
    FLOPsRegularizer,
    TemperatureScheduler,
)

K = sl.keras


def _compiled(model, lr=0.0):
    model.compile(optimizer=K.optimizers.SGD(lr),
                  loss=K.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _search(model, lr=0.0, arch_lr=0.0):
    search = sl.SearchModel(model, bilevel=False, arch_optimizer=K.optimizers.Adam(arch_lr))
    return _compiled(search, lr)


class Record(K.callbacks.Callback):
    """Calls ``fn(self.model)`` at each epoch end; keeps the results."""

    def __init__(self, fn):
        super().__init__()
        self.fn, self.values = fn, []

    def on_epoch_end(self, epoch, logs=None):
        self.values.append(self.fn(self.model))


# -- schedule values -------------------------------------------------------------------

def test_temperature_schedule_values():
    ent = TemperatureScheduler()
    assert [ent.value(t) for t in range(3)] == pytest.approx([5.0, 5.0 * 0.923, 5.0 * 0.923**2])
    gdas = TemperatureScheduler.gdas(epochs=5)
    assert [gdas.value(t) for t in range(6)] == pytest.approx(
        [10.0, 7.525, 5.05, 2.575, 0.1, 0.1])
    cos = TemperatureScheduler("cosine", start=1.0, end=0.2, total=4)
    expected = [0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(5)]
    assert [cos.value(t) for t in range(6)] == pytest.approx(expected + [0.2])
    snas = TemperatureScheduler("exponential", start=1.0, rate=0.5, floor=0.03)
    assert [snas.value(t) for t in (0, 1, 5, 6, 100)] == pytest.approx(
        [1.0, 0.5, 0.03125, 0.03, 0.03])


def test_entropy_schedule_values():
    bars = EntropyRegularizer.bars(epochs=5, start=-0.02, end=0.02)
    assert [bars.value(t) for t in range(6)] == pytest.approx(
        [-0.02, -0.01, 0.0, 0.01, 0.02, 0.02])
    bnas = EntropyRegularizer.bnas()
    assert [bnas.value(t) for t in range(50)] == pytest.approx(
        [-1.0 * math.exp(-t / 7.7) for t in range(50)])
    assert bnas.reduction == "mean" and EntropyRegularizer().value(9) == 0.01
    assert float(bnas.coefficient) == -1.0


def test_warmup_schedule_values():
    assert [ArchWarmup(2).enabled(e) for e in range(4)] == [False, False, True, True]


# -- bad input -------------------------------------------------------------------------

@pytest.mark.parametrize("make, pattern", [
    (lambda: TemperatureScheduler(start=0.0),
     r"TemperatureScheduler start: temperature must be a finite number >= 1e-06, got 0.0"),
    (lambda: TemperatureScheduler("linear", start=1, end=-1, total=3),
     r"TemperatureScheduler end: temperature must be a finite number >= 1e-06, got -1"),
    (lambda: TemperatureScheduler(floor=0),
     r"TemperatureScheduler floor: temperature must be a finite number >= 1e-06, got 0"),
    (lambda: TemperatureScheduler("step"), r"TemperatureScheduler: unknown schedule 'step'; "
                                           r"allowed: 'constant', 'exponential'"),
    (lambda: TemperatureScheduler(rate=-0.5), r"TemperatureScheduler: rate .*got -0.5"),
    (lambda: TemperatureScheduler("linear", end=0.1), r"'linear' needs `end` and `total`"),
    (lambda: TemperatureScheduler(per="batch"), r"unknown per 'batch'; allowed: 'epoch'"),
    (lambda: EntropyRegularizer("cos"), r"EntropyRegularizer: unknown schedule 'cos'"),
    (lambda: EntropyRegularizer(reduction="max"), r"EntropyRegularizer: unknown reduction"),
    (lambda: EntropyRegularizer.bnas(tau=0), r"tau must be a finite number > 0, got 0"),
    (lambda: FLOPsRegularizer(metric="latency"),
     r"FLOPsRegularizer: unknown cost metric 'latency'; allowed: .*flops"),
    (lambda: FLOPsRegularizer(budget=0, mode="multiplicative"),
     r"FLOPsRegularizer\(mode='multiplicative'\): budget .*> 0, got 0"),
    (lambda: FLOPsRegularizer(mode="multiplicative"), r"budget .*> 0, got None"),
    (lambda: FLOPsRegularizer(mode="power"), r"unknown mode 'power'; allowed: 'additive'"),
    (lambda: ArchWarmup(-1), r"ArchWarmup: epochs must be an integer >= 0, got -1"),
])
def test_bad_arguments_name_the_callback_and_the_value(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


def test_bad_models(data):
    x, y = data
    plain = _compiled(tiny_supernet())
    with pytest.raises(TypeError, match=r"FLOPsRegularizer\(mode='multiplicative'\).*"
                                        r"needs a searchlayers.SearchModel.*Wrap it"):
        plain.fit(x, y, epochs=1, verbose=0,
                  callbacks=[FLOPsRegularizer(budget=1e5, mode="multiplicative")])
    with pytest.raises(TypeError, match="ArchWarmup: model 'tiny_softmax'.*arch_enabled"):
        plain.fit(x, y, epochs=1, verbose=0, callbacks=[ArchWarmup(1)])
    with pytest.raises(ValueError, match="no search layer of model 'tiny_softmax' matches"):
        plain.fit(x, y, epochs=1, verbose=0, callbacks=[TemperatureScheduler(keys=["nope"])])
    dense = _compiled(K.Sequential([K.Input((8, 8, 1)), K.layers.Flatten(),
                                    K.layers.Dense(10)], name="dense_net"))
    with pytest.raises(ValueError, match="EntropyRegularizer: model 'dense_net' has no search"):
        dense.fit(x, y, epochs=1, verbose=0, callbacks=[EntropyRegularizer()])


# -- behaviour in fit --------------------------------------------------------------------

def test_temperature_is_assigned_without_retracing(data):
    x, y = data
    model = _compiled(tiny_supernet(), lr=0.01)
    sched = TemperatureScheduler()
    seen = Record(lambda m: [float(l.temperature) for l in sl.layers.base.search_layers(m)])
    traces = Record(lambda m: m.train_function.experimental_get_tracing_count())
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[sched, seen, traces])
    assert seen.values == [pytest.approx([sched.value(e)] * 3) for e in range(3)]
    assert traces.values[0] == traces.values[-1]  # new temperatures, no retracing

    only_c = TemperatureScheduler("linear", start=2.0, end=1.0, total=3, per="step",
                                  keys=["edge_c"])
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[only_c])  # 4 steps/epoch
    temps = {l.name: float(l.temperature) for l in sl.layers.base.search_layers(model)}
    assert temps == pytest.approx({"edge_a": sched.value(2), "edge_b": sched.value(2),
                                   "edge_c": only_c.value(7)})


def _logits(model):
    return np.concatenate([g.arch("logits").numpy() for g in reg.arch_groups(model).values()])


@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_entropy_term_drives_the_distribution(data, sign):
    x, y = data
    model = tiny_supernet()
    for g in reg.arch_groups(model).values():
        g.arch("logits").assign(tf.random.stateless_normal(g.arch("logits").shape, [1, 2]))
    before = float(reg.entropy(model))
    search = _search(model, lr=0.0, arch_lr=0.05)
    search.fit(x, y, batch_size=16, epochs=2, verbose=0,
               callbacks=[EntropyRegularizer(start=10.0 * sign)])
    after = float(reg.entropy(model))
    assert (after - before) * sign < 0  # negative coefficient explores, positive commits


def test_entropy_and_flops_terms_enter_the_loss(data):
    x, y = data
    model = _compiled(tiny_supernet())  # lr 0: nothing moves, losses are comparable
    base = model.fit(x, y, batch_size=32, epochs=1, verbose=0).history["loss"][0]
    ent = EntropyRegularizer("linear", start=0.5, end=1.5, total=1)
    flops = FLOPsRegularizer(strength=1e-5)
    hist = model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[ent, flops]).history
    h = float(reg.entropy(model, "sum"))
    macs = float(cost.profile(model).total.metric("macs"))
    for epoch, coeff in enumerate([0.5, 1.5]):
        assert hist["loss"][epoch] == pytest.approx(base + coeff * h + 1e-5 * macs, rel=1e-4)
    assert hist["expected_macs"][-1] == pytest.approx(macs)
    assert hist["arch_entropy"][-1] == pytest.approx(h, rel=1e-5)
    # A new fit with new callbacks replaces the terms instead of stacking them.
    again = model.fit(x, y, batch_size=32, epochs=1, verbose=0,
                      callbacks=[EntropyRegularizer(start=0.5), FLOPsRegularizer(strength=0.0)])
    assert again.history["loss"][0] == pytest.approx(base + 0.5 * h, rel=1e-4)
    assert len(model.losses) == 2


def test_budgets_on_two_metrics_add_two_terms_and_one_metric_twice_is_refused(data):
    x, y = data
    model = _compiled(tiny_supernet())  # lr 0: nothing moves, losses are comparable
    base = model.fit(x, y, batch_size=32, epochs=1, verbose=0).history["loss"][0]
    on_params, on_macs = FLOPsRegularizer(metric="params", strength=1e-3), FLOPsRegularizer(
        metric="flops", strength=1e-5)
    hist = model.fit(x, y, batch_size=32, epochs=1, verbose=0,
                     callbacks=[on_params, on_macs]).history  # the first used to be replaced
    total = cost.profile(model).total
    params, macs = total.metric("params"), total.metric("macs")
    assert hist["loss"][0] == pytest.approx(base + 1e-3 * params + 1e-5 * macs, rel=1e-4)
    assert (hist["expected_params"][0], hist["expected_flops"][0]) == pytest.approx((params, macs))
    # "flops" is "macs": one term, refused before anything is traced
    with pytest.raises(ValueError, match=r"^FLOPsRegularizer: this fit already adds the loss "
                       r"term 'FLOPsRegularizer_macs' with FLOPsRegularizer, which this one "
                       r"would replace; pass one per metric\.$"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[on_macs, FLOPsRegularizer(metric="macs")])
    # a later fit may replace a term with a new callback on the same metric
    again = model.fit(x, y, batch_size=32, epochs=1, verbose=0,
                      callbacks=[FLOPsRegularizer(metric="macs", strength=0.0), on_params])
    assert again.history["loss"][0] == pytest.approx(base + 1e-3 * params, rel=1e-4)
    with pytest.raises(ValueError, match=r"^EntropyRegularizer: .* pass one \(FigsCommit"):
        model.fit(x, y, epochs=1, verbose=0,
                  callbacks=[EntropyRegularizer(), EntropyRegularizer(start=1.0)])
    assert [float(term) for term in model.losses] == [0.0] * 3  # nor the first's term


def test_flops_multiplier_under_and_over_budget(data):
    x, y = data
    search = _search(tiny_supernet())
    base = search.fit(x, y, batch_size=32, epochs=1, verbose=0).history["loss"][0]
    f = float(reg.expected_cost(search, "equivalent_ops"))
    for budget, factor in [(2 * f, 1.0), (f / 4, 4.0)]:
        cb = FLOPsRegularizer(budget=budget, metric="equivalent_ops", mode="multiplicative")
        loss = search.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[cb])
        assert float(cb.multiplier()) == pytest.approx(factor, rel=1e-5)
        assert loss.history["loss"][0] == pytest.approx(base * factor, rel=1e-4)
    assert len(search._multipliers) == 1


def test_arch_warmup_freezes_logits(data):
    x, y = data
    search = _search(tiny_supernet(), lr=0.01, arch_lr=0.05)
    logits = Record(lambda m: _logits(m.model))
    enabled = Record(lambda m: bool(m.arch_enabled.numpy()))
    start = _logits(search.model)
    search.fit(x, y, batch_size=16, epochs=3, verbose=0,
               callbacks=[ArchWarmup(2), logits, enabled])
    assert enabled.values == [False, False, True]
    np.testing.assert_array_equal(logits.values[0], start)
    np.testing.assert_array_equal(logits.values[1], start)
    assert np.abs(logits.values[2] - start).max() > 1e-3


def test_architecture_logger_writes_csv_png_and_tensorboard(data, tmp_path):
    x, y = data
    model = _compiled(tiny_supernet(), lr=0.01)
    logger = ArchitectureLogger(tmp_path)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[logger])
    with open(logger.csv_path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * (5 + 4)  # epochs x (group "n": 5 choices + edge_c: 4)
    assert {r["key"] for r in rows} == {"n", "edge_c"}
    assert logger.history[1]["edge_c"]["conv_3x3"] == pytest.approx(
        float(reg.arch_groups(model)["edge_c"].probabilities()[3]), abs=1e-6)
    assert sum(logger.history[0]["n"].values()) == pytest.approx(1.0, abs=1e-5)
    with open(logger.png_path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    events = glob.glob(os.path.join(tmp_path, "events.out.tfevents.*"))
    tags = {v.tag for e in tf.compat.v1.train.summary_iterator(events[0]) for v in e.summary.value}
    assert "architecture/edge_c/conv_3x3" in tags
    resumed = ArchitectureLogger(tmp_path, append=True)
    model.fit(x, y, batch_size=16, initial_epoch=2, epochs=3, verbose=0, callbacks=[resumed])
    assert sorted(resumed.history) == [0, 1, 2]


# -- serialization and resume -----------------------------------------------------------

@pytest.mark.parametrize("callback", [
    TemperatureScheduler("cosine", start=3.0, end=0.5, total=7, per="step", floor=0.6,
                         layers=[sl.MixedOp], keys=["n"]),
    EntropyRegularizer.bnas(lam=0.5),
    FLOPsRegularizer(budget=1e6, metric="flops", mode="multiplicative", strength=2.0, over=2),
    ArchWarmup(4),
    ArchitectureLogger("logs", append=True),
])
def test_get_config_round_trip(callback):
    config = K.utils.serialize_keras_object(callback)
    assert config["registered_name"] == f"searchlayers>{type(callback).__name__}"
    restored = K.utils.deserialize_keras_object(config)
    assert type(restored) is type(callback)
    assert restored.get_config() == callback.get_config()
    clone = type(callback).from_config(callback.get_config())
    if hasattr(callback, "value"):
        assert [clone.value(t) for t in range(9)] == [callback.value(t) for t in range(9)]


class Crash(K.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("interrupted")


def _state(model, entropy_cb):
    return [float(l.temperature) for l in sl.layers.base.search_layers(model)] + [
        float(entropy_cb.coefficient)]


def test_resume_with_backup_and_restore_continues_the_schedules(data, tmp_path):
    x, y = data

    def run(extra, backup=None):
        cbs = [TemperatureScheduler(), EntropyRegularizer.bnas()]
        if backup:
            cbs.append(K.callbacks.BackupAndRestore(str(backup)))
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=cbs + extra)
        return _state(model, cbs[1])

    model = _compiled(tiny_supernet(), lr=0.01)
    uninterrupted = run([])
    model = _compiled(tiny_supernet(), lr=0.01)
    with pytest.raises(RuntimeError, match="interrupted"):
        run([Crash()], backup=tmp_path)
    epochs = Record(lambda m: None)
    resumed = run([epochs], backup=tmp_path)  # fresh callbacks, as after a restart
    assert len(epochs.values) == 1  # only epoch 1 ran again
    assert resumed == pytest.approx(uninterrupted)
    assert uninterrupted == pytest.approx([5.0 * 0.923] * 3 + [-math.exp(-1 / 7.7)])


def _figs_net():
    """Two masked convs (``insert_masks``), the same names and weights every call."""
    K.backend.clear_session()  # FiGS noise seeds hash the mask names
    K.utils.set_random_seed(0)
    x = K.Input((8, 8, 1))
    h = x
    for _ in range(2):
        h = K.layers.Conv2D(8, 3, padding="same")(h)
        h = K.layers.ReLU()(K.layers.BatchNormalization()(h))
    y = K.layers.Dense(10)(K.layers.GlobalAveragePooling2D()(h))
    return sl.transforms.insert_masks(K.Model(x, y))


@pytest.mark.parametrize("same_model", [False, True])
def test_resume_restores_the_target_multiplier_and_the_fitted_child(tmp_path, same_model):
    """The stateful callbacks: ``FLOPsRegularizer(mode="target")``'s multiplier
    (an integral of past violations) and ``FigsCommit.to_budget``'s fitted child
    and the step it was fitted at. A search stopped and resumed from
    ``BackupAndRestore`` (listed first: the backup is read before the callbacks
    keep their state; in a new model and callbacks, as after a restart, or in
    the same ones) has that state when it goes on and ends where the
    uninterrupted one does; with fresh callbacks it did not (logits 0.1 apart).
    After training the model's checkpoints hold none of it (only what the
    attached loss terms read: the next test)."""
    from searchlayers import schedules

    rng = np.random.default_rng(1)
    x, y = rng.random((40, 8, 8, 1), dtype=np.float32), rng.integers(0, 10, 40)
    epochs, steps, stop = 8, 5, 5  # the commit refits at steps 20, 24, ...; stopped at 25

    def build():
        net = _figs_net()
        model = _compiled(sl.SearchModel(net, bilevel=False,
                                         arch_optimizer=K.optimizers.Adam(0.2)), lr=0.05)
        target = 0.4 * float(reg.expected_cost(net, "params"))
        cost_cb = FLOPsRegularizer(target, "params", mode="target", strength=0.1)
        commit = schedules.figs_commit(epochs * steps).to_budget(target, "params")
        return net, model, cost_cb, commit

    def run(built, extra, backup=None):
        net, model, cost_cb, commit = built
        backups = [K.callbacks.BackupAndRestore(str(backup))] if backup else []
        seen = {}  # the commit's state as epoch ``stop`` begins

        class Peek(K.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                if epoch == stop:
                    seen.update(refreshed=commit._refreshed.numpy(),
                                kept=[v.numpy() for _, v in commit._kept.values()])

        model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, shuffle=False,
                  callbacks=[*backups, cost_cb, commit, Peek(), *extra])
        return seen, [v.numpy() for v in sl.arch_variables(net)] + [cost_cb.strength.numpy()]

    built = build()
    seen, uninterrupted = run(built, [])
    assert seen["refreshed"] == 24 and 0 < np.mean(np.concatenate(seen["kept"])) < 1
    saved = tf.train.Checkpoint(model=built[1]).write(str(tmp_path / "after" / "ckpt"))
    kept = [n.split("/")[2] for n, _ in tf.train.list_variables(saved) if "callback_state" in n]
    assert kept == []  # a finished search leaves nothing of its callbacks in the model
    built = build()
    with pytest.raises(RuntimeError, match="interrupted"):
        run(built, [StopAt(stop)], backup=tmp_path / "backup")
    seen_resumed, resumed = run(built if same_model else build(), [], backup=tmp_path / "backup")
    assert seen_resumed["refreshed"] == seen["refreshed"]
    for a, b in zip(seen_resumed["kept"] + resumed, seen["kept"] + uninterrupted):
        np.testing.assert_array_equal(a, b)


def test_a_searched_model_saves_and_searches_again_without_the_finished_terms(data, tmp_path):
    """The cost and entropy terms read the callbacks' variables (strength,
    coefficient, the commit's fitted child). They end with their fit and are not
    exported: SavedModel failed with "captures tensor ... flops_strength", then
    (found by a user trial) a saved or later-fitted model kept the finished
    search's penalty, and a reloaded one could not search again ("variables
    which have been deleted"). The fitted cost callback deep-copies."""
    from searchlayers import schedules

    x, y = data

    def compile_(model):
        model.compile(sl.joint_optimizer(K.optimizers.legacy.SGD(0.05)),
                      K.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    net = compile_(_figs_net())
    target = 0.5 * float(reg.expected_cost(net, "params"))
    cost_cb = FLOPsRegularizer(target, "params", mode="target")
    net.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[
        cost_cb, schedules.figs_commit(8).to_budget(target, "params"),
        K.callbacks.ModelCheckpoint(str(tmp_path / "during"))])  # SavedModel, terms attached
    assert copy.deepcopy(cost_cb).get_config() == cost_cb.get_config()  # as keras-tuner does
    assert [float(term) for term in net.losses] == [0.0, 0.0]  # ended with the fit
    net.save(str(tmp_path / "after"))
    for name in ("during", "after"):
        loaded = K.models.load_model(str(tmp_path / name), compile=False)
        assert [float(term) for term in loaded.losses] == [0.0, 0.0], name
        for a, b in zip(loaded.get_weights(), net.get_weights()):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(loaded.predict(x, verbose=0), net.predict(x, verbose=0),
                                   atol=1e-6)
        again = compile_(loaded).fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[
            FLOPsRegularizer(target, "params", mode="target")])
        assert np.isfinite(again.history["loss"][0]), name


def test_a_callback_refusing_a_model_leaves_no_state_on_it(data, tmp_path):
    from searchlayers import schedules

    x, y = data
    model = _compiled(K.Sequential([K.Input((8, 8, 1)), K.layers.Flatten(), K.layers.Dense(10)]))
    commit = schedules.figs_commit(10).to_budget(100.0, "params")
    with pytest.raises(ValueError, match="has no search layers"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[commit])
    saved = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    assert not [n for n, _ in tf.train.list_variables(saved) if "callback_state" in n]


def test_callbacks_under_mirrored_strategy(data):
    x, y = data
    strategy = mirrored_strategy()
    with strategy.scope():
        model = _compiled(tiny_supernet(), lr=0.01)
    cbs = [TemperatureScheduler(), EntropyRegularizer.bnas(), FLOPsRegularizer(strength=1e-6)]
    hist = model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=cbs)
    assert np.isfinite(hist.history["loss"]).all()
    assert sl.layers.base.search_layers(model)[0].temperature.numpy() == pytest.approx(4.615)


def test_a_temperature_the_run_would_reach_too_low_is_refused_before_training(data):
    """It was refused at the epoch reaching it, after the earlier epochs trained
    (found by a user trial)."""
    x, y = data
    model = _compiled(tiny_supernet("gumbel"))
    edge = model.get_layer("edge_a")
    with pytest.raises(ValueError, match=r"TemperatureScheduler at t=2: temperature must be "
                       r"a finite number >= 1e-06, got 1e-08"):
        model.fit(x, y, epochs=3, verbose=0,
                  callbacks=[TemperatureScheduler(start=1.0, rate=1e-4)])
    assert float(edge.temperature.numpy()) == 1.0 and int(edge.sample_step.numpy()) == 0
    with pytest.raises(ValueError, match=r"TemperatureScheduler at t=7: .* got 1.0*4?e-07"):
        model.fit(x, y, batch_size=8, epochs=2, verbose=0,  # 4 steps an epoch; t=7 the last
                  callbacks=[TemperatureScheduler(start=1.0, rate=0.1, per="step")])
    assert float(edge.temperature.numpy()) == 1.0 and int(edge.sample_step.numpy()) == 0
    # (no epoch ran: the temperature was never set, no noise drawn)
