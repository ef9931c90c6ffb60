"""Steer one sequence with one latent, like InterProt's steering playground:

    python -m protsae.steering results/unirep256/sae/uniref50/layer3/topk_k32_w2048 \\
        --latent 113 --sequence MKTAYIAKQR... [--multipliers 0.5 1 2 4] [--base sequence_max] \\
        [--config config/config.yaml] [--out steered.tsv]

Prints the unsteered read-out and one steered read-out per multiplier, changed residues (against
the input) in lower case, and writes the same as a TSV (multiplier, clamp value, read-out, number
and positions of changed residues). The model is the config's; the layer is the SAE's own (from
its splice.json, or --layer).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
import yaml

from protsae.files import write_tsv
from protsae.models import load_model
from protsae.sae.io import load_sae
from protsae.steering.edit import Clamp, read_out
from protsae.steering.run import max_pre_acts


def marked(readout: str, original: str) -> str:
    """The read-out with the residues that differ from ``original`` in lower case."""
    return "".join(c.lower() if c != o else c for c, o in zip(readout, original))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m protsae.steering", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sae", help="an SAE folder (sae.safetensors, config.json)")
    parser.add_argument("--latent", type=int, required=True)
    parser.add_argument("--sequence", required=True, help="residues, one-letter codes")
    parser.add_argument("--multipliers", type=float, nargs="+", default=[0.5, 1.0, 1.5, 2.0, 4.0])
    parser.add_argument("--base", choices=["sequence_max", "value"], default="sequence_max",
                        help="multiply the sequence's largest pre-activation (InterProt's endpoint), "
                             "or --value itself")
    parser.add_argument("--value", type=float, default=1.0, help="the base with --base value")
    parser.add_argument("--only-where-active", action="store_true", help="InterProt's 'part' mode")
    parser.add_argument("--layer", type=int, help="the SAE's layer (default: from its splice.json)")
    parser.add_argument("--config", default="config/config.yaml", help="the config whose model the SAE reads")
    parser.add_argument("--out", help="write the read-outs as TSV here")
    args = parser.parse_args(argv)

    folder = Path(args.sae)
    splice = folder / "splice.json"
    recorded = json.loads(splice.read_text())["sae"]["layer"] if splice.exists() else None
    if args.layer is None and recorded is None:
        parser.error(f"{splice} does not exist: give the SAE's layer with --layer")
    if args.layer is not None and recorded is not None and args.layer != recorded:
        parser.error(f"--layer {args.layer}: {splice} says the SAE was trained and evaluated at layer {recorded}")
    layer = recorded if args.layer is None else args.layer
    model = load_model(yaml.safe_load(Path(args.config).read_text())["model"])
    sae = load_sae(folder)
    if sae.cfg.d_model != model.d_model:
        parser.error(f"{folder}: the SAE reads d_model {sae.cfg.d_model}, {args.config}'s model has {model.d_model}")
    if not 0 <= args.latent < sae.cfg.n_latents:
        parser.error(f"--latent {args.latent} is out of range: {folder} has {sae.cfg.n_latents} latents")
    sequence = args.sequence.strip().upper()
    base = max_pre_acts(model, sae, layer, [sequence])[0] if args.base == "sequence_max" else args.value
    unsteered = read_out(model, [sequence])[0].sequence
    rows = [{"multiplier": "none", "clamp_value": "", "readout": unsteered}]
    for multiplier in args.multipliers:
        clamp = Clamp(args.latent, multiplier * base, only_where_active=args.only_where_active)
        rows.append({"multiplier": multiplier, "clamp_value": multiplier * base,
                     "readout": read_out(model, [sequence], sae, layer, clamp)[0].sequence})
    print(f"{'input':>12}  {sequence}")
    for row in rows:
        changed = [i for i, (c, o) in enumerate(zip(row["readout"], sequence)) if c != o]
        row |= {"n_changed": len(changed), "changed_positions": ",".join(map(str, changed))}
        label = "unsteered" if row["multiplier"] == "none" else f"x{row['multiplier']:g}"
        print(f"{label:>12}  {marked(row['readout'], sequence)}  ({len(changed)} changed)")
    print(f"latent {args.latent} of {folder} at layer {layer}; base {args.base} = {base:.4g}", file=sys.stderr)
    if args.out:
        write_tsv(pd.DataFrame(rows), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
