"""Tests for protsae.families on known answers from small fixtures.

resources/demo/swissprot_entries.dat is the bundle's 100-entry fixture (EMBOSS test data); the
files in tests/data are
a few real-looking rows in the published formats (entry.list, protein2ipr.dat, the bundle's Pfam
hit and entries tables).
"""

import gzip
import logging
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO

from protsae.latents import families
from protsae.sequences.fasta import read_sequences

DATA = Path(REPO) / "tests" / "data"
DAT = Path(REPO) / "resources" / "demo" / "swissprot_entries.dat"  # the CI config's evaluation set
ENTRY_LIST = DATA / "entry.list"
BUNDLE_ENTRIES = DATA / "interpro_entries_sample.tsv"
PFAM2IPR = DATA / "pfam2ipr_sample.tsv"
PROTEIN2IPR = DATA / "protein2ipr_sample.dat"
PFAM_HITS = DATA / "pfam_hits_sample.tsv"

HBB_HUMAN_LINE = 9446
"""ID line of HBB_HUMAN (P68871) in swissprot_entries.dat; its SQ line is 11850."""


@pytest.fixture(scope="module")
def dat_entries():
    return list(families.read_swissprot_dat(DAT))


@pytest.fixture(scope="module")
def entry_list():
    return families.read_interpro_entries(ENTRY_LIST)


def _edited_dat(tmp_path: Path, edit) -> Path:
    """Copy of the flat-file fixture with ``edit(lines)`` applied (lines[0] is line 1)."""
    lines = DAT.read_text().splitlines(keepends=True)
    edit(lines)
    path = tmp_path / "edited.dat"
    path.write_text("".join(lines))
    return path


def _gzipped(path: Path, tmp_path: Path) -> Path:
    out = tmp_path / (path.name + ".gz")
    with open(path, "rb") as src, gzip.open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return out


# -- Swiss-Prot flat file -----------------------------------------------------------------------


def test_swissprot_dat_fixture_entries(dat_entries):
    assert len(dat_entries) == 100
    first = dat_entries[0]
    assert first.accession == "P15455"
    assert first.accessions == ("P15455", "Q3E711", "Q56Z11", "Q9FFH7")
    assert len(first.sequence) == 472
    assert first.line == 1

    hbb = next(entry for entry in dat_entries if entry.accession == "P68871")
    assert hbb.line == HBB_HUMAN_LINE
    # Two AC lines; the primary accession is the first of the first.
    assert hbb.accessions[:2] == ("P68871", "A4GX73")
    assert hbb.accessions[-2:] == ("Q9UCP8", "Q9UCP9")
    assert len(hbb.accessions) == 16
    assert len(hbb.sequence) == 147  # "SQ   SEQUENCE   147 AA;"
    assert hbb.sequence.startswith("MVHLTPEEKSAVTALWGKVN")
    assert hbb.sequence.endswith("ALAHKYH")
    assert hbb.interpro == (
        ("IPR000971", "Globin"),
        ("IPR009050", "Globin-like"),
        ("IPR012292", "Globin_dom"),
        ("IPR002337", "Haemoglobin_b"),
    )
    assert hbb.pfam == (("PF00042", "Globin"),)
    assert sum(len(entry.interpro) for entry in dat_entries) == 375
    assert sum(len(entry.pfam) for entry in dat_entries) == 125


def test_swissprot_dat_gzip(tmp_path, dat_entries):
    assert list(families.read_swissprot_dat(_gzipped(DAT, tmp_path))) == dat_entries


def test_swissprot_dat_entry_without_ac(tmp_path):
    def drop_ac(lines):
        assert lines[265].startswith("AC   P79748;")
        del lines[265]

    with pytest.raises(ValueError, match=r"edited\.dat, line 265: .*no AC line"):
        list(families.read_swissprot_dat(_edited_dat(tmp_path, drop_ac)))


