"""Concepts from Swiss-Prot flat-file feature (FT) lines (METHODS.md section 10).

InterPLM's feature set (active site, binding site, disulfide bond, glycosylation, modified
residue, lipidation, signal peptide, transit peptide, helix, turn, beta strand, coiled coil,
compositional bias, domain, region, zinc finger, motif) plus transmembrane and intramembrane.
One concept per feature type and sub-type: the ``/note=``, or the ``/ligand=`` for binding
sites, with evidence and numbering stripped ("C2H2-type 3" -> "C2H2-type", "Magnesium 1" ->
"Magnesium"). InterPLM's parser read neither ``/ligand=`` (so binding sites had no sub-type) nor
features without a note (most signal peptides); here a feature without a note is the plain type.

Both layouts are read: the current one (``FT   BINDING         24..31`` then qualifier lines
``/ligand="ATP"``, ``/note="..."``) and the pre-2019 one (``FT   NP_BIND      24     31       GTP
(By similarity).``, description in columns 35-75, continued on the next lines), whose retired keys
``NP_BIND``, ``METAL`` and ``CA_BIND`` are binding sites with the description as the ligand.
Positions are 1-based inclusive in the file and 0-based half-open in the table; fuzzy ends
(``<1``, ``>120``) keep their number, unknown ones (``?``) drop the feature (counted).
"""

from __future__ import annotations

import gzip
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping

import pandas as pd

from protsae.concepts.table import concept_frame

# Feature key -> (concept type, kind).
FEATURE_TYPES = {
    "ACT_SITE": ("Active site", "residue"),
    "BINDING": ("Binding site", "residue"),
    "NP_BIND": ("Binding site", "residue"),
    "METAL": ("Binding site", "residue"),
    "CA_BIND": ("Binding site", "residue"),
    "DISULFID": ("Disulfide bond", "residue"),
    "CARBOHYD": ("Glycosylation", "residue"),
    "MOD_RES": ("Modified residue", "residue"),
    "LIPID": ("Lipidation", "residue"),
    "SIGNAL": ("Signal peptide", "interval"),
    "TRANSIT": ("Transit peptide", "interval"),
    "HELIX": ("Helix", "interval"),
    "TURN": ("Turn", "interval"),
    "STRAND": ("Beta strand", "interval"),
    "COILED": ("Coiled coil", "interval"),
    "COMPBIAS": ("Compositional bias", "interval"),
    "DOMAIN": ("Domain", "interval"),
    "REGION": ("Region", "interval"),
    "ZN_FING": ("Zinc finger", "interval"),
    "MOTIF": ("Motif", "interval"),
    "TRANSMEM": ("Transmembrane", "interval"),
    "INTRAMEM": ("Intramembrane", "interval"),
}
# Keys whose old-layout description is the ligand, as /ligand= is now.
LIGAND_KEYS = {"BINDING", "NP_BIND", "METAL", "CA_BIND"}
# Evidence and status remarks, not sub-types.
_EVIDENCE = re.compile(r"\s*\((?:By similarity|Potential|Probable|Experimental|Sequence analysis|"
                       r"Ref\.\s*\d+|By homology)[^)]*\)", re.IGNORECASE)
_ONLY_EVIDENCE = re.compile(r"^(?:By similarity|Potential|Probable|Sequence analysis)$", re.IGNORECASE)
_NUMBERING = re.compile(r"\s+\d+[a-z]?$")
_POSITION = re.compile(r"^[<>]?\d+$|^\?$")
_QUALIFIER = re.compile(r'^/(\w+)=(.*)$')


@dataclass
class Feature:
    key: str
    location: str
    description: list[str] = field(default_factory=list)
    qualifiers: dict[str, str] = field(default_factory=dict)


def _position(token: str) -> int | None:
    token = token.strip().lstrip("<>")
    return int(token) if token.isdigit() else None


def _span(feature: Feature) -> tuple[int | None, int | None]:
    """1-based (first, last) of a feature's location (``12``, ``12..30``, ``12 30``)."""
    parts = re.split(r"\.\.|\s+", feature.location.strip())
    if ":" in feature.location:  # a position on another entry's sequence
        return None, None
    first = _position(parts[0])
    last = _position(parts[-1]) if len(parts) > 1 else first
    return first, last


def clean_note(text: str) -> str:
    """A sub-type from a note or old-layout description: evidence remarks, anything after the
    first ``;`` (``Helical; Name=1``), a trailing full stop and a trailing number removed."""
    text = _EVIDENCE.sub("", " ".join(text.split()))
    text = text.split(";")[0].strip().rstrip(".").strip()
    if _ONLY_EVIDENCE.match(text):
        return ""
    return _NUMBERING.sub("", text).strip()


