"""Checks for lesson 05 (fine-tuning): fine-tuning only some layers, the class-conditional log-likelihoods
of a batch of images, and the generative classifier (Bayes' rule in log space).

fine_tune is compared step for step with the task's recipe (Adam with the given lr, one DataLoader per epoch
shuffled by seed + epoch) on a fresh tiny model: which layers moved, the order it read the images in, the batch
size, lr=0, the trained weights and the per-epoch losses each get their own verdict. The other two checks name
a wrong table by the plausible mistake that reproduces it; devices are probed on PyTorch's "meta" device.
"""

import copy
import math

import torch
from torch.utils.data import DataLoader

from course_lib.data import ImageDataset
from course_lib.likelihood import log_prob_from_logits

from . import helpers
from .helpers import LN2, call, close, fail, first_match, fresh_seed, isolated, no_delegation, passed, tensor_rule
from .probes import probe_device, tiny_gated
from .rules import LOSS_MISTAKES, as_float, eval_rules, learning_rate_rule, mode_restored_rule, training_rules, watching

SHUFFLE_HINT = (
    "for every epoch: DataLoader(dataset, batch_size=batch_size, shuffle=True, "
    "generator=torch.Generator().manual_seed(seed + epoch))"
)


def _matches(name, prefix):
    """Is parameter `name` inside module `prefix` (at a dot boundary)?"""
    return name == prefix or name.startswith(prefix + ".")


def _examples(names, k=3):
    shown = ", ".join(f"'{n}'" for n in names[:k])
    return shown + (f" and {len(names) - k} more" if len(names) > k else "")


# -- task 1: fine_tune ---------------------------------------------------------------------------------
def _patterned_data(g, n, shape):
    """n binary images with a shared structure (a fixed pattern, corrupted by 2% to 30% of flipped pixels): quick
    to learn, and unequal in NLL, so a batch's mean loss is far from the epoch's mean."""
    pattern = (torch.rand(shape, generator=g) < 0.3).float()
    rate = 0.02 + 0.28 * torch.rand(n, *[1] * len(shape), generator=g)
    flip = (torch.rand(n, *shape, generator=g) < rate).float()
    return ImageDataset("check", (pattern + flip) % 2, torch.zeros(n, dtype=torch.long))


@torch.no_grad()
def _data_nll(model, dataset):
    """The mean NLL per image of the data set under (an eval-mode copy of) `model`."""
    return -log_prob_from_logits(copy.deepcopy(model).eval()(dataset.images), dataset.images).double().mean().item()


class _RecordingDataset(ImageDataset):
    """An ImageDataset that records which images are read, in order (to see the learner's shuffling)."""

    def __init__(self, dataset):
        super().__init__(dataset.name, dataset.intensities, dataset.labels)
        self.reads = []

    def __getitem__(self, i):
        self.reads.append(int(i))
        return super().__getitem__(i)


def _orders(n, epochs, batch_size, seed):
    """Epoch by epoch, the order in which DataLoader(shuffle=True) reads n images with the generator
    torch.Generator().manual_seed(seed + epoch)."""
    generators = [torch.Generator().manual_seed(seed + e) for e in range(epochs)]
    loaders = [DataLoader(range(n), batch_size=batch_size, shuffle=True, generator=g) for g in generators]
    return [[int(i) for batch in loader for i in batch] for loader in loaders]


def _reference_fine_tune(model, dataset, train, epochs, lr, batch_size, seed, zero_grad="before"):
    """fine_tune as the task describes it, on a copy of `model` (stale gradients included). zero_grad: "before"
    every backward (correct), "after" every step (stale gradients reach the first step), or "never".
    Returns (the trained copy, [[(batch loss, batch size) for every batch] for every epoch])."""
    source = dict(model.named_parameters())
    model = copy.deepcopy(model)
    for name, p in model.named_parameters():
        p.grad = None if source[name].grad is None else source[name].grad.clone()  # (deepcopy drops .grad)
        p.requires_grad_(any(_matches(name, prefix) for prefix in train))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    epochs_seen = []
    for epoch in range(epochs):
        batches, g = [], torch.Generator().manual_seed(seed + epoch)
        for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=g):
            if zero_grad == "before":
                optimizer.zero_grad(set_to_none=True)
            loss = -log_prob_from_logits(model(x, y if model.num_classes else None), x).mean()
            loss.backward()
            optimizer.step()
            if zero_grad == "after":
                optimizer.zero_grad(set_to_none=True)
            batches.append((loss.item(), x.shape[0]))
        epochs_seen.append(batches)
    return model, epochs_seen


