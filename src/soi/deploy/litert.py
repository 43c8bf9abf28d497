"""LiteRT (TensorFlow Lite) export of a streaming model: one ``.tflite`` per schedule phase, the
state explicit, the manifest of the ONNX export (:func:`soi.deploy.export.export_phases`).

The phase graphs are the ones the ONNX export writes (the lean copy with BatchNorm folded and
frequency-strided tSTMC as one polyphase convolution: ``litert-torch`` does not legalise a
``ConvTranspose2d`` with padding), converted by ``litert-torch``. A graph's inputs are positional:
the signature input ``args_<i>`` is the manifest's ``inputs[i]`` (``x``, then ``state.<name>``...),
the output ``output_<i>`` is ``outputs[i]`` (``y``, then ``next.<name>``...).

``target="micro"`` writes graphs TensorFlow Lite Micro can run: the ELU (which the converter
lowers to ``SELECT``, an operator TFLM lacks) becomes ``relu(x) + exp(min(x, 0)) - 1``, and every
operator of the written graphs is checked against :data:`MICRO_OPS` (TFLM's builtins that these
models use).

Needs the ``edge`` extra (``litert-torch``, ``ai-edge-litert``; ``tflite-micro`` for the micro
runtime).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..core.state import StreamingModule
from .export import export_phases
from .graph import StepGraph
from .manifest import LITERT_FORMAT

__all__ = ["MICRO_OPS", "TARGETS", "MicroELU", "export_litert", "graph_ops", "micro_activations"]

TARGETS = ("mobile", "micro")
"""``mobile``: LiteRT with its full builtin set (XNNPack); ``micro``: TensorFlow Lite Micro."""

MICRO_OPS = frozenset(
    {
        "ADD", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "EXP", "FULLY_CONNECTED", "LOG",
        "MAXIMUM", "MINIMUM", "MUL", "PAD", "PADV2", "QUANTIZE", "RELU", "RESHAPE", "SLICE", "STRIDED_SLICE",
        "SUB", "TANH", "TRANSPOSE", "SUM", "SQRT", "SQUARE", "RSQRT", "MAX_POOL_2D", "AVERAGE_POOL_2D", "LOGISTIC",
    }
)  # fmt: skip
"""TensorFlow Lite Micro builtins (``tflite_micro``'s ``all_ops_resolver``) that soi's graphs may
use; a ``micro`` export with any other operator is refused, saying which."""


class MicroELU(nn.Module):
    """``ELU(alpha)`` as ``relu(x) + alpha * (exp(min(x, 0)) - 1)``: the same function, from
    operators TensorFlow Lite Micro has (the converter lowers ``nn.ELU`` to ``SELECT``)."""

    frame_wise = True

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x: Tensor) -> Tensor:
        neg = torch.exp(torch.clamp(x, max=0.0)) - 1.0
        return torch.relu(x) + (neg if self.alpha == 1.0 else self.alpha * neg)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


def micro_activations(model: nn.Module) -> nn.Module:
    """``model`` with every ``nn.ELU`` replaced, in place, by :class:`MicroELU` (returned)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ELU):
                setattr(parent, name, MicroELU(child.alpha))
    return model


@contextlib.contextmanager
def _quiet(verbose: bool):
    """The converter's progress lines (stdout) and its loggers, unless ``verbose``."""
    if verbose:
        yield
        return
    names = ("litert_torch", "absl", "jax", "torch._export", "torch.export")
    levels = [logging.getLogger(n).level for n in names]
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for n, lv in zip(names, levels):
            logging.getLogger(n).setLevel(lv)


def graph_ops(path: str | Path) -> set[str]:
    """The builtin operator names of a ``.tflite`` file (``CONV_2D``, ...)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    return {op["op_name"] for op in interp._get_ops_details()}


def export_litert(
    model: StreamingModule,
    out_dir: str | Path,
    input_shape: Sequence[int],
    *,
    target: str = "mobile",
    fold_bn: bool = True,
    prepare: bool | None = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    verbose: bool = False,
) -> dict[str, Any]:
    """Export ``model`` (eval mode) for chunks ``input_shape = (B, C, n, ...)`` to ``out_dir``:
    ``g<id>_<kind>.tflite`` per distinct phase, ``initial_state.npz`` and ``manifest.json``
    (format ``soi-litert-v1``, the keys of the ONNX manifest, plus ``target``). Float32.

    ``target``: ``"mobile"`` or ``"micro"`` (:data:`TARGETS`; see the module docstring). Raises
    ``ValueError`` when a ``micro`` graph holds an operator TensorFlow Lite Micro lacks.
    """
    if target not in TARGETS:
        raise ValueError(f"export_litert: target must be one of {', '.join(TARGETS)}, got {target!r}")
    if next(model.parameters()).dtype != torch.float32:
        raise ValueError(f"export_litert: LiteRT graphs are float32; the model is {next(model.parameters()).dtype} (call model.float())")
    try:
        import litert_torch
    except ImportError as e:
        raise ImportError(f"export_litert needs litert-torch ({e}); install the edge extra: pip install --pre 'soi[edge]'") from None

    problems: list[str] = []

    def write(graph: StepGraph, args: tuple[Tensor, ...], in_names: list[str], out_names: list[str], path: Path) -> None:
        with _quiet(verbose), torch.no_grad():
            edge = litert_torch.convert(graph, args)
            edge.export(str(path))
        if target == "micro":
            missing = graph_ops(path) - MICRO_OPS
            if missing:
                problems.append(f"{path.name}: {', '.join(sorted(missing))}")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    meta = {"target": target, **(metadata or {})}
    manifest = export_phases(
        model, out_dir, input_shape, write, suffix=".tflite", format=LITERT_FORMAT, fold_bn=fold_bn, prepare=prepare,
        metadata=meta, overwrite=overwrite, swap=micro_activations if target == "micro" else None,
    )  # fmt: skip
    if problems:
        raise ValueError(f"export_litert: operators TensorFlow Lite Micro lacks: {'; '.join(problems)}")
    return manifest
