"""ResNet-10 3D for video action recognition, laid out as torchvision's ``VideoResNet`` (Tran et al.
2018, "A Closer Look at Spatiotemporal Convolutions for Action Recognition"; torchvision's
``models/video/resnet.py``): the r3d stem (a ``(3, 7, 7)`` convolution, stride ``(1, 2, 2)``,
BatchNorm, ReLU), four stages of one ``BasicBlock`` each (layers ``[1, 1, 1, 1]``; two ``3x3x3``
convolutions with BatchNorm, a ``1x1x1`` convolution + BatchNorm as the shortcut where the shape
changes), a global average pool and a linear classifier. Written as plain torch (torchvision does
not load beside this torch build).

The SOI paper's appendix E trains it in three widths: regular (64-128-256-512 channels), small (half)
and tiny (a quarter) (:data:`WIDTHS`), with 3D STMC layers, and its SOI variant adds "a skip
connection between the output of block 2 and the input of block 4, optimizing block 3": here block
3's main branch (conv1 .. conv2's BatchNorm of the third stage) runs in an S-CC pair of stride 2
(:func:`soi.scatter`), and the block's shortcut from block 2's output is the full-rate skip into
block 4's input.

``time_strides=True`` keeps torchvision's strides in time as well as space (stages 2-4 halve the
frame rate: one posterior per 8 frames); ``time_strides=False`` (what :func:`streaming_resnet3d`
builds for the cost table and the video task) strides space only, so that every stage runs at the
frame rate and "block 3 runs at half rate" under SOI, as the appendix describes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..core.state import StreamingModule
from ..layers.convert import convert as soi_convert
from ..scattered.scatter import scatter as soi_scatter

__all__ = ["PATTERNS", "SOI_SPAN", "WIDTHS", "ResNet3d", "resnet10", "streaming_resnet3d"]

WIDTHS = {"regular": 64, "small": 32, "tiny": 16}
"""The three sizes of appendix E by the channels of the first stage (stages double them)."""

PATTERNS = ("STMC", "SOI")
"""``STMC``: converted with ``causal=True`` (time padding on the left). ``SOI``: the STMC graph with
block 3's main branch in an S-CC pair of stride 2 (duplicating upsampler), its shortcut the skip."""


class BasicBlock(nn.Module):
    """torchvision's ``BasicBlock`` with ``Conv3DSimple``: ``(B, inplanes, T, H, W)`` ->
    ``(B, planes, T', H', W')``, strided by ``stride`` (time, height, width) in conv1 and the shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv3d(inplanes, planes, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm3d(planes),
            nn.ReLU(inplace=True),
        )
        self.conv2 = nn.Sequential(nn.Conv3d(planes, planes, 3, padding=1, bias=False), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != (1, 1, 1) or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv3d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm3d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x))
        out = out + residual
        return self.relu(out)


class ResNet3d(nn.Module):
    """ResNet-10 3D over ``(B, 3, T, H, W)`` -> logits ``(B, num_classes)``.

    Args:
        base: channels of the first stage (:data:`WIDTHS`); stages have ``base * (1, 2, 4, 8)``.
        num_classes: classifier outputs.
        time_strides: stride time in stages 2-4 as torchvision does; ``False``: space only.
        dropout: before the classifier (torchvision has none; 0 keeps its layout).
    """

    def __init__(self, base: int = 64, num_classes: int = 51, time_strides: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.base = base
        self.time_strides = time_strides
        self.stem = nn.Sequential(
            nn.Conv3d(3, base, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(base),
            nn.ReLU(inplace=True),
        )
        t = 2 if time_strides else 1
        planes = [base, 2 * base, 4 * base, 8 * base]
        strides = [(1, 1, 1), (t, 2, 2), (t, 2, 2), (t, 2, 2)]
        inplanes = base
        for i, (p, s) in enumerate(zip(planes, strides), start=1):
            setattr(self, f"layer{i}", BasicBlock(inplanes, p, s))
            inplanes = p
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        # a module rather than F.dropout(training=self.training): a traced graph keeps following .train()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x).flatten(1)
        return self.fc(self.dropout(x))


def resnet10(size: str = "regular", num_classes: int = 51, time_strides: bool = False, dropout: float = 0.0) -> ResNet3d:
    """ResNet-10 3D of ``size`` (:data:`WIDTHS`)."""
    if size not in WIDTHS:
        raise ValueError(f"resnet10: size must be one of {', '.join(WIDTHS)}, got {size!r}")
    return ResNet3d(WIDTHS[size], num_classes, time_strides, dropout)


SOI_SPAN = ("layer3_conv1_0", "layer3_conv1_0")
"""``(start, end)`` node names of block 3's main branch in the converted graph: conv1, its BatchNorm
and ReLU, conv2 and its BatchNorm form one chain, which :func:`soi.convert` makes one node named
after its first layer; the shortcut (``layer3_downsample_0``) and the add stay outside the pair."""


def streaming_resnet3d(net: ResNet3d, pattern: str, frame_shape: tuple[int, int], upsampler: str = "duplicate") -> StreamingModule:
    """The streaming form of ``net`` for ``pattern`` (:data:`PATTERNS`).

    Args:
        net: a :class:`ResNet3d` (left alone: the result has its weights, copied).
        pattern: ``"STMC"`` or ``"SOI"``.
        frame_shape: ``(H, W)`` of one input frame.
        upsampler: the SOI pair's upsampler (:data:`soi.scattered.UPSAMPLERS`).

    Returns:
        A streaming graph over ``(B, 3, T, H, W)`` -> logits ``(B, num_classes, T')``: one posterior
        per frame with ``time_strides=False`` (per 8 frames with torchvision's strides), each the
        classifier on the causal running mean of the last stage's features.

    Raises:
        ValueError: an unknown pattern.
    """
    if pattern not in PATTERNS:
        raise ValueError(f"streaming_resnet3d: pattern must be one of {', '.join(PATTERNS)}, got {pattern!r}")
    model = soi_convert(net, torch.zeros(1, 3, 9, *frame_shape), causal=True)
    if pattern == "SOI":
        model = soi_scatter(model, *SOI_SPAN, stride=2, upsampler=upsampler)
    model.pattern = pattern
    return model
