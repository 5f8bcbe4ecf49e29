"""Candidate operations: the registry of op names ``MixedOp`` understands.

A factory takes ``(channels, strides)`` and returns a fresh Keras layer whose
output has ``channels`` channels and is ``strides`` times smaller spatially.
The DARTS space is registered here; later modules (binary ops, MobileNet
blocks) register theirs with ``register_op``.

Composite ops are ``keras.Sequential`` stacks of stock layers, so the cost
model, serialization and derivation see ordinary Keras layers.

Example:
    >>> op = get_op("sep_conv_3x3", channels=8, strides=1)
    >>> op(tf.zeros([1, 6, 6, 8])).shape
    TensorShape([1, 6, 6, 8])
"""

import tensorflow as tf

from searchlayers import checks
from searchlayers._keras import PlainCall, keras, register
from searchlayers.layers.base import build_named, name_after

L = keras.layers
_REGISTRY = {}
# The DARTS code's nn.BatchNorm2d keeps PyTorch's momentum 0.1, i.e. Keras' 0.9.
# Keras' default 0.99 leaves the moving statistics far from the data after the
# few hundred steps of a small retrain, and the model fails at inference.
BN_MOMENTUM = 0.9


def register_op(name, factory=None):
    """Registers ``factory(channels, strides) -> layer`` under ``name``.

    Usable as a decorator. Re-registering a name replaces it.

    Example:
        >>> @register_op("my_conv_1x1")
        ... def _my_conv(channels, strides):
        ...     return keras.layers.Conv2D(channels, 1, strides)
        >>> "my_conv_1x1" in op_names()
        True
    """
    checks.string("register_op", "name", name)
    if factory is None:
        return lambda f: register_op(name, f)
    if not callable(factory):
        raise checks.ArgumentTypeError(
            f"register_op({name!r}): factory must be a callable factory(channels, strides) "
            f"-> layer, got {checks.show(factory)} ({type(factory).__name__}).")
    _REGISTRY[name] = factory
    return factory


def op_names():
    """The registered op names, sorted.

    Example:
        >>> "skip_connect" in op_names()
        True
    """
    return sorted(_REGISTRY)


def check_op_name(name, where="MixedOp"):
    """Raises ValueError naming the op and the registered names when unknown.

    Example:
        >>> check_op_name("skip_connect")
    """
    checks.string(where, "candidate op name", name)
    if name not in _REGISTRY:
        raise ValueError(
            f"{where}: unknown candidate op {name!r}. Registered ops: "
            f"{', '.join(op_names())}. Register your own with "
            "searchlayers.layers.register_op(name, factory)."
        )


def get_op(name, channels, strides=1, where="get_op", scope=None):
    """A fresh layer for the registered op ``name`` (see ``check_op_name``);
    ``where`` (the calling layer) starts any error message. ``scope`` (the
    owning layer's name) names the op ``{scope}_{name}`` and its layers after it.

    Example:
        >>> get_op("max_pool_3x3", channels=4, strides=2)(tf.zeros([1, 4, 4, 4])).shape
        TensorShape([1, 2, 2, 4])
        >>> [l.name[:20] for l in get_op("conv_3x3", 4, scope="edge").layers]
        ['edge_conv_3x3_re_lu...', 'edge_conv_3x3_conv2d...', 'edge_conv_3x3_batch_...']
        >>> get_op("conv_3x3", channels=0)
        Traceback (most recent call last):
        ...
        ValueError: get_op: channels must be an integer >= 1, got 0.
    """
    check_op_name(name, where)
    channels = checks.integer(where, "channels", channels, low=1)  # not Keras' `filters=0`
    op = _REGISTRY[name](channels, checks.integer(where, "strides", strides, low=1))
    if scope is not None:
        name_after(op, f"{scope}_{name}")
    return op


