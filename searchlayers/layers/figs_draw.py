"""One draw for all the FiGS masks of a model: a step samples every mask at once.

A ``FiGSMask`` drawing its own mask adds some 30 small ops to a training step
(its step counter, seed, uniform noise and Logistic transform, temperature,
fixed choice, the fused sigmoid and their gradients): 3-5 % of a step on
digits-sized inputs (``benchmarks/figs_overhead.py``). ``draw_jointly(model)``
has the masks of a model take their training masks from one draw per model
call: their logits, temperatures and fixed choices concatenated, one Logistic
noise per mask group (members of a group draw the same mask, as they do alone:
same logits, seed and step), one fused Logistic-Sigmoid (FiGS eq. 2,
``figs._relaxed_mask``), split back per mask.

The draw's noise is seeded by the first mask's ``noise_seed`` (its seed and
step), so a resumed search continues the same stream; it is not the stream the
masks draw alone. ``searchlayers.search.tie_arch_variables``, which every entry
point runs, sets it up. Masks draw alone when they have ``keep_one``, in a call
with a tensor ``training`` flag (each ``tf.cond`` branch is its own graph), and
when their ``mask()`` is called directly rather than by a layer's call. One
case shares a draw across calls: two parts of one model called one after the
other in one traced function, the second holding no first mask of the draw
(call the whole model, or the parts in separate functions).
"""

import threading
import weakref

import numpy as np
import tensorflow as tf

from searchlayers import graph, relax
from searchlayers._keras import keras
from searchlayers.layers.figs import _relaxed_mask, figs_masks

_DRAWS = weakref.WeakKeyDictionary()  # graph -> thread -> the current draws


class JointDraw:
    """The draw shared by ``masks`` (built ``FiGSMask`` layers with one ``hard``), in
    the order a model call asks for them (``masks_in_call_order``)."""

    def __init__(self, masks):
        self._masks = [weakref.ref(m) for m in masks]
        self._row = {id(m): i for i, m in enumerate(masks)}

    def masks(self):
        """The masks of this draw, in order."""
        return [ref() for ref in self._masks]

    def mask(self, mask):
        """``mask``'s training mask from the current draw of this graph and thread.

        A new draw starts with the first mask of a model call, or when a mask asks
        again (a call of part of the model): so a draw never outlives the call
        (and the gradient tape) it was made in."""
        draws = _draws()
        current = draws.get(self)
        row = self._row[id(mask)]
        out = None if current is None else current[0][row]()
        if out is None or row == 0 or id(mask) in current[1]:
            tensors = self._draw()
            # graph tensors hold their graph: keep weak references, so the graph can go
            keep = (lambda t: lambda: t) if tf.executing_eagerly() else weakref.ref
            current = draws[self] = ([keep(t) for t in tensors], set())
            out = tensors[row]
        current[1].add(id(mask))
        return out

    def _draw(self):
        masks = self.masks()
        sizes = [m.channels for m in masks]
        logits = tf.concat([m.arch("logits") for m in masks], 0)
        noise = relax.logistic_noise(logits.shape[:1], masks[0].noise_seed())
        shared = _group_rows(masks)
        if shared is not None:  # members of a group: the same noise, the same mask
            noise = tf.gather(noise, shared)
        owner = np.repeat(np.arange(len(masks)), sizes)  # each row's mask
        temperature = tf.gather(tf.stack([m.temperature for m in masks]), owner)
        choice = tf.concat([m.choice for m in masks], 0)
        out = _relaxed_mask(logits, noise, temperature, choice, masks[0].hard)
        return tf.split(out, sizes)


def _draws():
    """``{draw: (masks, served)}`` of this graph and thread (a MirroredStrategy's
    replicas trace in their own threads); an entry goes with its draw."""
    per_graph = _DRAWS.setdefault(tf.compat.v1.get_default_graph(), {})
    return per_graph.setdefault(threading.get_ident(), weakref.WeakKeyDictionary())


def _group_rows(masks):
    """For each channel row, the row of the same channel of the first mask with the
    same logits (its group's first member); None when no two masks share logits."""
    first, rows, start = {}, [], 0
    for m in masks:
        begin = first.setdefault(id(m.arch("logits")), start)
        rows.append(np.arange(begin, begin + m.channels))
        start += m.channels
    rows = np.concatenate(rows)
    return None if np.array_equal(rows, np.arange(start)) else rows


def masks_in_call_order(model):
    """The ``FiGSMask`` layers of ``model`` in the order a call of it asks for their
    masks: the run order (``graph.nodes``, nested models inline) of the layer that
    applies each, the mask or the neighbour it is folded into (``figs_fold``).
    Masks whose layer is not a node of the model's graph (inside a custom layer or a
    subclassed model: their order is unknown) are left out.

    Example:
        >>> import searchlayers as sl
        >>> x = sl.keras.Input((4,))
        >>> y = sl.FiGSMask(name="b")(sl.FiGSMask(name="a")(x))
        >>> [m.name for m in masks_in_call_order(sl.keras.Model(x, y))]
        ['a', 'b']
    """
    position = {}

    def visit(net):
        for node in graph.nodes(net):
            if isinstance(node.layer, keras.Model) and graph.is_graph(node.layer):
                visit(node.layer)
            else:
                position.setdefault(id(node.layer), len(position))

    if graph.is_graph(model):
        visit(model)
    masks = [m for m in figs_masks(model) if id(m.folded_into or m) in position]
    return sorted(masks, key=lambda m: position[id(m.folded_into or m)])


def draw_jointly(model):
    """Makes the built ``FiGSMask`` layers of ``model`` (without ``keep_one``; in the
    model's graph, ``masks_in_call_order``: the others draw alone) take their training
    masks in its calls from one draw per call, one per ``hard`` value.
    Masks that already draw together (tied by this model, or by a larger one that
    contains it) keep their draw; a draw that loses masks to a new one is made again
    for the masks it keeps.

    Example:
        >>> import searchlayers as sl
        >>> x = sl.keras.Input((4,))
        >>> a, b = sl.FiGSMask(name="a"), sl.FiGSMask(name="b")
        >>> model = sl.keras.Model(x, b(sl.keras.layers.Dense(3)(a(x))))
        >>> draw_jointly(model); a.joint_draw is b.joint_draw is not None
        True
    """
    ordered = masks_in_call_order(model)
    by_hard = {}
    for m in ordered:
        if m.built and not m.keep_one:
            by_hard.setdefault(m.hard, []).append(m)
    for m in figs_masks(model):
        if m not in ordered and m.joint_draw is not None:
            _assign([x for x in m.joint_draw.masks() if x is not m and x is not None])
            m.joint_draw = None
    for members in by_hard.values():
        current = members[0].joint_draw
        if current is not None and all(m.joint_draw is current for m in members):
            continue  # idempotent: a draw a trace has begun stays the draw
        old = {id(m.joint_draw): m.joint_draw for m in members if m.joint_draw is not None}
        _assign(members)
        for draw in old.values():
            _assign([m for m in draw.masks() if m is not None and m.joint_draw is draw])


def _assign(members):
    joint = JointDraw(members) if len(members) > 1 else None
    for m in members:
        m.joint_draw = joint


__all__ = ["JointDraw", "draw_jointly", "masks_in_call_order"]
