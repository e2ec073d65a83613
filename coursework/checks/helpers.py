"""What every check shares: the verdict vocabulary, calling the learner's code, comparing numbers,
fresh random inputs, watching a model, and the small models the checks test with.

The vocabulary: `passed(what)` prints ``✓ what``; `fail(what, hint)` prints ``✗ what. Hint: hint`` and raises
`CheckFailed`; `call(fn, ...)` runs the learner's function and turns its exceptions (``NotImplementedError`` included) into verdicts.
"""

from __future__ import annotations

import functools
import math
import os
import traceback
from collections.abc import Callable

import torch

import course_lib
import coursework
from course_lib.models import GatedPixelCNN

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


def call(fn: Callable, *args, **kwargs):
    """Call the learner's `fn` and turn its exceptions into verdicts.

    ``NotImplementedError`` becomes "✗ not implemented yet"; any other exception becomes
    "✗ <name> raised <Error>: <message>" with the line of the learner's code that raised it.
    A :class:`CheckFailed` raised inside (a nested check) passes through unchanged.
    """
    name = getattr(fn, "__name__", None) or type(fn).__name__
    if not callable(fn):
        fail(f"expected a function, got {type(fn).__name__}", "pass the function itself (no parentheses) to the check")
    try:
        return fn(*args, **kwargs)
    except CheckFailed:
        raise
    except NotImplementedError:
        not_implemented(name)
    except Exception as error:  # any learner error becomes a verdict
        where = _learner_line(error)
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        what = f"{name} raised {type(error).__name__}" + (f": {message}" if message else "")
        if where:
            what += f" (at `{where}`)"
        fail(what[:400], "run your function on a small input in a new cell to see the full error")


_PACKAGES = tuple(os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (course_lib, coursework))


def _learner_line(error: BaseException) -> str | None:
    """The last line of code outside course_lib and coursework in the traceback (the learner's line), if any."""
    line = None
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename and not os.path.abspath(frame.filename).startswith(_PACKAGES) and frame.line:
            line = frame.line.strip()
    return line


