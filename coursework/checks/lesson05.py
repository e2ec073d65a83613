"""Checks for lesson 05 (fine-tuning): a fine-tuning routine that trains only some layers, the class-conditional
log-likelihoods of a batch of images, and the generative classifier (Bayes' rule in log space).

Each check builds fresh tiny random models and inputs, runs the learner's function next to the reference
behaviour computed with course_lib, prints one verdict line and raises CheckFailed when something is wrong.
Known mistakes get their own message: layers meant to be frozen still changing (requires_grad never turned
off, or an optimizer that still updates them from old gradients), a prefix that also matches 'layers.10',
the loss in bits or averaged over pixels, log-likelihoods in train mode or with gradients, the NLL instead
of the log-likelihood, an unnormalised or underflowing posterior, a normalisation over the wrong axis and
an ignored prior.
"""

import math

import torch

from course_lib.data import ImageDataset
from course_lib.likelihood import log_prob_from_logits

from .helpers import LN2, ForwardSpy, call, close, fail, fresh_seed, isolated, passed, tiny_gated


# -- helpers ------------------------------------------------------------------------------------------
def _matches(name, prefix):
    """Is parameter `name` inside module `prefix` (at a dot boundary)?"""
    return name == prefix or name.startswith(prefix + ".")


def _examples(names, k=3):
    shown = ", ".join(f"'{n}'" for n in names[:k])
    return shown + (f" and {len(names) - k} more" if len(names) > k else "")


# -- task 1: fine_tune ---------------------------------------------------------------------------------
def _patterned_data(g, n, shape):
    """n binary images with a shared structure (a fixed pattern, lightly corrupted): quick to learn."""
    pattern = (torch.rand(shape, generator=g) < 0.3).float()
    flip = (torch.rand(n, *shape, generator=g) < 0.1).float()
    pixels = (pattern + flip) % 2
    return ImageDataset("check", pixels, torch.zeros(n, dtype=torch.long))


@torch.no_grad()
def _data_nll(model, dataset):
    was_training = model.training
    model.eval()
    nll = -log_prob_from_logits(model(dataset.images), dataset.images).double().mean().item()
    model.train(was_training)
    return nll


