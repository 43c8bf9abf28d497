"""Deployment: BatchNorm folding, lean layers, one graph per schedule phase, compiled streamers,
ONNX export with explicit state and the ONNX Runtime streamer.

==================  ================================================================================
``fold``            :func:`fold_batchnorm`
``lean``            lean layers (:class:`~soi.deploy.lean.LeanConv`, ...) and :func:`lean`
``graph``           :class:`StepGraph`, :class:`Phase`, :class:`Schedule`, :func:`discover_schedule`
``streamer``        :class:`FastStreamer` and its :data:`BACKENDS` (TorchScript, AOTInductor, ...)
``export``          :func:`export_onnx`, :func:`~soi.deploy.export.compare_export`
``manifest``        the manifest of an exported directory (torch-free)
``runtime``         :class:`OnnxStreamer` (onnxruntime, torch-free)
``base``            what both streamers share (torch-free)
==================  ================================================================================
"""

from .export import export_onnx
from .fold import fold_batchnorm
from .graph import Phase, Schedule, StepGraph, discover_schedule
from .lean import lean
from .runtime import OnnxStreamer
from .streamer import BACKENDS, FastStreamer

__all__ = [
    "FastStreamer",
    "StepGraph",
    "Schedule",
    "Phase",
    "discover_schedule",
    "fold_batchnorm",
    "lean",
    "export_onnx",
    "OnnxStreamer",
    "BACKENDS",
]
