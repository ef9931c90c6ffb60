"""FASTA files as streams: read (plain or gzip, detected by magic bytes) with format checks as
it goes and duplicate detection at ~16 bytes per ID, and write atomically.

A UniRef50 FASTA holds ~60M records, so nothing here loads a whole file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import string
import zlib
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import numpy as np

from protsae.files import atomic_path

_GZIP_MAGIC = b"\x1f\x8b"
_RESIDUE_CHARS = frozenset(string.ascii_letters + "*")
"""Characters of a sequence line: ASCII letters, and ``*`` (a stop, dropped at the end)."""


_DUPLICATE_CHUNK = 1 << 20
"""IDs held in a dict before they are merged into the sorted hash array (see `_SeenIds`)."""


class FastaFormatError(ValueError):
    """Malformed FASTA input; the message names the file and the line."""


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


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as probe:
        return probe.read(2) == _GZIP_MAGIC


def open_text(path: Path) -> io.TextIOBase:
    """Open ``path`` for reading text, decompressing when it starts with the gzip magic bytes.

    Bytes that are not UTF-8 become lone surrogates (``surrogateescape``), never a silent U+FFFD,
    so `read_fasta` can name the line that holds one.
    """
    if is_gzip(path):
        return gzip.open(path, "rt", encoding="utf-8", errors="surrogateescape")
    return open(path, encoding="utf-8", errors="surrogateescape")


def _gzip_damage(path: Path) -> str | None:
    """Why the gzip archive at ``path`` is damaged (a failed CRC or length check, a truncated or
    corrupt stream), or None when it decompresses intact."""
    try:
        with gzip.open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        return str(err) or type(err).__name__
    return None


def _not_utf8(char: str) -> bool:
    """A lone surrogate: the stand-in ``surrogateescape`` decodes an invalid byte to."""
    return "\udc80" <= char <= "\udcff"


def _describe_char(char: str) -> str:
    if _not_utf8(char):
        return f"the byte 0x{ord(char) - 0xDC00:02x} (not UTF-8)"
    if char in "-.":
        return f"the gap character {char!r}"
    if char.isdigit():
        return f"the digit {char!r}"
    return f"the character {char!r}"


def _check_header(path: Path, line_no: int, text: str) -> None:
    """A header must be UTF-8: a replaced byte would silently change (and may merge) IDs."""
    if text.isascii():
        return
    for column, char in enumerate(text.rstrip("\r\n"), start=1):
        if _not_utf8(char):
            raise FastaFormatError(
                f"{path}, line {line_no}: the header holds {_describe_char(char)} at column {column}; "
                "re-encode the file as UTF-8"
            )


def _check_residues(path: Path, line_no: int, text: str, seq_id: str) -> None:
    """Only letters (and ``*``, a stop) are residues; gaps, digits and anything else would shift
    every later position if they were kept or mapped to an unknown residue."""
    for column, char in enumerate(text, start=1):
        if char not in _RESIDUE_CHARS and not char.isspace():
            raise FastaFormatError(
                f"{path}, line {line_no}: record {seq_id!r} holds {_describe_char(char)} at column "
                f"{column}; only letters are residues (ungap aligned sequences, strip numbered lines)"
            )


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
    data before the first header, a header with an empty ID, a header that is not UTF-8, a
    sequence line holding anything but letters and ``*`` (gap characters, digits, bytes that are
    not UTF-8: never residues), a header with no sequence (followed by another header or the end
    of the file), a duplicate ID (both lines named; may be raised up to `_DUPLICATE_CHUNK` records
    after the duplicate, see `_SeenIds`), a truncated or corrupt gzip stream, and a file with no
    records at all. When a gzip file's error comes from a damaged archive (its CRC fails, say),
    the message blames the archive first.
    """
    path = Path(path)
    try:
        yield from _read_records(path)
    except FastaFormatError as err:
        already_blamed = isinstance(err.__cause__, (EOFError, gzip.BadGzipFile, zlib.error))
        damage = _gzip_damage(path) if is_gzip(path) and not already_blamed else None
        if damage is None:
            raise
        raise FastaFormatError(
            f"{path}: the gzip archive is damaged ({damage}); fetch it again. What it decompressed to "
            f"fails as: {err}"
        ) from err


def _read_records(path: Path) -> Iterator[FastaRecord]:
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
                    _check_header(path, line_no, text)
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
                if not (residues.isascii() and residues.isalpha()):
                    _check_residues(path, line_no, text, header[0])
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


def write_records(handle: io.TextIOBase, records: Iterable[FastaRecord], line_width: int) -> None:
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
        write_records(handle, records, line_width)

