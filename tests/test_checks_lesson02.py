"""Lesson 02 checks: the reference solutions pass, and planted wrong answers fail with their own message."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from solution_cells import SolutionCells

from coursework.checks import CheckFailed
from coursework.checks import lesson02 as checks


# ---------------------------------------------------------------- reference solutions (as in solutions/02)
def make_mask(
    kernel_size,
    mask_type,
    in_channels,
    out_channels,
    data_channels=1,
    *,
    _groups="contiguous",
    _centre_row="left",
    _flip=False,
):
    k, c = kernel_size, kernel_size // 2
    mask = torch.zeros(out_channels, in_channels, k, k)
    mask[:, :, :c, :] = 1
    mask[:, :, c, :c] = 1
    if _centre_row == "all":
        mask[:, :, c, c + 1 :] = 1
    if _flip:
        mask = mask.flip(2, 3)
    if _groups == "contiguous":
        g_out = torch.arange(out_channels) * data_channels // out_channels
        g_in = torch.arange(in_channels) * data_channels // in_channels
    else:
        g_out, g_in = torch.arange(out_channels) % data_channels, torch.arange(in_channels) % data_channels
    g_out, g_in = g_out[:, None], g_in[None, :]
    centre = (g_out > g_in) if mask_type == "A" else (g_out >= g_in)
    mask[:, :, c, c] = centre.float()
    return mask


class MaskedConv2d(nn.Conv2d):
    def __init__(self, in_channels, out_channels, kernel_size, mask_type="B", data_channels=1):
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.register_buffer("mask", make_mask(kernel_size, mask_type, in_channels, out_channels, data_channels))

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def receptive_field_map(model, i, j, c=0):
    x = torch.rand(1, *model.image_shape, requires_grad=True)
    model(x)[0, c, i, j].backward()
    return x.grad[0] != 0


def is_causal(model):
    ch, h, w = model.image_shape
    for i in range(h):
        for j in range(w):
            for c in range(ch):
                seen = receptive_field_map(model, i, j, c)
                if seen.flatten(1)[:, i * w + j + 1 :].any() or seen[c:, i, j].any():
                    return False
    return True


def failing(check, fn, match):
    with pytest.raises(CheckFailed, match=match):
        check(fn)


def test_checks_leave_the_global_random_state_alone():
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    checks.check_masked_conv(MaskedConv2d)
    checks.check_receptive_field(receptive_field_map)
    assert torch.equal(torch.rand(3), before)


def test_is_causal_models_are_labelled_right():
    from course_lib.causality import causality_violations

    g = torch.Generator().manual_seed(0)
    for kw, causal in (
        (dict(image_shape=(1, 4, 4)), True),
        (dict(image_shape=(3, 3, 3), channels=6), True),
        (dict(image_shape=(1, 4, 4), first="B"), False),
        (dict(image_shape=(1, 4, 4), residual=True), False),
        (dict(image_shape=(3, 3, 3), channels=6, reversed_colours=True), False),
        (dict(image_shape=(3, 3, 3), channels=6, skip_green_to_red=True), False),
        (dict(image_shape=(1, 4, 4), vertical_first=True), False),
    ):
        violations = causality_violations(checks._fresh_stack(g, **kw))
        assert (violations == []) == causal, kw
        if kw.get("skip_green_to_red"):  # only red seeing green of its own pixel, never the diagonal
            assert violations and all(o[1:] == k[1:] and (o[0], k[0]) == (0, 1) for o, k in violations)


# ---------------------------------------------------------------- make_mask mutations
def swapped(k, t, cin, cout, dc=1):
    return make_mask(k, "B" if t == "A" else "A", cin, cout, dc)


def centre_always(k, t, cin, cout, dc=1):
    m = make_mask(k, t, cin, cout, dc)
    m[:, :, k // 2, k // 2] = 1
    return m


def centre_never(k, t, cin, cout, dc=1):
    m = make_mask(k, t, cin, cout, dc)
    m[:, :, k // 2, k // 2] = 0
    return m


def colour_ignored(k, t, cin, cout, dc=1):
    return make_mask(k, t, cin, cout, 1)


def colour_reversed(k, t, cin, cout, dc=1):
    m = make_mask(k, t, cin, cout, dc)
    g_out = (torch.arange(cout) * dc // cout)[:, None]
    g_in = (torch.arange(cin) * dc // cin)[None, :]
    m[:, :, k // 2, k // 2] = ((g_out < g_in) if t == "A" else (g_out <= g_in)).float()
    return m


def interleaved(k, t, cin, cout, dc=1):
    return make_mask(k, t, cin, cout, dc, _groups="interleaved")


def whole_centre_row(k, t, cin, cout, dc=1):
    return make_mask(k, t, cin, cout, dc, _centre_row="all")


def flipped(k, t, cin, cout, dc=1):
    return make_mask(k, t, cin, cout, dc, _flip=True)


def in_out_swapped(k, t, cin, cout, dc=1):
    return make_mask(k, t, cin, cout, dc).transpose(0, 1)


@pytest.mark.parametrize(
    "fn, match",
    [
        (swapped, "masks A and B are swapped"),
        (centre_always, "mask A includes the centre pixel|masks A and B are swapped"),
        (centre_never, "mask B excludes the centre pixel|masks A and B are swapped"),
        (colour_ignored, "channel order ignored"),
        (colour_reversed, "channel order reversed"),
        (interleaved, "channel groups interleaved"),
        (whole_centre_row, "right of the centre"),
        (flipped, "keeps the future"),
    ],
)
def test_mask_mutations(fn, match):
    failing(checks.check_mask, fn, match)


def test_in_out_swapped():
    # recognisable as a swap only when in != out; when the random case has in == out with colour groups,
    # swapping the axes reverses the colour order, and the check names that instead
    failing(checks.check_mask, in_out_swapped, "in and out channels swapped|expected|channel order reversed")


def test_centre_bugs_have_their_own_message_with_colour():
    # single-channel cases pass when the mask is right there, so the colour cases show the centre message
    def a_sees_centre(k, t, cin, cout, dc=1):
        return centre_always(k, t, cin, cout, dc) if (t == "A" and dc == 3) else make_mask(k, t, cin, cout, dc)

    def b_hides_centre(k, t, cin, cout, dc=1):
        return centre_never(k, t, cin, cout, dc) if (t == "B" and dc == 3) else make_mask(k, t, cin, cout, dc)

    failing(checks.check_mask, a_sees_centre, "mask A includes the centre pixel")
    failing(checks.check_mask, b_hides_centre, "mask B excludes the centre pixel")


# ---------------------------------------------------------------- MaskedConv2d mutations
class UnmaskedConv(MaskedConv2d):
    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, padding=self.padding)


class SwappedConv(MaskedConv2d):
    def __init__(self, cin, cout, k, t="B", dc=1):
        super().__init__(cin, cout, k, "B" if t == "A" else "A", dc)


class NoColourConv(MaskedConv2d):
    def __init__(self, cin, cout, k, t="B", dc=1):
        super().__init__(cin, cout, k, t, 1)


class MaskOnceConv(nn.Conv2d):
    def __init__(self, cin, cout, k, t="B", dc=1):
        super().__init__(cin, cout, k, padding=k // 2)
        with torch.no_grad():
            self.weight *= make_mask(k, t, cin, cout, dc)


class NoPaddingConv(MaskedConv2d):
    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias)


class ParameterMaskConv(nn.Conv2d):
    def __init__(self, cin, cout, k, t="B", dc=1):
        super().__init__(cin, cout, k, padding=k // 2)
        self.mask = nn.Parameter(make_mask(k, t, cin, cout, dc))

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


@pytest.mark.parametrize(
    "fn, match",
    [
        (UnmaskedConv, "not masked"),
        (SwappedConv, "masks A and B are swapped"),
        (NoColourConv, "channel order ignored"),
        (MaskOnceConv, "applied only once"),
        (NoPaddingConv, "output shape"),
        (ParameterMaskConv, "register_buffer"),
    ],
)
def test_masked_conv_mutations(fn, match):
    failing(checks.check_masked_conv, fn, match)


# ---------------------------------------------------------------- receptive_field_map mutations
def field_swapped(model, i, j, c=0):
    return receptive_field_map(model, j, i, c)


def field_all_channels(model, i, j, c=0):
    x = torch.rand(1, *model.image_shape, requires_grad=True)
    model(x)[0, :, i, j].sum().backward()
    return x.grad[0] != 0


def field_of_everything(model, i, j, c=0):
    x = torch.rand(1, *model.image_shape, requires_grad=True)
    model(x).sum().backward()
    return x.grad[0] != 0


def field_2d(model, i, j, c=0):
    return receptive_field_map(model, i, j, c)[0]


def field_with_batch(model, i, j, c=0):
    return receptive_field_map(model, i, j, c)[None]


@pytest.mark.parametrize(
    "fn, match",
    [
        (field_swapped, "rows and columns swapped"),
        (field_all_channels, "all channels of the output pixel"),
        (field_of_everything, "sum of all outputs"),
        (field_2d, "keep the channel dimension"),
        (field_with_batch, "drop the batch dimension"),
    ],
)
def test_receptive_field_mutations(fn, match):
    failing(checks.check_receptive_field, fn, match)


# ---------------------------------------------------------------- is_causal mutations
def causal_strictly_after(model):
    """Bug: forbids only inputs strictly after the output pixel, so it misses 'sees itself'."""
    ch, h, w = model.image_shape
    for i in range(h):
        for j in range(w):
            for c in range(ch):
                if receptive_field_map(model, i, j, c).flatten(1)[:, i * w + j + 1 :].any():
                    return False
    return True


def causal_ignores_channels(model):
    """Bug: at the output's own pixel, checks only the same channel (misses G -> R leaks)."""
    ch, h, w = model.image_shape
    for i in range(h):
        for j in range(w):
            for c in range(ch):
                seen = receptive_field_map(model, i, j, c)
                if seen.flatten(1)[:, i * w + j + 1 :].any() or seen[c, i, j]:
                    return False
    return True


