"""Fine-tuning helpers: subsets stay ImageDatasets, frozen parameters never move, added conditioning
starts equal to the pretrained model, features are what the output layers read, the generative
classifier is a proper posterior, and best-of completion keeps the known pixels and the likeliest candidate."""
import math

import pytest
import torch
import torch.nn.functional as F

from course_lib import (CourseError, GatedPixelCNN, IndependentPixelModel, PixelCNN, evaluate, fit, load_dataset,
                        sample)
from course_lib.data import ImageDataset
from course_lib.finetune import (FeatureClassifier, SmallCNN, accuracy, add_conditioning, changed_parameters,
                                 class_log_likelihoods, complete_best_of, denoise, features, fit_classifier, freeze,
                                 generative_classify, hidden_error, per_class, pixel_log_probs, select_classes,
                                 snapshot, subset, unfreeze)


def gated(seed=0, **kw):
    torch.manual_seed(seed)
    return GatedPixelCNN(channels=8, dilations=(1, 2), **kw)


# -- data ----------------------------------------------------------------------------------------------
def test_subset_copies_images_exactly_and_stays_an_image_dataset():
    """A subset of a stochastically binarized set must hold the same binary images, not a new draw."""
    data = load_dataset("mnist-subset", "train", binarize="stochastic", limit=200)
    part = subset(data, [5, 0, 7])
    assert isinstance(part, ImageDataset) and len(part) == 3
    assert torch.equal(part.images, data.images[[5, 0, 7]]) and torch.equal(part.labels, data.labels[[5, 0, 7]])
    assert (part.name, part.levels, part.binarize, part.image_shape) == (data.name, 2, "stochastic", (1, 28, 28))
    assert len(data) == 200, "the original data set is untouched"
    mask = data.labels == 3
    assert torch.equal(subset(data, mask).labels, data.labels[mask])
    assert evaluate(IndependentPixelModel.fit(part), part)["n_images"] == 3  # the library accepts it


def test_select_classes_and_per_class():
    data = load_dataset("mnist-subset", "train")
    high = select_classes(data, range(5, 10))
    assert len(high) == 2000 and high.labels.min() == 5
    few = per_class(high, 3, seed=1)
    assert torch.bincount(few.labels, minlength=10).tolist() == [0] * 5 + [3] * 5
    assert torch.equal(few.images, per_class(high, 3, seed=1).images), "the draw is fixed by the seed"
    assert not torch.equal(few.images, per_class(high, 3, seed=2).images)
    with pytest.raises(CourseError):
        per_class(high, 401)
    with pytest.raises(CourseError):
        select_classes(high, [0])


# -- which parameters learn -------------------------------------------------------------------------------
def test_freeze_chooses_parameters_by_module_name():
    model = gated()
    trainable = freeze(model, train=("layers.1", "out2"))
    assert trainable and all(n.startswith(("layers.1.", "out2.")) for n in trainable)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(trainable)
    with pytest.raises(CourseError, match="layers.7"):
        freeze(model, train=("layers.7",))  # a typo must not silently freeze everything
    unfreeze(model)
    assert all(p.requires_grad for p in model.parameters())


def test_frozen_parameters_stay_bit_identical_through_fit(tiny_binary):
    """fit() hands every parameter to Adam; the frozen ones get no gradient, so Adam must skip them."""
    train, test = tiny_binary
    model = gated()
    trainable = freeze(model, train=("out1", "out2"))
    before = snapshot(model)
    fit(model, train, test, epochs=1, batch_size=32, lr=5e-3, device="cpu", weight_decay=1e-3)
    assert set(changed_parameters(model, before)) == set(trainable)


