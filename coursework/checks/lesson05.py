"""Checks for lesson 05 (fine-tuning): a fine-tuning routine that trains only some layers, the class-conditional
log-likelihoods of a batch of images, and the generative classifier (Bayes' rule in log space).

Each check builds fresh tiny random models and inputs, runs the learner's function next to the reference
behaviour computed with course_lib, prints one verdict line and raises CheckFailed when something is wrong.
Known mistakes get their own message: layers meant to be frozen still changing (requires_grad never turned
off, or an optimizer that still updates them from old gradients), a prefix that also matches 'layers.10',
the loss in bits or averaged over pixels, log-likelihoods in train mode or with gradients, the NLL instead
of the log-likelihood, an unnormalised or underflowing posterior, a normalisation over the wrong axis and
an ignored prior.

fine_tune is compared step for step with the task's recipe (Adam with the given lr, one DataLoader per
epoch shuffled by seed + epoch): the order in which it reads the images, the batch sizes, lr=0, and the
per-epoch losses (numerator and denominator) each get their own message. Device handling is tested on
PyTorch's "meta" device (`helpers.probe_forward`).
"""

import copy
import math

import torch
from torch.utils.data import DataLoader

from course_lib.data import ImageDataset
from course_lib.likelihood import log_prob_from_logits

from .helpers import (
    LN2,
    ForwardSpy,
    call,
    call_explained,
    close,
    fail,
    fail_off_device,
    fresh_seed,
    isolated,
    meta_copy,
    no_delegation,
    passed,
    probe_forward,
    tiny_gated,
)


# -- helpers ------------------------------------------------------------------------------------------
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
    pixels = (pattern + flip) % 2
    return ImageDataset("check", pixels, torch.zeros(n, dtype=torch.long))


@torch.no_grad()
def _data_nll(model, dataset):
    was_training = model.training
    model.eval()
    nll = -log_prob_from_logits(model(dataset.images), dataset.images).double().mean().item()
    model.train(was_training)
    return nll


class _RecordingDataset(ImageDataset):
    """An ImageDataset that records which images are read, in order (to see the learner's shuffling)."""

    def __init__(self, dataset):
        super().__init__(dataset.name, dataset.intensities, dataset.labels)
        self.reads = []

    def __getitem__(self, i):
        self.reads.append(int(i))
        return super().__getitem__(i)


