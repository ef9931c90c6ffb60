"""Tests for protsae.sequences: FASTA reading and errors, alphabet policies, sampling, shards."""

from __future__ import annotations

import gzip
import random
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO

from protsae.sequences import fasta as fasta_module
from protsae.sequences.fasta import (
    FastaFormatError,
    FastaRecord,
    read_fasta,
    read_sequences,
    uniprot_accession,
    write_fasta,
)
from protsae.sequences.sampling import (
    AlphabetError,
    AlphabetReport,
    clean_sequence,
    reservoir_sample,
    sample_fasta,
)

UNIPROT_SAMPLE = Path(REPO) / "resources" / "demo" / "uniprot_sample.fasta.gz"
ESM_ALPHABET = frozenset("ACDEFGHIKLMNPQRSTVWYX")
RESIDUES = "ACDEFGHIKLMNPQRSTVWY"


def make_records(n: int, seed: int = 0, min_len: int = 5, max_len: int = 60) -> list[FastaRecord]:
    rng = random.Random(seed)
    return [
        FastaRecord(
            f"seq{i}", f"protein {i}",
            "".join(rng.choice(RESIDUES) for _ in range(rng.randint(min_len, max_len))), 2 * i + 1,
        )
        for i in range(n)
    ]


def write_text(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode(), mtime=0))
    else:
        path.write_text(text)
    return path


def run_sample(tmp_path: Path, fasta: Path, n: int, seed: int = 0, n_shards: int = 3, **kwargs):
    out = tmp_path / "out"
    paths = {
        "sample_out": out / "sample.fasta",
        "lengths_out": out / "lengths.tsv",
        "shard_outs": [out / f"shard{i}.fasta" for i in range(n_shards)],
    }
    kwargs.setdefault("max_length", 1022)
    kwargs.setdefault("alphabet", ESM_ALPHABET)
    stats = sample_fasta(fasta, n=n, seed=seed, progress=False, **paths, **kwargs)
    return stats, paths


# -- reading ------------------------------------------------------------------------------------


def test_read_fasta_parses_records(tmp_path):
    fasta = write_text(
        tmp_path / "a.fa",
        ">sp|P1|A_HUMAN first protein\nacd ef\nGHIK*\n\n>P2\r\nMK\r\n>P3  spaced   desc \nW\n",
    )
    records = list(read_fasta(fasta))
    assert records == [
        FastaRecord("sp|P1|A_HUMAN", "first protein", "ACDEFGHIK", 1),
        FastaRecord("P2", "", "MK", 5),
        FastaRecord("P3", "spaced   desc", "W", 7),
    ]


def test_gzip_detected_by_magic_bytes_not_extension(tmp_path):
    text = "".join(f">r{i} d\n{r.sequence}\n" for i, r in enumerate(make_records(30)))
    plain = write_text(tmp_path / "x.fa", text)
    gzipped = tmp_path / "x.txt"  # gzip content under a misleading name
    gzipped.write_bytes(gzip.compress(text.encode()))
    assert list(read_fasta(gzipped)) == list(read_fasta(plain))
    assert reservoir_sample(read_fasta(gzipped), 5, 3, 40) == reservoir_sample(
        read_fasta(plain), 5, 3, 40
    )


def format_errors(tmp_path: Path, text: str, stem: str):
    """(file, error message) of reading ``text`` as plain FASTA and as gzip."""
    for name in (f"{stem}.fa", f"{stem}.fa.gz"):
        fasta = write_text(tmp_path / name, text)
        with pytest.raises(FastaFormatError) as info:
            list(read_fasta(fasta))
        yield fasta, str(info.value)


