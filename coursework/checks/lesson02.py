"""Checks for lesson 02 (masked convolutions): masks A and B with R -> G -> B channel groups, a causal
`MaskedConv2d`, a receptive-field map from gradients, and a Jacobian causality test. Each compares with
`course_lib.masks` / `course_lib.causality` on fresh cases and edge cases (channel counts not multiples of the
colour groups, 1x1 and 9x9 kernels, batch 1, images not square), and names a wrong answer by the plausible
mistake (a variant of the reference) that reproduces it."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from course_lib.causality import receptive_field
from course_lib.masks import MaskedConv2d as _RefConv
from course_lib.masks import raster_mask, vertical_mask

from .helpers import call, close, fail, fresh_generator, invoke, isolated, no_delegation, passed, tensor_rule

OTHER = {"A": "B", "B": "A"}  # the other mask type


def _attempt(fn, *args, **kwargs):
    """`fn(*args, **kwargs)`, or None when it raises (a variant that does not apply, a learner's crashing answer)."""
    try:
        return fn(*args, **kwargs)
    except Exception:
        return None


def _draw(g, low, high):
    """A random integer in [low, high] from the generator `g`."""
    return int(torch.randint(low, high + 1, (), generator=g))


# -- task 1: make_mask(kernel_size, mask_type, in_channels, out_channels, data_channels) -----------------------
GROUPINGS = {  # how the n channels of one side are split into dc colour groups
    "contiguous": lambda n, dc: torch.arange(n) * dc // n,  # the definition
    "interleaved": lambda n, dc: torch.arange(n) % dc,
    "blocks of n // dc": lambda n, dc: torch.arange(n) // (n // dc),  # right only when dc divides n
    "blocks of ceil(n / dc)": lambda n, dc: torch.arange(n) // -(-n // dc),  # idem
    "one": lambda n, dc: torch.zeros(n, dtype=torch.long),  # colour ignored: a single group
}


def _variant(k, t, cin, cout, dc, swap=False, centre="rule", only="AB", groups="contiguous", spatial="past"):
    """The mask (cout, cin, k, k) of type `t` built with the given mistakes; the defaults give the reference.
    swap: the other type; centre (for the types in `only`): "rule" (the group order), "reversed", "all" or
    "none"; spatial: "past" (rows above, left of the centre), "past and right" or "future" (below, right)."""
    c, t = k // 2, OTHER[t] if swap else t
    m = torch.zeros(cout, cin, k, k)
    m[:, :, :c] = 1
    m[:, :, c, : k if spatial == "past and right" else c] = 1  # (the centre weight is set below)
    m = m.flip(2, 3) if spatial == "future" else m
    g_out, g_in = GROUPINGS[groups](cout, dc)[:, None], GROUPINGS[groups](cin, dc)[None, :]
    before = g_out < g_in if centre == "reversed" else g_out > g_in
    fixed = {"all": 1.0, "none": 0.0}.get(centre) if t in only else None
    m[:, :, c, c] = before | ((g_out == g_in) & (t == "B")) if fixed is None else fixed
    return m


MASK_MISTAKES = {  # message: (the mistakes behind it, as options of _variant; hint); {t}, {other}, {dc}: the case's
    "masks A and B are swapped: you built mask {other} when mask {t} was asked for": (
        [dict(swap=True)],
        "mask A (first layer) hides the centre pixel's own channel; mask B (later layers) keeps it",
    ),
    "your mask keeps the future (rows below, pixels to the right) instead of the past": (
        [dict(spatial="future"), dict(spatial="future", centre="all")],
        "keep the rows above the centre and the pixels left of it in the centre row",
    ),
    "the centre row keeps pixels right of the centre: they come later in raster order": (
        [dict(spatial="past and right")],
        "in the centre row keep only the weights left of the centre",
    ),
    "channel order ignored: with colour, the centre weight must follow R -> G -> B": (
        [dict(groups="one")],
        "split the channels into {dc} groups; at the centre, output group g may read input group g' only if g' < g "
        "(mask A) or g' <= g (mask B)",
    ),
    "channel order reversed: your blue sees green and red, but red must come first": (
        [dict(centre="reversed")],
        "an output of group g may read earlier groups (smaller g'), not later ones",
    ),
    "channel groups interleaved: group g must be a contiguous block of channels": (
        [dict(groups="interleaved")],
        "channel n of C belongs to group n * data_channels // C",
    ),
    "your colour groups are right only when the channel count is a multiple of data_channels": (
        [dict(groups="blocks of n // dc"), dict(groups="blocks of ceil(n / dc)")],
        "channel n of C belongs to group n * data_channels // C, for any C: 4 channels in 3 groups are R, R, G, B",
    ),
    "mask A includes the centre pixel: the first layer would see the very value it must predict": (
        [dict(centre="all", only="A"), dict(centre="all")],
        "at the centre, mask A keeps only input channel groups strictly before the output's group",
    ),
    "mask B excludes the centre pixel: later layers would throw away what they already know about the past": (
        [dict(centre="none", only="B"), dict(centre="none")],
        "at the centre, mask B keeps input groups up to and including the output's group",
    ),
}


def _same(got, variant):
    """Whether `got` is a tensor with the values of `variant` (None: one that cannot be built), whatever its dtype."""
    comparable = torch.is_tensor(got) and variant is not None and got.shape == variant.shape
    return comparable and torch.equal(got.detach().float(), variant.float())


def _diagnose_mask(make_mask, cases, n, got):
    """Fail for case `n`, where `got` is wrong, naming a variant that reproduces `make_mask` on every case, else
    one that reproduces `got`, else where the mask differs."""
    k, t, cin, cout, dc = cases[n]
    answers = [_attempt(invoke, make_mask, *case) for case in cases]
    names = {"t": t, "other": OTHER[t], "dc": dc}
    for message, (mistakes, hint) in MASK_MISTAKES.items():  # the same mistake on every case
        for found in ([_attempt(_variant, *case, **options) for case in cases] for options in mistakes):
            if _same(got, found[n]) and all(v is None or _same(a, v) for a, v in zip(answers, found)):
                fail(message.format(**names), hint.format(**names))
    for message, (mistakes, hint) in MASK_MISTAKES.items():  # on this case
        if any(_same(got, _attempt(_variant, *cases[n], **options)) for options in mistakes):
            fail(message.format(**names), hint.format(**names))
    diff, c = got != raster_mask(k, t, cin, cout, dc), k // 2
    regions = {
        "the rows above the centre (all ones)": diff[:, :, :c].any(),
        "the centre row left of the centre (ones)": diff[:, :, c, :c].any(),
        "the centre weight (depends on mask type and channel groups)": diff[:, :, c, c].any(),
        "the future: right of the centre and the rows below (zeros)": diff[:, :, c, c + 1 :].any()
        | diff[:, :, c + 1 :].any(),
    }
    fail(
        f"mask {t} (k={k}, {cin}->{cout} channels, {dc} colour group{'s' * (dc > 1)}) is wrong in "
        + "; ".join(region for region, wrong in regions.items() if wrong),
        "compare your mask with the pictures of the lesson, printed as integers",
    )


SWAPPED = (
    "in and out channels swapped: the mask's shape must be (out_channels, in_channels, k, k), like a Conv2d weight",
    "put out_channels first",
)
MASK_SHAPE = dict(
    hint="return a torch tensor of zeros and ones",
    shape_hint="the mask has the shape of a Conv2d weight: (out_channels, in_channels, k, k)",
)
EDGE_MASKS = [  # (k, type, in, out, data channels): any odd k, any channel count with one channel per group or more
    (9, "A", 4, 5, 3),  # channel counts that are not multiples of the colour groups, a 9x9 kernel
    (1, "B", 7, 4, 3),  # a 1x1 kernel (the output head's): the centre weight alone
    (5, "B", 5, 3, 2),  # two colour groups
    (3, "A", 2, 7, 2),
]


def _mask_cases(g):
    cases = []
    for t in ("A", "B"):
        k, (a, b) = (3, 5, 7)[_draw(g, 0, 2)], (torch.randperm(4, generator=g)[:2] + 2).tolist()  # a != b
        cases += [(k, t, 1, 1, 1), (k, t, a, b, 1)]
    for t in ("A", "B"):
        k = (3, 5)[_draw(g, 0, 1)]
        cases += [(k, t, 3, 3, 3), (k, t, 3 * _draw(g, 2, 3), 3 * _draw(g, 2, 3), 3)]  # data -> hidden -> hidden
    return cases + EDGE_MASKS


@isolated
@no_delegation("course_lib.masks.raster_mask", "course_lib.masks.channel_groups")
def check_mask(make_mask):
    """Task 1: `make_mask(kernel_size, mask_type, in_channels, out_channels, data_channels=1)` returns the
    raster-order mask (out_channels, in_channels, k, k) of type "A" or "B" with colour channel groups, for
    any channel count and odd kernel size."""
    cases = _mask_cases(fresh_generator())
    for n, (k, t, cin, cout, dc) in enumerate(cases):
        got, shapes = call(make_mask, k, t, cin, cout, dc), {(cin, cout, k, k): SWAPPED} if cin != cout else None
        got = tensor_rule(got, "make_mask", (cout, cin, k, k), **MASK_SHAPE, shapes=shapes).float()
        if not torch.equal(got, raster_mask(k, t, cin, cout, dc)):
            _diagnose_mask(make_mask, cases, n, got)
    passed(
        f"make_mask: masks A and B for {len(cases)} shapes, single-channel and R -> G -> B groups, channel counts "
        "that are not multiples of the groups, 1x1 to 9x9 kernels"
    )


# -- task 2: class MaskedConv2d(nn.Conv2d) ----------------------------------------------------------------------
def _conv_with(conv, mask, x, k):
    return F.conv2d(x, conv.weight * mask, conv.bias, padding=k // 2)


CONV_MISTAKES = {  # message: (the mask the layer used, hint); {where}, {other}: the failing case's
    "the layer is not masked: it sees the present and the future {where}": (
        lambda k, t, i, o, dc: torch.ones(o, i, k, k),
        "multiply the weight by the mask in forward",
    ),
    "masks A and B are swapped: the layer used mask {other} {where}": (
        lambda k, t, i, o, dc: raster_mask(k, OTHER[t], i, o, dc),
        "mask A hides the centre pixel's own channel group, mask B keeps it",
    ),
    "channel order ignored: the centre weight does not follow R -> G -> B {where}": (
        lambda k, t, i, o, dc: raster_mask(k, t, i, o, 1),  # (with one group: the reference, already ruled out)
        "pass data_channels on to your mask",
    ),
}


def _require_conv(conv):
    if not isinstance(conv, nn.Conv2d):
        fail(f"MaskedConv2d(...) built a {type(conv).__name__}, not an nn.Conv2d",
             "subclass nn.Conv2d so the layer keeps its weight and bias")  # fmt: skip
    names = [n for n, _ in conv.named_parameters()]
    if any(n not in ("weight", "bias") for n in names):
        fail(
            f"the layer has trainable parameters besides weight and bias: {names}; the optimiser would change the mask",
            "store the mask with self.register_buffer, not as an nn.Parameter",
        )


def _require_output(conv, x, case, where):
    """The layer's output must be that of a 'same'-padded convolution with weight * mask."""
    cin, cout, k, t, dc = case
    pad, shape = "pad by kernel_size // 2 so every pixel gets an output ('same' padding)", (len(x), cout, *x.shape[2:])
    out = tensor_rule(call(conv, x), "MaskedConv2d", shape, pad, where=f"for input {tuple(x.shape)} {where}")
    if close(out, _conv_with(conv, raster_mask(k, t, cin, cout, dc), x, k)):
        return
    for message, (mask, hint) in CONV_MISTAKES.items():
        if close(out, _conv_with(conv, mask(k, t, cin, cout, dc), x, k)):
            fail(message.format(where=where, other=OTHER[t]), hint)
    fail(f"the output differs from a convolution with the weight times the mask {where}",
         "forward = the usual convolution, with self.weight * self.mask as the kernel")  # fmt: skip


def _require_mask_buffer(conv, where):
    """The mask must be a buffer: saved in state_dict() and moved by .to(device) with the layer."""
    shape = conv.weight.shape

    def fits(t):  # a tensor of the weight's shape, or of one that broadcasts to it
        return torch.is_tensor(t) and t.dim() > 0 and _attempt(torch.broadcast_shapes, t.shape, shape) == shape

    if any(fits(b) for b in conv.buffers()):
        return
    plain = [name for name, v in vars(conv).items() if fits(v) and not isinstance(v, nn.Parameter)]
    if plain:
        fail(
            f"the mask is a plain attribute (self.{plain[0]} = ...), not a buffer {where}: it is missing from "
            "state_dict(), so a saved model loses it, and .to(device) leaves it behind on the CPU",
            'keep it with self.register_buffer("mask", make_mask(...))',
        )
    fail(f"the layer has no mask buffer of the weight's shape {tuple(shape)} {where}",
         'make the mask once in __init__ and keep it with self.register_buffer("mask", make_mask(...))')  # fmt: skip


def _require_training_step(conv, x, mask, g, where):
    """One SGD step: the weight's gradient is that of a convolution with weight * mask (zero where masked),
    the bias gets its own, and after the step the layer is still masked."""
    if not conv.weight.requires_grad:
        fail("the weight is not trainable", "keep self.weight an nn.Parameter")
    k, opt = mask.shape[-1], torch.optim.SGD(conv.parameters(), lr=1.0)  # (a new layer has no gradients yet)
    direction = torch.randn(x.shape[0], mask.shape[0], *x.shape[2:], generator=g)
    (call(conv, x) * direction).sum().backward()
    weight, bias = (None if p is None else p.detach().clone().requires_grad_(True) for p in (conv.weight, conv.bias))
    (F.conv2d(x, weight * mask, bias, padding=k // 2) * direction).sum().backward()
    grad, bias_grad = (None if p is None or p.grad is None else p.grad.clone() for p in (conv.weight, conv.bias))
    opt.step()
    if not close(call(conv, x), _conv_with(conv, mask, x, k), atol=1e-4):
        fail(
            f"after one training step the layer sees masked inputs {where}: the mask was applied only once, "
            "and the optimiser brought the hidden weights back",
            "apply the mask inside forward, every time",
        )
    if grad is None or not grad.abs().sum() > 0:
        fail(
            f"no gradient reaches the weight {where}: your forward pass uses a copy that is cut off from the "
            "parameter (self.weight.data, .detach(), or a tensor made in __init__), so the layer never trains",
            "multiply the parameter self.weight itself by the mask inside forward: self.weight * self.mask",
        )
    if not close(grad, weight.grad) and (grad * (1 - mask)).abs().sum() > 0:
        fail(
            f"masked weights get a gradient {where}: the optimiser will move weights the mask hides",
            "multiply the weight by the mask in forward (self.weight * self.mask), so the masked weights get a zero "
            "gradient",
        )
    if not close(grad, weight.grad):
        fail(f"the weight's gradient differs from that of a convolution with weight * mask {where}",
             "forward = the usual convolution, with self.weight * self.mask as the kernel")  # fmt: skip
    if bias is not None and not close(bias_grad, bias.grad):
        fail(f"no gradient reaches the bias {where}: forward uses a copy of it that is cut off from the parameter",
             "pass the parameter self.bias itself to the convolution (not self.bias.data)")  # fmt: skip


EDGE_CONVS = [  # (in, out, k, type, data channels, batch): beyond the lesson's layers
    (4, 5, 1, "A", 3, 1),  # a 1x1 layer, channel counts not multiples of the colour groups, a batch of one
    (5, 3, 7, "B", 3, 1),  # a 7x7 layer back to the 3 colours
]


@isolated
@no_delegation("course_lib.masks.MaskedConv2d")
def check_masked_conv(MaskedConv2d):
    """Task 2: `MaskedConv2d(in_channels, out_channels, kernel_size, mask_type, data_channels=1)`, a 'same'
    padded nn.Conv2d whose kernel is multiplied by the causal mask in every forward pass, a buffer."""
    g = fresh_generator()
    cases = [(1, _draw(g, 2, 5), 5, "A", 1, 2), (_draw(g, 2, 4), _draw(g, 2, 4), 3, "B", 1, 2), (3, 6, 3, "A", 3, 2)]
    for cin, cout, k, t, dc, batch in cases + [(6, 9, 3, "B", 3, 2)] + EDGE_CONVS:
        torch.manual_seed(_draw(g, 0, 2**31 - 2))  # (@isolated: the notebook's random state is restored)
        conv = call(MaskedConv2d, cin, cout, k, t, dc)
        where = f"(mask {t}, {k}x{k}, {cin}->{cout} channels, {dc} colour group{'s' * (dc > 1)})"
        _require_conv(conv)
        x = torch.randn(batch, cin, _draw(g, 8, 10), _draw(g, 8, 10), generator=g)
        _require_output(conv, x, (cin, cout, k, t, dc), where)
        _require_training_step(conv, x, raster_mask(k, t, cin, cout, dc), g, where)
        _require_mask_buffer(conv, where)
    passed(
        "MaskedConv2d: same-size output, masked in every forward pass (also after a training step), masks A/B "
        f"and colour groups, {len(cases) + 1 + len(EDGE_CONVS)} layers from 1x1 to 7x7, batches of one and two"
    )


# -- the models of tasks 3 and 4 ----------------------------------------------------------------------------
class _Stack(nn.Module):
    """A small causal stack (in eval mode) with weights drawn from `g` and smooth activations (no exact zero
    gradients by chance): one mask-A layer, then mask-B layers, then a 1x1 mask-B head; Bernoulli logits
    (B, C, H, W). `bug` breaks the whole model; `leak` = (out, src) adds one forbidden connection: the logit of
    sub-pixel `out` = (c, i, j) also reads the input sub-pixel `src`, `out` itself or a later one, so that only
    the map of that one output shows it."""

    def __init__(self, g, image_shape, channels=6, n_layers=2, k=3, first="A", first_scale=1.0, bug=None, leak=None):
        super().__init__()
        c = image_shape[0]
        self.image_shape, self.levels, self.num_classes, self.bug = tuple(image_shape), 2, None, bug
        self.first = _RefConv(c, channels, k, first, c)
        if bug == "reversed colours":  # R sees G and B of its own pixel (never itself)
            self.first.mask.copy_(_variant(k, "A", c, channels, c, centre="reversed"))
        if bug == "unshifted vertical":  # the Gated PixelCNN bug: a vertical stack that sees the current row
            self.first.mask.copy_(vertical_mask(k, c, channels, include_centre_row=True))
        self.layers = nn.ModuleList(_RefConv(channels, channels, k, "B", c) for _ in range(n_layers - 1))
        self.head = _RefConv(channels, c, 1, "B", c)
        for name, p in self.named_parameters():  # first_scale < 1: every gradient with respect to the input is small
            nn.init.normal_(p, std=0.5 * (first_scale if name == "first.weight" else 1.0), generator=g)
        self.out, self.src = leak or (None, None)
        self.register_buffer("pick", torch.zeros(2, *image_shape))  # where the leak reads and writes
        if leak:
            self.pick[(0, *self.src)] = self.pick[(1, *self.out)] = 1.0
        self.eval()

    def forward(self, x, labels=None):
        h = torch.tanh(self.first(x))
        for layer in self.layers:
            h = torch.tanh(layer(h))
        out = self.head(h)
        if self.bug == "green to red":  # a skip connection that hands each pixel's green to its red output
            out = out + F.pad(x[:, 1:2], (0, 0, 0, 0, 0, x.shape[1] - 1))
        leaked = torch.tanh((x * self.pick[0]).sum((1, 2, 3), keepdim=True))  # its gradient is never exactly 0
        return (out + x if self.bug == "residual" else out) + 0.8 * leaked * self.pick[1]


def _leaky(g, where):
    """(description, model): a causal stack with one leak at a random place of the kind `where` names, away
    from the corners, so that only a test that skips that row, column or channel misses it."""
    ch, h, w = image_shape = (3, 3, 3) if where == "last channel" else (1, 5, 4)
    i, j = _draw(g, 1, h - 2), _draw(g, 1, w - 2)
    out, src = {
        "last row": ((0, h - 1, j), (0, h - 1, j)),
        "last column": ((0, i, w - 1), (0, i + 1, _draw(g, 0, w - 1))),
        "first row": ((0, 0, j), (0, _draw(g, 0, 1), j)),
        "first column": ((0, i, 0), (0, _draw(g, i, i + 1), 0)),
        "next pixel": ((0, i, j), (0, i, j + 1)),
        "last channel": ((ch - 1, i, j), (ch - 1, i, j)),  # blue sees its own value at an inner pixel
    }[where]
    model = _Stack(g, image_shape, leak=(out, src))
    seen = "its own sub-pixel" if src == out else "the later sub-pixel (channel {}, row {}, column {})".format(*src)
    return f"output (channel {out[0]}, row {out[1]}, column {out[2]}) of a {ch}x{h}x{w} model sees {seen}", model


def _ref_field(model, i, j, c):
    return receptive_field(model, i, j, c) != 0


# -- task 3: receptive_field_map(model, i, j, c=0) ------------------------------------------------------------
def _field_rule(got, shape):
    """The learner's map as a tensor of `shape` (C, H, W), else fail; the hint names the batch dimension kept,
    or with one channel, the channel dimension dropped."""
    hints = {(1, *shape): "drop the batch dimension of the gradient: (C, H, W)"}
    if shape[0] == 1:
        hints[shape[1:]] = "keep the channel dimension: (C, H, W)"
    shapes = {s: (f"receptive_field_map returned shape {s}, expected {tuple(shape)}", h) for s, h in hints.items()}
    hint, shape_hint = "return a boolean tensor of shape (C, H, W)", "one entry per input sub-pixel: (C, H, W)"
    return tensor_rule(got, "receptive_field_map", shape, hint, shape_hint=shape_hint, shapes=shapes)


def _diagnose_field(got, model, case, where):
    """Fail with what is wrong in the map `got` (right shape, wrong values) of output `case` = (i, j, c)."""
    (i, j, c), ref = case, _ref_field(model, *case)
    channels, _, width = model.image_shape
    if _same(got, _attempt(_ref_field, model, j, i, c)):
        fail(f"rows and columns swapped {where}", "i is the row (dimension H), j the column (dimension W)")
    if channels > 1 and _same(got, torch.stack([_ref_field(model, i, j, cc) for cc in range(channels)]).any(0)):
        fail(f"you took the gradient of all channels of the output pixel, not channel {c} alone {where}",
             "select the one logit [0, c, i, j] before calling backward")  # fmt: skip
    if got.all():
        fail(f"every input is marked as seen {where}", "mark only inputs whose gradient is exactly non-zero")
    future = torch.arange(ref[0].numel()).reshape(ref.shape[1:]) >= i * width + j  # (H, W): at or after (i, j)
    if (got & ~ref & future).any():
        fail(
            f"your map marks the output's own pixel or later ones {where}: did you differentiate the sum of all "
            "outputs instead of the single logit?",
            "backward from the one logit [0, c, i, j]",
        )
    missing, extra = int((ref & ~got).sum()), int((got & ~ref).sum())
    if missing and not extra:
        fail(
            f"your map misses {missing} inputs that the output does see {where}: their gradient is small (around "
            "1e-4 in this model), but not zero",
            "mark grad != 0 exactly, with no threshold: any non-zero gradient means the output sees that input",
        )
    fail(
        f"your map differs from the gradient's support {where}: {missing} seen inputs missing, {extra} unseen "
        "inputs marked",
        "use a random float input with requires_grad=True, backward from the one logit, and mark grad != 0",
    )


@isolated
@no_delegation("course_lib.causality.receptive_field", "course_lib.causality.dependency_matrix")
def check_receptive_field(receptive_field_map):
    """Task 3: `receptive_field_map(model, i, j, c=0)` returns a boolean (C, H, W) map: True where the
    logit of sub-pixel (c, i, j) has a non-zero gradient with respect to the input."""
    g = fresh_generator()
    cases = [
        ((1, 7, 7), dict(n_layers=3), (4, 2, 0)),
        ((1, 6, 6), dict(n_layers=2, first_scale=1e-4), (3, 1, 0)),  # gradients around 1e-4
        ((3, 5, 5), dict(n_layers=2), (2, 1, _draw(g, 0, 1))),
        ((2, 4, 7), dict(n_layers=2), (2, 5, 1)),  # edge: two colour channels, wider than tall
        ((1, 7, 3), dict(n_layers=2), (5, 1, 0)),  # edge: taller than wide
    ]
    for shape, options, (i, j, c) in cases:
        model = _Stack(g, shape, **options)
        ref = _ref_field(model, i, j, c)
        got = _field_rule(call(receptive_field_map, model, i, j, c), ref.shape)
        got = got if got.dtype == torch.bool else got != 0
        if not torch.equal(got, ref):
            where = f"(output channel {c}, row {i}, column {j} of a {'x'.join(map(str, shape))} model)"
            _diagnose_field(got, model, (i, j, c), where)
    passed(
        "receptive_field_map: the exact support of the gradient of one logit, for 1-, 2- and 3-channel models, "
        "square and not"
    )


# -- task 4: is_causal(model) ---------------------------------------------------------------------------------
FALSE_ALARM = (
    "forbidden inputs are those at or after the output in raster order, and at the output's own pixel, its own "
    "channel or a later one"
)
WHOLE_MODELS = {  # what a test that labels the model wrong does: (_Stack options, whether the model is causal)
    "your test flags a correct single-channel stack, which is causal: an output may depend on every sub-pixel "
    "strictly before it (rows above, pixels to the left)": (dict(image_shape=(1, 4, 4)), True),
    "your test flags a causal colour model: an output may depend on earlier colours of its own pixel (G on R, B on R "
    "and G)": (dict(image_shape=(3, 3, 3)), True),
    "your test flags a causal model of 3 rows and 6 columns: it takes pixels before the output for later ones. The "
    "raster index of pixel (i, j) is i * width + j": (dict(image_shape=(1, 3, 6)), True),  # edge: not square
    "your test misses an output that sees its own pixel (mask B on the first layer): 'at or after' includes the pixel "
    "itself": (dict(image_shape=(1, 4, 4), first="B"), False),
    "your test misses a residual connection from the raw input: every output sees its own pixel": (
        dict(image_shape=(1, 4, 4), bug="residual"),
        False,
    ),
    "your test misses a colour model whose first mask reverses R -> G -> B: outputs see later colours of their own "
    "pixel": (dict(image_shape=(3, 3, 3), bug="reversed colours"), False),
    "your test misses leaks between the colour channels of one pixel: R must not see G or B of its own pixel, G must "
    "not see B": (dict(image_shape=(3, 3, 3), bug="green to red"), False),
    "your test misses an unshifted vertical stack, which sees pixels right of the output in its own row": (
        dict(image_shape=(1, 4, 4), bug="unshifted vertical"),
        False,
    ),
}
SINGLE_LEAKS = {  # where: the advice when a test misses a leak there
    "next pixel": "The pixel right after the output in raster order is already forbidden",
    "last channel": "Check every channel of every output, and its own channel at its own pixel",
    "last row": "Check every row, the last one included",
    "last column": "Check every column, the last one included",
    "first row": "Check every row, the first one included",
    "first column": "Check every column, the first one included",
}


def _causal_verdict(cases, wrong):
    """Fail for the models that the learner's test labelled wrong (indices into `cases`, each (single leak's
    (where, what) or None, model, causal, message)): a false alarm first, then a missed whole-model leak, then
    the missed single leaks (one by its own message, several together: the test skips some outputs)."""
    leaky = [n for n, case in enumerate(cases) if not case[2]]
    if set(leaky) <= set(wrong) and not any(cases[n][2] for n in wrong):
        fail(
            f"your test misses every one of the {len(leaky)} leaky models: it says True for every model. Does it "
            "examine any output at all?",
            "loop over every output (c, i, j) of model.image_shape and return False as soon as one map shows its "
            "own sub-pixel or a later one",
        )
    n = min(wrong, key=lambda n: (not cases[n][2], n))
    if cases[n][2] or n < len(WHOLE_MODELS) or len(wrong) == 1:
        hint = "an output's map must be empty at its own sub-pixel and at every later one"
        fail(cases[n][3], FALSE_ALARM if cases[n][2] else hint)
    singles = [cases[k][0] for k in wrong]
    fail(
        f"your test misses single leaks in {len(wrong)} places ({', '.join(s for s, _ in singles)}): "
        f"{'; '.join(what for _, what in singles)}. It never examines some of the outputs",
        "loop over every output (c, i, j): every row, every column and every channel, the first and the last "
        "included, and check each one's map",
    )


@isolated
@no_delegation(
    "course_lib.causality.causality_violations",
    "course_lib.causality.dependency_matrix",
    "course_lib.causality.receptive_field",
)
def check_is_causal(is_causal):
    """Task 4: `is_causal(model)` returns True when no output depends on its own sub-pixel or a later one
    (raster order, then R -> G -> B inside a pixel), False otherwise: on correct stacks (square or not),
    whole-model leaks and single leaks placed where only a test that skips some outputs misses them."""
    g = fresh_generator()
    cases = [(None, _Stack(g, **kw), causal, message) for message, (kw, causal) in WHOLE_MODELS.items()]
    for where, advice in SINGLE_LEAKS.items():
        what, model = _leaky(g, where)
        cases.append(((where, what), model, False, f"your test misses a single leak in the {where}: {what}. {advice}"))
    wrong = []
    for n, (_, model, causal, _) in enumerate(cases):
        got = call(is_causal, model)
        if not isinstance(got, (bool, torch.Tensor)) or (torch.is_tensor(got) and got.numel() != 1):
            fail(f"is_causal returned {type(got).__name__}, not True or False", "return a bool")
        if bool(got) != causal:
            wrong.append(n)
    if wrong:
        _causal_verdict(cases, wrong)
    passed(
        f"is_causal: right on all {len(cases)} models (correct 1- and 3-channel stacks, square and not; mask B "
        "first, a raw residual, colour order reversed, green leaking into red, an unshifted vertical stack; single "
        "leaks in the first and last row and column, at the next pixel and in the last channel)"
    )
