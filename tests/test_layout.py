"""The layout a learner reads: course_lib is the library and nothing else, the model sits directly on the
masks, the course machinery lives beside it in coursework, and every package the code imports is declared."""

import ast
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ
DISTRIBUTIONS = {
    "PIL": "pillow",
    "sklearn": "scikit-learn",
    "torch.utils.tensorboard": "tensorboard",
    "jupyter_client": "jupyter-client",
    "jupyter_core": "jupyter-core",
}


def imports(path):
    """(module name, at module level?) of every import in a file; relative imports made absolute."""
    package = path.relative_to(ROOT).parent.parts
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(list(package[: len(package) - node.level + 1]) + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] if node.level and not node.module else [base]
            found += [(name, id(node) in top_level) for name in names]
    return found


def library_graph():
    """{module: set of course_lib modules it imports} over course_lib/*.py."""
    graph = {}
    for path in (ROOT / "course_lib").glob("*.py"):
        names = {name.split(".")[1] for name, _ in imports(path) if name.startswith("course_lib.")}
        graph[path.stem] = names - {path.stem}
    return graph


def reachable(graph, start):
    seen, todo = set(), [start]
    while todo:
        for name in graph.get(todo.pop(), ()):
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


def test_the_library_never_imports_the_course_machinery():
    for path in (ROOT / "course_lib").rglob("*.py"):
        bad = [name for name, _ in imports(path) if name.split(".")[0] == "coursework"]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
    assert not (ROOT / "course_lib" / "checks").exists() and not (ROOT / "course_lib" / "grade.py").exists()


def test_models_sit_directly_on_the_masks_and_the_heads():
    """Building a model loads masks, its output heads (and the mixture they use) and the error type, nothing
    of likelihood, data, training, sampling or distribution."""
    graph = library_graph()
    assert reachable(graph, "masks") <= {"errors"}
    assert reachable(graph, "logistic") == set()
    assert reachable(graph, "heads") <= {"logistic", "errors"}
    assert reachable(graph, "models") <= {"masks", "heads", "logistic", "errors"}
    assert {"masks", "heads"} <= graph["models"]


def test_the_plain_sampler_comes_before_the_cache_and_the_thread_policy_lives_with_the_devices():
    """A learner reading sampling.py meets the naive ancestral sampler before the cached one; the CPU thread
    policy is a device question, so sampling holds none of it, and a cache knows nothing of sampling."""
    import course_lib.sampling as sampling

    source = (ROOT / "course_lib" / "sampling.py").read_text()
    assert source.index("def sample_naive(") < source.index("def sample_cached(") < source.index("def sample(")
    assert not any(hasattr(sampling, name) for name in ("idle_cores", "row_threads", "LOADAVG"))
    graph = library_graph()
    assert "sampling" not in reachable(graph, "cached_sampling") and "device" in graph["sampling"]


def scoring_calls(path):
    """The calls in a file that score images without the door: decoding logits (`log_prob_from_logits`, the
    mixture's `mixture_log_prob_at`), a model's `.log_prob(...)` or `score=True`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        if name in ("log_prob_from_logits", "mixture_log_prob_at", "log_prob"):
            found.append(f"{name}() on line {node.lineno}")
        found += [f"score=True on line {node.lineno}" for k in node.keywords if k.arg == "score"]
    return found


def test_the_library_scores_images_through_one_door():
    """Outside the mixture, the heads and the door itself (models.log_likelihood), no library module decodes
    logits into a log-likelihood or asks a model to score itself: they call log_likelihood (or nll, which does)."""
    for path in (ROOT / "course_lib").glob("*.py"):
        if path.stem not in ("logistic", "heads", "models"):
            assert not scoring_calls(path), f"{path.name} scores images without models.log_likelihood"


def test_the_package_docstring_gives_a_reading_order_that_follows_the_imports():
    """Every module is named in course_lib's reading order, after every course_lib module it imports."""
    import course_lib

    order = [
        line.split()[0]
        for line in course_lib.__doc__.split("Reading order")[1].splitlines()[1:]
        if line.startswith("    ") and line.split()[0].isidentifier()
    ]
    modules = {p.stem for p in (ROOT / "course_lib").glob("*.py")} - {"__init__", "__main__"}
    assert sorted(order) == sorted(modules)
    graph = library_graph()
    for k, name in enumerate(order):
        assert graph[name] <= set(order[:k]), f"{name} imports {graph[name] - set(order[:k])}, read later"


def declared():
    """(core dependencies, {extra: dependencies}) of pyproject.toml, as lower-case distribution names."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def name(requirement):
        for stop in "<>=!~[; ":
            requirement = requirement.split(stop)[0]
        return requirement.strip().lower()

    extras = {k: {name(r) for r in v} for k, v in project["optional-dependencies"].items()}
    return {name(r) for r in project["dependencies"]}, extras


def distribution(module):
    for prefix, dist in DISTRIBUTIONS.items():
        if module == prefix or module.startswith(prefix + "."):
            return dist
    return module.split(".")[0].lower()


@pytest.mark.parametrize("package, extra", [("course_lib", None), ("coursework", "grading")])
def test_every_third_party_import_is_declared(package, extra):
    """Module-level imports need core dependencies; an import inside a function may come from an extra, and
    then the extras together must declare it (coursework's own needs: the `grading` extra)."""
    core, extras = declared()
    everything = core.union(*extras.values())
    for path in (ROOT / package).rglob("*.py"):
        for module, top_level in imports(path):
            root = module.split(".")[0]
            if root in sys.stdlib_module_names or root in ("course_lib", "coursework", "__future__"):
                continue
            dist = distribution(module)
            allowed = core | (extras[extra] if extra else set())
            where = f"{path.relative_to(ROOT)} imports {module}"
            assert dist in (allowed if top_level else everything), f"{where}: declare {dist!r} in pyproject.toml"


def test_the_grader_annotates_the_return_of_every_public_function():
    """coursework's annotation policy (its package docstring): every public function and method of the grader's
    modules (all but `coursework.checks`) annotates its return type."""
    missing = []
    for path in sorted((ROOT / "coursework").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            members = node.body if isinstance(node, ast.ClassDef) and not node.name.startswith("_") else [node]
            for fn in members:
                public = isinstance(fn, ast.FunctionDef) and not fn.name.startswith("_")
                if public and fn.returns is None:
                    missing.append(f"{path.name}:{fn.lineno} {fn.name}")
    assert not missing, f"public functions without a return annotation: {missing}"
