"""The evaluation set of the latent analyses (METHODS.md section 1, paper A.3).

Swiss-Prot proteins of length <= 1022 are clustered at 30% identity with

    mmseqs easy-cluster in.fasta out tmp --min-seq-id 0.3 -c 0.9 -s 8 --max-seqs 1000000 --cluster-mode 1

one representative per cluster is kept, and the representatives are split train/test at random
with a seed (the paper: "given the low sequence identity between clustered sequences, we perform a
random train-test split"). Proteins are named by their UniProt accession throughout, so the codes,
the split and the family labels share one key.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from protsae.files import atomic_path
from protsae.sequences.fasta import (
    FastaRecord,
    read_fasta,
    uniprot_accession,
    write_fasta,
)

log = logging.getLogger(__name__)

FLAT_FILE_SUFFIXES = (".dat", ".dat.gz", ".txt", ".txt.gz")


@dataclass
class ClusterParams:
    """``mmseqs easy-cluster`` options; the defaults are the paper's."""

    min_seq_id: float = 0.3
    coverage: float = 0.9
    sensitivity: float = 8.0
    max_seqs: int = 1_000_000
    cluster_mode: int = 1

    def arguments(self) -> list[str]:
        return [
            "--min-seq-id", str(self.min_seq_id), "-c", str(self.coverage), "-s", str(self.sensitivity),
            "--max-seqs", str(self.max_seqs), "--cluster-mode", str(self.cluster_mode),
        ]


def is_flat_file(path: str | os.PathLike) -> bool:
    """A Swiss-Prot flat file (``uniprot_sprot.dat.gz``) rather than a FASTA, by its name."""
    return str(path).endswith(FLAT_FILE_SUFFIXES)


def read_proteins(path: str | os.PathLike) -> Iterator[FastaRecord]:
    """The sequences of a FASTA or Swiss-Prot flat file, renamed to their UniProt accession."""
    if is_flat_file(path):
        from .families import read_swissprot_dat

        for entry in read_swissprot_dat(path):
            yield FastaRecord(entry.accession, "", entry.sequence, entry.line)
        return
    for record in read_fasta(path):
        yield record._replace(seq_id=uniprot_accession(record.seq_id), description="")


def mmseqs_version() -> str:
    try:
        return subprocess.run(["mmseqs", "version"], capture_output=True, text=True, check=True).stdout.strip()
    except FileNotFoundError:
        raise RuntimeError(
            "mmseqs not found on PATH: install it (`apt-get install mmseqs2`, or `conda env create -f "
            "envs/mmseqs2.yaml`, or run snakemake with --software-deployment-method conda)"
        ) from None


def run_mmseqs_cluster(fasta: str | os.PathLike, params: ClusterParams, threads: int = 1) -> pd.DataFrame:
    """``mmseqs easy-cluster`` of ``fasta``: a DataFrame (representative, member) with one row per
    record, named by the FASTA IDs. Raises with mmseqs' own error output when it fails."""
    mmseqs_version()
    members = [record.seq_id for record in read_fasta(fasta)]
    with tempfile.TemporaryDirectory(prefix="protsae-mmseqs-") as workdir:
        workdir = Path(workdir)
        command = ["mmseqs", "easy-cluster", str(fasta), str(workdir / "out"), str(workdir / "tmp"),
                   *params.arguments(), "--threads", str(threads)]
        log.info("running %s", " ".join(command))
        result = subprocess.run(command, capture_output=True, text=True)
        log.debug(result.stdout)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        clusters = pd.read_csv(workdir / "out_cluster.tsv", sep="\t", header=None,
                               names=["representative", "member"], dtype=str)
    if sorted(clusters["member"]) != sorted(members):
        raise RuntimeError(f"mmseqs clusters do not cover exactly the records of {fasta}")
    return clusters


