"""Sequences stage: stream a FASTA file, draw a seeded sample, split it into balanced shards.

A UniRef50 FASTA holds ~60M records, so nothing here loads a whole file: `read_fasta` streams
records (plain or gzip, detected by magic bytes), checks the format as it goes and keeps duplicate
detection at ~16 bytes per ID; `reservoir_sample` draws a uniform sample in one pass (Algorithm R);
`sample_fasta` is the stage function that `workflow/scripts` calls.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import heapq
import io
import os
import random
import statistics
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import numpy as np
from tqdm import tqdm

from protsae.utils import atomic_path

ALPHABET_POLICIES = ("map_to_unknown", "skip", "error")
"""How letters outside a model's alphabet are handled; see `clean_sequence`."""

_GZIP_MAGIC = b"\x1f\x8b"
_DUPLICATE_CHUNK = 1 << 20
"""IDs held in a dict before they are merged into the sorted hash array (see `_SeenIds`)."""


class FastaFormatError(ValueError):
    """Malformed FASTA input; the message names the file and the line."""


class AlphabetError(ValueError):
    """A residue letter outside the alphabet under the ``error`` policy; the message names it."""


class FastaRecord(NamedTuple):
    """One FASTA record.

    seq_id: first whitespace-separated word of the header, without ``>``.
    description: rest of the header after the ID, stripped ("" when there is none).
    sequence: residues, whitespace removed, upper-cased, one trailing ``*`` (stop) dropped.
    line: 1-based line number of the header in the file it came from.
    """

    seq_id: str
    description: str
    sequence: str
    line: int


# -- reading ------------------------------------------------------------------------------------


def open_text(path: Path) -> io.TextIOBase:
    """Open ``path`` for reading text, decompressing when it starts with the gzip magic bytes."""
    with open(path, "rb") as probe:
        is_gzip = probe.read(2) == _GZIP_MAGIC
    # errors="replace": a stray byte in a description must not stop a 60M-record pass; in a
    # sequence line it becomes U+FFFD, which the alphabet policy then reports as a letter.
    if is_gzip:
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _id_hash(seq_id: str) -> int:
    """64-bit hash of an ID (blake2b, so it is the same in every process)."""
    return int.from_bytes(hashlib.blake2b(seq_id.encode(), digest_size=8).digest(), "little")


def _header_ids_at(path: Path, lines: set[int]) -> dict[int, str]:
    """Record IDs of the headers at the given 1-based line numbers (a second, partial pass)."""
    found: dict[int, str] = {}
    last = max(lines)
    with open_text(path) as handle:
        for line_no, text in enumerate(handle, start=1):
            if line_no in lines:
                words = text[1:].split(None, 1)
                found[line_no] = words[0] if words else ""
            if line_no >= last:
                break
    return found


