"""Latent codes: schema round trip, cache vs model, agreement with sae.encode, per-protein maxima,
atomic failure."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from protsae.activations.cache import cache_activations
from protsae.activations.storage import list_type, read_acts, shard_metadata
from protsae.codes.encode import (
    CodeTarget,
    encode_cache,
    encode_cache_many,
    encode_from_model,
    encode_model_many,
    encode_rows,
)
from protsae.codes.maxima import MaxActivations, max_activation_per_protein
from protsae.codes.storage import code_schema, read_codes
from protsae.sae.config import SAEConfig
from protsae.sae.variants import TopKSAE

RESIDUES = list("ACDEFGHIKLMNPQRSTVWY")
LAYER = 2


def random_sequences(n, seed=0, low=5, high=60):
    rng = np.random.default_rng(seed)
    return [(f"seq{i}", "".join(rng.choice(RESIDUES, rng.integers(low, high)))) for i in range(n)]


def sorted_rows(codes):
    """Codes re-ordered by (seq_id, pos), so that shards written in different orders compare."""
    order = np.lexsort((codes.pos, np.array(codes.seq_id.to_pylist())))
    return np.array(codes.seq_id.to_pylist())[order], codes.pos[order], codes.idx[order], codes.val[order]


@pytest.fixture(scope="module")
def sequences():
    return random_sequences(15)


@pytest.fixture(scope="module")
def sae(tiny_model):
    sae = TopKSAE(SAEConfig(d_model=tiny_model.d_model, n_latents=96, k=6, seed=1))
    batch = tiny_model.tokenize([s for _, s in random_sequences(5, seed=9)])
    sae.initialize(tiny_model.hidden_states(batch, [LAYER])[LAYER][batch.residue_mask])
    return sae


@pytest.fixture(scope="module")
def activation_shard(tmp_path_factory, tiny_model, sequences):
    path = tmp_path_factory.mktemp("acts") / "layer2.parquet"
    cache_activations(tiny_model, sequences, [LAYER], {LAYER: path}, max_tokens=200, storage_dtype="float32",
                      progress=False)
    return path


def test_schema_round_trip(tmp_path, sae, activation_shard):
    out = tmp_path / "codes.parquet"
    stats = encode_cache(sae, activation_shard, out, batch_rows=100, sae_path="results/sae/x")
    schema = pq.read_schema(out)
    assert schema.field("seq_id").type == pa.string()
    assert schema.field("pos").type == pa.int32()
    assert schema.field("idx").type == list_type(pa.int32(), 6)
    assert schema.field("val").type == list_type(pa.float32(), 6)
    meta = shard_metadata(out)
    assert meta["layer"] == LAYER and meta["k"] == 6 and meta["n_latents"] == 96 and meta["d_model"] == 32
    assert meta["sae"]["path"] == "results/sae/x" and meta["sae"]["config"]["n_latents"] == 96
    assert meta["model"]["name"] == "tiny_esm2"
    assert code_schema(6, {"a": [1]}).metadata[b"a"] == json.dumps([1]).encode()
    codes = read_codes(out)
    source = pq.read_table(activation_shard)
    assert codes.seq_id.to_pylist() == source.column("seq_id").to_pylist()  # input row order kept
    assert (codes.pos == source.column("pos").to_numpy()).all()
    assert codes.pos.dtype == np.int32 and codes.idx.dtype == np.int32 and codes.val.dtype == np.float32
    assert codes.idx.shape == codes.val.shape == (source.num_rows, 6)
    assert stats.n_rows == source.num_rows
    assert pq.ParquetFile(out).metadata.num_row_groups > 1  # several batches, several row groups
    # Each row: values largest first, non-negative, distinct latents.
    assert (np.diff(codes.val, axis=1) <= 0).all() and (codes.val >= 0).all()
    assert all(len(set(row)) == 6 for row in codes.idx.tolist())


def test_codes_equal_sae_encode_on_the_same_activations(tmp_path, sae, activation_shard):
    out = tmp_path / "codes.parquet"
    encode_cache(sae, activation_shard, out, batch_rows=64)
    codes = read_codes(out)
    acts = torch.from_numpy(read_acts(pq.read_table(activation_shard)).copy())
    with torch.no_grad():
        vals, idx = sae.encode(acts)
    # Same set of (latent, value) pairs per row, whatever order top-k returned them in.
    expected = {(r, int(i)): float(v) for r, (irow, vrow) in enumerate(zip(idx, vals)) for i, v in zip(irow, vrow)}
    got = {(r, int(i)): float(v) for r, (irow, vrow) in enumerate(zip(codes.idx, codes.val)) for i, v in zip(irow, vrow)}
    assert expected.keys() == got.keys()
    assert np.allclose([got[key] for key in expected], list(expected.values()), atol=1e-6)
    # The stored values decode to sae's own reconstruction.
    x_hat = sae.decode(torch.from_numpy(codes.val.copy()), torch.from_numpy(codes.idx.copy()).long())
    torch.testing.assert_close(x_hat, sae(acts).sae_out, atol=1e-5, rtol=1e-5)


def test_cache_and_model_give_the_same_codes(tmp_path, tiny_model, sae, sequences, activation_shard):
    from_cache, from_model = tmp_path / "cache.parquet", tmp_path / "model.parquet"
    encode_cache(sae, activation_shard, from_cache)
    stats = encode_from_model(tiny_model, sae, LAYER, sequences, from_model, max_tokens=150)
    a, b = sorted_rows(read_codes(from_cache)), sorted_rows(read_codes(from_model))
    assert (a[0] == b[0]).all() and (a[1] == b[1]).all()
    assert (a[2] == b[2]).all()
    np.testing.assert_allclose(a[3], b[3], atol=1e-5)
    assert stats.n_sequences == len(sequences) and stats.n_rows == sum(len(s) for _, s in sequences)
    assert shard_metadata(from_model)["layer"] == LAYER
    assert stats.as_dict()["l0"] == pytest.approx((read_codes(from_model).val > 0).sum(1).mean())


def test_one_pass_for_many_saes_equals_one_pass_each(tmp_path, tiny_model, sae, sequences):
    """One forward pass for two layers and three SAEs writes what three single passes write; with
    the cache's dtype, the codes equal those encoded from a cache of the same sequences, bit for bit."""
    other = TopKSAE(SAEConfig(d_model=tiny_model.d_model, n_latents=48, k=3, seed=2))
    deeper = TopKSAE(SAEConfig(d_model=tiny_model.d_model, n_latents=64, k=4, seed=3))
    targets = {LAYER: [CodeTarget(sae, tmp_path / "a.parquet"), CodeTarget(other, tmp_path / "b.parquet")],
               LAYER + 1: [CodeTarget(deeper, tmp_path / "c.parquet")]}
    stats = encode_model_many(tiny_model, targets, sequences, max_tokens=150, storage_dtype="float16")
    assert [s.n_rows for s in stats[LAYER] + stats[LAYER + 1]] == [sum(len(q) for _, q in sequences)] * 3
    cache = {layer: tmp_path / f"acts{layer}.parquet" for layer in (LAYER, LAYER + 1)}
    cache_activations(tiny_model, sequences, [LAYER, LAYER + 1], cache, max_tokens=150, progress=False)
    for layer, group in targets.items():
        for target in group:
            single = tmp_path / f"single_{Path(target.out_path).name}"
            encode_cache(target.sae, cache[layer], single, batch_rows=37)
            a, b = read_codes(target.out_path), read_codes(single)
            assert a.seq_id.to_pylist() == b.seq_id.to_pylist() and (a.pos == b.pos).all()
            assert (a.idx == b.idx).all() and (a.val == b.val).all()
    # Reading one cache shard once for both SAEs of its layer gives the same as one SAE at a time.
    encode_cache_many([CodeTarget(sae, tmp_path / "ma.parquet"), CodeTarget(other, tmp_path / "mb.parquet")],
                      cache[LAYER], batch_rows=50)
    for name in ("a", "b"):
        assert pq.read_table(tmp_path / f"m{name}.parquet").equals(pq.read_table(tmp_path / f"single_{name}.parquet"))


