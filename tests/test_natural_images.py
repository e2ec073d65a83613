"""The natural-image data set: colour patches of scikit-learn's two sample photographs, offline, with a
train/test split by region that never puts the same part of a photograph in both splits."""

import pytest
import torch

from course_lib import DATASETS, CourseError, load_dataset
from course_lib.data import PATCH, PHOTOS, TRAIN_COLUMNS, halved_photos, photo_patches


def test_photos_are_an_offline_data_set_of_colour_patches():
    assert "photos" in DATASETS
    train, test = load_dataset("photos", "train", levels=256), load_dataset("photos", "test", levels=256)
    assert train.image_shape == test.image_shape == (3, PATCH, PATCH)
    assert (len(train), len(test)) == (1560, 520)
    assert train.classes == list(PHOTOS) and train.labels.bincount().tolist() == [780, 780]
    assert test.labels.bincount().tolist() == [260, 260]
    assert train.images.min() >= 0 and train.images.max() <= 255 and train.images.dtype == torch.int64
    assert train.images.float().std() > 30, "real photographs: varied intensities"


def test_the_halved_photographs():
    photos = halved_photos()
    assert photos.shape == (2, 3, 213, 320)
    assert 0 <= photos.min() and photos.max() <= 1


def test_the_split_cuts_each_photograph_into_a_left_and_a_right_region():
    """Train patches tile columns 0..TRAIN_COLUMNS-1 row by row, test patches the columns after them."""
    photos = halved_photos()
    train, train_labels = photo_patches("train")
    test, test_labels = photo_patches("test")
    per_row_train, per_row_test = TRAIN_COLUMNS // PATCH, (320 - TRAIN_COLUMNS) // PATCH
    assert torch.equal(train[0], photos[0, :, :PATCH, :PATCH])
    assert torch.equal(train[per_row_train + 1], photos[0, :, PATCH : 2 * PATCH, PATCH : 2 * PATCH])
    assert torch.equal(test[0], photos[0, :, :PATCH, TRAIN_COLUMNS : TRAIN_COLUMNS + PATCH])
    assert torch.equal(test[per_row_test], photos[0, :, PATCH : 2 * PATCH, TRAIN_COLUMNS : TRAIN_COLUMNS + PATCH])
    assert torch.equal(train[len(train) // 2], photos[1, :, :PATCH, :PATCH]) and train_labels[len(train) // 2] == 1
    assert torch.equal(test[-1], photos[1, :, -PATCH - 5 : -5, -PATCH:]) and test_labels[-1] == 1
    shared = (train.flatten(1)[:, None] == test.flatten(1)[None]).all(-1)
    assert not shared.any(), "no patch is in both splits"


def test_the_usual_options_apply():
    small = load_dataset("photos", "test", levels=4, limit=50, size=4)
    assert len(small) == 50 and small.image_shape == (3, 4, 4) and small.images.max() <= 3
    binary = load_dataset("photos", "train")
    assert set(binary.images.unique().tolist()) == {0, 1}
    with pytest.raises(CourseError, match="colour already"):
        load_dataset("photos", color=True)


def test_the_photographs_are_read_once_and_handed_out_as_copies():
    """Editing what halved_photos() returned leaves the data set alone (it is read once and cached)."""
    first = halved_photos()
    first.zero_()
    assert halved_photos().max() > 0
    assert photo_patches("train")[0].is_contiguous()
