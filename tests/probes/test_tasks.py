import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from protsae.probes import tasks

DATA = Path(REPO) / "tests" / "data" / "probes"
AMINO = "ACDEFGHIKLMNPQRSTVWY"
needs_mmseqs = pytest.mark.skipif(shutil.which("mmseqs") is None, reason="mmseqs not on PATH")


# -- loaders on the fixtures ----------------------------------------------------------------------


def test_dssp_bundle_drops_repeated_sequences(tmp_path):
    table = tasks.load_dssp_bundle(DATA / "dssp_chains.tsv")
    # 5H2F_M repeats the sequence of 4UB8_N, which comes first.
    assert table["id"].tolist() == ["3W7Y_B", "4UB8_N", "4B1Y_B", "3SSB_C"]
    assert table.loc[0, "label"] == "CCCECCCCHHHHHHHHHHHHHHCECCCCCC"
    assert (table["split"] == "").all()
    assert (table["label"].str.len() == table["sequence"].str.len()).all()
    gz = tmp_path / "dssp_chains.tsv.gz"
    gz.write_bytes(gzip.compress((DATA / "dssp_chains.tsv").read_bytes()))
    pd.testing.assert_frame_equal(tasks.load_dssp_bundle(gz), table)


@pytest.mark.parametrize("edit, message", [
    (lambda text: text.replace("ss3", "ss_3", 1), "missing column"),
    (lambda text: text.replace("CCCECCCCHHHHHHHHHHHHHHCECCCCCC", "CCCECCCCHHHHHHHHHHHHHHCECCCC"), "line 2"),
    (lambda text: text.replace("CCCECCCCHHHHHHHHHHHHHHCECCCCCC", "CCCECCCCHHHHHHHHHHHHHHCECCCCCX"), "not in HEC"),
    (lambda text: text.replace("FVNQHLCGSHLVEALYLVCGERGFFYTPKT", ""), "empty sequence"),
])
def test_dssp_bundle_malformed(tmp_path, edit, message):
    bad = tmp_path / "dssp_chains.tsv"
    bad.write_text(edit((DATA / "dssp_chains.tsv").read_text()))
    with pytest.raises(ValueError, match=message) as err:
        tasks.load_dssp_bundle(bad)
    assert str(bad) in str(err.value)


def test_structure_bundle_labels_the_chains_with_backbones(tmp_path):
    bundle = Path(REPO) / "resources/demo/structures_backbone.npz"
    table = tasks.load_structure_bundle(bundle)
    assert len(table) <= 3000 and table["id"].is_unique and not table["sequence"].duplicated().any()
    dssp = pd.read_csv(Path(REPO) / "resources/demo/dssp_chains.tsv.gz", sep="\t", keep_default_na=False)
    ss3 = dict(zip(dssp["pdb_id"] + "_" + dssp["chain"], dssp["ss3"]))
    assert (table["label"] == table["id"].map(ss3)).all()  # the same mapping as the bundle's ss3
    with np.load(bundle) as data:
        arrays = {name: data[name] for name in data.files}
    arrays["dssp8"] = arrays["dssp8"].copy()
    arrays["dssp8"][1] = arrays["dssp8"][1][:-1]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=f"bad.npz, chain {arrays['pdb_id'][1]}_{arrays['chain'][1]}"):
        tasks.load_structure_bundle(tmp_path / "bad.npz")


def test_tape_ss_maps_splits_and_masks(tmp_path):
    records = json.loads((DATA / "secondary_structure_train.json").read_text())
    for record in records:
        record["id"] = "cb513_" + record["id"]
    cb513 = tmp_path / "secondary_structure_cb513.json"
    cb513.write_text(json.dumps(records[:1]))
    table = tasks.load_tape_ss({"train": DATA / "secondary_structure_train.json", "cb513": cb513})
    assert table["id"].tolist() == ["1a0tA00", "2bopA", "3chyA", "cb513_1a0tA00"]
    assert table["split"].tolist() == ["train", "train", "train", "test"]
    assert table["subset"].tolist() == ["train", "train", "train", "cb513"]
    assert table.loc[1, "label"] == "-CHHHCEHCEECEEHHEEEEEH--"
    assert table.loc[1, "sequence"] == "SPKELKIRVSLDEAAKLGAEKVVL"
    assert table.loc[0, "label"].startswith("-HEC")


