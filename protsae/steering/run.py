"""One SAE's steering study (METHODS.md section 8): its family-specific latents, each latent's
family alignment, then every top sequence steered at every multiplier, with the controls.

`family_specific_latents` picks the latents (test F1 above ``f1_min``) and their top test
sequences; `align_families` builds each one's consensus (`protsae.steering.consensus`);
`steer_latents` steers and measures (`protsae.steering.metrics`). Controls: each latent at
multiplier 0 (ablation), and as many random latents that are not family-specific, each steered on
the sequences and judged against the alignment of the family latent it is paired with.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from pandas.errors import EmptyDataError
from tqdm.auto import tqdm

from protsae.activations.batches import token_budget_batches
from protsae.codes.maxima import MaxActivations
from protsae.latents.evalset import read_split
from protsae.latents.patterns import top_sequences
from protsae.latents.specificity import family_specific
from protsae.models import ProteinLM
from protsae.sequences.fasta import FastaRecord
from protsae.steering.consensus import Alignment, blast_hits, run_clustalo
from protsae.steering.edit import Clamp, read_out_clamped
from protsae.steering.metrics import steering_metrics

log = logging.getLogger("protsae.steering")

BASES = ("family_max", "sequence_max", "latent_max")
RESOURCE_KEYS = frozenset({"enabled", "device", "threads", "mem_mb", "runtime", "gpus"})
"""Keys of the steering section that say whether and where the jobs run, not what they compute."""


@dataclass(frozen=True)
class SteeringSettings:
    """The steering section of the config (see config/schema.yaml for each key)."""

    f1_min: float = 0.7
    multipliers: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 4.0)
    base: str = "family_max"
    positions: str = "all"
    n_sequences: int | None = None
    max_target_seqs: int = 100
    evalue: float = 1e-3
    filter_share: float = 0.2
    seed: int = 0
    max_tokens: int = 8192

    @classmethod
    def from_config(cls, section: Mapping) -> SteeringSettings:
        """From the config's steering section (where and how the jobs run left out)."""
        values = {key: value for key, value in section.items() if key not in RESOURCE_KEYS}
        if "multipliers" in values:
            values["multipliers"] = tuple(float(m) for m in values["multipliers"])
        return cls(**values)

    def __post_init__(self):
        if self.base not in BASES:
            raise ValueError(f"steering.base must be one of {BASES}, got {self.base!r}")
        if self.positions not in ("all", "active"):
            raise ValueError(f"steering.positions must be 'all' or 'active', got {self.positions!r}")


def family_specific_latents(f1_table: pd.DataFrame, top: Sequence[Sequence[str]], f1_min: float,
                            source: str = "family_f1.tsv") -> pd.DataFrame:
    """latent, family, family_name, test_f1 and top (the latent's top test sequences, a list) of
    every latent with test F1 above ``f1_min`` and at least one top sequence."""
    scored = family_specific(f1_table, f1_min)
    rows = []
    for row in scored.itertuples():
        if not 0 <= row.latent < len(top):
            raise ValueError(f"{source}: latent {row.latent} is out of range: the SAE has {len(top)} latents")
        if top[row.latent]:
            rows.append({"latent": int(row.latent), "family": row.family, "family_name": row.family_name,
                         "test_f1": float(row.test_f1), "top": list(top[row.latent])})
    return pd.DataFrame(rows, columns=["latent", "family", "family_name", "test_f1", "top"])


def steered_latents_of(f1_path: str, maxima: MaxActivations, split_path: str, n_top: int, top_fraction: float,
                       f1_min: float) -> pd.DataFrame:
    """`family_specific_latents` from an SAE's family F1 table, its maxima and the evaluation
    split, with the top test sequences of section 6 (`top_sequences`)."""
    split = read_split(split_path)
    top = top_sequences(maxima, split.index[split["split"] == "test"].tolist(), n_top, top_fraction)
    return family_specific_latents(pd.read_csv(f1_path, sep="\t"), top, f1_min, source=f1_path)