def _update(model, before, names):
    """The change of the parameters `names` since `before`, as one flat float64 vector."""
    params = dict(model.named_parameters())
    return torch.cat([(params[n].detach().cpu().double() - before[n].double()).flatten() for n in names])


def _same_update(a, b):
    """True when two nonzero parameter updates agree (direction and length within 1%)."""
    cos = torch.nn.functional.cosine_similarity(a, b, dim=0).item()
    return cos > 0.999 and abs(a.norm().item() / b.norm().item() - 1) < 0.01


def _order_rule(reads, n, epochs, batch_size, seed):
    """Fail when the images were not read in the order the task prescribes (one DataLoader per epoch, shuffled
    by a generator seeded with seed + epoch). Returns False when the reads tell nothing (no dataset reads)."""
    if len(reads) != n * epochs:
        return False
    got, want = [reads[e * n : (e + 1) * n] for e in range(epochs)], _orders(n, epochs, batch_size, seed)
    if got == want:
        return True
    other = next((s for s in (0, 1, 42) if s != seed and got == _orders(n, epochs, batch_size, s)), None)
    bad = next(e for e in range(epochs) if got[e] != want[e])
    helpers.first_rule([
        (all(order == list(range(n)) for order in got),
         "the images were not shuffled: every epoch read them in the order of the data set", SHUFFLE_HINT),
        (bad > 0 and all(order == got[0] for order in got),
         "every epoch shuffled the images in the same order: the generator's seed must change with the epoch",
         SHUFFLE_HINT),
        (other is not None,
         f"the seed argument was ignored: the shuffling used the seed {other} + epoch, not seed + epoch", SHUFFLE_HINT),
        (bad == 0,
         "the first epoch did not read the images in the order of a DataLoader shuffled by "
         "torch.Generator().manual_seed(seed): the seed argument does not decide the shuffling", SHUFFLE_HINT),
        (True,
         f"epoch {bad} did not read the images in the order of a DataLoader shuffled by a generator seeded with "
         f"seed + {bad}", "a new generator for every epoch: " + SHUFFLE_HINT),
    ])  # fmt: skip


def _loss_mistakes(batches_per_epoch, n, dims):
    """(the right per-epoch losses, {name: (losses, message, hint)}): the mistakes of the loss itself are
    `rules.LOSS_MISTAKES` applied to every batch (its sign row never shows: a negative loss here is the
    bookkeeping's, a negated training loss fails earlier); the others are mistakes of the epoch's bookkeeping."""

    def each(f):
        return [f(batches) for batches in batches_per_epoch]

    def weighed(wrong):  # each epoch's mean over its images of the batch losses that `wrong` makes
        return each(lambda b: sum(wrong(loss, dims, size) * size for loss, size in b) / n)

    want, weigh = weighed(lambda loss, d, size: loss), "total += loss.item() * x.shape[0]"
    return want, {
        "negative": ([-w for w in want],
            "the returned losses are negative: the total (or the count) went down instead of up",
            f"{weigh} and count += x.shape[0] for every batch"),
        **{message: (weighed(wrong), message, hint) for wrong, message, hint in LOSS_MISTAKES},
        "mean of means": (each(lambda b: sum(loss for loss, _ in b) / len(b)),
            "you averaged the batch means, so the smaller last batch weighs as much as a full one",
            f"weigh each batch's mean loss by its size: {weigh}, then divide by the count"),
        "unweighted": (each(lambda b: sum(loss for loss, _ in b) / n),
            "each batch's mean loss was added without weighting it by the number of images in the batch",
            f"{weigh} (x.shape[0] is the batch size), then divide by the count of images"),
        "per batch": (each(lambda b: sum(loss * size for loss, size in b) / len(b)),
            "the epoch's total loss was divided by the number of batches, not by the number of images",
            "count the images: count += x.shape[0] for every batch"),
        "last batch": (each(lambda b: b[-1][0]),
            "each epoch reported the loss of its last batch, not the mean over all its images",
            "add up loss.item() * x.shape[0] over the epoch's batches and divide by the number of images"),
        "divided": (each(lambda b: sum(loss / size for loss, size in b) / n),
            "each batch's mean loss was divided by the batch size instead of multiplied by it",
            f"{weigh}: the batch's summed NLL, then divide by the count of images"),
        "times n": ([w * n * n for w in want],
            "the epoch's total loss was multiplied by the number of images instead of divided by it",
            "the epoch's loss is total / count"),
        "total": ([w * n for w in want], "the returned losses are totals over the epoch, not means per image",
            "divide the epoch's total by the number of images it saw"),
        "sum of means": (each(lambda b: sum(loss for loss, _ in b)),
            "the returned losses add up the batch means of an epoch: far too large",
            f"average over the epoch: {weigh}, then total / count"),
        "zero": ([0.0] * len(want), "the returned losses are all 0: nothing was added to the epoch's total", weigh),
    }  # fmt: skip


