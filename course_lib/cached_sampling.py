"""Fast sampling with caches (after Ramachandran et al. 2017, "Fast Generation for Convolutional
Autoregressive Models").

Naive sampling runs the whole network on the whole image for every sub-pixel: H*W*C forward passes,
almost all of whose work recomputes activations that did not change. A masked network is causal, so
the activations at position (i, j) depend only on pixels before (i, j). Once computed they stay
valid for the rest of sampling. A cache keeps every layer's activations and, when a new pixel
arrives, computes only the activations at that pixel:

* Gated PixelCNN: the vertical stack sees only the rows above, so it is computed once per row
  (`start_row(i)`: one row of every layer); the horizontal stack sees the current row up to the
  current pixel, so it is computed once per pixel (`logits_at(j, c)`: one position of every layer).
* PixelCNN: every layer is computed at one position per pixel, reading the cached activations of
  the layer below in its (masked) window.

Each per-pixel step is a few dozen small operations on tensors of shape (B, channels), instead of a
forward pass over (B, channels, H, W). The arithmetic is that of the full forward pass (the same
weights, masks and biases; `GatedPixelCNNCache` rewrites some of it in a faster, equal form), so in float64 the logits agree with the naive ones to ~1e-12, and with the same
seed the sampled images are identical (`tests/test_cached_sampling.py`).

The Gated PixelCNN's per-pixel step (`GatedPixelCNNCache.logits_at`), read line by line. Each gated
layer's horizontal stack at column j is four operations on tensors of shape (B, 2p + 1) or smaller (p: the
layer's channels), each writing into a buffer the cache made once (`out=`):

1. `addmm`: the vertical stack's contribution at column j (`from_vertical_at`: the v->h 1x1 link, computed
   once per row by `start_row`, biases included) plus the masked 1x3 convolution: the layer's cached inputs
   at columns j - d and j, stored side by side (`taps_at`), times the two taps' weights stacked;
2. and 3. the gate, written as tanh(a) sigmoid(b) = (2 sigmoid(2a) - 1) sigmoid(b): one sigmoid of [2a, b]
   (the cache doubled the weights that make a), then the product sigmoid(2a) sigmoid(b);
4. `addmm`: the residual h (`input_at`) plus the gate times the 1x1 output convolution, rewritten as
   [sigmoid(2a) sigmoid(b), sigmoid(b), 1] @ [2 W; -W; b], straight into the next layer's input at column j (`output_at`).

The rewrites change nothing but the rounding (`GatedPixelCNNCache`'s docstring says why they are faster on
a CPU). After the last layer, the two 1x1 output layers give the logits.

A cache reads the model's parameters once when it is built: build a new one after training.
"""

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .errors import CourseError
from .masks import MaskedConv2d, raster_mask, vertical_mask
from .models import GatedPixelCNN, PixelCNN


def _masked_weight(conv: MaskedConv2d) -> torch.Tensor:
    """The effective kernel weight * mask, shape (out, in, kh, kw)."""
    return conv.weight * conv.mask


class Pointwise(NamedTuple):
    """A 1x1 convolution as a matrix product: `torch.addmm(bias, x, weight_t)` on x of shape (B, in)."""

    weight_t: torch.Tensor  # (in, out): the kernel, transposed
    bias: torch.Tensor  # (out,)


def _pointwise(conv) -> Pointwise:
    """A 1x1 (masked) convolution as a `Pointwise`."""
    weight = _masked_weight(conv) if isinstance(conv, MaskedConv2d) else conv.weight
    return Pointwise(weight[:, :, 0, 0].t().contiguous(), conv.bias)


def _canonical_mask(conv: MaskedConv2d, data_channels: int, out_chunks: int = 1) -> torch.Tensor:
    """The mask that `MaskedConv2d` builds for this layer's type, to compare with the one it holds."""
    kh, kw = conv.kernel_size
    if conv.mask_type in ("V", "V0"):
        return vertical_mask(kh, conv.in_channels, conv.out_channels, conv.mask_type == "V")
    return raster_mask((kh, kw), conv.mask_type, conv.in_channels, conv.out_channels, data_channels, out_chunks)


