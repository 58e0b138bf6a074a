"""Write the site's pages that come from elsewhere in the repository (called by conf.py).

Everything written here is git-ignored and rebuilt on every ``./run docs``:

    docs/tutorials/NN_*.ipynb   every tutorials/[0-9][0-9]_*.py, converted with jupytext
                                (executed by myst-nb when the page is built), with a link
                                to download it as a notebook after its title cell
    docs/tutorials/index.md     tutorials/README.md, and the tutorials' table of contents
    docs/theory.md              theory/README.md, then the report and plots of
                                ``hebbref theory --quick`` (``--quick`` only under HEBBREF_FAST=1),
                                which runs while Sphinx reads the other pages
    docs/results.md, benchmarks.md, data.md     RESULTS.md, BENCHMARKS.md, hebbref/datasets/README.md
    docs/figures/               the pathway picture (docs/pathways.py) and every image those pages show

The markdown files are written for GitHub, with links relative to the repository. Here
a link to another file that is a page of the site becomes a link to that page, an image
is copied under docs/figures/, a link to any other file of the repository becomes the
file's path in code (the site does not serve the source tree), and a link to something
that does not exist is left as it is, so that the build fails on it.
"""
import atexit
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
TUTORIALS = DOCS / "tutorials"
FIGURES = DOCS / "figures"
GENERATED = ["tutorials", "figures", "theory.md", "results.md", "benchmarks.md", "data.md"]

# repository file -> the site's page (document name, relative to docs/)
PAGES = {
    "README.md": "index",
    "RESULTS.md": "results",
    "BENCHMARKS.md": "benchmarks",
    "theory/README.md": "theory",
    "tutorials/README.md": "tutorials/index",
    "hebbref/datasets/README.md": "data",
}
IMAGE_SUFFIXES = {".png", ".svg", ".jpg", ".jpeg", ".gif"}
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def fast():
    return os.environ.get("HEBBREF_FAST", "") not in ("", "0")


def tutorial_scripts():
    """Every numbered tutorial, found by name: new ones join the site by themselves."""
    return sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))


def clean():
    for name in GENERATED:
        path = DOCS / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


# --- markdown from the repository ---------------------------------------------------------
def page_path(docname, from_doc):
    """Relative link from page ``from_doc`` to page ``docname`` (both relative to docs/)."""
    suffix = ".ipynb" if docname in TUTORIAL_PAGES.values() else ".md"
    return os.path.relpath(DOCS / f"{docname}{suffix}", (DOCS / from_doc).parent).replace(os.sep, "/")


def rewrite_target(bang, text, target, source, docname):
    """The markdown that replaces ``[text](target)`` (an image when ``bang``) of ``source``."""
    if SCHEME.match(target) or target.startswith("#"):
        return f"{bang}[{text}]({target})"
    path, _, anchor = target.partition("#")
    resolved = os.path.normpath(os.path.join(os.path.dirname(source), path)).replace(os.sep, "/")
    file = ROOT / resolved
    if not file.exists():
        return f"{bang}[{text}]({target})"  # broken: left for the build to report
    if bang or file.suffix.lower() in IMAGE_SUFFIXES:
        copy = FIGURES / resolved.replace("/", "__")
        FIGURES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, copy)
        link = os.path.relpath(copy, (DOCS / docname).parent).replace(os.sep, "/")
        return f"{bang}[{text}]({link})"
    if resolved in PAGES or resolved in TUTORIAL_PAGES:
        page = PAGES.get(resolved) or TUTORIAL_PAGES[resolved]
        return f"[{text}]({page_path(page, docname)}{'#' + anchor if anchor else ''})"
    shown = text.strip("`")
    in_code = f"`{resolved}`" + ("/" if file.is_dir() and not resolved.endswith("/") else "")
    return text if shown.rstrip("/") == resolved.rstrip("/") else f"{text} ({in_code})"


TUTORIAL_PAGES = {}  # "tutorials/NN_x.py" -> "tutorials/NN_x", filled by write_pages


