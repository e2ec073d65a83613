"""The lesson 04 checks: every reference solution passes, and planted bugs (mutations of the solution
taken from solutions/04_sampling.py) fail with their own message."""

import re

import pytest
import torch
from solution_cells import SolutionCells, assert_checks_leave_global_state_alone

from coursework.checks import CheckFailed, lesson04, tiny_gated

TASKS = ["t04_temperature", "t04_sample", "t04_complete"]
NOTEBOOK = SolutionCells("04_sampling", TASKS)
CELLS, solution, stub = NOTEBOOK.cells, NOTEBOOK.solution, NOTEBOOK.stub


CHECKS = {
    "t04_temperature": lesson04.check_temperature_probs,
    "t04_sample": lesson04.check_sample,
    "t04_complete": lesson04.check_complete,
}


DRAW = "x[:, ch, i, j] = draw(temperature_probs(site, temperature), generator)"
SITE = "site = logits[:, ch, i, j] if model.levels == 2 else logits[:, :, ch, i, j]"
MUTANTS = {
    # task 1: temperature
    "after the softmax": (
        "t04_temperature",
        [("return torch.softmax(scaled, dim=1)", "return torch.softmax(logits.float(), dim=1) / temperature")],
        "temperature was applied after the softmax",
    ),
    "after the softmax, renormalised": (
        "t04_temperature",
        [
            (
                "return torch.softmax(scaled, dim=1)",
                "p = torch.softmax(logits.float(), dim=1) / temperature\n    return p / p.sum(1, keepdim=True)",
            )
        ],
        "temperature had no effect",
    ),
    "after the sigmoid": (
        "t04_temperature",
        [("return torch.sigmoid(scaled)", "return torch.sigmoid(logits.float()) / temperature")],
        "temperature was applied after the sigmoid",
    ),
    "temperature ignored": (
        "t04_temperature",
        [("scaled = logits.float() / temperature", "scaled = logits.float()")],
        "temperature was ignored",
    ),
    "temperature multiplied": (
        "t04_temperature",
        [("logits.float() / temperature", "logits.float() * temperature")],
        "multiplied the logits by T",
    ),
    "softmax over the batch": (
        "t04_temperature",
        [("torch.softmax(scaled, dim=1)", "torch.softmax(scaled, dim=0)")],
        "over the images (dim 0)",
    ),
    # task 2: sampling loop
    "train mode": ("t04_sample", [("    model.eval()\n", "")], "ran with the model in train mode"),
    "no no_grad": ("t04_sample", [("with torch.no_grad():", "if True:")], "without torch.no_grad()"),
    "mode not restored": ("t04_sample", [("model.train(was_training)", "pass")], "left in eval mode"),
    "one forward pass": (
        "t04_sample",
        [
            ("    with torch.no_grad():\n", "    with torch.no_grad():\n        logits = model(x, labels)\n"),
            ("                    logits = model(x, labels)\n", ""),
        ],
        "single forward pass",
    ),
    "temperature after the sigmoid (loop)": (
        "t04_sample",
        [
            (
                DRAW,
                "probs = temperature_probs(site, 1.0)\n"
                "                    probs = probs / temperature if probs.dim() == 1 else probs\n"
                "                    x[:, ch, i, j] = draw(probs, generator)",
            )
        ],
        "temperature was applied after the sigmoid",
    ),
    "temperature ignored (loop)": (
        "t04_sample",
        [(DRAW, DRAW.replace("temperature)", "1.0)"))],
        "ignore the temperature",
    ),
    "column order": (
        "t04_sample",
        [("for i in range(h):\n            for j in range(w):", "for j in range(w):\n            for i in range(h):")],
        "column by column",
    ),
    "channel loop outermost": (
        "t04_sample",
        [
            (
                "for i in range(h):\n            for j in range(w):\n                for ch in range(c):",
                "for ch in range(c):\n            for i in range(h):\n                for j in range(w):",
            )
        ],
        "one colour channel over the whole image",
    ),
    # task 3: completion
    "given pixels overwritten": (
        "t04_complete",
        [("torch.where(given, x[:, ch, i, j], drawn)", "drawn")],
        "given pixels were overwritten during completion",
    ),
    "blank canvas": (
        "t04_complete",
        [("x = images.clone().long().to(device)", "x = torch.zeros_like(images).long().to(device)")],
        "given pixels are missing",
    ),
    "pasted at the end": (
        "t04_complete",
        [
            ("x = images.clone().long().to(device)", "x = torch.zeros_like(images).long().to(device)"),
            ("    return x", "    return torch.where(known, images.to(device), x)"),
        ],
        "pasted in only at the end",
    ),
    "known sub-pixels drawn": (
        "t04_complete",
        [("if given.all():", "if False:")],
        "every image already knows were drawn too",
    ),
    "train mode (completion)": ("t04_complete", [("    model.eval()\n", "")], "ran with the model in train mode"),
    "no no_grad (completion)": ("t04_complete", [("with torch.no_grad():", "if True:")], "without torch.no_grad()"),
    # temperature: a power of the probabilities without renormalising, errors named with the logits' kind
    "power after the softmax": (
        "t04_temperature",
        [("return torch.softmax(scaled, dim=1)", "return torch.softmax(logits.float(), dim=1) ** (1 / temperature)")],
        "raised the probabilities to the power 1/T without renormalising",
    ),
    "Bernoulli logits sent to the softmax": (
        "t04_temperature",
        [("if scaled.dim() == 1:", "if scaled.dim() != 1:")],
        "on Bernoulli logits of shape",
    ),
    # sampling: a 1-channel 256-level model, the caller's mode, the device, the generator, the channel order
    "binary decided from the channel count": (
        "t04_sample",
        [(SITE, SITE.replace("model.levels == 2", "c == 1"))],
        "decide from model.levels, not from the number of channels",
    ),
    "always back to train mode (sampling)": (
        "t04_sample",
        [("model.train(was_training)", "model.train()")],
        "arrived in eval mode and was left in train mode after sampling",
    ),
    "image made on the CPU": (
        "t04_sample",
        [(", device=device)", ")")],
        "ancestral_sample gave the model the image x on the device 'cpu'",
    ),
    "float images": ("t04_sample", [("dtype=torch.long, ", "")], "returned images of dtype torch.float32"),
    "draws never written": ("t04_sample", [(DRAW, "pass")], "your samples are all zeros"),
    "generator not used": (
        "t04_sample",
        [(DRAW, DRAW.replace("generator)", "None)"))],
        "ignore the generator",
    ),
    "channels B, G, R": (
        "t04_sample",
        [("for ch in range(c):", "for ch in reversed(range(c)):")],
        "in the order B, G, R",
    ),
    # completion: the caller's tensors, the caller's mode, the device, the skip condition, the writes
    "caller's images written in place": (
        "t04_complete",
        [("x = images.clone().long().to(device)", "x = images.long().to(device)")],
        "changed the caller's `images` tensor in place",
    ),
    "always back to train mode (completion)": (
        "t04_complete",
        [("model.train(was_training)", "model.train()")],
        "arrived in eval mode and was left in train mode after completion",
    ),
    "images not moved to the model's device": (
        "t04_complete",
        [("x = images.clone().long().to(device)", "x = images.clone().long()")],
        "complete gave the model the images x on the device 'cpu'",
    ),
    "skipped when any image knows it": (
        "t04_complete",
        [("if given.all():", "if given.any():")],
        "only when every image knows it",
    ),
    "skip condition inverted": (
        "t04_complete",
        [("if given.all():", "if not given.all():")],
        "no hidden sub-pixel was drawn",
    ),
    "completion draws never written": (
        "t04_complete",
        [("x[:, ch, i, j] = torch.where(given, x[:, ch, i, j], drawn)", "pass")],
        "the drawn values never reached x",
    ),
    "no sub-pixel visited": (
        "t04_complete",
        [("for ch in range(c):", "for ch in range(1, c):")],
        "never called the model and returned the images passed in, unchanged",
    ),
    "mask not expanded": ("t04_complete", [(".expand_as(x)", "")], "known = known.expand_as(x)"),
    "binary decided from the channel count (completion)": (
        "t04_complete",
        [(SITE, SITE.replace("model.levels == 2", "c == 1"))],
        "decide from model.levels, not from the number of channels",
    ),
}


