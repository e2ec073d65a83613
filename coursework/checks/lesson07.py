"""Checks for exercises 07: MADE's degrees and masks, and causal attention over pixels. Each check compares
with a reference on fresh inputs, beyond the lesson's settings too (grey and colour images that are not
square, down to one pixel; more outputs than inputs and fewer; one token; fewer queries than keys), names a
wrong answer by the plausible mistake, computed here as a variant of the reference, that reproduces it, and
then builds a small model from the learner's function (a MADE, a `PixelTransformer`) that must be
autoregressive, by its exact Jacobian in float64.
"""

import math

import torch

import course_lib.attention
from course_lib.attention import PixelTransformer
from course_lib.made import hidden_degrees

from .helpers import (
    CheckFailed,
    call,
    close,
    explain,
    fail,
    first_match,
    fresh_generator,
    isolated,
    no_delegation,
    passed,
    patched,
    tensor_rule,
)

FORMULA = "sub-pixel (c, i, j) has degree (i*W + j)*C + c + 1"


# -- task 1 ------------------------------------------------------------------------------------------------------------------------------------------------
def reference_degrees(image_shape):
    """(C, H, W) int64: 1..D in raster-then-channel order."""
    c, h, w = image_shape
    return torch.arange(1, c * h * w + 1).view(h, w, c).permute(2, 0, 1)


def _degree_mistakes(image_shape):
    """{name: (degrees (C, H, W), what is wrong, hint)} for the plausible mistakes of task 1."""
    c, h, w = image_shape
    ref = reference_degrees(image_shape)
    ch, i, j = torch.meshgrid(torch.arange(c), torch.arange(h), torch.arange(w), indexing="ij")
    return {
        "channel-major": ((ch * h + i) * w + j + 1, "your degrees number every pixel of one channel before the next channel (channel-major order)",
                          f"R, G and B of a pixel come one after the other: the channel changes fastest, {FORMULA}"),
        "from 0": (ref - 1, "your degrees start at 0; MADE numbers the sub-pixels 1..D",
                   "the first sub-pixel has degree 1: a hidden unit of degree m sees the first m sub-pixels"),
        "from 2": (ref + 1, "your degrees start at 2; MADE numbers the sub-pixels 1..D", "the first sub-pixel has degree 1"),
        "column-major": ((j * h + i) * c + ch + 1, "your degrees go column by column, not row by row",
                         f"the column changes faster than the row: {FORMULA}"),
        "reversed": (c * h * w + 1 - ref, "your degrees run backwards, from D down to 1", f"the first sub-pixel sampled has degree 1: {FORMULA}"),
        "channels reversed": ((i * w + j) * c + (c - 1 - ch) + 1, "inside a pixel your degrees go B -> G -> R",
                              f"R comes first inside a pixel: {FORMULA}"),
        "pixel degrees": ((i * w + j + 1).expand(c, h, w), "your degrees number the pixels, not the sub-pixels: the channels of a pixel share one degree",
                          f"every sub-pixel gets its own degree, R -> G -> B inside a pixel: {FORMULA}"),
    }  # fmt: skip


DEGREE_SHAPES = [(3, 2, 4), (1, 2, 2), (1, 3, 5), (2, 4, 3), (3, 5, 2), (3, 1, 1), (1, 1, 1)]


