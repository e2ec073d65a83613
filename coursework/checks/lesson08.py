"""Checks for homework 08 (a Gated PixelCNN of the learner's own): the gated layer, the whole model, the trained
model (from its saved weights) and the class-conditional model (its samples judged by the course's classifier).

The layer and the model are compared with `course_lib`'s `GatedBlock` / `GatedPixelCNN` given the same weights
(the task names the parameters so that their state_dicts load); when the outputs differ, a table of plausible
mistakes, each computed from the reference's weights, names the closest one. Causality is measured with the
Jacobian at several random inputs (`course_lib.causality`), and the receptive field of the last pixel must
cover every earlier pixel (no blind spot). The training checks never train for long: given the saved file they
only load it (weights only), score the test images and sample; called on the function alone (as the course's
own tests do) they train it for two short epochs on 200 images and hold it to the short run's threshold.
"""

import contextlib
import copy
import math
import os
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F

from course_lib import GatedPixelCNN, evaluate, load_dataset, pick, sample
from course_lib.causality import dependency_matrix
from course_lib.data import per_class
from course_lib.masks import raster_mask, vertical_mask
from course_lib.models import GatedBlock

from .helpers import call, close, fail, fresh_seed, invoke, isolated, no_delegation, passed

FORBIDDEN = ("course_lib.models.GatedBlock", "course_lib.models.gate")
NAMES_HINT = "use exactly the names v_conv, h_conv, v_to_h, h_out (and class_bias when num_classes is set)"
# test NLL (nats per image, 14x14 binary digits) a correct solution stays below: the short run (two epochs on
# 200 images here, one in the notebook's fast mode, scored on 100 test images; an untrained model scores about
# 128, the reference 77 after one epoch, fit's default lr 100) and the full run (the notebook's 12 epochs,
# all 1,000 test images). NLL_FULL and ACCURACY_FULL come from the reference run of benchmarks/homework.py
# (benchmarks/results/homework_cpu.json, 3 seeds: 27.48-27.52 nats; 87-93% of the conditional model's
# samples read as the digit asked for, 9-11% of the unconditional model's): NLL_FULL is the worst seed's NLL
# plus 15%, rounded up (one epoch reaches only 36.7); ACCURACY_FULL is midway between the unconditional
# model's best and the conditional model's worst, rounded to a tenth.
NLL_SHORT, NLL_FULL = 115.0, 32.0
ACCURACY_FULL = 0.5  # share of class-conditional samples the classifier reads as the digit asked for


# -- task 1: the gated layer ----------------------------------------------------------------------------
def _gated(x, swap=False):
    a, b = x.chunk(2, dim=1)
    return torch.sigmoid(a) * torch.tanh(b) if swap else torch.tanh(a) * torch.sigmoid(b)


def _forward(block, v, h, labels=None, *, swap=False, link=True, v_res=False, h_res=True, h_out=True,
             bias="after link"):  # fmt: skip
    """GatedBlock's forward with one thing changed (the reference with the defaults)."""
    v_feat = block.v_conv(v)
    bv = bh = 0
    if block.class_bias is not None:
        bv, bh = block.class_bias(labels)[:, :, None, None].chunk(2, dim=1)
        bv, bh = {"swapped": (bh, bv), "horizontal only": (0, bh), "vertical only": (bv, 0)}.get(bias, (bv, bh))
    if bias == "before link":
        v_feat = v_feat + bv
    h_feat = block.h_conv(h) + (block.v_to_h(v_feat) if link else 0)
    v_feat, h_feat = (v_feat if bias == "before link" else v_feat + bv), h_feat + bh
    gated_h = _gated(h_feat, swap)
    return _gated(v_feat, swap) + (v if v_res else 0), (h if h_res else 0) + (
        block.h_out(gated_h) if h_out else gated_h
    )


