"""Sphinx configuration of hebbref's site: ``./run docs`` (HTML into site/).

The pages that come from elsewhere in the repository (tutorials, theory, results,
benchmarks) are written by docs/generate.py before Sphinx reads anything; the API
reference is generated from the docstrings by autosummary (docs/api.md). Why Sphinx
with MyST-NB: docs/about.md.
"""
import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS))

import generate  # noqa: E402

import hebbref  # noqa: E402

# The notebooks' kernels inherit this environment: figures are saved in the scratch folder
# each notebook runs in (the page shows them inline), and the small arrays of the tutorials get one BLAS and one
# Numba thread each, as in tests/test_tutorials.py.
os.environ["HEBBREF_FIGURES"] = "figures"  # inside the scratch folder each notebook runs in
for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(name, "1")
os.environ.pop("MPLBACKEND", None)  # the kernel's inline backend shows the figures in place

generate.write_pages(theory=os.environ.get("HEBBREF_DOCS_THEORY", "1") != "0")  # starts the theory report


def read_theory_last(app, env, docnames):
    """Sphinx reads the theory page last: its report runs meanwhile, beside the tutorials' notebooks."""
    if "theory" in docnames:
        docnames.remove("theory")
        docnames.append("theory")


def theory_page_with_its_report(app, docname, source):
    if docname == "theory":
        page = generate.finish_theory_page()  # waits for the report, then writes the page
        if page is not None:
            source[0] = page


def setup(app):
    app.connect("env-before-read-docs", read_theory_last)
    app.connect("source-read", theory_page_with_its_report)

project = "hebbref"
author = "the hebbref developers"
copyright = "2026, the hebbref developers"
release = version = hebbref.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "hebbref_docstrings",
]
exclude_patterns = ["README.md", "figures", "_build", "_templates", "jupyter_execute", ".jupyter_cache"]
templates_path = ["_templates"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# MyST: $...$ math in the tutorials' markdown cells; heading anchors for links like
# results.md#section, as GitHub makes them
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 4

# MyST-NB: every tutorial is executed on every build, and a cell that raises fails the build
nb_execution_mode = "force" if os.environ.get("HEBBREF_DOCS_EXECUTE", "1") != "0" else "off"
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_timeout = int(os.environ.get("HEBBREF_DOCS_CELL_TIMEOUT", "600"))
nb_execution_in_temp = True  # a tutorial's stray files land in a scratch folder
nb_merge_streams = True

# autodoc / autosummary: one page per module, every public name documented (docs/api.md)
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {}
autodoc_member_order = "bysource"
autodoc_typehints = "none"
add_module_names = False

html_theme = "furo"
html_title = f"hebbref {release}"
html_static_path = []
html_show_sourcelink = False
html_copy_source = False

# nitpicky (-n) cross-references that cannot resolve by design
# (no intersphinx: the build runs offline, so names outside hebbref cannot be linked)
nitpick_ignore_regex = [(r"py:(class|exc)", r"(?!hebbref\.|theory\.).*")]
suppress_warnings = ["mystnb.unknown_mime_type"]
