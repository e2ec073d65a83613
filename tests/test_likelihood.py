"""bits/dim arithmetic and the independent-pixel baseline against hand computations."""
import math

import pytest
import torch

from course_lib import IndependentPixelModel, bits_per_dim, evaluate, log_prob_from_logits, nll
from course_lib.data import ImageDataset


def test_bits_per_dim_by_hand():
    # 784 binary pixels each with probability 1/2: 784 * ln 2 nats = exactly 1 bit per dimension
    assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    # 100 nats over a 3x32x32 image
    assert bits_per_dim(100.0, 3 * 32 * 32) == pytest.approx(100 / (3072 * 0.6931471805599453))


def test_bernoulli_log_prob_sums_over_pixels():
    logits = torch.tensor([[[[0.0, math.log(3)]]]])  # p(1) = 1/2 and 3/4
    x = torch.tensor([[[[1, 0]]]])
    assert log_prob_from_logits(logits, x).item() == pytest.approx(math.log(0.5) + math.log(0.25))


def test_categorical_log_prob_sums_over_channels_and_pixels():
    probs = torch.tensor([0.2, 0.3, 0.5])
    logits = probs.log().view(1, 3, 1, 1, 1).expand(2, 3, 2, 1, 2)  # (B, K, C, H, W)
    x = torch.tensor([[[[0, 2]], [[1, 1]]], [[[2, 2]], [[2, 2]]]])  # (B=2, C=2, H=1, W=2)
    expected = [math.log(0.2 * 0.5 * 0.3 * 0.3), 4 * math.log(0.5)]
    assert log_prob_from_logits(logits, x).tolist() == pytest.approx(expected)


def _toy_dataset():
    # 4 images of 1x1x2: pixel 0 is on in 3 of 4 images, pixel 1 in 1 of 4
    x = torch.tensor([[1, 0], [1, 1], [1, 0], [0, 0]], dtype=torch.float32).view(4, 1, 1, 2)
    return ImageDataset("toy", x, torch.zeros(4))


def test_independent_baseline_by_hand():
    data = _toy_dataset()
    model = IndependentPixelModel.fit(data, alpha=1.0)
    # with one pseudo-count per level: p0 = (3+1)/(4+2) = 2/3, p1 = (1+1)/(4+2) = 1/3
    assert model.probs[1, 0, 0].tolist() == pytest.approx([2 / 3, 1 / 3])
    # NLL of image [1, 0] = -ln(2/3) - ln(2/3); of [0, 1] = -ln(1/3) - ln(1/3)
    x = torch.tensor([[[[1, 0]]], [[[0, 1]]]])
    assert nll(model, x).tolist() == pytest.approx([-2 * math.log(2 / 3), -2 * math.log(1 / 3)])


def test_evaluate_covers_every_image_and_averages_per_image():
    data = _toy_dataset()
    model = IndependentPixelModel.fit(data, alpha=0.0)  # maximum likelihood: 3/4 and 1/4
    per_image = [-(math.log(3 / 4) + math.log(3 / 4)), -(math.log(3 / 4) + math.log(1 / 4)),
                 -(math.log(3 / 4) + math.log(3 / 4)), -(math.log(1 / 4) + math.log(3 / 4))]
    result = evaluate(model, data, batch_size=3)  # 3 + 1: the last, partial batch must count
    assert result["n_images"] == 4
    assert result["nats"] == pytest.approx(sum(per_image) / 4)
    assert result["bpd"] == pytest.approx(sum(per_image) / 4 / (2 * math.log(2)))


def test_baseline_on_mnist_subset_is_about_206_nats():
    from course_lib import load_dataset
    train, test = load_dataset("mnist-subset", "train"), load_dataset("mnist-subset", "test")
    result = evaluate(IndependentPixelModel.fit(train), test)
    assert result["n_images"] == 1000
    assert 190 < result["nats"] < 220