def read_sae_tables(paths: Sequence[str]) -> pd.DataFrame:
    """Every SAE's steering table in one, skipping the empty ones (an SAE with no latent steered)."""
    tables = []
    for path in paths:
        try:
            tables.append(pd.read_csv(path, sep="\t"))
        except EmptyDataError:
            log.info("%s: no latent was steered", path)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def align_families(latents: pd.DataFrame, proteins: Mapping[str, str], labels: pd.DataFrame, db: str,
                   settings: SteeringSettings, threads: int = 1,
                   labels_source: str = "families.tsv") -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Each latent's family alignment: its top sequences and their BLAST hits that carry its
    family, aligned with Clustal Omega.

    proteins: id -> sequence of every protein of the BLAST database. labels: protein, accession.
    Returns (per latent: latent, family, n_top, n_hits, n_rows, status), (the rows: latent,
    seq_id, role top|hit, row) and (the columns: latent and `Alignment.columns`). A latent with
    fewer than two sequences to align gets status ``too_few_sequences`` and no alignment.
    """
    members = labels.groupby("accession")["protein"].agg(set).to_dict()
    for item in latents.itertuples():
        if not members.get(item.family):
            raise ValueError(f"{labels_source}: no protein carries family {item.family} of latent {item.latent}")
        missing = [pid for pid in item.top if pid not in proteins]
        if missing:
            raise ValueError(f"top sequence {missing[0]} of latent {item.latent} is not in the BLAST database's FASTA")
    # One blastp run for every latent's top sequences: each query's hits are its own (BLAST
    # scores and ranks every query separately), and one run saves a process and a database
    # load per latent.
    query_ids = sorted({pid for top in latents["top"] for pid in top}) if len(latents) else []
    hits_of: dict[str, set[str]] = {}
    if query_ids:
        hits = blast_hits([FastaRecord(pid, "", proteins[pid], 0) for pid in query_ids], db,
                          settings.max_target_seqs, settings.evalue, threads)
        hits_of = hits.groupby("query")["hit"].agg(set).to_dict()
    overview, row_tables, column_tables = [], [], []
    for item in tqdm(list(latents.itertuples()), desc="aligning", unit="latent", mininterval=2.0):
        family = members[item.family]
        found = set().union(*(hits_of.get(pid, set()) for pid in item.top))
        kept = sorted((found & family) - set(item.top))
        queries = [FastaRecord(pid, "", proteins[pid], 0) for pid in item.top]
        records = queries + [FastaRecord(pid, "", proteins[pid], 0) for pid in kept]
        status = "aligned" if len(records) >= 2 else "too_few_sequences"
        overview.append({"latent": item.latent, "family": item.family, "n_top": len(queries), "n_hits": len(kept),
                         "n_rows": len(records), "status": status})
        if status != "aligned":
            continue
        alignment = run_clustalo(records, threads)
        row_tables.append(pd.DataFrame({"latent": item.latent, "seq_id": list(alignment.rows),
                                        "role": ["top" if pid in item.top else "hit" for pid in alignment.rows],
                                        "row": list(alignment.rows.values())}))
        column_tables.append(alignment.columns().assign(latent=item.latent))
    rows = pd.concat(row_tables) if row_tables else pd.DataFrame(columns=["latent", "seq_id", "role", "row"])
    columns = (pd.concat(column_tables) if column_tables else
               pd.DataFrame(columns=["column", "consensus", "symbol", "conservation", "consensus_share", "occupancy",
                                     "latent"]))
    columns = columns[["latent", *[c for c in columns.columns if c != "latent"]]]
    return pd.DataFrame(overview), rows.reset_index(drop=True), columns.reset_index(drop=True)


def read_alignment(rows: pd.DataFrame, columns: pd.DataFrame, latent: int) -> tuple[Alignment, pd.DataFrame]:
    """One latent's alignment and column table from the tables `align_families` writes."""
    mine = rows[rows["latent"] == latent]
    table = columns[columns["latent"] == latent].drop(columns="latent").reset_index(drop=True)
    symbols = "".join(table["symbol"].fillna(" ").astype(str).str.ljust(1).str[:1])
    return Alignment(dict(zip(mine["seq_id"], mine["row"])), symbols), table


