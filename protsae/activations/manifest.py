"""The manifest of one (dataset, layer) cache: model, counts and per-shard checksums, and the
check every reader of a shard makes against it before use.

A shard's checksum is recorded once, by the caching job that wrote it (in its stats file, with
the file's size and schema metadata); the manifest is made from the stats files alone, so a shard
altered on disk (bit rot, a truncated copy, an edit) is never re-recorded as good. Readers verify
the shards they use against the manifest, once per job and file, before use.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

from protsae import __version__
from protsae.files import write_json


class ShardIntegrityError(ValueError):
    """A shard is missing, truncated or altered since it was written; the message names it and
    the command that rebuilds it."""


def file_sha256(path: str | Path, chunk: int = 1 << 24) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def rebuild_command(path: str | Path) -> str:
    """How to rebuild a cached file of the workflow: its caching job's folder (a shard's files of
    every layer, which is what Snakemake tracks) removed and made again."""
    folder = Path(path).parent
    return f"rm -rf {folder} && snakemake --cores all {folder} (with the run's --configfile)"


def verify_shard(path: str | Path, sha256: str, n_bytes: int, recorded_in: str | Path) -> None:
    """Raise `ShardIntegrityError` unless the file at ``path`` is the one whose size and checksum
    ``recorded_in`` holds."""
    path = Path(path)
    if not path.exists():
        problem = "is missing"
    elif (size := path.stat().st_size) != n_bytes:
        problem = f"has {size:,} bytes, {n_bytes:,} when it was written (truncated or altered)"
    elif file_sha256(path) != sha256:
        problem = "does not match the checksum recorded when it was written (altered on disk)"
    else:
        return
    raise ShardIntegrityError(
        f"activation shard {path} {problem} (recorded in {recorded_in}); rebuild it: {rebuild_command(path)}"
    )


def verified_manifest(manifest_path: str | Path, paths: Sequence[str | Path] | None = None) -> dict:
    """The manifest at ``manifest_path``, after checking the shards it lists (or only those of
    ``paths``, which must be among them) against their recorded sizes and checksums."""
    manifest = json.loads(Path(manifest_path).read_text())
    shards = {shard["path"]: shard for shard in manifest["shards"]}
    wanted = list(shards) if paths is None else [str(path) for path in paths]
    for path in wanted:
        if path not in shards:
            raise ShardIntegrityError(f"{manifest_path} does not list the shard {path}")
        verify_shard(path, shards[path]["sha256"], shards[path]["bytes"], manifest_path)
    return manifest


def write_manifest(stats_paths: Sequence[str | Path], layer: int, out_path: str | Path, dataset: str) -> dict:
    """Manifest of one (dataset, layer) cache: model, layer, dtype, counts, per-shard checksums,
    from the stats files of the caching jobs alone (each records the size, checksum and schema
    metadata of every file it wrote); the shards themselves are checked by their readers."""
    shards = []
    model = d_model = storage_dtype = layout = positions = None
    for stats_path in stats_paths:
        job = json.loads(Path(stats_path).read_text())
        if str(layer) not in job["layers"]:
            raise ValueError(f"{stats_path}: its caching job wrote layers {sorted(map(int, job['layers']))}, "
                             f"not layer {layer}")
        written = job["layers"][str(layer)]
        if "sha256" not in written or "metadata" not in written:
            raise ShardIntegrityError(
                f"{stats_path} records no checksum for {written['path']} (cached by an older protsae); "
                f"rebuild it: {rebuild_command(written['path'])}"
            )
        meta = written["metadata"]
        # Format 1 shards, cached before the layout was recorded, are fixed-size lists.
        shard_layout = meta.get("act_layout", "fixed_size_list")
        if model is None:
            model, d_model = meta["model"], meta["d_model"]
            storage_dtype, positions = meta["storage_dtype"], meta["positions_per_sequence"]
            layout = shard_layout
        elif meta["model"] != model:
            raise ValueError(f"{written['path']} was cached with a different model than {shards[0]['path']}")
        elif shard_layout != layout:
            raise ValueError(f"{written['path']} stores act as {shard_layout}, {shards[0]['path']} as {layout}; "
                             f"rebuild the dataset's cache with one activations.layout")
        shards.append({
            "path": written["path"],
            "sha256": written["sha256"],
            "bytes": written["bytes"],
            "n_tokens": written["n_tokens"],
            "n_sequences": job["n_sequences"],
            "n_residues": job["n_residues"],
        })
    manifest = {
        "dataset": dataset,
        "layer": layer,
        "model": model,
        "d_model": d_model,
        "storage_dtype": storage_dtype,
        "act_layout": layout,
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
