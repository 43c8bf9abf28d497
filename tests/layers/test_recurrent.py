"""soi.Recurrent: nn.GRU / nn.LSTM / nn.RNN over channels, hidden state in the soi state; streaming
equals the torch layer on the whole sequence, in float64, for every chunking."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import soi
from soi.testing import assert_streams_like_offline

LAYERS = {
    "gru": lambda: nn.GRU(4, 6, num_layers=2, batch_first=True),
    "lstm": lambda: nn.LSTM(4, 6, batch_first=True),
    "lstm-proj": lambda: nn.LSTM(4, 6, proj_size=3, batch_first=True),
    "rnn-tanh-seq-first": lambda: nn.RNN(4, 5, num_layers=2),
}


@pytest.mark.parametrize("name", LAYERS)
def test_recurrent_streams_like_torch(name):
    torch.manual_seed(0)
    rnn = LAYERS[name]().double()
    model = soi.Recurrent(rnn)
    x = torch.randn(3, 4, 17, dtype=torch.float64)
    seq = x.transpose(1, 2) if rnn.batch_first else x.permute(2, 0, 1)
    want, _ = rnn(seq)
    want = want.transpose(1, 2) if rnn.batch_first else want.permute(1, 2, 0)
    torch.testing.assert_close(model(x), want, msg=f"{name}: offline differs from torch")
    assert_streams_like_offline(model, x, [1, 2, 5, "random"], case=name)


def test_recurrent_in_a_conv_stack_and_reset_of_one_stream():
    torch.manual_seed(1)
    model = soi.Sequential(soi.STMCConv1d(2, 4, 3), nn.ReLU(), soi.Recurrent(nn.GRU(4, 4, batch_first=True)), soi.STMCConv1d(4, 2, 2)).double()
    x = torch.randn(2, 2, 9, dtype=torch.float64)
    want = model(x)
    with torch.no_grad(), model.streaming(2):
        first = model(x[:, :, :4])
        model.reset(torch.tensor([False, True]))
        rest = model(x[:, :, 4:])
    torch.testing.assert_close(torch.cat([first, rest], 2)[0], want[0], msg="stream 0 must go on untouched")
    torch.testing.assert_close(rest[1], model(x[1:, :, 4:])[0], msg="stream 1 restarts from a zero state")


def test_bidirectional_is_refused_saying_why():
    with pytest.raises(ValueError, match="bidirectional.*backwards"):
        soi.Recurrent(nn.GRU(4, 4, bidirectional=True))
