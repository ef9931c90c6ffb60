"""ActivationStream and the held-out split, on small shards written here."""

from __future__ import annotations

import itertools
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from conftest import write_shard

from protsae.activations.stream import ActivationStream, is_heldout, read_heldout

D_MODEL = 8


def make_shards(tmp_path: Path, n_shards: int = 3, seqs_per_shard: int = 20, dtype=np.float16):
    """Shards whose activations encode their own token number in column 0 (exact in float16 up
    to 2048), so a batch can be traced back to the tokens it holds. Returns paths, seq id per
    token, and the activations of all tokens."""
    rng = np.random.default_rng(0)
    paths, token_seq, all_acts = [], [], []
    token = 0
    for shard in range(n_shards):
        seq_ids = [f"UniRef50_S{shard}_{i}" for i in range(seqs_per_shard)]
        lengths = rng.integers(1, 15, size=seqs_per_shard).tolist()
        n = sum(lengths)
        acts = rng.normal(size=(n, D_MODEL)).astype(dtype)
        acts[:, 0] = np.arange(token, token + n)
        token += n
        path = tmp_path / f"shard{shard}.parquet"
        write_shard(path, seq_ids, lengths, acts, row_group_size=17)
        paths.append(path)
        token_seq += [s for s, k in zip(seq_ids, lengths) for _ in range(k)]
        all_acts.append(acts)
    return paths, token_seq, np.concatenate(all_acts)


def token_numbers(batches) -> list[int]:
    return [int(t) for batch in batches for t in batch[:, 0].tolist()]


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_round_trip(tmp_path, dtype):
    paths, _, acts = make_shards(tmp_path, dtype=dtype)
    stream = ActivationStream(paths, batch_size=7, shuffle_buffer=32, epochs=1, seed=1)
    batches = list(stream)
    assert all(b.dtype == torch.float32 and b.shape[1] == D_MODEL for b in batches)
    assert all(len(b) == 7 for b in batches[:-1])
    got = torch.cat(batches)
    got = got[got[:, 0].argsort()]
    np.testing.assert_array_equal(got.numpy(), acts.astype(np.float32))


def test_stored_precision_on_request(tmp_path):
    paths, token_seq, _ = make_shards(tmp_path)
    batches = list(ActivationStream(paths, batch_size=64, shuffle_buffer=128, epochs=1, dtype=None))
    assert all(b.dtype == torch.float16 for b in batches)
    assert read_heldout(paths, 0.5, 0, dtype=None).dtype == torch.float16


def test_each_token_once_per_epoch(tmp_path):
    paths, token_seq, _ = make_shards(tmp_path)
    n_tokens = len(token_seq)
    one = token_numbers(ActivationStream(paths, batch_size=5, shuffle_buffer=16, epochs=1, seed=3))
    assert sorted(one) == list(range(n_tokens))
    # Shuffled: far from the stored order.
    assert np.corrcoef(one, np.arange(n_tokens))[0, 1] < 0.999
    assert one != list(range(n_tokens))
    two = token_numbers(ActivationStream(paths, batch_size=5, shuffle_buffer=16, epochs=2, seed=3))
    assert Counter(two) == Counter({t: 2 for t in range(n_tokens)})


def test_drop_last_keeps_only_full_batches(tmp_path):
    paths, token_seq, _ = make_shards(tmp_path)
    batches = list(ActivationStream(paths, batch_size=6, shuffle_buffer=24, epochs=1, drop_last=True))
    assert all(len(b) == 6 for b in batches)
    assert len(batches) == len(token_seq) // 6


def test_deterministic_for_a_seed(tmp_path):
    paths, _, _ = make_shards(tmp_path)

    def run(seed):
        return token_numbers(ActivationStream(paths, batch_size=8, shuffle_buffer=40, epochs=2, seed=seed))

    assert run(5) == run(5)
    assert run(5) != run(6)
    stream = ActivationStream(paths, batch_size=8, shuffle_buffer=40, epochs=2, seed=5)
    assert token_numbers(stream) == token_numbers(stream)


