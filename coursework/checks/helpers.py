"""What every check shares: the verdict vocabulary, calling the learner's code, comparing numbers, patching
a torch global for a moment, fresh random inputs, and no credit for calling the library's own answer.

- `passed(what)` prints ``✓ what``; `fail(what, hint)` prints ``✗ what. Hint: hint`` and raises `CheckFailed`.
- `call(fn, *args, hint=..., context=..., **kwargs)` runs the learner's function and turns its exceptions
  (``NotImplementedError`` included) into verdicts that quote the learner's own line.
- `close(a, b, "probability")`: equal within one of the named `TOLERANCES`; `first_match(got, mistakes, tol)` fails
  with the first mistake of a table {name: (values, message, hint)} that `got` matches; `tensor_rule(got, name,
  shape)` fails when the result is not a tensor of that shape (or not finite).
- `with patched(torch.cuda, is_available=lambda: False): ...` swaps a global and always puts it back.
- `isolated` and `no_delegation(...)` decorate a check. The probes (`probe_device`, `tiny_gated`, ...) live in
  `probes`.
"""

from __future__ import annotations

import contextlib
import functools
import linecache
import math
import os
import pkgutil
import sys
import sysconfig
import threading
import traceback
from collections.abc import Callable

import torch

import course_lib
import coursework

LN2 = math.log(2)  # nats per bit

PASS_MARK = "✓"
FAIL_MARK = "✗"


class CheckFailed(AssertionError):
    """Raised by a check that failed; its message is the verdict line (starting with ✗)."""

    def _render_traceback_(self):
        # IPython shows this instead of a long traceback through the check's internals.
        return [f"CheckFailed: {self}"]


def _sentence(text: str) -> str:
    text = str(text).strip()
    return text if not text or text[-1] in ".!?" else text + "."


def passed(what: str) -> str:
    """Print ``✓ <what>`` and return the line; in a `no_delegation` check whose learner's code called a
    forbidden library function, fail instead."""
    if _WATCH and _WATCH[-1].found:
        _fail_delegation(_WATCH[-1].learner_name, _WATCH[-1].found)
    line = f"{PASS_MARK} {str(what).strip()}"
    print(line, flush=True)
    return line


def fail(what: str, hint: str | None = None):
    """Print ``✗ <what>. Hint: <hint>`` and raise :class:`CheckFailed` with that line. In a `no_delegation`
    check whose learner's code called a forbidden library function, that is the verdict instead."""
    if _WATCH and _WATCH[-1].found and not _WATCH[-1].reported:
        _fail_delegation(_WATCH[-1].learner_name, _WATCH[-1].found)
    line = f"{FAIL_MARK} {_sentence(what)}"
    if hint:
        line += f" Hint: {_sentence(hint)}"
    print(line, flush=True)
    raise CheckFailed(line)


def not_implemented(name: str | None = None):
    """Fail with the standard "not implemented yet" verdict."""
    what = "not implemented yet" if not name else f"{name} is not implemented yet"
    fail(what, "replace `raise NotImplementedError()` with your code, run that cell, then run this check again")


