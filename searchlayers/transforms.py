"""Model-to-model transforms.

- ``train_only_batchnorm``: BN-NAS' supernet training, where only BatchNorm's
  gamma and beta learn.
- ``insert_masks``: FiGS' search space, a ``FiGSMask`` after every prunable layer.

Example:
    >>> from searchlayers.transforms import train_only_batchnorm
    >>> from models.spos import spos_supernet
    >>> model = train_only_batchnorm(spos_supernet(stages=((8, 1, 1),)))
    >>> sorted({w.name.split("/")[-1].split(":")[0] for w in model.trainable_weights})
    ['beta', 'gamma']
"""

import warnings

import tensorflow as tf

from searchlayers import checks
from searchlayers.graph import replay
from searchlayers._keras import input_like, keras
from searchlayers.layers.base import SearchLayer, copy_layer, search_layers

BN_WHICH = ("all", "last")


def _children(layer):
    return list(layer._flatten_layers(include_self=False, recursive=False))


def _leaves(model):
    """The layers of ``model`` without sublayers (nested models walked through)."""
    return [
        layer for layer in model._flatten_layers(include_self=False, recursive=True)
        if not _children(layer)
    ]


def _set_lists(layer, trainable, non_trainable):
    # Plain lists, set without Keras' attribute tracking: a tracked list would be
    # re-scanned by ``_update_trackables``, which files variables by their own
    # ``trainable`` flag and would put gamma / beta back.
    object.__setattr__(layer, "_trainable_weights", list(trainable))
    object.__setattr__(layer, "_non_trainable_weights", list(non_trainable))


def _freeze_affine(bn):
    """Makes gamma / beta non-trainable while the layer keeps ``trainable=True``.

    Keras runs a BatchNormalization with ``trainable=False`` in inference mode;
    moving its affine variables to the front of the non-trainable list instead
    keeps batch statistics in training (and the moving averages updating), and
    keeps the order of ``bn.weights`` (gamma, beta, moving mean, variance).
    """
    moved = list(bn._trainable_weights)
    if moved:
        _set_lists(bn, [], moved + list(bn._non_trainable_weights))


def _restore_affine(bn):
    """Undoes ``_freeze_affine`` (a second call with another ``which``)."""
    affine = [w for w in (bn.gamma, bn.beta) if w is not None]
    moved = [w for w in bn._non_trainable_weights if any(w is a for a in affine)]
    if moved:
        rest = [w for w in bn._non_trainable_weights if not any(w is m for m in moved)]
        _set_lists(bn, moved + list(bn._trainable_weights), rest)


def train_only_batchnorm(model, which="all"):
    """Freezes every weight but BatchNorm's gamma and beta (BN-NAS, sec. 3.4).

    In place; returns ``model``. Every non-BatchNorm layer with weights gets
    ``trainable=False`` (convolutions, dense layers, ...). BatchNorm layers stay
    ``trainable=True``, so they normalize with batch statistics in training and
    their moving mean / variance keep updating.

    Args:
        which: ``"all"``: every BatchNorm's gamma and beta train (the paper);
            ``"last"``: only the last BatchNorm of each candidate op of each
            search layer (the authors' code); the other BatchNorms keep their
            gamma / beta fixed but still use and update batch statistics.

    Search layers' own variables (architecture logits, temperature, sampling
    state) are left as they are: single-path MixedOps ("uniform", "fair") have
    no trainable ones. A compiled model's train function is reset, so the next
    ``fit`` traces with the new trainable set.

    A subnet derived from the model (``searchlayers.derive``) inherits the
    ``trainable=False`` flags; set ``child.trainable = True`` before retraining it.

    Note: with ``which="last"``, gamma and beta of the other BatchNorms are
    frozen by bookkeeping that the model's config does not record; a model
    rebuilt from its config (``clone_model``, ``load_model``) has them
    trainable again.

    Example:
        >>> from models.spos import spos_supernet
        >>> m = train_only_batchnorm(spos_supernet(stages=((8, 1, 1),)), which="last")
        >>> len(m.trainable_weights)   # gamma and beta of 6 candidates' last BN
        12
    """
    if which not in BN_WHICH:
        raise ValueError(
            f"train_only_batchnorm: unknown which={which!r}; allowed: 'all' (every "
            "BatchNorm, the paper) or 'last' (the last BatchNorm of each candidate op)."
        )
    if not isinstance(model, keras.Model):
        raise TypeError(f"train_only_batchnorm expects a keras.Model, got {type(model).__name__}.")
    from searchlayers.bn_score import last_batchnorm

    affine = [layer for layer in _leaves(model)
              if isinstance(layer, keras.layers.BatchNormalization) and (layer.scale or layer.center)]
    if not affine:  # refuse before freezing anything: nothing would train
        raise ValueError(
            f"train_only_batchnorm: model '{model.name}' has no BatchNormalization with "
            "gamma or beta (scale=True / center=True), so it would train 0 variables; "
            "allowed: a model with at least one affine BatchNormalization."
        )
    batchnorms = []
    for layer in _leaves(model):
        if isinstance(layer, SearchLayer):
            continue  # architecture state, not network weights
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = True
            _restore_affine(layer)
            batchnorms.append(layer)
        elif layer.weights:
            layer.trainable = False
    if which == "last":
        keep = set()
        for layer in search_layers(model):
            for op in getattr(layer, "ops", None) or []:
                bn = last_batchnorm(op)
                if bn is not None:
                    keep.add(id(bn))
        if not keep:
            raise ValueError(
                f"train_only_batchnorm(which='last'): model '{model.name}' has no candidate "
                "op ending with a BatchNormalization (no MixedOp of BN-ended ops)."
            )
        for bn in batchnorms:
            if id(bn) not in keep:
                _freeze_affine(bn)
    if getattr(model, "train_function", None) is not None:
        model.train_function = None
    return model