@isolated
@no_delegation("course_lib.made.input_degrees")
def check_input_degrees(input_degrees):
    """Task 1: `input_degrees(image_shape)` gives the (C, H, W) int64 degrees 1..D of the sub-pixels in
    raster-then-channel order, for grey and colour images of any size."""
    for shape in DEGREE_SHAPES:
        c, h, w = shape
        what = f"a {c}x{h}x{w} image"
        ref = reference_degrees(shape)
        named = {
            (h, w, c): ("your degrees are laid out (H, W, C)", "lay them out like the image, (C, H, W): permute the dimensions"),
            (c, w, h): ("your degrees have rows and columns swapped", "lay them out like the image, (C, H, W)"),
            (c * h * w,): ("your degrees are a flat (D,) tensor", "lay them out like the image, (C, H, W)"),
        }  # fmt: skip
        named.pop(shape, None)
        got = tensor_rule(call(input_degrees, shape, context=f"on {what}"), "input_degrees", shape,
                          "return a torch tensor of int64 degrees", shapes=named, prefix=f"{what}: ")  # fmt: skip
        if got.dtype != torch.int64:
            fail(f"input_degrees returned a {got.dtype} tensor, not an int64 one",
                 "degrees are whole numbers: torch.arange with integer arguments gives int64")  # fmt: skip
        if torch.equal(got, ref):
            continue
        first_match(got, _degree_mistakes(shape), "float64", prefix=f"{what}: ", reference=ref)
        fail(f"{what}: your degrees differ from the reference", f"1..D in raster-then-channel order: {FORMULA}")
    return passed("input_degrees numbers the sub-pixels 1..D in raster-then-channel order, for grey and colour "
                  "images, square or not, down to one pixel")  # fmt: skip


# -- task 2 ------------------------------------------------------------------------------------------------------------------------------------------------
def reference_mask(out_degrees, in_degrees, strict=False):
    """(out, in) float: 1 where out_degree >= in_degree (strict: >)."""
    out_d, in_d = out_degrees[:, None], in_degrees[None, :]
    return (out_d > in_d if strict else out_d >= in_d).float()


def _mask_mistakes(out_degrees, in_degrees):
    """{name: (the three masks (3, out, in): strict left out, False, True; what is wrong, hint)}."""
    o, i = out_degrees[:, None], in_degrees[None, :]
    ge, gt, le, lt = ((op(o, i)).float() for op in (torch.ge, torch.gt, torch.le, torch.lt))
    rule = "into a hidden unit out_degree >= in_degree, into the output (strict=True) out_degree > in_degree"
    square = len(out_degrees) == len(in_degrees)
    return {
        "strict swapped": (torch.stack([gt, gt, ge]), "strict and non-strict are swapped: your strict mask links equal degrees, your other mask does not",
                           "strict=True compares with >, strict=False with >="),
        "strict ignored, >=": (torch.stack([ge, ge, ge]), "with strict=True your mask still links equal degrees: the output of sub-pixel d would see sub-pixel d itself",
                               "strict=True compares with >, strict=False with >="),
        "strict ignored, >": (torch.stack([gt, gt, gt]), "with strict=False your mask leaves out equal degrees: a hidden unit of degree m would not see sub-pixel m",
                              "strict=True compares with >, strict=False with >="),
        "default strict": (torch.stack([gt, ge, gt]), "called without `strict`, your mask is the strict one: strict must default to False",
                           "give the argument its default: strict=False"),
        "reversed": (torch.stack([le, le, lt]), "your inequality is reversed: a unit links to inputs of higher degree, the future", rule),
        "reversed and swapped": (torch.stack([lt, lt, le]), "your inequality is reversed: a unit links to inputs of higher degree, the future", rule),
        "transposed": (torch.stack([ge.mT, ge.mT, gt.mT]) if square else None, "your mask has rows and columns swapped",
                       "rows are the output units, columns the input units, like the weight of nn.Linear: out_degrees[:, None]"),
        "all ones": (torch.ones(3, *ge.shape), "your mask links every unit to every input", rule),
    }  # fmt: skip


def _broadcast_hint(message, line):
    """The hint for an error of mask_from_degrees: degrees compared elementwise fail on sizes that differ."""
    if "must match the size" in message:
        return "compare every output degree with every input degree: out_degrees[:, None] against in_degrees[None, :]"
    return None


