"""The train step is traced once: optimizer slots and metrics exist before ``fit``
traces it (``searchlayers.search.prebuild``), and that changes no number."""

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from conftest import tiny_supernet
from searchlayers import search

K = sl.keras
LOSS = K.losses.SparseCategoricalCrossentropy(from_logits=True)


def _count_traces(model):
    """Wraps ``model.train_step`` so each Python call (one per trace) is counted."""
    traces, step = [], model.train_step

    def counted(data):
        traces.append(1)
        return step(data)

    model.train_step = counted
    return traces


def _search(data, bilevel, prebuilt=True, monkeypatch=None):
    K.utils.set_random_seed(0)
    model = search.SearchModel(tiny_supernet(), bilevel=bilevel)
    model.compile(K.optimizers.SGD(0.05, momentum=0.9), LOSS, metrics=["accuracy"])
    if not prebuilt:
        monkeypatch.setattr(model, "_prebuild", lambda args, kwargs: None)
    traces = _count_traces(model)
    x, y = data
    if bilevel:
        pairs = tf.data.Dataset.from_tensor_slices(((x[:16], y[:16]), (x[16:], y[16:])))
        model.fit(pairs.batch(8), epochs=1, verbose=0)
    else:
        model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    return model, len(traces)


@pytest.mark.parametrize("bilevel", [True, False])
def test_search_model_traces_its_step_once_with_the_same_result(data, bilevel, monkeypatch):
    prebuilt, traces = _search(data, bilevel)
    lazy, lazy_traces = _search(data, bilevel, prebuilt=False, monkeypatch=monkeypatch)
    assert traces == 1
    assert lazy_traces == 2  # tf.function retraces a step that created variables
    for a, b in zip(sl.arch_variables(prebuilt.model), sl.arch_variables(lazy.model)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)
    for a, b in zip(sl.weight_variables(prebuilt.model), sl.weight_variables(lazy.model)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_prebuild_before_a_plain_fit(data):
    x, y = data
    model = K.Sequential([K.Input((8, 8, 1)), K.layers.Flatten(), K.layers.Dense(10)])
    model.compile(K.optimizers.Adam(0.01), LOSS, metrics=["accuracy"])
    search.prebuild(model, x, y)
    traces = _count_traces(model)
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert len(traces) == 1
    assert 0.0 <= history.history["accuracy"][0] <= 1.0


def test_prebuild_a_joint_optimizer_before_a_plain_fit(data):
    x, y = data
    model = tiny_supernet()
    model.compile(sl.joint_optimizer(K.optimizers.legacy.Adam(0.01)), LOSS,
                  metrics=["accuracy"])
    search.prebuild(model, x, y)
    traces = _count_traces(model)
    before = [v.numpy().copy() for v in sl.arch_variables(model)]
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert len(traces) == 1
    assert all(np.abs(a - v.numpy()).max() > 0 for a, v in zip(before, sl.arch_variables(model)))


@pytest.mark.parametrize("part", ["arch", "weights"])
def test_bilevel_tape_gives_a_full_tapes_gradients_from_a_smaller_graph(data, part):
    """Each bi-level half watches only its own variables: the same gradients as a
    tape watching every variable (the reference), from fewer traced ops."""
    x, y = (tf.constant(a[:8]) for a in data)
    K.utils.set_random_seed(0)
    model = search.SearchModel(tiny_supernet(), bilevel=True)
    model.compile(K.optimizers.SGD(0.05), LOSS)
    sources = (sl.arch_variables if part == "arch" else sl.weight_variables)(model.model)

    def traced(tape_for):
        @tf.function
        def grads():
            with tape_for(sources) as tape:
                loss, _ = model._loss(x, y)
            return tape.gradient(loss, sources)

        ops = len(grads.get_concrete_function().graph.get_operations())
        return [g.numpy() for g in grads()], ops

    got, ops = traced(search._tape)
    want, full_ops = traced(lambda _: tf.GradientTape())
    assert ops < full_ops
    assert len(got) == len(want) == len(sources)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)
