"""Checks for lesson 02 (masked convolutions): masks A and B with R -> G -> B channel groups, a causal
`MaskedConv2d`, a receptive-field map from gradients, and a Jacobian causality test.

Each check builds fresh random cases, compares with the reference behaviour of `course_lib.masks` and
`course_lib.causality`, recognises the classic bugs (A/B swapped, centre pixel wrongly included or
excluded, channel order ignored or reversed, a mask applied only once, ...) by what they would produce,
and prints one verdict line; it raises `CheckFailed` on failure.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from course_lib.causality import receptive_field
from course_lib.masks import MaskedConv2d as _RefConv
from course_lib.masks import raster_mask, vertical_mask

from .helpers import fail, fresh_generator, isolated, learner_call, no_delegation, passed


# ---------------------------------------------------------------------------------------------------
# task 1: make_mask(kernel_size, mask_type, in_channels, out_channels, data_channels)
def _groups(n, data_channels, rule="contiguous"):
    idx = torch.arange(n)
    return idx % data_channels if rule == "interleaved" else idx * data_channels // n


def _variant(k, mask_type, cin, cout, dc, centre="ok", groups="contiguous", spatial="ok"):
    """A mask built with one deliberate mistake, to recognise the learner's."""
    c = k // 2
    m = torch.zeros(cout, cin, k, k)
    if spatial == "flipped":
        m[:, :, c + 1 :, :] = 1
        m[:, :, c, c + 1 :] = 1
    else:
        m[:, :, :c, :] = 1
        m[:, :, c, :c] = 1
        if spatial == "right_of_centre":
            m[:, :, c, c + 1 :] = 1
    g_out, g_in = _groups(cout, dc, groups)[:, None], _groups(cin, dc, groups)[None, :]
    a_rule = {
        "ok": g_out > g_in,
        "reversed": g_out < g_in,
        "all": torch.ones_like(g_out > g_in),
        "none": torch.zeros_like(g_out > g_in),
    }
    b_rule = {
        "ok": g_out >= g_in,
        "reversed": g_out <= g_in,
        "all": torch.ones_like(g_out > g_in),
        "none": torch.zeros_like(g_out > g_in),
    }
    m[:, :, c, c] = (a_rule if mask_type == "A" else b_rule)[centre].float()
    return m


def _diagnose_mask(got, k, t, cin, cout, dc):
    other = "B" if t == "A" else "A"
    if got.shape == (cin, cout, k, k) and cin != cout:
        return (
            "in and out channels swapped: the mask's shape must be (out_channels, in_channels, k, k), "
            "like a Conv2d weight",
            "put out_channels first",
        )
    if got.shape != (cout, cin, k, k):
        return (
            f"make_mask returned shape {tuple(got.shape)}, expected {(cout, cin, k, k)}",
            "the mask has the shape of a Conv2d weight: (out_channels, in_channels, k, k)",
        )
    same = lambda m: torch.equal(got, m)  # noqa: E731
    if same(raster_mask(k, other, cin, cout, dc)):
        return (
            f"masks A and B are swapped: you built mask {other} when mask {t} was asked for",
            "mask A (first layer) hides the centre pixel's own channel; mask B (later layers) keeps it",
        )
    if same(_variant(k, t, cin, cout, dc, spatial="flipped")) or same(
        _variant(k, t, cin, cout, dc, spatial="flipped", centre="all")
    ):
        return (
            "your mask keeps the future (rows below, pixels to the right) instead of the past",
            "keep the rows above the centre and the pixels left of it in the centre row",
        )
    if same(_variant(k, t, cin, cout, dc, spatial="right_of_centre")):
        return (
            "the centre row keeps pixels right of the centre: they come later in raster order",
            "in the centre row keep only the weights left of the centre",
        )
    if t == "A" and same(_variant(k, t, cin, cout, dc, centre="all")):
        return (
            "mask A includes the centre pixel: the first layer would see the very value it must predict",
            "at the centre, mask A keeps only input channel groups strictly before the output's group",
        )
    if t == "B" and same(_variant(k, t, cin, cout, dc, centre="none")):
        return (
            "mask B excludes the centre pixel: later layers would throw away what they already know about the past",
            "at the centre, mask B keeps input groups up to and including the output's group",
        )
    if t == "A" and dc == 1 and same(_variant(k, t, cin, cout, dc, centre="all")):
        return ("mask A includes the centre pixel", "mask A hides the centre")
    if dc > 1:
        if same(raster_mask(k, t, cin, cout, 1)):
            return (
                "channel order ignored: with colour, the centre weight must follow R -> G -> B",
                f"split the channels into {dc} groups; at the centre, output group g may read input group g' "
                "only if g' < g (mask A) or g' <= g (mask B)",
            )
        if same(_variant(k, t, cin, cout, dc, centre="reversed")):
            return (
                "channel order reversed: your blue sees green and red, but red must come first",
                "an output of group g may read earlier groups (smaller g'), not later ones",
            )
        if same(_variant(k, t, cin, cout, dc, groups="interleaved")):
            return (
                "channel groups interleaved: group g must be a contiguous block of channels",
                "channel n of C belongs to group n * data_channels // C",
            )
    ref = raster_mask(k, t, cin, cout, dc)
    diff = got != ref
    c = k // 2
    regions = []
    if diff[:, :, :c].any():
        regions.append("the rows above the centre (all ones)")
    if diff[:, :, c, :c].any():
        regions.append("the centre row left of the centre (ones)")
    if diff[:, :, c, c].any():
        regions.append("the centre weight (depends on mask type and channel groups)")
    if diff[:, :, c, c + 1 :].any() or diff[:, :, c + 1 :].any():
        regions.append("the future: right of the centre and the rows below (zeros)")
    return (
        f"mask {t} (k={k}, {cin}->{cout} channels, {dc} colour group{'s' * (dc > 1)}) is wrong in "
        + "; ".join(regions),
        "compare your mask with the pictures of the lesson, printed as integers",
    )


