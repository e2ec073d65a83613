"""Train the digit classifier the homework's checks use (coursework/classifier.py) and record its accuracy.

    python -m tools.train_classifier            # writes coursework/weights/digit_classifier.pt and .json

Trained on the 4,000 training images of `mnist-subset` at 14x14 (binarized), with random shifts of one pixel;
the test accuracy on its 1,000 test images is written beside the weights (tests/test_classifier.py checks
that the shipped weights still reach it).
"""

from __future__ import annotations

import json
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from course_lib import load_dataset
from coursework.classifier import RECORD, WEIGHTS, DigitClassifier


def accuracy(model, dataset) -> float:
    model.eval()
    with torch.no_grad():
        predicted = model(dataset.images).argmax(1)
    return (predicted == dataset.labels).float().mean().item()


def shifted(x, g):
    """Each image moved by -1, 0 or +1 pixels in each direction (zeros come in)."""
    dy, dx = torch.randint(-1, 2, (2,), generator=g).tolist()
    x = torch.roll(x, (dy, dx), dims=(2, 3))
    if dy:
        x[:, :, 0 if dy > 0 else -1] = 0
    if dx:
        x[:, :, :, 0 if dx > 0 else -1] = 0
    return x


def main(epochs: int = 15, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    train = load_dataset("mnist-subset", "train", size=14)
    test = load_dataset("mnist-subset", "test", size=14)
    model = DigitClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for x, y in DataLoader(train, batch_size=64, shuffle=True, generator=g):
            optimizer.zero_grad()
            F.cross_entropy(model(shifted(x, g)), y).backward()
            optimizer.step()
    record = {
        "test_accuracy": round(accuracy(model, test), 4),
        "train_accuracy": round(accuracy(model, train), 4),
        "epochs": epochs,
        "seed": seed,
        "data": "mnist-subset, size=14, threshold-binarized: 4000 train / 1000 test",
        "seconds": round(time.perf_counter() - start, 1),
    }
    WEIGHTS.parent.mkdir(exist_ok=True)
    torch.save(model.state_dict(), WEIGHTS)
    RECORD.write_text(json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    print(main())
