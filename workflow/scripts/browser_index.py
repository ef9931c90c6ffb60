"""Snakemake script: the site's index (every SAE with its metrics) and the site's size."""

import json
from pathlib import Path

import pandas as pd

from protsae.browser.site import site_size, write_index
from protsae.files import write_json
from protsae.logs import setup_logging
from protsae.spec import SAESpec

log = setup_logging(snakemake.log[0])
keys = ["variant", "layer", "k", "width"]
sae = pd.read_csv(snakemake.input.sae_summary, sep="\t")
latents = pd.read_csv(snakemake.input.latent_summary, sep="\t")
rows = []
for values in snakemake.params.saes:
    spec = SAESpec.from_dict(values)
    match = {k: getattr(spec, k) for k in keys}
    s = sae[(sae[keys] == pd.Series(match)).all(axis=1)]
    lat = latents[(latents[keys] == pd.Series(match)).all(axis=1)]
    pattern_columns = [c for c in latents.columns if c.startswith("pattern_")]
    rows.append({
        **spec.as_dict(), "name": spec.name, "path": spec.folder,
        **{k: (s[k].iat[0] if len(s) and k in s else None) for k in ("heldout_fvu", "heldout_l0", "dead_share", "delta_ce")},
        "n_family_specific": int(lat["n_family_specific"].iat[0]) if len(lat) else None,
        "patterns": {c[len("pattern_"):]: int(lat[c].iat[0]) for c in pattern_columns} if len(lat) else {},
    })
root = Path(snakemake.output.index).parent
write_index(root, pd.DataFrame(rows), snakemake.params.model)
size = site_size(root)
write_json(snakemake.output.size, size)
log.info("site %s: %.1f MB in %d files %s", root, size["bytes"] / 1e6, size["files"],
         json.dumps({k: round(v["bytes"] / 1e6, 2) for k, v in size["parts"].items()}))
