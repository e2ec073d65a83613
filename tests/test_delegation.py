"""No credit for calling the library's answer: where a task asks for something `course_lib` implements, the
task's check fails a learner's code that hands the work to that implementation (by calling it, aliasing it,
wrapping it or subclassing it), with its own message, and every task's text says which library functions
it may use. Honest solutions that use the allowed functions keep passing (the reference solutions, in the
lesson check tests)."""

import functools
import re
import threading
from pathlib import Path

import pytest
import torch
from solution_cells import SolutionCells

import course_lib
from coursework import checks
from coursework.checks import CheckFailed
from coursework.checks.helpers import library_rule
from coursework.tasks import read_tasks, solution_notebooks

ROOT = Path(__file__).resolve().parents[1]
DELEGATED = "hands the work to the course's own"

SETUP = """
import math, torch, torch.nn as nn, torch.nn.functional as F
import course_lib
from course_lib import masks, causality, likelihood, sampling, finetune, logistic, checkpoint, train
from course_lib.device import pick_device as library_pick_device
from course_lib.models import log_prob_from_logits
"""

# (check, plausible code that delegates to course_lib's own implementation of the task, the name it calls)
DELEGATING = [
    ("lesson01.check_nll", "def nll(logits, x):\n    return -log_prob_from_logits(logits, x)", "log_prob_from_logits"),
    ("lesson01.check_bits_per_dim", "bits_per_dim = likelihood.bits_per_dim", "bits_per_dim"),
    (
        "lesson01.check_fit_independent",
        "def fit_independent(images, levels=2, alpha=1.0):\n"
        "    from course_lib.data import ImageDataset\n"
        "    data = ImageDataset('mine', images / (levels - 1), torch.zeros(len(images)), levels)\n"
        "    return likelihood.IndependentPixelModel.fit(data, alpha).probs",
        "IndependentPixelModel",
    ),
    (
        "lesson01.check_evaluate",
        "def evaluate_nll(model, dataset, batch_size=64):\n"
        "    return likelihood.evaluate(model, dataset, batch_size)['nats']",
        "evaluate",
    ),
    (
        "lesson02.check_mask",
        "def make_mask(kernel_size, mask_type, in_channels, out_channels, data_channels=1):\n"
        "    return masks.raster_mask(kernel_size, mask_type, in_channels, out_channels, data_channels)",
        "raster_mask",
    ),
    ("lesson02.check_masked_conv", "class MaskedConv2d(masks.MaskedConv2d):\n    pass", "MaskedConv2d"),
    (
        "lesson02.check_receptive_field",
        "def receptive_field_map(model, i, j, c=0):\n    return causality.receptive_field(model, i, j, c) != 0",
        "receptive_field",
    ),
    (
        "lesson02.check_is_causal",
        "def is_causal(model):\n    return not causality.causality_violations(model)",
        "causality_violations",
    ),
    (
        "lesson03.check_pick_device",
        "def pick_device(device=None):\n    return library_pick_device(device)",
        "pick_device",
    ),
    (
        "lesson03.check_train_step",
        "def train_step(model, optimizer, x, *, precision='bf16', clip=1.0):\n"
        "    return train.Trainer(model, None, None).step(x, None, 1e-3)",
        "Trainer",
    ),
    (
        "lesson03.check_evaluate",
        "def evaluate_nll(model, dataset, batch_size=256):\n    return likelihood.evaluate(model, dataset, batch_size)",
        "evaluate",
    ),
    (
        "lesson03.check_save_checkpoint",
        "def save_checkpoint_atomically(payload, path):\n    checkpoint.save_checkpoint(path, payload)",
        "save_checkpoint",
    ),
    (
        "lesson03.check_resume",
        "def resume(model, optimizer, path):\n"
        "    import os\n"
        "    if not os.path.exists(path):\n"
        "        return 0\n"
        "    payload = checkpoint.load_into(model, path)\n"
        "    optimizer.load_state_dict(payload['optimizer'])\n"
        "    return payload['epoch'] + 1",
        "load_into",
    ),
    (
        "lesson04.check_temperature_probs",
        "def temperature_probs(logits, temperature):\n    return sampling.probabilities(logits, temperature)",
        "probabilities",
    ),
    (
        "lesson04.check_sample",
        "def ancestral_sample(model, n, *, temperature=1.0, labels=None, generator=None):\n"
        "    seed = int(torch.randint(2**31, (), generator=generator))\n"
        "    return sampling.sample(model, n, temperature=temperature, labels=labels, seed=seed, method='naive')",
        "sample",
    ),
    (
        "lesson04.check_complete",
        "def complete(model, images, known, *, temperature=1.0, labels=None, generator=None):\n"
        "    return sampling.sample(model, len(images), temperature=temperature, labels=labels, given=(images, known))",
        "sample",
    ),
    (
        "lesson05.check_fine_tune",
        "def fine_tune(model, dataset, train, *, epochs=1, lr=1e-3, batch_size=32, seed=0):\n"
        "    finetune.freeze(model, train)\n"
        "    params = [p for p in model.parameters() if p.requires_grad]\n"
        "    optimizer = torch.optim.Adam(params, lr=lr)\n"
        "    model.train()\n"
        "    losses = []\n"
        "    for epoch in range(epochs):\n"
        "        g = torch.Generator().manual_seed(seed + epoch)\n"
        "        total, count = 0.0, 0\n"
        "        for x, y in torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=g):\n"
        "            optimizer.zero_grad()\n"
        "            labels = y if model.num_classes else None\n"
        "            loss = -log_prob_from_logits(model(x, labels), x).mean()\n"
        "            loss.backward()\n"
        "            optimizer.step()\n"
        "            total, count = total + loss.item() * len(x), count + len(x)\n"
        "        losses.append(total / count)\n"
        "    return losses",
        "freeze",
    ),
    (
        "lesson05.check_class_log_likelihoods",
        "def class_log_likelihoods(model, x):\n    return finetune.class_log_likelihoods(model, x)",
        "class_log_likelihoods",
    ),
    ("lesson05.check_bayes", "bayes_log_posterior = finetune.generative_classify", "generative_classify"),
    (
        "lesson07.check_attend",
        "def attend(q, k, v, mask=None):\n"
        "    return F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else ~mask)",
        "scaled_dot_product_attention",
    ),
    (
        "lesson06.check_discretized_logistic",
        "def discretized_logistic(mean, log_scale, levels):\n"
        "    params = torch.stack([torch.zeros_like(mean), torch.atanh(mean.clamp(-0.999, 0.999)), log_scale], -1)\n"
        "    return logistic.mixture_log_probs(params, levels)",
        "mixture_log_probs",
    ),
    (
        "lesson06.check_mixture",
        "def mixture(logit_pi, mean, log_scale, levels):\n"
        "    return logistic.mixture_log_probs(torch.cat([logit_pi, torch.atanh(mean), log_scale], -1), levels)",
        "mixture_log_probs",
    ),
    (
        "lesson06.check_centre_mask",
        "def centre_mask(in_channels, out_channels, data_channels, mask_type):\n"
        "    return masks.raster_mask(1, mask_type, in_channels, out_channels, data_channels)[:, :, 0, 0]",
        "raster_mask",
    ),
    (
        "lesson07.check_input_degrees",
        "def input_degrees(image_shape):\n    from course_lib.made import input_degrees as degrees\n    return degrees(image_shape)",
        "input_degrees",
    ),
    (
        "lesson07.check_mask_from_degrees",
        "def mask_from_degrees(out_degrees, in_degrees, strict=False):\n"
        "    return course_lib.made.mask_from_degrees(out_degrees, in_degrees, strict)",
        "mask_from_degrees",
    ),
    (
        "lesson07.check_causal_mask",
        "def causal_mask(tokens):\n    return course_lib.attention.causal_mask(tokens)",
        "causal_mask",
    ),
    ("lesson07.check_attend", "attend = course_lib.attention.attend", "attend"),
]


