# Stage 2: one forward pass per (dataset, shard) writes every configured layer as Parquet;
# a manifest per (dataset, layer) records the model, counts and per-shard checksums.


rule cache_activations:
    input:
        shards=f"{RESULTS}/sequences/{{dataset}}/shards",
    output:
        parquet=expand(
            f"{RESULTS}/activations/{{{{dataset}}}}/layer{{layer}}/shard{{{{shard}}}}.parquet",
            layer=LAYERS,
        ),
        stats=f"{RESULTS}/activations/{{dataset}}/stats/shard{{shard}}.json",
    params:
        model=canonical(config["model"]),
        layers=LAYERS,
        activations=settings(config["activations"]),
        positions_per_sequence=lambda wc: dataset_config(wc.dataset)["positions_per_sequence"],
    log:
        f"{LOGS}/activations/{{dataset}}/shard{{shard}}.log",
    benchmark:
        f"{LOGS}/activations/{{dataset}}/shard{{shard}}.benchmark.tsv"
    threads: config["activations"]["threads"]
    resources:
        mem_mb=config["activations"]["mem_mb"],
        runtime=config["activations"]["runtime"],
        gpu=config["activations"]["gpus"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/cache_activations.py"


rule activation_manifest:
    input:
        parquet=lambda wc: expand(
            f"{RESULTS}/activations/{wc.dataset}/layer{wc.layer}/shard{{shard}}.parquet",
            shard=shard_ids(wc.dataset),
        ),
        stats=lambda wc: expand(
            f"{RESULTS}/activations/{wc.dataset}/stats/shard{{shard}}.json",
            shard=shard_ids(wc.dataset),
        ),
    output:
        f"{RESULTS}/activations/{{dataset}}/layer{{layer}}/manifest.json",
    log:
        f"{LOGS}/activations/{{dataset}}/manifest_layer{{layer}}.log",
    benchmark:
        f"{LOGS}/activations/{{dataset}}/manifest_layer{{layer}}.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/activation_manifest.py"
