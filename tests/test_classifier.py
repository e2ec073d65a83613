"""The digit classifier that judges the homework's class-conditional samples (coursework/classifier.py): the
shipped weights reproduce the test accuracy recorded when they were trained, and stay small."""

import pytest
import torch

from course_lib import load_dataset
from coursework.classifier import WEIGHTS, classify, recorded_accuracy


def test_shipped_weights_reproduce_their_recorded_test_accuracy():
    """`python -m tools.train_classifier` wrote the accuracy beside the weights; a change to the classifier's
    code or to the data that the weights no longer fit shows up here."""
    test = load_dataset("mnist-subset", "test", size=14)
    accuracy = (classify(test.images) == test.labels).float().mean().item()
    assert accuracy == pytest.approx(recorded_accuracy(), abs=1e-4)
    assert accuracy > 0.9, "the checks need a classifier that reads digits reliably"


def test_weights_are_small_and_load_weights_only():
    assert WEIGHTS.stat().st_size < 1_000_000
    assert isinstance(torch.load(WEIGHTS, weights_only=True), dict)


def test_classify_refuses_images_of_another_size():
    with pytest.raises(ValueError, match="14, 14"):
        classify(torch.zeros(2, 1, 28, 28))