def causal_too_strict(model):
    """Bug: forbids the whole own pixel, so a colour model whose G sees R is flagged."""
    ch, h, w = model.image_shape
    for i in range(h):
        for j in range(w):
            for c in range(ch):
                if receptive_field_map(model, i, j, c).flatten(1)[:, i * w + j :].any():
                    return False
    return True


def causal_rows_only(model):
    """Bug: only checks the rows below."""
    ch, h, w = model.image_shape
    for i in range(h):
        for j in range(w):
            if receptive_field_map(model, i, j, 0)[:, i + 1 :].any():
                return False
    return True


@pytest.mark.parametrize(
    "fn, match",
    [
        (causal_strictly_after, "sees its own pixel|sees its own sub-pixel|raw input|colour"),
        (causal_ignores_channels, "colour channels of one pixel"),
        (causal_too_strict, "flags a causal colour model"),
        (causal_rows_only, "misses"),
        (lambda model: True, "misses"),
        (lambda model: False, "flags"),
    ],
)
def test_is_causal_mutations(fn, match):
    failing(checks.check_is_causal, fn, match)


# ---------------------------------------------------------------- planted bugs in the solved notebook
# (solutions/02: the reference solution with one (old, new) replacement, as a learner would write it)

NOTEBOOK = SolutionCells("02_masked_convolutions", ["t01_mask", "t02_conv", "t03_field", "t04_causal"])
BUFFER = 'self.register_buffer("mask", make_mask(kernel_size, mask_type, in_channels, out_channels, data_channels))'


