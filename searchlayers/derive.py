"""Derivation: from a searched supernet to a plain, smaller Keras model.

``derive(model, strategy=...)`` asks every search layer for its discrete
choice (``argmax``, ``sample``, or BARS' ``best_of_k``), then rebuilds the
model layer by layer, dispatching on each layer's own derivation hook
(``derivation(choice)``, see ``searchlayers.layers.base``), then the channel-rule
registry (``searchlayers.slicing``), then a plain copy: a ``Replace`` puts the
plain layer of the choice in (weights inherited), a ``Drop`` (Zeroise) removes
the edge from the ``Add`` it fed, a ``Pick`` passes one input, ``KeepChannels``
slices the layers around it, and every other layer is copied with its weights.
The result depends on nothing in this package.

``Architecture`` is the JSON record of the choices; ``derive(model,
architecture=arch)`` rebuilds from one, and ``apply_architecture`` fixes the
supernet's forward pass to it (the derived model then gives the same outputs).
"""

import numpy as np
import tensorflow as tf

from searchlayers import checks
from searchlayers._keras import input_like, keras, require_built
from searchlayers.architecture import Architecture, as_architecture  # noqa: F401 (re-export)
from searchlayers.layers.base import (  # noqa: F401 (copy_layer re-exported)
    Drop, KeepChannels, Pick, Replace, SearchLayer, Sliceable, channel_rule, copy_layer,
    derivation_of, search_layers)
from searchlayers.graph import call_node, replay
from searchlayers.transforms import call_copy

STRATEGIES = ("argmax", "sample", "expected", "best_of_k")
# Strategies every search layer answers; a layer may offer more (``strategies``).
# A layer without "expected" (the FiGS export rule) uses its argmax there.
_BASE_STRATEGIES = ("argmax", "sample")


def _describe(layer, choice):
    return layer.choice_names[choice] if isinstance(choice, int) else choice


def choose(model, strategy="argmax", seed=0, rule=None):
    """The ``Architecture`` of ``model`` under ``strategy`` ("argmax", "sample" or
    "expected").

    Layers sharing an ``arch_key`` get one choice (drawn once per key).
    "expected" is FiGS' export rule for ``FiGSMask`` (keep ``floor(sum p)``
    channels); other search layers take their argmax under it.
    ``rule(layer) -> choice or None`` overrides the strategy for the layers it
    answers (e.g. BNAS' ``models.bnas.zeroise_gamma_rule(gamma)``); ``None``
    falls back to a choice fixed by ``set_choice`` (``apply_architecture``),
    which is what the supernet computes, then to ``strategy`` ("sample" draws
    whatever is fixed).

    Example:
        >>> choose(supernet, "argmax").choices  # doctest: +SKIP
        {'mixed_op': 4, ...}
    """
    from searchlayers.search import check_finite_arch, tie_arch_variables

    _check_model(model)
    if strategy not in _BASE_STRATEGIES + ("expected",):
        raise ValueError(
            f"choose(): unknown strategy {strategy!r}; allowed: 'argmax', 'sample', 'expected'."
        )
    seed = checks.integer("choose()", "seed", seed)
    if rule is not None and not callable(rule):
        raise checks.ArgumentTypeError(
            f"choose(): rule must be None or a callable rule(layer) -> choice or None, got "
            f"{checks.show(rule)} ({type(rule).__name__}).")
    tie_arch_variables(model)
    check_finite_arch(model, "choose()")
    by_key, choices, names = {}, {}, {}
    for layer in search_layers(model):
        key = layer.arch_key or layer.name
        if key not in by_key:
            own = strategy
            if own not in layer.strategies:
                own = "argmax"
            choice = None if rule is None else rule(layer)
            if choice is None and own != "sample":  # what the supernet computes
                choice = layer.fixed_choice()
            by_key[key] = layer.sample_choice(own, seed=seed) if choice is None else choice
        choices[layer.name] = by_key[key]
        names[layer.name] = _describe(layer, by_key[key])
    meta = {"strategy": strategy, "seed": seed}
    if rule is not None:
        meta["rule"] = getattr(rule, "__name__", type(rule).__name__)
    return Architecture(choices, names, meta)


def apply_architecture(model, architecture):
    """Fixes every search layer's forward pass to ``architecture`` (``None`` clears).

    Example:
        >>> apply_architecture(supernet, choose(supernet))  # doctest: +SKIP
    """
    if architecture is not None:
        architecture = as_architecture(architecture, "apply_architecture").validate(model)
    for layer in search_layers(model):
        choice = None if architecture is None else _lookup(architecture, layer)
        layer.set_choice(choice)


