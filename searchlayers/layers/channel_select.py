"""``ChannelSelect``: a fixed re-indexing of the channel (last) axis.

Derivation (``searchlayers.slicing.select``) puts one where a derived tensor
holds other supernet channels than its consumer reads: output channel ``j`` is
input channel ``indices[j]``, or zero where ``indices[j]`` is ``-1``. It has no
weights (a gather, plus a zero channel padded on when an index is ``-1``), so
retraining leaves it alone, the cost model counts it as data movement (0 MACs,
0 parameters) and TFLite converts it to GATHER (and PAD).
"""

import tensorflow as tf

from searchlayers import checks
from searchlayers._keras import PlainCall, keras, register


@register
class ChannelSelect(PlainCall, keras.layers.Layer):
    """Output channel ``j`` = input channel ``indices[j]``, or zero where it is -1.

    Args:
        indices: a non-empty 1-D list of ints, each ``-1`` (a zero channel) or an
            input channel ``0 .. channels - 1``; anything below -1 is refused.
            Repeats are allowed (a channel read twice), though derivation never
            makes one: its channel lists are sorted and distinct, so only ``-1``
            can repeat there.

    Example:
        >>> import tensorflow as tf
        >>> x = tf.constant([[10.0, 20.0, 30.0]])
        >>> ChannelSelect([2, -1, 0])(x).numpy().tolist()
        [[30.0, 0.0, 10.0]]
        >>> ChannelSelect([1, 3], name="pick")(x)
        Traceback (most recent call last):
        ...
        ValueError: ChannelSelect 'pick': indices[1] must be -1 or an input channel 0..2 (the input has 3 channels), got 3.
    """

    def __init__(self, indices, **kwargs):
        kwargs.setdefault("trainable", False)  # a fixed map: nothing to learn
        super().__init__(**kwargs)
        where = self._where()
        if hasattr(indices, "numpy"):
            indices = indices.numpy()
        items = checks.sequence(where, "indices", indices, what="a non-empty 1-D list of ints")
        self.indices = tuple(
            checks.integer(where, f"indices[{i}]", v, low=-1,
                           allowed="-1 or an input channel (an integer >= 0)")
            for i, v in enumerate(items))

    def _where(self):
        return f"ChannelSelect '{self.name}'"

    def build(self, input_shape):
        shape = tf.TensorShape(input_shape)
        channels = shape[-1] if shape.rank else None
        if channels is None:
            checks.fail(self._where(), "the input shape", shape,
                        "a shape with a known channel (last) dimension")
        for i, index in enumerate(self.indices):
            if index >= channels:
                checks.fail(self._where(), f"indices[{i}]", index, f"-1 or an input channel "
                            f"0..{channels - 1} (the input has {channels} channels)")
        self.channels = int(channels)
        super().build(input_shape)

    def call(self, inputs):
        axis = inputs.shape.rank - 1
        indices = list(self.indices)
        if -1 in indices:  # a zero channel after the last one, read by every -1
            pad = [[0, 0]] * axis + [[0, 1]]
            inputs = tf.pad(inputs, pad)
            indices = [self.channels if i == -1 else i for i in indices]
        return tf.gather(inputs, indices, axis=axis)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)[:-1].concatenate([len(self.indices)])

    def get_config(self):
        return {**super().get_config(), "indices": list(self.indices)}


__all__ = ["ChannelSelect"]