def _diagnose_losses(losses, batches_per_epoch, n, dims):
    """Fail with the known mistake that the per-epoch losses match (expected: the mean NLL per image over each
    epoch's batches, in nats). A bookkeeping mistake leaves the training as it was (its values match to
    rounding); a mistake in the loss itself moves Adam's steps a little (its values match to 0.1%)."""
    want, mistakes = _loss_mistakes(batches_per_epoch, n, dims)
    rounding, drift = (1e-5, 1e-11), (1e-3, 1e-9)  # relative differences (with a tiny absolute floor)
    if close(losses, want, rounding):  # a correct loop repeats the recipe's arithmetic
        return
    where = f"(got {losses[0]:.4g}, expected {want[0]:.4g} for the first epoch)"
    first_match(losses, mistakes, rounding, where=where)
    divisors = [sum(loss * size for loss, size in b) / g if g else 0.0 for b, g in zip(batches_per_epoch, losses)]
    divisor, diffs = round(divisors[0]), [g - w for g, w in zip(losses, want)]
    helpers.first_rule([
        (divisor not in (0, n) and all(abs(d - divisor) < 1e-3 * abs(d) for d in divisors),
         f"the epoch's total loss was divided by {divisor}, not by the number of images ({n}): the count of images "
         "is wrong (does it start at 0, and grow by x.shape[0] per batch?)",
         "total, count = 0.0, 0 at the start of each epoch; count += x.shape[0] for every batch"),
        (all(abs(d - diffs[0]) <= 1e-5 * abs(w) + 1e-6 for d, w in zip(diffs, want)) and abs(diffs[0] * n) > 1e-3,
         f"the returned losses are off by {diffs[0]:+.4g} nats in every epoch: the epoch's total does not start "
         "at 0 (or the count does not)", "total, count = 0.0, 0 at the start of every epoch"),
    ])  # fmt: skip
    first_match(losses, mistakes, drift, where=where)
    fail(
        f"the first epoch's loss ({losses[0]:.4f}) is not the mean NLL per image over its batches ({want[0]:.4f} nats)",
        "return, for every epoch, the sum of loss.item() * x.shape[0] over its batches divided by its number of images",
    )


