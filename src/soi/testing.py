"""Helpers to check a streaming model: stream a sequence in chunks and compare with offline.

Useful in a user's own test suite as much as in ours::

    soi.testing.assert_streams_like_offline(model, x, chunks=[1, 3, "random"])
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from .core.state import StreamingModule

__all__ = ["split_points", "stream", "assert_close", "assert_streams_like_offline", "randomise_batchnorm"]


def split_points(total: int, chunk: int | str | Sequence[int], seed: int = 0) -> list[int]:
    """Chunk lengths covering ``total`` frames: a fixed size, ``"whole"``, ``"random"`` (1..8 frames,
    seeded) or an explicit list."""
    if chunk == "whole":
        return [total]
    if chunk == "random":
        g = torch.Generator().manual_seed(seed)
        sizes, left = [], total
        while left > 0:
            n = min(left, int(torch.randint(1, 9, (1,), generator=g)))
            sizes.append(n)
            left -= n
        return sizes
    if isinstance(chunk, int):
        if chunk < 1:
            raise ValueError(f"chunk size must be >= 1, got {chunk}")
        return [min(chunk, total - i) for i in range(0, total, chunk)]
    sizes = list(chunk)
    if sum(sizes) != total:
        raise ValueError(f"chunk sizes {sizes} add up to {sum(sizes)}, not {total}")
    return sizes


def stream(
    module: StreamingModule, x: Tensor, chunks: Iterable[int] | int | str, flush: bool = True, prepare: bool = False
) -> Tensor:
    """Run ``x`` (B, C, T, ...) through ``module.step`` chunk by chunk from a zero state.

    ``chunks`` is a list of lengths or anything :func:`split_points` takes; ``prepare`` calls
    ``module.prepare`` between steps, as a runtime doing fully predictive work between frames would.
    """
    if isinstance(chunks, (int, str)):
        chunks = split_points(x.shape[2], chunks)
    state = module.init_state(x.shape[0], device=x.device, dtype=x.dtype)
    outputs, start = [], 0
    for n in chunks:
        y, state = module.step(x[:, :, start : start + n], state)
        outputs.append(y)
        start += n
        if prepare:
            state = module.prepare(state)
    if flush:
        tail, state = module.flush(state)
        if tail is not None:
            outputs.append(tail)
    return torch.cat(outputs, dim=2)


def assert_close(got: Tensor, want: Tensor, case: str, atol: float = 1e-10) -> None:
    """Same shape and max abs error <= ``atol``, with a message naming the case and the error."""
    if got.shape != want.shape:
        raise AssertionError(f"{case}: shape {tuple(got.shape)} != expected {tuple(want.shape)}")
    err = (got - want).abs().max().item() if got.numel() else 0.0
    if not err <= atol:
        raise AssertionError(f"{case}: max abs error {err:.3e} > {atol:.0e}")


def assert_streams_like_offline(
    module: StreamingModule,
    x: Tensor,
    chunks: Sequence[int | str] = (1, 2, 3, 7, "whole", "random"),
    atol: float = 1e-10,
    case: str = "",
) -> None:
    """Assert that streaming ``x`` in every chunking gives the offline output (max abs error <= atol)."""
    with torch.no_grad():
        expected = module(x)
        for chunk in chunks:
            assert_close(stream(module, x, chunk), expected, f"{case} chunk={chunk}: streaming vs offline".strip(), atol)


_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def randomise_batchnorm(
    model: nn.Module, mean: float = 0.2, var: tuple[float, float] = (0.5, 1.5),
    weight: tuple[float, float] | None = None, bias: float | None = None,
) -> nn.Module:  # fmt: skip
    """Give every BatchNorm of ``model`` non-trivial statistics, as a trained model has (a fresh
    one's are 0 and 1, which hides a folding or streaming mistake), in place: running means from
    ``U(-mean, mean)``, running variances from ``U(*var)`` and, if given, scales from
    ``U(*weight)`` and shifts from ``U(-bias, bias)``. Returns ``model``."""
    for m in model.modules():
        if isinstance(m, _BATCHNORMS):
            m.running_mean.uniform_(-mean, mean)
            m.running_var.uniform_(*var)
            if weight is not None:
                m.weight.data.uniform_(*weight)
            if bias is not None:
                m.bias.data.uniform_(-bias, bias)
    return model
