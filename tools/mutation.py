"""The mutation engine shared by tools/mutate.py (one-line bugs in course_lib, against its unit tests) and
tools/mutate_solutions.py (one-line mistakes in the reference solutions, against the exercises' checks).

What is here: the swaps a mutant makes (operators, comparisons, constants, calls), the visitor that walks a
module's AST and collects every place to mutate in a fixed order (each tool subclasses it: what it records
for a place, which extra slips it knows), the loop that applies one place at a time to a fresh tree, the
reading of the hand-written lists of equivalent mutants, the preloading of heavy imports before forking,
and the wait for forked children under a time limit.
"""

import ast
import copy
import importlib
import os
import signal
import time
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

BINOPS = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
}
CMPOPS = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
METHODS = {  # a call of the first name becomes a call of the second (each tool adds its own)
    "mean": "sum",
    "sum": "mean",
    "max": "min",
    "min": "max",
    "argmax": "argmin",
    "argmin": "argmax",
    "eval": "train",
    "floor": "ceil",
    "ceil": "floor",
    "triu": "tril",
    "tril": "triu",
    "zeros": "ones",
    "ones": "zeros",
    "sigmoid": "tanh",
    "tanh": "sigmoid",
    "softmax": "log_softmax",
    "log_softmax": "softmax",
    "bernoulli": "round",
    "randperm": "arange",
}
DROPPED_CALLS = {"clone", "detach", "contiguous", "t", "float", "double", "long"}  # x.clone() -> x
OPERATORS = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.And: "and",
    ast.Or: "or",
    ast.Not: "not",
    ast.USub: "-",
}


def op_text(op):
    """How Python writes the operator node `op`: `ast.LtE()` -> "<="."""
    return OPERATORS[type(op)]


def replace(node, new):
    """Make `node` become a copy of `new` in place (keeps the parent's reference valid)."""
    new = copy.deepcopy(new)
    node.__class__ = new.__class__
    node.__dict__.clear()
    node.__dict__.update(new.__dict__)


