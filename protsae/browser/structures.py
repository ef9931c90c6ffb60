"""Protein backbones for the latent browser's structure views (METHODS.md section 13).

A `Backbone` is one chain's N, CA, C and O coordinates (Angstrom) with its sequence and, where
known, its 8-state DSSP string. Sources:

* ``backbone_npz``: the data bundle's ``structures_backbone.npz`` (ProMod3's StructureDB, PDB
  chains keyed ``<pdb_id>_<chain>``; coordinates stored at 0.01 A, see its README);
* ``pdb_folder``: a folder of PDB or mmCIF files (plain or gzip), one per protein, named by a
  pattern with ``{id}`` (AlphaFold DB's ``AF-{id}-F1-model_v4.pdb``, or ESMFold output); the
  first model and the first chain with coordinates are read, residues in file order.

A structure is drawn for a protein only when its residues are the protein's sequence, so that
residue i of the structure is residue i of the activation track; `match_structures` checks it.
"""

from __future__ import annotations

import gzip
import logging
import os
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protsae.files import atomic_path

log = logging.getLogger("protsae.browser")

ATOMS = ("N", "CA", "C", "O")
THREE_TO_ONE = {
    "ALA": "A", "ARG": "R", "ASN": "N", "ASP": "D", "CYS": "C", "GLN": "Q", "GLU": "E", "GLY": "G",
    "HIS": "H", "ILE": "I", "LEU": "L", "LYS": "K", "MET": "M", "PHE": "F", "PRO": "P", "SER": "S",
    "THR": "T", "TRP": "W", "TYR": "Y", "VAL": "V", "SEC": "U", "PYL": "O", "MSE": "M",
}
ONE_TO_THREE = {one: three for three, one in THREE_TO_ONE.items() if three != "MSE"}
FORMATS = ("backbone_npz", "pdb_folder")


@dataclass
class Backbone:
    """coords: (n_residues, 4, 3) float32, N CA C O in Angstrom. dssp8: one letter per residue
    (H G I E B T S C) or "" when unknown."""

    id: str
    sequence: str
    coords: np.ndarray
    dssp8: str = ""

    def __post_init__(self) -> None:
        if self.coords.shape != (len(self.sequence), 4, 3):
            raise ValueError(f"structure {self.id}: {self.coords.shape[0]} residues of coordinates "
                             f"for a sequence of {len(self.sequence)}")
        if self.dssp8 and len(self.dssp8) != len(self.sequence):
            raise ValueError(f"structure {self.id}: {len(self.dssp8)} DSSP states for {len(self.sequence)} residues")


def read_backbone_npz(path: str | os.PathLike, ids: Iterable[str] | None = None) -> dict[str, Backbone]:
    """The chains of a ``structures_backbone.npz`` (all, or those of ``ids``), keyed ``<pdb_id>_<chain>``."""
    with np.load(path) as data:
        missing = {"pdb_id", "chain", "length", "sequence", "backbone_centi_angstrom", "shift"} - set(data.files)
        if missing:
            raise ValueError(f"{path}: not a backbone bundle, lacks array(s) {', '.join(sorted(missing))}")
        keys = [f"{p}_{c}" for p, c in zip(data["pdb_id"].tolist(), data["chain"].tolist())]
        lengths = data["length"].astype(np.int64)
        starts = np.r_[0, np.cumsum(lengths)]
        if starts[-1] != len(data["backbone_centi_angstrom"]):
            raise ValueError(f"{path}: lengths sum to {starts[-1]} residues, coordinates hold "
                             f"{len(data['backbone_centi_angstrom'])}")
        wanted = set(keys) if ids is None else set(ids)
        coords, shift = data["backbone_centi_angstrom"], data["shift"]
        sequences, dssp = data["sequence"].tolist(), data["dssp8"].tolist() if "dssp8" in data.files else None
        chains = {}
        for i, key in enumerate(keys):
            if key not in wanted:
                continue
            xyz = coords[starts[i]:starts[i + 1]].astype(np.float32) / 100 - shift[i].astype(np.float32)
            chains[key] = Backbone(key, sequences[i], xyz, dssp[i] if dssp else "")
    return chains