def test_swissprot_dat_missing_final_terminator(tmp_path):
    def drop_last(lines):
        assert lines[-1].startswith("//")
        del lines[-1]

    path = _edited_dat(tmp_path, drop_last)
    n_lines = len(path.read_text().splitlines())
    with pytest.raises(ValueError, match=rf"edited\.dat, line {n_lines}: .*no '//'"):
        list(families.read_swissprot_dat(path))


def test_swissprot_dat_missing_terminator_between_entries(tmp_path):
    def drop_first_terminator(lines):
        assert lines[263].startswith("//")
        del lines[263]

    # The next entry's ID line moves up to line 264.
    with pytest.raises(ValueError, match=r"edited\.dat, line 264: ID line before the '//'"):
        list(families.read_swissprot_dat(_edited_dat(tmp_path, drop_first_terminator)))


def test_swissprot_dat_sequence_length_disagrees_with_sq_line(tmp_path):
    def wrong_length(lines):
        assert lines[11849].startswith("SQ   SEQUENCE   147 AA;")
        lines[11849] = lines[11849].replace("147 AA;", "148 AA;")

    with pytest.raises(ValueError, match=r"edited\.dat, line 11850: entry P68871: .*148.*147"):
        list(families.read_swissprot_dat(_edited_dat(tmp_path, wrong_length)))


def test_dat_to_fasta(tmp_path, dat_entries):
    out = tmp_path / "eval.fasta"
    assert families.dat_to_fasta(DAT, out) == 100
    records = read_sequences(out)
    assert [seq_id for seq_id, _ in records][:2] == ["sp|P15455", "sp|P79748"]
    assert [seq for _, seq in records] == [entry.sequence for entry in dat_entries]


# -- InterPro entries and Pfam mapping ----------------------------------------------------------


def test_read_interpro_entries_entry_list(entry_list):
    assert list(entry_list.columns) == ["accession", "type", "name"]
    assert len(entry_list) == 12
    row = entry_list.set_index("accession").loc["IPR009050"]
    assert (row["type"], row["name"]) == ("Homologous_superfamily", "Globin-like superfamily")


def test_read_interpro_entries_bundle_format_and_gzip(tmp_path):
    plain = families.read_interpro_entries(BUNDLE_ENTRIES)
    assert len(plain) == 7
    assert plain.set_index("accession").loc["IPR004107", "name"] == (
        "Integrase, SAM-like, N-terminal"
    )
    gzipped = families.read_interpro_entries(_gzipped(BUNDLE_ENTRIES, tmp_path))
    pd.testing.assert_frame_equal(plain, gzipped)


def test_read_interpro_entries_bad_type(tmp_path):
    path = tmp_path / "entry.list"
    path.write_text(ENTRY_LIST.read_text().replace("IPR000971\tDomain", "IPR000971\tdomain"))
    with pytest.raises(ValueError, match=r"entry\.list, line 4: entry type 'domain'"):
        families.read_interpro_entries(path)


def test_pfam_to_interpro_both_formats(tmp_path):
    from_bundle = families.pfam_to_interpro(BUNDLE_ENTRIES)
    assert len(from_bundle) == 8
    assert from_bundle["PF02899"] == from_bundle["PF13495"] == "IPR004107"
    # The version suffix (PF00001.23) is dropped.
    assert families.pfam_to_interpro(PFAM2IPR) == {
        "PF00001": "IPR000276", "PF00042": "IPR000971", "PF00190": "IPR006045",
    }
    conflicting = tmp_path / "pfam2ipr.tsv"
    conflicting.write_text(PFAM2IPR.read_text() + "PF00042\tIPR009050\n")
    with pytest.raises(ValueError, match=r"pfam2ipr\.tsv, line 5: Pfam PF00042 .*IPR000971"):
        families.pfam_to_interpro(conflicting)
    # In the bundle's format a row holds several members: the error names the row's line.
    members = tmp_path / "entries.tsv"
    members.write_text("accession\ttype\tname\tpfam_members\nIPR000001\tFamily\tA\tPF00001:x,PF00002:y\n"
                       "IPR000002\tFamily\tB\tPF00003:z,PF0004:w\n")
    with pytest.raises(ValueError, match=r"entries\.tsv, line 3: Pfam accession 'PF0004'"):
        families.pfam_to_interpro(members)


