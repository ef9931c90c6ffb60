"""Caching: batching, position subsets, the Parquet round trip, manifests, atomic failure."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from protsae.activations.batches import random_batches, token_budget_batches
from protsae.activations.cache import cache_activations, sample_positions
from protsae.activations.manifest import file_sha256, verify_manifest, write_manifest
from protsae.activations.sizes import projected_cache_bytes
from protsae.activations.storage import act_column, list_type, read_acts

RESIDUES = list("ACDEFGHIKLMNPQRSTVWY")


def random_sequences(n, seed=0, low=5, high=120):
    rng = np.random.default_rng(seed)
    return [(f"seq{i}", "".join(rng.choice(RESIDUES, rng.integers(low, high)))) for i in range(n)]


def test_token_budget_batches_cover_everything_within_budget():
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 500, size=300).tolist()
    batches = token_budget_batches(lengths, max_tokens=4000)
    flat = sorted(i for batch in batches for i in batch)
    assert flat == list(range(300))
    for batch in batches:
        assert len(batch) * (max(lengths[i] for i in batch) + 2) <= 4000 or len(batch) == 1
    # Length-sorted: padding is small compared with random fixed-size batches.
    def padding(batches):
        return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)
    assert padding(batches) < 0.1 * padding(random_batches(300, 16))


def test_a_sequence_longer_than_the_budget_gets_its_own_batch():
    assert token_budget_batches([100, 5000, 100], max_tokens=1000) == [[1], [0, 2]]


def test_sample_positions_is_seeded_per_sequence():
    a = sample_positions("P12345", 300, 20, seed=0)
    assert (a == sample_positions("P12345", 300, 20, seed=0)).all()
    assert not (a == sample_positions("P12345", 300, 20, seed=1)).all()
    assert not (a == sample_positions("Q99999", 300, 20, seed=0)).all()
    assert len(set(a.tolist())) == 20 and (np.diff(a) > 0).all() and a.max() < 300
    assert (sample_positions("x", 10, 20, seed=0) == np.arange(10)).all()
    assert (sample_positions("x", 10, None, seed=0) == np.arange(10)).all()


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_act_column_round_trip(dtype, tmp_path):
    acts = np.random.default_rng(0).standard_normal((50, 7)).astype(dtype)
    column = act_column(acts, dtype)
    assert column.type == list_type(pa.float16() if dtype == "float16" else pa.float32(), 7)
    table = pa.table({"act": column})
    pq.write_table(table, tmp_path / "a.parquet")
    back = read_acts(pq.read_table(tmp_path / "a.parquet"))
    assert back.dtype == acts.dtype and (back == acts).all()


def test_cache_matches_the_model_and_the_schema(tiny_model, tmp_path):
    sequences = random_sequences(40)
    paths = {1: tmp_path / "l1.parquet", 3: tmp_path / "l3.parquet"}
    stats = cache_activations(tiny_model, sequences, [1, 3], paths, max_tokens=1500, progress=False,
                              metadata={"dataset": "toy"})
    assert stats.n_sequences == 40 and stats.n_tokens == sum(len(s) for _, s in sequences)
    table = pq.read_table(paths[3])
    assert table.schema.field("seq_id").type == pa.string()
    assert table.schema.field("pos").type == pa.int32()
    assert table.schema.field("act").type == list_type(pa.float16(), tiny_model.d_model)
    meta = {k.decode(): json.loads(v) for k, v in table.schema.metadata.items()}
    assert meta["layer"] == 3 and meta["d_model"] == tiny_model.d_model and meta["dataset"] == "toy"
    frame = table.to_pandas()
    acts = read_acts(table)
    for seq_id, seq in sequences[:5]:
        rows = np.flatnonzero(frame.seq_id.values == seq_id)
        order = rows[np.argsort(frame.pos.values[rows])]
        assert frame.pos.values[order].tolist() == list(range(len(seq)))
        expected = tiny_model.hidden_states(tiny_model.tokenize([seq]), [3])[3][0, 1 : len(seq) + 1]
        np.testing.assert_allclose(acts[order].astype(np.float32), expected.numpy(), atol=2e-3, rtol=2e-3)


def test_position_subset_is_cached(tiny_model, tmp_path):
    sequences = random_sequences(30, low=20)
    cache_activations(tiny_model, sequences, [2], {2: tmp_path / "l2.parquet"}, positions_per_sequence=8,
                      seed=5, progress=False)
    frame = pq.read_table(tmp_path / "l2.parquet", columns=["seq_id", "pos"]).to_pandas()
    for seq_id, seq in sequences:
        got = sorted(frame.pos[frame.seq_id == seq_id])
        assert got == sample_positions(seq_id, len(seq), 8, seed=5).tolist()


def test_rerun_is_byte_identical(tiny_model, tmp_path):
    sequences = random_sequences(20)
    for name in ("a", "b"):
        cache_activations(tiny_model, sequences, [1], {1: tmp_path / f"{name}.parquet"}, progress=False)
    assert file_sha256(tmp_path / "a.parquet") == file_sha256(tmp_path / "b.parquet")


def test_failure_leaves_no_files(tiny_model, tmp_path):
    sequences = random_sequences(10) + [("bad", "ACDJ")]  # J has no ESM-2 token
    paths = {1: tmp_path / "l1.parquet", 2: tmp_path / "l2.parquet"}
    with pytest.raises(ValueError, match="'J'"):
        cache_activations(tiny_model, sequences, [1, 2], paths, max_tokens=200, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_manifest_counts_and_checksums(tiny_model, tmp_path):
    shards, stats_files = [], []
    for shard in range(2):
        sequences = random_sequences(10, seed=shard)
        path = tmp_path / f"shard{shard}.parquet"
        stats = cache_activations(tiny_model, sequences, [2], {2: path}, progress=False)
        stats_path = tmp_path / f"shard{shard}.json"
        stats_path.write_text(json.dumps(stats.as_dict()))
        shards.append(path)
        stats_files.append(stats_path)
    manifest = write_manifest(shards, stats_files, layer=2, out_path=tmp_path / "manifest.json", dataset="toy")
    assert manifest["n_shards"] == 2 and manifest["n_sequences"] == 20
    assert manifest["n_tokens"] == sum(pq.ParquetFile(p).metadata.num_rows for p in shards)
    assert manifest["model"]["name"] == tiny_model.name and manifest["d_model"] == tiny_model.d_model
    verify_manifest(tmp_path / "manifest.json")
    with open(shards[0], "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ValueError, match="checksum"):
        verify_manifest(tmp_path / "manifest.json")
    with pytest.raises(ValueError, match="layer 2, expected 3"):
        write_manifest(shards[1:], stats_files[1:], layer=3, out_path=tmp_path / "m3.json", dataset="toy")


def test_projected_size():
    # The figure: 1M sequences x ~350 residues x 1280 x 2 bytes is about 0.9 TB per layer.
    assert projected_cache_bytes(1_000_000, 350, 1280) == pytest.approx(0.896e12)
    assert projected_cache_bytes(1_000_000, 350, 1280, positions_per_sequence=64) == pytest.approx(1.6384e11)
