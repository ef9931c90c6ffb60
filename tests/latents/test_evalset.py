import shutil

import numpy as np
import pandas as pd
import pytest

from protsae.latents.evalset import (
    ClusterParams,
    cluster_representatives,
    split_representatives,
    write_split,
)
from protsae.sequences.fasta import read_fasta

needs_mmseqs = pytest.mark.skipif(shutil.which("mmseqs") is None, reason="mmseqs2 not installed")
RESIDUES = np.array(list("ACDEFGHIKLMNPQRSTVWY"))


def random_protein(rng, length):
    return "".join(rng.choice(RESIDUES, size=length))


def mutate(rng, sequence, share):
    """``sequence`` with ``share`` of its residues replaced at random."""
    residues = np.array(list(sequence))
    where = rng.choice(len(residues), size=int(share * len(residues)), replace=False)
    residues[where] = rng.choice(RESIDUES, size=len(where))
    return "".join(residues)


def write(path, records):
    path.write_text("".join(f">sp|{name}\n{seq}\n" for name, seq in records))
    return path


@needs_mmseqs
def test_clusters_group_homologues_and_keep_one_representative(tmp_path):
    rng = np.random.default_rng(0)
    family_a, family_b, loner = (random_protein(rng, n) for n in (200, 150, 120))
    records = [
        ("P00001", family_a), ("P00002", mutate(rng, family_a, 0.1)), ("P00003", mutate(rng, family_a, 0.2)),
        ("P00004", family_b), ("P00005", mutate(rng, family_b, 0.1)),
        ("P00006", loner),
        ("P00007", random_protein(rng, 2000)),  # longer than max_length: not clustered
    ]
    fasta = write(tmp_path / "in.fasta", records)
    stats = cluster_representatives(fasta, tmp_path / "reps.fasta", tmp_path / "clusters.tsv",
                                    max_length=1022, params=ClusterParams(sensitivity=4))
    clusters = pd.read_csv(tmp_path / "clusters.tsv", sep="\t")
    members = clusters.groupby("representative")["member"].apply(frozenset)
    assert set(members) == {frozenset({"P00001", "P00002", "P00003"}), frozenset({"P00004", "P00005"}),
                            frozenset({"P00006"})}
    representatives = [r.seq_id for r in read_fasta(tmp_path / "reps.fasta")]
    assert representatives == sorted(members.index) and len(representatives) == 3
    assert stats["proteins_read"] == 7 and stats["proteins_clustered"] == 6 and stats["clusters"] == 3


def test_duplicate_accession_names_file_and_line(tmp_path):
    fasta = write(tmp_path / "in.fasta", [("P00001", "MKV"), ("P00002", "MKL"), ("P00001", "MKT")])
    with pytest.raises(ValueError, match=r"in\.fasta, line 5: .*P00001.*(first|already) seen at line 1"):
        cluster_representatives(fasta, tmp_path / "reps.fasta", tmp_path / "clusters.tsv")
    assert not (tmp_path / "reps.fasta").exists() and not (tmp_path / "clusters.tsv").exists()


def test_split_is_seeded_and_independent_of_order():
    proteins = [f"P{i:05d}" for i in range(101)]
    split = split_representatives(proteins, 0.3, seed=1)
    assert (split == "test").sum() == 30 and list(split.index) == sorted(proteins)
    assert split.equals(split_representatives(proteins[::-1], 0.3, seed=1))
    assert not split.equals(split_representatives(proteins, 0.3, seed=2))
    with pytest.raises(ValueError, match="duplicate"):
        split_representatives(proteins + ["P00000"], 0.3, seed=1)


def test_write_split_rejects_a_non_representative(tmp_path):
    (tmp_path / "lengths.tsv").write_text("seq_id\tlength\tshard\nP1\t10\t0\nP2\t20\t0\nP3\t30\t0\n")
    (tmp_path / "clusters.tsv").write_text("representative\tmember\nP1\tP1\nP1\tP4\nP2\tP2\nP3\tP3\n")
    stats = write_split(tmp_path / "lengths.tsv", tmp_path / "clusters.tsv", tmp_path / "split.tsv", 0.5, seed=0)
    table = pd.read_csv(tmp_path / "split.tsv", sep="\t")
    assert list(table["protein"]) == ["P1", "P2", "P3"] and list(table["cluster_size"]) == [2, 1, 1]
    assert list(table["length"]) == [10, 20, 30] and stats["proteins"] == 3
    (tmp_path / "clusters.tsv").write_text("representative\tmember\nP1\tP1\nP1\tP2\nP3\tP3\n")
    with pytest.raises(ValueError, match="P2 is not a cluster representative"):
        write_split(tmp_path / "lengths.tsv", tmp_path / "clusters.tsv", tmp_path / "split2.tsv", 0.5, seed=0)
