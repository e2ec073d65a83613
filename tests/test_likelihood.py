"""bits/dim arithmetic, log-likelihoods, the independent-pixel baseline and `evaluate`, against hand computations."""

import math

import pytest
import torch
import torch.nn as nn
from torch.utils.data import Subset

import course_lib.likelihood as likelihood
from course_lib import IndependentPixelModel, bits_per_dim, evaluate, log_prob_from_logits, nll
from course_lib.data import ImageDataset

LN2 = math.log(2)


class Spy(nn.Module):
    """A model that records how it is called; its Bernoulli logits are 0 (p = 1/2): ln 2 nats per dimension."""

    def __init__(self, num_classes=None, param_device="cpu"):
        super().__init__()
        self.num_classes = num_classes
        self.weight = nn.Parameter(torch.zeros((), device=param_device))
        self.calls = []

    def forward(self, x, labels=None):
        self.calls.append(
            {
                "training": self.training,
                "grad": torch.is_grad_enabled(),
                "labels": labels,
                "device": x.device,
                "n": x.shape[0],
            }
        )
        return torch.zeros(x.shape)


def _toy_dataset():
    # 4 images of 1x1x2: pixel 0 is on in 3 of 4 images, pixel 1 in 1 of 4
    x = torch.tensor([[1, 0], [1, 1], [1, 0], [0, 0]], dtype=torch.float32).view(4, 1, 1, 2)
    return ImageDataset("toy", x, torch.tensor([0, 1, 2, 1]))


def _random_dataset(n, shape, levels, seed=0):
    x = torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))
    return ImageDataset("random", x, torch.arange(n) % 3, levels=levels)


# -- bits per dimension and log-likelihoods ----------------------------------------------------------------
def test_bits_per_dim_by_hand():
    # 784 binary pixels each with probability 1/2: 784 * ln 2 nats = exactly 1 bit per dimension
    assert bits_per_dim(784 * LN2, 784) == pytest.approx(1.0)
    # 100 nats over a 3x32x32 image
    assert bits_per_dim(100.0, 3 * 32 * 32) == pytest.approx(100 / (3072 * 0.6931471805599453))
    assert bits_per_dim(torch.tensor([2 * LN2, 4 * LN2]), 2).tolist() == pytest.approx([1.0, 2.0])


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


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64, torch.float32])
def test_log_prob_accepts_levels_of_any_dtype(dtype):
    bern = torch.tensor([[[[0.0, math.log(3)]]]])
    assert log_prob_from_logits(bern, torch.tensor([[[[1, 0]]]], dtype=dtype)).item() == pytest.approx(
        math.log(0.5 * 0.25)
    )
    cat = torch.tensor([0.2, 0.3, 0.5]).log().view(1, 3, 1, 1, 1).expand(1, 3, 1, 1, 2)
    assert log_prob_from_logits(cat, torch.tensor([[[[0, 2]]]], dtype=dtype)).item() == pytest.approx(
        math.log(0.2 * 0.5)
    )


def test_half_precision_logits_are_scored_in_float32():
    """Mixed-precision models emit bfloat16 logits; the log-likelihood must still be float32-accurate."""
    g = torch.Generator().manual_seed(0)
    bern = (torch.randn(2, 1, 16, 16, generator=g) * 3).bfloat16()
    x = torch.randint(0, 2, (2, 1, 16, 16), generator=g)
    ref = -nn.functional.binary_cross_entropy_with_logits(bern.double(), x.double(), reduction="none").sum((1, 2, 3))
    got = log_prob_from_logits(bern, x)
    assert got.dtype == torch.float32 and got.tolist() == pytest.approx(ref.tolist(), rel=1e-6)
    cat = (torch.randn(2, 4, 3, 8, 8, generator=g) * 3).bfloat16()
    x = torch.randint(0, 4, (2, 3, 8, 8), generator=g)
    ref = -nn.functional.cross_entropy(cat.double(), x, reduction="none").sum((1, 2, 3))
    got = log_prob_from_logits(cat, x)
    assert got.dtype == torch.float32 and got.tolist() == pytest.approx(ref.tolist(), rel=1e-6)


def test_nll_is_minus_log_prob_and_passes_labels_to_the_model():
    model = Spy(num_classes=3)
    x, labels = torch.ones(2, 1, 2, 3, dtype=torch.long), torch.tensor([2, 0])
    assert nll(model, x, labels).tolist() == pytest.approx([6 * LN2, 6 * LN2])
    assert model.calls[-1]["labels"] is labels
    nll(model, x)
    assert model.calls[-1]["labels"] is None


