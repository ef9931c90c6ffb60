"""The family consensus on a planted family (BLAST+, Clustal Omega), and the metrics over it."""

import numpy as np
import pytest

from protsae.sequences.fasta import FastaRecord, write_fasta
from protsae.steering.consensus import Alignment, blast_hits, make_blast_db, require_tool, run_clustalo
from protsae.steering.metrics import steering_metrics

RESIDUES = "ACDEFGHIKLMNPQRSTVWY"
CONSERVED = list(range(10, 130, 6))  # 20 planted conserved columns


def planted_family(n_members=8, length=140, seed=0):
    """A seed sequence and mutated copies that never change the CONSERVED positions, plus
    unrelated random proteins."""
    rng = np.random.default_rng(seed)
    seed_sequence = rng.choice(list(RESIDUES), length)
    members = []
    for i in range(n_members):
        copy = seed_sequence.copy()
        free = np.setdiff1d(np.arange(length), CONSERVED)
        mutated = rng.choice(free, size=length // 4, replace=False)
        copy[mutated] = rng.choice(list(RESIDUES), mutated.size)
        members.append(FastaRecord(f"FAM{i}", "", "".join(copy), 0))
    others = [FastaRecord(f"RND{i}", "", "".join(rng.choice(list(RESIDUES), length)), 0) for i in range(20)]
    return members, others


def test_blast_and_clustal_find_the_planted_conserved_columns(tmp_path):
    members, others = planted_family()
    write_fasta(members + others, tmp_path / "db.fasta")
    make_blast_db(tmp_path / "db.fasta", tmp_path / "db")
    hits = blast_hits(members[:2], tmp_path / "db", max_target_seqs=100)
    # The family, not the unrelated proteins, and one row per (query, hit).
    assert set(hits["hit"]) == {m.seq_id for m in members}
    assert not hits.duplicated(["query", "hit"]).any()
    alignment = run_clustalo(members)
    columns = alignment.columns()
    # No indels were planted, so column i holds residue i of every row.
    assert len(columns) == 140 and set(columns["occupancy"]) == {1.0}
    assert (columns.loc[CONSERVED, "symbol"] == "*").all()
    assert (columns.loc[CONSERVED, "consensus"] == [members[0].sequence[i] for i in CONSERVED]).all()
    assert (columns["symbol"] == "*").sum() < 140 * 0.6  # the mutated columns are not all identical
    assert alignment.residue_columns("FAM0") == list(range(140))


def test_gaps_are_never_counted_and_classes_split_the_residues():
    alignment = Alignment(rows={"a": "MK-TW", "b": "MKQTY", "c": "MR-TW"}, symbols="*: * ")
    columns = alignment.columns()
    assert columns["consensus"].tolist() == ["M", "K", "Q", "T", "W"]
    assert columns["occupancy"].tolist() == pytest.approx([1, 1, 1 / 3, 1, 1])
    residue_columns = alignment.residue_columns("a")
    assert residue_columns == [0, 1, 3, 4]
    shift = np.array([0.5, np.nan, 1.0, -1.0])
    rows = {row["conservation"]: row for row in steering_metrics("MKTW", "MKTW", "MRTY", residue_columns, columns, shift)}
    assert rows["all"]["n_residues"] == 4 and rows["all"]["unchanged_vs_original"] == 0.5
    assert rows["identical"]["n_residues"] == 2 and rows["identical"]["unchanged_vs_original"] == 1.0
    assert rows["strong"]["n_changed"] == 1 and rows["strong"]["to_consensus"] == 0.0
    assert rows["none"]["n_changed"] == 1 and rows["none"]["to_consensus"] == 0.0
    assert rows["weak"]["n_residues"] == 0  # column 2's "." is a gap in row a: never counted
    assert rows["all"]["consensus_logprob_shift"] == pytest.approx(0.5 / 3 * 1)  # nanmean of .5, 1, -1
    with pytest.raises(ValueError, match="lengths differ"):
        steering_metrics("MKTW", "MKT", "MRTY", residue_columns, columns, shift)


def test_a_missing_tool_says_how_to_install_it(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RuntimeError, match="clustalo not found on PATH: install it .*apt-get install clustalo"):
        require_tool("clustalo")
    with pytest.raises(RuntimeError, match="blastp not found on PATH: install it .*ncbi-blast"):
        blast_hits([FastaRecord("a", "", "MK", 0)], "db")


def test_an_alignment_needs_two_sequences():
    with pytest.raises(ValueError, match="an alignment needs at least two sequences, got 1"):
        run_clustalo([FastaRecord("a", "", "MK", 0)])


def test_one_clustalo_run_gives_gapped_rows_of_the_inputs_and_their_symbols():
    members, _ = planted_family(n_members=4)
    shortened = FastaRecord("FAM_DEL", "", members[0].sequence[:60] + members[0].sequence[70:], 0)
    alignment = run_clustalo([*members, shortened])
    assert list(alignment.rows) == [m.seq_id for m in members] + ["FAM_DEL"]
    for record in [*members, shortened]:
        assert alignment.rows[record.seq_id].replace("-", "") == record.sequence
    assert alignment.rows["FAM_DEL"].count("-") == 10 and len(alignment.symbols) == 140
    assert alignment.symbols[CONSERVED[0]] == "*"


@pytest.mark.parametrize("clustal, message", [
    ("CLUSTAL O(1.2.4)\n\na      MK-TW\nb_x    MKQTY\n       *: * \n", r"do not match its input IDs \(differ: \['b', 'b_x'\]\)"),
    ("CLUSTAL O(1.2.4)\n\na      MK-TW\nb      MKQTA\n       *: * \n", "row b is not its input sequence with gaps added"),
])
def test_a_clustal_output_that_is_not_the_input_is_refused(monkeypatch, clustal, message):
    monkeypatch.setattr("protsae.steering.consensus._run", lambda command: clustal)
    with pytest.raises(RuntimeError, match=message):
        run_clustalo([FastaRecord("a", "", "MKTW", 0), FastaRecord("b", "", "MKQTY", 0)])


def test_one_blast_run_gives_every_latent_the_hits_of_its_own_search(tmp_path):
    import pandas as pd

    from protsae.steering.run import SteeringSettings, align_families

    fam_a, others = planted_family(n_members=6, seed=0)
    fam_b, _ = planted_family(n_members=6, seed=1)
    fam_b = [FastaRecord(r.seq_id.replace("FAM", "FB"), "", r.sequence, 0) for r in fam_b]
    write_fasta(fam_a + fam_b + others, tmp_path / "db.fasta")
    make_blast_db(tmp_path / "db.fasta", tmp_path / "db")
    proteins = {r.seq_id: r.sequence for r in fam_a + fam_b + others}
    # FB5 is labelled with both families: latent 2 may keep it only if its own search finds it.
    labels = pd.DataFrame({"protein": [r.seq_id for r in fam_a] + [r.seq_id for r in fam_b] + ["FB5"],
                           "accession": ["IPR_A"] * 6 + ["IPR_B"] * 6 + ["IPR_A"]})
    latents = pd.DataFrame({"latent": [2, 7, 9], "family": ["IPR_A", "IPR_B", "IPR_B"],
                            "top": [["FAM0", "FAM1"], ["FB0"], ["FB0", "FB3"]]})
    settings = SteeringSettings()
    overview, rows, _ = align_families(latents, proteins, labels, str(tmp_path / "db"), settings)
    for item in latents.itertuples():
        own = blast_hits([FastaRecord(p, "", proteins[p], 0) for p in item.top], tmp_path / "db",
                         settings.max_target_seqs, settings.evalue)
        family = set(labels.loc[labels["accession"] == item.family, "protein"])
        expected = sorted((set(own["hit"]) & family) - set(item.top))
        assert sorted(rows.loc[(rows["latent"] == item.latent) & (rows["role"] == "hit"), "seq_id"]) == expected
    assert overview["n_hits"].tolist() == [4, 5, 4]  # FB5 is not found by latent 2's queries
    assert "FB5" not in set(rows.loc[rows["latent"] == 2, "seq_id"])