@pytest.mark.parametrize("edit, message", [
    (lambda records: {"records": records}, "JSON list"),
    (lambda records: [{k: v for k, v in records[0].items() if k != "valid_mask"}], "record 0: missing key"),
    (lambda records: [records[0], {**records[1], "ss3": records[1]["ss3"][:-1]}], "record 1: 'ss3'"),
    (lambda records: [{**records[0], "ss3": [3] + records[0]["ss3"][1:]}], "ss3 class 3"),
    (lambda records: [{**records[0], "valid_mask": [True]}], "valid_mask"),
    (lambda records: [{**records[0], "protein_length": 5}], "protein_length 5"),
])
def test_tape_ss_malformed(tmp_path, edit, message):
    records = json.loads((DATA / "secondary_structure_train.json").read_text())
    bad = tmp_path / "secondary_structure_valid.json"
    bad.write_text(json.dumps(edit(records)))
    with pytest.raises(ValueError, match=message) as err:
        tasks.load_tape_ss({"valid": bad})
    assert str(bad) in str(err.value)


def test_tape_ss_unknown_file_name():
    with pytest.raises(ValueError, match="casp13"):
        tasks.load_tape_ss({"casp13": DATA / "secondary_structure_train.json"})


def test_localization_bundle():
    table = tasks.load_localization_bundle(
        DATA / "swissprot_subset.localization.tsv",
        [DATA / "swissprot_subset.fasta", DATA / "localization.fasta"])
    assert table["id"].tolist() == ["P12818", "P80500", "P86152", "Q9DFI0", "Q9SF57"]
    assert table.set_index("id").loc["Q9SF57", "label"] == "Endoplasmic reticulum"
    assert table.set_index("id").loc["P80500", "sequence"] == "AGXXXAHXXYKGPSVVKELVIXXXLGLXAG"
    assert (table["split"] == "").all()
    assert (table["note"] == tasks.LOCALIZATION_NOTE).all()
    assert "DeepLoc" in tasks.LOCALIZATION_NOTE


def test_localization_bundle_malformed(tmp_path):
    labels = (DATA / "swissprot_subset.localization.tsv").read_text()
    fastas = [DATA / "swissprot_subset.fasta", DATA / "localization.fasta"]
    cases = [
        (labels + "P99999\tNucleus\n", "line 7: no sequence for P99999"),
        (labels + "P12818\tCytoplasm\n", "line 7: accession P12818 already labelled at line 2"),
        (labels.replace("Mitochondrion", ""), "line 3: empty"),
        (labels.replace("location", "class"), "missing column"),
    ]
    for text, message in cases:
        bad = tmp_path / "labels.tsv"
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            tasks.load_localization_bundle(bad, fastas)
    with pytest.raises(ValueError, match="also in"):
        tasks.load_localization_bundle(DATA / "swissprot_subset.localization.tsv", fastas + fastas[:1])


def test_deeploc():
    table = tasks.load_deeploc(DATA / "deeploc_data.fasta")
    assert table["id"].tolist() == ["Q9H400", "P12818", "P80500", "P86152", "Q9SF57", "Q8NBM8"]
    assert table["label"].tolist() == ["Cell.membrane", "Nucleus", "Mitochondrion", "Extracellular",
                                       "Endoplasmic.reticulum", "Lysosome/Vacuole"]
    assert table["split"].tolist() == ["test", "train", "train", "test", "train", "train"]
    assert table.loc[5, "sequence"] == "MLRLLLLPLLLAGSALAHPTSEPSRGWVLLLLALVVAGAAAFFLYRR"


@pytest.mark.parametrize("header, message", [
    (">P12818 Nucleus", "is not 'Location"),
    (">P12818 Nucleus-X", "membrane suffix 'X'"),
    (">P12818 Nucleolus-S", "location 'Nucleolus'"),
    (">P12818 Nucleus-S train", "is not 'Location"),
    (">P12818", "is not 'Location"),
])
def test_deeploc_malformed(tmp_path, header, message):
    bad = tmp_path / "deeploc_data.fasta"
    bad.write_text((DATA / "deeploc_data.fasta").read_text().replace(">P12818 Nucleus-S", header))
    with pytest.raises(ValueError, match=message) as err:
        tasks.load_deeploc(bad)
    assert f"{bad}, line 3 (P12818)" in str(err.value)


def test_flip_meltome():
    table = tasks.load_flip_meltome(DATA / "meltome_mixed_split.csv")
    assert table["id"].tolist() == [f"meltome_{n}" for n in range(1, 9)]
    assert table["split"].tolist() == ["train", "valid", "train", "train", "valid", "test", "test", "train"]
    assert table["label"].dtype == float
    assert table.loc[6, "label"] == pytest.approx(80.31)


