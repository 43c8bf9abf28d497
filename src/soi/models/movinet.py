"""MoViNet A0 and A1 (Kondratyuk et al. 2021, "MoViNets: Mobile Video Networks for Efficient Video
Recognition", CVPR 2021; the authors' reference, tensorflow/models ``official/projects/movinet``),
written as plain torch: the stem (a ``(1, 3, 3)`` convolution, stride ``(1, 2, 2)``), five blocks of
mobile inverted bottlenecks (a ``1x1x1`` expansion, a depthwise 3D convolution carrying the block's
kernel and stride, a 3D squeeze-excitation, a ``1x1x1`` projection scaled by a zero-initialised
ReZero weight, a residual whose shortcut average-pools ``(1, 3, 3)`` with stride 2 and projects
``1x1x1`` where the shape changes), the head projection, the global pool and the classifier head
(``1x1x1`` to 2048 with bias, swish, dropout, ``1x1x1`` to the classes). Swish activations, sigmoid
gates, BatchNorm with epsilon 1e-3 and momentum 0.01 (TF's 0.99); the block table is the reference's
``BLOCK_SPECS`` for ``a0`` and ``a1`` (:data:`SPECS`).

Streaming ("stream buffers" in the paper) is :func:`soi.convert` with ``causal=True``: every temporal
padding moves to the left (the causal convolutions of the paper's streaming MoViNets), and every
global average pool, the squeeze-excitations' and the head's, becomes the causal cumulative mean
over time (:class:`soi.layers.graph.CumulativePool`, a streaming module with its own running sum
and frame count), as the paper's causal SE defines it. What differs from the TF reference: spatial
"same" padding is symmetric here (TF pads one more on the bottom/right at stride 2), stochastic
depth and the positional encoding (both off in the reference's defaults) are left out.

SOI (appendix E: "SOI was applied by optimizing blocks 4 and 5"): every bottleneck of blocks 4 and 5
has its main branch, expansion to projection, in an S-CC pair of stride 2 (:func:`soi.scatter`,
duplicating upsampler), the residual shortcut the full-rate skip, as the scene GhostNet's SOI does.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from ..core.state import StreamingModule
from ..layers.convert import convert as soi_convert
from ..scattered.scatter import scatter as soi_scatter

__all__ = ["PATTERNS", "SOI_BLOCKS", "SPECS", "BlockSpec", "MoViNet", "MovinetSpec", "movinet", "soi_spans", "streaming_movinet"]

_BN = {"eps": 1e-3, "momentum": 0.01}


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One block of bottlenecks: output channels, and per bottleneck its expansion channels, the
    depthwise kernel ``(t, s, s)`` and stride ``(t, s, s)``."""

    base_filters: int
    expand_filters: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, int, int], ...]
    strides: tuple[tuple[int, int, int], ...]


@dataclasses.dataclass(frozen=True)
class MovinetSpec:
    """A MoViNet: the stem's channels, kernel and stride, five blocks, the head's projection and
    classifier-head channels."""

    stem_filters: int
    stem_kernel: tuple[int, int, int]
    stem_stride: tuple[int, int, int]
    blocks: tuple[BlockSpec, ...]
    project_filters: int
    head_filters: int


K13, K15, K33, K53 = (1, 3, 3), (1, 5, 5), (3, 3, 3), (5, 3, 3)
S11, S12 = (1, 1, 1), (1, 2, 2)

