"""``FiGSMask`` (alias ``MaskingLayer``): FiGS per-channel Logistic-Sigmoid masks.

One logit ``nu_c`` per channel of the input; in training the channel is
multiplied by the binary-concrete sample ``sigmoid((nu_c + s_c) / tau)``
(FiGS eq. 2, ``searchlayers.relax.logistic_sigmoid``) with one Logistic noise
``s_c`` per channel per step, shared over the batch and the spatial positions.
At inference the mask is deterministic, ``1[nu_c > 0]``. ``P(mask_c = 1) =
sigmoid(nu_c)`` (``probabilities()``).

Masks with the same ``group`` share their logits (``group`` is the layer's
``arch_key``): e.g. the outputs joined by a residual ``Add``. They also share
the noise seed (a hash of the group), so members called once per step draw the
same mask: the group keeps or drops a channel together, as its derived network does.

The expected cost of a network with masks (FiGS eq. 6) is
``searchlayers.regularizers.figs_expected_cost``; ``searchlayers.derive``
collapses the masks into physically narrower layers.
"""

import weakref
import zlib

import numpy as np
import tensorflow as tf

from searchlayers import checks, relax
from searchlayers._keras import keras, register
from searchlayers.layers.figs_fold import link_producer
from searchlayers.layers.base import KeepChannels, SearchLayer

STRATEGIES = ("expected", "argmax", "alive", "sample")


