"""Causality by Jacobian (float64, random-initialised models): no output may depend on an input at or
after it in raster-then-channel order, and nothing is over-masked."""
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
    "gated-256-levels": lambda: GatedPixelCNN((1, 5, 5), levels=256, channels=8, dilations=(1,)),
    "gated-conditional": lambda: GatedPixelCNN((1, 6, 6), levels=2, channels=8, dilations=(1, 2), num_classes=3),
    "gated-colour-conditional": lambda: GatedPixelCNN((3, 5, 5), levels=3, channels=6, dilations=(2,), num_classes=2),
}


def rank(c, i, j, shape):
    C, _, W = shape
    return (i * W + j) * C + c


@pytest.mark.parametrize("name", MODELS)
def test_no_output_sees_its_present_or_future(name):
    torch.manual_seed(0)
    model = MODELS[name]()
    assert causality_violations(model) == []


@pytest.mark.parametrize("name", MODELS)
def test_nothing_is_over_masked(name):
    """The previous pixel (left, or above at the start of a row) and the previous channel of the same
    pixel must each have a non-zero effect."""
    torch.manual_seed(0)
    model = MODELS[name]()
    dep = dependency_matrix(model)
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
    assert stacked[i - 1, j - 3: j + 4].all() and gated[i - 1, j - 3: j + 4].all()
    assert stacked[i, j - 1] and gated[i, j - 1]
    # the gated model sees every past pixel of the rows just above within its width
    assert gated[i - 3: i, j - 6: j + 7].all()