def test_max_activation_per_protein_matches_a_loop(tmp_path, sae, activation_shard):
    # Two shards, small read batches: proteins straddle batch and shard boundaries.
    table = pq.read_table(activation_shard)
    halves = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    pq.write_table(table.slice(0, 200), halves[0])
    pq.write_table(table.slice(200), halves[1])
    for half in halves:
        encode_cache(sae, half, half.with_suffix(".codes.parquet"))
    code_paths = [half.with_suffix(".codes.parquet") for half in halves]
    result = max_activation_per_protein(code_paths, batch_rows=37)

    expected: dict[tuple[str, int], float] = {}
    order: list[str] = []
    for path in code_paths:
        codes = read_codes(path)
        for seq_id, irow, vrow in zip(codes.seq_id.to_pylist(), codes.idx, codes.val):
            if seq_id not in order:
                order.append(seq_id)
            for i, v in zip(irow.tolist(), vrow.tolist()):
                if v > 0:
                    expected[seq_id, i] = max(expected.get((seq_id, i), 0.0), v)
    assert result.protein_ids == order
    assert result.shape == (len(order), 96)
    got = {(result.protein_ids[p], int(l)): float(v) for p, l, v in zip(result.protein, result.latent, result.value)}
    assert got == expected
    dense = result.to_dense()
    assert dense[order.index("seq3")].max() == max(v for (s, _), v in expected.items() if s == "seq3")
    assert (result.to_scipy().toarray() == dense).all()
    assert (result.latent_max() == dense.max(axis=0)).all()

    # Saved and loaded unchanged; the file also carries the per-latent maxima.
    result.save(tmp_path / "maxima.npz")
    loaded = MaxActivations.load(tmp_path / "maxima.npz")
    assert loaded.protein_ids == result.protein_ids and loaded.n_latents == result.n_latents
    assert (loaded.to_dense() == dense).all()
    assert (np.load(tmp_path / "maxima.npz")["latent_max"] == dense.max(axis=0)).all()


