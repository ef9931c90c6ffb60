# Stage 3: one TopK SAE per (variant, layer, k, width) of the config's sweeps, trained on a
# stream over the cached shards of the training dataset.


rule train_sae:
    input:
        manifest=f"{RESULTS}/activations/{{dataset}}/layer{{layer}}/manifest.json",
    output:
        weights=f"{RESULTS}/sae/{{dataset}}/layer{{layer}}/{{variant}}_k{{k}}_w{{width}}/sae.safetensors",
        config=f"{RESULTS}/sae/{{dataset}}/layer{{layer}}/{{variant}}_k{{k}}_w{{width}}/config.json",
        metrics=f"{RESULTS}/sae/{{dataset}}/layer{{layer}}/{{variant}}_k{{k}}_w{{width}}/metrics.json",
        curve=f"{RESULTS}/sae/{{dataset}}/layer{{layer}}/{{variant}}_k{{k}}_w{{width}}/loss_curve.png",
        history=f"{RESULTS}/sae/{{dataset}}/layer{{layer}}/{{variant}}_k{{k}}_w{{width}}/history.csv",
    params:
        training=canonical(config["sae"]["training"]),
    log:
        f"{LOGS}/sae/{{dataset}}/layer{{layer}}/{{variant}}_k{{k}}_w{{width}}.log",
    benchmark:
        f"{LOGS}/sae/{{dataset}}/layer{{layer}}/{{variant}}_k{{k}}_w{{width}}.benchmark.tsv"
    threads: config["sae"]["training"]["threads"]
    resources:
        mem_mb=config["sae"]["training"]["mem_mb"],
        runtime=config["sae"]["training"]["runtime"],
        gpu=config["sae"]["training"]["gpus"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/train_sae.py"


rule sae_summary:
    input:
        metrics=lambda wc: [
            f"{sae_dir(**spec, dataset=wc.dataset)}/metrics.json" for spec in sae_specs()
        ],
    output:
        f"{RESULTS}/sae/{{dataset}}/summary.tsv",
    log:
        f"{LOGS}/sae/{{dataset}}/summary.log",
    benchmark:
        f"{LOGS}/sae/{{dataset}}/summary.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/sae_summary.py"
