"""Recurrent layers as streaming modules: ``nn.GRU``, ``nn.LSTM`` and ``nn.RNN`` over the channels of
``(B, C, T)``, their hidden state held in the soi state.

A recurrent layer is causal by nature: its output at frame ``t`` is a function of the hidden state
after frame ``t-1`` and frame ``t``. Streaming it is carrying that hidden state from chunk to chunk,
so every chunking gives the offline output exactly. Only unidirectional layers stream: a
bidirectional one reads the sequence backwards from its end.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..core.state import State, StreamingModule
from ..core.timing import FrameShape

__all__ = ["Recurrent", "RecurrentState"]


@dataclass
class RecurrentState(State):
    """The hidden state ``(B, layers, H)``, and for an LSTM the cell state (else ``None``); batch
    first like every soi state (torch's layers take it in dimension 1)."""

    hidden: Tensor
    cell: Tensor | None


class Recurrent(StreamingModule):
    """Streams a unidirectional ``nn.GRU``, ``nn.LSTM`` or ``nn.RNN``: ``(B, C_in, T)`` ->
    ``(B, H, T)`` (``H = proj_size`` for a projected LSTM), features in the channel axis.

    Offline it equals the torch layer applied to ``x.transpose(1, 2)`` (``batch_first``) from a
    zero hidden state, transposed back. The torch layer is registered as ``rnn``, so its
    parameters keep their names under that prefix.
    """

    work_kind = "linear"

    def __init__(self, rnn: nn.RNNBase) -> None:
        super().__init__()
        if not isinstance(rnn, (nn.GRU, nn.LSTM, nn.RNN)):
            raise TypeError(f"Recurrent: expected nn.GRU, nn.LSTM or nn.RNN, got {type(rnn).__name__}")
        if rnn.bidirectional:
            raise ValueError(
                f"Recurrent: a bidirectional {type(rnn).__name__} reads each sequence backwards from its end, "
                "which a stream does not have yet; use bidirectional=False (and retrain) to stream it"
            )
        self.rnn = rnn
        self._batch_first = rnn.batch_first

    @property
    def out_size(self) -> int:
        return getattr(self.rnn, "proj_size", 0) or self.rnn.hidden_size

    @property
    def input_frame_shape(self) -> FrameShape | None:
        return (self.rnn.input_size,)

    def out_shape(self, shape: FrameShape) -> FrameShape:
        return (self.out_size,)

    def macs(self, shape: FrameShape, dense: bool = False) -> int:
        """Multiplications of the input and hidden matrices for one frame (all gates, all layers)."""
        return sum(
            p.shape[0] * p.shape[1] for name, p in self.rnn.named_parameters() if name.startswith(("weight_ih", "weight_hh", "weight_hr"))
        )

    def init_state(self, batch_size: int, device=None, dtype=None) -> RecurrentState:
        args = self._new_state_args(batch_size)
        p = next(self.rnn.parameters())
        device = p.device if device is None else device
        dtype = p.dtype if dtype is None else dtype
        layers = self.rnn.num_layers
        hidden = torch.zeros(batch_size, layers, self.out_size, device=device, dtype=dtype)
        cell = torch.zeros(batch_size, layers, self.rnn.hidden_size, device=device, dtype=dtype) if isinstance(self.rnn, nn.LSTM) else None
        return RecurrentState(**args, hidden=hidden, cell=cell)

    def step(self, x: Tensor, state: RecurrentState) -> tuple[Tensor, RecurrentState]:
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[1] != self.rnn.input_size:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"Recurrent.step: expected (B, {self.rnn.input_size}, T), got {got}")
        self._check_state(x, state)
        self._check_like(x, state.hidden)
        if x.shape[2] == 0:
            return x.new_zeros((x.shape[0], self.out_size, 0)), state
        seq = x.transpose(1, 2) if self._batch_first else x.permute(2, 0, 1)
        hidden = state.hidden.transpose(0, 1).contiguous()
        h0 = (hidden, state.cell.transpose(0, 1).contiguous()) if state.cell is not None else hidden
        y, h = self.rnn(seq, h0)
        y = y.transpose(1, 2) if self._batch_first else y.permute(1, 2, 0)
        hidden, cell = h if isinstance(h, tuple) else (h, None)
        return y, RecurrentState(state.owner, state.batch_size, hidden.transpose(0, 1), cell.transpose(0, 1) if cell is not None else None)

    def extra_repr(self) -> str:
        return "features in dimension 1, time in dimension 2"