# -- FiGS: insert_masks ----------------------------------------------------------------
_PRUNABLE = (
    keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.Dense,
    keras.layers.SeparableConv1D, keras.layers.SeparableConv2D,
    keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D,
)
_TRANSPOSED = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
               keras.layers.Conv3DTranspose)
# Layers a mask moves past: it goes after the prunable layer's BN and activation.
_POST = (keras.layers.BatchNormalization, keras.layers.Activation, keras.layers.ReLU,
         keras.layers.LeakyReLU, keras.layers.ELU, keras.layers.PReLU)


class _Groups:
    """Union-find over mask sites (tensor ids)."""

    def __init__(self):
        self.parent = {}

    def find(self, a):
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a, b):
        self.parent[self.find(a)] = self.find(b)


def _warn_unprunable(graph, sites):
    """Says, before any search, which masks feed a layer without a channel rule:
    derive cannot narrow it, so their channels stay (a fixed 0/1 Rescaling), but
    the cost term counts them as saved."""
    from searchlayers import slicing

    def opaque_readers(tid):  # through channel-wise layers and merges, as derive sees it
        found, seen, stack = set(), set(), [tid]
        while stack:
            for user, node, _ in graph.consumers.get(stack.pop(), []):
                kind = slicing.kind(user)
                if kind == "opaque":
                    found.add(user.name)
                elif kind in ("channelwise", "merge") and id(node) not in seen:
                    seen.add(id(node))
                    stack.extend(node.flat_output_ids)
        return sorted(found)

    readers = {sites[tid].name: opaque_readers(tid) for tid in sites}
    readers = {name: users for name, users in readers.items() if users}
    if readers:
        listing = "; ".join(f"after {name}: {', '.join(users)}"
                            for name, users in readers.items())
        warnings.warn(
            f"insert_masks: {len(readers)} mask(s) feed layers without a channel rule "
            f"({listing}): derive cannot drop those channels, though the cost term counts "
            "them as saved. Register a rule (searchlayers.slicing.register_channel_rule) "
            "before searching.", stacklevel=3)


