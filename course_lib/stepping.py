"""Ancestral sampling one sub-pixel at a time, to look inside the sampling loop (and to drive widgets).

`AncestralStepper` holds a partially sampled batch of images. Each `step()` fills the next sub-pixel in
raster-then-channel order and returns what the model predicted for it and what was drawn. It is built
from the same pieces as `sampling.sample` (`_prepare`, `distribution_at`, `draw`, one seeded generator),
used in the same order, so stepping to the end with a seed gives exactly the images that
`sample(model, n, seed=..., method="naive")` gives (and, up to float rounding, the cached sampler too).

    stepper = AncestralStepper(model, n=1, seed=0)
    step = stepper.step()      # Step(index=0, c=0, i=0, j=0, probs=tensor([0.01]), value=tensor([0]), ...)
    stepper.run()              # finish the image
    stepper.images             # (n, C, H, W) int64, equal to sample(model, n, seed=0, method="naive")
"""

from dataclasses import dataclass

import torch

from .device import model_device
from .errors import CourseError
from .models import eval_mode
from .sampling import _prepare, distribution_at, draw


@dataclass(frozen=True)
class Step:
    """One step of ancestral sampling, for a batch of B images.

    index: position of the sub-pixel in raster-then-channel order, (i * W + j) * C + c.
    c, i, j: its channel, row and column.
    probs: the predicted distribution of that sub-pixel: (B,) P(x = 1) for a binary model, (B, K) otherwise.
    value: (B,) int64, the value it now holds (drawn, or kept where it was given).
    given: (B,) bool, True for the images in which this sub-pixel was given and kept.
    """

    index: int
    c: int
    i: int
    j: int
    probs: torch.Tensor
    value: torch.Tensor
    given: torch.Tensor


class AncestralStepper:
    """A partially sampled batch of `n` images that advances one sub-pixel per `step()`.

    Arguments are those of `sampling.sample`: temperature (> 0, divides the logits), labels (for
    class-conditional models), given = (values, known) for completion, seed (reproducible draws).
    Sub-pixels that every image was given are skipped without a forward pass, exactly as `sample`
    skips them, so `forward_passes` counts the model calls and `position` the sub-pixels passed.
    """

    def __init__(self, model, n=1, *, temperature=1.0, labels=None, given=None, seed=None):
        if not temperature > 0:
            raise CourseError(
                f"temperature must be positive, got {temperature}; use e.g. 1.0 (or 0.5 for sharper samples)."
            )
        self.model, self.n, self.temperature, self.seed = model, n, temperature, seed
        self._labels, self._given = labels, given
        self.channels, self.height, self.width = model.image_shape
        self.reset()

    # -- state ----------------------------------------------------------------------------------
    def reset(self):
        """Start again from the empty (or partly given) images with a fresh generator (same seed)."""
        device = model_device(self.model)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(self.seed) if self.seed is not None else self.generator.seed()
        self.x, self.known, self.labels = _prepare(self.model, self.n, self._labels, self._given, device)
        self.position = 0  # index of the next sub-pixel in raster-then-channel order
        self.forward_passes = 0  # model calls so far (one per step)
        self._probs = None  # cached prediction for the sub-pixel at `position`
        self._skip_given()
        return self

    @property
    def total(self) -> int:
        """Number of sub-pixels per image, C * H * W."""
        return self.channels * self.height * self.width

    @property
    def done(self) -> bool:
        """True once every sub-pixel has been filled."""
        return self.position >= self.total

    @property
    def images(self) -> torch.Tensor:
        """A copy of the images so far, (n, C, H, W) int64 on the CPU (unfilled sub-pixels hold 0)."""
        return self.x.detach().cpu().clone()

    def site(self, index=None):
        """(c, i, j) of the sub-pixel at `index` (default: the next one) in raster-then-channel order."""
        index = self.position if index is None else index
        i, rest = divmod(index, self.width * self.channels)
        j, c = divmod(rest, self.channels)
        return c, i, j

    def _skip_given(self):
        while not self.done:
            c, i, j = self.site()
            if not self.known[:, c, i, j].all():
                return
            self.position += 1

    # -- the loop -------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self) -> torch.Tensor:
        """The model's distribution for the next sub-pixel: (n,) P(x = 1) for binary models, (n, K) otherwise.

        One forward pass in eval mode; the result is cached, so the following `step()` reuses it and
        draws from exactly this distribution. Draws no random numbers."""
        if self.done:
            raise CourseError("The images are complete; call reset() to sample new ones.")
        if self._probs is None:
            c, i, j = self.site()
            with eval_mode(self.model):
                logits = self.model(self.x, self.labels)
            self.forward_passes += 1
            self._probs = distribution_at(logits, i, j, c, self.temperature)
        return self._probs

    @torch.no_grad()
    def step(self) -> Step:
        """Fill the next sub-pixel of every image (given values are kept) and return the `Step`."""
        probs = self.predict()
        index, (c, i, j) = self.position, self.site()
        given = self.known[:, c, i, j].clone()
        self.x[:, c, i, j] = torch.where(given, self.x[:, c, i, j], draw(probs, self.generator))
        self._probs = None
        self.position += 1
        self._skip_given()
        return Step(index, c, i, j, probs.cpu(), self.x[:, c, i, j].cpu().clone(), given.cpu())

    def run(self, steps=None) -> int:
        """Take up to `steps` steps (all remaining ones if None); returns how many were taken."""
        taken = 0
        while not self.done and (steps is None or taken < steps):
            self.step()
            taken += 1
        return taken