def supports_cache(model) -> bool:
    """True when the cache can sample `model` exactly: a course_lib GatedPixelCNN or PixelCNN (not a
    subclass, whose forward might differ) whose first layers have masks "V0"/"A" and whose masked layers
    hold the mask their type prescribes or one with links removed (`cut_channel_links`), so cached
    activations never go stale. A mask with a link added (the mask-B-first bug of lesson 02) may see the
    pixel it predicts; only naive sampling reproduces what such a model does."""
    if type(model) is GatedPixelCNN:
        first_ok = model.v_in.mask_type == "V0" and model.h_in.mask_type == "A"
        gate_convs = [layer.h_conv for layer in model.layers]
    elif type(model) is PixelCNN:
        first_ok, gate_convs = model.input_conv.mask_type == "A", []
    else:
        return False
    c = model.image_shape[0]
    for module in model.modules():
        if isinstance(module, MaskedConv2d):
            chunks = 2 if any(module is g for g in gate_convs) else 1
            if (module.mask.cpu() > _canonical_mask(module, c, chunks)).any():  # a link the order forbids
                return False
    return first_ok


@dataclass
class GatedLayerState:
    """One gated layer in `GatedPixelCNNCache`: its weights, rewritten for one position at a time, and its
    cached activations. p: the layer's channels; d: its dilation; n: its taps (left and centre)."""

    # the vertical stack, computed once per row (`start_row`)
    ring: torch.Tensor  # (B, ring, W, p): the rows of this layer's vertical input still needed, row i at i % ring
    ring_rows: list  # [i % ring] -> the ring slots of rows i - d*(k//2), ..., i - d, i, (k//2 + 1,) int64
    v_weight: torch.Tensor  # (2p, p, k//2 + 1, k): rows above and the centre row, `a` half doubled
    v_bias: torch.Tensor  # (2p,)
    dilation: int
    padding: int  # columns of zeros on each side of a row: d * (k // 2)
    v_to_h_weight: torch.Tensor  # (2p, 2p, 1, 1): the 1x1 link into the horizontal stack
    h_bias: torch.Tensor  # (2p,): both biases of the horizontal pre-activation
    from_vertical: torch.Tensor  # (B, W, 2p): this row's link output plus biases, the horizontal stack's start
    class_bias: tuple | None  # ((B, 2p) vertical, (B, 2p) horizontal) for a class-conditional model
    # the horizontal stack, computed once per pixel (`logits_at`); lists indexed by column j
    taps_weight: torch.Tensor  # (n*p, 2p): the 1 x k convolution's taps stacked, `a` half doubled
    out_weight: torch.Tensor  # (2p + 1, p): [2 W_out; -W_out; b_out] (see the class docstring)
    from_vertical_at: list  # [j] -> (B, 2p) view of from_vertical at column j
    taps_at: list  # [j] -> (B, n*p) view: the layer's inputs at columns j - d*(n-1), ..., j - d, j side by side
    input_at: list  # [j] -> (B, p) view: the layer's horizontal input at column j
    output_at: list  # [j] -> (B, p): its output at column j, the next layer's `input_at`


