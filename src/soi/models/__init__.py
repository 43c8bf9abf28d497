"""Ready-made streaming models."""

from .unet import PATTERN_FORMS, PRESETS, Pattern, UNet, UNetConfig, parse_pattern

__all__ = ["UNet", "UNetConfig", "Pattern", "parse_pattern", "PATTERN_FORMS", "PRESETS"]
