"""Models and streams shared by the deploy tests (imported as ``streams``: pytest puts this folder
on the path)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import soi

F = 17
TINY = {"freq_bins": 33, "in_channels": 2, "out_channels": 2, "channels": [4, 8, 8], "kernel": [2, 5], "freq_stride": 2, "lookahead": 0}


def randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters (folding is then not a no-op)."""
    g = torch.Generator().manual_seed(7)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def unet_like(lookahead: int = 0, time_stride: int = 1) -> soi.Sequential:
    """A 2-level U-Net from the core layers: strided-in-frequency encoders, tSTMC decoders, a
    concatenated skip; optionally a time-strided middle (no upsampler: a strided network)."""
    torch.manual_seed(0)
    inner = soi.Sequential(
        soi.STMCConv2d(4, 8, (2, 3), stride=(1, 2), padding=1, frame_size=(9,)),
        nn.BatchNorm2d(8),
        nn.ELU(),
        soi.STMCConvTranspose2d(8, 4, (2, 3), stride=(1, 2), padding=1, frame_size=(5,), groups=2),
        nn.BatchNorm2d(4),
        nn.ELU(),
    )
    net = soi.Sequential(
        soi.STMCConv2d(2, 4, (3, 3), stride=(1, 2), padding=1, lookahead=lookahead, frame_size=(F,)),
        nn.BatchNorm2d(4),
        nn.ELU(),
        soi.Concat(nn.Identity(), inner),
        soi.STMCConvTranspose2d(8, 2, (2, 3), stride=(1, 2), padding=1, frame_size=(9,)),
        soi.STMCConv2d(2, 2, (2, 1), stride=(time_stride, 1), frame_size=(F,)),
    )
    return randomize_bn(net).double().eval()


def tiny_unet(pattern: str, **kw) -> nn.Module:
    """The SOI U-Net, tiny, float64, random BatchNorm statistics."""
    unet = pytest.importorskip("soi.models.unet")
    torch.manual_seed(3)
    return randomize_bn(unet.UNet(unet.UNetConfig(**TINY), pattern, **kw)).double().eval()


def stream_reference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x (B, C, T, ...)`` streamed frame by frame through ``model.step``."""
    state = model.init_state(x.shape[0], dtype=x.dtype)
    ys = []
    with torch.no_grad():
        for t in range(x.shape[2]):
            y, state = model.step(x[:, :, t : t + 1], state)
            ys.append(y)
    return torch.cat(ys, dim=2)


def stream_fast(fs, x: torch.Tensor, prepare_between: bool = True) -> torch.Tensor:
    """``x`` streamed frame by frame through a streamer (``prepare()`` between frames or not)."""
    ys = []
    for t in range(x.shape[2]):
        if prepare_between:
            fs.prepare()
        ys.append(fs.step(x[:, :, t : t + 1]))
    return torch.cat(ys, dim=2)


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def x2d(t: int = 23, b: int = 2, c: int = 2, f: int = F, seed: int = 0) -> torch.Tensor:
    return rand(b, c, t, f, seed=seed)
