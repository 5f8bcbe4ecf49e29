"""Search layers and candidate operations.

Example:
    >>> from searchlayers.layers import MixedOp, op_names
    >>> "sep_conv_3x3" in op_names()
    True
"""

from searchlayers.layers.base import ZERO, SearchLayer, is_arch_variable, search_layers
from searchlayers.layers.mixed_op import MixedOp
from searchlayers.layers.ops import (
    DARTS_OPS,
    FactorizedReduce,
    Zeroise,
    get_op,
    op_names,
    register_op,
)

__all__ = [
    "DARTS_OPS",
    "FactorizedReduce",
    "MixedOp",
    "SearchLayer",
    "ZERO",
    "Zeroise",
    "get_op",
    "is_arch_variable",
    "op_names",
    "register_op",
    "search_layers",
]
