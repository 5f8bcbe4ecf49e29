"""Quiet TensorFlow by default: no start-up banners, no converter INFO lines.

TensorFlow's C++ code writes to the process' stderr (file descriptor 2), not
to Python's ``sys.stderr``: start-up banners (oneDNN, "Could not find cuda
drivers", CPU instructions, each twice), ``E... failed call to cuInit`` on a
machine without a GPU, the converters' INFO / W lines, TFLite's "Created
TensorFlow Lite XNNPACK delegate" and the quantizer's ``fully_quantize: ...``
line. ``TF_CPP_MIN_LOG_LEVEL`` only hides some of them (the banners come before
TensorFlow reads it), so ``quiet()`` runs a block with fd 2 captured and writes
back every line that is not one of those notices.

The level: ``TF_CPP_MIN_LOG_LEVEL`` as the user set it, else "2" (errors
only; set here, before TensorFlow is imported). "0" or an absl verbosity of
INFO or more (``--verbosity=0``) keeps every line.

This module imports nothing of the package (``_keras`` imports it before
TensorFlow).

Example:
    >>> from searchlayers import _logs
    >>> _logs.is_notice("I0000 00:00:1.0  42 port.cc:153] oneDNN custom operations are on.")
    True
    >>> _logs.is_notice("Traceback (most recent call last):")
    False
"""

import contextlib
import os
import re
import sys
import tempfile

DEFAULT_LEVEL = "2"  # TF_CPP_MIN_LOG_LEVEL: 0 all, 1 no INFO, 2 errors only, 3 fatal only
_CONTINUATION = "To enable the following instructions:"  # second line of a CPU banner
_ALWAYS = (  # notices that say nothing is wrong, at any level but 0
    "WARNING: All log messages before absl::InitializeLog() is called",
    "INFO: Created TensorFlow Lite XNNPACK delegate",
    "fully_quantize: ",
)
_NO_GPU = re.compile(r"^E\d{4} .*(failed call to cuInit|cuda_platform)")
_PREFIX = re.compile(r"^([IWEF])\d{4} ")


def level():
    """The C++ log level in force: ``TF_CPP_MIN_LOG_LEVEL`` (an int, 0 when unparsable).

    Example:
        >>> level() in (0, 1, 2, 3)
        True
    """
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", DEFAULT_LEVEL))
    except ValueError:
        return 0


def verbose():
    """True when the user asked for INFO logs: level 0, or absl verbosity >= INFO.

    Under ``absl.app.run`` the verbosity counts only when ``--verbosity`` / ``-v``
    was given on the command line: once the flags are parsed absl reports INFO
    even at its default, which would bring every converter line back.

    Example:
        >>> isinstance(verbose(), bool)
        True
    """
    from absl import flags, logging

    if level() == 0:
        return True
    if flags.FLAGS.is_parsed() and "verbosity" in flags.FLAGS:
        if not flags.FLAGS["verbosity"].present:
            return False
    return logging.get_verbosity() >= logging.INFO


def is_notice(line, min_level=None):
    """Whether ``line`` (of TensorFlow's stderr) is a notice hidden at ``min_level``
    (default ``level()``): a start-up banner, an INFO / W line below the level,
    the no-GPU cuInit error, TFLite's delegate line, the quantizer's summary.

    Example:
        >>> is_notice("W0000 00:00:1.0  42 helpers.cc:364] Ignored output_format.", 2)
        True
        >>> is_notice("E0000 00:00:1.0  42 kernel.cc:1] Real failure", 2)
        False
    """
    min_level = level() if min_level is None else min_level
    if min_level < 1:
        return False
    if line.startswith(_ALWAYS) or line.startswith(_CONTINUATION) or _NO_GPU.match(line):
        return True
    match = _PREFIX.match(line)
    return bool(match) and "IWEF".index(match.group(1)) < min_level


@contextlib.contextmanager
def quiet():
    """Runs the block with fd 2 captured; then writes back its lines but the notices.

    Does nothing when ``verbose()`` or when fd 2 cannot be duplicated.

    Example:
        >>> with quiet():
        ...     import tensorflow  # doctest: +SKIP
    """
    try:
        saved = None if verbose() else os.dup(2)
    except OSError:
        saved = None
    if saved is None:
        yield
        return
    with tempfile.TemporaryFile() as captured:
        _flush()
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            _flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(True) if not is_notice(line)]
            if kept:
                sys.stderr.write("".join(kept))
                _flush()


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError):
            pass


def import_tensorflow():
    """Sets the default level, then imports TensorFlow and finds its devices quietly.

    Finding the devices is where the no-GPU ``cuInit`` error line is written;
    it does not fix the logical devices (``tf.config.set_logical_device_
    configuration`` still works after it).

    Example:
        >>> tf = import_tensorflow()
        >>> tf.__name__
        'tensorflow'
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_LEVEL)
    fresh = "tensorflow" not in sys.modules
    with quiet() if fresh else contextlib.nullcontext():
        import tensorflow as tf

        if fresh:
            tf.config.list_physical_devices()
    return tf