def _masks_of(mask_from_degrees, out_degrees, in_degrees, what):
    """The learner's three masks (3, out, in), strict left out, False and True, as floats; a wrong type,
    shape or dtype, or a change to the degree tensors, fails here."""
    shape, swapped = (len(out_degrees), len(in_degrees)), (len(in_degrees), len(out_degrees))
    named = {swapped: ("your mask has shape (in, out): rows and columns are swapped",
                       "rows are the output units, columns the input units, like the weight of nn.Linear")}  # fmt: skip
    named.pop(shape, None)
    broadcast = "compare every output degree with every input degree: out_degrees[:, None] against in_degrees[None, :]"
    masks = []
    for kwargs in ({}, {"strict": False}, {"strict": True}):
        given = out_degrees.clone(), in_degrees.clone()
        got = call(mask_from_degrees, *given, hint=_broadcast_hint, context=f"on {what}", **kwargs)
        if not (torch.equal(given[0], out_degrees) and torch.equal(given[1], in_degrees)):
            fail("mask_from_degrees changed its input tensors in place",
                 "build new tensors (out_degrees[:, None]) instead of in-place operations (unsqueeze_)")  # fmt: skip
        got = tensor_rule(got, "mask_from_degrees", shape, "return a torch tensor of ones and zeros",
                          shape_hint=broadcast, shapes=named, prefix=f"{what}: ")  # fmt: skip
        if not got.is_floating_point():
            fail(f"mask_from_degrees returned a {got.dtype} tensor, not a float one",
                 "the mask multiplies a float weight: return ones and zeros as floats (.float())")  # fmt: skip
        masks.append(got.double())
    return torch.stack(masks)


def _made_dependencies(mask_from_degrees, dims, units, g):
    """(D, D) bool: does output d of a small MADE (masks from the learner's function, random float64 weights,
    tanh units) depend on input k, by its Jacobian; and what a MADE must do, given its input degrees."""
    d_in = torch.randperm(dims, generator=g) + 1  # any order of the sub-pixels works
    degrees = [d_in] + [hidden_degrees(n, dims)[torch.randperm(n, generator=g)] for n in units]
    masks = [call(mask_from_degrees, d_out, d_prev, context="on the degrees of a MADE")
             for d_prev, d_out in zip(degrees, degrees[1:])]  # fmt: skip
    masks.append(call(mask_from_degrees, d_in, degrees[-1], strict=True, context="on the degrees of a MADE"))
    weights = [torch.randn(m.shape, generator=g, dtype=torch.float64) * m.double() for m in masks]

    def made(x):
        for w in weights[:-1]:
            x = torch.tanh(w @ x + 0.1)
        return weights[-1] @ x

    jac = torch.autograd.functional.jacobian(made, torch.randn(dims, generator=g, dtype=torch.float64))
    return jac != 0, d_in[:, None] > d_in[None, :]


MASK_CASES = [(6, 9), (8, 5), (7, 7), (1, 4), (5, 1), (1, 1)]  # (out, in)


@isolated
@no_delegation("course_lib.made.mask_from_degrees")
def check_mask_from_degrees(mask_from_degrees):
    """Task 2: `mask_from_degrees(out_degrees, in_degrees, strict=False)` gives the (out, in) float mask of
    MADE's rule (>=, strict >), and a MADE built from it is autoregressive and sees each sub-pixel's past."""
    g = fresh_generator()
    for n_out, n_in in MASK_CASES:
        what = f"{n_out} output and {n_in} input degrees"
        out_d, in_d = torch.randint(1, 6, (n_out,), generator=g), torch.randint(1, 6, (n_in,), generator=g)
        out_d[0], in_d[-1] = in_d[0], out_d[-1]  # equal degrees in every case: where >= and > differ
        got = _masks_of(mask_from_degrees, out_d, in_d, what)
        ref = torch.stack([reference_mask(out_d, in_d), reference_mask(out_d, in_d), reference_mask(out_d, in_d, True)])
        if torch.equal(got, ref.double()):
            continue
        first_match(got, _mask_mistakes(out_d, in_d), prefix=f"{what}: ", reference=ref)
        fail(f"{what}: your mask differs from the reference",
             "1 where out_degree >= in_degree (strict=True: >), else 0; rows are the output units")  # fmt: skip
    for dims, units in [(6, (8, 5)), (10, (12, 9, 14))]:
        dep, allowed = _made_dependencies(mask_from_degrees, dims, units, g)
        if (dep & ~allowed).any():
            fail(f"a MADE with {dims} inputs built from your masks lets an output depend on its own sub-pixel or a later one",
                 "hidden layers: out_degree >= in_degree; the output layer (strict=True): out_degree > in_degree")  # fmt: skip
        if (allowed & ~dep).any():
            fail(f"a MADE with {dims} inputs built from your masks cuts an output off from part of its past",
                 "a unit of degree m must see every input of degree up to m: out_degree >= in_degree")  # fmt: skip
    return passed("mask_from_degrees follows MADE's rule (>=, strict >) for any sizes, and MADEs built from your "
                  "masks see exactly the past of every sub-pixel, by Jacobian")  # fmt: skip


