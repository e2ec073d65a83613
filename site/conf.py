"""Sphinx configuration of the course website (`make site`; tools/build_site.py stages the sources).

The site is built from the committed notebooks without executing them, and works offline from any folder:
MathJax 3 is copied from the `django-static-mathjax` package into `_static/mathjax`, nothing loads from a CDN,
and every link is relative.
"""

import re
import shutil
from pathlib import Path

import mathjax
from docutils import nodes

project = "pixelcnn-course"
author = "the pixelcnn-course authors"
copyright = "the pixelcnn-course authors, MIT licence"

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.viewcode", "sphinx.ext.mathjax"]
exclude_patterns = ["_build", "_downloads_src", "_readme_opening.md", "**/.ipynb_checkpoints"]

# the committed outputs are the lesson: never re-execute
nb_execution_mode = "off"
# ipywidgets would load their JavaScript from a CDN; the lessons already show each widget as static figures
nb_ipywidgets_js = {}
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header"]

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"

# MathJax 3 from PyPI (django-static-mathjax ships the whole distribution), served from _static/mathjax: no
# network needed. The SVG output draws every glyph itself, so no font file is ever fetched.
MATHJAX_SOURCE = Path(mathjax.__file__).parent / "static" / "mathjax"
MATHJAX_BUNDLE = "tex-svg-full.js"
mathjax_path = f"mathjax/es5/{MATHJAX_BUNDLE}"
mathjax3_config = {
    "tex": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]]},
    # MyST marks the page text mathjax_ignore (a stray $ is not math) and the math it parsed with class "math"
    "options": {
        "ignoreHtmlClass": "tex2jax_ignore|mathjax_ignore|document",
        "processHtmlClass": "tex2jax_process|mathjax_process|math|output_area",
    },
}

html_theme = "sphinx_book_theme"
html_title = "pixelcnn-course"
html_copy_source = True
html_show_sourcelink = False
html_last_updated_fmt = None
html_context = {"default_mode": "light"}
html_theme_options = {
    "use_download_button": True,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "show_toc_level": 2,
    "navigation_with_keys": False,
}


# ---- lesson text that cites the library links to its source -------------------------------------------------
CITATION = re.compile(r"^course_lib(?:/(?P<file>[a-z_]+)\.py|\.(?P<dotted>[a-z_]+(?:\.[A-Za-z_]+)*))$")


def link_library_citations(app, doctree, docname):
    """`course_lib/masks.py`, `course_lib.masks` and `course_lib.stepping.AncestralStepper` in a page's text become
    links to the highlighted source of that module (viewcode's `_modules/` pages), at the object where it has one."""
    if app.builder.format != "html":
        return
    modules = getattr(app.env, "_viewcode_modules", {})
    for literal in list(doctree.findall(nodes.literal)):
        if isinstance(literal.parent, nodes.reference):
            continue
        match = CITATION.match(literal.astext().strip())
        if not match:
            continue
        parts = (match["file"] or match["dotted"]).split(".")
        module, obj = f"course_lib.{parts[0]}", ".".join(parts[1:])
        if not isinstance(modules.get(module), tuple):
            continue
        used = modules[module][2]
        anchor = f"#{obj}" if obj in used else ""
        uri = app.builder.get_relative_uri(docname, "_modules/" + module.replace(".", "/")) + anchor
        reference = nodes.reference("", "", internal=True, refuri=uri, reftitle=f"source of {module}")
        literal.replace_self(reference)
        reference += literal


# ---- course_lib's docstrings are plain text, not reStructuredText: show them as written ------------------------
SPAN = re.compile(r"`([^`]+)`")
LIST_ITEM = re.compile(r"^(?:[-*+] |\d+[.)] )")


def escape(text):
    """Plain text as reStructuredText inline text: `code` spans become literals, markup characters are escaped."""
    out = []
    for k, piece in enumerate(SPAN.split(text)):
        if k % 2:
            out.append(f"``{piece.strip()}``" if piece.strip() else piece)
        else:
            out.append(re.sub(r"([\\*|_`\[\]])", r"\\\1", piece))
    return "".join(out)


def plain_docstring(app, what, name, obj, options, lines):
    """Paragraphs stay paragraphs (with `code` as code); a paragraph laid out by indentation (a table, a list of
    options, an aligned formula) is shown preformatted, exactly as in the source."""
    paragraphs, current = [], []
    for line in [*lines, ""]:
        if line.strip():
            current.append(line)
        elif current:
            paragraphs.append(current)
            current = []
    result = []
    for para in paragraphs:
        indent = len(para[0]) - len(para[0].lstrip())
        laid_out = any(len(line) - len(line.lstrip()) != indent for line in para[1:])
        listed = any(LIST_ITEM.match(line.lstrip()) for line in para)
        if laid_out or listed:
            result += ["::", ""] + ["    " + line for line in para] + [""]
        else:
            result += [escape(line.strip()) for line in para] + [""]
    lines[:] = result


def copy_mathjax(app, exception):
    if exception is None and app.builder.format == "html":
        target = Path(app.outdir) / "_static" / "mathjax"
        if not (target / "es5" / MATHJAX_BUNDLE).exists():  # the bundle, its lazily loaded parts, the licence
            other_bundles = [p.name for p in (MATHJAX_SOURCE / "es5").glob("*.js") if p.name != MATHJAX_BUNDLE]
            shutil.copytree(MATHJAX_SOURCE / "es5", target / "es5", ignore=lambda d, names: other_bundles)
            shutil.copy(MATHJAX_SOURCE / "LICENSE", target / "LICENSE")


def setup(app):
    app.connect("autodoc-process-docstring", plain_docstring)
    app.connect("doctree-resolved", link_library_citations)
    app.connect("build-finished", copy_mathjax)
