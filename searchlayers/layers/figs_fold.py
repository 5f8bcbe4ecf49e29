"""A FiGS mask folded into a neighbour's weights: no pass over the activation.

A ``FiGSMask`` multiplies every channel of an activation by its mask: in
training one multiply over the activation forward, two and a reduction
backward, 10-15 % of a step on small tensors (``benchmarks/figs_overhead.py``).
Where a neighbour is linear in that channel, scaling the neighbour's
per-channel weights (vectors, or a kernel) by the mask gives the same output
and the same gradients:

- the mask's only consumer is a convolution or dense layer (zero padding; a
  ``ZeroPadding`` layer between them too): ``conv(x * m, W) = conv(x, W * m)``,
  ``m`` along the kernel's input-channel axis; exact for any mask and anything
  before it (ReLU6 included);
- the mask's producer is a ``BatchNormalization`` (scaled, channels last)
  followed by no activation: ``BN(x; gamma, beta) * m = BN(x; gamma * m, beta * m)``,
  exact; or by ``relu`` / ``LeakyReLU`` (``f(m z) = m f(z)`` for ``m >= 0``) with
  a soft mask: values exact, gradients too except where ``m == 0``, which a
  soft mask reaches only where its own gradient is 0 (a hard mask's
  straight-through gradient is not, so hard masks fold through no activation).

``searchlayers.transforms.insert_masks`` gives such a neighbour its ``Masked*``
class below (same config and weights); the mask stays in the graph (derive,
cost and the decision metrics read it) and passes its input through. The two
link when the functional model is built (so again after loading): the mask
looks up its producer through the activations, a folded consumer looks up its
input's producer. Copies and derived models get the plain Keras class back
(``plain_class``).

What changes: the tensors between a mask and the layer that applies it. A mask
folded into its consumer passes its input through, so its output is unmasked
(the consumer masks it): a model in which it feeds another layer or is an
output is an error (``check_folds``, run by ``tie_arch_variables``, so by every
entry point); one folded into its BatchNorm makes the BN's output masked. Take
sub-models from the middle of a masked model built with
``insert_masks(..., fold=False)``.
"""

import inspect
import threading
import weakref

import tensorflow as tf

from searchlayers import graph
from searchlayers._keras import keras, register

_L = keras.layers
# Between a mask and the consumer that folds it: they commute with a channel scale.
PADDING = (_L.ZeroPadding1D, _L.ZeroPadding2D, _L.ZeroPadding3D)
_LOCAL = threading.local()  # per thread: a replica of a MirroredStrategy traces in its own


class _Scaled:
    """A weight attribute that, inside a folded call, reads as ``weight * mask``.

    Keras layers read their weights as attributes in ``call`` (``self.kernel``,
    ``self.gamma``); overriding the read per thread keeps Keras' own ``call``
    (every padding, dtype and BatchNorm mode) and is safe when replicas trace
    the same layer at once."""

    def __set_name__(self, owner, name):
        self.name, self.key = name, f"_unscaled_{name}"

    def __get__(self, layer, owner=None):
        if layer is None:
            return self
        scaled = getattr(_LOCAL, "scaled", {}).get((id(layer), self.name))
        return layer.__dict__.get(self.key) if scaled is None else scaled

    def __set__(self, layer, value):
        layer.__dict__[self.key] = value


