"""searchlayers: neural-architecture search as drop-in Keras (tf_keras) parts.

Importing the package makes ``tf.keras`` the Keras-2 API (see ``_keras``).

Example:
    >>> import searchlayers as sl
    >>> sl.__version__
    '0.1.0'
"""

__version__ = "0.1.0"

from searchlayers._keras import keras  # noqa: E402,F401  (guard runs first)
