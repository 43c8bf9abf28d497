"""soi.deploy.fold: BatchNorm folded into the STMC convolution or tSTMC before it, exactly."""

from __future__ import annotations

import pytest
import torch
from streams import randomize_bn, x2d
from torch import nn

import soi
from soi.deploy import fold_batchnorm


@pytest.mark.parametrize("groups", [1, 2])
def test_fold_batchnorm_is_exact_and_removes_batchnorm(groups):
    torch.manual_seed(1)
    net = soi.Sequential(
        soi.STMCConv2d(4, 6, (2, 3), padding=1, groups=groups),
        nn.BatchNorm2d(6),
        soi.STMCConvTranspose2d(6, 4, (3, 3), padding=1, groups=groups, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
    )
    net = randomize_bn(net).double().eval()
    folded = fold_batchnorm(net)
    x = x2d(c=4)
    with torch.no_grad():
        assert (folded(x) - net(x)).abs().max() < 1e-12
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules()), "the original must be left untouched"


def test_fold_batchnorm_refuses_training_mode_batchnorm_only_when_asked_inplace():
    net = soi.Sequential(soi.STMCConv1d(2, 2, 2), nn.BatchNorm1d(2)).train()
    folded = fold_batchnorm(net)  # a copy, switched to eval
    assert not folded.training and net.training