def _check(dotted):
    lesson, name = dotted.split(".")
    return getattr(getattr(checks, lesson), name)


def _define(source):
    namespace = {}
    exec(SETUP + source, namespace)
    return namespace[re.search(r"^(?:def|class) (\w+)|^(\w+) =", source, re.MULTILINE).group(1) or source.split()[0]]


@pytest.mark.parametrize("check, source, name", DELEGATING, ids=[d[0] for d in DELEGATING])
def test_a_check_refuses_code_that_calls_the_library_s_own_answer(check, source, name, capsys):
    forbidden = next(full for full in _check(check).forbidden if full.endswith(f".{name}"))
    delegated = DELEGATED if forbidden.startswith("course_lib.") else "hands the work to PyTorch's"
    with pytest.raises(CheckFailed, match=f"{delegated} `{name}`"):
        _check(check)(_define(source))
    assert "✓" not in capsys.readouterr().out, "a delegating answer was shown a pass first"


def test_every_check_whose_task_the_library_implements_forbids_it():
    """The table above covers every check that declares forbidden functions, and each name resolves."""
    declared = {
        f"{lesson}.{name}"
        for lesson in ("lesson01", "lesson02", "lesson03", "lesson04", "lesson05", "lesson06", "lesson07")
        for name in dir(getattr(checks, lesson))
        if name.startswith("check_") and getattr(getattr(getattr(checks, lesson), name), "forbidden", None)
    }
    assert declared == {d[0] for d in DELEGATING}


