"""Masks written out by hand: raster order, channel groups (R -> G -> B), the vertical stack, and a
MaskedConv2d that is an ordinary convolution with a masked kernel."""

import pytest
import torch
import torch.nn.functional as F

from course_lib import GatedPixelCNN, PixelCNN
from course_lib.masks import (
    MaskedConv2d,
    channel_groups,
    cut_channel_links,
    masked_parameter_count,
    raster_mask,
    vertical_mask,
)


def test_channel_groups_are_contiguous_integer_groups():
    groups = channel_groups(6, 3)
    assert groups.dtype == torch.long
    assert groups.tolist() == [0, 0, 1, 1, 2, 2]
    assert channel_groups(7, 3).tolist() == [0, 0, 0, 1, 1, 2, 2]  # uneven: earlier groups take the extra
    assert channel_groups(4, 1).tolist() == [0, 0, 0, 0]


def test_channel_groups_of_two_chunks_repeat_the_grouping_in_each_half():
    """The two halves of a gate (tanh and sigmoid) are grouped alike: channel j of each half shares a group."""
    groups = channel_groups(12, 3, chunks=2)
    assert groups.dtype == torch.long
    assert groups.tolist() == [0, 0, 1, 1, 2, 2] * 2


def test_channel_groups_reject_impossible_splits():
    with pytest.raises(AssertionError, match="split evenly"):
        channel_groups(7, 1, chunks=2)
    with pytest.raises(AssertionError, match="at least one feature channel"):
        channel_groups(2, 3)
    assert channel_groups(3, 3).tolist() == [0, 1, 2]  # exactly one channel per group is enough


def test_single_channel_raster_masks_by_hand():
    a = raster_mask(3, "A", 1, 1)[0, 0]
    b = raster_mask(3, "B", 1, 1)[0, 0]
    assert a.dtype == b.dtype == torch.float32
    assert a.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert b.tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    assert raster_mask(5, "A", 1, 1)[0, 0].tolist() == [[1] * 5, [1] * 5, [1, 1, 0, 0, 0], [0] * 5, [0] * 5]


def test_rectangular_kernels_mask_their_own_centre():
    """A (1, k) kernel (the horizontal stack) sees only the pixels to the left, and the centre for mask B."""
    assert raster_mask((1, 5), "A", 1, 1)[0, 0].tolist() == [[1, 1, 0, 0, 0]]
    assert raster_mask((1, 5), "B", 1, 1)[0, 0].tolist() == [[1, 1, 1, 0, 0]]
    assert raster_mask((3, 1), "B", 1, 1)[0, 0].tolist() == [[1], [1], [0]]


