"""``SearchLayer``: the one protocol every search layer answers.

1. *Architecture variables*: trainable weights named ``arch_*`` (created with
   ``add_arch_weight``). Layers with the same ``arch_key`` share them once
   ``searchlayers.search.tie_arch_variables(model)`` has run (every entry point
   of the package — ``SearchModel``, the callbacks, ``derive``,
   ``arch_variables`` — runs it).
2. *Sampling*: through ``searchlayers.relax``, with a non-trainable
   ``temperature`` variable (a callback assigns it; no retracing) and stateless
   noise seeded by ``[seed, sample_step]``. ``sample_step`` is a variable that
   every replica reads alike, so replicas sample the same architecture and a
   resumed search continues the same noise stream.
3. *Expected cost*: ``cost(input_shape)`` returns a ``searchlayers.cost.Cost``
   whose fields are differentiable tensors.
4. *Derivation*: ``sample_choice`` picks a discrete choice, ``set_choice``
   fixes the supernet's forward pass to it, ``derived_layer`` returns the plain
   layer that replaces this one.
"""

import zlib

import tensorflow as tf

from searchlayers import checks, relax
from searchlayers._keras import keras

# Returned by ``derived_layer`` when the choice removes the layer's output
# (Zeroise): the edge and its compute disappear from the derived model.
ZERO = "zero"


def is_arch_variable(variable):
    """True for architecture variables (``arch_*``), False for network weights.

    Example:
        >>> import tensorflow as tf
        >>> is_arch_variable(tf.Variable(0.0, name="mixed_op/arch_logits"))
        True
    """
    leaf = variable.name.split("/")[-1]
    return leaf.startswith("arch_")


