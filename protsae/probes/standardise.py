"""Feature standardisation fitted on the rows a probe is fitted on (never test rows; constant
features get std 1), for dense features and for sparse SAE codes without densifying them.
"""

from __future__ import annotations

import numpy as np

# A feature counts as constant when its std is this small relative to its mean: exact zeros (a
# latent that never fires on the fitting rows) and the rounding noise of a constant column.
CONSTANT_RELATIVE_STD = 1e-7


def _finish_std(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    std = np.sqrt(np.maximum(var, 0.0))
    std[std <= CONSTANT_RELATIVE_STD * np.abs(mean)] = 1.0
    return std


def standardiser(features: np.ndarray, rows: np.ndarray, chunk_rows: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (ddof 0) per feature of ``features[rows]`` ((n, d) -> two (d,) float64);
    constant features get std 1. Two passes over row chunks, in float64, so that neither a copy of
    the fitting rows nor a sum-of-squares cancellation is needed."""
    rows = np.flatnonzero(rows) if rows.dtype == bool else np.asarray(rows)
    if rows.size == 0:
        raise ValueError("no rows to fit the standardiser on")
    chunks = [rows[i : i + chunk_rows] for i in range(0, rows.size, chunk_rows)]
    mean = sum(features[chunk].sum(axis=0, dtype=np.float64) for chunk in chunks) / rows.size
    var = sum(((features[chunk] - mean) ** 2).sum(axis=0) for chunk in chunks) / rows.size
    return mean, _finish_std(mean, var)


def sparse_standardiser(idx: np.ndarray, val: np.ndarray, rows: np.ndarray,
                        n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """`standardiser` of the dense matrix that the codes idx, val (n, k) stand for (each latent at
    most once per row), without building it: (n_features,) float64 mean and std."""
    rows = np.flatnonzero(rows) if rows.dtype == bool else np.asarray(rows)
    if rows.size == 0:
        raise ValueError("no rows to fit the standardiser on")
    val_rows = val[rows]
    active = val_rows != 0
    latent = idx[rows][active]
    value = val_rows[active].astype(np.float64)
    mean = np.bincount(latent, weights=value, minlength=n_features) / rows.size
    # Active entries contribute (v - mean)^2; each of the remaining rows contributes mean^2.
    n_active = np.bincount(latent, minlength=n_features)
    squares = np.bincount(latent, weights=(value - mean[latent]) ** 2, minlength=n_features)
    var = (squares + (rows.size - n_active) * mean**2) / rows.size
    return mean, _finish_std(mean, var)


def standardised(features: np.ndarray, fit_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean, std = standardiser(features, fit_rows)
    return (features - mean.astype(np.float32)) / std.astype(np.float32), mean, std