def _lookup(architecture, layer):
    if layer.name not in architecture.choices:
        raise ValueError(
            f"Architecture has no choice for search layer '{layer.name}'; it has "
            f"{sorted(architecture.choices)}. Was it made for another model?"
        )
    return architecture.choices[layer.name]


def best_of_k(model, validation_data, k=8, seed=0, steps=None):
    """BARS' derive: sample ``k`` architectures, score each by validation loss
    with the supernet's weights, return ``(best, [(loss, arch), ...])``.

    ``model`` must be compiled (its loss is the score).

    Example:
        >>> best, scored = best_of_k(supernet, val_ds, k=8)  # doctest: +SKIP
    """
    from searchlayers.search import check_labelled

    if getattr(model, "compiled_loss", None) is None:
        raise ValueError(f"best_of_k: model '{model.name}' must be compiled (its loss scores).")
    k = checks.integer("best_of_k", "k", k, low=1)
    check_labelled(validation_data, "best_of_k", model)
    scored = []
    try:
        for i in range(int(k)):
            arch = choose(model, "sample", seed=seed + i)
            apply_architecture(model, arch)
            result = _evaluate(model, validation_data, steps)
            arch.meta.update(val_loss=float(result["loss"]), sample=i)
            scored.append((float(result["loss"]), arch))
    finally:
        apply_architecture(model, None)
    bad = [i for i, (loss, _) in enumerate(scored) if not np.isfinite(loss)]
    if bad:
        raise FloatingPointError(
            f"best_of_k: the validation loss is NaN or inf for samples {bad} of {k}, so no "
            "architecture can be picked; check validation_data for NaN/inf "
            "(np.isfinite(x).all()) and the supernet's weights.")
    best = min(scored, key=lambda t: t[0])[1]
    best.meta["strategy"] = "best_of_k"
    return best, scored


def _evaluate(model, data, steps):
    """``model.evaluate`` on a dataset or an ``(x, y)`` pair of arrays."""
    if isinstance(data, (tuple, list)):
        return model.evaluate(*data[:2], steps=steps, verbose=0, return_dict=True)
    return model.evaluate(data, steps=steps, verbose=0, return_dict=True)


def derive(model, strategy="argmax", architecture=None, validation_data=None, k=8, seed=0):
    """A plain Keras model: every search layer replaced by its chosen layer.

    Args:
        model: the supernet (Sequential or Functional, nested models allowed).
        strategy: "argmax", "sample", "expected" (FiGS masks keep their
            ``floor(sum p)`` most probable channels), or "best_of_k" (needs ``validation_data``
            and a compiled model).
        architecture: an ``Architecture`` to build instead of choosing.
        k, seed: for "sample" / "best_of_k".

    The derived model carries its record as ``derived.architecture``.

    Example:
        >>> child = derive(supernet, "argmax")  # doctest: +SKIP
        >>> child.architecture.to_json()  # doctest: +SKIP
    """
    _check_model(model)
    if architecture is None:
        if strategy == "best_of_k":
            if validation_data is None:
                raise ValueError("derive(strategy='best_of_k') needs validation_data.")
            architecture, _ = best_of_k(model, validation_data, k=k, seed=seed)
        elif strategy in _BASE_STRATEGIES + ("expected",):
            architecture = choose(model, strategy, seed=seed)
        else:
            raise ValueError(
                f"derive(): unknown strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}."
            )
    else:
        architecture = as_architecture(architecture, "derive()").validate(model)
    derived = _rebuild(model, architecture)
    derived.architecture = architecture
    return derived


def _check_model(model):
    require_built(model, "it cannot be derived")


# -- rebuilding ---------------------------------------------------------------------
class _Zero:
    """A removed output; ``make()`` materializes zeros when a consumer needs them."""

    def __init__(self, make):
        self.make = make


def _derivation(layer, architecture, copies=None):
    """``layer``'s own derivation hook (its choice for a search layer; None: no
    hook, the registry decides), computed once per layer in ``copies``."""
    key = ("derivation", id(layer))
    if copies is not None and key in copies:
        return copies[key]
    choice = _lookup(architecture, layer) if isinstance(layer, SearchLayer) else None
    found = derivation_of(layer, choice)
    if copies is not None:
        copies[key] = found
    return found


