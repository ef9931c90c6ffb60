"""Linear probes on residual-stream activations and SAE latents (METHODS.md section 7, paper Table 1).

Features, read from the Parquet shards batch by batch (memory is what is kept, plus one batch):

- protein level, mean-pooled: `pooled_activations` averages a protein's activation rows
  ((n_proteins, d_model)); `pooled_codes` averages its SAE latent vectors, inactive latents
  counting as 0 ((n_proteins, n_latents), from the sparse idx/val codes without densifying rows);
- residue level: `residue_activations` / `residue_codes` keep every residue whose label is not
  ``-`` as a `ResidueData` (dense (n, d_model) activations, or the sparse (n, k) codes), aligned
  with its label by (seq_id, pos).

Probes, each picking its regularisation on the validation split and scored on the test split:

- `fit_protein_classifier`: sklearn multinomial logistic regression (lbfgs), C by validation
  accuracy, refitted on train + valid (subcellular localisation, CHO expression);
- `fit_protein_regressor`: sklearn ridge regression, alpha by validation Spearman rho, refitted on
  train + valid (thermostability);
- `fit_residue_classifier`: a torch linear classifier trained with Adam and early stopping, one
  model per weight decay, the best by validation accuracy (secondary structure); not refitted.

Every probe standardises its features with the mean and standard deviation of the rows it is
fitted on (never test rows; constant features get std 1), so its coefficients are in standardised
units and comparable across features. `top_coefficients` lists the largest ones per class (the
latents to inspect, paper Figs 5 and 8); `coefficient_stats` summarises their distribution
(paper Fig 9).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field, fields
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.stats
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression, Ridge

from .activations import list_to_numpy, read_acts, shard_batches, shard_metadata
from .encoding import max_activation_per_protein
from .patterns import collect_tracks, top_sequences
from .stats import gini

log = logging.getLogger("protsae.probes")

PathOrPaths = str | os.PathLike | Sequence[str | os.PathLike]
SPLITS = ("train", "valid", "test")
NO_LABEL = "-"
# A feature counts as constant when its std is this small relative to its mean: exact zeros (a
# latent that never fires on the fitting rows) and the rounding noise of a constant column.
CONSTANT_RELATIVE_STD = 1e-7


# --------------------------------------------------------------------------------------------
# Reading shards


def _paths(path_or_paths: PathOrPaths) -> list[str | os.PathLike]:
    if isinstance(path_or_paths, (str, os.PathLike)):
        return [path_or_paths]
    return list(path_or_paths)


def _index_of(ids: Sequence[str]) -> dict[str, int]:
    index = {seq_id: i for i, seq_id in enumerate(ids)}
    if len(index) != len(ids):
        raise ValueError("ids contain duplicates")
    return index


def _missing(ids: Sequence[str], counts: np.ndarray, what: str) -> None:
    missing = [ids[i] for i in np.flatnonzero(counts == 0)]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"no {what} rows for {len(missing)} protein(s): {shown}")


def pooled_activations(shard_paths: PathOrPaths, ids: Sequence[str], batch_rows: int = 32768) -> np.ndarray:
    """Mean activation over each protein's residues: (len(ids), d_model) float32, rows in the
    order of ``ids``. Rows of proteins not in ``ids`` are skipped; an id without rows is an error."""
    if not len(ids):
        raise ValueError("no ids to pool")
    index_of = _index_of(ids)
    sums: np.ndarray | None = None
    counts = np.zeros(len(ids), dtype=np.int64)
    for batch, row_protein in shard_batches(shard_paths, ["act"], index_of, batch_rows):
        keep = row_protein >= 0
        protein = row_protein[keep]
        if protein.size == 0:
            continue
        acts = read_acts(batch)[keep].astype(np.float32)
        if sums is None:
            sums = np.zeros((len(ids), acts.shape[1]), dtype=np.float64)
        # A protein's residues are consecutive rows: sum each run, then add the few run sums
        # (add.at, as a protein may also span batches or shards).
        starts = np.flatnonzero(np.r_[True, protein[1:] != protein[:-1]])
        np.add.at(sums, protein[starts], np.add.reduceat(acts, starts, axis=0))
        counts += np.bincount(protein, minlength=len(ids))
    _missing(ids, counts, "activation")
    return (sums / counts[:, None]).astype(np.float32)


def pooled_codes(code_paths: PathOrPaths, ids: Sequence[str], n_latents: int | None = None,
                 batch_rows: int = 65536) -> np.ndarray:
    """Mean SAE latent vector over each protein's residues: (len(ids), n_latents) float32, i.e.
    per protein and latent the sum of its activations over the protein's residues divided by the
    number of residues (rows); inactive slots (val == 0) add nothing. n_latents: from the shard
    metadata when None."""
    paths = _paths(code_paths)
    if n_latents is None:
        n_latents = int(shard_metadata(paths[0])["n_latents"])
    index_of = _index_of(ids)
    sums = np.zeros(len(ids) * n_latents, dtype=np.float64)
    counts = np.zeros(len(ids), dtype=np.int64)
    for batch, row_protein in shard_batches(paths, ["idx", "val"], index_of, batch_rows):
        keep = row_protein >= 0
        protein = row_protein[keep]
        idx = list_to_numpy(batch.column("idx"))[keep]
        val = list_to_numpy(batch.column("val"))[keep]
        active = val != 0
        latent = idx[active].astype(np.int64)
        if latent.size and (latent.min() < 0 or latent.max() >= n_latents):
            raise ValueError(f"latent index outside [0, {n_latents})")
        keys = np.broadcast_to(protein[:, None], active.shape)[active] * n_latents + latent
        np.add.at(sums, keys, val[active])
        counts += np.bincount(protein, minlength=len(ids))
    _missing(ids, counts, "code")
    return (sums.reshape(len(ids), n_latents) / counts[:, None]).astype(np.float32)


@dataclass
class ResidueData:
    """Features and labels of the labelled residues of a residue-level task, one row per residue.

    Dense features: ``features`` (n, d) float32. Sparse SAE codes: ``idx`` (n, k) int32 latent
    indices and ``val`` (n, k) float32 activations (val == 0: inactive slot), over
    ``n_features`` latents. ``y`` (n,) int64 index into ``classes``; ``split`` (n,) str;
    ``protein`` (n,) int64 index into ``protein_ids``; ``pos`` (n,) int32 0-based residue index.
    """

    y: np.ndarray
    split: np.ndarray
    protein: np.ndarray
    pos: np.ndarray
    classes: list[str]
    protein_ids: list[str]
    n_features: int
    features: np.ndarray | None = None
    idx: np.ndarray | None = None
    val: np.ndarray | None = None

    @property
    def sparse(self) -> bool:
        return self.features is None

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class _ResidueLabels:
    """Per-residue class codes of every labelled protein, concatenated: ``codes[offset[p] + pos]``
    (int8; -1 = no label)."""

    protein_ids: list[str]
    split: np.ndarray
    classes: list[str]
    codes: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    n_labelled: np.ndarray


def _residue_labels(labels: pd.DataFrame) -> _ResidueLabels:
    strings = labels["label"].astype(str).tolist()
    bad_length = [i for i, (s, n) in enumerate(zip(strings, labels["length"])) if len(s) != n]
    if bad_length:
        raise ValueError(f"label length differs from `length` for {labels['id'].iloc[bad_length[0]]!r} "
                         f"and {len(bad_length) - 1} more")
    classes = sorted(set("".join(strings)) - {NO_LABEL})
    code_of = np.full(256, -1, dtype=np.int8)
    for code, name in enumerate(classes):
        if len(name.encode()) != 1:
            raise ValueError(f"residue classes must be single ASCII characters, got {name!r}")
        code_of[ord(name)] = code
    codes = code_of[np.frombuffer("".join(strings).encode("ascii"), dtype=np.uint8)]
    length = np.array([len(s) for s in strings], dtype=np.int64)
    offset = np.r_[0, np.cumsum(length)[:-1]].astype(np.int64)
    labelled = codes >= 0
    protein_of_residue = np.repeat(np.arange(len(strings)), length)
    return _ResidueLabels(
        protein_ids=labels["id"].astype(str).tolist(),
        split=labels["split"].astype(str).to_numpy(),
        classes=classes,
        codes=codes,
        offset=offset,
        length=length,
        n_labelled=np.bincount(protein_of_residue[labelled], minlength=len(strings)),
    )


def _read_residues(paths: PathOrPaths, labels: pd.DataFrame, columns: dict[str, type],
                   batch_rows: int) -> tuple[_ResidueLabels, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Walk the shards and keep the labelled residues of ``labels``.

    columns: the fixed-size-list columns to keep and the dtype of each, e.g. {"act": np.float32}.
    Returns the labels, the kept residues' protein (n,), pos (n,) and class code (n,), and per
    column an (n, list_size) array, filled in place (n is known from the labels).
    """
    table = _residue_labels(labels)
    index_of = _index_of(table.protein_ids)
    n_rows = int(table.n_labelled.sum())
    protein_out = np.empty(n_rows, dtype=np.int64)
    pos_out = np.empty(n_rows, dtype=np.int32)
    y_out = np.empty(n_rows, dtype=np.int64)
    arrays: dict[str, np.ndarray] = {}
    filled = 0
    for batch, row_protein in shard_batches(paths, ["pos", *columns], index_of, batch_rows):
        if not arrays:
            arrays = {name: np.empty((n_rows, batch.schema.field(name).type.list_size), dtype=dtype)
                      for name, dtype in columns.items()}
        pos = batch.column("pos").to_numpy(zero_copy_only=False).astype(np.int64)
        listed = row_protein >= 0
        if np.any(pos[listed] >= table.length[row_protein[listed]]) or np.any(pos < 0):
            raise ValueError("a shard row's pos lies outside its protein's label")
        code = np.full(len(pos), -1, dtype=np.int64)
        code[listed] = table.codes[table.offset[row_protein[listed]] + pos[listed]]
        keep = code >= 0
        stop = filled + int(keep.sum())
        if stop > n_rows:
            raise ValueError("the shards hold more labelled residues than the labels (duplicate rows?)")
        protein_out[filled:stop] = row_protein[keep]
        pos_out[filled:stop] = pos[keep]
        y_out[filled:stop] = code[keep]
        for name, array in arrays.items():
            array[filled:stop] = list_to_numpy(batch.column(name))[keep]
        filled = stop
    found = np.bincount(protein_out[:filled], minlength=len(table.protein_ids))
    short = np.flatnonzero(found != table.n_labelled)
    if short.size:
        p = short[0]
        raise ValueError(f"{table.protein_ids[p]!r}: {table.n_labelled[p]} labelled residues, "
                         f"{found[p]} in the shards ({short.size} protein(s) differ)")
    if not arrays:
        raise ValueError("the shards hold no rows")
    # Equal counts per protein could still hide a duplicate pos paired with a missing one.
    if np.unique(protein_out * (table.length.max() + 1) + pos_out).size != n_rows:
        raise ValueError("the shards hold a (seq_id, pos) more than once")
    return table, protein_out, pos_out, y_out, arrays


