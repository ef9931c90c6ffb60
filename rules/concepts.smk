# Concept coverage (METHODS.md section 10): per-residue concepts of each dataset named under
# concepts.datasets (Swiss-Prot features, Pfam envelopes, DSSP states, amino acids), swept against
# every SAE's latents from its code shards and against the raw residual dimensions of every layer
# (each sign a unit; one forward pass over the concept proteins), thresholds chosen on valid and
# scored on test; the summary table and the coverage figure.


rule concept_table:
    """One dataset's concept table and its concept split (reference / valid / test)."""
    input:
        unpack(concept_table_inputs),
    output:
        concepts=f"{LAYOUT.concept_dataset()}/concepts.tsv.gz",
        split=f"{LAYOUT.concept_dataset()}/split.tsv",
        stats=f"{LAYOUT.concept_dataset()}/stats.json",
    params:
        dataset=lambda wc: canonical(config["concepts"]["datasets"][wc.dataset]),
        split=canonical({k: config["concepts"][k] for k in ("max_reference", "max_proteins", "valid_fraction", "seed")}),
    log:
        f"{LOGS}/concepts/datasets/{{dataset}}.log",
    benchmark:
        f"{LOGS}/concepts/datasets/{{dataset}}.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(4000),
        runtime=30,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/concept_table.py"


rule concept_sweep:
    """One SAE's latents against one concept dataset, from its code shards of that dataset: the
    dataset's best pairs. One job per (SAE, dataset), so a changed dataset reruns only its own."""
    input:
        unpack(concept_sweep_inputs),
    output:
        concept_pairs(LAYOUT.concepts()),
    params:
        codes=lambda wc: code_shards(wc.dataset, wildcard_spec(wc)),
        sweep=CONCEPT_SWEEP,
    log:
        f"{LOGS}/concepts/sae/{SAE_FOLDER}.{{dataset}}.log",
    benchmark:
        f"{LOGS}/concepts/sae/{SAE_FOLDER}.{{dataset}}.benchmark.tsv"
    threads: config["concepts"]["threads"]
    resources:
        mem_mb=memory(config["concepts"]["mem_mb"]),
        runtime=config["concepts"]["runtime"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/concept_sweep.py"


rule concept_coverage:
    """One SAE's best pairs over every concept dataset in one table, and its coverage counts."""
    input:
        pairs=[concept_pairs(LAYOUT.concepts(), dataset) for dataset in CONCEPT_DATASETS],
        config=lambda wc: sae_file(wildcard_spec(wc), "config.json"),
    output:
        pairs=f"{LAYOUT.concepts()}/best_pairs.tsv",
        coverage=f"{LAYOUT.concepts()}/coverage.json",
    params:
        datasets=CONCEPT_DATASETS,
        f1_cutoff=config["concepts"]["f1_cutoff"],
    log:
        f"{LOGS}/concepts/sae/{SAE_FOLDER}.log",
    benchmark:
        f"{LOGS}/concepts/sae/{SAE_FOLDER}.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(1000),
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/concept_coverage.py"


rule concept_sweep_raw:
    """The raw residual dimensions of every layer against one concept dataset: the model runs
    once over the dataset's concept proteins; per layer, the dataset's best pairs."""
    input:
        concepts=f"{LAYOUT.concept_dataset()}/concepts.tsv.gz",
        split=f"{LAYOUT.concept_dataset()}/split.tsv",
        sequences=f"{LAYOUT.sequences()}/sample.fasta",
    output:
        pairs=[concept_pairs(LAYOUT.concepts_raw(layer)) for layer in LAYERS],
    params:
        layers=LAYERS,
        model=model_settings(),
        n_units=2 * MODEL_SHAPE.d_model,
        storage_dtype=config["activations"]["storage_dtype"],
        # The batches' token budget: padding can move the last bits of an activation.
        max_tokens=config["concepts"]["max_tokens"],
        sweep=CONCEPT_SWEEP,
    log:
        f"{LOGS}/concepts/raw.{{dataset}}.log",
    benchmark:
        f"{LOGS}/concepts/raw.{{dataset}}.benchmark.tsv"
    threads: config["concepts"]["threads"]
    resources:
        mem_mb=memory(config["concepts"]["mem_mb"]),
        runtime=config["concepts"]["runtime"],
        gpu=config["concepts"]["gpus"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/concept_sweep_raw.py"


rule concept_coverage_raw:
    """One layer's raw dimensions: their best pairs over every concept dataset in one table, and
    the coverage counts."""
    input:
        pairs=[concept_pairs(LAYOUT.concepts_raw(), dataset) for dataset in CONCEPT_DATASETS],
    output:
        pairs=f"{LAYOUT.concepts_raw()}/best_pairs.tsv",
        coverage=f"{LAYOUT.concepts_raw()}/coverage.json",
    params:
        datasets=CONCEPT_DATASETS,
        f1_cutoff=config["concepts"]["f1_cutoff"],
        n_units=2 * MODEL_SHAPE.d_model,
    log:
        f"{LOGS}/concepts/raw/layer{{layer}}.log",
    benchmark:
        f"{LOGS}/concepts/raw/layer{{layer}}.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(1000),
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/concept_coverage_raw.py"


rule concept_summary:
    input:
        sae=[concept_outputs(spec, "coverage.json") for spec in sae_specs()],
        raw=[concept_outputs(layer, "coverage.json") for layer in LAYERS] if config["concepts"]["raw"] else [],
    output:
        f"{RESULTS}/concepts/summary.tsv",
    log:
        f"{LOGS}/concepts/summary.log",
    benchmark:
        f"{LOGS}/concepts/summary.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(1000),
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/concept_summary.py"


rule concept_figure:
    """Concepts covered per layer (SAE latents vs raw dimensions) and across k and width."""
    input:
        unpack(concept_figure_inputs),
    output:
        LAYOUT.figure(CONCEPT_FIGURE),
    params:
        panels=concept_figure_sweeps(),
        title=f"{MODEL}: concept coverage",
    log:
        f"{LOGS}/figures/{CONCEPT_FIGURE}.log",
    benchmark:
        f"{LOGS}/figures/{CONCEPT_FIGURE}.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(1000),
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/concept_figure.py"