def _frozen_rule(model, before, train):
    """Only the parameters inside the modules of `train` changed, and the others no longer require gradients.
    Returns the names of the parameters meant to train."""
    names, params = list(before), dict(model.named_parameters())
    changed = [n for n in names if not torch.equal(params[n].detach().cpu(), before[n])]
    meant = [n for n in names if any(_matches(n, p) for p in train)]
    moved = [n for n in changed if n not in meant]  # meant to be frozen, yet changed
    loose = [n for n in moved if any(n.startswith(p) for p in train)]
    still = [n for n in moved if params[n].requires_grad]
    unchanged = [n for n in meant if n not in changed]
    needs_grad = [n for n in names if n not in meant and params[n].requires_grad]
    helpers.first_rule([
        (moved and loose == moved,
         f"layers meant to be frozen still changed: the prefix 'layers.1' also matched {_examples(loose)}",
         "match whole parts of the name: name == prefix or name.startswith(prefix + '.')"),
        (still,
         f"layers meant to be frozen still changed: {len(moved)} of {len(names) - len(meant)} frozen parameter "
         f"tensors were updated (e.g. {_examples(moved)}), and requires_grad is still True on {len(still)} of them",
         "call p.requires_grad_(False) on every parameter outside the listed modules (setting module.requires_grad "
         "= False only adds an attribute), and give the optimizer the trainable ones"),
        (moved,
         f"layers meant to be frozen still changed although their requires_grad is False (e.g. {_examples(moved)}): "
         "the optimizer updated them from gradients already in .grad",
         "build the optimizer from the trainable parameters only, and zero the gradients before every backward"),
        (unchanged == meant, "the layers meant to train did not change",
         "make their parameters require gradients, give them to the optimizer, and call loss.backward() and "
         "optimizer.step() for every batch"),
        (unchanged, f"some parameters of the layers meant to train did not change: {_examples(unchanged)}",
         "train every parameter whose name is a listed module or starts with it followed by a dot"),
        (needs_grad,
         f"the layers meant to be frozen did not move, but {len(needs_grad)} of their parameter tensors still "
         f"require gradients (e.g. {_examples(needs_grad)}): backward() computes gradients for them, and any "
         "optimizer that sees them will update them", "freeze them with p.requires_grad_(False)"),
    ])  # fmt: skip
    return meant


def _losses_rule(losses, epochs):
    """One finite Python float per epoch; returns them as floats."""
    if not isinstance(losses, (list, tuple)) or len(losses) != epochs:
        fail(f"fine_tune returned {type(losses).__name__} {losses!r:.80}, not a list of {epochs} per-epoch losses",
             "return one float per epoch: the mean training loss of that epoch")  # fmt: skip
    floats = [as_float(v) for v in losses]
    helpers.first_rule([
        (any(torch.is_tensor(v) for v in losses),
         "the per-epoch losses are tensors, not Python floats: a loss tensor keeps its batch's whole graph "
         "(activations included) in memory for as long as you hold on to it",
         "add up loss.item() (a float): total += loss.item() * x.shape[0]"),
        (None in floats, "the per-epoch losses are not numbers",
         "append loss.item()-based averages, one float per epoch"),
        (not all(math.isfinite(v) for v in floats if v is not None), f"the losses are not finite: {floats}",
         "check the loss: -log-likelihood, sum over pixels, mean over images"),
    ])  # fmt: skip
    return floats


ZEROING_MISTAKES = {  # the recipe's zero_grad when the gradients are not cleared before every backward
    "never": ("the gradients were never cleared: each step applied the sum of all earlier batches' gradients (and "
              "the stale ones the model arrived with)", "optimizer.zero_grad() before every loss.backward()"),
    "after": ("the gradients already in .grad when fine_tune was called reached the first step: they were only "
              "cleared after it", "optimizer.zero_grad() before every loss.backward(), not after optimizer.step()"),
}  # fmt: skip


def _seeds_rule(rerun, first, seed):
    """When the reads of the data set tell nothing: the same seed must reproduce the run's update `first` (to
    rounding: two shuffles of the same images can agree within `_same_update`'s 1%, Adam's first steps hardly
    depend on the batch), another seed must not. rerun(s): the learner's update from the same start, data seed s."""
    again = rerun(seed)
    hint = "shuffle with DataLoader(..., shuffle=True, generator=torch.Generator().manual_seed(seed + epoch))"
    if not (again - first).norm().item() <= 1e-6 * max(again.norm().item(), first.norm().item(), 1e-12):
        fail("the same seed did not reproduce the same training run: the shuffling does not follow the seed", hint)
    if torch.equal(rerun(seed + 1), first):
        fail("another seed gave exactly the same training run: the data is not shuffled, or not by the seed", hint)