# -- the independent-pixel baseline ------------------------------------------------------------------------
@pytest.mark.parametrize("levels", [2, 4])
def test_unfitted_baseline_is_uniform_over_the_levels(levels):
    model = IndependentPixelModel((3, 2, 2), levels=levels)
    assert model.probs.shape == (levels, 3, 2, 2)
    assert torch.allclose(model.probs, torch.full((levels, 3, 2, 2), 1 / levels))
    x = torch.zeros(5, 3, 2, 2, dtype=torch.long)
    assert nll(model, x).tolist() == pytest.approx([12 * math.log(levels)] * 5)
    logits = model(x)
    assert logits.shape == ((5, 3, 2, 2) if levels == 2 else (5, levels, 3, 2, 2))  # the models' layouts


def test_independent_baseline_by_hand():
    data = _toy_dataset()
    model = IndependentPixelModel.fit(data, alpha=1.0)
    # with one pseudo-count per level: p0 = (3+1)/(4+2) = 2/3, p1 = (1+1)/(4+2) = 1/3
    assert model.probs[1, 0, 0].tolist() == pytest.approx([2 / 3, 1 / 3])
    # NLL of image [1, 0] = -ln(2/3) - ln(2/3); of [0, 1] = -ln(1/3) - ln(1/3)
    x = torch.tensor([[[[1, 0]]], [[[0, 1]]]])
    assert nll(model, x).tolist() == pytest.approx([-2 * math.log(2 / 3), -2 * math.log(1 / 3)])
    assert model.log_prob(x).tolist() == pytest.approx([2 * math.log(2 / 3), 2 * math.log(1 / 3)])
    assert model.forward(x).shape == (2, 1, 1, 2)


def test_baseline_smoothing_normalises_with_the_number_of_levels():
    # 4 levels, one sub-pixel, 3 images at levels 0, 0, 3: p = (n_k + alpha) / (3 + 4 * alpha)
    x = torch.tensor([0.0, 0.1, 0.9]).view(3, 1, 1, 1)
    data = ImageDataset("toy", x, torch.zeros(3), levels=4)
    model = IndependentPixelModel.fit(data, alpha=0.5)
    assert model.levels == 4 and model.image_shape == (1, 1, 1)
    assert model.probs[:, 0, 0, 0].tolist() == pytest.approx([2.5 / 5, 0.5 / 5, 0.5 / 5, 1.5 / 5])
    assert nll(model, torch.tensor([[[[3]]]])).item() == pytest.approx(-math.log(1.5 / 5))


def test_baseline_fits_every_sub_pixel_of_colour_images_exactly():
    """Counts per level of every (channel, row, column), smoothed, in float64 and rounded once to float32."""
    data = _random_dataset(2500, (3, 4, 5), levels=5)
    alpha = 0.3
    model = IndependentPixelModel.fit(data, alpha=alpha)
    counts = torch.stack([(data.images == k).sum(0) for k in range(5)]).double()  # (K, C, H, W)
    expected = ((counts + alpha) / (len(data) + 5 * alpha)).log().float()
    assert model.log_probs.dtype == torch.float32 and torch.equal(model.log_probs, expected)
    assert torch.allclose(model.probs.sum(0), torch.ones(3, 4, 5))


# -- evaluate -----------------------------------------------------------------------------------------------
def test_evaluate_covers_every_image_and_averages_per_image():
    data = _toy_dataset()
    model = IndependentPixelModel.fit(data, alpha=0.0)  # maximum likelihood: 3/4 and 1/4
    per_image = [
        -(math.log(3 / 4) + math.log(3 / 4)),
        -(math.log(3 / 4) + math.log(1 / 4)),
        -(math.log(3 / 4) + math.log(3 / 4)),
        -(math.log(1 / 4) + math.log(3 / 4)),
    ]
    result = evaluate(model, data, batch_size=3)  # 3 + 1: the last, partial batch must count
    assert set(result) == {"nats", "bpd", "n_images"}
    assert result["n_images"] == 4 and isinstance(result["n_images"], int)
    assert result["nats"] == pytest.approx(sum(per_image) / 4)
    assert result["bpd"] == pytest.approx(sum(per_image) / 4 / (2 * LN2))


def test_evaluate_bits_per_dim_counts_every_channel():
    data = _random_dataset(7, (3, 2, 2), levels=2)
    model = Spy()
    result = evaluate(model, data, batch_size=3)
    assert [c["n"] for c in model.calls] == [3, 3, 1]
    assert result["nats"] == pytest.approx(12 * LN2) and result["bpd"] == pytest.approx(1.0)  # D = C*H*W = 12


