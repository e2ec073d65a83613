"""MADE (Germain et al. 2015, "MADE: Masked Autoencoder for Distribution Estimation"): a fully connected
autoregressive model whose masks come from *degrees*.

Number the D = C*H*W sub-pixels of an image 1..D in raster-then-channel order (row by row, R -> G -> B
inside a pixel): sub-pixel d has degree d. Every hidden unit gets a degree m in 1..D-1, the number of the
first sub-pixels it may see. The rule that makes the network autoregressive:

    a weight into a hidden unit of degree m from a unit of degree k exists  iff  m >= k
    a weight into the output of sub-pixel d from a hidden unit of degree m exists  iff  d > m

so the output of sub-pixel d sees only sub-pixels 1..d-1, whatever the path. Masks A and B of the
PixelCNN are this rule on a grid: a feature at a position has that position's degree; mask B is ">=",
mask A (and the output's rule) is ">" (`mask_from_degrees(..., strict=True)`).

Images x: (B, C, H, W) -> logits in the layout of `models.py`: (B, C, H, W) Bernoulli logits for two
levels, (B, K, C, H, W) otherwise.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import CourseError
from .models import AutoregressiveImageModel, register_model


def input_degrees(image_shape) -> torch.Tensor:
    """Degree of every sub-pixel, (C, H, W) int64: 1..D in raster-then-channel order ((i*W + j)*C + c + 1)."""
    c, h, w = image_shape
    return torch.arange(1, c * h * w + 1).view(h, w, c).permute(2, 0, 1)


def hidden_degrees(units, dims) -> torch.Tensor:
    """Degrees of a hidden layer of `units` units, (units,) int64: 1..dims-1 in turn, so every degree
    is used about equally often (the deterministic assignment of the MADE paper)."""
    return torch.arange(units) % max(dims - 1, 1) + 1


def mask_from_degrees(out_degrees, in_degrees, strict=False) -> torch.Tensor:
    """The (out, in) float mask of a layer: 1 where out_degree >= in_degree (strict: >), else 0."""
    out_d, in_d = out_degrees[:, None], in_degrees[None, :]
    return (out_d > in_d if strict else out_d >= in_d).float()


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (out, in): (B, in) -> (B, out).
    The mask is rebuilt from the configuration, so it is not stored in checkpoints."""

    def __init__(self, mask):
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(AutoregressiveImageModel):
    """MADE for images: D = C*H*W inputs (scaled to [-1, 1], read in raster-then-channel order), hidden
    layers of `hidden` units with ReLUs, masked by degrees, and D*K' outputs (K' = 1 for binary images,
    K for the softmax head). x: (B, C, H, W) integer levels -> logits (see the module docstring)."""

    def __init__(self, image_shape=(1, 28, 28), levels=2, hidden=(500,), num_classes=None):
        if num_classes is not None:
            raise CourseError("MADE here is unconditional; build it with num_classes=None.")
        super().__init__(image_shape, levels, None)
        self._config = dict(image_shape=list(self.image_shape), levels=levels, hidden=[int(u) for u in hidden])
        c, h, w = self.image_shape
        dims, k = c * h * w, self.outputs_per_channel
        degrees = input_degrees(self.image_shape).permute(1, 2, 0).reshape(-1)  # 1..D in order
        layers = []
        for units in self._config["hidden"]:
            out_degrees = hidden_degrees(units, dims)
            layers.append(MaskedLinear(mask_from_degrees(out_degrees, degrees)))
            degrees = out_degrees
        output_degrees = torch.arange(1, dims + 1).repeat_interleave(k)  # K' outputs per sub-pixel
        self.hidden = nn.ModuleList(layers)
        self.output = MaskedLinear(mask_from_degrees(output_degrees, degrees, strict=True))

    def flat_outputs(self, x):
        """Integer images (B, C, H, W) -> the network's outputs (B, D*K'), sub-pixels in raster-then-channel order."""
        h = self.scale(x).permute(0, 2, 3, 1).flatten(1)  # (B, H*W*C) in raster-then-channel order
        for layer in self.hidden:
            h = F.relu(layer(h))
        return self.output(h)

    def forward(self, x, labels=None, score=False):
        """Logits in the layout of `models.py`, or with score=True each image's log-likelihood (B,)."""
        self._check_input(x, labels)
        c, h, w = self.image_shape
        out = self.flat_outputs(x).view(-1, h, w, c * self.outputs_per_channel).permute(0, 3, 1, 2)
        return self.score(out, x) if score else self.to_logits(out)


register_model("made", MADE)