def _residue_data(table: _ResidueLabels, protein: np.ndarray, pos: np.ndarray, y: np.ndarray,
                  n_features: int, **features) -> ResidueData:
    return ResidueData(y=y, split=table.split[protein], protein=protein, pos=pos, classes=table.classes,
                       protein_ids=table.protein_ids, n_features=n_features, **features)


def residue_activations(shard_paths: PathOrPaths, labels: pd.DataFrame, batch_rows: int = 32768) -> ResidueData:
    """The activations of every labelled residue of ``labels`` (columns id, split, label, length;
    label: one class character per residue, ``-`` = no label) as dense (n, d_model) float32
    features, rows in shard order."""
    table, protein, pos, y, arrays = _read_residues(shard_paths, labels, {"act": np.float32}, batch_rows)
    features = arrays["act"]
    return _residue_data(table, protein, pos, y, features.shape[1], features=features)


def residue_codes(code_paths: PathOrPaths, labels: pd.DataFrame, n_latents: int | None = None,
                  batch_rows: int = 65536) -> ResidueData:
    """The SAE codes of every labelled residue of ``labels`` (see `residue_activations`), kept
    sparse: idx (n, k) int32, val (n, k) float32. n_latents: from the shard metadata when None."""
    paths = _paths(code_paths)
    if n_latents is None:
        n_latents = int(shard_metadata(paths[0])["n_latents"])
    table, protein, pos, y, arrays = _read_residues(paths, labels, {"idx": np.int32, "val": np.float32},
                                                    batch_rows)
    idx = arrays["idx"]
    if idx.size and (idx.min() < 0 or idx.max() >= n_latents):
        raise ValueError(f"latent index outside [0, {n_latents})")
    return _residue_data(table, protein, pos, y, n_latents, idx=idx, val=arrays["val"])