def cluster_representatives(
    sequences: str | os.PathLike,
    representatives_out: str | os.PathLike,
    clusters_out: str | os.PathLike,
    *,
    max_length: int = 1022,
    min_length: int = 1,
    params: ClusterParams | None = None,
    threads: int = 1,
    config_key: str = "evalset.sequences",
) -> dict:
    """Cluster the proteins of ``sequences`` (FASTA or flat file) and keep one per cluster.

    Proteins outside ``min_length <= length <= max_length`` are dropped before clustering.
    Outputs, written atomically: ``representatives_out`` (FASTA, ``>ACCESSION``, input order) and
    ``clusters_out`` (TSV ``representative  member``, one row per kept protein). Returns stats.
    """
    params = params or ClusterParams()
    version = mmseqs_version()
    counts = {"read": 0, "kept": 0}
    with tempfile.TemporaryDirectory(prefix="protsae-mmseqs-") as workdir:
        workdir = Path(workdir)
        kept_fasta = workdir / "kept.fasta"
        lines_of: dict[str, int] = {}
        order: list[str] = []

        def kept() -> Iterator[FastaRecord]:
            for record in read_proteins(sequences):
                counts["read"] += 1
                if record.seq_id in lines_of:
                    raise ValueError(
                        f"{sequences}, line {record.line}: accession {record.seq_id} already seen at line "
                        f"{lines_of[record.seq_id]} (check {config_key})"
                    )
                lines_of[record.seq_id] = record.line
                if min_length <= len(record.sequence) <= max_length:
                    counts["kept"] += 1
                    order.append(record.seq_id)
                    yield record

        write_fasta(kept(), kept_fasta)
        if not order:
            raise ValueError(f"{sequences}: no protein of length {min_length}..{max_length} ({config_key})")
        clusters = run_mmseqs_cluster(kept_fasta, params, threads)
        representatives = set(clusters["representative"])
        # From the filtered copy: a Swiss-Prot flat file is not parsed a second time.
        write_fasta((r for r in read_fasta(kept_fasta) if r.seq_id in representatives), representatives_out)
    rank = {accession: i for i, accession in enumerate(order)}
    clusters = clusters.assign(_r=clusters["representative"].map(rank), _m=clusters["member"].map(rank))
    clusters = clusters.sort_values(["_r", "_m"]).drop(columns=["_r", "_m"])
    with atomic_path(clusters_out) as tmp:
        clusters.to_csv(tmp, sep="\t", index=False)
    sizes = clusters.groupby("representative").size()
    return {
        "input": str(sequences),
        "mmseqs": version,
        "params": asdict(params),
        "proteins_read": counts["read"],
        "proteins_clustered": counts["kept"],
        "length_range": [min_length, max_length],
        "clusters": int(len(sizes)),
        "singletons": int((sizes == 1).sum()),
        "largest_cluster": int(sizes.max()),
        "mean_cluster_size": float(sizes.mean()),
    }


def split_representatives(proteins: Sequence[str], test_fraction: float, seed: int) -> pd.Series:
    """Seeded random train/test split: a Series protein -> "train" | "test", in sorted protein order.

    The draw depends only on the set of proteins, the fraction and the seed (not on input order).
    ``round(test_fraction * n)`` proteins go to test.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    names = sorted(set(proteins))
    if len(names) != len(proteins):
        raise ValueError("duplicate protein in the evaluation set")
    n_test = int(round(test_fraction * len(names)))
    test = np.zeros(len(names), dtype=bool)
    test[np.random.default_rng(seed).permutation(len(names))[:n_test]] = True
    return pd.Series(np.where(test, "test", "train"), index=pd.Index(names, name="protein"), name="split")


def write_split(lengths_tsv: str | os.PathLike, clusters_tsv: str | os.PathLike, out: str | os.PathLike,
                test_fraction: float, seed: int) -> dict:
    """Split the proteins of a sampled evaluation dataset (its ``lengths.tsv``) and write
    ``protein  split  length  cluster_size`` (TSV, sorted by protein). Returns counts."""
    lengths = pd.read_csv(lengths_tsv, sep="\t", dtype={"seq_id": str})
    clusters = pd.read_csv(clusters_tsv, sep="\t", dtype=str)
    cluster_size = clusters.groupby("representative").size()
    not_representative = sorted(set(lengths["seq_id"]) - set(cluster_size.index))
    if not_representative:
        raise ValueError(f"{lengths_tsv}: {not_representative[0]} is not a cluster representative in "
                         f"{clusters_tsv}; the dataset must sample the representatives FASTA")
    split = split_representatives(list(lengths["seq_id"]), test_fraction, seed)
    table = pd.DataFrame({
        "protein": split.index,
        "split": split.to_numpy(),
        "length": lengths.set_index("seq_id").loc[split.index, "length"].to_numpy(),
        "cluster_size": cluster_size.loc[split.index].to_numpy(),
    })
    with atomic_path(out) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    return {"proteins": len(table), **table["split"].value_counts().to_dict(), "test_fraction": test_fraction,
            "seed": seed}


def read_split(path: str | os.PathLike) -> pd.DataFrame:
    """The split table, indexed by protein."""
    return pd.read_csv(path, sep="\t", dtype={"protein": str}).set_index("protein")

