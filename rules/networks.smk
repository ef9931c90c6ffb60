# Feature networks (METHODS.md section 11) between the SAEs of networks.sweep (one per layer):
# per pair of adjacent layers, co-activation over a sample of the evaluation proteins, decoder
# best matches and causal edges from the family-specific and probe latents; within each layer,
# co-activation of its latents. Then the merged edge table, node table, neighbour lists (for the
# browser), GraphML and the figure.


rule network_pair:
    """The edges between layer {source}'s SAE and layer {target}'s (equal: one SAE's pairs)."""
    input:
        unpack(network_pair_inputs),
    output:
        edges=f"{NETWORK}/pairs/layer{{source}}-layer{{target}}/edges.tsv.gz",
        sources=f"{NETWORK}/pairs/layer{{source}}-layer{{target}}/sources.tsv",
    params:
        settings=settings(config["networks"], exclude={"figure", "neighbours", "graphml_min_npmi", "agreement_top"}),
        model=model_settings(),
        probe_tasks=lambda wc: PROBE_TASKS if network_probe_files(network_specs()[int(wc.source)]) else [],
        storage_dtype=config["activations"]["storage_dtype"],
    wildcard_constraints:
        source=r"\d+",
        target=r"\d+",
    log:
        f"{LOGS}/networks/{NETWORK_SWEEP}/layer{{source}}-layer{{target}}.log",
    benchmark:
        f"{LOGS}/networks/{NETWORK_SWEEP}/layer{{source}}-layer{{target}}.benchmark.tsv"
    threads: config["networks"]["threads"]
    resources:
        mem_mb=memory(config["networks"]["mem_mb"]),
        runtime=config["networks"]["runtime"],
        gpu=config["networks"]["gpus"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/network_pair.py"


rule network:
    """The sweep's network from its pairs' edges: tables, neighbour lists, GraphML, summary."""
    input:
        edges=[network_pair_file(pair, "edges.tsv.gz") for pair in network_pairs()],
        sources=[network_pair_file(pair, "sources.tsv") for pair in network_pairs()],
        family=[latent_path("family_f1.tsv", spec) for spec in network_specs().values()],
        patterns=[latent_path("patterns.tsv", spec) for spec in network_specs().values()],
    output:
        edges=f"{NETWORK}/edges.tsv.gz",
        nodes=f"{NETWORK}/nodes.tsv.gz",
        neighbours=[f"{NETWORK}/neighbours/layer{layer}.json" for layer in network_specs()],
        graphml=f"{NETWORK}/network.graphml",
        summary=f"{NETWORK}/summary.json",
    params:
        settings=settings(config["networks"], exclude={"figure"}),
        layers=list(network_specs()),
        n_latents={layer: spec.width for layer, spec in network_specs().items()},
        pairs=[f"{s}-{t}" for s, t in network_pairs()],
    log:
        f"{LOGS}/networks/{NETWORK_SWEEP}/network.log",
    benchmark:
        f"{LOGS}/networks/{NETWORK_SWEEP}/network.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(4000),
        runtime=30,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/network_build.py"


rule network_figure:
    """The strongest causal edges of the sweep, latents coloured by pattern class."""
    input:
        edges=f"{NETWORK}/edges.tsv.gz",
        nodes=f"{NETWORK}/nodes.tsv.gz",
    output:
        LAYOUT.figure(NETWORK_FIGURE),
    params:
        n_edges=config["networks"]["figure"]["n_edges"],
        title=f"{MODEL}: feature network ({NETWORK_SWEEP} sweep)",
    log:
        f"{LOGS}/figures/{NETWORK_FIGURE}.log",
    benchmark:
        f"{LOGS}/figures/{NETWORK_FIGURE}.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=memory(2000),
        runtime=10,
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/network_figure.py"
