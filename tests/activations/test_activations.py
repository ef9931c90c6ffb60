"""Caching: batching, position subsets, the Parquet round trip, manifests, atomic failure."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import flip_byte

from protsae.activations.batches import random_batches, token_budget_batches
from protsae.activations.cache import cache_activations, sample_positions
from protsae.activations.manifest import (
    ShardIntegrityError,
    file_sha256,
    verified_manifest,
    write_manifest,
)
from protsae.activations.sizes import projected_cache_bytes
from protsae.activations.stream import ActivationStream
from protsae.activations.storage import (
    ACT_LAYOUTS,
    act_column,
    act_field,
    list_type,
    read_acts,
    shard_metadata,
    shard_schema,
)

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


@pytest.mark.parametrize("layout", ACT_LAYOUTS)
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_act_column_round_trip(dtype, layout, tmp_path):
    acts = np.random.default_rng(0).standard_normal((50, 7)).astype(dtype)
    schema = shard_schema(7, dtype, {"layer": 1}, layout)
    ids, pos = pa.array([f"p{i // 10}" for i in range(50)]), pa.array(np.arange(50, dtype=np.int32))
    table = pa.Table.from_arrays([ids, pos, act_column(acts, dtype, layout)], schema=schema)
    expected = list_type(pa.float16() if dtype == "float16" else pa.float32(), 7)
    assert (table.schema.field("act").type == expected) == (layout == "fixed_size_list")
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=16)
    back = read_acts(pq.read_table(tmp_path / "a.parquet"))  # four chunks, one per row group
    assert back.dtype == acts.dtype and (back == acts).all()
    assert shard_metadata(tmp_path / "a.parquet")["act_layout"] == layout
    # A slice (a record batch's offset into its buffer) reads its own rows.
    assert (read_acts(table.slice(13, 20)) == acts[13:33]).all()
    for batch in pq.ParquetFile(tmp_path / "a.parquet").iter_batches(batch_size=9):
        assert read_acts(batch).shape == (batch.num_rows, 7)


def test_binary_act_needs_its_dtype_metadata(tmp_path):
    """Raw bytes without protsae's dtype and width are refused, not reinterpreted."""
    acts = np.ones((4, 3), dtype=np.float16)
    bare = pa.table({"act": act_column(acts, "float16", "fixed_size_binary")})
    with pytest.raises(ValueError, match="without protsae's dtype and width"):
        read_acts(bare)
    with pytest.raises(ValueError, match="unknown act layout"):
        act_field(3, "float16", "parquet_list")


def test_cache_matches_the_model_and_the_schema(tiny_model, tmp_path):
    sequences = random_sequences(40)
    paths = {1: tmp_path / "l1.parquet", 3: tmp_path / "l3.parquet"}
    stats = cache_activations(tiny_model, sequences, [1, 3], paths, max_tokens=1500, progress=False,
                              metadata={"dataset": "toy"})
    assert stats.n_sequences == 40 and stats.n_tokens == sum(len(s) for _, s in sequences)
    table = pq.read_table(paths[3])
    assert table.schema.field("seq_id").type == pa.string()
    assert table.schema.field("pos").type == pa.int32()
    assert table.schema.field("act").type == pa.binary(2 * tiny_model.d_model)
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


def cached_shards(model, tmp_path, n_shards=2):
    shards, stats_files = [], []
    for shard in range(n_shards):
        path = tmp_path / f"shard{shard}.parquet"
        stats = cache_activations(model, random_sequences(10, seed=shard), [2], {2: path}, progress=False)
        stats_path = tmp_path / f"shard{shard}.json"
        stats_path.write_text(json.dumps(stats.as_dict()))
        shards.append(path)
        stats_files.append(stats_path)
    return shards, stats_files


def test_manifest_counts_and_checksums(tiny_model, tmp_path):
    shards, stats_files = cached_shards(tiny_model, tmp_path)
    manifest = write_manifest(stats_files, layer=2, out_path=tmp_path / "manifest.json", dataset="toy")
    assert manifest["n_shards"] == 2 and manifest["n_sequences"] == 20
    assert manifest["n_tokens"] == sum(pq.ParquetFile(p).metadata.num_rows for p in shards)
    assert manifest["model"]["name"] == tiny_model.name and manifest["d_model"] == tiny_model.d_model
    assert [s["sha256"] for s in manifest["shards"]] == [file_sha256(p) for p in shards]
    assert verified_manifest(tmp_path / "manifest.json") == manifest
    with pytest.raises(ValueError, match=r"wrote layers \[2\], not layer 3"):
        write_manifest(stats_files[1:], layer=3, out_path=tmp_path / "m3.json", dataset="toy")


