"""Atomic outputs: complete or absent, and readable as the umask allows."""

import os

import pandas as pd
import pytest

from protsae.files import atomic_path, remove_stale_temporaries, write_json, write_tsv


@pytest.fixture
def umask():
    def set_umask(mask):
        previous.append(os.umask(mask))

    previous = []
    yield set_umask
    for mask in reversed(previous):
        os.umask(mask)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_honour_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    write_json(tmp_path / "a.json", {"x": 1})
    write_tsv(pd.DataFrame({"x": [0.1234567]}), tmp_path / "a.tsv")
    for name in ("a.json", "a.tsv"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode


def test_a_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists() and not list(tmp_path.iterdir())


def test_tsv_has_six_significant_digits(tmp_path):
    write_tsv(pd.DataFrame({"x": [0.1234567], "y": ["a"]}), tmp_path / "t.tsv")
    assert (tmp_path / "t.tsv").read_text() == "x\ty\n0.123457\ta\n"


def test_stale_temporaries_are_removed(tmp_path):
    (tmp_path / ".out.txt.abc.tmp").write_text("left by a SIGKILL")
    (tmp_path / "keep.txt").write_text("")
    assert [p.name for p in remove_stale_temporaries(tmp_path)] == [".out.txt.abc.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