def feature_concept(feature: Feature) -> str | None:
    """``Swiss-Prot:<type>`` or ``Swiss-Prot:<type>: <sub-type>``; None for other features."""
    if feature.key not in FEATURE_TYPES:
        return None
    name, _ = FEATURE_TYPES[feature.key]
    if feature.key in LIGAND_KEYS and "ligand" in feature.qualifiers:
        sub = clean_note(feature.qualifiers["ligand"])
    elif "note" in feature.qualifiers:
        sub = clean_note(feature.qualifiers["note"])
    else:
        sub = clean_note(" ".join(feature.description))
    if feature.key in ("HELIX", "STRAND", "TURN", "DISULFID", "SIGNAL"):
        sub = ""  # their notes are remarks ("Interchain", "Not cleaved"), not kinds of helix or bond
    return f"Swiss-Prot:{name}: {sub}" if sub else f"Swiss-Prot:{name}"


def _open(path: str | os.PathLike):
    return gzip.open(path, "rt") if str(path).endswith(".gz") else open(path)


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value.strip('"')


def _parse_ft(line: str, features: list[Feature], state: dict) -> None:
    """One FT line into ``features``: a new feature, a qualifier, or a continuation."""
    body = line[5:].rstrip("\n")
    if body[:1] != " ":  # a new feature: key, then a location (new) or FROM TO description (old)
        key, _, rest = body.partition(" ")
        tokens = rest.split()
        if len(tokens) >= 2 and _POSITION.match(tokens[0]) and _POSITION.match(tokens[1]):
            feature = Feature(key, f"{tokens[0]} {tokens[1]}", [" ".join(tokens[2:])] if tokens[2:] else [])
        else:
            feature = Feature(key, tokens[0] if tokens else "")
        features.append(feature)
        state["open"] = None
        return
    if not features:
        return
    feature, text = features[-1], body.strip()
    if state["open"] is not None:  # inside a quoted qualifier value that spans lines
        name = state["open"]
        feature.qualifiers[name] += " " + text
        if text.endswith('"'):
            feature.qualifiers[name] = _unquote(feature.qualifiers[name])
            state["open"] = None
        return
    match = _QUALIFIER.match(text)
    if match:
        name, value = match.groups()
        if value.startswith('"') and not (len(value) > 1 and value.endswith('"')):
            feature.qualifiers[name] = value
            state["open"] = name
        else:
            feature.qualifiers[name] = _unquote(value)
    else:
        feature.description.append(text)


def _same_sequence(entry: str, dataset: str) -> bool:
    """Equal, where the dataset may have mapped non-standard letters (U, O, B, Z, J) to X."""
    if len(entry) != len(dataset):
        return False
    return all(a == b or b == "X" for a, b in zip(entry, dataset))


def parse_swissprot_features(path: str | os.PathLike, proteins=None) -> tuple[pd.DataFrame, dict]:
    """Concept table (`protsae.concepts.table`) of a Swiss-Prot flat file (plain or gzip), keyed by
    each entry's primary accession; only ``proteins`` when given (ids, or id -> sequence: then an
    entry whose SQ sequence is not the dataset's, an isoform or another release, is dropped and
    counted, since its positions would land on other residues). Also counts: entries read,
    features kept, and those dropped for an unknown position or a position past the sequence."""
    wanted = set(proteins) if proteins is not None else None
    sequences = proteins if isinstance(proteins, Mapping) else None
    rows, counts = [], Counter()
    accession, length, features, state = None, None, [], {"open": None}
    residues: list[str] = []
    in_sequence = False

    def finish():
        if accession is None or (wanted is not None and accession not in wanted):
            return
        if sequences is not None and not _same_sequence("".join(residues), sequences[accession]):
            counts["dropped_entry_sequence_differs"] += 1
            return
        counts["entries"] += 1
        for feature in features:
            concept = feature_concept(feature)
            if concept is None:
                continue
            first, last = _span(feature)
            if first is None or last is None or last < first:
                counts["dropped_unknown_position"] += 1
                continue
            if length is not None and last > length:
                counts["dropped_past_end"] += 1
                continue
            kind = FEATURE_TYPES[feature.key][1]
            if feature.key == "DISULFID":  # the two bonded residues, not the stretch between them
                rows.extend((accession, concept, p - 1, p, kind) for p in sorted({first, last}))
            else:
                rows.append((accession, concept, first - 1, last, kind))
            counts["features"] += 1

    with _open(path) as handle:
        for line in handle:
            tag = line[:2]
            if tag == "ID":
                accession, length, features, state = None, None, [], {"open": None}
                residues, in_sequence = [], False
                match = re.search(r"(\d+)\s+AA\.", line)
                length = int(match.group(1)) if match else None
            elif tag == "AC" and accession is None:
                accession = line[5:].split(";")[0].strip()
            elif tag == "FT":
                _parse_ft(line, features, state)
            elif tag == "SQ":
                in_sequence = True
            elif tag == "//":
                finish()
                accession, in_sequence = None, False
            elif in_sequence:
                residues.append("".join(line.split()))
    return concept_frame(rows), dict(counts)
