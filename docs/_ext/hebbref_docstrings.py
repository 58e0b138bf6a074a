"""hebbref's docstrings, read as reStructuredText with their equations as math.

hebbref's docstrings are written for a reader of the source: equations in plain text
with Unicode symbols (``G = Σ δ xᵀ``), indented equation blocks, and tables in the
pipe syntax of markdown. This Sphinx extension (an ``autodoc-process-docstring``
handler) rewrites them, for the API pages only, into reStructuredText:

- an indented block whose every line is an equation (``h = W x``, each line possibly
  followed by a label such as ``conv_forward``) becomes a ``.. math::`` block;
  any other indented block (pseudo-code, a call with ``->``) a literal block;
- an inline literal that is an equation (``\\`\\`o = h_L\\`\\```, ``\\`\\`Bᵀ δ\\`\\```) becomes
  ``:math:``; one that is code (``\\`\\`rule="urfb"\\`\\```) stays code;
- a pipe table becomes a ``list-table``; a ``|`` elsewhere in text is escaped.

The Unicode is translated to TeX (η -> ``\\eta``, Σ -> ``\\sum``, ᵀ -> ``^{\\top}``; words
of two or more letters become ``\\text{...}``). When a piece cannot be translated
safely (unbalanced braces), it stays a literal: nothing is lost, it is just not typeset.
"""
import re

UNICODE_TEX = [
    ("⁻¹", "^{-1}"), ("ᵀ", "^{\\top}"), ("²", "^{2}"), ("½", "\\tfrac{1}{2}"), ("−", "-"),
    ("′", "'"), ("‖", "\\|"), ("…", "\\dots "), ("⋯", "\\cdots "), ("·", "\\cdot "),
    ("×", "\\times "), ("Σ", "\\sum "), ("∂", "\\partial "), ("ℓ", "\\ell "), ("∇", "\\nabla "),
    ("⊙", "\\odot "), ("⊛", "\\circledast "), ("≠", "\\neq "), ("≤", "\\le "), ("≥", "\\ge "),
    ("≈", "\\approx "), ("∈", "\\in "), ("←", "\\leftarrow "), ("→", "\\to "), ("√", "\\sqrt "),
    ("∞", "\\infty "), ("⌊", "\\lfloor "), ("⌋", "\\rfloor "), ("⌈", "\\lceil "), ("⌉", "\\rceil "),
    ("α", "\\alpha "), ("β", "\\beta "), ("γ", "\\gamma "), ("δ", "\\delta "), ("Δ", "\\Delta "),
    ("ε", "\\varepsilon "), ("η", "\\eta "), ("θ", "\\theta "), ("λ", "\\lambda "), ("μ", "\\mu "),
    ("π", "\\pi "), ("ρ", "\\rho "), ("σ", "\\sigma "), ("τ", "\\tau "), ("φ", "\\varphi "),
    ("ω", "\\omega "), ("Ω", "\\Omega "), ("Φ", "\\Phi "), ("ψ", "\\psi "), ("κ", "\\kappa "),
]
MATH_CHARACTERS = set("=←≤≥≠∈≈") | {u for u, _ in UNICODE_TEX if u not in ("−", "…", "·", "×", "²")}
FUNCTIONS = {"max": "\\max", "min": "\\min", "exp": "\\exp", "log": "\\log", "sin": "\\sin",
             "cos": "\\cos", "tr": "\\operatorname{tr}", "clip": "\\operatorname{clip}",
             "softmax": "\\operatorname{softmax}", "onehot": "\\operatorname{onehot}",
             "sign": "\\operatorname{sign}", "diag": "\\operatorname{diag}",
             "corr": "\\operatorname{corr}", "mean": "\\operatorname{mean}"}
INLINE_LITERAL = re.compile(r"``([^`]+)``")
CODE_SIGNS = re.compile(r"->|[\"'#@:]|\.\.\.|\w\.\w|\w\(\)|\b(?:True|False|None|and|or|not|in|for|if|else)\b")
LONG_WORD = re.compile(r"[A-Za-z]{3,}")
LABEL = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*|\([A-Za-z ,\-]+\))$")


def is_equation(text, inline):
    """Is ``text`` (one inline literal, or one segment of an indented line) an equation?"""
    if CODE_SIGNS.search(text) and not (not inline and "#" not in text and '"' not in text
                                        and "->" not in text and ":" not in text and "..." not in text
                                        and not re.search(r"\w\.\w", text)):
        return False
    has_math = any(c in MATH_CHARACTERS for c in text)
    if inline:
        words = [w for w in LONG_WORD.findall(text) if w not in FUNCTIONS]
        # code like ``dropout=False`` has words and '='; an equation has symbols
        return has_math and (not words or any(c in text for c in MATH_CHARACTERS - {"="}))
    return has_math


