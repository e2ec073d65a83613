"""Self-attention over pixels: a small causal transformer (in the spirit of Image GPT and PixelSNAIL's
attention), its key/value cache, and exact cached sampling with it.

The image is read as a sequence of D = C*H*W tokens in raster-then-channel order (row by row, R -> G -> B
inside a pixel), the order of the masks of lesson 02 and 06. Token t carries the value of sub-pixel t - 1
(a learned start vector for t = 0) plus a learned position vector, and predicts sub-pixel t. Attention
with a causal mask lets token t read tokens 0..t, that is the values of sub-pixels 0..t-1: the whole past,
where a stack of masked convolutions sees a cone of it. The price: every layer compares every token with
every earlier one, (B, heads, D, D) attention weights, quadratic in the number of pixels.

Sampling keeps every layer's keys and values (`AttentionCache`): a new sub-pixel runs one token through the
layers and attends to the cached keys, instead of a forward pass over the whole image. `sample_with_cache`
draws the same random numbers in the same order as `sampling.sample(method="naive")`, so with a seed the
images are identical.

Images x: (B, C, H, W) -> logits in the layout of `models.py`: (B, C, H, W) Bernoulli logits for two
levels, (B, K, C, H, W) otherwise.
"""

import math

import torch
import torch.nn as nn

from .device import model_device
from .errors import CourseError
from .heads import draw, probabilities
from .models import AutoregressiveImageModel, eval_mode, register_model
from .sampling import _prepare


def causal_mask(tokens, device=None) -> torch.Tensor:
    """(T, T) bool, True where attention is forbidden: query t may read keys 0..t, not t+1.. (the future)."""
    return torch.ones(tokens, tokens, dtype=torch.bool, device=device).triu(1)


def attend(q, k, v, mask=None):
    """Scaled dot-product attention: softmax(q k^T / sqrt(dh)) v. q: (..., Tq, dh), k, v: (..., Tk, dh),
    mask: (Tq, Tk) bool, True where forbidden. Returns (..., Tq, dh)."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    return scores.softmax(-1) @ v


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in raster order: (B, T, dim) -> (B, T, dim)."""

    def __init__(self, dim, heads):
        super().__init__()
        if dim % heads:
            raise CourseError(f"dim={dim} must be a multiple of heads={heads}; each head gets dim // heads channels.")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def split(self, h):
        """(B, T, dim) -> queries, keys, values, each (B, heads, T, dim // heads)."""
        b, t, d = h.shape
        return self.qkv(h).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)

    def forward(self, h):
        b, t, d = h.shape
        q, k, v = self.split(h)
        out = attend(q, k, v, causal_mask(t, h.device))  # (B, heads, T, dh)
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: h + attention(LN(h)), then + MLP(LN(h)). (B, T, dim) -> same.
    LayerNorm normalises each token on its own, so it mixes nothing across positions."""

    def __init__(self, dim, heads):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, h):
        h = h + self.attn(self.ln1(h))
        return h + self.mlp(self.ln2(h))


class PixelTransformer(AutoregressiveImageModel):
    """A causal transformer over the D = C*H*W sub-pixels (see the module docstring).
    x: (B, C, H, W) integer levels -> logits in the layout of `models.py`."""

    def __init__(self, image_shape=(1, 28, 28), levels=2, dim=32, heads=2, layers=2, num_classes=None):
        if num_classes is not None:
            raise CourseError("PixelTransformer here is unconditional; build it with num_classes=None.")
        super().__init__(image_shape, levels, None)
        self._config = dict(image_shape=list(self.image_shape), levels=levels, dim=dim, heads=heads, layers=layers)
        c, h, w = self.image_shape
        self.tokens = c * h * w
        self.start = nn.Parameter(torch.zeros(dim))  # the input of token 0: no sub-pixel before it
        self.value_in = nn.Linear(1, dim)  # the previous sub-pixel's value, scaled to [-1, 1]
        self.position = nn.Parameter(0.02 * torch.randn(self.tokens, dim))  # one per (row, column, channel)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads) for _ in range(layers))
        self.ln_out = nn.LayerNorm(dim)
        self.head_out = nn.Linear(dim, self.outputs_per_channel)

    def embed(self, x):
        """Integer images (B, C, H, W) -> input tokens (B, D, dim): start, then sub-pixels 0..D-2, plus positions."""
        values = self.scale(x).permute(0, 2, 3, 1).reshape(len(x), self.tokens, 1)  # raster-then-channel
        previous = self.value_in(values[:, :-1])
        first = self.start.expand(len(x), 1, -1)
        return torch.cat([first, previous], 1) + self.position

    def forward(self, x, labels=None, score=False):
        """Logits in the layout of `models.py`, or with score=True each image's log-likelihood (B,)."""
        self._check_input(x, labels)
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        out = self.head_out(self.ln_out(h))  # (B, D, K')
        c, hh, w = self.image_shape
        out = out.reshape(len(x), hh, w, c * self.outputs_per_channel).permute(0, 3, 1, 2)
        return self.score(out, x) if score else self.to_logits(out)

    def make_cache(self, x, labels=None):
        """A key/value cache over the images x (B, C, H, W) being sampled (`AttentionCache`)."""
        return AttentionCache(self, x, labels)