def _conditional_rule(fine_tune, seed, image, dataset):
    """On a class-conditional model the labels reach the model, and every batch goes to the model's device."""
    model = tiny_gated(seed + 1, image, channels=4, dilations=(1,), num_classes=2)
    labelled = ImageDataset("check", dataset.intensities[:8], torch.arange(8) % 2)
    out2, args = model.out2.weight.detach().clone(), (labelled, ["out2"])
    kwargs = dict(epochs=1, lr=1e-2, batch_size=4, seed=0)
    call(fine_tune, model, *args, **kwargs)
    if torch.equal(model.out2.weight.detach(), out2):
        fail("fine-tuning a class-conditional model did not train the layers meant to train",
             "pass the batch's labels to the model when model.num_classes is set")  # fmt: skip
    hint = (
        "move every batch to the model's device: x = x.to(device), and labels = y.to(device) for a class-conditional "
        "model, with device = next(model.parameters()).device"
    )
    probe_device(fine_tune, model, args, kwargs, what="a batch (images or labels)", hint=hint)


def _fine_tune_case(seed):
    """A 12-layer tiny model ('layers.1' must not match 'layers.10') in eval mode (as evaluation may have left
    it) with stale gradients, and 22 patterned images (not a multiple of the batch size)."""
    g = torch.Generator().manual_seed(seed)
    image = (1, 6, 6)
    model = tiny_gated(seed, image, channels=4, dilations=(1,) * 12)
    dataset = _RecordingDataset(_patterned_data(g, 22, image))
    start = copy.deepcopy(model.eval())  # (deepcopy drops .grad)
    for p, q in zip(model.parameters(), start.parameters()):  # gradients left over from earlier training
        p.grad = torch.randn(p.shape, generator=g)
        q.grad = p.grad.clone()
    return image, model, dataset, start


@isolated
@no_delegation(
    "course_lib.finetune.freeze",
    "course_lib.train.Trainer",
    "course_lib.train.fit",
    allowed=("course_lib.models.log_prob_from_logits",),
)
def check_fine_tune(fine_tune):
    """fine_tune(model, dataset, train, *, epochs=1, lr=1e-3, batch_size=32, seed=0) -> per-epoch mean losses."""
    seed = fresh_seed()
    image, model, dataset, start = _fine_tune_case(seed)
    n, train, epochs, batch_size, lr, data_seed = len(dataset), ["layers.1", "out2"], 2, 8, 1e-2, seed % 1000
    args = dict(epochs=epochs, lr=lr, batch_size=batch_size, seed=data_seed)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    nll_before = _data_nll(model, dataset)
    with watching(model) as calls:
        losses = call(fine_tune, model, dataset, train, **args)
    meant = _frozen_rule(model, before, train)
    losses = _losses_rule(losses, epochs)
    training_rules(calls, "fine_tune")
    if calls and max(c["batch"] for c in calls) != batch_size:
        fail(
            f"batch_size={batch_size} was ignored: the model saw at most {max(c['batch'] for c in calls)} images "
            "per batch",
            "pass it on: DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=...)",
        )
    order_known = _order_rule(list(dataset.reads), n, epochs, batch_size, data_seed)
    nll_after = _data_nll(model, dataset)
    plain = ImageDataset("check", dataset.intensities, dataset.labels)

    def rerun(copy_of_start, **changes):  # fine_tune once more, from the start, with some arguments changed
        call(fine_tune, copy_of_start, plain, train, **{**args, **changes})
        return copy_of_start

    lr_hint = "torch.optim.Adam(trainable_parameters, lr=lr)"
    learning_rate_rule(lambda m, rate: rerun(m, epochs=1, lr=rate), start, "fine_tune", hint=lr_hint)
    recipe = (start, plain, train, epochs, lr, batch_size, data_seed)
    reference, batches = _reference_fine_tune(*recipe)
    got = _update(model, before, meant)
    right = _same_update(got, _update(reference, before, meant))
    for zero_grad, (message, hint) in ZEROING_MISTAKES.items() if not right else ():
        if _same_update(got, _update(_reference_fine_tune(*recipe, zero_grad)[0], before, meant)):
            fail(message, hint)
    if not right and nll_after >= nll_before:
        fail(f"fine-tuning made the NLL of the training images worse ({nll_before:.2f} -> {nll_after:.2f} nats/image)",
             "minimise the negative log-likelihood: loss = -log_prob_from_logits(model(x), x).mean()")  # fmt: skip
    if not order_known:  # a shuffle that ignores the seed also changes every loss
        _seeds_rule(lambda s: _update(rerun(copy.deepcopy(start), seed=s), before, meant), got, data_seed)
    _diagnose_losses(losses, batches, n, math.prod(image))  # a summed loss moves Adam's steps only a little
    if not right:
        fail(
            "the trained weights differ from Adam(lr) steps over the batches the task prescribes (one step per "
            "batch, loss = mean NLL per image, gradients zeroed before each backward)",
            "Adam over the trainable parameters with lr=lr; for each epoch a DataLoader shuffled by "
            "torch.Generator().manual_seed(seed + epoch); per batch: zero_grad, loss, backward, step",
        )
    _conditional_rule(fine_tune, seed, image, dataset)
    passed(
        f"fine_tune: only {' and '.join(train)} changed (requires_grad off elsewhere, old gradients ignored), "
        f"Adam with the given lr over batches of {batch_size} shuffled by seed + epoch, in training mode; "
        f"the same weights as the task's recipe (the NLL of the data went from {nll_before:.1f} to "
        f"{nll_after:.1f} nats/image); losses in nats per image"
    )