# -- label sources ------------------------------------------------------------------------------


def test_labels_from_swissprot_dat(entry_list):
    labels = families.labels_from_swissprot_dat(DAT, entry_list)
    assert list(labels.columns) == families.LABEL_COLUMNS
    assert len(labels) == 375  # every DR InterPro line of the fixture, none repeated
    assert labels.equals(labels.sort_values(["protein", "accession"]).reset_index(drop=True))
    assert set(labels["source"]) == {"swissprot_dat"}
    hbb = labels[labels["protein"] == "P68871"].set_index("accession")
    assert list(hbb.index) == ["IPR000971", "IPR002337", "IPR009050", "IPR012292"]
    assert hbb.loc["IPR002337", "type"] == "Family"
    assert hbb.loc["IPR002337", "name"] == "Hemoglobin, beta-type"
    # IPR002231 is not in entry.list: type unknown, the DR short name as name.
    unknown = labels[(labels["protein"] == "P79748") & (labels["accession"] == "IPR002231")]
    assert unknown[["type", "name"]].values.tolist() == [["unknown", "5HT_rcpt"]]


def test_labels_from_swissprot_dat_pfam_fallback(tmp_path, entry_list, caplog):
    def drop_hbb_interpro(lines):
        start, end = HBB_HUMAN_LINE - 1, 11850
        lines[start:end] = [
            line for line in lines[start:end] if not line.startswith("DR   InterPro;")
        ]

    path = _edited_dat(tmp_path, drop_hbb_interpro)
    without_map = families.labels_from_swissprot_dat(path, entry_list)
    assert "P68871" not in set(without_map["protein"])

    pfam2ipr = families.pfam_to_interpro(PFAM2IPR)
    with caplog.at_level(logging.INFO, logger="protsae.latents.families"):
        labels = families.labels_from_swissprot_dat(path, entry_list, pfam2ipr)
    assert "1 proteins without InterPro DR lines took Pfam DR lines" in caplog.text
    hbb = labels[labels["protein"] == "P68871"]
    assert hbb[["accession", "type", "name"]].values.tolist() == [["IPR000971", "Domain", "Globin"]]
    assert len(labels) == 375 - 4 + 1


def test_labels_from_protein2ipr(entry_list, tmp_path):
    labels = families.labels_from_protein2ipr(PROTEIN2IPR, entry_list)
    assert len(labels) == 10  # 13 match rows, 10 distinct (protein, accession) pairs
    assert labels["protein"].value_counts().to_dict() == {"P68871": 4, "P15455": 3, "P79748": 3}
    assert set(labels["source"]) == {"protein2ipr"}
    by_pair = labels.set_index(["protein", "accession"])
    assert by_pair.loc[("P15455", "IPR022379"), "type"] == "Conserved_site"
    # Not in entry.list: type unknown, name from the file.
    assert tuple(by_pair.loc[("P79748", "IPR002231"), ["type", "name"]]) == (
        "unknown", "5-hydroxytryptamine receptor family",
    )
    # Chunks smaller than one protein's rows, and gzip, give the same table.
    chunked = families.labels_from_protein2ipr(
        _gzipped(PROTEIN2IPR, tmp_path), entry_list, chunksize=2
    )
    pd.testing.assert_frame_equal(labels, chunked)


def test_labels_from_protein2ipr_protein_filter(entry_list):
    labels = families.labels_from_protein2ipr(
        PROTEIN2IPR, entry_list, proteins={"P68871", "Q99999"}, chunksize=4
    )
    assert labels["accession"].tolist() == ["IPR000971", "IPR002337", "IPR009050", "IPR012292"]
    assert set(labels["protein"]) == {"P68871"}