@pytest.mark.parametrize("bug", list(MUTANTS))
def test_planted_bug_fails_with_its_message(bug, capsys):
    grade_id, replacements, message = MUTANTS[bug]
    fn = solution(grade_id, *replacements)
    capsys.readouterr()
    with pytest.raises(CheckFailed, match=re.escape(message)):
        CHECKS[grade_id](fn)
    out = capsys.readouterr().out
    assert out.startswith("✗") and message in out and "Hint:" in out


def test_variant_loop_without_bugs_is_course_lib_sample():
    """The checks' own loop, with no planted bug, draws exactly what course_lib.sample draws."""
    model = tiny_gated(3, (3, 3, 3), sharpen=True, levels=4, channels=6, dilations=(1,))
    images = torch.randint(0, 4, (4, 3, 3, 3))
    known = lesson04._masks(4, 3, 3, torch.Generator().manual_seed(0))
    ours = lesson04._variant_loop(model, images, known, None, 0.8, 11)
    assert torch.equal(ours, lesson04.sample(model, 4, temperature=0.8, given=(images, known), seed=11, method="naive"))


def test_checks_leave_global_state_alone():
    """The checks use their own seeds and restore the thread setting."""
    calls = [
        (lesson04.check_temperature_probs, solution("t04_temperature")),
        (lesson04.check_sample, solution("t04_sample")),
    ]
    assert_checks_leave_global_state_alone(calls)


@pytest.mark.parametrize("seed", [190, 718, 1306])
def test_drawing_known_sub_pixels_is_named_even_when_it_looks_like_pasting(seed, monkeypatch, capsys):
    """With these check seeds, a loop that draws (and discards) known sub-pixels once gave the same images
    as the "pasted at the end" bug. The check must compare it with a loop that keeps given values while
    drawing them, and name the right mistake."""
    monkeypatch.setattr(lesson04, "fresh_seed", lambda: seed)
    fn = solution("t04_complete", ("if given.all():", "if False:"))
    with pytest.raises(CheckFailed, match="every image already knows were drawn too"):
        lesson04.check_complete(fn)


def test_the_grey_model_is_categorical():
    """Lesson 03's tutorial-sized model has one channel and 256 levels: the sample check must include one."""
    calls = []
    original = lesson04._sample_case

    def spy(ancestral_sample, model, *args, **kwargs):
        calls.append((model.image_shape[0], model.levels))
        return original(ancestral_sample, model, *args, **kwargs)

    lesson04._sample_case = spy
    try:
        lesson04.check_sample(solution("t04_sample"))
    finally:
        lesson04._sample_case = original
    assert (1, 256) in calls and (1, 2) in calls


def test_device_probe_of_completion_restores_tensor_methods():
    originals = (torch.Tensor.__bool__, torch.Tensor.all, torch.Tensor.any, torch.autocast)
    lesson04.check_complete(solution("t04_complete"))
    assert (torch.Tensor.__bool__, torch.Tensor.all, torch.Tensor.any, torch.autocast) == originals
    assert bool(torch.ones(2).all()) and not torch.zeros(2).any()