# -- task 2: class_log_likelihoods --------------------------------------------------------------------
def _scoring_mistakes(ref, dims):
    """{name: (values, message, hint)}: what a wrong log p(x | y) table (B, K) often equals."""
    per_pixel = (
        "you averaged over the pixels: log p(x | y) of an image is the sum over its C*H*W sub-pixels",
        "sum the per-sub-pixel log-probabilities over each image (log_prob_from_logits does)",
    )
    bits = ("you returned bits, not nats", "keep natural logarithms: no division by ln 2")
    return {
        "nll": (-ref, "you returned the negative log-likelihood: the most likely class would get the smallest number",
                "log p(x | y) = log_prob_from_logits(model(x, labels), x), minus the NLL"),
        "per pixel": (ref / dims, *per_pixel), "per pixel, negated": (-ref / dims, *per_pixel),
        "bits": (ref / LN2, *bits), "bits, negated": (-ref / LN2, *bits),
    }  # fmt: skip


def _diagnose_scores(got, ref, dims, b, k):
    first_match(got, _scoring_mistakes(ref, dims), "log_prob")
    column = next((y for y in range(k) if not close(got[:, y], ref[:, y], "summed")), None)
    helpers.first_rule([
        (b > 1 and k > 1 and bool((got - got[:, :1]).abs().max() < 1e-6),
         "every class got the same log-likelihood: the labels do not reach the model",
         "for column y call model(x, labels) with labels = torch.full((B,), y)"),
        (column is not None, f"column {column} is not log p(x | y = {column})",
         "column y must score the images with labels = y for every image"),
    ])  # fmt: skip
    fail("class_log_likelihoods differs from log p(x | y)", "log p(x | y) = log_prob_from_logits(model(x, labels), x)")


def _scoring_case(seed):
    """A tiny class-conditional model with 3-5 clearly different classes, and B = K + 2 binary images."""
    g = torch.Generator().manual_seed(seed)
    k, image = int(torch.randint(3, 6, (), generator=g)), (1, 6, 6)
    model = tiny_gated(seed, image, channels=8, dilations=(1, 2), num_classes=k)
    x = (torch.rand(k + 2, *image, generator=g) < 0.4).long()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("class_bias.weight"):
                p.mul_(3)
        model.eval()
        ref = torch.stack([log_prob_from_logits(model(x, torch.full((k + 2,), y)), x) for y in range(k)], 1).double()
    model.train()
    return model, x, ref


