"""PixelCNN (van den Oord et al. 2016) and Gated PixelCNN ("Conditional Image Generation with
PixelCNN Decoders"), for binary (Bernoulli) or K-level (categorical) images with 1 or 3 channels.

Every model maps integer images x: (B, C, H, W) with values 0..levels-1 to logits:
    levels == 2:  (B, C, H, W)      one Bernoulli logit per sub-pixel
    levels  > 2:  (B, K, C, H, W)   K-way categorical logits per sub-pixel (K = levels)
so H and W stay the last two dimensions and `F.cross_entropy(logits, x)` works directly.
With head="logistic" (K > 2) the network outputs 3M numbers per sub-pixel, a discretized logistic
mixture (`logistic.py`), and returns its K log-probabilities in the place of the categorical logits.
Nothing mixes information across positions except the masked convolutions (no BatchNorm).
"""

from contextlib import contextmanager
from typing import Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import CourseError
from .logistic import mixture_log_prob_at, mixture_log_probs
from .masks import MaskedConv2d

HEADS = ("softmax", "logistic")


def log_prob_from_logits(logits, x):
    """Log-likelihood in nats of each image, shape (B,).

    logits: (B, C, H, W) Bernoulli logits, or (B, K, C, H, W) categorical logits.
    x: (B, C, H, W) integer levels (0/1 for Bernoulli, 0..K-1 for categorical).
    """
    if logits.dim() == 4:
        per_dim = -F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="none")
    else:
        per_dim = -F.cross_entropy(logits.float(), x.long(), reduction="none")
    return per_dim.flatten(1).sum(1)


