"""Causality by Jacobian (float64, random-initialised models): no output may depend on an input at or
after it in raster-then-channel order, and nothing is over-masked."""

import copy
import functools

import pytest
import torch

from course_lib.causality import causality_violations, dependency_matrix, receptive_field
from course_lib.masks import raster_mask
from course_lib.models import GatedPixelCNN, PixelCNN

MODELS = {
    "pixelcnn-binary": lambda: PixelCNN((1, 8, 8), levels=2, channels=16, n_blocks=2),
    "pixelcnn-colour-4level": lambda: PixelCNN((3, 6, 6), levels=4, channels=12, n_blocks=2),
    "pixelcnn-conditional": lambda: PixelCNN((1, 6, 6), levels=2, channels=8, n_blocks=1, num_classes=3),
    "gated-binary": lambda: GatedPixelCNN((1, 8, 8), levels=2, channels=8, dilations=(1, 2)),
    "gated-colour-dilated": lambda: GatedPixelCNN((3, 6, 6), levels=4, channels=12, dilations=(1, 2, 1)),
    "gated-256-levels": lambda: GatedPixelCNN((1, 4, 4), levels=256, channels=6, dilations=(1,)),
    "gated-conditional": lambda: GatedPixelCNN((1, 6, 6), levels=2, channels=8, dilations=(1, 2), num_classes=3),
    "gated-colour-conditional": lambda: GatedPixelCNN((3, 5, 5), levels=3, channels=6, dilations=(2,), num_classes=2),
    "gated-logistic-colour": lambda: GatedPixelCNN(
        (3, 5, 5), levels=16, channels=6, dilations=(1, 2), head="logistic", mixtures=3
    ),
    "pixelcnn-logistic": lambda: PixelCNN((1, 6, 6), levels=8, channels=8, n_blocks=1, head="logistic", mixtures=2),
}


@functools.cache
def dependencies(name):
    """The dependency matrix of one random-initialised model of MODELS (computed once for both tests)."""
    torch.manual_seed(0)
    model = MODELS[name]()
    return model, dependency_matrix(model)


def rank(c, i, j, shape):
    C, _, W = shape
    return (i * W + j) * C + c


@pytest.mark.parametrize("name", MODELS)
def test_no_output_sees_its_present_or_future(name):
    model, dep = dependencies(name)
    n = dep.shape[0]
    assert not (dep & torch.ones(n, n, dtype=torch.bool).triu()).any()


@pytest.mark.parametrize("name", MODELS)
def test_nothing_is_over_masked(name):
    """The previous pixel (left, or above at the start of a row) and the previous channel of the same
    pixel must each have a non-zero effect."""
    model, dep = dependencies(name)
    C, H, W = model.image_shape
    for i in range(H):
        for j in range(W):
            for c in range(C):
                out = rank(c, i, j, model.image_shape)
                if j > 0:
                    assert dep[out, rank(0, i, j - 1, model.image_shape)], (c, i, j)
                elif i > 0:
                    assert dep[out, rank(0, i - 1, j, model.image_shape)], (c, i, j)
                if c > 0:
                    assert dep[out, rank(c - 1, i, j, model.image_shape)], (c, i, j)


def test_the_check_catches_mask_b_on_the_first_layer():
    """The classic bug: mask B on layer 1 lets every output see its own input."""
    model = PixelCNN((1, 6, 6), channels=8, n_blocks=1)
    model.input_conv.mask.copy_(raster_mask(7, "B", 1, 8, 1))
    leaks = causality_violations(model)
    assert ((0, 2, 3), (0, 2, 3)) in leaks


def test_the_check_catches_ignored_channel_order():
    """Without channel groups, green would see green and blue of its own pixel."""
    model = PixelCNN((3, 5, 5), levels=4, channels=12, n_blocks=1)
    model.input_conv.mask.copy_(raster_mask(7, "B", 3, 12, data_channels=1))  # one group for all channels
    assert any(o[1:] == k[1:] and k[0] >= o[0] for o, k in causality_violations(model))