@pytest.mark.parametrize(
    "old, new, match",
    [
        # gradients that never reach the parameters: the layer would never train
        ("self.weight * self.mask", "self.weight.data * self.mask", "no gradient reaches the weight"),
        ("self.weight * self.mask", "self.weight.detach() * self.mask", "no gradient reaches the weight"),
        ("self.weight * self.mask", "self.weight.data.mul_(self.mask)", "no gradient reaches the weight"),
        ("self.bias, padding", "self.bias.data, padding", "no gradient reaches the bias"),
        # the mask kept as a plain attribute: not in state_dict, left behind by .to(device)
        (BUFFER, BUFFER.replace('self.register_buffer("mask", ', "self.mask = ")[:-1], "plain attribute.*state_dict"),
        # the mask applied once in __init__ (with a buffer of ones): named as such, not as a missing buffer
        (
            BUFFER,
            'self.register_buffer("mask", torch.ones_like(self.weight)); '
            "self.weight.data *= make_mask(kernel_size, mask_type, in_channels, out_channels, data_channels)",
            "applied only once",
        ),
    ],
)
def test_masked_conv_planted_bugs(old, new, match):
    failing(checks.check_masked_conv, NOTEBOOK.solution("t02_conv", (old, new)), match)


def test_receptive_field_with_a_threshold_misses_small_gradients():
    fn = NOTEBOOK.solution("t03_field", ("return grad[0] != 0", "return grad[0].abs() > 1e-3"))
    failing(checks.check_receptive_field, fn, "small .* but not zero")


@pytest.mark.parametrize(
    "old, new, match",
    [
        # test models that leak at varied places: a checker that skips a row, column or channel is caught
        ("for i in range(height):", "for i in range(1):", r"misses single leaks in \d places .*last row"),
        ("for i in range(height):", "for i in range(height // 2):", r"misses single leaks in \d places .*last row"),
        ("for i in range(height):", "for i in range(0):", "misses every one of the"),
        ("for i in range(height):", "for i in range(height - 1):", "misses a single leak in the last row"),
        ("for i in range(height):", "for i in range(1, height):", "misses a single leak in the first row"),
        ("for j in range(width):", "for j in range(width - 1):", "misses a single leak in the last column"),
        ("for j in range(width):", "for j in range(1, width):", "misses a single leak in the first column"),
        ("for c in range(channels):", "for c in range(1):", "misses a single leak in the last channel"),
        ("i * width + j + 1", "i * width + j + 2", "next pixel"),  # alone, or with the last column when they meet
    ],
)
def test_is_causal_planted_bugs(old, new, match):
    failing(checks.check_is_causal, NOTEBOOK.solution("t04_causal", (old, new)), match)


def test_leaky_models_leak_exactly_once():
    from course_lib.causality import causality_violations

    g = torch.Generator().manual_seed(1)
    for where in ("last row", "last column", "first row", "first column", "next pixel", "last channel"):
        shape = (3, 3, 3) if where == "last channel" else (1, 5, 4)
        _, model = checks._leaky(g, where, shape)
        violations = causality_violations(model)
        assert len(violations) == 1, (where, violations)
        ((out, src),) = violations
        assert tuple(out) == model.out and tuple(src) == model.src, where