def _open_text(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def _collect(path: Path, records: Iterable[tuple[str, str, str, str, float, float, float]]) -> Backbone:
    """A Backbone from (model, chain, residue key, atom name, resname, x, y, z) records: the first
    model's first chain, residues in order of appearance, those lacking a backbone atom dropped."""
    residues: dict[str, dict] = {}
    first_model = first_chain = None
    for model, chain, residue, atom, resname, x, y, z in records:
        first_model = model if first_model is None else first_model
        first_chain = chain if first_chain is None else first_chain
        if model != first_model or chain != first_chain or atom not in ATOMS:
            continue
        entry = residues.setdefault(residue, {"resname": resname})
        entry.setdefault(atom, (x, y, z))
    complete = [r for r in residues.values() if all(a in r for a in ATOMS)]
    if not complete:
        raise ValueError(f"{path}: no residue with all of N, CA, C and O")
    sequence = "".join(THREE_TO_ONE.get(r["resname"], "X") for r in complete)
    coords = np.array([[r[a] for a in ATOMS] for r in complete], dtype=np.float32)
    return Backbone(path.name, sequence, coords)


def _pdb_records(path: Path):
    model = "1"
    with _open_text(path) as handle:
        for line_no, line in enumerate(handle, 1):
            if line.startswith("MODEL"):
                model = line[10:14].strip() or model
            elif line.startswith(("ATOM", "HETATM")):
                try:
                    yield (model, line[21], line[22:27], line[12:16].strip(), line[17:20].strip(),
                           float(line[30:38]), float(line[38:46]), float(line[46:54]))
                except ValueError:
                    raise ValueError(f"{path}, line {line_no}: unreadable ATOM record") from None


def _mmcif_records(path: Path):
    """The _atom_site loop of an mmCIF file (one loop row per line, as the PDB and AlphaFold DB write it)."""
    columns: list[str] = []
    with _open_text(path) as handle:
        for line_no, line in enumerate(handle, 1):
            if line.startswith("_atom_site."):
                columns.append(line.split()[0][len("_atom_site."):])
                continue
            if not columns:
                continue
            text = line.strip()
            if not text or text.startswith(("#", "_", "loop_")):
                return
            values = dict(zip(columns, shlex.split(text)))
            try:
                yield (values.get("pdbx_PDB_model_num", "1"), values.get("auth_asym_id", values.get("label_asym_id")),
                       values.get("auth_seq_id", values.get("label_seq_id")) + values.get("pdbx_PDB_ins_code", "?"),
                       values["label_atom_id"], values["label_comp_id"],
                       float(values["Cartn_x"]), float(values["Cartn_y"]), float(values["Cartn_z"]))
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{path}, line {line_no}: unreadable _atom_site row") from None


def read_structure_file(path: str | os.PathLike) -> Backbone:
    """The backbone of a PDB (``.pdb``, ``.ent``) or mmCIF (``.cif``) file, plain or ``.gz``."""
    path = Path(path)
    kind = path.suffixes[-2] if path.suffix == ".gz" and len(path.suffixes) > 1 else path.suffix
    records = _mmcif_records(path) if kind == ".cif" else _pdb_records(path)
    return _collect(path, records)


def write_pdb(backbone: Backbone, path: str | os.PathLike) -> None:
    """A PDB file of the backbone (chain A, residues numbered from 1); for tests and export."""
    lines, serial = [], 1
    for i, residue in enumerate(backbone.sequence):
        for atom, (x, y, z) in zip(ATOMS, backbone.coords[i]):
            lines.append(f"ATOM  {serial:5d}  {atom:<3s} {ONE_TO_THREE.get(residue, 'UNK')} A{i + 1:4d}    "
                         f"{x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00           {atom[0]}")
            serial += 1
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines + ["END", ""]))


def same_sequence(structure: str, sequence: str) -> bool:
    """Whether a structure's residues are a protein's sequence (an X on either side matches any)."""
    return len(structure) == len(sequence) and all(
        a == b or a == "X" or b == "X" for a, b in zip(structure, sequence))


def load_structures(source: Mapping, sequences: Mapping[str, str], key: str = "browser.structures"
                    ) -> tuple[dict[str, Backbone], dict[str, str]]:
    """The structures of ``source`` (a config entry, `FORMATS`) for the proteins of ``sequences``
    (id -> sequence) whose residues they are; and, per protein left out, why."""
    kind = source.get("format")
    if kind not in FORMATS:
        raise ValueError(f"{key}.format is {kind!r}, not one of {', '.join(FORMATS)}")
    path = Path(source["path"])
    if not path.exists():
        raise FileNotFoundError(f"{key}.path: {path} does not exist")
    found: dict[str, Backbone] = {}
    if kind == "backbone_npz":
        found = read_backbone_npz(path, sequences)
    else:
        pattern = source.get("pattern") or "{id}.pdb"
        if "{id}" not in pattern:
            raise ValueError(f"{key}.pattern is {pattern!r}: it needs {{id}} for the protein's id")
        for protein in sequences:
            file = path / pattern.format(id=protein)
            if file.exists():
                found[protein] = read_structure_file(file)
                found[protein].id = protein
    matched, skipped = {}, {}
    for protein, sequence in sequences.items():
        if protein not in found:
            skipped[protein] = "no structure"
        elif not same_sequence(found[protein].sequence, sequence):
            skipped[protein] = (f"structure has {len(found[protein].sequence)} residues that are not "
                                f"the protein's {len(sequence)}")
        else:
            matched[protein] = found[protein]
    log.info("structures: %d of %d proteins matched (%d without a structure, %d whose structure is another sequence)",
             len(matched), len(sequences), sum(v == "no structure" for v in skipped.values()),
             sum(v != "no structure" for v in skipped.values()))
    return matched, skipped


def save_backbones(backbones: Mapping[str, Backbone], path: str | os.PathLike) -> None:
    """Matched structures in one ``.npz`` (the browser jobs' exchange format), atomically."""
    ids = sorted(backbones)
    lengths = np.array([len(backbones[i].sequence) for i in ids], dtype=np.int64)
    coords = (np.concatenate([backbones[i].coords for i in ids]) if ids else np.zeros((0, 4, 3), np.float32))
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, id=np.array(ids, dtype=str), length=lengths,
                            sequence=np.array([backbones[i].sequence for i in ids], dtype=str),
                            dssp8=np.array([backbones[i].dssp8 for i in ids], dtype=str),
                            coords=coords.astype(np.float32))


def load_backbones(path: str | os.PathLike, ids: Iterable[str] | None = None) -> dict[str, Backbone]:
    with np.load(path) as data:
        all_ids = data["id"].tolist()
        starts = np.r_[0, np.cumsum(data["length"])]
        wanted = set(all_ids) if ids is None else set(ids)
        coords, sequences, dssp = data["coords"], data["sequence"].tolist(), data["dssp8"].tolist()
        return {key: Backbone(key, sequences[i], coords[starts[i]:starts[i + 1]], dssp[i])
                for i, key in enumerate(all_ids) if key in wanted}
