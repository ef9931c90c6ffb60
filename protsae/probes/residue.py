"""The residue-level probe (secondary structure): a torch linear classifier on standardised
dense or sparse features, trained with mini-batch Adam and early stopping on validation accuracy,
one model per weight decay, the best by validation accuracy; not refitted.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from protsae.probes.features import ResidueData
from protsae.probes.linear import ProbeResult, TestItems, best_hparam, split_masks
from protsae.probes.standardise import sparse_standardiser, standardiser

log = logging.getLogger("protsae.probes")


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
    train_mask, valid_mask, test_mask = split_masks(data.split)
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
    chosen = best_hparam(valid_scores, sorted(valid_scores, reverse=True))
    weight, bias = models[chosen]
    prediction = _predict(rows_of, test, weight, bias, mean_t, std_t)
    test_accuracy = float((prediction == y[test]).float().mean())
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
        test_items=TestItems(data.protein[test.numpy()], prediction.numpy(), y[test].numpy()),
    )