def rewrite_markdown(text, source, docname, demote=0):
    """GitHub markdown of repository file ``source`` as the page ``docname`` of the site."""
    out, fence = [], None
    for line in text.splitlines():
        stripped = line.lstrip()
        if fence is None and stripped[:3] in ("```", "~~~"):
            fence = stripped[:3]
        elif fence is not None and stripped.startswith(fence):
            fence = None
        elif fence is None and not line.startswith("    "):
            if demote and line.startswith("#"):
                line = "#" * demote + line
            line = LINK.sub(lambda m: rewrite_target(m[1], m[2], m[3], source, docname), line)
            line = link_tutorial_names(line, docname)
            line = escape_dollars(line)
        out.append(line)
    return "\n".join(out) + "\n"


def link_tutorial_names(line, docname):
    """`` `NN_x.py` `` naming a tutorial (other than this page) becomes a link to its page."""
    def link(match):
        name = match[1]
        page = TUTORIAL_PAGES.get(f"tutorials/{name}")
        return f"[`{name}`]({page_path(page, docname)})" if page and page != docname else match[0]
    return re.sub(r"(?<!\[)`(?:tutorials/)?([0-9][0-9]_\w+\.py)`", link, line)


def escape_dollars(line):
    """These files mean ``$`` as a dollar (``$HEBBREF_DATA``), not as math: escape it outside code."""
    parts = re.split(r"(`[^`]*`)", line)
    return "".join(p if p.startswith("`") else p.replace("$", r"\$") for p in parts)


def write_markdown_page(source, docname, title=None, extra=""):
    """``source`` as the page ``docname``; ``title`` replaces its first heading (the menu's entry)."""
    text = rewrite_markdown((ROOT / source).read_text(encoding="utf-8"), source, docname)
    if title:
        text = re.sub(r"^# .*$", lambda _: f"# {title}", text, count=1, flags=re.MULTILINE)
    (DOCS / f"{docname}.md").write_text(text + extra, encoding="utf-8")