@pytest.mark.parametrize("keep_mtime", [False, True])
def test_a_flipped_byte_is_caught_by_readers_and_never_re_recorded(tiny_model, tmp_path, keep_mtime):
    shards, stats_files = cached_shards(tiny_model, tmp_path)
    written = write_manifest(stats_files, layer=2, out_path=tmp_path / "manifest.json", dataset="toy")
    flip_byte(shards[1], keep_mtime)
    # A reader checks before use (bit rot keeps the mtime: nothing else would notice) ...
    with pytest.raises(ShardIntegrityError) as info:
        verified_manifest(tmp_path / "manifest.json")
    message = str(info.value)
    assert f"activation shard {shards[1]} does not match the checksum recorded when it was written" in message
    assert f"rm -rf {shards[1].parent} && snakemake --cores all {shards[1].parent}" in message
    verified_manifest(tmp_path / "manifest.json", [shards[0]])  # the intact one alone is fine
    # ... and a rerun of the manifest records what the writer recorded, never the altered file.
    again = write_manifest(stats_files, layer=2, out_path=tmp_path / "again.json", dataset="toy")
    assert again["shards"] == written["shards"] and again["shards"][1]["sha256"] != file_sha256(shards[1])


def test_a_truncated_or_deleted_shard_is_named(tiny_model, tmp_path):
    shards, stats_files = cached_shards(tiny_model, tmp_path)
    write_manifest(stats_files, layer=2, out_path=tmp_path / "manifest.json", dataset="toy")
    size = shards[0].stat().st_size
    with open(shards[0], "r+b") as handle:
        handle.truncate(size // 2)
    with pytest.raises(ShardIntegrityError, match=rf"{shards[0]} has {size // 2:,} bytes, {size:,} when it was written"):
        verified_manifest(tmp_path / "manifest.json")
    shards[1].unlink()
    with pytest.raises(ShardIntegrityError, match=rf"{shards[1]} is missing .*rebuild it: rm -rf"):
        verified_manifest(tmp_path / "manifest.json", [shards[1]])


def test_a_stats_file_without_checksum_is_refused(tiny_model, tmp_path):
    shards, stats_files = cached_shards(tiny_model, tmp_path, n_shards=1)
    stats = json.loads(stats_files[0].read_text())
    del stats["layers"]["2"]["sha256"]
    stats_files[0].write_text(json.dumps(stats))
    with pytest.raises(ShardIntegrityError, match="records no checksum"):
        write_manifest(stats_files, 2, tmp_path / "m.json", dataset="toy")


def test_caching_removes_the_temporaries_its_killed_predecessor_left(tiny_model, tmp_path):
    """SIGKILL skips atomic_path's clean-up; the rerun deletes its own leftovers, not its neighbours'."""
    own = tmp_path / ".shard0.parquet.k1ll3d.tmp"
    neighbour = tmp_path / ".shard1.parquet.wr1t1ng.tmp"
    for path in (own, neighbour):
        path.write_bytes(b"half a shard")
    cache_activations(tiny_model, random_sequences(5), [2], {2: tmp_path / "shard0.parquet"}, progress=False)
    assert not own.exists() and neighbour.exists()


def test_projected_size():
    # The figure: 1M sequences x ~350 residues x 1280 x 2 bytes is about 0.9 TB per layer.
    assert projected_cache_bytes(1_000_000, 350, 1280) == pytest.approx(0.896e12)
    assert projected_cache_bytes(1_000_000, 350, 1280, positions_per_sequence=64) == pytest.approx(1.6384e11)


def test_both_layouts_hold_the_same_values(tiny_model, tmp_path):
    """A cache in the list layout (format 1, as caches made before format 2 are) and one in the
    binary layout hold the same rows and values, stream the same batches, and their manifests
    name the layout."""
    sequences = random_sequences(30)
    tables, batches, manifests = {}, {}, {}
    for layout in ACT_LAYOUTS:
        path = tmp_path / f"{layout}.parquet"
        stats = cache_activations(tiny_model, sequences, [2], {2: path}, max_tokens=900, act_layout=layout,
                                  progress=False)
        (tmp_path / f"{layout}.json").write_text(json.dumps(stats.as_dict()))
        manifests[layout] = write_manifest([tmp_path / f"{layout}.json"], layer=2,
                                           out_path=tmp_path / f"{layout}.manifest.json", dataset="toy")
        tables[layout] = pq.read_table(path)
        batches[layout] = list(ActivationStream([path], batch_size=50, shuffle_buffer=200, epochs=1, seed=3))
    binary, listed = tables["fixed_size_binary"], tables["fixed_size_list"]
    assert binary.column("seq_id").equals(listed.column("seq_id")) and binary.column("pos").equals(listed.column("pos"))
    assert np.array_equal(read_acts(binary), read_acts(listed))
    assert all(torch.equal(a, b) for a, b in zip(batches["fixed_size_binary"], batches["fixed_size_list"]))
    assert {layout: m["act_layout"] for layout, m in manifests.items()} == {layout: layout for layout in ACT_LAYOUTS}
