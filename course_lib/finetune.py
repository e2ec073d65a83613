"""Fine-tuning: reuse a trained PixelCNN on new data and for new tasks.

Three ideas, each a few lines (the small target sets come from `data.subset`, `select_classes`, `per_class`):

    what trains  `freeze(model, train=prefixes)` chooses the parameters that learn, by module name;
                 `snapshot` / `changed_parameters` check that the frozen ones really stay put;
    new inputs   `add_conditioning(model, num_classes)`: a class-conditional copy that starts out
                 computing exactly what the unconditional model computed;
    new tasks    `features` + `FeatureClassifier` (a classification head on the last hidden layer, trained
                 by `fit_classifier`: cross-entropy on labels, not the likelihood `fit` trains),
                 `generative_classify` (Bayes' rule over class-conditional likelihoods), and image
                 repair: `complete_best_of` (fill a hole: several completions, keep the most likely)
                 and `denoise` (undo random pixel flips by maximising the posterior).

Images are integer levels x: (B, C, H, W), as everywhere in the course; labels y: (B,) int64.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .config import epoch_seed
from .device import model_device
from .errors import CourseError
from .models import build_model, eval_mode, log_likelihood, model_name
from .sampling import sample


# -- which parameters learn ------------------------------------------------------------------------
def _matches(name, prefix):
    return name == prefix or name.startswith(prefix + ".")


def freeze(model, train=()):
    """Freeze every parameter of `model` except those inside the modules named in `train`
    (prefixes of parameter names at dot boundaries: "layers.2" is the third gated layer, "out1" the first
    output convolution). Frozen parameters get requires_grad=False: they receive no gradient, so Adam in
    `fit` leaves them exactly as they were. Returns the names of the trainable parameters.
    A prefix that matches no parameter raises CourseError; `unfreeze(model)` trains everything again."""
    names = [name for name, _ in model.named_parameters()]
    for prefix in train:
        if not any(_matches(n, prefix) for n in names):
            modules = sorted({n.split(".")[0] for n in names})
            raise CourseError(
                f"No parameter of the model lies under {prefix!r}; its top-level modules are "
                f"{', '.join(modules)} (use e.g. 'layers.0' or 'out1')."
            )
    trainable = []
    for name, p in model.named_parameters():
        p.requires_grad_(any(_matches(name, prefix) for prefix in train))
        if p.requires_grad:
            trainable.append(name)
    return trainable


def unfreeze(model):
    """Make every parameter trainable again. Returns the model."""
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def snapshot(model):
    """A detached copy of every parameter, {name: tensor}, to compare with later."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def changed_parameters(model, before):
    """Names of the parameters that are no longer bit-identical to the `snapshot` `before`."""
    return [name for name, p in model.named_parameters() if not torch.equal(p.detach().cpu(), before[name].cpu())]


# -- class conditioning ----------------------------------------------------------------------------
def add_conditioning(model, num_classes):
    """A class-conditional copy of an unconditional GatedPixelCNN or PixelCNN: same architecture plus
    learned class biases (nn.Embedding(num_classes, ...) in every place the model adds one), with all
    pretrained weights copied and the class biases set to zero. At the start the copy therefore
    computes exactly the pretrained model's logits for every label; fine-tuning teaches it the classes.
    The original model is not changed."""
    if model.num_classes is not None:
        raise CourseError("This model is already class-conditional; add_conditioning needs an unconditional one.")
    conditional = build_model(model_name(model), **{**model.config, "num_classes": num_classes})
    missing, unexpected = conditional.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all(k.endswith("class_bias.weight") for k in missing), (missing, unexpected)
    with torch.no_grad():
        for name, p in conditional.named_parameters():
            if name.endswith("class_bias.weight"):
                p.zero_()
    return conditional.to(model_device(model))


# -- features and a classification head --------------------------------------------------------------
def features(model, x, labels=None):
    """The last hidden feature map of a GatedPixelCNN or PixelCNN: what its output layer `out1` reads,
    shape (B, channels, H, W) for integer images x: (B, C, H, W). Captured with a forward pre-hook, so it
    is exactly the tensor the model uses and gradients flow back through it. Note that the feature
    at (i, j) only depends on the pixels before (i, j) in raster order: the model is causal."""
    captured = []
    handle = model.out1.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0]))
    try:
        model(x, labels)
    finally:
        handle.remove()
    return captured[0]


