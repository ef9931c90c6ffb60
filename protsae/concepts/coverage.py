"""Concept coverage of one set of units over one or more datasets (METHODS.md section 10): the
concept split of each dataset, the unit activations (an SAE's code shards, or the raw residual
stream from the model, each sign of a dimension a unit), the sweep, and what is reported.

Per dataset the proteins are split three ways: reference (the dataset's train split; they set
each unit's normalising maximum), valid (choose each pair's threshold) and test (score it). The
evaluation set has train/test only: its test proteins are divided valid/test at random (seeded);
a probe task's own valid and test splits are kept. Both sides are capped (seeded draws) so the raw
baseline's forward pass stays affordable; SAE and raw units see the same proteins.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from protsae.activations.storage import list_to_numpy
from protsae.concepts.sweep import THRESHOLDS, ConceptIndex, ConceptSweep
from protsae.files import atomic_path, write_json, write_tsv

CONCEPT_SPLITS = ("reference", "valid", "test")
AMINO_ACID_PREFIX = "AA:"


def concept_split(split: Mapping[str, str], proteins: Sequence[str], *, max_reference: int | None,
                  max_proteins: int | None, valid_fraction: float, seed: int) -> pd.Series:
    """protein -> reference | valid | test for the ``proteins`` of a dataset, from the dataset's
    own split (protein -> train | valid | test; proteins it does not name are left out). Train is
    the reference; without a valid split, test is divided valid/test (``valid_fraction`` to
    valid). ``max_reference`` and ``max_proteins`` (valid + test) cap the two sides by seeded draws."""
    rng = np.random.default_rng(seed)
    proteins = sorted(p for p in set(proteins) if p in split)
    train = [p for p in proteins if split[p] == "train"]
    valid = [p for p in proteins if split[p] == "valid"]
    test = [p for p in proteins if split[p] == "test"]
    if not valid:
        order = rng.permutation(len(test))
        n_valid = int(round(valid_fraction * len(test)))
        valid, test = sorted(test[i] for i in order[:n_valid]), sorted(test[i] for i in order[n_valid:])

    def cap(names, n):
        if n is None or len(names) <= n:
            return names
        return sorted(names[i] for i in rng.permutation(len(names))[:n])

    train = cap(train, max_reference)
    if max_proteins is not None and len(valid) + len(test) > max_proteins:
        n_valid = int(round(max_proteins * len(valid) / (len(valid) + len(test))))
        valid, test = cap(valid, n_valid), cap(test, max_proteins - n_valid)
    labels = {**dict.fromkeys(train, "reference"), **dict.fromkeys(valid, "valid"), **dict.fromkeys(test, "test")}
    return pd.Series(labels, name="split").rename_axis("protein").sort_index()


def write_concept_split(split: pd.Series, lengths: Mapping[str, int], path: str | os.PathLike) -> None:
    table = split.reset_index()
    table["length"] = table["protein"].map(lengths).astype(int)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def read_concept_split(path: str | os.PathLike) -> pd.DataFrame:
    """protein, split (reference/valid/test), length."""
    table = pd.read_csv(path, sep="\t", dtype={"protein": str, "split": str})
    bad = ~table["split"].isin(CONCEPT_SPLITS)
    if bad.any():
        raise ValueError(f"{path}, line {int(np.flatnonzero(bad.to_numpy())[0]) + 2}: split "
                         f"{table['split'][bad].iloc[0]!r} is not one of {', '.join(CONCEPT_SPLITS)}")
    return table


@dataclass
class ConceptDataset:
    """One dataset's concepts and concept split, ready to sweep."""

    name: str
    table: pd.DataFrame
    split: pd.DataFrame  # read_concept_split

    def index(self, min_residues: int, min_instances: int) -> ConceptIndex:
        scored = self.split[self.split["split"] != "reference"]
        return ConceptIndex.build(self.table, dict(zip(self.split["protein"], self.split["length"])),
                                  dict(zip(scored["protein"], scored["split"])),
                                  min_residues=min_residues, min_instances=min_instances)

    @property
    def reference(self) -> list[str]:
        return sorted(self.split.loc[self.split["split"] == "reference", "protein"])