class FoldsMask:
    """Mixin of the ``Masked*`` layers: ``scaled`` weights times the linked mask.

    ``side``: ``"input"``, the mask is on the layer's input (``m`` scales the
    kernel's input-channel axis, ``[C, 1]``); ``"output"``, on its output
    (``m`` scales per-channel vectors, ``[C]``)."""

    plain_class = None
    scaled = ()
    side = "input"

    def folded_mask(self):
        """The linked ``FiGSMask``, or None (the layer then computes as its plain class)."""
        ref = self.__dict__.get("_folded_mask")
        return None if ref is None else ref()

    def fold(self, mask):
        """Links ``mask``: this layer applies it, the mask passes its input through."""
        self.__dict__["_folded_mask"] = weakref.ref(mask)  # no Keras tracking: not a sublayer
        mask.fold_into(self)

    def __call__(self, inputs, *args, **kwargs):
        if self.side == "input" and _producer(inputs) is not None:  # being connected
            tensor = inputs
            while isinstance(_producer(tensor), PADDING):
                tensor = _input(tensor)
            producer, mask = _producer(tensor), self.folded_mask()
            if mask is None and hasattr(producer, "fold_into"):
                self.fold(producer)
            elif mask is not None and producer is not mask:
                raise ValueError(
                    f"{type(self).__name__} '{self.name}': it applies FiGSMask "
                    f"'{mask.name}' to its kernel, so it cannot also be called on the "
                    f"output of '{producer.name}'; allowed: the mask's output (build the "
                    "model with insert_masks(..., fold=False) to share this layer).")
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs, training=None):
        mask = self.folded_mask()
        if mask is None:
            return self._plain_call(inputs, training)
        m = mask.mask(training, joint=True)
        m = m[:, None] if self.side == "input" else m  # the kernel's input-channel axis
        table = _LOCAL.__dict__.setdefault("scaled", {})
        for name in self.scaled:
            weight = getattr(self, name)
            if weight is not None:
                table[(id(self), name)] = weight * tf.cast(m, weight.dtype)
        try:
            return self._plain_call(inputs, training)
        finally:
            for name in self.scaled:
                table.pop((id(self), name), None)

    def _plain_call(self, inputs, training):
        if self._plain_takes_training:
            return super().call(inputs, training=training)
        return super().call(inputs)


def _masked(plain, scaled, side="input"):
    """The registered ``Masked<plain>`` class: ``plain`` with ``FoldsMask``."""
    body = {name: _Scaled() for name in scaled}
    body.update(plain_class=plain, scaled=scaled, side=side,
                _plain_takes_training="training" in inspect.signature(plain.call).parameters,
                __module__=__name__,
                __doc__=f"``{plain.__name__}`` that applies a folded ``FiGSMask`` "
                        f"(see ``searchlayers.layers.figs_fold``).")
    cls = type(f"Masked{plain.__name__}", (FoldsMask, plain), body)
    for name in scaled:
        getattr(cls, name).__set_name__(cls, name)
    return register(cls)


MaskedBatchNormalization = _masked(_L.BatchNormalization, ("gamma", "beta"), side="output")
_CONSUMERS = {plain: _masked(plain, (weight,)) for plain, weight in [
    (_L.Conv1D, "kernel"), (_L.Conv2D, "kernel"), (_L.Conv3D, "kernel"),
    (_L.Dense, "kernel"), (_L.DepthwiseConv1D, "depthwise_kernel"),
    (_L.DepthwiseConv2D, "depthwise_kernel"), (_L.SeparableConv1D, "depthwise_kernel"),
    (_L.SeparableConv2D, "depthwise_kernel")]}


def consumer_class(layer):
    """The ``Masked*`` class that folds a mask on ``layer``'s input, or None.

    Only Keras' own classes (a subclass, larq's quantized layers included, may
    transform its input first), zero padding only, and ``groups == 1``.

    Example:
        >>> consumer_class(keras.layers.Conv2D(4, 3)).__name__
        'MaskedConv2D'
        >>> consumer_class(keras.layers.Conv2D(4, 3, groups=2)) is None
        True
    """
    if getattr(layer, "groups", 1) != 1:
        return None
    return _CONSUMERS.get(type(layer))


def producer_class(layer):
    """``MaskedBatchNormalization`` when ``layer`` is a Keras BatchNormalization
    that can carry a mask on its output (scaled, channels last), else None.

    Example:
        >>> producer_class(keras.layers.BatchNormalization()).__name__
        'MaskedBatchNormalization'
        >>> producer_class(keras.layers.BatchNormalization(scale=False)) is None
        True
    """
    if type(layer) is not _L.BatchNormalization or not layer.scale:
        return None
    return MaskedBatchNormalization if _channels_last(layer) else None


