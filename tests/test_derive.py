import json

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from conftest import tiny_supernet
from searchlayers.derive import best_of_k

K = sl.keras
LOSS = K.losses.SparseCategoricalCrossentropy(from_logits=True)


def _set_logits(model, table):
    sl.tie_arch_variables(model)
    for name, values in table.items():
        model.get_layer(name).arch("logits").assign(values)


@pytest.mark.parametrize("mode", ["softmax", "gumbel", "gumbel_hard"])
def test_derive_parity_under_hard_choice(mode, data):
    x, _ = data
    model = tiny_supernet(mode)
    _set_logits(model, {"edge_a": [0, 0, 5.0, 0, 0], "edge_c": [0, 0, 0, 4.0]})
    child = sl.derive(model, "argmax")
    assert child.architecture.names == {
        "edge_a": "sep_conv_3x3", "edge_b": "sep_conv_3x3", "edge_c": "conv_3x3"
    }
    assert not any(isinstance(l, sl.SearchLayer) for l in child._flatten_layers())
    sl.apply_architecture(model, child.architecture)
    np.testing.assert_allclose(model.predict(x, verbose=0), child.predict(x, verbose=0), atol=1e-6)
    assert child.count_params() < model.count_params()


def test_zeroise_choice_removes_edge_and_compute(data):
    x, _ = data
    model = tiny_supernet()
    _set_logits(model, {"edge_a": [5.0, 0, 0, 0, 0], "edge_c": [0, 3.0, 0, 0]})
    child = sl.derive(model)
    assert child.architecture.names["edge_a"] == "none"
    # both shared edges chose none: the Add keeps only the stem input, so no
    # Add layer and no Zeroise remain in the derived graph
    kinds = [type(l).__name__ for l in child.layers]
    assert "Add" not in kinds and "Zeroise" not in kinds
    sl.apply_architecture(model, child.architecture)
    np.testing.assert_allclose(model.predict(x, verbose=0), child.predict(x, verbose=0), atol=1e-6)


def test_zero_feeding_a_non_add_layer_is_materialized():
    x = K.Input((4, 4, 2))
    y = sl.MixedOp(["none", "skip_connect"], name="only")(x)
    y = K.layers.Flatten()(y)
    model = K.Model(x, y)
    model.get_layer("only").arch("logits").assign([3.0, 0.0])
    child = sl.derive(model)
    np.testing.assert_array_equal(child(np.ones([2, 4, 4, 2], "f")), np.zeros([2, 32]))


def test_sequential_and_nested_models():
    inner = K.Sequential(
        [K.Input((6, 6, 3)), sl.MixedOp(["conv_3x3", "skip_connect"], name="inner_op")],
        name="inner",
    )
    x = K.Input((6, 6, 3))
    y = K.layers.GlobalAveragePooling2D()(inner(x))
    model = K.Model(x, K.layers.Dense(2)(y))
    model.get_layer("inner").get_layer("inner_op").arch("logits").assign([2.0, 0.0])
    child = sl.derive(model)
    assert isinstance(child.get_layer("inner_derived"), K.Sequential)
    data = np.random.rand(3, 6, 6, 3).astype("f")
    sl.apply_architecture(model, child.architecture)
    np.testing.assert_allclose(model(data), child(data), atol=1e-6)


def test_architecture_json_round_trip_and_rebuild(tmp_path, data):
    x, _ = data
    model = tiny_supernet()
    arch = sl.choose(model, "sample", seed=3)
    path = tmp_path / "arch.json"
    arch.save(path)
    loaded = sl.Architecture.load(path)
    assert loaded == arch and json.loads(path.read_text())["choices"] == arch.choices
    child = sl.derive(model, architecture=loaded)
    assert child.architecture.choices == arch.choices
    sl.apply_architecture(model, loaded)
    np.testing.assert_allclose(model.predict(x, verbose=0), child.predict(x, verbose=0), atol=1e-6)


