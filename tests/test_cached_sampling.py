"""Cached sampling is exact: for the same inputs the cache's logits equal the full forward pass's
(float64), and with the same seed `method="cached"` returns the very images `method="naive"` does, for
binary, K-level, colour, class-conditional and completion sampling, on random and trained models. It
never runs the full network, and models it cannot handle (edited masks, other classes) fall back to
naive sampling under "auto"."""
import pytest
import torch

from course_lib import CourseError, GatedPixelCNN, IndependentPixelModel, PixelCNN, fit, load_dataset, occlude, sample
from course_lib.cached_sampling import make_cache, supports_cache
from course_lib.masks import raster_mask
from course_lib.sampling import pick_method

CONFIGS = {
    "gated binary": (GatedPixelCNN, dict(image_shape=(1, 8, 8), channels=8, dilations=(1, 2))),
    "gated 4-level colour": (GatedPixelCNN, dict(image_shape=(3, 6, 7), levels=4, channels=9, dilations=(1, 2))),
    "gated conditional": (GatedPixelCNN, dict(image_shape=(1, 7, 7), channels=8, dilations=(1,), num_classes=3)),
    "gated kernel 5, dilation 3": (GatedPixelCNN, dict(image_shape=(3, 5, 9), channels=6, dilations=(1, 3),
                                                       kernel_size=5, first_kernel_size=5)),
    "gated 256-level": (GatedPixelCNN, dict(image_shape=(1, 5, 5), levels=256, channels=8, dilations=(2,))),
    "pixelcnn binary": (PixelCNN, dict(image_shape=(1, 8, 8), channels=8, n_blocks=2)),
    "pixelcnn colour conditional": (PixelCNN, dict(image_shape=(3, 6, 6), levels=5, channels=12, n_blocks=2,
                                                   num_classes=2)),
}


def build(name, seed=0, std=0.3):
    """A float64 model whose weights are large enough that every pixel's distribution matters."""
    cls, config = CONFIGS[name]
    torch.manual_seed(seed)
    model = cls(**config).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
    return model


def labels_for(model, n):
    return None if model.num_classes is None else torch.arange(n) % model.num_classes


@pytest.mark.parametrize("name", CONFIGS)
def test_cached_logits_equal_the_full_forward_pass(name):
    """Feed a fixed random image to the cache position by position: every logit it returns equals
    the full forward pass's logit for that sub-pixel (float64, 1e-10)."""
    model = build(name)
    c, h, w = model.image_shape
    x = torch.randint(0, model.levels, (3, c, h, w))
    labels = labels_for(model, 3)
    with torch.no_grad():
        full = model(x, labels)
        cache = make_cache(model, x.clone(), labels)
        for i in range(h):
            cache.start_row(i)
            for j in range(w):
                for ch in range(c):
                    want = full[:, ch, i, j] if model.levels == 2 else full[:, :, ch, i, j]
                    got = cache.logits_at(j, ch)
                    assert got.shape == want.shape
                    assert torch.allclose(got, want, rtol=0, atol=1e-10), f"logits differ at {(ch, i, j)}"


@pytest.mark.parametrize("name", CONFIGS)
def test_cached_and_naive_sampling_give_identical_images(name):
    model = build(name, seed=1)
    labels = labels_for(model, 5)
    for seed, temperature in ((0, 1.0), (7, 0.6)):
        naive = sample(model, 5, labels=labels, temperature=temperature, seed=seed, method="naive")
        cached = sample(model, 5, labels=labels, temperature=temperature, seed=seed, method="cached")
        assert torch.equal(naive, cached)
        assert naive.float().std() > 0  # not a degenerate all-equal draw


@pytest.mark.parametrize("name", ["gated binary", "gated 4-level colour", "pixelcnn colour conditional"])
@pytest.mark.parametrize("region", ["bottom", "box", "per-image"])
def test_cached_completion_equals_naive_and_keeps_given_pixels(name, region):
    model = build(name, seed=2)
    n, (c, h, w) = 4, model.image_shape
    images = torch.randint(0, model.levels, (n, c, h, w))
    if region == "per-image":  # a different mask per image and per channel
        known = torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(0)) < 0.5
        given = (images, known)
    else:
        given = occlude(images, region)
    labels = labels_for(model, n)
    naive = sample(model, n, labels=labels, given=given, seed=3, method="naive")
    cached = sample(model, n, labels=labels, given=given, seed=3, method="cached")
    assert torch.equal(naive, cached)
    kept = given[1].expand(n, c, h, w)
    assert torch.equal(cached[kept], images[kept])


def test_trained_model_cached_equals_naive():
    """After training (weights no longer random), the cache still reproduces naive sampling."""
    train = load_dataset("shapes", "train", limit=256, size=12)
    torch.manual_seed(0)
    model = GatedPixelCNN(train.image_shape, channels=16, dilations=(1, 2, 1))
    fit(model, train, epochs=2, batch_size=32, lr=1e-2, device="cpu", progress=False)
    model = model.double()
    images = train.images[:6]
    for given in (None, occlude(images, "bottom")):
        naive = sample(model, 6, given=given, seed=5, method="naive")
        assert torch.equal(naive, sample(model, 6, given=given, seed=5, method="cached"))


def test_float32_cached_logits_match_within_rounding():
    torch.manual_seed(0)
    model = GatedPixelCNN().eval()  # the default model, float32
    x = torch.randint(0, 2, (2, 1, 28, 28))
    worst = 0.0
    with torch.no_grad():
        full = model(x)
    cache = make_cache(model, x.clone())
    with torch.no_grad():
        for i in range(28):
            cache.start_row(i)
            for j in range(28):
                worst = max(worst, (cache.logits_at(j) - full[:, 0, i, j]).abs().max().item())
    assert worst < 1e-4


def test_cached_sampling_never_runs_the_full_network():
    model = build("gated binary")
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    sample(model, 2, seed=0, method="cached")
    assert calls == []
    sample(model, 2, seed=0, method="naive")
    assert len(calls) == 64


def test_auto_picks_cached_only_where_it_is_exact():
    model = build("gated binary")
    assert pick_method(model) == "cached" and pick_method(build("pixelcnn binary")) == "cached"
    assert pick_method(model, "naive") == "naive"
    baseline = IndependentPixelModel.fit(load_dataset("mnist-subset", "train", limit=50))
    assert pick_method(baseline) == "naive"
    # lesson 02's bug: mask B on the first layer lets the model see the pixel it predicts
    leaky = build("pixelcnn binary")
    leaky.input_conv.mask.copy_(raster_mask(7, "B", 1, 8, 1))
    assert not supports_cache(leaky) and pick_method(leaky) == "naive"
    with pytest.raises(CourseError, match="use method='naive'"):
        sample(leaky, 1, method="cached")
    # a subclass might change forward(): the cache cannot know, so it is not used
    assert pick_method(type("MyGated", (GatedPixelCNN,), {})(image_shape=(1, 4, 4), channels=4)) == "naive"