def test_infinite_stream_keeps_going(tmp_path):
    paths, token_seq, _ = make_shards(tmp_path, n_shards=1, seqs_per_shard=5)
    stream = iter(ActivationStream(paths, batch_size=16, shuffle_buffer=32))
    batches = [next(stream) for _ in range(10 * len(token_seq) // 16 + 1)]
    assert all(len(b) == 16 for b in batches)


def test_buffer_memory_is_bounded(tmp_path):
    paths, token_seq, _ = make_shards(tmp_path, seqs_per_shard=40)
    capacity = 24
    stream = ActivationStream(paths, batch_size=4, shuffle_buffer=capacity, epochs=1, read_batch_rows=50)
    for _ in stream:
        assert stream.buffer.size <= capacity
    assert len(token_seq) > 10 * capacity
    assert stream.buffer.max_size == capacity
    assert stream.buffer.rows.shape == (capacity, D_MODEL)
    assert stream.buffer.rows.dtype == np.float16


def test_heldout_and_training_split_by_sequence(tmp_path):
    paths, token_seq, _ = make_shards(tmp_path)
    fraction, seed = 0.3, 11
    train = token_numbers(
        ActivationStream(paths, batch_size=5, shuffle_buffer=16, epochs=1, holdout_fraction=fraction, holdout_seed=seed)
    )
    heldout = token_numbers([read_heldout(paths, fraction, seed)])
    assert set(train).isdisjoint(heldout)
    assert sorted(train + heldout) == list(range(len(token_seq)))
    # By sequence: no protein has residues on both sides.
    train_seqs = {token_seq[t] for t in train}
    heldout_seqs = {token_seq[t] for t in heldout}
    assert train_seqs.isdisjoint(heldout_seqs)
    assert 0.1 < len(heldout_seqs) / len(set(token_seq)) < 0.5
    # read_heldout honours max_tokens and reads the same tokens again.
    assert token_numbers([read_heldout(paths, fraction, seed, max_tokens=10)]) == heldout[:10]
    assert read_heldout(paths, 0.0, seed).shape == (0, D_MODEL)


def test_heldout_hash_is_stable_and_seeded():
    ids = pa.array([f"seq{i}" for i in range(2000)] * 2)
    a = is_heldout(ids, 0.1, seed=0)
    assert a.shape == (4000,) and a.dtype == bool
    np.testing.assert_array_equal(a[:2000], a[2000:])
    np.testing.assert_array_equal(a, is_heldout(ids, 0.1, seed=0))
    assert 0.07 < a.mean() < 0.13
    assert (a != is_heldout(ids, 0.1, seed=1)).any()
    # A larger fraction holds out a superset.
    assert (is_heldout(ids, 0.2, seed=0) >= a).all()


def test_exclude_seq_ids(tmp_path):
    paths, token_seq, _ = make_shards(tmp_path)
    excluded = {"UniRef50_S0_1", "UniRef50_S2_5"}
    got = token_numbers(
        ActivationStream(paths, batch_size=5, shuffle_buffer=16, epochs=1, exclude_seq_ids=excluded)
    )
    assert sorted(got) == [t for t, s in enumerate(token_seq) if s not in excluded]


def test_rejects_mismatched_d_model(tmp_path):
    write_shard(tmp_path / "a.parquet", ["x"], [3], np.zeros((3, 4), np.float16))
    write_shard(tmp_path / "b.parquet", ["y"], [3], np.zeros((3, 6), np.float16))
    with pytest.raises(ValueError, match="d_model"):
        ActivationStream([tmp_path / "a.parquet", tmp_path / "b.parquet"], batch_size=2, shuffle_buffer=4)


@pytest.mark.parametrize(
    "options",
    [
        dict(epochs=2),
        dict(epochs=3, holdout_fraction=0.3, exclude_seq_ids={"UniRef50_S0_1"}, read_batch_rows=5),
        dict(epochs=None, read_batch_rows=40),
        dict(epochs=1, drop_last=True),
    ],
)
def test_resuming_at_any_batch_continues_the_same_stream(tmp_path, options):
    paths, _, _ = make_shards(tmp_path)
    options = {"read_batch_rows": 11, **options}
    stream = ActivationStream(paths, batch_size=7, shuffle_buffer=30, seed=2, **options)
    n = 160
    full = [b[:, 0].tolist() for b in itertools.islice(stream.batches(), n)]
    # Starts all along, at the end of a finite stream (the drain) and past it.
    for start in sorted({*range(0, n, 9), 1, len(full) - 2, len(full) - 1, len(full), len(full) + 1}):
        resumed = [b[:, 0].tolist() for b in itertools.islice(stream.batches(start), max(0, n - start))]
        assert resumed == full[start:], start


def test_resuming_decodes_only_the_rows_left_in_the_buffer(tmp_path):
    paths, token_seq, _ = make_shards(tmp_path)
    stream = ActivationStream(paths, batch_size=7, shuffle_buffer=30, seed=2, read_batch_rows=8)
    skipped = 400  # three passes over the shards
    batches = stream.batches(skipped)
    first = next(batches)
    assert stream.act_rows_decoded < 0.25 * skipped * 7
    replayed = ActivationStream(paths, batch_size=7, shuffle_buffer=30, seed=2, read_batch_rows=8)
    assert torch.equal(first, next(itertools.islice(replayed.batches(), skipped, None)))
    assert replayed.act_rows_decoded > skipped * 7


def test_memory_does_not_grow_with_the_cache(tmp_path):
    """numpy allocations (the buffer, the pieces read) peak at the same size whatever the cache
    size; benchmarks/sae_train.py measures the whole process's peak RSS."""

    def peak_bytes(n_shards: int) -> int:
        rng = np.random.default_rng(0)
        paths = []
        for shard in range(n_shards):
            acts = rng.normal(size=(3000, 64)).astype(np.float16)
            path = tmp_path / f"{n_shards}_{shard}.parquet"
            write_shard(path, [f"s{shard}_{i}" for i in range(30)], [100] * 30, acts, row_group_size=1000)
            paths.append(path)
        stream = ActivationStream(paths, batch_size=128, shuffle_buffer=2048, epochs=1, holdout_fraction=0.1)
        tracemalloc.start()
        n_rows = sum(len(batch) for batch in stream)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert n_rows > 0.8 * 3000 * n_shards
        return peak

    small, large = peak_bytes(2), peak_bytes(8)
    assert large < 1.2 * small