def test_sample_strategy_draws_one_choice_per_key_and_follows_probabilities():
    model = tiny_supernet()
    _set_logits(model, {"edge_a": np.log([0.1, 0.2, 0.3, 0.3, 0.1])})
    picks = [sl.choose(model, "sample", seed=s).choices for s in range(600)]
    assert all(p["edge_a"] == p["edge_b"] for p in picks)
    freq = np.bincount([p["edge_a"] for p in picks], minlength=5) / len(picks)
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.3, 0.1], atol=0.05)


def test_best_of_k_keeps_lowest_validation_loss(data):
    x, y = data
    model = tiny_supernet("gumbel")
    model.compile("adam", LOSS)
    best, scored = best_of_k(model, (x, y), k=4, seed=1)
    losses = [loss for loss, _ in scored]
    assert len(scored) == 4 and best.meta["val_loss"] == min(losses)
    # each score is the supernet's loss under that fixed architecture
    sl.apply_architecture(model, scored[2][1])
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0), losses[2], rtol=1e-5)
    sl.apply_architecture(model, None)
    assert all(int(l.choice.numpy()) == -1 for l in sl.layers.search_layers(model))
    child = sl.derive(model, "best_of_k", validation_data=(x, y), k=4, seed=1)
    assert child.architecture.choices == best.choices


def test_bad_input():
    model = tiny_supernet()
    with pytest.raises(ValueError, match="unknown strategy 'best'"):
        sl.derive(model, "best")
    with pytest.raises(ValueError, match="needs validation_data"):
        sl.derive(model, "best_of_k")
    with pytest.raises(ValueError, match="no choice for search layer 'edge_a'"):
        sl.derive(model, architecture=sl.Architecture({"other": 1}))
    unbuilt = K.Sequential([sl.MixedOp(["skip_connect"])], name="nope")
    with pytest.raises(ValueError, match="Model 'nope' is not built"):
        sl.derive(unbuilt)
    single = tiny_supernet("uniform")
    with pytest.raises(ValueError, match="has no architecture logits"):
        sl.derive(single, "argmax")


def test_derive_keeps_the_choice_the_supernet_is_fixed_to(data):
    """``set_choice`` fixes what the supernet computes; derive used to ignore it
    (the logits' argmax instead, or an error naming set_choice as the remedy)."""
    x, _ = data
    model = tiny_supernet("softmax")
    _set_logits(model, {"edge_a": [0, 0, 5.0, 0, 0], "edge_c": [0, 0, 0, 4.0]})
    for name, choice in (("edge_a", 4), ("edge_b", 4), ("edge_c", 1)):  # a: not the argmax
        model.get_layer(name).set_choice(choice)
    child = sl.derive(model, "argmax")
    assert child.architecture.names == {
        "edge_a": "conv_3x3", "edge_b": "conv_3x3", "edge_c": "sep_conv_3x3"}
    np.testing.assert_allclose(child.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-5)
    assert sl.derive(model, "sample", seed=1).architecture.meta["strategy"] == "sample"
    single = K.Sequential([K.Input((8, 8, 1)), sl.MixedOp(["conv_3x3", "skip_connect"],
                                                          mode="uniform", name="e")])
    single.get_layer("e").set_choice(1)
    assert sl.derive(single).architecture.names == {"e": "skip_connect"}
    single.get_layer("e").set_choice(None)
    with pytest.raises(ValueError, match="MixedOp 'e' \\(mode 'uniform'\\) has no architecture"):
        sl.derive(single)


def test_fixed_choice_reads_back_what_set_choice_fixed():
    from models.entrannas import entrannas_supernet
    from searchlayers.transforms import insert_masks

    cell = next(l for l in sl.layers.search_layers(
        entrannas_supernet((8, 8, 1), 10, channels=4, cells=1, steps=2)))
    record = cell.sample_choice("sample", seed=3)
    assert cell.fixed_choice() is None
    cell.set_choice(record)
    assert cell.fixed_choice() == record
    net = insert_masks(K.Sequential([K.Input((4, 4, 1)), K.layers.Conv2D(4, 3),
                                     K.layers.GlobalAveragePooling2D(), K.layers.Dense(2)]))
    mask = sl.layers.search_layers(net)[0]
    mask.set_choice([0, 2])
    assert mask.fixed_choice() == [0, 2] and sl.derive(net).architecture.choices == {
        mask.name: [0, 2]}