class _SeenIds:
    """Exact duplicate-ID detection at ~16 bytes per ID.

    A Python set of 60M ID strings needs ~6 GB, a set of 60M Python ints ~4 GB. Instead each ID is
    reduced to a 64-bit blake2b hash; recent hashes live in a dict (hash -> header line) that is
    merged, every `_DUPLICATE_CHUNK` IDs, into a sorted numpy uint64 array with a parallel array of
    header lines (8 + 8 bytes per ID). A duplicate within the dict is found at once; one against the
    sorted array when the dict is merged, so it can be reported up to `_DUPLICATE_CHUNK` records
    late (still with both line numbers).

    A hash hit is confirmed by re-reading the headers concerned from the file, so the check stays
    exact: two different IDs that share a hash (probability ~1e-4 over 60M IDs) are not reported,
    and the later one is remembered by name in `_collided`.
    """

    def __init__(self, path: Path, chunk_size: int | None = None) -> None:
        self.path = path
        self.chunk_size = chunk_size or _DUPLICATE_CHUNK
        self._recent: dict[int, int] = {}
        self._hashes = np.empty(0, dtype=np.uint64)
        self._lines = np.empty(0, dtype=np.int64)
        self._collided: dict[str, int] = {}

    def add(self, seq_id: str, line: int) -> None:
        """Record ``seq_id`` seen at header ``line``; raise `FastaFormatError` on a duplicate."""
        if seq_id in self._collided:
            self._raise_duplicate(seq_id, self._collided[seq_id], line)
        key = _id_hash(seq_id)
        recent = self._recent.get(key)
        if recent is None:
            self._recent[key] = line
            if len(self._recent) >= self.chunk_size:
                self.flush()
            return
        # Every earlier ID with this hash is the recent one, the sorted array's one (if any; the
        # array holds each hash once) or a name in `_collided`, already checked above.
        holders = {recent}
        position = int(np.searchsorted(self._hashes, np.uint64(key)))
        if position < len(self._hashes) and self._hashes[position] == np.uint64(key):
            holders.add(int(self._lines[position]))
        ids = _header_ids_at(self.path, holders)
        for first in sorted(holders):
            if ids[first] == seq_id:
                self._raise_duplicate(seq_id, first, line)
        self._collided[seq_id] = line

    def flush(self) -> None:
        """Check the recent IDs against the sorted array, then merge them into it."""
        if not self._recent:
            return
        hashes = np.fromiter(self._recent.keys(), dtype=np.uint64, count=len(self._recent))
        lines = np.fromiter(self._recent.values(), dtype=np.int64, count=len(self._recent))
        self._recent = {}
        order = np.argsort(hashes, kind="stable")
        hashes, lines = hashes[order], lines[order]
        positions = np.searchsorted(self._hashes, hashes)
        if len(self._hashes):
            hit = self._hashes[np.minimum(positions, len(self._hashes) - 1)] == hashes
            if hit.any():
                self._resolve_hits(self._lines[positions[hit]].tolist(), lines[hit].tolist())
                # Every hit left is a collision: its ID is now in `_collided`, not in the array.
                hashes, lines, positions = hashes[~hit], lines[~hit], positions[~hit]
        self._hashes = np.insert(self._hashes, positions, hashes)
        self._lines = np.insert(self._lines, positions, lines)

    def _resolve_hits(self, first_lines: list[int], later_lines: list[int]) -> None:
        """Raise on the earliest real duplicate among hash hits; remember collisions by name."""
        ids = _header_ids_at(self.path, set(first_lines) | set(later_lines))
        for first, later in sorted(zip(first_lines, later_lines), key=lambda pair: pair[1]):
            if ids[first] == ids[later]:
                self._raise_duplicate(ids[later], first, later)
        for later in later_lines:
            self._collided[ids[later]] = later

    def _raise_duplicate(self, seq_id: str, first: int, line: int) -> None:
        raise FastaFormatError(
            f"{self.path}, line {line}: duplicate ID {seq_id!r} (first seen at line {first})"
        )


def read_fasta(path: str | os.PathLike) -> Iterator[FastaRecord]:
    """Stream the records of a FASTA file, plain or gzip (detected by magic bytes), in one pass.

    Blank lines are ignored. Raises `FastaFormatError` naming the file and the line for: sequence
    data before the first header, a header with an empty ID, a header with no sequence (followed
    by another header or the end of the file), a duplicate ID (both lines named; may be raised up
    to `_DUPLICATE_CHUNK` records after the duplicate, see `_SeenIds`), a truncated or corrupt gzip
    stream, and a file with no records at all.
    """
    path = Path(path)
    seen = _SeenIds(path)
    header: tuple[str, str, int] | None = None
    parts: list[str] = []
    line_no = 0

    def finish() -> FastaRecord:
        seq_id, description, header_line = header
        sequence = "".join(parts).upper()
        if sequence.endswith("*"):
            sequence = sequence[:-1]
        if not sequence:
            raise FastaFormatError(
                f"{path}, line {header_line}: record {seq_id!r} has no sequence"
            )
        return FastaRecord(seq_id, description, sequence, header_line)

    handle = open_text(path)
    try:
        with handle:
            for line_no, text in enumerate(handle, start=1):
                if text.startswith(">"):
                    if header is not None:
                        yield finish()
                    words = text[1:].split(None, 1)
                    if not words:
                        raise FastaFormatError(f"{path}, line {line_no}: header has an empty ID")
                    seen.add(words[0], line_no)
                    header = (words[0], words[1].strip() if len(words) > 1 else "", line_no)
                    parts = []
                    continue
                residues = "".join(text.split())
                if not residues:
                    continue
                if header is None:
                    raise FastaFormatError(
                        f"{path}, line {line_no}: sequence data before the first '>' header"
                    )
                parts.append(residues)
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise FastaFormatError(f"{path}, after line {line_no}: cannot read: {err}") from err
    if header is None:
        what = "empty file" if line_no == 0 else f"{line_no} lines"
        raise FastaFormatError(f"{path}, line {line_no}: no FASTA records ({what})")
    record = finish()
    seen.flush()
    yield record


