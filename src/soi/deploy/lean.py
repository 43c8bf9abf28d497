"""Lean layers: the deployment forms of the window layers, registered modules that :func:`lean`
swaps in for the layers of a copy of a model.

Every lean layer is a subclass of the layer it replaces, made from it by ``from_layer`` with the
same parameters, sizes, timing and state token: the state tree, the schedule and every output stay
the same (tested in float64). What changes:

* ``step`` is the unchecked :meth:`~soi.core.window.TemporalWindow.advance` (:class:`LeanWindow`):
  no Python shape checks, nothing done for an empty chunk, the new history sliced from the chunk;
* :class:`LeanConv` (STMC convolutions, 1-d, 2-d or 3-d, any dilation) computes its window as one
  matrix product instead of ATen's convolution where that is faster (``target``): *im2col* (gather
  ``C_in*k`` rows per output position, then ``W @ cols``) or, for spatial stride 1 and ``C_out <
  C_in*k_t``, *taps* (multiply the window's frames as they lie by every spatial tap's weights at
  once, then add the taps' rows at their shifts);
* :class:`LeanConvTranspose` runs a 2-d tSTMC with a frequency stride as one ordinary convolution
  (polyphase: ``s*C_out`` output channels, one group per output phase, then the phases
  interleaved), which both ATen and onnxruntime run faster than a transposed convolution;
* pooling, delays and shifts get the unchecked step only (:func:`lean_class`).

The choices per target were measured (``docs/deploy.md``): ``"torch"`` (TorchScript) keeps ATen's
convolution for 2-d non-dilated layers below :data:`MATMUL_MIN_WEIGHTS` weights; ``"inductor"``
(AOTInductor) runs every convolution as a product, whose gathers Inductor fuses into its own loops;
``"onnx"`` keeps ``Conv`` nodes (onnxruntime's own kernels) but still uses the unchecked steps and
the polyphase tSTMC.

The products use weights arranged once by ``from_layer`` (non-persistent buffers): a lean model is
for inference with the weights it was made from.
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.window import TemporalWindow, WindowState
from ..layers.conv import STMCConvNd
from ..layers.conv_transpose import STMCConvTransposeNd
from .fold import fold_batchnorm

__all__ = [
    "LeanWindow",
    "LeanConv",
    "LeanConvTranspose",
    "lean_class",
    "lean",
    "LEAN_TARGETS",
    "MATMUL_MIN_WEIGHTS",
    "CHANNEL_MAJOR_MAX_OUT",
]

LEAN_TARGETS = ("torch", "inductor", "onnx")

MATMUL_MIN_WEIGHTS = 65536
"""Torch target: 2-d non-dilated convolutions with at least this many weights run as a matrix
product (measured on the U-Net's layers: ATen's direct convolution wins below, the product by 2-4x
above, on one-frame windows). Dilated, 1-d and 3-d convolutions always do: on one-frame windows
ATen's dilated and 3-d convolutions are far slower than the product (TorchScript step of the
benchmark stacks, :func:`soi.analysis.bench.bench_stack`, same-process A/B: dilated 1-d 1.16 ->
0.18 ms, 3-d 11.0 -> 4.2 ms)."""

CHANNEL_MAJOR_MAX_OUT = 8
"""Products of layers with at most this many output channels (per polyphase group: ``s*C_out`` for
a tSTMC) are computed as ``W @ cols``, the others as ``cols^T @ W^T``: the result has the longer
side as columns, because the BLAS small-matrix kernels are 2.5-4x slower on a product only 4-8
columns wide (measured, ``docs/deploy.md``)."""


# ==================================================================================================
# The unchecked step
# ==================================================================================================


class LeanWindow(TemporalWindow):
    """Base of the lean layers: :meth:`step` is the unchecked
    :meth:`~soi.core.window.TemporalWindow.advance` (a compiled or exported graph has fixed shapes,
    checked once when the schedule is discovered)."""

    target: str = "torch"

    def step(self, x: Tensor, state: WindowState) -> tuple[Tensor, WindowState]:
        return self.advance(x, state)

    @classmethod
    def from_layer(cls, layer: TemporalWindow, target: str = "torch") -> LeanWindow:
        """A shallow copy of ``layer`` as an instance of ``cls`` (a lean subclass of its class):
        the same parameters, sizes, timing and token (its states' owner), so states, schedules and
        outputs are interchangeable with the layer's. Module registries are copied, so registering
        a buffer on the copy leaves ``layer`` alone."""
        new = cls.__new__(cls)
        for key, value in vars(layer).items():
            new.__dict__[key] = copy.copy(value) if isinstance(value, (dict, set)) else value
        new.target = target
        return new

    def __reduce_ex__(self, protocol: int) -> str | tuple[Any, ...]:
        # A lean_class class is made at run time, so pickle (torch.save, multiprocessing) cannot find
        # it by name: it is rebuilt from the layer class it was made from.
        layer_class = type(self).__dict__.get("layer_class")
        if layer_class is None:
            return super().__reduce_ex__(protocol)
        return _new_lean, (layer_class,), self.__dict__


@functools.cache
def lean_class(cls: type[TemporalWindow]) -> type[LeanWindow]:
    """``Lean<Name>``: the window layer class ``cls`` with the unchecked step (pooling, delays,
    shifts: layers without a lean operation of their own). One class per layer class; its
    instances pickle."""
    name = f"Lean{cls.__name__}"
    doc = f":class:`{cls.__module__}.{cls.__qualname__}` with the unchecked step (:class:`LeanWindow`)."
    namespace = {"__module__": __name__, "__qualname__": name, "__doc__": doc, "layer_class": cls}
    return type(name, (LeanWindow, cls), namespace)


def _new_lean(layer_class: type[TemporalWindow]) -> LeanWindow:
    """An empty instance of ``lean_class(layer_class)``, which unpickling fills."""
    cls = lean_class(layer_class)
    return cls.__new__(cls)


# ==================================================================================================
# Correlations as matrix products
# ==================================================================================================


def _mm(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` with one operand a weight matrix ``(M, K)`` and the other ``(B, ., .)``: for one
    stream a 2-d product (``mm``) instead of a batched one."""
    if a.dim() == 3 and a.shape[0] == 1:
        return (a[0] @ b).unsqueeze(0)
    if b.dim() == 3 and b.shape[0] == 1:
        return (a @ b[0]).unsqueeze(0)
    return a @ b


def _zero_pad(window: Tensor, padding: Sequence[int], concat: bool) -> Tensor:
    """``window (B, C, L, *S)`` with ``padding[i]`` zeros on both sides of non-time axis ``i``.
    ``concat``: as concatenated zero blocks, from which Inductor gathers without bounds checks (its
    masked loads are scalar loops; ``F.pad`` it fuses back into masked loads)."""
    if not concat:
        return F.pad(window, [p for p in reversed(padding) for _ in (0, 1)])
    for axis, p in enumerate(padding, start=3):
        if p:
            shape = list(window.shape)
            shape[axis] = p
            zeros = window.new_zeros(shape)
            window = torch.cat([zeros, window, zeros], dim=axis)
    return window


def _time_taps(window: Tensor, kt: int, dt: int, st: int) -> Tensor:
    """``(B, C, L, *S) -> (B, C, k_t, T_out, *S)``: for each time tap the window frames the outputs
    read (dilation ``dt``, stride ``st``, no time padding)."""
    t_out = (window.shape[2] - (kt - 1) * dt - 1) // st + 1
    if t_out == 1:  # one output frame (a stream): one strided slice
        return window[:, :, : (kt - 1) * dt + 1 : dt].unsqueeze(3)
    return torch.stack([window[:, :, j * dt : j * dt + (t_out - 1) * st + 1 : st] for j in range(kt)], dim=2)


def _spatial_shifts(kernel: Sequence[int], dilation: Sequence[int]) -> list[tuple[int, ...]]:
    """Offsets of every non-time tap, row-major (the order of the weights' non-time axes)."""
    return [tuple(i * d for i, d in zip(idx, dilation)) for idx in itertools.product(*(range(k) for k in kernel))]


def _im2col(
    window: Tensor, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int], padding: Sequence[int], concat: bool
) -> tuple[Tensor, tuple[int, ...]]:
    """``window (B, C, L, *S)`` -> ``cols (B, C*prod(kernel), P)`` (rows in the order of the
    weights' ``(C_in, k_t, *k_s)``, columns the output positions ``(T_out, *S_out)``) and the
    output sizes."""
    bsz, c = window.shape[:2]
    dims = window.dim() - 2
    if dims == 2:  # ATen's im2col (Inductor: one fused gather), measured on the U-Net's layers
        cols = F.unfold(window, tuple(kernel), dilation=tuple(dilation), padding=(0, padding[0]), stride=tuple(stride))
        sizes = tuple(
            (n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, p, d, k, s in zip(window.shape[2:], (0, padding[0]), dilation, kernel, stride)
        )
        return cols, sizes
    # 1-d and 3-d: time taps by slicing, then (3-d) the spatial taps as shifted slices of the padded
    # frames; ATen's unfold exists only for 4-d input and its im2col took 3x the product's time on
    # 32x32 frames.
    if any(padding):
        window = _zero_pad(window, padding, concat)
    taps = _time_taps(window, kernel[0], dilation[0], stride[0])  # (B, C, k_t, T_out, *S)
    t_out = taps.shape[3]
    if dims == 1:
        return taps.reshape(bsz, c * kernel[0], t_out), (t_out,)
    out = [(n - d * (k - 1) - 1) // s + 1 for n, d, k, s in zip(taps.shape[4:], dilation[1:], kernel[1:], stride[1:])]
    slices = [
        taps[(..., *(slice(o, o + (m - 1) * s + 1, s) for o, m, s in zip(offset, out, stride[1:])))]
        for offset in _spatial_shifts(kernel[1:], dilation[1:])
    ]
    cols = torch.stack(slices, dim=3)  # (B, C, k_t, prod(k_s), T_out, *S_out)
    return cols.reshape(bsz, -1, t_out * math.prod(out)), (t_out, *out)


class _Correlation(LeanWindow):
    """A lean layer whose window operation is a correlation without time padding, computed as one
    matrix product of weights arranged once (:meth:`_prepare_product`); see the module docstring
    for the *im2col* and *taps* forms."""

    form: str = "conv"
    product_form: str | None = None

    def _prepare_product(self, w: Tensor, b: Tensor | None, taps: bool) -> None:
        """Arrange the correlation weights ``w (C_out, C_in, k_t, *k_s)``: im2col rows ``(C_out,
        C_in*k_t*prod(k_s))``, or for taps ``(prod(k_s)*C_out, C_in*k_t)``; only the orientations
        that :meth:`_product` can use are kept."""
        w = w.detach()
        c_out, c_in, kt = w.shape[:3]
        self.product_form = "taps" if taps else "im2col"
        self.corr_kernel = tuple(w.shape[2:])
        self.corr_out = c_out
        self.channel_major_max = CHANNEL_MAJOR_MAX_OUT
        if taps:
            wm = w.permute(*range(3, w.dim()), 0, 1, 2).reshape(-1, c_in * kt)
        else:
            wm = w.reshape(c_out, -1)
        channel_major = c_out <= self.channel_major_max
        self.register_buffer("product_w", wm.contiguous() if channel_major else None, persistent=False)
        self.register_buffer("product_wt", None if taps and channel_major else wm.t().contiguous(), persistent=False)
        self.register_buffer("product_bias", None if b is None else b.detach().clone(), persistent=False)
        bcol = (b.detach() if b is not None else w.new_zeros(c_out))[:, None]
        self.register_buffer("product_bcol", bcol.clone() if channel_major and not taps else None, persistent=False)

    def _product(self, window: Tensor, stride: Sequence[int], dilation: Sequence[int], padding: Sequence[int]) -> Tensor:
        """The correlation of ``window (B, C_in, L, *S)`` (strides, dilations with time first,
        non-time ``padding``) -> ``(B, C_out, T_out, *S_out)``."""
        if self.product_form == "taps":
            return self._taps(window, stride[0], dilation, padding)
        bsz = window.shape[0]
        c_out = self.corr_out
        # Inductor fuses a separate bias add into the next elementwise kernel and gathers from
        # concatenated zeros without bounds checks; ATen's addmm instead saves an operator
        # (measured both ways, docs/deploy.md).
        inductor = self.target == "inductor"
        kt, dt = self.corr_kernel[0], dilation[0]
        if window.dim() == 3 and window.shape[2] - (kt - 1) * dt <= stride[0]:
            # 1-d, one output frame (a stream's step): one product row per stream, (B, C_in*k_t) @
            # (C_in*k_t, C_out), gathered by one strided slice of the window: four operators
            # (TorchScript's interpreter pays a few microseconds for each, views included).
            cols = window[:, :, : (kt - 1) * dt + 1 : dt].reshape(bsz, -1)
            b = self.product_bias
            if b is None:
                y = cols @ self.product_wt
            else:  # Inductor fuses the bias add into the next kernel
                y = cols @ self.product_wt + b if inductor else torch.addmm(b, cols, self.product_wt)
            return y.unsqueeze(2)
        if inductor and any(padding):
            window, padding = _zero_pad(window, padding, True), (0,) * len(padding)
        cols, sizes = _im2col(window, self.corr_kernel, stride, dilation, padding, inductor)
        if c_out <= self.channel_major_max < math.prod(sizes):
            wm, bcol = self.product_w, self.product_bcol
            if inductor:
                y = _mm(wm, cols) + bcol
            elif bsz == 1:
                y = torch.addmm(bcol, wm, cols[0]).unsqueeze(0)
            else:
                y = torch.baddbmm(bcol, wm.expand(bsz, -1, -1), cols)
            return y.reshape(bsz, c_out, *sizes)
        wt, b = self.product_wt, self.product_bias
        if bsz == 1 and b is not None and not inductor:  # a transposed view: the BLAS reads it as is, no copy
            y = torch.addmm(b, cols[0].t(), wt).unsqueeze(0)
        else:
            y = _mm(cols.transpose(1, 2), wt)  # (B, P, C_out)
            if b is not None:
                y = y + b
        return y.transpose(1, 2).reshape(bsz, c_out, *sizes)

    def _taps(self, window: Tensor, t_stride: int, dilation: Sequence[int], padding: Sequence[int]) -> Tensor:
        """Spatial stride 1, "taps" form: one product of every spatial tap's weights ``(prod(k_s)*
        C_out, C_in*k_t)`` with the window's frames as they are, then the taps' rows summed at
        their shifts::

            y[j] = W[..., j] @ window              (prod(k_s)*C_out rows, every input position)
            out[f] = sum_j y[j][f + shift_j - pad]  (zero outside)

        Same products as im2col, but it writes and re-reads ``prod(k_s)*C_out`` values per position
        instead of gathering ``C_in*k_t*prod(k_s)``: fewer when ``C_out < C_in*k_t``, as in every
        U-Net decoder layer (concatenated skip channels, polyphase groups of ``2*C_out``) and the
        3-d stacks, and no gather for one frame."""
        kt, ks = self.corr_kernel[0], self.corr_kernel[1:]
        c_out = self.corr_out
        channel_major = c_out <= self.channel_major_max
        # Zeros in the window (zero rows of the product) let Inductor's shifted sum read without
        # bounds checks; along a channel-major product's contiguous rows the checks are cheap and
        # the copy is not (measured both ways on 2-d layers, docs/deploy.md). 3-d frames pad the
        # window: the product's taps rows outnumber its input rows (9*C_out against C_in*k_t).
        if any(padding) and (self.dims == 3 or (self.target == "inductor" and not channel_major)):
            window, padding = _zero_pad(window, padding, self.target == "inductor"), (0,) * len(padding)
        bsz, c_in = window.shape[:2]
        spatial = tuple(window.shape[3:])
        taps = _time_taps(window, kt, dilation[0], t_stride)
        t_out = taps.shape[3]
        cols = taps.reshape(bsz, c_in * kt, t_out * math.prod(spatial))
        n, nd = math.prod(ks), len(spatial)
        if channel_major:
            y = _mm(self.product_w, cols).reshape(bsz, n, c_out, t_out, *spatial)
        else:
            y = _mm(cols.transpose(1, 2), self.product_wt).reshape(bsz, t_out, *spatial, n, c_out)
            y = y.permute(0, nd + 2, nd + 3, 1, *range(2, nd + 2))  # (B, taps, C_out, T_out, *S)
        if any(padding):
            y = F.pad(y, [p for p in reversed(padding) for _ in (0, 1)])
        sizes = [m - d * (k - 1) for m, d, k in zip(y.shape[4:], dilation[1:], ks)]
        out = None
        for j, offset in enumerate(_spatial_shifts(ks, dilation[1:])):
            part = y[(slice(None), j, ..., *(slice(o, o + m) for o, m in zip(offset, sizes)))]
            out = part if out is None else out + part
        b = self.product_bias
        return out if b is None else out + b.view(-1, *([1] * (nd + 1)))

    def extra_repr(self) -> str:
        extra = f"{super().extra_repr()}, lean={self.form!r}"
        if self.product_form not in (None, self.form):
            extra += f", product={self.product_form!r}"
        return extra


# ==================================================================================================
# Lean convolutions
# ==================================================================================================


def _aten_is_faster(layer: STMCConvNd) -> bool:
    """Torch target: whether ATen's convolution beats the product (:data:`MATMUL_MIN_WEIGHTS`)."""
    return layer.dims == 2 and all(d == 1 for d in layer.dilation) and layer.weight.numel() < MATMUL_MIN_WEIGHTS


class LeanConv(_Correlation, STMCConvNd):
    """The lean form of an STMC convolution (1-d, 2-d or 3-d, any stride and dilation): ``form``
    ``"im2col"`` or ``"taps"`` (one matrix product, see the module docstring) or ``"conv"``
    (ATen's convolution: grouped layers, the ``"onnx"`` target, small 2-d layers for ``"torch"``).
    Window ``(B, C_in, L, *S)`` -> ``(B, C_out, T_out, *S_out)``, as :class:`STMCConvNd`."""

    @classmethod
    def from_layer(cls, layer: STMCConvNd, target: str = "torch") -> LeanConv:
        new = super().from_layer(layer, target)
        product = layer.groups == 1 and (target == "inductor" or (target == "torch" and not _aten_is_faster(layer)))
        if product:
            taps = layer.dims > 1 and all(s == 1 for s in layer.conv_stride[1:])
            new._prepare_product(layer.weight, layer.bias, taps and layer.out_channels < layer.in_channels * layer.time_kernel)
            new.form = new.product_form
        return new

    def window_op(self, window: Tensor) -> Tensor:
        if self.form == "conv":
            return super().window_op(window)
        return self._product(window, self.conv_stride, self.dilation, self.padding)


def _polyphase(m: STMCConvTransposeNd) -> tuple[Tensor, Tensor | None, int, int]:
    """A 2-d tSTMC (transposed in frequency with stride ``s``) as one ordinary correlation with
    ``s * C_out`` output channels, one group per output phase (polyphase decomposition): weight
    ``(s*C_out, C_in, k_t, U)`` (time flipped: causal correlation over the window), bias, and the
    frequency offsets ``lo, hi`` of its ``U = hi - lo + 1`` taps. Output ``f = s*q + r`` is phase
    ``r`` at position ``q``."""
    w = m.weight.detach()
    c_in, c_out, kt, kf = w.shape
    s, p = m.conv_stride[1], m.padding[0]
    info = []
    for r in range(s):
        c = r + p
        info.append((c % s, c // s, len(range(c % s, kf, s))))
    lo = min(cq - n + 1 for _, cq, n in info)
    hi = max(cq for _, cq, _ in info)
    out = w.new_zeros(c_out, s, c_in, kt, hi - lo + 1)
    wt = w.flip(2).permute(1, 0, 2, 3)  # (C_out, C_in, kt, kf), time flipped
    for r, (c0, cq, n) in enumerate(info):
        for j in range(n):
            out[:, r, :, :, cq - j - lo] = wt[:, :, :, s * j + c0]
    bias = m.bias.detach().repeat_interleave(s) if m.bias is not None else None
    return out.reshape(c_out * s, c_in, kt, hi - lo + 1), bias, lo, hi


class LeanConvTranspose(_Correlation, STMCConvTransposeNd):
    """The lean form of a tSTMC: ``form`` ``"polyphase"`` (a 2-d tSTMC with a frequency stride as
    one correlation with ``s*C_out`` channels, computed as a matrix product), ``"polyphase-conv"``
    (the same correlation by ATen's or onnxruntime's ``Conv``) or ``"transposed"`` (the layer's own
    transposed convolution, with the unchecked step). Window ``(B, C_in, L, F)`` -> ``(B, C_out,
    T_out, F_out)``, as :class:`STMCConvTransposeNd`."""

    form: str = "transposed"

    @classmethod
    def from_layer(cls, layer: STMCConvTransposeNd, target: str = "torch", polyphase: bool = True) -> LeanConvTranspose:
        new = super().from_layer(layer, target)
        product = target == "inductor" or (target == "torch" and layer.weight.numel() >= MATMUL_MIN_WEIGHTS)
        # (a time stride upsamples by phases of its own: that layer keeps its transposed form)
        strided = layer.dims == 2 and layer.groups == 1 and layer.conv_stride[0] == 1 and layer.conv_stride[1] > 1 and layer.dilation[1] == 1
        # The torch target uses the polyphase form only where the product carries it (measured).
        if not (polyphase and strided and (product or target == "onnx")):
            return new
        w, b, lo, hi = _polyphase(layer)
        new.poly_range = (lo, hi)
        if product:
            new._prepare_product(w, b, w.shape[0] < w.shape[1] * w.shape[2])  # frequency stride 1: taps when fewer rows
            new.form = "polyphase"
        else:
            new.register_buffer("poly_weight", w, persistent=False)
            new.register_buffer("poly_bias", b, persistent=False)
            new.form = "polyphase-conv"
        return new

    def window_op(self, window: Tensor) -> Tensor:
        if self.form == "transposed":
            return super().window_op(window)
        lo, hi = self.poly_range
        s, c_out, dt = self.conv_stride[1], self.out_channels, self.time_dilation
        f_in = window.shape[3]
        f_out = self.out_frame_size((f_in,))[0]
        q = -(-f_out // s)
        pad = max(0, -lo, q - 1 + hi - (f_in - 1))
        if self.form == "polyphase":
            y = self._product(window, (1, 1), (dt, 1), (pad,))
        else:
            y = F.conv2d(window, self.poly_weight, self.poly_bias, 1, (0, pad), (dt, 1))
        y = y[..., lo + pad : lo + pad + q]
        bsz, _, t, _ = y.shape
        y = y.reshape(bsz, c_out, s, t, q).permute(0, 1, 3, 4, 2).reshape(bsz, c_out, t, q * s)
        return y[..., :f_out]


# ==================================================================================================
# The conversion
# ==================================================================================================


def _lean_form(m: nn.Module, target: str, polyphase: bool) -> LeanWindow | None:
    if not isinstance(m, TemporalWindow) or isinstance(m, LeanWindow) or type(m).step is not TemporalWindow.step:
        return None  # not a window layer, already lean, or a step of its own that advance would skip
    if isinstance(m, STMCConvNd) and type(m).window_op is STMCConvNd.window_op:
        return LeanConv.from_layer(m, target)
    if isinstance(m, STMCConvTransposeNd) and type(m).window_op is STMCConvTransposeNd.window_op:
        return LeanConvTranspose.from_layer(m, target, polyphase)
    return lean_class(type(m)).from_layer(m, target)


def lean(model: nn.Module, fold_bn: bool = True, target: str = "torch", polyphase: bool = True) -> nn.Module:
    """A copy of ``model`` for inference, its window layers replaced by their lean forms (see the
    module docstring); outputs and states equal ``model``'s (up to float rounding).

    ``fold_bn`` folds BatchNorm into the convolution before it first (:func:`fold_batchnorm`);
    ``target`` is ``"torch"`` (TorchScript), ``"inductor"`` (AOTInductor) or ``"onnx"``;
    ``polyphase=False`` keeps frequency-strided tSTMC transposed. ``print(lean(model))`` shows the
    lean classes and each convolution's ``lean=`` form.
    """
    if target not in LEAN_TARGETS:
        raise ValueError(f"lean: target must be one of {', '.join(map(repr, LEAN_TARGETS))}, got {target!r}")
    model = fold_batchnorm(model) if fold_bn else copy.deepcopy(model).eval()
    modules = list(model.modules())
    swaps = {id(m): new for m in modules if (new := _lean_form(m, target, polyphase)) is not None}
    for parent in modules:  # every parent: a layer registered in two places is replaced in both
        for name, child in list(parent.named_children()):
            if id(child) in swaps:
                setattr(parent, name, swaps[id(child)])
    return swaps.get(id(model), model)
