"""Summary statistics shared by the probes and the figures, without their heavy imports."""

from __future__ import annotations

import math

import numpy as np


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values: 0 when all are equal, (n - 1) / n when one holds
    everything; NaN when all are 0."""
    values = np.sort(np.asarray(values, dtype=np.float64).ravel())
    total = values.sum()
    if values.size == 0 or total == 0:
        return math.nan
    n = values.size
    return float(2 * np.sum(np.arange(1, n + 1) * values) / (n * total) - (n + 1) / n)