def test_colour_masks_follow_r_g_b_at_the_centre_only():
    """3 data channels, 3 in / 3 out channels (one per colour): mask A lets G see R, B see R and G; mask B
    also lets every channel see its own group. Off-centre taps in the past see every channel."""
    a, b = raster_mask(3, "A", 3, 3, data_channels=3), raster_mask(3, "B", 3, 3, data_channels=3)
    assert a[:, :, 1, 1].tolist() == [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
    assert b[:, :, 1, 1].tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    for m in (a, b):
        assert (m[:, :, 0, :] == 1).all() and (m[:, :, 1, 0] == 1).all()
        assert (m[:, :, 1, 2] == 0).all() and (m[:, :, 2, :] == 0).all()


def test_gate_chunks_share_the_colour_order():
    """With out_chunks=2, output channel o and o + half belong to the same colour group."""
    m = raster_mask(1, "A", 3, 6, data_channels=3, out_chunks=2)[:, :, 0, 0]
    expected = [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
    assert m[:3].tolist() == expected and m[3:].tolist() == expected


def test_raster_mask_rejects_unknown_types():
    with pytest.raises(ValueError, match="mask_type must be 'A' or 'B'"):
        raster_mask(3, "C", 1, 1)


def test_vertical_masks_by_hand():
    """The vertical stack sees the rows above (V0, first layer) plus its own row (V, later layers)."""
    v0, v = vertical_mask(3, 2, 4, include_centre_row=False), vertical_mask(3, 2, 4, include_centre_row=True)
    assert v0.shape == v.shape == (4, 2, 3, 3)
    assert v0[0, 0].tolist() == [[1, 1, 1], [0, 0, 0], [0, 0, 0]]
    assert v[0, 0].tolist() == [[1, 1, 1], [1, 1, 1], [0, 0, 0]]
    assert (v0 == v0[0, 0]).all() and (v == v[0, 0]).all()
    assert vertical_mask(5, 1, 1, False)[0, 0].sum() == 10


@pytest.mark.parametrize("mask_type", ["A", "B", "V", "V0"])
def test_masked_conv_is_a_plain_conv_with_the_masked_kernel(mask_type):
    """Same-size output, and exactly F.conv2d with weight * mask, the padding of a centred kernel and the dilation."""
    torch.manual_seed(0)
    conv = MaskedConv2d(3, 6, 5, mask_type, data_channels=3, dilation=2).double()
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64)
    y = conv(x)
    assert y.shape == (2, 6, 7, 8)
    expected = F.conv2d(x, conv.weight * conv.mask, conv.bias, padding=4, dilation=2)
    assert torch.allclose(y, expected, atol=1e-12)
    if mask_type in ("A", "B"):
        assert torch.equal(conv.mask, raster_mask(5, mask_type, 3, 6, 3))
    else:
        assert torch.equal(conv.mask, vertical_mask(5, 3, 6, include_centre_row=mask_type == "V"))


def test_masked_conv_with_a_rectangular_kernel_and_chunks():
    conv = MaskedConv2d(4, 8, (1, 3), "B", data_channels=2, out_chunks=2).double()
    assert conv.kernel_size == (1, 3) and conv.padding == (0, 1)
    assert torch.equal(conv.mask, raster_mask((1, 3), "B", 4, 8, 2, out_chunks=2))
    x = torch.randn(1, 4, 3, 5, dtype=torch.float64)
    assert torch.allclose(conv(x), F.conv2d(x, conv.weight * conv.mask, conv.bias, padding=(0, 1)))


def test_masked_conv_without_bias_has_none():
    assert MaskedConv2d(2, 2, 3, "A", bias=False).bias is None
    assert MaskedConv2d(2, 2, 3, "A").bias is not None


def test_vertical_masks_need_square_kernels():
    with pytest.raises(AssertionError, match="square"):
        MaskedConv2d(1, 2, (1, 3), "V")


def test_the_mask_is_a_buffer_that_moves_with_the_module_but_is_never_saved():
    """A buffer follows .to(dtype/device); it is left out of state_dict so it always comes from this code."""
    conv = MaskedConv2d(2, 4, 3, "A")
    assert "mask" in dict(conv.named_buffers())
    assert "mask" not in conv.state_dict()
    assert conv.double().mask.dtype == torch.float64


def test_masked_weights_get_no_gradient():
    """Training cannot grow a masked-out weight: its gradient is exactly zero."""
    conv = MaskedConv2d(1, 1, 3, "A")
    conv(torch.randn(1, 1, 5, 5)).sum().backward()
    assert (conv.weight.grad[conv.mask == 0] == 0).all()
    assert (conv.weight.grad[conv.mask == 1] != 0).all()
    assert "mask_type=A" in repr(conv)


def test_cut_channel_links_zeroes_exactly_the_centre_of_each_mask_a():
    """cut_channel_links closes the centre tap of every mask-A layer (all channel pairs) and nothing else,
    in place, and returns the model it was given."""
    for model in (
        GatedPixelCNN(image_shape=(3, 5, 5), levels=4, channels=6, dilations=(1, 2)),
        PixelCNN(image_shape=(3, 5, 5), levels=4, channels=6, n_blocks=1),
    ):
        before = {n: m.mask.clone() for n, m in model.named_modules() if isinstance(m, MaskedConv2d)}
        assert cut_channel_links(model) is model
        for name, mask in before.items():
            conv = model.get_submodule(name)
            if conv.mask_type != "A":
                assert torch.equal(conv.mask, mask), name
                continue
            kh, kw = mask.shape[-2:]
            assert mask[:, :, kh // 2, kw // 2].any() and not conv.mask[:, :, kh // 2, kw // 2].any(), name
            expected = mask.clone()
            expected[:, :, kh // 2, kw // 2] = 0
            assert torch.equal(conv.mask, expected), name


def test_masked_parameter_count_by_hand():
    """A 3x3 mask A keeps 4 of 9 taps (5 masked), a 3x3 mask V0 keeps 3 (6 masked) per channel pair; biases
    and plain convolutions count nothing."""
    assert masked_parameter_count(MaskedConv2d(1, 1, 3, "A")) == 5
    assert masked_parameter_count(MaskedConv2d(2, 4, 3, "V0")) == 2 * 4 * 6
    model = torch.nn.Sequential(MaskedConv2d(1, 1, 3, "A"), torch.nn.Conv2d(1, 1, 3), MaskedConv2d(2, 4, 3, "V0"))
    assert masked_parameter_count(model) == 5 + 48
    assert masked_parameter_count(torch.nn.Conv2d(3, 3, 3)) == 0


@pytest.mark.parametrize("build", [PixelCNN, GatedPixelCNN], ids=["pixelcnn", "gated"])
def test_masked_parameters_are_exactly_the_weights_with_no_effect(build):
    """Overwriting every counted entry leaves the output unchanged; the count is the number of weight
    entries that get exactly zero gradient by construction, and closing more taps counts them too."""
    torch.manual_seed(0)
    model = build(image_shape=(3, 6, 6), levels=4, channels=12).double()
    x = torch.randint(0, 4, (2, 3, 6, 6))
    before = model(x)
    count = 0
    with torch.no_grad():
        for conv in model.modules():
            if isinstance(conv, MaskedConv2d):
                conv.weight[conv.mask == 0] = 1e3
                count += int((conv.mask == 0).sum())
    assert torch.equal(model(x), before)
    assert masked_parameter_count(model) == count > 0
    centre_taps = sum(
        int(conv.mask[:, :, conv.mask.shape[-2] // 2, conv.mask.shape[-1] // 2].sum())
        for conv in model.modules()
        if isinstance(conv, MaskedConv2d) and conv.mask_type == "A"
    )
    assert masked_parameter_count(cut_channel_links(model)) == count + centre_taps


def test_the_readme_quotes_the_masked_parameter_counts_of_the_default_models():
    """The README's sentence on weights the masks zero is computed from the default models, not typed in."""
    from pathlib import Path

    from course_lib import build_model, count_parameters

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name, kind in (("gated", "Gated PixelCNN's"), ("pixelcnn", "PixelCNN it is")):
        model = build_model(name, image_shape=(1, 28, 28), levels=2)
        zeroed, total = masked_parameter_count(model), count_parameters(model)
        assert f"{zeroed:,}" in readme and f"{total:,}" in readme and f"({100 * zeroed / total:.1f}%)" in readme, kind