def read_sequences(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Read a (small) FASTA file, e.g. one shard, as a list of ``(seq_id, sequence)``."""
    return [(record.seq_id, record.sequence) for record in read_fasta(path)]


def uniprot_accession(seq_id: str) -> str:
    """UniProt accession in a record ID; other IDs unchanged.

    ``sp|P12345|NAME_HUMAN`` and ``sp|P12345`` (also ``tr|``) give ``P12345``;
    ``UniRef50_Q9XYZ1`` gives ``Q9XYZ1``.
    """
    fields = seq_id.split("|")
    if len(fields) >= 2 and fields[0] in ("sp", "tr") and fields[1]:
        return fields[1]
    prefix, sep, rest = seq_id.partition("_")
    if sep and rest and prefix.startswith("UniRef") and prefix[6:].isdigit():
        return rest
    return seq_id


# -- writing ------------------------------------------------------------------------------------


def _write_records(handle: io.TextIOBase, records: Iterable[FastaRecord], line_width: int) -> None:
    for record in records:
        header = f"{record.seq_id} {record.description}" if record.description else record.seq_id
        seq = record.sequence
        body = "\n".join(seq[i : i + line_width] for i in range(0, len(seq), line_width))
        handle.write(f">{header}\n{body}\n")


def write_fasta(
    records: Iterable[FastaRecord], path: str | os.PathLike, line_width: int = 60
) -> None:
    """Write records as FASTA (``>seq_id description``, ``line_width`` residues a line), atomically.
    """
    if line_width < 1:
        raise ValueError(f"line_width must be >= 1, got {line_width}")
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        _write_records(handle, records, line_width)


# -- alphabet policy ----------------------------------------------------------------------------


@dataclass
class AlphabetReport:
    """What an alphabet policy did, for the stage log and stats.

    sequences_checked: sequences passed to `clean_sequence`.
    sequences_with_unknown: those holding at least one letter outside the alphabet.
    residues_mapped: residues replaced by the unknown letter (``map_to_unknown``).
    sequences_skipped: sequences dropped (``skip``).
    letter_counts: occurrences of each letter outside the alphabet, over all checked sequences.
    """

    sequences_checked: int = 0
    sequences_with_unknown: int = 0
    residues_mapped: int = 0
    sequences_skipped: int = 0
    letter_counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        report = asdict(self)
        report["letter_counts"] = dict(sorted(self.letter_counts.items()))
        return report


def _check_policy(alphabet: set[str] | frozenset[str], policy: str, unknown: str) -> None:
    if policy not in ALPHABET_POLICIES:
        raise ValueError(f"alphabet policy must be one of {ALPHABET_POLICIES}, got {policy!r}")
    if policy == "map_to_unknown" and unknown not in alphabet:
        raise ValueError(f"the unknown letter {unknown!r} is not in the alphabet")


def clean_sequence(
    seq: str,
    alphabet: set[str] | frozenset[str],
    policy: str = "map_to_unknown",
    unknown: str = "X",
    report: AlphabetReport | None = None,
) -> str | None:
    """Apply an alphabet policy to one sequence.

    policy: ``map_to_unknown`` replaces every letter outside ``alphabet`` by ``unknown`` (which
        must be in the alphabet); ``skip`` returns None, i.e. the caller drops the sequence;
        ``error`` raises `AlphabetError` naming the first such letter and its 1-based position.
    report: updated in place when given.
    Returns the sequence (unchanged when every letter is in the alphabet) or None.
    """
    _check_policy(alphabet, policy, unknown)
    if report is not None:
        report.sequences_checked += 1
    outside = set(seq).difference(alphabet)
    if not outside:
        return seq
    counts = {letter: seq.count(letter) for letter in sorted(outside)}
    if report is not None:
        report.sequences_with_unknown += 1
        for letter, count in counts.items():
            report.letter_counts[letter] = report.letter_counts.get(letter, 0) + count
    if policy == "error":
        position, letter = min((seq.index(letter), letter) for letter in outside)
        raise AlphabetError(
            f"residue {letter!r} at position {position + 1} is not in the alphabet "
            f"({len(counts)} distinct letter(s) outside it: {', '.join(counts)})"
        )
    if policy == "skip":
        if report is not None:
            report.sequences_skipped += 1
        return None
    if report is not None:
        report.residues_mapped += sum(counts.values())
    return seq.translate(str.maketrans({letter: unknown for letter in outside}))


# -- sampling -----------------------------------------------------------------------------------


def _passes_length(record: FastaRecord, min_length: int, max_length: int) -> bool:
    return min_length <= len(record.sequence) <= max_length


def _algorithm_r(records: Iterable[FastaRecord], n: int, seed: int) -> list[FastaRecord]:
    """Uniform sample of ``n`` records in one pass (Vitter's Algorithm R), in input order."""
    if n < 1:
        raise ValueError(f"sample size must be >= 1, got {n}")
    rng = random.Random(seed)
    reservoir: list[tuple[int, FastaRecord]] = []
    for index, record in enumerate(records):
        if index < n:
            reservoir.append((index, record))
        else:
            slot = rng.randrange(index + 1)
            if slot < n:
                reservoir[slot] = (index, record)
    reservoir.sort(key=lambda item: item[0])
    return [record for _, record in reservoir]


def reservoir_sample(
    records: Iterable[FastaRecord], n: int, seed: int, max_length: int, min_length: int = 1
) -> list[FastaRecord]:
    """Seeded uniform sample of ``n`` records with ``min_length <= length <= max_length``.

    One pass (Algorithm R with `random.Random(seed)`), deterministic for a given seed and input.
    Returns the sampled records in input order; all passing records when fewer than ``n`` pass.
    """
    return _algorithm_r(
        (r for r in records if _passes_length(r, min_length, max_length)), n, seed
    )


def _assign_shards(lengths: list[int], n_shards: int) -> list[int]:
    """Shard index per sequence: longest first into the lightest shard (ties: lowest index)."""
    shard_of = [0] * len(lengths)
    heap = [(0, shard) for shard in range(n_shards)]
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        residues, shard = heapq.heappop(heap)
        shard_of[index] = shard
        heapq.heappush(heap, (residues + lengths[index], shard))
    return shard_of


def sample_fasta(
    fasta_in: str | os.PathLike,
    sample_out: str | os.PathLike,
    lengths_out: str | os.PathLike,
    shard_outs: list[str | os.PathLike],
    n: int,
    max_length: int,
    seed: int,
    alphabet: set[str] | frozenset[str],
    policy: str = "map_to_unknown",
    unknown: str = "X",
    min_length: int = 1,
    progress: bool = True,
    config_key: str = "datasets.<name>.alphabet_policy",
) -> dict:
    """Sequences stage: draw ``n`` sequences from ``fasta_in`` and write them whole and in shards.

    Per record, in one streaming pass: length filter (``min_length <= length <= max_length``),
    then the alphabet policy (so ``skip`` drops a record before sampling and the sample still has
    ``n`` sequences), then Algorithm R seeded with ``seed``. With ``map_to_unknown`` the sample is
    the one `reservoir_sample` draws with the same seed. ``config_key`` is named in the error that
    the ``error`` policy raises.

    Outputs, all written atomically and only after the whole input was read without error:
    ``sample_out``: the sample as FASTA, input order, 60 residues a line.
    ``lengths_out``: TSV with header ``seq_id  length  shard`` (0-based shard index), sample order.
    ``shard_outs``: one FASTA per shard. Sequences are assigned longest first to the shard with
        the fewest residues, so residue totals differ by at most one sequence's length; within a
        shard sequences keep sample order.

    Returns stats for the caller to log and write as JSON: records read, passing the length
    filter, candidates (passing both filters), sampled, residues, min/median/max length, per-shard
    sequences and residues, and the `AlphabetReport` (counted over records that pass the length
    filter). ``sampled < n`` means fewer than ``n`` candidates existed.
    """
    fasta_in = Path(fasta_in)
    _check_policy(alphabet, policy, unknown)
    if not shard_outs:
        raise ValueError("need at least one shard output")
    if not 1 <= min_length <= max_length:
        raise ValueError(f"need 1 <= min_length <= max_length, got {min_length}, {max_length}")
    report = AlphabetReport()
    counts = {"records_read": 0, "passing_length_filter": 0}

    def candidates() -> Iterator[FastaRecord]:
        records = tqdm(
            read_fasta(fasta_in), desc=f"sampling {fasta_in.name}", unit="seq",
            disable=not progress, mininterval=5.0,
        )
        for record in records:
            counts["records_read"] += 1
            if not _passes_length(record, min_length, max_length):
                continue
            counts["passing_length_filter"] += 1
            try:
                cleaned = clean_sequence(record.sequence, alphabet, policy, unknown, report)
            except AlphabetError as err:
                raise AlphabetError(
                    f"{fasta_in}, line {record.line}: record {record.seq_id!r}: {err}; "
                    f"set {config_key} to 'map_to_unknown' or 'skip' to accept such sequences"
                ) from err
            if cleaned is not None:
                yield record._replace(sequence=cleaned)

    sample = _algorithm_r(candidates(), n, seed)
    n_candidates = counts["passing_length_filter"] - report.sequences_skipped
    if not sample:
        raise ValueError(
            f"{fasta_in}: no sequence passes the filters ({counts['records_read']} read, "
            f"{counts['passing_length_filter']} with length in [{min_length}, {max_length}], "
            f"{report.sequences_skipped} skipped by the alphabet policy)"
        )
    if len(sample) < len(shard_outs):
        raise ValueError(
            f"{fasta_in}: {len(sample)} sampled sequences cannot fill {len(shard_outs)} shards"
        )

    lengths = [len(record.sequence) for record in sample]
    shard_of = _assign_shards(lengths, len(shard_outs))
    with contextlib.ExitStack() as stack:
        tmp_sample = stack.enter_context(atomic_path(sample_out))
        tmp_lengths = stack.enter_context(atomic_path(lengths_out))
        tmp_shards = [stack.enter_context(atomic_path(out)) for out in shard_outs]
        with open(tmp_sample, "w") as handle:
            _write_records(handle, sample, 60)
        with open(tmp_lengths, "w") as handle:
            handle.write("seq_id\tlength\tshard\n")
            for record, length, shard in zip(sample, lengths, shard_of):
                handle.write(f"{record.seq_id}\t{length}\t{shard}\n")
        for shard, tmp in enumerate(tmp_shards):
            with open(tmp, "w") as handle:
                _write_records(handle, (r for r, s in zip(sample, shard_of) if s == shard), 60)

    shards = [{"shard": shard, "sequences": 0, "residues": 0} for shard in range(len(shard_outs))]
    for length, shard in zip(lengths, shard_of):
        shards[shard]["sequences"] += 1
        shards[shard]["residues"] += length
    return {
        "input": str(fasta_in),
        "seed": seed,
        "requested": n,
        "min_length": min_length,
        "max_length": max_length,
        "alphabet_policy": policy,
        "records_read": counts["records_read"],
        "passing_length_filter": counts["passing_length_filter"],
        "candidates": n_candidates,
        "sampled": len(sample),
        "residues": sum(lengths),
        "min_length_sampled": min(lengths),
        "median_length_sampled": statistics.median(lengths),
        "max_length_sampled": max(lengths),
        "shards": shards,
        "alphabet": report.as_dict(),
    }
