"""Fine-tuning helpers: subsets stay ImageDatasets, frozen parameters never move, added conditioning
starts equal to the pretrained model, features are what the output layers read, classifiers train as
plain Adam over shuffled batches, the generative classifier is Bayes' rule, and image repair keeps the known
pixels, picks the likeliest completion and maximises the posterior. Everything runs on tiny models and
hand-made data sets, with expected values worked out by hand."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_lib import CourseError, GatedPixelCNN, IndependentPixelModel, PixelCNN, fit, sample
from course_lib.data import ImageDataset
from course_lib.finetune import (
    FeatureClassifier,
    SmallCNN,
    accuracy,
    add_conditioning,
    changed_parameters,
    class_log_likelihoods,
    complete_best_of,
    denoise,
    features,
    fit_classifier,
    freeze,
    generative_classify,
    hidden_error,
    pixel_log_probs,
    snapshot,
    unfreeze,
)

SHAPE = (1, 6, 6)


def gated(seed=0, layers=2, image_shape=SHAPE, channels=4, **kw):
    torch.manual_seed(seed)
    return GatedPixelCNN(image_shape, channels=channels, dilations=(1,) * layers, first_kernel_size=3, **kw)


def pixelcnn(seed=0, **kw):
    torch.manual_seed(seed)
    return PixelCNN(SHAPE, channels=4, n_blocks=1, first_kernel_size=3, **kw)


def toy_data(labels, binarize="stochastic", shape=(1, 3, 3), seed=0):
    """Random intensities (every image different), so an image can be traced back to its index."""
    x = torch.rand(len(labels), *shape, generator=torch.Generator().manual_seed(seed))
    return ImageDataset("toy", x, torch.tensor(labels), binarize=binarize, seed=seed)


def source_indices(part, data):
    """Index in `data` of every image of `part` (found by its unique intensities)."""
    return [(data.intensities == row).flatten(1).all(1).nonzero().item() for row in part.intensities]


def independent(p_on, levels=2):
    """An IndependentPixelModel whose pixels are on with the given probabilities (a (C, H, W) tensor)."""
    p_on = torch.as_tensor(p_on, dtype=torch.float64)
    model = IndependentPixelModel(tuple(p_on.shape), levels)
    model.log_probs.copy_(torch.stack([(1 - p_on).log(), p_on.log()]).float())
    return model


def record_modes(model):
    """Record (training, grad enabled, batch size) of every forward call of `model`."""
    seen = []
    model.register_forward_hook(
        lambda m, inputs, out: seen.append((m.training, torch.is_grad_enabled(), inputs[0].shape[0]))
    )
    return seen


# -- which parameters learn -------------------------------------------------------------------------------
def test_freeze_matches_prefixes_at_dot_boundaries_only():
    """ "layers.1" is the second gated layer, not also the eleventh ("layers.10")."""
    model = gated(layers=11, channels=2)
    trainable = freeze(model, train=["layers.1"])
    assert trainable and all(n.startswith("layers.1.") for n in trainable)
    assert trainable == [n for n, p in model.named_parameters() if p.requires_grad], "names in model order"
    assert trainable == [n for n, _ in model.named_parameters() if n.startswith("layers.1.")]
    assert freeze(model, train=["out1.weight"]) == ["out1.weight"], "a full parameter name is its own prefix"
    assert not model.layers[1].v_conv.weight.requires_grad, "a new freeze replaces the previous choice"
    both = freeze(model, train=("layers.10", "out2"))
    assert set(both) == {n for n, _ in model.named_parameters() if n.startswith(("layers.10.", "out2."))}
    assert freeze(model) == [] and not any(p.requires_grad for p in model.parameters())
    assert unfreeze(model) is model and all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("prefix", ["layers.11", "lay", "layers.1.v"])
def test_freeze_rejects_a_prefix_that_matches_no_module(prefix):
    """A typo must not silently freeze everything; the message lists the top-level modules."""
    model = gated(layers=11, channels=2)
    with pytest.raises(CourseError, match=prefix) as err:
        freeze(model, train=("out1", prefix))
    assert all(name in str(err.value) for name in ("h_in", "v_in", "layers", "out1", "out2"))
    assert all(p.requires_grad for p in model.parameters()), "nothing changes when the call fails"


def test_snapshot_is_a_detached_copy_and_changed_parameters_names_what_moved():
    model = gated()
    before = snapshot(model)
    assert set(before) == {n for n, _ in model.named_parameters()}
    assert not any(t.requires_grad for t in before.values())
    assert changed_parameters(model, before) == []
    with torch.no_grad():
        model.out1.bias[0] += 1.0
        model.layers[1].h_out.weight.mul_(2)
    assert changed_parameters(model, before) == ["layers.1.h_out.weight", "out1.bias"]
    assert not torch.equal(before["out1.bias"], model.out1.bias.detach()), "the snapshot kept the old values"


def test_frozen_parameters_stay_bit_identical_through_fit():
    """fit() hands every parameter to Adam; the frozen ones get no gradient, so Adam must skip them."""
    data = toy_data([0] * 16, shape=SHAPE)
    model = gated()
    trainable = freeze(model, train=("out1", "out2"))
    before = snapshot(model)
    fit(model, data, None, epochs=1, batch_size=8, lr=5e-3, device="cpu", weight_decay=1e-3)
    assert set(changed_parameters(model, before)) == set(trainable)


# -- class conditioning ------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [gated, pixelcnn])
def test_add_conditioning_starts_equal_to_the_pretrained_model(make):
    """With zero class biases and copied weights the conditional copy gives every label the pretrained logits;
    the original is left as it was and shares no storage with the copy."""
    model = make()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    cond = add_conditioning(model, 3)
    assert cond.num_classes == 3 and model.num_classes is None and type(cond) is type(model)
    x = torch.randint(0, 2, (4, *SHAPE), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for y in range(3):
            assert torch.equal(cond(x, torch.full((4,), y)), model(x))
    params = dict(cond.named_parameters())
    biases = [n for n in params if "class_bias" in n]
    assert biases and all(torch.equal(params[n], torch.zeros_like(params[n])) for n in biases)
    assert all(torch.equal(params[n], v) for n, v in original.items()), "every pretrained weight is copied"
    with torch.no_grad():
        for p in cond.parameters():
            p.add_(1.0)
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items()), "the original is untouched"
    with pytest.raises(CourseError):
        add_conditioning(cond, 3)


def test_add_conditioning_refuses_weights_it_cannot_copy():
    """A model carrying weights its architecture does not know cannot be copied completely."""
    model = gated()
    model.extra = nn.Linear(2, 2)
    with pytest.raises(AssertionError):
        add_conditioning(model, 2)


def test_conditioning_learns_the_classes():
    """Fine-tuned on all-off images labelled 0 and all-on images labelled 1, the conditional copy must
    learn what the label says: only the label can tell it the first pixel, so Bayes' rule then
    classifies both kinds of image correctly."""
    x = torch.cat([torch.zeros(8, 1, 3, 3), torch.ones(8, 1, 3, 3)])
    data = ImageDataset("toy", x, torch.tensor([0] * 8 + [1] * 8))
    cond = add_conditioning(gated(layers=1, image_shape=(1, 3, 3)), 2)
    fit(cond, data, None, epochs=30, batch_size=16, lr=5e-2, device="cpu", seed=0)
    images = torch.stack([torch.zeros(1, 3, 3), torch.ones(1, 3, 3)]).long()
    log_post = generative_classify(cond, images)
    assert log_post.argmax(1).tolist() == [0, 1] and (log_post.max(1).values.exp() > 0.9).all()


# -- features and classifiers --------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [gated, pixelcnn])
def test_features_are_exactly_what_the_output_layers_read(make):
    model = make().eval()
    x = torch.randint(0, 2, (3, *SHAPE), generator=torch.Generator().manual_seed(1))
    h = features(model, x)
    assert h.shape == (3, 4, 6, 6)
    act = F.elu if isinstance(model, GatedPixelCNN) else F.relu
    assert torch.equal(model.out2(act(model.out1(h))), model(x))
    h.square().sum().backward()
    first = model.layers[0].v_conv if isinstance(model, GatedPixelCNN) else model.input_conv
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0, "gradients flow through features"
    assert model.out1.weight.grad is None, "the output layers are not part of the features"
    assert not model.out1._forward_pre_hooks, "the hook is removed again"


def test_features_of_a_conditional_model_use_the_labels():
    model = gated(num_classes=2).eval()  # fresh class biases: the labels matter
    x = torch.randint(0, 2, (2, *SHAPE), generator=torch.Generator().manual_seed(2))
    zeros, ones = torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long)
    h0, h1 = features(model, x, zeros), features(model, x, ones)
    assert not torch.allclose(h0, h1)
    assert torch.equal(model.out2(F.elu(model.out1(h1))), model(x, ones))


def test_feature_classifier_averages_a_grid_of_regions():
    body = gated()
    clf = FeatureClassifier(body, num_classes=5, grid=3)
    assert (clf.head.in_features, clf.head.out_features) == (4 * 3 * 3, 5)
    x = torch.randint(0, 2, (2, *SHAPE), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        h = features(body, x)  # (2, 4, 6, 6): 3 x 3 regions of 2 x 2 positions
        pooled = h.view(2, 4, 3, 2, 3, 2).mean(dim=(3, 5)).flatten(1)
        assert torch.allclose(clf(x), clf.head(pooled), atol=1e-6)
    assert FeatureClassifier(gated(), num_classes=10).head.in_features == 4 * 4 * 4, "grid 4 by default"


def test_feature_classifier_trains_body_and_head():
    body = gated()
    clf = FeatureClassifier(body, num_classes=3, grid=2)
    x = torch.randint(0, 2, (3, *SHAPE), generator=torch.Generator().manual_seed(4))
    logits = clf(x)
    assert logits.shape == (3, 3)
    F.cross_entropy(logits, torch.arange(3)).backward()
    assert body.layers[0].v_conv.weight.grad is not None and clf.head.weight.grad is not None
    with pytest.raises(CourseError):
        FeatureClassifier(gated(num_classes=3), 3)


def small_cnn_reference(cnn, x, levels):
    """Two (3x3 conv with padding 1 -> ReLU -> 2x2 max-pool) stages and a linear layer, written out."""
    convs = [m for m in cnn.modules() if isinstance(m, nn.Conv2d)]
    (linear,) = [m for m in cnn.modules() if isinstance(m, nn.Linear)]
    assert len(convs) == 2 and all(c.kernel_size == (3, 3) for c in convs)
    h = x.double() / (levels - 1)
    for conv in convs:
        h = F.max_pool2d(F.relu(F.conv2d(h, conv.weight.double(), conv.bias.double(), padding=1)), 2)
    return F.linear(h.flatten(1), linear.weight.double(), linear.bias.double())


@pytest.mark.parametrize("shape, levels", [((1, 8, 12), 2), ((3, 12, 8), 4)])
def test_small_cnn_is_two_conv_relu_pool_stages_and_a_linear_layer(shape, levels):
    torch.manual_seed(0)
    cnn = SmallCNN(image_shape=shape, levels=levels, num_classes=5, channels=3)
    convs = [m for m in cnn.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(shape[0], 3), (3, 6)]
    x = torch.randint(0, levels, (2, *shape), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = cnn(x)
        assert out.shape == (2, 5) and out.dtype == torch.float32
        assert torch.allclose(out.double(), small_cnn_reference(cnn, x, levels), atol=1e-5)
    assert SmallCNN()(torch.zeros(2, 1, 28, 28, dtype=torch.long)).shape == (2, 10), "MNIST defaults"


class Recorder(nn.Module):
    """A linear classifier on images with levels 0..255 whose first pixel is the image's index: it records
    the indices of every batch it sees in training mode. `frozen` takes part but must never learn."""

    def __init__(self, n_pixels=4, num_classes=3):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(n_pixels, num_classes)
        self.frozen = nn.Parameter(torch.randn(num_classes), requires_grad=False)
        self.batches = []

    def forward(self, x):
        if self.training:
            self.batches.append(x[:, 0, 0, 0].tolist())
        return self.linear(x.flatten(1).float() / 255) * self.frozen.exp()


def indexed_data(n, num_classes=3):
    """n images (1, 2, 2) with 256 levels: pixel (0, 0) holds the image's index, the rest is random."""
    x = torch.rand(n, 1, 2, 2, generator=torch.Generator().manual_seed(6))
    x[:, 0, 0, 0] = torch.arange(n) / 255
    return ImageDataset("indexed", x, torch.arange(n) % num_classes, levels=256)