def test_a_failure_leaves_no_file(tmp_path, tiny_model, sae, sequences, activation_shard):
    class Failing:
        cfg = sae.cfg
        calls = 0

        def encode(self, x):
            Failing.calls += 1
            if Failing.calls == 3:
                raise RuntimeError("boom")
            return sae.encode(x)

    out = tmp_path / "codes.parquet"
    with pytest.raises(RuntimeError, match="boom"):
        encode_cache(Failing(), activation_shard, out, batch_rows=50)
    Failing.calls = 0
    with pytest.raises(RuntimeError, match="boom"):
        encode_from_model(tiny_model, Failing(), LAYER, sequences, out, max_tokens=100)
    assert list(tmp_path.iterdir()) == []


def test_an_sae_is_loaded_from_its_directory(tmp_path, sae, activation_shard):
    sae.save(tmp_path / "sae")
    stats = encode_cache(tmp_path / "sae", activation_shard, tmp_path / "codes.parquet")
    assert shard_metadata(tmp_path / "codes.parquet")["sae"]["path"] == str(tmp_path / "sae")
    idx, val = encode_rows(sae, torch.from_numpy(read_acts(pq.read_table(activation_shard)).copy()))
    codes = read_codes(tmp_path / "codes.parquet")
    assert (codes.idx == idx).all() and np.allclose(codes.val, val)
    assert stats.as_dict()["latents_fired"] == len(np.unique(idx[val > 0]))


@pytest.mark.parametrize("variant", ["topk", "batchtopk", "matryoshka", "relu_l1"])
def test_cpu_chunks_give_the_codes_of_one_pass(monkeypatch, variant):
    from protsae.codes import encode
    from protsae.sae.variants import make_sae

    sae = make_sae(SAEConfig(d_model=16, n_latents=40, k=5, variant=variant, seed=4))
    if variant == "batchtopk":
        sae.threshold.fill_(0.05)  # a threshold that drops some of the kept values
    x = torch.randn(103, 16, generator=torch.Generator().manual_seed(0))
    x[40] = x[3]  # identical rows, in different chunks
    whole_idx, whole_val = encode.encode_rows(sae, x)
    sizes = []
    monkeypatch.setattr(encode, "_encode_chunk", lambda sae, rows, chunk=encode._encode_chunk:
                        sizes.append(len(rows)) or chunk(sae, rows))
    monkeypatch.setattr(encode, "CPU_CHUNK_BYTES", 4 * 40 * 30)  # at most 30 rows a chunk
    idx, val = encode.encode_rows(sae, x)
    assert sizes == [26, 26, 26, 25]  # equal chunks: no short tail, whose matmul takes another kernel
    assert idx.shape == (103, sae.k_store) and idx.dtype == np.int32
    np.testing.assert_array_equal(idx, whole_idx)
    np.testing.assert_array_equal(val, whole_val)
    assert encode.encode_rows(sae, x[:0])[0].shape == (0, sae.k_store)