class GatedPixelCNNCache:
    """Activations of a `GatedPixelCNN` for a batch being sampled in raster order.

    x: (B, C, H, W) integer images that the sampling loop fills in place; labels: (B,) or None.
    Call `start_row(i)` once rows < i of x are final, then `logits_at(j, c)` for j = 0..W-1 (and
    c = 0..C-1): it returns the logits of sub-pixel (c, i, j), (B,) for a binary model or (B, K),
    computed from x[:, :, i, :j] and the channels of pixel (i, j) before c.

    The per-pixel step is four small operations per layer. Three rewrites of the same arithmetic
    (each exact up to float rounding) keep it that few:
    * the gate: tanh(a) * sigmoid(b) = (2 sigmoid(2a) - 1) * sigmoid(b). The weights that make `a`
      are doubled once, so one sigmoid of [2a, b] serves both halves (on the CPU PyTorch's tanh and
      ELU take several times longer than its sigmoid and exp), and the 1x1 output convolution takes
      the gate apart: gate @ W_out + b_out = [sigmoid(2a) sigmoid(b), sigmoid(b), 1] @ [2 W_out; -W_out; b_out];
    * the masked 1 x k convolution: a row cache per layer stores column q at [q % d, q // d], so the
      taps j - d*(taps-1), ..., j - d, j of dilation d lie side by side: one (B, taps*p) @ (taps*p, 2p)
      matrix product per layer;
    * every per-pixel operation writes into a buffer made once (`out=`), through views made once.
    The vertical stack keeps only the rows its convolutions still need (a ring of rows per layer).
    Each layer's weights and activations are a `GatedLayerState`.
    """

    # Later rows read only the vertical stack, which `start_row` computes from x: a row whose pixels
    # are all given (completion) needs no per-pixel work at all.
    skip_given_rows = True

    def __init__(self, model, x, labels=None):
        self.model, self.x, self.labels = model, x, labels
        batch, channels, height, width = x.shape
        p = model.v_in.out_channels  # features per stack
        first_kernel = model.h_in.kernel_size[1]
        self.rows_above = first_kernel // 2  # rows above seen by v_in, and columns left seen by h_in
        dtype, device = model.v_in.weight.dtype, x.device
        self.zeros = lambda *shape: torch.zeros(*shape, dtype=dtype, device=device)
        # the input rows above the current one, scaled to [-1, 1], after `rows_above` rows of zeros
        self.scaled_rows = self.zeros(batch, channels, self.rows_above + height, width)
        # the current row scaled, as (B, pad + W, C); its columns left of 0 stay zero
        pad = max(
            [self.rows_above]
            + [layer.h_conv.dilation[1] * (layer.h_conv.kernel_size[1] // 2) for layer in model.layers]
        )
        self.scaled_row = self.zeros(batch, pad + width, channels)
        self.scaled_row_now = self.scaled_row[:, pad:]  # (B, W, C): where `logits_at` writes the row
        self.minus_one = torch.tensor(-1.0, dtype=dtype, device=device)
        n_first = self.rows_above + 1  # the taps of h_in: left and centre
        self.first_taps_at = [
            self.scaled_row[:, pad + j - n_first + 1 : pad + j + 1].reshape(batch, n_first * channels)
            for j in range(width)
        ]  # [j] -> (B, n_first*C): the row's inputs of h_in at column j
        # the gate's [sigmoid(2a) sigmoid(b), sigmoid(b), 1] and its views
        self.gate_terms = self.zeros(batch, 2 * p + 1)
        self.gate_terms[:, 2 * p] = 1
        self.gate_input = self.gate_terms[:, : 2 * p]  # [2a, b], then sigmoid in place
        self.sigmoid_2a, self.sigmoid_b = self.gate_terms[:, :p], self.gate_terms[:, p : 2 * p]
        self.elu_out1, self.elu_out2, self.hidden = self.zeros(batch, p), self.zeros(batch, p), self.zeros(batch, p)
        self.layers = self._layer_states(pad)
        self.v_in_weight = _masked_weight(model.v_in)[:, :, : self.rows_above, :]  # rows strictly above
        weight = _masked_weight(model.h_in)[:, :, 0, :n_first]  # (p, C, n_first): left and centre
        self.h_in_weight = weight.permute(2, 1, 0).reshape(-1, p)  # (n_first*C, p), as first_taps_at
        self.out1, self.out2 = _pointwise(model.out1), _pointwise(model.out2)

    def _layer_states(self, pad):
        """A `GatedLayerState` per gated layer, in order, each layer's `output_at` the next one's `input_at`."""
        batch, _, _, width = self.x.shape
        p = self.model.v_in.out_channels
        states, input_at = [], None
        for layer in self.model.layers:
            dilation, n_taps = layer.h_conv.dilation[1], layer.h_conv.kernel_size[1] // 2 + 1
            # this layer's horizontal input along the row, column q = pad + j at [:, q % d, q // d]
            inputs = self.zeros(batch, dilation, (pad + width) // dilation + 1, p)
            cells = [divmod(pad + j, dilation) for j in range(width)]  # (q // d, q % d) of column j
            if input_at is None:
                input_at = [inputs[:, slot, cell] for cell, slot in cells]
            else:  # the previous layer writes its output straight into this layer's inputs
                states[-1].output_at = input_at = [inputs[:, slot, cell] for cell, slot in cells]
            taps_at = [inputs[:, slot, cell - n_taps + 1 : cell + 1].reshape(batch, n_taps * p) for cell, slot in cells]
            states.append(self._layer_state(layer, input_at, taps_at))
        states[-1].output_at = [self.zeros(batch, p)] * width  # the last output: only the current column is read
        return states

    def _layer_state(self, layer, input_at, taps_at):
        """The `GatedLayerState` of one `GatedBlock`: its weights with the gates' `a` halves doubled."""
        batch, _, _, width = self.x.shape
        p = layer.h_out.out_channels
        device = self.scaled_rows.device
        two = torch.ones(2 * p, dtype=self.scaled_rows.dtype, device=device)
        two[:p] = 2  # doubles the a half of a gate's input (exact in floating point)
        k, dilation = layer.v_conv.kernel_size[0], layer.v_conv.dilation[0]
        ring = dilation * (k // 2) + 1
        h_weight = _masked_weight(layer.h_conv)[:, :, 0, : layer.h_conv.kernel_size[1] // 2 + 1]  # (2p, p, taps)
        link = layer.v_to_h.weight[:, :, 0, 0]  # (2p, 2p), applied to v features whose a half is doubled
        w_out, b_out = _pointwise(layer.h_out)
        from_vertical = self.zeros(batch, width, 2 * p)
        class_bias = None
        if layer.class_bias is not None:
            class_bias = tuple(part * two for part in layer.class_bias(self.labels).chunk(2, dim=1))
        return GatedLayerState(
            ring=self.zeros(batch, ring, width, p),
            ring_rows=[
                torch.tensor([(slot - dilation * tap) % ring for tap in range(k // 2, -1, -1)], device=device)
                for slot in range(ring)
            ],
            v_weight=_masked_weight(layer.v_conv)[:, :, : k // 2 + 1, :] * two[:, None, None, None],
            v_bias=layer.v_conv.bias * two,
            dilation=dilation,
            padding=dilation * (k // 2),
            v_to_h_weight=(two[:, None] * link / two[None, :])[:, :, None, None],
            h_bias=(layer.v_to_h.bias + layer.h_conv.bias) * two,
            from_vertical=from_vertical,
            class_bias=class_bias,
            taps_weight=(h_weight * two[:, None, None]).permute(2, 1, 0).reshape(-1, 2 * p),  # as taps_at
            out_weight=torch.cat([2 * w_out, -w_out, b_out[None]]),
            from_vertical_at=[from_vertical[:, j] for j in range(width)],
            taps_at=taps_at,
            input_at=input_at,
            output_at=[],  # set by `_layer_states`
        )

    def start_row(self, i):
        """Compute the vertical stack of row i (every layer) from rows < i of x. Call once per row, in order."""
        model, above = self.model, self.rows_above
        if i > 0:
            self.scaled_rows[:, :, above + i - 1] = (
                self.x[:, :, i - 1].to(self.scaled_rows.dtype) * (2.0 / (model.levels - 1)) - 1.0
            )
        v_in = F.conv2d(self.scaled_rows[:, :, i : i + above], self.v_in_weight, model.v_in.bias, padding=(0, above))
        first = self.layers[0].ring
        first[:, i % first.shape[1]] = v_in[:, :, 0].transpose(1, 2)  # the first layer's vertical input
        for layer, following in zip(self.layers, [*self.layers[1:], None]):
            self._vertical_row(layer, following, i)
        self.x_row = self.x[:, :, i].transpose(1, 2)  # (B, W, C) view of row i of x

    @staticmethod
    def _vertical_row(layer, following, i):
        """One layer's vertical stack at row i: its link into the horizontal stack (`from_vertical`) and,
        unless it is the last layer, the `following` layer's vertical input at row i."""
        window = layer.ring_rows[i % layer.ring.shape[1]]
        rows = torch.index_select(layer.ring, 1, window).permute(0, 3, 1, 2)  # (B, p, k//2 + 1, W)
        features = F.conv2d(
            rows, layer.v_weight, layer.v_bias, padding=(0, layer.padding), dilation=(1, layer.dilation)
        )
        link = F.conv2d(features, layer.v_to_h_weight, layer.h_bias)  # the 1x1 link, (B, 2p, 1, W)
        layer.from_vertical.copy_(link[:, :, 0].transpose(1, 2))
        features = features[:, :, 0].transpose(1, 2)  # (B, W, 2p): [2a, b] of the vertical gate
        if layer.class_bias is not None:
            v_bias, h_bias = layer.class_bias
            features = features + v_bias[:, None]
            layer.from_vertical += h_bias[:, None]
        if following is not None:  # the last layer's vertical gate feeds nothing
            sig = torch.sigmoid(features)
            p = sig.shape[2] // 2
            ring = following.ring
            torch.mul(sig[:, :, :p].mul_(2).sub_(1), sig[:, :, p:], out=ring[:, i % ring.shape[1]])

    def logits_at(self, j, c=0):
        """Logits of sub-pixel (c, row, j): (B,) Bernoulli logits or (B, K) categorical logits."""
        model = self.model
        # the row so far, scaled to [-1, 1] as the model scales its input
        torch.add(self.minus_one, self.x_row, alpha=2.0 / (model.levels - 1), out=self.scaled_row_now)
        torch.addmm(
            model.h_in.bias, self.first_taps_at[j], self.h_in_weight, out=self.layers[0].input_at[j]
        )  # 1 x k mask A
        for layer in self.layers:
            torch.addmm(layer.from_vertical_at[j], layer.taps_at[j], layer.taps_weight, out=self.gate_input)  # [2a, b]
            self.gate_input.sigmoid_()
            torch.mul(self.sigmoid_2a, self.sigmoid_b, out=self.sigmoid_2a)  # [sigmoid(2a) sigmoid(b), sigmoid(b), 1]
            torch.addmm(
                layer.input_at[j], self.gate_terms, layer.out_weight, out=layer.output_at[j]
            )  # h + gate @ W_out + b_out
        last = self.layers[-1].output_at[j]
        hidden = torch.addmm(self.out1.bias, _elu(last, self.elu_out1), self.out1.weight_t, out=self.hidden)
        out = torch.addmm(self.out2.bias, _elu(hidden, self.elu_out2), self.out2.weight_t)
        return model.output_head.channel_logits(out, c)


@dataclass
class ResidualBlockState:
    """One `ResidualBlock` in `PixelCNNCache`: its three convolutions for one position, and the cached
    inputs of its masked convolution."""

    radius: int  # rows above (and columns on each side) its masked convolution reads: d * (k // 2)
    inputs: torch.Tensor  # (B, half, radius + H, W + 2 * radius): the masked convolution's inputs, zero-padded
    reduce: Pointwise
    conv: tuple  # (weight_t, bias, dilation) of the masked convolution, as `PixelCNNCache._window_weight`
    expand: Pointwise


class PixelCNNCache:
    """Activations of a `PixelCNN` for a batch being sampled in raster order (same interface as
    `GatedPixelCNNCache`). Every layer is computed at one position per pixel from the cached
    activations of the layer below; `start_row` only refreshes the cached input rows."""

    skip_given_rows = False  # later rows read every layer's activations at every pixel

    def __init__(self, model, x, labels=None):
        self.model, self.x, self.labels = model, x, labels
        batch, channels, height, width = x.shape
        dtype, device = model.input_conv.weight.dtype, x.device
        self.radius = model.input_conv.kernel_size[0] // 2
        self.scaled = torch.zeros(
            batch, channels, self.radius + height, width + 2 * self.radius, dtype=dtype, device=device
        )
        self.first = self._window_weight(model.input_conv)
        self.blocks = []
        for block in model.blocks:
            radius = block.conv.dilation[0] * (block.conv.kernel_size[0] // 2)
            shape = (batch, block.conv.in_channels, radius + height, width + 2 * radius)
            self.blocks.append(
                ResidualBlockState(
                    radius=radius,
                    inputs=torch.zeros(shape, dtype=dtype, device=device),
                    reduce=_pointwise(block.reduce),
                    conv=self._window_weight(block.conv),
                    expand=_pointwise(block.expand),
                )
            )
        self.out1, self.out2 = _pointwise(model.out1), _pointwise(model.out2)
        self.class_bias = model.class_bias(labels) if model.class_bias is not None else None
        self.row = None

    @staticmethod
    def _window_weight(conv):
        """Kernel rows down to the centre, flattened: (in * (kh//2 + 1) * kw, out), with the conv's bias and dilation."""
        kh = conv.kernel_size[0]
        weight = _masked_weight(conv)[:, :, : kh // 2 + 1, :]
        return weight.reshape(weight.shape[0], -1).t().contiguous(), conv.bias, conv.dilation[0]

    def _scale(self, x):
        return x.to(self.scaled.dtype) * (2.0 / (self.model.levels - 1)) - 1.0

    def start_row(self, i):
        """Begin row i: rows < i of x are final. Refreshes the cached (scaled) input rows i-1 and i."""
        radius, width = self.radius, self.x.shape[3]
        if i > 0:
            self.scaled[:, :, radius + i - 1, radius : radius + width] = self._scale(self.x[:, :, i - 1])
        self.scaled[:, :, radius + i, radius : radius + width] = self._scale(self.x[:, :, i])
        self.row = i

    @staticmethod
    def _conv_at(inputs, radius, i, j, weight):
        """Masked convolution at (i, j) from inputs padded by `radius`: window rows i-radius..i, columns
        j-radius..j+radius. Returns (B, out)."""
        weight_t, bias, dilation = weight
        window = inputs[:, :, i : i + radius + 1 : dilation, j : j + 2 * radius + 1 : dilation]
        return torch.addmm(bias, window.reshape(len(inputs), -1), weight_t)

    def logits_at(self, j, c=0):
        """Logits of sub-pixel (c, row, j): (B,) Bernoulli logits or (B, K) categorical logits."""
        model, i, radius = self.model, self.row, self.radius
        left = max(j - 1, 0)
        self.scaled[:, :, radius + i, radius + left : radius + j + 1] = self._scale(self.x[:, :, i, left : j + 1])
        h = self._conv_at(self.scaled, radius, i, j, self.first)  # (B, channels)
        if self.class_bias is not None:
            h = h + self.class_bias
        for block in self.blocks:
            reduced = F.relu(torch.addmm(block.reduce.bias, F.relu(h), block.reduce.weight_t))
            block.inputs[:, :, block.radius + i, block.radius + j] = reduced
            convolved = F.relu(self._conv_at(block.inputs, block.radius, i, j, block.conv))
            h = h + torch.addmm(block.expand.bias, convolved, block.expand.weight_t)
        hidden = F.relu(torch.addmm(self.out1.bias, F.relu(h), self.out1.weight_t))
        out = torch.addmm(self.out2.bias, hidden, self.out2.weight_t)
        return model.output_head.channel_logits(out, c)


def _elu(x, out):
    """ELU of x (B, n) into the buffer `out`: max(x, exp(min(x, 0)) - 1), which equals it for every x
    (exp(x) - 1 >= x) and runs several times faster than F.elu on the CPU."""
    torch.clamp(x, max=0, out=out).exp_().sub_(1)
    return torch.maximum(x, out, out=out)


def make_cache(model, x, labels=None):
    """The cache for `model` (a GatedPixelCNN or PixelCNN with causal masks) over images x (B, C, H, W)."""
    if not supports_cache(model):
        raise CourseError(
            f"Cached sampling needs a course_lib GatedPixelCNN or PixelCNN with its causal masks "
            f"intact, not this {type(model).__name__}; use method='naive'."
        )
    return {GatedPixelCNN: GatedPixelCNNCache, PixelCNN: PixelCNNCache}[type(model)](model, x, labels)
