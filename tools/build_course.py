"""Execute lesson notebooks in full mode and save them with their outputs (`make course`).

    python -m tools.build_course [notebooks/01_*.py ...] [--html]

Each notebook's .py source is the truth: it is turned into the paired .ipynb, executed top to bottom in
a fresh kernel from the notebook's folder, and saved with outputs. The wall time of each is printed.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def build(source: Path, html: bool, timeout: int) -> float:
    notebook = jupytext.read(source)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    start = time.perf_counter()
    NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(source.parent)}}
    ).execute()
    seconds = time.perf_counter() - start
    target = source.with_suffix(".ipynb")
    jupytext.write(notebook, target, fmt="ipynb")
    if html:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter().from_notebook_node(nbformat.read(target, as_version=4))
        target.with_suffix(".html").write_text(body)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="*", type=Path)
    parser.add_argument("--html", action="store_true", help="also write an HTML page next to each notebook")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell")
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")  # clean committed outputs
    os.environ["COURSE_BUILD"] = "1"  # the lessons' hidden cells check the text against this run's numbers
    sources = args.sources or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    for source in sources:
        seconds = build(source.resolve(), args.html, args.timeout)
        mode = "fast" if os.environ.get("COURSE_FAST") else "full"
        print(f"{source.name}: {seconds:.0f} s ({mode} mode)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