def _remasked(block, **masks):
    """A copy of `block` whose convolutions named in `masks` use another mask (or dilation 1: "undilated")."""
    block = copy.deepcopy(block)
    for name, mask in masks.items():
        conv = getattr(block, name)
        if mask == "undilated":
            conv.dilation, conv.padding = (1, 1), (conv.kernel_size[0] // 2, conv.kernel_size[1] // 2)
        else:
            conv.mask = mask(conv).to(conv.mask)
    return block


def _layer_mistakes(block, v, h, labels):
    """{name: (outputs (v, h), message, hint)} of the plausible wrong layers, computed from the reference's weights."""
    ones = lambda conv: torch.ones_like(conv.mask)  # noqa: E731
    gate_hint = "the gate is tanh(first half) * sigmoid(second half) of the 2p features"
    mistakes = {
        "swapped gate": (_forward(block, v, h, labels, swap=True), "the gate's halves are swapped: sigmoid(first half) * tanh(second half)", gate_hint),
        "no link": (_forward(block, v, h, labels, link=False), "the link from the vertical to the horizontal stack is missing: the horizontal stack never sees the rows above",
                    "add v_to_h(vertical 2p features) to the horizontal 2p features before the gate"),
        "residual on both": (_forward(block, v, h, labels, v_res=True), "the vertical stack has a residual connection too: only the horizontal stack adds its input",
                             "return the gated vertical features as they are"),
        "no residual": (_forward(block, v, h, labels, h_res=False), "the horizontal stack lost its residual connection: h + h_out(gated features)", "add the input h to h_out(...)"),
        "no h_out": (_forward(block, v, h, labels, h_out=False), "the gated horizontal features reach the residual without h_out", "h + h_out(gated horizontal features)"),
        "mask A": (_forward(_remasked(block, h_conv=lambda c: raster_mask(c.kernel_size, "A", c.in_channels, c.out_channels)), v, h, labels),
                   "the horizontal convolution uses mask A after the first layer: the features at the current position already hold only the past, so mask B keeps them",
                   "mask A is for the first layer, which reads the image itself"),
        "h sees right": (_forward(_remasked(block, h_conv=ones), v, h, labels), "the horizontal stack sees the pixels to the right of the current one (its convolution is not masked)",
                         "h_conv is a MaskedConv2d with mask \"B\""),
        "v sees below": (_forward(_remasked(block, v_conv=ones), v, h, labels), "the vertical stack sees the rows below (its convolution is not masked), and the link hands them to the horizontal stack",
                         "v_conv is a MaskedConv2d with mask \"V\": the rows above and the row itself"),
        "v flipped": (_forward(_remasked(block, v_conv=lambda c: c.mask.flip(2)), v, h, labels), "the vertical stack reads the row below instead of the rows above, so the link brings the current row into the horizontal stack",
                      "mask \"V\" keeps the rows above the centre and the centre row"),
        "v raster": (_forward(_remasked(block, v_conv=lambda c: raster_mask(c.kernel_size, "B", c.in_channels, c.out_channels)), v, h, labels),
                     "the vertical stack uses the raster mask B instead of the vertical mask: it loses the right half of its own row",
                     "v_conv uses mask \"V\""),
        "v without row": (_forward(_remasked(block, v_conv=lambda c: torch.cat([c.mask[:, :, :-2], 0 * c.mask[:, :, -2:]], 2)), v, h, labels),
                          "the vertical stack leaves out its own row (mask \"V0\"): only the model's first vertical convolution does", "later layers use mask \"V\""),
        "no dilation": (_forward(_remasked(block, v_conv="undilated", h_conv="undilated"), v, h, labels), "the convolutions ignore the dilation",
                        "pass dilation=dilation to v_conv and h_conv"),
    }  # fmt: skip
    if block.class_bias is not None:
        bias_hint = (
            "class_bias(labels) has 4p numbers: the first 2p go to the vertical features, the last 2p to the horizontal"
        )
        mistakes["bias swapped"] = (
            _forward(block, v, h, labels, bias="swapped"),
            "the class bias's halves go to the wrong stacks",
            bias_hint,
        )
        mistakes["bias h only"] = (
            _forward(block, v, h, labels, bias="horizontal only"),
            "the class bias reaches only the horizontal stack",
            bias_hint,
        )
        mistakes["bias v only"] = (
            _forward(block, v, h, labels, bias="vertical only"),
            "the class bias reaches only the vertical stack",
            bias_hint,
        )
        mistakes["bias before link"] = (_forward(block, v, h, labels, bias="before link"), "the vertical class bias was added before the link, so it also reaches the horizontal stack through v_to_h",
                                        "add the biases after the link, just before the gate")  # fmt: skip
    return mistakes


def _same_names(got, want, what):
    """The learner's state_dict has the reference's names and shapes."""
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or extra:
        fail(
            f"{what}'s parameters are not named as the task says: "
            + (f"missing {', '.join(missing[:4])}" if missing else "")
            + ("; " if missing and extra else "")
            + (f"unexpected {', '.join(extra[:4])}" if extra else ""),
            NAMES_HINT,
        )
    for name in want:
        if tuple(got[name].shape) != tuple(want[name].shape):
            fail(
                f"{what}'s parameter {name} has shape {tuple(got[name].shape)}, expected {tuple(want[name].shape)}",
                "v_conv and h_conv: p -> 2p channels; v_to_h: 2p -> 2p (1x1); h_out: p -> p (1x1); class_bias: 4p",
            )


def _count_rule(got, want, what):
    n_got, n_want = sum(p.numel() for p in got.parameters()), sum(p.numel() for p in want.parameters())
    if n_got != n_want:
        fail(f"{what} has {n_got} parameters, expected {n_want}", "no layers beyond those the task names")


def _blind_and_causal(model, seeds, what):
    """Causal at each input (Jacobian), and the last pixel sees every earlier pixel."""
    _, h, w = model.image_shape
    seen = None
    for seed in seeds:
        dep = invoke(dependency_matrix, model, seed)
        bad = (dep & torch.ones_like(dep).triu()).nonzero().tolist()
        if bad:
            (o, k) = bad[0]
            (oi, oj), (ki, kj) = divmod(o, w), divmod(k, w)
            where = "a row below" if ki > oi else ("the pixel itself" if kj == oj else "a pixel to its right")
            fail(
                f"{what} is not causal: the output at pixel ({oi}, {oj}) depends on {where}, input ({ki}, {kj})",
                'the vertical stack may see only rows above (mask "V" after a "V0" start), the horizontal stack only '
                'pixels to the left and its own position (mask "B")',
            )
        seen = dep if seen is None else seen | dep
    blind = [divmod(k, w) for k in range(h * w - 1) if not seen[h * w - 1, k]]
    if blind:
        fail(
            f"{what} has a blind spot: the last pixel does not see {len(blind)} earlier pixels, e.g. {blind[0]}",
            "the horizontal stack sees the rows above only through the link from the vertical stack; the vertical "
            "stack's kernel spans the whole width above",
        )


def _scaffold(layers, channels, size=5):
    """The course's Gated PixelCNN (3x3 first convolutions) with `layers` in place of its own, in float64."""
    model = GatedPixelCNN(
        image_shape=(1, size, size), channels=channels, dilations=(1,) * len(layers), first_kernel_size=3
    )
    model.layers = nn.ModuleList(layers)
    return model.double()


def _compare_layer(GatedLayer, g, p, dilation, num_classes):
    """The learner's layer given GatedBlock's weights, on a random batch: equal outputs, or the closest mistake."""
    block = GatedBlock(p, 1, 3, dilation, num_classes).double()
    layer = call(GatedLayer, p, 3, dilation, num_classes, context=f"GatedLayer({p}, 3, {dilation}, {num_classes})")
    _same_names(layer.state_dict(), block.state_dict(), "GatedLayer")
    _count_rule(layer, block, "GatedLayer")
    invoke(layer.load_state_dict, block.state_dict())
    layer = layer.double()
    b, hh, ww = 2, 6, 7
    v, h = (
        torch.randn(b, p, hh, ww, generator=g, dtype=torch.float64),
        torch.randn(b, p, hh, ww, generator=g, dtype=torch.float64),
    )
    labels = torch.randint(0, num_classes, (b,), generator=g) if num_classes else None
    got = call(layer, v.clone(), h.clone(), labels, context=f"on v, h of shape {(b, p, hh, ww)}")
    if not (isinstance(got, tuple) and len(got) == 2 and all(torch.is_tensor(t) for t in got)):
        fail("GatedLayer's forward must return the pair (v, h) of tensors", "return v_new, h_new")
    if tuple(got[0].shape) != v.shape or tuple(got[1].shape) != h.shape:
        fail(f"GatedLayer returned shapes {tuple(got[0].shape)}, {tuple(got[1].shape)}, expected {tuple(v.shape)} twice",
             "the gate halves 2p features into p")  # fmt: skip
    with torch.no_grad():
        want = _forward(block, v, h, labels)
        if close(got[0], want[0], "float64") and close(got[1], want[1], "float64"):
            return layer
        for out, message, hint in _layer_mistakes(block, v, h, labels).values():
            if close(got[0], out[0], "float64") and close(got[1], out[1], "float64"):
                fail(message, hint)
    stack = "vertical" if not close(got[0], want[0], "float64") else "horizontal"
    fail(f"GatedLayer's {stack} output differs from the gated layer's given the same weights"
         + (f" (with {num_classes} classes)" if num_classes else ""), "follow the task's list step by step")  # fmt: skip


@isolated
@no_delegation(*FORBIDDEN, allowed=("course_lib.masks.MaskedConv2d",))
def check_gated_layer(GatedLayer):
    """GatedLayer(channels, kernel_size, dilation, num_classes): GatedBlock's outputs given its weights, causal
    and without a blind spot when stacked."""
    seed = fresh_seed()
    g = torch.Generator().manual_seed(seed)
    for p, dilation, classes in ((4, 1, None), (3, 2, None), (5, 3, 3)):
        _compare_layer(GatedLayer, g, p, dilation, classes)
    layers = [call(GatedLayer, 3, 3, 1, None) for _ in range(4)]
    _blind_and_causal(_scaffold(layers, 3), (seed, seed + 1, seed + 2), "a stack of your layers")
    passed(
        "GatedLayer: the gated layer's outputs given its weights (3, 4 and 5 channels, dilations 1-3, with classes); "
        "stacked, causal at 3 inputs and the last pixel sees every earlier one"
    )


# -- task 2: the whole model ------------------------------------------------------------------------------
def _own_layers(model, what):
    layers = getattr(model, "layers", None)
    if not isinstance(layers, nn.ModuleList) or not len(layers):
        fail(
            f"{what} has no nn.ModuleList `layers` of gated layers",
            "self.layers = nn.ModuleList(GatedLayer(...) for d in dilations)",
        )
    for layer in layers:
        if isinstance(layer, GatedBlock) or type(layer).__name__ != "GatedLayer":
            fail(
                f"{what}'s layers are {type(layer).__name__}, not your GatedLayer",
                "build the layers from your GatedLayer",
            )


def _model_mistakes(ref, x, labels):
    """{name: (logits, message, hint)} of plausible wrong models, from the reference's weights."""

    def run(model, act=F.elu, read="h"):
        scaled = model.scale(x)
        v, h = model.v_in(scaled), model.h_in(scaled)
        for layer in model.layers:
            v, h = layer(v, h, labels)
        return model.to_logits(model.out2(act(model.out1(act(h if read == "h" else v)))))

    undilated = GatedPixelCNN(image_shape=ref.image_shape, channels=ref.config["channels"],
                              dilations=(1,) * len(ref.layers), num_classes=ref.num_classes)  # fmt: skip
    undilated.load_state_dict(ref.state_dict())
    unscaled = copy.deepcopy(ref)
    unscaled.scale = lambda t: t.float()

    def first(**masks):
        m = copy.deepcopy(ref)
        for name, mask in masks.items():
            getattr(m, name).mask = mask(getattr(m, name)).to(ref.v_in.mask)
        return run(m)

    def v_with_row(conv):
        return vertical_mask(conv.kernel_size[0], conv.in_channels, conv.out_channels, include_centre_row=True)

    return {
        "v_in V": (first(v_in=v_with_row), "the first vertical convolution sees the current row (mask \"V\"), so the link hands the current pixel and those to its right to the horizontal stack",
                   "v_in uses mask \"V0\": rows strictly above"),
        "h_in B": (first(h_in=lambda c: raster_mask(c.kernel_size, "B", 1, c.out_channels)), "the first horizontal convolution sees the current pixel (mask \"B\"): the model reads the pixel it predicts",
                   "h_in uses mask \"A\""),
        "reads v": (run(ref, read="v"), "the output layers read the vertical stack: the prediction comes from the horizontal stack h",
                    "out2(elu(out1(elu(h)))) with the h of the last layer"),
        "undilated": (run(undilated), "the dilations were ignored: every layer must use its own dilation d", "GatedLayer(channels, 3, d, num_classes) for d in dilations"),
        "relu": (run(ref, F.relu), "the output layers use ReLU instead of ELU", "out2(elu(out1(elu(h))))"),
        "unscaled": (run(unscaled),
                     "the first convolutions read the raw levels, not self.scale(x)", "scaled = self.scale(x)"),
    }  # fmt: skip


def _compare_model(Model, g, num_classes):
    shape, channels, dilations = (1, 6, 6), 4, (1, 2, 1)
    ref = GatedPixelCNN(image_shape=shape, channels=channels, dilations=dilations, num_classes=num_classes)
    model = call(
        Model,
        shape,
        channels,
        dilations,
        num_classes,
        context=f"HomeworkPixelCNN({shape}, {channels}, {dilations}, {num_classes})",
    )
    _own_layers(model, "HomeworkPixelCNN")
    _same_names(model.state_dict(), ref.state_dict(), "HomeworkPixelCNN")
    invoke(model.load_state_dict, ref.state_dict())
    x = torch.randint(0, 2, (3, *shape), generator=g)
    labels = torch.randint(0, num_classes, (3,), generator=g) if num_classes else None
    got = call(model, x.clone(), labels, context="on 3 binary 6x6 images")
    with torch.no_grad():
        want = ref(x, labels)
        if torch.is_tensor(got) and got.shape == want.shape and close(got, want):
            return model
        if not torch.is_tensor(got) or got.shape != want.shape:
            fail(f"HomeworkPixelCNN returned {tuple(got.shape) if torch.is_tensor(got) else type(got).__name__}, expected logits {tuple(want.shape)}",
                 "return self.to_logits(out2(...))")  # fmt: skip
        for out, message, hint in _model_mistakes(ref, x, labels).values():
            if close(got, out):
                fail(message, hint)
    fail(
        "HomeworkPixelCNN's logits differ from a Gated PixelCNN's given the same weights",
        "follow the task's list in order",
    )


@isolated
@no_delegation(*FORBIDDEN, "course_lib.models.GatedPixelCNN", allowed=("course_lib.masks.MaskedConv2d",))
def check_model(HomeworkPixelCNN):
    """HomeworkPixelCNN: GatedPixelCNN's logits given its weights, made of GatedLayer, accepted by fit/evaluate/sample."""
    from course_lib import fit
    from course_lib.data import ImageDataset

    seed = fresh_seed()
    g = torch.Generator().manual_seed(seed)
    _compare_model(HomeworkPixelCNN, g, None)
    _compare_model(HomeworkPixelCNN, g, 3)
    model = call(HomeworkPixelCNN, (1, 5, 5), 3, (1, 1))
    _blind_and_causal(model.double(), (seed, seed + 1), "HomeworkPixelCNN")
    model = model.float()
    data = ImageDataset("check", torch.rand(8, 1, 5, 5, generator=g), torch.zeros(8, dtype=torch.long))
    call(fit, model, data, epochs=1, batch_size=4, device="cpu", progress=False, context="in fit(model, ...)")
    call(evaluate, model, data, context="in evaluate(model, ...)")
    drawn = call(sample, model, 2, seed=seed, context="in sample(model, 2)")
    if tuple(drawn.shape) != (2, 1, 5, 5):
        fail(f"sample(model, 2) returned shape {tuple(drawn.shape)}", "the model's image_shape must be (1, H, W)")
    passed("HomeworkPixelCNN: a Gated PixelCNN's logits given its weights (with and without classes), built from your "
           "GatedLayer, causal without a blind spot; fit, evaluate and sample run on it")  # fmt: skip


# -- tasks 3 and 4: the trained models, from their saved weights -------------------------------------------
def _short_data():
    return per_class(load_dataset("mnist-subset", "train", size=14), 20)


def _test_data(short):
    test = load_dataset("mnist-subset", "test", size=14)
    return per_class(test, 10) if short else test


def test_nll(model, short=False) -> float:
    """The model's test NLL in nats per image, as the check scores it: all 1,000 test digits (short: 100)."""
    return evaluate(model, _test_data(short))["nats"]


def digit_accuracy(model, per_digit=10, labels_known=True) -> float:
    """Share of `per_digit` samples of every digit (drawn with seed 0) that the course's classifier reads as
    the digit asked for. labels_known=False: an unconditional model, sampled without labels (chance: 1/10)."""
    from coursework.classifier import classify

    labels = torch.arange(10).repeat_interleave(per_digit)
    drawn = sample(model, len(labels), labels=labels if labels_known else None, seed=0)
    return (classify(drawn) == labels).float().mean().item()


def _read(path):
    """What the learner saved in `path`, read with torch.load(..., weights_only=True): {"config", "state_dict"}."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        fail(f"{path} cannot be loaded with torch.load(..., weights_only=True): {type(error).__name__}",
             "save only {\"config\": model.config, \"state_dict\": model.state_dict()}")  # fmt: skip
    if not (isinstance(saved, dict) and {"config", "state_dict"} <= set(saved)):
        fail(
            f"{path} does not hold the dict {{'config', 'state_dict'}}",
            'torch.save({"config": model.config, "state_dict": model.state_dict()}, path)',
        )
    return saved


@contextlib.contextmanager
def _watched_fit(fn):
    """Records the keyword arguments of every call of `fit` made through the learner's notebook namespace."""
    namespace, calls = getattr(fn, "__globals__", {}), []
    real = namespace.get("fit")
    if real is None:
        yield calls
        return

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    namespace["fit"] = spy
    try:
        yield calls
    finally:
        namespace["fit"] = real


def _recipe_rule(fn, conditional):
    """The recipe, on 40 images: fit for the epochs asked for (2); the same seed gives the same weights and another
    seed other weights; and train_homework(..., conditional=True) saves a model of the 10 digits."""
    data, seed, name = per_class(load_dataset("mnist-subset", "train", size=14), 4), fresh_seed() % 10_000, fn.__name__

    def run(seed, **kwargs):
        path = os.path.join(tempfile.mkdtemp(), "model.pt")
        with _watched_fit(fn) as calls:
            call(fn, path, data, seed=seed, epochs=2, **kwargs, context="on 40 training images for two epochs")
        if not calls:
            fail(f"{name} did not train with fit", "fit(model, data, epochs=epochs, ...)")
        if calls[-1].get("epochs") != 2:
            epochs = calls[-1].get("epochs", "the default number of")
            fail(f"{name}(..., epochs=2) trained for {epochs} epochs", "fit(model, data, epochs=epochs, ...)")
        return _read(path)

    def same(a, b):
        return a["state_dict"].keys() == b["state_dict"].keys() and all(
            torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]
        )

    first, again, other = run(seed), run(seed), run(seed + 1)
    if not same(first, again):
        fail(f"two runs of {name} with the same seed saved different weights: torch is not seeded with seed",
             "torch.manual_seed(seed) before building the model")  # fmt: skip
    if same(first, other):
        fail(f"runs of {name} with different seeds saved the same weights: the seed argument is ignored", "use seed")
    if not conditional:
        classes = run(seed, conditional=True)["config"].get("num_classes")
        if classes != 10:
            fail(f"train_homework(..., conditional=True) saved a model with num_classes={classes}, not 10",
                 "num_classes=10 if conditional else None")  # fmt: skip