def test_labels_from_protein2ipr_bad_line(tmp_path, entry_list):
    lines = PROTEIN2IPR.read_text().splitlines(keepends=True)
    lines[6] = lines[6].replace("IPR000971", "IPR00097")
    path = tmp_path / "protein2ipr.dat"
    path.write_text("".join(lines))
    message = r"protein2ipr\.dat, line 7: InterPro accession 'IPR00097'"
    with pytest.raises(ValueError, match=message):
        families.labels_from_protein2ipr(path, entry_list, chunksize=3)


def test_labels_from_pfam_hits():
    entries = families.read_interpro_entries(BUNDLE_ENTRIES)
    pfam2ipr = families.pfam_to_interpro(BUNDLE_ENTRIES)
    labels, n_dropped = families.labels_from_pfam_hits(PFAM_HITS, pfam2ipr, entries)
    assert n_dropped == 2  # AAA_18 and HATPase_c_3 are not integrated in InterPro
    # A0AI80's two SAM-like domains (PF02899, PF13495) are one InterPro entry.
    assert len(labels) == 7
    assert labels[labels["protein"] == "A0AI80"]["accession"].tolist() == ["IPR002104", "IPR004107"]
    row = labels[labels["protein"] == "A0AEM3"].iloc[0]
    assert (row["accession"], row["type"], row["name"]) == (
        "IPR001648", "Family", "Ribosomal protein S18",
    )
    assert set(labels["source"]) == {"pfam_hits"}


def test_labels_from_pfam_hits_mapping_and_unknown_entries(tmp_path):
    # Blank the table's InterPro entry of the first hit, so that only pfam2ipr can place it.
    lines = PFAM_HITS.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace("IPR003008\tDomain", "\t")
    path = tmp_path / "hits.tsv"
    path.write_text("".join(lines))
    pfam2ipr = families.pfam_to_interpro(BUNDLE_ENTRIES)
    no_entries = pd.DataFrame(columns=["accession", "type", "name"], dtype=str)

    labels, n_dropped = families.labels_from_pfam_hits(path, pfam2ipr, no_entries)
    assert n_dropped == 2
    first = labels[labels["protein"] == "A0AAL4"].iloc[0]
    # Unknown to the entries table: the hit table's type where it named the entry, the Pfam ID.
    assert (first["accession"], first["type"], first["name"]) == ("IPR003008", "unknown", "Tubulin")
    second = labels[labels["protein"] == "A0AEM3"].iloc[0]
    assert (second["type"], second["name"]) == ("Family", "Ribosomal_S18")

    labels, n_dropped = families.labels_from_pfam_hits(path, {}, no_entries)
    assert n_dropped == 3
    assert "A0AAL4" not in set(labels["protein"])


# -- combining, filtering, files ----------------------------------------------------------------


def test_combine_labels_priority(entry_list):
    from_dat = families.labels_from_swissprot_dat(DAT, entry_list)
    from_dat = from_dat[from_dat["protein"].isin(["P68871", "P15455"])]
    from_p2ipr = families.labels_from_protein2ipr(PROTEIN2IPR, entry_list)

    combined = families.combine_labels([from_dat, from_p2ipr])
    source_of = combined.groupby("protein")["source"].agg(set).to_dict()
    assert source_of == {
        "P15455": {"swissprot_dat"}, "P68871": {"swissprot_dat"}, "P79748": {"protein2ipr"},
    }
    # P15455 has 5 DR InterPro lines but 3 protein2ipr entries: all 5 come from the first source.
    assert (combined["protein"] == "P15455").sum() == 5

    reverse = families.combine_labels([from_p2ipr, from_dat])
    assert set(reverse["source"]) == {"protein2ipr"}
    assert len(reverse) == 10


