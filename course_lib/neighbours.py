"""Nearest training images of generated samples: does a model copy its training set?

Distances between integer images (levels 0..K-1) of the same shape (C, H, W):
    "hamming": the number of sub-pixels that differ (for binary images: pixels that would have to flip);
    "l2":      the Euclidean distance between the level values (for binary images: sqrt(hamming)).

`nearest_neighbours` compares every query with every reference, one block of `batch_size` references
at a time, so memory stays near Q * batch_size * D values however large the reference set is.
"""

import torch
import torch.nn.functional as F

from .errors import CourseError

METRICS = ("hamming", "l2")


def _flatten(images, name):
    images = torch.as_tensor(images)
    if images.dim() != 4:
        raise CourseError(f"{name} must be a batch of images (N, C, H, W), got shape {tuple(images.shape)}.")
    return images.flatten(1)


def pairwise_distances(queries, references, metric="hamming") -> torch.Tensor:
    """Distances between every query (Q, C, H, W) and every reference (R, C, H, W): a (Q, R) float32 tensor."""
    if metric not in METRICS:
        raise CourseError(f"Unknown metric {metric!r}; choose one of: {', '.join(METRICS)}.")
    q, r = _flatten(queries, "queries"), _flatten(references, "references")
    if q.shape[1] != r.shape[1]:
        raise CourseError(
            f"queries have {tuple(queries.shape[1:])} images but references "
            f"{tuple(references.shape[1:])}; compare images of the same shape."
        )
    if metric == "hamming":
        return (q[:, None, :] != r[None, :, :]).sum(-1).float()
    # exact differences, no |a|^2 + |b|^2 - 2ab shortcut (that can turn a distance of 0 into 1e-3)
    return torch.cdist(q.double(), r.double(), compute_mode="donot_use_mm_for_euclid_dist").float()


def nearest_neighbours(queries, references, k=1, metric="hamming", batch_size=512):
    """The `k` nearest references of every query.

    queries: (Q, C, H, W), references: (R, C, H, W) integer images (or tensors of levels).
    Returns (distances, indices), both (Q, k): distances float32 in increasing order, indices int64
    into `references`; equal distances are ordered by index (the first reference first).
    """
    r_total = len(references)
    if not 1 <= k <= r_total:
        raise CourseError(f"k={k} must lie between 1 and the number of references ({r_total}).")
    queries = torch.as_tensor(queries)
    best_d = torch.empty(len(queries), 0)
    best_i = torch.empty(len(queries), 0, dtype=torch.long)
    for start in range(0, r_total, batch_size):
        block = torch.as_tensor(references[start : start + batch_size])
        d = pairwise_distances(queries, block, metric)
        idx = torch.arange(start, start + len(block)).expand_as(d)
        # candidates so far come first and have lower indices, so a stable sort keeps ties in index order
        d, idx = torch.cat([best_d, d], 1), torch.cat([best_i, idx], 1)
        order = torch.sort(d, dim=1, stable=True).indices[:, :k]
        best_d, best_i = d.gather(1, order), idx.gather(1, order)
    return best_d, best_i


def majority_label(indices, reference_labels, num_classes=None) -> torch.Tensor:
    """The most frequent label among each query's neighbours: indices (Q, k) -> labels (Q,) int64.

    A tie goes to the tied label with the nearest neighbour (the one that comes first in `indices`)."""
    labels = torch.as_tensor(reference_labels).long()[indices]  # (Q, k)
    k = indices.shape[1]
    num_classes = num_classes or int(torch.as_tensor(reference_labels).max()) + 1
    hits = F.one_hot(labels, num_classes).bool()  # (Q, k, classes)
    counts = hits.sum(1)  # (Q, classes)
    ranks = torch.arange(k)[None, :, None].expand_as(hits)
    first = torch.where(hits, ranks, k).min(1).values  # rank of each label's nearest neighbour
    return (counts * (k + 1) + (k - first)).argmax(1)  # counts first, then nearness
