"""Concept sources: the Swiss-Prot flat-file parser (both layouts), Pfam envelopes, DSSP runs and
amino acids, all into the one concept table."""

import gzip

import numpy as np
import pandas as pd
import pytest

from protsae.concepts.sources import (
    amino_acid_concepts,
    build_concepts,
    dssp_concepts,
    pfam_concepts,
    state_runs,
)
from protsae.concepts.swissprot import clean_note, parse_swissprot_features
from protsae.concepts.table import check_concepts, read_concepts, write_concepts

FIXTURE = "resources/demo/swissprot_entries.dat"

# A current-layout entry (positions as ranges, qualifiers on their own lines, quoted values that
# run over two lines), made up for the test.
MODERN = """ID   TEST1_HUMAN             Reviewed;          60 AA.
AC   Q00001; Q00002;
FT   SIGNAL          1..20
FT                   /evidence="ECO:0000255"
FT   BINDING         24..31
FT                   /ligand="ATP"
FT                   /ligand_id="ChEBI:CHEBI:30616"
FT   BINDING         40
FT                   /ligand="Zn(2+)"
FT   ZN_FING         33..50
FT                   /note="C2H2-type 3"
FT   DOMAIN          21..58
FT                   /note="Protein kinase; a long note that runs on
FT                   over a second line"
FT   DISULFID        22..45
FT   MOD_RES         55
FT                   /note="Phosphoserine; by PKA"
FT   HELIX           ?..12
FT   CHAIN           1..60
FT                   /note="Test protein"
SQ   SEQUENCE   60 AA;  6000 MW;  0 CRC64;
     MKTAYIAKQR QISFVKSHFS RQLEERLGLI EVQAPILSRV GDGTQDNLSG AEKAVQVKVK
//
"""


@pytest.fixture
def modern(tmp_path):
    path = tmp_path / "modern.dat.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(MODERN)
    return path


def test_modern_layout_reads_ligands_and_notes_without_numbering(modern):
    table, counts = parse_swissprot_features(modern)
    got = {(row.concept, row.start, row.end, row.kind) for row in table.itertuples()}
    assert ("Swiss-Prot:Binding site: ATP", 23, 31, "residue") in got
    assert ("Swiss-Prot:Binding site: Zn(2+)", 39, 40, "residue") in got
    assert ("Swiss-Prot:Zinc finger: C2H2-type", 32, 50, "interval") in got
    assert ("Swiss-Prot:Domain: Protein kinase", 20, 58, "interval") in got
    assert ("Swiss-Prot:Modified residue: Phosphoserine", 54, 55, "residue") in got
    # A signal peptide without a note is the plain type (InterPLM's parser dropped it).
    assert ("Swiss-Prot:Signal peptide", 0, 20, "interval") in got
    # A disulfide bond is its two cysteines, not the stretch between them.
    assert {(r.start, r.end) for r in table.itertuples() if r.concept == "Swiss-Prot:Disulfide bond"} == {(21, 22), (44, 45)}
    assert not table["concept"].str.contains("Chain").any()  # not one of the concept types
    assert counts == {"entries": 1, "features": 7, "dropped_unknown_position": 1}
    assert set(table["protein"]) == {"Q00001"}


def test_fixture_old_layout():
    """The bundle's 100 entries (2012 layout): retired keys become binding sites with their
    description as the ligand; evidence and numbering go."""
    table, counts = parse_swissprot_features(FIXTURE)
    assert counts["entries"] == 100
    concepts = table["concept"].value_counts()
    assert concepts["Swiss-Prot:Helix"] == 257 and concepts["Swiss-Prot:Beta strand"] == 204
    assert concepts["Swiss-Prot:Signal peptide"] == 4  # all four, whose text is only "By similarity."
    assert concepts["Swiss-Prot:Binding site: GTP"] == 12  # NP_BIND ... GTP (By similarity).
    assert "Swiss-Prot:Binding site: Magnesium" in concepts  # METAL ... Magnesium 1.
    assert "Swiss-Prot:Motif: NPA" in concepts  # MOTIF ... NPA 1. / NPA 2.
    assert "Swiss-Prot:Transmembrane: Helical" in concepts  # Helical; Name=1; (By similarity).
    assert not table["concept"].str.contains(r"\(By similarity\)|\(Potential\)|\s\d+$", regex=True).any()
    assert "Swiss-Prot:Domain: SH3" in concepts  # a name that ends in a digit keeps it
    # 31 DISULFID lines: both ends of each (one line bonds a residue to itself: one row).
    assert concepts["Swiss-Prot:Disulfide bond"] == 62
    assert (table[table["kind"] == "residue"]["end"] - table[table["kind"] == "residue"]["start"]).max() <= 8


