"""The discretized logistic mixture head: its K probabilities are a distribution, they equal the bin
masses computed directly, neighbouring levels share mass, and a model with the head keeps every promise
of the softmax head (likelihood, rebuilding from its configuration, clear errors)."""

import math

import pytest
import torch

from course_lib import (
    GatedPixelCNN,
    ImageDataset,
    PixelCNN,
    TrainConfig,
    Trainer,
    build_model,
    evaluate,
    load_model,
    log_prob_from_logits,
    nll,
    save_checkpoint,
)
from course_lib.errors import CourseError
from course_lib.logistic import MIN_LOG_SCALE, mixture_log_prob_at, mixture_log_probs, split_params


def params(*shape, mixtures=3, seed=0, scale=3.0):
    """Random head outputs (*shape, 3M) in float64, spread wide enough to reach the tails."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, 3 * mixtures, generator=g, dtype=torch.float64) * scale


def direct_probs(p, levels):
    """P(k) = sum_m pi_m (sigmoid((x_k + d - mu)/s) - sigmoid((x_k - d - mu)/s)), edges to -inf / +inf,
    computed plainly with sigmoids (float64): the definition the stable version must reproduce."""
    logit_pi, mu, log_s = split_params(p)
    pi, s = logit_pi.softmax(-1), log_s.exp()
    d = 1.0 / (levels - 1)
    probs = []
    for k in range(levels):
        x = -1.0 + 2.0 * k * d
        upper = torch.ones_like(mu) if k == levels - 1 else torch.sigmoid((x + d - mu) / s)
        lower = torch.zeros_like(mu) if k == 0 else torch.sigmoid((x - d - mu) / s)
        probs.append((pi * (upper - lower)).sum(-1))
    return torch.stack(probs, -1)


@pytest.mark.parametrize("levels", [3, 16, 256])
def test_probabilities_over_the_levels_sum_to_one(levels):
    p = params(500, seed=levels)
    log_probs = mixture_log_probs(p, levels)
    assert log_probs.shape == (500, levels)
    assert torch.isfinite(log_probs).all()
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(500, dtype=torch.float64), atol=1e-10)


@pytest.mark.parametrize("levels", [4, 256])
def test_bin_masses_equal_the_definition(levels):
    p = params(200, mixtures=2, seed=1, scale=1.5)
    assert torch.allclose(mixture_log_probs(p, levels).exp(), direct_probs(p, levels), atol=1e-12)


def test_edge_levels_take_the_tails():
    """A component centred far below -1 (tanh saturates at the edge) puts its mass on level 0, far
    above +1 on level K-1: nothing falls off the ends."""
    levels = 8
    low = torch.tensor([[0.0, -50.0, -3.0]], dtype=torch.float64)  # pi logit, mu (tanh -> -1), log s
    high = torch.tensor([[0.0, 50.0, -3.0]], dtype=torch.float64)
    assert mixture_log_probs(low, levels).exp()[0, 0] > 0.5
    assert mixture_log_probs(high, levels).exp()[0, -1] > 0.5


def test_a_narrow_component_between_two_levels_splits_its_mass_between_those_neighbours():
    """What a softmax cannot know: 242 and 243 are neighbours. A logistic centred half-way between levels
    k and k+1 gives each of them almost half its mass, and the levels around them almost none."""
    levels, k = 256, 242
    mu = -1.0 + (2 * k + 1) / (levels - 1)  # half-way between the centres of k and k + 1
    p = torch.tensor([[0.0, math.atanh(mu), math.log(0.2 / (levels - 1))]], dtype=torch.float64)
    probs = mixture_log_probs(p, levels).exp()[0]
    assert probs[k] > 0.45 and probs[k + 1] > 0.45
    assert probs[k] == pytest.approx(probs[k + 1].item(), rel=1e-6)
    assert probs[: k - 1].sum() + probs[k + 3 :].sum() < 1e-6


def test_extreme_parameters_give_finite_log_probs_and_gradients():
    p = torch.tensor(
        [[0.0, 0.0, -30.0], [0.0, 0.0, 30.0], [50.0, 80.0, -30.0], [-50.0, -80.0, 10.0]],
        dtype=torch.float32,
        requires_grad=True,
    )
    log_probs = mixture_log_probs(p, 256)
    assert torch.isfinite(log_probs).all()
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(4), atol=1e-4)
    log_probs[:, [0, 100, 255]].sum().backward()
    assert torch.isfinite(p.grad).all()
    assert split_params(p)[2].min() == MIN_LOG_SCALE == -7.0  # scales below e^-7 are clamped (PixelCNN++)


@pytest.mark.parametrize("cls", [GatedPixelCNN, PixelCNN])
def test_model_log_prob_is_the_sum_of_each_sub_pixel_log_probability(cls):
    torch.manual_seed(0)
    model = cls((3, 4, 5), levels=10, channels=6, head="logistic", mixtures=2).double().eval()
    x = torch.randint(0, 10, (3, 3, 4, 5))
    logits = model(x)
    assert logits.shape == (3, 10, 3, 4, 5)
    assert torch.allclose(logits.exp().sum(1), torch.ones(3, 3, 4, 5, dtype=torch.float64), atol=1e-10)
    by_hand = logits.gather(1, x[:, None]).squeeze(1).flatten(1).sum(1)
    assert torch.allclose(model.log_prob(x), by_hand.float(), atol=1e-4)  # the likelihood is scored in float32


def test_the_output_layer_has_3m_outputs_per_sub_pixel_whatever_the_number_of_levels():
    softmax = GatedPixelCNN((1, 8, 8), levels=256, channels=16, dilations=(1,))
    logistic = GatedPixelCNN((1, 8, 8), levels=256, channels=16, dilations=(1,), head="logistic", mixtures=5)
    assert softmax.out2.weight.shape == (256, 16, 1, 1)
    assert logistic.out2.weight.shape == (15, 16, 1, 1)
    colour = GatedPixelCNN((3, 8, 8), levels=4, channels=6, dilations=(1,), head="logistic", mixtures=5)
    assert colour.out2.weight.shape[0] == 3 * 15  # more outputs than a 4-way softmax: the head pays at large K
    x = torch.randint(0, 4, (2, 3, 8, 8))
    assert colour(x).shape == (2, 4, 3, 8, 8) and logistic(x[:, :1]).shape == (2, 256, 1, 8, 8)


@pytest.mark.parametrize("name", ["gated", "pixelcnn"])
def test_a_logistic_model_is_rebuilt_from_its_configuration_and_checkpoint(tmp_path, name):
    torch.manual_seed(0)
    size = dict(channels=4, dilations=(1,)) if name == "gated" else dict(channels=4, n_blocks=1)
    model = build_model(name, image_shape=(1, 5, 5), levels=16, head="logistic", mixtures=2, **size)
    assert model.config["head"] == "logistic" and model.config["mixtures"] == 2
    rebuilt = build_model(name, **model.config)
    assert rebuilt.head == "logistic" and rebuilt.out2.weight.shape == model.out2.weight.shape
    save_checkpoint(tmp_path / "logistic.pt", model)
    loaded = load_model(tmp_path / "logistic.pt")
    x = torch.randint(0, 16, (2, 1, 5, 5))
    assert torch.equal(loaded(x), model(x))
    assert "head" not in build_model(name, image_shape=(1, 5, 5), levels=16, **size).config


def test_a_single_logistic_component_is_allowed():
    model = GatedPixelCNN((1, 4, 4), levels=8, channels=4, dilations=(1,), head="logistic", mixtures=1)
    assert model.out2.weight.shape[0] == 3
    x = torch.randint(0, 8, (2, 1, 4, 4))
    torch.testing.assert_close(model(x).exp().sum(1), torch.ones(2, 1, 4, 4))


@pytest.mark.parametrize("levels", [2, 5])
def test_score_is_the_log_likelihood_for_the_softmax_and_bernoulli_heads_too(levels):
    """forward(..., score=True) means the same for every head: each image's log-likelihood."""
    torch.manual_seed(0)
    model = GatedPixelCNN((2, 4, 4), levels=levels, channels=4, dilations=(1,))
    x = torch.randint(0, levels, (3, 2, 4, 4))
    torch.testing.assert_close(model(x, score=True), log_prob_from_logits(model(x), x))


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(levels=16, head="mixture"), "head='mixture' is not known"),
        (dict(levels=2, head="logistic"), "levels > 2"),
        (dict(levels=16, head="logistic", mixtures=0), "mixtures >= 1"),
    ],
)
def test_bad_head_settings_stop_with_one_clear_sentence(kwargs, words):
    with pytest.raises(CourseError, match=words.replace("(", r"\(").replace(")", r"\)")):
        GatedPixelCNN((1, 5, 5), channels=4, dilations=(1,), **kwargs)