@isolated
@no_delegation(
    "course_lib.finetune.class_log_likelihoods",
    "course_lib.finetune.generative_classify",
    allowed=("course_lib.models.log_prob_from_logits",),
)
def check_class_log_likelihoods(class_log_likelihoods):
    """class_log_likelihoods(model, x) -> (B, K) log p(x | y) in nats for every image and class."""
    model, x, ref = _scoring_case(fresh_seed())
    (b, k), dims = ref.shape, math.prod(x.shape[1:])
    labels = []  # the shape of the labels of every forward pass
    hook = model.register_forward_pre_hook(lambda _, a: labels.append(tuple(a[1].shape) if len(a) > 1 else None))
    try:
        with watching(model) as calls:
            result = call(class_log_likelihoods, model, x.clone())
    finally:
        hook.remove()
    rows, where = "one row per image and one column per class", f"for {b} images and {k} classes"
    transposed = f"the result has shape (K, B) = {(k, b)}: one row per class"
    shapes = {(k, b): (transposed, f"return {rows}, shape (B, K): torch.stack(columns, dim=1)")}
    tensor_rule(
        result, "class_log_likelihoods", (b, k), "return a (B, K) tensor", shape_hint=rows, shapes=shapes, where=where
    )
    eval_rules(calls, "class_log_likelihoods", doing="scored")
    mode_restored_rule(model, True, "class_log_likelihoods")
    got = result.detach().double().cpu()
    if not close(got, ref, "summed"):
        _diagnose_scores(got, ref, dims, b, k)
    odd = next((shape for shape in labels if shape != (b,)), (b,))  # (None: a forward pass without labels)
    helpers.first_rule([
        (odd != (b,), f"the model got labels of shape {odd} for {b} images: one label per image, shape (B,)",
         "labels = torch.full((x.shape[0],), y): x.shape[0] is the number of images"),
        (result.requires_grad,
         "the log-likelihoods still require gradients: they carry the graph of every forward pass",
         "compute them under `with torch.no_grad():`"),
    ])  # fmt: skip
    model.eval()
    one = call(class_log_likelihoods, model, x[:1].clone())  # a batch of one image keeps its batch dimension
    mode_restored_rule(model, False, "class_log_likelihoods")
    if not (torch.is_tensor(one) and tuple(one.shape) == (1, k) and close(one.double().cpu(), ref[:1], "summed")):
        shape = tuple(one.shape) if torch.is_tensor(one) else type(one).__name__
        fail(f"for a batch of one image class_log_likelihoods returned {shape}, not the row (1, {k}) of log p(x | y)",
             "keep the batch dimension (no squeeze()): torch.stack(columns, dim=1) is (B, K) for any B")  # fmt: skip
    probe_device(
        class_log_likelihoods,
        model,
        (x.clone(),),
        what="the images or the labels",
        hint="put both on the model's device: x = x.to(device) and torch.full((B,), y, device=device), with "
        "device = next(model.parameters()).device",
    )
    passed(
        f"class_log_likelihoods: log p(x | y) in nats (sum over pixels) for {b} images and all {k} classes, "
        "in eval mode and without gradients (the caller's mode restored), on the model's device"
    )


