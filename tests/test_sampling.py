"""Sampling: per-sub-pixel distributions (temperature before the sigmoid / softmax), draws that follow
them, shapes and ranges, reproducibility, labels respected and checked, given pixels kept, eval mode and
no autograd inside, cached and naive samplers giving the same images, classifier-free guidance (the mixing
formula, w = 0 exactly plain, both samplers alike, arguments checked), `occlude`'s masks."""

import math

import pytest
import torch

import course_lib.device as device
import course_lib.sampling as sampling
from course_lib import CourseError, GatedPixelCNN, IndependentPixelModel, PixelCNN, occlude, sample
from course_lib.sampling import distribution_at, draw, guide, pick_method, probabilities, sample_cached, sample_naive


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one thread avoids the overhead of intra-op threads (large on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(levels=2, shape=(1, 4, 5), seed=0, **kw):
    """A small float64 Gated PixelCNN with weights large enough that every distribution matters."""
    torch.manual_seed(seed)
    model = GatedPixelCNN(shape, levels=levels, channels=6 if shape[0] == 3 else 4, dilations=(1, 2), **kw).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    return model


def independent(probs):
    """The independent-pixel baseline with given per-sub-pixel probabilities (K, C, H, W)."""
    probs = torch.as_tensor(probs, dtype=torch.float64)
    model = IndependentPixelModel(probs.shape[1:], levels=probs.shape[0])
    model.log_probs.copy_(probs.log())
    return model


class Spy(torch.nn.Module):
    """A model with a constant logit per image: +20 (level 1) for label 1, -20 for label 0 (or no label).
    Records the training mode, autograd state and inputs it sees."""

    def __init__(self, shape=(1, 2, 2), num_classes=None):
        super().__init__()
        self.image_shape, self.levels, self.num_classes = shape, 2, num_classes
        self.w = torch.nn.Parameter(torch.tensor(-20.0))
        self.seen = []

    def forward(self, x, labels=None):
        self.seen.append(dict(training=self.training, grad=torch.is_grad_enabled(), x=x.clone(), labels=labels))
        logit = self.w if labels is None else self.w * (1 - 2 * labels.view(-1, 1, 1, 1).double())
        return logit.expand(len(x), *self.image_shape)


# -- distributions and draws --------------------------------------------------------------------------
@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.5])
def test_bernoulli_probability_is_sigmoid_of_logit_over_temperature(temperature):
    logits = torch.tensor([-2.0, 0.0, 1.5, 3.0], dtype=torch.float64)
    want = [1 / (1 + math.exp(-v / temperature)) for v in logits.tolist()]
    got = probabilities(logits, temperature)
    assert got.shape == (4,) and got.tolist() == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.5])
def test_categorical_probabilities_are_softmax_of_logits_over_temperature(temperature):
    """K > 2: the temperature divides the logits before the softmax (not the probabilities after it)."""
    logits = torch.tensor([[0.5, -1.0, 2.0, 0.0], [3.0, 1.0, -2.0, 1.0], [0.0, 0.0, 0.0, 4.0]], dtype=torch.float64)
    for row, got in zip(logits.tolist(), probabilities(logits, temperature)):
        exps = [math.exp(v / temperature) for v in row]
        assert got.tolist() == pytest.approx([e / sum(exps) for e in exps], abs=1e-6)


def test_probabilities_are_float32_whatever_the_logits_dtype():
    """Half-precision logits (mixed precision) still give probabilities accurate to float32 rounding."""
    logits = torch.tensor([[0.3, -1.7, 2.2], [1.1, 0.9, -0.4]]).bfloat16()
    exact = torch.softmax(logits.double(), dim=1)
    for dtype in (torch.bfloat16, torch.float64):
        got = probabilities(logits.to(dtype))
        assert got.dtype == torch.float32 and torch.allclose(got.double(), exact, atol=1e-6)
        got = probabilities(logits[:, 0].to(dtype), 0.7)
        assert got.dtype == torch.float32 and torch.allclose(
            got.double(), torch.sigmoid(logits[:, 0].double() / 0.7), atol=1e-6
        )