def _mask_sites(graph, skip_output):
    """``{tensor id: prunable layer}``: where masks go, and the union-find of groups."""
    from searchlayers import slicing

    sites = {}
    for layer, node, ins, outs in graph.calls:
        if not isinstance(layer, _PRUNABLE) or isinstance(layer, _TRANSPOSED + (SearchLayer,)):
            continue
        if isinstance(layer, slicing._DEPTHWISE) and layer.depth_multiplier != 1:
            continue
        tid = outs[0]
        while tid not in graph.output_ids:
            users = graph.consumers.get(tid, [])
            if len(users) != 1 or not isinstance(users[0][0], _POST):
                break
            tid = list(users[0][1].flat_output_ids)[0]
        if skip_output and _reaches_output(graph, tid):
            continue
        if graph.channels(tid) is None or _is_gate(graph, tid):
            continue
        sites[tid] = layer
    groups = _Groups()
    governing = {}

    def site_of(tid):
        if tid in sites:
            return tid
        if tid in governing:
            return governing[tid]
        governing[tid] = None
        producer = _producer(graph, tid)
        found = None
        if producer is not None:
            layer, ins = producer
            kind = slicing.kind(layer)
            if kind == "channelwise" and not isinstance(layer, slicing._DEPTHWISE):
                found = site_of(ins[0])
            elif kind == "merge":
                found = _join([site_of(i) for i in _same_width(graph, ins, tid)], groups)
        governing[tid] = found
        return found

    for layer, node, ins, outs in graph.calls:
        if slicing.kind(layer) == "merge" and len(outs) == 1:
            _join([site_of(i) for i in _same_width(graph, ins, outs[0])], groups)
        elif isinstance(layer, slicing._DEPTHWISE):
            own = [t for t, l in sites.items() if l is layer]
            if own:
                _join([own[0], site_of(ins[0])], groups)
    return sites, groups


def _same_width(graph, ins, out):
    """The inputs of an element-wise merge with the output's channels (not the
    broadcast ones): their channels are one set, so their masks are one group."""
    return [i for i in ins if graph.channels(i) == graph.channels(out)]


def _passes_channels(layer):
    """Layers a classifier's channels reach the output through unchanged in meaning
    (``Flatten``, ``Reshape``, ``Activation``, ``Dropout``, ``Softmax``, ...)."""
    from searchlayers import slicing

    if isinstance(layer, (keras.layers.Softmax, keras.layers.Activation, keras.layers.Reshape,
                          keras.layers.Flatten)):
        return True
    return slicing.kind(layer) in ("channelwise", "flatten") and not isinstance(
        layer, slicing._DEPTHWISE)


def _reaches_output(graph, tid, seen=None):
    """True when ``tid`` is a model output or reaches one through single-input layers
    that pass its channels on (a classifier head: ``Logits`` conv -> ``Flatten`` ->
    ``Softmax``): a mask there could drop a class."""
    seen = set() if seen is None else seen
    if tid in graph.output_ids:
        return True
    if tid in seen:
        return False
    seen.add(tid)
    for layer, node, _ in graph.consumers.get(tid, []):
        outs = list(node.flat_output_ids)
        if len(tf.nest.flatten(node.keras_inputs)) == 1 and len(outs) == 1 and \
                _passes_channels(layer) and _reaches_output(graph, outs[0], seen):
            return True
    return False


def _is_gate(graph, tid):
    """True for a squeeze-excite gate: a tensor of one position that, through
    channel-wise layers only, multiplies a feature map it does not come from
    (``GAP -> conv -> conv -> sigmoid -> Multiply``; not hard-swish's
    ``x * relu6(x + 3) / 6``). Its channels are the feature map's, pruned by the
    feature map's mask; a mask of its own would only pin them."""
    from searchlayers import slicing

    if graph.positions(tid) != 1 or tid in graph.output_ids:
        return False
    reach, todo, ends = {tid}, [tid], []
    while todo:
        t = todo.pop()
        users = graph.consumers.get(t, [])
        if not users or t in graph.output_ids:
            return False
        for layer, node, _ in users:
            outs = list(node.flat_output_ids)
            if len(outs) != 1:
                return False
            k = slicing.kind(layer)
            if k == "merge" and _is_multiply(layer):
                ends.append(node)
            elif k == "channelwise" and not isinstance(layer, slicing._DEPTHWISE) and \
                    graph.positions(outs[0]) == 1:
                if outs[0] not in reach:
                    reach.add(outs[0])
                    todo.append(outs[0])
            else:
                return False
    for node in ends:
        ins = [str(id(t)) for t in tf.nest.flatten(node.keras_inputs)]
        if all(i in reach for i in ins):
            return False  # x * f(x): an activation, not a gate
    return bool(ends)


def _is_multiply(layer):
    return isinstance(layer, keras.layers.Multiply) or getattr(layer, "symbol", None) == \
        "math.multiply"


def _producer(graph, tid):
    for layer, node, ins, outs in graph.calls:
        if tid in outs:
            return layer, ins
    return None


def _join(sites, groups):
    sites = [s for s in sites if s is not None]
    for s in sites[1:]:
        groups.union(sites[0], s)
    return sites[0] if sites else None