@register
class FiGSMask(SearchLayer):
    """Multiplies each channel (last axis) of its input by a learned 0/1 mask.

    Args:
        temperature: relaxation temperature ``tau`` (FiGS: 0.001).
        hard: straight-through 0/1 forward value in training (soft gradient).
        keep_one: the channel with the highest logit is always kept.
        group: masks with the same group share their logits (the ``arch_key``).
        initial_logit: initial ``nu`` of every channel (2.5: ``p ~ 0.92``).
        seed: integer seed of the noise; default: a hash of the group, or of the
            layer name without a group.

    Example:
        >>> import searchlayers as sl
        >>> model = sl.keras.Sequential([
        ...     sl.keras.Input((8, 8, 1)),
        ...     sl.keras.layers.Conv2D(4, 3),
        ...     FiGSMask(),
        ... ])
        >>> model(tf.ones([2, 8, 8, 1])).shape
        TensorShape([2, 6, 6, 4])
    """

    strategies = STRATEGIES
    derives_to = KeepChannels  # derived: the neighbours keep the chosen channels

    def __init__(
        self,
        temperature=0.001,
        hard=False,
        keep_one=False,
        group=None,
        initial_logit=2.5,
        seed=None,
        arch_key=None,
        **kwargs,
    ):
        if group is not None and arch_key is not None and group != arch_key:
            raise ValueError(
                f"FiGSMask: group={group!r} and arch_key={arch_key!r} differ; "
                "the group is the arch_key, give one of them."
            )
        key = group if group is not None else arch_key
        if seed is None and key is not None:  # one noise stream per group
            seed = zlib.crc32(str(key).encode()) % (2**31)
        super().__init__(arch_key=key, temperature=temperature, seed=seed, **kwargs)
        self.hard = checks.boolean(f"FiGSMask '{self.name}'", "hard", hard)
        self.keep_one = checks.boolean(f"FiGSMask '{self.name}'", "keep_one", keep_one)
        self.initial_logit = checks.number(f"FiGSMask '{self.name}'", "initial_logit",
                                           initial_logit)
        self.supports_masking = True

    def __call__(self, inputs, *args, **kwargs):
        link_producer(self, inputs)  # a Keras tensor: the model is being built
        return super().__call__(inputs, *args, **kwargs)

    def fold_into(self, layer):
        """From now on ``layer`` (a ``figs_fold.FoldsMask``) applies this mask to
        its weights and this layer passes its input through (``insert_masks``)."""
        current = self.folded_into
        if current is not None and current is not layer:
            raise ValueError(
                f"FiGSMask '{self.name}': already folded into '{current.name}'; "
                f"cannot also fold into '{layer.name}'.")
        self.__dict__["_folded_into"] = weakref.ref(layer)  # not tracked: no sublayer

    @property
    def folded_into(self):
        """The layer that applies this mask to its weights, or None."""
        ref = self.__dict__.get("_folded_into")
        return None if ref is None else ref()

    @property
    def group(self):
        """The mask group (``arch_key``): masks of one group share logits."""
        return self.arch_key

    # -- build ---------------------------------------------------------------------
    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        channels = input_shape[-1] if input_shape.rank else None
        if channels is None:
            raise ValueError(
                f"FiGSMask '{self.name}': the input's channel (last) dimension is unknown "
                f"(shape {input_shape}); a mask needs a known number of channels."
            )
        self.channels = int(channels)
        self.add_arch_weight(
            "logits", [self.channels], keras.initializers.Constant(self.initial_logit)
        )
        # A fixed choice (set_choice): the mask is exactly ``choice`` (-1s while free).
        self.add_choice_weight([self.channels], tf.float32)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    # -- forward -------------------------------------------------------------------
    def _keep_best(self, mask):
        if not self.keep_one:
            return mask
        best = tf.one_hot(tf.argmax(self.arch("logits")), self.channels, dtype=mask.dtype)
        return mask + (1.0 - mask) * best  # exactly 1 at the best channel

    @property
    def joint_draw(self):
        """The ``figs_draw.JointDraw`` this mask takes its training mask from, or None
        (it draws alone)."""
        return self.__dict__.get("_joint_draw")

    @joint_draw.setter
    def joint_draw(self, draw):
        self.__dict__["_joint_draw"] = draw  # not tracked: holds no variables

    def _joint_train_mask(self):
        """The training mask from the model's joint draw, or drawn here."""
        if self.joint_draw is not None:
            return self.joint_draw.mask(self)
        return self._own_train_mask()

    def _own_train_mask(self):
        """This mask's own draw: one fused op with a hand-written gradient."""
        logits = self.arch("logits")
        best = None
        if self.keep_one:
            best = tf.one_hot(tf.argmax(logits), self.channels, dtype=logits.dtype)
        noise = relax.logistic_noise([self.channels], self.noise_seed())
        return _relaxed_mask(logits, noise, self.temperature, self.choice, self.hard, best)

    def _inference_mask(self):
        logits = self.arch("logits")
        return self._keep_best(tf.cast(logits > 0, logits.dtype))

    def mask(self, training=False, joint=False):
        """The mask vector of this call (fixed choice first, then train / inference).

        ``joint``: in training, take it from the model's joint draw
        (``figs_draw``), as the layer calls do; else draw it here."""
        if tf.is_tensor(training):  # each branch is its own graph: no joint draw
            return tf.cond(tf.cast(training, tf.bool), self._own_train_mask,
                           self._fixed_inference)
        if not training:
            return self._fixed_inference()
        return self._joint_train_mask() if joint else self._own_train_mask()

    def _fixed_inference(self):
        return tf.where(self.choice_is_fixed(), self.choice, self._inference_mask())

    def call(self, x, training=None):
        if self.folded_into is not None:
            return x  # the neighbour's weights carry the mask (figs_fold)
        m = tf.cast(self.mask(training, joint=True), x.dtype)
        return x * m  # broadcasts over batch and positions

    # -- protocol ------------------------------------------------------------------
    def probabilities(self):
        """``P(mask_c = 1) = sigmoid(nu_c)``; the fixed mask when a choice is set."""
        p = tf.sigmoid(self.arch("logits"))
        return tf.where(self.choice_is_fixed(), self.choice, p)

    def channel_probabilities(self):
        """``P(channel c is kept)`` for the expected-cost walk (a ``KeepChannels``
        layer's cost-side answer): ``probabilities()``, so a fixed choice counts
        as the 0/1 mask it computes (``budget.fixed_cost``)."""
        return self.probabilities()

    def channel_choices(self):
        """None: the channels are independent (a width gate's choices are not)."""
        return None

    def entropy(self):
        """Bernoulli entropy of each channel's mask (a vector)."""
        logits = self.arch("logits")
        p = tf.sigmoid(logits)
        # H = softplus(l) - p * l, finite for any logit
        return tf.math.softplus(logits) - p * logits

    @property
    def choice_names(self):
        return [str(i) for i in range(getattr(self, "channels", 0))]

    def cost(self, input_shape=None):
        """A mask has no network weights and no MACs (its logits are architecture)."""
        from searchlayers.cost import Cost

        return Cost.zero()

    def sample_choice(self, strategy="expected", seed=None):
        """Kept channel indices (a sorted list of ints; at least one).

        - ``"expected"`` (FiGS export): the ``floor(sum p)`` channels of highest ``p``;
        - ``"argmax"`` / ``"alive"``: the channels with ``logit > 0``;
        - ``"sample"``: one Logistic-Sigmoid draw (seeded by ``seed``).
        """
        logits = self.arch("logits").numpy()
        if strategy == "expected":
            p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
            k = max(1, int(np.floor(p.sum() + 1e-6)))
            order = np.argsort(-logits, kind="stable")
            kept = order[:k]
        elif strategy in ("argmax", "alive"):
            kept = np.flatnonzero(logits > 0)
        elif strategy == "sample":
            seed = [self.seed, 0 if seed is None else int(seed)]
            noise = relax.logistic_noise([self.channels], seed).numpy()
            kept = np.flatnonzero(logits + noise > 0)
        else:
            raise ValueError(
                f"FiGSMask '{self.name}': unknown strategy {strategy!r}; "
                f"allowed: {', '.join(map(repr, STRATEGIES))}."
            )
        if len(kept) == 0 or (self.keep_one and int(np.argmax(logits)) not in kept):
            kept = np.append(kept, int(np.argmax(logits)))
        return sorted(int(i) for i in kept)

    def check_choice(self, choice):
        """``choice`` as a sorted list of distinct kept channel indices (at least one)."""
        where = f"FiGSMask '{self.name}'"
        allowed = f"a non-empty list of distinct channel indices in 0..{self.channels - 1}"
        items = checks.sequence(where, "choice", choice, nonempty=False, what=allowed)
        kept = [checks.integer(where, "choice", i, low=0, high=self.channels - 1,
                               allowed=allowed) for i in items]
        if not kept or len(set(kept)) != len(kept):
            checks.fail(where, "choice", choice, allowed)
        return sorted(kept)

    def decode_choice(self, value):
        return np.flatnonzero(np.asarray(value) > 0).tolist()

    def encode_choice(self, choice):
        """The 0/1 mask of the kept channels ``choice``."""
        mask = np.zeros([self.channels], np.float32)
        mask[choice] = 1.0
        return mask

    def channel_keep(self, choice):
        """The boolean mask of the channels ``choice`` keeps.

        Example:
            >>> m = FiGSMask(); _ = m(tf.ones([1, 4]))
            >>> m.channel_keep([0, 2]).tolist()
            [True, False, True, False]
        """
        return self.encode_choice(self.check_choice(choice)) > 0

    def derivation(self, choice):
        """``KeepChannels``: masks disappear, their channels are sliced (``derive``)."""
        return KeepChannels(self.channel_keep(choice))

    def get_config(self):
        config = super().get_config()
        config.update(
            hard=self.hard,
            keep_one=self.keep_one,
            group=self.arch_key,
            initial_logit=self.initial_logit,
        )
        return config


