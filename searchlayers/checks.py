"""The one argument checker of the package.

Every public constructor and function validates its arguments here, before any
tracing, so a mistake arrives as one line that names the function or layer
(``where``), the argument, the value and what is allowed::

    MixedOp 'op': temperature must be a number >= 1e-06, got 1e-30.

Wrong *values* raise ``ValueError``; wrong *types* (a string or a bool where a
number belongs, a number where a list belongs) raise ``ArgumentTypeError``,
which is both a ``TypeError`` and a ``ValueError`` so that code catching
either keeps working. This module imports nothing from the package.

Example:
    >>> number("FLOPsRegularizer", "strength", 0.5, low=0)
    0.5
    >>> number("FLOPsRegularizer", "strength", "0.5", low=0)
    Traceback (most recent call last):
    ...
    searchlayers.checks.ArgumentTypeError: FLOPsRegularizer: strength must be a finite number >= 0, got '0.5' (str).
"""

import math
import numbers as _numbers

import numpy as np

_REPR = 60


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a ``TypeError`` and a ``ValueError``)."""


def show(value):
    """A short ``repr`` of ``value`` for an error message.

    Example:
        >>> show("x" * 100)[-4:]
        "...'"
    """
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape) > 1:  # arrays and tensors: their shape, not data
        return f"{type(value).__name__} of shape {tuple(shape)}"
    text = " ".join(repr(value).split())
    if len(text) > _REPR:
        text = text[: _REPR - 4] + "...'" if isinstance(value, str) else text[: _REPR - 3] + "..."
    return text


def fail(where, name, value, allowed, error=ValueError):
    """Raises ``error("{where}: {name} must be {allowed}, got {value}.")``."""
    raise error(f"{where}: {name} must be {allowed}, got {show(value)}.")


def _typed(value):
    return f"{show(value)} ({type(value).__name__})"


def _describe(kind, low, high, low_open, high_open, finite):
    words = [kind if kind == "an integer" or not finite else f"a finite {kind[2:]}"]
    if low is not None and high is not None:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        words.append(f"in {left}{low:g}, {high:g}{right}")
    elif low is not None:
        words.append(f"{'>' if low_open else '>='} {low:g}")
    elif high is not None:
        words.append(f"{'<' if high_open else '<='} {high:g}")
    return " ".join(words)


def is_number(value):
    """True for real numbers (Python or NumPy, 0-d arrays included), never bool.

    Example:
        >>> is_number(2), is_number(True), is_number("2")
        (True, False, False)
    """
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    return isinstance(value, _numbers.Real) and not isinstance(value, (bool, np.bool_))


def number(where, name, value, low=None, high=None, low_open=False, high_open=False,
           integer=False, finite=True, none_ok=False, allowed=None):
    """``value`` as a ``float`` (``int`` with ``integer=True``) if it is allowed.

    ``low``/``high`` bound it (closed unless ``low_open``/``high_open``);
    ``finite`` rejects NaN and +-inf; ``none_ok`` lets ``None`` through;
    ``allowed`` replaces the generated description of what is allowed.
    A bool, a string or any non-number is an ``ArgumentTypeError``.

    Example:
        >>> number("derive()", "k", 8, low=1, integer=True)
        8
        >>> number("derive()", "k", 0, low=1, integer=True)
        Traceback (most recent call last):
        ...
        ValueError: derive(): k must be an integer >= 1, got 0.
    """
    if value is None and none_ok:
        return None
    if allowed is None:
        kind = "an integer" if integer else "a number"
        allowed = _describe(kind, low, high, low_open, high_open, finite)
        if none_ok:
            allowed += " or None"
    if not is_number(value):
        raise ArgumentTypeError(f"{where}: {name} must be {allowed}, got {_typed(value)}.")
    if isinstance(value, np.ndarray):
        value = value[()]
    if integer:
        if not float(value).is_integer():
            fail(where, name, value, allowed)
        value = int(value)
    else:
        value = float(value)
    if finite and not math.isfinite(value):
        fail(where, name, value, allowed)
    if value != value:  # NaN compares false to every bound
        fail(where, name, value, allowed)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        fail(where, name, value, allowed)
    return value


def positive(where, name, value, integer=False, none_ok=False):
    """``number(value)`` that must be > 0 (>= 1 for integers).

    Example:
        >>> positive("datasets.digits", "batch_size", 32, integer=True)
        32
    """
    if integer:
        return number(where, name, value, low=1, integer=True, none_ok=none_ok)
    return number(where, name, value, low=0, low_open=True, none_ok=none_ok)


def integer(where, name, value, low=None, high=None, none_ok=False, allowed=None):
    """``number(value, integer=True)``: an ``int`` (``2.0`` passes, ``2.7`` does not).

    Example:
        >>> integer("MixedOp", "channels", 16, low=1)
        16
    """
    return number(where, name, value, low=low, high=high, integer=True, none_ok=none_ok,
                  allowed=allowed)


def boolean(where, name, value):
    """``value`` if it is a bool (Python or NumPy), else ``ArgumentTypeError``.

    Example:
        >>> boolean("FiGSMask", "hard", False)
        False
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"{where}: {name} must be True or False, got {_typed(value)}.")
    return bool(value)


