"""GhostNet as Han et al. 2020 define it ("GhostNet: More Features from Cheap Operations", CVPR 2020;
the authors' reference code, huawei-noah/ghostnet ``ghostnet.py``), written as plain torch: GhostModule
(a primary 1x1 convolution and a cheap depthwise convolution, concatenated and sliced to the output
channels), GhostBottleneck (optional depthwise stride, optional squeeze-excitation with a hard-sigmoid
gate, a residual shortcut), the stem convolution, the paper's GhostNet 1.0x ``cfgs`` table, a width
multiplier, the final 1x1 ConvBnAct, the global pool, ``conv_head`` and the linear classifier.

Here it runs over ``(B, 1, T, mels)``: one input channel instead of RGB, time in dimension 2, 2-d
convolutions over (time, mel), "same" padding as in the reference code. ``time_strides=True`` keeps the
table's strides in both axes (an image network: one output per 32 frames); ``time_strides=False``
strides the mel axis only, so that every layer runs at the frame rate and a streaming classifier can
answer every frame: the form :mod:`soi.tasks.scenes` uses, with its three patterns (``baseline``,
``STMC``, ``SOI``, see :func:`streaming_ghostnet`).

A plain torch model: :func:`soi.convert` streams it (``causal=True`` moves the time padding to the
left and makes every squeeze-excitation's mean over time the causal cumulative mean), and
:func:`soi.scatter` makes the SOI variant of the converted graph.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.state import StreamingModule
from ..layers.convert import convert as soi_convert
from ..scattered.scatter import scatter_spans


def _make_divisible(v, divisor, min_value=None):
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def hard_sigmoid(x, inplace: bool = False):
    if inplace:
        return x.add_(3.0).clamp_(0.0, 6.0).div_(6.0)
    return F.relu6(x + 3.0) / 6.0


class SqueezeExcite(nn.Module):
    def __init__(
        self,
        in_chs,
        se_ratio=0.25,
        reduced_base_chs=None,
        act_layer=nn.ReLU,
        gate_fn=hard_sigmoid,
        divisor=4,
        **_,
    ):
        super().__init__()
        self.gate_fn = gate_fn
        reduced_chs = _make_divisible((reduced_base_chs or in_chs) * se_ratio, divisor)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_reduce = nn.Conv2d(in_chs, reduced_chs, 1, bias=True)
        self.act1 = act_layer(inplace=True)
        self.conv_expand = nn.Conv2d(reduced_chs, in_chs, 1, bias=True)

    def forward(self, x):
        x_se = self.avg_pool(x)
        x_se = self.conv_reduce(x_se)
        x_se = self.act1(x_se)
        x_se = self.conv_expand(x_se)
        x = x * self.gate_fn(x_se)
        return x


class ConvBnAct(nn.Module):
    def __init__(self, in_chs, out_chs, kernel_size, stride=1, act_layer=nn.ReLU):
        super().__init__()
        self.conv = nn.Conv2d(
            in_chs, out_chs, kernel_size, stride, kernel_size // 2, bias=False
        )
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = act_layer(inplace=True)

    def forward(self, x):
        x = self.conv(x)
        x = self.bn1(x)
        x = self.act1(x)
        return x


class GhostModule(nn.Module):
    def __init__(
        self, inp, oup, kernel_size=1, ratio=2, dw_size=3, stride=1, relu=True
    ):
        super().__init__()
        self.oup = oup
        init_channels = math.ceil(oup / ratio)
        new_channels = init_channels * (ratio - 1)
        self.primary_conv = nn.Sequential(
            nn.Conv2d(
                inp, init_channels, kernel_size, stride, kernel_size // 2, bias=False
            ),
            nn.BatchNorm2d(init_channels),
            nn.ReLU(inplace=True) if relu else nn.Sequential(),
        )
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(
                init_channels,
                new_channels,
                dw_size,
                1,
                dw_size // 2,
                groups=init_channels,
                bias=False,
            ),
            nn.BatchNorm2d(new_channels),
            nn.ReLU(inplace=True) if relu else nn.Sequential(),
        )

    def forward(self, x):
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        out = torch.cat([x1, x2], dim=1)
        return out[:, : self.oup, :, :]


class GhostBottleneck(nn.Module):
    """Ghost bottleneck with optional SE."""

    def __init__(
        self,
        in_chs,
        mid_chs,
        out_chs,
        dw_kernel_size=3,
        stride=1,
        act_layer=nn.ReLU,
        se_ratio=0.0,
    ):
        super().__init__()
        has_se = se_ratio is not None and se_ratio > 0.0
        self.stride = stride
        self.ghost1 = GhostModule(in_chs, mid_chs, relu=True)
        if self.stride != 1:
            self.conv_dw = nn.Conv2d(
                mid_chs,
                mid_chs,
                dw_kernel_size,
                stride=stride,
                padding=(dw_kernel_size - 1) // 2,
                groups=mid_chs,
                bias=False,
            )
            self.bn_dw = nn.BatchNorm2d(mid_chs)
        self.se = SqueezeExcite(mid_chs, se_ratio=se_ratio) if has_se else None
        self.ghost2 = GhostModule(mid_chs, out_chs, relu=False)
        if in_chs == out_chs and self.stride == 1:
            self.shortcut = nn.Sequential()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(
                    in_chs,
                    in_chs,
                    dw_kernel_size,
                    stride=stride,
                    padding=(dw_kernel_size - 1) // 2,
                    groups=in_chs,
                    bias=False,
                ),
                nn.BatchNorm2d(in_chs),
                nn.Conv2d(in_chs, out_chs, 1, stride=1, padding=0, bias=False),
                nn.BatchNorm2d(out_chs),
            )

    def forward(self, x):
        residual = x
        x = self.ghost1(x)
        if self.stride != 1:
            x = self.conv_dw(x)
            x = self.bn_dw(x)
        if self.se is not None:
            x = self.se(x)
        x = self.ghost2(x)
        x += self.shortcut(residual)
        return x


class GhostNet(nn.Module):
    """GhostNet over ``(B, in_chans, T, F)`` -> logits ``(B, num_classes)``.

    Args:
        cfgs: the stage table, rows ``[kernel, expansion, channels, se_ratio, stride]`` (:data:`CFGS`).
        num_classes: classifier outputs.
        width: the width multiplier of every layer but ``conv_head`` (1280 channels, as the reference).
        dropout: before the classifier.
        in_chans: input channels.
        time_strides: stride time as well as frequency (the reference's 2-d strides); ``False``:
            frequency only, every layer at the input's frame rate.
    """

    def __init__(
        self,
        cfgs: list,
        num_classes: int = 1000,
        width: float = 1.0,
        dropout: float = 0.2,
        in_chans: int = 1,
        time_strides: bool = True,
    ) -> None:
        super().__init__()
        self.cfgs = cfgs
        self.width = width

        def stride(s: int) -> int | tuple[int, int]:
            return s if time_strides else (1, s)

        output_channel = _make_divisible(16 * width, 4)
        self.conv_stem = nn.Conv2d(
            in_chans, output_channel, 3, stride(2), 1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(output_channel)
        self.act1 = nn.ReLU(inplace=True)
        input_channel = output_channel
        stages = []
        block = GhostBottleneck
        for cfg in self.cfgs:
            layers = []
            for k, exp_size, c, se_ratio, s in cfg:
                output_channel = _make_divisible(c * width, 4)
                hidden_channel = _make_divisible(exp_size * width, 4)
                layers.append(
                    block(
                        input_channel,
                        hidden_channel,
                        output_channel,
                        k,
                        stride(s) if s > 1 else 1,
                        se_ratio=se_ratio,
                    )
                )
                input_channel = output_channel
            stages.append(nn.Sequential(*layers))
        output_channel = _make_divisible(exp_size * width, 4)
        stages.append(nn.Sequential(ConvBnAct(input_channel, output_channel, 1)))
        input_channel = output_channel
        self.blocks = nn.Sequential(*stages)
        output_channel = 1280
        self.global_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.conv_head = nn.Conv2d(input_channel, output_channel, 1, 1, 0, bias=True)
        self.act2 = nn.ReLU(inplace=True)
        # a module rather than F.dropout(training=self.training): a traced graph keeps following .train()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(output_channel, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_stem(x)
        x = self.bn1(x)
        x = self.act1(x)
        x = self.blocks(x)
        x = self.global_pool(x)
        x = self.conv_head(x)
        x = self.act2(x)
        x = x.view(x.size(0), -1)
        x = self.dropout(x)
        x = self.classifier(x)
        return x


# GhostNet 1.0x (Table 1 of the paper): k, exp size, c, SE ratio, stride
CFGS = [
    [[3, 16, 16, 0, 1]],
    [[3, 48, 24, 0, 2]],
    [[3, 72, 24, 0, 1]],
    [[5, 72, 40, 0.25, 2]],
    [[5, 120, 40, 0.25, 1]],
    [[3, 240, 80, 0, 2]],
    [
        [3, 200, 80, 0, 1],
        [3, 184, 80, 0, 1],
        [3, 184, 80, 0, 1],
        [3, 480, 112, 0.25, 1],
        [3, 672, 112, 0.25, 1],
    ],
    [[5, 672, 160, 0.25, 2]],
    [
        [5, 960, 160, 0, 1],
        [5, 960, 160, 0.25, 1],
        [5, 960, 160, 0, 1],
        [5, 960, 160, 0.25, 1],
    ],
]


def ghostnet(width: float = 1.0, num_classes: int = 10, **kwargs: Any) -> GhostNet:
    """The GhostNet 1.0x table at ``width`` (``kwargs``: the rest of :class:`GhostNet`'s arguments)."""
    return GhostNet(CFGS, num_classes=num_classes, width=width, **kwargs)


# ==================================================================================================
# The three patterns of the SOI paper's scene classifier (section 3.2)
# ==================================================================================================

PATTERNS = ("baseline", "STMC", "SOI")
"""``baseline``: the network as Han et al. define it, "same" padding (looks ahead: offline only; online
it is windowed recompute). ``STMC``: converted with ``causal=True`` (all padding on the left), every
layer at the frame rate, a posterior every frame. ``SOI``: the STMC graph with every processing block
in an S-CC pair of stride 2 (each bottleneck's main branch, ghost1 .. ghost2, and the final
ConvBnAct): it runs on every second frame, the duplicating upsampler after it holds its output for
the next, and the bottleneck's residual shortcut is the skip connection between the downsampling and
the upsampling, at the frame rate. The head after the global pool (``conv_head``, the classifier)
stays at the frame rate: behind the cumulative pool its values are not a (B, C, T, ...) stream that
:func:`soi.scatter` takes, so at small widths, where the head is a large share, SOI saves less."""

SIZES = {"xs": 0.2, "s": 0.3, "m": 0.4, "l": 0.5, "xl": 0.7, "xxl": 1.0, "xxxl": 1.3}
"""The seven model sizes, by width multiplier."""


def bottleneck_spans(net: GhostNet) -> list[tuple[str, str]]:
    """``(start, end)`` graph node names of every processing block, in order: each bottleneck's main
    branch (its ghost1 primary convolution to the value the residual add takes from ghost2), then the
    final 1x1 ConvBnAct (names as ``torch.fx`` gives them, which :func:`soi.convert` keeps)."""
    graph = torch.fx.symbolic_trace(net).graph
    spans, start = [], None
    final = {
        f"{path}.conv" for path, m in net.named_modules() if isinstance(m, ConvBnAct)
    }
    for node in graph.nodes:
        if node.op == "call_module" and node.target in final:
            spans.append(
                (node.name, node.name)
            )  # the final 1x1 ConvBnAct: one layer (BN and ReLU join it)
        if node.op == "call_module" and node.target.endswith("ghost1.primary_conv.0"):
            start = node.name
        elif (
            start is not None
            and node.op == "call_function"
            and node.target in (operator.add, operator.iadd)
            and all(
                isinstance(a, torch.fx.Node) for a in node.args
            )  # the residual, not the gate's x + 3
        ):
            spans.append((start, node.args[0].name))
            start = None
    return spans


def streaming_ghostnet(
    net: GhostNet,
    pattern: str,
    frame_shape: tuple[int, int],
    upsampler: str = "duplicate",
) -> StreamingModule:
    """The streaming form of ``net`` for ``pattern`` (:data:`PATTERNS`, not ``baseline``: it looks ahead).

    Args:
        net: a GhostNet made with ``time_strides=False`` (the SOI pairs stride time themselves).
        pattern: ``"STMC"`` or ``"SOI"``.
        frame_shape: ``(in_chans, mels)`` of one input frame.
        upsampler: the SOI pairs' upsampler (:data:`soi.scattered.UPSAMPLERS`).

    Returns:
        A streaming graph over ``(B, in_chans, T, mels)`` -> logits ``(B, num_classes, T)``: one
        posterior per frame, the same weights as ``net`` (the argument is left alone).

    Raises:
        ValueError: an unknown pattern, ``baseline``, or a net that strides time.
    """
    if pattern not in PATTERNS:
        raise ValueError(
            f"streaming_ghostnet: pattern must be one of {', '.join(PATTERNS)}, got {pattern!r}"
        )
    if pattern == "baseline":
        raise ValueError(
            "streaming_ghostnet: the baseline pads 'same' (it looks ahead); it runs offline, online only as windowed recompute"
        )
    strided = [
        m for m in net.modules() if isinstance(m, nn.Conv2d) and m.stride[0] != 1
    ]
    if strided:
        raise ValueError(
            f"streaming_ghostnet: expected a GhostNet with time_strides=False, got {len(strided)} convolutions with a time stride"
        )
    model = soi_convert(
        net, torch.zeros(1, *frame_shape[:1], 4, *frame_shape[1:]), causal=True
    )
    if pattern == "SOI":
        model = scatter_spans(model, bottleneck_spans(net), stride=2, upsampler=upsampler)
    model.pattern = pattern
    return model