@pytest.mark.parametrize(
    ("text", "line", "phrase"),
    [
        ("MKV\n>a\nMK\n", 1, "before the first"),
        ("\n>a\nMK\nLL\n>\nMK\n", 5, "empty ID"),
        (">a\nMK\n>   \nMK\n", 3, "empty ID"),
        (">a\nMK\n>b desc\n>c\nMK\n", 3, "'b' has no sequence"),
        (">a\nMK\n>b\nMK\n>c\n", 5, "'c' has no sequence"),
        (">a\nMK\n>c\n\n*\n>d\nM\n", 3, "'c' has no sequence"),
        ("", 0, "empty file"),
        ("\n\n", 2, "no FASTA records"),
    ],
)
def test_format_errors_name_file_and_line(tmp_path, text, line, phrase):
    for fasta, message in format_errors(tmp_path, text, "bad"):
        assert f"{fasta}, line {line}:" in message
        assert phrase in message


def test_duplicate_id_names_both_lines(tmp_path):
    fasta = write_text(tmp_path / "dup.fa", ">a\nMK\n>b x\nMK\n>c\nM\n>b y\nMKL\n")
    with pytest.raises(FastaFormatError) as info:
        list(read_fasta(fasta))
    assert f"{fasta}, line 7: duplicate ID 'b' (first seen at line 3)" in str(info.value)


@pytest.mark.parametrize("weak_hash", [False, True])
def test_duplicate_detection_across_chunks_and_hash_collisions(tmp_path, monkeypatch, weak_hash):
    # Tiny chunks exercise the merge into the sorted array; a hash with 7 values makes most IDs
    # collide, so only the re-read of the headers can tell real duplicates from collisions.
    monkeypatch.setattr(fasta_module, "_DUPLICATE_CHUNK", 3)
    if weak_hash:
        monkeypatch.setattr(fasta_module, "_id_hash", lambda seq_id: sum(map(ord, seq_id)) % 7)
    ids = [f"id{i}" for i in range(40)]
    clean = write_text(tmp_path / "clean.fa", "".join(f">{i}\nMK\n" for i in ids))
    assert [r.seq_id for r in read_fasta(clean)] == ids
    for first, later in [(0, 39), (5, 6), (12, 30), (31, 35), (2, 9), (20, 38)]:
        dup_ids = list(ids)
        dup_ids[later] = ids[first]
        fasta = write_text(tmp_path / "dup.fa", "".join(f">{i}\nMK\n" for i in dup_ids))
        with pytest.raises(FastaFormatError) as info:
            list(read_fasta(fasta))
        expected = f"duplicate ID {ids[first]!r} (first seen at line {2 * first + 1})"
        assert f"{fasta}, line {2 * later + 1}: {expected}" in str(info.value)