class AttentionCache:
    """Keys and values of a `PixelTransformer` for a batch being sampled in raster order (the interface of
    the caches in `cached_sampling`): call `start_row(i)` once rows < i of x are final, then `logits_at(j, c)`
    for j = 0..W-1 (and c = 0..C-1), in order. It returns the logits of sub-pixel (c, i, j), (B,) for a
    binary model or (B, K), and stores the new token's keys and values in every layer: (B, heads, D, dh) each.
    Each step costs O(t) for token t (attention to the t cached keys), the whole image O(D^2)."""

    skip_given_rows = False  # every token's keys and values are read by all later tokens

    def __init__(self, model, x, labels=None):
        self.model, self.x, self.row = model, x, None
        b, dim = x.shape[0], model.position.shape[1]
        heads = model.blocks[0].attn.heads if len(model.blocks) else 1
        new = lambda: torch.zeros(b, heads, model.tokens, dim // heads, dtype=model.position.dtype, device=x.device)  # noqa: E731
        self.keys = [new() for _ in model.blocks]
        self.values = [new() for _ in model.blocks]

    def start_row(self, i):
        """Begin row i (nothing to compute: every token is run when its sub-pixel comes)."""
        self.row = i

    def token(self, t):
        """Input token t, (B, dim): the start vector or the scaled value of sub-pixel t - 1, plus position t."""
        m = self.model
        if t == 0:
            return (m.start + m.position[0]).expand(self.x.shape[0], -1)
        c, _, w = m.image_shape
        prev = t - 1
        value = self.x[:, prev % c, prev // c // w, prev // c % w]
        scaled = value.to(m.position.dtype) * (2.0 / (m.levels - 1)) - 1.0
        return m.value_in(scaled[:, None]) + m.position[t]

    def logits_at(self, j, c=0):
        """Logits of sub-pixel (c, row, j): (B,) Bernoulli logits or (B, K) categorical logits."""
        m = self.model
        t = (self.row * m.image_shape[2] + j) * m.image_shape[0] + c
        h = self.token(t)[:, None]  # (B, 1, dim)
        for block, keys, values in zip(m.blocks, self.keys, self.values):
            q, k, v = block.attn.split(block.ln1(h))  # (B, heads, 1, dh) each
            keys[:, :, t], values[:, :, t] = k[:, :, 0], v[:, :, 0]
            out = attend(q, keys[:, :, : t + 1], values[:, :, : t + 1])  # the past and itself: no mask needed
            h = h + block.attn.proj(out.transpose(1, 2).reshape(h.shape))
            h = h + block.mlp(block.ln2(h))
        out = m.head_out(m.ln_out(h[:, 0]))  # (B, K'): the K' numbers of this one sub-pixel
        return m.output_head.channel_logits(out, 0)


@torch.no_grad()
def sample_with_cache(model, n, *, temperature=1.0, given=None, seed=None):
    """Draw `n` images (n, C, H, W) from a `PixelTransformer` with its key/value cache (returned on the CPU).
    Arguments as `sampling.sample`; the same seed gives the very images `sample(..., method="naive")` does."""
    if not temperature > 0:
        raise CourseError(f"temperature must be positive, got {temperature}; use e.g. 1.0.")
    device = model_device(model)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed) if seed is not None else generator.seed()
    x, known, _ = _prepare(model, n, None, given, device)
    _, channels, h, w = x.shape
    with eval_mode(model):
        cache = model.make_cache(x)
        for i in range(h):
            cache.start_row(i)
            for j in range(w):
                for c in range(channels):
                    logits = cache.logits_at(j, c)
                    todo = ~known[:, c, i, j]
                    if todo.any():
                        x[:, c, i, j] = torch.where(
                            todo, draw(probabilities(logits, temperature), generator), x[:, c, i, j]
                        )
    return x.cpu()


register_model("attention", PixelTransformer)
