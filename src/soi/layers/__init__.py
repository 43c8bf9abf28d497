"""Streaming layers (STMC convolutions, tSTMC, pooling: one N-d implementation each) and
:func:`soi.convert`, which turns a plain PyTorch model into its streaming twin."""