@register
class Zeroise(PlainCall, L.Layer):
    """The 'none' op: an all-zero output of ``channels`` channels, stride ``strides``.

    Example:
        >>> Zeroise(strides=2)(tf.ones([1, 4, 4, 3])).shape
        TensorShape([1, 2, 2, 3])
    """

    def __init__(self, strides=1, channels=None, **kwargs):
        super().__init__(**kwargs)
        where = f"Zeroise '{self.name}'"
        self.strides = checks.integer(where, "strides", strides, low=1)
        self.channels = checks.integer(where, "channels", channels, low=1, none_ok=True)

    def call(self, x):
        if self.strides > 1:  # every spatial axis (none on a [batch, features] input)
            s = slice(None, None, self.strides)
            x = x[(slice(None),) + (s,) * (x.shape.rank - 2) + (slice(None),)]
        if self.channels is None or self.channels == x.shape[-1]:
            return tf.zeros_like(x)
        shape = tf.concat([tf.shape(x)[:-1], [self.channels]], 0)
        return tf.zeros(shape, x.dtype)

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape).as_list()
        s = self.strides
        for axis in range(1, len(shape) - 1):
            if shape[axis] is not None:
                shape[axis] = -(-shape[axis] // s)
        if self.channels is not None:
            shape[-1] = self.channels
        return tf.TensorShape(shape)

    def get_config(self):
        return {**super().get_config(), "strides": self.strides, "channels": self.channels}


def _seq(layers):
    return keras.Sequential(layers)


def _relu_conv_bn(channels, kernel, strides, affine=False):
    return [
        L.ReLU(),
        L.Conv2D(channels, kernel, strides, padding="same", use_bias=False),
        L.BatchNormalization(center=affine, scale=affine, momentum=BN_MOMENTUM),
    ]


@register
class FactorizedReduce(PlainCall, L.Layer):
    """DARTS' information-keeping strided skip (ReLU, two shifted stride-2
    1x1 convs, concat, BN).

    Example:
        >>> FactorizedReduce(8)(tf.ones([1, 4, 4, 8])).shape
        TensorShape([1, 2, 2, 8])
    """

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = checks.integer(f"FactorizedReduce '{self.name}'", "channels", channels,
                                       low=2)
        half = self.channels // 2
        self.conv_a = L.Conv2D(half, 1, 2, use_bias=False, name=f"{self.name}_conv_a")
        self.conv_b = L.Conv2D(self.channels - half, 1, 2, use_bias=False,
                               name=f"{self.name}_conv_b")
        self.bn = L.BatchNormalization(center=False, scale=False, momentum=BN_MOMENTUM,
                                     name=f"{self.name}_bn")

    def build(self, input_shape):
        out = list(input_shape[:-1]) + [self.channels]
        for layer, shape in ((self.conv_a, input_shape), (self.conv_b, input_shape), (self.bn, out)):
            build_named(layer, shape)
        super().build(input_shape)

    def call(self, x, training=None):
        x = tf.nn.relu(x)
        a = self.conv_a(x)
        # Shift by one pixel so the two halves see complementary positions;
        # zero-pad so odd sizes match ('valid' 1x1 stride 2 of H gives ceil(H/2)).
        shifted = tf.pad(x[:, 1:, 1:, :], [[0, 0], [0, 1], [0, 1], [0, 0]])
        b = self.conv_b(shifted)
        return self.bn(tf.concat([a, b], axis=-1), training=training)

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape).as_list()
        for axis in (1, 2):
            if shape[axis] is not None:
                shape[axis] = -(-shape[axis] // 2)
        shape[-1] = self.channels
        return tf.TensorShape(shape)

    def cost(self, input_shape):
        """Its parts: the two strided 1x1 convs (on the input and on its one-pixel
        shift, same shape) and the BatchNorm; ReLU, shift and concat count nothing.

        Example:
            >>> fr = FactorizedReduce(8); _ = fr(tf.ones([1, 4, 4, 8]))
            >>> c = fr.cost((None, 4, 4, 8))   # 2 convs: 2*2 positions * 8 in * 4 out
            >>> c.float_macs, c.float_params    # 2 * 8 * 4 kernels + 2 * 8 BN stats
            (256, 80)
        """
        from searchlayers import cost as cost_lib  # cost imports layers lazily too

        out = self.compute_output_shape(input_shape)
        return (cost_lib.layer_cost(self.conv_a, input_shape)
                + cost_lib.layer_cost(self.conv_b, input_shape)
                + cost_lib.layer_cost(self.bn, out, out))

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


def _skip(channels, strides):
    return L.Activation("linear") if strides == 1 else FactorizedReduce(channels)


def _pool(kind, channels, strides):
    pool = (L.MaxPool2D if kind == "max" else L.AveragePooling2D)(3, strides, padding="same")
    return _seq([pool, L.BatchNormalization(center=False, scale=False, momentum=BN_MOMENTUM)])


def _conv(kernel):
    def factory(channels, strides):
        return _seq(_relu_conv_bn(channels, kernel, strides))

    return factory


def _subsample(strides):
    # TF convolutions cannot combine strides > 1 with dilation > 1; a dilated
    # stride-1 conv followed by a 1x1 stride-s pick gives the strided output.
    return [L.MaxPool2D(1, strides)] if strides > 1 else []


def _sep(kernel):
    """DARTS SepConv: (ReLU, depthwise, pointwise 1x1, BN) twice, stride in the first."""

    def factory(channels, strides):
        layers = []
        for s in (strides, 1):
            layers += [
                L.ReLU(),
                L.DepthwiseConv2D(kernel, s, padding="same", use_bias=False),
                L.Conv2D(channels, 1, use_bias=False),
                L.BatchNormalization(center=False, scale=False, momentum=BN_MOMENTUM),
            ]
        return _seq(layers)

    return factory


def _dil(kernel):
    """DARTS DilConv: ReLU, depthwise dilation 2, pointwise 1x1, BN."""

    def factory(channels, strides):
        return _seq(
            [L.ReLU(), L.DepthwiseConv2D(kernel, 1, padding="same", dilation_rate=2, use_bias=False)]
            + _subsample(strides)
            + [L.Conv2D(channels, 1, use_bias=False),
               L.BatchNormalization(center=False, scale=False, momentum=BN_MOMENTUM)],
        )

    return factory


register_op("none", lambda c, s: Zeroise(strides=s, channels=c))
register_op("zeroise", lambda c, s: Zeroise(strides=s, channels=c))
register_op("skip_connect", _skip)
register_op("identity", _skip)
register_op("max_pool_3x3", lambda c, s: _pool("max", c, s))
register_op("avg_pool_3x3", lambda c, s: _pool("avg", c, s))
for _k in (1, 3, 5, 7):
    register_op(f"conv_{_k}x{_k}", _conv(_k))
for _k in (3, 5):
    register_op(f"sep_conv_{_k}x{_k}", _sep(_k))
    register_op(f"dil_conv_{_k}x{_k}", _dil(_k))

DARTS_OPS = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