def test_distribution_at_reads_the_requested_sub_pixel():
    bernoulli = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))  # (B, C, H, W)
    got = distribution_at(bernoulli, 1, 3, 2, temperature=2.0)
    assert torch.allclose(got, torch.sigmoid(bernoulli[:, 2, 1, 3] / 2.0))
    categorical = torch.randn(2, 6, 3, 4, 5, generator=torch.Generator().manual_seed(1))  # (B, K, C, H, W)
    got = distribution_at(categorical, 2, 0, 1, temperature=0.5)
    assert got.shape == (2, 6) and torch.allclose(got, torch.softmax(categorical[:, :, 1, 2, 0] / 0.5, dim=1))


def test_draw_is_exact_for_certain_outcomes():
    got = draw(torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0]))
    assert got.dtype == torch.int64 and got.tolist() == [0, 1, 1, 0, 1]
    one_hot = torch.eye(5)[[3, 0, 4, 1]]
    got = draw(one_hot)
    assert got.dtype == torch.int64 and got.shape == (4,) and got.tolist() == [3, 0, 4, 1]


def test_draw_frequencies_follow_the_probabilities():
    generator = torch.Generator().manual_seed(0)
    probs = torch.tensor([0.2, 0.5, 0.9]).repeat(3000)
    means = draw(probs, generator).view(3000, 3).double().mean(0)
    assert means.tolist() == pytest.approx([0.2, 0.5, 0.9], abs=0.03)
    levels = draw(torch.tensor([[0.1, 0.6, 0.3]]).expand(3000, 3), generator)
    freq = torch.bincount(levels, minlength=3).double() / 3000
    assert freq.tolist() == pytest.approx([0.1, 0.6, 0.3], abs=0.03)


@pytest.mark.parametrize("probs", [torch.full((50,), 0.5), torch.full((50, 4), 0.25)])
def test_draw_uses_the_given_generator(probs):
    torch.manual_seed(1)
    a = draw(probs, torch.Generator().manual_seed(5))
    torch.manual_seed(2)  # the global generator must not matter
    assert torch.equal(a, draw(probs, torch.Generator().manual_seed(5)))
    assert not torch.equal(a, draw(probs, torch.Generator().manual_seed(6)))


# -- sample ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("levels,shape", [(2, (1, 4, 5)), (5, (1, 3, 4)), (4, (3, 2, 3))])
@pytest.mark.parametrize("method", ["naive", "cached"])
def test_shapes_ranges_and_seed(levels, shape, method):
    model = tiny(levels, shape)
    a = sample(model, 3, seed=1, method=method)
    assert a.shape == (3, *shape) and a.dtype == torch.long and a.device.type == "cpu"
    assert a.min() >= 0 and a.max() <= levels - 1
    torch.manual_seed(123)  # the seed alone decides the images
    assert torch.equal(a, sample(model, 3, seed=1, method=method))
    assert not torch.equal(a, sample(model, 3, seed=2, method=method))


def test_without_a_seed_draws_differ():
    model = independent(torch.full((2, 1, 4, 4), 0.5))
    assert not torch.equal(sample(model, 4), sample(model, 4))


def test_pixelcnn_samples_too():
    torch.manual_seed(0)
    model = PixelCNN((1, 3, 4), channels=4, n_blocks=1)
    assert sample(model, 2, seed=0).shape == (2, 1, 3, 4)


@pytest.mark.parametrize("name", ["gated colour", "pixelcnn"])
def test_cached_and_naive_samplers_draw_the_same_images(name):
    """Same random numbers in the same order: with a seed both samplers return the same images, also
    when completing images (rows that are entirely given are skipped by the gated cache only)."""
    if name == "pixelcnn":
        torch.manual_seed(0)
        model = PixelCNN((1, 4, 4), levels=3, channels=4, n_blocks=1).double()
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.3)
    else:
        model = tiny(3, (3, 3, 3))
    n, shape = 4, model.image_shape
    images = torch.randint(0, 3, (n, *shape), generator=torch.Generator().manual_seed(0))
    for given, temperature in (
        (None, 1.0),
        (None, 0.6),
        (occlude(images, "bottom"), 1.0),
        (occlude(images, "box"), 0.6),
    ):
        naive = sample(model, n, given=given, temperature=temperature, seed=3, method="naive")
        assert torch.equal(naive, sample(model, n, given=given, temperature=temperature, seed=3, method="cached"))


