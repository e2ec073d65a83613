import os

import pytest
import torch

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))
THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True)
def torch_threads_restored():
    """Every test starts with the session's PyTorch thread count. A notebook's setup cell run in this process
    (lesson 04's sets one thread, right for the notebook) would otherwise slow every later test."""
    yield
    if torch.get_num_threads() != THREADS:
        torch.set_num_threads(THREADS)


@pytest.fixture
def tiny_binary():
    """A small real data set for fast training tests: 96 train / 32 test 1x28x28 binary digits."""
    from course_lib import load_dataset

    return load_dataset("mnist-subset", "train", limit=96), load_dataset("mnist-subset", "test", limit=32)
