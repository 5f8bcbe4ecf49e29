"""``CategoricalChoice``: the choice logic ``MixedOp`` and the BARS gates share.

One categorical choice among ``num_choices``, relaxed by ``mode`` (all from
``searchlayers.relax``):

- ``"softmax"``: the weights are ``softmax(alpha / T)`` (DARTS, BARS without
  Gumbel);
- ``"gumbel"``: a Gumbel-softmax sample in training, ``softmax(alpha / T)`` at
  inference (SNAS, BARS);
- ``"gumbel_hard"``: a straight-through one-hot Gumbel sample in training, the
  one-hot argmax at inference (GDAS);
- ``"uniform"`` / ``"fair"``: no logits; one choice drawn uniformly (SPOS) or
  strictly fairly (FairNAS) per step (``MixedOp`` only).

``probabilities()`` is ``softmax(alpha / T)`` in ``"softmax"`` mode,
``softmax(alpha)`` in the Gumbel modes and uniform without logits; a fixed
choice (``set_choice``, the ``choice`` variable of ``SearchLayer``) makes it,
and the mixing weights, one-hot.
"""

import tensorflow as tf

from searchlayers import relax
from searchlayers.layers.base import SearchLayer

SINGLE_PATH_MODES = ("uniform", "fair")


class CategoricalChoice(SearchLayer):
    """A search layer with one categorical choice (see the module docstring).

    Subclasses set ``self.mode`` and call ``build_choice()`` in ``build``.

    Example:
        >>> class Two(CategoricalChoice):
        ...     choice_names = ["a", "b"]
        ...     def build(self, input_shape):
        ...         self.mode = "softmax"
        ...         self.build_choice()
        ...         super().build(input_shape)
        ...     def call(self, x):
        ...         return x * self.mixing_weights()[0]
        >>> two = Two(); _ = two(tf.ones([1, 2])); two.set_choice(1)
        >>> two.probabilities().numpy().tolist(), two.sample_choice()
        ([0.0, 1.0], 1)
    """

    @property
    def has_logits(self):
        return self.mode not in SINGLE_PATH_MODES

    def build_choice(self):
        """Creates ``arch_logits`` (unless single-path) and the ``choice`` variable."""
        if self.has_logits:
            self.add_arch_weight("logits", [self.num_choices])
        self.add_choice_weight()

    def fixed(self, weights):
        """``weights``, or the one-hot of the fixed choice when there is one."""
        one_hot = tf.one_hot(tf.maximum(self.choice, 0), self.num_choices, dtype=weights.dtype)
        return tf.where(self.choice_is_fixed(), one_hot, weights)

    def _train_weights(self):
        logits = self.arch("logits")
        if self.mode == "softmax":
            return relax.softmax(logits, self.temperature)
        hard = self.mode == "gumbel_hard"
        return relax.gumbel_softmax(logits, self.temperature, self.noise_seed(), hard=hard)

    def _inference_weights(self):
        logits = self.arch("logits")
        if self.mode == "gumbel_hard":
            return relax.one_hot_argmax(logits)
        return relax.softmax(logits, self.temperature)

    def mixing_weights(self, training=False):
        """The relaxed choice of this call (one-hot when a choice is fixed);
        ``training`` may be a tensor."""
        if tf.is_tensor(training):
            w = tf.cond(tf.cast(training, tf.bool), self._train_weights, self._inference_weights)
        else:
            w = self._train_weights() if training else self._inference_weights()
        return self.fixed(w)

    def probabilities(self):
        """``softmax(alpha / T)`` ("softmax"), ``softmax(alpha)`` (Gumbel modes) or
        uniform (single-path); one-hot when a choice is fixed."""
        n = self.num_choices
        if not self.has_logits:
            probs = tf.fill([n], 1.0 / n)
        elif self.mode == "softmax":
            probs = relax.softmax(self.arch("logits"), self.temperature)
        else:
            probs = tf.nn.softmax(self.arch("logits"))
        return self.fixed(probs)

    def sample_choice(self, strategy="argmax", seed=None):
        """``"argmax"`` of the logits, or one seeded ``"sample"`` (Gumbel; uniform
        for single-path modes)."""
        where = f"{type(self).__name__} '{self.name}'"
        if strategy not in ("argmax", "sample"):
            raise ValueError(f"{where}: unknown strategy {strategy!r}; allowed: 'argmax', "
                             "'sample'.")
        if not self.has_logits and strategy != "sample":
            raise ValueError(
                f"{where} (mode {self.mode!r}) has no architecture logits: derive it with "
                "strategy='sample', from an Architecture (e.g. found by "
                "searchlayers.evolution), or after set_choice()."
            )
        if strategy == "argmax":
            return int(tf.argmax(self.arch("logits")))
        seed = [self.seed, 0 if seed is None else int(seed)]
        if not self.has_logits:
            return int(relax.uniform_choice(self.num_choices, seed))
        return int(tf.argmax(relax.gumbel_softmax(self.arch("logits"), 1.0, seed)))

