"""soi: streaming inference of convolutional networks.

Short-Term Memory Convolution (STMC) layers keep a shift register of past frames so that a chunk
costs only its new frames and the online output equals the offline output exactly; Scattered
Online Inference (SOI) skips the deep layers on most frames behind strided convolutions.
"""

from .core.containers import ChannelLinear, Concat, DelayLine, FrameWise, Residual, Sequential, as_streaming
from .layers.conv import STMCConv1d, STMCConv2d, STMCConv3d, STMCConvNd
from .layers.conv_transpose import STMCConvTranspose1d, STMCConvTranspose2d, STMCConvTranspose3d, STMCConvTransposeNd
from .layers.pooling import (
    CumulativeAvgPool,
    STMCAvgPool1d,
    STMCAvgPool2d,
    STMCAvgPool3d,
    STMCAvgPoolNd,
    STMCMaxPool1d,
    STMCMaxPool2d,
    STMCMaxPool3d,
    STMCMaxPoolNd,
)
from .layers.convert import ConversionError, convert
from .layers.graph import StreamGraph
from .layers.recurrent import Recurrent
from .scattered.scatter import scatter, scatter_spans
from .scattered import SC, SSCC, Duplicate, Interpolate, SCCPair, Shift, STMCStridedPair, TransposedUpsample
from .core.state import State, StreamingModule, replace_state_tensors, state_tensors
from .analysis import cost  # soi.cost(model) works: the module is callable
from . import models

__version__ = "0.1.0"

__all__ = [
    "State", "StreamingModule", "state_tensors", "replace_state_tensors",
    "STMCConvNd", "STMCConv1d", "STMCConv2d", "STMCConv3d",
    "STMCConvTransposeNd", "STMCConvTranspose1d", "STMCConvTranspose2d", "STMCConvTranspose3d",
    "STMCAvgPoolNd", "STMCAvgPool1d", "STMCAvgPool2d", "STMCAvgPool3d",
    "STMCMaxPoolNd", "STMCMaxPool1d", "STMCMaxPool2d", "STMCMaxPool3d", "CumulativeAvgPool",
    "Sequential", "Concat", "Residual", "FrameWise", "ChannelLinear", "DelayLine", "as_streaming",
    "convert", "ConversionError", "StreamGraph", "Recurrent",
    "scatter", "scatter_spans", "SCCPair", "SC", "SSCC", "Shift", "Duplicate", "Interpolate", "TransposedUpsample", "STMCStridedPair",
    "cost", "models",
]  # fmt: skip
