# Stage 3b: run each trained SAE over a dataset and store only its k non-zero latents per residue
# (METHODS.md section 4). Later analyses read these codes, never the dense activations. With
# encode.source: model, the codes come straight from a forward pass, so a large evaluation set
# needs no dense cache at all.


rule encode_codes:
    input:
        unpack(encoding_input),
    output:
        f"{LAYOUT.codes('{dataset}')}/shard{{shard}}.parquet",
    params:
        encode=settings(config["encode"], exclude={"datasets"}),
        model=model_settings(),
        max_tokens=config["activations"]["max_tokens"],
    log:
        f"{LOGS}/codes/{{dataset}}/{SAE_FOLDER}/shard{{shard}}.log",
    benchmark:
        f"{LOGS}/codes/{{dataset}}/{SAE_FOLDER}/shard{{shard}}.benchmark.tsv"
    threads: config["encode"]["threads"]
    resources:
        mem_mb=config["encode"]["mem_mb"],
        runtime=config["encode"]["runtime"],
        gpu=config["encode"]["gpus"],
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/encode_codes.py"
