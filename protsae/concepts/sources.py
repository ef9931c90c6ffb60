"""The concept sources (METHODS.md section 10), each a function that returns a concept table
(`protsae.concepts.table`) for the proteins of one dataset:

* ``swissprot_flat``: Swiss-Prot flat-file FT lines (`protsae.concepts.swissprot`);
* ``pfam_hits``: Pfam domain envelopes from a hit table (HMMER, gathering cutoffs), one concept
  per Pfam family (``Pfam:<accession> <name>``), each domain an interval instance;
* ``dssp_bundle``: the 8-state DSSP string of each structure chain (the bundle's
  ``structures_backbone.npz`` or ``dssp_chains.tsv.gz``, chains named ``<pdb_id>_<chain>``),
  each maximal run of one state an interval instance of ``DSSP:<state>`` (H, G, I, E, B, T, S;
  coil is not a concept);
* amino acids (``AA:<letter>``, residue kind), from the sequences themselves; InterPLM reports
  them apart, and so does the coverage summary.
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np
import pandas as pd

from protsae.concepts.swissprot import parse_swissprot_features
from protsae.concepts.table import check_concepts, concept_frame
from protsae.latents.families import read_pfam_hits

DSSP_STATES = "HGIEBTS"
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
SOURCE_KINDS = ("swissprot_flat", "pfam_hits", "dssp_bundle")


def pfam_concepts(path: str | os.PathLike, proteins) -> pd.DataFrame:
    """Pfam envelopes (1-based inclusive ``env_from .. env_to``) as interval instances."""
    hits = read_pfam_hits(path)
    hits = hits[hits["accession"].isin(set(proteins))]
    names = "Pfam:" + hits["pfam_acc"] + " " + hits["pfam_name"]
    return concept_frame(pd.DataFrame({"protein": hits["accession"], "concept": names,
                                       "start": hits["env_from"] - 1, "end": hits["env_to"], "kind": "interval"}))


def _dssp_strings(path: str | os.PathLike) -> dict[str, str]:
    if str(path).endswith(".npz"):
        with np.load(path) as data:
            if not {"pdb_id", "chain", "dssp8"} <= set(data.files):
                raise ValueError(f"{path}: not a structure bundle (needs arrays pdb_id, chain, dssp8)")
            return {f"{p}_{c}": s for p, c, s in zip(data["pdb_id"].tolist(), data["chain"].tolist(),
                                                      data["dssp8"].tolist())}
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if not {"pdb_id", "chain", "dssp8"} <= set(table.columns):
        raise ValueError(f"{path}: a DSSP table needs columns pdb_id, chain, dssp8")
    return dict(zip(table["pdb_id"] + "_" + table["chain"], table["dssp8"]))


def state_runs(states: str) -> list[tuple[str, int, int]]:
    """Maximal runs of one DSSP state: (state, start, end), 0-based half-open."""
    if not states:
        return []
    codes = np.frombuffer(states.encode(), dtype=np.uint8)
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    ends = np.r_[starts[1:], len(codes)]
    return [(states[s], int(s), int(e)) for s, e in zip(starts, ends)]


def dssp_concepts(path: str | os.PathLike, sequences: Mapping[str, str]) -> pd.DataFrame:
    """Runs of each DSSP state of the chains in ``sequences`` (id -> sequence); a chain whose
    DSSP string is not as long as its sequence is an error naming both."""
    strings = _dssp_strings(path)
    rows = []
    for protein, sequence in sequences.items():
        states = strings.get(protein)
        if states is None:
            continue
        if len(states) != len(sequence):
            raise ValueError(f"{path}, chain {protein}: {len(states)} DSSP states for {len(sequence)} residues")
        rows += [(protein, f"DSSP:{state}", start, end, "interval")
                 for state, start, end in state_runs(states) if state in DSSP_STATES]
    return concept_frame(rows)


def amino_acid_concepts(sequences: Mapping[str, str]) -> pd.DataFrame:
    """Each residue of the 20 standard amino acids, as a residue instance of ``AA:<letter>``."""
    proteins, concepts, starts = [], [], []
    for protein, sequence in sequences.items():
        letters = np.frombuffer(sequence.encode(), dtype="S1")
        keep = np.isin(letters, np.frombuffer(AMINO_ACIDS.encode(), dtype="S1"))
        positions = np.flatnonzero(keep)
        proteins.append(np.full(len(positions), protein, dtype=object))
        concepts.append(np.char.add(b"AA:", letters[positions]).astype(str))
        starts.append(positions)
    start = np.concatenate(starts) if starts else np.zeros(0, np.int64)
    return concept_frame(pd.DataFrame({
        "protein": np.concatenate(proteins) if proteins else [], "concept": np.concatenate(concepts) if concepts else [],
        "start": start, "end": start + 1, "kind": "residue"}))


def build_concepts(sources, sequences: Mapping[str, str], amino_acids: bool = True,
                   where: str = "concepts") -> tuple[pd.DataFrame, dict]:
    """The concept table of one dataset (``sequences``: id -> sequence) from its sources (dicts
    with ``kind`` and ``path``), checked against the sequence lengths, and per-source counts."""
    frames, stats = [], {}
    for number, source in enumerate(sources):
        kind, path = source["kind"], source["path"]
        if kind == "swissprot_flat":
            frame, counts = parse_swissprot_features(path, proteins=sequences)
        elif kind == "pfam_hits":
            frame, counts = pfam_concepts(path, sequences), {}
        elif kind == "dssp_bundle":
            frame, counts = dssp_concepts(path, sequences), {}
        else:
            raise ValueError(f"{where}.sources[{number}].kind: {kind!r} is not one of {', '.join(SOURCE_KINDS)}")
        check_concepts(frame, {p: len(s) for p, s in sequences.items()}, where=f"{path} ({where}.sources[{number}])")
        stats[f"{kind}:{path}"] = {**counts, "instances": len(frame), "concepts": int(frame["concept"].nunique()),
                                   "proteins": int(frame["protein"].nunique())}
        frames.append(frame)
    if amino_acids:
        frames.append(amino_acid_concepts(sequences))
        stats["amino_acids"] = {"instances": len(frames[-1])}
    table = concept_frame(pd.concat(frames, ignore_index=True)) if frames else concept_frame([])
    return table, stats
