"""Lesson 01 checks: the reference solutions pass, and planted wrong answers fail with their own message."""

import math

import pytest
import torch
import torch.nn.functional as F
from solution_cells import SolutionCells
from torch.utils.data import DataLoader

from coursework.checks import CheckFailed
from coursework.checks import lesson01 as checks


# ---------------------------------------------------------------- reference solutions (as in solutions/01)
def nll(logits, x):
    if logits.dim() == 4:
        per = F.binary_cross_entropy_with_logits(logits, x.float(), reduction="none")
    else:
        per = F.cross_entropy(logits, x.long(), reduction="none")
    return per.flatten(1).sum(1)


def bits_per_dim(nats_per_image, dims):
    return nats_per_image / (dims * math.log(2))


def fit_independent(images, levels=2, alpha=1.0):
    counts = F.one_hot(images.long(), levels).sum(0).permute(3, 0, 1, 2).float()
    return (counts + alpha) / (images.shape[0] + alpha * levels)


def evaluate_nll(model, dataset, batch_size=64):
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for x, _ in DataLoader(dataset, batch_size=batch_size):
            total += nll(model(x), x).sum().item()
            count += x.shape[0]
    model.train(was_training)
    return total / count


def failing(check, fn, match):
    with pytest.raises(CheckFailed, match=match):
        check(fn)


# ---------------------------------------------------------------- nll mutations
def nll_bits(logits, x):
    return nll(logits, x) / math.log(2)


def nll_mean_pixels(logits, x):
    return nll(logits, x) / x[0].numel()


def nll_mean_everything(logits, x):
    if logits.dim() == 4:
        return F.binary_cross_entropy_with_logits(logits, x.float())
    return F.cross_entropy(logits, x.long())


def nll_batch_mean(logits, x):
    return nll(logits, x).mean()


def nll_per_pixel(logits, x):
    return F.binary_cross_entropy_with_logits(logits, x.float(), reduction="none")


def nll_wrong_sign(logits, x):
    return -nll(logits, x)


def nll_bernoulli_only(logits, x):
    return F.binary_cross_entropy_with_logits(logits, x.float(), reduction="none").flatten(1).sum(1)


def nll_unstable(logits, x):
    p = torch.sigmoid(logits)
    if logits.dim() == 5:
        return nll(logits, x)
    return -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)


def nll_flipped_target(logits, x):
    if logits.dim() == 4:
        return nll(logits, 1 - x)
    return nll(logits, x)


def nll_categorical_bits(logits, x):
    return nll(logits, x) / (math.log(2) if logits.dim() == 5 else 1.0)


@pytest.mark.parametrize(
    "fn, match",
    [
        (nll_categorical_bits, "Bernoulli logits are right, but with categorical logits: you reported bits"),
        (nll_bits, "you reported bits, not nats"),
        (nll_mean_pixels, "mean over pixels instead of the sum"),
        (nll_mean_everything, "mean over pixels and images"),
        (nll_batch_mean, "averaged over the images"),
        (nll_per_pixel, "one value per sub-pixel"),
        (nll_wrong_sign, "the sign is wrong"),
        (nll_bernoulli_only, "works for Bernoulli logits .* but raised"),
        (nll_unstable, "not numerically stable"),
        (nll_flipped_target, "log-odds of pixel = 1"),
    ],
)
def test_nll_mutations(fn, match):
    failing(checks.check_nll, fn, match)


# ---------------------------------------------------------------- bits_per_dim mutations
@pytest.mark.parametrize(
    "fn, match",
    [
        (lambda n, d: n / d, "forgot to convert nats to bits"),
        (lambda n, d: n / math.log(2), "forgot to divide by the number of dimensions"),
        (lambda n, d: n * math.log(2) / d, "multiplied by ln 2 instead of dividing"),
        (lambda n, d: n / (d * math.log10(2)), "log10"),
    ],
)
def test_bits_per_dim_mutations(fn, match):
    failing(checks.check_bits_per_dim, fn, match)


# ---------------------------------------------------------------- fit_independent mutations
def fit_no_smoothing(images, levels=2, alpha=1.0):
    return fit_independent(images, levels, 0.0)


def fit_bad_denominator(images, levels=2, alpha=1.0):
    counts = F.one_hot(images.long(), levels).sum(0).permute(3, 0, 1, 2).float()
    return (counts + alpha) / (images.shape[0] + alpha)


def fit_pooled(images, levels=2, alpha=1.0):
    return (
        fit_independent(images, levels, alpha).mean((1, 2, 3), keepdim=True).expand(levels, *images.shape[1:]).clone()
    )


def fit_levels_last(images, levels=2, alpha=1.0):
    return fit_independent(images, levels, alpha).permute(1, 2, 3, 0)


def fit_p1_only(images, levels=2, alpha=1.0):
    return fit_independent(images, levels, alpha)[1]


@pytest.mark.parametrize(
    "fn, match",
    [
        (fit_no_smoothing, "no pseudo-counts"),
        (fit_bad_denominator, "do not sum to 1"),
        (fit_pooled, "one probability shared by all pixels"),
        (fit_levels_last, "levels are the last dimension"),
        (fit_p1_only, r"only p\(pixel = 1\)"),
    ],
)
def test_fit_independent_mutations(fn, match):
    failing(checks.check_fit_independent, fn, match)


# ---------------------------------------------------------------- evaluate_nll mutations
def eval_drop_last(model, dataset, batch_size=64):
    model.eval()
    with torch.no_grad():
        total, count = 0.0, 0
        for x, _ in DataLoader(dataset, batch_size=batch_size, drop_last=True):
            total += nll(model(x), x).sum().item()
            count += x.shape[0]
    return total / count


