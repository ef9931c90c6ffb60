"""Writing the latent browser (METHODS.md section 13): a static site that opens from file://.

Browsers refuse ``fetch()`` of neighbouring files from file://, so every data file is a script
that hands its payload to the page (``protsae.<kind>({...})``) and is loaded with a
``<script src>``: an SAE's latent table with its page, one latent's data only when its page
opens, and the sequences (in chunks of `CHUNK_SIZE` proteins) and structures it shows. Layout
under ``results/<model>/browser/``::

    index.html                 every SAE with its metrics
    assets/                    style, scripts, 3Dmol.js (vendored, with its licence)
    proteins/<chunk>.js        sequences; proteins/chunks.tsv says which chunk holds which id
    structures/<stem>.js       backbones of the structure proteins the SAEs show
    layer<L>/<sae>/index.html  the latent table; latent.html?latent=N one latent;
                               data/table.js and latents/<N>.js their data
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from collections.abc import Mapping
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from protsae.browser.examples import BIN_NAMES, BINS, HISTOGRAM_BINS
from protsae.browser.pack import pack_coords, pack_track
from protsae.browser.structures import Backbone
from protsae.files import atomic_path

ASSETS = Path(__file__).with_name("assets")
ASSET_FILES = ("protsae.css", "protsae.js", "index.js", "sae.js", "latent.js", "3Dmol-min.js", "3Dmol.LICENSE.txt")
VIEWER_SHA256 = "3Dmol-min.js.sha256"
CHUNK_SIZE = 256
STEERING_MULTIPLIER = 2.0
"""The multiplier whose steering result the latent table shows (the paper's figure uses 2x)."""
_SAFE = re.compile(r"[A-Za-z0-9_.-]+")


def file_stem(protein_id: str) -> str:
    """A file name for a protein id: the id itself when it is safe, else a cleaned id and a hash."""
    if _SAFE.fullmatch(protein_id) and not protein_id.startswith("."):
        return protein_id
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", protein_id).lstrip(".")
    return f"{cleaned}-{hashlib.sha256(protein_id.encode()).hexdigest()[:8]}"


def _clean(value):
    """JSON-safe: NaN and infinities become null, numpy scalars and arrays Python values."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def write_script(path: str | os.PathLike, kind: str, payload) -> None:
    """A data file: ``protsae.<kind>(<payload as JSON>);``, atomically."""
    text = f"protsae.{kind}({json.dumps(_clean(payload), separators=(',', ':'), allow_nan=False)});\n"
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def check_viewer() -> None:
    """Raise if the vendored 3Dmol.js is not the file its checksum names."""
    expected = (ASSETS / VIEWER_SHA256).read_text().split()[0]
    actual = hashlib.sha256((ASSETS / "3Dmol-min.js").read_bytes()).hexdigest()
    if actual != expected:
        raise ValueError(f"{ASSETS / '3Dmol-min.js'}: sha256 {actual}, not {expected} ({VIEWER_SHA256})")


def write_assets(root: Path) -> None:
    check_viewer()
    (root / "assets").mkdir(parents=True, exist_ok=True)
    for name in ASSET_FILES:
        shutil.copyfile(ASSETS / name, root / "assets" / name)


def write_proteins(sequences: Mapping[str, str], root: Path) -> pd.DataFrame:
    """The sequences in chunks (ids sorted), and ``proteins/chunks.tsv`` (id, chunk)."""
    ids = sorted(sequences)
    chunks = pd.DataFrame({"id": ids, "chunk": np.arange(len(ids)) // CHUNK_SIZE})
    for chunk, part in chunks.groupby("chunk"):
        write_script(root / "proteins" / f"{chunk}.js", "proteins", {pid: sequences[pid] for pid in part["id"]})
    with atomic_path(root / "proteins" / "chunks.tsv") as tmp:
        chunks.to_csv(tmp, sep="\t", index=False)
    return chunks


def read_chunks(path: str | os.PathLike) -> dict[str, int]:
    table = pd.read_csv(path, sep="\t", dtype={"id": str, "chunk": int}, keep_default_na=False)
    return dict(zip(table["id"], table["chunk"]))


def write_structures(backbones: Mapping[str, Backbone], root: Path) -> None:
    for protein, backbone in backbones.items():
        write_script(root / "structures" / f"{file_stem(protein)}.js", "structure", {
            "id": protein, "sequence": backbone.sequence, "dssp8": backbone.dssp8,
            "coords": pack_coords(backbone.coords)})


def page(title: str, prefix: str, script: str, body: str) -> str:
    """An HTML page of the site; ``prefix`` leads from it to the site's root."""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(title)}</title>
<link rel="stylesheet" href="{prefix}assets/protsae.css">
<script src="{prefix}assets/protsae.js"></script>
</head>
<body>
{body}
<script src="{prefix}assets/{script}"></script>
</body>
</html>
"""


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


# -- one SAE ------------------------------------------------------------------------------------


def _probe_associations(probes: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Every (latent, task, class, sign, rank, coefficient) of the probes' top coefficients."""
    parts = []
    for task, table in sorted(probes.items()):
        if table.empty:
            continue
        rows = table.drop_duplicates(["class", "sign", "rank", "feature"])
        parts.append(pd.DataFrame({"latent": rows["feature"].astype(int), "task": task, "class": rows["class"].astype(str),
                                   "sign": rows["sign"], "rank": rows["rank"].astype(int),
                                   "coefficient": rows["coefficient"].astype(float)}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["latent", "task", "class", "sign", "rank", "coefficient"])


def _probe_label(rows: pd.DataFrame) -> str:
    rows = rows.reindex(rows["coefficient"].abs().sort_values(ascending=False).index)
    return " ".join(f"{task}:{cls}{'+' if sign == 'positive' else '−'}"
                    for task, cls, sign in zip(rows["task"], rows["class"], rows["sign"]))


def _steering_tables(steering: Mapping[str, pd.DataFrame] | None):
    """Per latent: mean steering metrics per (kind, multiplier) over its sequences (all columns),
    the alignment rows and columns; None without steering."""
    if not steering:
        return None
    metrics = steering["metrics"]
    values = ["unchanged_vs_original", "unchanged_vs_unsteered", "to_consensus", "consensus_logprob_shift"]
    if metrics.empty:  # no latent of this SAE had a family alignment to steer against
        means = pd.DataFrame(columns=["latent", "kind", "multiplier", *values])
    else:
        means = metrics[metrics["conservation"] == "all"].groupby(["latent", "kind", "multiplier"])[values].mean().reset_index()
    return {"means": means, "latents": steering["latents"], "rows": steering["alignment_rows"],
            "columns": steering["alignment_columns"]}


def _table_columns(family: pd.DataFrame, patterns: pd.DataFrame, overview: pd.DataFrame,
                   top_proteins: pd.Series, probes: pd.DataFrame, steer) -> dict[str, list]:
    n = len(overview)
    family = family.set_index("latent").reindex(range(n))
    patterns = patterns.set_index("latent").reindex(range(n))
    probe_labels = probes.groupby("latent").apply(_probe_label, include_groups=False) if len(probes) else pd.Series(dtype=str)
    columns = {
        "latent": list(range(n)),
        "pattern": patterns["pattern"].fillna("").tolist(),
        "family": family["family"].fillna("").tolist(),
        "family_name": family["family_name"].fillna("").tolist(),
        "test_f1": family["test_f1"].tolist(),
        "test_precision": family["test_precision"].tolist(),
        "test_recall": family["test_recall"].tolist(),
        "threshold": family["threshold"].tolist(),
        "density": overview["density"].tolist(),
        "max": overview["max"].tolist(),
        "probes": [probe_labels.get(j, "") for j in range(n)],
        "proteins": [top_proteins.get(j, "") for j in range(n)],
    }
    if steer is not None:
        means = steer["means"][steer["means"]["kind"] == "family"]
        chosen = _steering_multiplier(means["multiplier"])
        at = means[means["multiplier"] == chosen].set_index("latent")
        columns["steer_to_consensus"] = [at["to_consensus"].get(j) for j in range(n)]
    return columns


def _steering_multiplier(multipliers: pd.Series) -> float | None:
    values = sorted(set(multipliers.tolist()))
    if not values:
        return None
    return STEERING_MULTIPLIER if STEERING_MULTIPLIER in values else values[-1]


def _example(row, chunks: Mapping[str, int], scale: float) -> dict:
    if row.protein not in chunks:
        raise ValueError(f"protein {row.protein!r} of latent {row.latent} is not in the site's proteins (chunks.tsv)")
    top = int(row.positions[int(np.argmax(row.values))])
    return {"p": row.protein, "c": int(chunks[row.protein]), "m": float(row.max), "n": float(row.norm),
            "L": int(row.length), "top": top, "t": pack_track(row.positions, row.values, scale)}


def write_sae_site(out: Path, *, sae: Mapping, prefix: str, overview: pd.DataFrame, examples: pd.DataFrame,
                   structures: pd.DataFrame | None, family: pd.DataFrame, patterns: pd.DataFrame,
                   gaps: pd.DataFrame, probes: Mapping[str, pd.DataFrame],
                   steering: Mapping[str, pd.DataFrame] | None, chunks: Mapping[str, int]) -> dict:
    """One SAE's pages and data under ``out``: ``index.html`` (the latent table), ``latent.html``,
    ``data/table.js`` and ``latents/<N>.js`` for every latent. Returns counts for the log."""
    n = len(overview)
    # Each latent's colour scale: its largest activation over the proteins shown (the evaluation
    # set's maximum, or a structure protein's where that is larger).
    scale = overview["max"].to_numpy(np.float64).copy()
    if structures is not None and len(structures):
        np.maximum.at(scale, structures["latent"].to_numpy(), structures["max"].to_numpy(np.float64))
    top_bin = examples[examples["group"] == 0]
    top_proteins = top_bin.groupby("latent")["protein"].apply(" ".join)
    probe_rows = _probe_associations(probes)
    steer = _steering_tables(steering)
    columns = _table_columns(family, patterns, overview, top_proteins, probe_rows, steer)
    title = f"{sae['name']} · layer {sae['layer']}"
    write_script(out / "data" / "table.js", "table", {
        "sae": sae, "columns": columns, "steering_multiplier": (
            _steering_multiplier(steer["means"]["multiplier"]) if steer is not None else None)})
    _write_text(out / "index.html", page(f"protsae · {title}", prefix, "sae.js", f"""<header>
<nav><a href="{prefix}index.html">all SAEs</a></nav>
<h1>{escape(title)}</h1>
<p class="meta" id="sae-meta"></p>
</header>
<section class="controls">
<input id="search" type="search" placeholder="latent id, family accession or name, protein accession" size="48">
<select id="pattern-filter"><option value="">every pattern</option></select>
<select id="family-filter"><option value="">every family</option><option value="*">family-specific only</option></select>
<span id="row-count"></span>
</section>
<div id="table-head" class="row head"></div>
<div id="table" class="table"><div id="table-spacer"></div></div>
<script src="data/table.js"></script>"""))
    _write_text(out / "latent.html", page(f"protsae · {title} · latent", prefix, "latent.js", f"""<header>
<nav><a href="{prefix}index.html">all SAEs</a> · <a href="index.html">{escape(title)}</a> ·
<a id="prev" href="#">previous</a> · <a id="next" href="#">next</a></nav>
<h1 id="title">latent</h1>
</header>
<main id="latent"><p id="status">loading…</p></main>
<script src="{prefix}assets/3Dmol-min.js"></script>
<script>window.PROTSAE_PAGE = {json.dumps({"prefix": prefix, "n_latents": n, "sae": sae})};</script>"""))
    by_latent = {j: part for j, part in examples.groupby("latent")}
    structures_by = {j: part for j, part in structures.groupby("latent")} if structures is not None else {}
    family_rows = family.set_index("latent")
    gaps_by = {j: part for j, part in gaps.groupby("latent")}
    probes_by = {j: part for j, part in probe_rows.groupby("latent")}
    histogram = np.stack(overview["histogram"].to_numpy()) if n else np.zeros((0, HISTOGRAM_BINS), int)
    counts = {"latents": n, "examples": 0, "structures": 0}
    for j in range(n):
        payload = {"latent": j, "scale": scale[j], "row": {name: values[j] for name, values in columns.items()},
                   "n_proteins": int(overview["n_proteins"].iat[j]), "histogram": histogram[j],
                   "bins": [], "structures": [], "gaps": [], "probes": [], "steering": None}
        if j in family_rows.index:
            payload["family"] = {k: family_rows.at[j, k] for k in ("status", "top_protein", "train_f1", "test_support",
                                                                     "test_predicted", "train_support")}
        part = by_latent.get(j)
        for b, name in enumerate(BIN_NAMES):
            rows = part[part["group"] == b] if part is not None else part
            payload["bins"].append({
                "name": name, "range": BINS[b], "n": int(histogram[j, (3 - b) * 5:(4 - b) * 5].sum()),
                "examples": [] if rows is None else [_example(r, chunks, scale[j]) for r in rows.itertuples()]})
            counts["examples"] += 0 if rows is None else len(rows)
        for r in structures_by.get(j, pd.DataFrame()).itertuples():
            payload["structures"].append({**_example(r, chunks, scale[j]), "s": file_stem(r.protein)})
            counts["structures"] += 1
        if j in gaps_by:
            payload["gaps"] = gaps_by[j][["protein", "activation", "normalised", "rank", "protein_families"]].to_dict("records")
        if j in probes_by:
            payload["probes"] = probes_by[j].drop(columns="latent").to_dict("records")
        if steer is not None:
            payload["steering"] = _latent_steering(steer, j)
        write_script(out / "latents" / f"{j}.js", "latent", payload)
    return counts


def _latent_steering(steer, latent: int) -> dict | None:
    if steer["latents"].empty:
        return None
    info = steer["latents"][steer["latents"]["latent"] == latent]
    if info.empty:
        return None
    means = steer["means"][steer["means"]["latent"] == latent]
    result = {"status": info["status"].iat[0], "n_top": int(info["n_top"].iat[0]),
              "n_hits": int(info["n_hits"].iat[0]),
              "by_multiplier": means.drop(columns="latent").to_dict("records")}
    rows = steer["rows"][steer["rows"]["latent"] == latent] if len(steer["rows"]) else steer["rows"]
    if len(rows):
        cols = steer["columns"][steer["columns"]["latent"] == latent].sort_values("column")
        result["alignment"] = {"rows": rows[["seq_id", "role", "row"]].values.tolist(),
                               "consensus": "".join(cols["consensus"].astype(str)),
                               "symbols": "".join(cols["symbol"].astype(str)),
                               "conservation": cols["conservation"].tolist()}
    return result


# -- the index ----------------------------------------------------------------------------------


def write_index(root: Path, saes: pd.DataFrame, title: str) -> None:
    """``index.html`` and ``saes.js``: one row per SAE (its link and metrics)."""
    write_script(root / "saes.js", "saes", {"title": title, "rows": saes.to_dict("records")})
    _write_text(root / "index.html", page(f"protsae · {title}", "", "index.js", f"""<header>
<h1>{escape(title)}: sparse autoencoders</h1>
<p class="meta">Every SAE of the run with its reconstruction, sparsity and latent metrics. Open one to browse its latents.</p>
</header>
<main><table id="saes" class="saes"></table></main>
<script src="saes.js"></script>"""))


def site_size(root: str | os.PathLike) -> dict:
    """Bytes and files under the site's root, in all and per top-level part (hidden files aside)."""
    root = Path(root)
    parts: dict[str, dict] = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.name.startswith("."):  # not Snakemake's .snakemake_timestamp
            part = path.relative_to(root).parts[0] if len(path.relative_to(root).parts) > 1 else "pages"
            entry = parts.setdefault(part, {"bytes": 0, "files": 0})
            entry["bytes"] += path.stat().st_size
            entry["files"] += 1
    return {"bytes": sum(p["bytes"] for p in parts.values()), "files": sum(p["files"] for p in parts.values()),
            "parts": parts}

