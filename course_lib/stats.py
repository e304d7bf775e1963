"""Intervals for measured rates (chapters 3, 5 and 6: how many probe sentences a model gets right).

A rate measured on n sentences is uncertain: 55 right out of 60 is 0.92, but a model
whose true rate is 0.85 or 0.96 gives 55 of 60 too, now and then. ``wilson_interval``
gives the range of true rates that fit the count, the Wilson score interval (Wilson,
1927), which, unlike the textbook interval p +- z sqrt(p (1 - p) / n), stays inside
[0, 1] and is not empty at 0 of n or n of n.
"""

from __future__ import annotations

import math
from statistics import NormalDist


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval for a proportion: (low, high), with 0 <= low <= high <= 1.

    With p = successes / trials and z the two-sided normal quantile of ``confidence``
    (1.96 for 0.95), the interval is the set of true rates q for which
    |p - q| <= z sqrt(q (1 - q) / trials), in closed form

        (p + z^2 / 2n  -+  z sqrt(p (1 - p) / n + z^2 / 4n^2)) / (1 + z^2 / n).
    """
    for name, value in (("successes", successes), ("trials", trials)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1, got {successes} of {trials}")
    if not isinstance(confidence, float) or not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be a float in (0, 1), got {confidence!r}")
    n, p = trials, successes / trials
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends at 0 of n and n of n
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


__all__ = ["wilson_interval"]
