# Stage 1: seeded reservoir sample of a (UniRef50) FASTA, written as S shard FASTAs for caching.


rule sample_sequences:
    input:
        fasta=lambda wc: dataset_config(wc.dataset)["fasta"],
    output:
        fasta=f"{LAYOUT.sequences()}/sample.fasta",
        lengths=f"{LAYOUT.sequences()}/lengths.tsv",
        stats=f"{LAYOUT.sequences()}/stats.json",
        shards=directory(f"{LAYOUT.sequences()}/shards"),
    params:
        # Not expected_mean_length: it only sizes the projected caches of a dry run.
        dataset=lambda wc: settings(dataset_config(wc.dataset), exclude={"expected_mean_length"}),
        model=model_identity(),
    log:
        f"{LOGS}/sequences/{{dataset}}.log",
    benchmark:
        f"{LOGS}/sequences/{{dataset}}.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(2000),
        runtime=60,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/sample_sequences.py"