@isolated
def check_fine_tune(fine_tune):
    """fine_tune(model, dataset, train, *, epochs=1, lr=1e-3, batch_size=32, seed=0) -> per-epoch mean losses."""
    seed = fresh_seed()
    g = torch.Generator().manual_seed(seed)
    image = (1, 6, 6)
    model = tiny_gated(seed, image, channels=4, dilations=(1,) * 12)  # 12 layers: 'layers.1' must not match 'layers.10'
    dataset = _patterned_data(g, 24, image)
    train = ["layers.1", "out2"]
    epochs, batch_size = 2, 8
    for p in model.parameters():  # gradients left over from earlier training
        p.grad = torch.randn(p.shape, generator=g)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    nll_before = _data_nll(model, dataset)

    losses = call(fine_tune, model, dataset, train, epochs=epochs, lr=1e-2, batch_size=batch_size, seed=seed % 1000)

    names = list(before)
    params = dict(model.named_parameters())
    changed = [n for n in names if not torch.equal(params[n].detach().cpu(), before[n])]
    meant = [n for n in names if any(_matches(n, p) for p in train)]
    frozen_changed = [n for n in names if n in changed and n not in meant]
    if frozen_changed:
        loose = [n for n in frozen_changed if any(n.startswith(p) for p in train)]
        if loose and len(loose) == len(frozen_changed):
            fail(
                f"layers meant to be frozen still changed: the prefix 'layers.1' also matched {_examples(loose)}",
                "match whole parts of the name: name == prefix or name.startswith(prefix + '.')",
            )
        still = [n for n in frozen_changed if params[n].requires_grad]
        if still:
            fail(
                f"layers meant to be frozen still changed: {len(frozen_changed)} of {len(names) - len(meant)} frozen "
                f"parameter tensors were updated (e.g. {_examples(frozen_changed)}), and requires_grad is still True "
                f"on {len(still)} of them",
                "call p.requires_grad_(False) on every parameter outside the listed modules (setting "
                "module.requires_grad = False only adds an attribute), and give the optimizer the trainable ones",
            )
        fail(
            f"layers meant to be frozen still changed although their requires_grad is False (e.g. "
            f"{_examples(frozen_changed)}): the optimizer updated them from gradients already in .grad",
            "build the optimizer from the trainable parameters only, and zero the gradients before every backward",
        )
    unchanged = [n for n in meant if n not in changed]
    if len(unchanged) == len(meant):
        fail(
            "the layers meant to train did not change",
            "make their parameters require gradients, give them to the "
            "optimizer, and call loss.backward() and optimizer.step() for every batch",
        )
    if unchanged:
        fail(
            f"some parameters of the layers meant to train did not change: {_examples(unchanged)}",
            "train every parameter whose name is a listed module or starts with it followed by a dot",
        )
    loose = [n for n in names if n not in meant and params[n].requires_grad]
    if loose:
        fail(
            f"the layers meant to be frozen did not move, but {len(loose)} of their parameter tensors still require "
            f"gradients (e.g. {_examples(loose)}): backward() computes gradients for them, and any optimizer "
            "that sees them will update them",
            "freeze them with p.requires_grad_(False)",
        )
    if not isinstance(losses, (list, tuple)) or len(losses) != epochs:
        fail(
            f"fine_tune returned {type(losses).__name__} {losses!r:.80}, not a list of {epochs} per-epoch losses",
            "return one float per epoch: the mean training loss of that epoch",
        )
    try:
        losses = [float(v) for v in losses]
    except (TypeError, ValueError, RuntimeError):
        fail("the per-epoch losses are not numbers", "append loss.item()-based averages, one float per epoch")
    if not all(math.isfinite(v) for v in losses):
        fail(
            f"the losses are not finite: {losses}", "check the loss: -log-likelihood, sum over pixels, mean over images"
        )
    nll_after = _data_nll(model, dataset)
    if nll_after >= nll_before:
        fail(
            f"fine-tuning made the NLL of the training images worse ({nll_before:.2f} -> {nll_after:.2f} nats/image)",
            "minimise the negative log-likelihood: loss = -log_prob_from_logits(model(x), x).mean()",
        )
    ratio = losses[0] / nll_before
    if not 0.45 < ratio < 1.1:
        if 1.2 < ratio < 1.75:
            fail("the returned losses are in bits, not nats", "the loss is the NLL in nats (natural log); no ln 2")
        if ratio < 0.1:
            fail(
                "the returned losses are averaged over the pixels: they are nats per dimension, not per image",
                "sum the NLL over C*H*W sub-pixels of each image, then average over the images of a batch",
            )
        if ratio > 1.75:
            fail(
                "the returned losses are far too large: sums over the images of a batch, or over batches, not means",
                "average the loss over the images of each batch, and the epoch's loss over its images",
            )
        fail(
            f"the first epoch's loss ({losses[0]:.2f}) is not the mean NLL per image (about {nll_before:.2f} nats "
            "before training)",
            "return the mean training loss in nats per image of each epoch",
        )
    conditional = tiny_gated(seed + 1, image, channels=4, dilations=(1,), num_classes=2)
    labelled = ImageDataset("check", dataset.intensities[:8], torch.arange(8) % 2)
    out2 = conditional.out2.weight.detach().clone()
    call(fine_tune, conditional, labelled, ["out2"], epochs=1, lr=1e-2, batch_size=4, seed=0)
    if torch.equal(conditional.out2.weight.detach(), out2):
        fail(
            "fine-tuning a class-conditional model did not train the layers meant to train",
            "pass the batch's labels to the model when model.num_classes is set",
        )
    passed(
        f"fine_tune: only {' and '.join(train)} changed (requires_grad off elsewhere, old gradients ignored), "
        f"the NLL of the data fell from {nll_before:.1f} to {nll_after:.1f} nats/image, losses in nats per image"
    )