SPECS = {
    "a0": MovinetSpec(
        8, K13, S12,
        (
            BlockSpec(8, (24,), (K15,), (S12,)),
            BlockSpec(32, (80, 80, 80), (K33, K33, K33), (S12, S11, S11)),
            BlockSpec(56, (184, 112, 184), (K53, K33, K33), (S12, S11, S11)),
            BlockSpec(56, (184, 184, 184, 184), (K53, K33, K33, K33), (S11, S11, S11, S11)),
            BlockSpec(104, (384, 280, 280, 344), (K53, K15, K15, K15), (S12, S11, S11, S11)),
        ),
        480, 2048,
    ),
    "a1": MovinetSpec(
        16, K13, S12,
        (
            BlockSpec(16, (40, 40), (K15, K33), (S12, S11)),
            BlockSpec(40, (96, 120, 96, 96), (K33, K33, K33, K33), (S12, S11, S11, S11)),
            BlockSpec(64, (216, 128, 216, 168, 216), (K53, K33, K33, K33, K33), (S12, S11, S11, S11, S11)),
            BlockSpec(64, (216, 216, 216, 128, 128, 216), (K53, K33, K33, K33, K15, K33), (S11,) * 6),
            BlockSpec(
                136, (456, 360, 360, 360, 456, 456, 544), (K53, K15, K15, K15, K15, K33, K13), (S12,) + (S11,) * 6
            ),
        ),
        600, 2048,
    ),
}  # fmt: skip
"""The reference's block table (``BLOCK_SPECS['a0']``, ``['a1']``)."""

PATTERNS = ("STMC", "SOI")
"""``STMC``: the causal stream-buffer form (:func:`soi.convert`, ``causal=True``). ``SOI``: blocks 4
and 5 scattered (:data:`SOI_BLOCKS`)."""

SOI_BLOCKS = (4, 5)
"""The blocks (1-based, as the paper counts them) whose bottlenecks SOI puts in S-CC pairs."""