def _relaxed_mask(logits, noise, temperature, choice, hard, best=None):
    """FiGS eq. 2 in one op: ``where(fixed, choice, keep(sigmoid((nu + s) / T)))``.

    Values and gradients equal ``relax.logistic_sigmoid`` (hard: straight-through)
    followed by ``keep_one``'s ``m + (1 - m) * best`` and
    ``where(choice_is_fixed(), choice, m)``; written as one custom-gradient op
    because a mask sits on every conv and each of the ~25 small ops the generic
    graph adds per mask (clip, division and select gradients) costs fixed time
    per step (``benchmarks/figs_overhead.py`` counts them). ``choice`` is all -1
    or all 0/1, so the fixed-choice test can be elementwise.
    """
    temperature = tf.maximum(tf.cast(temperature, logits.dtype), relax.TEMPERATURE_FLOOR)
    fixed = choice >= 0
    choice = tf.cast(choice, logits.dtype)  # read outside: no variable in the custom op

    @tf.custom_gradient
    def fused(nu):
        # No clip as in relax._scaled: where it would clip (|z| > 1e30, or inf) the
        # sigmoid is already exactly 0 or 1, and its gradient exactly 0.
        soft = tf.sigmoid((nu + tf.cast(noise, nu.dtype)) / temperature)
        m = tf.cast(soft > 0.5, soft.dtype) if hard else soft
        if best is not None:
            m = m + (1.0 - m) * best
        out = tf.where(fixed, choice, m)

        def grad(dy):
            g = tf.where(fixed, tf.zeros_like(dy), dy)
            if best is not None:
                g = g * (1.0 - best)
            return tf.raw_ops.SigmoidGrad(y=soft, dy=g) / temperature

        return out, grad

    return fused(logits)


MaskingLayer = FiGSMask


def figs_masks(model):
    """Every ``FiGSMask`` inside ``model`` (nested models included).

    Example:
        >>> figs_masks(keras.Sequential([keras.layers.Dense(2)]))
        []
    """
    return [
        layer
        for layer in model._flatten_layers(include_self=True, recursive=True)
        if isinstance(layer, FiGSMask)
    ]
