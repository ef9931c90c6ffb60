# Stage 6: steering with family-specific latents (METHODS.md section 8). A BLAST database of every
# protein of the evaluation set's source, once; per SAE, the family alignment of each latent with
# test F1 above steering.f1_min (blastp, Clustal Omega), then one job that steers all of them and
# their controls; a summary across SAEs and Fig 6.

SAE_STEERING = LAYOUT.steering(EVALSET)
SAE_STEERING_LOGS = f"{LOGS}/steering/{EVALSET}/{SAE_FOLDER}"
BLAST_DB = f"{EVALSETS}/blastdb"


rule evalset_blastdb:
    """Every protein of evalset.sequences (cluster members too: the representatives alone are by
    construction under 30% identical to each other), as FASTA and a BLAST database."""
    input:
        sequences=config["evalset"]["sequences"],
    output:
        directory(BLAST_DB),
    log:
        f"logs/evalsets/{EVALSET}/blastdb.log",
    benchmark:
        f"logs/evalsets/{EVALSET}/blastdb.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(4000),
        runtime=60,
    conda:
        "../envs/steering.yaml"
    script:
        "../workflow/scripts/evalset_blastdb.py"


rule family_alignments:
    """Each family-specific latent's top test sequences and their BLAST hits of its family, aligned."""
    input:
        f1=f"{SAE_LATENTS}/family_f1.tsv",
        maxima=f"{SAE_LATENTS}/maxima.npz",
        split=f"{LATENTS}/split.tsv",
        labels=f"{EVALSETS}/families.tsv",
        db=BLAST_DB,
    output:
        latents=f"{SAE_STEERING}/latents.tsv",
        rows=f"{SAE_STEERING}/alignment_rows.tsv",
        columns=f"{SAE_STEERING}/alignment_columns.tsv",
    params:
        steering=settings(config["steering"], exclude={"multipliers", "base", "positions", "n_sequences", "seed",
                                                       "filter_share"}),
        n_top=config["latents"]["n_top"],
        top_fraction=config["latents"]["top_fraction"],
    log:
        f"{SAE_STEERING_LOGS}/alignments.log",
    benchmark:
        f"{SAE_STEERING_LOGS}/alignments.benchmark.tsv"
    threads: config["steering"]["threads"]
    resources:
        mem_mb=memory(config["steering"]["mem_mb"]),
        runtime=config["steering"]["runtime"],
    conda:
        "../envs/steering.yaml"
    script:
        "../workflow/scripts/family_alignments.py"


rule steer_sae:
    """Every aligned latent of one SAE and as many random control latents, steered on the top
    sequences at every multiplier (and 0); per-class metrics and the steered sequences."""
    input:
        weights=lambda wc: sae_file(wildcard_spec(wc), "sae.safetensors"),
        config=lambda wc: sae_file(wildcard_spec(wc), "config.json"),
        latents=f"{SAE_STEERING}/latents.tsv",
        rows=f"{SAE_STEERING}/alignment_rows.tsv",
        columns=f"{SAE_STEERING}/alignment_columns.tsv",
        f1=f"{SAE_LATENTS}/family_f1.tsv",
        maxima=f"{SAE_LATENTS}/maxima.npz",
        split=f"{LATENTS}/split.tsv",
    output:
        metrics=f"{SAE_STEERING}/metrics.tsv",
        sequences=f"{SAE_STEERING}/sequences.tsv",
        summary=f"{SAE_STEERING}/summary.tsv",
    params:
        steering=settings(config["steering"]),
        n_top=config["latents"]["n_top"],
        top_fraction=config["latents"]["top_fraction"],
        model=model_settings(),
    log:
        f"{SAE_STEERING_LOGS}/steer.log",
    benchmark:
        f"{SAE_STEERING_LOGS}/steer.benchmark.tsv"
    threads: config["steering"]["threads"]
    resources:
        mem_mb=memory(config["steering"]["mem_mb"]),
        runtime=config["steering"]["runtime"],
        gpu=config["steering"]["gpus"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/steer_sae.py"


rule steering_summary:
    """Every SAE's steering summary in one table (the SAE's coordinates first)."""
    input:
        [f"{LAYOUT.steering(EVALSET, spec)}/summary.tsv" for spec in sae_specs()],
    output:
        f"{RESULTS}/steering/{EVALSET}/summary.tsv",
    log:
        f"{LOGS}/steering/{EVALSET}/summary.log",
    benchmark:
        f"{LOGS}/steering/{EVALSET}/summary.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(2000),
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/steering_summary.py"


rule steering_figure:
    """Fig 6: fraction unchanged against the multiplier per conservation class, with and without
    the paper's filter, controls beside."""
    input:
        [f"{LAYOUT.steering(EVALSET, spec)}/metrics.tsv" for spec in sae_specs()],
    output:
        LAYOUT.figure("fig6_steering"),
    params:
        model=MODEL,
        filter_share=config["steering"]["filter_share"],
    log:
        f"{LOGS}/figures/fig6_steering.log",
    benchmark:
        f"{LOGS}/figures/fig6_steering.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(2000),
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/steering_figure.py"