def test_bernoulli_sampling_follows_the_model_distribution_and_temperature():
    """The independent baseline has known per-pixel probabilities; sample frequencies must match
    sigmoid(logit / T)."""
    p1 = torch.tensor([0.1, 0.5, 0.8])
    model = independent(torch.stack([1 - p1, p1]).view(2, 1, 1, 3))
    logit = (p1 / (1 - p1)).log()
    for temperature in (1.0, 0.5, 2.0):
        x = sample(model, 3000, temperature=temperature, seed=0)
        want = torch.sigmoid(logit / temperature)
        assert x.double().mean(0).flatten().tolist() == pytest.approx(want.tolist(), abs=0.03)


def test_categorical_sampling_follows_softmax_of_logits_over_temperature():
    probs = torch.tensor([[0.1, 0.6], [0.3, 0.3], [0.6, 0.1]]).view(3, 1, 1, 2)  # K=3 levels at two pixels
    model = independent(probs)
    for temperature in (1.0, 0.5, 2.0):
        x = sample(model, 3000, temperature=temperature, seed=1)
        want = probs.double() ** (1 / temperature)  # softmax(log p / T) = p^(1/T) / sum
        want = want / want.sum(0)
        for pixel in range(2):
            freq = torch.bincount(x[:, 0, 0, pixel], minlength=3).double() / 3000
            assert freq.tolist() == pytest.approx(want[:, 0, 0, pixel].tolist(), abs=0.03)


def test_low_temperature_gives_the_mode():
    p1 = torch.tensor([[0.3, 0.7], [0.45, 0.55]])
    model = independent(torch.stack([1 - p1, p1]).view(2, 1, 2, 2))
    cold = sample(model, 20, temperature=0.01, seed=0)
    assert torch.equal(cold, torch.tensor([[0, 1], [0, 1]]).expand(20, 1, 2, 2))


@pytest.mark.parametrize("temperature", [0, 0.0, -1.0])
def test_temperature_must_be_positive(temperature):
    model = independent(torch.full((2, 1, 2, 2), 0.5))
    with pytest.raises(CourseError, match="temperature must be positive"):
        sample(model, 1, temperature=temperature)


def test_any_positive_temperature_is_accepted():
    model = independent(torch.full((2, 1, 2, 2), 0.5))
    for temperature in (0.5, 1.0, 3.0):
        assert sample(model, 2, temperature=temperature, seed=0).shape == (2, 1, 2, 2)


def test_naive_sampler_shows_not_yet_drawn_pixels_as_zero():
    """Lesson 02: a leaky model (that sees the pixel it predicts) sees the placeholder 0 there, so it draws
    blank images. Here every logit says "copy the input pixel": the image must stay all zero."""

    class Copy(torch.nn.Module):
        image_shape, levels, num_classes = (1, 3, 3), 2, None

        def forward(self, x, labels=None):
            return (x.double() * 2 - 1) * 30

    assert torch.equal(sample(Copy(), 2, seed=0), torch.zeros(2, 1, 3, 3, dtype=torch.long))


@pytest.mark.parametrize("method", ["naive", "cached"])
def test_completion_keeps_given_pixels_exactly(method):
    model = tiny()
    n, shape = 4, model.image_shape
    images = torch.randint(0, 2, (n, *shape), generator=torch.Generator().manual_seed(0))
    for region in ("bottom", "right", "box"):
        given = occlude(images, region)
        kept = given[1].expand(n, *shape)
        done = sample(model, n, given=given, seed=0, method=method)
        assert done.shape == (n, *shape) and torch.equal(done[kept], images[kept])
    # float values (as data sets store images) and a per-image mask; the caller's tensors are not modified
    values, known = images.double(), torch.rand(n, *shape, generator=torch.Generator().manual_seed(1)) < 0.5
    values_before, known_before = values.clone(), known.clone()
    done = sample(model, n, given=(values, known), seed=0, method=method)
    assert done.dtype == torch.long and torch.equal(done[known], images[known])
    assert torch.equal(values, values_before) and torch.equal(known, known_before)


def test_fully_given_images_are_returned_unchanged_without_running_the_model():
    spy = Spy()
    images = torch.randint(0, 2, (3, 1, 2, 2), generator=torch.Generator().manual_seed(0))
    assert torch.equal(sample(spy, 3, given=(images, torch.ones(1, 1, 2, 2, dtype=torch.bool))), images)
    assert spy.seen == []


