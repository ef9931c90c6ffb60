"""Backbones for the structure views: the bundle's .npz, PDB and mmCIF files, sequence matching."""

import gzip
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from protsae.browser.structures import (
    load_backbones,
    load_structures,
    read_backbone_npz,
    read_structure_file,
    save_backbones,
    write_pdb,
)

BUNDLE = Path(REPO) / "resources/demo/structures_backbone.npz"


@pytest.fixture(scope="module")
def chains():
    return read_backbone_npz(BUNDLE, ["1A32_A", "1A6J_B"])


def test_bundle_chains_are_real_backbones(chains):
    assert set(chains) == {"1A32_A", "1A6J_B"}
    for chain in chains.values():
        ca = chain.coords[:, 1]
        assert np.median(np.linalg.norm(np.diff(ca, axis=0), axis=1)) == pytest.approx(3.81, abs=0.05)
        n_ca = np.linalg.norm(chain.coords[:, 0] - chain.coords[:, 1], axis=1)
        assert np.median(n_ca) == pytest.approx(1.46, abs=0.03)  # the N-CA bond
        assert len(chain.dssp8) == len(chain.sequence)


def test_whole_bundle_matches_its_readme():
    every = read_backbone_npz(BUNDLE)
    assert len(every) == 3000 and sum(len(c.sequence) for c in every.values()) == 614_437


def test_pdb_round_trip_plain_and_gzip(chains, tmp_path):
    chain = next(iter(chains.values()))
    write_pdb(chain, tmp_path / "x.pdb")
    back = read_structure_file(tmp_path / "x.pdb")
    assert back.sequence == chain.sequence
    assert np.abs(back.coords - chain.coords).max() < 6e-4
    (tmp_path / "x.pdb.gz").write_bytes(gzip.compress((tmp_path / "x.pdb").read_bytes()))
    assert read_structure_file(tmp_path / "x.pdb.gz").sequence == chain.sequence


def mmcif(chain, models=(1,)):
    lines = ["data_test", "#", "loop_", "_atom_site.group_PDB", "_atom_site.id", "_atom_site.label_atom_id",
             "_atom_site.label_comp_id", "_atom_site.label_asym_id", "_atom_site.label_seq_id",
             "_atom_site.Cartn_x", "_atom_site.Cartn_y", "_atom_site.Cartn_z", "_atom_site.auth_seq_id",
             "_atom_site.auth_asym_id", "_atom_site.pdbx_PDB_model_num"]
    three = {"A": "ALA", "G": "GLY", "L": "LEU", "K": "LYS", "E": "GLU"}
    serial = 1
    for model in models:
        for i, residue in enumerate(chain.sequence):
            for atom, (x, y, z) in zip(("N", "CA", "C", "O", "CB"), [*chain.coords[i], chain.coords[i, 1] + 1]):
                lines.append(f"ATOM {serial} {atom} {three[residue]} A {i + 1} {x + model:.3f} {y:.3f} {z:.3f} {i + 1} A {model}")
                serial += 1
    return "\n".join(lines + ["#", ""])


def test_mmcif_first_model_backbone_only(tmp_path):
    from protsae.browser.structures import Backbone

    chain = Backbone("t", "GALKE", np.arange(60, dtype=np.float32).reshape(5, 4, 3))
    (tmp_path / "t.cif").write_text(mmcif(chain, models=(0, 1)))
    back = read_structure_file(tmp_path / "t.cif")
    assert back.sequence == "GALKE" and np.allclose(back.coords, chain.coords, atol=1e-3)


def test_pdb_folder_matches_by_sequence(chains, tmp_path):
    a, b = chains["1A32_A"], chains["1A6J_B"]
    write_pdb(a, tmp_path / "AF-P1-F1-model_v4.pdb")
    write_pdb(b, tmp_path / "AF-P2-F1-model_v4.pdb")
    source = {"format": "pdb_folder", "path": str(tmp_path), "pattern": "AF-{id}-F1-model_v4.pdb"}
    sequences = {"P1": a.sequence, "P2": a.sequence, "P3": "ACDE"}
    matched, skipped = load_structures(source, sequences)
    assert list(matched) == ["P1"] and matched["P1"].id == "P1"
    assert skipped["P3"] == "no structure" and "not the protein's" in skipped["P2"]
    x_masked = a.sequence[:3] + "X" + a.sequence[4:]
    assert list(load_structures(source, {"P1": x_masked})[0]) == ["P1"]  # X matches any residue


def test_bad_sources_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="browser.structures.format"):
        load_structures({"format": "xyz", "path": str(tmp_path)}, {})
    with pytest.raises(FileNotFoundError, match="browser.structures.path"):
        load_structures({"format": "backbone_npz", "path": str(tmp_path / "none.npz")}, {})
    with pytest.raises(ValueError, match=r"\{id\}"):
        load_structures({"format": "pdb_folder", "path": str(tmp_path), "pattern": "x.pdb"}, {"P": "A"})
    (tmp_path / "bad.pdb").write_text("ATOM      1  N   ALA A   1    xxxxxxxx  0.000   0.000\n")
    with pytest.raises(ValueError, match="bad.pdb, line 1"):
        read_structure_file(tmp_path / "bad.pdb")


def test_saved_backbones_round_trip(chains, tmp_path):
    save_backbones(chains, tmp_path / "s.npz")
    back = load_backbones(tmp_path / "s.npz")
    assert back.keys() == chains.keys()
    for key in chains:
        assert back[key].sequence == chains[key].sequence and np.array_equal(back[key].coords, chains[key].coords)
    assert list(load_backbones(tmp_path / "s.npz", ["1A6J_B"])) == ["1A6J_B"]
