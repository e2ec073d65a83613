"""Masked convolutions: the one idea that turns a CNN into an autoregressive model.

Pixels are generated in raster order (row by row, left to right) and, inside a pixel, channel by
channel (R, then G, then B). The output at position (i, j), channel c may depend only on inputs
that come *before* it in that order. A masked convolution zeroes the kernel weights that would
look at the present or the future:

    mask "A" (first layer): the centre pixel sees only *earlier* channels of the same pixel;
    mask "B" (later layers): the centre pixel also sees its *own* channel group,
                             which by then holds only information about the past.

Hidden channels are split into `data_channels` contiguous groups (group g carries what is known
about colour channel g) so that the R -> G -> B order holds through the whole network.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def channel_groups(n_channels: int, data_channels: int, chunks: int = 1) -> torch.Tensor:
    """Group index (0..data_channels-1) of each of `n_channels` feature channels, shape (n_channels,).

    With `chunks=2` the channels are two halves (e.g. tanh and sigmoid of a gate) that are
    grouped the same way, so channel j of each half belongs to the same colour group.
    """
    per_chunk = n_channels // chunks
    assert per_chunk * chunks == n_channels, "channels must split evenly into chunks"
    assert per_chunk >= data_channels, "need at least one feature channel per data channel"
    idx = torch.arange(n_channels) % per_chunk
    return idx * data_channels // per_chunk


def raster_mask(
    kernel_size, mask_type: str, in_channels: int, out_channels: int, data_channels: int = 1, out_chunks: int = 1
) -> torch.Tensor:
    """Mask of shape (out_channels, in_channels, kh, kw) for raster + channel order.

    Rows above the centre: all ones. Centre row: ones left of the centre. Centre pixel: ones where
    the input's colour group comes before the output's (mask A) or is not after it (mask B).
    """
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', not {mask_type!r}")
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    ci, cj = kh // 2, kw // 2
    mask = torch.zeros(out_channels, in_channels, kh, kw)
    mask[:, :, :ci, :] = 1
    mask[:, :, ci, :cj] = 1
    g_out = channel_groups(out_channels, data_channels, out_chunks)[:, None]
    g_in = channel_groups(in_channels, data_channels)[None, :]
    centre = (g_out > g_in) if mask_type == "A" else (g_out >= g_in)
    mask[:, :, ci, cj] = centre.float()
    return mask


def vertical_mask(kernel_size: int, in_channels: int, out_channels: int, include_centre_row: bool) -> torch.Tensor:
    """Mask (out, in, k, k) of the Gated PixelCNN's vertical stack: the rows above the centre,
    plus the centre row itself when `include_centre_row` (every layer but the first)."""
    k = kernel_size
    mask = torch.zeros(out_channels, in_channels, k, k)
    mask[:, :, : k // 2 + int(include_centre_row), :] = 1
    return mask


class MaskedConv2d(nn.Conv2d):
    """A 'same'-padded Conv2d whose kernel is multiplied by a fixed causal mask.

    x: (B, in_channels, H, W) -> (B, out_channels, H, W).
    mask_type: "A" or "B" (raster order, see `raster_mask`) or "V" / "V0" for the vertical stack
    (rows above the centre, with / without the centre row).
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        mask_type="B",
        data_channels=1,
        dilation=1,
        out_chunks=1,
        bias=True,
    ):
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        super().__init__(
            in_channels,
            out_channels,
            (kh, kw),
            dilation=dilation,
            bias=bias,
            padding=(dilation * (kh // 2), dilation * (kw // 2)),
        )
        if mask_type in ("V", "V0"):
            assert kh == kw, "vertical masks use square kernels"
            mask = vertical_mask(kh, in_channels, out_channels, include_centre_row=mask_type == "V")
        else:
            mask = raster_mask((kh, kw), mask_type, in_channels, out_channels, data_channels, out_chunks)
        self.mask_type = mask_type
        # Not saved in checkpoints: the mask always comes from this code, never from a file.
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self):
        return super().extra_repr() + f", mask_type={self.mask_type}"


def cut_channel_links(model):
    """Make every colour channel ignore the other channels of its own pixel, in place; returns `model`.

    Zeroes the centre tap of each mask-A convolution (the only place where a channel sees earlier
    channels of the current pixel), so output channel c at (i, j) sees only the pixels before (i, j):
    R, G and B of a pixel become independent given the past. Masks are not saved in checkpoints:
    call this again after loading such a model.
    """
    for conv in model.modules():
        if isinstance(conv, MaskedConv2d) and conv.mask_type == "A":
            kh, kw = conv.mask.shape[-2:]
            conv.mask[:, :, kh // 2, kw // 2] = 0
    return model


def masked_parameter_count(model) -> int:
    """Number of weight entries of `model`'s MaskedConv2d layers whose mask is 0.

    `count_parameters` counts these entries, but every forward pass multiplies them by 0: they never
    change the output, their gradient is exactly 0, and an optimiser without weight decay leaves them
    at their initial values. Biases and unmasked layers contribute nothing to this count.
    """
    return sum(int((conv.mask == 0).sum()) for conv in model.modules() if isinstance(conv, MaskedConv2d))
