"""Look at the built site in a real browser: headless Chromium screenshots of three pages.

    ./run docs                              # or HEBBREF_FAST=1 ./run docs
    python scripts/check_site.py [SITE] [--out DIR]

Saves DIR/front.png (the front page), DIR/tutorial.png (the first tutorial) and
DIR/api.png (the API page of hebbref.rules, or the first API page) from SITE (default
site/) into DIR (default site-screenshots/), to be looked at. Needs Chromium (Debian:
``apt-get install chromium``); it is a check to run by hand, not part of CI.

The pages load MathJax from its CDN, so the equations are typeset only when the
browser is online; offline they show as their TeX source (``\\(W^\\top\\delta\\)``).
"""
import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser():
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    sys.exit("check_site: no Chromium found (apt-get install chromium)")


def pages(site):
    """(name, page) for the front page, the first tutorial and one API page."""
    tutorials = sorted(site.glob("tutorials/[0-9][0-9]_*.html"))
    api = site / "api" / "hebbref.rules.html"
    if not api.exists():
        api = next(iter(sorted(site.glob("api/*.html"))), None)
    chosen = [("front", site / "index.html"), ("tutorial", tutorials[0] if tutorials else None), ("api", api)]
    missing = [name for name, page in chosen if page is None or not page.exists()]
    if missing:
        sys.exit(f"check_site: {site} has no {' or '.join(missing)} page; build it with ./run docs")
    return chosen


def screenshot(browser, page, png, width, height):
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--allow-file-access-from-files", "--virtual-time-budget=15000",
               f"--window-size={width},{height}", f"--screenshot={png}", page.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    if result.returncode != 0 or not png.exists():
        sys.exit(f"check_site: Chromium failed on {page}:\n{result.stderr[-2000:]}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", nargs="?", default=str(ROOT / "site"), help="the built site (default site/)")
    parser.add_argument("--out", default=str(ROOT / "site-screenshots"), help="folder for the PNGs")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2000)
    args = parser.parse_args(argv)
    site = Path(args.site).resolve()
    if not (site / "index.html").exists():
        sys.exit(f"check_site: no {site}/index.html; build the site first with ./run docs")
    browser = find_browser()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, page in pages(site):
        png = out / f"{name}.png"
        screenshot(browser, page, png, args.width, args.height)
        print(f"{png}  <- {page.relative_to(site)}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
