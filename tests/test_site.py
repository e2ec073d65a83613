"""The course website (`make site`, tools/build_site.py): built once per session from the committed notebooks into a
temporary folder, then checked as files and in a real browser (headless Chromium driven by Playwright), served from
a subfolder of a local web server as a classroom intranet would. Without Chromium the browser tests skip, saying
how to enable them; under CI (env CI set) they fail instead."""

import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

import pytest
from browser_support import chromium

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted(p for p in (ROOT / "notebooks").glob("*.ipynb") if re.match(r"\d\d_", p.name))
EXERCISES = sorted((ROOT / "exercises").glob("*.ipynb"))
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "build" / "test-artifacts"))
SUBFOLDER = "intranet/courses/pixelcnn"  # where the test server puts the site


def markdown(notebook):
    return "\n".join(
        "".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "markdown"
    )


class Page(HTMLParser):
    """Tags, ids and links of one HTML file."""

    def __init__(self, text):
        super().__init__()
        self.ids, self.links, self.resources = set(), [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if attrs.get(key):
                self.ids.add(attrs[key])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        for key in ("src", "href"):
            if tag in ("script", "img", "link", "iframe", "source") and attrs.get(key):
                self.resources.append(attrs[key])


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site, built like `make site` does but into a temporary folder."""
    out = tmp_path_factory.mktemp("site") / "html"
    run = subprocess.run(
        [sys.executable, "-m", "tools.build_site", "--quiet", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, f"the site did not build:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def pages(site):
    return {
        p.relative_to(site).as_posix(): Page(p.read_text()) for p in site.rglob("*.html") if "_static" not in p.parts
    }


def test_every_lesson_and_exercise_has_a_page_listed_in_course_order(site):
    """Each notebooks/NN_*.ipynb is a lesson page and each exercises/*.ipynb an exercise page, and the landing page
    lists the lessons in course order, then the exercises, then the library reference."""
    expected = [f"lessons/{p.stem}.html" for p in LESSONS] + [f"exercises/{p.stem}.html" for p in EXERCISES]
    missing = [page for page in expected if not (site / page).is_file()]
    assert not missing, f"no page for {missing}"
    listed = [link for link in Page((site / "index.html").read_text()).links if not link.startswith(("#", "http"))]
    in_order = [link for link in dict.fromkeys(listed) if link in expected + ["reference.html"]]
    assert in_order == expected + ["reference.html"], f"the landing page lists {in_order}"


def test_the_landing_page_says_what_the_readme_opening_says(site):
    """The landing page is the README's opening: who the course is for and the two commands that start it."""
    text = re.sub(r"<[^>]+>", "", (site / "index.html").read_text())  # code is highlighted: compare the text
    for phrase in ("Who it is for", "make lab", "make test"):
        assert phrase in text, f"the landing page lacks {phrase!r}"


def test_lesson_pages_show_the_committed_text_code_outputs_and_figures(site):
    """A lesson page carries every figure its notebook stores (no re-execution) and its text and code."""
    for notebook in LESSONS:
        nb = json.loads(notebook.read_text())
        html = (site / "lessons" / f"{notebook.stem}.html").read_text()
        figures = sum("image/png" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))
        assert html.count("<img") >= figures, f"{notebook.name}: {figures} figures stored, fewer shown"
        first_code = next((c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()), None)
        if first_code:  # the code is shown (highlighting splits it into spans; compare an identifier)
            name = re.search(r"[A-Za-z_]\w{3,}", "".join(first_code["source"]))
            assert name is None or name.group(0) in html, f"{notebook.name}: its code is missing"


def test_exercise_pages_link_to_the_untouched_student_notebook(site, pages):
    """Every exercise page has a download link, and what it downloads is exercises/NAME.ipynb byte for byte."""
    for notebook in EXERCISES:
        page = f"exercises/{notebook.stem}.html"
        downloads = [link for link in pages[page].links if link.endswith("/" + notebook.name) and "_downloads" in link]
        assert downloads, f"{page} has no download link for {notebook.name}"
        assert (site / "exercises" / downloads[0]).resolve().read_bytes() == notebook.read_bytes()


def test_the_reference_documents_every_library_module(site, pages):
    """reference.html has a section for every course_lib module, written from its docstrings without reStructuredText
    errors (they are plain text), and the modules' highlighted source pages exist."""
    reference = (site / "reference.html").read_text()
    for path in sorted((ROOT / "course_lib").glob("*.py")):
        if path.stem.startswith("__"):
            continue
        assert f"module-course_lib.{path.stem}" in pages["reference.html"].ids, (
            f"course_lib.{path.stem} is not documented"
        )
    sources = {p.stem for p in (site / "_modules" / "course_lib").glob("*.html")}
    assert {"masks", "models", "sampling"} <= sources, f"source pages: {sorted(sources)}"
    assert "Unexpected indentation" not in reference and "System Message" not in reference


def test_lesson_pages_link_to_the_library_source_they_cite(site, pages):
    """A module a lesson's text cites (`course_lib/masks.py`, `course_lib.masks`, `course_lib.masks.Name`) is a link
    to that module's highlighted source."""
    checked = 0
    for notebook in LESSONS:
        cited = set(re.findall(r"`course_lib(?:/([a-z_]+)\.py|\.([a-z_]+)[\w.]*)`", markdown(notebook)))
        modules = {a or b for a, b in cited} & {p.stem for p in (ROOT / "course_lib").glob("*.py")}
        links = pages[f"lessons/{notebook.stem}.html"].links
        for module in sorted(modules):
            target = f"../_modules/course_lib/{module}.html"
            assert any(link.split("#")[0] == target for link in links), f"{notebook.stem} cites {module} without a link"
            checked += 1
    assert checked, "no lesson cites the library: the check would prove nothing"


def test_the_site_fetches_nothing_from_the_network(site, pages):
    """Offline and from any folder: every script, stylesheet, image and font is a relative path inside the site
    (MathJax included); nothing comes from a CDN and no link is absolute to the server root."""
    for name, page in pages.items():
        remote = [r for r in page.resources if re.match(r"^(https?:)?//", r)]
        assert not remote, f"{name} loads {remote}"
        rooted = [link for link in page.links + page.resources if link.startswith("/") and not link.startswith("//")]
        assert not rooted, f"{name} has root-absolute links {rooted}"
    for css in site.rglob("*.css"):
        assert not re.search(r"url\(\s*['\"]?(https?:)?//|@import\s+['\"]?(https?:)?//", css.read_text()), css
    assert (site / "_static" / "mathjax" / "es5" / "tex-svg-full.js").is_file()


def test_widgets_appear_as_the_static_figures_the_lessons_provide(site):
    """No page needs a kernel or the widgets' JavaScript: a widget's output (its text stand-in included) is left
    out, and lesson 04's widget section keeps its static figures."""
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert "application/vnd.jupyter.widget" not in text and "VBox(children" not in text, page
    lesson = next(p for p in LESSONS if p.name.startswith("04_"))
    assert "stepping widget" in (site / "lessons" / f"{lesson.stem}.html").read_text()


# ---- in a real browser ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(site, tmp_path_factory):
    """The site served over HTTP from a subfolder; yields its base URL."""
    root = tmp_path_factory.mktemp("www")
    (root / SUBFOLDER).parent.mkdir(parents=True)
    (root / SUBFOLDER).symlink_to(site, target_is_directory=True)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/{SUBFOLDER}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    executable = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


class Watched:
    """A browser page that records console errors, uncaught exceptions, failed requests and any request that
    would leave the local server (those are refused)."""

    def __init__(self, browser, base):
        self.page = browser.new_page(viewport={"width": 1280, "height": 720})
        self.problems = []
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console error: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"exception: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed request: {r.url} ({r.failure})"))
        self.page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))
        origin = base[: base.index("/", len("http://"))]

        def local_only(route):
            if route.request.url.startswith(origin + "/"):
                route.continue_()
            else:
                self.problems.append(f"external request: {route.request.url}")
                route.abort()

        self.page.route("**/*", local_only)

    def open(self, url):
        self.page.goto(url, wait_until="load")  # every image, script and stylesheet of the page has arrived


def typeset(page):
    """Wait for MathJax to finish; returns (math elements, typeset ones, errors)."""
    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30_000)
    page.evaluate("() => MathJax.startup.promise")
    return page.evaluate(
        """() => [document.querySelectorAll('.math').length,
                  document.querySelectorAll('.math mjx-container').length,
                  document.querySelectorAll('mjx-merror, [data-mjx-error]').length]"""
    )


