"""Search layers and candidate operations.

Example:
    >>> from searchlayers.layers import MixedOp, op_names
    >>> "sep_conv_3x3" in op_names()
    True
"""

from searchlayers.layers.base import SearchLayer, is_arch_variable, search_layers
from searchlayers.layers.channel_select import ChannelSelect
from searchlayers.layers.figs import FiGSMask, MaskingLayer, figs_masks
from searchlayers.layers.mixed_op import MixedOp
from searchlayers.layers.ops import (
    DARTS_OPS,
    FactorizedReduce,
    Zeroise,
    get_op,
    op_names,
    register_op,
)
from searchlayers.layers.binary import (  # registers the bin_* ops
    BARS_OPS,
    BNAS_OPS,
    BinaryConvBN,
    BinaryConvShortcut,
    BinaryReduce,
    QuantConv,
    ScaledSign,
)
from searchlayers.layers.gates import GumbelDepthGate, WidthGate, gate_layers
from searchlayers.layers.mobilenet import MB_OPS, inverted_residual
from searchlayers.layers.entrannas import EnTranCell

__all__ = [
    "BARS_OPS",
    "BNAS_OPS",
    "BinaryConvBN",
    "BinaryConvShortcut",
    "BinaryReduce",
    "ChannelSelect",
    "QuantConv",
    "ScaledSign",
    "DARTS_OPS",
    "EnTranCell",
    "FactorizedReduce",
    "FiGSMask",
    "GumbelDepthGate",
    "MaskingLayer",
    "MB_OPS",
    "MixedOp",
    "SearchLayer",
    "WidthGate",
    "Zeroise",
    "figs_masks",
    "gate_layers",
    "get_op",
    "inverted_residual",
    "is_arch_variable",
    "op_names",
    "register_op",
    "search_layers",
]
