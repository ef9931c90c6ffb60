"""Stage 1: a seeded uniform sample of a FASTA in one pass (Algorithm R), its residues checked
against the model's alphabet, split into shards balanced by residues. `sample_fasta` is the stage
function that `workflow/scripts` calls.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import random
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from tqdm import tqdm

from protsae.files import atomic_path
from protsae.sequences.fasta import FastaRecord, read_fasta, write_records

ALPHABET_POLICIES = ("map_to_unknown", "skip", "error")
"""How letters outside a model's alphabet are handled; see `clean_sequence`."""


class AlphabetError(ValueError):
    """A residue letter outside the alphabet under the ``error`` policy; the message names it."""


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
        raise ValueError(f"the unknown letter {unknown!r} is not in the alphabet: the model has no token for "
                         f"unknown residues; use alphabet_policy skip or error")


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
            write_records(handle, sample, 60)
        with open(tmp_lengths, "w") as handle:
            handle.write("seq_id\tlength\tshard\n")
            for record, length, shard in zip(sample, lengths, shard_of):
                handle.write(f"{record.seq_id}\t{length}\t{shard}\n")
        for shard, tmp in enumerate(tmp_shards):
            with open(tmp, "w") as handle:
                write_records(handle, (r for r, s in zip(sample, shard_of) if s == shard), 60)

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

