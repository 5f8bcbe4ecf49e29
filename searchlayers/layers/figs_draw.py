"""One draw for all the FiGS masks of a model: a step samples every mask at once.

A ``FiGSMask`` drawing its own mask adds some 30 small ops to a training step
(its step counter, seed, uniform noise and Logistic transform, temperature,
fixed choice, the fused sigmoid and their gradients): 3-5 % of a step on
digits-sized inputs (``benchmarks/figs_overhead.py``). ``draw_jointly(masks)``
has the masks of a model take their training masks from one draw per model
call: their logits, temperatures and fixed choices concatenated, one Logistic
noise per mask group (members of a group draw the same mask, as they do alone:
same logits, seed and step), one fused Logistic-Sigmoid (FiGS eq. 2,
``figs._relaxed_mask``), split back per mask.

The draw's noise is seeded by the first mask's ``noise_seed`` (its seed and
step), so a resumed search continues the same stream; it is not the stream the
masks draw alone. ``searchlayers.search.tie_arch_variables``, which every entry
point runs, sets it up; masks with ``keep_one`` draw alone, and a model call
with a tensor ``training`` flag draws per mask (each in its own branch).
"""

import threading
import weakref

import numpy as np
import tensorflow as tf

from searchlayers import relax
from searchlayers.layers.figs import FiGSMask, _relaxed_mask

# per thread (a MirroredStrategy's replicas trace in their own), per graph: the draws
_LOCAL = threading.local()


class JointDraw:
    """The draw shared by ``masks`` (built ``FiGSMask`` layers with one ``hard``)."""

    def __init__(self, masks):
        self._masks = [weakref.ref(m) for m in masks]
        self._row = {id(m): i for i, m in enumerate(masks)}

    def masks(self):
        """The masks of this draw, in order."""
        return [ref() for ref in self._masks]

    def mask(self, mask):
        """``mask``'s training mask from the current draw of this graph; a new draw
        when ``mask`` has taken its mask from the current one (a new model call)."""
        graphs = _LOCAL.__dict__.setdefault("graphs", weakref.WeakKeyDictionary())
        draws = graphs.setdefault(tf.compat.v1.get_default_graph(), {})
        current = draws.get(id(self))
        if current is None or id(mask) in current[1]:
            current = draws[id(self)] = (self._draw(), set())
        current[1].add(id(mask))
        return current[0][self._row[id(mask)]]

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


def draw_jointly(masks):
    """Makes the built ``FiGSMask`` layers among ``masks`` (without ``keep_one``) take
    their training masks from one draw per model call, one draw per ``hard`` value.

    Example:
        >>> import searchlayers as sl
        >>> x = sl.keras.Input((4,))
        >>> a, b = sl.FiGSMask(name="a"), sl.FiGSMask(name="b")
        >>> model = sl.keras.Model(x, b(sl.keras.layers.Dense(3)(a(x))))
        >>> draw_jointly([a, b]); a.joint_draw is b.joint_draw is not None
        True
    """
    by_hard = {}
    for m in masks:
        if isinstance(m, FiGSMask) and m.built and not m.keep_one:
            by_hard.setdefault(m.hard, []).append(m)
    for members in by_hard.values():
        current = members[0].joint_draw
        if current is not None and current.masks() == members and \
                all(m.joint_draw is current for m in members):
            continue  # idempotent: a draw a trace has begun stays the draw
        joint = JointDraw(members) if len(members) > 1 else None
        for m in members:
            m.joint_draw = joint


__all__ = ["JointDraw", "draw_jointly"]
