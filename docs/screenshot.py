"""The README's screenshot of a latent page of the demo's site, taken in Debian's Chromium the way
the browser tests open pages (tests/browser/test_pages.py).

    python docs/screenshot.py [--sae layer3/topk_k32_w4096] [--latent N] [--out docs/latent_page.png]

Without --latent: the SAE's family-specific latent with the highest test F1 that has structures.
"""

import argparse
import json
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--site", default="results/unirep256/browser")
parser.add_argument("--sae", default="layer3/topk_k32_w4096")
parser.add_argument("--latent", type=int)
parser.add_argument("--out", default="docs/latent_page.png")
parser.add_argument("--height", type=int, default=1800)
args = parser.parse_args()

folder = Path(args.site).resolve() / args.sae
latent = args.latent
if latent is None:
    best = None
    for path in (folder / "latents").glob("*.js"):
        text = path.read_text()
        d = json.loads(text[len("protsae.latent("):-3])
        f1 = d["row"]["test_f1"]
        if d["structures"] and f1 is not None and (best is None or f1 > best[0]):
            best = (f1, d["latent"])
    latent = best[1]
with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path=shutil.which("chromium"),
                                         args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
    page = browser.new_page(viewport={"width": 1280, "height": args.height})
    page.goto((folder / "latent.html").as_uri() + f"?latent={latent}")
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_function("[...document.querySelectorAll('.viewer')].every(v => v.dataset.rendered === 'true')")
    page.wait_for_timeout(500)
    page.screenshot(path=args.out)
    browser.close()
print(f"{args.out}: latent {latent} of {args.sae}")
