"""Forward-pass batches: length-sorted batches under a padded-token budget (and the random
fixed-size batches they are benchmarked against).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def token_budget_batches(lengths: Sequence[int], max_tokens: int, specials: int = 2) -> list[list[int]]:
    """Group sequence indices into batches whose padded size fits ``max_tokens``.

    Sequences are taken longest first, so each batch holds sequences of similar length (little
    padding) and an out-of-memory batch, if any, comes first rather than after hours.
    The padded size of a batch is ``n_sequences * (longest + specials)``.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        width = lengths[current[0]] + specials if current else lengths[index] + specials
        if current and (len(current) + 1) * width > max_tokens:
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def random_batches(n_sequences: int, batch_size: int, seed: int = 0) -> list[list[int]]:
    """Random-order fixed-size batches: the naive baseline the benchmark compares against."""
    order = np.random.default_rng(seed).permutation(n_sequences).tolist()
    return [order[i : i + batch_size] for i in range(0, n_sequences, batch_size)]

