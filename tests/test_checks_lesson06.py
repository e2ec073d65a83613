"""The lesson 06 checks: every reference solution passes, the exercise stubs fail as "not implemented", and
planted bugs (mutations of the solution taken from solutions/06_levels_and_colour.py) fail with their own
message."""

import re

import pytest
from solution_cells import SolutionCells, assert_checks_leave_global_state_alone

from coursework.checks import CheckFailed, lesson06

TASKS = ["t06_discretized_logistic", "t06_mixture", "t06_centre_mask"]
NOTEBOOK = SolutionCells("06_levels_and_colour", TASKS)
solution, stub = NOTEBOOK.solution, NOTEBOOK.stub
CHECKS = {
    "t06_discretized_logistic": lesson06.check_discretized_logistic,
    "t06_mixture": lesson06.check_mixture,
    "t06_centre_mask": lesson06.check_centre_mask,
}

TAILS = "torch.cat([F.logsigmoid(hi[..., :1]), inner[..., 1:-1], F.logsigmoid(-lo[..., -1:])], dim=-1)"
MUTANTS = {
    # task 1: one discretized logistic
    "probabilities": (
        "t06_discretized_logistic",
        [(f"return {TAILS}", f"return {TAILS}.exp()")],
        "not log-probabilities",
    ),
    "no tails": ("t06_discretized_logistic", [(f"return {TAILS}", "return inner")], "lack their tails"),
    "renormalised instead of tails": (
        "t06_discretized_logistic",
        [(f"return {TAILS}", "return inner.log_softmax(-1)")],
        "renormalising the bins does not replace them",
    ),
    "half-width 1/K": (
        "t06_discretized_logistic",
        [("half = 1.0 / (levels - 1)", "half = 1.0 / levels")],
        "wrong width",
    ),
    "full width as half-width": (
        "t06_discretized_logistic",
        [("half = 1.0 / (levels - 1)", "half = 2.0 / (levels - 1)")],
        "wrong width",
    ),
    "levels on [0, 1]": (
        "t06_discretized_logistic",
        [
            ("torch.linspace(-1.0, 1.0, levels,", "torch.linspace(0.0, 1.0, levels,"),
            ("1.0 / (levels - 1)", "0.5 / (levels - 1)"),
        ],
        "on [0, 1]",
    ),
    "log-scale as scale": (
        "t06_discretized_logistic",
        [("inv_s = torch.exp(-log_scale)[..., None]", "inv_s = 1 / log_scale[..., None]")],
        "log-scale was used as the scale",
    ),
    "multiplied by the scale": (
        "t06_discretized_logistic",
        [("inv_s = torch.exp(-log_scale)[..., None]", "inv_s = torch.exp(log_scale)[..., None]")],
        "multiplied by the scale",
    ),
    "mean added": (
        "t06_discretized_logistic",
        [("- mean[..., None]) * inv_s", "+ mean[..., None]) * inv_s")],
        "mirrored",
    ),
    "difference of sigmoids": (
        "t06_discretized_logistic",
        [
            (
                "inner = F.logsigmoid(hi) + F.logsigmoid(-lo) + torch.log(-torch.expm1(lo - hi))",
                "inner = torch.log(torch.sigmoid(hi) - torch.sigmoid(lo))",
            )
        ],
        "-inf or NaN",
    ),
    "tail as 1 - sigmoid": (
        "t06_discretized_logistic",
        [("F.logsigmoid(-lo[..., -1:])", "torch.log(1 - torch.sigmoid(lo[..., -1:]))")],
        "log(1 - sigmoid(a)) as logsigmoid(-a)",
    ),
    "levels first": (
        "t06_discretized_logistic",
        [(f"return {TAILS}", f"return {TAILS}.movedim(-1, 0)")],
        "new last dimension",
    ),
    "inputs changed in place": (
        "t06_discretized_logistic",
        [("inv_s = torch.exp(-log_scale)[..., None]", "log_scale.neg_()\n    inv_s = torch.exp(log_scale)[..., None]")],
        "changed its input tensors in place",
    ),
    "only 2-D inputs": (
        "t06_discretized_logistic",
        [
            ("mean[..., None]", "mean.unsqueeze(2)"),
            ("torch.exp(-log_scale)[..., None]", "torch.exp(-log_scale).unsqueeze(2)"),
        ],
        "raised RuntimeError",
    ),
    "naive difference, clamped": (
        "t06_discretized_logistic",
        [
            (
                "inner = F.logsigmoid(hi) + F.logsigmoid(-lo) + torch.log(-torch.expm1(lo - hi))",
                "inner = torch.log((torch.sigmoid(hi) - torch.sigmoid(lo)).clamp(min=1e-12))",
            ),
            ("F.logsigmoid(-lo[..., -1:])", "torch.log((1 - torch.sigmoid(lo[..., -1:])).clamp(min=1e-12))"),
            ("F.logsigmoid(hi[..., :1])", "torch.log(torch.sigmoid(hi[..., :1]).clamp(min=1e-12))"),
        ],
        "right for likely levels but wrong for unlikely ones",
    ),
    # task 2: the mixture
    "raw logits as weights": (
        "t06_mixture",
        [("log_pi = F.log_softmax(logit_pi, dim=-1)[..., None]", "log_pi = logit_pi[..., None]")],
        "raw logits",
    ),
    "weights over the batch": (
        "t06_mixture",
        [("F.log_softmax(logit_pi, dim=-1)", "F.log_softmax(logit_pi, dim=0)")],
        "wrong dimension",
    ),
    "probabilities as log-weights": (
        "t06_mixture",
        [("F.log_softmax(logit_pi, dim=-1)", "F.softmax(logit_pi, dim=-1)")],
        "added as probabilities",
    ),
    "sum of log-probabilities": (
        "t06_mixture",
        [("torch.logsumexp(log_pi + components, dim=-2)", "(log_pi + components).sum(-2)")],
        "a mixture adds probabilities",
    ),
    "weighted log-probabilities": (
        "t06_mixture",
        [("torch.logsumexp(log_pi + components, dim=-2)", "(log_pi.exp() * components).sum(-2)")],
        "averaged the components",
    ),
    "log of a weighted sum (underflows)": (
        "t06_mixture",
        [("torch.logsumexp(log_pi + components, dim=-2)", "(log_pi.exp() * components.exp()).sum(-2).log()")],
        "-inf or NaN",
    ),
    "logsumexp over the levels": (
        "t06_mixture",
        [("torch.logsumexp(log_pi + components, dim=-2)", "torch.logsumexp(log_pi + components, dim=-1)")],
        "shape",
    ),
    "logits normalised in place": (
        "t06_mixture",
        [
            (
                "log_pi = F.log_softmax(logit_pi, dim=-1)[..., None]",
                "logit_pi -= logit_pi.logsumexp(-1, keepdim=True)\n    log_pi = logit_pi[..., None]",
            )
        ],
        "changed its input tensors in place",
    ),
    "squeezed components": (
        "t06_mixture",
        [
            (
                "components = discretized_logistic(mean, log_scale, levels)",
                "components = discretized_logistic(mean, log_scale, levels).squeeze()",
            )
        ],
        "1 component",
    ),
    # task 3: colour order at the centre of a mask
    "A and B swapped": ("t06_centre_mask", [('if mask_type == "A":', 'if mask_type == "B":')], "not mask"),
    "order reversed": (
        "t06_centre_mask",
        [
            ("group_out[:, None] > group_in[None, :]", "group_out[:, None] < group_in[None, :]"),
            ("group_out[:, None] >= group_in[None, :]", "group_out[:, None] <= group_in[None, :]"),
        ],
        "reversed",
    ),  # fmt: skip
    "interleaved groups": (
        "t06_centre_mask",
        [
            ("torch.arange(in_channels) * data_channels // in_channels", "torch.arange(in_channels) % data_channels"),
            (
                "torch.arange(out_channels) * data_channels // out_channels",
                "torch.arange(out_channels) % data_channels",
            ),
        ],
        "interleaved",
    ),  # fmt: skip
    "blocks of n // groups": (
        "t06_centre_mask",
        [
            (
                "torch.arange(in_channels) * data_channels // in_channels",
                "torch.arange(in_channels) // (in_channels // data_channels)",
            ),
            (
                "torch.arange(out_channels) * data_channels // out_channels",
                "torch.arange(out_channels) // (out_channels // data_channels)",
            ),
        ],
        "differs from the reference",
    ),  # fmt: skip
    "transposed": ("t06_centre_mask", [("return allowed.float()", "return allowed.float().T")], "swapped"),
    "all ones": (
        "t06_centre_mask",
        [("return allowed.float()", "return torch.ones_like(allowed.float())")],
        "every link is open",
    ),
    "a list": ("t06_centre_mask", [("return allowed.float()", "return allowed.float().tolist()")], "not a tensor"),
    "a boolean mask": ("t06_centre_mask", [("return allowed.float()", "return allowed")], "not a float one"),
}