def _bits(nats, dims):
    return nats / (dims * 0.6931471805599453)


@pytest.mark.parametrize(
    "disguise",
    [
        lambda: course_lib.likelihood.bits_per_dim,  # an alias
        lambda: functools.partial(course_lib.likelihood.bits_per_dim),  # a partial
        lambda: functools.wraps(course_lib.likelihood.bits_per_dim)(lambda n, d: _bits(n, d)),  # a disguise
        lambda: type("Caller", (), {"__call__": staticmethod(course_lib.likelihood.bits_per_dim)})(),  # a callable
        lambda: torch.no_grad()(course_lib.likelihood.bits_per_dim),  # a decorated copy
    ],
    ids=["alias", "partial", "wraps", "callable-object", "decorated"],
)
def test_disguised_library_functions_are_recognised(disguise):
    with pytest.raises(CheckFailed, match=f"{DELEGATED} `bits_per_dim`"):
        checks.lesson01.check_bits_per_dim(disguise())


def test_a_library_call_in_a_thread_the_learner_starts_is_seen():
    def bits_per_dim(nats, dims):
        out = {}
        worker = threading.Thread(target=lambda: out.update(v=course_lib.likelihood.bits_per_dim(nats, dims)))
        worker.start()
        worker.join()
        return out["v"]

    with pytest.raises(CheckFailed, match=DELEGATED):
        checks.lesson01.check_bits_per_dim(bits_per_dim)


def test_switching_the_watch_off_is_detected():
    import sys

    def bits_per_dim(nats, dims):
        sys.setprofile(None)
        return course_lib.likelihood.bits_per_dim(nats, dims)

    with pytest.raises(CheckFailed, match="switched off the check's watch"):
        checks.lesson01.check_bits_per_dim(bits_per_dim)


def test_allowed_library_functions_and_the_check_s_own_references_pass(capsys):
    """Lesson 03's reference evaluation calls the allowed `log_prob_from_logits`, here with the allowed
    `bits_per_dim` too, while the check computes its references with course_lib's `evaluate`: it passes."""
    evaluate_nll = SolutionCells("03_training_on_gpu").solution(
        "t03_evaluate",
        ("total / count\n", "total / count\n    import course_lib.likelihood as L\n    L.bits_per_dim(1.0, 1)\n"),
    )
    checks.lesson03.check_evaluate(evaluate_nll)
    assert "✓" in capsys.readouterr().out


def _task_texts():
    """(check's dotted name, the text of the task it grades) for every task of the solutions."""
    for notebook in solution_notebooks():
        for task in read_tasks(notebook):
            yield re.match(r"checks\.(lesson\d\d\.check_\w+)\(", task.check).group(1), task.text


@pytest.mark.parametrize("check, text", list(_task_texts()))
def test_each_task_says_which_library_functions_it_may_use(check, text):
    """The sentence is generated from the check's own lists (`library_rule`), so the text cannot drift."""
    if getattr(_check(check), "forbidden", None):
        assert library_rule(_check(check)) in text.replace("\n", " ")