def close(a, b, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    """True when `a` and `b` (tensors or numbers) have the same shape and finite values equal within
    |a - b| <= atol + rtol * |b|. Anything else (None, a string, NaN, inf) is never close."""
    try:
        a = torch.as_tensor(a.detach() if torch.is_tensor(a) else a).double().cpu()
        b = torch.as_tensor(b.detach() if torch.is_tensor(b) else b).double().cpu()
    except (TypeError, ValueError, RuntimeError):
        return False
    if a.shape != b.shape or not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return False
    return bool(torch.allclose(a, b, rtol=rtol, atol=atol))


def fresh_seed() -> int:
    """A new random seed each call, so checks test on fresh inputs (not the notebook's seed)."""
    return int.from_bytes(os.urandom(4), "little")


def fresh_generator(seed: int | None = None) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with `seed` or a fresh random seed."""
    g = torch.Generator()
    g.manual_seed(fresh_seed() if seed is None else seed)
    return g


class ForwardSpy:
    """Watches a learner's function use `model`: records, at every forward call, the training mode,
    whether gradients were on, the autocast state and dtype, and the input's device. `remove()` stops it."""

    def __init__(self, model):
        self.calls = []
        self.param_device = next(model.parameters()).device
        self.handle = model.register_forward_pre_hook(self)

    def __call__(self, module, args):
        x = args[0] if args else None
        dev = self.param_device.type
        self.calls.append(
            {
                "training": module.training,
                "grad": torch.is_grad_enabled(),
                "autocast": torch.is_autocast_enabled(dev),
                "dtype": torch.get_autocast_dtype(dev),
                "device": x.device if torch.is_tensor(x) else None,
            }
        )

    def remove(self):
        self.handle.remove()


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


def tiny_gated(
    seed: int, image_shape=(1, 8, 8), *, sharpen: bool = False, out_bias: float | None = None, **config
) -> GatedPixelCNN:
    """A small random Gated PixelCNN (8 channels, dilations 1-2 unless `config` says otherwise), built from
    `seed` without touching the global random generator.

    sharpen: confident, varied logits (hidden weights x2, output weights x4, output biases ~ N(0, 1.5)), so
    that every prediction depends clearly on the pixels before it. out_bias: every output bias set to it.
    """
    config = {"channels": 8, "dilations": (1, 2), **config}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GatedPixelCNN(image_shape=image_shape, **config)
        with torch.no_grad():
            if sharpen:
                for name, p in model.named_parameters():
                    if p.dim() > 1 and not name.startswith("out2"):
                        p.mul_(2)
                model.out2.weight.mul_(4)
                model.out2.bias.normal_(0, 1.5)
            if out_bias is not None:
                model.out2.bias.fill_(out_bias)
    return model


# -- device probes (lessons 03-05): device handling tested without a GPU ---------------------------------
class ProbeStop(BaseException):
    """Raised by `probe_forward` at the model's first forward pass, to stop the learner's function there.
    A BaseException, so that a learner's ``except Exception`` does not swallow it."""


def meta_copy(model):
    """A copy of `model` on PyTorch's "meta" device: tensors with shapes and no data. A learner's code that
    honours the model's device sends its tensors there; one that forgets, or hard-codes "cpu", does not."""
    import copy

    return copy.deepcopy(model).to("meta")


def probe_forward(fn, model, *args, meta_bool=None, **kwargs):
    """Run the learner's ``fn(*args, **kwargs)``, which uses `model` (a `meta_copy`), up to the model's first
    forward pass and stop it there: what did the function send to the model, and how?

    Meanwhile ``torch.autocast`` is replaced by a recorder (autocast refuses the meta device), and with
    `meta_bool` set, ``bool()`` of a meta tensor gives `meta_bool` instead of raising (a meta tensor has no
    value: ``if known.all():`` needs one).

    Returns None when `fn` never reached a forward pass (it returned, or raised first: the probe then says
    nothing), else {"devices": [the device of each tensor argument of the forward pass, in order],
    "autocast": [(device_type, dtype or None, enabled) of every autocast context entered before it]}.
    """
    import warnings

    record = {"devices": None, "autocast": []}

    class RecordingAutocast:
        def __init__(self, device_type, dtype=None, enabled=True, cache_enabled=None):
            record["autocast"].append((str(device_type), dtype, bool(enabled)))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def __call__(self, func):
            return func

    def stop(module, inputs):
        record["devices"] = [a.device for a in inputs if torch.is_tensor(a)]
        raise ProbeStop()

    original_bool, original_all, original_any = torch.Tensor.__bool__, torch.Tensor.all, torch.Tensor.any

    def fake_bool(self):
        return meta_bool if self.device.type == "meta" else original_bool(self)

    def reduction(original):
        def reduce(self, *args, **kwargs):
            if self.device.type == "meta" and not args and not kwargs:  # (PyTorch's own meta version is slow to load)
                return torch.empty((), dtype=torch.bool, device="meta")
            return original(self, *args, **kwargs)

        return reduce

    saved = (torch.autocast, torch.amp.autocast)
    handle = model.register_forward_pre_hook(stop)
    torch.autocast = torch.amp.autocast = RecordingAutocast
    if meta_bool is not None:
        torch.Tensor.__bool__ = fake_bool
        torch.Tensor.all, torch.Tensor.any = reduction(original_all), reduction(original_any)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn(*args, **kwargs)
    except ProbeStop:
        pass
    except Exception:  # code that cannot run on the meta device: the probe tells nothing
        pass
    finally:
        torch.autocast, torch.amp.autocast = saved
        torch.Tensor.__bool__ = original_bool
        torch.Tensor.all, torch.Tensor.any = original_all, original_any
        handle.remove()
    return None if record["devices"] is None else record


def fail_off_device(record, name: str, what: str, hint: str, positions=None):
    """Fail when a `probe_forward` record shows a tensor argument of the forward pass (those at `positions`,
    default all) that is not on the model's (meta) device. A record of None (no forward reached) passes."""
    if record is None:
        return
    devices = record["devices"] if positions is None else [record["devices"][k] for k in positions]
    wrong = [d for d in devices if d.type != "meta"]
    if wrong:
        fail(
            f"{name} gave the model {what} on the device '{wrong[0]}', not on the model's device (the check "
            "moved the model to PyTorch's 'meta' device, as a GPU would, to see where your tensors go)",
            hint,
        )


# -- calling the learner's code, blaming the learner's own line (lessons 01-02) --------------------------
@functools.cache
def _library_dirs() -> tuple:
    """Folders of code that is not the learner's: course_lib, coursework, the standard library, installed packages."""
    import sysconfig

    paths = sysconfig.get_paths()
    dirs = {os.path.abspath(paths[k]) + os.sep for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    return tuple(sorted(dirs)) + _PACKAGES


def _in_library(filename: str | None) -> bool:
    return bool(filename) and os.path.abspath(filename).startswith(_library_dirs())


def learner_call(fn: Callable, *args, **kwargs):
    """Like `call`, with two differences: a ``NotImplementedError`` raised inside a library (PyTorch has
    operations "not implemented for 'Long'") is reported as the error it is, not as "not implemented yet";
    and the "(at `line`)" of an error is the learner's own line, never one inside PyTorch or Python."""
    name = getattr(fn, "__name__", None) or type(fn).__name__
    if not callable(fn):
        fail(f"expected a function, got {type(fn).__name__}", "pass the function itself (no parentheses) to the check")
    try:
        return fn(*args, **kwargs)
    except CheckFailed:
        raise
    except Exception as error:  # any learner error becomes a verdict
        frames = traceback.extract_tb(error.__traceback__)
        if isinstance(error, NotImplementedError) and frames and not _in_library(frames[-1].filename):
            not_implemented(name)
        where = None
        for frame in frames:
            if frame.line and not _in_library(frame.filename):
                where = frame.line.strip()
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        what = f"{name} raised {type(error).__name__}" + (f": {message}" if message else "")
        if where:
            what += f" (at `{where}`)"
        fail(what[:400], "run your function on a small input in a new cell to see the full error")


def call_explained(fn: Callable, *args, hint, context: str = "", **kwargs):
    """Like `call`, but an exception of the learner's code is reported with `context` (e.g. which input it
    happened on) and `hint`: a string, or a function (message, learner's line) -> string."""
    name = getattr(fn, "__name__", None) or type(fn).__name__
    if not callable(fn):
        return call(fn, *args, **kwargs)
    try:
        return fn(*args, **kwargs)
    except CheckFailed:
        raise
    except NotImplementedError:
        not_implemented(name)
    except Exception as error:  # any learner error becomes a verdict
        where = _learner_line(error)
        message = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        what = f"{name} raised {type(error).__name__}" + (f": {message}" if message else "")
        if where:
            what += f" (at `{where}`)"
        fail(f"{what} {context}".strip(), hint(message, where) if callable(hint) else hint)


# -- no credit for calling the library's own answer -------------------------------------------------------
class _Watch:
    """What one `no_delegation` check watches: the code of the forbidden library functions, and the first
    call to one of them that came from the learner's code (its name and the learner's line)."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names
        self.codes, self.classes = {}, {}
        for name in names:
            obj = _resolve(name)
            if isinstance(obj, type):
                self.classes[obj] = name
                for member in vars(obj).values():
                    for code in _codes_of(member):
                        self.codes[code] = name
            for code in _codes_of(obj):
                self.codes[code] = name
        # only the library's own code: a decorator's wrapper (torch.no_grad's) is shared by many functions
        self.codes = {code: name for code, name in self.codes.items() if code.co_filename.startswith(_LIBRARY)}
        self.found: tuple[str, str | None] | None = None
        self.learner_name = "your code"
        self.reported = False
        self.frame = None  # the check's own frame: the walk up the stack stops there

    def hook(self, frame, event, arg):
        if event == "call" and self.found is None and frame.f_code in self.codes:
            self.found = _learner_caller(frame, self.frame, self.codes[frame.f_code])


def _resolve(name: str):
    """The object `name` ("course_lib.module.attribute[.attribute]") names."""
    import importlib

    module, _, rest = name.partition(".")
    obj = importlib.import_module(module)
    for part in rest.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            obj = importlib.import_module(f"{obj.__name__}.{part}")
    return obj


def _codes_of(obj) -> list:
    """The code objects that run when `obj` (a function, method, property or decorated function) is called."""
    codes, seen = [], set()
    stack = [obj]
    while stack:
        item = stack.pop()
        if id(item) in seen or item is None:
            continue
        seen.add(id(item))
        if isinstance(item, property):
            stack += [item.fget, item.fset]
        elif isinstance(item, (staticmethod, classmethod)):
            stack.append(item.__func__)
        else:
            if getattr(item, "__code__", None) is not None:
                codes.append(item.__code__)
            stack += [getattr(item, "__wrapped__", None), getattr(item, "__func__", None)]
    return codes


_CHECKS = os.path.dirname(os.path.abspath(coursework.__file__)) + os.sep
_LIBRARY = os.path.dirname(os.path.abspath(course_lib.__file__)) + os.sep
_INVOKERS = {f.__code__ for f in (call, learner_call, call_explained, probe_forward)}  # they call the learner's object


def _learner_caller(frame, stop, name: str):
    """(name, learner's line) when the call in `frame` was made for the learner: a frame of the learner's own
    code lies between it and the check (`stop`), or the nearest frame of the checks is a helper that calls the
    learner's object (library frames in between are passed through). None for the check's own calls (its
    reference computations)."""
    caller = frame.f_back
    while caller is not None and caller is not stop:
        filename = caller.f_code.co_filename
        if not _in_library(filename) and not filename.startswith("<frozen"):
            return name, _frame_line(caller)
        if filename.startswith(_CHECKS):
            return (name, None) if caller.f_code in _INVOKERS else None
        caller = caller.f_back
    return None


def _frame_line(frame) -> str | None:
    import linecache

    line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
    return line or None


_WATCH: list[_Watch] = []  # the watch of the check running now (checks do not nest)


def _static_delegation(obj, watch: _Watch) -> str | None:
    """The forbidden name when the learner's object itself is the library's (an alias, a partial, a
    subclass, a wrapped function)."""
    import functools as _functools

    for _ in range(10):
        if isinstance(obj, _functools.partial):
            obj = obj.func
        elif getattr(obj, "__wrapped__", None) is not None:
            obj = obj.__wrapped__
        elif getattr(obj, "__func__", None) is not None:
            obj = obj.__func__
        else:
            break
    if isinstance(obj, type):
        for cls in obj.__mro__:
            if cls in watch.classes:
                return watch.classes[cls]
        members = [m for cls in obj.__mro__ if cls.__module__ != "builtins" for m in vars(cls).values()]
    else:
        members = [obj, vars(type(obj)).get("__call__")]
    for member in members:
        for code in _codes_of(member):
            if code in watch.codes:
                return watch.codes[code]
    return None


def _fail_delegation(learner_name: str, found: tuple[str, str | None]) -> None:
    if _WATCH:
        _WATCH[-1].reported = True
    name, line = found[0].rsplit(".", 1)[-1], found[1]
    where = f" (at `{line}`)" if line else ""
    fail(
        f"{learner_name} hands the work to the course's own `{name}`{where}, which does this task for you",
        "write it yourself; the task text says which course_lib functions you may use",
    )


def _listed(names) -> str:
    short = [f"`{name.rsplit('.', 1)[-1]}`" for name in names]
    return short[0] if len(short) == 1 else ", ".join(short[:-1]) + " and " + short[-1]


def library_rule(check: Callable) -> str:
    """The sentence a task's text carries about the library: what it may use, and what does the task for
    the learner (and earns no points), generated from the check's `no_delegation` lists."""
    forbidden, allowed = check.forbidden, check.allowed
    one = len(forbidden) == 1
    does = f"{_listed(forbidden)} {'does' if one else 'do'} this task for you: calling {'it' if one else 'them'} earns no points"
    if allowed:
        return f"**Library:** you may use {_listed(allowed)} from `course_lib`; its {does}."
    return f"**Library:** `course_lib`'s {does}; PyTorch is yours to use."


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
            import sys
            import threading

            watch = _Watch(names)
            learner = args[0] if args else next(iter(kwargs.values()), None)
            learner_name = watch.learner_name = getattr(learner, "__name__", None) or type(learner).__name__
            found = _static_delegation(learner, watch)
            if found:
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