@pytest.mark.parametrize("grade_id", TASKS)
def test_reference_solution_passes(grade_id, capsys):
    assert CHECKS[grade_id](solution(grade_id)).startswith("✓")


@pytest.mark.parametrize("grade_id", TASKS)
def test_stub_fails_as_not_implemented(grade_id, capsys):
    with pytest.raises(CheckFailed, match="not implemented"):
        CHECKS[grade_id](stub(grade_id))


@pytest.mark.parametrize("bug", list(MUTANTS))
def test_planted_bug_fails_with_its_message(bug, capsys):
    grade_id, replacements, message = MUTANTS[bug]
    fn = solution(grade_id, *replacements)
    capsys.readouterr()
    with pytest.raises(CheckFailed, match=re.escape(message)):
        CHECKS[grade_id](fn)
    out = capsys.readouterr().out
    assert out.startswith("✗") and message in out and "Hint:" in out


def test_a_wrong_component_fails_the_mixture_check():
    """A mixture built on a wrong discretized logistic (no tails) does not pass."""
    wrong = solution("t06_discretized_logistic", (f"return {TAILS}", "return inner"))
    mixture = solution("t06_mixture")
    mixture.__globals__["discretized_logistic"] = wrong
    with pytest.raises(CheckFailed, match="check your discretized_logistic first"):
        lesson06.check_mixture(mixture)


def test_checks_leave_global_state_alone():
    """The checks use their own seeds and restore the thread setting."""
    calls = [
        (lesson06.check_discretized_logistic, solution("t06_discretized_logistic")),
        (lesson06.check_mixture, solution("t06_mixture")),
        (lesson06.check_centre_mask, solution("t06_centre_mask")),
    ]
    assert_checks_leave_global_state_alone(calls)
