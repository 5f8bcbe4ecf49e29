"""The one walker of a Keras model's layer graph.

Functional models (and Sequential models built on an ``Input``) record their
layer calls as nodes. ``nodes(model)`` lists them in topological order and
``replay(model, visit, inputs)`` runs them again on new inputs the way
``Functional._run_internal_graph`` does, but with a visitor deciding what each
call becomes (a copy, a narrower layer, a mask after it, nothing). Derivation
(``searchlayers.derive``), ``insert_masks`` (``searchlayers.transforms``), the
channel analysis (``searchlayers.slicing.Graph``) and the cost model
(``searchlayers.cost``) all walk graphs through this module, so the node order
and the usage-count bookkeeping of replayed values live in one place.

Example:
    >>> import numpy as np
    >>> inputs = keras.Input((3,))
    >>> h = keras.layers.Dense(4, name="fc")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Add(name="sum")([h, h]))
    >>> [node.layer.name for node in nodes(model)]
    ['fc', 'sum']
    >>> def visit(node, args, kwargs):       # a replay that calls the same layers
    ...     return node.layer(*args, **kwargs)
    >>> x = tf.ones([2, 3])
    >>> bool(np.allclose(replay(model, visit, [x]), model(x)))
    True
"""

import tensorflow as tf

from searchlayers._keras import keras  # noqa: F401 (the doctests' keras)

# Call arguments a replay does not pass on: Keras sets them when the rebuilt
# graph runs (a copied layer must not be pinned to the supernet's phase).
_PHASE_KWARGS = ("training", "mask")


def is_graph(model):
    """True for a model with a recorded layer graph (Functional, or Sequential
    built on an ``Input``).

    Example:
        >>> is_graph(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
        True
        >>> is_graph(keras.Sequential([keras.layers.Dense(1)]))
        False
    """
    return bool(getattr(model, "_is_graph_network", False))


def _require_graph(model, where):
    if not is_graph(model):
        name = getattr(model, "name", None)
        raise TypeError(
            f"{where}: model {name!r} ({type(model).__name__}) has no layer graph; allowed: "
            "a Functional model, or a Sequential model built on a keras.Input.")


def nodes(model):
    """The layer calls (nodes) of ``model``, input nodes left out, in topological
    order (the order ``Functional._run_internal_graph`` runs them).

    Example:
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, name="a"),
        ...                       keras.layers.ReLU(name="b")])
        >>> [(node.layer.name, node.output_shapes) for node in nodes(m)]
        [('a', (None, 3)), ('b', (None, 3))]
    """
    _require_graph(model, "graph.nodes")
    by_depth = model._nodes_by_depth
    return [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]
            if not node.is_input]


def ids(tensors):
    """The ids (graph keys) of the KerasTensors in a nest, flattened.

    Example:
        >>> x = keras.Input((2,))
        >>> ids([x, x]) == [str(id(x))] * 2
        True
    """
    return [str(id(t)) for t in tf.nest.flatten(tensors)]


def _arguments(node, values):
    args, kwargs = node.map_arguments(values)
    return args, {k: v for k, v in kwargs.items() if k not in _PHASE_KWARGS}


def call_node(node, tensors, layer=None):
    """Calls ``layer`` (default: the node's own) as ``node`` was called, with
    ``tensors`` in place of its inputs (in ``node.keras_inputs`` order); constant
    arguments and keyword arguments are kept (``x * 0.5``, ``tf.concat(.., axis)``).

    Example:
        >>> x = keras.Input((2,))
        >>> m = keras.Model(x, keras.layers.Lambda(lambda t: t * 3.0, name="t3")(x))
        >>> call_node(nodes(m)[0], [tf.ones([1, 2])]).numpy().tolist()
        [[3.0, 3.0]]
    """
    values = {}
    for key, t in zip(ids(node.keras_inputs), tensors):
        values.setdefault(key, []).append(t)
    values = {k: v[::-1] for k, v in values.items()}  # map_arguments pops from the end
    args, kwargs = _arguments(node, values)
    return (node.layer if layer is None else layer)(*args, **kwargs)


def replay(model, visit, inputs, skip=None):
    """Replays ``model``'s layer graph on ``inputs`` with a visitor.

    For each node in topological order, ``visit(node, args, kwargs)`` gets the
    node's call arguments with the replayed values in place of the model's
    tensors (``training`` / ``mask`` keyword arguments left out) and returns what
    the call's outputs become (a tensor, a nest of them, or any object the later
    visits understand). Each value is handed to as many consumers as the model
    has (Keras' usage counts). A nested model is one node; a visitor that wants
    its layers calls ``replay(node.layer, visit, args)`` itself.

    Args:
        model: a Functional model or a Sequential model built on an ``Input``.
        visit: ``visit(node, args, kwargs) -> outputs``.
        inputs: the values of ``model.inputs`` (a list in their order, or a nest
            that flattens to it).
        skip: optional ``skip(node) -> bool``; a skipped node is not visited and
            its outputs are ``None`` (nodes a depth gate cuts off).

    Returns:
        The values of ``model.outputs``, nested like the model's outputs.

    Example:
        >>> inputs = keras.Input((2,))
        >>> a = keras.layers.Dense(2, name="a")(inputs)
        >>> b = keras.layers.ReLU(name="b")(a)
        >>> model = keras.Model(inputs, [a, b])
        >>> replay(model, lambda node, args, kwargs: node.layer.name + "(" + args[0] + ")",
        ...        ["x"])
        ['a(x)', 'b(a(x))']
        >>> replay(model, lambda node, args, kwargs: "visited",
        ...        ["x"], skip=lambda node: node.layer.name == "b")
        ['visited', None]
    """
    _require_graph(model, "graph.replay")
    if not callable(visit) or (skip is not None and not callable(skip)):
        bad, value = ("visit", visit) if not callable(visit) else ("skip", skip)
        raise TypeError(f"graph.replay: {bad}={value!r} is not callable; allowed: a "
                        f"function of a node{' (and its args, kwargs)' * (bad == 'visit')}.")
    flat = tf.nest.flatten(inputs)
    if len(flat) != len(model.inputs):
        raise ValueError(
            f"graph.replay: {len(flat)} input value(s) for model '{model.name}'; allowed: "
            f"one per model input ({len(model.inputs)}).")
    usage = model._tensor_usage_count
    values = {}

    def store(keys, outputs):
        for key, y in zip(keys, outputs):
            values[key] = [y] * usage[key]

    store(ids(model.inputs), flat)
    for node in nodes(model):
        if any(key not in values for key in node.flat_input_ids):
            continue  # not computable from these inputs (Keras skips it too)
        if skip is not None and skip(node):
            outputs = [None] * len(node.flat_output_ids)
        else:
            outputs = tf.nest.flatten(visit(node, *_arguments(node, values)))
        store(node.flat_output_ids, outputs)
    outputs = [values[key].pop() for key in ids(model.outputs)]
    return tf.nest.pack_sequence_as(model._nested_outputs, outputs)


__all__ = ["call_node", "ids", "is_graph", "nodes", "replay"]