def test_filter_types(entry_list):
    labels = families.labels_from_protein2ipr(PROTEIN2IPR, entry_list)
    family = families.filter_types(labels, ["Family"])
    assert family["accession"].tolist() == ["IPR006044", "IPR002337", "IPR000276"]
    assert len(families.filter_types(labels, ["Family", "Domain"])) == 6
    assert len(families.filter_types(labels, None)) == 10
    with pytest.raises(ValueError, match="unknown InterPro type.*family"):
        families.filter_types(labels, ["family"])


@pytest.mark.parametrize("name", ["labels.tsv", "labels.tsv.gz"])
def test_write_read_labels_round_trip(tmp_path, entry_list, name):
    labels = families.labels_from_swissprot_dat(DAT, entry_list)
    path = tmp_path / name
    families.write_labels(labels, path)
    pd.testing.assert_frame_equal(families.read_labels(path), labels, check_dtype=False)
    assert list(tmp_path.glob(".*.tmp")) == []


# -- Pfam search --------------------------------------------------------------------------------

AMINO = "ACDEFGHIKLMNPQRSTVWY"


def _mutate(rng: random.Random, seq: str, rate: float) -> str:
    return "".join(rng.choice(AMINO) if rng.random() < rate else c for c in seq)


def _planted_family(tmp_path: Path, with_cutoffs: bool = True) -> tuple[Path, Path, dict]:
    """An HMM built from 8 mutated copies of a random 80-residue domain, and a FASTA file with
    6 members (a copy planted at a known place in a random protein) and 6 random decoys."""
    pyhmmer = pytest.importorskip("pyhmmer")
    rng = random.Random(7)
    domain = "".join(rng.choice(AMINO) for _ in range(80))
    alphabet = pyhmmer.easel.Alphabet.amino()
    msa = pyhmmer.easel.TextMSA(
        name="Planted",
        sequences=[
            pyhmmer.easel.TextSequence(name=f"seed{i}", sequence=_mutate(rng, domain, 0.15))
            for i in range(8)
        ],
    ).digitize(alphabet)
    hmm, _, _ = pyhmmer.plan7.Builder(alphabet).build_msa(msa, pyhmmer.plan7.Background(alphabet))
    hmm.accession = "PF99999.3"
    if with_cutoffs:
        hmm.cutoffs.gathering = (25.0, 25.0)
    hmm_path = tmp_path / "planted.hmm"
    with open(hmm_path, "wb") as handle:
        hmm.write(handle)

    planted = {}
    records = []
    for i in range(6):
        left = "".join(rng.choice(AMINO) for _ in range(30 + 10 * i))
        right = "".join(rng.choice(AMINO) for _ in range(40))
        accession = f"Q9M{i:03d}"
        planted[accession] = (len(left) + 1, len(left) + len(domain))
        records.append((f"sp|{accession}|PLNT{i}_TEST", left + _mutate(rng, domain, 0.2) + right))
    for i in range(6):
        decoy = "".join(rng.choice(AMINO) for _ in range(200))
        records.append((f"sp|P0D{i:03d}|DECOY{i}_TEST", decoy))
    fasta_path = tmp_path / "planted.fasta"
    fasta_path.write_text("".join(f">{seq_id}\n{seq}\n" for seq_id, seq in records))
    return hmm_path, fasta_path, planted