# --- tutorials ----------------------------------------------------------------------------
def write_tutorial(script):
    """tutorials/NN_x.py -> docs/tutorials/NN_x.ipynb, with a download link after the title cell."""
    import jupytext
    from nbformat.v4 import new_markdown_cell

    notebook = jupytext.read(script, fmt="py:percent")
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata.setdefault("language_info", {"name": "python"})
    download = new_markdown_cell(
        f"*This page is `tutorials/{script.name}`, executed "
        f"{'with `HEBBREF_FAST=1` (small data, few epochs)' if fast() else 'in full'} when the site "
        f"was built.* Download it as a notebook: {{download}}`{script.stem}.ipynb`; or run "
        f"`python tutorials/{script.name}` in the repository.")
    first_code = next((i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"), 1)
    notebook.cells.insert(min(1, first_code), download)
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.source = "\n".join(link_tutorial_names(line, f"tutorials/{script.stem}")
                                    for line in cell.source.splitlines())
    jupytext.write(notebook, TUTORIALS / f"{script.stem}.ipynb", fmt="ipynb")


def write_tutorials_index():
    toc = "\n".join(f"{script.stem}" for script in tutorial_scripts())
    extra = f"\n```{{toctree}}\n:hidden:\n:maxdepth: 1\n\n{toc}\n```\n"
    write_markdown_page("tutorials/README.md", "tutorials/index", extra=extra)


THEORY_TITLE = "Theory: the linear case, stated, derived and checked"


# --- theory -------------------------------------------------------------------------------
THEORY_RUN = {}  # "process", "out": the report being written while Sphinx reads the other pages


def start_theory_report(out):
    """Start ``hebbref theory --quick`` (or the full run) into ``out``, on every core, in the background.

    The theory page waits for it (``finish_theory_page``), which Sphinx reads last
    (conf.py), so that the report and the tutorials' notebooks run side by side.
    ``HEBBREF_DOCS_THEORY_FROM=DIR`` takes the report a former run wrote into DIR instead.
    """
    from hebbref.experiments.rundir import available_cores

    THEORY_RUN.update(out=out, process=None)
    earlier = os.environ.get("HEBBREF_DOCS_THEORY_FROM")
    if earlier:
        shutil.copytree(earlier, out, dirs_exist_ok=True)
        return
    relative = os.path.relpath(out, ROOT)  # the report names its command: no absolute paths
    jobs = str(available_cores())  # the settings side by side, one per core: the same numbers, sooner
    command = [sys.executable, "-m", "theory", "--out", relative, "--jobs", jobs] + (["--quick"] if fast() else [])
    env = dict(os.environ, MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    THEORY_RUN["process"] = subprocess.Popen(command, cwd=ROOT, env=env)
    atexit.register(_stop_theory_report)  # a build that fails before the theory page leaves no report running


def _stop_theory_report():
    process = THEORY_RUN.get("process")
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()


def finish_theory_page():
    """Wait for the report ``write_pages`` started, write docs/theory.md with it and return the page's text.

    None when no report is pending (``write_pages(theory=False)``, or the page already written).
    """
    if "out" not in THEORY_RUN:
        return None
    out, process = THEORY_RUN.pop("out"), THEORY_RUN.pop("process")
    if process is not None and process.wait() != 0:
        raise subprocess.CalledProcessError(process.returncode, process.args)
    report = (out / "report.md").read_text(encoding="utf-8")
    # the report's images are next to it: make its links relative to theory.md
    report = re.sub(r"(!\[[^\]]*\]\()(?![a-z]+:)([^)\s]+\))", r"\1figures/theory-report/\2", report)
    report = re.sub(r"^(#+)", r"#\1", report, flags=re.MULTILINE)  # its title becomes a section
    command = "hebbref theory --quick" if fast() else "hebbref theory"
    extra = (f"\n\n## The report of `{command}`\n\nWhat follows is the report and the plots that "
             f"`{command} --out DIR` wrote while this site was built, unedited.\n\n"
             + escape_dollars_block(report))
    write_markdown_page("theory/README.md", "theory", title=THEORY_TITLE, extra=extra)
    return (DOCS / "theory.md").read_text(encoding="utf-8")


def escape_dollars_block(text):
    return "\n".join(escape_dollars(line) for line in text.splitlines()) + "\n"


# --- all ----------------------------------------------------------------------------------
def write_pages(theory=True):
    """Write every generated page; ``theory=False`` skips the theory report (for tests).

    The theory report is started here and runs while Sphinx reads the other pages; the
    theory page gets it from ``finish_theory_page``.
    """
    clean()
    TUTORIALS.mkdir(parents=True)
    FIGURES.mkdir(parents=True)
    TUTORIAL_PAGES.clear()
    for script in tutorial_scripts():
        TUTORIAL_PAGES[f"tutorials/{script.name}"] = f"tutorials/{script.stem}"
    subprocess.run([sys.executable, str(DOCS / "pathways.py"), str(FIGURES / "pathways.png")],
                   check=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                       filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))))
    for script in tutorial_scripts():
        write_tutorial(script)
    write_tutorials_index()
    write_markdown_page("RESULTS.md", "results", title="Results: the paper's claims, measured")
    write_markdown_page("BENCHMARKS.md", "benchmarks", title="Benchmarks: speed against PyTorch")
    write_markdown_page("hebbref/datasets/README.md", "data", title="Data: the datasets and their formats")
    write_markdown_page("theory/README.md", "theory", title=THEORY_TITLE)  # the report is added when it is done
    if theory:
        report_dir = FIGURES / "theory-report"
        report_dir.mkdir(parents=True, exist_ok=True)
        start_theory_report(report_dir)
    return json.dumps(sorted(TUTORIAL_PAGES.values()))


if __name__ == "__main__":
    print(write_pages())
    finish_theory_page()
