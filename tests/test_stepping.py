"""The stepper is the sampling loop opened up: stepping through a whole image with a seed must give
exactly the images `sample(..., seed=...)` gives (same distributions, same draws, same order), and each
step must report the distribution it drew from."""

import pytest
import torch

from course_lib import CourseError, GatedPixelCNN, occlude, sample
from course_lib.sampling import distribution_at
from course_lib.stepping import AncestralStepper


def tiny(levels=2, shape=(1, 6, 6), **kw):
    torch.manual_seed(0)
    return GatedPixelCNN(shape, levels=levels, channels=8, dilations=(1,), **kw)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_stepping_a_whole_image_equals_sample(seed):
    """The property the lesson's widget relies on: a binary unconditional model, one image, a seed."""
    model = tiny()
    stepper = AncestralStepper(model, 1, seed=seed)
    taken = stepper.run()
    assert taken == 36 and stepper.done and stepper.forward_passes == 36
    assert torch.equal(stepper.images, sample(model, 1, seed=seed, method="naive"))


@pytest.mark.parametrize(
    "levels,shape,kw", [(2, (1, 6, 6), {}), (4, (3, 4, 4), {}), (2, (1, 5, 5), {"num_classes": 3})]
)
def test_batches_colour_labels_and_temperature_equal_sample_too(levels, shape, kw):
    model = tiny(levels, shape, **kw)
    labels = torch.tensor([0, 2, 1]) if kw else None
    stepper = AncestralStepper(model, 3, temperature=0.7, labels=labels, seed=3)
    stepper.run()
    assert torch.equal(stepper.images, sample(model, 3, temperature=0.7, labels=labels, seed=3, method="naive"))


def test_completion_skips_given_sub_pixels_and_equals_sample():
    model = tiny()
    images = torch.randint(0, 2, (2, 1, 6, 6), generator=torch.Generator().manual_seed(0))
    given = occlude(images, "bottom")
    stepper = AncestralStepper(model, 2, given=given, seed=0)
    assert stepper.position == 18, "the given top half is skipped without a forward pass"
    assert stepper.run() == 18 and stepper.forward_passes == 18
    done = stepper.images
    assert torch.equal(done[:, :, :3], images[:, :, :3])
    assert torch.equal(done, sample(model, 2, given=given, seed=0, method="naive"))


def test_each_step_reports_the_distribution_it_drew_from():
    model = tiny(levels=3, shape=(1, 4, 4))
    stepper = AncestralStepper(model, 2, seed=0)
    for expected_index in range(5):
        x_before = stepper.images
        peek = stepper.predict().clone()
        assert torch.equal(stepper.predict(), peek), "predict() is cached and draws nothing"
        step = stepper.step()
        assert (step.index, (step.c, step.i, step.j)) == (expected_index, stepper.site(expected_index))
        want = distribution_at(model(x_before), step.i, step.j, step.c)
        assert step.probs.shape == (2, 3) and torch.allclose(step.probs, want, atol=1e-6)
        assert torch.equal(step.value, stepper.images[:, step.c, step.i, step.j])
        assert not step.given.any()
    assert stepper.position == 5 and stepper.forward_passes == 5


def test_binary_probs_are_one_probability_per_image_and_positions_advance_by_one():
    stepper = AncestralStepper(tiny(), 4, seed=0)
    step = stepper.step()
    assert step.probs.shape == (4,) and ((0 <= step.probs) & (step.probs <= 1)).all()
    assert set(step.value.tolist()) <= {0, 1}
    assert stepper.run(10) == 10 and stepper.position == 11 and stepper.site() == (0, 1, 5)


def test_reset_reproduces_and_finished_stepper_refuses_to_step():
    stepper = AncestralStepper(tiny(), 2, seed=5)
    stepper.run()
    first = stepper.images
    stepper.reset()
    assert stepper.position == 0 and stepper.forward_passes == 0 and stepper.images.sum() == 0
    stepper.run()
    assert torch.equal(stepper.images, first)
    with pytest.raises(CourseError, match="complete"):
        stepper.step()


def test_eval_mode_no_grad_and_errors():
    model = tiny().train()
    stepper = AncestralStepper(model, 1, seed=0)
    probs = stepper.predict()
    assert model.training and not probs.requires_grad
    with pytest.raises(CourseError, match="temperature must be positive"):
        AncestralStepper(model, 1, temperature=0)
    with pytest.raises(CourseError, match="class-conditional"):
        AncestralStepper(tiny(num_classes=2), 1)
