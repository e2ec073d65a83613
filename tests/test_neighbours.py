"""Nearest neighbours decide whether samples copy the training set, so they must be exact: the same
answer as a brute-force double loop, whatever the block size, with distance 0 only for copies."""

import math

import pytest
import torch

from course_lib import CourseError
from course_lib.neighbours import majority_label, nearest_neighbours, pairwise_distances


def images(n, levels=2, shape=(1, 5, 5), seed=0):
    return torch.randint(0, levels, (n, *shape), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("metric", ["hamming", "l2"])
def test_pairwise_distances_match_a_double_loop(metric):
    q, r = images(4, levels=4, seed=1), images(6, levels=4, seed=2)
    d = pairwise_distances(q, r, metric)
    assert d.shape == (4, 6) and d.dtype == torch.float32
    for a in range(4):
        for b in range(6):
            diff = (q[a] - r[b]).double()
            want = (diff != 0).sum().item() if metric == "hamming" else diff.pow(2).sum().sqrt().item()
            assert d[a, b].item() == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("metric", ["hamming", "l2"])
@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_nearest_neighbours_do_not_depend_on_the_block_size(metric, batch_size):
    q, r = images(5, seed=3), images(40, seed=4)
    d, i = nearest_neighbours(q, r, k=3, metric=metric, batch_size=batch_size)
    full = pairwise_distances(q, r, metric)
    want_d, want_i = torch.sort(full, dim=1, stable=True)
    assert d.shape == i.shape == (5, 3)
    assert torch.equal(d, want_d[:, :3]) and torch.equal(i, want_i[:, :3])
    assert (d[:, 1:] >= d[:, :-1]).all()


def test_a_copy_is_found_at_distance_zero_and_binary_l2_is_sqrt_hamming():
    r = images(30, shape=(1, 8, 8), seed=5)
    q = r[[17, 3]].clone()
    q[1, 0, 0, 0] = 1 - q[1, 0, 0, 0]  # one flipped pixel: no longer a copy
    d, i = nearest_neighbours(q, r, k=1)
    assert d[0, 0] == 0 and i[0, 0] == 17
    assert d[1, 0] == 1 and i[1, 0] == 3
    h, e = pairwise_distances(q, r, "hamming"), pairwise_distances(q, r, "l2")
    assert torch.allclose(e, h.sqrt(), atol=1e-6)
    assert math.isclose(pairwise_distances(r[:1], r[:1], "l2").item(), 0.0, abs_tol=0.0)


def test_majority_label_counts_first_then_nearness():
    labels = torch.tensor([0, 1, 2, 1, 2, 0])
    idx = torch.tensor(
        [
            [1, 3, 0],  # labels 1, 1, 0: label 1 has the majority
            [2, 1, 0],  # labels 2, 1, 0: a three-way tie, the nearest (2) wins
            [5, 1, 3],
        ]
    )  # labels 0, 1, 1: the majority beats the nearest
    assert majority_label(idx, labels).tolist() == [1, 2, 1]
    tie = torch.tensor([[0, 1, 3, 5]])  # labels 0, 1, 1, 0: two each, label 0 has the nearest neighbour
    assert majority_label(tie, labels, num_classes=3).tolist() == [0]


def test_clear_errors():
    with pytest.raises(CourseError, match="Unknown metric"):
        pairwise_distances(images(1), images(1), "cosine")
    with pytest.raises(CourseError, match="same shape"):
        pairwise_distances(images(1), images(1, shape=(1, 4, 4)))
    with pytest.raises(CourseError, match="batch of images"):
        pairwise_distances(images(1)[0], images(1))
    with pytest.raises(CourseError, match="k=5"):
        nearest_neighbours(images(1), images(3), k=5)