class SearchLayer(keras.layers.Layer):
    """Base class of the search layers (see the module docstring).

    Args:
        arch_key: layers with the same key share architecture variables.
        temperature: initial relaxation temperature, a number > 0.
        seed: integer seed of the layer's noise; default: a hash of its name.

    Example:
        >>> class Gate(SearchLayer):
        ...     def build(self, input_shape):
        ...         self.logit = self.add_arch_weight("logit", [1])
        ...         super().build(input_shape)
        ...     def call(self, x):
        ...         return x * tf.sigmoid(self.logit)
        >>> Gate()(tf.ones([1, 2])).shape
        TensorShape([1, 2])
    """

    def __init__(self, arch_key=None, temperature=1.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.arch_key = arch_key
        self.initial_temperature = relax.check_temperature(
            temperature, f"{type(self).__name__} '{self.name}'"
        )
        seed = checks.integer(f"{type(self).__name__} '{self.name}'", "seed", seed, low=0,
                              none_ok=True)
        self.seed = seed if seed is not None else zlib.crc32(self.name.encode()) % (2**31)
        self._arch = {}

    # -- state ---------------------------------------------------------------
    def build(self, input_shape):
        self.temperature = self.add_weight(
            "temperature",
            shape=[],
            initializer=keras.initializers.Constant(self.initial_temperature),
            trainable=False,
        )
        self.sample_step = self.add_weight(
            "sample_step",
            shape=[],
            dtype=tf.int64,
            initializer="zeros",
            trainable=False,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )
        super().build(input_shape)

    def add_arch_weight(self, name, shape, initializer=None):
        """Creates a trainable architecture variable ``arch_<name>``.

        Default initializer: ``1e-3 * randn`` (DARTS, BARS), seeded by the layer.
        """
        if initializer is None:
            initializer = keras.initializers.RandomNormal(stddev=1e-3, seed=self.seed)
        var = self.add_weight(f"arch_{name}", shape=shape, initializer=initializer, trainable=True)
        self._arch[name] = var
        return var

    def arch(self, name):
        """The (possibly shared) architecture variable ``name``."""
        return self._arch[name]

    @property
    def arch_weights(self):
        """This layer's architecture variables."""
        return list(self._arch.values())

    def share_arch_from(self, other):
        """Makes this layer use ``other``'s architecture variables (same key)."""
        for name, var in other._arch.items():
            mine = self._arch.get(name)
            if mine is None or mine is var:
                continue
            if mine.shape != var.shape:
                raise ValueError(
                    f"{type(self).__name__} '{self.name}' and '{other.name}' share "
                    f"arch_key={self.arch_key!r} but their arch_{name} shapes differ: "
                    f"{mine.shape} vs {var.shape}. Layers sharing a key need the same "
                    "number of choices."
                )
            self._trainable_weights = [var if w is mine else w for w in self._trainable_weights]
            self._arch[name] = var

    def noise_seed(self):
        """``[seed, step]`` for this call's noise; advances the shared step."""
        step = self.sample_step.assign_add(1)
        return tf.stack([tf.constant(self.seed, tf.int64), step])

    # -- protocol for subclasses ----------------------------------------------
    def probabilities(self):
        """Current distribution over choices (no noise)."""
        raise NotImplementedError

    def cost(self, input_shape):
        """Expected ``searchlayers.cost.Cost`` under ``probabilities()``."""
        raise NotImplementedError

    def sample_choice(self, strategy="argmax", seed=None):
        """A JSON-serializable discrete choice ("argmax" or "sample")."""
        raise NotImplementedError

    def set_choice(self, choice):
        """Fixes the forward pass to ``choice`` (``None`` clears it)."""
        raise NotImplementedError

    def check_choice(self, choice):
        """``choice`` (normalized) if this layer accepts it, else ValueError /
        TypeError naming the layer, the choice and what is allowed.

        Default: an integer index into ``choice_names`` (layers with
        ``num_choices``); layers with another kind of choice override it.
        ``searchlayers.architecture`` validates records with it.
        """
        n = getattr(self, "num_choices", None)
        if n is None:
            return choice
        listing = ", ".join(f"{i}: {c}" for i, c in enumerate(self.choice_names))
        return checks.integer(
            f"{type(self).__name__} '{self.name}'", "choice", choice, low=0, high=n - 1,
            allowed=f"an integer index in 0..{n - 1} ({listing})",
        )

    def derived_layer(self, choice):
        """The plain Keras layer (weights inherited) or ``ZERO`` for ``choice``."""
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.update(
            arch_key=self.arch_key,
            temperature=self.initial_temperature,
            seed=self.seed,
        )
        return config


def search_layers(model):
    """Every ``SearchLayer`` inside ``model`` (nested models included), in order.

    Example:
        >>> search_layers(keras.Sequential([keras.layers.Dense(2)]))
        []
    """
    return [
        layer
        for layer in model._flatten_layers(include_self=True, recursive=True)
        if isinstance(layer, SearchLayer)
    ]


# -- helpers the layers share with derive / slicing / regularizers (which re-export
# them): the layers import nothing above them --------------------------------------------
def copy_layer(layer, input_shape=None, name=None):
    """A fresh copy of ``layer`` with the same config and weights (and ``name``).

    Example:
        >>> d = keras.layers.Dense(2); _ = d(tf.ones([1, 3]))
        >>> copy_layer(d, [None, 3]).get_weights()[0].shape
        (3, 2)
    """
    config = layer.get_config()
    if name is not None:
        config["name"] = name
    new = type(layer).from_config(config)
    if input_shape is not None:
        new.build(input_shape)
        new.set_weights(layer.get_weights())
    return new


def leading_closure(mask, groups=1):
    """Indices of the shortest leading run of each of ``groups`` channel blocks that
    covers the ``True`` entries of ``mask`` (at least one channel per block).

    Example:
        >>> import numpy as np
        >>> leading_closure(np.array([1, 0, 1, 0, 0, 0, 1, 0], bool), groups=2).tolist()
        [0, 1, 2, 4, 5, 6]
    """
    import numpy as np

    blocks = np.asarray(mask, bool).reshape(groups, -1)
    size = blocks.shape[1]
    runs = [max(int(np.flatnonzero(b).max()) + 1 if b.any() else 1, 1) for b in blocks]
    return np.concatenate([g * size + np.arange(n) for g, n in enumerate(runs)])


def threshold_penalty(betas):
    """EnTranNAS-DST threshold regularizer ``mean_j(-log sigmoid(beta_j))``.

    ``betas``: a tensor or a list of tensors of threshold logits.

    Example:
        >>> round(float(threshold_penalty([0.0, 0.0])), 4)   # -log 0.5
        0.6931
    """
    if isinstance(betas, (list, tuple)) and betas and tf.is_tensor(betas[0]):
        betas = tf.concat([tf.reshape(b, [-1]) for b in betas], axis=0)
    beta = tf.convert_to_tensor(betas, tf.float32)
    return tf.reduce_mean(tf.math.softplus(-beta))  # -log sigmoid(b) = softplus(-b)
