"""MADE: masks from degrees make a fully connected network autoregressive. Checked by Jacobian (no output
sees its present or future, and with enough hidden units every output sees its whole past), by exact
normalisation over every image of a tiny world, and through the course's fit / evaluate / sample /
checkpoint functions."""

import itertools

import pytest
import torch
from model_support import total_probability

from course_lib import MADE, CourseError, evaluate, fit, load_dataset, load_model, sample, save_checkpoint
from course_lib.causality import causality_violations, dependency_matrix
from course_lib.made import hidden_degrees, input_degrees, mask_from_degrees

CONFIGS = {
    "binary": dict(image_shape=(1, 3, 4), hidden=(40, 40)),
    "colour, 4 levels": dict(image_shape=(3, 2, 3), levels=4, hidden=(60,)),
    "256 levels": dict(image_shape=(1, 2, 3), levels=256, hidden=(25,)),
}


def test_input_degrees_follow_raster_then_channel_order():
    deg = input_degrees((3, 2, 4))
    assert deg.shape == (3, 2, 4)
    for c, i, j in itertools.product(range(3), range(2), range(4)):
        assert deg[c, i, j] == (i * 4 + j) * 3 + c + 1


def test_hidden_degrees_use_every_degree_below_d_about_equally():
    deg = hidden_degrees(10, 5)  # degrees 1..4
    assert deg.tolist() == [1, 2, 3, 4, 1, 2, 3, 4, 1, 2]
    assert hidden_degrees(3, 1).tolist() == [1, 1, 1]  # one input: no valid degree below it, keep 1


def test_the_mask_rule_and_its_strict_form():
    """>= into hidden units (mask B's rule), > into the outputs (mask A's)."""
    out_d, in_d = torch.tensor([1, 2, 3]), torch.tensor([1, 2, 3])
    assert mask_from_degrees(out_d, in_d).tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert mask_from_degrees(out_d, in_d, strict=True).tolist() == [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
    assert mask_from_degrees(out_d, in_d).dtype == torch.float32


@pytest.mark.parametrize("name", CONFIGS)
def test_every_output_sees_exactly_its_past(name):
    torch.manual_seed(0)
    model = MADE(**CONFIGS[name])
    assert causality_violations(model) == []
    # a ReLU that is off at one input blocks its paths there: take the union over a few random inputs
    dep = torch.stack([dependency_matrix(model, seed) for seed in range(4)]).any(0)
    n = dep.shape[0]
    past = torch.ones(n, n, dtype=torch.bool).tril(-1)
    assert torch.equal(dep, past), "every sub-pixel must see all earlier ones (enough hidden units of every degree)"


def test_a_model_without_the_strict_output_rule_leaks():
    torch.manual_seed(0)
    model = MADE((1, 2, 2), hidden=(12,))
    model.output.mask.fill_(1)
    assert causality_violations(model)


@pytest.mark.parametrize("shape, levels", [((1, 2, 2), 2), ((1, 1, 3), 3), ((2, 1, 1), 4)])
def test_probabilities_of_every_image_sum_to_one(shape, levels):
    torch.manual_seed(1)
    model = MADE(shape, levels=levels, hidden=(16,)).double().eval()
    assert abs(total_probability(model, shape, levels) - 1) < 1e-6  # the log-likelihood is summed in float32


def test_logits_layout_matches_the_convolutional_models():
    torch.manual_seed(0)
    x = torch.randint(0, 2, (5, 1, 3, 4))
    assert MADE((1, 3, 4), hidden=(8,))(x).shape == (5, 1, 3, 4)
    x = torch.randint(0, 4, (5, 3, 2, 3))
    model = MADE((3, 2, 3), levels=4, hidden=(8,))
    logits = model(x)
    assert logits.shape == (5, 4, 3, 2, 3)
    per_dim = -torch.nn.functional.cross_entropy(logits, x, reduction="none")
    assert torch.allclose(model.log_prob(x), per_dim.flatten(1).sum(1))
    assert torch.allclose(model(x, score=True), per_dim.flatten(1).sum(1))


def test_the_output_of_a_sub_pixel_is_its_own_slice_of_the_flat_outputs():
    """Output unit d*K' + k belongs to sub-pixel d (raster-then-channel), level k."""
    torch.manual_seed(0)
    model = MADE((2, 2, 3), levels=3, hidden=(10,))
    x = torch.randint(0, 3, (4, 2, 2, 3))
    flat = model.flat_outputs(x).view(4, 2, 3, 2, 3)  # (B, H, W, C, K)
    assert torch.equal(model(x), flat.permute(0, 4, 3, 1, 2))


def test_the_forward_pass_is_masked_linear_layers_with_relus():
    torch.manual_seed(0)
    model = MADE((1, 2, 3), levels=2, hidden=(7, 5))
    x = torch.randint(0, 2, (4, 1, 2, 3))
    h = x.flatten(1).float() * 2 - 1  # one channel: raster order is the flattened image, scaled to [-1, 1]
    for layer in model.hidden:
        h = torch.relu(h @ (layer.weight * layer.mask).T + layer.bias)
    want = h @ (model.output.weight * model.output.mask).T + model.output.bias
    assert torch.allclose(model.flat_outputs(x), want, atol=1e-6)
    assert torch.equal(model.hidden[1].mask, mask_from_degrees(hidden_degrees(5, 6), hidden_degrees(7, 6)))


def test_wrong_shape_and_labels_are_refused():
    with pytest.raises(CourseError, match="unconditional"):
        MADE((1, 2, 2), num_classes=3)
    with pytest.raises(CourseError, match="built for"):
        MADE((1, 2, 2), hidden=(4,))(torch.zeros(1, 1, 3, 3, dtype=torch.long))


def test_fit_evaluate_sample_and_checkpoints(tmp_path):
    """MADE trains with `fit`, is scored by `evaluate`, sampled by `sample` and rebuilt from a checkpoint
    (its masks come back from the configuration, not the file)."""
    train = load_dataset("shapes", "train", size=6, limit=200)
    test = load_dataset("shapes", "test", size=6, limit=100)
    torch.manual_seed(0)
    model = MADE((1, 6, 6), hidden=(32,))
    before = evaluate(model, test)["nats"]
    history = fit(model, train, test, epochs=2, batch_size=32, lr=1e-2, progress=False)
    after = evaluate(model, test)
    assert after["nats"] < before - 3 and after["n_images"] == 100
    assert history["test_nats"][-1] == pytest.approx(after["nats"], rel=1e-5)
    x = sample(model, 6, seed=0)
    assert x.shape == (6, 1, 6, 6) and set(x.unique().tolist()) <= {0, 1}
    assert torch.equal(x, sample(model, 6, seed=0, method="naive"))
    path = save_checkpoint(tmp_path / "made.pt", model)
    assert not any("mask" in k for k in torch.load(path, weights_only=True)["state_dict"])
    again = load_model(path)
    assert again.config == model.config == dict(image_shape=[1, 6, 6], levels=2, hidden=[32])
    assert evaluate(again, test)["nats"] == pytest.approx(after["nats"], rel=1e-6)
