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
        training=settings(config["sae"]["training"]),
        # Only this variant's options, so tuning one variant reruns only its SAEs.
        variant_options=lambda wc: canonical(config["sae"]["variants"].get(wc.variant, {})),
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
        splice=lambda wc: [
            f"{sae_dir(**spec, dataset=wc.dataset)}/splice.json" for spec in sae_specs()
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


rule evaluate_sae:
    """Splice the SAE's reconstruction into the LM at its layer on held-out sequences: delta CE
    and loss recovered against zero-ablation (plus x_hat + error, which must give ~0)."""
    input:
        weights=f"{RESULTS}/sae/{{dataset}}/layer{{layer}}/{{variant}}_k{{k}}_w{{width}}/sae.safetensors",
        config=f"{RESULTS}/sae/{{dataset}}/layer{{layer}}/{{variant}}_k{{k}}_w{{width}}/config.json",
        sequences=f"{RESULTS}/sequences/{{dataset}}/sample.fasta",
    output:
        f"{RESULTS}/sae/{{dataset}}/layer{{layer}}/{{variant}}_k{{k}}_w{{width}}/splice.json",
    params:
        model=canonical(config["model"]),
        evaluation=settings(config["sae"]["evaluation"]),
        holdout=canonical({k: config["sae"]["training"][k] for k in ("holdout_fraction", "holdout_seed")}),
    log:
        f"{LOGS}/sae/{{dataset}}/layer{{layer}}/{{variant}}_k{{k}}_w{{width}}.splice.log",
    benchmark:
        f"{LOGS}/sae/{{dataset}}/layer{{layer}}/{{variant}}_k{{k}}_w{{width}}.splice.benchmark.tsv"
    threads: config["sae"]["evaluation"]["threads"]
    resources:
        mem_mb=config["sae"]["evaluation"]["mem_mb"],
        runtime=config["sae"]["evaluation"]["runtime"],
        gpu=config["sae"]["evaluation"]["gpus"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/evaluate_sae.py"


rule sae_sweep_figure:
    """FVU, delta CE, loss recovered and dead share of one config sweep's SAEs."""
    input:
        f"{RESULTS}/sae/{TRAIN_DATASET}/summary.tsv",
    output:
        f"{RESULTS}/figures/sae_sweep_{{sweep}}.png",
    params:
        sweep=lambda wc: canonical(sweep_config(wc.sweep)),
        title=f"{MODEL} SAEs",
    log:
        f"{LOGS}/figures/sae_sweep_{{sweep}}.log",
    benchmark:
        f"{LOGS}/figures/sae_sweep_{{sweep}}.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/sae_sweep_figure.py"