# -- tasks 3 and 4: a PixelTransformer that uses the learner's function ----------------------------------------------------------------------
TRANSFORMERS = [((1, 3, 4), 2), ((3, 2, 2), 4), ((1, 1, 1), 2)]  # (image shape, levels): 12, 12 and 1 tokens


def _transformer_dependencies(name, **patch):
    """For each small `PixelTransformer` (random weights, float64) with `course_lib.attention`'s functions
    replaced by `patch` for the moment: (what, (D, D) bool Jacobian dependencies of the outputs on the
    inputs in raster-then-channel order, finite logits?). The learner's errors become verdicts."""
    found = []
    for shape, levels in TRANSFORMERS:
        what = f"a PixelTransformer for {'x'.join(map(str, shape))} images"
        model = PixelTransformer(shape, levels=levels, dim=8, heads=2, layers=2).double().eval()
        c, h, w = shape
        d = c * h * w
        x = torch.rand(1, c, h, w, dtype=torch.float64) * (levels - 1)

        def logits(inp, model=model, c=c, h=h, w=w):
            return model(inp).reshape(-1, c, h, w)  # (K', C, H, W)

        try:
            with patched(course_lib.attention, **patch):
                finite = bool(torch.isfinite(logits(x)).all())
                jac = torch.autograd.functional.jacobian(logits, x)  # (K', C, H, W, 1, C, H, W)
        except CheckFailed:
            raise
        except Exception as error:  # the learner's function, run inside the model
            explain(error, name, context=f"inside {what}")
        jac = jac.abs().sum(0)[:, :, :, 0].permute(1, 2, 0, 4, 5, 3).reshape(d, d)  # raster-then-channel order
        found.append((what, jac != 0, finite))
    return found


def _transformer_verdicts(name, **patch):
    """Fail unless every small transformer with the learner's function sees exactly the past of each output."""
    for what, dep, finite in _transformer_dependencies(name, **patch):
        past = torch.ones(dep.shape, dtype=torch.bool).tril(-1)
        if not finite:
            fail(f"{what} with your {name} gives logits that are NaN or inf",
                 "every query must keep at least one allowed key: itself")  # fmt: skip
        if (dep & ~past).any():
            fail(f"{what} with your {name} lets an output depend on its own sub-pixel or a later one",
                 "token t may read tokens 0..t and nothing after them")  # fmt: skip
        if (past & ~dep).any():
            fail(f"{what} with your {name} cuts an output off from part of its past",
                 "token t may read tokens 0..t, itself included: it carries the previous sub-pixel")  # fmt: skip


# -- task 3 ------------------------------------------------------------------------------------------------------------------------------------------------
def reference_causal_mask(tokens):
    """(T, T) bool, True where query t may not read key s: s > t."""
    return torch.ones(tokens, tokens, dtype=torch.bool).triu(1)


