"""Linear probes: pooled and residue features from hand-built shards, planted tasks solved and
their planted feature on top, sparse path equal to the dense standardised one, train-only
standardisation, hyper-parameters chosen by validation, coefficient statistics."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from protsae.activations.storage import act_column, shard_schema
from protsae.codes.encode import _code_batch
from protsae.codes.storage import code_schema
from protsae.probes.features import (
    ResidueData,
    pooled_activations,
    pooled_codes,
    residue_activations,
    residue_codes,
)
from protsae.probes.interpret import (
    coefficient_stats,
    gini,
    latent_examples,
    top_coefficients,
)
from protsae.probes.linear import fit_protein_classifier, fit_protein_regressor
from protsae.probes.residue import fit_residue_classifier, linear_logits
from protsae.probes.standardise import sparse_standardiser, standardiser

torch.set_num_threads(1)


def write_act_shard(path, seq_ids, pos, acts, storage_dtype="float16"):
    schema = shard_schema(acts.shape[1], storage_dtype, {"layer": 3})
    batch = pa.RecordBatch.from_arrays(
        [pa.array(seq_ids, pa.string()), pa.array(pos, pa.int32()), act_column(acts, storage_dtype)], schema=schema
    )
    pq.write_table(pa.Table.from_batches([batch]), path)


def write_code_shard(path, seq_ids, pos, idx, val, n_latents):
    schema = code_schema(idx.shape[1], {"n_latents": n_latents, "k": idx.shape[1]})
    batch = _code_batch(schema, pa.array(seq_ids, pa.string()), np.asarray(pos), np.asarray(idx, np.int32),
                        np.asarray(val, np.float32))
    pq.write_table(pa.Table.from_batches([batch]), path)


def random_splits(n, rng, shares=(0.6, 0.2, 0.2)):
    return rng.choice(["train", "valid", "test"], size=n, p=shares)


# ------------------------------------------------------------------------------------------
# Features


def test_pooled_activations_match_hand_means(tmp_path):
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(10, 4)).astype(np.float16)
    # "b" spans both shards and is not contiguous in the first; "x" is not asked for.
    first = (["a", "a", "b", "x", "b"], [0, 1, 0, 0, 1], acts[:5])
    second = (["b", "c", "c", "c", "c"], [2, 0, 1, 2, 3], acts[5:])
    write_act_shard(tmp_path / "s1.parquet", *first)
    write_act_shard(tmp_path / "s2.parquet", *second)
    paths = [tmp_path / "s1.parquet", tmp_path / "s2.parquet"]
    pooled = pooled_activations(paths, ["c", "a", "b"], batch_rows=2)
    full = acts.astype(np.float64)
    expected = np.stack([full[6:10].mean(0), full[0:2].mean(0), full[[2, 4, 5]].mean(0)])
    assert pooled.dtype == np.float32 and pooled.shape == (3, 4)
    np.testing.assert_allclose(pooled, expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="missing_protein"):
        pooled_activations(paths, ["a", "missing_protein"])


def test_pooled_codes_ignore_inactive_slots(tmp_path):
    # Latent 3 sits in inactive slots (val 0) everywhere except one residue of "p".
    idx = np.array([[1, 3], [1, 2], [0, 3], [2, 3], [3, 1]])
    val = np.array([[2.0, 0.0], [4.0, 1.0], [5.0, 0.0], [1.0, 6.0], [0.0, 0.0]])
    write_code_shard(tmp_path / "c.parquet", ["p", "p", "q", "q", "q"], [0, 1, 0, 1, 2], idx, val, n_latents=5)
    pooled = pooled_codes(tmp_path / "c.parquet", ["q", "p"], batch_rows=3)
    expected = np.array([
        [5 / 3, 0, 1 / 3, 6 / 3, 0],  # q: three residues, the last one silent
        [0, 6 / 2, 1 / 2, 0, 0],      # p: two residues
    ])
    assert pooled.shape == (2, 5) and pooled.dtype == np.float32
    np.testing.assert_allclose(pooled, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="nobody"):
        pooled_codes(tmp_path / "c.parquet", ["p", "nobody"])


def residue_labels():
    return pd.DataFrame({
        "id": ["p1", "p2"],
        "split": ["train", "test"],
        "label": ["HH-E", "C-E"],
        "length": [4, 3],
    })


def test_residue_features_aligned_and_unlabelled_dropped(tmp_path):
    # Rows in a scrambled order, with a protein the labels do not mention; each activation row
    # encodes its (protein, pos) so that the alignment can be read back.
    rows = [("p2", 2), ("p1", 3), ("zz", 0), ("p1", 0), ("p2", 0), ("p1", 2), ("p1", 1), ("p2", 1)]
    seq_ids = [s for s, _ in rows]
    pos = [p for _, p in rows]
    acts = np.array([[{"p1": 1, "p2": 2, "zz": 9}[s], p, 0.5] for s, p in rows], dtype=np.float32)
    write_act_shard(tmp_path / "a.parquet", seq_ids, pos, acts, storage_dtype="float32")
    data = residue_activations(tmp_path / "a.parquet", residue_labels(), batch_rows=3)
    assert data.classes == ["C", "E", "H"]
    assert len(data) == 5  # 7 residues, two labelled "-"
    labels = {"p1": "HH-E", "p2": "C-E"}
    for row in range(len(data)):
        seq_id = data.protein_ids[data.protein[row]]
        assert data.features[row, 0] == {"p1": 1, "p2": 2}[seq_id]
        assert data.features[row, 1] == data.pos[row]
        assert data.classes[data.y[row]] == labels[seq_id][data.pos[row]]
        assert data.split[row] == {"p1": "train", "p2": "test"}[seq_id]
    assert sorted(zip(data.protein.tolist(), data.pos.tolist())) == [(0, 0), (0, 1), (0, 3), (1, 0), (1, 2)]

    # The same residues as codes: latent = 10 * protein + pos, value = pos + 1.
    idx = np.array([[{"p1": 10, "p2": 20, "zz": 30}[s] + p, 0] for s, p in rows])
    val = np.array([[p + 1.0, 0.0] for _, p in rows])
    write_code_shard(tmp_path / "c.parquet", seq_ids, pos, idx, val, n_latents=40)
    codes = residue_codes(tmp_path / "c.parquet", residue_labels(), batch_rows=3)
    assert codes.sparse and codes.n_features == 40 and codes.idx.shape == (5, 2)
    expected_latent = 10 * (codes.protein + 1) + codes.pos
    np.testing.assert_array_equal(codes.idx[:, 0], expected_latent)
    np.testing.assert_array_equal(codes.val[:, 0], codes.pos + 1.0)
    np.testing.assert_array_equal(codes.y, [data.classes.index(labels[codes.protein_ids[p]][q])
                                            for p, q in zip(codes.protein, codes.pos)])

    # A labelled residue missing from the shards is an error naming its protein.
    keep = [i for i, r in enumerate(rows) if r != ("p2", 2)]
    write_act_shard(tmp_path / "short.parquet", [seq_ids[i] for i in keep], [pos[i] for i in keep], acts[keep],
                    storage_dtype="float32")
    with pytest.raises(ValueError, match="p2"):
        residue_activations(tmp_path / "short.parquet", residue_labels())


# ------------------------------------------------------------------------------------------
# Protein-level probes


def planted_classes(rng, n=600, d=20):
    """Three classes, each raising its own feature (A: 2, B: 5, C: 9) above Gaussian noise."""
    y = rng.choice(np.array(["A", "B", "C"]), size=n)
    X = rng.normal(size=(n, d))
    for name, feature in (("A", 2), ("B", 5), ("C", 9)):
        X[y == name, feature] += 4.0
    return X, y


def test_planted_protein_classes_solved_and_named():
    rng = np.random.default_rng(1)
    X, y = planted_classes(rng)
    result = fit_protein_classifier(X, y, random_splits(len(y), rng))
    assert result.metric == "accuracy" and result.test_score > 0.95
    assert result.classes == ["A", "B", "C"] and result.coef.shape == (3, 20)
    top = top_coefficients(result, n=3)
    first = top[(top["sign"] == "positive") & (top["rank"] == 1)].set_index("class")["feature"]
    assert first.to_dict() == {"A": 2, "B": 5, "C": 9}
    assert set(top["sign"]) == {"positive", "negative"} and top.groupby(["class", "sign"]).size().max() <= 3
    json.dumps(result.to_dict(), allow_nan=False)


def test_binary_classifier_has_one_row_for_the_positive_class():
    rng = np.random.default_rng(2)
    y = rng.choice(np.array(["high", "low"]), size=400)
    X = rng.normal(size=(400, 8))
    X[:, 3] += np.where(y == "low", 3.0, 0.0)
    result = fit_protein_classifier(X, y, random_splits(400, rng))
    assert result.test_score > 0.9
    assert result.coef.shape == (1, 8) and result.coef_classes == ["low"]
    top = top_coefficients(result, n=2, feature_names=[f"L{i}" for i in range(8)])
    best = top[(top["sign"] == "positive") & (top["rank"] == 1)].iloc[0]
    assert (best["class"], best["feature"], best["name"]) == ("low", 3, "L3")


def test_random_labels_give_chance_accuracy():
    rng = np.random.default_rng(3)
    y = rng.choice(np.array(["w", "x", "y", "z"]), size=1200)
    X = rng.normal(size=(1200, 10))
    result = fit_protein_classifier(X, y, random_splits(1200, rng, (0.4, 0.2, 0.4)))
    assert 0.15 < result.test_score < 0.35


def test_planted_regression():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(500, 12))
    y = 3 * X[:, 5] + rng.normal(scale=0.3, size=500)
    result = fit_protein_regressor(X, y, random_splits(500, rng))
    assert result.metric == "spearman" and result.test_score > 0.97
    assert result.extras["pearson"] > 0.97 and result.extras["rmse"] < 0.5
    assert int(np.argmax(np.abs(result.coef[0]))) == 5 and result.coef[0, 5] > 0
    top = top_coefficients(result, n=1)
    assert top[top["sign"] == "positive"].iloc[0][["class", "feature"]].tolist() == ["target", 5]
    json.dumps(result.to_dict(), allow_nan=False)


def test_protein_standardiser_ignores_test_rows():
    rng = np.random.default_rng(5)
    X, y = planted_classes(rng, n=300, d=12)
    X[:, 4] = 7.0  # constant: std 1
    split = random_splits(300, rng)
    X[split == "test", 0] = 1e6
    result = fit_protein_classifier(X, y, split)
    fitted = split != "test"  # the refit standardises on train + valid
    np.testing.assert_allclose(result.feature_mean, X[fitted].mean(0))
    varying = np.arange(12) != 4
    np.testing.assert_allclose(result.feature_std[varying], X[fitted][:, varying].std(0))
    assert result.feature_std[4] == 1.0 and result.feature_mean[4] == 7.0


def test_regularisation_follows_validation():
    # Many small effects, as many training rows as features: only strong shrinkage generalises.
    rng = np.random.default_rng(6)
    n, d = 400, 200
    X = rng.normal(size=(n, d))
    y = X @ np.full(d, 0.1) + rng.normal(scale=1.0, size=n)
    split = np.array(["train"] * 200 + ["valid"] * 100 + ["test"] * 100)
    result = fit_protein_regressor(X, y, split)
    assert result.chosen >= 10
    assert result.valid_scores[result.chosen] == max(result.valid_scores.values())
    assert result.valid_scores[result.chosen] > result.valid_scores[0.01] + 0.2

    # When every C is perfect on validation, the smallest (strongest regularisation) wins.
    y = rng.choice(np.array(["A", "B", "C"]), size=300)
    easy = rng.normal(size=(300, 3))
    easy[np.arange(300), np.searchsorted(["A", "B", "C"], y)] += 10.0
    result = fit_protein_classifier(easy, y, random_splits(300, rng))
    assert set(result.valid_scores.values()) == {1.0} and result.chosen == 1e-3


# ------------------------------------------------------------------------------------------
# Residue-level probe


def planted_residue_codes(rng, n=12000, n_latents=64, k=6):
    """Sparse codes where class H fires latent 5, E latent 11 and C latent 20 (plus noise latents
    and inactive slots)."""
    y = rng.integers(0, 3, size=n)  # classes ["C", "E", "H"]
    noise = np.setdiff1d(np.arange(n_latents), [5, 11, 20])
    idx = np.stack([rng.choice(noise, size=k, replace=False) for _ in range(n)]).astype(np.int32)
    val = rng.uniform(0.5, 2.0, size=(n, k)).astype(np.float32)
    val[rng.random((n, k)) < 0.3] = 0.0
    idx[:, 0] = np.array([20, 11, 5])[y]
    val[:, 0] = rng.uniform(1.0, 2.0, size=n)
    return ResidueData(
        y=y, split=random_splits(n, rng), protein=np.arange(n) // 100, pos=(np.arange(n) % 100).astype(np.int32),
        classes=["C", "E", "H"], protein_ids=[f"p{i}" for i in range(n // 100)], n_features=n_latents,
        idx=idx, val=val,
    )


def densify(data):
    dense = np.zeros((len(data), data.n_features), dtype=np.float32)
    np.add.at(dense, (np.repeat(np.arange(len(data)), data.idx.shape[1]), data.idx.ravel()), data.val.ravel())
    return dense


def test_planted_residue_task_on_sparse_codes():
    rng = np.random.default_rng(7)
    data = planted_residue_codes(rng)
    fit = dict(weight_decays=(0, 1e-3), epochs=6, batch_size=1024, lr=1e-2)
    result = fit_residue_classifier(data, **fit)
    assert result.task == "residue_classification" and not result.refit
    assert result.test_score > 0.98
    assert result.n_train + result.n_valid + result.n_test == len(data)
    top = top_coefficients(result, n=1)
    first = top[top["sign"] == "positive"].set_index("class")["feature"].to_dict()
    assert first == {"C": 20, "E": 11, "H": 5}
    json.dumps(result.to_dict(), allow_nan=False)

    # Deterministic for a seed, and the same model as training on the densified matrix.
    again = fit_residue_classifier(data, **fit)
    np.testing.assert_array_equal(again.coef, result.coef)
    dense = ResidueData(y=data.y, split=data.split, protein=data.protein, pos=data.pos, classes=data.classes,
                        protein_ids=data.protein_ids, n_features=data.n_features, features=densify(data))
    dense_result = fit_residue_classifier(dense, **fit)
    np.testing.assert_allclose(dense_result.feature_mean, result.feature_mean, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dense_result.coef, result.coef, atol=2e-3)
    assert dense_result.test_score == pytest.approx(result.test_score, abs=2e-3)


def test_sparse_logits_equal_dense_standardised_logits():
    rng = np.random.default_rng(8)
    n, n_latents, k = 200, 30, 5
    idx = np.stack([rng.choice(n_latents - 2, size=k, replace=False) for _ in range(n)]).astype(np.int32)
    val = rng.exponential(size=(n, k)).astype(np.float32)
    val[rng.random((n, k)) < 0.4] = 0.0
    data = ResidueData(y=np.zeros(n, np.int64), split=np.array(["train"] * n), protein=np.zeros(n, np.int64),
                       pos=np.arange(n, dtype=np.int32), classes=["x"], protein_ids=["p"], n_features=n_latents,
                       idx=idx, val=val)
    dense = densify(data).astype(np.float64)
    train = np.arange(n) < 150
    mean, std = sparse_standardiser(idx, val, train, n_latents)
    np.testing.assert_allclose(mean, dense[train].mean(0), atol=1e-12)
    expected_std = dense[train].std(0)
    expected_std[expected_std == 0] = 1.0  # the last two latents never fire
    np.testing.assert_allclose(std, expected_std, rtol=1e-9)
    np.testing.assert_allclose((mean, std), standardiser(dense, train), rtol=1e-9, atol=1e-12)

    weight = rng.normal(size=(3, n_latents))
    bias = rng.normal(size=3)
    expected = ((dense - mean) / std) @ weight.T + bias
    tensors = [torch.tensor(a, dtype=torch.float32) for a in (weight, bias, mean, std)]
    sparse_logits = linear_logits(*tensors, idx=torch.from_numpy(idx), val=torch.from_numpy(val))
    dense_logits = linear_logits(*tensors, features=torch.tensor(dense, dtype=torch.float32))
    np.testing.assert_allclose(sparse_logits.numpy(), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dense_logits.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_residue_standardiser_ignores_test_rows():
    rng = np.random.default_rng(9)
    n = 3000
    y = rng.integers(0, 2, size=n)
    features = rng.normal(size=(n, 4)).astype(np.float32)
    features[:, 1] += 3 * y
    split = random_splits(n, rng)
    features[split == "test", 0] = 1e6
    data = ResidueData(y=y, split=split, protein=np.zeros(n, np.int64), pos=np.arange(n, dtype=np.int32),
                       classes=["a", "b"], protein_ids=["p"], n_features=4, features=features)
    result = fit_residue_classifier(data, weight_decays=(0,), epochs=10, batch_size=512, lr=1e-2)
    train = split == "train"
    np.testing.assert_allclose(result.feature_mean, features[train].astype(np.float64).mean(0), rtol=1e-6)
    np.testing.assert_allclose(result.feature_std, features[train].astype(np.float64).std(0), rtol=1e-6)
    assert result.valid_scores[0.0] > 0.85

    # Sparse: a latent firing hugely on test rows only stays unseen (mean 0, std 1).
    codes = planted_residue_codes(rng, n=3000)
    test_rows = codes.split == "test"
    codes.idx[test_rows, -1] = 63
    codes.val[test_rows, -1] = 1e6
    codes.val[(codes.idx == 63) & ~test_rows[:, None]] = 0.0
    result = fit_residue_classifier(codes, weight_decays=(0,), epochs=2, batch_size=512, lr=1e-2)
    assert result.feature_mean[63] == 0.0 and result.feature_std[63] == 1.0


# ------------------------------------------------------------------------------------------
# Coefficient statistics


def test_coefficient_stats_on_known_vectors():
    one_hot = np.zeros(10)
    one_hot[3] = 2.0
    stats = coefficient_stats(one_hot)
    assert stats["gini_abs"] == pytest.approx(0.9)
    assert stats["n"] == 10 and stats["max_abs"] == 2.0 and stats["share_above_10pct_max"] == pytest.approx(0.1)
    assert stats["mean"] == pytest.approx(0.2) and stats["variance"] == pytest.approx(0.36)

    symmetric = np.array([[-3.0, -1.0, 0.0, 1.0, 3.0]])
    stats = coefficient_stats(symmetric)
    assert stats["skew"] == pytest.approx(0.0, abs=1e-12) and stats["mean"] == pytest.approx(0.0)
    assert stats["std"] == pytest.approx(2.0)  # variance (9 + 1 + 0 + 1 + 9) / 5
    # Excess kurtosis: m4 / m2^2 - 3 = ((81 + 1 + 1 + 81) / 5) / 16 - 3.
    assert stats["excess_kurtosis"] == pytest.approx(164 / 5 / 16 - 3)
    assert stats["share_above_10pct_max"] == pytest.approx(0.8)
    assert gini(np.ones(7)) == pytest.approx(0.0, abs=1e-12)


def test_latent_examples_show_the_top_proteins_and_their_active_residues(tmp_path):
    # Latent 7 fires at residues 2 and 5 of B (1.0, 0.5) and residue 0 of A (0.2); latent 3 only in C.
    seq_ids = ["A"] * 4 + ["B"] * 6 + ["C"] * 3
    pos = [0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 0, 1, 2]
    idx = np.zeros((13, 2), np.int32)
    val = np.zeros((13, 2), np.float32)
    idx[0], val[0] = [7, 1], [0.2, 0.1]
    idx[6], val[6] = [7, 0], [1.0, 0.0]
    idx[9], val[9] = [7, 1], [0.5, 0.3]
    idx[11], val[11] = [3, 0], [0.9, 0.0]
    write_code_shard(tmp_path / "codes.parquet", seq_ids, pos, idx, val, n_latents=8)
    labels = pd.DataFrame({"id": ["A", "B", "C"], "label": ["x", "y", "z"], "length": [4, 6, 3]})
    sequences = {"A": "MKVL", "B": "MSTAWQ", "C": "MPP"}
    top = pd.DataFrame({"class": ["y", "z"], "sign": ["positive", "positive"], "rank": [1, 1], "feature": [7, 3],
                        "name": ["7", "3"], "coefficient": [2.0, 1.0]})
    examples = latent_examples(top, tmp_path / "codes.parquet", labels, sequences, n_examples=2)
    latent7 = examples[examples["feature"] == 7]
    assert latent7["protein"].tolist() == ["B", "A"] and latent7["example"].tolist() == [1, 2]
    assert latent7["active_residues"].tolist() == ["2:1;5:0.5", "0:0.2"]
    assert latent7["max_activation"].tolist() == pytest.approx([1.0, 0.2])
    assert latent7["protein_label"].tolist() == ["y", "x"] and latent7["sequence"].iloc[0] == "MSTAWQ"
    latent3 = examples[examples["feature"] == 3]
    assert latent3["protein"].tolist() == ["C"] and latent3["active_residues"].tolist() == ["1:0.9"]