@pytest.mark.parametrize("indices", [[5], [6, 2, 0]])
def test_evaluate_reads_the_dimensions_of_a_plain_dataset_from_its_images(indices):
    """A Subset has no image_shape: D = C*H*W comes from an image, even for a one-image subset."""
    data = Subset(_random_dataset(7, (3, 2, 2), levels=2), indices)
    result = evaluate(Spy(), data, batch_size=2)
    assert result["n_images"] == len(indices)
    assert result["nats"] == pytest.approx(12 * LN2) and result["bpd"] == pytest.approx(1.0)


def test_evaluate_runs_in_eval_mode_without_gradients_and_restores_the_mode():
    data = _toy_dataset()
    model = Spy().train()
    evaluate(model, data, batch_size=2)
    assert [(c["training"], c["grad"]) for c in model.calls] == [(False, False)] * 2
    assert model.training
    model.eval()
    evaluate(model, data)
    assert not model.training


def test_evaluate_passes_labels_only_to_conditional_models():
    data = _toy_dataset()
    conditional, unconditional = Spy(num_classes=3), Spy()
    evaluate(conditional, data, batch_size=2)
    evaluate(unconditional, data, batch_size=2)
    assert [c["labels"].tolist() for c in conditional.calls] == [[0, 1], [2, 1]]  # in order, batch by batch
    assert [c["labels"] for c in unconditional.calls] == [None, None]


def test_evaluate_accumulates_in_float64():
    """Per-image NLLs of 2**25 and ~3.05 nats: a float32 sum would lose the small one's fraction."""

    class TwoScale(nn.Module):
        def forward(self, x, labels=None):  # x = 1: logit -2**25 (NLL 2**25); x = 0: logit 3 (NLL softplus(3))
            return torch.where(x == 1, torch.tensor(-(2.0**25)), torch.tensor(3.0))

    data = ImageDataset("toy", torch.tensor([1.0, 0.0]).view(2, 1, 1, 1), torch.zeros(2))
    per_image = nll(TwoScale(), data.images).tolist()
    assert per_image == [2.0**25, pytest.approx(math.log1p(math.exp(3)), rel=1e-6)]
    assert evaluate(TwoScale(), data, batch_size=2)["nats"] == pytest.approx(sum(per_image) / 2, rel=1e-12)


def test_evaluate_moves_images_to_the_requested_device():
    data = _toy_dataset()
    model = Spy()  # parameters on the CPU: images go there by default
    evaluate(model, data)
    assert model.calls[-1]["device"] == torch.device("cpu")
    meta = Spy(param_device="meta")  # an explicit device wins over the model's own
    assert evaluate(meta, data, device=torch.device("cpu"))["nats"] == pytest.approx(2 * LN2)
    assert meta.calls[-1]["device"] == torch.device("cpu")


def test_evaluate_outside_distributed_mode_scores_everything_alone(monkeypatch):
    """distributed=False inside a torchrun job (e.g. rank 1 of 2): all images, and no collective call."""

    def no_collectives(*args, **kwargs):
        raise AssertionError("all_reduce_sum called without distributed=True")

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(likelihood, "all_reduce_sum", no_collectives)
    data = _toy_dataset()
    model = Spy()
    assert evaluate(model, data, batch_size=3)["n_images"] == 4
    assert sum(c["n"] for c in model.calls) == 4


def test_distributed_evaluate_scores_disjoint_slices_and_adds_them_up(monkeypatch):
    data = _random_dataset(5, (1, 2, 3), levels=2, seed=1)
    model = IndependentPixelModel.fit(_random_dataset(20, (1, 2, 3), levels=2, seed=2))
    per_image = nll(model, data.images).double().tolist()
    sent = {}
    for rank in (0, 1):

        def fake_all_reduce(total, count, device=None, rank=rank):
            sent[rank] = (total, count, device)
            return [sum(per_image), 5.0]  # what the sum over both processes gives

        monkeypatch.setattr(likelihood, "world", lambda rank=rank: (rank, 2, rank))
        monkeypatch.setattr(likelihood, "all_reduce_sum", fake_all_reduce)
        result = evaluate(model, data, batch_size=2, distributed=True)
        assert result["n_images"] == 5 and result["nats"] == pytest.approx(sum(per_image) / 5)
    # rank r scores images r, r + 2, ...: every image exactly once
    assert sent[0][:2] == (pytest.approx(per_image[0] + per_image[2] + per_image[4]), 3)
    assert sent[1][:2] == (pytest.approx(per_image[1] + per_image[3]), 2)
    assert sent[0][2] == torch.device("cpu") and sent[1][2] == torch.device("cpu")  # NCCL needs the model's device


def test_baseline_on_mnist_subset_is_about_206_nats():
    from course_lib import load_dataset

    train, test = load_dataset("mnist-subset", "train"), load_dataset("mnist-subset", "test")
    result = evaluate(IndependentPixelModel.fit(train), test)
    assert result["n_images"] == 1000
    assert 190 < result["nats"] < 220