def _make_divisible(value: float, divisor: int = 8) -> int:
    """The reference's rounding of the squeeze-excitation width (``nn_layers.make_divisible``)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def _conv_bn(cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), groups: int = 1, act: bool = True) -> nn.Sequential:
    padding = tuple(k // 2 for k in kernel)
    layers: list[nn.Module] = [
        nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=False),
        nn.BatchNorm3d(cout, **_BN),
    ]
    if act:
        layers.append(nn.SiLU(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """The reference's 3D squeeze-excitation over ``(B, C, T, H, W)``: the global mean over time and
    space (causal: the cumulative mean over the frames so far), a ``1x1x1`` reduction with bias,
    swish, a ``1x1x1`` expansion with bias, a sigmoid gate on ``x``."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.se_reduce = nn.Conv3d(channels, hidden, 1)
        self.act = nn.SiLU(inplace=True)
        self.se_expand = nn.Conv3d(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(self.se_expand(self.act(self.se_reduce(self.pool(x)))))


class Bottleneck(nn.Module):
    """One MoViNet bottleneck (the reference's ``MovinetBlock``): ``(B, cin, T, H, W)`` ->
    ``(B, cout, T, H', W')``."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.expansion = _conv_bn(cin, expand)
        self.feature = _conv_bn(expand, expand, kernel, stride, groups=expand)
        self.se = SqueezeExcite(expand, _make_divisible(0.25 * expand))
        self.projection = _conv_bn(expand, cout, act=False)
        self.rezero = nn.Parameter(torch.zeros(1))
        downsample = any(s > 1 for s in stride)
        self.skip = None
        if downsample or cin != cout:
            pool: list[nn.Module] = []
            if downsample:
                # TF's AveragePooling3D 'same' averages only the real pixels at the border
                pool = [nn.AvgPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), count_include_pad=False)]
            self.skip = nn.Sequential(*pool, _conv_bn(cin, cout, act=False))

    def forward(self, x: Tensor) -> Tensor:
        out = self.projection(self.se(self.feature(self.expansion(x)))) * self.rezero
        return out + (x if self.skip is None else self.skip(x))


class MoViNet(nn.Module):
    """MoViNet over ``(B, 3, T, H, W)`` -> logits ``(B, num_classes)``.

    Args:
        spec: the architecture (:data:`SPECS`).
        num_classes: classifier outputs.
        dropout: before the classifier (the reference's video classifier uses 0.5 for Kinetics).
    """

    def __init__(self, spec: MovinetSpec, num_classes: int = 51, dropout: float = 0.2) -> None:
        super().__init__()
        self.spec = spec
        self.stem = _conv_bn(3, spec.stem_filters, spec.stem_kernel, spec.stem_stride)
        cin = spec.stem_filters
        blocks = []
        for b in spec.blocks:
            layers = []
            for expand, kernel, stride in zip(b.expand_filters, b.kernel_sizes, b.strides, strict=True):
                layers.append(Bottleneck(cin, b.base_filters, expand, kernel, stride))
                cin = b.base_filters
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*blocks)
        self.project = _conv_bn(cin, spec.project_filters)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.head = nn.Conv3d(spec.project_filters, spec.head_filters, 1)
        self.head_act = nn.SiLU(inplace=True)
        # a module rather than F.dropout(training=self.training): a traced graph keeps following .train()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv3d(spec.head_filters, num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")  # TF's HeNormal
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.classifier.weight, 0.0, 0.01)

    def forward(self, x: Tensor) -> Tensor:
        x = self.project(self.blocks(self.stem(x)))
        x = self.head_act(self.head(self.pool(x)))
        return self.classifier(self.dropout(x)).flatten(1)


def movinet(model_id: str = "a0", num_classes: int = 51, dropout: float = 0.2) -> MoViNet:
    """MoViNet ``model_id`` (``"a0"`` or ``"a1"``, :data:`SPECS`)."""
    if model_id not in SPECS:
        raise ValueError(f"movinet: model_id must be one of {', '.join(SPECS)}, got {model_id!r}")
    return MoViNet(SPECS[model_id], num_classes, dropout)


def soi_spans(net: MoViNet) -> list[tuple[str, str]]:
    """``(start, end)`` graph node names of the main branch of every bottleneck in blocks 4 and 5
    (:data:`SOI_BLOCKS`): its expansion convolution to its projection (names as ``torch.fx``
    gives them; :func:`soi.convert` makes a chain one node named after its first layer, so the
    projection's node holds its BatchNorm). The ReZero
    scale stays after the pair: a graph constant cannot enter a scattered span, and a scalar
    product commutes with the duplicating upsampler."""
    graph = torch.fx.symbolic_trace(net).graph
    prefixes = tuple(f"blocks.{b - 1}." for b in SOI_BLOCKS)
    spans, start = [], None
    for node in graph.nodes:
        if node.op == "call_module" and node.target.startswith(prefixes) and node.target.endswith("expansion.0"):
            start = node.name
        elif start is not None and node.op == "call_module" and node.target.endswith("projection.0"):
            spans.append((start, node.name))
            start = None
    return spans


def streaming_movinet(net: MoViNet, pattern: str, frame_shape: tuple[int, int], upsampler: str = "duplicate") -> StreamingModule:
    """The streaming form of ``net`` for ``pattern`` (:data:`PATTERNS`).

    Args:
        net: a :class:`MoViNet` (left alone: the result has its weights, copied).
        pattern: ``"STMC"`` or ``"SOI"``.
        frame_shape: ``(H, W)`` of one input frame.
        upsampler: the SOI pairs' upsampler (:data:`soi.scattered.UPSAMPLERS`).

    Returns:
        A streaming graph over ``(B, 3, T, H, W)`` -> logits ``(B, num_classes, T)``: a posterior per
        frame, the classifier head on the causal running mean of the head projection.

    Raises:
        ValueError: an unknown pattern.
    """
    if pattern not in PATTERNS:
        raise ValueError(f"streaming_movinet: pattern must be one of {', '.join(PATTERNS)}, got {pattern!r}")
    model = soi_convert(net, torch.zeros(1, 3, 6, *frame_shape), causal=True)
    if pattern == "SOI":
        for start, end in soi_spans(net):
            model = soi_scatter(model, start, end, stride=2, upsampler=upsampler)
    model.pattern = pattern
    return model