@isolated
@no_delegation("course_lib.masks.raster_mask", "course_lib.masks.channel_groups")
def check_mask(make_mask):
    """Task 1: `make_mask(kernel_size, mask_type, in_channels, out_channels, data_channels=1)` returns the
    raster-order mask (out_channels, in_channels, k, k) of type "A" or "B" with colour channel groups."""
    g = fresh_generator()
    cases = []
    for t in ("A", "B"):
        k = int((3, 5, 7)[int(torch.randint(0, 3, (), generator=g))])
        cases.append((k, t, 1, 1, 1))
        cases.append((k, t, int(torch.randint(2, 5, (), generator=g)), int(torch.randint(2, 5, (), generator=g)), 1))
    for t in ("A", "B"):
        k = int((3, 5)[int(torch.randint(0, 2, (), generator=g))])
        cases.append((k, t, 3, 3, 3))  # data -> hidden
        cases.append(
            (
                k,
                t,
                3 * int(torch.randint(2, 4, (), generator=g)),  # hidden -> hidden
                3 * int(torch.randint(2, 4, (), generator=g)),
                3,
            )
        )
    for k, t, cin, cout, dc in cases:
        got = learner_call(make_mask, k, t, cin, cout, dc)
        if not torch.is_tensor(got):
            fail(f"make_mask returned {type(got).__name__}, not a tensor", "return a torch tensor of zeros and ones")
        got = got.detach().float()
        if got.shape == (cout, cin, k, k) and torch.equal(got, raster_mask(k, t, cin, cout, dc)):
            continue
        msg, hint = _diagnose_mask(got, k, t, cin, cout, dc)
        fail(msg, hint)
    passed(f"make_mask: masks A and B for {len(cases)} random shapes, single-channel and R -> G -> B groups")