def _rebuild(model, architecture):
    if isinstance(model, keras.Sequential):
        return _rebuild_sequential(model, architecture)
    if getattr(model, "_is_graph_network", False):
        return _rebuild_functional(model, architecture)
    raise TypeError(
        f"derive: model '{model.name}' is a subclassed model; derive needs a Sequential "
        "or Functional model (its layer graph)."
    )


def _has_masks(model):
    """FiGS masks or width gates (``KeepChannels``): the derived model slices channels."""
    return any(channel_rule(layer) == "mask" for layer in model.layers)


def _live_nodes(model, architecture):
    """Ids of the nodes a depth-gated model keeps (None: all of them)."""
    from searchlayers.layers.gates import live_nodes
    from searchlayers.slicing import Graph

    if not any(channel_rule(layer) == "pick" for layer in model.layers):
        return None
    return live_nodes(Graph(model), architecture.choices)


def _rebuild_sequential(model, architecture):
    if _has_masks(model):  # channel slicing replays the graph, then re-stacks it
        flat = _rebuild_functional(model, architecture)
        layers = [l for l in flat.layers if not isinstance(l, keras.layers.InputLayer)]
        return keras.Sequential([input_like(model.inputs[0]), *layers],
                                name=f"{model.name}_derived")
    layers, inherit = [], []
    for layer in model.layers:
        if isinstance(layer, SearchLayer):  # a Replace (a Drop keeps its zeros layer)
            layers.append(_derivation(layer, architecture).make())
        elif isinstance(layer, keras.Model):
            layers.append(_rebuild(layer, architecture))
        else:
            new = copy_layer(layer)  # weights once the Sequential is built
            layers.append(new)
            inherit.append((layer, new))
    derived = keras.Sequential(layers, name=f"{model.name}_derived")
    derived.build(model.input_shape)
    for old, new in inherit:
        new.set_weights(old.get_weights())
    return derived


def _rebuild_functional(model, architecture):
    """Replays ``model``'s node graph (``searchlayers.graph.replay``).

    With FiGS masks or width gates in the graph, every value also carries the
    supernet channels it keeps (``searchlayers.slicing.ChannelPlan``) and each layer
    is rebuilt narrower by the rules of ``searchlayers.slicing``. Nodes that a
    depth gate's choice cuts off (the cells after the chosen depth) are skipped.
    """
    plan, live = None, _live_nodes(model, architecture)
    if _has_masks(model):
        from searchlayers import slicing

        plan = slicing.ChannelPlan(model, architecture.choices)
        live = plan.live
        if plan.pinned:
            import warnings

            why = (f"layer(s) without a channel rule read the dropped channels: "
                   f"{', '.join(plan.opaque_readers)}. Register a rule with "
                   "searchlayers.slicing.register_channel_rule to prune them."
                   if plan.opaque_readers else "a later layer still needs them (e.g. a "
                   "residual Add whose other branch keeps every channel: mask or gate that "
                   "branch alike).")
            warnings.warn(
                f"derive: {len(plan.pinned)} channel mask(s) or width gate(s) "
                f"({', '.join(sorted(plan.pinned))}) keep their producer's channels (a fixed "
                f"0/1 Rescaling): {why}", stacklevel=3)
    present = {}  # id(derived tensor) -> supernet channel indices it holds
    inputs = [input_like(t) for t in model.inputs]
    copies = {"_inputs": inputs}

    def visit(node, args, kwargs):
        if plan is None:
            return _replay(node.layer, args, kwargs, architecture, copies)
        return _replay_sliced(node, args, kwargs, architecture, copies, plan, present)

    cut = None if live is None else (lambda node: id(node) not in live)  # by a depth gate
    outputs = replay(model, visit, inputs, skip=cut)
    outputs = tf.nest.map_structure(_materialize, outputs)
    return keras.Model(inputs, outputs, name=f"{model.name}_derived")


def _materialize(value):
    return value.make() if isinstance(value, _Zero) else value


def _inline(new, x):
    """Calls a derived layer; a ``Sliceable`` (binary composite) becomes its plain layers."""
    if isinstance(derivation_of(new), Sliceable):
        return new.inline(x, new.name)
    return new(x)