@pytest.mark.parametrize("old, new, message", [
    (",61.29,", ",high,", "line 2: target 'high'"),
    (",61.29,", ",,", "line 2: target ''"),
    ("58.4,test", "58.4,holdout", "line 7: set 'holdout'"),
    ("44.02,train,True", "44.02,train,maybe", "line 3: validation 'maybe'"),
    ("set,validation", "split,validation", "missing column"),
])
def test_flip_meltome_malformed(tmp_path, old, new, message):
    bad = tmp_path / "mixed_split.csv"
    bad.write_text((DATA / "meltome_mixed_split.csv").read_text().replace(old, new, 1))
    with pytest.raises(ValueError, match=message):
        tasks.load_flip_meltome(bad)


def test_cho_table():
    table = tasks.load_cho(DATA / "cho_expression.csv", sequence_column="aa_seq",
                           label_column="expressed", id_column="protein")
    assert table["id"].tolist() == [f"SEC00{n}" for n in range(1, 7)]
    assert table["label"].tolist() == ["expressed", "not_expressed", "expressed", "not_expressed",
                                       "expressed", "not_expressed"]
    assert (table["split"] == "").all()
    anonymous = tasks.load_cho(DATA / "cho_expression.csv", sequence_column="aa_seq", label_column="expressed")
    assert anonymous["id"].tolist()[:2] == ["cho_1", "cho_2"]


def test_cho_table_tsv_and_custom_positive(tmp_path):
    tsv = tmp_path / "cho.tsv"
    tsv.write_text("name\tsequence\tlabel\nA\tMKV\thigh\nB\tMLL\tlow\n")
    table = tasks.load_cho(tsv, id_column="name", positive=("high",), negative=("low",))
    assert table["label"].tolist() == ["expressed", "not_expressed"]


def test_cho_table_malformed(tmp_path):
    bad = tmp_path / "cho.csv"
    bad.write_text((DATA / "cho_expression.csv").read_text().replace(",no\n", ",maybe\n"))
    with pytest.raises(ValueError, match="line 5: expressed 'maybe'"):
        tasks.load_cho(bad, sequence_column="aa_seq", label_column="expressed")
    with pytest.raises(ValueError, match="missing column"):
        tasks.load_cho(DATA / "cho_expression.csv")


# -- load_task ------------------------------------------------------------------------------------


def test_load_task_dispatches_and_checks(tmp_path):
    table = tasks.load_task({"format": "deeploc", "path": str(DATA / "deeploc_data.fasta")})
    assert len(table) == 6
    ss = tasks.load_task({"format": "tape_ss", "paths": {"train": DATA / "secondary_structure_train.json"}})
    assert (ss["label"].str.len() == ss["sequence"].str.len()).all()
    lower = tmp_path / "cho.csv"
    lower.write_text("sequence,label\nmkvl,1\n")
    assert tasks.load_task({"format": "cho_table", "path": lower})["sequence"].tolist() == ["MKVL"]


def test_load_task_errors(tmp_path):
    with pytest.raises(ValueError, match="format 'fasta'"):
        tasks.load_task({"format": "fasta", "path": "x"})
    with pytest.raises(ValueError, match="bad arguments"):
        tasks.load_task({"format": "deeploc", "fasta": "x"})
    duplicate = tmp_path / "cho.csv"
    duplicate.write_text("id,sequence,label\nA,MKV,1\nB,MLL,0\nA,MEE,1\n")
    with pytest.raises(ValueError, match="duplicate id 'A'"):
        tasks.load_task({"format": "cho_table", "path": duplicate, "id_column": "id"})
    empty = tmp_path / "empty.csv"
    empty.write_text("sequence,label\n")
    with pytest.raises(ValueError, match="no proteins"):
        tasks.load_task({"format": "cho_table", "path": empty})
    spaced = tmp_path / "spaced.csv"
    spaced.write_text("id,sequence,label\nA B,MKV,1\n")
    with pytest.raises(ValueError, match="whitespace"):
        tasks.load_task({"format": "cho_table", "path": spaced, "id_column": "id"})


def test_check_task_table_residue_lengths():
    table = pd.DataFrame({"id": ["a"], "sequence": ["mkv"], "label": ["HH"], "split": [""]})
    with pytest.raises(ValueError, match="'a': 2 secondary-structure labels for 3 residues"):
        tasks.check_task_table(table, residue_level=True, source="test")
    table["label"] = ["HE-"]
    assert tasks.check_task_table(table, residue_level=True, source="test")["sequence"].tolist() == ["MKV"]