# ---------------------------------------------------------------------------------------------------
# task 2: class MaskedConv2d(nn.Conv2d)
def _conv_with(conv, mask, x, k):
    return F.conv2d(x, conv.weight * mask, conv.bias, padding=k // 2)


def _require_mask_buffer(conv, where):
    """The mask must be a buffer: saved in state_dict() and moved by .to(device) with the layer."""
    shape = tuple(conv.weight.shape)

    def fits(t):  # the weight's shape, or one that broadcasts to it
        try:
            return t.dim() > 0 and tuple(torch.broadcast_shapes(t.shape, shape)) == shape
        except RuntimeError:
            return False

    if any(fits(b) for _, b in conv.named_buffers()):
        return
    plain = [
        name for name, v in vars(conv).items() if torch.is_tensor(v) and not isinstance(v, nn.Parameter) and fits(v)
    ]
    if plain:
        fail(
            f"the mask is a plain attribute (self.{plain[0]} = ...), not a buffer {where}: it is missing from "
            "state_dict(), so a saved model loses it, and .to(device) leaves it behind on the CPU",
            'keep it with self.register_buffer("mask", make_mask(...))',
        )
    fail(
        f"the layer has no mask buffer of the weight's shape {shape} {where}",
        'make the mask once in __init__ and keep it with self.register_buffer("mask", make_mask(...))',
    )


def _gradients(conv, x, direction, mask, k):
    """(the layer's weight and bias gradients, those of a convolution with weight * mask) after backward of
    sum(layer(x) * direction), taken before the optimiser step."""
    weight = conv.weight.detach().clone().requires_grad_(True)
    bias = conv.bias.detach().clone().requires_grad_(True) if conv.bias is not None else None
    (F.conv2d(x, weight * mask, bias, padding=k // 2) * direction).sum().backward()
    got = tuple(None if p is None or p.grad is None else p.grad.detach().clone() for p in (conv.weight, conv.bias))
    return got, (weight.grad, None if bias is None else bias.grad)


def _require_gradients(got, ref, mask, where):
    """The weight's gradient must be that of a convolution with weight * mask (zero where masked), and the
    bias must get its gradient too."""
    grad, bias_grad = got
    ref_grad, ref_bias_grad = ref
    if grad is None or not grad.abs().sum() > 0:
        fail(
            f"no gradient reaches the weight {where}: your forward pass uses a copy that is cut off from the "
            "parameter (self.weight.data, .detach(), or a tensor made in __init__), so the layer never trains",
            "multiply the parameter self.weight itself by the mask inside forward: self.weight * self.mask",
        )
    if not torch.allclose(grad, ref_grad, rtol=1e-4, atol=1e-5):
        if (grad * (1 - mask)).abs().sum() > 0:
            fail(
                f"masked weights get a gradient {where}: the optimiser will move weights the mask hides",
                "multiply the weight by the mask in forward (self.weight * self.mask), so the masked "
                "weights get a zero gradient",
            )
        fail(
            f"the weight's gradient differs from that of a convolution with weight * mask {where}",
            "forward = the usual convolution, with self.weight * self.mask as the kernel",
        )
    if ref_bias_grad is not None and (bias_grad is None or not torch.allclose(bias_grad, ref_bias_grad, atol=1e-5)):
        fail(
            f"no gradient reaches the bias {where}: forward uses a copy of it that is cut off from the parameter",
            "pass the parameter self.bias itself to the convolution (not self.bias.data)",
        )


@isolated
@no_delegation("course_lib.masks.MaskedConv2d")
def check_masked_conv(MaskedConv2d):
    """Task 2: `MaskedConv2d(in_channels, out_channels, kernel_size, mask_type, data_channels=1)`, a 'same'
    padded nn.Conv2d whose kernel is multiplied by the causal mask in every forward pass."""
    g = fresh_generator()
    cases = [
        (1, int(torch.randint(2, 6, (), generator=g)), 5, "A", 1),
        (int(torch.randint(2, 5, (), generator=g)), int(torch.randint(2, 5, (), generator=g)), 3, "B", 1),
        (3, 6, 3, "A", 3),
        (6, 9, 3, "B", 3),
    ]
    for cin, cout, k, t, dc in cases:
        with torch.random.fork_rng():  # leave the notebook's random state alone
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (), generator=g)))
            conv = learner_call(MaskedConv2d, cin, cout, k, t, dc)
        where = f"(mask {t}, {k}x{k}, {cin}->{cout} channels, {dc} colour group{'s' * (dc > 1)})"
        if not isinstance(conv, nn.Conv2d):
            fail(
                f"MaskedConv2d(...) built a {type(conv).__name__}, not an nn.Conv2d",
                "subclass nn.Conv2d so the layer keeps its weight and bias",
            )
        names = [n for n, _ in conv.named_parameters()]
        if any(n not in ("weight", "bias") for n in names):
            fail(
                f"the layer has trainable parameters besides weight and bias: {names}; the optimiser would "
                "change the mask",
                "store the mask with self.register_buffer, not as an nn.Parameter",
            )
        h, w = (int(v) for v in torch.randint(8, 11, (2,), generator=g))
        x = torch.randn(2, cin, h, w, generator=g)
        out = learner_call(conv, x)
        if not torch.is_tensor(out) or out.shape != (2, cout, h, w):
            shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
            fail(
                f"output shape {shape} for input {tuple(x.shape)}, expected {(2, cout, h, w)} {where}",
                "pad by kernel_size // 2 so every pixel gets an output ('same' padding)",
            )
        with torch.no_grad():
            ref = _conv_with(conv, raster_mask(k, t, cin, cout, dc), x, k)
            if not torch.allclose(out, ref, atol=1e-5):
                other = "B" if t == "A" else "A"
                if torch.allclose(out, F.conv2d(x, conv.weight, conv.bias, padding=k // 2), atol=1e-5):
                    fail(
                        f"the layer is not masked: it sees the present and the future {where}",
                        "multiply the weight by the mask in forward",
                    )
                if torch.allclose(out, _conv_with(conv, raster_mask(k, other, cin, cout, dc), x, k), atol=1e-5):
                    fail(
                        f"masks A and B are swapped: the layer used mask {other} {where}",
                        "mask A hides the centre pixel's own channel group, mask B keeps it",
                    )
                if dc > 1 and torch.allclose(out, _conv_with(conv, raster_mask(k, t, cin, cout, 1), x, k), atol=1e-5):
                    fail(
                        f"channel order ignored: the centre weight does not follow R -> G -> B {where}",
                        "pass data_channels on to your mask",
                    )
                fail(
                    f"the output differs from a convolution with the weight times the mask {where}",
                    "forward = the usual convolution, with self.weight * self.mask as the kernel",
                )
        # one training step: the masked weights must stay without effect
        if not conv.weight.requires_grad:
            fail("the weight is not trainable", "keep self.weight an nn.Parameter")
        opt = torch.optim.SGD(conv.parameters(), lr=1.0)
        opt.zero_grad()
        direction = torch.randn(2, cout, h, w, generator=g)
        (learner_call(conv, x) * direction).sum().backward()
        gradients = _gradients(conv, x, direction, raster_mask(k, t, cin, cout, dc), k)
        opt.step()
        with torch.no_grad():
            out2 = learner_call(conv, x)
            ref2 = _conv_with(conv, raster_mask(k, t, cin, cout, dc), x, k)
        if not torch.allclose(out2, ref2, atol=1e-4):
            fail(
                f"after one training step the layer sees masked inputs {where}: the mask was applied only once, "
                "and the optimiser brought the hidden weights back",
                "apply the mask inside forward, every time",
            )
        _require_gradients(*gradients, raster_mask(k, t, cin, cout, dc), where)
        _require_mask_buffer(conv, where)
    passed(
        f"MaskedConv2d: same-size output, masked in every forward pass (also after a training step), "
        f"masks A/B and colour groups, {len(cases)} random layers"
    )


# ---------------------------------------------------------------------------------------------------
# task 3: receptive_field_map(model, i, j, c=0)
class _Stack(nn.Module):
    """A small causal stack with smooth activations (no exact zero gradients by chance):
    one mask-A layer, then mask-B layers, then a 1x1 mask-B head. Bernoulli logits (B, C, H, W)."""

    def __init__(
        self,
        image_shape,
        channels=6,
        n_layers=2,
        k=3,
        first="A",
        reversed_colours=False,
        vertical_first=False,
        residual=False,
        skip_green_to_red=False,
        first_scale=1.0,
    ):
        super().__init__()
        c = image_shape[0]
        self.image_shape, self.levels, self.num_classes = tuple(image_shape), 2, None
        self.residual, self.skip_green_to_red = residual, skip_green_to_red
        self.first = _RefConv(c, channels, k, first, c)
        if reversed_colours:  # the colour bug: R sees G and B of its own pixel (never itself)
            self.first.mask.copy_(_variant(k, "A", c, channels, c, centre="reversed"))
        if vertical_first:  # the Gated PixelCNN bug: an unshifted vertical stack sees the current row
            self.first.mask.copy_(vertical_mask(k, c, channels, include_centre_row=True))
        self.layers = nn.ModuleList(_RefConv(channels, channels, k, "B", c) for _ in range(n_layers - 1))
        self.head = _RefConv(channels, c, 1, "B", c)
        for p in self.parameters():
            nn.init.normal_(p, std=0.5)
        with torch.no_grad():  # first_scale < 1: every gradient with respect to the input is small (never 0)
            self.first.weight.mul_(first_scale)

    def forward(self, x, labels=None):
        h = torch.tanh(self.first(x))
        for layer in self.layers:
            h = torch.tanh(layer(h))
        out = self.head(h)
        if self.skip_green_to_red:  # a skip connection that hands each pixel's green to its red output
            out = out + F.pad(x[:, 1:2], (0, 0, 0, 0, 0, x.shape[1] - 1))
        return out + x if self.residual else out


class _Leak(nn.Module):
    """A causal stack with one forbidden connection added: the logit of sub-pixel `out` = (c, i, j) also
    reads the input sub-pixel `src`, which is `out` itself or comes after it. Only the map of that one
    output shows the leak, so a test that skips its row, column or channel misses it."""

    def __init__(self, stack, out, src):
        super().__init__()
        self.stack = stack
        self.image_shape, self.levels, self.num_classes = stack.image_shape, 2, None
        self.out, self.src = tuple(out), tuple(src)
        for name, where in (("pick_out", out), ("pick_src", src)):
            pick = torch.zeros(1, *stack.image_shape)
            pick[(0, *where)] = 1.0
            self.register_buffer(name, pick)

    def forward(self, x, labels=None):
        leaked = torch.tanh((x * self.pick_src).sum((1, 2, 3), keepdim=True))  # gradient never exactly 0
        return self.stack(x) + 0.8 * leaked * self.pick_out


def _leaky(g, where, image_shape=(1, 4, 4), channels=6):
    """(description, model): a causal stack with one leak at a random place of the kind `where` names."""
    ch, h, w = image_shape

    def pick(low, high):  # an integer in [low, high]
        return int(torch.randint(low, high + 1, (), generator=g))

    # each kind of leak sits where only a test that skips that row, column or channel misses it: the first
    # and last row and column leaks are away from the corners, the next-pixel leak inside the image
    if where == "last row":
        out = (0, h - 1, pick(1, w - 2))
        src = out
    elif where == "last column":
        i = pick(1, h - 2)
        out, src = (0, i, w - 1), (0, i + 1, pick(0, w - 1))
    elif where == "first row":
        j = pick(1, w - 2)
        out, src = (0, 0, j), (0, pick(0, 1), j)
    elif where == "first column":
        i = pick(1, h - 2)
        out, src = (0, i, 0), (0, pick(i, i + 1), 0)
    elif where == "next pixel":
        i, j = pick(1, h - 2), pick(1, w - 2)
        out, src = (0, i, j), (0, i, j + 1)
    else:  # "last channel": blue sees its own value at an inner pixel
        i, j = pick(1, h - 2), pick(1, w - 2)
        out, src = (ch - 1, i, j), (ch - 1, i, j)
    model = _Leak(_fresh_stack(g, image_shape, channels=channels), out, src).eval()
    seen = (
        "its own sub-pixel" if src == out else f"the later sub-pixel (channel {src[0]}, row {src[1]}, column {src[2]})"
    )
    return f"output (channel {out[0]}, row {out[1]}, column {out[2]}) of a {ch}x{h}x{w} model sees {seen}", model


def _fresh_stack(g, *args, **kwargs):
    with torch.random.fork_rng():  # leave the notebook's random state alone
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (), generator=g)))
        return _Stack(*args, **kwargs).eval()


