"""The lesson 04 checks, beyond the catalogue of mistakes (mistakes/lesson04.toml, tests/test_mistakes.py):
the checks' own buggy-loop machinery draws what course_lib draws, they leave global state alone, and a
mistake is named correctly whatever the check's random draws."""

import pytest
import torch
from solution_cells import SolutionCells, assert_checks_leave_global_state_alone

from coursework.checks import CheckFailed, lesson04, tiny_gated

NOTEBOOK = SolutionCells("04_sampling", ["t04_temperature", "t04_sample", "t04_complete"])
solution = NOTEBOOK.solution


def test_variant_loop_without_bugs_is_course_lib_sample():
    """The checks' own loop, with no planted bug, draws exactly what course_lib.sample draws."""
    model = tiny_gated(3, (3, 3, 4), sharpen=True, levels=4, channels=6, dilations=(1,))
    images = torch.randint(0, 4, (4, 3, 3, 4))
    known = lesson04._masks(4, 3, 4, torch.Generator().manual_seed(0))
    ours = lesson04._variant_loop(model, images, known, None, 0.8, 11)
    assert torch.equal(ours, lesson04.sample(model, 4, temperature=0.8, given=(images, known), seed=11, method="naive"))


def test_checks_leave_global_state_alone():
    """The checks use their own seeds and restore the thread setting, the torch globals they patch and the
    tensor methods the completion's device probe replaces."""
    originals = (torch.Tensor.__bool__, torch.Tensor.all, torch.Tensor.any, torch.autocast, torch.amp.autocast)
    checks = (lesson04.check_temperature_probs, lesson04.check_sample, lesson04.check_complete)
    assert_checks_leave_global_state_alone([(check, solution(task)) for check, task in zip(checks, NOTEBOOK.tasks)])
    assert (torch.Tensor.__bool__, torch.Tensor.all, torch.Tensor.any, torch.autocast, torch.amp.autocast) == originals
    assert {"__bool__", "all", "any"}.isdisjoint(vars(torch.Tensor)) and bool(torch.ones(2).all())


@pytest.mark.parametrize("seed", [190, 718, 1306, 4242])
def test_drawing_known_sub_pixels_is_named_even_when_it_looks_like_pasting(seed, monkeypatch):
    """With some check seeds, a loop that draws (and discards) known sub-pixels gives the same images as
    the "pasted at the end" bug. The check must compare it with a loop that keeps given values while
    drawing them, and name the right mistake, whatever the seed."""
    monkeypatch.setattr(lesson04, "fresh_seed", lambda: seed)
    fn = solution("t04_complete", ("if given.all():", "if False:"))
    with pytest.raises(CheckFailed, match="every image already knows were drawn too"):
        lesson04.check_complete(fn)


@pytest.mark.parametrize("seed", range(0, 400, 10))
def test_the_256_level_completion_case_tells_every_bug_apart(seed):
    """The check's 256-level completion case finds a model on which the correct completions and every known
    buggy loop's all differ (a confident model on few hidden sub-pixels often draws the same at T = 0.8 as at
    T = 1, and then "the temperature is ignored" is misnamed), whatever the check's seed."""
    images, known = lesson04._grey_completion(torch.Generator().manual_seed(seed))
    model, draw_seed, reference = lesson04._complete_setup(seed, images, known, 0.8, None, **lesson04.GREY_COMPLETION)
    outputs = [reference, *lesson04._complete_variants(model, images, known, 0.8, None, draw_seed).values()]
    assert all(not torch.equal(a, b) for k, a in enumerate(outputs) for b in outputs[k + 1 :])
