"""The SOI paper's reference figures, the numbers ``benchmarks/cost_tables.py`` and the tests compare
``soi.cost`` with (reference data, not library code)."""

from __future__ import annotations

PAPER_TABLES: dict[str, tuple[float, float, float | None]] = {
    # pattern: (complexity retained %, MMAC/s, precomputed % or None when table 2 does not list it)
    "STMC": (100.0, 1819.2, 0.0),
    "Predictive 1": (100.0, 1819.2, 100.0),
    "Predictive 2": (100.0, 1819.2, 100.0),
    "S-CC 2": (51.4, 935.2, None),
    "S-CC 5": (64.8, 1178.7, None),
    "S-CC 7": (83.8, 1524.3, None),
    "2xS-CC 1 3": (29.1, 528.8, None),
    "2xS-CC 1 6": (35.6, 648.5, None),
    "2xS-CC 2 5": (33.8, 615.0, None),
    "2xS-CC 3 6": (43.8, 796.4, None),
    "2xS-CC 4 6": (47.1, 857.3, None),
    "2xS-CC 5 7": (56.7, 1031.2, None),
    "2xS-CC 6 7": (63.2, 1149.5, None),
    "SS-CC 2": (51.4, 935.2, 97.2),
    "SS-CC 5": (64.8, 1178.7, 70.4),
    "SS-CC 7": (83.8, 1524.3, 32.4),
    "SS-CC 1 3": (50.0, 909.6, 83.7),
    "SS-CC 1 6": (50.0, 909.6, 57.4),
    "SS-CC 2 5": (51.4, 935.2, 70.4),
    "SS-CC 3 6": (58.1, 1057.5, 57.4),
    "SS-CC 4 6": (61.5, 1118.4, 57.4),
    "SS-CC 5 6": (64.8, 1178.7, 57.4),
    "SS-CC 6 7": (71.3, 1296.9, 32.4),
}
"""The SOI paper's tables 1 (PP) and 2 (FP): complexity figures of its 7-level speech U-Net."""