def test_truncated_gzip_is_a_format_error(tmp_path):
    data = gzip.compress(b">a\nMKV\n" * 2000)
    fasta = tmp_path / "cut.fa.gz"
    fasta.write_bytes(data[: len(data) // 2])
    with pytest.raises(FastaFormatError, match="cut.fa.gz"):
        list(read_fasta(fasta))


@pytest.mark.parametrize(
    ("text", "line", "column", "phrase"),
    [
        (">a\nMKV-LL--A\n", 2, 4, "the gap character '-'"),
        (">a\nMKV\nLL.A\n", 3, 3, "the gap character '.'"),
        (">a\n1 MKVLLA 11\n", 2, 1, "the digit '1'"),
        (">a\nMK#V\n", 2, 3, "the character '#'"),
        (">a\nMK\xe9V\n", 2, 3, "the character 'é'"),
    ],
)
def test_gaps_digits_and_symbols_are_never_residues(tmp_path, text, line, column, phrase):
    """Under every alphabet policy: the reader stops before a policy could map them to X."""
    for fasta, message in format_errors(tmp_path, text, "gapped"):
        assert f"{fasta}, line {line}: record 'a' holds {phrase} at column {column}" in message
        assert "only letters are residues" in message


def test_bytes_that_are_not_utf8_are_named_never_replaced(tmp_path):
    header = tmp_path / "header.fa"
    header.write_bytes(b">a ok\nMK\n>b caf\xe9 protein\nMK\n")
    with pytest.raises(FastaFormatError, match=r"header.fa, line 3: the header holds the byte 0xe9 "
                                               r"\(not UTF-8\) at column 7"):
        list(read_fasta(header))
    # Two IDs that differ only in an invalid byte are not merged into one (and reported as duplicates).
    ids = tmp_path / "ids.fa"
    ids.write_bytes(b">p\xff\nMK\n>p\xfe\nMK\n")
    with pytest.raises(FastaFormatError, match="line 1: the header holds the byte 0xff"):
        list(read_fasta(ids))
    sequence = tmp_path / "sequence.fa"
    sequence.write_bytes(b">a\nMK\xffV\n")
    with pytest.raises(FastaFormatError, match="line 2: record 'a' holds the byte 0xff \\(not UTF-8\\)"):
        list(read_fasta(sequence))
    # Valid UTF-8 beyond ASCII in a description is fine.
    fine = tmp_path / "fine.fa"
    fine.write_bytes(">a café protein\nMK\n".encode())
    assert list(read_fasta(fine)) == [FastaRecord("a", "café protein", "MK", 1)]


def test_damaged_gzip_is_blamed_on_the_archive(tmp_path):
    """A corrupt archive whose bytes still decompress (stored blocks) fails its CRC: the message
    says so instead of blaming the record the damage lands in."""
    data = bytearray(gzip.compress(b">a\nMKVLLA\n>b\nMKVLLA\n", compresslevel=0, mtime=0))
    data[data.index(b"VLLA")] = ord("7")
    fasta = tmp_path / "damaged.fa.gz"
    fasta.write_bytes(bytes(data))
    with pytest.raises(FastaFormatError) as info:
        list(read_fasta(fasta))
    message = str(info.value)
    assert message.startswith(f"{fasta}: the gzip archive is damaged (CRC check failed")
    assert "record 'a' holds the digit '7'" in message


def test_uniprot_accession():
    assert uniprot_accession("sp|P12345|NAME_HUMAN") == "P12345"
    assert uniprot_accession("tr|A0A024R161|A0A024R161_HUMAN") == "A0A024R161"
    assert uniprot_accession("sp|P12345") == "P12345"
    assert uniprot_accession("UniRef50_Q9XYZ1") == "Q9XYZ1"
    assert uniprot_accession("UniRef90_UPI0000001234") == "UPI0000001234"
    for other in ("P12345", "gi|12345|ref|NP_1", "UniRefX_Q1", "my_protein"):
        assert uniprot_accession(other) == other


def test_write_fasta_round_trip(tmp_path):
    records = [FastaRecord("a", "desc here", "M" * 130, 1), FastaRecord("b", "", "KL", 4)]
    out = tmp_path / "sub" / "w.fa"
    write_fasta(records, out, line_width=60)
    lines = out.read_text().splitlines()
    assert lines[0] == ">a desc here"
    assert [len(line) for line in lines[1:4]] == [60, 60, 10]
    assert lines[4] == ">b"
    assert [r[:3] for r in read_fasta(out)] == [r[:3] for r in records]
    assert read_sequences(out) == [("a", "M" * 130), ("b", "KL")]


# -- alphabet policy ----------------------------------------------------------------------------


def test_clean_sequence_policies():
    report = AlphabetReport()
    assert clean_sequence("MKV", ESM_ALPHABET, "error", report=report) == "MKV"
    assert clean_sequence("MBKZB", ESM_ALPHABET, "map_to_unknown", report=report) == "MXKXX"
    assert clean_sequence("MUK", ESM_ALPHABET, "skip", report=report) is None
    with pytest.raises(AlphabetError, match=r"'O' at position 3"):
        clean_sequence("MKOUO", ESM_ALPHABET, "error", report=report)
    assert report.as_dict() == {
        "sequences_checked": 4,
        "sequences_with_unknown": 3,
        "residues_mapped": 3,
        "sequences_skipped": 1,
        "letter_counts": {"B": 2, "O": 2, "U": 2, "Z": 1},
    }
    with pytest.raises(ValueError, match="policy"):
        clean_sequence("MK", ESM_ALPHABET, "drop")
    with pytest.raises(ValueError, match="unknown letter"):
        clean_sequence("MK", frozenset(RESIDUES), "map_to_unknown")


def alphabet_fixture(tmp_path: Path) -> Path:
    """20 records; records 3, 8 and 15 hold U / B letters."""
    text = []
    for i, record in enumerate(make_records(20, seed=1)):
        seq = record.sequence
        if i in (3, 8, 15):
            seq = seq[:2] + ("UU" if i == 8 else "B") + seq[2:]
        text.append(f">r{i}\n{seq}\n")
    return write_text(tmp_path / "alpha.fa", "".join(text))


def test_sample_map_to_unknown_counts_residues(tmp_path):
    fasta = alphabet_fixture(tmp_path)
    stats, paths = run_sample(tmp_path, fasta, n=20, n_shards=1, policy="map_to_unknown")
    assert stats["sampled"] == 20
    assert stats["alphabet"]["sequences_with_unknown"] == 3
    assert stats["alphabet"]["residues_mapped"] == 4
    assert stats["alphabet"]["letter_counts"] == {"B": 2, "U": 2}
    sampled = dict(read_sequences(paths["sample_out"]))
    assert sampled["r8"][2:4] == "XX" and set("".join(sampled.values())) <= ESM_ALPHABET


def test_sample_skip_drops_before_sampling(tmp_path):
    fasta = alphabet_fixture(tmp_path)
    for seed in range(5):
        stats, paths = run_sample(tmp_path, fasta, n=17, seed=seed, n_shards=2, policy="skip")
        ids = [seq_id for seq_id, _ in read_sequences(paths["sample_out"])]
        assert len(ids) == 17 and stats["sampled"] == 17
        assert not {"r3", "r8", "r15"} & set(ids)
        assert stats["alphabet"]["sequences_skipped"] == 3
        assert stats["candidates"] == 17


def test_sample_error_policy_names_letter_line_and_key(tmp_path):
    fasta = alphabet_fixture(tmp_path)
    key = "datasets.uniref50.alphabet_policy"
    with pytest.raises(AlphabetError) as info:
        run_sample(tmp_path, fasta, n=5, policy="error", config_key=key)
    message = str(info.value)
    assert f"{fasta}, line 7:" in message  # record r3
    assert "'B'" in message and key in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# -- sampling -----------------------------------------------------------------------------------


def test_reservoir_is_deterministic_and_seed_dependent():
    records = make_records(300)
    first = reservoir_sample(records, 20, seed=7, max_length=1022)
    assert first == reservoir_sample(iter(records), 20, seed=7, max_length=1022)
    assert first != reservoir_sample(records, 20, seed=8, max_length=1022)
    assert [r.line for r in first] == sorted(r.line for r in first)


def test_reservoir_returns_all_when_fewer_pass():
    records = make_records(10)
    assert reservoir_sample(records, 50, seed=0, max_length=1022) == records


def test_reservoir_is_uniform():
    records = make_records(1000, min_len=1, max_len=1)
    n_seeds = 400
    inclusions = Counter()
    for seed in range(n_seeds):
        sample = reservoir_sample(records, 100, seed=seed, max_length=10)
        assert len(sample) == 100
        inclusions.update(r.seq_id for r in sample)
    freq = [inclusions[r.seq_id] / n_seeds for r in records]
    # Each record: expected 0.1, sd 0.015; the bound is 5 sd.
    assert all(abs(f - 0.1) < 0.075 for f in freq)
    # Position bias (the usual reservoir bug) shows in block means: sd 0.0015 per block of 100.
    for block in range(10):
        assert abs(sum(freq[block * 100 : (block + 1) * 100]) / 100 - 0.1) < 0.01


def test_length_filter_bounds_inclusive():
    records = [FastaRecord(f"s{n}", "", "M" * n, n) for n in range(1, 21)]
    sample = reservoir_sample(records, 100, seed=0, max_length=12, min_length=5)
    assert [len(r.sequence) for r in sample] == list(range(5, 13))


def test_sample_fasta_plain_and_gzip_agree(tmp_path):
    text = "".join(f">r{i} d{i}\n{r.sequence}\n" for i, r in enumerate(make_records(200)))
    plain = write_text(tmp_path / "in.fa", text)
    gzipped = write_text(tmp_path / "in.fa.gz", text)
    stats_plain, paths = run_sample(tmp_path, plain, n=25, seed=4, max_length=40, min_length=10)
    sample_plain = paths["sample_out"].read_text()
    stats_gz, paths = run_sample(tmp_path, gzipped, n=25, seed=4, max_length=40, min_length=10)
    assert paths["sample_out"].read_text() == sample_plain
    stats_plain.pop("input"), stats_gz.pop("input")
    assert stats_plain == stats_gz
    lengths = [len(s) for _, s in read_sequences(paths["sample_out"])]
    assert len(lengths) == 25 and all(10 <= n <= 40 for n in lengths)
    expected = reservoir_sample(read_fasta(plain), 25, seed=4, max_length=40, min_length=10)
    assert read_sequences(paths["sample_out"]) == [(r.seq_id, r.sequence) for r in expected]


def test_shards_partition_sample_with_balanced_residues(tmp_path):
    text = "".join(
        f">r{i}\n{r.sequence}\n" for i, r in enumerate(make_records(400, min_len=5, max_len=300))
    )
    fasta = write_text(tmp_path / "in.fa", text)
    stats, paths = run_sample(tmp_path, fasta, n=120, seed=2, n_shards=4)
    sample = read_sequences(paths["sample_out"])
    order = {seq_id: i for i, (seq_id, _) in enumerate(sample)}
    rows = [line.split("\t") for line in paths["lengths_out"].read_text().splitlines()]
    assert rows[0] == ["seq_id", "length", "shard"]
    assert [(r[0], int(r[1])) for r in rows[1:]] == [(i, len(s)) for i, s in sample]
    shard_of = {r[0]: int(r[2]) for r in rows[1:]}

    seen = []
    totals = []
    for shard, path in enumerate(paths["shard_outs"]):
        content = read_sequences(path)
        assert all(shard_of[seq_id] == shard for seq_id, _ in content)
        assert [order[i] for i, _ in content] == sorted(order[i] for i, _ in content)
        assert stats["shards"][shard] == {
            "shard": shard, "sequences": len(content), "residues": sum(len(s) for _, s in content)
        }
        seen += content
        totals.append(sum(len(s) for _, s in content))
    assert sorted(seen) == sorted(sample)
    assert max(totals) - min(totals) <= max(len(s) for _, s in sample)
    assert stats["residues"] == sum(totals)
    assert stats["max_length_sampled"] == max(len(s) for _, s in sample)


def test_failed_call_leaves_no_output(tmp_path):
    fasta = write_text(tmp_path / "in.fa", ">a\nMKV\n>b\nMK\n>a\nMK\n")
    with pytest.raises(FastaFormatError, match="line 5"):
        run_sample(tmp_path, fasta, n=2, n_shards=2)
    with pytest.raises(ValueError, match="no sequence passes"):
        run_sample(tmp_path, write_text(tmp_path / "ok.fa", ">a\nMKV\n"), n=2, max_length=2)
    with pytest.raises(ValueError, match="cannot fill 3 shards"):
        run_sample(tmp_path, write_text(tmp_path / "ok.fa", ">a\nMKV\n"), n=2, n_shards=3)
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir())


def test_real_uniprot_sample(tmp_path):
    stats, paths = run_sample(tmp_path, UNIPROT_SAMPLE, n=50, seed=11, n_shards=2, max_length=1022)
    assert stats["records_read"] == 20000
    assert stats["sampled"] == 50 and stats["max_length_sampled"] <= 1022
    sample = read_sequences(paths["sample_out"])
    assert len(sample) == 50 and all(len(s) <= 1022 for _, s in sample)
    again = reservoir_sample(read_fasta(UNIPROT_SAMPLE), 50, seed=11, max_length=1022)
    assert [r.seq_id for r in again] == [seq_id for seq_id, _ in sample]
