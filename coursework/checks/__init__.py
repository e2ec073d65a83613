"""Checks for the graded exercises: instant feedback for the learner, points for the autograder.

Each exercise notebook calls a check right after a task, for example
``checks.lesson01.check_nll(nll)``. A check runs the learner's code on fresh random inputs, compares it
with the reference behaviour computed with ``course_lib``, and prints one line:

    ✓ <what passed>
    ✗ <what is wrong>. Hint: <hint>

On failure it also raises :class:`CheckFailed`, so the cell shows an error and the autograder
(``pixelcnn-grade``) gives the task no points. The verdict never shows the solution.

The shared machinery is in ``helpers``; the checks themselves live in one module per lesson (``lesson01``
... ``lesson06``): ``from coursework import checks`` then ``checks.lesson02.check_mask(...)``.

Writing a check (in ``lessonNN.py``)::

    from .helpers import LN2, call, close, fail, fresh_generator, isolated, passed

    @isolated

    def check_nll(nll):
        g = fresh_generator()
        x = torch.randint(0, 2, (3, 1, 4, 4), generator=g).float()
        logits = torch.randn(3, 1, 4, 4, generator=g)
        got = call(nll, logits, x)                       # NotImplementedError -> "✗ not implemented yet"
        ref = reference_nll(logits, x)
        if got.shape != ref.shape:
            fail(f"nll returned shape {tuple(got.shape)}, expected {tuple(ref.shape)}", "return one number per image")
        if close(got, ref / LN2):
            fail("you returned bits, not nats", "use the natural logarithm")
        if not close(got, ref):
            fail("nll differs from the reference", "sum over pixels, not mean")
        return passed("nll matches the reference on 3 random images")
"""

from . import lesson01, lesson02, lesson03, lesson04, lesson05, lesson06
from .helpers import (
    CheckFailed,
    ForwardSpy,
    call,
    close,
    fail,
    fresh_generator,
    fresh_seed,
    isolated,
    not_implemented,
    passed,
    tiny_gated,
)

__all__ = [
    "CheckFailed",
    "ForwardSpy",
    "call",
    "close",
    "fail",
    "fresh_generator",
    "fresh_seed",
    "isolated",
    "not_implemented",
    "passed",
    "tiny_gated",
    "lesson01",
    "lesson02",
    "lesson03",
    "lesson04",
    "lesson05",
    "lesson06",
]
