"""Build the course website (`make site`): lessons, exercises, library reference and search, from what is committed.

Nothing is executed: the lessons appear with the outputs their notebooks store. The sources are staged into a
folder of their own (copies, so the tree is never touched): the README's opening becomes the landing page,
notebooks/NN_*.ipynb the lessons in order, exercises/*.ipynb the exercises (each with a download link to the
untouched notebook), and course_lib's modules the reference, in the package's reading order. Then Sphinx
(MyST-NB, sphinx-book-theme; configured in site/conf.py) writes a static site that works offline from any folder.

    python -m tools.build_site                  # -> site/_build/html
    python -m tools.build_site --out DIR        # elsewhere (the tests build into a temporary folder)
"""

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "site"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def lessons():
    """The lesson notebooks in course order: notebooks/NN_*.ipynb."""
    return sorted(p for p in (ROOT / "notebooks").glob("*.ipynb") if re.match(r"\d\d_", p.name))


def exercises():
    return sorted((ROOT / "exercises").glob("*.ipynb"))


def readme_opening():
    """The README up to its first section after the quickstart: what the course is, who it is for, two commands."""
    text = (ROOT / "README.md").read_text()
    sections = re.split(r"(?m)^(?=## )", text)
    keep = [sections[0]] + [s for s in sections[1:2] if s.startswith("## Quickstart")]
    return "".join(keep).rstrip() + "\n"


def reading_order():
    """course_lib's modules in the order its docstring gives, then any it does not list."""
    modules = sorted(p.stem for p in (ROOT / "course_lib").glob("*.py") if not p.stem.startswith("__"))
    doc = re.search(r'^"""(.*?)"""', (ROOT / "course_lib" / "__init__.py").read_text(), re.S)
    listed = re.findall(r"(?m)^    ([a-z_]+)\s", doc.group(1).split("Reading order")[-1]) if doc else []
    order = [m for m in listed if m in modules]
    return order + [m for m in modules if m not in order]


def static_notebook(source, target):
    """A copy of a notebook for a static page: widget views dropped (they need a live kernel; the lessons show
    each widget as static figures), with the widget state that would pull in the widgets' JavaScript."""
    nb = json.loads(source.read_text())
    nb.get("metadata", {}).pop("widgets", None)
    nb["nbformat_minor"] = max(nb.get("nbformat_minor", 0), 5)
    for k, cell in enumerate(nb["cells"]):
        cell.setdefault("id", f"cell-{k}")
        if cell["cell_type"] == "code":
            cell["outputs"] = [o for o in cell.get("outputs", []) if WIDGET_VIEW not in o.get("data", {})]
    target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return nb


def with_download_link(nb, name):
    """Put a download link to the original notebook (staged under _downloads_src/) right below the title."""
    link = {
        "cell_type": "markdown",
        "metadata": {},
        "id": "download-link",
        "source": [
            f"{{download}}`Download this notebook ({name}) <../_downloads_src/{name}>` and open it in JupyterLab."
        ],
    }
    first = next((k for k, c in enumerate(nb["cells"]) if c["cell_type"] == "markdown"), -1)
    if first >= 0:  # split the title off the first markdown cell, the link goes right after it
        lines = "".join(nb["cells"][first]["source"]).split("\n")
        if lines and lines[0].startswith("# "):
            rest = "\n".join(lines[1:]).strip("\n")
            nb["cells"][first]["source"] = lines[0]
            cells = [link] + (
                [{"cell_type": "markdown", "id": "intro-after-title", "metadata": {}, "source": rest}] if rest else []
            )
            nb["cells"][first + 1 : first + 1] = cells
            return nb
    nb["cells"].insert(first + 1, link)
    return nb


def stage(src):
    """Write the Sphinx sources into `src` (emptied first)."""
    if src.exists():
        shutil.rmtree(src)
    (src / "lessons").mkdir(parents=True)
    (src / "exercises").mkdir()
    (src / "_downloads_src").mkdir()
    shutil.copy(SITE / "index.md", src / "index.md")
    (src / "_readme_opening.md").write_text(readme_opening())
    for path in lessons():
        static_notebook(path, src / "lessons" / path.name)
    for path in exercises():
        shutil.copy(path, src / "_downloads_src" / path.name)
        nb = with_download_link(static_notebook(path, src / "exercises" / path.name), path.name)
        (src / "exercises" / path.name).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    title = "Library reference: ``course_lib``"
    modules = "".join(f".. automodule:: course_lib.{m}\n\n" for m in reading_order())
    (src / "reference.rst").write_text(
        f"{title}\n{'=' * len(title)}\n\n"
        "Every module of the library, in the order the package suggests reading it (each imports only modules "
        "above it), generated from its docstrings; ``[source]`` opens the code.\n\n"
        f".. automodule:: course_lib\n   :no-members:\n\n{modules}"
    )


def build(out, work=None, quiet=False):
    """Stage the sources and run Sphinx; returns the output folder. `work` holds the staged sources and
    Sphinx's cache (default: next to `out`)."""
    from sphinx.cmd.build import build_main

    out = Path(out).resolve()
    work = Path(work).resolve() if work else out.parent / (out.name + "-work")
    stage(work / "src")
    args = ["-b", "html", "-c", str(SITE), "-d", str(work / "doctrees"), "-E", "-j", "1"]
    args += ["-q"] if quiet else []
    status = build_main([*args, str(work / "src"), str(out)])
    if status:
        raise SystemExit(f"sphinx-build failed (exit status {status})")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out", default=str(SITE / "_build" / "html"), help="output folder (default: site/_build/html)"
    )
    parser.add_argument("--quiet", action="store_true", help="only warnings and errors")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = build(args.out, quiet=args.quiet)
    print(f"site built in {time.perf_counter() - start:.0f} s: {out / 'index.html'}")
    print(f"serve it: python -m http.server --directory {out} 8000  (then open http://localhost:8000/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
