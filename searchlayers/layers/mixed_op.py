"""``MixedOp``: a choice among candidate operations on one edge."""

import tensorflow as tf

from searchlayers import checks, relax
from searchlayers._keras import deserialize_layer, keras, register
from searchlayers.layers.base import Drop, Replace, build_named
from searchlayers.layers.choice import SINGLE_PATH_MODES, CategoricalChoice
from searchlayers.layers.ops import Zeroise, check_op_name, get_op

SOFT_MODES = ("softmax", "gumbel")


@register
class MixedOp(CategoricalChoice):
    """A searchable edge: one of ``candidates`` applied to the input.

    Modes:
      - ``"softmax"`` (DARTS, EnTranNAS with a temperature): the output is
        ``sum_i softmax(alpha / T)_i * op_i(x)``; every candidate runs.
      - ``"gumbel"`` (SNAS, BARS): the weights are a Gumbel-softmax sample in
        training and ``softmax(alpha)`` at inference; every candidate runs.
      - ``"gumbel_hard"`` (GDAS): a one-hot Gumbel sample with straight-through
        gradient; only the chosen candidate runs (``tf.switch_case``).
      - ``"uniform"`` / ``"fair"`` (SPOS / FairNAS): one candidate drawn
        uniformly (or strictly fairly) per step; only it runs; no logits.

    At inference the hard mode runs ``argmax(alpha)``; single-path modes keep
    sampling unless a choice is fixed. ``set_choice(i)`` fixes the forward pass
    to candidate ``i`` in every mode (the derived network's behaviour); then only
    that candidate runs. At inference a traced call reads the ``choice``
    variable (one trace serves every choice, as evolution's scoring needs). A
    *training* call traced while a choice is fixed calls that candidate directly,
    with no conditional (a ``switch_case`` costs more than a cheap op, and larq's
    custom-gradient quantizers next to other candidates in one branch fail to
    differentiate in TF 2.21); the unchosen candidates and the logits get no
    gradient. Such a step asserts that the choice is unchanged when it runs:
    after ``set_choice`` to another value, trace the training step again
    (``model.compile(...)`` or ``model.make_train_function(force=True)``; a new
    ``tf.function``). A step traced while the choice is free stays correct for
    any choice. The choice logic (probabilities, sampling, the fixed choice) is
    ``CategoricalChoice``'s.
    Derived, candidate ``i`` replaces the edge (``Replace``), or the edge
    disappears when it is ``none`` (``Drop``).

    Args:
        candidates: registered op names (``searchlayers.layers.op_names()``),
            Keras layers, or a mix, each named once (a repeat would be one choice
            twice). All must give the same output shape.
        mode: one of ``"softmax"``, ``"gumbel"``, ``"gumbel_hard"``,
            ``"uniform"``, ``"fair"``.
        channels: output channels of named ops (default: input channels).
        strides: stride of named ops.
        arch_key, temperature, seed: see ``SearchLayer``.

    Example:
        >>> import searchlayers as sl
        >>> model = sl.keras.Sequential([
        ...     sl.keras.layers.Conv2D(8, 3, padding="same", input_shape=(8, 8, 1)),
        ...     sl.MixedOp(["sep_conv_3x3", "max_pool_3x3", "skip_connect"]),
        ...     sl.keras.layers.GlobalAveragePooling2D(),
        ...     sl.keras.layers.Dense(10),
        ... ])
        >>> model(tf.zeros([2, 8, 8, 1])).shape
        TensorShape([2, 10])
    """

    def __init__(
        self,
        candidates,
        mode="softmax",
        channels=None,
        strides=1,
        arch_key=None,
        temperature=1.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(arch_key=arch_key, temperature=temperature, seed=seed, **kwargs)
        if mode not in relax.MODES:
            raise ValueError(
                f"MixedOp '{self.name}': unknown mode {mode!r}; allowed: {', '.join(relax.MODES)}."
            )
        where = f"MixedOp '{self.name}'"
        candidates = checks.sequence(where, "candidates", candidates,
                                     what="a list of op names or Keras layers")
        self.mode = mode
        self.channels = checks.integer(where, "channels", channels, low=1, none_ok=True)
        self.strides = checks.integer(where, "strides", strides, low=1)
        self.candidate_specs = [self._spec(c) for c in candidates]
        self.ops = [c if isinstance(c, keras.layers.Layer) else None for c in self.candidate_specs]
        for spec in self.candidate_specs:  # unknown names fail now, not at build
            if isinstance(spec, str):
                check_op_name(spec, where=f"MixedOp '{self.name}'")
        # a repeat would be one choice twice: its logits split, names ambiguous in records
        checks.distinct(where, "candidates", self.choice_names,
                        "distinct op names or layers (no name twice)")

    def _spec(self, candidate):
        if isinstance(candidate, dict):  # a serialized layer (from get_config)
            return deserialize_layer(candidate)
        if isinstance(candidate, (str, keras.layers.Layer)):
            return candidate
        raise TypeError(
            f"MixedOp '{self.name}': a candidate must be an op name or a Keras layer, "
            f"got {type(candidate).__name__}."
        )

    @property
    def choice_names(self):
        """One name per candidate: the op name, or the layer's name."""
        return [s if isinstance(s, str) else s.name for s in self.candidate_specs]

    @property
    def num_choices(self):
        return len(self.candidate_specs)

    # -- build ------------------------------------------------------------------
    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        channels = self.channels or input_shape[-1]
        if channels is None:
            raise ValueError(
                f"MixedOp '{self.name}': the input's channel dimension is unknown "
                f"(shape {input_shape}); give `channels=`."
            )
        where = f"MixedOp '{self.name}'"
        for i, spec in enumerate(self.candidate_specs):
            if isinstance(spec, str):
                self.ops[i] = get_op(spec, channels, self.strides, where=where, scope=self.name)
        shapes = []
        for op in self.ops:
            build_named(op, input_shape)
            shapes.append(tf.TensorShape(op.compute_output_shape(input_shape)))
        if any(s[1:] != shapes[0][1:] for s in shapes):
            listing = ", ".join(f"{n}: {s}" for n, s in zip(self.choice_names, shapes))
            raise ValueError(
                f"{where}: candidates give different output shapes for input {input_shape}: "
                f"{listing}. All candidates of a MixedOp must produce the same shape."
            )
        self._input_shape = input_shape
        self._output_shape = shapes[0]
        self.build_choice()
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return self.ops[0].compute_output_shape(input_shape) if self.ops[0] else input_shape

    # -- forward ------------------------------------------------------------------
    def _run(self, i, x, training):
        op = self.ops[i]
        if isinstance(op, Zeroise):
            return op(x)
        return op(x, training=training) if _takes_training(op) else op(x)

    def _switch(self, index, x, training, scale=None, mixture=None):
        """Runs only candidate ``index``; ``scale[index]`` carries the ST gradient.
        ``mixture``, when given, is an extra branch at ``index == num_choices``."""

        def branch(i):
            def fn():
                y = self._run(i, x, training)
                return y if scale is None else y * tf.cast(scale[i], y.dtype)

            return fn

        branches = [branch(i) for i in range(self.num_choices)]
        return tf.switch_case(index, branches + ([mixture] if mixture else []))

    def _weighted_sum(self, weights, x, training):
        # One unstack and one add_n, not a slice and an add per candidate (with
        # their gradients: 2,200 of the 17,200 ops of the demo DARTS step).
        weights = tf.unstack(tf.cast(weights, x.dtype), num=self.num_choices)
        terms = [self._run(i, x, training) * weights[i] for i, op in enumerate(self.ops)
                 if not isinstance(op, Zeroise)]  # a zero op contributes weight * 0
        return tf.add_n(terms) if terms else self._run(0, x, training)

    def _index(self, training):
        """Index of the one candidate to run, and the ST scale (hard mode)."""
        scale = None
        if self.mode == "gumbel_hard":
            if training:
                scale = self._train_weights()  # the straight-through one-hot
                index = tf.argmax(scale, output_type=tf.int32)
            else:
                index = tf.argmax(self.arch("logits"), output_type=tf.int32)
        elif self.mode == "fair" and training:
            step = self.noise_seed()[1] - 1
            index = relax.fair_choice(self.num_choices, self.seed, step)
        else:
            index = relax.uniform_choice(self.num_choices, self.noise_seed())
        fixed = self.choice_is_fixed()
        if scale is not None:
            scale = tf.where(fixed, tf.ones_like(scale), scale)
        return tf.where(fixed, self.choice, index), scale

    def _traced_choice(self):
        """The fixed choice (a Python int) while this call is traced, or None."""
        with tf.init_scope():  # the eager value, also from inside a tf.function
            if not tf.executing_eagerly():  # a TF1 graph: no value to read
                return None
            choice = int(self.choice.numpy())
        return choice if choice >= 0 else None

    def _check_unchanged(self, choice):
        """In a traced step specialised to ``choice``: fail if it has changed."""
        if not tf.executing_eagerly():
            tf.debugging.Assert(tf.equal(self.choice, choice), [
                f"MixedOp '{self.name}': this training step was traced with choice "
                f"{choice} fixed, but the choice is now", self.choice,
                "; trace the step again after set_choice (model.compile(...) or "
                "model.make_train_function(force=True))."])

    def call(self, x, training=None):
        static = tf.get_static_value(training) if tf.is_tensor(training) else training
        training = training if static is None and tf.is_tensor(training) else bool(static)
        choice = self._traced_choice() if training is True else None
        if choice is not None:  # the chosen op alone, no conditional (see the class doc)
            self._check_unchanged(choice)
            return self._run(choice, x, training)
        if self.mode in SOFT_MODES:
            if training is not False:  # free: the mixture (one-hot if fixed later)
                return self._weighted_sum(self.mixing_weights(training), x, training)
            weights = self._inference_weights()
            # Not in training: larq's custom-gradient quantizers in the mixture
            # branch fail to differentiate in TF 2.21 (an unfed placeholder).
            index = tf.where(self.choice_is_fixed(), self.choice, self.num_choices)
            return self._switch(index, x, training,
                                mixture=lambda: self._weighted_sum(weights, x, training))
        index, scale = self._index(training)
        return self._switch(index, x, training, scale)

    # -- protocol ------------------------------------------------------------------
    def candidate_costs(self):
        """The ``Cost`` of each candidate on this layer's input shape."""
        from searchlayers import cost  # cost imports layers lazily too

        return [cost.layer_cost(op, self._input_shape) for op in self.ops]

    def cost(self, input_shape=None):
        """Expected cost ``sum_i p_i * cost_i`` (differentiable in the logits)."""
        probs = self.probabilities()
        costs = self.candidate_costs()
        return sum(probs[i] * c for i, c in enumerate(costs))

    def derivation(self, choice):
        """``Replace`` by a copy of candidate ``choice`` (named after this layer and
        the candidate), or ``Drop`` when the candidate is ``Zeroise``."""
        i = self.check_choice(choice)
        found = Drop if isinstance(self.ops[i], Zeroise) else Replace
        return found(self.ops[i], f"{self.name}_{self.choice_names[i]}", self._input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            candidates=[
                s if isinstance(s, str) else keras.layers.serialize(s)
                for s in self.candidate_specs
            ],
            mode=self.mode,
            channels=self.channels,
            strides=self.strides,
        )
        return config


def _takes_training(layer):
    return layer._expects_training_arg