def _inline_nested(model):
    """``model`` with every nested Functional / Sequential model replayed inline (its
    layers copied with their weights, a layer name already taken gets the nested
    model's name in front); ``model`` itself when nothing is nested. A subclassed
    nested model is an error (its layer graph is unknown)."""
    nested = [l for l in model._flatten_layers(include_self=False, recursive=True)
              if isinstance(l, keras.Model)]
    if not nested:
        return model
    for inner in nested:
        if not getattr(inner, "_is_graph_network", False):
            raise TypeError(
                f"insert_masks: nested model '{inner.name}' ({type(inner).__name__}) has no "
                "layer graph, so its layers cannot get masks; allowed: nested Functional or "
                "Sequential models built on an Input (they are inlined).")
    copies, names = {}, set(l.name for l in model.layers if not isinstance(l, keras.Model))

    def visit_in(net):
        def visit(node, args, kwargs):
            layer = node.layer
            if isinstance(layer, keras.Model):
                return replay(layer, visit_in(layer), tf.nest.flatten((args, kwargs)))
            name = None
            if id(layer) not in copies:
                taken = net is not model and layer.name in names
                name = f"{net.name}_{layer.name}" if taken else layer.name
                names.add(name)
            return call_copy(layer, args, kwargs, copies, name=name)
        return visit

    inputs = [input_like(t) for t in model.inputs]
    return keras.Model(inputs, replay(model, visit_in(model), inputs), name=model.name)


def call_copy(layer, args, kwargs, copies, name=None, cls=None):
    """Calls ``copies[id(layer)]``, the copy of ``layer`` made on its first call
    (``copy_layer``, renamed ``name``, of class ``cls`` if given) with ``layer``'s
    weights set once that call has built it, so a layer that creates weights in ``call``
    (``MultiHeadAttention``) copies too, and a shared layer stays one shared copy. For graph rebuilding: the first
    call's inputs are symbolic (Keras tensors), its result is computed later.

    Example:
        >>> import numpy as np
        >>> d = keras.layers.Dense(2); x = tf.ones([1, 3]); _ = d(x)
        >>> inputs, copies = keras.Input((3,)), {}
        >>> m = keras.Model(inputs, call_copy(d, (inputs,), {}, copies))
        >>> bool(np.allclose(m(x), d(x))), m.layers[1] is copies[id(d)] is not d
        (True, True)
    """
    new = copies.get(id(layer))
    if new is not None:
        return new(*args, **kwargs)
    new = copies[id(layer)] = copy_layer(layer, name=name, cls=cls)
    out = new(*args, **kwargs)
    new.set_weights(layer.get_weights())
    return out


def _mask_folds(graph, sites, hard):
    """``{id(layer): Masked* class}``: the neighbour each mask folds into
    (``searchlayers.layers.figs_fold``): its only consumer (past zero padding)
    when that is a convolution or dense layer, else the BatchNorm that produces it."""
    from searchlayers.layers import figs_fold

    folds = {}
    for tid in sites:
        layer = _only_consumer(graph, tid)
        while isinstance(layer, figs_fold.PADDING):
            layer = _only_consumer(graph, list(layer._inbound_nodes[0].flat_output_ids)[0])
        cls = None if layer is None else figs_fold.consumer_class(layer)
        if cls is not None:
            folds[id(layer)] = cls
            continue
        producer = figs_fold.producer_behind(graph.tensors[tid], hard)  # as it links
        cls = None if producer is None else figs_fold.producer_class(producer)
        if cls is not None and len(producer._inbound_nodes) == 1:
            folds[id(producer)] = cls
    return folds


def _only_consumer(graph, tid):
    """The one layer that reads ``tid`` (called once, on ``tid`` alone), or None."""
    users = graph.consumers.get(tid, [])
    if tid in graph.output_ids or len(users) != 1:
        return None
    layer, node, _ = users[0]
    single = len(layer._inbound_nodes) == 1 and len(tf.nest.flatten(node.keras_inputs)) == 1
    return layer if single else None