def test_given_images_of_the_wrong_shape_are_rejected():
    with pytest.raises(CourseError, match="given images have shape"):
        sample(tiny(), 2, given=occlude(torch.zeros(3, 1, 4, 5, dtype=torch.long)))


def test_labels_are_passed_per_image():
    """A conditional model sees one label per image (an int is repeated), as a long tensor."""
    spy = Spy(num_classes=2)
    x = sample(spy, 4, labels=torch.tensor([0, 1, 1, 0], dtype=torch.uint8), seed=0)
    assert torch.equal(x, torch.tensor([0, 1, 1, 0]).view(4, 1, 1, 1).expand(4, 1, 2, 2))
    assert spy.seen[0]["labels"].dtype == torch.long
    assert torch.equal(sample(spy, 3, labels=1, seed=0), torch.ones(3, 1, 2, 2, dtype=torch.long))


@pytest.mark.parametrize("method", ["naive", "cached"])
def test_labels_are_checked(method):
    model = tiny(num_classes=3)
    for labels in (0, 2, [2, 0], torch.tensor([1, 2], dtype=torch.uint8)):
        assert sample(model, 2, labels=labels, seed=0, method=method).shape == (2, 1, 4, 5)
    for labels in (-1, 3, [-1, 1], [0, 3]):
        with pytest.raises(CourseError, match=r"labels must lie in 0\.\.2"):
            sample(model, 2, labels=labels, method=method)
    with pytest.raises(CourseError, match="class-conditional; pass labels"):
        sample(model, 2, method=method)
    with pytest.raises(CourseError, match="unconditional"):
        sample(tiny(), 2, labels=1, method=method)


def test_sampling_uses_eval_mode_and_no_grad_and_restores_the_mode():
    spy = Spy().train()
    sample(spy, 1, seed=0)
    assert {(s["training"], s["grad"]) for s in spy.seen} == {(False, False)} and spy.training
    spy = Spy().eval()
    sample(spy, 1, seed=0)
    assert not spy.training


def test_samplers_called_directly_run_without_autograd(monkeypatch):
    spy = Spy()
    x, known = torch.zeros(1, 1, 2, 2, dtype=torch.long), torch.zeros(1, 1, 2, 2, dtype=torch.bool)
    sample_naive(spy, x, known, None, 1.0, torch.Generator().manual_seed(0))
    assert spy.seen and not any(s["grad"] for s in spy.seen)
    grad = []
    monkeypatch.setattr(sampling, "probabilities", lambda *a: grad.append(torch.is_grad_enabled()) or probabilities(*a))
    model = tiny()
    sample_cached(
        model,
        torch.zeros(1, 1, 4, 5, dtype=torch.long),
        torch.zeros(1, 1, 4, 5, dtype=torch.bool),
        None,
        1.0,
        torch.Generator().manual_seed(0),
    )
    assert len(grad) == 20 and not any(grad)


@pytest.mark.parametrize("method", ["naive", "cached"])
def test_progress_bar_counts_rows_and_disappears(method, capsys):
    model = tiny()
    sample(model, 1, seed=0, method=method)
    assert capsys.readouterr().err == ""
    sample(model, 1, seed=0, method=method, progress=True)
    err = capsys.readouterr().err
    assert "rows" in err and "/4" in err
    assert err.rsplit("\r", 1)[-1].strip() == "" and "\n" not in err  # cleared when done (leave=False)


def test_pick_method():
    assert pick_method(tiny()) == "cached" and pick_method(tiny(), "auto") == "cached"
    assert pick_method(tiny(), "naive") == "naive" and pick_method(tiny(), "cached") == "cached"
    baseline = independent(torch.full((2, 1, 2, 2), 0.5))
    assert pick_method(baseline) == "naive"
    with pytest.raises(CourseError, match="use method='naive'"):
        sample(baseline, 1, method="cached")
    with pytest.raises(CourseError, match="Unknown sampling method 'magic'; choose one of: auto, naive, cached"):
        pick_method(tiny(), "magic")
    with pytest.raises(CourseError, match="Unknown sampling method"):
        sample(tiny(), 1, method="magic")


