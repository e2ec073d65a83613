"""PixelCNN (van den Oord et al. 2016) and Gated PixelCNN ("Conditional Image Generation with
PixelCNN Decoders"), for images x: (B, C, H, W) of integer levels 0..K-1 with 1 or 3 channels.

The networks are stacks of masked convolutions (`masks.py`): nothing mixes information across positions
except them (no BatchNorm), so the output at a sub-pixel sees only the sub-pixels before it. Their last
layer gives K' numbers per sub-pixel, which the model's output head (`heads.py`) reads as a distribution:
calling a model returns logits, (B, C, H, W) for binary images and (B, K, C, H, W) otherwise.

Read in this order: the layers (`ResidualBlock`, `gate`, `GatedBlock`), the shared plumbing of every model
(`AutoregressiveImageModel`), the two networks, then scoring an image (`log_likelihood`, the one way the
library does it) and the registry that lets a checkpoint rebuild a model (`build_model`).
"""

from contextlib import contextmanager
from typing import Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import CourseError
from .heads import log_prob_from_logits, make_head  # log_prob_from_logits: lesson checks name it here too
from .masks import MaskedConv2d


# -- layers ---------------------------------------------------------------------------------------
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


# -- the models -----------------------------------------------------------------------------------
class AutoregressiveImageModel(nn.Module):
    """Shared plumbing: input checks and scaling, the output head, the configuration that rebuilds a model.

    A subclass builds its layers, sets `self._config` to the keyword arguments of its constructor (so that
    `build_model(name, **model.config)` rebuilds it, see `register_model`) and ends its forward with
    `return self.score(out, x) if score else self.to_logits(out)`, out: (B, C*K', H, W) its last layer.
    """

    def __init__(self, image_shape, levels, num_classes, head="softmax", mixtures=5):
        super().__init__()
        self.output_head = make_head(levels, head, mixtures)  # checks levels, head and mixtures
        self.image_shape = tuple(int(s) for s in image_shape)
        self.levels = int(levels)
        self.num_classes = num_classes
        self.head = head
        self.outputs_per_channel = self.output_head.outputs_per_channel  # K'

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
        """(B, C*K', H, W) last-layer output -> logits, (B, C, H, W) for binary, (B, K, C, H, W) otherwise."""
        return self.output_head.logits(out)

    def score(self, out, x):
        """(B, C*K', H, W) last-layer output and the images x (B, C, H, W) -> log-likelihood of each image in
        nats, (B,), float32 (the head's `log_prob`: the logistic head reads only the observed levels)."""
        return self.output_head.log_prob(out, x)

    def log_prob(self, x, labels=None):
        """Log-likelihood of each image in nats, shape (B,): `log_likelihood(self, x, labels)`."""
        return log_likelihood(self, x, labels)

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


# -- scoring an image ---------------------------------------------------------------------------
class ImageModel(Protocol):
    """The model contract: what `fit`, `evaluate`, `sample` and the checkpoints need of a model.

    image_shape: (C, H, W); levels: K (2 = binary); num_classes: the number of classes it is conditioned
    on, or None. Calling it with integer images x: (B, C, H, W) (and labels: (B,) when conditional)
    returns logits in the layout of `heads.py`: (B, C, H, W) for K = 2, (B, K, C, H, W) otherwise.
    Saving and loading also need `config` (the keyword arguments that rebuild it) and a registered name
    (`register_model`). `AutoregressiveImageModel` subclasses provide all of it; `IndependentPixelModel`
    (likelihood.py) provides the first part.
    """

    image_shape: tuple
    levels: int
    num_classes: int | None

    def __call__(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor: ...


def _unwrapped(model):
    """The model inside the wrappers training puts around it: torch.compile's `_orig_mod`, then
    DistributedDataParallel's `module`."""
    model = getattr(model, "_orig_mod", model)
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    return model


def log_likelihood(model, x, labels=None):
    """Log-likelihood in nats of each image, (B,) float32: the one way the library scores images (`nll`,
    `evaluate`, the training loss, `model.log_prob`, the classifiers and repairs of `finetune`).

    model: an `ImageModel`, possibly wrapped for training (DistributedDataParallel, torch.compile): it is
    called, so a wrapper sees the forward pass. x: (B, C, H, W) integer levels; labels: (B,) or None.
    A head that scores more cheaply than its logits (the logistic mixture: one bin per sub-pixel instead of
    K) is asked for `forward(x, labels, score=True)`; every other model's logits are scored by
    `log_prob_from_logits`.
    """
    head = getattr(_unwrapped(model), "output_head", None)
    if head is not None and head.scores_itself:
        return model(x, labels, score=True)
    return log_prob_from_logits(model(x, labels), x)


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


# -- the registry: names that checkpoints rebuild models from -----------------------------------------
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