def _channels_last(layer):
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    shape = getattr(layer, "_build_input_shape", None)
    rank = None if shape is None else tf.TensorShape(shape).rank
    return len(axis) == 1 and (axis[0] == -1 or (rank is not None and axis[0] == rank - 1))


def passes_mask(layer, hard):
    """True when ``f(m * z) = m * f(z)`` for a mask ``m`` of ``FiGSMask(hard=hard)``
    (soft masks only: ``relu`` / ``LeakyReLU`` / ``linear``), so a mask after
    ``f`` can fold into the BatchNorm before it.

    Example:
        >>> passes_mask(keras.layers.ReLU(), False), passes_mask(keras.layers.ReLU(6.0), False)
        (True, False)
    """
    if hard or layer is None:
        return False
    if isinstance(layer, _L.Activation):
        return layer.activation in (keras.activations.relu, keras.activations.linear)
    if type(layer) is _L.ReLU:
        return layer.max_value is None and float(layer.threshold) == 0.0
    return type(layer) is _L.LeakyReLU


def producer_behind(tensor, hard):
    """The layer that produces the Keras tensor ``tensor`` past the activations
    ``passes_mask(..., hard)`` allows: where a mask on ``tensor`` can fold if that
    layer is a BatchNorm (None for an eager tensor)."""
    while passes_mask(_producer(tensor), hard):
        tensor = _input(tensor)
    return _producer(tensor)


def link_producer(mask, inputs):
    """Links ``mask`` to the ``MaskedBatchNormalization`` that produces ``inputs``
    (``producer_behind``), when there is one."""
    layer = producer_behind(inputs, mask.hard)
    if isinstance(layer, FoldsMask) and layer.side == "output" and layer.folded_mask() is None:
        layer.fold(mask)


def check_folds(model):
    """Raises when a mask folded into its consumer feeds another layer of ``model``,
    or is one of its outputs: there it would pass its input through unmasked.

    Example:
        >>> import searchlayers as sl
        >>> x = keras.Input((4,))
        >>> check_folds(keras.Model(x, sl.FiGSMask()(x)))  # not folded: fine
    """
    if not graph.is_graph(model):
        return
    for node in graph.nodes(model):
        if isinstance(node.layer, keras.Model) and graph.is_graph(node.layer):
            check_folds(node.layer)
        elif not isinstance(node.layer, PADDING):
            for tensor in tf.nest.flatten(node.keras_inputs):
                _check_reader(tensor, node.layer, model)
    for tensor in model.outputs:
        _check_reader(tensor, None, model)


def _check_reader(tensor, layer, model):
    mask = _producer(tensor)
    target = getattr(mask, "folded_into", None)
    if isinstance(target, FoldsMask) and target.side == "input" and target is not layer:
        reader = f"layer '{layer.name}'" if layer is not None else "an output"
        raise ValueError(
            f"model '{model.name}': FiGSMask '{mask.name}' is folded into "
            f"'{target.name}' (it passes its input through), so its output cannot "
            f"feed {reader}; allowed: only '{target.name}' reads it (take parts of a "
            "masked model from one built with insert_masks(..., fold=False)).")


def _producer(tensor):
    """The layer whose output the Keras tensor ``tensor`` is (None for an eager one)."""
    history = getattr(tensor, "_keras_history", None)
    return None if history is None else history.layer


def _input(tensor):
    """The input of the call that produced ``tensor`` (a shared layer: that call's)."""
    history = tensor._keras_history
    node = history.layer._inbound_nodes[history.node_index]
    inputs = tf.nest.flatten(node.keras_inputs)
    return inputs[0] if len(inputs) == 1 else None


__all__ = ["PADDING", "FoldsMask", "MaskedBatchNormalization", "check_folds",
           "consumer_class", "link_producer", "passes_mask", "producer_behind",
           "producer_class"]