def test_auto_sampling_uses_the_cache_where_it_can():
    model = tiny()
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    sample(model, 1, seed=0)
    assert calls == []


# -- classifier-free guidance ---------------------------------------------------------------------------
class ConstantLogits(torch.nn.Module):
    """A model with the same logits at every sub-pixel: table[label] for a class-conditional model (one
    label per image), table[0] without classes. A table of numbers: Bernoulli logits; of rows: K levels."""

    def __init__(self, table, num_classes=None, shape=(1, 2, 2)):
        super().__init__()
        self.table = torch.nn.Parameter(torch.tensor(table, dtype=torch.float64))
        self.image_shape, self.num_classes = shape, num_classes
        self.levels = 2 if self.table.dim() == 1 else self.table.shape[1]

    def forward(self, x, labels=None):
        rows = self.table[torch.zeros(len(x), dtype=torch.long) if labels is None else labels]
        if rows.dim() == 1:  # (B,) -> (B, C, H, W)
            return rows.view(-1, 1, 1, 1).expand(len(x), *self.image_shape)
        return rows.view(*rows.shape, 1, 1, 1).expand(len(x), -1, *self.image_shape)  # (B, K, C, H, W)


def test_guide_mixes_the_logits_with_the_weight():
    """(1 + w) * conditional - w * unconditional, elementwise, for Bernoulli (B,) and categorical (B, K)
    logits; at w = 0 the conditional logits themselves, without reading the unconditional ones."""
    c, u = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.5, 1.0, 0.5])
    assert guide(c, u, 2.0).tolist() == [2.0, -8.0, 0.5]
    assert guide(c, u, 0.5).tolist() == [1.25, -3.5, 0.5]
    c, u = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, -1.0]]), torch.tensor([[1.0, 1.0, 1.0], [0.0, 2.0, -1.0]])
    assert guide(c, u, 3.0).tolist() == [[-3.0, 1.0, 5.0], [12.0, -6.0, -1.0]]
    assert guide(c, None, 0) is c and guide(c, None, 0.0) is c


def test_guided_sampling_draws_from_the_mixed_logits_then_applies_the_temperature():
    """Constant logits: conditional -0.5 (class 0) and 0.5 (class 1), unconditional -0.5. Sample frequencies
    must follow sigmoid(((1 + w) c - w u) / T), per class; the same for K = 3 levels with a softmax."""
    model, unconditional = ConstantLogits([-0.5, 0.5], num_classes=2), ConstantLogits([-0.5])
    labels = torch.tensor([0, 1]).repeat(1000)
    for w, temperature in ((0.0, 1.0), (2.0, 1.0), (2.0, 2.0), (0.5, 0.5)):
        x = sample(model, 2000, labels=labels, guidance=w, unconditional=unconditional, temperature=temperature, seed=0)
        for label, c in ((0, -0.5), (1, 0.5)):
            want = torch.sigmoid(torch.tensor(((1 + w) * c - w * -0.5) / temperature)).item()
            assert x[labels == label].double().mean().item() == pytest.approx(want, abs=0.03)
    model, unconditional = ConstantLogits([[0.0, 1.0, -1.0]], num_classes=1), ConstantLogits([[0.5, 0.0, 0.0]])
    x = sample(model, 2000, labels=0, guidance=1.5, unconditional=unconditional, temperature=0.8, seed=1)
    want = torch.softmax(guide(torch.tensor([0.0, 1.0, -1.0]), torch.tensor([0.5, 0.0, 0.0]), 1.5) / 0.8, dim=0)
    assert (torch.bincount(x.flatten(), minlength=3) / x.numel()).tolist() == pytest.approx(want.tolist(), abs=0.03)


class Refuses(Spy):
    """A model that the samplers must never run: guidance at weight 0 does not need it."""

    def forward(self, x, labels=None):
        raise AssertionError("the unconditional model ran at guidance 0")


@pytest.mark.parametrize("method", ["naive", "cached"])
def test_zero_guidance_is_plain_conditional_sampling_exactly(method):
    """w = 0 gives the images of plain conditional sampling with the same seed, bit for bit, and never runs
    the unconditional model (here one that the cache cannot handle, and that fails when called)."""
    model = tiny(num_classes=3)
    plain = sample(model, 4, labels=[0, 1, 2, 1], seed=5, method=method)
    for w in (0, 0.0):
        got = sample(model, 4, labels=[0, 1, 2, 1], seed=5, method=method, guidance=w, unconditional=Refuses((1, 4, 5)))
        assert torch.equal(got, plain)


