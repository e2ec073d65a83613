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

1. `addmm`: the vertical stack's contribution at column j (`to_h_at`: the v->h 1x1 link, computed once per
   row by `start_row`, biases included) plus the masked 1x3 convolution: the layer's cached inputs at
   columns j - d and j, stored side by side (`window`), times the two taps' weights stacked;
2. and 3. the gate, written as tanh(a) sigmoid(b) = (2 sigmoid(2a) - 1) sigmoid(b): one sigmoid of [2a, b]
   (the cache doubled the weights that make a), then the product sigmoid(2a) sigmoid(b);
4. `addmm`: the residual h plus the gate times the 1x1 output convolution, rewritten as
   [sigmoid(2a) sigmoid(b), sigmoid(b), 1] @ [2 W; -W; b], straight into the next layer's input at column j.

The rewrites change nothing but the rounding (`GatedPixelCNNCache`'s docstring says why they are faster on
a CPU). After the last layer, the two 1x1 output layers give the logits.

A cache reads the model's parameters once when it is built: build a new one after training.
"""

import torch
import torch.nn.functional as F

from .errors import CourseError
from .masks import MaskedConv2d, raster_mask, vertical_mask
from .models import GatedPixelCNN, PixelCNN


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
    """

    # Later rows read only the vertical stack, which `start_row` computes from x: a row whose pixels
    # are all given (completion) needs no per-pixel work at all.
    skip_given_rows = True

    def __init__(self, model, x, labels=None):
        self.model, self.x, self.labels = model, x, labels
        b, c, h, w = x.shape
        p = model.v_in.out_channels
        k0 = model.h_in.kernel_size[1]
        self.top = k0 // 2  # rows above seen by v_in
        taps = [l.h_conv.kernel_size[1] // 2 + 1 for l in model.layers]  # of each 1 x k conv: left and centre
        dil = [l.h_conv.dilation[1] for l in model.layers]
        L = max([k0 // 2] + [d * (n - 1) for d, n in zip(dil, taps)])  # zero columns before a row
        dtype, device = model.v_in.weight.dtype, x.device
        new = lambda *shape: torch.zeros(*shape, dtype=dtype, device=device)  # noqa: E731
        # input rows above the current one, scaled to [-1, 1], after `top` zero rows
        self.xs = new(b, c, self.top + h, w)
        # vertical stack: the rows each layer's input still needs, as (B, ring, W, p), row i at i % ring
        self.ring = [new(b, l.v_conv.dilation[0] * (l.v_conv.kernel_size[0] // 2) + 1, w, p) for l in model.layers]
        self.to_h = [new(b, w, 2 * p) for _ in model.layers]  # per layer: v->h link plus biases, this row
        # horizontal stack: the current row scaled, as (B, L + W, C); each layer's input along the row, with
        # column q = L + j at [:, q % d, q // d]; the gate's [sigmoid(2a) sigmoid(b), sigmoid(b), 1]
        self.x_row = new(b, L + w, c)
        rows = [new(b, d, (L + w) // d + 1, p) for d in dil]
        self.act = new(b, 2 * p + 1)
        self.act[:, 2 * p] = 1
        self.ab, self.sa, self.sb = self.act[:, : 2 * p], self.act[:, :p], self.act[:, p : 2 * p]
        # views made once, indexed by column j (all (B, n)):
        t0 = k0 // 2 + 1
        self.x_window = [self.x_row[:, L + j - t0 + 1 : L + j + 1].reshape(b, t0 * c) for j in range(w)]
        self.slot = [[r[:, (L + j) % d, (L + j) // d] for j in range(w)] for r, d in zip(rows, dil)]
        self.slot.append([new(b, p)] * w)  # slot[l][j]: input of layer l at column j; slot[-1]: the last output
        self.window = [
            [r[:, (L + j) % d, (L + j) // d - n + 1 : (L + j) // d + 1].reshape(b, n * p) for j in range(w)]
            for r, d, n in zip(rows, dil, taps)
        ]  # window[l][j]: the tap inputs of layer l at column j, side by side
        self.to_h_at = [[t[:, j] for j in range(w)] for t in self.to_h]
        self.row_now, self.minus_one = self.x_row[:, L:], torch.tensor(-1.0, dtype=dtype, device=device)
        self.elu1, self.elu2, self.hidden = new(b, p), new(b, p), new(b, p)
        self._prepare_weights()

    def _prepare_weights(self):
        """Masked weights as matrices, with the gates' `a` halves doubled (see the class docstring)."""
        m = self.model
        p = m.v_in.out_channels
        two = torch.ones(2 * p, dtype=self.xs.dtype, device=self.xs.device)
        two[:p] = 2  # doubles the a half of a gate's input (exact in floating point)
        self.v_in_w = _masked_weight(m.v_in)[:, :, : self.top, :]  # rows strictly above
        w = _masked_weight(m.h_in)[:, :, 0, : self.top + 1]  # (p, C, taps): left and centre
        self.h_in_w = w.permute(2, 1, 0).reshape(-1, w.shape[0])  # (taps*C, p), as x_window
        self.layer_w = []
        for layer in m.layers:
            k, d = layer.v_conv.kernel_size[0], layer.v_conv.dilation[0]
            h_w = _masked_weight(layer.h_conv)[:, :, 0, : layer.h_conv.kernel_size[1] // 2 + 1]  # (2p, p, taps)
            vh_w = layer.v_to_h.weight[:, :, 0, 0]  # (2p, 2p), applied to v features whose a half is doubled
            w_out, b_out = _pointwise(layer.h_out)
            ring = d * (k // 2) + 1
            lw = dict(
                v=_masked_weight(layer.v_conv)[:, :, : k // 2 + 1, :] * two[:, None, None, None],  # rows above, centre
                v_bias=layer.v_conv.bias * two,
                # ring slots of the rows i - d*(k//2), ..., i - d, i, for each i % ring
                rows=[
                    torch.tensor([(r - d * t) % ring for t in range(k // 2, -1, -1)], device=self.xs.device)
                    for r in range(ring)
                ],
                d=d,
                padding=d * (k // 2),
                v_to_h=(two[:, None] * vh_w / two[None, :])[:, :, None, None],
                h_bias=(layer.v_to_h.bias + layer.h_conv.bias) * two,
                taps=(h_w * two[:, None, None]).permute(2, 1, 0).reshape(-1, 2 * p),  # (taps*p, 2p), as window
                out=torch.cat([2 * w_out, -w_out, b_out[None]]),  # (2p+1, p)
                class_bias=None,
            )
            if layer.class_bias is not None:
                lw["class_bias"] = [part * two for part in layer.class_bias(self.labels).chunk(2, dim=1)]
            self.layer_w.append(lw)
        self.out1, self.out2 = _pointwise(m.out1), _pointwise(m.out2)

    def start_row(self, i):
        """Compute the vertical stack of row i (every layer) from rows < i of x. Call once per row, in order."""
        m, x = self.model, self.x
        if i > 0:
            self.xs[:, :, self.top + i - 1] = x[:, :, i - 1].to(self.xs.dtype) * (2.0 / (m.levels - 1)) - 1.0
        v = F.conv2d(self.xs[:, :, i : i + self.top], self.v_in_w, m.v_in.bias, padding=(0, self.top))
        self.ring[0][:, i % self.ring[0].shape[1]] = v[:, :, 0].transpose(1, 2)
        for l, lw in enumerate(self.layer_w):
            ring = self.ring[l]
            rows = torch.index_select(ring, 1, lw["rows"][i % ring.shape[1]]).permute(0, 3, 1, 2)  # (B, p, k//2+1, W)
            feat = F.conv2d(rows, lw["v"], lw["v_bias"], padding=(0, lw["padding"]), dilation=(1, lw["d"]))
            self.to_h[l].copy_(F.conv2d(feat, lw["v_to_h"], lw["h_bias"])[:, :, 0].transpose(1, 2))  # 1x1 conv
            feat = feat[:, :, 0].transpose(1, 2)  # (B, W, 2p): [2a, b] of the vertical gate
            if lw["class_bias"] is not None:
                bv, bh = lw["class_bias"]
                feat = feat + bv[:, None]
                self.to_h[l] += bh[:, None]
            if l + 1 < len(self.layer_w):  # the input of the next layer's vertical stack; the last one is unused
                s = torch.sigmoid(feat)
                p = s.shape[2] // 2
                nxt = self.ring[l + 1]
                torch.mul(s[:, :, :p].mul_(2).sub_(1), s[:, :, p:], out=nxt[:, i % nxt.shape[1]])
        self.x_now = x[:, :, i].transpose(1, 2)  # (B, W, C) view of row i of x

    def logits_at(self, j, c=0):
        """Logits of sub-pixel (c, row, j): (B,) Bernoulli logits or (B, K) categorical logits."""
        m = self.model
        # the row so far, scaled to [-1, 1] as the model scales its input
        torch.add(self.minus_one, self.x_now, alpha=2.0 / (m.levels - 1), out=self.row_now)
        torch.addmm(m.h_in.bias, self.x_window[j], self.h_in_w, out=self.slot[0][j])  # 1 x k0 mask A conv
        for l, lw in enumerate(self.layer_w):
            torch.addmm(self.to_h_at[l][j], self.window[l][j], lw["taps"], out=self.ab)  # [2a, b] of the gate
            self.ab.sigmoid_()
            torch.mul(self.sa, self.sb, out=self.sa)  # [sigmoid(2a) sigmoid(b), sigmoid(b), 1]
            torch.addmm(self.slot[l][j], self.act, lw["out"], out=self.slot[l + 1][j])  # h + gate @ W_out + b_out
        h = self.slot[-1][j]
        hidden = torch.addmm(self.out1[1], _elu(h, self.elu1), self.out1[0], out=self.hidden)
        out = torch.addmm(self.out2[1], _elu(hidden, self.elu2), self.out2[0])
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


def _elu(x, out):
    """ELU of x (B, n) into the buffer `out`: max(x, exp(min(x, 0)) - 1), which equals it for every x
    (exp(x) - 1 >= x) and runs several times faster than F.elu on the CPU."""
    torch.clamp(x, max=0, out=out).exp_().sub_(1)
    return torch.maximum(x, out, out=out)


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
