import numpy as np
import pandas as pd
import pytest

from protsae.codes.maxima import MaxActivations
from protsae.latents import specificity
from protsae.latents.specificity import (
    DEFAULT_THRESHOLDS,
    SWEEP_COLUMNS,
    family_f1_sweep,
    gap_candidates,
    summarise_family_f1,
)


def to_maxima(dense: np.ndarray, ids: list[str], reverse: bool = False) -> MaxActivations:
    """Sparse maxima of a dense (proteins, latents) array; all-zero proteins are left out (as
    proteins no latent fired on), and ``reverse`` lists the rows in reverse order, so that row
    order and id order differ."""
    rows = [i for i in range(len(ids)) if dense[i].any()]
    if reverse:
        rows = rows[::-1]
    sub = dense[rows].astype(np.float32)
    protein, latent = np.nonzero(sub)
    return MaxActivations(
        protein_ids=[ids[i] for i in rows],
        protein=protein.astype(np.int64),
        latent=latent.astype(np.int32),
        value=sub[protein, latent],
        n_latents=dense.shape[1],
    )


def labels_frame(pairs: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame({
        "protein": [p for p, _ in pairs],
        "accession": [a for _, a in pairs],
        "name": [f"name of {a}" for _, a in pairs],
        "type": "Family",
    })


def reference_sweep(dense, ids, split, labels, thresholds=DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """The method, one latent at a time, on a dense (proteins, latents) array over all split
    proteins."""
    train = np.array([split[i] == "train" for i in ids])
    test = ~train
    families = sorted(set(labels["accession"]))
    names = labels.drop_duplicates("accession").set_index("accession")["name"]
    member = np.zeros((len(ids), len(families)), dtype=bool)
    position = {p: i for i, p in enumerate(ids)}
    for protein, accession in zip(labels["protein"], labels["accession"]):
        if protein in position:
            member[position[protein], families.index(accession)] = True
    rows = []
    for j in range(dense.shape[1]):
        column = dense[:, j].astype(np.float32).astype(np.float64)
        row = {"latent": j, "status": "never_fires_on_train", "top_protein": None, "norm_max": np.nan}
        if not (column[train] > 0).any():
            rows.append(row)
            continue
        norm_max = column[train].max()
        top = min(ids[i] for i in np.flatnonzero(train & (column == norm_max)))
        row.update(top_protein=top, norm_max=norm_max)
        candidates = [f for f in range(len(families)) if member[position[top], f]]
        if not candidates:
            row["status"] = "top_protein_unlabelled"
            rows.append(row)
            continue
        ratio = column / norm_max
        best = None
        for t in thresholds:
            for f in candidates:
                predicted, in_family = ratio[train] >= t, member[train, f]
                tp = int((predicted & in_family).sum())
                f1 = 2 * tp / (predicted.sum() + in_family.sum()) if tp else 0.0
                if best is None or f1 > best[0]:
                    best = (f1, t, f)
        f1, t, f = best
        predicted, in_family = ratio[test] >= t, member[test, f]
        tp, n_predicted, support = int((predicted & in_family).sum()), int(predicted.sum()), int(in_family.sum())
        row.update(
            status="scored", family=families[f], family_name=names[families[f]], threshold=t,
            train_f1=f1, test_f1=2 * tp / (n_predicted + support) if tp else 0.0,
            test_precision=tp / n_predicted if n_predicted else 0.0,
            test_recall=tp / support if support else 0.0,
            test_support=support, test_predicted=n_predicted, train_support=int(member[train, f].sum()),
        )
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(SWEEP_COLUMNS))
    for name in ("test_support", "test_predicted", "train_support"):
        table[name] = table[name].astype("Int64")
    for name in ("status", "top_protein", "family", "family_name"):
        table[name] = table[name].astype("str")
    return table


# A small world: 40 proteins, even index train, odd test. Families A (0-9), B (10-19),
# C (20-29) and D (= B's members 10-13 as well, so proteins 10-13 are multi-label); 30-39 have none.
IDS = [f"P{i:03d}" for i in range(40)]
SPLIT = pd.Series({p: "train" if i % 2 == 0 else "test" for i, p in enumerate(IDS)})
A, B, C, D = "IPR000003", "IPR000001", "IPR000002", "IPR000009"
LABELS = labels_frame(
    [(IDS[i], A) for i in range(10)] + [(IDS[i], B) for i in range(10, 20)]
    + [(IDS[i], C) for i in range(20, 30)] + [(IDS[i], D) for i in range(10, 14)]
)


def sweep(dense: np.ndarray, split=SPLIT, labels=LABELS, **kwargs) -> pd.DataFrame:
    table = family_f1_sweep(to_maxima(dense, IDS, reverse=True), split, labels, **kwargs)
    pd.testing.assert_frame_equal(table, reference_sweep(dense, IDS, split, labels, **kwargs))
    return table


def one_latent(values: dict[int, float]) -> np.ndarray:
    dense = np.zeros((len(IDS), 1), dtype=np.float32)
    for protein, value in values.items():
        dense[protein, 0] = value
    return dense


def test_indicator_latent_is_perfect_at_the_lowest_threshold():
    row = sweep(one_latent({i: 1.0 for i in range(10)})).iloc[0]
    assert row["status"] == "scored" and row["family"] == A and row["family_name"] == f"name of {A}"
    assert row["threshold"] == 0.1 and row["train_f1"] == 1.0
    assert (row["test_f1"], row["test_precision"], row["test_recall"]) == (1.0, 1.0, 1.0)
    assert (row["test_support"], row["test_predicted"], row["train_support"]) == (5, 5, 5)
    assert row["top_protein"] == "P000"  # five train proteins tie at 1.0: the id sorting first


def test_graded_latent_gets_the_threshold_that_separates_members():
    values = {0: 1.0, 2: 0.9, 4: 0.8, 6: 0.7, 8: 0.65,  # train members of A
              20: 0.55, 22: 0.5, 30: 0.3, 32: 0.05,  # train non-members
              1: 0.95, 3: 0.62, 5: 0.58, 7: 0.2,  # test members
              21: 0.61, 23: 0.4}  # test non-members
    row = sweep(one_latent(values)).iloc[0]
    # t = 0.5 adds two false positives (F1 10/12), t = 0.7 loses a member (8/9), t = 0.6 is perfect.
    assert row["threshold"] == 0.6 and row["train_f1"] == 1.0
    assert (row["test_predicted"], row["test_support"]) == (3, 5)  # P001, P003 and P021
    assert row["test_precision"] == 2 / 3 and row["test_recall"] == 2 / 5
    assert row["test_f1"] == 4 / 8


def test_random_latent_is_not_family_specific():
    rng = np.random.default_rng(0)
    ids = [f"Q{i:04d}" for i in range(400)]
    split = pd.Series({p: "train" if i % 2 == 0 else "test" for i, p in enumerate(ids)})
    labels = labels_frame([(p, f"IPR{i % 10:06d}") for i, p in enumerate(ids)])
    dense = np.where(rng.random((400, 5)) < 0.5, rng.uniform(0.01, 1.0, (400, 5)), 0).astype(np.float32)
    table = family_f1_sweep(to_maxima(dense, ids), split, labels)
    assert (table["status"] == "scored").all()
    assert (table["test_f1"] < 0.5).all()


def test_unscored_statuses():
    dense = np.zeros((len(IDS), 3), dtype=np.float32)
    dense[1, 0] = 5.0  # fires on a test protein only
    dense[[30, 32, 3], 2] = [0.5, 1.0, 0.7]  # top protein P032 has no family
    table = sweep(dense)
    assert table["status"].tolist() == ["never_fires_on_train", "never_fires_on_train", "top_protein_unlabelled"]
    assert table["top_protein"].isna().tolist() == [True, True, False]
    assert table.loc[2, "top_protein"] == "P032" and table.loc[2, "norm_max"] == 1.0
    assert table[["family", "threshold", "test_f1", "test_support"]].isna().all().all()
    summary = summarise_family_f1(table)
    assert (summary["n_scored"], summary["n_never_fires_on_train"], summary["n_top_protein_unlabelled"]) == (0, 2, 1)


def test_ties_go_to_the_lower_threshold_then_the_accession_sorting_first():
    x, y = "IPR000005", "IPR000004"
    dense = one_latent({10: 1.0, 12: 1.0, 14: 0.3})
    # x and y have the same members and both reach F1 1 at 0.4 (P014 is in neither): y sorts first.
    same = labels_frame([(IDS[i], f) for i in (10, 12, 11) for f in (x, y)])
    row = sweep(dense, labels=same).iloc[0]
    assert row["top_protein"] == "P010" and row["family"] == y and row["threshold"] == 0.4
    assert row["train_f1"] == 1.0 and row["test_predicted"] == 0 and row["test_f1"] == 0.0
    # y (sorting first) is perfect from 0.4 up, x (now holding P014) from 0.1 up: the lower
    # threshold wins over the accession.
    other = labels_frame([(IDS[i], y) for i in (10, 12)] + [(IDS[i], x) for i in (10, 12, 14)])
    row = sweep(dense, labels=other).iloc[0]
    assert row["family"] == x and row["threshold"] == 0.1 and row["train_f1"] == 1.0


def test_normalising_maximum_comes_from_train_only():
    values = {0: 1.0, 2: 1.0, 4: 1.0, 6: 1.0, 8: 1.0, 1: 3.0, 3: 0.5, 5: 0.15, 7: 0.05, 21: 2.0}
    table = sweep(one_latent(values))
    row = table.iloc[0]
    assert row["norm_max"] == 1.0 and row["threshold"] == 0.1
    # Relative to the train maximum 1.0: P001 (3.0), P003, P005 and P021 pass 0.1, P007 does not.
    assert (row["test_predicted"], row["test_recall"], row["test_f1"]) == (4, 3 / 5, 6 / 9)
    gaps = gap_candidates(table, to_maxima(one_latent(values), IDS), SPLIT, LABELS, f1_cutoff=0.6)
    assert gaps["protein"].tolist() == ["P021"] and gaps["normalised"].tolist() == [2.0]


def test_gap_candidates_lists_unlabelled_test_proteins_by_activation(monkeypatch):
    monkeypatch.setattr(specificity, "_CHUNK", 7)
    dense = np.zeros((len(IDS), 2), dtype=np.float32)
    dense[range(10), 0] = 1.0  # A's members
    dense[[21, 31, 33], 0] = [0.8, 0.9, 0.05]  # P021 is in C, P031 has no family, P033 is too weak
    dense[range(20, 30), 1] = 1.0
    table = sweep(dense)
    assert table.loc[0, "test_f1"] == 10 / 12 and table.loc[1, "test_f1"] == 1.0
    gaps = gap_candidates(table, to_maxima(dense, IDS), SPLIT, LABELS)
    expected = pd.DataFrame({
        "latent": [0, 0], "family": [A, A], "family_name": [f"name of {A}"] * 2, "test_f1": [10 / 12] * 2,
        "threshold": [0.1, 0.1], "protein": ["P031", "P021"], "activation": [0.9, 0.8],
        "normalised": [0.9, 0.8], "rank": [1, 2], "protein_families": ["", C],
    })
    expected["activation"] = expected["activation"].astype(np.float32).astype(np.float64)
    expected["normalised"] = expected["activation"]
    pd.testing.assert_frame_equal(gaps, expected, check_dtype=False)
    assert gap_candidates(table, to_maxima(dense, IDS), SPLIT, LABELS, f1_cutoff=0.9).empty


@pytest.mark.parametrize("threads", [1, 3])
def test_sweep_equals_the_per_latent_loop_on_a_random_problem(monkeypatch, threads):
    monkeypatch.setattr(specificity, "_CHUNK", 97)  # many chunks, boundaries inside proteins
    rng = np.random.default_rng(7)
    n_proteins, n_latents, n_families = 300, 200, 40
    ids = [f"R{i:04d}" for i in rng.permutation(n_proteins)]
    split = {p: "train" if rng.random() < 0.5 else "test" for p in ids}
    family_of = rng.integers(0, n_families, n_proteins)
    pairs = [(p, f"IPR{family_of[i]:06d}") for i, p in enumerate(ids) if rng.random() < 0.7]
    for share in (0.3, 0.15, 0.1):  # multi-label, up to four families
        pairs += [(p, f"IPR{rng.integers(n_families):06d}") for p in ids if rng.random() < share]
    pairs += [("not_in_the_set", "IPR000000")]
    labels = labels_frame(pairs)
    frequency = rng.choice([0.0, 0.005, 0.05, 0.3, 0.9], size=n_latents)
    dense = np.where(rng.random((n_proteins, n_latents)) < frequency, rng.lognormal(0, 1, (n_proteins, n_latents)), 0)
    # Coarse values give ties of the maximum and of F1; planted latents follow a family.
    coarse = rng.random(n_latents) < 0.3
    dense[:, coarse] = np.ceil(dense[:, coarse] * 2) / 4
    for j in rng.choice(n_latents, 40, replace=False):
        members = family_of == rng.integers(n_families)
        dense[:, j] = np.where(members, rng.uniform(0.3, 1.0, n_proteins), dense[:, j] * 0.2)
    dense = dense.astype(np.float32)
    dense[rng.random(n_proteins) < 0.05] = 0  # proteins no latent fires on
    table = family_f1_sweep(to_maxima(dense, ids, reverse=True), pd.Series(split), labels, threads=threads)
    pd.testing.assert_frame_equal(table, reference_sweep(dense, ids, split, labels))
    assert set(table["status"]) == {"scored", "never_fires_on_train", "top_protein_unlabelled"}
    train = np.array([split[p] == "train" for p in ids])
    holders = (dense[train] == dense[train].max(axis=0)) & (dense[train] > 0)
    assert (holders.sum(axis=0) > 1).sum() >= 4  # maxima held by several train proteins
    assert table["threshold"].nunique() > 3 and (table["test_f1"] > 0.7).any()
    n_families_of_top = table["top_protein"].map(labels.groupby("protein")["accession"].nunique())
    assert (n_families_of_top >= 3).sum() > 5  # candidates beyond the second slot


def test_summary_counts():
    dense = np.zeros((len(IDS), 4), dtype=np.float32)
    dense[range(10), 0] = 1.0
    dense[range(20, 30), 1] = 1.0
    dense[range(0, 40, 3), 2] = 1.0
    summary = summarise_family_f1(sweep(dense))
    assert summary["n_latents"] == 4 and summary["n_scored"] == 3 and summary["n_never_fires_on_train"] == 1
    assert summary["n_family_specific"] == 2 and summary["n_families_covered"] == 2
    assert summary["share_family_specific"] == 0.5 and summary["share_family_specific_of_scored"] == 2 / 3


def test_input_errors():
    dense = one_latent({0: 1.0, 5: 1.0})
    with pytest.raises(ValueError, match="P005"):
        family_f1_sweep(to_maxima(dense, IDS), SPLIT.drop("P005"), LABELS)
    with pytest.raises(ValueError, match="validation"):
        family_f1_sweep(to_maxima(dense, IDS), SPLIT.replace({"test": "validation"}), LABELS)
    negative = to_maxima(dense, IDS)
    negative.value[0] = -1
    with pytest.raises(ValueError, match="> 0"):
        family_f1_sweep(negative, SPLIT, LABELS)
    with pytest.raises(ValueError, match="thresholds"):
        family_f1_sweep(to_maxima(dense, IDS), SPLIT, LABELS, thresholds=[0.0, 0.5])
    twice = to_maxima(dense, IDS)
    twice.protein_ids[1] = twice.protein_ids[0]
    with pytest.raises(ValueError, match="maxima list protein 'P000' twice"):
        family_f1_sweep(twice, SPLIT, LABELS)
    with pytest.raises(ValueError, match="split lists protein 'P003' twice"):
        family_f1_sweep(to_maxima(dense, IDS), pd.concat([SPLIT, SPLIT.iloc[[3]]]), LABELS)
    with pytest.raises(ValueError, match="split protein ids must be strings"):
        family_f1_sweep(to_maxima(dense, IDS), pd.Series(SPLIT.to_numpy(), index=range(len(SPLIT))), LABELS)
    with pytest.raises(ValueError, match="labels has a missing protein id"):
        family_f1_sweep(to_maxima(dense, IDS), SPLIT, LABELS.assign(protein=LABELS["protein"].where(LABELS.index > 0)))


def test_key_counter_counts_across_buffer_fills():
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 7, n) for n in (3, 2, 4, 9, 0, 1)]  # 9 is more than the buffer holds
    counter = specificity._KeyCounter(7, buffer_size=4)
    for keys in arrays:
        counter.add(keys)
    np.testing.assert_array_equal(counter.counts(), np.bincount(np.concatenate(arrays), minlength=7))


def test_reaching_cutoff_is_exactly_the_ratio_comparison():
    rng = np.random.default_rng(3)
    norm_max = np.r_[np.float32(rng.lognormal(0, 3, 2000)), np.float32(1e-40), np.float32(3e38), np.float32(0)]
    for threshold in (0.1, 0.3, 0.7, 1.0):
        cutoff = specificity._reaching_cutoff(norm_max.astype(np.float32), threshold)
        fires = norm_max > 0
        assert np.isinf(cutoff[~fires]).all()
        # Around the cutoff, the float32 comparison and the float64 ratio agree ulp by ulp.
        for steps in range(-3, 4):
            value = cutoff[fires]
            for _ in range(abs(steps)):
                value = np.nextafter(value, np.float32(np.inf if steps > 0 else 0))
            ratio = value.astype(np.float64) / norm_max[fires].astype(np.float64)
            np.testing.assert_array_equal(value >= cutoff[fires], ratio >= threshold)