def insert_masks(model, skip_output=True, temperature=0.001, hard=False, keep_one=False,
                 initial_logit=2.5, fold=True):
    """A copy of ``model`` with a ``FiGSMask`` after every prunable layer (FiGS).

    Prunable: Conv1D/2D/3D, Dense, SeparableConv, DepthwiseConv (multiplier 1) and
    their larq Quant* versions. The mask goes after the layer's BatchNorm and
    activation (when they follow it alone), so a masked channel is exactly zero
    for every consumer. ``skip_output``: no mask on a model output (the
    classifier), nor on a layer whose output reaches a model output through
    layers that pass its channels on (``Flatten``, ``Reshape``, ``Activation``,
    ``Dropout``, ``Softmax``: MobileNetV3's ``Logits`` conv), so no class can be
    dropped. No mask on a squeeze-excite gate (a one-position tensor multiplying
    a feature map: its channels are the feature map's). Masks of tensors joined
    by an element-wise merge (a residual ``Add``, hard-swish's ``Multiply``)
    share one group (one set of logits); a depthwise convolution's mask shares
    the group of its input's mask; ``Concatenate`` inputs keep separate masks.
    Weights are copied; the input model is left unchanged. Works on Functional
    and Sequential models (a Sequential gives a Sequential).

    Nested models: a Functional or Sequential model used as a layer is inlined
    (recursively): the masked model is flat, the nested model's layers get masks
    like the others, keep their weights and their names (a name the outer model
    already uses gets the nested model's name in front). A subclassed nested
    model (no layer graph) is a TypeError naming it.

    ``fold``: where a mask's only consumer is a convolution or dense layer, or
    its producer a BatchNorm (followed by no activation, or by ReLU with soft
    masks), that neighbour applies the mask to its weights (class ``Masked*``,
    same config and weights) and the mask passes its input through: the same
    model outputs and gradients without a pass over the activation
    (``searchlayers.layers.figs_fold``; the tensors in between differ: a
    sub-model ending at a mask folded into its consumer sees it unmasked).
    ``fold=False``: every mask multiplies.

    Example:
        >>> import searchlayers as sl
        >>> m = sl.keras.Sequential([sl.keras.Input((8, 8, 1)),
        ...     sl.keras.layers.Conv2D(4, 3), sl.keras.layers.ReLU(),
        ...     sl.keras.layers.Flatten(), sl.keras.layers.Dense(10)])
        >>> [type(l).__name__ for l in insert_masks(m).layers]
        ['Conv2D', 'ReLU', 'FiGSMask', 'Flatten', 'Dense']
    """
    from searchlayers import slicing
    from searchlayers.layers.figs import FiGSMask

    if not isinstance(model, keras.Model):
        raise TypeError(f"insert_masks expects a keras.Model, got {type(model).__name__}.")
    fold = checks.boolean("insert_masks", "fold", fold)
    skip_output = checks.boolean("insert_masks", "skip_output", skip_output)
    masked = [layer.name for layer in search_layers(model) if isinstance(layer, FiGSMask)]
    if masked:  # a second pass stacked masks, or failed in Keras on a repeated name
        raise ValueError(f"insert_masks: model '{model.name}' already has FiGS masks "
                         f"({', '.join(masked)}); insert them once (derive, then insert "
                         "into the derived model to search it again).")
    sequential = isinstance(model, keras.Sequential)
    model = _inline_nested(model)
    graph = slicing.Graph(model)
    sites, groups = _mask_sites(graph, skip_output)
    _warn_unprunable(graph, sites)
    folds = _mask_folds(graph, sites, hard) if fold else {}
    members = {}
    for tid in sites:
        members.setdefault(groups.find(tid), []).append(tid)
    group_name = {}
    for root, tids in members.items():
        if len(tids) > 1:
            first = sites[tids[0]].name
            for tid in tids:
                group_name[tid] = f"{first}_group"
    copies = {}

    def visit(node, args, kwargs):
        out = call_copy(node.layer, args, kwargs, copies, cls=folds.get(id(node.layer)))
        flat = [FiGSMask(temperature=temperature, hard=hard, keep_one=keep_one,
                         group=group_name.get(tid), initial_logit=initial_logit,
                         name=f"{sites[tid].name}_mask")(y) if tid in sites else y
                for tid, y in zip(node.flat_output_ids, tf.nest.flatten(out))]
        return tf.nest.pack_sequence_as(out, flat)

    inputs = [input_like(t) for t in model.inputs]
    outputs = replay(model, visit, inputs)
    result = keras.Model(inputs, outputs, name=f"{model.name}_masked")
    if sequential:
        layers = [l for l in result.layers if not isinstance(l, keras.layers.InputLayer)]
        result = keras.Sequential([input_like(model.inputs[0]), *layers],
                                  name=f"{model.name}_masked")
    from searchlayers.search import tie_arch_variables

    tie_arch_variables(result)
    return result


__all__ = ["BN_WHICH", "insert_masks", "train_only_batchnorm"]
