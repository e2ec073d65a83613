"""The output heads: each reads the last layer's numbers as one distribution per sub-pixel, lays its logits out
as the rest of the course expects, scores images exactly as those logits do, and gives the cached sampler the
same logits for one position; a bad choice of head stops with one clear sentence."""

import math

import pytest
import torch

from course_lib.errors import CourseError
from course_lib.heads import (
    HEADS,
    BernoulliHead,
    LogisticMixtureHead,
    SoftmaxHead,
    log_prob_from_logits,
    make_head,
)
from course_lib.logistic import mixture_log_probs


def outputs(head, channels=3, batch=2, height=4, width=5, seed=0):
    """Random last-layer outputs (B, C*K', H, W) for `head`, float64."""
    g = torch.Generator().manual_seed(seed)
    k = head.outputs_per_channel
    return torch.randn(batch, channels * k, height, width, generator=g, dtype=torch.float64) * 2


@pytest.mark.parametrize(
    "levels, head, kind, per_channel",
    [
        (2, "softmax", BernoulliHead, 1),
        (5, "softmax", SoftmaxHead, 5),
        (256, "softmax", SoftmaxHead, 256),
        (16, "logistic", LogisticMixtureHead, 6),
    ],
)
def test_make_head_picks_the_head_and_its_number_of_outputs(levels, head, kind, per_channel):
    made = make_head(levels, head, mixtures=2)
    assert type(made) is kind and made.outputs_per_channel == per_channel and made.levels == levels
    assert made.scores_itself == (kind is LogisticMixtureHead)  # only the mixture scores more cheaply itself
    assert HEADS == ("softmax", "logistic")


def test_bernoulli_logits_are_the_output_itself():
    head = make_head(2)
    out = outputs(head)
    assert head.logits(out) is out
    x = (torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(1)) < 0.5).long()
    want = -torch.nn.functional.binary_cross_entropy_with_logits(out, x.double(), reduction="none").sum((1, 2, 3))
    torch.testing.assert_close(head.log_prob(out, x), want.float())


def test_softmax_logits_put_the_levels_in_dimension_one_channel_by_channel():
    """Output channel c*K + k is level k of image channel c: (B, C*K, H, W) -> (B, K, C, H, W)."""
    head = make_head(4)
    out = outputs(head)
    logits = head.logits(out)
    assert logits.shape == (2, 4, 3, 4, 5)
    for c in range(3):
        for k in range(4):
            assert torch.equal(logits[:, k, c], out[:, c * 4 + k])


@pytest.mark.parametrize("levels, head", [(2, "softmax"), (6, "softmax"), (6, "logistic")])
def test_a_heads_score_is_the_log_likelihood_of_its_logits_in_float32(levels, head):
    made = make_head(levels, head, mixtures=3)
    out = outputs(made)
    x = torch.randint(0, levels, (2, 3, 4, 5), generator=torch.Generator().manual_seed(2))
    score = made.log_prob(out, x)
    assert score.dtype == torch.float32 and score.shape == (2,)
    torch.testing.assert_close(score, log_prob_from_logits(made.logits(out), x), rtol=1e-5, atol=1e-4)


def test_the_mixtures_logits_are_the_k_log_probabilities_of_each_sub_pixel():
    head = make_head(7, "logistic", mixtures=2)
    out = outputs(head, channels=2)
    logits = head.logits(out)
    assert logits.shape == (2, 7, 2, 4, 5)
    torch.testing.assert_close(logits.exp().sum(1), torch.ones(2, 2, 4, 5, dtype=torch.float64))
    params = out[:, 6:12, 1, 3]  # channel 1 at position (1, 3): its 3M = 6 numbers
    torch.testing.assert_close(logits[:, :, 1, 1, 3], mixture_log_probs(params, 7))


@pytest.mark.parametrize("levels, head", [(2, "softmax"), (5, "softmax"), (5, "logistic")])
def test_one_positions_logits_equal_the_whole_images_logits_there(levels, head):
    """What the cached sampler reads at one position (channel_logits) is the forward pass's logits there."""
    made = make_head(levels, head, mixtures=2)
    out = outputs(made)
    logits = made.logits(out)
    for c in range(3):
        one = made.channel_logits(out[:, :, 2, 1], c)
        want = logits[:, c, 2, 1] if levels == 2 else logits[:, :, c, 2, 1]
        assert one.shape == want.shape
        torch.testing.assert_close(one, want)


def test_log_prob_from_logits_sums_every_sub_pixel_in_nats():
    bern = torch.zeros(1, 2, 1, 2)  # P = 1/2 everywhere: 4 sub-pixels
    assert log_prob_from_logits(bern, torch.ones(1, 2, 1, 2)).item() == pytest.approx(4 * math.log(0.5))
    cat = torch.zeros(1, 3, 1, 1, 2)  # 3 levels, uniform: 2 sub-pixels
    assert log_prob_from_logits(cat, torch.tensor([[[[0, 2]]]])).item() == pytest.approx(2 * math.log(1 / 3))


@pytest.mark.parametrize(
    "args, words",
    [
        ((1,), "levels=1 is not supported"),
        ((257,), "levels=257 is not supported"),
        ((16, "mixture"), "head='mixture' is not known"),
        ((2, "logistic"), "levels > 2"),
        ((16, "logistic", 0), "mixtures >= 1"),
    ],
)
def test_bad_head_settings_stop_with_one_clear_sentence(args, words):
    with pytest.raises(CourseError, match=words.replace("(", r"\(").replace(")", r"\)")):
        make_head(*args)


def test_the_edge_levels_are_allowed():
    assert make_head(2).levels == 2 and make_head(256).outputs_per_channel == 256
    assert make_head(3, "logistic", 1).outputs_per_channel == 3


@pytest.mark.parametrize("dtype", [torch.long, torch.uint8, torch.float64])
def test_images_of_any_dtype_are_scored_in_float32(dtype):
    """Images stored as floats (float64 here) or bytes are scored like integer ones, in float32."""
    bern, x = torch.tensor([[[[2.0, -1.0]]]]), torch.tensor([[[[1, 0]]]])
    want = log_prob_from_logits(bern, x)
    got = log_prob_from_logits(bern, x.to(dtype))
    assert got.dtype == torch.float32 and got.item() == pytest.approx(want.item())
    cat = torch.randn(1, 3, 1, 1, 2, dtype=torch.float64)
    x = torch.tensor([[[[0, 2]]]])
    assert log_prob_from_logits(cat, x.to(dtype) if dtype != torch.float64 else x).dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_logits_of_any_precision_are_scored_in_float32(dtype):
    """Under autocast the logits come in bf16 or fp16: the likelihood is still computed in float32, exactly as
    from the same logits converted first."""
    g = torch.Generator().manual_seed(3)
    bern = (torch.randn(4, 1, 8, 8, generator=g) * 20).to(dtype)
    x = (torch.rand(4, 1, 8, 8, generator=g) < 0.5).long()
    assert torch.equal(log_prob_from_logits(bern, x), log_prob_from_logits(bern.float(), x))
    cat = (torch.randn(4, 5, 1, 8, 8, generator=g) * 20).to(dtype)
    x = torch.randint(0, 5, (4, 1, 8, 8), generator=g)
    assert torch.equal(log_prob_from_logits(cat, x), log_prob_from_logits(cat.float(), x))
