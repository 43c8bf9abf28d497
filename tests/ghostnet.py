"""The GhostNet of the conversion tests: the model is soi's own (:mod:`soi.models.ghostnet`, Han et
al. 2020 as plain torch); :func:`causal_reference` is the torch model that
``soi.convert(..., causal=True)`` streams, the reference those tests compare with."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from soi.models.ghostnet import CFGS, GhostNet, SqueezeExcite, ghostnet

__all__ = ["CFGS", "GhostNet", "causal_reference", "ghostnet"]


class _CausalMeanSE(nn.Module):
    """The squeeze-excitation's pool as the stream computes it: frame ``t`` of the mean over
    (T, F) is the mean of frames ``0..t`` (the causal cumulative mean), one gate per frame."""

    def forward(self, x):
        s = x.mean(dim=3, keepdim=True).cumsum(dim=2)
        n = torch.arange(1, x.shape[2] + 1, dtype=x.dtype, device=x.device).view(
            1, 1, -1, 1
        )
        return s / n


def causal_reference(model: GhostNet) -> GhostNet:
    """The torch model that ``causal=True`` streams: every convolution's time padding ``p`` moved to
    the left (``2p`` frames before, none after), and every SE pool the causal cumulative mean over
    time (torch's SE on a whole prefix gates every frame with the mean of the whole prefix, which
    needs frames after each one; the streamed gate of frame t reads frames 0..t). The last pool, before
    ``conv_head``, stays torch's: run on a prefix, its answer is the stream's answer at the prefix's
    last frame."""
    ref = copy.deepcopy(model)
    for m in ref.modules():
        if isinstance(m, nn.Conv2d) and m.padding[0]:
            p = m.padding[0]
            m.padding = (0, *m.padding[1:])
            m.register_forward_pre_hook(
                lambda mod, args, p=p: (F.pad(args[0], (0, 0, 2 * p, 0)),)
            )
        if isinstance(m, SqueezeExcite):
            m.avg_pool = _CausalMeanSE()
    return ref