def max_pre_acts(model: ProteinLM, sae, layer: int, sequences: Sequence[str], max_tokens: int = 8192) -> list[float]:
    """Per sequence, the largest SAE pre-activation over all latents and residues (token-budget
    batches of length-sorted sequences)."""
    out = [0.0] * len(sequences)
    for indices in token_budget_batches([len(s) for s in sequences], max_tokens,
                                        specials=len(model.token_ids(""))):
        batch = model.tokenize([sequences[i] for i in indices])
        hidden = model.hidden_states(batch, [layer])[layer]
        with torch.no_grad():
            for row, i in enumerate(indices):
                residues = hidden[row][batch.residue_mask[row]].to(sae.W_dec.dtype)
                out[i] = float(sae.pre_acts(residues).max())
    return out


def control_latents(n_latents: int, excluded: set[int], alive: np.ndarray, count: int, seed: int) -> list[int]:
    """``count`` random latents that fire on the evaluation set and are not in ``excluded``."""
    pool = [j for j in range(n_latents) if alive[j] and j not in excluded]
    if len(pool) < count:
        raise ValueError(f"only {len(pool)} latents can serve as controls, {count} needed")
    return [int(j) for j in np.random.default_rng(seed).choice(pool, size=count, replace=False)]


def steer_latents(model: ProteinLM, sae, layer: int, latents: pd.DataFrame, overview: pd.DataFrame,
                  rows: pd.DataFrame, columns: pd.DataFrame, maxima: MaxActivations,
                  settings: SteeringSettings, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Steer every aligned latent and its control. Returns (metrics: one row per latent, kind
    family|control, sequence, multiplier and conservation class, with `steering_metrics`' columns,
    the steered latent, base and clamp value) and (the steered sequences: latent, kind,
    steered_latent, seq_id, multiplier, readout, with multiplier nan for the unsteered read-out).
    """
    aligned = latents[latents["latent"].isin(overview.loc[overview["status"] == "aligned", "latent"])]
    alive = np.zeros(maxima.n_latents, dtype=bool)
    alive[maxima.latent] = True
    controls = control_latents(maxima.n_latents, set(latents["latent"]), alive, len(aligned), settings.seed)
    latent_max = np.zeros(maxima.n_latents, dtype=np.float64)
    np.maximum.at(latent_max, maxima.latent, maxima.value)
    multipliers = [0.0, *settings.multipliers]
    kinds = ("family", "control")
    metric_rows = {kind: [] for kind in kinds}  # every family latent's rows, then every control's
    sequence_rows = {kind: [] for kind in kinds}
    unsteered_cache: dict[str, object] = {}
    active_only = settings.positions == "active"
    items = list(aligned.itertuples())
    bar = tqdm(zip(items, controls), total=len(items), desc="steering", unit="latent", disable=not progress,
               mininterval=2.0)
    for item, control in bar:
        alignment, table = read_alignment(rows, columns, int(item.latent))
        targets = list(item.top)[: settings.n_sequences]
        sequences = {pid: "".join(c for c in alignment.rows[pid] if c != "-") for pid in targets}
        # A latent and its control share the base (but for latent_max, each its own).
        if settings.base == "family_max":
            # Hits longer than the model takes inform the alignment only.
            family_sequences = [seq for seq in ("".join(c for c in row if c != "-") for row in alignment.rows.values())
                                if len(seq) <= model.max_residues]
            bases = dict.fromkeys(targets, max(max_pre_acts(model, sae, layer, family_sequences, settings.max_tokens)))
        elif settings.base == "sequence_max":
            bases = dict(zip(targets, max_pre_acts(model, sae, layer, list(sequences.values()), settings.max_tokens)))
        steered = {"family": int(item.latent), "control": control}
        base_of = {kind: (bases if settings.base != "latent_max" else
                          dict.fromkeys(targets, float(latent_max[steered[kind]]))) for kind in kinds}
        # The layers up to the SAE's run once per target; above it, every target at every multiplier
        # of the latent and of its control (and, the first time a target comes up, unclamped) in a
        # few batches.
        runs = [(kind, multiplier) for kind in kinds for multiplier in multipliers]
        new = {pid for pid in targets if pid not in unsteered_cache}
        clamps = [([None] if pid in new else [])
                  + [Clamp(steered[kind], multiplier * base_of[kind][pid], only_where_active=active_only)
                     for kind, multiplier in runs] for pid in targets]
        readouts = {}
        for pid, own in zip(targets, read_out_clamped(model, [sequences[pid] for pid in targets], sae, layer, clamps,
                                                      settings.max_tokens)):
            if pid in new:
                unsteered_cache[pid], own = own[0], own[1:]
            readouts.update({(pid, *run): readout for run, readout in zip(runs, own)})
        for kind in kinds:
            for pid in targets:
                sequence = sequences[pid]
                unsteered = unsteered_cache[pid]
                consensus = "".join(table["consensus"].to_numpy()[alignment.residue_columns(pid)])
                base_lp = unsteered.log_prob_of(consensus).numpy()
                common = {"latent": int(item.latent), "family": item.family, "kind": kind,
                          "steered_latent": steered[kind], "seq_id": pid}
                sequence_rows[kind].append({**common, "multiplier": float("nan"), "readout": unsteered.sequence})
                for multiplier in multipliers:
                    readout = readouts[pid, kind, multiplier]
                    shift = readout.log_prob_of(consensus).numpy() - base_lp
                    for metric in steering_metrics(sequence, unsteered.sequence, readout.sequence,
                                                   alignment.residue_columns(pid), table, shift):
                        metric_rows[kind].append({**common, "multiplier": multiplier, "base": settings.base,
                                                  "base_value": base_of[kind][pid],
                                                  "clamp_value": multiplier * base_of[kind][pid], **metric})
                    sequence_rows[kind].append({**common, "multiplier": multiplier, "readout": readout.sequence})
    return (pd.DataFrame([row for kind in kinds for row in metric_rows[kind]]),
            pd.DataFrame([row for kind in kinds for row in sequence_rows[kind]]))


def summarise(metrics: pd.DataFrame, filter_share: float = 0.2) -> pd.DataFrame:
    """Mean over latents (each latent's mean over its sequences first) per kind, multiplier and
    conservation class, with the paper's filter (latents whose fraction unchanged at multiplier
    0.5 exceeds ``filter_share``) and without it."""
    if metrics.empty:
        return pd.DataFrame()
    per_latent = (metrics.groupby(["kind", "latent", "steered_latent", "multiplier", "conservation"], as_index=False)
                  [["unchanged_vs_original", "unchanged_vs_unsteered", "to_consensus", "consensus_logprob_shift",
                    "n_residues"]].mean())
    at_half = per_latent[(per_latent["multiplier"] == 0.5) & (per_latent["conservation"] == "all")]
    passing = set(at_half.loc[at_half["unchanged_vs_original"] > filter_share, "latent"])
    out = []
    for filtered in (False, True):
        subset = per_latent[per_latent["latent"].isin(passing)] if filtered else per_latent
        grouped = subset.groupby(["kind", "multiplier", "conservation"], as_index=False)
        table = grouped[["unchanged_vs_original", "unchanged_vs_unsteered", "to_consensus",
                         "consensus_logprob_shift"]].mean()
        table["n_latents"] = grouped["latent"].nunique()["latent"].to_numpy()
        table["filtered"] = filtered
        out.append(table)
    return pd.concat(out, ignore_index=True)


