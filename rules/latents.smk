# Stage 4: what the latents are (METHODS.md sections 1, 4-6). The evaluation set (Swiss-Prot,
# clustered at 30% identity, one representative per cluster) is cached and encoded like any other
# dataset; its encoding jobs write the per-protein maxima (rules/encoding.smk), from which come the
# family-specificity F1 sweep with its annotation-gap candidates; from its codes, the
# activation-pattern classes; and Figs 3c, 3d, 7a and 7b.

# One SAE's latent tables and their logs (wildcards layer, variant, k, width).
SAE_LATENTS = LAYOUT.latents(EVALSET)
SAE_LATENT_LOGS = f"{LOGS}/latents/{EVALSET}/{SAE_FOLDER}"


rule evalset_cluster:
    input:
        sequences=config["evalset"]["sequences"],
    output:
        fasta=REPRESENTATIVES,
        clusters=f"{EVALSETS}/clusters.tsv",
        stats=f"{EVALSETS}/cluster_stats.json",
    params:
        evalset=canonical({k: v for k, v in config["evalset"].items() if k in ("max_length", "min_length", "cluster")}),
    log:
        f"logs/evalsets/{EVALSET}/cluster.log",
    benchmark:
        f"logs/evalsets/{EVALSET}/cluster.benchmark.tsv"
    threads: config["evalset"]["threads"]
    resources:
        mem_mb=memory(config["evalset"]["mem_mb"]),
        runtime=config["evalset"]["runtime"],
    conda:
        "../envs/latents.yaml"
    script:
        "../workflow/scripts/evalset_cluster.py"


rule family_labels:
    input:
        unpack(family_label_inputs),
    output:
        labels=f"{EVALSETS}/families.tsv",
        stats=f"{EVALSETS}/families_stats.json",
    params:
        families=canonical({k: v for k, v in config["families"].items() if k in ("sources", "entries", "pfam2interpro")}),
    log:
        f"logs/evalsets/{EVALSET}/families.log",
    benchmark:
        f"logs/evalsets/{EVALSET}/families.benchmark.tsv"
    threads: config["families"]["threads"]
    resources:
        mem_mb=memory(config["families"]["mem_mb"]),
        runtime=config["families"]["runtime"],
    conda:
        "../envs/latents.yaml"
    script:
        "../workflow/scripts/family_labels.py"


rule evalset_split:
    input:
        lengths=f"{LAYOUT.sequences(EVALSET)}/lengths.tsv",
        clusters=f"{EVALSETS}/clusters.tsv",
    output:
        split=f"{LATENTS}/split.tsv",
        stats=f"{LATENTS}/split_stats.json",
    params:
        test_fraction=config["evalset"]["test_fraction"],
        seed=config["evalset"]["seed"],
    log:
        f"{LOGS}/latents/{EVALSET}/split.log",
    benchmark:
        f"{LOGS}/latents/{EVALSET}/split.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(2000),
        runtime=30,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/evalset_split.py"


rule family_specificity:
    input:
        maxima=f"{SAE_LATENTS}/maxima.npz",
        split=f"{LATENTS}/split.tsv",
        labels=f"{EVALSETS}/families.tsv",
    output:
        table=f"{SAE_LATENTS}/family_f1.tsv",
        summary=f"{SAE_LATENTS}/family_summary.json",
        gaps=f"{SAE_LATENTS}/gap_candidates.tsv",
    params:
        types=config["families"]["types"],
        thresholds=config["latents"]["thresholds"],
        f1_cutoff=config["latents"]["f1_cutoff"],
        bootstrap=settings(config["bootstrap"]),
    log:
        f"{SAE_LATENT_LOGS}/family_f1.log",
    benchmark:
        f"{SAE_LATENT_LOGS}/family_f1.benchmark.tsv"
    threads: config["latents"]["threads"]
    resources:
        mem_mb=memory(config["latents"]["mem_mb"]),
        runtime=config["latents"]["runtime"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/family_specificity.py"


rule activation_patterns:
    input:
        codes=evalset_codes,
        maxima=f"{SAE_LATENTS}/maxima.npz",
        split=f"{LATENTS}/split.tsv",
    output:
        table=f"{SAE_LATENTS}/patterns.tsv",
        summary=f"{SAE_LATENTS}/patterns_summary.json",
    params:
        codes=evalset_code_shards,
        n_top=config["latents"]["n_top"],
        top_fraction=config["latents"]["top_fraction"],
        min_top=config["latents"]["min_top"],
    log:
        f"{SAE_LATENT_LOGS}/patterns.log",
    benchmark:
        f"{SAE_LATENT_LOGS}/patterns.benchmark.tsv"
    threads: config["latents"]["threads"]
    resources:
        mem_mb=memory(config["latents"]["mem_mb"]),
        runtime=config["latents"]["runtime"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/activation_patterns.py"


rule latent_summary:
    input:
        family=[latent_path("family_summary.json", spec) for spec in sae_specs()],
        patterns=[latent_path("patterns_summary.json", spec) for spec in sae_specs()],
    output:
        f"{LATENTS}/summary.tsv",
    log:
        f"{LOGS}/latents/{EVALSET}/summary.log",
    benchmark:
        f"{LOGS}/latents/{EVALSET}/summary.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(1000),
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/latent_summary.py"


rule latent_figure:
    input:
        unpack(latent_figure_inputs),
    output:
        LAYOUT.figure("{figure}"),
    wildcard_constraints:
        figure="|".join(LATENT_FIGURES),
    params:
        sweep=lambda wc: latent_figure_sweep(wc.figure),
        model=MODEL,
        types=config["families"]["types"],
        f1_cutoff=config["latents"]["f1_cutoff"],
    log:
        f"{LOGS}/figures/{{figure}}.log",
    benchmark:
        f"{LOGS}/figures/{{figure}}.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(1000),
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/latent_figure.py"