def _ref_field(model, i, j, c):
    return receptive_field(model, i, j, c) != 0


@isolated
@no_delegation("course_lib.causality.receptive_field", "course_lib.causality.dependency_matrix")
def check_receptive_field(receptive_field_map):
    """Task 3: `receptive_field_map(model, i, j, c=0)` returns a boolean (C, H, W) map: True where the
    logit of sub-pixel (c, i, j) has a non-zero gradient with respect to the input."""
    g = fresh_generator()
    cases = [
        ((1, 7, 7), dict(n_layers=3), (4, 2, 0)),
        ((1, 6, 6), dict(n_layers=2, first_scale=1e-4), (3, 1, 0)),  # gradients around 1e-4
        ((3, 5, 5), dict(n_layers=2), (2, 1, int(torch.randint(0, 2, (), generator=g)))),
    ]
    for shape, kw, (i, j, c) in cases:
        model = _fresh_stack(g, shape, **kw)
        with torch.random.fork_rng():  # leave the notebook's random state alone
            got = learner_call(receptive_field_map, model, i, j, c)
        ref = _ref_field(model, i, j, c)
        where = f"(output channel {c}, row {i}, column {j} of a {'x'.join(map(str, shape))} model)"
        if not torch.is_tensor(got):
            fail(
                f"receptive_field_map returned {type(got).__name__}, not a tensor",
                "return a boolean tensor of shape (C, H, W)",
            )
        got = got.detach()
        got = got if got.dtype == torch.bool else got != 0
        if got.shape == ref.shape[1:] and shape[0] == 1:
            fail(
                f"receptive_field_map returned shape {tuple(got.shape)}, expected {tuple(ref.shape)}",
                "keep the channel dimension: (C, H, W)",
            )
        if got.shape == (1, *ref.shape):
            fail(
                f"receptive_field_map returned shape {tuple(got.shape)}, expected {tuple(ref.shape)}",
                "drop the batch dimension of the gradient: (C, H, W)",
            )
        if got.shape != ref.shape:
            fail(
                f"receptive_field_map returned shape {tuple(got.shape)}, expected {tuple(ref.shape)}",
                "one entry per input sub-pixel: (C, H, W)",
            )
        if torch.equal(got, ref):
            continue
        if torch.equal(got, _ref_field(model, j, i, c)):
            fail(f"rows and columns swapped {where}", "i is the row (dimension H), j the column (dimension W)")
        if shape[0] > 1 and torch.equal(
            got, torch.stack([_ref_field(model, i, j, cc) for cc in range(shape[0])]).any(0)
        ):
            fail(
                f"you took the gradient of all channels of the output pixel, not channel {c} alone {where}",
                "select the one logit [0, c, i, j] before calling backward",
            )
        if got.all():
            fail(f"every input is marked as seen {where}", "mark only inputs whose gradient is exactly non-zero")
        future = torch.zeros_like(ref)
        future.view(shape[0], -1)[:, i * shape[2] + j :] = True
        if (got & ~ref & future).any():
            fail(
                f"your map marks the output's own pixel or later ones {where}: did you differentiate the sum "
                "of all outputs instead of the single logit?",
                "backward from the one logit [0, c, i, j]",
            )
        missing = int((ref & ~got).sum())
        if missing and not (got & ~ref).any():
            fail(
                f"your map misses {missing} inputs that the output does see {where}: their gradient is small "
                "(around 1e-4 in this model), but not zero",
                "mark grad != 0 exactly, with no threshold: any non-zero gradient means the output sees that input",
            )
        extra = int((got & ~ref).sum())
        fail(
            f"your map differs from the gradient's support {where}: {missing} seen inputs missing, "
            f"{extra} unseen inputs marked",
            "use a random float input with requires_grad=True, backward from the one logit, and mark grad != 0",
        )
    passed("receptive_field_map: the exact support of the gradient of one logit, for 1- and 3-channel models")


