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

Each per-pixel step is a few small matrix products of shape (B, channels), instead of a forward
pass over (B, channels, H, W). The arithmetic is that of the full forward pass (the same weights,
masks and biases), so in float64 the logits agree with the naive ones to ~1e-12, and with the same
seed the sampled images are identical (`tests/test_cached_sampling.py`).

A cache reads the model's parameters once when it is built: build a new one after training.
"""

import torch
import torch.nn.functional as F

from .errors import CourseError
from .masks import MaskedConv2d, raster_mask, vertical_mask
from .models import GatedPixelCNN, PixelCNN, gate


def _masked_weight(conv: MaskedConv2d) -> torch.Tensor:
    """The effective kernel weight * mask, shape (out, in, kh, kw)."""
    return conv.weight * conv.mask


def _pointwise(conv) -> tuple:
    """A 1x1 convolution as (W^T, bias) for `torch.addmm(bias, x, W^T)` on x of shape (B, in)."""
    weight = _masked_weight(conv) if isinstance(conv, MaskedConv2d) else conv.weight
    return weight[:, :, 0, 0].t().contiguous(), conv.bias


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


class GatedPixelCNNCache:
    """Activations of a `GatedPixelCNN` for a batch being sampled in raster order.

    x: (B, C, H, W) integer images that the sampling loop fills in place; labels: (B,) or None.
    Call `start_row(i)` once rows < i of x are final, then `logits_at(j, c)` for j = 0..W-1 (and
    c = 0..C-1): it returns the logits of sub-pixel (c, i, j), (B,) for a binary model or (B, K),
    computed from x[:, :, i, :j] and the channels of pixel (i, j) before c.
    """

    # Later rows read only the vertical stack, which `start_row` computes from x: a row whose pixels
    # are all given (completion) needs no per-pixel work at all.
    skip_given_rows = True

    def __init__(self, model, x, labels=None):
        self.model, self.x, self.labels = model, x, labels
        b, c, h, w = x.shape
        p = model.v_in.out_channels
        self.k0 = model.h_in.kernel_size[1]
        self.top = self.k0 // 2  # rows above seen by v_in
        self.left = max(
            [self.k0 // 2] + [l.h_conv.dilation[1] * (l.h_conv.kernel_size[1] // 2) for l in model.layers]
        )  # zero columns left of the row
        self.pad = max([l.v_conv.dilation[0] * (l.v_conv.kernel_size[0] // 2) for l in model.layers] + [0])
        dtype, device = model.v_in.weight.dtype, x.device
        # scaled input image, `top` zero rows above; the current row, `left` zero columns before it
        self.xs = torch.zeros(b, c, self.top + h, w, dtype=dtype, device=device)
        self.x_row = torch.zeros(b, c, self.left + w, dtype=dtype, device=device)
        # vertical stack: input of every layer for every row so far (`pad` zero rows above)
        self.v = [torch.zeros(b, p, self.pad + h, w, dtype=dtype, device=device) for _ in model.layers]
        # horizontal stack: input of every layer along the current row, as (column, B, p)
        self.h = [torch.zeros(self.left + w, b, p, dtype=dtype, device=device) for _ in model.layers]
        self.v_to_h_row = [None] * len(model.layers)  # (W, B, 2p) per layer, this row
        self._prepare_weights()
        self.row = None

    def _prepare_weights(self):
        m = self.model
        self.v_in_w = _masked_weight(m.v_in)[:, :, : self.top, :]  # rows strictly above
        w = _masked_weight(m.h_in)[:, :, 0, : self.k0 // 2 + 1]  # (p, C, taps): left and centre
        self.h_in_w = w.reshape(w.shape[0], -1).t().contiguous()  # (C*taps, p)
        self.layer_w = []
        for layer in m.layers:
            k = layer.v_conv.kernel_size[0]
            v_w = _masked_weight(layer.v_conv)[:, :, : k // 2 + 1, :]  # rows above and the centre row
            h_w = _masked_weight(layer.h_conv)[:, :, 0, : layer.h_conv.kernel_size[1] // 2 + 1]
            taps = [h_w[:, :, t].t().contiguous() for t in range(h_w.shape[2])]  # (p, 2p) each, left to right
            self.layer_w.append(dict(v=v_w, taps=taps, out=_pointwise(layer.h_out)))
        self.out1, self.out2 = _pointwise(m.out1), _pointwise(m.out2)

    def _scale(self, x):
        return x.to(self.xs.dtype) * (2.0 / (self.model.levels - 1)) - 1.0

    def start_row(self, i):
        """Compute the vertical stack of row i (every layer) from rows < i of x. Call once per row, in order."""
        m, x = self.model, self.x
        if i > 0:
            self.xs[:, :, self.top + i - 1] = self._scale(x[:, :, i - 1])
        v = F.conv2d(self.xs[:, :, i : i + self.top], self.v_in_w, m.v_in.bias, padding=(0, self.k0 // 2))
        for l, (layer, lw) in enumerate(zip(m.layers, self.layer_w)):
            self.v[l][:, :, self.pad + i] = v[:, :, 0]
            d, k = layer.v_conv.dilation[0], layer.v_conv.kernel_size[0]
            rows = self.v[l][:, :, self.pad + i - d * (k // 2) : self.pad + i + 1]
            v_feat = F.conv2d(rows, lw["v"], layer.v_conv.bias, padding=(0, d * (k // 2)), dilation=d)
            to_h = F.conv2d(v_feat, layer.v_to_h.weight, layer.v_to_h.bias)[:, :, 0]  # (B, 2p, W)
            to_h = to_h + layer.h_conv.bias[None, :, None]
            if layer.class_bias is not None:
                bv, bh = layer.class_bias(self.labels)[:, :, None, None].chunk(2, dim=1)
                v_feat, to_h = v_feat + bv, to_h + bh[:, :, :, 0]
            self.v_to_h_row[l] = to_h.permute(2, 0, 1).contiguous()  # (W, B, 2p)
            v = gate(v_feat)
        self.x_row.zero_()
        self.x_row[:, :, self.left :] = self._scale(x[:, :, i])
        self.row = i

    def logits_at(self, j, c=0):
        """Logits of sub-pixel (c, row, j): (B,) Bernoulli logits or (B, K) categorical logits."""
        m, i, L = self.model, self.row, self.left
        lo = max(j - 1, 0)
        self.x_row[:, :, L + lo : L + j + 1] = self._scale(self.x[:, :, i, lo : j + 1])  # pixels drawn since
        taps = self.k0 // 2 + 1
        window = self.x_row[:, :, L + j - taps + 1 : L + j + 1].reshape(len(self.x_row), -1)  # (B, C*taps)
        h = torch.addmm(m.h_in.bias, window, self.h_in_w)  # (B, p)
        for l, (layer, lw) in enumerate(zip(m.layers, self.layer_w)):
            self.h[l][L + j] = h
            d = layer.h_conv.dilation[1]
            feat = self.v_to_h_row[l][j]  # (B, 2p) with both biases
            n_taps = len(lw["taps"])
            for t, tap in enumerate(lw["taps"]):
                feat = torch.addmm(feat, self.h[l][L + j - d * (n_taps - 1 - t)], tap)
            w_out, b_out = lw["out"]
            h = h + torch.addmm(b_out, gate(feat), w_out)
        out = torch.addmm(self.out2[1], F.elu(torch.addmm(self.out1[1], F.elu(h), self.out1[0])), self.out2[0])
        return m.head_logits(_select(out, c, m.outputs_per_channel))


class PixelCNNCache:
    """Activations of a `PixelCNN` for a batch being sampled in raster order (same interface as
    `GatedPixelCNNCache`). Every layer is computed at one position per pixel from the cached
    activations of the layer below; `start_row` only refreshes the cached input rows."""

    skip_given_rows = False  # later rows read every layer's activations at every pixel

    def __init__(self, model, x, labels=None):
        self.model, self.x, self.labels = model, x, labels
        b, c, h, w = x.shape
        dtype, device = model.input_conv.weight.dtype, x.device
        k0 = model.input_conv.kernel_size[0]
        self.r0 = k0 // 2
        self.xs = torch.zeros(b, c, self.r0 + h, w + 2 * self.r0, dtype=dtype, device=device)
        self.first = self._window_weight(model.input_conv)
        self.blocks = []
        for block in model.blocks:
            r = block.conv.dilation[0] * (block.conv.kernel_size[0] // 2)
            buf = torch.zeros(b, block.conv.in_channels, r + h, w + 2 * r, dtype=dtype, device=device)
            self.blocks.append(
                dict(
                    r=r,
                    buf=buf,
                    reduce=_pointwise(block.reduce),
                    conv=self._window_weight(block.conv),
                    expand=_pointwise(block.expand),
                )
            )
        self.out1, self.out2 = _pointwise(model.out1), _pointwise(model.out2)
        self.bias0 = model.class_bias(labels) if model.class_bias is not None else None
        self.row = None

    @staticmethod
    def _window_weight(conv):
        """Kernel rows down to the centre, flattened: (in * (kh//2 + 1) * kw, out), with the conv's bias."""
        kh = conv.kernel_size[0]
        w = _masked_weight(conv)[:, :, : kh // 2 + 1, :]
        return w.reshape(w.shape[0], -1).t().contiguous(), conv.bias, conv.dilation[0]

    def _scale(self, x):
        return x.to(self.xs.dtype) * (2.0 / (self.model.levels - 1)) - 1.0

    def start_row(self, i):
        """Begin row i: rows < i of x are final. Refreshes the cached (scaled) input rows i-1 and i."""
        r, w = self.r0, self.x.shape[3]
        if i > 0:
            self.xs[:, :, r + i - 1, r : r + w] = self._scale(self.x[:, :, i - 1])
        self.xs[:, :, r + i, r : r + w] = self._scale(self.x[:, :, i])
        self.row = i

    @staticmethod
    def _at(buf, r, i, j, weight):
        """Masked convolution at (i, j) from a buffer padded by r: window rows i-r..i, cols j-r..j+r."""
        w_t, bias, d = weight
        window = buf[:, :, i : i + r + 1 : d, j : j + 2 * r + 1 : d].reshape(len(buf), -1)
        return torch.addmm(bias, window, w_t)

    def logits_at(self, j, c=0):
        """Logits of sub-pixel (c, row, j): (B,) Bernoulli logits or (B, K) categorical logits."""
        m, i, r = self.model, self.row, self.r0
        lo = max(j - 1, 0)
        self.xs[:, :, r + i, r + lo : r + j + 1] = self._scale(self.x[:, :, i, lo : j + 1])
        h = self._at(self.xs, r, i, j, self.first)  # (B, channels)
        if self.bias0 is not None:
            h = h + self.bias0
        for blk in self.blocks:
            w_t, b = blk["reduce"]
            blk["buf"][:, :, blk["r"] + i, blk["r"] + j] = F.relu(torch.addmm(b, F.relu(h), w_t))
            a = F.relu(self._at(blk["buf"], blk["r"], i, j, blk["conv"]))
            w_t, b = blk["expand"]
            h = h + torch.addmm(b, a, w_t)
        out = torch.addmm(self.out2[1], F.relu(torch.addmm(self.out1[1], F.relu(h), self.out1[0])), self.out2[0])
        return m.head_logits(_select(out, c, m.outputs_per_channel))


def _select(out, c, k):
    """From the 1x1 output (B, C*k), the logits of channel c: (B,) if k == 1, else (B, k)."""
    return out[:, c] if k == 1 else out[:, c * k : (c + 1) * k]


def make_cache(model, x, labels=None):
    """The cache for `model` (a GatedPixelCNN or PixelCNN with causal masks) over images x (B, C, H, W)."""
    if not supports_cache(model):
        raise CourseError(
            f"Cached sampling needs a course_lib GatedPixelCNN or PixelCNN with its causal masks "
            f"intact, not this {type(model).__name__}; use method='naive'."
        )
    return {GatedPixelCNN: GatedPixelCNNCache, PixelCNN: PixelCNNCache}[type(model)](model, x, labels)
