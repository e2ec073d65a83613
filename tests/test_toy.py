"""Tiny enumerable worlds (course_lib.toy): the exact facts lesson 01 rests on."""

import math

import pytest
import torch

from course_lib.toy import (
    all_binary_images,
    autoregressive_joint,
    column_order,
    conditionals,
    cross_entropy,
    empirical_joint,
    entropy,
    index_of,
    kl,
    marginal,
    raster_order,
)


def random_joint(d, seed=0, zeros=0):
    """A random strictly positive distribution over 2**d images (with `zeros` images set to probability 0)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(2**d, generator=g, dtype=torch.float64) ** 4
    p[torch.randperm(2**d, generator=g)[:zeros]] = 0
    return p / p.sum()


def test_enumeration_and_index_are_inverse_and_raster_ordered():
    world = all_binary_images(2, 3)
    assert world.shape == (64, 2, 3)
    assert index_of(world).tolist() == list(range(64))
    assert world[1].flatten().tolist() == [0, 0, 0, 0, 0, 1]  # the last raster pixel is the least significant bit
    assert world[32].flatten().tolist() == [1, 0, 0, 0, 0, 0]
    assert index_of(world[:, None]).tolist() == list(range(64))  # a channel dimension is accepted


def test_empirical_joint_counts_with_pseudo_counts():
    images = all_binary_images(2, 2)[torch.tensor([3, 3, 3, 0])]
    assert empirical_joint(images)[[0, 3]].tolist() == [0.25, 0.75]
    smoothed = empirical_joint(images, alpha=1.0)
    assert smoothed.sum().item() == pytest.approx(1.0)
    assert smoothed[3].item() == pytest.approx(4 / 20) and smoothed[5].item() == pytest.approx(1 / 20)


def test_marginal_sums_out_the_other_pixels_in_the_listed_order():
    p = random_joint(4)
    cube = p.view(2, 2, 2, 2)
    assert torch.allclose(marginal(p, [2, 0]), cube.sum((1, 3)).T)
    assert marginal(p, []).item() == pytest.approx(1.0)
    assert torch.allclose(marginal(p, [0, 1, 2, 3]), cube)


@pytest.mark.parametrize("order", [raster_order(3, 3), column_order(3, 3), [4, 8, 0, 2, 6, 1, 3, 5, 7]])
def test_chain_rule_product_of_exact_conditionals_equals_the_joint(order):
    # the property lesson 01 teaches: the autoregressive factorisation is exact in every order
    p = random_joint(9, seed=1)
    assert torch.allclose(autoregressive_joint(p, order), p, rtol=0, atol=1e-15)


def test_chain_rule_holds_where_the_joint_has_zeros():
    p = random_joint(6, seed=2, zeros=20)
    q = autoregressive_joint(p, column_order(2, 3))
    assert not q.isnan().any()
    assert torch.allclose(q, p, rtol=0, atol=1e-15)


def test_conditionals_are_probabilities_of_the_observed_value():
    p = random_joint(4, seed=3)
    c = conditionals(p)
    assert c.shape == (16, 4) and (c >= 0).all() and (c <= 1).all()
    # p(x_0 = 1) is the first column for every image whose pixel 0 is on
    p0 = marginal(p, [0])
    world = all_binary_images(2, 2).flatten(1)
    assert torch.allclose(c[world[:, 0] == 1, 0], p0[1].expand(8))
    # for each context, the two values of the next pixel have conditionals summing to one
    assert torch.allclose(c[0::2, 3] + c[1::2, 3], torch.ones(8, dtype=torch.float64))


def test_context_zero_is_the_independent_model():
    p = random_joint(4, seed=4)
    q = autoregressive_joint(p, context=0)
    world = all_binary_images(2, 2).flatten(1)
    on = torch.stack([marginal(p, [k])[1] for k in range(4)])
    expected = torch.where(world == 1, on, 1 - on).prod(1)
    assert torch.allclose(q, expected)


def test_truncated_context_is_a_normalised_approximation_that_improves_with_context():
    images = (torch.rand(5000, 3, 3, generator=torch.Generator().manual_seed(5)) < 0.3).long()
    images[:, :, 1:] |= images[:, :, :-1]  # horizontal smearing: neighbours are correlated
    p = empirical_joint(images, alpha=1.0)
    kls = []
    for context in (0, 1, 2, None):
        q = autoregressive_joint(p, raster_order(3, 3), context)
        assert q.sum().item() == pytest.approx(1.0, abs=1e-12)
        kls.append(kl(p, q).item())
    assert kls[0] > kls[1] > kls[2] > 0 and abs(kls[3]) < 1e-12


def test_entropy_cross_entropy_and_kl_by_hand():
    p = torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=torch.float64)
    q = torch.full((4,), 0.25, dtype=torch.float64)
    assert entropy(p).item() == pytest.approx(math.log(2))
    assert cross_entropy(p, q).item() == pytest.approx(math.log(4))
    assert kl(p, q).item() == pytest.approx(math.log(2))
    assert kl(p, p).item() == 0.0
    assert math.isinf(cross_entropy(q, p).item())  # q puts mass where p has none: infinitely surprised


def test_orders():
    assert raster_order(2, 3) == [0, 1, 2, 3, 4, 5]
    assert column_order(2, 3) == [0, 3, 1, 4, 2, 5]
    with pytest.raises(AssertionError, match="permutation"):
        conditionals(random_joint(4), [0, 1, 1, 2])