def _causal_mistakes(tokens):
    ones = torch.ones(tokens, tokens, dtype=torch.bool)
    after = "forbid exactly the keys after the query: column s > row t"
    return {
        "itself forbidden": (ones.triu(0), "your mask forbids each token to read itself: token t carries sub-pixel t - 1, so its prediction would lose the previous sub-pixel", after),
        "inverted": (ones.tril(0), "your mask is True where attention is allowed; it must be True where it is forbidden", "invert it: True for the keys after the query"),
        "transposed": (ones.tril(-1), "your mask forbids the keys before each query and allows those after it (rows and columns swapped)",
                       "row t is the query, column s the key: forbid s > t"),
        "next token let through": (ones.triu(2), "your mask lets each token read the next token too", after),
        "nothing forbidden": (~ones, "your mask forbids nothing: every token would read the future", after),
        "everything forbidden": (ones, "your mask forbids every key", after),
        "only itself forbidden": (torch.eye(tokens, dtype=torch.bool), "your mask forbids only the token itself", after),
    }  # fmt: skip


def _causal_dtype(got, tokens, what):
    """Fail when the mask is not bool: an additive float mask (0 and -inf) or ones and zeros get their own messages."""
    if got.dtype == torch.bool:
        return
    ref = reference_causal_mask(tokens)
    if got.is_floating_point() and torch.equal(torch.isneginf(got), ref) and (got[~ref] == 0).all():
        fail(f"{what}: your mask is additive (0 and -inf, as nn.Transformer uses); here it is bool, True where forbidden",
             "return the comparison itself, which is a bool tensor")  # fmt: skip
    fail(f"causal_mask returned a {got.dtype} tensor, not a bool one",
         "masked_fill needs a bool mask: a comparison of positions gives one, or call .bool()")  # fmt: skip


@isolated
@no_delegation("course_lib.attention.causal_mask")
def check_causal_mask(causal_mask):
    """Task 3: `causal_mask(tokens)` gives the (T, T) bool mask, True where key s comes after query t, and a
    PixelTransformer whose attention uses it sees exactly the past of every sub-pixel."""
    for tokens in (5, 1, 2, 12):
        what = f"{tokens} token{'s' * (tokens > 1)}"
        ref = reference_causal_mask(tokens)
        got = tensor_rule(call(causal_mask, tokens, context=f"for {what}"), "causal_mask", (tokens, tokens),
                          "return a (T, T) bool tensor", prefix=f"{what}: ")  # fmt: skip
        _causal_dtype(got, tokens, what)
        if torch.equal(got, ref):
            continue
        first_match(got, _causal_mistakes(tokens), "float64", prefix=f"{what}: ", reference=ref)
        fail(f"{what}: your mask differs from the reference", "True exactly where the key s comes after the query t")

    def library_signature(tokens, device=None):  # how CausalSelfAttention calls it
        mask = causal_mask(tokens)
        return mask if device is None else mask.to(device)

    _transformer_verdicts(getattr(causal_mask, "__name__", "causal_mask"), causal_mask=library_signature)
    return passed("causal_mask forbids exactly the future for 1 to 12 tokens, and PixelTransformers with your mask "
                  "see exactly the past of every sub-pixel, by Jacobian")  # fmt: skip


# -- task 4 ------------------------------------------------------------------------------------------------------------------------------------------------
def reference_attend(q, k, v, mask=None, *, divide="sqrt dh", axis=-1, fill=float("-inf"), after=False, log=False):
    """softmax(q k^T / sqrt(dh)) v in float64, forbidden keys at -inf; the keywords plant mistakes."""
    q, k, v = q.double(), k.double(), v.double()
    dh, tq, tk = q.shape[-1], q.shape[-2], k.shape[-2]
    lead = q.shape[:-2]
    scale = {"sqrt dh": math.sqrt(dh), "none": 1.0, "dh": dh, "times": 1 / math.sqrt(dh), "sqrt Tk": math.sqrt(tk),
             "sqrt Tq": math.sqrt(tq), "sqrt heads * dh": math.sqrt(lead[-1] * dh) if lead else None,
             "sqrt dim 0": math.sqrt(q.shape[0]), "sqrt dim 1": math.sqrt(q.shape[1])}[divide]  # fmt: skip
    scores = q @ k.transpose(-2, -1) / scale
    if mask is not None and not after:
        scores = scores.masked_fill(mask, fill)
    weights = scores.log_softmax(axis) if log else scores.softmax(axis)
    if mask is not None and after:
        weights = weights.masked_fill(mask, 0.0)
    return weights @ v


