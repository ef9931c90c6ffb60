"""The site writer's small parts: file names, data files, the vendored viewer's checksum."""

import json
import shutil

import numpy as np
import pytest

from protsae.browser import site


def test_file_stems_are_the_id_when_safe_and_distinct_when_not():
    assert site.file_stem("1A32_A") == "1A32_A" and site.file_stem("P12345") == "P12345"
    odd = [site.file_stem(i) for i in ("sp|P1|X", "sp/P1/X", ".hidden")]
    assert len(set(odd)) == 3 and all(set(s) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
                                      and not s.startswith(".") for s in odd)


def test_data_files_are_json_with_null_for_nan_and_six_digits(tmp_path):
    site.write_script(tmp_path / "x.js", "latent", {"a": np.float32(0.1234567891), "b": float("nan"),
                                                    "c": np.arange(3), "d": [np.inf]})
    text = (tmp_path / "x.js").read_text()
    assert text.startswith("protsae.latent(") and text.endswith(");\n")
    assert json.loads(text[len("protsae.latent("):-3]) == {"a": 0.123457, "b": None, "c": [0, 1, 2], "d": [None]}


def test_a_changed_viewer_file_is_refused(tmp_path, monkeypatch):
    assets = tmp_path / "assets"
    shutil.copytree(site.ASSETS, assets)
    monkeypatch.setattr(site, "ASSETS", assets)
    site.write_assets(tmp_path / "ok")
    assert sorted(p.name for p in (tmp_path / "ok/assets").iterdir()) == sorted(site.ASSET_FILES)
    with open(assets / "3Dmol-min.js", "a") as handle:
        handle.write("\n")
    with pytest.raises(ValueError, match="3Dmol-min.js: sha256"):
        site.write_assets(tmp_path / "bad")
