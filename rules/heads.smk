# Attention heads in SAE features (METHODS.md section 12), for transformer pLMs: each block l whose
# input (layer l - 1) and output (layer l) have an SAE of heads.sweep gets its heads' OV and QK
# circuits in those SAEs' latents, a role per head, and the checks on evaluation proteins (offset
# profiles against the model's own attention, OV against the frozen-pattern effect). Then the
# merged tables and the per-layer figure of head roles.


rule heads_block:
    """Block {block}'s heads read through the SAEs of layers {block} - 1 and {block}."""
    input:
        unpack(head_block_inputs),
    output:
        heads=f"{HEADS}/blocks/block{{block}}/heads.tsv",
        profiles=f"{HEADS}/blocks/block{{block}}/profiles.tsv",
        ov=f"{HEADS}/blocks/block{{block}}/ov.tsv.gz",
        qk=f"{HEADS}/blocks/block{{block}}/qk.tsv.gz",
    params:
        settings=settings(config["heads"], exclude={"figure"}),
        model=model_settings(),
    wildcard_constraints:
        block=r"\d+",
    log:
        f"{LOGS}/heads/{HEADS_SWEEP}/block{{block}}.log",
    benchmark:
        f"{LOGS}/heads/{HEADS_SWEEP}/block{{block}}.benchmark.tsv"
    threads: config["heads"]["threads"]
    resources:
        mem_mb=memory(config["heads"]["mem_mb"]),
        runtime=config["heads"]["runtime"],
        gpu=config["heads"]["gpus"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/heads_block.py"


rule heads:
    """Every analysed block's heads in one set of tables, and a summary of roles and agreement."""
    input:
        **{name: [head_block_file(block, name) for block in head_blocks()]
           for name in ("heads.tsv", "profiles.tsv", "ov.tsv.gz", "qk.tsv.gz")},
    output:
        heads=f"{HEADS}/heads.tsv",
        profiles=f"{HEADS}/profiles.tsv",
        ov=f"{HEADS}/ov.tsv.gz",
        qk=f"{HEADS}/qk.tsv.gz",
        summary=f"{HEADS}/summary.json",
    params:
        window=config["heads"]["window"],
    log:
        f"{LOGS}/heads/{HEADS_SWEEP}/heads.log",
    benchmark:
        f"{LOGS}/heads/{HEADS_SWEEP}/heads.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(2000),
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/heads_build.py"


rule heads_figure:
    """Head roles block by block, and the offset profiles of the most positional heads."""
    input:
        heads=f"{HEADS}/heads.tsv",
        profiles=f"{HEADS}/profiles.tsv",
    output:
        LAYOUT.figure(HEADS_FIGURE),
    params:
        n_profiles=config["heads"]["figure"]["n_profiles"],
        title=f"{MODEL}: attention heads in SAE features ({HEADS_SWEEP} sweep)",
    log:
        f"{LOGS}/figures/{HEADS_FIGURE}.log",
    benchmark:
        f"{LOGS}/figures/{HEADS_FIGURE}.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(2000),
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/heads_figure.py"
