# Stage 3b: run the trained SAEs over a dataset and store only their k non-zero latents per residue
# (METHODS.md section 4), and over the evaluation set each SAE's per-protein maxima (which the
# latent analyses read). Later analyses read these codes, never the dense activations. Each job
# encodes a whole dataset, shard after shard, under one SAE (encode.group_by: sae), every SAE of
# one layer (layer) or every SAE of every layer (dataset) in one pass: a cached shard is read once
# for all SAEs of its layer, or, with encode.source: model, one forward pass feeds them all and no
# dense cache is written. The jobs are rules made here, one per group, since their outputs (every
# SAE's code shards) follow from the config, not from wildcards.

for dataset, layers, specs in encode_groups():

    rule:
        name:
            f"encode_codes_{re.sub('[^A-Za-z0-9_]', '_', encode_group_name(dataset, layers, specs))}"
        input:
            **encode_group_inputs(dataset, layers, specs),
        output:
            # Removed once every job that reads them is done, when intermediate (keep_intermediates).
            # Each SAE's folder of code shards.
            codes=[temp(directory(path)) if intermediate(dataset) else directory(path)
                   for path in (LAYOUT.codes(dataset, spec) for spec in specs)],
            # Over the evaluation set, each SAE's per-protein maxima too, from the codes just written.
            maxima=[maxima_file(spec) for spec in specs] if dataset == EVALSET else [],
        params:
            # The source in effect for this dataset, not encode.source (the training set and the
            # probe tasks are encoded from their caches whatever it says).
            encode=settings(config["encode"], exclude={"datasets", "group_by", "source"}),
            source=encode_source(dataset),
            model=model_settings(),
            max_tokens=config["activations"]["max_tokens"],
            storage_dtype=config["activations"]["storage_dtype"],
            layers=layers,
            n_shards=len(shard_ids(dataset)),
            # layer -> (its manifest, its shards), read when the source is the cache.
            caches={layer: (f"{LAYOUT.activations(dataset, layer)}/manifest.json", activation_files(dataset, layer))
                    for layer in layers} if encode_source(dataset) == "cache" else {},
            # Each SAE of the group: its directory, layer and one code shard per dataset shard.
            targets=[{"sae": LAYOUT.sae(spec), "layer": spec.layer, "codes": code_shards(dataset, spec)}
                     for spec in specs],
        log:
            f"{LOGS}/codes/{encode_group_name(dataset, layers, specs)}.log",
        benchmark:
            f"{LOGS}/codes/{encode_group_name(dataset, layers, specs)}.benchmark.tsv"
        threads: config["encode"]["threads"]
        priority: 1
        resources:
            mem_mb=memory(config["encode"]["mem_mb"]),
            runtime=config["encode"]["runtime"],
            gpu=config["encode"]["gpus"],
        conda:
            "../envs/torch.yaml"
        script:
            "../workflow/scripts/encode_codes.py"