def test_clean_note():
    assert clean_note("C2H2-type 3") == "C2H2-type"
    assert clean_note("Magnesium 1.") == "Magnesium"
    assert clean_note("GTP (By similarity).") == "GTP"
    assert clean_note("Potential.") == ""
    assert clean_note("Helical; Name=1; (By similarity).") == "Helical"


def test_only_the_named_proteins(modern):
    table, counts = parse_swissprot_features(modern, proteins={"P99999"})
    assert table.empty and counts == {}


def test_an_entry_of_another_sequence_is_dropped(modern):
    sequence = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVK"
    table, counts = parse_swissprot_features(modern, proteins={"Q00001": sequence})
    assert len(table) > 0 and counts["entries"] == 1
    table, counts = parse_swissprot_features(modern, proteins={"Q00001": "X" + sequence[1:]})
    assert len(table) > 0  # a residue the dataset mapped to X still matches
    table, counts = parse_swissprot_features(modern, proteins={"Q00001": sequence[:-1] + "A"})
    assert table.empty and counts == {"dropped_entry_sequence_differs": 1}


def test_pfam_envelopes_are_intervals(tmp_path):
    path = tmp_path / "hits.tsv"
    pd.DataFrame({"accession": ["A", "A", "B"], "pfam_acc": ["PF00005", "PF00009", "PF00005"],
                  "pfam_name": ["ABC_tran", "GTP_EFTU", "ABC_tran"], "interpro_acc": ["", "", ""],
                  "interpro_type": ["", "", ""], "env_from": [1, 10, 5], "env_to": [8, 20, 9],
                  "bitscore": [50.0, 60.0, 40.0], "evalue": [1e-10, 1e-12, 1e-5]}).to_csv(path, sep="\t", index=False)
    table = pfam_concepts(path, ["A"])
    assert list(table.itertuples(index=False, name=None)) == [
        ("A", "Pfam:PF00005 ABC_tran", 0, 8, "interval"), ("A", "Pfam:PF00009 GTP_EFTU", 9, 20, "interval")]


def test_dssp_runs_and_amino_acids(tmp_path):
    assert state_runs("HHHCCEEH") == [("H", 0, 3), ("C", 3, 5), ("E", 5, 7), ("H", 7, 8)]
    path = tmp_path / "dssp.tsv"
    pd.DataFrame({"pdb_id": ["1ABC"], "chain": ["A"], "sequence": ["MKTAYIAK"], "dssp8": ["CHHHTTEC"],
                  "ss3": ["CHHHCCEC"]}).to_csv(path, sep="\t", index=False)
    table = dssp_concepts(path, {"1ABC_A": "MKTAYIAK"})
    assert list(table.itertuples(index=False, name=None)) == [
        ("1ABC_A", "DSSP:E", 6, 7, "interval"), ("1ABC_A", "DSSP:H", 1, 4, "interval"),
        ("1ABC_A", "DSSP:T", 4, 6, "interval")]
    with pytest.raises(ValueError, match="1ABC_A: 8 DSSP states for 5 residues"):
        dssp_concepts(path, {"1ABC_A": "MKTAY"})
    amino = amino_acid_concepts({"P": "MKXA"})
    assert list(amino.itertuples(index=False, name=None)) == [
        ("P", "AA:A", 3, 4, "residue"), ("P", "AA:K", 1, 2, "residue"), ("P", "AA:M", 0, 1, "residue")]


def test_structure_bundle_dssp_matches_the_task_chains():
    with np.load("resources/demo/structures_backbone.npz") as data:
        ids = [f"{p}_{c}" for p, c in zip(data["pdb_id"][:5].tolist(), data["chain"][:5].tolist())]
        sequences = dict(zip(ids, data["sequence"][:5].tolist()))
    table, stats = build_concepts([{"kind": "dssp_bundle", "path": "resources/demo/structures_backbone.npz"}], sequences)
    assert set(table.loc[table["concept"].str.startswith("DSSP:"), "protein"]) == set(ids)
    assert stats["amino_acids"]["instances"] == sum(len(s) for s in sequences.values())


def test_bad_rows_and_sources_are_named(tmp_path):
    bad = pd.DataFrame([("P", "c", 5, 12, "interval")], columns=["protein", "concept", "start", "end", "kind"])
    with pytest.raises(ValueError, match=r"row 1 \(P, 'c', 5..12"):
        check_concepts(bad, {"P": 10})
    with pytest.raises(ValueError, match=r"concepts.datasets.x.sources\[0\].kind: 'gff'"):
        build_concepts([{"kind": "gff", "path": "x.gff"}], {"P": "MK"}, where="concepts.datasets.x")
    path = tmp_path / "c.tsv.gz"
    good = pd.DataFrame([("P", "c", 0, 2, "residue")], columns=bad.columns)
    write_concepts(good, path)
    assert read_concepts(path).equals(good)
