"""Runnable examples: ``python -m examples.<name> --help``.

Every example is quiet by default (``searchlayers._logs``). ``--verbosity=0``
(absl's flag, also ``-v 0``) brings back INFO logs: the converters' lines, and
TensorFlow's C++ lines too, which must be asked for before TensorFlow is
imported; so when an example runs as ``python -m examples.<name>`` this
package reads that flag from the command line and sets
``TF_CPP_MIN_LOG_LEVEL=0``.
"""

import os
import sys


def verbosity_from_argv(argv):
    """The value of ``--verbosity`` / ``-v`` in ``argv`` (last one wins), or None.

    Example:
        >>> verbosity_from_argv(["-m", "--epochs=1", "--verbosity=0"])
        0
        >>> verbosity_from_argv(["-m", "-v", "1"]), verbosity_from_argv(["-m"])
        (1, None)
    """
    value = None
    for i, arg in enumerate(argv):
        for name in ("--verbosity", "-v"):
            if arg.startswith(name + "="):
                value = arg[len(name) + 1:]
            elif arg == name and i + 1 < len(argv):
                value = argv[i + 1]
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


# sys.argv[0] is "-m" while `python -m examples.<name>` finds its module.
if sys.argv and sys.argv[0] == "-m":
    _VERBOSITY = verbosity_from_argv(sys.argv)
    if _VERBOSITY is not None and _VERBOSITY >= 0:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"

# Examples import TensorFlow before the package; import it here, quietly, first.
from searchlayers import _logs  # noqa: E402

_logs.import_tensorflow()