def test_batchnorm_in_training_mode_leaks():
    """BatchNorm's batch statistics mix every position; the default models have none."""
    model = PixelCNN((1, 6, 6), channels=8, n_blocks=1)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    bn = torch.nn.BatchNorm2d(8).double().train()
    x = torch.randn(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    h = bn(model.double().input_conv(x))
    grad = torch.autograd.grad(h[0, :, 0, 0].sum(), x)[0]
    assert grad[0, 0, 5, 4] != 0  # the first pixel's features depend on a pixel of the last row


def test_pixelcnn_has_a_blind_spot_that_gated_pixelcnn_removes():
    torch.manual_seed(0)
    i = j = 8
    stacked = receptive_field(PixelCNN((1, 16, 16), channels=16, n_blocks=4), i, j)[0] > 0
    gated = receptive_field(GatedPixelCNN((1, 16, 16), channels=8, dilations=(1, 2, 1)), i, j)[0] > 0
    # the row just above, 4 and 5 columns to the right: past pixels the stacked masks never reach
    assert not stacked[i - 1, j + 4] and not stacked[i - 1, j + 5]
    assert gated[i - 1, j + 4] and gated[i - 1, j + 5]
    # both see the whole row above within 3 columns, and the pixel to the left
    assert stacked[i - 1, j - 3 : j + 4].all() and gated[i - 1, j - 3 : j + 4].all()
    assert stacked[i, j - 1] and gated[i, j - 1]
    # the gated model sees every past pixel of the rows just above within its width
    assert gated[i - 3 : i, j - 6 : j + 7].all()


def test_random_input_lies_in_the_level_range_in_float64_and_is_seeded():
    """The Jacobian is taken at a random float64 point of [0, K-1]^D (labels: class 0 for conditional models)."""
    from course_lib.causality import _random_input

    model = GatedPixelCNN((2, 3, 4), levels=5, channels=4, dilations=(1,), num_classes=3)
    x, labels = _random_input(model, torch.Generator().manual_seed(3))
    assert x.shape == (1, 2, 3, 4) and x.dtype == torch.float64
    assert 0 <= x.min() and x.max() <= 4 and x.max() > 2  # spread over the whole range, not [0, 1]
    assert labels.tolist() == [0] and labels.dtype == torch.long
    again, _ = _random_input(model, torch.Generator().manual_seed(3))
    assert torch.equal(x, again)
    assert _random_input(GatedPixelCNN((1, 3, 3), channels=4, dilations=(1,)))[1] is None


@pytest.mark.parametrize("levels", [2, 3])
def test_receptive_field_is_the_summed_absolute_jacobian_of_one_output(levels):
    torch.manual_seed(0)
    model = GatedPixelCNN((2, 4, 5), levels=levels, channels=4, dilations=(1,))
    x = torch.rand(1, 2, 4, 5, dtype=torch.float64) * (levels - 1)
    field = receptive_field(model, 2, 3, c=1, x=x)
    assert field.shape == (2, 4, 5) and field.dtype == torch.float64
    assert not x.requires_grad  # the caller's tensor is left alone
    m = copy.deepcopy(model).double()

    def out(inp):
        logits = m(inp)
        return logits[0, 1, 2, 3] if levels == 2 else logits[0, :, 1, 2, 3]

    expected = torch.autograd.functional.jacobian(out, x).abs().reshape(-1, 2, 4, 5).sum(0)
    assert torch.allclose(field, expected, rtol=1e-10, atol=1e-12)  # a float64 Jacobian, not a float32 one
    image = torch.randint(0, levels, (1, 2, 4, 5))  # a real (integer) image works as the point too
    assert torch.equal(receptive_field(model, 2, 3, c=1, x=image) > 0, field > 0)
    assert field[0, 2, 3] > 0 and field[1, 2, 3] == 0 and field[:, 3].sum() == 0  # sees R, not itself or below


def test_dependency_matrix_matches_a_jacobian_taken_by_hand():
    """Rows are outputs and columns inputs, both indexed (i * W + j) * C + c."""
    torch.manual_seed(0)
    model = PixelCNN((2, 2, 3), levels=3, channels=4, n_blocks=1)
    dep = dependency_matrix(model, seed=5)
    m = copy.deepcopy(model).double()
    x = torch.rand(1, 2, 2, 3, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda inp: m(inp)[0], x)  # (K, C, H, W, 1, C, H, W)
    C, H, W = 2, 2, 3
    for o, (co, io, jo) in enumerate((c, i, j) for i in range(H) for j in range(W) for c in range(C)):
        for k, (ci, ii, ji) in enumerate((c, i, j) for i in range(H) for j in range(W) for c in range(C)):
            assert dep[o, k] == bool(jac[:, co, io, jo, 0, ci, ii, ji].abs().sum() > 0), (o, k)


def test_a_model_in_train_mode_is_checked_in_eval_mode_on_a_copy():
    """The check copies the model into float64 and eval mode: the caller's model keeps its dtype and mode,
    and a BatchNorm (which mixes positions only in training mode) does not raise a false alarm."""
    model = PixelCNN((1, 4, 4), channels=4, n_blocks=1)
    model.out1 = torch.nn.Sequential(torch.nn.BatchNorm2d(4), model.out1)
    with torch.no_grad():
        model.out1[0].running_mean.uniform_(-1, 1)
    model.train()
    assert causality_violations(model) == []
    assert model.training and next(model.parameters()).dtype == torch.float32


def test_violations_name_exactly_the_leaking_pairs():
    """Mask B on the first layer: every sub-pixel sees itself and nothing later, so the violations are
    exactly the pairs (p, p), named (channel, row, column), on a non-square colour image."""
    torch.manual_seed(0)
    model = GatedPixelCNN((3, 2, 3), levels=3, channels=6, dilations=(1,))
    model.h_in.mask.copy_(raster_mask((1, 7), "B", 3, 6, data_channels=3))
    found = causality_violations(model)
    assert all(isinstance(v, int) for pair in found for where in pair for v in where)
    expected = [((c, i, j), (c, i, j)) for i in range(2) for j in range(3) for c in range(3)]
    assert sorted(found) == sorted(expected)