# -- class conditioning ------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: gated(), lambda: PixelCNN((1, 28, 28), channels=8, n_blocks=2)])
def test_add_conditioning_starts_equal_to_the_pretrained_model(make):
    """With zero class biases the conditional copy gives every label the pretrained log-likelihood."""
    model = make()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    cond = add_conditioning(model, 10)
    assert cond.num_classes == 10 and model.num_classes is None
    x = torch.randint(0, 2, (4, 1, 28, 28))
    for y in (0, 3, 9):
        assert torch.equal(cond.log_prob(x, torch.full((4,), y)), model.log_prob(x))
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items()), "the original is untouched"
    biases = [n for n, _ in cond.named_parameters() if "class_bias" in n]
    assert biases and all(cond.get_parameter(n).abs().sum() == 0 for n in biases)
    with pytest.raises(CourseError):
        add_conditioning(cond, 10)


def test_conditioning_learns_the_classes():
    """Fine-tuned on all-off images labelled 0 and all-on images labelled 1, the conditional copy must
    learn what the label says: only the label can tell it the first pixel, so Bayes' rule then
    classifies both kinds of image correctly."""
    x = torch.cat([torch.zeros(16, 1, 6, 6), torch.ones(16, 1, 6, 6)])
    data = ImageDataset("toy", x, torch.tensor([0] * 16 + [1] * 16))
    torch.manual_seed(0)
    cond = add_conditioning(GatedPixelCNN((1, 6, 6), channels=8, dilations=(1,)), 2)
    fit(cond, data, None, epochs=40, batch_size=32, lr=2e-2, device="cpu", seed=0)
    images = torch.stack([torch.zeros(1, 6, 6), torch.ones(1, 6, 6)]).long()
    log_post = generative_classify(cond, images)
    assert log_post.argmax(1).tolist() == [0, 1] and (log_post.max(1).values.exp() > 0.9).all()


# -- features and classifiers --------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: gated(), lambda: PixelCNN((1, 28, 28), channels=8, n_blocks=2)])
def test_features_are_what_the_output_layers_read(make):
    model = make().eval()
    x = torch.randint(0, 2, (3, 1, 28, 28))
    h = features(model, x)
    assert h.shape == (3, 8, 28, 28)
    act = F.elu if isinstance(model, GatedPixelCNN) else F.relu
    assert torch.allclose(model.out2(act(model.out1(h))), model(x))


def test_feature_classifier_trains_body_and_head():
    body = gated()
    clf = FeatureClassifier(body, num_classes=10)
    x = torch.randint(0, 2, (5, 1, 28, 28))
    assert clf(x).shape == (5, 10)
    F.cross_entropy(clf(x), torch.arange(5)).backward()
    assert body.layers[0].v_conv.weight.grad is not None and clf.head.weight.grad is not None
    with pytest.raises(CourseError):
        FeatureClassifier(gated(num_classes=3), 3)


def test_fit_classifier_and_accuracy_learn_a_separable_task():
    """Two classes that differ in the top row: a small CNN must learn it perfectly."""
    x = torch.zeros(40, 1, 28, 28)
    x[20:, :, :4] = 1
    data = ImageDataset("toy", x, torch.tensor([0] * 20 + [1] * 20))
    torch.manual_seed(0)
    cnn = SmallCNN()
    losses = fit_classifier(cnn, data, epochs=15, batch_size=8, lr=1e-2)
    assert losses[-1] < losses[0] and accuracy(cnn, data) == 1.0


