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
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd

from protsae.browser.examples import BIN_NAMES, BINS, HISTOGRAM_BINS
from protsae.browser.pack import pack_coords, pack_tracks
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
    """JSON-safe: NaN and infinities become null, numpy scalars and arrays Python values, floats
    six significant digits."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):  # six significant digits, the result tables' precision
        return float(f"{value:.6g}") if math.isfinite(value) else None
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


def _packed_examples(examples: pd.DataFrame, chunks: Mapping[str, int], scale: np.ndarray) -> dict[str, np.ndarray]:
    """Every example of a table as arrays: latent, group, protein, its sequence chunk, its maximum,
    its top residue and its packed track (on its latent's scale), in table order."""
    missing = sorted(set(examples["protein"]) - set(chunks))
    if missing:
        raise ValueError(f"{len(missing)} example proteins are not in the site's proteins (chunks.tsv), e.g. {missing[:3]}")
    counts = examples["positions"].map(len).to_numpy(np.int64)
    offsets = np.r_[0, np.cumsum(counts)].astype(np.int64)
    positions = np.concatenate([*examples["positions"], np.zeros(0, np.int64)])
    values = np.concatenate([*examples["values"], np.zeros(0, np.float32)])
    latent = examples["latent"].to_numpy(np.int64)
    # The top residue: the first position of each track's largest value.
    entry = np.arange(len(positions))
    order = np.lexsort((entry, -values, np.repeat(np.arange(len(examples)), counts)))
    top = positions[order[offsets[:-1]]] if len(positions) else np.zeros(len(examples), np.int64)
    return {"latent": latent, "group": examples["group"].to_numpy(np.int64),
            "p": examples["protein"].to_numpy(object), "c": examples["protein"].map(chunks).to_numpy(np.int64),
            "m": examples["max"].to_numpy(np.float64), "top": top,
            "t": np.array(pack_tracks(offsets, positions, values, scale[latent]), dtype=object)}


def _runs(keys: np.ndarray) -> dict[int, np.ndarray]:
    """Row indices of each key (rows in their order)."""
    order = np.argsort(keys, kind="stable")
    bounds = np.flatnonzero(np.r_[True, keys[order][1:] != keys[order][:-1], True]) if len(keys) else np.zeros(1, int)
    return {int(keys[order[a]]): order[a:b] for a, b in pairwise(bounds.tolist())}


def _records(table: pd.DataFrame, columns: list[str]) -> dict[int, list[dict]]:
    """Per latent, the table's rows (those columns) as records."""
    if table.empty:
        return {}
    return {int(j): part[columns].to_dict("records") for j, part in table.groupby("latent")}


def write_sae_site(out: Path, *, sae: Mapping, prefix: str, overview: pd.DataFrame, examples: pd.DataFrame,
                   structures: pd.DataFrame | None, family: pd.DataFrame, patterns: pd.DataFrame,
                   gaps: pd.DataFrame, probes: Mapping[str, pd.DataFrame],
                   steering: Mapping[str, pd.DataFrame] | None, chunks: Mapping[str, int],
                   neighbours: Mapping[int, list[dict]] | None = None,
                   network_folders: Mapping[int, str] | None = None) -> dict:
    """One SAE's pages and data under ``out``: ``index.html`` (the latent table), ``latent.html``,
    ``data/table.js`` and ``latents/<N>.js`` for every latent. ``neighbours``: latent -> its
    feature-network neighbours (`protsae.networks.graph.neighbour_lists`), each linked to its
    page through ``network_folders`` (layer -> that layer's SAE folder under the site). Returns
    counts for the log."""
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
    packed = _packed_examples(examples, chunks, scale)
    bins = _runs(packed["latent"] * (len(BINS) + 1) + packed["group"])
    shown = _packed_examples(structures, chunks, scale) if structures is not None and len(structures) else None
    shown_by = _runs(shown["latent"]) if shown is not None else {}
    facts = ["status", "top_protein", "train_f1", "test_support", "test_predicted", "train_support"]
    family_facts = {int(r["latent"]): {k: r[k] for k in facts} for r in family[["latent", *facts]].to_dict("records")}
    gaps_by = _records(gaps, ["protein", "activation", "normalised", "rank", "protein_families"])
    probes_by = _records(probe_rows, ["task", "class", "sign", "rank", "coefficient"])
    steering_by = _steering_by_latent(steer) if steer is not None else {}
    histogram = np.stack(overview["histogram"].to_numpy()) if n else np.zeros((0, HISTOGRAM_BINS), int)
    n_proteins = overview["n_proteins"].to_numpy(np.int64)
    for j in range(n):
        payload = {"latent": j, "scale": scale[j], "row": {name: values[j] for name, values in columns.items()},
                   "n_proteins": n_proteins[j], "histogram": histogram[j], "family": family_facts.get(j),
                   "bins": [], "structures": [], "gaps": gaps_by.get(j, []), "probes": probes_by.get(j, []),
                   "steering": steering_by.get(j),
                   "neighbours": _linked_neighbours((neighbours or {}).get(j, []), prefix, network_folders or {})}
        for b, name in enumerate(BIN_NAMES):
            rows = bins.get(j * (len(BINS) + 1) + b, np.zeros(0, np.int64))
            payload["bins"].append({"name": name, "range": BINS[b], "n": int(histogram[j, (3 - b) * 5:(4 - b) * 5].sum()),
                                    "examples": {key: packed[key][rows].tolist() for key in ("p", "c", "m", "top", "t")}})
        for i in shown_by.get(j, []):
            payload["structures"].append({**{key: shown[key][i] for key in ("p", "c", "m", "top", "t")},
                                          "s": file_stem(shown["p"][i])})
        write_script(out / "latents" / f"{j}.js", "latent", payload)
    return {"latents": n, "examples": len(examples), "structures": 0 if shown is None else len(structures)}


def _linked_neighbours(items: list[dict], prefix: str, folders: Mapping[int, str]) -> list[dict]:
    """A latent's network neighbours, each with the address of its page (none for a layer whose
    SAE has no pages)."""
    linked = []
    for item in items:
        folder = folders.get(int(item["layer"]))
        href = f"{prefix}{folder}/latent.html?latent={int(item['latent'])}" if folder else None
        linked.append({**item, "href": href})
    return linked


def _steering_by_latent(steer) -> dict[int, dict]:
    """Per steered latent: its alignment's summary, its mean metrics per multiplier (it and its
    control) and its alignment."""
    if steer["latents"].empty:
        return {}
    means = _records(steer["means"], [c for c in steer["means"].columns if c != "latent"])
    rows = _records(steer["rows"], ["seq_id", "role", "row"])
    columns = {int(j): part.sort_values("column") for j, part in steer["columns"].groupby("latent")} if len(steer["columns"]) else {}
    result = {}
    for info in steer["latents"].to_dict("records"):
        j = int(info["latent"])
        result[j] = {"status": info["status"], "n_top": int(info["n_top"]), "n_hits": int(info["n_hits"]),
                     "by_multiplier": means.get(j, [])}
        if j in rows:
            result[j]["alignment"] = {"rows": [[r["seq_id"], r["role"], r["row"]] for r in rows[j]],
                                      "consensus": "".join(columns[j]["consensus"].astype(str)),
                                      "symbols": "".join(columns[j]["symbol"].astype(str))}
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