# -- task 3: bayes_log_posterior ----------------------------------------------------------------------
def _bayes_mistakes(ll, prior, given_prior, where):
    """{name: (values, message, hint)}: what a wrong log-posterior often equals (values None: not applicable)."""
    joint = ll + prior
    unnormalised = (
        f"the posterior is not normalised {where}: exp() of a row does not sum to one",
        "subtract log p(x) = logsumexp over the classes of log p(x | y) + log p(y) "
        "(or use torch.log_softmax(..., dim=1))",
    )
    return {
        "probabilities": (torch.log_softmax(joint, dim=1).exp(),
            "you returned probabilities p(y | x), not log-probabilities", "return log p(y | x); leave out the exp()"),
        "joint": (joint, *unnormalised),
        "likelihood": (ll, *unnormalised),
        "over the images": (torch.log_softmax(joint, dim=0),
            "you normalised over the images (dim 0), not over the classes",
            "each row is one image: normalise over dim=1"),
        "nll": (torch.log_softmax(-ll + prior, dim=1),
            "you used the negative log-likelihood: the least likely class got the highest posterior",
            "log_lik already holds log p(x | y); add log p(y), do not negate"),
        "evidence added": (joint + torch.logsumexp(joint, dim=1, keepdim=True),
            f"log p(x) was added instead of subtracted {where}",
            "log p(y | x) = log p(x | y) + log p(y) - logsumexp over y' of (log p(x | y') + log p(y'))"),
        "prior ignored": (torch.log_softmax(ll, dim=1) if given_prior else None, "the prior was ignored",
            "add log_prior (shape (K,)) to every row of log_lik before normalising"),
        "prior subtracted": (torch.log_softmax(ll - prior, dim=1) if given_prior else None,
            "the prior was subtracted instead of added", "log p(y | x) = log p(x | y) + log p(y) - log p(x)"),
    }  # fmt: skip


def _bayes_case(bayes_log_posterior, log_lik, log_prior):
    context = f"on log_lik of shape {tuple(log_lik.shape)} (B, K)" + (
        " and no prior" if log_prior is None else f" and log_prior of shape {tuple(log_prior.shape)}"
    )
    got = call(
        bayes_log_posterior,
        *[t.clone() for t in (log_lik, log_prior) if t is not None],
        context=context,
        hint="K = log_lik.shape[1] classes; the prior (K,) adds to every row; normalise each row with "
        "torch.logsumexp(joint, dim=1, keepdim=True) (keepdim keeps the shape (B, 1), which broadcasts)",
    )
    (b, k), where = log_lik.shape, "with a uniform prior" if log_prior is None else "with a non-uniform prior"
    underflow = (
        f"the posterior contains NaN or infinity {where}: exp() of log-likelihoods near -1000 nats is 0 (it "
        "underflows), so p(x) = 0 and 0/0 follows",
        "stay in log space: log p(y | x) = log p(x | y) + log p(y) - logsumexp over y' of the same (torch.log_softmax "
        "does it in one call)",
    )
    shape_hint = "keep the shape of log_lik: one log-posterior per image and class"
    got = tensor_rule(
        got, "bayes_log_posterior", (b, k), "return a (B, K) tensor", shape_hint=shape_hint, finite=underflow
    )
    ll = log_lik.double()
    prior = torch.full((k,), -math.log(k), dtype=torch.float64) if log_prior is None else log_prior.double()
    if not close(got.double().cpu(), torch.log_softmax(ll + prior, dim=1), "summed"):
        first_match(got.double().cpu(), _bayes_mistakes(ll, prior, log_prior is not None, where), "summed")
        fail(
            f"bayes_log_posterior differs from Bayes' rule {where}",
            "log p(y | x) = log p(x | y) + log p(y) - logsumexp_y'(log p(x | y') + log p(y')); uniform prior: "
            "log p(y) = -log K",
        )


@isolated
@no_delegation("course_lib.finetune.generative_classify")
def check_bayes(bayes_log_posterior):
    """bayes_log_posterior(log_lik, log_prior=None) -> (B, K) log p(y | x) by Bayes' rule."""
    g = torch.Generator().manual_seed(fresh_seed())
    b, k = int(torch.randint(6, 10, (), generator=g)), int(torch.randint(3, 6, (), generator=g))  # b > k always
    log_lik = (-1000 + 8 * torch.randn(b, k, generator=g)).float()  # whole-image log-likelihoods are large
    _bayes_case(bayes_log_posterior, log_lik, None)
    log_prior = torch.log_softmax(2 * torch.randn(k, generator=g), dim=0).float()
    _bayes_case(bayes_log_posterior, log_lik, log_prior)
    _bayes_case(bayes_log_posterior, log_lik[:1], log_prior)  # one image: still (1, K)
    passed(
        "bayes_log_posterior: log p(x | y) + log p(y) normalised over the classes in log space (no underflow at "
        "-1000 nats), with a uniform and a non-uniform prior, for one image as for many"
    )