def eval_mean_of_batch_means(model, dataset, batch_size=64):
    model.eval()
    with torch.no_grad():
        means = [nll(model(x), x).mean().item() for x, _ in DataLoader(dataset, batch_size=batch_size)]
    return sum(means) / len(means)


def eval_train_mode(model, dataset, batch_size=64):
    with torch.no_grad():
        return sum(nll(model(x), x).sum().item() for x, _ in DataLoader(dataset, batch_size=batch_size)) / len(dataset)


def eval_with_grad(model, dataset, batch_size=64):
    model.eval()
    return sum(nll(model(x), x).sum().item() for x, _ in DataLoader(dataset, batch_size=batch_size)) / len(dataset)


def eval_bits(model, dataset, batch_size=64):
    return evaluate_nll(model, dataset, batch_size) / math.log(2)


def eval_per_pixel(model, dataset, batch_size=64):
    return evaluate_nll(model, dataset, batch_size) / math.prod(dataset[0][0].shape)


@pytest.mark.parametrize(
    "fn, match",
    [
        (eval_drop_last, "you dropped the last batch"),
        (eval_mean_of_batch_means, "you averaged the batch means"),
        (eval_train_mode, "train mode"),
        (eval_with_grad, r"torch.no_grad\(\)"),
        (eval_bits, "you reported bits, not nats"),
        (eval_per_pixel, "averaged over pixels"),
    ],
)
def test_evaluate_mutations(fn, match):
    failing(checks.check_evaluate, fn, match)


def test_verdict_reveals_no_code(capsys):
    with pytest.raises(CheckFailed):
        checks.check_nll(nll_bits)
    out = capsys.readouterr().out
    assert out.startswith("✗") and "Hint:" in out and "binary_cross_entropy" not in out


# ---------------------------------------------------------------- planted bugs in the solved notebook
# (solutions/01: the reference solution with one (old, new) replacement, as a learner would write it)

NOTEBOOK = SolutionCells("01_self_supervised_likelihood", ["t01_nll", "t02_bpd", "t03_fit", "t04_eval"])
BPD = "nats_per_image / (dims * math.log(2))"
FIT = "return (counts + alpha) / (images.shape[0] + alpha * levels)"


@pytest.mark.parametrize(
    "task, check, old, new, match",
    [
        # bits_per_dim: the message names the part of the formula that is wrong
        ("t02_bpd", "check_bits_per_dim", BPD, "(nats_per_image - 1) / (dims * math.log(2))", "numerator is wrong"),
        ("t02_bpd", "check_bits_per_dim", BPD, "nats_per_image / (dims + math.log(2))", "denominator is wrong"),
        ("t02_bpd", "check_bits_per_dim", BPD, "nats_per_image * (dims * math.log(2))", r"multiplied by D · ln 2"),
        # fit_independent: a numerator bug is not blamed on the denominator, and vice versa
        (
            "t03_fit",
            "check_fit_independent",
            "(counts + alpha)",
            "(counts - alpha)",
            "numerator is wrong.*denominator is right",
        ),
        ("t03_fit", "check_fit_independent", "(counts + alpha)", "(counts + alpha * levels)", "numerator is wrong"),
        (
            "t03_fit",
            "check_fit_independent",
            "images.shape[0] +",
            "images.shape[1] +",
            "denominator is wrong.*numerator is right",
        ),
        (
            "t03_fit",
            "check_fit_independent",
            FIT,
            "return (counts + alpha) * (images.shape[0] + alpha * levels)",
            "multiplied",
        ),
        # one_hot without num_classes: a level absent from the images is dropped
        (
            "t03_fit",
            "check_fit_independent",
            "F.one_hot(images.long(), levels)",
            "F.one_hot(images.long())",
            "level 3 never occurs.*dropped",
        ),
        # evaluate_nll: the caller's mode, the batch size, a float
        ("t04_eval", "check_evaluate", "model.train(was_training)", "pass", "left the model in eval mode"),
        (
            "t04_eval",
            "check_evaluate",
            "model.train(was_training)",
            "model.train()",
            "arrived in eval mode into train mode",
        ),
        ("t04_eval", "check_evaluate", "batch_size=batch_size, ", "", "ignores the batch_size argument"),
        ("t04_eval", "check_evaluate", ".sum().item()", ".sum()", "returned a tensor, not a float"),
        ("t04_eval", "check_evaluate", "count += x.shape[0]", "count += 1", "number of batches"),
        ("t04_eval", "check_evaluate", "total += nll", "total -= nll", "sign is wrong"),
        (
            "t04_eval",
            "check_evaluate",
            "total += nll(model(x), x).double().sum().item()",
            "total += nll(model(x), x).double().mean().item() * batch_size",
            "last batch as a full one",
        ),
    ],
)
def test_planted_bugs_in_the_solution_fail_with_their_own_message(task, check, old, new, match):
    failing(getattr(checks, check), NOTEBOOK.solution(task, (old, new)), match)


def test_an_error_inside_pytorch_is_not_taken_for_the_exercise_stub():
    # cross_entropy with its arguments swapped raises NotImplementedError inside PyTorch ("not implemented for
    # 'Long'"): that is an error in the learner's call, not an unfinished exercise
    swapped = NOTEBOOK.solution("t01_nll", ("F.cross_entropy(logits, x.long(),", "F.cross_entropy(x.long(), logits,"))
    with pytest.raises(CheckFailed, match="raised NotImplementedError: .*not implemented for 'Long'") as error:
        checks.check_nll(swapped)
    assert "not implemented yet" not in str(error.value)
    failing(checks.check_nll, NOTEBOOK.stub("t01_nll"), "not implemented yet")