def _replay(layer, args, kwargs, architecture, copies):
    """Replays one call; dispatch: the layer's own derivation hook, else a copy."""
    found = _derivation(layer, architecture, copies)
    if isinstance(found, Pick):  # depth gate: the chosen input passes
        return _materialize(tf.nest.flatten(args[0])[found.index])
    if isinstance(found, Drop):  # the edge disappears; zeros only if a consumer needs them
        x, zero = _materialize(args[0]), found.make()
        return _Zero(lambda: zero(x))
    if isinstance(found, Replace):
        return _inline(found.make(), _materialize(args[0]))
    if isinstance(found, KeepChannels):  # not sliced here: its fixed 0/1 mask, no weights
        from searchlayers import slicing

        return slicing.fixed_mask(_materialize(args[0]), found.mask, name=f"{layer.name}_fixed")
    if isinstance(layer, keras.layers.Add):
        live = [t for t in tf.nest.flatten(args) if not isinstance(t, _Zero)]
        if not live:
            return tf.nest.flatten(args)[0]
        if len(live) == 1:
            return live[0]  # the other edges were removed: no Add left
        args = (live,)
    args = tf.nest.map_structure(_materialize, args, check_types=False)
    if id(layer) in copies:
        return copies[id(layer)](*args, **kwargs)
    if isinstance(layer, keras.Model):
        new = _rebuild(layer, architecture)
        copies[id(layer)] = new
        return new(*args, **kwargs)
    if isinstance(found, Sliceable):
        return _inline(copy_layer(layer, layer._build_input_shape), args[0])
    return call_copy(layer, args, kwargs, copies)


