"""The digit classifier the checks use to judge a class-conditional model's samples (course machinery, not library).

A small CNN for binary 14x14 digits (`mnist-subset` at size=14, the homework's data): two 3x3 convolutions
with max-pooling, then a linear layer, about 10k parameters. Its weights ship with the course in
`coursework/weights/digit_classifier.pt` (state_dict only), its measured test accuracy beside them in
`digit_classifier.json`; `python -m tools.train_classifier` trains and writes both.

    from coursework.classifier import load_classifier, classify
    predicted = classify(images)          # (B, 1, 14, 14) integer 0/1 images -> (B,) digits
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

WEIGHTS = Path(__file__).resolve().parent / "weights" / "digit_classifier.pt"
RECORD = WEIGHTS.with_suffix(".json")
IMAGE_SHAPE = (1, 14, 14)


class DigitClassifier(nn.Module):
    """(B, 1, 14, 14) binary images (0/1, any dtype) -> (B, 10) logits."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 3 * 3, 10)

    def forward(self, x) -> torch.Tensor:
        x = x.float() * 2 - 1
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # 7x7
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # 3x3
        return self.fc(x.flatten(1))


@functools.lru_cache(maxsize=1)
def load_classifier() -> DigitClassifier:
    """The shipped classifier, in eval mode (loaded weights-only)."""
    model = DigitClassifier()
    model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    return model.eval().requires_grad_(False)


def recorded_accuracy() -> float:
    """The test accuracy measured when the shipped weights were trained (digit_classifier.json)."""
    return float(json.loads(RECORD.read_text())["test_accuracy"])


@torch.no_grad()
def classify(images: torch.Tensor) -> torch.Tensor:
    """(B, 1, 14, 14) binary images -> (B,) the predicted digits."""
    if tuple(images.shape[1:]) != IMAGE_SHAPE:
        raise ValueError(f"the digit classifier reads images of shape (B, 1, 14, 14), not {tuple(images.shape)}")
    return load_classifier()(images.detach().cpu()).argmax(1)
