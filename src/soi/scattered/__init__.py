"""Scattered Online Inference: upsamplers, shifts, S-CC and SS-CC pairs, STMC's exact strided pair."""
