"""Decoder-similarity edges (METHODS.md section 11; "feature flow"): the cosine of two SAEs'
decoder rows, and each latent's best match in the other SAE. Data-free: only the weights."""

from __future__ import annotations

import numpy as np
import pandas as pd


def best_decoder_matches(source: np.ndarray, target: np.ndarray, chunk: int = 1024,
                         exclude_self: bool = False) -> pd.DataFrame:
    """For each row of ``source`` (n_source, d_model) decoder directions, its most similar row of
    ``target`` (n_target, d_model) by cosine: columns source, target, cosine. ``exclude_self``
    (one SAE with itself) skips each latent's own row. Memory is chunk x n_target."""
    if source.shape[1] != target.shape[1]:
        raise ValueError(f"decoders of d_model {source.shape[1]} and {target.shape[1]}: not the same residual stream")
    unit = lambda w: w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)  # noqa: E731
    s, t = unit(np.asarray(source, np.float64)), unit(np.asarray(target, np.float64))
    best = np.zeros(len(s), np.int64)
    cosine = np.zeros(len(s))
    for first in range(0, len(s), chunk):
        block = s[first:first + chunk] @ t.T
        if exclude_self:
            rows = np.arange(block.shape[0])
            block[rows, first + rows] = -np.inf
        best[first:first + chunk] = block.argmax(axis=1)
        cosine[first:first + chunk] = block[np.arange(block.shape[0]), best[first:first + chunk]]
    return pd.DataFrame({"source": np.arange(len(s)), "target": best, "cosine": cosine})
