"""Cached sampling is exact: for the same inputs the cache's logits equal the full forward pass's
(float64), and with the same seed `method="cached"` returns the very images `method="naive"` does, for
binary, K-level, colour, class-conditional and completion sampling, on random and trained models. It
never runs the full network, and models it cannot handle (edited masks, other classes) fall back to
naive sampling under "auto"."""

import pytest
import torch

from course_lib import (
    CourseError,
    GatedPixelCNN,
    IndependentPixelModel,
    MaskedConv2d,
    PixelCNN,
    fit,
    load_dataset,
    occlude,
    sample,
)
from course_lib.cached_sampling import GatedPixelCNNCache, PixelCNNCache, make_cache, supports_cache
from course_lib.causality import dependency_matrix
from course_lib.masks import cut_channel_links, raster_mask
from course_lib.models import ResidualBlock
from course_lib.sampling import pick_method

# Tiny models, chosen so that every part of each cache matters: two layers or more (the vertical stack
# of a layer feeds the next one), dilation and kernels larger than 3 in both stacks, a first kernel of
# another size than the others, colour (masks between channels), 4, 5 and 256 levels, class labels, and
# the discretized logistic mixture head.
CONFIGS = {
    "gated binary": (GatedPixelCNN, dict(image_shape=(1, 5, 6), channels=4, dilations=(1, 2))),
    "gated 4-level colour": (GatedPixelCNN, dict(image_shape=(3, 4, 5), levels=4, channels=6, dilations=(1, 2))),
    "gated conditional": (GatedPixelCNN, dict(image_shape=(1, 5, 5), channels=4, dilations=(1, 1), num_classes=3)),
    "gated kernel 5, first 3, dilation 3": (
        GatedPixelCNN,
        dict(image_shape=(1, 7, 8), channels=4, dilations=(1, 3), kernel_size=5, first_kernel_size=3),
    ),
    "gated kernel 5, first 3, no dilation": (  # the row caches' zero columns come from a layer, not the first one
        GatedPixelCNN,
        dict(image_shape=(1, 5, 6), channels=4, dilations=(1, 1), kernel_size=5, first_kernel_size=3),
    ),
    "gated kernel 3, first 5, colour": (
        GatedPixelCNN,
        dict(image_shape=(3, 4, 4), levels=3, channels=3, dilations=(2, 1), first_kernel_size=5),
    ),
    "gated 256-level": (GatedPixelCNN, dict(image_shape=(1, 3, 4), levels=256, channels=4, dilations=(2,))),
    "pixelcnn binary": (PixelCNN, dict(image_shape=(1, 5, 5), channels=4, n_blocks=2)),
    "pixelcnn colour conditional": (
        PixelCNN,
        dict(image_shape=(3, 4, 4), levels=5, channels=6, n_blocks=2, num_classes=2),
    ),
    "pixelcnn kernel 5, first 3, dilated": (
        PixelCNN,
        dict(image_shape=(1, 6, 7), channels=4, n_blocks=2, kernel_size=5, first_kernel_size=3),
    ),
    "gated logistic 256-level": (
        GatedPixelCNN,
        dict(image_shape=(1, 3, 4), levels=256, channels=4, dilations=(2,), head="logistic", mixtures=3),
    ),
    "gated logistic colour conditional": (
        GatedPixelCNN,
        dict(image_shape=(3, 4, 4), levels=6, channels=6, dilations=(1, 2), num_classes=2, head="logistic", mixtures=2),
    ),
    "pixelcnn logistic colour": (
        PixelCNN,
        dict(image_shape=(3, 4, 4), levels=5, channels=6, n_blocks=2, head="logistic", mixtures=2),
    ),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one thread avoids the overhead of intra-op threads (large on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name, seed=0, std=0.3):
    """A float64 model whose weights are large enough that every pixel's distribution matters."""
    cls, config = CONFIGS[name]
    torch.manual_seed(seed)
    model = cls(**config)
    if "dilated" in name:  # PixelCNN's constructor has no dilation; its blocks (and the cache) support it
        c, channels = model.image_shape[0], config["channels"]
        model.blocks[1] = ResidualBlock(channels, c, config["kernel_size"], dilation=2)
    model = model.double().eval()
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
    x = torch.randint(0, model.levels, (2, c, h, w), generator=torch.Generator().manual_seed(0))
    labels = labels_for(model, 2)
    with torch.no_grad():
        full = model(x, labels)
        cache = make_cache(model, x.clone(), labels)
        for i in range(h):
            cache.start_row(i)
            for j in range(w):
                for ch in range(c):
                    want = full[:, ch, i, j] if model.levels == 2 else full[:, :, ch, i, j]
                    got = cache.logits_at(j, ch)
                    assert got.shape == want.shape and got.dtype == torch.float64
                    assert torch.allclose(got, want, rtol=0, atol=1e-10), f"logits differ at {(ch, i, j)}"


@pytest.mark.parametrize("name", CONFIGS)
def test_cached_and_naive_sampling_give_identical_images(name):
    model = build(name, seed=1)
    labels = labels_for(model, 4)
    for seed, temperature in ((0, 1.0), (7, 0.6)):
        naive = sample(model, 4, labels=labels, temperature=temperature, seed=seed, method="naive")
        cached = sample(model, 4, labels=labels, temperature=temperature, seed=seed, method="cached")
        assert torch.equal(naive, cached)
        assert naive.float().std() > 0  # not a degenerate all-equal draw


@pytest.mark.parametrize("name", ["gated binary", "gated 4-level colour", "pixelcnn colour conditional"])
@pytest.mark.parametrize("region", ["bottom", "box", "per-image"])
def test_cached_completion_equals_naive_and_keeps_given_pixels(name, region):
    model = build(name, seed=2)
    n, (c, h, w) = 3, model.image_shape
    images = torch.randint(0, model.levels, (n, c, h, w), generator=torch.Generator().manual_seed(1))
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


@pytest.mark.parametrize("name", ["gated binary", "pixelcnn binary"])
def test_completion_with_given_rows_in_the_middle(name):
    """Rows that are entirely given, between and after sampled rows, are read correctly by later rows."""
    model = build(name, seed=3)
    n, (c, h, w) = 3, model.image_shape
    images = torch.randint(0, 2, (n, c, h, w), generator=torch.Generator().manual_seed(2))
    known = torch.zeros(1, 1, h, w, dtype=torch.bool)
    known[..., 1:3, :] = True
    known[..., h - 1, :] = True
    naive = sample(model, n, given=(images, known), seed=4, method="naive")
    assert torch.equal(naive, sample(model, n, given=(images, known), seed=4, method="cached"))


def test_gated_cache_does_no_per_pixel_work_on_given_rows(monkeypatch):
    """Gated PixelCNN: later rows read only the vertical stack, so fully given rows need no `logits_at`."""
    model = build("gated binary")
    c, h, w = model.image_shape
    calls = []
    original = GatedPixelCNNCache.logits_at
    monkeypatch.setattr(GatedPixelCNNCache, "logits_at", lambda self, j, ch=0: calls.append(1) or original(self, j, ch))
    images = torch.zeros(2, c, h, w, dtype=torch.long)
    sample(model, 2, given=occlude(images, "bottom"), seed=0, method="cached")
    assert len(calls) == (h - h // 2) * w * c
    # a PixelCNN must compute every layer at every pixel, given or not
    assert PixelCNNCache.skip_given_rows is False


def test_trained_model_cached_equals_naive():
    """After training (weights no longer random), the cache still reproduces naive sampling."""
    train = load_dataset("shapes", "train", limit=64, size=8)
    torch.manual_seed(0)
    model = GatedPixelCNN(train.image_shape, channels=8, dilations=(1, 2))
    fit(model, train, epochs=1, batch_size=16, lr=1e-2, device="cpu", progress=False)
    model = model.double()
    images = train.images[:4]
    for given in (None, occlude(images, "bottom")):
        naive = sample(model, 4, given=given, seed=5, method="naive")
        assert torch.equal(naive, sample(model, 4, given=given, seed=5, method="cached"))


def test_float32_cached_logits_match_within_rounding():
    """The default architecture (5 dilated layers, 7x7 first kernel) in float32, on a smaller image."""
    torch.manual_seed(0)
    model = GatedPixelCNN(image_shape=(1, 12, 12)).eval()
    x = torch.randint(0, 2, (2, 1, 12, 12))
    worst = 0.0
    with torch.no_grad():
        full = model(x)
        cache = make_cache(model, x.clone())
        for i in range(12):
            cache.start_row(i)
            for j in range(12):
                got = cache.logits_at(j)
                assert got.dtype == torch.float32
                worst = max(worst, (got - full[:, 0, i, j]).abs().max().item())
    assert worst < 1e-4


def test_cached_sampling_never_runs_the_full_network():
    model = build("gated binary")
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    sample(model, 2, seed=0, method="cached")
    assert calls == []
    sample(model, 2, seed=0, method="naive")
    assert len(calls) == 30


def test_auto_picks_cached_only_where_it_is_exact():
    for name in CONFIGS:
        assert supports_cache(build(name)) and pick_method(build(name)) == "cached", name
    assert pick_method(build("gated binary"), "naive") == "naive"
    assert (
        not supports_cache(IndependentPixelModel((1, 3, 3)))
        and pick_method(IndependentPixelModel((1, 3, 3))) == "naive"
    )
    # lesson 02's bug: mask B on the first layer lets the model see the pixel it predicts
    leaky = build("pixelcnn binary")
    leaky.input_conv.mask.copy_(raster_mask(7, "B", 1, 4, 1))
    assert not supports_cache(leaky) and pick_method(leaky) == "naive"
    with pytest.raises(CourseError, match="use method='naive'"):
        sample(leaky, 1, method="cached")
    # a subclass might change forward(): the cache cannot know, so it is not used
    subclass = type("MyGated", (GatedPixelCNN,), {})(image_shape=(1, 4, 4), channels=4)
    assert not supports_cache(subclass) and pick_method(subclass) == "naive"
    assert not supports_cache(type("MyPixelCNN", (PixelCNN,), {})(image_shape=(1, 4, 4), channels=4, n_blocks=1))


@pytest.mark.parametrize("name", ["gated 4-level colour", "pixelcnn colour conditional"])
def test_a_mask_with_an_added_link_disables_the_cache(name):
    """Opening one link that the order forbids, in any masked layer (the first layers, every block, the
    outputs), makes the model unsupported: cached activations could go stale."""
    layers = [(n, m) for n, m in build(name).named_modules() if isinstance(m, MaskedConv2d)]
    assert len(layers) >= 6
    for layer_name, _ in layers:
        model = build(name)
        mask = model.get_submodule(layer_name).mask
        closed = (mask == 0).nonzero()
        assert len(closed), layer_name
        mask[tuple(closed[-1])] = 1
        assert not supports_cache(model) and pick_method(model) == "naive", layer_name
        with pytest.raises(CourseError, match="intact"):
            make_cache(model, torch.zeros(1, *model.image_shape, dtype=torch.long), labels_for(model, 1))


@pytest.mark.parametrize("name", ["gated 4-level colour", "pixelcnn colour conditional"])
def test_a_mask_with_links_removed_keeps_the_cache_exact(name):
    """Closing links keeps a model causal, and the cache computes with the masks the model holds: for a
    link closed in each masked layer in turn, cached sampling still equals naive sampling."""
    layers = [n for n, m in build(name).named_modules() if isinstance(m, MaskedConv2d)]
    for k, layer_name in enumerate(layers):
        model = build(name, seed=1)
        mask = model.get_submodule(layer_name).mask
        open_ = (mask == 1).nonzero()
        mask[tuple(open_[len(open_) // 2])] = 0
        assert supports_cache(model), layer_name
        labels = labels_for(model, 3)
        naive = sample(model, 3, labels=labels, seed=k, method="naive")
        assert torch.equal(naive, sample(model, 3, labels=labels, seed=k, method="cached")), layer_name


@pytest.mark.parametrize(
    "name", ["gated 4-level colour", "pixelcnn colour conditional", "gated logistic colour conditional"]
)
def test_cut_channel_links_removes_exactly_the_links_inside_a_pixel(name):
    """After cut_channel_links no sub-pixel depends on its own pixel (whose earlier channels it saw before);
    a Gated PixelCNN keeps every link to earlier pixels (PixelCNN's ReLUs make its Jacobian depend on the
    input); cached sampling stays exact."""
    whole, cut = build(name), cut_channel_links(build(name))
    c, h, w = whole.image_shape
    pixel = torch.arange(c * h * w) // c  # dependency matrices index sub-pixels in raster-then-channel order
    earlier = pixel[None, :] < pixel[:, None]
    same_pixel_before = (pixel[None, :] == pixel[:, None]) & torch.ones(c * h * w, c * h * w, dtype=torch.bool).tril(-1)
    dep_whole, dep_cut = dependency_matrix(whole), dependency_matrix(cut)
    assert dep_whole[same_pixel_before].any() and not (dep_cut & ~earlier).any()
    if isinstance(whole, GatedPixelCNN):  # smooth activations: no unit is dead at one input and alive at another
        assert dep_whole[same_pixel_before].all() and torch.equal(dep_cut, dep_whole & earlier)
    labels = labels_for(cut, 3)
    naive = sample(cut, 3, labels=labels, seed=2, method="naive")
    assert torch.equal(naive, sample(cut, 3, labels=labels, seed=2, method="cached"))


def test_first_layers_must_have_the_causal_mask_types():
    """A first layer with the (canonical) mask of another type sees the pixel it predicts: not supported."""
    model = build("gated binary")
    model.v_in = MaskedConv2d(1, 4, 7, "V").double()  # includes the current row
    assert not supports_cache(model)
    model = build("gated binary")
    model.h_in = MaskedConv2d(1, 4, (1, 7), "B", 1).double()  # includes the current pixel
    assert not supports_cache(model)
    model = build("pixelcnn binary")
    model.input_conv = MaskedConv2d(1, 4, 7, "B", 1).double()
    assert not supports_cache(model)


def test_make_cache_rejects_unsupported_models():
    with pytest.raises(CourseError, match="not this IndependentPixelModel; use method='naive'"):
        make_cache(IndependentPixelModel((1, 3, 3)), torch.zeros(1, 1, 3, 3, dtype=torch.long))
    assert isinstance(make_cache(build("gated binary"), torch.zeros(1, 1, 5, 6, dtype=torch.long)), GatedPixelCNNCache)
    assert isinstance(make_cache(build("pixelcnn binary"), torch.zeros(1, 1, 5, 5, dtype=torch.long)), PixelCNNCache)


@pytest.mark.parametrize("name", ["gated binary", "gated 4-level colour"])
def test_gated_per_pixel_step_writes_into_buffers_of_the_right_shape(name):
    """Each per-pixel operation writes into a buffer the cache made once (`out=`): every buffer already has
    the shape of what is written into it, so none is resized (PyTorch warns when it resizes an `out=`)."""
    import warnings

    model = build(name)
    c, h, w = model.image_shape
    x = torch.randint(0, model.levels, (3, c, h, w), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")  # a resized `out=` buffer fails here
        cache = make_cache(model, x)
        for i in range(h):
            cache.start_row(i)
            for j in range(w):
                for ch in range(c):
                    cache.logits_at(j, ch)
