# Stage 5: linear probes (METHODS.md section 7, paper Table 1). Each task's sequences are loaded,
# subsampled and split by homology clusters once (model-independent), then cached and encoded as
# the dataset probe_<task>; one probe is fitted per task, layer and feature set (raw activations,
# or the latents of one SAE), with Figs 4 and 9 on top.


rule probe_task:
    input:
        unpack(probe_task_inputs),
    output:
        fasta=f"{LAYOUT.probe_task()}/sequences.fasta",
        labels=f"{LAYOUT.probe_task()}/labels.tsv",
        stats=f"{LAYOUT.probe_task()}/stats.json",
    wildcard_constraints:
        task="|".join(PROBE_TASKS) or "NO_TASKS",
    params:
        task=lambda wc: probe_task_settings(wc.task),
    log:
        "logs/probes/{task}/task.log",
    benchmark:
        "logs/probes/{task}/task.benchmark.tsv"
    threads: 2
    resources:
        mem_mb=memory(8000),
        runtime=120,
    conda:
        "../envs/latents.yaml"
    script:
        "../workflow/scripts/probe_task.py"


rule probe_fit:
    input:
        unpack(probe_fit_inputs),
    output:
        result=f"{LAYOUT.probe('{task}')}/result.json",
        coef=f"{LAYOUT.probe('{task}')}/coef.npy",
        top=f"{LAYOUT.probe('{task}')}/top_coefficients.tsv",
    wildcard_constraints:
        task="|".join(PROBE_TASKS) or "NO_TASKS",
        features=r"raw|[a-z0-9_]+_k\d+_w\d+",
    params:
        task=lambda wc: probe_task_settings(wc.task),
        probes=settings(config["probes"], exclude={"tasks", "sweeps", "figure_sweep", "sparse"}),
        bootstrap=settings(config["bootstrap"]),
        shards=probe_fit_shards,
    log:
        f"{LOGS}/probes/{{task}}/layer{{layer}}/{{features}}.log",
    benchmark:
        f"{LOGS}/probes/{{task}}/layer{{layer}}/{{features}}.benchmark.tsv"
    threads: config["probes"]["threads"]
    resources:
        mem_mb=memory(config["probes"]["mem_mb"]),
        runtime=config["probes"]["runtime"],
        gpu=config["probes"]["gpus"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/probe_fit.py"


rule probe_summary:
    input:
        [probe_path(*fit, "result.json") for fit in probe_fits()],
    output:
        f"{RESULTS}/probes/summary.tsv",
    log:
        f"{LOGS}/probes/summary.log",
    benchmark:
        f"{LOGS}/probes/summary.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(2000),
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/probe_summary.py"


rule probe_figure:
    input:
        unpack(probe_figure_inputs),
    output:
        LAYOUT.figure("{figure}"),
    wildcard_constraints:
        figure="fig4_probes_per_layer|fig9_probe_coefficients",
    params:
        model=MODEL,
        tasks=lambda wc: {task: probe_task_config(task)["probe"] for task in PROBE_TASKS},
    log:
        f"{LOGS}/figures/{{figure}}.log",
    benchmark:
        f"{LOGS}/figures/{{figure}}.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(2000),
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/probe_figure.py"


# Sparse probing (SAEBench): top-k features by mean difference, logistic regression on them, per
# (task, layer, features) like the probes above. Tasks: every protein-classifier probe task (one
# class against the rest) and "families", the evaluation set's largest families (one family
# against the rest), on SAE latents and on raw dimensions; see protsae/probes/sparse.py.
rule sparse_probe:
    input:
        unpack(sparse_probe_inputs),
    output:
        result=sparse_path("{task}", "{layer}", "{features}", "result.json"),
        targets=sparse_path("{task}", "{layer}", "{features}", "targets.tsv"),
    wildcard_constraints:
        task="|".join(sparse_tasks()) or "NO_TASKS",
        features=r"raw|[a-z0-9_]+_k\d+_w\d+",
    params:
        sparse=sparse_params,
        bootstrap=settings(config["bootstrap"]),
        families=lambda wc: wc.task == SPARSE_FAMILIES,
        types=lambda wc: config["families"]["types"] if wc.task == SPARSE_FAMILIES else None,
        shards=sparse_probe_shards,
    log:
        f"{LOGS}/sparse_probes/{{task}}/layer{{layer}}/{{features}}.log",
    benchmark:
        f"{LOGS}/sparse_probes/{{task}}/layer{{layer}}/{{features}}.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(SPARSE["mem_mb"]),
        runtime=SPARSE["runtime"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/sparse_probe.py"


rule sparse_probe_summary:
    input:
        [sparse_path(*fit, "result.json") for fit in sparse_fits()],
    output:
        f"{RESULTS}/sparse_probes/summary.tsv",
    log:
        f"{LOGS}/sparse_probes/summary.log",
    benchmark:
        f"{LOGS}/sparse_probes/summary.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(2000),
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/sparse_probe_summary.py"
