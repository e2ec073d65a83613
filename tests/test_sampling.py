"""Sampling: shapes and ranges, reproducibility, labels respected, given pixels kept, eval mode inside."""
import pytest
import torch

from course_lib import CourseError, GatedPixelCNN, IndependentPixelModel, PixelCNN, load_dataset, occlude, sample


def tiny(levels=2, shape=(1, 6, 6), **kw):
    torch.manual_seed(0)
    return GatedPixelCNN(shape, levels=levels, channels=8, dilations=(1,), **kw)


@pytest.mark.parametrize("levels,shape", [(2, (1, 6, 6)), (5, (1, 5, 5)), (4, (3, 4, 4))])
def test_shapes_ranges_and_seed(levels, shape):
    model = tiny(levels, shape)
    a = sample(model, 3, seed=1)
    assert a.shape == (3, *shape) and a.dtype == torch.long
    assert a.min() >= 0 and a.max() <= levels - 1
    assert torch.equal(a, sample(model, 3, seed=1))
    assert not torch.equal(a, sample(model, 3, seed=2))


def test_pixelcnn_samples_too():
    torch.manual_seed(0)
    model = PixelCNN((1, 5, 5), channels=8, n_blocks=1)
    assert sample(model, 2, seed=0).shape == (2, 1, 5, 5)


def test_sampling_follows_the_model_distribution():
    """The independent baseline has known per-pixel probabilities; sample frequencies must match them."""
    train = load_dataset("mnist-subset", "train", limit=200)
    model = IndependentPixelModel.fit(train)
    x = sample(model, 400, seed=0)
    assert (x.float().mean(0) - model.probs[1]).abs().mean() < 0.03


def test_temperature_divides_logits_before_the_softmax():
    """At a low temperature an independent model's samples become the per-pixel mode."""
    train = load_dataset("mnist-subset", "train", limit=200)
    model = IndependentPixelModel.fit(train)
    cold = sample(model, 20, temperature=0.01, seed=0)
    mode = (model.probs[1] > 0.5).long().expand_as(cold)
    clear = (model.probs[1] - 0.5).abs().expand_as(cold) > 0.05  # pixels whose mode is clear-cut
    assert torch.equal(cold[clear], mode[clear])
    hot = sample(model, 20, temperature=100.0, seed=0)  # near 1/2 everywhere
    assert 0.4 < hot.float().mean() < 0.6
    with pytest.raises(CourseError, match="temperature must be positive"):
        sample(model, 1, temperature=0)


def test_completion_keeps_given_pixels_exactly():
    model = tiny()
    images = torch.randint(0, 2, (4, 1, 6, 6))
    given = occlude(images, "bottom")
    done = sample(model, 4, given=given, seed=0)
    assert torch.equal(done[:, :, :3], images[:, :, :3])
    box = occlude(images, "box")
    done = sample(model, 4, given=box, seed=0)
    assert torch.equal(done[box[1].expand_as(images)], images[box[1].expand_as(images)])


def test_labels_are_respected_by_a_conditional_model():
    """Train a conditional Gated PixelCNN where class 0 is all-black and class 1 all-white images;
    only the label can tell the first pixel's colour, so samples must follow the labels."""
    from course_lib import fit
    from course_lib.data import ImageDataset
    labels = torch.arange(64) % 2
    data = ImageDataset("two-classes", labels.float().view(-1, 1, 1, 1).expand(64, 1, 6, 6), labels)
    model = tiny(num_classes=2)
    fit(model, data, epochs=15, batch_size=16, lr=1e-2, device="cpu", progress=False)
    want = torch.tensor([0, 1, 1, 0, 1, 0])
    x = sample(model, 6, labels=want, seed=0)
    assert torch.equal(x.flatten(1).float().mean(1).round().long(), want)
    with pytest.raises(CourseError, match="class-conditional; pass labels"):
        sample(model, 2)
    with pytest.raises(CourseError, match="unconditional"):
        sample(tiny(), 2, labels=1)
    with pytest.raises(CourseError, match="labels must lie in"):
        sample(model, 2, labels=5)


def test_sampling_uses_eval_mode_and_no_grad_and_restores_training():
    seen = {}

    class Spy(torch.nn.Module):
        image_shape, levels, num_classes = (1, 2, 2), 2, None

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x, labels=None):
            seen["training"], seen["grad"] = self.training, torch.is_grad_enabled()
            return self.w.expand(len(x), 1, 2, 2)
    spy = Spy().train()
    sample(spy, 1, seed=0)
    assert seen == {"training": False, "grad": False} and spy.training


def test_unknown_method_is_rejected():
    with pytest.raises(CourseError, match="Unknown sampling method"):
        sample(tiny(), 1, method="magic")