def _load_saved(fn, path, what):
    """The learner's model class rebuilt from `path` (torch.load with weights_only=True)."""
    if not os.path.exists(path):
        fail(f"{what} saved nothing to the path it was given", f"{what} saves to path with torch.save")
    saved = _read(path)
    cls = getattr(fn, "__globals__", {}).get("HomeworkPixelCNN")
    if cls is None:
        fail("HomeworkPixelCNN is not defined next to your training function", "run the cell of Task 2 first")
    model = call(cls, **saved["config"], context="rebuilding HomeworkPixelCNN from the saved configuration")
    _own_layers(model, "the saved model")
    try:
        model.load_state_dict(saved["state_dict"])
    except RuntimeError as error:
        fail(f"the saved weights do not fit a HomeworkPixelCNN of the saved configuration: {str(error).splitlines()[0]}",
             "save model.state_dict() of the model you trained")  # fmt: skip
    return model.eval()


def _trained(fn, path):
    """(the saved model, short run?, trained here?): loaded from `path` when it exists; else (in fast mode, or when called on the
    function alone) trained here for two short epochs on 200 images, into a file of its own."""
    if path is not None and os.path.exists(path):
        return _load_saved(fn, path, fn.__name__), pick(fast=True, full=False), False
    if path is not None and not pick(fast=True, full=False):
        fail(f"there is no file {path}: run the cell after this check (it trains the model and saves the weights), "
             "then this check again; hand the file in with the notebook", f"{fn.__name__} saves to path")  # fmt: skip
    path = os.path.join(tempfile.mkdtemp(), "model.pt")
    seed = fresh_seed() % 10_000
    call(fn, path, _short_data(), seed=seed, epochs=2, context="on 200 training images for two epochs")
    return _load_saved(fn, path, fn.__name__), True, True


