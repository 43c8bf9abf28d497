"""The tiny U-Nets and the SOI patterns that the U-Net, schedule and cost tests sweep."""

from soi.models import UNetConfig

TINY = UNetConfig(freq_bins=17, in_channels=2, out_channels=2, channels=(3, 4, 4), kernel=(2, 3))
TINY_LOOKAHEAD = UNetConfig(freq_bins=17, in_channels=2, out_channels=2, channels=(3, 4, 4), kernel=(3, 3), lookahead=1)
PATTERNS = (
    "STMC", "Predictive 1", "Predictive 2", "S-CC 1", "S-CC 2", "S-CC 3", "2xS-CC 1 3", "2xS-CC 2 3",
    "3xS-CC 1 2 3", "SS-CC 1", "SS-CC 2", "SS-CC 3", "SS-CC 1 3", "SS-CC 2 3", "SS-CC 3 1",
)  # fmt: skip
