"""The EnTranNAS supernet: layout, search steps, derivation, SavedModel / H5 round trip,
MirroredStrategy, BackupAndRestore."""

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from models.entrannas import ENTRANNAS_OPS, cells, edge_counts, entrannas_supernet, genotype
from searchlayers.layers import DARTS_OPS
from searchlayers.layers.entrannas import EnTranCell
from searchlayers.layers.ops import BN_MOMENTUM
from conftest import StopAt, mirrored_strategy

K = sl.keras
OPS = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")
TINY = dict(channels=4, cells=3, steps=2, ops=OPS)
MINI = dict(channels=4, cells=2, steps=1, ops=OPS)  # one Engine + one Transit (reduce) cell
LOSS = K.losses.SparseCategoricalCrossentropy(from_logits=True)


def _data(n=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8, 8, 1)).astype("float32"), rng.integers(0, 10, n).astype("int32")


def test_layout_engine_first_and_shared_keys():
    model = entrannas_supernet((8, 8, 1), 10, channels=4, cells=4, steps=2, ops=OPS)
    assert [(c.name, c.role) for c in cells(model)] == [
        ("cell0_normal", "engine"), ("cell1_reduce", "engine"), ("cell2_reduce", "transit"),
        ("cell3_normal", "transit")]
    groups = sl.tie_arch_variables(model)
    assert sorted(groups) == ["normal", "reduce"]
    assert len(sl.arch_variables(model)) == 2
    assert model.output_shape == (None, 10)
    roles = [c.role for c in cells(entrannas_supernet(engine="all", **TINY))]
    assert roles == ["engine"] * 3
    with pytest.raises(ValueError, match="engine"):
        entrannas_supernet(engine="middle", **TINY)


def test_default_space_is_the_papers_seven_ops():
    """Sec. 4.2: "The standard space has 7 operations": the DARTS ops without none."""
    assert len(ENTRANNAS_OPS) == 7 and "none" not in ENTRANNAS_OPS
    assert set(ENTRANNAS_OPS) == set(DARTS_OPS) - {"none"}
    model = entrannas_supernet(channels=4, cells=3, steps=2)
    assert all(c.candidates == list(ENTRANNAS_OPS) for c in cells(model))


def test_every_batchnorm_uses_pytorch_momentum():
    """Stem, preprocessing, FactorizedReduce, bottleneck and op BatchNorms use 0.9
    (PyTorch's 0.1, see tests/models/test_darts_bn.py), and the child keeps it."""
    model = entrannas_supernet(channels=4, cells=3, steps=2, bottleneck=True, ops=OPS)

    def momenta(m):
        return {bn.momentum for bn in m._flatten_layers(include_self=False, recursive=True)
                if isinstance(bn, K.layers.BatchNormalization)}

    assert BN_MOMENTUM == 0.9 and momenta(model) == {0.9}
    assert momenta(sl.derive(model)) == {0.9}


def _fixed_parity(model, x, arch):
    derived = sl.derive(model, architecture=arch)
    sl.apply_architecture(model, arch)
    try:
        expected = model(x, training=False).numpy()
    finally:
        sl.apply_architecture(model, None)
    np.testing.assert_allclose(derived(x, training=False).numpy(), expected, atol=1e-4)
    assert not any(isinstance(layer, sl.SearchLayer)
                   for layer in derived._flatten_layers(include_self=False, recursive=True))
    assert derived.count_params() < model.count_params()