@isolated
def check_trained(train_homework, path=None):
    """The saved model: loads weights-only into the learner's class, its test NLL (scored here) is below the
    threshold of its budget, and it samples."""
    model, short, here = _trained(train_homework, path)
    if model.num_classes:
        fail("the saved model is class-conditional: Task 3 asks for the model of p(x)", "conditional=False by default")
    nats = test_nll(model, short)
    limit = NLL_SHORT if short else NLL_FULL
    if not math.isfinite(nats) or nats > limit:
        fail(f"the saved model's test NLL is {nats:.1f} nats per image, above {limit:.0f}: it has not learned enough",
             "train with fit on train_data for the given epochs; lr around 1e-3 to 5e-3; save the trained model")  # fmt: skip
    drawn = sample(model, 4, seed=0)
    if tuple(drawn.shape) != (4, 1, 14, 14) or not bool(((drawn == 0) | (drawn == 1)).all()):
        fail("the saved model does not draw binary 14x14 samples", "the model's image_shape is train_data.image_shape")
    if here:
        _recipe_rule(train_homework, conditional=False)
    passed(f"the saved model loads weights-only into your HomeworkPixelCNN; test NLL {nats:.1f} nats per image "
           f"(below {limit:.0f}) on {len(_test_data(short))} test images; it samples")  # fmt: skip


