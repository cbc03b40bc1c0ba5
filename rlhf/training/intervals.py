"""Confidence intervals for rates measured on a few dozen to a few thousand trials.

One implementation for the whole platform: a reward model's held-out pairwise accuracy (the run
page, ``evaluate-reward``) and the registry's review win rates (``models_registry.stats``).

The 95% **Wilson score interval** (Wilson 1927) rather than the normal (Wald) interval
``p +- z sqrt(p(1-p)/n)``: it stays inside [0, 1] and keeps its coverage at small n and near 0
or 1, which is where 43 held-out pairs or a review round of a few dozen labels live. With
``rate`` = k/n it is the set of p whose score test ``|k/n - p| / sqrt(p(1-p)/n) <= z`` passes:

    centre = (rate + z^2/2n) / (1 + z^2/n)
    half   = z / (1 + z^2/n) * sqrt(rate(1-rate)/n + z^2/4n^2)
"""

from __future__ import annotations

import math
from statistics import NormalDist

Z_95 = NormalDist().inv_cdf(0.975)  # 1.959963984540054


def wilson_interval(rate: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """(low, high) of the Wilson interval for ``rate`` observed over ``n`` trials."""
    if n <= 0:
        raise ValueError("an interval needs at least one comparison")
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (rate + z2 / (2 * n)) / denominator
    half_width = z / denominator * math.sqrt(rate * (1.0 - rate) / n + z2 / (4 * n * n))
    return max(0.0, centre - half_width), min(1.0, centre + half_width)
