"""Checks for the graded exercises: instant feedback for the learner, points for the autograder.

Each exercise notebook calls a check right after a task, for example
``checks.lesson01.check_nll(nll)``. A check runs the learner's code on fresh random inputs, compares it
with the reference behaviour computed with ``course_lib``, and prints one line:

    ✓ <what passed>
    ✗ <what is wrong>. Hint: <hint>

On failure it also raises :class:`CheckFailed`, so the cell shows an error and the autograder
(``pixelcnn-grade``) gives the task no points. The verdict never shows the solution.

The shared machinery: ``helpers`` (verdicts, `call`, `close`, `patched`, `no_delegation`), ``probes`` (the
meta-device probe `probe_device`, the test model `tiny_gated`) and ``rules`` (watching a model, the rules of
evaluation and training). The checks themselves live in one module per lesson (``lesson01`` ... ``lesson07``, and ``lesson08`` for the
homework):
``from coursework import checks`` then ``checks.lesson02.check_mask(...)``.

Writing a check (in ``lessonNN.py``): compute the reference and the plausible mistakes from the same random
inputs, then name the first mistake the learner's answer matches::

    from .helpers import LN2, call, close, fail, first_match, fresh_generator, isolated, passed, tensor_rule

    @isolated
    def check_nll(nll):
        g = fresh_generator()
        x = torch.randint(0, 2, (3, 1, 4, 4), generator=g).float()
        logits = torch.randn(3, 1, 4, 4, generator=g)
        got = call(nll, logits, x, context="on 3 random images")  # errors -> "✗ nll raised ..."
        ref = reference_nll(logits, x)
        got = tensor_rule(got, "nll", ref.shape, shape_hint="return one number per image")
        if not close(got, ref, "log_prob"):
            first_match(got, {"bits": (ref / LN2, "you returned bits, not nats", "use the natural logarithm")})
            fail("nll differs from the reference", "sum over pixels, not mean")
        return passed("nll matches the reference on 3 random images")

Every plausible mistake a check names is also an entry of the catalogue `mistakes/lessonNN.toml` (outside
the package), which plants it in the reference solution and holds the check to its words.
"""

from . import helpers, lesson01, lesson02, lesson03, lesson04, lesson05, lesson06, lesson07, lesson08, probes, rules
from .helpers import (
    CheckFailed,
    call,
    close,
    fail,
    fresh_generator,
    fresh_seed,
    isolated,
    not_implemented,
    passed,
    patched,
)
from .probes import tiny_gated

__all__ = [
    "CheckFailed",
    "call",
    "close",
    "fail",
    "fresh_generator",
    "fresh_seed",
    "isolated",
    "not_implemented",
    "passed",
    "patched",
    "tiny_gated",
    "helpers",
    "probes",
    "rules",
    "lesson01",
    "lesson02",
    "lesson03",
    "lesson04",
    "lesson05",
    "lesson06",
    "lesson07",
    "lesson08",
]