def choice(where, name, value, allowed):
    """``value`` if it is one of ``allowed``, else ``ValueError`` listing them
    (``"{where}: unknown {name} 'x'; allowed: 'a', 'b'."``).

    Example:
        >>> choice("TemperatureScheduler", "per", "step", ("epoch", "step"))
        'step'
    """
    try:
        ok = value in allowed
    except TypeError:  # unhashable value against a set / dict
        ok = False
    if not ok:
        raise ValueError(
            f"{where}: unknown {name} {show(value)}; allowed: {', '.join(map(repr, allowed))}."
        )
    return value


def string(where, name, value, nonempty=True):
    """``value`` if it is a (non-empty) string.

    Example:
        >>> string("register_op", "name", "my_op")
        'my_op'
    """
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{where}: {name} must be a string, got {_typed(value)}.")
    if nonempty and not value:
        fail(where, name, value, "a non-empty string")
    return value


def sequence(where, name, value, nonempty=True, what="a list"):
    """``list(value)`` for a list / tuple / array; a string or scalar is an
    ``ArgumentTypeError`` (``"abc"`` is not a list of three names).

    Example:
        >>> sequence("WidthGate", "widths", (0.5, 1.0))
        [0.5, 1.0]
    """
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple, np.ndarray)):
        raise ArgumentTypeError(f"{where}: {name} must be {what}, got {_typed(value)}.")
    items = list(value)
    if nonempty and not items:
        fail(where, name, value, f"{what} with at least one entry")
    return items


def numbers(where, name, value, nonempty=True, **bounds):
    """A list of numbers, each checked by ``number(**bounds)``; the message
    names the offending entry as ``name[i]``.

    Example:
        >>> numbers("WidthGate", "widths", [0.25, 1], low=0, low_open=True, high=1)
        [0.25, 1.0]
    """
    items = sequence(where, name, value, nonempty=nonempty, what="a list of numbers")
    return [number(where, f"{name}[{i}]", v, **bounds) for i, v in enumerate(items)]


def distinct(where, name, items, allowed):
    """``items`` if no entry repeats, else ``ValueError`` naming the first repeat
    and its positions (``allowed`` says what the list must be).

    Example:
        >>> distinct("MixedOp 'a'", "candidates", ["conv_3x3", "none"], "distinct op names")
        ['conv_3x3', 'none']
        >>> distinct("MixedOp 'a'", "candidates", ["none", "conv_3x3", "none"], "distinct op names")
        Traceback (most recent call last):
        ...
        ValueError: MixedOp 'a': candidates must be distinct op names, got 'none' twice (at 0 and 2).
    """
    seen = {}
    for i, item in enumerate(items):
        if item in seen:
            raise ValueError(f"{where}: {name} must be {allowed}, got {show(item)} twice "
                             f"(at {seen[item]} and {i}).")
        seen[item] = i
    return items


def nonempty(where, name, value):
    """``value`` if it has at least one entry (a list, dict, array or dataset
    with a known length), else ``ValueError``.

    Example:
        >>> nonempty("evolutionary_search", "candidates", [1])
        [1]
    """
    try:
        size = len(value)
    except TypeError:
        return value
    if size == 0:
        fail(where, name, value, "non-empty")
    return value


def finite_array(where, name, value, nonempty=True):
    """``value`` as a float ``np.ndarray`` with no NaN or inf (and at least one
    entry); the message counts the bad entries.

    Example:
        >>> finite_array("to_tflite", "representative_data", [[1.0, 2.0]]).shape
        (1, 2)
    """
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ArgumentTypeError(
            f"{where}: {name} must be an array of numbers, got {_typed(value)}."
        ) from None
    if nonempty and array.size == 0:
        fail(where, name, value, f"a non-empty array (shape {array.shape} has no entries)")
    bad = int(array.size - np.isfinite(array).sum())
    if bad:
        raise ValueError(
            f"{where}: {name} must be finite, but {bad} of its {array.size} entries are "
            "NaN or inf."
        )
    return array