class FeatureClassifier(nn.Module):
    """A classifier made of a (pretrained) unconditional PixelCNN body and a small head: the body's last
    feature map (B, channels, H, W) is averaged over a `grid` x `grid` layout of image regions to
    (B, channels * grid * grid), then one linear layer gives (B, num_classes) class logits.

    Why a grid and not one global average: *where* strokes are matters for telling digits apart, and a
    global mean throws the layout away. Both the body and the head can be fine-tuned."""

    def __init__(self, body, num_classes, grid=4):
        super().__init__()
        if body.num_classes is not None:
            raise CourseError("FeatureClassifier needs an unconditional body (its labels are what it predicts).")
        self.body, self.grid = body, grid
        self.head = nn.Linear(body.out1.in_channels * grid * grid, num_classes)

    def forward(self, x):
        pooled = F.adaptive_avg_pool2d(features(self.body, x), self.grid)  # (B, channels, grid, grid)
        return self.head(pooled.flatten(1))


class SmallCNN(nn.Module):
    """A small discriminative CNN for comparisons: two 3x3 conv + ReLU + 2x2 max-pool stages, then a linear
    layer. Integer images x: (B, C, H, W) with H, W divisible by 4 -> class logits (B, num_classes)."""

    def __init__(self, image_shape=(1, 28, 28), levels=2, num_classes=10, channels=16):
        super().__init__()
        c, h, w = image_shape
        self.levels = levels
        self.net = nn.Sequential(
            nn.Conv2d(c, channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * channels * (h // 4) * (w // 4), num_classes),
        )

    def forward(self, x):
        return self.net(x.float() / (self.levels - 1))


def fit_classifier(model, dataset, *, epochs=10, batch_size=32, lr=1e-3, seed=0, device="cpu"):
    """Train a classifier (x: (B, C, H, W) integer images -> (B, K) logits) with cross-entropy and Adam,
    reshuffling every epoch with a seed derived from (seed, epoch). Only parameters with requires_grad
    are updated. Returns the mean training loss of every epoch (a list of floats)."""
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    losses = []
    for epoch in range(epochs):
        g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        total = 0.0
        for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=g):
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
        losses.append(total / len(dataset))
    return losses


@torch.no_grad()
def accuracy(model, dataset, batch_size=256):
    """Fraction of `dataset`'s images whose label is the classifier's most likely class."""
    device = model_device(model)
    correct = 0
    with eval_mode(model):
        for x, y in DataLoader(dataset, batch_size=batch_size):
            correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
    return correct / len(dataset)


# -- the likelihood as a classifier ------------------------------------------------------------------
@torch.no_grad()
def class_log_likelihoods(model_or_models, x):
    """log p(x | y) in nats for every image and every class, shape (B, K).

    model_or_models: a class-conditional model (K = its num_classes; log p(x | y) = its log-likelihood with
    labels = y), or a list of K unconditional models, one per class (anything with forward(x, labels)
    returning logits, the IndependentPixelModel included)."""
    models = model_or_models if isinstance(model_or_models, (list, tuple)) else None
    k = len(models) if models else model_or_models.num_classes
    if k is None:
        raise CourseError("Pass a class-conditional model (num_classes set) or a list of one model per class.")
    columns = []
    for y in range(k):
        m = models[y] if models else model_or_models
        labels = None if models else torch.full((x.shape[0],), y, dtype=torch.long, device=x.device)
        with eval_mode(m):
            columns.append(log_likelihood(m, x, labels))
    return torch.stack(columns, dim=1)


def generative_classify(model_or_models, x, log_prior=None):
    """Class log-posteriors log p(y | x), shape (B, K), by Bayes' rule:
        log p(y | x) = log p(x | y) + log p(y) - log sum_y' p(x | y') p(y').
    The prior is uniform unless `log_prior` (K,) is given. exp() of each row sums to one."""
    log_lik = class_log_likelihoods(model_or_models, x)
    if log_prior is None:
        log_prior = torch.full((log_lik.shape[1],), -math.log(log_lik.shape[1]))
    return torch.log_softmax(log_lik + log_prior.to(log_lik), dim=1)


# -- image repair ----------------------------------------------------------------------------------
@torch.no_grad()
def complete_best_of(model, images, known, k=4, *, labels=None, temperature=1.0, seed=0):
    """Repair images by completion: draw `k` completions of every image (the pixels where `known` is True
    are kept) and return, per image, the one the model finds most likely, shape (B, C, H, W).

    Ancestral sampling fills a hidden pixel from the pixels *before* it only; scoring each whole
    completion with log p(x) also accounts for the known pixels *after* the hole.
    images: (B, C, H, W) integer levels; known: bool, broadcastable to images; labels: (B,) or None."""
    b = images.shape[0]
    repeated = images.repeat(k, 1, 1, 1)  # (k*B, C, H, W), candidate r of image i at r*B + i
    known_rep = torch.as_tensor(known).expand_as(images).repeat(k, 1, 1, 1)
    labels_rep = None if labels is None else torch.as_tensor(labels).repeat(k)
    candidates = sample(
        model, k * b, temperature=temperature, labels=labels_rep, given=(repeated, known_rep), seed=seed
    )
    device = model_device(model)
    with eval_mode(model):
        on_device = None if labels_rep is None else labels_rep.to(device)
        lp = log_likelihood(model, candidates.to(device), on_device).cpu()
    best = lp.view(k, b).argmax(0)  # (B,) which candidate wins for each image
    return candidates.view(k, b, *images.shape[1:])[best, torch.arange(b)]


def hidden_error(repaired, original, known):
    """Per image, the fraction of hidden sub-pixels (where `known` is False) that differ from the original: (B,)."""
    hidden = ~torch.as_tensor(known).expand_as(original)
    wrong = (repaired != original) & hidden
    return wrong.flatten(1).sum(1).float() / hidden.flatten(1).sum(1).float()


def pixel_log_probs(model, x, labels=None):
    """log p(x_k | x_<k) of every sub-pixel, shape (B, C, H, W) for binary models (B, C, H, W) input."""
    logits = model(x, labels)
    if logits.dim() != 4:
        raise CourseError("pixel_log_probs and denoise handle binary (levels=2) models only.")
    return -F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="none")