def gated_and_pixelcnn(seed=1):
    """An unconditional PixelCNN of tiny()'s 1x4x5 images: its cache needs every row, the gated one's does not."""
    torch.manual_seed(seed)
    model = PixelCNN((1, 4, 5), channels=4, n_blocks=1).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 1)  # large enough that its cache going stale changes the images
    return model


@pytest.mark.parametrize("case", ["same network, null class", "separate model, colour", "gated and pixelcnn"])
def test_cached_and_naive_guided_sampling_draw_the_same_images(case):
    """Guidance in the cached sampler (a second cache over the same images, stepped in lockstep) is exact:
    with a seed, the same images as the naive sampler, also when completing images and with a temperature;
    and guidance changes the images (so the comparison is not between two plain samplers)."""
    if case == "same network, null class":
        model = tiny(num_classes=3)
        kw = dict(unconditional=model, null_label=2)
    elif case == "separate model, colour":
        model = tiny(3, (3, 3, 3), num_classes=2)
        kw = dict(unconditional=tiny(3, (3, 3, 3), seed=1))
    else:
        model = tiny(num_classes=2)
        kw = dict(unconditional=gated_and_pixelcnn())
    with torch.no_grad():  # labels that matter: larger class biases and output weights
        for layer in model.layers:
            layer.class_bias.weight.normal_(0, 2)
            layer.h_out.weight.normal_(0, 1)
        model.out1.weight.normal_(0, 1)
        model.out2.weight.normal_(0, 1)
    n, shape, levels = 8, model.image_shape, model.levels
    labels = torch.tensor([0, 1, 1, 0]).repeat(2)
    images = torch.randint(0, levels, (n, *shape), generator=torch.Generator().manual_seed(0))
    for given, temperature, w in (
        (None, 1.0, 1.5),
        (occlude(images, "bottom"), 0.7, 3.0),
        (occlude(images, "box"), 1, 4),
    ):
        args = dict(labels=labels, given=given, temperature=temperature, seed=3, guidance=w, **kw)
        naive = sample(model, n, method="naive", **args)
        assert torch.equal(naive, sample(model, n, method="cached", **args))
        assert not torch.equal(naive, sample(model, n, labels=labels, given=given, temperature=temperature, seed=3))


def test_guidance_runs_the_unconditional_model_with_its_null_class_in_eval_mode_without_grad():
    model, unconditional = Spy(num_classes=2).train(), Spy(num_classes=3).train()
    sample(model, 3, labels=1, guidance=2, unconditional=unconditional, null_label=2, seed=0)
    assert len(unconditional.seen) == len(model.seen) == 4  # one pass of each per sub-pixel
    for seen in unconditional.seen:
        assert seen["labels"].tolist() == [2, 2, 2] and seen["labels"].dtype == torch.long
        assert not seen["training"] and not seen["grad"]
    assert model.training and unconditional.training  # modes restored
    same = Spy(num_classes=3).train()  # one network as both models
    sample(same, 2, labels=1, guidance=1, unconditional=same, null_label=2, seed=0)
    assert {s["training"] for s in same.seen} == {False} and same.training
    assert [s["labels"].tolist() for s in same.seen[:2]] == [[1, 1], [2, 2]]


@pytest.mark.parametrize("null_label", [0, 2])
def test_any_class_of_the_unconditional_model_can_be_its_null_class(null_label):
    """The first class (0) and the last one are both valid "no label" classes."""
    unconditional = Spy(num_classes=3)
    sample(Spy(num_classes=2), 2, labels=1, guidance=1, unconditional=unconditional, null_label=null_label, seed=0)
    assert {tuple(seen["labels"].tolist()) for seen in unconditional.seen} == {(null_label, null_label)}


