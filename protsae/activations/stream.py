"""Stream cached residual-stream activations as shuffled token batches.

The caching stage writes Parquet shards with one row per residue: ``seq_id`` (string), ``pos``
(int32) and ``act`` (float16 or float32 rows of d_model, in either layout of
`protsae.activations.storage`). Training reads them with
`ActivationStream`: record batches are decoded column-wise (no per-row Python), pushed through a
bounded shuffle buffer, and emitted as ``(batch_size, d_model)`` float32 tensors. Memory is the
buffer plus one record batch, whatever the size of the cache.

A held-out split is drawn by sequence, not by token, so that evaluation never sees a residue of a
protein the SAE was trained on: `is_heldout` hashes each unique ``seq_id`` with the split seed.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from protsae.activations.storage import column_dtype, column_width, read_acts

ACT_COLUMN = "act"
SEQ_ID_COLUMN = "seq_id"


def shard_d_model(path: str | os.PathLike) -> int:
    """``d_model`` of one shard: the ``act`` row width, checked against the ``d_model`` metadata."""
    schema = pq.read_schema(path)
    try:
        d_model = column_width(schema.field(ACT_COLUMN))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    meta = schema.metadata or {}
    # The caching stage writes metadata values as JSON.
    if b"d_model" in meta and int(json.loads(meta[b"d_model"])) != d_model:
        raise ValueError(f"{path}: metadata d_model={meta[b'd_model']!r} but act has {d_model} values")
    return d_model


def _heldout_ids(ids: pa.Array, holdout_fraction: float, seed: int) -> np.ndarray:
    """For each id of ``ids`` (unique ids, one hash each), whether it is held out: bool."""
    if holdout_fraction <= 0.0:
        return np.zeros(len(ids), dtype=bool)
    if holdout_fraction >= 1.0:
        return np.ones(len(ids), dtype=bool)
    key = seed.to_bytes(8, "little", signed=True)
    threshold = int(holdout_fraction * 2**64)
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(seq_id.encode(), digest_size=8, key=key).digest(), "little")
            < threshold
            for seq_id in ids.to_pylist()
        ),
        dtype=bool,
        count=len(ids),
    )


def _dictionary(seq_ids: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """Unique ids and, per row, the index of its id."""
    encoded = pc.dictionary_encode(seq_ids)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    return encoded.dictionary, encoded.indices.to_numpy(zero_copy_only=False)


def is_heldout(seq_ids: pa.Array | pa.ChunkedArray, holdout_fraction: float, seed: int) -> np.ndarray:
    """Per row, whether its sequence falls in the held-out split: ``(n_rows,)`` bool.

    A sequence is held out when the BLAKE2b hash of its id keyed with ``seed``, read as a number
    in [0, 1), falls below ``holdout_fraction``; the choice depends only on the id and ``seed``,
    so every residue of a protein lands on the same side in every shard and every run. Hashing
    runs once per unique id of the batch (dictionary encoding), not once per row.
    """
    ids, row_index = _dictionary(seq_ids)
    return _heldout_ids(ids, holdout_fraction, seed)[row_index]


def _keep_rows(
    seq_ids: pa.Array, *, keep_heldout: bool, holdout_fraction: float, seed: int, exclude: pa.Array | None
) -> np.ndarray:
    """Per row, whether it belongs to the requested split and is not excluded: bool."""
    ids, row_index = _dictionary(seq_ids)
    keep_id = _heldout_ids(ids, holdout_fraction, seed)
    if not keep_heldout:
        keep_id = ~keep_id
    if exclude is not None:
        keep_id &= ~pc.is_in(ids, value_set=exclude).to_numpy(zero_copy_only=False)
    return keep_id[row_index]


def _iter_rows(
    paths: Sequence[str],
    *,
    keep_heldout: bool,
    holdout_fraction: float,
    holdout_seed: int,
    exclude: pa.Array | None,
    read_batch_rows: int,
) -> Iterator[np.ndarray]:
    """Yield ``(rows, d_model)`` arrays of the selected split, in shard order."""
    for path in paths:
        with pq.ParquetFile(path) as parquet:
            for batch in parquet.iter_batches(batch_size=read_batch_rows, columns=[SEQ_ID_COLUMN, ACT_COLUMN]):
                acts = read_acts(batch)
                keep = _keep_rows(
                    batch.column(SEQ_ID_COLUMN),
                    keep_heldout=keep_heldout,
                    holdout_fraction=holdout_fraction,
                    seed=holdout_seed,
                    exclude=exclude,
                )
                if keep.all():
                    yield acts
                elif keep.any():
                    yield acts[keep]


class ShuffleBuffer:
    """A fixed-capacity row buffer that emits uniformly drawn batches.

    Rows are added in arrival order (`fill`); whenever the buffer is full, ``batch_size`` rows
    drawn at random leave it (`pop`) and the rows at its tail fill their slots. Every added row
    leaves exactly once (the remainder through `drain`). Which slots are drawn and moved depends
    only on the random generator and the number of rows, never on their contents, so a buffer of
    row ids replays the moves of a buffer of activations (`ActivationStream.batches` relies on
    it). The backing array is allocated once: ``capacity * width * itemsize`` bytes throughout.
    """

    def __init__(self, capacity: int, width: int, batch_size: int, dtype: np.dtype, rng: np.random.Generator):
        if capacity < batch_size:
            raise ValueError(f"shuffle buffer ({capacity}) must hold at least one batch ({batch_size})")
        self.rows = np.empty((capacity, width), dtype=dtype)
        self.capacity = capacity
        self.batch_size = batch_size
        self.rng = rng
        self.size = 0
        self.max_size = 0

    @property
    def full(self) -> bool:
        return self.size == self.capacity

    def fill(self, chunk: np.ndarray) -> int:
        """Add the leading rows of ``chunk`` ``(rows, width)`` that fit; returns how many."""
        take = min(self.capacity - self.size, len(chunk))
        self.rows[self.size : self.size + take] = chunk[:take]
        self.size += take
        self.max_size = max(self.max_size, self.size)
        return take

    def push(self, chunk: np.ndarray) -> Iterator[np.ndarray]:
        """Add ``chunk`` ``(rows, width)``, yielding a batch each time the buffer fills."""
        start = 0
        while start < len(chunk):
            start += self.fill(chunk[start:])
            if self.full:
                yield self.pop()

    def pop(self) -> np.ndarray:
        """Remove ``batch_size`` rows drawn uniformly at random; returns them."""
        n, bs = self.size, self.batch_size
        picked = self.rng.choice(n, size=bs, replace=False)
        batch = self.rows[picked]
        tail_start = n - bs
        # Picked rows in the front get refilled from the tail rows that were not picked.
        holes = picked[picked < tail_start]
        tail_picked = np.zeros(bs, dtype=bool)
        tail_picked[picked[picked >= tail_start] - tail_start] = True
        sources = tail_start + np.flatnonzero(~tail_picked)
        self.rows[holes] = self.rows[sources]
        self.size = tail_start
        return batch

    def drain_slots(self, drop_last: bool) -> list[np.ndarray]:
        """Empty the buffer in random order: the slots of each batch (full batches, then the
        remainder unless ``drop_last``); the rows stay readable until the next `fill`."""
        order = self.rng.permutation(self.size)
        stop = len(order) if not drop_last else len(order) - len(order) % self.batch_size
        self.size = 0
        return [order[start : start + self.batch_size] for start in range(0, stop, self.batch_size)]

    def drain(self, drop_last: bool) -> Iterator[np.ndarray]:
        """Empty the buffer in random order: full batches, then the remainder unless ``drop_last``."""
        for slots in self.drain_slots(drop_last):
            yield self.rows[slots]


class _Piece(NamedTuple):
    """Up to ``read_batch_rows`` consecutive rows of one row group and the rows the split keeps."""

    parquet: pq.ParquetFile
    shard: int
    group: int
    start: int
    """First row of the piece within its row group."""
    keep: np.ndarray
    """Per row of the piece, whether it is in the stream: bool."""
    ids: np.ndarray
    """Stream-wide ids of the kept rows (shard offset + row number in the shard): int64."""


class ActivationStream:
    """Shuffled ``(batch_size, d_model)`` token batches from activation shards.

    Each epoch visits the shards, and the row groups inside each, in an order drawn from ``seed``;
    each row group is read in pieces of ``read_batch_rows`` rows, which pass through a
    `ShuffleBuffer` of ``shuffle_buffer`` tokens, carried over from one epoch to the next.
    ``epochs=None`` streams forever; with an integer, the buffer is drained at the end and the
    last partial batch is kept unless ``drop_last``. Iterating twice gives the same batches.

    `batches` ``(start)`` resumes the stream at batch ``start`` without decoding the activations
    of the skipped batches: the skipped part is replayed on row ids (reading only ``seq_id``
    where a held-out split or exclusions need it), then the rows left in the buffer are read
    from their row groups and the stream continues.

    Held-out sequences (`is_heldout` with ``holdout_fraction`` and ``holdout_seed``) and any id in
    ``exclude_seq_ids`` never reach the stream; `read_heldout` reads the held-out side.
    ``dtype=None`` yields batches in the stored precision (to widen them on the GPU instead).
    Memory: the buffer plus one piece (or, while resuming, one row group).
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        batch_size: int,
        *,
        shuffle_buffer: int = 2**17,
        seed: int = 0,
        epochs: int | None = None,
        holdout_fraction: float = 0.0,
        holdout_seed: int = 0,
        exclude_seq_ids: Iterable[str] | None = None,
        dtype: torch.dtype | None = torch.float32,
        drop_last: bool = False,
        read_batch_rows: int = 8192,
    ):
        if not paths:
            raise ValueError("no activation shards given")
        self.paths = [str(p) for p in paths]
        d_models = {shard_d_model(p) for p in self.paths}
        if len(d_models) != 1:
            raise ValueError(f"shards disagree on d_model: {sorted(d_models)}")
        self.d_model = d_models.pop()
        self.storage_dtype = np.dtype(
            np.float32
            if any(column_dtype(pq.read_schema(p).field(ACT_COLUMN)) == np.float32 for p in self.paths)
            else np.float16
        )
        self.batch_size = batch_size
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.epochs = epochs
        self.holdout_fraction = holdout_fraction
        self.holdout_seed = holdout_seed
        self.exclude = pa.array(sorted(set(exclude_seq_ids)), pa.string()) if exclude_seq_ids else None
        self.dtype = dtype
        self.drop_last = drop_last
        self.read_batch_rows = read_batch_rows
        # Row offsets: of each row group within its shard, and of each shard in the stream's ids.
        self._group_rows: list[np.ndarray] = []
        for path in self.paths:
            metadata = pq.read_metadata(path)
            self._group_rows.append(np.array([metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]))
        self._group_starts = [np.concatenate([[0], np.cumsum(rows)]) for rows in self._group_rows]
        self._shard_starts = np.concatenate([[0], np.cumsum([starts[-1] for starts in self._group_starts])])
        self.buffer: ShuffleBuffer | None = None
        """The buffer of the latest iteration, for inspection."""
        self.act_rows_decoded = 0
        """Activation rows decoded from the shards so far (to check that resuming skips cheaply)."""

    def _pieces(self, rng: np.random.Generator) -> Iterator[_Piece]:
        """The pieces of the training split, epoch after epoch, in the order drawn from ``rng``."""
        needs_seq_ids = self.holdout_fraction > 0.0 or self.exclude is not None
        epoch = 0
        while self.epochs is None or epoch < self.epochs:
            n_rows = 0
            for shard in rng.permutation(len(self.paths)):
                with pq.ParquetFile(self.paths[shard]) as parquet:
                    for group in rng.permutation(len(self._group_rows[shard])).tolist():
                        group_rows = int(self._group_rows[shard][group])
                        if needs_seq_ids:
                            keep = _keep_rows(
                                parquet.read_row_group(group, columns=[SEQ_ID_COLUMN]).column(SEQ_ID_COLUMN),
                                keep_heldout=False,
                                holdout_fraction=self.holdout_fraction,
                                seed=self.holdout_seed,
                                exclude=self.exclude,
                            )
                        else:
                            keep = np.ones(group_rows, dtype=bool)
                        first_id = self._shard_starts[shard] + self._group_starts[shard][group]
                        for start in range(0, group_rows, self.read_batch_rows):
                            piece_keep = keep[start : start + self.read_batch_rows]
                            ids = first_id + start + np.flatnonzero(piece_keep)
                            if len(ids):
                                n_rows += len(ids)
                                yield _Piece(parquet, int(shard), group, start, piece_keep, ids)
            if n_rows == 0:
                raise ValueError("the training split of the activation shards is empty")
            epoch += 1

    def _piece_reader(self) -> Callable[[_Piece], np.ndarray]:
        """A function from a piece to its kept activations ``(rows, d_model)``. It decodes each
        row group's act column forward from the first piece asked for, so pieces that were
        skipped before it (while resuming) cost one pass over their row group at most."""
        state: dict = {"key": None}

        def read(piece: _Piece) -> np.ndarray:
            key = (piece.shard, piece.group)
            if state["key"] != key or state["next_start"] > piece.start:
                batches = piece.parquet.iter_batches(
                    batch_size=self.read_batch_rows, row_groups=[piece.group], columns=[ACT_COLUMN]
                )
                state.update(key=key, next_start=0, batches=batches, pending=[])
            end = piece.start + len(piece.keep)
            while state["next_start"] < end:
                batch = next(state["batches"])
                state["pending"].append((state["next_start"], read_acts(batch)))
                state["next_start"] += batch.num_rows
                self.act_rows_decoded += batch.num_rows
            parts = [
                acts[max(piece.start - first, 0) : end - first]
                for first, acts in state["pending"]
                if first + len(acts) > piece.start
            ]
            state["pending"] = [(first, acts) for first, acts in state["pending"] if first + len(acts) > end]
            acts = parts[0] if len(parts) == 1 else np.concatenate(parts)
            return acts if piece.keep.all() else acts[piece.keep]

        return read

    def _read_ids(self, ids: np.ndarray) -> np.ndarray:
        """Activations ``(len(ids), d_model)`` of rows given by stream-wide id, one row group at
        a time."""
        out = np.empty((len(ids), self.d_model), dtype=self.storage_dtype)
        shards = np.searchsorted(self._shard_starts, ids, side="right") - 1
        for shard in np.unique(shards):
            in_shard = np.flatnonzero(shards == shard)
            rows = ids[in_shard] - self._shard_starts[shard]
            groups = np.searchsorted(self._group_starts[shard], rows, side="right") - 1
            with pq.ParquetFile(self.paths[shard]) as parquet:
                for group in np.unique(groups):
                    in_group = groups == group
                    table = parquet.read_row_group(int(group), columns=[ACT_COLUMN])
                    self.act_rows_decoded += table.num_rows
                    acts = read_acts(table)
                    out[in_shard[in_group]] = acts[rows[in_group] - self._group_starts[shard][group]]
        return out

    def _to_tensor(self, batch: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(batch)
        return tensor if self.dtype is None else tensor.to(self.dtype)

    def batches(self, start: int = 0) -> Iterator[torch.Tensor]:
        """The stream's batches from batch number ``start`` on (0: all of them)."""
        rng = np.random.default_rng(self.seed)
        read = self._piece_reader()
        skipping = start > 0
        if skipping:
            buffer = ShuffleBuffer(self.shuffle_buffer, 1, self.batch_size, np.dtype(np.int64), rng)
        else:
            buffer = ShuffleBuffer(self.shuffle_buffer, self.d_model, self.batch_size, self.storage_dtype, rng)
        self.buffer = buffer
        n_skipped = 0

        def switch_to_activations(n_slots: int) -> ShuffleBuffer:
            """The buffer of row ids, replaced by one of their activations in the same slots."""
            real = ShuffleBuffer(self.shuffle_buffer, self.d_model, self.batch_size, self.storage_dtype, rng)
            real.rows[:n_slots] = self._read_ids(buffer.rows[:n_slots, 0])
            real.size, real.max_size = buffer.size, buffer.max_size
            self.buffer = real
            return real

        for piece in self._pieces(rng):
            rows = piece.ids[:, None] if skipping else read(piece)
            offset = 0
            while offset < len(rows):
                offset += buffer.fill(rows[offset:])
                if not buffer.full:
                    continue
                batch = buffer.pop()
                if not skipping:
                    yield self._to_tensor(batch)
                    continue
                n_skipped += 1
                if n_skipped == start:
                    buffer, skipping = switch_to_activations(buffer.size), False
                    rows = read(piece)
        n_slots = buffer.size
        for slots in buffer.drain_slots(self.drop_last):
            if not skipping:
                yield self._to_tensor(buffer.rows[slots])
                continue
            n_skipped += 1
            if n_skipped == start:
                buffer, skipping = switch_to_activations(n_slots), False

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self.batches()


def read_heldout(
    paths: Sequence[str | os.PathLike],
    holdout_fraction: float,
    seed: int,
    max_tokens: int | None = None,
    *,
    dtype: torch.dtype | None = torch.float32,
    read_batch_rows: int = 8192,
) -> torch.Tensor:
    """Held-out tokens (`is_heldout` with ``seed``) in shard order: ``(n_tokens, d_model)``,
    in ``dtype`` (``None``: the stored precision).

    At most ``max_tokens`` rows are read; the result may be empty.
    """
    paths = [str(p) for p in paths]
    d_model = shard_d_model(paths[0])
    parts: list[np.ndarray] = []
    n_tokens = 0
    limit = max_tokens if max_tokens is not None else float("inf")
    if holdout_fraction > 0.0 and limit > 0:
        for chunk in _iter_rows(
            paths,
            keep_heldout=True,
            holdout_fraction=holdout_fraction,
            holdout_seed=seed,
            exclude=None,
            read_batch_rows=read_batch_rows,
        ):
            chunk = chunk[: int(min(len(chunk), limit - n_tokens))]
            parts.append(chunk)
            n_tokens += len(chunk)
            if n_tokens >= limit:
                break
    if not parts:
        return torch.empty(0, d_model, dtype=dtype or torch.float32)
    tokens = torch.from_numpy(np.concatenate(parts))
    return tokens if dtype is None else tokens.to(dtype)
