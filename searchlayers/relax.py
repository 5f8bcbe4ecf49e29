"""Relaxations: how a search layer turns architecture logits into a (soft) choice.

One implementation of every sampling rule the five methods use:

- ``softmax`` / temperature softmax (DARTS, EnTranNAS: ``softmax(alpha / tau)``),
- ``gumbel_softmax`` soft (SNAS, BARS) and hard straight-through (GDAS),
- ``logistic_sigmoid`` — the binary concrete of FiGS, soft or hard,
- ``uniform_choice`` and ``fair_choice`` — single-path sampling (SPOS, FairNAS).

All noise is *stateless*: it is a pure function of ``seed`` (a pair of int
tensors). Search layers pass ``[layer_seed, step]`` where ``step`` is a
variable that all replicas share, so under ``tf.distribute`` every replica
draws the same architecture, and a resumed search continues the same stream.

Numerical safety: uniform noise is drawn from ``[tiny, 1 - tiny]``; the
softmax subtracts the largest logit *before* dividing by the temperature and
clips the ratio to a finite range, so logits anywhere in float32 (even +-3e38)
at any allowed temperature give the exact one-hot answer where it is one-hot,
never a uniform vector, NaN or inf. Temperatures below ``TEMPERATURE_FLOOR``
(1e-6) are rejected by ``check_temperature`` (layer constructors, the
``TemperatureScheduler``); inside the graph a smaller value (a temperature
variable assigned directly) is clamped to the floor. Why 1e-6: the soft
relaxation's gradient scales as ``1 / T``, and at 1e-6 the forward value is
already a hard argmax for any logit gap above 1e-4; a smaller temperature only
risks overflowing gradients (and 0 or a float32 denormal would divide by zero).

Example:
    >>> import tensorflow as tf
    >>> from searchlayers import relax
    >>> p = relax.gumbel_softmax(tf.zeros([4]), 1.0, seed=[1, 0])
    >>> round(float(tf.reduce_sum(p)), 5)
    1.0
"""

import numpy as np
import tensorflow as tf

from searchlayers import checks

# Smallest temperature a relaxation accepts (see the module docstring).
TEMPERATURE_FLOOR = 1e-6

# Largest magnitude a logit/temperature ratio may reach before the softmax: big
# enough to be exactly one-hot in float32, small enough that exp() and the max
# subtraction inside tf.nn.softmax never produce inf - inf.
_CLIP = 1e30
_INF = float("inf")
_TINY = 1e-20  # as in the BARS code: -log(-log(U + 1e-20) + 1e-20)

MODES = ("softmax", "gumbel", "gumbel_hard", "uniform", "fair")


def check_temperature(value, where):
    """``float(value)`` if it is a finite number >= ``TEMPERATURE_FLOOR``, else
    ValueError (TypeError for a non-number) naming ``where`` and the floor.

    Example:
        >>> check_temperature(0.5, "MixedOp 'op'")
        0.5
        >>> check_temperature(1e-30, "MixedOp 'op'")
        Traceback (most recent call last):
        ...
        ValueError: MixedOp 'op': temperature must be a finite number >= 1e-06, got 1e-30.
    """
    return checks.number(where, "temperature", value, low=TEMPERATURE_FLOOR)


def _python_temperature(value, where):
    """Checks a temperature given as a Python / NumPy number: NaN, inf, a negative
    or a string is refused; 0 and tiny values clamp to the floor (see above).
    Tensors pass unchecked: they may be traced, and hot paths stay assert-free."""
    if type(value) is float and 0.0 <= value < _INF:  # the common case, ~0.1 us (NaN fails)
        return
    if not tf.is_tensor(value) and np.ndim(value) == 0:
        checks.number(where, "temperature", value, low=0)


def _scaled(logits, temperature):
    temperature = tf.maximum(tf.cast(temperature, logits.dtype), TEMPERATURE_FLOOR)
    z = tf.math.divide(logits, temperature)
    return tf.clip_by_value(z, -_CLIP, _CLIP)


def softmax(logits, temperature=1.0):
    """Temperature softmax over the last axis: ``softmax(logits / T)``.

    Example:
        >>> softmax(tf.constant([0.0, 0.0])).numpy().tolist()
        [0.5, 0.5]
    """
    _python_temperature(temperature, "relax.softmax")
    logits = tf.convert_to_tensor(logits)
    # Shift first: (l - max) / T keeps every gap, where l / T clipped would not.
    # Softmax is shift-invariant, so the shift needs no gradient.
    shift = tf.stop_gradient(tf.reduce_max(logits, axis=-1, keepdims=True))
    return tf.nn.softmax(_scaled(logits - shift, temperature), axis=-1)


def uniform_noise(shape, seed):
    """Stateless U(tiny, 1 - tiny) noise, a pure function of ``seed``.

    Example:
        >>> uniform_noise([2], seed=[0, 0]).shape
        TensorShape([2])
    """
    return tf.random.stateless_uniform(
        shape, seed=tf.cast(seed, tf.int32), minval=_TINY, maxval=1.0 - 1e-7
    )