def test_auto_guided_sampling_is_cached_only_when_both_models_allow_it():
    model = tiny(num_classes=2)
    assert pick_method(model, "auto", tiny()) == "cached" and pick_method(model, "auto", None) == "cached"
    baseline = independent(torch.full((2, 1, 4, 5), 0.5))
    assert pick_method(model, "auto", baseline) == "naive" and pick_method(model, "cached", baseline) == "cached"
    args = dict(labels=1, guidance=1.0, unconditional=baseline, seed=2)
    assert torch.equal(sample(model, 2, **args), sample(model, 2, method="naive", **args))
    with pytest.raises(CourseError, match="use method='naive'"):
        sample(model, 2, method="cached", **args)
    calls = []
    for m in (model, unconditional := tiny()):
        m.register_forward_hook(lambda *a: calls.append(1))
    sample(model, 2, labels=1, guidance=1.0, unconditional=unconditional, seed=2)
    assert calls == []  # both cached: no full forward pass


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(guidance=1.0), "pass unconditional="),
        (dict(guidance=0, null_label=2), "drop null_label"),
        (dict(guidance=1, unconditional=tiny(shape=(1, 5, 4))), "guide with a model of the same images"),
        (dict(guidance=0, unconditional=tiny(levels=3)), "guide with a model of the same images"),
        (dict(guidance=1, unconditional=tiny().to("meta")), "move both to one device"),
        (dict(guidance=1, unconditional=tiny(num_classes=4)), r"pass null_label=.*0\.\.3\), got None"),
        (dict(guidance=1, unconditional=tiny(num_classes=4), null_label=True), "pass null_label="),
        (dict(guidance=1, unconditional=tiny(num_classes=4), null_label=1.0), "pass null_label="),
        (dict(guidance=1, unconditional=tiny(num_classes=4), null_label=4), r"null_label must lie in 0\.\.3"),
        (dict(guidance=1, unconditional=tiny(num_classes=4), null_label=-1), r"null_label must lie in 0\.\.3"),
        (dict(guidance=1, unconditional=tiny(), null_label=0), "has no classes; drop null_label"),
        (dict(guidance=-0.5, unconditional=tiny()), "guidance must be a number >= 0"),
        (dict(guidance=float("nan"), unconditional=tiny()), "guidance must be a number >= 0"),
        (dict(guidance=float("inf"), unconditional=tiny()), "guidance must be a number >= 0"),
        (dict(guidance=True, unconditional=tiny()), "guidance must be a number >= 0"),
        (dict(guidance="1", unconditional=tiny()), "guidance must be a number >= 0"),
    ],
)
def test_bad_guidance_arguments_stop_with_a_sentence_naming_the_fix(kw, message):
    """Checked before any sampling, also at weight 0 (a sweep over w finds a wrong model at its first point)."""
    with pytest.raises(CourseError, match=message):
        sample(tiny(num_classes=2), 2, labels=1, seed=0, **kw)


def test_guidance_needs_a_class_conditional_model():
    with pytest.raises(CourseError, match="this model has no classes"):
        sample(tiny(), 2, guidance=1, unconditional=tiny(seed=1))


# -- occlude --------------------------------------------------------------------------------------------
def _mask(rows):
    return torch.tensor([[c == "1" for c in row] for row in rows]).view(1, 1, len(rows), len(rows[0]))


@pytest.mark.parametrize(
    "region,h,w,want",
    [
        ("bottom", 4, 3, ["111", "111", "000", "000"]),
        ("bottom", 5, 2, ["11", "11", "00", "00", "00"]),
        ("right", 2, 5, ["11000", "11000"]),
        ("right", 3, 4, ["1100", "1100", "1100"]),
        ("box", 4, 4, ["1111", "1001", "1001", "1111"]),
        ("box", 5, 6, ["111111", "100011", "100011", "111111", "111111"]),
        (
            "box",
            8,
            9,
            ["111111111", "111111111", "110000111", "110000111", "110000111", "110000111", "111111111", "111111111"],
        ),
    ],
)
def test_occlude_hides_exactly_the_region(region, h, w, want):
    images = torch.randint(0, 2, (2, 1, h, w))
    values, known = occlude(images, region)
    assert values is images
    assert known.dtype == torch.bool and known.shape == (1, 1, h, w)
    assert torch.equal(known, _mask(want))


def test_occlude_default_is_bottom_and_unknown_regions_are_rejected():
    images = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    assert torch.equal(occlude(images)[1], occlude(images, "bottom")[1])
    with pytest.raises(CourseError, match="Unknown region 'top'"):
        occlude(images, "top")


