"""``SearchLayer``: the one protocol every search layer answers.

This docstring is the protocol's one description; ``README.md`` points here.
Callers (``derive``, ``slicing``, ``cost``, ``regularizers``, ``architecture``,
the callbacks) use these names and nothing else of a search layer.

*State*

- ``arch_weights`` / ``arch(name)``: trainable architecture variables named
  ``arch_*`` (``add_arch_weight``). Layers with the same ``arch_key`` share them
  once ``searchlayers.search.tie_arch_variables(model)`` has run (every entry
  point of the package runs it).
- ``temperature``: a non-trainable variable a callback assigns (no retracing);
  ``sample_step``: the step of the stateless noise seeded by ``[seed, step]``,
  read alike by every replica, so replicas sample the same architecture and a
  resumed search continues the same noise stream (``noise_seed``).
- ``choice``: the fixed choice, stored one way for every layer: one
  non-trainable variable (``add_choice_weight``) whose entries are all ``-1``
  while the layer is free, else ``encode_choice(choice)`` (a categorical index;
  a FiGS mask's 0/1 vector; an EnTranNAS cell's 0/1 ``[edges, ops]`` matrix).
  ``choice_is_fixed()`` is the tensor test the forward passes use.

*Choice*

- ``choice_names`` / ``num_choices``: the names of the choices (a categorical
  layer: one per candidate; a FiGS mask: one per channel).
- ``strategies``: what ``sample_choice`` answers (at least ``"argmax"`` and
  ``"sample"``; FiGS masks add ``"expected"``).
- ``probabilities()``: the distribution over choices, no noise; one-hot (or
  the fixed mask) when a choice is fixed (an EnTranNAS cell keeps its per-edge
  softmax: its fixed record acts on the forward pass).
- ``sample_choice(strategy, seed)``: a JSON-serializable discrete choice.
- ``check_choice(choice)``: the normalized choice, or a one-line error naming
  the layer, the choice and what is allowed (``architecture`` validates
  records with it).
- ``set_choice(choice)``: fixes the forward pass to ``choice`` (``None`` frees
  it): the supernet then computes what the derived model computes.
- ``cost(input_shape)``: the expected ``searchlayers.cost.Cost`` under
  ``probabilities()`` (differentiable tensors).
- ``entropy()``: entropy of each distribution, a vector (default: categorical
  over the last axis of ``probabilities()``).

Categorical layers (``MixedOp``, the gates) share all of it through
``searchlayers.layers.choice.CategoricalChoice``.

*Derivation: one hook*

``derivation(choice)`` says what the layer becomes in the derived graph, as a
small value object of this module:

- ``Replace(layer)``: a plain layer takes its place (a ``MixedOp``'s chosen
  candidate, an EnTranNAS cell's sub-model); ``make()`` builds the copy with
  the weights inherited. Channel slicing applies the rule of ``layer``.
- ``Drop(zeros)``: the edge disappears (``Zeroise``): an ``Add`` it fed loses
  that input; ``zeros`` materializes the zeros where a consumer needs them.
- ``Pick(index)``: the input ``index`` passes (a depth gate); the cells after
  it are dropped.
- ``KeepChannels(mask)``: the layer disappears and only the channels of the
  boolean ``mask`` are kept (FiGS masks, width gates): the layers around it
  are sliced.
- ``Sliceable(layer)``: a plain layer that narrows itself (the binary
  composites of ``layers.binary``): ``input_channels`` / ``output_channels``
  say which channels a narrower copy keeps, ``sliced`` builds it and
  ``inline`` writes it into the derived graph as plain layers.

A class states which of these it derives to in ``derives_to`` (analyses that
have no choice, such as the expected-cost walk, read ``channel_rule``). A
``KeepChannels`` layer also answers that walk: ``channel_probabilities()``
(``P(channel kept)``, a vector) and ``channel_choices()`` (a width gate's
``(choice probabilities, kept count per choice)``; None for independent
channels).
``searchlayers.derive`` and ``searchlayers.slicing`` dispatch in tfmot's order:
the layer's own hook (``derivation_of``), then the channel-rule registry
(``searchlayers.slicing.register_channel_rule``), then opaque.
"""

import zlib

import tensorflow as tf

from searchlayers import checks, relax
from searchlayers._keras import PlainCall, ShapeOnlyConstruction, keras