def gumbel_noise(shape, seed):
    """Standard Gumbel noise ``-log(-log(U))``.

    Example:
        >>> gumbel_noise([3], seed=[0, 1]).shape
        TensorShape([3])
    """
    u = uniform_noise(shape, seed)
    return -tf.math.log(-tf.math.log(u + _TINY) + _TINY)


def straight_through(hard, soft):
    """Forward ``hard``, backward the gradient of ``soft``.

    Example:
        >>> straight_through(tf.constant([1.0, 0.0]), tf.constant([0.6, 0.4])).numpy().tolist()
        [1.0, 0.0]
    """
    hard = tf.stop_gradient(hard)

    # A custom gradient keeps the forward value exactly ``hard`` (the usual
    # ``hard + soft - stop_gradient(soft)`` is off by rounding).
    @tf.custom_gradient
    def _st(s):
        return tf.identity(hard), lambda dy: dy

    return _st(soft)


def one_hot_argmax(probs):
    """One-hot vector of the largest entry on the last axis.

    Example:
        >>> one_hot_argmax(tf.constant([0.2, 0.8])).numpy().tolist()
        [0.0, 1.0]
    """
    return tf.one_hot(tf.argmax(probs, axis=-1), tf.shape(probs)[-1], dtype=probs.dtype)


def gumbel_softmax(logits, temperature, seed, hard=False):
    """Gumbel-softmax sample ``softmax((logits + g) / T)``.

    With ``hard=True`` the forward value is the one-hot argmax of the sample and
    the gradient is that of the soft sample (straight-through, as in GDAS).

    Example:
        >>> y = gumbel_softmax(tf.constant([0.0, 5.0]), 0.1, seed=[3, 4], hard=True)
        >>> sorted(y.numpy().tolist())
        [0.0, 1.0]
    """
    _python_temperature(temperature, "relax.gumbel_softmax")
    logits = tf.convert_to_tensor(logits)
    g = tf.cast(gumbel_noise(tf.shape(logits), seed), logits.dtype)
    soft = softmax(logits + g, temperature)
    return straight_through(one_hot_argmax(soft), soft) if hard else soft


def logistic_noise(shape, seed):
    """Logistic(0, 1) noise ``log U - log(1 - U)``.

    Example:
        >>> logistic_noise([5], seed=[0, 2]).shape
        TensorShape([5])
    """
    u = uniform_noise(shape, seed)
    return tf.math.log(u) - tf.math.log1p(-u)


def logistic_sigmoid(logits, temperature, seed=None, hard=False):
    """Binary-concrete (Logistic-Sigmoid) relaxation of independent gates.

    ``sigmoid((logits + s) / T)`` with Logistic noise ``s`` (FiGS eq. 2). With
    ``seed=None`` no noise is added (the deterministic mean gate). ``hard=True``
    gives a 0/1 forward value ``1[sample > 0.5]`` with the soft gradient.
    ``P(sample > 0.5) = sigmoid(logits)`` for any temperature.

    Example:
        >>> m = logistic_sigmoid(tf.constant([9.0, -9.0]), 0.001)
        >>> m.numpy().round().tolist()
        [1.0, 0.0]
    """
    _python_temperature(temperature, "relax.logistic_sigmoid")
    logits = tf.convert_to_tensor(logits)
    z = logits
    if seed is not None:
        z = logits + tf.cast(logistic_noise(tf.shape(logits), seed), logits.dtype)
    soft = tf.sigmoid(_scaled(z, temperature))
    if not hard:
        return soft
    return straight_through(tf.cast(soft > 0.5, soft.dtype), soft)


def uniform_choice(num_choices, seed):
    """One index drawn uniformly from ``range(num_choices)`` (SPOS).

    Example:
        >>> int(uniform_choice(4, seed=[0, 0])) in range(4)
        True
    """
    if not tf.is_tensor(num_choices):  # a Python count; a tensor may be traced
        checks.integer("relax.uniform_choice", "num_choices", num_choices, low=1)
    u = tf.random.stateless_uniform(
        [], seed=tf.cast(seed, tf.int32), maxval=num_choices, dtype=tf.int32
    )
    return u


def fair_choice(num_choices, seed, step):
    """Strict-fair single path (FairNAS): within each block of ``num_choices``
    consecutive steps every choice is drawn exactly once, in an order that is a
    stateless random permutation of the block number.

    Example:
        >>> picks = [int(fair_choice(3, seed=7, step=s)) for s in range(3)]
        >>> sorted(picks)
        [0, 1, 2]
    """
    if not tf.is_tensor(num_choices):  # a Python count; a tensor may be traced
        checks.integer("relax.fair_choice", "num_choices", num_choices, low=1)
    step = tf.cast(step, tf.int32)
    block = step // num_choices
    keys = tf.random.stateless_uniform(
        [num_choices], seed=tf.stack([tf.cast(seed, tf.int32), block])
    )
    return tf.cast(tf.argsort(keys)[step % num_choices], tf.int32)