def threads_seen(monkeypatch, tmp_path, running, quota=2, **kw):
    """Sample a tiny 4x5 model on a machine with `running` runnable tasks, 2 cores and a CPU quota of `quota`
    whole cores, starting from 2 threads (sample's keywords: kw); returns the thread counts its rows and its steps ran with, and the count after."""
    (tmp_path / "loadavg").write_text(f"1.0 1.0 1.0 {running}/80 1\n")
    monkeypatch.setattr(device, "LOADAVG", str(tmp_path / "loadavg"))
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(device, "cpu_threads", lambda: quota)
    from course_lib.cached_sampling import GatedPixelCNNCache

    rows, steps = [], []
    start_row, logits_at = GatedPixelCNNCache.start_row, GatedPixelCNNCache.logits_at
    monkeypatch.setattr(
        GatedPixelCNNCache, "start_row", lambda s, i: rows.append(torch.get_num_threads()) or start_row(s, i)
    )
    monkeypatch.setattr(
        GatedPixelCNNCache, "logits_at", lambda s, j, c=0: steps.append(torch.get_num_threads()) or logits_at(s, j, c)
    )
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        sample(tiny(shape=(1, 4, 5)), 2, seed=0, method="cached", **kw)
        return rows, steps, torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("running, row_threads", [(1, 2), (2, 1)])
def test_automatic_threads_run_steps_on_one_thread_and_rows_on_the_idle_cores(
    tmp_path, monkeypatch, running, row_threads
):
    """Idle machine: rows on your 2 threads; one other busy task: rows on 1. Steps always on 1."""
    assert threads_seen(monkeypatch, tmp_path, running) == ([row_threads] * 4, [1] * 20, 2)


def test_automatic_threads_keep_rows_within_the_cpu_quota(tmp_path, monkeypatch):
    """An idle 2-core machine, but a quota of 1 core (a classroom hub's cpu_limit): rows run on 1 thread."""
    assert threads_seen(monkeypatch, tmp_path, 1, quota=1) == ([1] * 4, [1] * 20, 2)


def test_a_fixed_thread_count_is_kept_on_a_busy_machine(tmp_path, monkeypatch):
    """threads=3 is the caller's choice: rows and steps run on 3 threads whatever the load."""
    assert threads_seen(monkeypatch, tmp_path, 3, threads=3) == ([3] * 4, [3] * 20, 2)


def test_cached_completion_with_a_different_mask_per_image_and_channel_equals_naive():
    """Sub-pixels given in some images and drawn in others, colour: the drawn ones match naive sampling,
    the given ones are kept."""
    model = tiny(levels=3, shape=(3, 4, 4))
    images = torch.randint(0, 3, (3, 3, 4, 4), generator=torch.Generator().manual_seed(0))
    known = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(1)) < 0.5
    naive = sample(model, 3, given=(images, known), seed=2, method="naive")
    cached = sample(model, 3, given=(images, known), seed=2, method="cached")
    assert torch.equal(naive, cached) and torch.equal(cached[known], images[known])
    assert (known.any(0) & ~known.all(0)).any()  # some sub-pixels are given in one image and drawn in another


@pytest.mark.parametrize("threads", [None, 1, 2])
def test_cached_sampling_with_any_thread_policy_equals_naive_and_restores_the_thread_count(threads):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = tiny(shape=(1, 8, 7))
        naive = sample(model, 3, seed=5, method="naive")
        cached = sample(model, 3, seed=5, method="cached", threads=threads)
        assert torch.equal(naive, cached)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_fixed_thread_count_is_used_during_sampling_and_restored_after_an_error(monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    seen = []

    def spy(logits, temperature=1.0):
        seen.append(torch.get_num_threads())
        if len(seen) == 5:
            raise KeyboardInterrupt
        return probabilities(logits, temperature)

    monkeypatch.setattr(sampling, "probabilities", spy)
    try:
        with pytest.raises(KeyboardInterrupt):
            sample(tiny(), 2, seed=0, method="cached", threads=1)
        assert seen == [1] * 5 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2", True])
def test_bad_thread_counts_stop_with_one_clear_sentence(threads):
    with pytest.raises(CourseError, match="threads must be a positive whole number"):
        sample(tiny(), 1, threads=threads)