@pytest.mark.parametrize("threads", [1, 2])
def test_run_hmmsearch_finds_planted_family(tmp_path, threads):
    hmm_path, fasta_path, planted = _planted_family(tmp_path)
    entries = pd.DataFrame({"accession": ["IPR999999"], "type": ["Family"], "name": ["Planted"]})
    hits = families.run_hmmsearch(
        hmm_path, fasta_path, threads=threads, pfam2ipr={"PF99999": "IPR999999"}, entries=entries
    )
    assert list(hits.columns) == families.PFAM_HIT_COLUMNS
    assert hits["accession"].tolist() == sorted(planted)  # every member, no decoy
    assert set(hits["pfam_acc"]) == {"PF99999"}
    assert set(hits["pfam_name"]) == {"Planted"}
    assert set(hits["interpro_acc"]) == {"IPR999999"}
    assert set(hits["interpro_type"]) == {"Family"}
    assert (hits["bitscore"] >= 25.0).all()
    for row in hits.itertuples():
        start, end = planted[row.accession]
        assert abs(row.env_from - start) <= 5 and abs(row.env_to - end) <= 5

    # The hit table feeds the pfam_hits label source through its file format.
    path = tmp_path / "hits.tsv.gz"
    families.write_pfam_hits(hits, path)
    labels, n_dropped = families.labels_from_pfam_hits(path, {}, entries)
    assert n_dropped == 0
    assert labels["protein"].tolist() == sorted(planted)
    assert set(labels["name"]) == {"Planted"}


def test_run_hmmsearch_requires_gathering_cutoffs(tmp_path):
    hmm_path, fasta_path, _ = _planted_family(tmp_path, with_cutoffs=False)
    message = r"planted\.hmm: HMM Planted \(PF99999\.3\) has no gathering"
    with pytest.raises(ValueError, match=message):
        families.run_hmmsearch(hmm_path, fasta_path)


def test_label_proteins_runs_hmmsearch_only_on_proteins_no_earlier_source_labelled(tmp_path):
    hmm_path, fasta_path, planted = _planted_family(tmp_path)
    entries_path = tmp_path / "entries.tsv"
    entries_path.write_text("ENTRY_AC\tENTRY_TYPE\tENTRY_NAME\nIPR999999\tFamily\tPlanted family\n"
                            "IPR000001\tDomain\tKringle\n")
    pfam2ipr_path = tmp_path / "pfam2ipr.tsv"
    pfam2ipr_path.write_text("pfam_acc\tinterpro_acc\nPF99999\tIPR999999\n")
    # protein2ipr knows two of the planted members (and one protein outside the FASTA).
    protein2ipr = tmp_path / "protein2ipr.dat"
    protein2ipr.write_text("Q9M000\tIPR000001\tKringle\tPF00051\t1\t80\n"
                           "Q9M001\tIPR000001\tKringle\tPF00051\t1\t80\n"
                           "P99999\tIPR000001\tKringle\tPF00051\t1\t80\n")
    labels, stats = families.label_proteins(
        [{"kind": "protein2ipr", "path": protein2ipr}, {"kind": "pfam_hmm", "path": hmm_path}],
        entries_path, fasta_path, pfam2interpro_path=pfam2ipr_path,
    )
    source_of = labels.groupby("protein")["source"].agg(set).to_dict()
    assert source_of == {"Q9M000": {"protein2ipr"}, "Q9M001": {"protein2ipr"}} | {
        accession: {"pfam_hits"} for accession in sorted(planted)[2:]
    }
    assert stats["proteins"] == 12 and stats["proteins_labelled"] == 6
    assert [s["proteins_labelled"] for s in stats["sources"]] == [2, 4]
    assert stats["by_type"] == {"Domain": {"proteins": 2, "entries": 1}, "Family": {"proteins": 4, "entries": 1}}


def test_pfam_to_interpro_from_interpro_xml(tmp_path):
    xml = DATA / "interpro_sample.xml"
    assert families.pfam_to_interpro(xml) == {"PF00051": "IPR000001", "PF00168": "IPR000008"}
    assert families.pfam_to_interpro(_gzipped(xml, tmp_path)) == {"PF00051": "IPR000001", "PF00168": "IPR000008"}
    broken = tmp_path / "broken.xml"
    broken.write_text(xml.read_text().replace("</member_list>\n</interpro>\n<interpro id=\"IPR000008\"", "<interpro"))
    with pytest.raises(families.FamilyFormatError, match=r"broken\.xml, line \d+: not valid InterPro XML"):
        families.pfam_to_interpro(broken)