# -- channel slicing (FiGS masks) ----------------------------------------------------------
def _replay_sliced(node, args, kwargs, architecture, copies, plan, present):
    """Replays one call keeping only the channels ``plan`` keeps (see ``slicing``)."""
    from searchlayers import slicing

    layer = node.layer
    ins = [str(id(t)) for t in tf.nest.flatten(node.keras_inputs)]
    outs = list(node.flat_output_ids)
    kind, target = plan.kind_of(layer), plan.target(layer)
    found = copies[("derivation", id(layer))] = plan.derivation(layer)  # _replay reuses it
    name = found.name if isinstance(found, Replace) else None  # e.g. "<MixedOp>_<candidate>"
    xs = tf.nest.flatten(args[0]) if args else []
    if len(xs) != len(ins):  # a TF op of several tensors (x * relu6(x + 3)): args and kwargs
        xs = [t for t in tf.nest.flatten((args, kwargs))  # in node.keras_inputs order
              if isinstance(t, _Zero) or type(t).__name__ == "KerasTensor"]
    if len(xs) != len(ins) or any(plan.present.get(i) is None for i in ins):
        kind = "opaque"
    if kind != "opaque" and any(plan.present.get(o) is None for o in outs):
        kind = "opaque"
    graph = plan.graph

    def held(x, tid):
        found = present.get(id(x))
        return np.arange(graph.channels(tid)) if found is None else found

    def finish(y, natural, tid, allowed=None):
        want = plan.present[tid]
        count = copies["_selects"] = copies.get("_selects", 0) + 1
        y = slicing.select(y, natural, want, allowed, name=f"{layer.name}_select_{count}")
        present[id(y)] = want
        return y

    if kind == "opaque":
        out = _replay(layer, args, kwargs, architecture, copies)
        flat = tf.nest.flatten(out)
        result = []
        for o, y in zip(outs, flat):
            if plan.present.get(o) is None or isinstance(y, _Zero):
                result.append(y)
            else:
                result.append(finish(y, np.arange(graph.channels(o)), o))
        return tf.nest.pack_sequence_as(out, result)
    out_id = outs[0]
    if all(plan.present.get(o) is not None and not len(plan.present[o]) for o in outs):
        # No consumer reads it (e.g. every edge leaving it was cut): not computed.
        dead = [_zeros(copies, graph.tensors[o], [], present) for o in outs]
        return dead[0] if len(dead) == 1 else dead
    if kind == "zero":
        return _zeros(copies, graph.tensors[out_id], plan.present[out_id], present)
    if kind in ("reduce", "channelwise", "merge") and len(outs) == 1 and not np.isnan(
            plan.const[out_id][plan.present[out_id]]).any():
        # every kept channel is a known constant (its inputs come from a removed
        # edge): a constant tensor, nothing upstream computed for it
        return _constant(copies, graph.tensors[out_id], plan.present[out_id],
                         plan.const[out_id], present, f"{layer.name}_constant")
    xs = [_materialize(x) if kind != "merge" else x for x in xs]
    if kind == "pick":
        d = plan.pick(layer)
        return finish(xs[d], held(xs[d], ins[d]), out_id)
    if kind == "sliceable":  # a binary composite narrows itself (binary._Composite)
        src = held(xs[0], ins[0])
        keep_in = target.input_channels(np.isin(np.arange(graph.channels(ins[0])), src))
        if not np.isin(keep_in, src).all():  # what it holds cannot be kept as it is
            keep_in = target.input_channels(plan.nz[ins[0]])
        keep_out = target.output_channels(
            np.isin(np.arange(graph.channels(out_id)), plan.present[out_id]))
        x = slicing.select(xs[0], src, keep_in, name=f"{layer.name}_in")
        new = target.sliced(keep_in, keep_out, name or layer.name)
        return finish(new.inline(x, new.name), keep_out, out_id)
    if kind == "mask":
        src = held(xs[0], ins[0])
        if layer.name in plan.pinned:  # an opaque consumer reads its dropped channels
            y = slicing.fixed_mask(xs[0], plan.kept[layer.name][src], name=f"{layer.name}_fixed")
            return finish(y, src, out_id)
        return finish(xs[0], src, out_id, allowed=plan.kept[layer.name])
    if kind == "reduce":
        src, want = held(xs[0], ins[0]), plan.present[out_id]
        fold = plan.fold(target, ins[0], src)
        key = (id(layer), tuple(src), tuple(want), tuple(fold[0]), tuple(fold[1]))
        if key in copies:
            y = copies[key](xs[0])
        else:
            y = slicing.slice_reduce(target, xs[0], src, want, name=name, fold=fold)
            copies[key] = y._keras_history.layer
        present[id(y)] = want
        return y
    if kind == "channelwise":
        src = held(xs[0], ins[0])
        key = (id(layer), tuple(src))
        if key in copies:
            y = copies[key](xs[0]) if target is not layer else call_node(
                node, xs, copies[key])
        else:
            call = {} if target is not layer else {"node": node, "args": xs}
            y = slicing.slice_channelwise(target, xs[0], src, graph.channels(ins[0]),
                                          name=name, **call)
            copies[key] = y._keras_history.layer
        return finish(y, src, out_id)
    new = copies.get(id(layer))
    if new is None:  # merge, concat, flatten: no weights
        new = copies[id(layer)] = copy_layer(layer)
    if kind == "merge":
        live = [(x, i) for x, i in zip(xs, ins) if not isinstance(x, _Zero)]
        if not live:
            return xs[0]
        want = plan.present[out_id]
        parts = [x if graph.channels(i) == 1 < len(want) else finish(x, held(x, i), out_id)
                 for x, i in live]  # a 1-channel input broadcasts as it is
        if len(parts) == 1:
            return parts[0]
        y = new(parts) if len(parts) < len(xs) else call_node(node, parts, new)
        present[id(y)] = want
        return y
    if kind == "concat":
        natural, start = [], 0
        for x, i in zip(xs, ins):
            natural.append(held(x, i) + start)
            start += graph.channels(i)
        y = new(xs)
        return finish(y, np.concatenate(natural), out_id)
    # flatten: position-major, channel-minor indices
    src, channels = held(xs[0], ins[0]), graph.channels(ins[0])
    positions = graph.positions(ins[0])
    natural = (np.arange(positions)[:, None] * channels + src[None, :]).reshape(-1)
    return finish(new(xs[0]), natural, out_id)


def _constant(copies, tensor, want, const, present, name):
    """Like ``_zeros``, holding the constants ``const[want]`` (a ``Rescaling`` offset)."""
    y = _zeros(copies, tensor, want, present).make()
    values = np.asarray(const, np.float32)[np.asarray(want, int)]
    if values.any():
        y = keras.layers.Rescaling(scale=1.0, offset=values.tolist(), name=name)(y)
    present[id(y)] = want
    return y


def _zeros(copies, tensor, want, present):
    """A removed value: when a consumer needs it, zeros shaped like the supernet's
    ``tensor`` holding channels ``want``, made from the derived input's batch size
    only (so nothing upstream has to be computed for them)."""

    def make():
        x = copies["_inputs"][0]
        one = tf.zeros_like(x[(slice(None),) + (slice(0, 1),) * (len(x.shape) - 1)])
        if len(x.shape) != len(tensor.shape):  # e.g. an image input, a vector value
            one = tf.reshape(one, [-1] + [1] * (len(tensor.shape) - 1))
        y = tf.tile(one, [1, *tensor.shape[1:-1], len(want)])
        present[id(y)] = want
        return y

    return _Zero(make)