def to_tex(text):
    """Plain-text equation -> TeX, or None when it cannot be translated safely."""
    if text.count("{") != text.count("}") or "\\" in text or "$" in text:
        return None

    def word(match):
        before, name, after = match[1], match[2], match[3]
        if before == "_":
            return "_{\\text{" + name + "}}"
        if name in FUNCTIONS:
            return before + FUNCTIONS[name]
        space_before = "\\ " if before.isspace() else before
        space_after = "\\ " if after.isspace() else ""
        return f"{space_before}\\text{{{name}}}{space_after}"

    tex = re.sub(r"(^|[^A-Za-z0-9\\])([A-Za-z]{2,})(?=([^A-Za-z0-9]|$))", word, text)
    tex = re.sub(r"(\w)\s+_", r"\1_", tex)
    for unicode, command in UNICODE_TEX:
        tex = tex.replace(unicode, command)
    tex = tex.replace("-=", "\\mathrel{-}=").replace("%", "\\%").replace("&", "\\&").replace("#", "\\#")
    tex = re.sub(r"\\(\w+) ([_^])", r"\\\1\2", tex)  # "\delta _l" -> "\delta_l"
    return tex.strip()


def equation_line(line):
    """One line of an indented block as TeX (equations, and labels set as text), or None."""
    segments = [s for s in re.split(r"\s{2,}", line.strip()) if s]
    if not segments:
        return ""
    parts = []
    for i, segment in enumerate(segments):
        if i > 0 and LABEL.match(segment) and not is_equation(segment, inline=False):
            parts.append("\\text{" + segment.replace("_", "\\_") + "}")
            continue
        trailing = segment.endswith(";") or segment.endswith(",")
        core = segment.rstrip(";,") if trailing else segment
        if not is_equation(core, inline=False):
            return None
        tex = to_tex(core)
        if tex is None:
            return None
        parts.append(tex + (segment[-1] if trailing else ""))
    return " \\qquad ".join(parts)


def inline(text):
    """Text of one line: equations in inline literals become :math:, stray ``|`` is escaped."""
    out, last = [], 0
    for match in INLINE_LITERAL.finditer(text):
        out.append(text[last:match.start()].replace("|", "\\|"))
        content = match[1]
        tex = to_tex(content) if is_equation(content, inline=True) else None
        out.append(f":math:`{tex}`" if tex else match[0])
        last = match.end()
    out.append(text[last:].replace("|", "\\|"))
    return "".join(out)


SPEC_TAG = re.compile(r"\s+#\s*(SPEC\s*§[^#]*?)\s*$")
PROSE = re.compile(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}")


def leading_equation(line):
    """(equation, rest) when ``line`` opens with an equation ended by , ; : or . outside brackets."""
    depth = 0
    for i, c in enumerate(line):
        depth += c in "([{"
        depth -= c in ")]}"
        if depth == 0 and c in ",;:" or (c == "." and line[i + 1:i + 2] in ("", " ")):
            if depth == 0:
                return line[:i], line[i:]
    return None


def summary_line(line):
    """The first line: a leading equation (``W ← W - η G, in place.``) becomes math."""
    split = leading_equation(line)
    if split and is_equation(split[0], inline=True) and not PROSE.search(split[0]) and "`" not in split[0]:
        tex = to_tex(split[0])
        if tex:
            return f":math:`{tex}`" + inline(split[1])
    return inline(line)


def is_table_row(line):
    stripped = line.strip()
    return len(stripped) > 1 and stripped.startswith("|") and stripped.endswith("|")


def table(rows, indent):
    """Markdown pipe-table rows -> a reST list-table."""
    cells = [[c.strip() for c in row.strip()[1:-1].split("|")] for row in rows]
    cells = [r for r in cells if not all(re.fullmatch(r":?-+:?", c) for c in r)]
    out = [indent + ".. list-table::", indent + "   :header-rows: 1", ""]
    for row in cells:
        for j, cell in enumerate(row):
            out.append(indent + ("   * - " if j == 0 else "     - ") + (inline(cell) or "\\ "))
    return out + [""]


def indented_block(lines, indent):
    """An indented block -> a math block if every line is an equation, else a literal block."""
    body = [line for line in lines if line.strip()]
    tex = [equation_line(line) for line in body]
    if body and all(t for t in tex):
        out = [indent + ".. math::", ""]
        for t in tex:
            out += [indent + "   " + t, ""]
        return out
    return [indent + "::", ""] + lines + [""]