# --- SAE latents, from code shards -------------------------------------------------------------

def code_batches(paths: Sequence[str | os.PathLike], proteins: Mapping[str, int], batch_rows: int = 131072
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(protein, pos, idx, val) of the code rows of ``proteins`` (id -> index), each protein's rows
    whole in one batch (a shard holds a protein's residues together, in order)."""
    pending: list[tuple] = []
    for path in paths:
        with pq.ParquetFile(path) as parquet:
            for batch in parquet.iter_batches(batch_size=batch_rows, columns=["seq_id", "pos", "idx", "val"]):
                encoded = pc.dictionary_encode(batch.column("seq_id"))
                lookup = np.array([proteins.get(p, -1) for p in encoded.dictionary.to_pylist()], dtype=np.int64)
                protein = lookup[encoded.indices.to_numpy(zero_copy_only=False)]
                keep = protein >= 0
                if not keep.any():
                    continue
                part = (protein[keep], batch.column("pos").to_numpy()[keep],
                        list_to_numpy(batch.column("idx"))[keep], list_to_numpy(batch.column("val"))[keep])
                pending.append(part)
                # Everything before the last protein of this batch is complete.
                last = part[0][-1]
                merged = [np.concatenate(column) for column in zip(*pending)]
                done = merged[0] != last
                if done.any():
                    yield tuple(column[done] for column in merged)
                pending = [tuple(column[~done] for column in merged)]
        if pending and len(pending[0][0]):  # a shard ends with whole proteins
            yield tuple(np.concatenate(column) for column in zip(*pending))
        pending = []


def code_unit_max(paths, proteins: Sequence[str], n_latents: int) -> np.ndarray:
    """(n_latents,) each latent's largest activation over ``proteins`` (0 if it never fires)."""
    top = np.zeros(n_latents, dtype=np.float32)
    seen = np.zeros(len(proteins), dtype=bool)
    for protein, _, idx, val in code_batches(paths, {p: i for i, p in enumerate(proteins)}):
        seen[protein] = True
        np.maximum.at(top, idx.reshape(-1), val.reshape(-1))
    _require_all(proteins, seen, paths, "reference")
    return top


def _require_all(proteins: Sequence[str], seen: np.ndarray, paths, what: str) -> None:
    """A protein of the concept split with no code rows would count as never predicted."""
    if not seen.all():
        missing = [proteins[i] for i in np.flatnonzero(~seen)]
        raise ValueError(f"{len(missing)} {what} protein(s) of the concept split have no rows in the code shards "
                         f"{', '.join(map(str, paths))}, e.g. {missing[0]}: the split and the codes are of "
                         "different samples; rerun the concept_table job")


def sweep_codes(dataset: ConceptDataset, paths, n_latents: int, *, min_residues: int, min_instances: int,
                thresholds=THRESHOLDS, progress: bool = False):
    """The sweep of an SAE's latents over one dataset from its code shards."""
    index = dataset.index(min_residues, min_instances)
    sweep = ConceptSweep(index, code_unit_max(paths, dataset.reference, n_latents), thresholds)
    position = {p: i for i, p in enumerate(index.proteins)}
    bar = tqdm(total=index.n_residues, unit="res", unit_scale=True, desc=f"concepts {dataset.name}",
               disable=not progress, mininterval=2.0)
    lengths = np.diff(index.offsets)
    for protein, pos, idx, val in code_batches(paths, position):
        beyond = pos >= lengths[protein]
        if beyond.any():
            first = int(np.flatnonzero(beyond)[0])
            raise ValueError(f"{', '.join(map(str, paths))}: protein {index.proteins[protein[first]]} has a code row at "
                             f"position {pos[first]}, beyond its {lengths[protein[first]]} residues in the concept split")
        sweep.add(index.offsets[protein] + pos, idx, val)
        bar.update(len(pos))
    bar.close()
    _require_all(index.proteins, sweep.seen, paths, "valid or test")
    return sweep


# --- Raw residual dimensions, from the model ---------------------------------------------------

def raw_units(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, d_model) activations -> the raw units as codes: unit 2j is dimension j's positive part,
    2j + 1 its negative part; (idx, val) both (n, d_model), each dimension's one live sign."""
    d = x.shape[1]
    idx = (2 * np.arange(d, dtype=np.int32))[None, :] + (x < 0)
    return idx.astype(np.int32), np.abs(x).astype(np.float32)


def raw_unit_names(d_model: int) -> list[str]:
    return [f"dim{j}{sign}" for j in range(d_model) for sign in "+-"]


def model_batches(model, sequences: Sequence[tuple[str, str]], layers: Sequence[int], max_tokens: int,
                  storage_dtype: str | None = "float16", progress: str | None = None):
    """Per token-budget batch: (its sequences' indices, {layer: (residues, d_model) float32}),
    activations rounded to ``storage_dtype`` first, as a cache would store them."""
    import torch

    from protsae.activations.batches import token_budget_batches

    rounding = getattr(torch, storage_dtype) if storage_dtype else None
    bar = tqdm(total=sum(len(s) for _, s in sequences), unit="res", unit_scale=True, desc=progress,
               disable=progress is None, mininterval=2.0)
    with torch.inference_mode():
        for batch in token_budget_batches([len(s) for _, s in sequences], max_tokens):
            tokens = model.tokenize([sequences[i][1] for i in batch])
            hidden = model.hidden_states(tokens, sorted(layers))
            out = {}
            for layer in layers:
                x = hidden[layer][tokens.residue_mask]
                out[layer] = (x.to(rounding) if rounding is not None else x).float().cpu().numpy()
            bar.update(sum(len(sequences[i][1]) for i in batch))
            yield batch, out
    bar.close()


def sweep_model(dataset: ConceptDataset, model, sequences: Mapping[str, str], layers: Sequence[int], *,
                max_tokens: int, min_residues: int, min_instances: int, thresholds=THRESHOLDS,
                storage_dtype: str | None = "float16", progress: bool = False) -> dict[int, ConceptSweep]:
    """The sweeps of the raw units of every layer over one dataset: one forward pass over the
    reference proteins (the units' maxima), then one over the valid and test proteins."""
    index = dataset.index(min_residues, min_instances)
    reference = [(p, sequences[p]) for p in dataset.reference]
    unit_max = {layer: np.zeros(2 * model.d_model, np.float32) for layer in layers}
    for _, hidden in model_batches(model, reference, layers, max_tokens, storage_dtype,
                                   f"reference {dataset.name}" if progress else None):
        for layer, x in hidden.items():
            idx, val = raw_units(x)
            np.maximum.at(unit_max[layer], idx.reshape(-1), val.reshape(-1))
    sweeps = {layer: ConceptSweep(index, unit_max[layer], thresholds) for layer in layers}
    scored = [(p, sequences[p]) for p in index.proteins]
    for batch, hidden in model_batches(model, scored, layers, max_tokens, storage_dtype,
                                       f"concepts {dataset.name}" if progress else None):
        residues = np.concatenate([np.arange(index.offsets[i], index.offsets[i + 1]) for i in batch])
        for layer, x in hidden.items():
            sweeps[layer].add(residues, *raw_units(x))
    return sweeps


# --- What is reported ---------------------------------------------------------------------------

def source_of(concept: str) -> str:
    """A concept's source: the prefix of its name (Pfam, DSSP, Swiss-Prot, AA)."""
    return concept.split(":", 1)[0]


def dataset_pairs(name: str, scores, unit_names=None, f1_cutoff: float = 0.5) -> pd.DataFrame:
    """The best pair of every evaluated concept of one dataset (its sweep's ``scores``), with a
    ``dataset`` column first: what one SAE's job per dataset writes (`write_dataset_pairs`)."""
    pairs = scores.best_pairs(unit_names, f1_cutoff)
    pairs.insert(0, "dataset", name)
    return pairs


def write_dataset_pairs(pairs: pd.DataFrame, path: str | os.PathLike) -> None:
    """One dataset's best pairs as Parquet, atomically: dtypes and every bit of the floats kept,
    so the merged table (`coverage_summary`) is the one a single pass over all datasets writes."""
    with atomic_path(path) as tmp:
        pairs.to_parquet(tmp, index=False)


def read_dataset_pairs(path: str | os.PathLike) -> pd.DataFrame:
    return pd.read_parquet(path)


def coverage_summary(pairs_by_dataset: Mapping[str, pd.DataFrame], f1_cutoff: float = 0.5
                     ) -> tuple[pd.DataFrame, dict]:
    """The best pairs of every dataset in one table and the coverage counts: overall, per dataset
    and per source, amino acids apart (they are never in the overall count, as in InterPLM)."""
    frames = list(pairs_by_dataset.values())
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if table.empty:
        table = pd.DataFrame(columns=["dataset", "concept", "kind", "covered", "covered_by_valid_choice"])
    table["source"] = table["concept"].map(source_of) if len(table) else []

    def counts(rows):
        return {"concepts_evaluated": int(len(rows)), "covered": int(rows["covered"].sum()),
                "coverage": float(rows["covered"].mean()) if len(rows) else None,
                "covered_by_valid_choice": int(rows["covered_by_valid_choice"].sum())}

    concepts = table[table["source"] != AMINO_ACID_PREFIX[:-1]]
    amino = table[table["source"] == AMINO_ACID_PREFIX[:-1]]
    summary = {
        **counts(concepts),
        "amino_acids": counts(amino),
        "by_dataset": {name: counts(concepts[concepts["dataset"] == name]) for name in pairs_by_dataset},
        "by_source": {source: counts(rows) for source, rows in concepts.groupby("source")},
        "f1_cutoff": f1_cutoff,
    }
    return table, summary


def merge_coverage(pairs_paths: Mapping[str, str | os.PathLike], pairs_path: str | os.PathLike,
                   coverage_path: str | os.PathLike, header: Mapping, f1_cutoff: float = 0.5) -> dict:
    """One set of units' merge job: the best pairs of every dataset (``pairs_paths``, dataset ->
    `write_dataset_pairs` file) as one TSV at ``pairs_path``, and ``header`` (what the units are)
    with the `coverage_summary` counts as JSON at ``coverage_path``. Returns the counts."""
    pairs, summary = coverage_summary({name: read_dataset_pairs(path) for name, path in pairs_paths.items()},
                                      f1_cutoff)
    write_tsv(pairs, pairs_path)
    write_json(coverage_path, {**header, **summary})
    return summary


def coverage_tables(scores_by_dataset: Mapping[str, object], unit_names=None, f1_cutoff: float = 0.5
                    ) -> tuple[pd.DataFrame, dict]:
    """`coverage_summary` of every dataset's sweep scores at once."""
    return coverage_summary({name: dataset_pairs(name, scores, unit_names, f1_cutoff)
                             for name, scores in scores_by_dataset.items()}, f1_cutoff)


def coverage_row(coverage: Mapping) -> dict:
    """One summary-table row of a coverage file: what the units are, the overall counts, the
    amino acids apart, and covered / evaluated per dataset and per source."""
    row = {"features": coverage["features"], "layer": coverage["layer"],
           **{key: coverage.get(key) for key in ("variant", "k", "width")}, "n_units": coverage["n_units"]}
    row |= {key: coverage[key] for key in ("concepts_evaluated", "covered", "coverage", "covered_by_valid_choice")}
    row |= {"amino_acids_evaluated": coverage["amino_acids"]["concepts_evaluated"],
            "amino_acids_covered": coverage["amino_acids"]["covered"]}
    for group in ("by_dataset", "by_source"):
        for name, counts in coverage[group].items():
            row[f"{name}_covered"] = counts["covered"]
            row[f"{name}_evaluated"] = counts["concepts_evaluated"]
    return row