# -- splits ---------------------------------------------------------------------------------------


def _families(seed: int = 0) -> tuple[pd.DataFrame, dict[str, str]]:
    """30 families of 2..8 close mutants (~95% identity to their root) and 40 random singletons,
    all mutually unrelated: a table and the true family of every id."""
    rng = np.random.default_rng(seed)

    def random_sequence() -> list[str]:
        return list(rng.choice(list(AMINO), size=int(rng.integers(120, 200))))

    ids, sequences, family_of = [], [], {}
    for family in range(30):
        root = random_sequence()
        for member in range(int(rng.integers(2, 9))):
            mutant = root.copy()
            for position in rng.choice(len(root), size=len(root) // 20, replace=False):
                mutant[position] = rng.choice(list(AMINO))
            ids.append(f"fam{family:02d}_{member}")
            sequences.append("".join(mutant))
            family_of[ids[-1]] = f"fam{family:02d}"
    for single in range(40):
        ids.append(f"single{single:02d}")
        sequences.append("".join(random_sequence()))
        family_of[ids[-1]] = ids[-1]
    table = pd.DataFrame({"id": ids, "sequence": sequences, "label": "x", "split": ""})
    return table, family_of


@pytest.fixture(scope="module")
def families():
    """The family table, the true families and its MMseqs2 clusters. MMseqs2 is run once here:
    each run spends ~5-15 s allocating its k-mer index, however few the sequences."""
    table, family_of = _families()
    return table, family_of, tasks.cluster_sequences(table, identity=0.3, coverage=0.8)


@pytest.fixture
def cached_clusters(families, monkeypatch):
    """`cluster_sequences` answered from the module's one MMseqs2 run (after checking the
    arguments the split functions pass on)."""
    _, _, cluster_of = families

    def cluster_sequences(table, identity, coverage=0.8, threads=1):
        assert (identity, coverage) == (0.3, 0.8)
        return cluster_of.loc[table["id"]]

    monkeypatch.setattr(tasks, "cluster_sequences", cluster_sequences)
    return families


@needs_mmseqs
def test_clusters_are_the_families(families):
    table, family_of, cluster_of = families
    assert cluster_of.index.tolist() == table["id"].tolist()
    by_cluster = {frozenset(group.index) for _, group in cluster_of.groupby(cluster_of)}
    truth = pd.Series(family_of)
    assert by_cluster == {frozenset(group.index) for _, group in truth.groupby(truth)}


def _assert_clusters_whole(split: pd.Series, cluster_of: pd.Series) -> None:
    sides = pd.DataFrame({"split": split, "cluster": cluster_of}).groupby("cluster")["split"].nunique()
    assert (sides == 1).all()


@needs_mmseqs
def test_split_clusters_whole_and_fractions(families):
    table, _, cluster_of = families
    largest = cluster_of.value_counts().max()
    for seed in range(5):
        split = tasks.split_clusters(cluster_of, (0.7, 0.15, 0.15), seed)
        _assert_clusters_whole(split, cluster_of)
        counts = split.value_counts()
        for name, fraction in zip(tasks.SPLITS, (0.7, 0.15, 0.15)):
            assert abs(counts.get(name, 0) - fraction * len(table)) <= largest
    assert not tasks.split_clusters(cluster_of, (0.7, 0.15, 0.15), 0).equals(
        tasks.split_clusters(cluster_of, (0.7, 0.15, 0.15), 1))
    no_test = tasks.split_clusters(cluster_of, (0.9, 0.1, 0.0), 0)
    assert set(no_test) == {"train", "valid"}


def test_split_clusters_bad_fractions():
    cluster_of = pd.Series(["a", "a", "b"], index=["a", "x", "b"])
    with pytest.raises(ValueError, match="summing to 1"):
        tasks.split_clusters(cluster_of, (0.8, 0.1, 0.2), 0)


@needs_mmseqs
def test_homology_split_deterministic(cached_clusters):
    table, family_of, _ = cached_clusters
    first = tasks.homology_split(table, identity=0.3, seed=3)
    shuffled = table.sample(frac=1.0, random_state=1)
    second = tasks.homology_split(shuffled, identity=0.3, seed=3)
    pd.testing.assert_series_equal(first, second.loc[first.index])
    _assert_clusters_whole(first, pd.Series(family_of))


@needs_mmseqs
def test_assign_splits_without_published_split(cached_clusters):
    table, family_of, _ = cached_clusters
    split = tasks.assign_splits(table, identity=0.3, fractions=(0.8, 0.1, 0.1), seed=0)
    assert set(split["split"]) == set(tasks.SPLITS)
    assert split["id"].tolist() == table["id"].tolist()
    _assert_clusters_whole(split.set_index("id")["split"], split.set_index("id")["cluster"])
    _assert_clusters_whole(split.set_index("id")["split"], pd.Series(family_of))


@needs_mmseqs
def test_assign_splits_keeps_published_and_carves_valid(cached_clusters):
    table, family_of, _ = cached_clusters
    # A published train/test split that ignores families, as DeepLoc's does not; test rows must
    # stay put, valid must come from train only and by whole cluster.
    published = table.assign(split=np.where(np.arange(len(table)) % 5 == 0, "test", "train"))
    split = tasks.assign_splits(published, identity=0.3, fractions=(0.8, 0.1, 0.1), seed=0)
    assert (split["split"][published["split"] == "test"] == "test").all()
    assert set(split["split"][published["split"] == "train"]) == {"train", "valid"}
    train_rows = split[published["split"] == "train"].set_index("id")
    _assert_clusters_whole(train_rows["split"], train_rows["cluster"])
    n_valid = (split["split"] == "valid").sum()
    assert 0.05 * len(train_rows) < n_valid < 0.25 * len(train_rows)

    complete = table.assign(split=np.resize(np.array(["train", "valid", "test"]), len(table)))
    kept = tasks.assign_splits(complete, identity=0.3, seed=0)
    assert kept["split"].tolist() == complete["split"].tolist()
    assert kept["cluster"].map(pd.Series(family_of)).tolist() == kept["id"].map(pd.Series(family_of)).tolist()


def test_assign_splits_rejects_mixed_split():
    table = pd.DataFrame({"id": ["a", "b"], "sequence": ["MKV", "MLL"], "label": ["x", "y"],
                          "split": ["train", ""]})
    with pytest.raises(ValueError, match="mixes"):
        tasks.assign_splits(table, identity=0.3)


def test_subsample_stratified_and_seeded():
    splits = ["train"] * 800 + ["valid"] * 100 + ["test"] * 100
    table = pd.DataFrame({"id": [f"p{i}" for i in range(1000)], "sequence": "MKV", "label": "x",
                          "split": splits})
    small = tasks.subsample(table, 250, seed=4)
    assert len(small) == 250
    assert small["split"].value_counts().to_dict() == {"train": 200, "valid": 25, "test": 25}
    assert small["id"].is_unique
    assert small["id"].map(lambda name: int(name[1:])).is_monotonic_increasing
    pd.testing.assert_frame_equal(small, tasks.subsample(table, 250, seed=4))
    assert not small["id"].equals(tasks.subsample(table, 250, seed=5)["id"])
    odd = tasks.subsample(table, 7, seed=0)
    # Largest remainder: 5.6, 0.7, 0.7 -> 5, 1, 1.
    assert odd["split"].value_counts().to_dict() == {"train": 5, "valid": 1, "test": 1}
    assert len(tasks.subsample(table, 5000, seed=0)) == 1000
    with pytest.raises(ValueError, match="max_items"):
        tasks.subsample(table, 0, seed=0)


def test_write_and_read_task(tmp_path):
    table = tasks.load_flip_meltome(DATA / "meltome_mixed_split.csv").assign(cluster="meltome_1")
    fasta, labels = tmp_path / "task.fasta", tmp_path / "labels.tsv"
    tasks.write_task(table, fasta, labels)
    assert fasta.read_text().startswith(">meltome_1\nMSDKPDMAEIEKF")
    read = tasks.read_task_labels(labels)
    assert read.columns.tolist() == ["id", "split", "label", "length", "cluster"]
    assert read["label"].tolist() == pytest.approx(table["label"].tolist())
    assert read["length"].tolist() == table["sequence"].str.len().tolist()

    local = tasks.load_localization_bundle(
        DATA / "swissprot_subset.localization.tsv",
        [DATA / "swissprot_subset.fasta", DATA / "localization.fasta"]).assign(cluster="P12818")
    tasks.write_task(local, fasta, labels)
    read = tasks.read_task_labels(labels)
    assert read["split"].tolist() == [""] * 5
    assert read["label"].tolist() == local["label"].tolist()
    assert (read["note"] == tasks.LOCALIZATION_NOTE).all()
    with pytest.raises(ValueError, match="assign_splits"):
        tasks.write_task(local.drop(columns="cluster"), fasta, labels)