def test_every_page_works_in_a_browser(browser, site, pages, served):
    """Every page opens with no console error, no failed or external request, every image decoded
    (naturalWidth > 0), every internal link and #anchor pointing at something that exists (checked on the live
    page, so links the theme's scripts add count too), and its math typeset by the local MathJax. Every lesson whose
    text has $...$ math shows typeset math."""
    watched = Watched(browser, served)
    page, ids, links, with_math = watched.page, {}, {}, set()
    for name in sorted(pages):
        watched.open(served + name)
        broken = page.evaluate(
            "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
        )
        watched.problems += [f"{name}: image not loaded: {src}" for src in broken]
        found, done, errors = typeset(page) if page.evaluate("document.querySelectorAll('.math').length") else (0, 0, 0)
        if found:
            with_math.add(name)
            if done < found or errors:
                watched.problems.append(f"{name}: {done} of {found} formulas typeset, {errors} errors")
        ids[name] = set(
            page.evaluate("Array.from(document.querySelectorAll('[id], a[name]')).map(e => e.id || e.name)")
        )
        links[name] = page.evaluate("Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
    page.close()
    for name, hrefs in links.items():
        for href in hrefs:
            if not href.startswith(served):
                continue  # another site, a mailto: link: not ours to check
            url, anchor = urldefrag(href)
            target = unquote(urlsplit(url).path)[len(urlsplit(served).path) :] or "index.html"
            target = target + "index.html" if target.endswith("/") else target
            if not (site / target).exists():
                watched.problems.append(f"{name}: link to a missing file {href}")
            elif anchor and target.endswith(".html") and unquote(anchor) not in ids[target]:
                watched.problems.append(f"{name}: link to a missing anchor {href}")
    assert not watched.problems, f"{len(watched.problems)} problems:\n" + "\n".join(sorted(set(watched.problems))[:40])
    mathy = {f"lessons/{p.stem}.html" for p in LESSONS if re.search(r"\$[^$\n]+\$", markdown(p))}
    assert mathy, "no lesson has math: the check would prove nothing"
    assert mathy <= with_math, f"lessons whose math did not render: {sorted(mathy - with_math)}"


def test_search_finds_lesson_02_for_blind_spot(browser, served):
    """The site's own search (offline, no server code) lists lesson 02 for the words "blind spot"."""
    watched = Watched(browser, served)
    watched.open(served + "search.html?q=blind+spot")
    watched.page.wait_for_selector("#search-results a", timeout=30_000)
    hits = watched.page.evaluate("Array.from(document.querySelectorAll('#search-results a')).map(a => a.href)")
    lesson = next(p for p in LESSONS if p.name.startswith("02_"))
    assert any(urlsplit(h).path.endswith(f"/lessons/{lesson.stem}.html") for h in hits), f"search found {hits}"
    assert not watched.problems, watched.problems


def test_a_lesson_page_renders_and_is_kept_as_a_screenshot(browser, served):
    """Lesson 02 renders with its typeset formulas; its screenshot is kept in TEST_ARTIFACTS (default
    build/test-artifacts/) for a person to look at."""
    watched = Watched(browser, served)
    lesson = next(p for p in LESSONS if p.name.startswith("02_"))
    watched.open(served + f"lessons/{lesson.stem}.html")
    found, done, errors = typeset(watched.page)
    assert found and done == found and not errors
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "site-lesson-02.png"
    watched.page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000 and not watched.problems, watched.problems