# --------------------------------------------------------------------------------------------
# Standardisation


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


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class ProbeResult:
    """A fitted probe and its scores.

    task: ``protein_classification``, ``protein_regression`` or ``residue_classification``.
    metric: ``accuracy`` or ``spearman``; test_score its value on the test split.
    valid_scores: validation score per value of the hyper-parameter ``hparam`` (``C``,
    ``alpha`` or ``weight_decay``); chosen: the value picked. refit: whether the final model was
    refitted on train + valid. classes: class names (None for regression). coef: (n_rows,
    n_features) float32 in standardised feature units, one row per name in ``coef_classes``
    (multinomial: every class; binary logistic regression: one row, for the positive class
    ``classes[1]``; regression: ``target``); intercept: (n_rows,). feature_mean, feature_std:
    (n_features,) float64, the standardiser of the final model (features are (x - mean) / std).
    extras: further scores (regression: test Pearson r and RMSE; residue probes: epochs).
    """

    task: str
    metric: str
    test_score: float
    valid_scores: dict[float, float]
    hparam: str
    chosen: float
    refit: bool
    n_train: int
    n_valid: int
    n_test: int
    classes: list[str] | None
    coef_classes: list[str]
    coef: np.ndarray = field(repr=False)
    intercept: np.ndarray = field(repr=False)
    feature_mean: np.ndarray = field(repr=False)
    feature_std: np.ndarray = field(repr=False)
    extras: dict = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return self.coef.shape[1]

    def to_dict(self) -> dict:
        """JSON-ready summary: everything but the per-feature arrays (coef, mean, std)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in ("coef", "feature_mean", "feature_std")}
        out["valid_scores"] = [{"value": float(k), "score": _json_float(v)} for k, v in self.valid_scores.items()]
        out["test_score"] = _json_float(self.test_score)
        out["chosen"] = float(self.chosen)
        out["intercept"] = [float(v) for v in np.ravel(self.intercept)]
        out["n_features"] = self.n_features
        out["extras"] = {key: _json_float(v) if isinstance(v, float) else v for key, v in self.extras.items()}
        return out


def _json_float(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _split_masks(split: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    split = np.asarray(split).astype(str)
    masks = tuple(split == name for name in SPLITS)
    for name, mask in zip(SPLITS, masks):
        if not mask.any():
            raise ValueError(f"no {name} rows: a probe needs train, valid and test splits")
    return masks


def _best(scores: dict[float, float], prefer: Sequence[float]) -> float:
    """The hyper-parameter with the best score; ties go to the earliest in ``prefer``; NaN loses."""
    best, best_score = None, -math.inf
    for value in prefer:
        score = scores[value] if math.isfinite(scores[value]) else -math.inf
        if best is None or score > best_score:
            best, best_score = value, score
    return best


# --------------------------------------------------------------------------------------------
# Protein-level probes (sklearn)


def _standardised(features: np.ndarray, fit_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean, std = standardiser(features, fit_rows)
    return (features - mean.astype(np.float32)) / std.astype(np.float32), mean, std


def _fit_logistic(X: np.ndarray, y: np.ndarray, C: float, max_iter: int) -> LogisticRegression:
    # With more than two classes lbfgs fits the multinomial (softmax) model, not one-vs-rest.
    model = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter).fit(X, y)
    if np.max(model.n_iter_) >= max_iter:
        log.warning("logistic regression with C=%g stopped at max_iter=%d before converging", C, max_iter)
    return model


@dataclass
class _Search:
    """A validation grid search refitted on train + valid (see `_select_and_refit`)."""

    model: object
    features: np.ndarray  # (n, d) X standardised with the train + valid mean/std
    mean: np.ndarray
    std: np.ndarray
    valid_scores: dict[float, float]
    chosen: float
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def fields(self) -> dict:
        """The `ProbeResult` fields every protein probe fills the same way."""
        return dict(valid_scores=self.valid_scores, chosen=self.chosen, n_train=int(self.train.sum()),
                    n_valid=int(self.valid.sum()), n_test=int(self.test.sum()), feature_mean=self.mean,
                    feature_std=self.std)


def _select_and_refit(X: np.ndarray, y: np.ndarray, split: np.ndarray, grid: Sequence[float],
                      prefer_larger: bool, fit, score) -> _Search:
    """Fit ``fit(Xs, y, value)`` for each grid value on the train rows (standardised with their
    mean/std), score each with ``score(model, Xs, y)`` on validation, pick the best (ties: the
    larger value when ``prefer_larger``, else the smaller; the stronger regularisation either
    way) and refit it on train + valid, standardised with their mean/std."""
    train, valid, test = _split_masks(split)
    Xs, _, _ = _standardised(X, train)
    valid_scores = {}
    for value in sorted(grid):
        valid_scores[float(value)] = score(fit(Xs[train], y[train], value), Xs[valid], y[valid])
    chosen = _best(valid_scores, sorted(valid_scores, reverse=prefer_larger))
    fit_rows = train | valid
    Xs, mean, std = _standardised(X, fit_rows)
    model = fit(Xs[fit_rows], y[fit_rows], chosen)
    return _Search(model, Xs, mean, std, valid_scores, chosen, train, valid, test)


def fit_protein_classifier(X: np.ndarray, y: np.ndarray, split: np.ndarray,
                           Cs: Sequence[float] = (1e-3, 1e-2, 1e-1, 1, 10), max_iter: int = 5000) -> ProbeResult:
    """Logistic-regression probe on protein features X (n, d) with class labels y (n,).

    Each C is fitted on the train rows (standardised with their mean/std) and scored by
    validation accuracy; the best C (ties: the smaller C, i.e. stronger regularisation) is refitted
    on train + valid, standardised with their mean/std, and scored on test. Rows whose split is
    none of train/valid/test are ignored.
    """
    y = np.asarray(y)
    search = _select_and_refit(
        X, y, split, Cs, prefer_larger=False,
        fit=lambda features, targets, C: _fit_logistic(features, targets, C, max_iter),
        score=lambda model, features, targets: float(np.mean(model.predict(features) == targets)),
    )
    model, Xs, test = search.model, search.features, search.test
    classes = [str(c) for c in model.classes_]
    return ProbeResult(
        task="protein_classification",
        metric="accuracy",
        test_score=float(np.mean(model.predict(Xs[test]) == y[test])),
        hparam="C",
        refit=True,
        classes=classes,
        coef_classes=classes[1:] if len(classes) == 2 else classes,
        coef=model.coef_.astype(np.float32),
        intercept=model.intercept_.astype(np.float32),
        **search.fields(),
    )


def _spearman(prediction: np.ndarray, target: np.ndarray) -> float:
    return float(scipy.stats.spearmanr(prediction, target).statistic)


def fit_protein_regressor(X: np.ndarray, y: np.ndarray, split: np.ndarray,
                          alphas: Sequence[float] = (1e-2, 1e-1, 1, 10, 100, 1000)) -> ProbeResult:
    """Ridge-regression probe on protein features X (n, d) with targets y (n,) float.

    Each alpha is fitted on the train rows (standardised with their mean/std) and scored by
    validation Spearman rho; the best alpha (ties: the larger alpha, i.e. stronger
    regularisation) is refitted on train + valid and scored on test: Spearman rho, with Pearson r
    and RMSE in ``extras``.
    """
    y = np.asarray(y, dtype=np.float64)
    search = _select_and_refit(
        X, y, split, alphas, prefer_larger=True,
        fit=lambda features, targets, alpha: Ridge(alpha=alpha).fit(features, targets),
        score=lambda model, features, targets: _spearman(model.predict(features), targets),
    )
    model, test = search.model, search.test
    prediction = model.predict(search.features[test])
    return ProbeResult(
        task="protein_regression",
        metric="spearman",
        test_score=_spearman(prediction, y[test]),
        hparam="alpha",
        refit=True,
        classes=None,
        coef_classes=["target"],
        coef=np.atleast_2d(model.coef_).astype(np.float32),
        intercept=np.atleast_1d(model.intercept_).astype(np.float32),
        **search.fields(),
        extras={
            "pearson": float(scipy.stats.pearsonr(prediction, y[test]).statistic),
            "rmse": float(np.sqrt(np.mean((prediction - y[test]) ** 2))),
        },
    )


# --------------------------------------------------------------------------------------------
# Residue-level probe (torch)


def linear_logits(weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, *,
                  features: torch.Tensor | None = None, idx: torch.Tensor | None = None,
                  val: torch.Tensor | None = None) -> torch.Tensor:
    """Logits ``weight @ ((x - mean) / std) + bias`` of a batch: (batch, n_classes).

    weight (n_classes, d), bias (n_classes,), mean and std (d,). Give either dense ``features``
    (batch, d), or sparse codes ``idx`` (batch, k) and ``val`` (batch, k) (val == 0: inactive).
    The sparse form never builds the dense batch: W((x - mean) / std) = (W / std) x - (W / std) mean,
    where (W / std) x sums the k scaled weight columns a row names, weighted by their values, and
    the mean term is folded into the bias.
    """
    if features is not None:
        # Standardising the batch first keeps float32 exact where a feature's mean dwarfs its std.
        return ((features - mean) / std) @ weight.T + bias
    scaled = weight / std
    # Gathering rows of a contiguous (d, n_classes) copy and summing took half the time of
    # F.embedding_bag (forward + backward, 4096 x k=32 over 2048 latents, one CPU thread).
    columns = scaled.T.contiguous()[idx]
    return (columns * val.unsqueeze(-1)).sum(1) + (bias - scaled @ mean)


class _Rows:
    """Row access to a `ResidueData`'s features as torch tensors on ``device`` (zero-copy on CPU)."""

    def __init__(self, data: ResidueData, device: torch.device):
        self.device = device
        if data.sparse:
            self.idx = torch.from_numpy(data.idx)
            self.val = torch.from_numpy(data.val)
            self.features = None
        else:
            self.features = torch.from_numpy(data.features)

    def batch(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.features is not None:
            return {"features": self.features[rows].to(self.device)}
        return {"idx": self.idx[rows].to(self.device), "val": self.val[rows].to(self.device)}


def _predict(rows_of: _Rows, rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor,
             std: torch.Tensor, chunk_rows: int = 65536) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([
            linear_logits(weight, bias, mean, std, **rows_of.batch(rows[i : i + chunk_rows])).argmax(1).cpu()
            for i in range(0, len(rows), chunk_rows)
        ])


def _train_linear(rows_of: _Rows, y: torch.Tensor, train: torch.Tensor, valid: torch.Tensor, mean: torch.Tensor,
                  std: torch.Tensor, n_classes: int, n_features: int, weight_decay: float, epochs: int,
                  batch_size: int, lr: float, patience: int,
                  seed: int) -> tuple[torch.Tensor, torch.Tensor, float, int]:
    """One linear classifier: the weights (n_classes, d) and bias (n_classes,) of its best epoch,
    that epoch's validation accuracy and its number (1-based)."""
    device = rows_of.device
    # Zero start: the problem is convex, and the result then depends on the seed only via the order.
    weight = torch.zeros(n_classes, n_features, device=device, requires_grad=True)
    bias = torch.zeros(n_classes, device=device, requires_grad=True)
    # L2 on the weights only, like sklearn's penalties.
    optimiser = torch.optim.Adam([{"params": [weight], "weight_decay": weight_decay},
                                  {"params": [bias], "weight_decay": 0.0}], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    y_valid = y[valid]
    best = (-1.0, 0, weight.detach().clone(), bias.detach().clone())
    since_best = 0
    for epoch in range(1, epochs + 1):
        order = train[torch.randperm(len(train), generator=generator)]
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            logits = linear_logits(weight, bias, mean, std, **rows_of.batch(rows))
            loss = F.cross_entropy(logits, y[rows].to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        accuracy = float((_predict(rows_of, valid, weight, bias, mean, std) == y_valid).float().mean())
        if accuracy > best[0]:
            best = (accuracy, epoch, weight.detach().clone(), bias.detach().clone())
            since_best = 0
        else:
            since_best += 1
            if since_best >= patience:
                break
    accuracy, best_epoch, best_weight, best_bias = best
    return best_weight, best_bias, accuracy, best_epoch


def fit_residue_classifier(data: ResidueData, weight_decays: Sequence[float] = (0, 1e-4, 1e-3, 1e-2),
                           epochs: int = 20, batch_size: int = 4096, lr: float = 1e-3, patience: int = 2,
                           seed: int = 0, device: str | torch.device = "cpu") -> ProbeResult:
    """Linear classifier on residue features, trained in torch with Adam on cross-entropy.

    Features are standardised with the train rows' mean/std (sparse codes through
    `linear_logits`'s folded form, which equals training on the standardised dense matrix without
    building it). Per
    weight decay, one model from zero weights, mini-batches shuffled with ``seed``, early stopping
    on validation accuracy (up to ``epochs``; stop after ``patience`` epochs without improvement;
    the best epoch's weights are kept). The weight decay with the best validation accuracy (ties:
    the larger, i.e. stronger regularisation) is scored on test. The model is not refitted on
    train + valid: validation rows decide the stopping epoch, so they cannot also be trained on.
    """
    train_mask, valid_mask, test_mask = _split_masks(data.split)
    device = torch.device(device)
    if data.sparse:
        mean, std = sparse_standardiser(data.idx, data.val, train_mask, data.n_features)
    else:
        mean, std = standardiser(data.features, train_mask)
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=device)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=device)
    rows_of = _Rows(data, device)
    y = torch.from_numpy(np.asarray(data.y, dtype=np.int64))
    train, valid, test = (torch.from_numpy(np.flatnonzero(mask)) for mask in (train_mask, valid_mask, test_mask))
    models, valid_scores, best_epochs = {}, {}, {}
    for weight_decay in sorted(weight_decays):
        weight, bias, accuracy, epoch = _train_linear(rows_of, y, train, valid, mean_t, std_t, len(data.classes),
                                                      data.n_features, weight_decay, epochs, batch_size, lr,
                                                      patience, seed)
        models[float(weight_decay)] = (weight, bias)
        valid_scores[float(weight_decay)] = accuracy
        best_epochs[str(float(weight_decay))] = epoch
        log.info("residue probe: weight_decay=%g valid accuracy %.4f (epoch %d)", weight_decay, accuracy, epoch)
    chosen = _best(valid_scores, sorted(valid_scores, reverse=True))
    weight, bias = models[chosen]
    test_accuracy = float((_predict(rows_of, test, weight, bias, mean_t, std_t) == y[test]).float().mean())
    return ProbeResult(
        task="residue_classification",
        metric="accuracy",
        test_score=test_accuracy,
        valid_scores=valid_scores,
        hparam="weight_decay",
        chosen=chosen,
        refit=False,
        n_train=len(train),
        n_valid=len(valid),
        n_test=len(test),
        classes=list(data.classes),
        coef_classes=list(data.classes),
        coef=weight.cpu().numpy().astype(np.float32),
        intercept=bias.cpu().numpy().astype(np.float32),
        feature_mean=mean,
        feature_std=std,
        extras={"best_epoch": best_epochs, "max_epochs": epochs},
    )


# --------------------------------------------------------------------------------------------
# Interpretation


def top_coefficients(result: ProbeResult, n: int = 10, feature_names: Sequence[str] | None = None) -> pd.DataFrame:
    """The ``n`` largest positive and ``n`` most negative coefficients of each coefficient row.

    Rows are named by ``result.coef_classes``: every class of a multinomial probe; for binary
    logistic regression sklearn's single row, which scores the positive class ``classes[1]``
    (its negative coefficients favour ``classes[0]``); ``target`` for regression. Columns: class,
    sign (``positive``/``negative``), rank (1 = largest magnitude), feature (column index), name
    (``feature_names[feature]``, or the index as text), coefficient (standardised units).
    Features with a zero coefficient are listed under neither sign.
    """
    records = []
    for class_name, row in zip(result.coef_classes, result.coef):
        features = np.arange(len(row))
        for sign, direction in (("positive", 1.0), ("negative", -1.0)):
            picked = features[direction * row > 0]
            # lexsort: by magnitude descending, ties by feature index.
            picked = picked[np.lexsort((picked, -direction * row[picked]))][:n]
            for rank, feature in enumerate(picked, start=1):
                records.append({
                    "class": class_name,
                    "sign": sign,
                    "rank": rank,
                    "feature": int(feature),
                    "name": str(feature_names[feature]) if feature_names is not None else str(feature),
                    "coefficient": float(row[feature]),
                })
    return pd.DataFrame.from_records(records, columns=["class", "sign", "rank", "feature", "name", "coefficient"])


def coefficient_stats(coef: np.ndarray) -> dict[str, float]:
    """Distribution of all entries of ``coef`` (paper Fig 9 compares raw vs SAE probes): n, mean,
    variance and std (ddof 0), skew and excess kurtosis (scipy, biased estimators), max |coef|, the
    share of entries with |coef| above 10% of that maximum, and the Gini coefficient of |coef| (0:
    weight spread evenly; near 1: concentrated on a few features)."""
    values = np.asarray(coef, dtype=np.float64).ravel()
    magnitude = np.abs(values)
    max_abs = float(magnitude.max()) if values.size else math.nan
    return {
        "n": int(values.size),
        "mean": float(values.mean()),
        "variance": float(values.var()),
        "std": float(values.std()),
        "skew": float(scipy.stats.skew(values)),
        "excess_kurtosis": float(scipy.stats.kurtosis(values, fisher=True)),
        "max_abs": max_abs,
        "share_above_10pct_max": float(np.mean(magnitude > 0.1 * max_abs)) if max_abs > 0 else math.nan,
        "gini_abs": gini(magnitude),
    }


def latent_examples(top: pd.DataFrame, code_paths: PathOrPaths, labels: pd.DataFrame, sequences: Mapping[str, str],
                    n_examples: int = 5) -> pd.DataFrame:
    """The top-activating proteins of each latent in ``top`` (from `top_coefficients` of an SAE
    probe), with their residue-level activations, so a latent a probe leans on can be inspected.

    labels: the task's labels table (id, label, length); sequences: id -> residues. For every row
    of ``top`` and each of the latent's ``n_examples`` proteins with the highest maximum activation
    (ties by id): example (1 = highest), protein, max_activation, protein_label (the protein's
    label; for residue-level tasks the label string), active_residues (``pos:value`` of every
    residue where the latent fires, 0-based positions, ';'-joined) and sequence.
    """
    ids = labels["id"].tolist()
    maxima = max_activation_per_protein(code_paths)
    best = top_sequences(maxima, ids, n_top=n_examples, fraction=0.0)
    latents = sorted(set(top["feature"].astype(int)))
    wanted = [(protein, latent) for latent in latents for protein in best[latent]]
    tracks = collect_tracks(code_paths, wanted, labels.set_index("id")["length"].to_dict())
    label_of = labels.set_index("id")["label"].to_dict()
    examples = {}
    for index, (protein, latent) in enumerate(wanted):
        track = tracks[index]
        examples.setdefault(latent, []).append({
            "example": len(examples.get(latent, [])) + 1,
            "protein": protein,
            "max_activation": float(track.values.max()),
            "protein_label": label_of[protein],
            "active_residues": ";".join(f"{p}:{v:.3g}" for p, v in zip(track.positions, track.values)),
            "sequence": sequences[protein],
        })
    rows = [row | example for row in top.to_dict("records") for example in examples.get(int(row["feature"]), [])]
    return pd.DataFrame(rows, columns=[*top.columns, "example", "protein", "max_activation", "protein_label",
                                       "active_residues", "sequence"])
