# Stage 3: one SAE per (variant, layer, k, width) of the config's sweeps, trained on a stream
# over the cached shards of the training dataset, then spliced into the LM (delta CE).

# One SAE's directory and its logs (wildcards dataset, layer, variant, k, width).
SAE_DIR = LAYOUT.sae()
SAE_LOG = f"{LOGS}/sae/{{dataset}}/{SAE_FOLDER}"
# Settings that change how a run checkpoints, never its weights (a resumed run is bit-identical).
CHECKPOINT_KEYS = {"checkpoint_every", "checkpoint_minutes"}


rule train_sae:
    input:
        manifest=f"{LAYOUT.activations()}/manifest.json",
    output:
        weights=f"{SAE_DIR}/sae.safetensors",
        config=f"{SAE_DIR}/config.json",
        metrics=f"{SAE_DIR}/metrics.json",
        curve=f"{SAE_DIR}/loss_curve.png",
        history=f"{SAE_DIR}/history.csv",
    params:
        training=settings(config["sae"]["training"], exclude=CHECKPOINT_KEYS),
        # Only this variant's options, so tuning one variant reruns only its SAEs.
        variant_options=lambda wc: canonical(config["sae"]["variants"].get(wc.variant, {})),
    log:
        f"{SAE_LOG}.log",
    benchmark:
        f"{SAE_LOG}.benchmark.tsv"
    threads: config["sae"]["training"]["threads"]
    priority: 2
    resources:
        mem_mb=memory(config["sae"]["training"]["mem_mb"]),
        runtime=config["sae"]["training"]["runtime"],
        gpu=config["sae"]["training"]["gpus"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/train_sae.py"


# A published SAE (sae.published) is imported into the folder training would write; its name, the
# variant wildcard, is no sweep variant's, and the import is preferred where both rules could run.
ruleorder: import_sae > train_sae


rule import_sae:
    """Convert a published SAE into a protsae SAE, with the held-out metrics training writes."""
    input:
        unpack(published_inputs),
    output:
        weights=f"{SAE_DIR}/sae.safetensors",
        config=f"{SAE_DIR}/config.json",
        metrics=f"{SAE_DIR}/metrics.json",
    wildcard_constraints:
        variant=published_variants(),
    params:
        entry=lambda wc: canonical(published_entry(wc)[1]),
        # The held-out split and token budget of the trained SAEs, so that the metrics compare.
        holdout=canonical({k: config["sae"]["training"][k] for k in ("holdout_fraction", "holdout_seed", "eval_tokens")}),
    log:
        f"{SAE_LOG}.log",
    benchmark:
        f"{SAE_LOG}.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(config["sae"]["training"]["mem_mb"]),
        runtime=60,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/import_sae.py"


rule sae_summary:
    input:
        metrics=[sae_file(spec, "metrics.json") for spec in sae_specs()],
        splice=[sae_file(spec, "splice.json") for spec in sae_specs()],
    output:
        f"{RESULTS}/sae/{TRAIN_DATASET}/summary.tsv",
    log:
        f"{LOGS}/sae/{TRAIN_DATASET}/summary.log",
    benchmark:
        f"{LOGS}/sae/{TRAIN_DATASET}/summary.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(1000),
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/sae_summary.py"


rule evaluate_sae:
    """Splice the SAE's reconstruction into the LM at its layer on held-out sequences: delta CE
    and loss recovered against zero-ablation (plus x_hat + error, which must give ~0)."""
    input:
        weights=f"{SAE_DIR}/sae.safetensors",
        config=f"{SAE_DIR}/config.json",
        sequences=f"{LAYOUT.sequences()}/sample.fasta",
    output:
        f"{SAE_DIR}/splice.json",
    params:
        model=model_settings(),
        evaluation=settings(config["sae"]["evaluation"]),
        holdout=canonical({k: config["sae"]["training"][k] for k in ("holdout_fraction", "holdout_seed")}),
    log:
        f"{SAE_LOG}.splice.log",
    benchmark:
        f"{SAE_LOG}.splice.benchmark.tsv"
    threads: config["sae"]["evaluation"]["threads"]
    resources:
        mem_mb=memory(config["sae"]["evaluation"]["mem_mb"]),
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
        LAYOUT.figure("sae_sweep_{sweep}"),
    params:
        sweep=lambda wc: canonical(sweep_config(wc.sweep)),
        title=f"{MODEL} SAEs",
    log:
        f"{LOGS}/figures/sae_sweep_{{sweep}}.log",
    benchmark:
        f"{LOGS}/figures/sae_sweep_{{sweep}}.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(1000),
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/sae_sweep_figure.py"