def _attend_mistakes(q, k, v, mask):
    scaled = "divide q k^T by sqrt(dh), dh = q.shape[-1], the size of one head's vectors"
    before = "fill the forbidden scores with -inf (masked_fill) before the softmax"
    masked = None if mask is None else {
        "mask ignored": (reference_attend(q, k, v), "the mask is ignored: forbidden keys still get weight", before),
        "fill 0": (reference_attend(q, k, v, mask, fill=0.0), "forbidden scores are set to 0, not -inf: forbidden keys still get weight", before),
        "after softmax": (reference_attend(q, k, v, mask, after=True),
                          "you set the forbidden weights to 0 after the softmax: the remaining weights no longer sum to 1", before),
        "inverted": (reference_attend(q, k, v, ~mask), "your attention reads the forbidden keys and leaves out the allowed ones (mask inverted)",
                     "mask True means forbidden: masked_fill(mask, -inf)"),
        "transposed": (reference_attend(q, k, v, mask.mT) if mask.shape[0] == mask.shape[1] else None,
                       "your mask is applied transposed", "mask[t, s] is True when query t may not read key s"),
    }  # fmt: skip
    return {
        "no scaling": (reference_attend(q, k, v, mask, divide="none"), "your scores are not scaled", scaled),
        "divided by dh": (reference_attend(q, k, v, mask, divide="dh"), "your scores are divided by dh, not by its square root", scaled),
        "multiplied": (reference_attend(q, k, v, mask, divide="times"), "your scores are multiplied by sqrt(dh) instead of divided by it", scaled),
        "sqrt Tk": (reference_attend(q, k, v, mask, divide="sqrt Tk"), "your scores are scaled by the number of tokens, not by the size of the vectors", scaled),
        "sqrt Tq": (reference_attend(q, k, v, mask, divide="sqrt Tq"), "your scores are scaled by the number of tokens, not by the size of the vectors", scaled),
        "heads * dh": (reference_attend(q, k, v, mask, divide="sqrt heads * dh") if q.dim() > 2 else None,
                       "your scores are scaled by the size of all heads together (heads * dh), not by one head's dh", scaled),
        "sqrt dim 0": (reference_attend(q, k, v, mask, divide="sqrt dim 0"),
                       "your scores are scaled by the size of a leading dimension, not by the size of the vectors", scaled),
        "sqrt dim 1": (reference_attend(q, k, v, mask, divide="sqrt dim 1"),
                       "your scores are scaled by the size of a leading dimension, not by the size of the vectors", scaled),
        "softmax over a leading dim": (reference_attend(q, k, v, mask, axis=0) if q.dim() > 2 else None,
                                       "your softmax runs over a leading dimension (batch or heads), not over the keys", "softmax over the last dimension, dim=-1"),
        "softmax over the second dim": (reference_attend(q, k, v, mask, axis=1) if q.dim() > 3 else None,
                                        "your softmax runs over a leading dimension (batch or heads), not over the keys", "softmax over the last dimension, dim=-1"),
        "softmax over queries": (reference_attend(q, k, v, mask, axis=-2),
                                 "your softmax runs over the queries: each query's weights must sum to 1 over the keys", "softmax over the last dimension, dim=-1"),
        "log_softmax": (reference_attend(q, k, v, mask, log=True), "your weights are log-probabilities (log_softmax)", "the weights are softmax(scores, dim=-1)"),
        **(masked or {}),
    }  # fmt: skip


def _attend_hint_masked(message, line):
    """The hint for an error of attend: a matrix product of the wrong shapes."""
    if "batch2" in message or "cannot be multiplied" in message or "must match the size" in message:
        return "the scores are q @ k.transpose(-2, -1), (..., Tq, Tk); the output is weights @ v, (..., Tq, dh)"
    return None


