# protsae: sparse autoencoders on protein language models (InterProt reproduction).
# Table of contents; the rules live in rules/, the science in the protsae/ package.
from snakemake.utils import min_version

from protsae.configcheck import validate_config

min_version("9.0")


# The demo config, unless --configfile names another: configs are whole, never merged.
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


# Defaults filled in from the schema; a bad key is named in a few lines.
validate_config(config, workflow.source_path("config/schema.yaml"),
                workflow.config_settings.configfiles or ["config/config.yaml"])


include: "rules/common.smk"
include: "rules/sequences.smk"
include: "rules/activations.smk"
include: "rules/sae.smk"
include: "rules/encoding.smk"


# Latent characterisation runs when the config names an evaluation set.
if "evalset" in config:

    include: "rules/latents.smk"

    if config["steering"]["enabled"]:

        include: "rules/steering.smk"

    if config["browser"]["enabled"]:

        include: "rules/browser.smk"

    if config["concepts"]["datasets"]:

        include: "rules/concepts.smk"

    if config["networks"]["sweep"] is not None:

        include: "rules/networks.smk"


# Attention heads in SAE features, for transformer models (not UniRep).
if HEADS_SWEEP is not None:

    include: "rules/heads.smk"


# Linear probes run when the config names probe tasks.
if "probes" in config:

    include: "rules/probes.smk"


rule all:
    input:
        all_targets(),
    default_target: True
