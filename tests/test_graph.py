"""searchlayers.graph: node order, replay with a visitor (usage counts, nested outputs,
skipped nodes, nested models), call_node, bad input."""

import numpy as np
import pytest
import tensorflow as tf

import searchlayers as sl
from searchlayers import graph
from searchlayers.layers.base import copy_layer

K = sl.keras
RNG = np.random.default_rng(0)


def _spell(node, args, kwargs):
    """A visitor that writes each call as text: the replay's dataflow, checkable by eye."""
    return f"{node.layer.name}({', '.join(tf.nest.flatten((args, kwargs)))})"


def _diamond():
    """x -> a; a feeds b, c and the sum (3 uses) and is itself an output (a 4th)."""
    x = K.Input((4,), name="x")
    a = K.layers.Dense(4, name="a")(x)
    b = K.layers.ReLU(name="b")(a)
    c = K.layers.Dense(4, name="c")(a)
    s = K.layers.Add(name="s")([b, c, a])
    return K.Model(x, {"sum": s, "a": a})


def test_nodes_topological_without_inputs():
    model = _diamond()
    names = [node.layer.name for node in graph.nodes(model)]
    assert names[0] == "a" and names[-1] == "s" and sorted(names[1:3]) == ["b", "c"]
    assert not any(isinstance(node.layer, K.layers.InputLayer) for node in graph.nodes(model))


def test_nodes_list_each_call_of_a_shared_layer():
    x = K.Input((3,))
    shared = K.layers.Dense(3, name="shared")
    model = K.Model(x, shared(K.layers.ReLU(name="r")(shared(x))))
    assert [n.layer.name for n in graph.nodes(model)] == ["shared", "r", "shared"]


def test_replay_hands_every_use_its_value_and_keeps_the_output_structure():
    out = graph.replay(_diamond(), _spell, ["X"])
    assert out == {"a": "a(X)", "sum": "s(b(a(X)), c(a(X)), a(X))"}


def test_replay_with_a_copying_visitor_reproduces_the_model():
    x = K.Input((6, 6, 2))
    shared = K.layers.Conv2D(2, 3, padding="same", name="shared")
    h = shared(K.layers.BatchNormalization(name="bn")(shared(x)))
    y = K.layers.Dense(3, name="head")(K.layers.Flatten()(K.layers.Concatenate()([h, x])))
    model = K.Model(x, y)
    copies = {}

    def copy(node, args, kwargs):
        layer = node.layer
        if id(layer) not in copies:
            copies[id(layer)] = copy_layer(layer, layer._build_input_shape)
        return copies[id(layer)](*args, **kwargs)

    inputs = K.Input((6, 6, 2))
    rebuilt = K.Model(inputs, graph.replay(model, copy, [inputs]))
    data = RNG.normal(size=(2, 6, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(rebuilt(data).numpy(), model(data).numpy(), atol=1e-6)
    assert len(rebuilt.layers) == len(model.layers)  # the shared conv stays one layer


def test_skipped_nodes_give_none_to_their_consumers():
    seen = {}

    def visit(node, args, kwargs):
        seen[node.layer.name] = tf.nest.flatten(args)
        return "v"

    out = graph.replay(_diamond(), visit, ["X"], skip=lambda node: node.layer.name == "c")
    assert "c" not in seen and seen["s"] == ["v", None, "v"]
    assert out == {"a": "v", "sum": "v"}


def test_a_visitor_recurses_into_nested_models():
    inner = K.Sequential([K.Input((4,)), K.layers.Dense(4, name="i1"),
                          K.layers.ReLU(name="i2")], name="inner")
    x = K.Input((4,))
    model = K.Model(x, K.layers.Dense(2, name="o")(inner(K.layers.Dense(4, name="pre")(x))))

    def visit(node, args, kwargs):
        if isinstance(node.layer, K.Model):
            return graph.replay(node.layer, visit, args)
        return _spell(node, args, kwargs)

    assert graph.replay(model, visit, ["X"]) == "o(i2(i1(pre(X))))"


def test_training_and_mask_keywords_are_not_passed_on():
    x = K.Input((3,))
    model = K.Model(x, K.layers.Dropout(0.5, name="drop")(x, training=True))
    got = []
    graph.replay(model, lambda node, args, kwargs: got.append(kwargs) or args[0], [x])
    assert got == [{}]


def test_call_node_keeps_constant_arguments():
    x = K.Input((4,))
    y = tf.concat([x * 2.0, x], axis=-1)  # TFOpLambda layers with constants and a kwarg
    model = K.Model(x, y)
    concat = graph.nodes(model)[-1]
    a, b = tf.ones([1, 4]), tf.fill([1, 4], 3.0)
    np.testing.assert_array_equal(graph.call_node(concat, [a, b]).numpy(),
                                  [[1, 1, 1, 1, 3, 3, 3, 3]])


def test_bad_input():
    class Sub(K.Model):
        def call(self, x):
            return x

    with pytest.raises(TypeError, match=r"^graph.nodes: model 'sub' \(Sub\) has no layer graph; "
                                        r"allowed: a Functional model"):
        graph.nodes(Sub(name="sub"))
    model = _diamond()
    with pytest.raises(ValueError, match=r"^graph.replay: 2 input value\(s\) for model .*"
                                         r"allowed: one per model input \(1\)\.$"):
        graph.replay(model, _spell, ["X", "Y"])
    with pytest.raises(TypeError, match=r"^graph.replay: visit=3 is not callable"):
        graph.replay(model, 3, ["X"])
    with pytest.raises(TypeError, match=r"^graph.replay: skip='c' is not callable"):
        graph.replay(model, _spell, ["X"], skip="c")
