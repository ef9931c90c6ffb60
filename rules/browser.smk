# Stage 7: the latent browser (METHODS.md section 13), a static site under results/<model>/browser
# that opens from file://. Per SAE and dataset shown (the evaluation set, and the dataset whose
# proteins have structures), a job draws each latent's example proteins and their tracks from the
# codes; the sequences, the structures and the assets are written once for all SAEs; then one job
# per SAE writes its pages and every latent's data file, and the index lists the SAEs.

BROWSER_LOGS = f"{LOGS}/browser"
BROWSER_RESOURCES = dict(mem_mb=memory(BROWSER["mem_mb"]), runtime=BROWSER["runtime"])


if STRUCTURES:

    rule browser_structure_index:
        input:
            source=STRUCTURES["path"],
            sequences=f"{LAYOUT.sequences(STRUCTURE_DATASET)}/sample.fasta",
        output:
            structures=f"{RESULTS}/browser_data/structures.npz",
            index=f"{RESULTS}/browser_data/structures.tsv",
        params:
            structures=canonical(STRUCTURES),
        log:
            f"{BROWSER_LOGS}/structure_index.log",
        benchmark:
            f"{BROWSER_LOGS}/structure_index.benchmark.tsv"
        threads: 1
        resources:
            **BROWSER_RESOURCES,
        conda:
            "../envs/torch.yaml"
        script:
            "../workflow/scripts/browser_structure_index.py"


rule browser_examples:
    input:
        unpack(browser_examples_inputs),
    output:
        examples=f"{LAYOUT.examples('{dataset}')}/examples.parquet",
        overview=f"{LAYOUT.examples('{dataset}')}/overview.parquet",
    wildcard_constraints:
        dataset="|".join(re.escape(d) for d in browser_datasets()),
    params:
        # The evaluation set gives the binned examples, the structure dataset the structure proteins.
        bins=lambda wc: wc.dataset == EVALSET,
        examples_per_bin=BROWSER["examples_per_bin"],
        n_structures=lambda wc: BROWSER["n_structures"] if wc.dataset == STRUCTURE_DATASET else 0,
        shards=lambda wc: code_shards(wc.dataset, wildcard_spec(wc)),
    log:
        f"{BROWSER_LOGS}/examples/{{dataset}}/{SAE_FOLDER}.log",
    benchmark:
        f"{BROWSER_LOGS}/examples/{{dataset}}/{SAE_FOLDER}.benchmark.tsv"
    threads: BROWSER["threads"]
    resources:
        **BROWSER_RESOURCES,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/browser_examples.py"


rule browser_shared:
    input:
        sequences=[f"{LAYOUT.sequences(dataset)}/sample.fasta" for dataset in browser_datasets()],
    output:
        proteins=directory(f"{LAYOUT.browser}/proteins"),
        assets=directory(f"{LAYOUT.browser}/assets"),
    log:
        f"{BROWSER_LOGS}/shared.log",
    benchmark:
        f"{BROWSER_LOGS}/shared.benchmark.tsv"
    threads: 1
    resources:
        **BROWSER_RESOURCES,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/browser_shared.py"


rule browser_structures:
    input:
        structures=f"{RESULTS}/browser_data/structures.npz" if STRUCTURES else [],
        examples=[examples_file(STRUCTURE_DATASET, spec) for spec in sae_specs()] if STRUCTURES else [],
    output:
        directory(f"{LAYOUT.browser}/structures"),
    log:
        f"{BROWSER_LOGS}/structures.log",
    benchmark:
        f"{BROWSER_LOGS}/structures.benchmark.tsv"
    threads: 1
    resources:
        **BROWSER_RESOURCES,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/browser_structures.py"


rule browser_sae:
    input:
        unpack(browser_sae_inputs),
    output:
        directory(LAYOUT.browser_sae()),
    params:
        f1_cutoff=config["latents"]["f1_cutoff"],
        evalset=EVALSET,
        tasks=PROBE_TASKS,
        # Where its feature-network neighbours' pages are: layer -> that SAE's folder.
        network_folders=lambda wc: network_folders(wildcard_spec(wc)),
    log:
        f"{BROWSER_LOGS}/sae/{SAE_FOLDER}.log",
    benchmark:
        f"{BROWSER_LOGS}/sae/{SAE_FOLDER}.benchmark.tsv"
    threads: 1
    resources:
        **BROWSER_RESOURCES,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/browser_sae.py"


rule browser_index:
    input:
        saes=[LAYOUT.browser_sae(spec) for spec in sae_specs()],
        sae_summary=f"{RESULTS}/sae/{TRAIN_DATASET}/summary.tsv",
        latent_summary=f"{LATENTS}/summary.tsv",
        shared=[f"{LAYOUT.browser}/proteins", f"{LAYOUT.browser}/assets", f"{LAYOUT.browser}/structures"],
    output:
        index=f"{LAYOUT.browser}/index.html",
        saes=f"{LAYOUT.browser}/saes.js",
        size=f"{RESULTS}/browser_data/site_size.json",
    params:
        model=MODEL,
        saes=[spec.as_dict() for spec in sae_specs()],
    log:
        f"{BROWSER_LOGS}/index.log",
    benchmark:
        f"{BROWSER_LOGS}/index.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(1000),
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/browser_index.py"
