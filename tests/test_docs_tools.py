"""The two pieces of the documentation build that are our code, without Sphinx.

docs/_ext/hebbref_docstrings.py turns the docstrings' plain-text equations into math;
docs/check_links.py fails the build on a broken link or image in the built HTML.
(The build itself, ``HEBBREF_FAST=1 ./run docs``, runs in CI after the tests.)
"""
import importlib.util
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


docstrings = load(DOCS / "_ext" / "hebbref_docstrings.py")
check_links = load(DOCS / "check_links.py")


@pytest.mark.parametrize("text, tex", [
    ("G = Σ δ xᵀ", r"G = \sum \delta x^{\top}"),
    ("e_below = Bᵀ δ", r"e_{\text{below}} = B^{\top} \delta"),
    ("R -= η_R G", r"R \mathrel{-}= \eta_R G"),
    ("e_L = ∂loss/∂o", r"e_L = \partial \text{loss}/\partial o"),
])
def test_inline_equations_become_math(text, tex):
    assert docstrings.is_equation(text, inline=True)
    assert " ".join(docstrings.to_tex(text).split()) == tex


@pytest.mark.parametrize("code", ['rule="urfb"', "dropout=False", "R - W", "hebbref.layers", "forward(x) -> y"])
def test_code_stays_code(code):
    assert not docstrings.is_equation(code, inline=True)
    assert docstrings.inline(f"see ``{code}``") == f"see ``{code}``"


def test_an_equation_block_becomes_a_math_block_and_pseudo_code_a_literal_block():
    lines = ["The forward pass:", "", "    h = W x          dense_forward", "    x = σ(h)", "",
             "and the loop:", "", "    for each layer: layer.update(η)", "        e = layer.backward(e)", ""]
    out = docstrings.rewrite(lines)
    math = out.index(".. math::")
    assert out[math + 2].strip() == r"h = W x \qquad \text{dense\_forward}"
    assert out[math + 4].strip() == r"x = \sigma (h)"
    literal = out.index("::")
    assert out[literal + 2] == "    for each layer: layer.update(η)"
    assert out[literal + 3] == "        e = layer.backward(e)"


def test_unbalanced_braces_stay_literal():
    assert docstrings.to_tex("x_{l = W") is None
    assert docstrings.inline("``x_{l = W``") == "``x_{l = W``"


def test_a_pipe_table_becomes_a_list_table_and_stray_bars_are_escaped():
    out = docstrings.rewrite(["| rule | B |", "|------|---|", "| bp   | W |", "", "where |s·h| ≤ 1"])
    assert out[0] == ".. list-table::" and "   * - rule" in out and "     - W" in out
    assert out[-1] == "where \\|s·h\\| ≤ 1"


def test_argument_lists_become_field_lists():
    out = docstrings.field_lists(["net:    a preset", "        or a description", "rule:   bp or urfb"])
    assert out == [":net: a preset", "   or a description", ":rule: bp or urfb"]


def make_site(root, index):
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text(index)
    (root / "sub" / "page.html").write_text('<h1 id="top">x</h1><img src="../pic.png">')
    (root / "pic.png").write_bytes(b"\x89PNG")


def test_check_links_passes_a_good_site(tmp_path):
    make_site(tmp_path, '<a href="sub/page.html#top">p</a><a href="https://example.org/x">e</a>'
                        '<a href="#here">h</a><p id="here"></p>')
    assert check_links.problems(tmp_path) == ([], 2)


@pytest.mark.parametrize("link, why", [
    ('<a href="sub/missing.html">m</a>', "no such file"),
    ('<a href="sub/page.html#nowhere">m</a>', "no element with id 'nowhere'"),
    ('<img src="gone.png">', "no such file"),
    ('<a href="../../outside.html">o</a>', "outside the site"),
])
def test_check_links_finds_each_kind_of_broken_link(tmp_path, link, why):
    make_site(tmp_path, link)
    found, _ = check_links.problems(tmp_path)
    assert len(found) == 1 and why in found[0], found
    assert check_links.main([str(tmp_path)]) == 1


generate = load(DOCS / "generate.py")


def test_repository_links_become_site_links(tmp_path, monkeypatch):
    monkeypatch.setattr(generate, "DOCS", tmp_path)
    monkeypatch.setattr(generate, "FIGURES", tmp_path / "figures")
    monkeypatch.setitem(generate.TUTORIAL_PAGES, "tutorials/01_x.py", "tutorials/01_x")
    text = ("See [the theory](theory/README.md#3-identities), ![acc](results/1-simple/accuracy.png), "
            "[`scripts/results.sh`](scripts/results.sh), [gone](no/such/file.md), "
            "[web](https://example.org), `01_x.py` and $HEBBREF_DATA.\n"
            "```\n[kept](theory/README.md) $x\n```")
    out = generate.rewrite_markdown(text, "RESULTS.md", "results")
    assert "[the theory](theory.md#3-identities)" in out
    assert "![acc](figures/results__1-simple__accuracy.png)" in out
    assert (tmp_path / "figures" / "results__1-simple__accuracy.png").is_file()
    assert "`scripts/results.sh`" in out and "](scripts/results.sh)" not in out
    assert "[gone](no/such/file.md)" in out  # left broken, for the build to fail on
    assert "[web](https://example.org)" in out
    assert "[`01_x.py`](tutorials/01_x.ipynb)" in out
    assert r"\$HEBBREF_DATA" in out
    assert "[kept](theory/README.md) $x" in out  # code blocks are left alone


def test_the_tutorials_are_found_by_their_names():
    names = [path.name for path in generate.tutorial_scripts()]
    assert names and all(name[:2].isdigit() and name[2] == "_" for name in names)
    assert names == sorted(names)


@pytest.mark.parametrize("line, expected", [
    ("W ← W - η G, in place.  # SPEC §3", r":math:`W \leftarrow  W - \eta  G`, in place. (SPEC §3)"),
    ("x = σ(h) = clip(s·h, -1, 1); backward", r":math:`x = \sigma (h) = \operatorname{clip}(s\cdot h, -1, 1)`; backward"),
    ("e_below = Bᵀ δ as a transposed convolution: shapes", "e_below = Bᵀ δ as a transposed convolution: shapes"),
    ("B, the matrix whose transpose sends the error down.", "B, the matrix whose transpose sends the error down."),
])
def test_a_summary_line_opening_with_an_equation(line, expected):
    assert docstrings.rewrite([line])[0] == expected


def test_the_theory_page_waits_for_its_report_and_fails_with_it(tmp_path, monkeypatch):
    """The report runs in the background (write_pages); the page is written when it is done, or the build fails."""
    import subprocess
    import sys

    monkeypatch.setattr(generate, "DOCS", tmp_path)
    monkeypatch.setattr(generate, "FIGURES", tmp_path / "figures")
    out = tmp_path / "figures" / "theory-report"
    out.mkdir(parents=True)
    write_report = f"import time, pathlib; time.sleep(1); pathlib.Path({str(out)!r}, 'report.md').write_text('# R\\n![v](v.png)')"
    monkeypatch.setattr(generate, "THEORY_RUN", {"out": out, "process": subprocess.Popen([sys.executable, "-c", write_report])})
    page = generate.finish_theory_page()
    assert "## R" in page and "![v](figures/theory-report/v.png)" in page  # waited; links from theory.md
    assert (tmp_path / "theory.md").read_text(encoding="utf-8") == page
    assert generate.finish_theory_page() is None  # nothing pending any more
    generate.THEORY_RUN.update(out=out, process=subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]))
    with pytest.raises(subprocess.CalledProcessError):
        generate.finish_theory_page()