def _attend_hint(message, line):
    """The hint for an error of attend called without a mask."""
    if "NoneType" in message:
        return "with mask=None every key is allowed: apply the mask only when one is given"
    return _attend_hint_masked(message, line)


ATTENTION = [  # (what, leading dimensions, queries, keys, head size, mask: None, "causal" or "random")
    ("no mask, batch and heads (2, 3)", (2, 3), 5, 5, 8, None),
    ("a random mask, 7 tokens", (2,), 7, 7, 4, "random"),
    ("the causal mask, batch and heads (2, 2)", (2, 2), 6, 6, 3, "causal"),
    ("3 queries and 5 keys, a random mask", (4,), 3, 5, 6, "random"),
    ("one token, the causal mask", (2,), 1, 1, 5, "causal"),
    ("2-D inputs, a random mask", (), 4, 4, 2, "random"),
    ("one query and 6 keys, no mask", (3,), 1, 6, 4, None),
]


def _attend_case(g, lead, tq, tk, dh, kind):
    q, k, v = (torch.randn(*lead, t, dh, generator=g) * 1.5 for t in (tq, tk, tk))
    if kind is None:
        return q, k, v, None
    if kind == "causal":
        return q, k, v, torch.ones(tq, tk, dtype=torch.bool).triu(1)
    mask = torch.rand(tq, tk, generator=g) < 0.5
    rows = torch.arange(tq)
    kept = rows if tq == tk else torch.randint(0, tk, (tq,), generator=g)  # square: the diagonal, as in a causal mask
    mask[rows, kept] = False  # every query keeps a key, and forbids another: the mask inverted stays finite
    mask[rows, (kept + torch.randint(1, tk, (tq,), generator=g)) % tk] = True
    return q, k, v, mask


@isolated
@no_delegation("course_lib.attention.attend", "torch.nn.functional.scaled_dot_product_attention")
def check_attend(attend):
    """Task 4: `attend(q, k, v, mask=None)` gives softmax(q k^T / sqrt(dh)) v with the forbidden keys left
    out, for any leading dimensions, and a PixelTransformer with it sees exactly the past of every sub-pixel."""
    g = fresh_generator()
    for what, lead, tq, tk, dh, kind in ATTENTION:
        q, k, v, mask = _attend_case(g, lead, tq, tk, dh, kind)
        given = [q.clone(), k.clone(), v.clone()] + ([] if mask is None else [mask.clone()])
        got = call(attend, *given, hint=_attend_hint if mask is None else _attend_hint_masked, context=f"on {what}")
        if not all(torch.equal(a, b) for a, b in zip(given, (q, k, v, mask))):
            fail(f"{what}: attend changed its input tensors in place",
                 "build new tensors (q / scale, scores.masked_fill) instead of in-place operations (/=, masked_fill_ on q)")  # fmt: skip
        named = {
            (*lead, tq, tk): (
                "you returned the attention weights, not the output",
                "return the weighted average of the values: weights @ v",
            )
        }
        finite = ("attend returned values that are not finite (NaN or inf)",
                  "every query here keeps an allowed key; mask * -inf is NaN where the mask is 0: use masked_fill(mask, float('-inf'))")  # fmt: skip
        got = tensor_rule(got, "attend", (*lead, tq, dh), "return a torch tensor (..., Tq, dh)", shapes=named,
                          finite=finite, prefix=f"{what}: ")  # fmt: skip
        ref = reference_attend(q, k, v, mask)
        if close(got, ref, "float32"):
            continue
        first_match(got, _attend_mistakes(q, k, v, mask), prefix=f"{what}: ", reference=ref)
        fail(f"{what}: your attention differs from the reference",
             "softmax over the keys of q k^T / sqrt(dh), forbidden scores at -inf, then weights @ v")  # fmt: skip
    _transformer_verdicts(getattr(attend, "__name__", "attend"), attend=attend)
    return passed("attend matches scaled dot-product attention with and without masks, from 1 to 7 tokens, and "
                  "PixelTransformers with your attention see exactly the past of every sub-pixel, by Jacobian")  # fmt: skip