FIELD = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*)(?::\s+|\s{2,})(\S.*)$")
LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+\.)\s")


def field_lists(lines):
    """Paragraphs of ``name:   text`` lines (an argument list) -> a reST field list."""
    out, i = [], 0
    while i < len(lines):
        j = i
        while j < len(lines) and lines[j].strip():
            j += 1
        paragraph = lines[i:j]
        if paragraph:
            indent = len(re.match(r"\s*", paragraph[0])[0])
            fields = [FIELD.match(l) for l in paragraph]
            at_indent = [l for l in paragraph if len(re.match(r"\s*", l)[0]) == indent]
            if indent == 0 and len(at_indent) >= 2 and all(FIELD.match(l) for l in at_indent):
                for line, field in zip(paragraph, fields):
                    if field and len(field[1]) == indent:
                        out.append(f"{field[1]}:{field[2]}: {field[3]}")
                    else:
                        out.append(" " * (indent + 3) + line.strip())
                i = j
                continue
        out += paragraph
        if j < len(lines):
            out.append(lines[j])
        i = j + 1
    return out


def rewrite(lines):
    """Docstring lines (dedented) -> reStructuredText lines."""
    out, i = [], 0
    in_list = None  # the indentation of the list being read, if any
    while i < len(lines):
        line = lines[i]
        indent = re.match(r"\s*", line)[0]
        if line.strip() and not line.rstrip().endswith("::"):
            # lists need a blank line before and after them
            if LIST_ITEM.match(line) and in_list is None and out and out[-1].strip():
                out.append("")
            if in_list is not None and not LIST_ITEM.match(line) and len(indent) <= in_list and out and out[-1].strip():
                out.append("")
                in_list = None
            if LIST_ITEM.match(line):
                in_list = len(indent)
        else:
            in_list = None if not line.strip() else in_list
        if is_table_row(line):
            j = i
            while j < len(lines) and is_table_row(lines[j]):
                j += 1
            if out and out[-1].strip():
                out.append("")
            out += table(lines[i:j], indent)
            i = j
            continue
        base = len(indent)
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and not line.rstrip().endswith("::") and not line.lstrip().startswith(".. "):
            line = SPEC_TAG.sub(r" (\1)", line)  # "...  # SPEC §3" -> "... (SPEC §3)"
            out.append(summary_line(line) if i == 0 else inline(line))
            i += 1
            continue
        if not line.strip() and nxt.strip() and out:
            # a blank line, then possibly an indented block deeper than the text before it
            previous = next((l for l in reversed(out) if l.strip()), "")
            prev_indent = len(re.match(r"\s*", previous)[0])
            next_indent = len(re.match(r"\s*", nxt)[0])
            if next_indent >= prev_indent + 4 and not previous.rstrip().endswith("::"):
                j = i + 1
                while j < len(lines) and (not lines[j].strip() or
                                          len(re.match(r"\s*", lines[j])[0]) >= next_indent):
                    j += 1
                while j > i + 1 and not lines[j - 1].strip():
                    j -= 1
                out.append("")
                out += indented_block(lines[i + 1:j], " " * prev_indent)
                i = j
                continue
        if line.rstrip().endswith("::"):
            # an explicit literal block: copy it as it is
            out.append(line)
            j = i + 1
            while j < len(lines) and (not lines[j].strip() or len(re.match(r"\s*", lines[j])[0]) > base):
                out.append(lines[j])
                j += 1
            i = j
            continue
        out.append(line)
        i += 1
    return out


def dedent(obj, lines):
    """The docstring's lines dedented by the indentation of its closing quotes.

    autodoc removes the smallest indentation of the lines after the first, which loses
    the indentation of an equation block when the rest is the first line only.
    """
    raw = getattr(obj, "__doc__", None)
    if not isinstance(raw, str):
        return lines
    parts = raw.expandtabs().split("\n")
    if len(parts) < 2 or parts[-1].strip():
        return lines
    given = [l.rstrip() for l in lines]
    while given and not given[-1]:
        given.pop()
    import inspect
    if inspect.cleandoc(raw).splitlines() != given:
        return lines  # not this object's own docstring alone (inherited, combined): keep autodoc's
    base = len(parts[-1])
    body = [l[base:] if base == 0 or l[:base].isspace() else l.strip() for l in parts[1:]]
    return [parts[0].strip()] + [l.rstrip() for l in body] + [""]


def process_docstring(app, what, name, obj, options, lines):
    lines[:] = rewrite(field_lists(dedent(obj, list(lines))))


def setup(app):
    app.connect("autodoc-process-docstring", process_docstring)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