def test_bilevel_dst_search_steps_and_derive():
    model = entrannas_supernet(dst=True, bottleneck=True, dst_lambda=0.1, **TINY)
    x, y = _data()
    pairs = tf.data.Dataset.from_tensors(((x, y), (x, y))).repeat(3)
    search = sl.SearchModel(model, bilevel=True, arch_optimizer=K.optimizers.Adam(0.05))
    search.compile(K.optimizers.SGD(0.05), K.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [v.numpy().copy() for v in sl.arch_variables(model)]
    history = search.fit(pairs, epochs=2, verbose=0,
                         callbacks=[sl.TemperatureScheduler.entrannas()])
    assert np.isfinite(history.history["loss"]).all()
    after = sl.arch_variables(model)
    assert len(after) == 4  # logits + betas, per kind
    assert all(np.abs(a.numpy() - b).max() > 1e-4 for a, b in zip(after, before))
    np.testing.assert_allclose(float(cells(model)[2].temperature), 5.0 * 0.923, rtol=1e-6)
    arch = sl.choose(model)
    assert arch.choices["cell1_reduce"] == arch.choices["cell2_reduce"]
    assert set(genotype(model)) == {"normal", "reduce"}
    assert all(count >= 2 for count in edge_counts(model).values())  # >= 1 per node
    _fixed_parity(model, x, arch)


def test_top2_derive_matches_fixed_supernet():
    model = entrannas_supernet(**TINY)
    rng = np.random.default_rng(5)
    for var in sl.arch_variables(model):
        var.assign(rng.normal(size=var.shape).astype("float32"))
    assert edge_counts(model) == {"normal": 4, "reduce": 4}  # top-2 per node, 2 nodes
    _fixed_parity(model, _data(4)[0], sl.choose(model))


def test_transit_cells_run_the_derived_graph_unfixed():
    """Without any fixed choice, the last (Transit) cell already computes the derived cell."""
    model = entrannas_supernet(**TINY)
    last = cells(model)[-1]
    probe = K.Model(model.input, last.input)
    x, _ = _data(4)
    inputs = [t.numpy() for t in probe(x, training=False)]
    derived = last.derivation(last.sample_choice()).make()
    np.testing.assert_allclose(derived(inputs, training=False).numpy(),
                               last(inputs, training=False).numpy(), atol=1e-5)


@pytest.mark.parametrize("fmt", ["h5", "tf"])
def test_round_trip_keeps_logits_betas_temperature(tmp_path, fmt):
    model = entrannas_supernet(dst=True, **MINI)
    x, _ = _data(4)
    rng = np.random.default_rng(3)
    for cell in cells(model):
        cell.temperature.assign(0.37)
    for var in sl.arch_variables(model):
        var.assign(rng.normal(size=var.shape).astype("float32"))
    path = str(tmp_path / ("entrannas.h5" if fmt == "h5" else "entrannas"))
    model.save(path, save_format=fmt, include_optimizer=False)
    loaded = K.models.load_model(path, compile=False)
    # A SavedModel restores a shared variable into its first owner only (Keras warns
    # "an object ... shared between different layers"); tying (which choose, derive,
    # SearchModel and the callbacks do) makes every cell use the restored one.
    sl.tie_arch_variables(loaded)
    for old, new in zip(cells(model), cells(loaded)):
        assert isinstance(new, EnTranCell) and new.get_config() == old.get_config()
        for name in ("logits", "betas"):
            np.testing.assert_array_equal(old.arch(name).numpy(), new.arch(name).numpy())
        assert float(new.temperature) == pytest.approx(0.37)
    c = {cell.name: cell for cell in cells(loaded)}
    assert c["cell0_reduce"].arch("logits") is c["cell1_reduce"].arch("logits")
    assert sl.choose(loaded).choices == sl.choose(model).choices
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)


def _search(model, arch_lr=0.05):
    search = sl.SearchModel(model, bilevel=True, arch_optimizer=K.optimizers.Adam(arch_lr))
    search.compile(K.optimizers.SGD(0.05, momentum=0.9), LOSS)
    return search


def test_mirrored_strategy_keeps_one_architecture():
    strategy = mirrored_strategy()
    x, y = _data(16, seed=1)
    pairs = tf.data.Dataset.from_tensor_slices(((x, y), (x[::-1], y[::-1]))).batch(8)
    with strategy.scope():
        model = entrannas_supernet(dst=True, dst_lambda=0.1, **MINI)
        search = _search(model)
    before = [v.numpy().copy() for v in sl.arch_variables(model)]
    search.fit(pairs, epochs=2, verbose=0, callbacks=[sl.TemperatureScheduler.entrannas()])
    for var in sl.arch_variables(model) + [c.temperature for c in cells(model)]:
        values = [v.numpy() for v in var.values]
        assert len(values) == 2
        np.testing.assert_array_equal(values[0], values[1], err_msg=var.name)
    assert any(np.abs(v.numpy() - b).max() > 1e-4 for v, b in zip(sl.arch_variables(model), before))
    transit = cells(model)[-1]

    @tf.function
    def selections():
        return strategy.run(transit.selection)

    first, second = strategy.experimental_local_results(selections())
    np.testing.assert_array_equal(first.numpy(), second.numpy())  # one sub-graph for both
    _fixed_parity(model, x[:4], sl.choose(model))


def test_backup_and_restore_resumes_search_state(tmp_path):
    """An interrupted DST search resumed from its backup ends where an
    uninterrupted one does: logits, thresholds, temperature, derived cells."""
    x, y = _data(16, seed=2)
    pairs = tf.data.Dataset.from_tensor_slices(((x, y), (x[::-1], y[::-1]))).batch(8)

    def run(extra):
        K.utils.set_random_seed(7)
        model = entrannas_supernet(dst=True, dst_lambda=0.1, **MINI)
        _search(model).fit(pairs, epochs=3, verbose=0,
                           callbacks=[sl.TemperatureScheduler.entrannas(), *extra])
        return model

    reference = run([])
    with pytest.raises(RuntimeError, match="interrupted"):
        run([K.callbacks.BackupAndRestore(str(tmp_path)), StopAt(2)])
    resumed = run([K.callbacks.BackupAndRestore(str(tmp_path))])
    for old, new in zip(cells(reference), cells(resumed)):
        for name in ("logits", "betas"):
            np.testing.assert_allclose(new.arch(name).numpy(), old.arch(name).numpy(),
                                       rtol=1e-5, atol=1e-6, err_msg=f"{old.name} {name}")
        assert float(new.temperature) == pytest.approx(5.0 * 0.923**2)
    assert sl.choose(resumed).choices == sl.choose(reference).choices
