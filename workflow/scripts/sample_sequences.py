"""Snakemake script: reservoir-sample a FASTA into a sample, a length table and shard FASTAs."""

from pathlib import Path

from protsae.files import write_json
from protsae.logs import setup_logging
from protsae.models import model_alphabet
from protsae.sequences.sampling import sample_fasta

log = setup_logging(snakemake.log[0])
dataset = snakemake.params.dataset
shard_dir = Path(snakemake.output.shards)
stats = sample_fasta(
    snakemake.input.fasta,
    sample_out=snakemake.output.fasta,
    lengths_out=snakemake.output.lengths,
    shard_outs=[shard_dir / f"shard{i}.fasta" for i in range(dataset["n_shards"])],
    n=dataset["n_sequences"],
    max_length=dataset["max_length"],
    min_length=dataset["min_length"],
    seed=dataset["seed"],
    alphabet=model_alphabet(snakemake.params.model),
    policy=dataset["alphabet_policy"],
    config_key=f"datasets.{snakemake.wildcards.dataset}.alphabet_policy",
)
write_json(snakemake.output.stats, stats)
log.info("sampled %s", stats)
