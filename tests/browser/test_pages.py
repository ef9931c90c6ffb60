"""The tiny config's latent browser: its data against the tables and codes (plain pytest), and its
pages in a real browser (Debian's Chromium driven by Playwright, WebGL through SwiftShader).

The browser tests skip, saying why, where Chromium is missing; under CI (CI=true) they fail
instead, since set-up installs it there.
"""

import io
import json
import os
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest

from protsae.browser.pack import colour, unpack_coords, unpack_track
from protsae.latents.patterns import collect_tracks

pytestmark = pytest.mark.slow
MODEL = "tiny_esm2"
SAE = "layer2/topk_k4_w64"
CHROMIUM = os.environ.get("PROTSAE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
WEBGL = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


def read_script(path: Path, kind: str):
    text = path.read_text()
    prefix = f"protsae.{kind}("
    assert text.startswith(prefix) and text.endswith(");\n"), path
    return json.loads(text[len(prefix):-3])


@pytest.fixture(scope="module")
def site(tiny_run) -> Path:
    return tiny_run / "results" / MODEL / "browser"


@pytest.fixture(scope="module")
def results(tiny_run) -> Path:
    return tiny_run / "results" / MODEL


def latent_data(site, latent, sae=SAE):
    """A latent's data file, each bin's examples as rows (the file holds them as columns)."""
    d = read_script(site / sae / "latents" / f"{latent}.js", "latent")
    for b in d["bins"]:
        b["examples"] = [dict(zip(b["examples"], values)) for values in zip(*b["examples"].values())]
    return d


def structured_latent(site, sae=SAE) -> int:
    """A latent with structures and a full top bin, the one with the most active residues."""
    best, best_n = None, -1
    for path in sorted((site / sae / "latents").glob("*.js")):
        d = latent_data(site, int(path.stem), sae)
        if d["structures"] and d["bins"][0]["examples"]:
            n = sum(len(unpack_track(e["t"], d["scale"])[0]) for e in d["bins"][0]["examples"])
            if n > best_n:
                best, best_n = d["latent"], n
    assert best is not None, "no latent of the tiny SAE has structures"
    return best


# -- the data, against the tables and the codes -----------------------------------------------


def test_site_has_every_sae_and_latent(site, results):
    summary = pd.read_csv(results / "sae/uniref50/summary.tsv", sep="\t")
    saes = read_script(site / "saes.js", "saes")["rows"]
    assert len(saes) == len(summary) == 6
    for row in saes:
        folder = site / row["path"]
        assert (folder / "index.html").exists() and (folder / "latent.html").exists()
        assert len(list((folder / "latents").glob("*.js"))) == row["width"]
    size = json.loads((results / "browser_data/site_size.json").read_text())
    assert 0 < size["bytes"] < 100e6 and size["parts"]["assets"]["files"] == 7


def test_table_equals_the_latent_tables(site, results):
    table = read_script(site / SAE / "data/table.js", "table")
    family = pd.read_csv(results / "latents/swissprot" / SAE / "family_f1.tsv", sep="\t")
    patterns = pd.read_csv(results / "latents/swissprot" / SAE / "patterns.tsv", sep="\t")
    columns = table["columns"]
    assert columns["latent"] == list(range(64))
    assert columns["pattern"] == patterns["pattern"].tolist()
    f1 = [None if np.isnan(v) else v for v in family["test_f1"]]
    assert columns["test_f1"] == pytest.approx(f1, nan_ok=True)
    assert columns["family"] == family["family"].fillna("").tolist()


def test_examples_equal_the_codes(site, results):
    latent = structured_latent(site)
    d = latent_data(site, latent)
    lengths = pd.read_csv(results / "sequences/swissprot/lengths.tsv", sep="\t").set_index("seq_id")["length"]
    codes = sorted((results / "codes/swissprot" / SAE).glob("*.parquet"))
    examples = [e for b in d["bins"] for e in b["examples"]]
    tracks = collect_tracks(codes, [(e["p"], latent) for e in examples], lengths.to_dict())
    scale = d["scale"]
    for i, e in enumerate(examples):
        positions, values = unpack_track(e["t"], scale)
        want = tracks[i]
        assert positions.tolist() == list(want.positions)
        assert np.abs(values - want.values).max() <= scale / 8190 + 1e-7
        assert e["top"] == want.positions[int(np.argmax(want.values))] and e["m"] == pytest.approx(want.values.max())
    # Bins hold the proteins whose maxima fall in them.
    for b in d["bins"]:
        lo, hi = b["range"]
        assert all(lo < e["m"] / d["row"]["max"] <= hi + 1e-5 for e in b["examples"])
    assert d["bins"][0]["examples"][0]["m"] == pytest.approx(d["row"]["max"])


def test_structures_are_the_chains_they_name(site, results):
    latent = structured_latent(site)
    d = latent_data(site, latent)
    from protsae.browser.structures import read_backbone_npz

    bundle = read_backbone_npz(Path(__file__).parents[2] / "resources/demo/structures_backbone.npz",
                               [s["p"] for s in d["structures"]])
    for s in d["structures"]:
        structure = read_script(site / "structures" / f"{s['s']}.js", "structure")
        coords = unpack_coords(structure["coords"])
        expected = bundle[s["p"]].coords
        assert structure["sequence"] == bundle[s["p"]].sequence
        assert np.abs(coords - (expected - expected[0, 1])).max() < 0.006


# -- in a real browser ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        message = "Chromium not found (install Debian's chromium, or set PROTSAE_CHROMIUM to its path)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}: CI set-up installs it, so this is a broken set-up")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=WEBGL)
        yield browser
        browser.close()


class Page:
    """A page that records console errors, page errors and every request."""

    def __init__(self, browser, url):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors, self.requests = [], []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.errors.append(f"failed: {r.url}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(url)

    def check_clean(self):
        assert self.errors == []
        assert {urlparse(u).scheme for u in self.requests} <= {"file", "data", "blob"}


def open_latent(browser, site, latent, sae=SAE):
    page = Page(browser, (site / sae / "latent.html").as_uri() + f"?latent={latent}")
    page.page.wait_for_selector("body[data-ready=true]", timeout=20_000)
    return page


def test_index_and_sae_page_load_clean(browser, site):
    index = Page(browser, (site / "index.html").as_uri())
    assert index.page.locator("#saes tr[data-sae]").count() == 6
    index.check_clean()
    sae = Page(browser, (site / SAE / "index.html").as_uri())
    assert sae.page.locator("#row-count").inner_text() == "64 of 64 latents"
    sae.check_clean()


def test_search_filter_and_sort_change_the_rows(browser, site):
    table = read_script(site / SAE / "data/table.js", "table")["columns"]
    page = Page(browser, (site / SAE / "index.html").as_uri())
    p = page.page
    # Sorting by test F1 puts the highest first.
    p.click("button[data-key=test_f1]")
    first = int(p.locator("#table .row").first.get_attribute("data-latent"))
    f1 = np.array([np.nan if v is None else v for v in table["test_f1"]])
    assert f1[first] == np.nanmax(f1)
    # Filter by pattern.
    pattern = max(set(table["pattern"]), key=table["pattern"].count)
    p.select_option("#pattern-filter", pattern)
    n = table["pattern"].count(pattern)
    assert p.locator("#row-count").inner_text() == f"{n} of 64 latents"
    assert {r.get_attribute("data-latent") for r in p.locator("#table .row").all()} <= {
        str(i) for i, v in enumerate(table["pattern"]) if v == pattern}
    p.select_option("#pattern-filter", "")
    # Search by protein accession: the latents whose top proteins include it.
    protein = table["proteins"][structured_latent(site)].split()[0]
    p.fill("#search", protein)
    hits = [i for i, v in enumerate(table["proteins"]) if protein in v.split()]
    assert p.locator("#row-count").inner_text() == f"{len(hits)} of 64 latents"
    # By latent id.
    p.fill("#search", "17")
    assert "17" in {r.get_attribute("data-latent") for r in p.locator("#table .row").all()}
    page.check_clean()


def test_virtual_rows_follow_the_scroll(browser, site):
    page = Page(browser, (site / SAE / "index.html").as_uri())
    p = page.page
    rows = p.locator("#table .row").count()
    assert 0 < rows < 64  # only the rows in view (and a margin)
    p.evaluate("document.getElementById('table').scrollTop = 1e6")
    p.wait_for_function("document.querySelector('#table .row[data-latent=\"63\"]') !== null")
    page.check_clean()


def test_latent_page_colours_the_top_residue_by_its_activation(browser, site, results):
    latent = structured_latent(site)
    d = latent_data(site, latent)
    page = open_latent(browser, site, latent)
    p = page.page
    example = d["bins"][0]["examples"][0]
    # The value in the codes at that residue, coloured on the page's scale.
    lengths = pd.read_csv(results / "sequences/swissprot/lengths.tsv", sep="\t").set_index("seq_id")["length"]
    codes = sorted((results / "codes/swissprot" / SAE).glob("*.parquet"))
    track = collect_tracks(codes, [(example["p"], latent)], lengths.to_dict())[0]
    value = float(track.values[list(track.positions).index(example["top"])])
    top = p.locator(f"[data-bin='bin-0.75-1'] .seq[data-protein='{example['p']}'] .res.top")
    assert top.count() == 1 and int(top.get_attribute("data-pos")) == example["top"]
    shown = top.evaluate("e => getComputedStyle(e).backgroundColor")
    rgb = [int(v) for v in shown[shown.index("(") + 1:-1].split(",")]
    assert np.abs(np.array(rgb) - colour(value / d["scale"])).max() <= 1
    assert top.get_attribute("title").startswith(f"{example['top'] + 1} ")
    # Rows of a bin are aligned on their top residue.
    lefts = p.locator("[data-bin='bin-0.75-1'] .res.top").evaluate_all("es => es.map(e => e.getBoundingClientRect().left)")
    assert max(lefts) - min(lefts) < 1
    page.check_clean()


def test_structure_canvas_shows_the_activation_colour(browser, site, tiny_run):
    from PIL import Image

    latent = structured_latent(site)
    page = open_latent(browser, site, latent)
    p = page.page
    viewer = p.locator(".viewer").first
    p.wait_for_function("document.querySelector('.viewer').dataset.rendered === 'true'")
    p.wait_for_timeout(300)
    image = np.asarray(Image.open(io.BytesIO(viewer.screenshot())).convert("RGB")).astype(int)
    background = (image.min(axis=2) > 245).mean()
    assert background < 0.99, "the structure canvas is blank"
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    assert ((r > g + 60) & (r > b + 60)).sum() > 50, "no residue in the activation colour"
    grey = (np.abs(r - g) < 12) & (np.abs(g - b) < 12) & (r < 235) & (r > 60)
    assert grey.sum() > 50, "no inactive residue drawn in grey"
    (tiny_run / "latent_page.png").write_bytes(p.screenshot(full_page=True))
    docs = os.environ.get("PROTSAE_SCREENSHOT")
    if docs:
        Path(docs).write_bytes(p.screenshot(full_page=False))
    page.check_clean()


def test_a_second_latent_page_loads_clean(browser, site):
    table = read_script(site / SAE / "data/table.js", "table")["columns"]
    other = next(i for i in range(64) if table["pattern"][i] != "dead" and i != structured_latent(site))
    page = open_latent(browser, site, other)
    assert page.page.locator("#title").inner_text().startswith(f"Latent {other} ")
    page.check_clean()


def test_every_link_resolves(browser, site):
    """A crawl from the index: every <a href> on every page reached names a file that exists, and
    a latent page's link names a latent whose data file exists. The index, every SAE page and
    two latent pages of each SAE are opened in the browser (their links rendered by their
    scripts); the other latent pages reached are checked on disk."""
    seen, queue, opened = set(), [(site / "index.html").as_uri()], {}
    while queue:
        url = queue.pop(0)
        if url in seen:
            continue
        seen.add(url)
        parsed = urlparse(url)
        path = Path(parsed.path)
        assert parsed.scheme == "file" and path.is_file(), url
        if path.name == "latent.html":
            latent = parse_qs(parsed.query)["latent"][0]
            assert (path.parent / "latents" / f"{latent}.js").is_file(), url
            opened[path.parent] = opened.get(path.parent, 0) + 1
            if opened[path.parent] > 2:
                continue
        page = Page(browser, url)
        if path.name == "latent.html":
            page.page.wait_for_selector("body[data-ready=true]", timeout=20_000)
        hrefs = page.page.eval_on_selector_all("a[href]", "es => es.map(e => e.href)")
        page.check_clean()
        page.page.close()
        for href in hrefs:
            target = urlparse(href)
            assert target.scheme == "file", href
            queue.append(target._replace(fragment="").geturl())
    assert len(opened) == 6 and len(seen) > 20


def test_feature_network_neighbours_link_to_their_pages(browser, site, results):
    """Layer 2's latent page lists its causal sources at layer 1 as in the network's neighbour
    lists, and following one opens that latent's page."""
    import json

    lists = json.loads((results / "networks/swissprot/layers/neighbours/layer2.json").read_text())
    latent, items = next((int(j), items) for j, items in lists.items()
                         if any(item["kind"] == "causal" and item["direction"] == "in" for item in items))
    d = latent_data(site, latent)
    assert [{k: v for k, v in item.items() if k != "href"} for item in d["neighbours"]] == items
    source = next(item for item in d["neighbours"] if item["kind"] == "causal" and item["direction"] == "in")
    assert source["href"] == f"../../layer1/topk_k4_w64/latent.html?latent={source['latent']}"
    page = open_latent(browser, site, latent)
    rows = page.page.locator("table.neighbours tr")
    assert rows.count() == len(items) + 1
    link = page.page.locator(f"table.neighbours a[href='{source['href']}']").first
    link.click()
    page.page.wait_for_selector("body[data-ready=true]", timeout=20_000)
    assert page.page.locator("#title").inner_text().startswith(f"Latent {source['latent']} ")
    page.check_clean()