def _order(n, batch_size, seed):
    """The order in which DataLoader(shuffle=True, generator=torch.Generator().manual_seed(seed)) reads n images."""
    loader = DataLoader(range(n), batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    return [int(i) for batch in loader for i in batch]


def _reference_fine_tune(model, dataset, train, epochs, lr, batch_size, seed, zero_grad="before"):
    """fine_tune as the task describes it, on a copy of `model` (stale gradients included). zero_grad: "before"
    every backward (correct), "after" every step (stale gradients reach the first step), or "never".
    Returns (the trained copy, [[(batch loss, batch size) for every batch] for every epoch])."""
    source = dict(model.named_parameters())
    model = copy.deepcopy(model)
    trainable = []
    for name, p in model.named_parameters():
        p.grad = None if source[name].grad is None else source[name].grad.clone()  # (deepcopy drops .grad)
        learns = any(_matches(name, prefix) for prefix in train)
        p.requires_grad_(learns)
        if learns:
            trainable.append(p)
    optimizer = torch.optim.Adam(trainable, lr=lr)
    model.train()
    epochs_seen = []
    for epoch in range(epochs):
        batches = []
        g = torch.Generator().manual_seed(seed + epoch)
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
    """True when two parameter updates agree (direction and length within 1%)."""
    na, nb = a.norm().item(), b.norm().item()
    if na == 0 or nb == 0:
        return na == nb
    cos = torch.nn.functional.cosine_similarity(a, b, dim=0).item()
    return cos > 0.999 and abs(na / nb - 1) < 0.01


def _same_run(a, b):
    """True when two runs of the same code agree to rounding: a rerun must reproduce its update, and two shuffles
    of the same images can agree within `_same_update`'s 1% (Adam's first steps hardly depend on the batch)."""
    return (a - b).norm().item() <= 1e-6 * max(a.norm().item(), b.norm().item(), 1e-12)


def _check_order(reads, n, epochs, batch_size, seed):
    """Fail when the images were not read in the order the task prescribes (one DataLoader per epoch, shuffled
    by a generator seeded with seed + epoch). Returns False when the reads tell nothing (no dataset reads)."""
    if len(reads) != n * epochs:
        return False
    got = [reads[e * n : (e + 1) * n] for e in range(epochs)]
    want = [_order(n, batch_size, seed + e) for e in range(epochs)]
    if got == want:
        return True
    hint = (
        "for every epoch: DataLoader(dataset, batch_size=batch_size, shuffle=True, "
        "generator=torch.Generator().manual_seed(seed + epoch))"
    )
    if all(order == list(range(n)) for order in got):
        fail("the images were not shuffled: every epoch read them in the order of the data set", hint)
    if got[0] == want[0] and all(order == got[0] for order in got):
        fail("every epoch shuffled the images in the same order: the generator's seed must change with the epoch", hint)
    for other in (0, 1, 42):
        if other != seed and got == [_order(n, batch_size, other + e) for e in range(epochs)]:
            fail(f"the seed argument was ignored: the shuffling used the seed {other} + epoch, not seed + epoch", hint)
    if got[0] != want[0]:
        fail(
            "the first epoch did not read the images in the order of a DataLoader shuffled by "
            "torch.Generator().manual_seed(seed): the seed argument does not decide the shuffling",
            hint,
        )
    bad = next(e for e in range(epochs) if got[e] != want[e])
    fail(
        f"epoch {bad} did not read the images in the order of a DataLoader shuffled by a generator seeded with "
        f"seed + {bad}",
        "a new generator for every epoch: " + hint,
    )


def _diagnose_losses(losses, batches_per_epoch, n, dims):
    """Fail with the message of the known mistake that the per-epoch losses match (expected: the mean NLL
    per image over each epoch's batches, in nats)."""

    def each(f):
        return [f(batches) for batches in batches_per_epoch]

    want = each(lambda b: sum(loss * size for loss, size in b) / n)
    if _error(losses, want) <= 1e-5:  # a correct loop repeats the recipe's arithmetic: equal up to rounding
        return
    variants = [
        (
            [-w for w in want],
            "the returned losses are negative: the total (or the count) went down instead of up",
            "total += loss.item() * x.shape[0] and count += x.shape[0] for every batch",
        ),
        (
            [w / LN2 for w in want],
            "the returned losses are in bits, not nats",
            "the loss is the NLL in nats (natural log); no ln 2",
        ),
        (
            [w / dims for w in want],
            "the returned losses are averaged over the pixels: they are nats per dimension, not per image",
            "sum the NLL over C*H*W sub-pixels of each image, then average over the images of a batch",
        ),
        (
            each(lambda b: sum(loss * size * size for loss, size in b) / n),
            "the loss of a batch was summed over its images, not averaged",
            "loss = -log_prob_from_logits(model(x, labels), x).mean(): the mean over the images of the batch",
        ),
        (
            each(lambda b: sum(loss for loss, _ in b) / len(b)),
            "you averaged the batch means, so the smaller last batch weighs as much as a full one",
            "weigh each batch's mean loss by its size: total += loss.item() * x.shape[0], then divide by the count",
        ),
        (
            each(lambda b: sum(loss for loss, _ in b) / n),
            "each batch's mean loss was added without weighting it by the number of images in the batch",
            "total += loss.item() * x.shape[0] (x.shape[0] is the batch size), then divide by the count of images",
        ),
        (
            each(lambda b: sum(loss * size for loss, size in b) / len(b)),
            "the epoch's total loss was divided by the number of batches, not by the number of images",
            "count the images: count += x.shape[0] for every batch",
        ),
        (
            each(lambda b: b[-1][0]),
            "each epoch reported the loss of its last batch, not the mean over all its images",
            "add up loss.item() * x.shape[0] over the epoch's batches and divide by the number of images",
        ),
        (
            each(lambda b: sum(loss / size for loss, size in b) / n),
            "each batch's mean loss was divided by the batch size instead of multiplied by it",
            "total += loss.item() * x.shape[0]: the batch's summed NLL, then divide by the count of images",
        ),
        (
            each(lambda b: sum(loss * size for loss, size in b) * n),
            "the epoch's total loss was multiplied by the number of images instead of divided by it",
            "the epoch's loss is total / count",
        ),
        (
            each(lambda b: sum(loss * size for loss, size in b)),
            "the returned losses are totals over the epoch, not means per image",
            "divide the epoch's total by the number of images it saw",
        ),
        (
            each(lambda b: sum(loss for loss, _ in b)),
            "the returned losses add up the batch means of an epoch: far too large",
            "average over the epoch: total += loss.item() * x.shape[0], then total / count",
        ),
    ]

    def name_the_closest(tolerance):
        error, message, hint = min((_error(losses, values), message, hint) for values, message, hint in variants)
        if error <= tolerance:
            fail(f"{message} (got {losses[0]:.4g}, expected {want[0]:.4g} for the first epoch)", hint)

    name_the_closest(1e-5)  # a bookkeeping mistake leaves the training as it was: its values match to rounding
    if all(g == 0 for g in losses):
        fail(
            "the returned losses are all 0: nothing was added to the epoch's total", "total += loss.item() * x.shape[0]"
        )
    totals = each(lambda b: sum(loss * size for loss, size in b))
    divisors = [t / g if g else 0.0 for t, g in zip(totals, losses)]
    if all(abs(d - round(d)) < 1e-3 * abs(d) and round(d) == round(divisors[0]) for d in divisors) and round(
        divisors[0]
    ) not in (0, n):
        fail(
            f"the epoch's total loss was divided by {round(divisors[0])}, not by the number of images ({n}): the "
            "count of images is wrong (does it start at 0, and grow by x.shape[0] per batch?)",
            "total, count = 0.0, 0 at the start of each epoch; count += x.shape[0] for every batch",
        )
    diffs = [g - w for g, w in zip(losses, want)]
    if all(abs(d - diffs[0]) <= 1e-5 * abs(w) + 1e-6 for d, w in zip(diffs, want)) and abs(diffs[0] * n) > 1e-3:
        fail(
            f"the returned losses are off by {diffs[0]:+.4g} nats in every epoch: the epoch's total does not start "
            "at 0 (or the count does not)",
            "total, count = 0.0, 0 at the start of every epoch",
        )
    name_the_closest(1e-3)  # a mistake in the loss itself moves Adam's steps a little: its values match to 0.1%
    fail(
        f"the first epoch's loss ({losses[0]:.4f}) is not the mean NLL per image over its batches ({want[0]:.4f} nats)",
        "return, for every epoch, the sum of loss.item() * x.shape[0] over its batches divided by its number of images",
    )


def _error(got, values):
    """The largest relative difference between the returned per-epoch losses and `values` (inf if not finite)."""
    if not all(math.isfinite(g) and math.isfinite(v) for g, v in zip(got, values)):
        return math.inf
    return max(abs(g - v) / (abs(v) + 1e-6) for g, v in zip(got, values))


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
    g = torch.Generator().manual_seed(seed)
    image = (1, 6, 6)
    dims = math.prod(image)
    model = tiny_gated(seed, image, channels=4, dilations=(1,) * 12)  # 12 layers: 'layers.1' must not match 'layers.10'
    n = 22  # not a multiple of the batch size: the last batch is smaller
    dataset = _RecordingDataset(_patterned_data(g, n, image))
    train = ["layers.1", "out2"]
    epochs, batch_size, lr, data_seed = 2, 8, 1e-2, seed % 1000
    for p in model.parameters():  # gradients left over from earlier training
        p.grad = torch.randn(p.shape, generator=g)
    model.eval()  # as evaluation may have left it: fine_tune must switch to training mode
    start = copy.deepcopy(model)
    for p, q in zip(start.parameters(), model.parameters()):
        p.grad = q.grad.clone()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    nll_before = _data_nll(model, dataset)

    spy = ForwardSpy(model)
    sizes = []
    handle = model.register_forward_pre_hook(
        lambda module, args: sizes.append(int(args[0].shape[0]) if args and torch.is_tensor(args[0]) else 0)
    )
    try:
        losses = call(fine_tune, model, dataset, train, epochs=epochs, lr=lr, batch_size=batch_size, seed=data_seed)
    finally:
        spy.remove()
        handle.remove()
    reads = list(dataset.reads)

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
    if any(torch.is_tensor(v) for v in losses):
        fail(
            "the per-epoch losses are tensors, not Python floats: a loss tensor keeps its batch's whole graph "
            "(activations included) in memory for as long as you hold on to it",
            "add up loss.item() (a float): total += loss.item() * x.shape[0]",
        )
    try:
        losses = [float(v) for v in losses]
    except (TypeError, ValueError, RuntimeError):
        fail("the per-epoch losses are not numbers", "append loss.item()-based averages, one float per epoch")
    if not all(math.isfinite(v) for v in losses):
        fail(
            f"the losses are not finite: {losses}", "check the loss: -log-likelihood, sum over pixels, mean over images"
        )
    if any(not c["training"] for c in spy.calls):
        fail(
            "fine_tune trained with the model in eval mode (it arrived in eval mode, as after an evaluation)",
            "call model.train() before the training loop",
        )
    if sizes and max(sizes) != batch_size:
        fail(
            f"batch_size={batch_size} was ignored: the model saw at most {max(sizes)} images per batch",
            "pass it on: DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=...)",
        )
    order_known = _check_order(reads, n, epochs, batch_size, data_seed)
    nll_after = _data_nll(model, dataset)

    # the learning rate: lr=0 must leave every weight as it was
    still = copy.deepcopy(start)
    call(
        fine_tune,
        still,
        ImageDataset("check", dataset.intensities, dataset.labels),
        train,
        epochs=1,
        lr=0.0,
        batch_size=batch_size,
        seed=data_seed,
    )
    if any(not torch.equal(p.detach().cpu(), before[name]) for name, p in still.named_parameters()):
        fail(
            "with lr=0 the weights still changed: the lr argument does not reach the optimizer",
            "torch.optim.Adam(trainable_parameters, lr=lr)",
        )

    # the weights: the same Adam steps over the same batches as the task's recipe
    plain = ImageDataset("check", dataset.intensities, dataset.labels)
    reference, batches = _reference_fine_tune(start, plain, train, epochs, lr, batch_size, data_seed)
    got_update, want_update = _update(model, before, meant), _update(reference, before, meant)
    if not _same_update(got_update, want_update):
        for zero_grad, message, hint in (
            (
                "never",
                "the gradients were never cleared: each step applied the sum of all earlier batches' gradients "
                "(and the stale ones the model arrived with)",
                "optimizer.zero_grad() before every loss.backward()",
            ),
            (
                "after",
                "the gradients already in .grad when fine_tune was called reached the first step: they were only "
                "cleared after it",
                "optimizer.zero_grad() before every loss.backward(), not after optimizer.step()",
            ),
        ):
            variant, _ = _reference_fine_tune(start, plain, train, epochs, lr, batch_size, data_seed, zero_grad)
            if _same_update(got_update, _update(variant, before, meant)):
                fail(message, hint)
        if nll_after >= nll_before:
            fail(
                f"fine-tuning made the NLL of the training images worse ({nll_before:.2f} -> {nll_after:.2f} "
                "nats/image)",
                "minimise the negative log-likelihood: loss = -log_prob_from_logits(model(x), x).mean()",
            )
        if not order_known:  # first: a shuffle that ignores the seed also changes every loss
            _check_seeds(fine_tune, start, plain, train, epochs, lr, batch_size, data_seed, model, meant)
        _diagnose_losses(losses, batches, n, dims)  # a summed loss moves Adam's steps only a little: name it
        fail(
            "the trained weights differ from Adam(lr) steps over the batches the task prescribes (one step per "
            "batch, loss = mean NLL per image, gradients zeroed before each backward)",
            "Adam over the trainable parameters with lr=lr; for each epoch a DataLoader shuffled by "
            "torch.Generator().manual_seed(seed + epoch); per batch: zero_grad, loss, backward, step",
        )
    if not order_known:
        _check_seeds(fine_tune, start, plain, train, epochs, lr, batch_size, data_seed, model, meant)
    _diagnose_losses(losses, batches, n, dims)

    conditional = tiny_gated(seed + 1, image, channels=4, dilations=(1,), num_classes=2)
    labelled = ImageDataset("check", dataset.intensities[:8], torch.arange(8) % 2)
    out2 = conditional.out2.weight.detach().clone()
    call(fine_tune, conditional, labelled, ["out2"], epochs=1, lr=1e-2, batch_size=4, seed=0)
    if torch.equal(conditional.out2.weight.detach(), out2):
        fail(
            "fine-tuning a class-conditional model did not train the layers meant to train",
            "pass the batch's labels to the model when model.num_classes is set",
        )
    meta = meta_copy(conditional)
    record = probe_forward(fine_tune, meta, meta, labelled, ["out2"], epochs=1, lr=1e-2, batch_size=4, seed=0)
    fail_off_device(
        record,
        "fine_tune",
        "a batch (images or labels)",
        "move every batch to the model's device: x = x.to(device), and labels = y.to(device) for a "
        "class-conditional model, with device = next(model.parameters()).device",
    )
    passed(
        f"fine_tune: only {' and '.join(train)} changed (requires_grad off elsewhere, old gradients ignored), "
        f"Adam with the given lr over batches of {batch_size} shuffled by seed + epoch, in training mode; "
        f"the same weights as the task's recipe (the NLL of the data went from {nll_before:.1f} to "
        f"{nll_after:.1f} nats/image); losses in nats per image"
    )


def _check_seeds(fine_tune, start, dataset, train, epochs, lr, batch_size, seed, trained, names):
    """When the reads of the data set tell nothing: the same seed must reproduce the run, another must not."""
    before = {name: p.detach().clone() for name, p in start.named_parameters()}
    first = _update(trained, before, names)
    again = copy.deepcopy(start)
    call(fine_tune, again, dataset, train, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    if not _same_run(_update(again, before, names), first):
        fail(
            "the same seed did not reproduce the same training run: the shuffling does not follow the seed",
            "shuffle with DataLoader(..., shuffle=True, generator=torch.Generator().manual_seed(seed + epoch))",
        )
    other = copy.deepcopy(start)
    call(fine_tune, other, dataset, train, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed + 1)
    if torch.equal(_update(other, before, names), first):
        fail(
            "another seed gave exactly the same training run: the data is not shuffled, or not by the seed",
            "shuffle with DataLoader(..., shuffle=True, generator=torch.Generator().manual_seed(seed + epoch))",
        )


# -- task 2: class_log_likelihoods --------------------------------------------------------------------
@isolated
@no_delegation(
    "course_lib.finetune.class_log_likelihoods",
    "course_lib.finetune.generative_classify",
    allowed=("course_lib.models.log_prob_from_logits",),
)
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
    label_shapes = []
    handle = model.register_forward_pre_hook(
        lambda module, args: label_shapes.append(
            tuple(args[1].shape) if len(args) > 1 and torch.is_tensor(args[1]) else None
        )
    )
    try:
        got = call(class_log_likelihoods, model, x.clone())
    finally:
        spy.remove()
        handle.remove()
    result = got
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
        odd = [shape for shape in label_shapes if shape != (b,)]
        if odd:
            fail(
                f"the model got labels of shape {odd[0]} for {b} images: one label per image, shape (B,)",
                "labels = torch.full((x.shape[0],), y): x.shape[0] is the number of images",
            )
        _check_scoring_extras(class_log_likelihoods, model, x, result)
        passed(
            f"class_log_likelihoods: log p(x | y) in nats (sum over pixels) for {b} images and all {k} classes, "
            "in eval mode and without gradients (the caller's mode restored), on the model's device"
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


def _check_scoring_extras(class_log_likelihoods, model, x, result):
    """What a right answer can still get wrong: the caller's mode (arriving in eval mode), a result that
    holds a graph, the device of the images and of the labels."""
    if result.requires_grad:
        fail(
            "the log-likelihoods still require gradients: they carry the graph of every forward pass",
            "compute them under `with torch.no_grad():`",
        )
    model.eval()
    call(class_log_likelihoods, model, x.clone())
    if model.training:
        fail(
            "the model arrived in eval mode and was left in train mode: put it back into the mode it was in, "
            "not always into train mode",
            "was_training = model.training before model.eval(), and model.train(was_training) at the end",
        )
    meta = meta_copy(model)
    record = probe_forward(class_log_likelihoods, meta, meta, x.clone())
    fail_off_device(
        record,
        "class_log_likelihoods",
        "the images or the labels",
        "put both on the model's device: x = x.to(device) and torch.full((B,), y, device=device), with "
        "device = next(model.parameters()).device",
    )


# -- task 3: bayes_log_posterior ----------------------------------------------------------------------
def _bayes_case(bayes_log_posterior, log_lik, log_prior):
    args = (log_lik.clone(),) if log_prior is None else (log_lik.clone(), log_prior.clone())
    got = call_explained(
        bayes_log_posterior,
        *args,
        context=f"on log_lik of shape {tuple(log_lik.shape)} (B, K)"
        + (" and no prior" if log_prior is None else f" and log_prior of shape {tuple(log_prior.shape)}"),
        hint="K = log_lik.shape[1] classes; the prior (K,) adds to every row; normalise each row with "
        "torch.logsumexp(joint, dim=1, keepdim=True) (keepdim keeps the shape (B, 1), which broadcasts)",
    )
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
    joint = ll + prior
    if close(got, joint + torch.logsumexp(joint, dim=1, keepdim=True), rtol=1e-4, atol=2e-3):
        fail(
            f"log p(x) was added instead of subtracted {where}",
            "log p(y | x) = log p(x | y) + log p(y) - logsumexp over y' of (log p(x | y') + log p(y'))",
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
@no_delegation("course_lib.finetune.generative_classify")
def check_bayes(bayes_log_posterior):
    """bayes_log_posterior(log_lik, log_prior=None) -> (B, K) log p(y | x) by Bayes' rule."""
    g = torch.Generator().manual_seed(fresh_seed())
    b, k = int(torch.randint(6, 10, (), generator=g)), int(torch.randint(3, 6, (), generator=g))  # b > k always
    log_lik = (-1000 + 8 * torch.randn(b, k, generator=g)).float()  # whole-image log-likelihoods are large
    _bayes_case(bayes_log_posterior, log_lik, None)
    log_prior = torch.log_softmax(2 * torch.randn(k, generator=g), dim=0).float()
    _bayes_case(bayes_log_posterior, log_lik, log_prior)
    passed(
        "bayes_log_posterior: log p(x | y) + log p(y) normalised over the classes in log space (no underflow at "
        "-1000 nats), with a uniform and a non-uniform prior"
    )