# -- the generative classifier -------------------------------------------------------------------------------
def test_generative_classifier_is_bayes_rule_on_a_constructed_case():
    """Independent-pixel models of 'mostly off' and 'mostly on' images: posteriors sum to one, pick the
    right class, and equal the softmax of the log-likelihoods under a uniform prior."""
    off = ImageDataset("off", torch.zeros(10, 1, 4, 4), torch.zeros(10))
    on = ImageDataset("on", torch.ones(10, 1, 4, 4), torch.ones(10))
    models = [IndependentPixelModel.fit(off), IndependentPixelModel.fit(on)]
    x = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4), torch.zeros(1, 4, 4)]).long()
    x[2, 0, 0, :3] = 1  # 3 of 16 pixels on: still far more likely under "off"
    log_post = generative_classify(models, x)
    assert log_post.shape == (3, 2)
    assert torch.allclose(log_post.exp().sum(1), torch.ones(3))
    assert log_post.argmax(1).tolist() == [0, 1, 0]
    log_lik = class_log_likelihoods(models, x)
    p_on = 11 / 12  # pseudo-count 1: (10 + 1) / (10 + 2)
    assert log_lik[0, 1].item() == pytest.approx(16 * math.log(1 - p_on), rel=1e-5)
    assert torch.allclose(log_post, torch.log_softmax(log_lik, 1))
    skewed = generative_classify(models, x, log_prior=torch.tensor([math.log(1e-30), 0.0]))
    assert skewed.argmax(1).tolist() == [1, 1, 1], "a strong enough prior overrides the likelihood"


def test_generative_classifier_with_a_conditional_model():
    model = add_conditioning(gated(), 3)
    x = torch.randint(0, 2, (4, 1, 28, 28))
    log_post = generative_classify(model, x)
    assert log_post.shape == (4, 3) and torch.allclose(log_post.exp().sum(1), torch.ones(4))
    # before fine-tuning every class has the same likelihood: the posterior is the uniform prior
    assert torch.allclose(log_post, torch.full((4, 3), -math.log(3)), atol=1e-5)
    with pytest.raises(CourseError):
        generative_classify(gated(), x)


# -- repair ------------------------------------------------------------------------------------------------
def test_complete_best_of_keeps_known_pixels_and_picks_the_likeliest():
    model = gated().eval()
    images = torch.randint(0, 2, (3, 1, 28, 28))
    known = torch.ones(1, 1, 28, 28, dtype=torch.bool)
    known[..., 10:14, 10:14] = False
    best = complete_best_of(model, images, known, k=3, seed=0)
    assert best.shape == images.shape
    assert torch.equal(best[known.expand_as(best)], images[known.expand_as(images)])
    # the chosen completion is the likeliest of the k candidates (the same draw, rebuilt by hand)
    candidates = sample(model, 9, given=(images.repeat(3, 1, 1, 1), known), seed=0)
    with torch.no_grad():
        best_of_three = model.log_prob(candidates).view(3, 3).max(0).values
        assert torch.allclose(model.log_prob(best), best_of_three)
    err = hidden_error(best, images, known)
    assert err.shape == (3,) and ((err >= 0) & (err <= 1)).all()
    assert hidden_error(images, images, known).sum() == 0


def test_denoise_removes_a_stray_pixel_and_never_lowers_the_posterior():
    """A model of blank images: a single stray 'on' pixel costs far more than one disagreement, so MAP
    repair removes it; the repaired image's log-posterior is never below the noisy image's."""
    blank = ImageDataset("blank", torch.zeros(8, 1, 6, 6), torch.zeros(8))
    torch.manual_seed(0)
    model = GatedPixelCNN((1, 6, 6), channels=8, dilations=(1,))
    fit(model, blank, None, epochs=20, batch_size=8, lr=2e-2, device="cpu", seed=0)
    noisy = torch.zeros(2, 1, 6, 6, dtype=torch.long)
    noisy[0, 0, 2, 3] = 1
    flip = 0.05
    repaired = denoise(model, noisy, flip, candidates=36, sweeps=1)
    assert repaired.shape == noisy.shape and repaired.dtype == torch.long
    assert repaired.sum() == 0, "the stray pixel is removed and the blank image stays blank"
    penalty = math.log((1 - flip) / flip)
    with torch.no_grad():
        posterior = lambda x: model.log_prob(x) - penalty * (x != noisy).flatten(1).sum(1)
        assert (posterior(repaired) >= posterior(noisy)).all()
    lp = pixel_log_probs(model, noisy)
    assert lp.shape == noisy.shape and torch.allclose(lp.flatten(1).sum(1), model.log_prob(noisy))