# ---------------------------------------------------------------------------------------------------
# task 4: is_causal(model)
@isolated
@no_delegation(
    "course_lib.causality.causality_violations",
    "course_lib.causality.dependency_matrix",
    "course_lib.causality.receptive_field",
)
def check_is_causal(is_causal):
    """Task 4: `is_causal(model)` returns True when no output depends on its own sub-pixel or a later one
    (raster order, then R -> G -> B inside a pixel), False otherwise."""
    g = fresh_generator()
    cases = [
        ("a correct single-channel stack", dict(image_shape=(1, 4, 4)), True, None),
        (
            "a correct colour stack",
            dict(image_shape=(3, 3, 3), channels=6),
            True,
            "your test flags a causal colour model: an output may depend on earlier colours of its own pixel "
            "(G on R, B on R and G)",
        ),
        (
            "mask B on the first layer",
            dict(image_shape=(1, 4, 4), first="B"),
            False,
            "your test misses an output that sees its own pixel (mask B on the first layer): "
            "'at or after' includes the pixel itself",
        ),
        (
            "a residual from the raw input",
            dict(image_shape=(1, 4, 4), residual=True),
            False,
            "your test misses a residual connection from the raw input: every output sees its own pixel",
        ),
        (
            "colour order reversed in the first mask",
            dict(image_shape=(3, 3, 3), channels=6, reversed_colours=True),
            False,
            "your test misses a colour model whose first mask reverses R -> G -> B: outputs see later "
            "colours of their own pixel",
        ),
        (
            "a skip connection from green to red",
            dict(image_shape=(3, 3, 3), channels=6, skip_green_to_red=True),
            False,
            "your test misses leaks between the colour channels of one pixel: R must not see G or B of its "
            "own pixel, G must not see B",
        ),
        (
            "an unshifted vertical stack",
            dict(image_shape=(1, 4, 4), vertical_first=True),
            False,
            "your test misses an unshifted vertical stack, which sees pixels right of the output in its own row",
        ),
    ]
    cases = [(name, lambda kw=kw: _fresh_stack(g, **kw), causal, msg) for name, kw, causal, msg in cases]
    n_whole, leaks = len(cases), {}
    for where, advice in (
        ("next pixel", "the pixel right after the output in raster order is already forbidden"),
        ("last channel", "check every channel of every output, and its own channel at its own pixel"),
        ("last row", "check every row, the last one included"),
        ("last column", "check every column, the last one included"),
        ("first row", "check every row, the first one included"),
        ("first column", "check every column, the first one included"),
    ):
        shape = (3, 3, 3) if where == "last channel" else (1, int(torch.randint(4, 6, (), generator=g)), 4)
        what, model = _leaky(g, where, shape)
        leaks[len(cases)] = what
        cases.append(
            (
                f"a leak in the {where}",
                lambda model=model: model,
                False,
                f"your test misses a single leak in the {where}: {what}. {advice[0].upper() + advice[1:]}",
            )
        )
    # every model is tested; a false alarm is reported first, then a missed leak of the whole-model kinds, then
    # the single leaks: one by its own message, several together (the test skips some outputs)
    wrong = []
    for n, (_, build, causal, _) in enumerate(cases):
        model = build()
        with torch.random.fork_rng():  # leave the notebook's random state alone
            got = learner_call(is_causal, model)
        if not isinstance(got, (bool, torch.Tensor)) or (torch.is_tensor(got) and got.numel() != 1):
            fail(f"is_causal returned {type(got).__name__}, not True or False", "return a bool")
        if bool(got) != causal:
            wrong.append(n)
    hint = "an output's map must be empty at its own sub-pixel and at every later one"
    leaky = [n for n, case in enumerate(cases) if not case[2]]
    if leaky and set(leaky) <= set(wrong) and not any(cases[n][2] for n in wrong):
        fail(
            f"your test misses every one of the {len(leaky)} leaky models: it says True for every model. Does "
            "it examine any output at all?",
            "loop over every output (c, i, j) of model.image_shape and return False as soon as one map shows "
            "its own sub-pixel or a later one",
        )
    for n in sorted(wrong, key=lambda n: (cases[n][2] is False, n)):
        name, _, causal, msg = cases[n]
        if causal:
            fail(
                msg
                or f"your test flags {name}, which is causal: an output may depend on every sub-pixel "
                "strictly before it (rows above, pixels to the left)",
                "forbidden inputs are those at or after the output in raster order, and at the output's "
                "own pixel, its own channel or a later one",
            )
        if n < n_whole or len(wrong) == 1:
            fail(msg, hint)
        singles = [cases[k][0].removeprefix("a leak in the ") for k in wrong]
        places = "; ".join(leaks[k] for k in wrong)
        fail(
            f"your test misses single leaks in {len(wrong)} places ({', '.join(singles)}): {places}. It never "
            "examines some of the outputs",
            "loop over every output (c, i, j): every row, every column and every channel, the first and the last "
            "included, and check each one's map",
        )
    passed(
        f"is_causal: right on all {len(cases)} models (correct 1- and 3-channel stacks; mask B first, a raw "
        "residual, colour order reversed, green leaking into red, an unshifted vertical stack; single leaks in "
        "the first and last row and column, at the next pixel and in the last channel)"
    )