class ImageModel(Protocol):
    """The model contract: what `fit`, `evaluate`, `sample` and the checkpoints need of a model.

    image_shape: (C, H, W); levels: K (2 = binary); num_classes: the number of classes it is conditioned
    on, or None. Calling it with integer images x: (B, C, H, W) (and labels: (B,) when conditional)
    returns logits in the layout above: (B, C, H, W) for K = 2, (B, K, C, H, W) otherwise.
    Saving and loading also need `config` (the keyword arguments that rebuild it) and a registered name
    (`register_model`). `AutoregressiveImageModel` subclasses provide all of it; `IndependentPixelModel`
    (likelihood.py) provides the first part.
    """

    image_shape: tuple
    levels: int
    num_classes: int | None

    def __call__(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor: ...


@contextmanager
def eval_mode(model):
    """Run a block with `model` in eval mode, then give it back the mode it had (train or eval), even
    after an error: `with eval_mode(model): ...`. Scoring and sampling need eval mode; the caller's
    training loop must not find its model switched."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


class AutoregressiveImageModel(nn.Module):
    """Shared plumbing: configuration, input scaling, shape checks, logits layout, log-likelihood.

    A subclass sets `self._config` to the keyword arguments of its constructor, so that
    `build_model(name, **model.config)` rebuilds it (see `register_model`).
    """

    def __init__(self, image_shape, levels, num_classes, head="softmax", mixtures=5):
        super().__init__()
        if levels < 2 or levels > 256:
            raise CourseError(f"levels={levels} is not supported; use 2 (binary) up to 256 levels.")
        if head not in HEADS:
            raise CourseError(f"head={head!r} is not known; use 'softmax' or 'logistic'.")
        if head == "logistic" and (levels == 2 or int(mixtures) < 1):
            raise CourseError(
                "head='logistic' needs levels > 2 and mixtures >= 1 (binary images use a Bernoulli output); "
                f"got levels={levels}, mixtures={mixtures}."
            )
        self.image_shape = tuple(int(s) for s in image_shape)
        self.levels = int(levels)
        self.num_classes = num_classes
        self.head = head
        if self.levels == 2:
            self.outputs_per_channel = 1
        else:
            self.outputs_per_channel = self.levels if head == "softmax" else 3 * int(mixtures)

    @property
    def config(self) -> dict:
        """Keyword arguments that rebuild this model (stored in checkpoints)."""
        config = self.__dict__.get("_config")
        if config is None:
            raise CourseError(
                f"{type(self).__name__} does not record its configuration, so it cannot be saved; "
                f"set self._config = dict(...) of its constructor's arguments in __init__."
            )
        return dict(config)

    def _check_input(self, x, labels):
        if tuple(x.shape[1:]) != self.image_shape:
            got = "x".join(map(str, x.shape[1:]))
            want = "x".join(map(str, self.image_shape))
            raise CourseError(
                f"This model was built for {want} images but got {got}; "
                f"load data of that size or build the model with image_shape={tuple(x.shape[1:])}."
            )
        if self.num_classes is not None and labels is None:
            raise CourseError("This model is class-conditional; pass labels=... (one class index per image).")

    def scale(self, x):
        """Integer levels (B, C, H, W) -> floats in [-1, 1] of the weights' dtype (differentiable for float input)."""
        dtype = next(self.parameters()).dtype
        return x.to(dtype) * (2.0 / (self.levels - 1)) - 1.0

    def to_logits(self, out):
        """(B, C*K', H, W) network output -> (B, C, H, W) for binary, (B, K, C, H, W) otherwise."""
        b, _, h, w = out.shape
        c, k = self.image_shape[0], self.outputs_per_channel
        if k == 1:
            return out
        if self.head == "logistic":  # (B, C, 3M, H, W) -> (B, C, H, W, K) -> (B, K, C, H, W)
            params = out.view(b, c, k, h, w).permute(0, 1, 3, 4, 2)
            return mixture_log_probs(params, self.levels).permute(0, 4, 1, 2, 3)
        return out.view(b, c, k, h, w).transpose(1, 2)

    def head_logits(self, out):
        """One sub-pixel's K' network outputs (..., K') -> its logits (..., K): the identity for the
        softmax and Bernoulli heads, the mixture's log-probabilities for the logistic head."""
        return mixture_log_probs(out, self.levels) if self.head == "logistic" else out

    def score(self, out, x):
        """(B, C*K', H, W) network output and the images x (B, C, H, W) -> log-likelihood of each image in
        nats, (B,), in float32 like `log_prob_from_logits`. The logistic head evaluates only each sub-pixel's
        observed level, from its (B, C, H, W, 3M) mixture parameters."""
        if self.head != "logistic":
            return log_prob_from_logits(self.to_logits(out), x)
        b, _, h, w = out.shape
        c, k = self.image_shape[0], self.outputs_per_channel
        params = out.float().view(b, c, k, h, w).permute(0, 1, 3, 4, 2)  # (B, C, H, W, 3M)
        return mixture_log_prob_at(params, x, self.levels).flatten(1).sum(1)

    def log_prob(self, x, labels=None):
        """Log-likelihood of each image in nats, shape (B,). (A subclass whose forward has no `score`
        argument keeps working with the softmax and Bernoulli heads.)"""
        if self.head == "logistic":
            return self(x, labels, score=True)
        return log_prob_from_logits(self(x, labels), x)


class ResidualBlock(nn.Module):
    """PixelCNN residual block: 1x1 -> 3x3 mask B -> 1x1 with ReLUs, plus the identity. (B, ch, H, W) -> same."""

    def __init__(self, channels, data_channels, kernel_size=3, dilation=1):
        super().__init__()
        half = max(channels // 2, data_channels)
        self.reduce = MaskedConv2d(channels, half, 1, "B", data_channels)
        self.conv = MaskedConv2d(half, half, kernel_size, "B", data_channels, dilation=dilation)
        self.expand = MaskedConv2d(half, channels, 1, "B", data_channels)

    def forward(self, x):
        h = self.reduce(F.relu(x))
        h = self.conv(F.relu(h))
        return x + self.expand(F.relu(h))


class PixelCNN(AutoregressiveImageModel):
    """The original PixelCNN: 7x7 mask-A convolution, residual blocks of mask-B convolutions,
    two 1x1 output layers. Its stacked masks leave a blind spot above and to the right.

    x: (B, C, H, W) integer levels; labels: (B,) class indices if `num_classes` is set.
    """

    def __init__(
        self,
        image_shape=(1, 28, 28),
        levels=2,
        channels=64,
        n_blocks=6,
        kernel_size=3,
        first_kernel_size=7,
        num_classes=None,
        head="softmax",
        mixtures=5,
    ):
        super().__init__(image_shape, levels, num_classes, head, mixtures)
        self._config = dict(
            image_shape=list(self.image_shape),
            levels=levels,
            channels=channels,
            n_blocks=n_blocks,
            kernel_size=kernel_size,
            first_kernel_size=first_kernel_size,
            num_classes=num_classes,
        )
        if head != "softmax":  # recorded only when used, so softmax models keep their old configuration
            self._config.update(head=head, mixtures=mixtures)
        c = self.image_shape[0]
        self.input_conv = MaskedConv2d(c, channels, first_kernel_size, "A", c)
        self.blocks = nn.ModuleList(ResidualBlock(channels, c, kernel_size) for _ in range(n_blocks))
        self.class_bias = nn.Embedding(num_classes, channels) if num_classes else None
        self.out1 = MaskedConv2d(channels, channels, 1, "B", c)
        self.out2 = MaskedConv2d(channels, c * self.outputs_per_channel, 1, "B", c)

    def forward(self, x, labels=None, score=False):
        """Logits in the layout above, or with score=True each image's log-likelihood (B,) (see `score`)."""
        self._check_input(x, labels)
        h = self.input_conv(self.scale(x))
        if self.class_bias is not None:
            h = h + self.class_bias(labels)[:, :, None, None]
        for block in self.blocks:
            h = block(h)
        out = self.out2(F.relu(self.out1(F.relu(h))))
        return self.score(out, x) if score else self.to_logits(out)


def gate(x):
    """Gated activation tanh(a) * sigmoid(b) of the two halves of the channels: (B, 2p, H, W) -> (B, p, H, W)."""
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedBlock(nn.Module):
    """One gated layer with a vertical stack (rows above) and a horizontal stack (pixels to the left).

    v, h: (B, p, H, W) -> (B, p, H, W) each. The vertical features feed the horizontal stack through a
    1x1 convolution before the gate; the horizontal stack has a residual connection.
    """

    def __init__(self, channels, data_channels, kernel_size=3, dilation=1, num_classes=None):
        super().__init__()
        p, c = channels, data_channels
        self.v_conv = MaskedConv2d(p, 2 * p, kernel_size, "V", dilation=dilation)
        self.h_conv = MaskedConv2d(p, 2 * p, (1, kernel_size), "B", c, dilation=dilation, out_chunks=2)
        self.v_to_h = nn.Conv2d(2 * p, 2 * p, 1)  # the vertical stack only knows rows above: no mask needed
        self.h_out = MaskedConv2d(p, p, 1, "B", c)
        self.class_bias = nn.Embedding(num_classes, 4 * p) if num_classes else None

    def forward(self, v, h, labels=None):
        v_feat = self.v_conv(v)
        h_feat = self.h_conv(h) + self.v_to_h(v_feat)
        if self.class_bias is not None:
            bv, bh = self.class_bias(labels)[:, :, None, None].chunk(2, dim=1)
            v_feat, h_feat = v_feat + bv, h_feat + bh
        return gate(v_feat), h + self.h_out(gate(h_feat))


class GatedPixelCNN(AutoregressiveImageModel):
    """Gated PixelCNN without a blind spot, with optional dilation and class conditioning.

    x: (B, C, H, W) integer levels; labels: (B,) class indices if `num_classes` is set.
    `dilations` gives one dilation per gated layer (its length is the number of layers).
    """

    def __init__(
        self,
        image_shape=(1, 28, 28),
        levels=2,
        channels=32,
        dilations=(1, 2, 1, 4, 1),
        kernel_size=3,
        first_kernel_size=7,
        num_classes=None,
        head="softmax",
        mixtures=5,
    ):
        super().__init__(image_shape, levels, num_classes, head, mixtures)
        dilations = [int(d) for d in dilations]
        self._config = dict(
            image_shape=list(self.image_shape),
            levels=levels,
            channels=channels,
            dilations=dilations,
            kernel_size=kernel_size,
            first_kernel_size=first_kernel_size,
            num_classes=num_classes,
        )
        if head != "softmax":  # recorded only when used, so softmax models keep their old configuration
            self._config.update(head=head, mixtures=mixtures)
        c, k0 = self.image_shape[0], first_kernel_size
        self.v_in = MaskedConv2d(c, channels, k0, "V0")
        self.h_in = MaskedConv2d(c, channels, (1, k0), "A", c)
        self.layers = nn.ModuleList(GatedBlock(channels, c, kernel_size, d, num_classes) for d in dilations)
        self.out1 = MaskedConv2d(channels, channels, 1, "B", c)
        self.out2 = MaskedConv2d(channels, c * self.outputs_per_channel, 1, "B", c)

    def forward(self, x, labels=None, score=False):
        """Logits in the layout above, or with score=True each image's log-likelihood (B,) (see `score`)."""
        self._check_input(x, labels)
        scaled = self.scale(x)
        v, h = self.v_in(scaled), self.h_in(scaled)
        for layer in self.layers:
            v, h = layer(v, h, labels)
        out = self.out2(F.elu(self.out1(F.elu(h))))
        return self.score(out, x) if score else self.to_logits(out)


MODELS = {"gated": GatedPixelCNN, "pixelcnn": PixelCNN}


def register_model(name: str, cls) -> None:
    """Make `cls` (a subclass of AutoregressiveImageModel) known by `name`, so checkpoints can rebuild it."""
    if not (isinstance(cls, type) and issubclass(cls, AutoregressiveImageModel)):
        raise CourseError(f"register_model needs a subclass of AutoregressiveImageModel, not {cls!r}.")
    MODELS[name] = cls


def model_name(model) -> str:
    """Registry name ("gated", "pixelcnn", or one given to `register_model`) of a model instance."""
    for name, cls in MODELS.items():
        if type(model) is cls:
            return name
    cls = type(model).__name__
    raise CourseError(
        f"{cls} is not a registered model, so a checkpoint could not rebuild it; "
        f"call course_lib.models.register_model('my-name', {cls}) first."
    )


def build_model(name="gated", **config) -> AutoregressiveImageModel:
    """Build a model by registry name ("gated", "pixelcnn", ...) or class name, with keyword configuration."""
    key = next((k for k, cls in MODELS.items() if cls.__name__ == name), name)
    if key not in MODELS:
        raise CourseError(f"Unknown model {name!r}; choose one of: {', '.join(MODELS)}.")
    return MODELS[key](**config)


def count_parameters(model) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