# -- task 2: class_log_likelihoods --------------------------------------------------------------------
@isolated
def check_class_log_likelihoods(class_log_likelihoods):
    """class_log_likelihoods(model, x) -> (B, K) log p(x | y) in nats for every image and class."""
    seed = fresh_seed()
    g = torch.Generator().manual_seed(seed)
    k = int(torch.randint(3, 6, (), generator=g))
    image = (1, 6, 6)
    dims = math.prod(image)
    model = tiny_gated(seed, image, channels=8, dilations=(1, 2), num_classes=k)
    with torch.no_grad():  # clearly different classes
        for name, p in model.named_parameters():
            if name.endswith("class_bias.weight"):
                p.mul_(3)
    b = k + 2
    x = (torch.rand(b, *image, generator=g) < 0.4).long()
    with torch.no_grad():
        model.eval()
        ref = torch.stack([log_prob_from_logits(model(x, torch.full((b,), y)), x) for y in range(k)], 1).double()
    model.train()
    spy = ForwardSpy(model)
    try:
        got = call(class_log_likelihoods, model, x.clone())
    finally:
        spy.remove()
    if not torch.is_tensor(got):
        fail(f"class_log_likelihoods returned {type(got).__name__}, not a tensor", "return a (B, K) tensor")
    got = got.detach().double().cpu()
    if tuple(got.shape) == (k, b):
        fail(
            f"the result has shape (K, B) = {(k, b)}: one row per class",
            "return one row per image and one column per class, shape (B, K): torch.stack(columns, dim=1)",
        )
    if tuple(got.shape) != (b, k):
        fail(
            f"class_log_likelihoods returned shape {tuple(got.shape)} for {b} images and {k} classes, expected {(b, k)}",
            "one row per image, one column per class",
        )
    if any(c["training"] for c in spy.calls):
        fail(
            "the log-likelihoods were computed with the model in train mode",
            "call model.eval() first (dropout and batch norm behave differently in train mode), and restore the mode",
        )
    if any(c["grad"] for c in spy.calls):
        fail(
            "the log-likelihoods were computed with gradients on (no torch.no_grad())",
            "wrap the computation in `with torch.no_grad():`: scoring needs no gradients",
        )
    if not model.training:
        fail(
            "the model was left in eval mode",
            "remember was_training = model.training and call model.train(was_training)",
        )
    if close(got, ref, rtol=1e-4, atol=1e-3):
        passed(
            f"class_log_likelihoods: log p(x | y) in nats (sum over pixels) for {b} images and all {k} classes, "
            "in eval mode and without gradients"
        )
        return
    if close(got, -ref, rtol=1e-4, atol=1e-3):
        fail(
            "you returned the negative log-likelihood: the most likely class would get the smallest number",
            "log p(x | y) = log_prob_from_logits(model(x, labels), x), minus the NLL",
        )
    if close(got, ref / dims, rtol=1e-4, atol=1e-4) or close(got, -ref / dims, rtol=1e-4, atol=1e-4):
        fail(
            "you averaged over the pixels: log p(x | y) of an image is the sum over its C*H*W sub-pixels",
            "sum the per-sub-pixel log-probabilities over each image (log_prob_from_logits does)",
        )
    if close(got, ref / LN2, rtol=1e-4, atol=1e-3) or close(got, -ref / LN2, rtol=1e-4, atol=1e-3):
        fail("you returned bits, not nats", "keep natural logarithms: no division by ln 2")
    if b > 1 and k > 1 and bool((got - got[:, :1]).abs().max() < 1e-6):
        fail(
            "every class got the same log-likelihood: the labels do not reach the model",
            "for column y call model(x, labels) with labels = torch.full((B,), y)",
        )
    for y in range(k):
        if not close(got[:, y], ref[:, y], rtol=1e-4, atol=1e-3):
            fail(
                f"column {y} is not log p(x | y = {y})",
                "column y must score the images with labels = y for every image",
            )
    fail("class_log_likelihoods differs from log p(x | y)", "log p(x | y) = log_prob_from_logits(model(x, labels), x)")


