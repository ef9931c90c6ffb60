# Stage 1: seeded reservoir sample of a (UniRef50) FASTA, written as S shard FASTAs for caching.


rule sample_sequences:
    input:
        fasta=lambda wc: dataset_config(wc.dataset)["fasta"],
    output:
        fasta=f"{RESULTS}/sequences/{{dataset}}/sample.fasta",
        lengths=f"{RESULTS}/sequences/{{dataset}}/lengths.tsv",
        stats=f"{RESULTS}/sequences/{{dataset}}/stats.json",
        shards=directory(f"{RESULTS}/sequences/{{dataset}}/shards"),
    params:
        dataset=lambda wc: canonical(dataset_config(wc.dataset)),
        model=model_identity(),
    log:
        f"{LOGS}/sequences/{{dataset}}.log",
    benchmark:
        f"{LOGS}/sequences/{{dataset}}.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/sample_sequences.py"