def invoke(fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)``: the one place where the checks run a learner's object (the delegation watch
    knows a library function called from here was called for the learner)."""
    return fn(*args, **kwargs)


def call(fn: Callable, *args, hint=None, context: str = "", **kwargs):
    """Call the learner's `fn` and turn its exceptions into verdicts.

    A ``NotImplementedError`` raised by the learner's own code becomes "✗ <name> is not implemented yet"; any
    other exception (a ``NotImplementedError`` from inside PyTorch, "not implemented for 'Long'", included)
    becomes "✗ <name> raised <Error>: <message> (at `<the learner's own line>`) <context>. Hint: <hint>".
    `context` says which input it happened on; `hint` is a string or a function (message, learner's line) ->
    string. A :class:`CheckFailed` raised inside (a nested check) passes through unchanged.
    """
    name = getattr(fn, "__name__", None) or type(fn).__name__
    if not callable(fn):
        fail(f"expected a function, got {type(fn).__name__}", "pass the function itself (no parentheses) to the check")
    try:
        return invoke(fn, *args, **kwargs)
    except CheckFailed:
        raise
    except Exception as error:  # any learner error becomes a verdict
        explain(error, name, hint, context)


def explain(error: BaseException, name: str, hint=None, context: str = ""):
    """Fail with the verdict `call` gives `error`, raised by the learner's `name` (for an error caught
    elsewhere, e.g. while a global was patched)."""
    frames = traceback.extract_tb(error.__traceback__)
    if isinstance(error, NotImplementedError) and frames and not _in_library(frames[-1].filename):
        not_implemented(name)
    # the learner's own line: the traceback's last outside course_lib, coursework, Python and installed packages
    where = next((f.line.strip() for f in reversed(frames) if f.line and not _in_library(f.filename)), None)
    message = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
    what = f"{name} raised {type(error).__name__}" + (f": {message}" if message else "")
    if where:
        what += f" (at `{where}`)"
    hint = hint(message, where) if callable(hint) else hint
    fail(f"{what} {context}".strip(), hint or "run your function on a small input in a new cell to see the full error")


_CHECKS = os.path.dirname(os.path.abspath(coursework.__file__)) + os.sep
_LIBRARY = os.path.dirname(os.path.abspath(course_lib.__file__)) + os.sep


@functools.cache
def _library_dirs() -> tuple:
    """Folders of code that is not the learner's: course_lib, coursework, the standard library, installed packages."""
    paths = sysconfig.get_paths()
    dirs = {os.path.abspath(paths[k]) + os.sep for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    return (*sorted(dirs), _LIBRARY, _CHECKS)


def _in_library(filename: str | None) -> bool:
    return bool(filename) and os.path.abspath(filename).startswith(_library_dirs())


TOLERANCES = {  # name: (rtol, atol) of `close`, by what is compared
    "float32": (1e-4, 1e-5),  # float32 results of order one against a float64 reference (the default)
    "probability": (1e-4, 1e-6),  # probabilities, some of them close to 0
    "log_prob": (1e-4, 1e-4),  # log-probabilities and nats of a few values
    "summed": (1e-4, 2e-3),  # log-likelihoods summed over an image's pixels in float32
    "float64": (1e-6, 1e-9),  # float64 on both sides: the same formula, another order of operations
    "loose": (1e-3, 1e-3),  # telling plausible mistakes apart: they differ by far more than this
}


def close(a, b, tol: str | tuple[float, float] = "float32", *, rtol: float | None = None, atol: float | None = None):
    """True when `a` and `b` (tensors or numbers) have the same shape and finite values equal within
    |a - b| <= atol + rtol * |b|, (rtol, atol) being `TOLERANCES[tol]` (or `tol` itself, a pair; `rtol` and
    `atol` override it). Anything else (None, a string, NaN, inf) is never close."""
    default_rtol, default_atol = TOLERANCES[tol] if isinstance(tol, str) else tol
    rtol, atol = default_rtol if rtol is None else rtol, default_atol if atol is None else atol
    try:
        a, b = (torch.as_tensor(v.detach() if torch.is_tensor(v) else v).double().cpu() for v in (a, b))
    except (TypeError, ValueError, RuntimeError):
        return False
    if a.shape != b.shape or not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return False
    return bool(torch.allclose(a, b, rtol=rtol, atol=atol))


def first_match(got, mistakes: dict, tol="loose", *, prefix: str = "", where: str = "", reference=None) -> None:
    """Fail with the message and hint of the first of `mistakes` ({name: (values, message, hint)}; values None:
    not applicable here) whose values `got` matches within `tol` (as in `close`); the verdict reads
    "<prefix><message> <where>". With `reference`, a row whose values match the reference is skipped (this case
    cannot tell that mistake from the right answer). Returns None when no row matches."""
    for values, message, hint in mistakes.values():
        if values is None or (reference is not None and close(values, reference, tol)):
            continue
        if close(got, values, tol):
            fail(f"{prefix}{message} {where}".strip(), hint)


def first_rule(rows, *, prefix: str = "", where: str = "") -> None:
    """Fail with the message and hint of the first row (applies, message, hint) that applies; the verdict
    reads "<prefix><message> <where>". Returns None when none applies."""
    for applies, message, hint in rows:
        if applies:
            fail(f"{prefix}{message} {where}".strip(), hint)


_TENSOR_HINT = "return a torch tensor"


def tensor_rule(
    got, name, shape=None, hint=_TENSOR_HINT, *, shape_hint=None, shapes=None, finite=None, prefix="", where=""
):
    """`got.detach()` when the learner's result is a tensor (of `shape`, when given; with `finite`, of finite
    values), else fail with the first of: "<name> returned <type>, not a tensor" (Hint: `hint`); a named wrong
    shape, `shapes` = {shape: (message, hint)}; "<name> returned shape <got>, expected <shape>" (Hint:
    `shape_hint`, default `hint`); "<name> returned values that are not finite (NaN or inf)" (`finite` is its
    hint, or a pair (message, hint)). Each verdict reads "<prefix><what> <where>"."""
    verdict = None
    if not torch.is_tensor(got):
        verdict = f"{name} returned {type(got).__name__}, not a tensor", hint
    elif shape is not None and tuple(got.shape) != tuple(shape):
        wrong = f"{name} returned shape {tuple(got.shape)}, expected {tuple(shape)}", shape_hint or hint
        verdict = (shapes or {}).get(tuple(got.shape), wrong)
    elif finite is not None and not torch.isfinite(got.detach()).all():
        generic = f"{name} returned values that are not finite (NaN or inf)", finite
        verdict = finite if isinstance(finite, tuple) else generic
    if verdict:
        fail(f"{prefix}{verdict[0]} {where}".strip(), verdict[1])
    return got.detach()


@contextlib.contextmanager
def patched(owner, **replacements):
    """Replace attributes of `owner` (a module such as ``torch`` or ``torch.cuda``, or a class such as
    ``torch.Tensor``) for the duration of a ``with`` block, and put the originals back afterwards, on error
    too. Yields {name: original}. ``with patched(torch.cuda, is_available=lambda: True): ...``"""
    originals = {name: getattr(owner, name) for name in replacements}
    own = {name for name in replacements if name in vars(owner)}  # a class's inherited methods: delete, not set
    for name, value in replacements.items():
        setattr(owner, name, value)
    try:
        yield originals
    finally:
        for name, value in originals.items():
            if name in own:
                setattr(owner, name, value)
            else:
                delattr(owner, name)


def fresh_seed() -> int:
    """A new random seed each call, so checks test on fresh inputs (not the notebook's seed)."""
    return int.from_bytes(os.urandom(4), "little")


def fresh_generator(seed: int | None = None) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with `seed` or a fresh random seed."""
    return torch.Generator().manual_seed(fresh_seed() if seed is None else seed)


def isolated(check: Callable) -> Callable:
    """Decorator for a check: it runs without touching the notebook's global random state (fresh inputs come
    from `fresh_generator`; the learner's code and the references may still draw from torch's generator) and
    on one CPU thread (tiny models: threads only add overhead on a busy machine), both restored afterwards."""

    @functools.wraps(check)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.random.fork_rng(devices=[]):
                return check(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper


# -- no credit for calling the library's own answer -------------------------------------------------------
class _Watch:
    """What one `no_delegation` check watches: the code of the forbidden library functions, and the first
    call to one of them that came from the learner's code (its name and the learner's line)."""

    def __init__(self, names: tuple[str, ...]):
        self.codes, self.classes, self.builtins = {}, {}, {}
        for name in names:
            obj = pkgutil.resolve_name(name)  # "course_lib.module.attribute[.attribute]"
            members = [obj]
            if isinstance(obj, type):
                self.classes[obj] = name
                members += vars(obj).values()
            for member in members:
                # only the library's own code: a decorator's wrapper (torch.no_grad's) is shared by many functions
                self.codes.update({code: name for code in _codes_of(member) if code.co_filename.startswith(_LIBRARY)})
            if not name.startswith("course_lib."):  # a PyTorch function written in C: seen as a "c_call"
                self.builtins[obj] = name
        self.found: tuple[str, str | None] | None = None
        self.learner_name = "your code"
        self.reported = False
        self.frame = None  # the check's own frame: the walk up the stack stops there

    def hook(self, frame, event, arg):
        if event == "call" and self.found is None and frame.f_code in self.codes:
            self.found = _learner_caller(frame.f_back, self.frame, self.codes[frame.f_code])
        elif event == "c_call" and self.builtins and self.found is None and _hashable(arg) and arg in self.builtins:
            self.found = _learner_caller(frame, self.frame, self.builtins[arg])


def _hashable(obj) -> bool:
    try:
        hash(obj)
    except TypeError:
        return False
    return True


def _codes_of(obj) -> list:
    """The code objects that run when `obj` (a function, method, property or decorated function) is called."""
    codes, seen, stack = [], set(), [obj]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if getattr(item, "__code__", None) is not None:
            codes.append(item.__code__)
        stack += [getattr(item, key, None) for key in ("__wrapped__", "__func__", "fget", "fset")]  # property: fget
    return codes


def _learner_caller(caller, stop, name: str):
    """(name, learner's line) when the call made from the frame `caller` was made for the learner: a frame of
    the learner's own code lies between it and the check (`stop`), or the nearest frame of the checks is a
    helper that calls the learner's object (library frames in between are passed through). None for the
    check's own calls (its reference computations)."""
    while caller is not None and caller is not stop:
        filename = caller.f_code.co_filename
        if not _in_library(filename) and not filename.startswith("<frozen"):
            return name, linecache.getline(filename, caller.f_lineno).strip() or None
        if filename.startswith(_CHECKS):
            return (name, None) if caller.f_code is invoke.__code__ else None  # `invoke` calls the learner's object
        caller = caller.f_back
    return None


_WATCH: list[_Watch] = []  # the watch of the check running now (checks do not nest)


def _static_delegation(obj, watch: _Watch) -> str | None:
    """The forbidden name when the learner's object itself is the library's (an alias, a partial, a
    subclass, a wrapped function)."""
    for _ in range(10):  # unwrap partials, decorated functions and methods
        inner = obj.func if isinstance(obj, functools.partial) else getattr(obj, "__wrapped__", None)
        inner = getattr(obj, "__func__", None) if inner is None else inner
        if inner is None:
            break
        obj = inner
    if _hashable(obj) and obj in watch.builtins:
        return watch.builtins[obj]
    if isinstance(obj, type):
        for cls in obj.__mro__:
            if cls in watch.classes:
                return watch.classes[cls]
        members = [m for cls in obj.__mro__ if cls.__module__ != "builtins" for m in vars(cls).values()]
    else:
        members = [obj, vars(type(obj)).get("__call__")]
    return next((watch.codes[code] for member in members for code in _codes_of(member) if code in watch.codes), None)


def _fail_delegation(learner_name: str, found: tuple[str, str | None]) -> None:
    if _WATCH:
        _WATCH[-1].reported = True
    name, line = found[0].rsplit(".", 1)[-1], found[1]
    where = f" (at `{line}`)" if line else ""
    whose = "the course's own" if found[0].startswith("course_lib.") else "PyTorch's"
    fail(
        f"{learner_name} hands the work to {whose} `{name}`{where}, which does this task for you",
        "write it yourself; the task text says which course_lib functions you may use",
    )


def _listed(names) -> str:
    short = [f"`{name.rsplit('.', 1)[-1]}`" for name in names]
    return short[0] if len(short) == 1 else ", ".join(short[:-1]) + " and " + short[-1]


def library_rule(check: Callable) -> str:
    """The sentence a task's text carries about the library: what it may use, and what does the task for
    the learner (and earns no points), generated from the check's `no_delegation` lists."""
    forbidden = [name for name in check.forbidden if name.startswith("course_lib.")]
    torch_own = [name for name in check.forbidden if not name.startswith("course_lib.")]
    one = len(check.forbidden) == 1
    listed = _listed(forbidden) + (f" and PyTorch's {_listed(torch_own)}" if torch_own else "")
    does = f"{listed} {'does' if one else 'do'} this task for you: calling {'it' if one else 'them'} earns no points"
    rest = "the rest of PyTorch" if torch_own else "PyTorch"
    if check.allowed:
        return f"**Library:** you may use {_listed(check.allowed)} from `course_lib`; its {does}."
    return f"**Library:** `course_lib`'s {does}; {rest} is yours to use."


def no_delegation(*names: str, allowed: tuple[str, ...] = ()) -> Callable:
    """Decorator for a check whose task asks for something `course_lib` already implements: `names` are those
    implementations ("course_lib.likelihood.evaluate", a class means all its methods). The check fails, with
    its own message, when the learner's object is one of them (an alias, a partial, a subclass), or when one
    of them is called from the learner's code while the check runs (a profile hook, `sys.setprofile`, sees
    every Python call). A learner's kernel can still switch the hook off or copy the library's source text:
    the first is detected (the hook must still be in place at the end), the second is not. `allowed`: the
    library functions the task lets the learner use (for the task's text, `library_rule`)."""

    def decorate(check: Callable) -> Callable:
        @functools.wraps(check)
        def wrapper(*args, **kwargs):
            watch = _Watch(names)
            learner = args[0] if args else next(iter(kwargs.values()), None)
            learner_name = watch.learner_name = getattr(learner, "__name__", None) or type(learner).__name__
            if found := _static_delegation(learner, watch):
                _fail_delegation(learner_name, (found, None))
            watch.frame = sys._getframe()
            previous, previous_threads = sys.getprofile(), threading.getprofile()
            _WATCH.append(watch)
            sys.setprofile(watch.hook)
            threading.setprofile(watch.hook)  # threads the learner's code starts
            try:
                result = check(*args, **kwargs)
            finally:
                intact = sys.getprofile() == watch.hook
                sys.setprofile(previous)
                threading.setprofile(previous_threads)
                _WATCH.remove(watch)
            if not intact:
                fail(
                    f"{learner_name} switched off the check's watch on library calls (sys.setprofile)",
                    "leave sys.setprofile alone",
                )
            if watch.found:
                _fail_delegation(learner_name, watch.found)
            return result

        wrapper.forbidden, wrapper.allowed = names, tuple(allowed)
        return wrapper

    return decorate
