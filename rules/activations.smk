# Stage 2: one forward pass per (dataset, shard) writes every configured layer as Parquet, one file
# per layer in the shard's folder (the folder is the job's output, so the DAG tracks one node per
# shard, not per shard and layer); a manifest per (dataset, layer), all of a dataset's made by one
# job, records the model, counts and per-shard checksums.


rule cache_activations:
    wildcard_constraints:
        dataset=kept_pattern(),  # the intermediate datasets have the rule below
    input:
        shards=f"{LAYOUT.sequences()}/shards",
    output:
        shard=directory(LAYOUT.activation_shard()),
        stats=LAYOUT.activation_stats(),
    params:
        model=model_settings(),
        layers=LAYERS,
        activations=settings(config["activations"]),
        positions_per_sequence=lambda wc: dataset_config(wc.dataset)["positions_per_sequence"],
    log:
        f"{LOGS}/activations/{{dataset}}/shard{{shard}}.log",
    benchmark:
        f"{LOGS}/activations/{{dataset}}/shard{{shard}}.benchmark.tsv"
    threads: config["activations"]["threads"]
    # The critical path first (caching, then training, then encoding); probes fill the gaps.
    priority: 3
    resources:
        mem_mb=memory(config["activations"]["mem_mb"]),
        runtime=config["activations"]["runtime"],
        gpu=config["activations"]["gpus"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/cache_activations.py"


# With keep_intermediates false, the dense caches of the evaluation set and the probe tasks are
# removed once every job that reads them is done (Snakemake's temp()); the training cache stays.
# The probe tasks' caches start the long chain of the probes (codes, fits, sparse probes, the
# networks' sources): they go beside the SAE training, not after it.
use rule cache_activations as cache_intermediate_activations with:
    priority: 2
    output:
        shard=temp(directory(LAYOUT.activation_shard())),
        stats=LAYOUT.activation_stats(),
    wildcard_constraints:
        dataset=intermediate_pattern(),


rule activation_manifest:
    """Every layer's manifest of one dataset, from the caching jobs' stats files alone (they record
    each shard's size, checksum and metadata when it is written; readers check the shards)."""
    input:
        stats=lambda wc: [LAYOUT.activation_stats(wc.dataset, shard) for shard in shard_ids(wc.dataset)],
    output:
        [f"{LAYOUT.activations(layer=layer)}/manifest.json" for layer in LAYERS],
    params:
        layers=LAYERS,
    log:
        f"{LOGS}/activations/{{dataset}}/manifest.log",
    benchmark:
        f"{LOGS}/activations/{{dataset}}/manifest.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(1000),
        runtime=30,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/activation_manifest.py"
