"""Scattered Online Inference: upsamplers (:mod:`.upsample`), shifts, S-CC and SS-CC pairs and
STMC's exact strided pair (:mod:`.pairs`)."""

from .pairs import SC, SSCC, SCCPair, SCCState, SCState, Shift, STMCStridedPair, STMCStridedState
from .upsample import UPSAMPLERS, Duplicate, Interpolate, TransposedUpsample, Upsampler, UpsampleState, make_upsampler

__all__ = [
    "Upsampler", "UpsampleState", "Duplicate", "Interpolate", "TransposedUpsample", "make_upsampler", "UPSAMPLERS",
    "Shift", "SC", "SCState", "SCCPair", "SCCState", "SSCC", "STMCStridedPair", "STMCStridedState",
]  # fmt: skip