# -- the derivation hook's answers ---------------------------------------------------
class Derivation:
    """What a layer becomes in the derived graph (see the module docstring).

    ``kind``: the channel rule ``searchlayers.slicing`` applies to it (None for
    ``Replace``: the rule of the replacement).
    """

    kind = None
    __slots__ = ()

    def __repr__(self):
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Replace(Derivation):
    """A plain layer takes the place of the search layer.

    ``layer``: the template (its channel rule applies when slicing); ``make()``
    is a copy named ``name`` with its weights, built on ``input_shape`` (or
    ``layer`` itself when ``input_shape`` is None: a fresh layer already).

    Example:
        >>> d = keras.layers.Dense(2); _ = d(tf.ones([1, 3]))
        >>> Replace(d, "child", [None, 3]).make().name
        'child'
    """

    __slots__ = ("layer", "name", "input_shape")

    def __init__(self, layer, name=None, input_shape=None):
        self.layer, self.name, self.input_shape = layer, name, input_shape

    def make(self):
        if self.input_shape is None:
            return self.layer
        return copy_layer(self.layer, self.input_shape, self.name)


class Drop(Replace):
    """The edge disappears (``Zeroise``): an ``Add`` it fed loses that input.
    ``make()`` gives the layer computing its zeros, for a consumer that needs them."""

    kind = "zero"
    __slots__ = ()


class Pick(Derivation):
    """Input ``index`` passes through (a depth gate's chosen depth)."""

    kind = "pick"
    __slots__ = ("index",)

    def __init__(self, index):
        self.index = int(index)


class KeepChannels(Derivation):
    """The layer disappears and the channels of the boolean ``mask`` are kept."""

    kind = "mask"
    __slots__ = ("mask",)

    def __init__(self, mask):
        import numpy as np

        self.mask = np.asarray(mask, bool)


class Sliceable(Derivation):
    """A plain layer that narrows itself: ``layer.input_channels(nonzero)``,
    ``layer.output_channels(wanted)``, ``layer.sliced(keep_in, keep_out, name)``
    and ``layer.inline(x, name)`` (see ``searchlayers.layers.binary``)."""

    kind = "sliceable"
    __slots__ = ("layer",)

    def __init__(self, layer):
        self.layer = layer


def derivation_of(layer, choice=None):
    """``layer``'s own derivation hook for ``choice``, or None for a layer without
    one (its channel rule then comes from the registry).

    Example:
        >>> derivation_of(keras.layers.Dense(2)) is None
        True
    """
    hook = getattr(type(layer), "derivation", None)
    return hook(layer, choice) if callable(hook) else None


def channel_rule(layer):
    """The channel rule a layer's own protocol declares, without a choice
    (``searchlayers.slicing.kind``): the ``kind`` of its ``derives_to``;
    ``"opaque"`` for another search layer (counted by its own ``cost``) or a
    model; None when the layer declares nothing (the registry decides).

    Example:
        >>> channel_rule(keras.layers.Dense(2)) is None
        True
    """
    target = getattr(type(layer), "derives_to", None)
    if isinstance(target, type) and issubclass(target, Derivation) and target.kind:
        return target.kind
    if isinstance(layer, (SearchLayer, keras.Model)):
        return "opaque"
    return None


def is_arch_variable(variable):
    """True for architecture variables (``arch_*``), False for network weights.

    Example:
        >>> import tensorflow as tf
        >>> is_arch_variable(tf.Variable(0.0, name="mixed_op/arch_logits"))
        True
    """
    leaf = variable.name.split("/")[-1]
    return leaf.startswith("arch_")