@pytest.mark.parametrize("levels", [3, 16, 256])
def test_the_observed_level_alone_has_the_probability_all_levels_give_it(levels):
    """mixture_log_prob_at (training's one-bin shortcut) equals mixture_log_probs at x, edges and extremes too."""
    g = torch.Generator().manual_seed(levels)
    params = torch.randn(4, 50, 9, generator=g, dtype=torch.float64) * 3
    params[0, :, 6:] = MIN_LOG_SCALE - 2  # narrow components (clamped)
    params[1, :, 3:6] = torch.linspace(-4, 4, 50, dtype=torch.float64)[:, None]  # means outside [-1, 1] (tanh)
    x = torch.randint(0, levels, (4, 50), generator=g)
    x[2, :10], x[3, :10] = 0, levels - 1  # the edge levels take the tails
    want = mixture_log_probs(params, levels).gather(-1, x[..., None]).squeeze(-1)
    got = mixture_log_prob_at(params, x, levels)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("cls", [GatedPixelCNN, PixelCNN])
def test_the_scoring_shortcut_and_its_gradients_match_the_full_log_probabilities(cls):
    """model.log_prob (and so training and evaluation) gives the same values and gradients as the K log-probs
    (both scored in float32, as every likelihood in the course)."""
    torch.manual_seed(0)
    kwargs = dict(channels=8, dilations=(1, 2)) if cls is GatedPixelCNN else dict(channels=8, n_blocks=1)
    model = cls(image_shape=(3, 5, 5), levels=7, head="logistic", mixtures=2, num_classes=3, **kwargs).double()
    x, labels = torch.randint(0, 7, (3, 3, 5, 5)), torch.tensor([0, 2, 1])
    full = model(x, labels).gather(1, x[:, None]).flatten(1).sum(1)  # float64 log-probs of all K levels at x
    grads = torch.autograd.grad(full.sum(), list(model.parameters()))
    short = model.log_prob(x, labels)
    torch.testing.assert_close(short.double(), full, rtol=1e-6, atol=1e-5)
    for a, b in zip(torch.autograd.grad(short.sum(), list(model.parameters())), grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def test_training_and_evaluation_score_a_logistic_model_with_its_likelihood():
    """fit's loss and evaluate's NLL are the model's log-likelihood (the shortcut feeds both)."""
    torch.manual_seed(0)
    model = GatedPixelCNN(image_shape=(1, 4, 4), levels=5, channels=4, dilations=(1,), head="logistic", mixtures=2)
    data = ImageDataset("toy", torch.rand(6, 1, 4, 4), torch.zeros(6, dtype=torch.long), levels=5)
    x = data.images
    want = -log_prob_from_logits(model(x), x)
    torch.testing.assert_close(nll(model, x), want)
    assert evaluate(model, data)["nats"] == pytest.approx(want.double().mean().item(), rel=1e-6)
    trainer = Trainer(model, data, None, TrainConfig(epochs=1, batch_size=6), device="cpu")
    torch.testing.assert_close(trainer.loss(x, torch.zeros(6, dtype=torch.long)), want.mean())


def test_a_subclass_whose_forward_knows_no_score_argument_still_trains_and_scores():
    """The shortcut is the logistic head's alone: a learner's own softmax/Bernoulli subclass (lesson 02's
    plain convolution) keeps its forward(x, labels=None)."""
    from torch import nn

    from course_lib.models import AutoregressiveImageModel

    class Plain(AutoregressiveImageModel):
        def __init__(self):
            super().__init__((1, 4, 4), levels=2, num_classes=None)
            self.conv = nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x, labels=None):
            return self.conv(self.scale(x))

    model = Plain()
    data = ImageDataset("toy", torch.rand(6, 1, 4, 4), torch.zeros(6, dtype=torch.long))
    want = -log_prob_from_logits(model(data.images), data.images)
    torch.testing.assert_close(nll(model, data.images), want)
    assert evaluate(model, data)["nats"] == pytest.approx(want.double().mean().item(), rel=1e-6)
    trainer = Trainer(model, data, None, TrainConfig(epochs=1, batch_size=6), device="cpu")
    torch.testing.assert_close(trainer.loss(data.images, torch.zeros(6, dtype=torch.long)), want.mean())