# -- task 3: bayes_log_posterior ----------------------------------------------------------------------
def _bayes_case(bayes_log_posterior, log_lik, log_prior):
    args = (log_lik.clone(),) if log_prior is None else (log_lik.clone(), log_prior.clone())
    got = call(bayes_log_posterior, *args)
    b, k = log_lik.shape
    if not torch.is_tensor(got):
        fail(f"bayes_log_posterior returned {type(got).__name__}, not a tensor", "return a (B, K) tensor")
    got = got.detach().double().cpu()
    if tuple(got.shape) != (b, k):
        fail(
            f"bayes_log_posterior returned shape {tuple(got.shape)}, expected {(b, k)} (one row per image)",
            "keep the shape of log_lik: one log-posterior per image and class",
        )
    ll = log_lik.double()
    prior = torch.full((k,), -math.log(k), dtype=torch.float64) if log_prior is None else log_prior.double()
    ref = torch.log_softmax(ll + prior, dim=1)
    if close(got, ref, rtol=1e-4, atol=2e-3):
        return
    where = "with a uniform prior" if log_prior is None else "with a non-uniform prior"
    if not torch.isfinite(got).all():
        fail(
            f"the posterior contains NaN or infinity {where}: exp() of log-likelihoods near -1000 nats is 0 "
            "(it underflows), so p(x) = 0 and 0/0 follows",
            "stay in log space: log p(y | x) = log p(x | y) + log p(y) - logsumexp over y' of the same "
            "(torch.log_softmax does it in one call)",
        )
    if close(got, ref.exp(), rtol=1e-4, atol=1e-6):
        fail("you returned probabilities p(y | x), not log-probabilities", "return log p(y | x); leave out the exp()")
    if close(got, ll + prior, rtol=1e-4, atol=2e-3) or close(got, ll, rtol=1e-4, atol=2e-3):
        fail(
            f"the posterior is not normalised {where}: exp() of a row does not sum to one",
            "subtract log p(x) = logsumexp over the classes of log p(x | y) + log p(y) (or use torch.log_softmax(..., dim=1))",
        )
    if close(got, torch.log_softmax(ll + prior, dim=0), rtol=1e-4, atol=2e-3):
        fail(
            "you normalised over the images (dim 0), not over the classes",
            "each row is one image: normalise over dim=1",
        )
    if close(got, torch.log_softmax(-ll + prior, dim=1), rtol=1e-4, atol=2e-3):
        fail(
            "you used the negative log-likelihood: the least likely class got the highest posterior",
            "log_lik already holds log p(x | y); add log p(y), do not negate",
        )
    if log_prior is not None and close(got, torch.log_softmax(ll, dim=1), rtol=1e-4, atol=2e-3):
        fail("the prior was ignored", "add log_prior (shape (K,)) to every row of log_lik before normalising")
    if log_prior is not None and close(got, torch.log_softmax(ll - prior, dim=1), rtol=1e-4, atol=2e-3):
        fail("the prior was subtracted instead of added", "log p(y | x) = log p(x | y) + log p(y) - log p(x)")
    fail(
        f"bayes_log_posterior differs from Bayes' rule {where}",
        "log p(y | x) = log p(x | y) + log p(y) - logsumexp_y'(log p(x | y') + log p(y')); uniform prior: log p(y) = -log K",
    )


@isolated
def check_bayes(bayes_log_posterior):
    """bayes_log_posterior(log_lik, log_prior=None) -> (B, K) log p(y | x) by Bayes' rule."""
    g = torch.Generator().manual_seed(fresh_seed())
    b, k = int(torch.randint(5, 9, (), generator=g)), int(torch.randint(3, 6, (), generator=g))
    log_lik = (-1000 + 8 * torch.randn(b, k, generator=g)).float()  # whole-image log-likelihoods are large
    _bayes_case(bayes_log_posterior, log_lik, None)
    log_prior = torch.log_softmax(2 * torch.randn(k, generator=g), dim=0).float()
    _bayes_case(bayes_log_posterior, log_lik, log_prior)
    passed(
        "bayes_log_posterior: log p(x | y) + log p(y) normalised over the classes in log space (no underflow at "
        "-1000 nats), with a uniform and a non-uniform prior"
    )