@isolated
def check_conditioned(conditioned, path=None):
    """The saved class-conditional model: loads weights-only, its labels change its logits, and the course's
    classifier reads its samples as the digits asked for."""
    model, short, here = _trained(conditioned, path)
    if model.num_classes != 10:
        fail(
            "the saved model is not conditioned on the 10 digits (num_classes is not 10)",
            "train_homework(path, data, conditional=True)",
        )
    x = torch.randint(0, 2, (2, 1, 14, 14), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if torch.equal(model(x, torch.tensor([0, 0])), model(x, torch.tensor([1, 1]))):
            fail(
                "the saved model ignores its labels: the logits are the same for every digit",
                "pass labels to every layer",
            )
    per_digit = 2 if short else 10
    accuracy = digit_accuracy(model, per_digit)
    limit = 0.0 if short else ACCURACY_FULL
    if accuracy < limit:
        fail(f"the digit classifier reads only {accuracy:.0%} of the {10 * per_digit} samples as the digit asked for (at least "
             f"{limit:.0%} needed)", "train longer, or check that the labels reach every layer")  # fmt: skip
    if here:
        _recipe_rule(conditioned, conditional=True)
    passed(f"the saved class-conditional model: {accuracy:.0%} of {10 * per_digit} samples read as the digit asked for "
           f"(at least {limit:.0%})")  # fmt: skip