@torch.no_grad()
def denoise(model, noisy, flip_prob, candidates=64, sweeps=2, labels=None):
    """Repair binary images (B, C, H, W) in which every pixel was flipped with probability `flip_prob`.

    Maximises the log-posterior  log p_model(x) + (#pixels where x differs from `noisy`) * log(flip_prob / (1 - flip_prob))
    by local search: starting from the noisy image, try flipping the `candidates` most surprising pixels
    (lowest log p(x_k | x_<k)) one at a time and keep a flip when it raises the log-posterior. Unlike a
    pixel-by-pixel filter, each trial scores the *whole* image, so a flip is also judged by how it changes
    the probability of every later pixel. Returns the repaired images, same shape and dtype."""
    with eval_mode(model):
        return _denoise(model, noisy, flip_prob, candidates, sweeps, labels)


def _denoise(model, noisy, flip_prob, candidates, sweeps, labels):
    device = model_device(model)
    noisy = noisy.to(device)
    x = noisy.clone()
    b = x.shape[0]
    cost = math.log((1 - flip_prob) / flip_prob)  # nats paid for each disagreement with `noisy`
    rows = torch.arange(b, device=device)
    score = log_likelihood(model, x, labels)
    for _ in range(sweeps):
        order = pixel_log_probs(model, x, labels).flatten(1).argsort(dim=1)[:, :candidates]  # most surprising first
        for r in range(order.shape[1]):
            trial = x.flatten(1).clone()
            k = order[:, r]
            trial[rows, k] = 1 - trial[rows, k]
            trial = trial.view_as(x)
            agrees = (trial.flatten(1)[rows, k] == noisy.flatten(1)[rows, k]).float()
            new_score = log_likelihood(model, trial, labels)
            gain = new_score - score + cost * (2 * agrees - 1)  # back to the observation: +cost, away: -cost
            accept = gain > 0
            x = torch.where(accept[:, None, None, None], trial, x)
            score = torch.where(accept, new_score, score)
    return x.cpu()
