"""searchlayers: neural-architecture search as drop-in Keras (tf_keras) parts.

Importing the package makes ``tf.keras`` the Keras-2 API (see ``_keras``).

Example:
    >>> import searchlayers as sl
    >>> sl.__version__
    '0.1.0'
"""

__version__ = "0.1.0"

from searchlayers._keras import keras  # noqa: E402  (the Keras-2 guard runs first)
from searchlayers import relax  # noqa: E402
from searchlayers.layers import (  # noqa: E402
    EnTranCell,
    FiGSMask,
    GumbelDepthGate,
    MaskingLayer,
    MixedOp,
    QuantConv,
    SearchLayer,
    WidthGate,
    Zeroise,
    op_names,
    register_op,
)
from searchlayers.search import (  # noqa: E402
    SearchModel,
    arch_variables,
    joint_optimizer,
    prebuild,
    tie_arch_variables,
    weight_variables,
)
from searchlayers.architecture import Architecture  # noqa: E402
from searchlayers.derive import apply_architecture, choose, derive  # noqa: E402
from searchlayers import callbacks, cost, datasets, export, regularizers  # noqa: E402
from searchlayers import bn_score, evolution, transforms  # noqa: E402
from searchlayers.callbacks import (  # noqa: E402
    ArchitectureLogger,
    ArchWarmup,
    BNScoreEvaluator,
    EntropyRegularizer,
    FLOPsRegularizer,
    TemperatureScheduler,
)

__all__ = [
    "ArchWarmup",
    "ArchitectureLogger",
    "BNScoreEvaluator",
    "EntropyRegularizer",
    "FLOPsRegularizer",
    "TemperatureScheduler",
    "bn_score",
    "callbacks",
    "cost",
    "datasets",
    "evolution",
    "export",
    "regularizers",
    "transforms",
    "Architecture",
    "EnTranCell",
    "FiGSMask",
    "GumbelDepthGate",
    "MaskingLayer",
    "MixedOp",
    "QuantConv",
    "SearchLayer",
    "SearchModel",
    "prebuild",
    "WidthGate",
    "Zeroise",
    "apply_architecture",
    "arch_variables",
    "choose",
    "derive",
    "joint_optimizer",
    "keras",
    "op_names",
    "register_op",
    "relax",
    "tie_arch_variables",
    "weight_variables",
]
