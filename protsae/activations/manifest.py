"""The manifest of one (dataset, layer) cache: model, counts and per-shard checksums."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import pyarrow.parquet as pq

from protsae import __version__
from protsae.activations.storage import shard_metadata
from protsae.files import write_json


def file_sha256(path: str | Path, chunk: int = 1 << 24) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(shard_paths: Sequence[str | Path], stats_paths: Sequence[str | Path], layer: int,
                   out_path: str | Path, dataset: str) -> dict:
    """Manifest of one (dataset, layer) cache: model, layer, dtype, counts, per-shard checksums."""
    shards = []
    model = d_model = storage_dtype = positions = None
    for shard_path, stats_path in zip(shard_paths, stats_paths):
        parquet = pq.ParquetFile(shard_path)
        meta = shard_metadata(shard_path)
        if meta["layer"] != layer:
            raise ValueError(f"{shard_path} holds layer {meta['layer']}, expected {layer}")
        if model is None:
            model, d_model = meta["model"], meta["d_model"]
            storage_dtype, positions = meta["storage_dtype"], meta["positions_per_sequence"]
        elif meta["model"] != model:
            raise ValueError(f"{shard_path} was cached with a different model than {shard_paths[0]}")
        job = json.loads(Path(stats_path).read_text())
        shards.append({
            "path": str(shard_path),
            "sha256": file_sha256(shard_path),
            "bytes": Path(shard_path).stat().st_size,
            "n_tokens": parquet.metadata.num_rows,
            "n_sequences": job["n_sequences"],
            "n_residues": job["n_residues"],
        })
    manifest = {
        "dataset": dataset,
        "layer": layer,
        "model": model,
        "d_model": d_model,
        "storage_dtype": storage_dtype,
        "positions_per_sequence": positions,
        "n_shards": len(shards),
        "n_tokens": sum(s["n_tokens"] for s in shards),
        "n_sequences": sum(s["n_sequences"] for s in shards),
        "n_residues": sum(s["n_residues"] for s in shards),
        "bytes": sum(s["bytes"] for s in shards),
        "protsae_version": __version__,
        "shards": shards,
    }
    write_json(out_path, manifest)
    return manifest


def verify_manifest(manifest_path: str | Path) -> None:
    """Raise if any shard listed in a manifest is missing or altered."""
    manifest = json.loads(Path(manifest_path).read_text())
    for shard in manifest["shards"]:
        if file_sha256(shard["path"]) != shard["sha256"]:
            raise ValueError(f"{shard['path']} does not match the checksum in {manifest_path}")

