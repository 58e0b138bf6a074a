"""Look at the built site in a real browser: headless Chromium screenshots of three pages.

    ./run docs                              # or HEBBREF_FAST=1 ./run docs
    python scripts/check_site.py [SITE] [--out DIR]

Saves DIR/front.png (the front page), DIR/tutorial.png (the first tutorial) and
DIR/api.png (the API page of hebbref.rules, or the first API page) from SITE (default
site/) into DIR (default site-screenshots/), to be looked at. Needs Chromium (Debian:
``apt-get install chromium``); it is a check to run by hand, not part of CI.

The pages load MathJax from its CDN. So that the equations are typeset offline too, the
screenshots are taken of a copy of the site whose pages load Debian's MathJax
(``apt-get install libjs-mathjax``) when it is installed; the script then also reports
a page whose equations MathJax left untypeset or marked as errors. Without it the
equations show as their TeX source and the script says so.
"""
import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
LOCAL_MATHJAX = Path("/usr/share/javascript/mathjax/MathJax.js")
CDN_MATHJAX = re.compile(r'<script[^>]*src="https://cdn\.jsdelivr\.net/npm/mathjax@[^"]*"[^>]*></script>')
MATHJAX_CONFIG = re.compile(r"<script>window\.MathJax = .*?</script>")
# MathJax 2's own configuration: typeset what Sphinx and MyST-NB mark as math
LOCAL_TAGS = ('<script type="text/x-mathjax-config">MathJax.Hub.Config({tex2jax: {processClass: '
              '"math|output_area|tex2jax_process"}, messageStyle: "none"});</script>'
              f'<script src="{LOCAL_MATHJAX.as_uri()}?config=TeX-AMS-MML_HTMLorMML"></script>')
UNTYPESET = re.compile(r'class="math[^"]*">\s*\\[(\[]')
MATH_ERROR = re.compile(r'class="(?:merror|MathJax_Error|noError)"')


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


def local_copy(site, scratch):
    """A copy of the site whose pages load MathJax from libjs-mathjax (None without it)."""
    if not LOCAL_MATHJAX.exists():
        return None
    copy = Path(scratch) / "site"
    shutil.copytree(site, copy)
    for page in copy.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        if CDN_MATHJAX.search(text):
            text = MATHJAX_CONFIG.sub("", CDN_MATHJAX.sub(lambda _: LOCAL_TAGS, text))
            page.write_text(text, encoding="utf-8")
    return copy


def rendered(browser, page):
    """The page's DOM after its scripts ran."""
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
               "--virtual-time-budget=15000", "--dump-dom", page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=180).stdout


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
    parser.add_argument("--math-everywhere", action="store_true",
                        help="also check the equations of every page, not only the three (slow)")
    args = parser.parse_args(argv)
    site = Path(args.site).resolve()
    if not (site / "index.html").exists():
        sys.exit(f"check_site: no {site}/index.html; build the site first with ./run docs")
    browser = find_browser()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    problems = []
    with tempfile.TemporaryDirectory() as scratch:
        shown = local_copy(site, scratch)
        if shown is None:
            print("check_site: libjs-mathjax is not installed: offline, equations stay TeX source")
        for name, page in pages(site):
            png = out / f"{name}.png"
            page = (shown or site) / page.relative_to(site)
            screenshot(browser, page, png, args.width, args.height)
            print(f"{png}  <- {page.relative_to(shown or site)}")
            if shown is not None:
                dom = rendered(browser, page)
                if UNTYPESET.search(dom):
                    problems.append(f"{name}: an equation was left untypeset")
                if MATH_ERROR.search(dom):
                    problems.append(f"{name}: MathJax marks an equation as an error")
        if shown is not None and args.math_everywhere:
            for page in sorted(shown.rglob("*.html")):
                dom = rendered(browser, page)
                name = str(page.relative_to(shown))
                if UNTYPESET.search(dom):
                    problems.append(f"{name}: an equation was left untypeset")
                if MATH_ERROR.search(dom):
                    problems.append(f"{name}: MathJax marks an equation as an error")
    for problem in problems:
        print(f"check_site: {problem}")
    return 1 if problems else 0

if __name__ == "__main__":
    sys.exit(main())
