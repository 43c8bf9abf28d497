"""BatchNorm folding: an eval-mode BatchNorm right after an STMC convolution or tSTMC becomes part of
that layer's weights and bias, and an identity in its place (the state layout does not change)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..core.containers import FrameWise
from ..layers.conv import STMCConvNd
from ..layers.conv_transpose import STMCConvTransposeNd

__all__ = ["fold_batchnorm"]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _bn_of(module: nn.Module) -> nn.Module | None:
    inner = module.module if isinstance(module, FrameWise) else module
    return inner if isinstance(inner, _BN) else None


@torch.no_grad()
def _fold_into(conv: nn.Module, bn: nn.Module) -> None:
    if bn.training:
        raise ValueError("fold_batchnorm: BatchNorm is in training mode; call model.eval() first")
    if not bn.track_running_stats or bn.running_mean is None:
        raise ValueError("fold_batchnorm: BatchNorm without running statistics cannot be folded")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    w = conv.weight
    if isinstance(conv, STMCConvTransposeNd):
        # weight (C_in, C_out/groups, ...): output channel g*C_out/g + j sits in group g's rows, column j.
        g = conv.groups
        view = w.view(g, w.shape[0] // g, w.shape[1], *w.shape[2:])
        view.mul_(scale.to(w).view(g, 1, w.shape[1], *([1] * (w.dim() - 2))))
    else:
        w.mul_(scale.to(w).view(-1, *([1] * (w.dim() - 1))))
    if conv.bias is None:
        conv.bias = nn.Parameter(shift.to(w))
    else:
        conv.bias.mul_(scale.to(w)).add_(shift.to(w))


def fold_batchnorm(model: nn.Module, inplace: bool = False) -> nn.Module:
    """A copy of ``model`` (eval mode) with every BatchNorm that directly follows an STMC
    convolution or tSTMC in a soi container folded into that layer's weights and bias.

    The folded BatchNorm is replaced by an identity, so the state layout and every output stay the
    same (up to float rounding). BatchNorms elsewhere are left alone. ``inplace=True`` folds into
    ``model`` itself.
    """
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    seen: set[int] = set()
    for module in model.modules():
        layers = getattr(module, "layers", None)
        if not isinstance(layers, nn.ModuleList):
            continue
        items = list(layers)
        for prev, cur in zip(items, items[1:]):
            bn = _bn_of(cur)
            if bn is None or id(bn) in seen or not isinstance(prev, (STMCConvNd, STMCConvTransposeNd)):
                continue
            if bn.num_features != prev.out_channels:
                continue
            _fold_into(prev, bn)
            seen.add(id(bn))
            if isinstance(cur, FrameWise):
                cur.module = nn.Identity()  # shared with any other container holding this layer
            else:
                layers[items.index(cur)] = FrameWise(nn.Identity())
    return model