class SiteVisitor(ast.NodeVisitor):
    """Collects every mutable place of a module, in a fixed order, through `add` (which each tool defines:
    what it records for a place). The class attributes and the `call_sites` hook say what differs."""

    methods = METHODS  # calls renamed
    dropped_calls = DROPPED_CALLS  # x.name() -> x, without arguments
    dropped_calls_with_args = frozenset()  # x.name(...) -> x, with or without arguments
    droppable = (ast.AugAssign,)  # statements dropped, besides call statements and some assignments
    drops_in_definitions = True  # are the statements right inside a def, class or module dropped too?

    def __init__(self):
        self.sites = []
        self.statements = []  # the statements being visited, innermost last
        self.assigned = [set()]  # names bound so far in each enclosing function

    @classmethod
    def collect(cls, tree, *args):
        """The sites of `tree`: a fresh visitor (made with `args`) walks it."""
        visitor = cls(*args)
        visitor.visit(tree)
        return visitor.sites

    def add(self, node, text, apply, render="statement", statement=None):
        """Record a site: `node` changes, `text` says how, `apply()` makes the change in the tree; `render` and
        `statement` (default: the innermost statement being visited) say which source line changes."""
        raise NotImplementedError

    def visit(self, node):
        if isinstance(node, ast.stmt):
            self.statements.append(node)
            try:
                return super().visit(node)
            finally:
                self.statements.pop()
        return super().visit(node)

    # parts that are never mutated: messages, docstrings, imports, signatures' defaults and annotations
    def visit_Raise(self, node):
        if isinstance(node.exc, ast.Call) and node.exc.args:  # the exception type stays, the message too
            return
        self.generic_visit(node)

    def visit_Assert(self, node):
        self.visit(node.test)

    def visit_JoinedStr(self, node):
        return

    def visit_Import(self, node):
        return

    visit_ImportFrom = visit_Import

    def visit_arguments(self, node):
        return

    # the walk over statements: which lines are dropped, which names are bound
    def visit_FunctionDef(self, node):
        names = {a.arg for a in node.args.args + node.args.kwonlyargs + node.args.posonlyargs}
        self.assigned.append(names)
        self._body(node.body)
        self.assigned.pop()

    def visit_ClassDef(self, node):
        self._body(node.body)

    def visit_Module(self, node):
        self._body(node.body)

    def _body(self, body):
        for i, stmt in enumerate(body):
            if i == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                continue  # docstring
            if self.drops_in_definitions:
                self._statement(stmt, body)
            else:
                self.visit(stmt)

    def generic_visit(self, node):
        for _, value in ast.iter_fields(node):
            if isinstance(value, list):
                if value and isinstance(value[0], ast.stmt):
                    for stmt in value:
                        self._statement(stmt, value)
                else:
                    for item in value:
                        if isinstance(item, ast.AST):
                            self.visit(item)
            elif isinstance(value, ast.AST):
                self.visit(value)

    def _statement(self, stmt, body):
        self._maybe_drop(stmt, body)
        self.visit(stmt)
        for target in list(getattr(stmt, "targets", [])) + [getattr(stmt, "target", None)]:
            for name in ast.walk(target) if isinstance(target, ast.AST) else ():
                if isinstance(name, ast.Name):
                    self.assigned[-1].add(name.id)

    def _maybe_drop(self, stmt, body):
        """Dropped lines (`pass` instead): a call statement, a statement of `droppable`, a store into an
        attribute or an element, or the re-assignment of a name that already has a value."""
        droppable = (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)) or isinstance(
            stmt, self.droppable
        )
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            t = stmt.targets[0]
            names = [n.id for n in ast.walk(t) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
            droppable = isinstance(t, (ast.Attribute, ast.Subscript)) or bool(
                names and all(n in self.assigned[-1] for n in names)
            )
        if droppable:

            def apply(stmt=stmt, body=body):
                body[body.index(stmt)] = ast.Pass(lineno=stmt.lineno, col_offset=stmt.col_offset)

            self.add(stmt, "drop the line", apply, render="pass", statement=stmt)

    # the mutations
    def visit_BinOp(self, node):
        new = BINOPS.get(type(node.op))
        if new:
            self.add(
                node, f"`{op_text(node.op)}` -> `{op_text(new())}`", lambda n=node, new=new: setattr(n, "op", new())
            )
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        new = BINOPS.get(type(node.op))
        if new:
            text = f"`{op_text(node.op)}=` -> `{op_text(new())}=`"
            self.add(node, text, lambda n=node, new=new: setattr(n, "op", new()))
        self.generic_visit(node)

    def visit_Compare(self, node):
        for k, op in enumerate(node.ops):
            new = CMPOPS.get(type(op))
            if new:
                text = f"`{op_text(op)}` -> `{op_text(new())}`"
                self.add(node, text, lambda n=node, k=k, new=new: n.ops.__setitem__(k, new()))
        self.generic_visit(node)

    def visit_BoolOp(self, node):
        new = ast.Or if isinstance(node.op, ast.And) else ast.And
        self.add(node, f"`{op_text(node.op)}` -> `{op_text(new())}`", lambda n=node, new=new: setattr(n, "op", new()))
        self.generic_visit(node)

    def visit_UnaryOp(self, node):
        if isinstance(node.op, (ast.Not, ast.USub)):
            self.add(node, f"drop `{op_text(node.op)}`", lambda n=node: replace(n, n.operand))
        self.generic_visit(node)

    def visit_If(self, node):
        self.add(node, "negate the condition", lambda n=node: setattr(n, "test", ast.UnaryOp(ast.Not(), n.test)))
        self.generic_visit(node)

    visit_IfExp = visit_If

    def visit_Constant(self, node):
        v = node.value
        if isinstance(v, bool):
            self.add(node, f"`{v}` -> `{not v}`", lambda n=node: setattr(n, "value", not n.value))
        elif isinstance(v, int):
            new = 1 if v == 0 else (0 if v == 1 else v + 1)
            self.add(node, f"`{v}` -> `{new}`", lambda n=node, new=new: setattr(n, "value", new))
        elif isinstance(v, float):
            new = 1.0 if v == 0 else v * 2
            self.add(node, f"`{v!r}` -> `{new!r}`", lambda n=node, new=new: setattr(n, "value", new))

    def visit_Call(self, node):
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else (f.id if isinstance(f, ast.Name) else None)
        self.call_sites(node, name)
        self.generic_visit(node)

    def call_sites(self, node, name):
        """The mutations of a call `node` of `name`, in order (a tool adds its own between these)."""
        self.renamed_call(node, name)
        self.dropped_call(node, name)
        self.dropped_keywords(node)
        self.swapped_arguments(node)

    def renamed_call(self, node, name):
        if name in self.methods:
            f, new = node.func, self.methods[name]
            attr = "attr" if isinstance(f, ast.Attribute) else "id"
            self.add(node, f"`{name}` -> `{new}`", lambda f=f, attr=attr, new=new: setattr(f, attr, new))

    def dropped_call(self, node, name):
        if isinstance(node.func, ast.Attribute) and (
            (name in self.dropped_calls and not node.args and not node.keywords) or name in self.dropped_calls_with_args
        ):
            self.add(node, f"drop `.{name}()`", lambda n=node: replace(n, n.func.value))

    def dropped_keywords(self, node):
        for kw in node.keywords:
            if kw.arg is not None:
                self.add(node, f"drop `{kw.arg}=`", lambda n=node, kw=kw: n.keywords.remove(kw))

    def swapped_arguments(self, node):
        args = node.args
        if (
            len(args) >= 2
            and not any(isinstance(a, ast.Starred) for a in args[:2])
            and ast.unparse(args[0]) != ast.unparse(args[1])
        ):
            self.add(
                node,
                "swap the first two arguments",
                lambda n=node: n.args.__setitem__(slice(0, 2), [n.args[1], n.args[0]]),
            )


def applied(source, collect):
    """For each site of `source` in turn (`collect(tree)` lists them): (a fresh tree of `source` with that one
    change made, the site). Every site has an `apply` that makes its change."""
    for k in range(len(collect(ast.parse(source)))):
        tree = ast.parse(source)
        site = collect(tree)[k]
        site.apply()
        yield tree, site


class Distinct:
    """Keeps the first of mutants with the same mutated source; numbers the repeats of one mutation of one
    line ("drop the line", "drop the line #2", ...)."""

    def __init__(self):
        self.seen, self.count = set(), {}

    def first(self, source):
        if source in self.seen:
            return False
        self.seen.add(source)
        return True

    def describe(self, line, mutation):
        n = self.count[(line, mutation)] = self.count.get((line, mutation), 0) + 1
        return mutation if n == 1 else f"{mutation} #{n}"


def read_toml(path, table):
    """The entries of `[[table]]` in the TOML file `path` ([] when it does not exist)."""
    path = Path(path)
    return tomllib.loads(path.read_text()).get(table, []) if path.exists() else []


def load_equivalents(paths, owner):
    """{(owner, original line, mutation): reason} from the `[[equivalent]]` entries of the TOML files `paths`;
    `owner(path, entry)` names what an entry belongs to (a module, a task)."""
    found = {}
    for path in paths:
        for e in read_toml(path, "equivalent"):
            found[(owner(Path(path), e), e["line"], e["mutation"])] = e["reason"]
    return found


def preload(modules, **environ):
    """Quiet, single-threaded: set the environment (and `environ`), then import `modules` (the heavy
    packages) once, so that every run forked from this process starts with them loaded."""
    os.environ.update(
        TQDM_DISABLE="1",
        MPLBACKEND="Agg",
        OMP_NUM_THREADS="1",
        OMP_WAIT_POLICY="PASSIVE",
        PYTHONDONTWRITEBYTECODE="1",
        **environ,
    )
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def wait_child(deadlines, pause):
    """Wait until a forked child ends, meanwhile killing the process group of every child past its deadline
    (`deadlines`: {pid: its time.perf_counter() deadline}); returns os.waitpid's (pid, status)."""
    while True:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid:
            return pid, status
        now = time.perf_counter()
        for p, deadline in deadlines.items():
            if now > deadline:
                try:
                    os.killpg(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(pause)