class SearchLayer(PlainCall, ShapeOnlyConstruction, keras.layers.Layer):
    """Base class of the search layers (see the module docstring).

    ``call`` runs as written, not converted by AutoGraph (``_keras.PlainCall``):
    a subclass branches on tensors with ``tf.cond`` / ``tf.switch_case``, not ``if``.
    A functional model takes the output shape from ``compute_output_shape`` when
    the subclass defines it, without tracing ``call`` (``_keras.ShapeOnlyConstruction``):
    then its ``build`` creates every weight and sub-layer.

    Args:
        arch_key: layers with the same key (a non-empty string) share architecture
            variables; None: the layer's own.
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
        where = f"{type(self).__name__} '{self.name}'"
        if arch_key is not None and not (isinstance(arch_key, str) and arch_key):
            error = ValueError if isinstance(arch_key, str) else checks.ArgumentTypeError
            checks.fail(where, "arch_key", arch_key, "None or a non-empty string", error)
        self.arch_key = arch_key
        self.initial_temperature = relax.check_temperature(temperature, where)
        seed = checks.integer(where, "seed", seed, low=0, none_ok=True)
        self.seed = seed if seed is not None else zlib.crc32(self.name.encode()) % (2**31)
        self._arch = {}

    # -- state ---------------------------------------------------------------
    def build(self, input_shape):
        # The architecture state stays float32 under a mixed_float16 policy (no
        # autocast): a float16 read rounds near logits together, and the search
        # would relax and select differently from sample_choice (float32, outside
        # a call). The layers cast what they mix into activations to their dtype.
        self.temperature = self.add_weight(
            "temperature",
            shape=[],
            initializer=keras.initializers.Constant(self.initial_temperature),
            trainable=False,
            experimental_autocast=False,
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
        var = self.add_weight(f"arch_{name}", shape=shape, initializer=initializer, trainable=True,
                              experimental_autocast=False)  # float32: see build
        if self.arch_key is not None:  # for untied_layers: the layer it was made for
            var._searchlayers_owner = (self.arch_key, name, self.name)  # pylint: disable=W0212
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
        mine, theirs = _sharing_terms(self), _sharing_terms(other)
        if mine != theirs:
            raise ValueError(
                f"{type(self).__name__} '{self.name}' and '{other.name}' share "
                f"arch_key={self.arch_key!r} but differ: {mine} vs {theirs}. Layers sharing a "
                "key share one choice: give them the same mode and candidates, or other keys.")
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

    # -- the fixed choice: one variable, -1 while free ------------------------
    def add_choice_weight(self, shape=(), dtype=tf.int32):
        """Creates ``choice``, the fixed choice's non-trainable variable (-1: free)."""
        self.choice = self.add_weight(
            "choice", shape=list(shape), dtype=dtype,
            initializer=keras.initializers.Constant(-1), trainable=False,
            experimental_autocast=False,  # float32: see build
        )
        return self.choice

    def choice_is_fixed(self):
        """A boolean tensor: whether ``set_choice`` fixed the forward pass."""
        return tf.reduce_all(self.choice >= 0)

    def encode_choice(self, choice):
        """The value of the ``choice`` variable for a (checked) choice; default:
        the categorical index."""
        return choice

    def decode_choice(self, value):
        """The choice a value of the ``choice`` variable holds (``encode_choice``
        inverted); default: the categorical index."""
        return int(value)

    def fixed_choice(self):
        """The choice ``set_choice`` fixed, as ``sample_choice`` gives one; None
        while the forward pass is free."""
        if getattr(self, "choice", None) is None or not bool(self.choice_is_fixed()):
            return None
        return self.decode_choice(self.choice.numpy())

    def set_choice(self, choice):
        """Fixes the forward pass to ``choice`` (``None`` frees it)."""
        if choice is None:
            self.choice.assign(tf.fill(tf.shape(self.choice), tf.constant(-1, self.choice.dtype)))
        else:
            self.choice.assign(tf.cast(self.encode_choice(self.check_choice(choice)),
                                       self.choice.dtype))

    # -- protocol for subclasses ----------------------------------------------
    def _undeclared(self, what):
        return NotImplementedError(
            f"{type(self).__name__} '{self.name}' does not implement {what}, which the "
            "SearchLayer protocol declares (see searchlayers.layers.base).")

    strategies = ("argmax", "sample")
    derives_to = Replace

    @property
    def choice_names(self):
        """One name per choice (see the module docstring)."""
        raise self._undeclared("choice_names")

    @property
    def num_choices(self):
        return len(self.choice_names)

    def probabilities(self):
        """Current distribution over choices (no noise)."""
        raise self._undeclared("probabilities")

    def entropy(self):
        """Entropy of each distribution (a vector): categorical over the last axis
        of ``probabilities()``."""
        p = self.probabilities()
        return -tf.reduce_sum(p * tf.math.log(tf.maximum(p, 1e-12)), axis=-1)

    def cost(self, input_shape):
        """Expected ``searchlayers.cost.Cost`` under ``probabilities()``."""
        raise self._undeclared("cost")

    def sample_choice(self, strategy="argmax", seed=None):
        """A JSON-serializable discrete choice ("argmax" or "sample")."""
        raise self._undeclared("sample_choice")

    def check_choice(self, choice):
        """``choice`` (normalized) if this layer accepts it, else ValueError /
        TypeError naming the layer, the choice and what is allowed.

        Default: an integer index into ``choice_names``; layers with another
        kind of choice override it.
        ``searchlayers.architecture`` validates records with it.
        """
        n = self.num_choices
        listing = ", ".join(f"{i}: {c}" for i, c in enumerate(self.choice_names))
        return checks.integer(
            f"{type(self).__name__} '{self.name}'", "choice", choice, low=0, high=n - 1,
            allowed=f"an integer index in 0..{n - 1} ({listing})",
        )

    def derivation(self, choice):
        """What this layer becomes in the derived graph for ``choice``: a
        ``Replace``, ``Drop``, ``Pick``, ``KeepChannels`` or ``Sliceable``."""
        raise self._undeclared("derivation")

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