def test_fit_classifier_is_adam_over_freshly_shuffled_batches():
    """Replaying the batches it reports with a plain Adam loop gives the same weights and the same
    per-epoch losses; every epoch sees every image once, in a new order; frozen parameters stay put."""
    data = indexed_data(10)
    model = Recorder()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    losses = fit_classifier(model, data, epochs=3, batch_size=4, lr=0.05, seed=3)
    assert len(losses) == 3 and all(isinstance(v, float) for v in losses)
    epochs = [sum(model.batches[3 * e : 3 * e + 3], []) for e in range(3)]
    assert [len(b) for b in model.batches] == [4, 4, 2] * 3
    assert all(sorted(order) == list(range(10)) for order in epochs)
    assert epochs[0] != list(range(10)) and len({tuple(o) for o in epochs}) == 3, "reshuffled every epoch"
    assert torch.equal(model.frozen, start["frozen"]), "a parameter without requires_grad never changes"

    replay = Recorder()
    replay.load_state_dict(start)
    optimizer = torch.optim.Adam([replay.linear.weight, replay.linear.bias], lr=0.05)
    expected = []
    for e in range(3):
        total = 0.0
        for idx in model.batches[3 * e : 3 * e + 3]:
            x, y = data.images[idx], data.labels[idx]
            loss = F.cross_entropy(replay(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        expected.append(total / 10)
    assert losses == pytest.approx(expected, rel=1e-5)
    assert torch.allclose(model.linear.weight, replay.linear.weight, atol=1e-6)


def test_fit_classifier_losses_are_image_weighted_epoch_means():
    """With lr=0 nothing learns, so every epoch's loss is the cross-entropy averaged over all images,
    even when the last batch is smaller."""
    data = indexed_data(5)
    model = Recorder()
    before = snapshot(model)
    losses = fit_classifier(model, data, epochs=2, batch_size=2, lr=0.0)
    assert changed_parameters(model, before) == []
    with torch.no_grad():
        mean = F.cross_entropy(model(data.images), data.labels).item()
    assert losses == pytest.approx([mean, mean], rel=1e-6)


def test_fit_classifier_takes_one_adam_step_of_size_lr_per_batch():
    """One full batch: Adam's first step moves every weight by lr * g / (|g| + eps), against its gradient."""
    data = indexed_data(6)
    model = Recorder()
    before = model.linear.weight.detach().clone()
    loss = F.cross_entropy(model(data.images), data.labels)
    (grad,) = torch.autograd.grad(loss, [model.linear.weight])
    fit_classifier(model, data, epochs=1, batch_size=6, lr=0.03)
    step = before - model.linear.weight.detach()
    assert torch.allclose(step, 0.03 * grad / (grad.abs() + 1e-8), atol=1e-5)
    assert len(model.batches) == 2  # the gradient above, then the one batch of the epoch


def test_fit_classifier_is_reproducible_by_seed_only():
    data = indexed_data(12)
    runs = {}
    for seed, global_seed in [(0, 1), (0, 2), (7, 1)]:
        torch.manual_seed(global_seed)  # the global generator must not matter
        model = Recorder()
        runs[seed, global_seed] = (
            fit_classifier(model, data, epochs=2, batch_size=4, lr=0.05, seed=seed),
            model.batches,
        )
    assert runs[0, 1] == runs[0, 2], "same seed: the same batches and exactly the same losses"
    assert runs[7, 1][1] != runs[0, 1][1] and runs[7, 1][0] != runs[0, 1][0]


def test_fit_classifier_and_accuracy_learn_a_separable_task():
    """Two classes that differ in the top rows: a small CNN must learn it perfectly."""
    x = torch.zeros(16, 1, 8, 8)
    x[8:, :, :2] = 1
    data = ImageDataset("toy", x, torch.tensor([0] * 8 + [1] * 8))
    torch.manual_seed(0)
    cnn = SmallCNN(image_shape=(1, 8, 8), num_classes=2, channels=4)
    losses = fit_classifier(cnn, data, epochs=15, batch_size=8, lr=2e-2)
    assert losses[-1] < losses[0] and accuracy(cnn, data) == 1.0


class FirstPixelVote(nn.Module):
    """A fixed classifier: its class is the image's first pixel (levels 0..3 -> 4 classes)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return F.one_hot(x[:, 0, 0, 0].long(), 4).float() * 3 + self.dummy


def test_accuracy_on_a_hand_made_case_in_eval_mode_without_gradients():
    first = torch.tensor([0, 1, 2, 3, 3, 1, 2])
    labels = torch.tensor([0, 1, 0, 3, 2, 1, 1])  # 4 of 7 predictions right
    x = torch.zeros(7, 1, 1, 2)
    x[:, 0, 0, 0] = first / 3
    data = ImageDataset("votes", x, labels, levels=4)
    model = FirstPixelVote()
    seen = record_modes(model)
    assert accuracy(model, data, batch_size=3) == pytest.approx(4 / 7)
    assert seen == [(False, False, 3), (False, False, 3), (False, False, 1)], "eval mode, no graph, batches of 3"
    assert model.training, "the training mode is restored"
    model.eval()
    assert accuracy(model, data) == pytest.approx(4 / 7) and not model.training


# -- the generative classifier -------------------------------------------------------------------------------
P_ON = [[0.9, 0.2], [0.5, 0.5], [0.1, 0.7]]  # three classes of 1x1x2 images


def test_class_log_likelihoods_and_posterior_by_hand():
    """Bayes' rule worked out on paper: log p(x | y) of independent pixels, times a prior, normalised."""
    models = [independent(torch.tensor(p).view(1, 1, 2)) for p in P_ON]
    x = torch.tensor([[1, 0], [0, 1]]).view(2, 1, 1, 2)
    by_hand = torch.tensor(
        [
            [math.log(p[0] if a else 1 - p[0]) + math.log(p[1] if b else 1 - p[1]) for p in P_ON]
            for a, b in [(1, 0), (0, 1)]
        ],
        dtype=torch.float64,
    )
    log_lik = class_log_likelihoods(models, x)
    assert log_lik.shape == (2, 3) and torch.allclose(log_lik.double(), by_hand, atol=1e-6)
    assert torch.allclose(class_log_likelihoods(tuple(models), x), log_lik)

    uniform = generative_classify(models, x)
    assert torch.allclose(uniform.double(), by_hand - by_hand.logsumexp(1, keepdim=True), atol=1e-6)
    prior = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    joint = by_hand.exp() * prior
    posterior = generative_classify(models, x, log_prior=prior.log().float())
    assert posterior.shape == (2, 3) and torch.allclose(posterior.exp().sum(1), torch.ones(2))
    assert torch.allclose(posterior.exp().double(), joint / joint.sum(1, keepdim=True), atol=1e-6)
    skewed = generative_classify(models, x, log_prior=torch.tensor([0.0, math.log(1e-30), math.log(1e-30)]))
    assert skewed.argmax(1).tolist() == [0, 0], "a strong enough prior overrides the likelihood"


def test_class_log_likelihoods_score_in_eval_mode_and_restore_it():
    models = [independent(torch.tensor(p).view(1, 1, 2)) for p in P_ON]
    models[1].eval()
    seen = [record_modes(m) for m in models]
    class_log_likelihoods(models, torch.zeros(4, 1, 1, 2, dtype=torch.long))
    assert seen == [[(False, False, 4)]] * 3
    assert [m.training for m in models] == [True, False, True]


def test_class_log_likelihoods_of_a_conditional_model_use_each_label():
    """Column y is the model's log-likelihood with every label set to y (3-channel images, K != B)."""
    model = gated(image_shape=(3, 3, 3), channels=6, layers=1, num_classes=4)  # fresh class biases
    x = torch.randint(0, 2, (2, 3, 3, 3), generator=torch.Generator().manual_seed(7))
    log_lik = class_log_likelihoods(model, x)
    assert log_lik.shape == (2, 4) and model.training
    with torch.no_grad():
        model.eval()
        by_label = torch.stack([model.log_prob(x, torch.full((2,), y)) for y in range(4)], dim=1)
    assert torch.allclose(log_lik, by_label, atol=1e-5)
    assert not torch.allclose(log_lik[:, 0], log_lik[:, 1])
    posterior = generative_classify(model, x)
    assert torch.allclose(posterior, torch.log_softmax(by_label, 1), atol=1e-5)
    with pytest.raises(CourseError):
        generative_classify(gated(), torch.zeros(1, *SHAPE, dtype=torch.long))


def test_generative_classifier_of_a_fresh_conditional_copy_is_the_prior():
    model = add_conditioning(gated(), 3)
    x = torch.randint(0, 2, (4, *SHAPE), generator=torch.Generator().manual_seed(8))
    assert torch.allclose(generative_classify(model, x), torch.full((4, 3), -math.log(3)), atol=1e-5)


# -- repair ------------------------------------------------------------------------------------------------
def candidates_of(image, candidates, known):
    """The candidates that agree with `image` on the known pixels."""
    agree = (candidates == image) | ~known
    return candidates[agree.flatten(1).all(1)]


def check_best_of(model, images, known, k, best, labels=None, **kw):
    """`best` keeps the known pixels, and is the likeliest of the k candidates drawn for its image."""
    b = images.shape[0]
    known_all = known.expand_as(images)
    assert best.shape == images.shape and torch.equal(best[known_all], images[known_all])
    reps = None if labels is None else labels.repeat(k)
    drawn = sample(model, k * b, labels=reps, given=(images.repeat(k, 1, 1, 1), known), **kw)
    with torch.no_grad():
        for i in range(b):
            mine = candidates_of(images[i], drawn, known[0])
            assert len(mine) == k
            label = None if labels is None else labels[i].repeat(k)
            scores = model.log_prob(mine, label)
            assert torch.equal(best[i], mine[scores.argmax()])


def test_complete_best_of_keeps_known_pixels_and_picks_the_likeliest():
    model = gated()
    with torch.no_grad():
        model.out2.weight.mul_(10)
        model.out2.bias.fill_(1.0)  # confident logits, so that the temperature changes the draws
    seen = record_modes(model)
    images = torch.randint(0, 2, (3, *SHAPE), generator=torch.Generator().manual_seed(9))
    images[:, 0, 0, :3] = torch.tensor([[0, 0, 1], [0, 1, 0], [1, 0, 0]])  # the images differ on known pixels
    known = torch.ones(1, *SHAPE, dtype=torch.bool)
    known[..., 2:5, 1:4] = False
    best = complete_best_of(model, images, known, k=4, temperature=0.3, seed=5)
    assert seen and all(m[:2] == (False, False) for m in seen), "scored in eval mode without a graph"
    assert model.training, "the mode is restored"
    check_best_of(model, images, known, 4, best, temperature=0.3, seed=5)
    assert not torch.equal(best, complete_best_of(model, images, known, k=4, seed=5)), "the temperature is used"
    assert torch.equal(complete_best_of(model, images, known, k=4, temperature=0.3, seed=5), best)


def test_complete_best_of_with_a_class_conditional_model():
    model = gated(num_classes=2, seed=1).eval()  # fresh class biases: the label matters
    images = torch.randint(0, 2, (2, *SHAPE), generator=torch.Generator().manual_seed(10))
    images[:, 0, 0, 0] = torch.tensor([0, 1])
    known = torch.ones(1, *SHAPE, dtype=torch.bool)
    known[..., 3:, :] = False
    labels = torch.tensor([1, 0])
    best = complete_best_of(model, images, known, k=3, labels=labels, seed=2)
    check_best_of(model, images, known, 3, best, labels=labels, seed=2)


def test_hidden_error_by_hand():
    original = torch.zeros(2, 1, 2, 2, dtype=torch.long)
    repaired = original.clone()
    repaired[0, 0, 0, 0] = 1  # a known pixel: does not count
    repaired[0, 0, 1, 1] = 1  # hidden
    known = torch.tensor([[True, True], [False, False]]).view(1, 1, 2, 2)
    assert hidden_error(repaired, original, known).tolist() == [0.5, 0.0]
    per_image = torch.tensor([[[[True, False], [False, False]]], [[[True, True], [True, False]]]])
    repaired[1, 0, 1, 1] = 1
    assert hidden_error(repaired, original, per_image).tolist() == pytest.approx([1 / 3, 1.0])


def test_pixel_log_probs_by_hand():
    p_on = torch.tensor([[0.9, 0.2], [0.6, 0.3]]).view(1, 2, 2)
    x = torch.tensor([[1, 1], [0, 1]]).view(1, 1, 2, 2)
    expected = torch.tensor([[0.9, 0.2], [0.4, 0.3]]).log().view(1, 1, 2, 2)
    lp = pixel_log_probs(independent(p_on), x)
    assert lp.shape == (1, 1, 2, 2) and torch.allclose(lp, expected, atol=1e-6)
    with pytest.raises(CourseError, match="binary"):
        pixel_log_probs(gated(levels=3), torch.zeros(1, *SHAPE, dtype=torch.long))


def test_pixel_log_probs_sum_to_the_log_likelihood():
    """Also for a bfloat16 model (computed in float32 like log_prob, not in bfloat16) and a conditional one."""
    x = torch.randint(0, 2, (2, *SHAPE), generator=torch.Generator().manual_seed(11))
    model = gated().to(torch.bfloat16)
    with torch.no_grad():
        model.out2.weight.mul_(20)  # logits of a few nats, where bfloat16 arithmetic would be visibly off
        lp, whole = pixel_log_probs(model, x), model.log_prob(x)
    assert lp.dtype == whole.dtype == torch.float32
    assert torch.allclose(lp.flatten(1).sum(1), whole, rtol=0, atol=1e-4)
    cond = gated(num_classes=2)
    labels = torch.tensor([1, 0])
    assert torch.allclose(pixel_log_probs(cond, x, labels).flatten(1).sum(1), cond.log_prob(x, labels))


# log p(off) - log p(on) of the 8 pixels of a 1x2x4 independent model; the first pixel prefers "on"
LOG_ODDS_OFF = torch.tensor([-1.0, 0.1, 0.5, 1.0, 1.2, 2.0, 3.0, 5.0])


def model_of_mostly_off_pixels():
    return independent(torch.sigmoid(-LOG_ODDS_OFF).view(1, 2, 4))


def noisy_pair():
    """An all-on image and an all-off image."""
    return torch.stack([torch.ones(1, 2, 4), torch.zeros(1, 2, 4)]).long()


@pytest.mark.parametrize(
    "flip_prob, on_pixels_kept, first_pixel_on",
    [
        (1e-4, 8, False),  # flips are so rare that the observation wins everywhere
        (0.3, 3, True),  # a flip costs log(0.7 / 0.3) = 0.85 nats: pixels with log-odds above that are repaired
        (0.45, 2, True),  # log(0.55 / 0.45) = 0.2 nats
    ],
)
def test_denoise_repairs_exactly_the_pixels_worth_the_observation_cost(flip_prob, on_pixels_kept, first_pixel_on):
    """For independent pixels the MAP repair flips a pixel iff its log-odds exceed log((1 - p) / p)."""
    model = model_of_mostly_off_pixels()
    noisy = noisy_pair()
    repaired = denoise(model, noisy, flip_prob, candidates=8, sweeps=2)
    assert repaired.shape == noisy.shape and repaired.dtype == torch.long
    on = repaired.flatten(1)
    assert on[0].tolist() == [1] * on_pixels_kept + [0] * (8 - on_pixels_kept)
    assert on[1].tolist() == [int(first_pixel_on)] + [0] * 7
    assert torch.equal(noisy, noisy_pair()), "the noisy images are not changed in place"


def test_denoise_tries_the_most_surprising_pixels_first():
    """Two candidates per sweep: the two least likely pixels of the current image, one sweep after another."""
    model = model_of_mostly_off_pixels()
    noisy = noisy_pair()[:1]
    assert denoise(model, noisy, 0.3, candidates=2, sweeps=1).flatten().tolist() == [1] * 6 + [0] * 2
    assert denoise(model, noisy, 0.3, candidates=2, sweeps=2).flatten().tolist() == [1] * 4 + [0] * 4


def test_denoise_keeps_only_flips_that_raise_the_posterior():
    """With flip_prob 0.5 and a model indifferent to every pixel no flip raises the posterior: a tie is
    not a gain, so the image stays as it was."""
    noisy = torch.randint(0, 2, (2, 1, 2, 4), generator=torch.Generator().manual_seed(12))
    model = independent(torch.full((1, 2, 4), 0.5))
    assert torch.equal(denoise(model, noisy, 0.5, candidates=8, sweeps=1), noisy)


def test_denoise_never_lowers_the_posterior_and_restores_the_mode():
    model = gated(layers=1)
    with torch.no_grad():
        model.out2.weight.mul_(10)
        model.out2.bias.fill_(-2.0)  # a model that likes blank images, so that some repairs pay
    seen = record_modes(model)
    noisy = torch.randint(0, 2, (3, *SHAPE), generator=torch.Generator().manual_seed(13))
    flip = 0.2
    repaired = denoise(model, noisy, flip, candidates=12, sweeps=2)
    assert model.training and seen and all(m[:2] == (False, False) for m in seen)
    penalty = math.log((1 - flip) / flip)
    with torch.no_grad():
        model.eval()

        def posterior(x):
            return model.log_prob(x) - penalty * (x != noisy).flatten(1).sum(1)

        assert (posterior(repaired) >= posterior(noisy) - 1e-5).all()
    assert (repaired != noisy).flatten(1).any(1).all(), "every image has pixels worth repairing"
    assert (repaired.flatten(1).sum(1) < noisy.flatten(1).sum(1)).all(), "towards the model's blank images"
    assert torch.equal(denoise(model, noisy, 1e-4, candidates=12, sweeps=1), noisy), "rare flips: trust the data"
