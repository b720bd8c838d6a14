"""Rounding of counts in report tables."""

import math


def round_half_up(x: float) -> int:
    """Nearest integer, halves rounded up (Python's ``round`` rounds them to even)."""
    return int(math.floor(x + 0.5))