def _sharing_terms(layer):
    """What layers sharing an ``arch_key`` must agree on: their mode and choices."""
    try:
        names = list(layer.choice_names)
    except NotImplementedError:
        names = None
    return {"mode": getattr(layer, "mode", None), "choices": names}


def untied_layers(variables):
    """``{arch_key: [layer names]}`` for keys whose layers hold architecture
    variables of their own among ``variables``: trained so, they learn apart, and
    derive keeps one (``searchlayers.tie_arch_variables`` shares them)."""
    owners = {}
    for var in variables:
        key, name, layer = getattr(var, "_searchlayers_owner", (None, None, None))
        if key is not None:
            owners.setdefault((key, name), set()).add(layer)
    return {key: sorted(layers) for (key, _), layers in owners.items() if len(layers) > 1}


# -- helpers the layers share with derive / slicing / regularizers (which re-export
# them): the layers import nothing above them --------------------------------------------
def plain_type(layer):
    """The class a copy of ``layer`` gets: a layer carrying a folded FiGS mask
    (``figs_fold``) becomes its plain Keras class, any other layer its own.

    Example:
        >>> plain_type(keras.layers.Dense(2)).__name__
        'Dense'
    """
    return getattr(type(layer), "plain_class", None) or type(layer)


def name_after(layer, name):
    """Renames an unbuilt ``layer`` ``name``, and its sub-layers ``{name}_...``.

    Keras names a weight after the innermost layer ("conv2d/kernel:0"), and
    builds some layers in scratch graphs of its own (a Sequential's), where it
    numbers auto-named layers from 0 again: the ops of two edges would both hold
    a "conv2d", two weights one name, and H5 saving of the optimizer fails
    (``ModelCheckpoint``: "name already exists"). Named after an owner whose
    name is unique in its model, they cannot repeat. (tf_keras has no public
    rename.)

    Example:
        >>> op = keras.Sequential([keras.layers.Dense(2, name="fc")])
        >>> name_after(op, "edge_op"); [op.name, op.layers[0].name]
        ['edge_op', 'edge_op_fc']
    """
    old = layer.name
    layer._name = name  # pylint: disable=protected-access
    if isinstance(layer, keras.Model) and not isinstance(layer, keras.Sequential):
        return  # a functional graph refers to its layers by name: leave them
    for sub in layer._flatten_layers(include_self=False, recursive=False):  # pylint: disable=W0212
        tail = sub.name[len(old) + 1:] if sub.name.startswith(f"{old}_") else sub.name
        name_after(sub, f"{name}_{tail}")


def build_named(layer, input_shape):
    """``layer.build(input_shape)`` with its weights named after it
    ("name/kernel:0"), as Keras names them when it builds a layer it calls;
    built directly they get bare names ("kernel:0"), which repeat.

    Example:
        >>> d = keras.layers.Dense(2, name="fc"); build_named(d, [None, 3])
        >>> [w.name for w in d.weights]
        ['fc/kernel:0', 'fc/bias:0']
    """
    if isinstance(layer, keras.Sequential) and not layer.built:
        # its layers one by one: Keras would build them in a scratch graph of its
        # own, where larq's layers name their weights bare ("kernel:0")
        shape = input_shape
        for inner in layer.layers:
            build_named(inner, shape)
            shape = inner.compute_output_shape(shape)
    with tf.name_scope(layer.name):
        layer.build(input_shape)


def _unbuilt(config):
    """A Sequential's config without its input layer and input shape, which make
    ``from_config`` build it at once (see ``build_named``)."""
    layers = [c for c in config["layers"] if c.get("class_name") != "InputLayer"]
    return {**{k: v for k, v in config.items() if k != "build_input_shape"}, "layers": layers}


def copy_layer(layer, input_shape=None, name=None, cls=None):
    """A fresh copy of ``layer`` with the same config and weights (and ``name``),
    of class ``cls`` (default ``plain_type(layer)``).

    Example:
        >>> d = keras.layers.Dense(2); _ = d(tf.ones([1, 3]))
        >>> copy_layer(d, [None, 3]).get_weights()[0].shape
        (3, 2)
    """
    config = layer.get_config()
    if name is not None:
        config["name"] = name
    cls = cls or plain_type(layer)
    if issubclass(cls, keras.Sequential) and input_shape is not None:
        config = _unbuilt(config)
    new = cls.from_config(config)
    if input_shape is not None:
        build_named(new, input_shape)
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
