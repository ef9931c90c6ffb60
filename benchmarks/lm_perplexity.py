"""Next-residue perplexity of UniRep 256 and 1900 on held-out Swiss-Prot, next to a unigram baseline.

The unigram baseline is the cross-entropy of the evaluation residues under residue frequencies
estimated on uniprot_sample (the training-set stand-in). The 1900 model is about 7 times slower
per residue than the 256 one on CPU, so by default it sees only the first --n-1900 proteins of the
same random sample; the table repeats the baseline and the 256 model on that subset so the rows
compare.

    .venv/bin/python benchmarks/lm_perplexity.py            # from the repository root
"""

from __future__ import annotations

import argparse
import gzip
import math
import random
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from protsae.files import write_json
from protsae.models.unirep import UniRep, package_weights_path

DATA = Path(__file__).resolve().parent.parent / "resources" / "demo"


def read_fasta(path: Path) -> list[str]:
    """Sequences of a (gzipped) FASTA file, in file order."""
    sequences: list[str] = []
    chunks: list[str] = []
    with (gzip.open(path, "rt") if path.suffix == ".gz" else open(path)) as handle:
        for line in handle:
            if line.startswith(">"):
                if chunks:
                    sequences.append("".join(chunks))
                chunks = []
            else:
                chunks.append(line.strip())
    if chunks:
        sequences.append("".join(chunks))
    return sequences


def unigram_nll(train_sequences: list[str], eval_sequences: list[str], alphabet: frozenset[str]) -> list[float]:
    """Summed negative log-likelihood (nats) of each eval sequence under add-one-smoothed training
    residue frequencies over ``alphabet``."""
    counts = Counter(letter for sequence in train_sequences for letter in sequence if letter in alphabet)
    total = sum(counts.values()) + len(alphabet)
    log_p = {letter: math.log((counts[letter] + 1) / total) for letter in alphabet}
    return [-sum(log_p[letter] for letter in sequence) for sequence in eval_sequences]


@torch.no_grad()
def model_nll(model: UniRep, sequences: list[str], batch_size: int) -> tuple[list[float], float]:
    """Summed next-residue NLL (nats) of each sequence, and the wall time, in length-sorted batches."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    nll = [0.0] * len(sequences)
    start = time.perf_counter()
    for first in range(0, len(order), batch_size):
        rows = order[first : first + batch_size]
        chunk = [sequences[i] for i in rows]
        batch = model.tokenize(chunk)
        targets = model.lm_targets(chunk, batch)
        log_probs = torch.log_softmax(model.logits(batch), dim=-1)
        scored = targets != -100
        token_nll = torch.zeros(targets.shape)
        token_nll[scored] = -log_probs[scored].gather(1, targets[scored][:, None]).squeeze(1)
        for row, total in zip(rows, token_nll.sum(dim=1).tolist()):
            nll[row] = total
    return nll, time.perf_counter() - start


def n_parameters(size: int) -> int:
    """Trained parameters of the published checkpoint (weight-norm gains included)."""
    with np.load(package_weights_path(size)) as npz:
        return sum(npz[key].size for key in npz.files)


def row(model: str, subset: str, sequences: list[str], nll: list[float], params: int | None, seconds: float | None) -> dict:
    residues = sum(len(s) for s in sequences)
    nats = sum(nll) / residues
    return {
        "model": model,
        "subset": subset,
        "n_sequences": len(sequences),
        "n_residues": residues,
        "params": params,
        "perplexity": round(math.exp(nats), 3),
        "bits_per_residue": round(nats / math.log(2), 4),
        "residues_per_s": round(residues / seconds, 1) if seconds else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-fasta", type=Path, default=DATA / "swissprot_subset.fasta.gz")
    parser.add_argument("--train-fasta", type=Path, default=DATA / "uniprot_sample.fasta.gz")
    parser.add_argument("--n", type=int, default=300, help="held-out proteins for UniRep 256")
    parser.add_argument("--n-1900", type=int, default=100, help="first proteins of the same sample for UniRep 1900")
    parser.add_argument("--max-length", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    # One thread by default: the per-step matmuls are small, and on a 2-core machine shared with
    # other jobs two intra-op threads ran 4-8 times slower than one (they wait on each other).
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads; 0 keeps torch's default")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "lm_perplexity.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model_256 = UniRep.from_weights(256)
    alphabet = model_256.alphabet
    candidates = [
        s for s in read_fasta(args.eval_fasta) if len(s) <= args.max_length and set(s) <= alphabet
    ]
    eval_sequences = random.Random(args.seed).sample(candidates, args.n)
    subset_1900 = eval_sequences[: args.n_1900]
    all_label, subset_label = f"all {args.n}", f"first {len(subset_1900)}"

    baseline = unigram_nll(read_fasta(args.train_fasta), eval_sequences, alphabet)
    nll_256, seconds_256 = model_nll(model_256, eval_sequences, args.batch_size)
    del model_256
    nll_1900, seconds_1900 = model_nll(UniRep.from_weights(1900), subset_1900, args.batch_size)

    k = len(subset_1900)
    rows = [
        row("unigram (uniprot_sample)", all_label, eval_sequences, baseline, 25, None),
        row("unirep256", all_label, eval_sequences, nll_256, n_parameters(256), seconds_256),
        row("unigram (uniprot_sample)", subset_label, subset_1900, baseline[:k], 25, None),
        row("unirep256", subset_label, subset_1900, nll_256[:k], n_parameters(256), None),
        row("unirep1900", subset_label, subset_1900, nll_1900, n_parameters(1900), seconds_1900),
    ]

    header = f"{'model':<26}{'subset':<11}{'residues':>9}{'params':>12}{'ppl':>8}{'bits/res':>10}{'res/s':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        speed = f"{r['residues_per_s']:.0f}" if r["residues_per_s"] else "-"
        print(
            f"{r['model']:<26}{r['subset']:<11}{r['n_residues']:>9}{r['params']:>12,}"
            f"{r['perplexity']:>8.2f}{r['bits_per_residue']:>10.3f}{speed:>9}"
        )
    if k < args.n:
        print(
            f"UniRep 1900 is evaluated on the first {k} of the {args.n} proteins only (--n-1900): "
            "compare it with the rows of that subset."
        )
    write_json(
        args.out,
        {
            "eval_fasta": str(args.eval_fasta),
            "train_fasta": str(args.train_fasta),
            "seed": args.seed,
            "max_length": args.max_length,
            "batch_size": args.batch_size,
            "torch_threads": torch.get_num_threads(),
            "rows": rows,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
