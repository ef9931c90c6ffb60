"""Protein-level probes in sklearn, each picking its regularisation on the validation split,
refitted on train + valid and scored on test:

- `fit_protein_classifier`: multinomial logistic regression (lbfgs), C by validation accuracy
  (subcellular localisation, CHO expression);
- `fit_protein_regressor`: ridge regression, alpha by validation Spearman rho (thermostability).

Both return a `ProbeResult`, with coefficients in standardised units.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, fields
from typing import Sequence

import numpy as np
import scipy.stats
from sklearn.linear_model import LogisticRegression, Ridge

from protsae.probes.standardise import standardised

log = logging.getLogger("protsae.probes")


SPLITS = ("train", "valid", "test")


@dataclass
class TestItems:
    """The probe's test predictions, one entry per test item (a protein, or a residue for the
    residue probe), for the bootstrap intervals (`protsae.probes.intervals`).

    protein: (n,) int64, the item's protein as its row in the task's labels (the order of the
    features the probe was given); prediction and target: (n,) class names / indices or values.
    """

    protein: np.ndarray
    prediction: np.ndarray
    target: np.ndarray


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
    test_items: the test predictions the scores come from (not written to result.json).
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
    test_items: TestItems | None = field(default=None, repr=False)

    @property
    def n_features(self) -> int:
        return self.coef.shape[1]

    def to_dict(self) -> dict:
        """JSON-ready summary: everything but the per-feature arrays (coef, mean, std)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in ("coef", "feature_mean", "feature_std", "test_items")}
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


def split_masks(split: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    split = np.asarray(split).astype(str)
    masks = tuple(split == name for name in SPLITS)
    for name, mask in zip(SPLITS, masks):
        if not mask.any():
            raise ValueError(f"no {name} rows: a probe needs train, valid and test splits")
    return masks


def best_hparam(scores: dict[float, float], prefer: Sequence[float]) -> float:
    """The hyper-parameter with the best score; ties go to the earliest in ``prefer``; NaN loses."""
    best, best_score = None, -math.inf
    for value in prefer:
        score = scores[value] if math.isfinite(scores[value]) else -math.inf
        if best is None or score > best_score:
            best, best_score = value, score
    return best


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
    train, valid, test = split_masks(split)
    Xs, _, _ = standardised(X, train)
    valid_scores = {}
    for value in sorted(grid):
        valid_scores[float(value)] = score(fit(Xs[train], y[train], value), Xs[valid], y[valid])
    chosen = best_hparam(valid_scores, sorted(valid_scores, reverse=prefer_larger))
    fit_rows = train | valid
    Xs, mean, std = standardised(X, fit_rows)
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
    prediction = model.predict(Xs[test])
    return ProbeResult(
        task="protein_classification",
        metric="accuracy",
        test_score=float(np.mean(prediction == y[test])),
        hparam="C",
        refit=True,
        classes=classes,
        coef_classes=classes[1:] if len(classes) == 2 else classes,
        coef=model.coef_.astype(np.float32),
        intercept=model.intercept_.astype(np.float32),
        **search.fields(),
        test_items=TestItems(np.flatnonzero(test), prediction, y[test]),
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
        test_items=TestItems(np.flatnonzero(test), prediction, y[test]),
    )

