"""Data-parallel training across processes (`torchrun --nproc_per_node N -m course_lib train ...`).

Every process holds a full copy of the model and trains on its own shard of each global batch;
DistributedDataParallel averages the gradients, so all copies take the same step. NCCL connects GPUs,
gloo connects CPU processes. One process (rank 0) writes checkpoints and logs; evaluation gives each
process a disjoint slice of the test set and adds the results up, so every image counts exactly once.
"""

import os

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from .config import epoch_seed


def world():
    """(rank, world_size, local_rank) from torchrun's environment variables; (0, 1, 0) for a plain run."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


def setup(device: torch.device) -> torch.device:
    """Join the process group (NCCL for CUDA, gloo otherwise) if launched with several processes.
    Returns the device this process should use (cuda:LOCAL_RANK on GPUs)."""
    rank, size, local_rank = world()
    if size == 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not in_group():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def in_group() -> bool:
    """True when this process has joined a process group."""
    return dist.is_available() and dist.is_initialized()


def teardown():
    """Leave the process group (the end of a data-parallel run); nothing to do in a plain run."""
    if in_group():
        dist.destroy_process_group()


def all_reduce_sum(*values, device="cpu"):
    """Sum floats over all processes (identity in a single process). Returns a list of floats."""
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    if in_group():
        dist.all_reduce(t)
    return t.tolist()


class ShardSampler(Sampler):
    """One epoch's shuffled indices for one process.

    All processes draw the same permutation of 0..n-1 from (seed, epoch); process r takes every
    world-th index starting at r, so the k-th local batches of all processes together are exactly the
    k-th global batch of a single-process run. The permutation is padded with its first indices to a
    multiple of `world` so that every process takes the same number of steps.
    """

    def __init__(self, n, seed=0, epoch=0, rank=0, world_size=1, shuffle=True):
        self.n, self.seed, self.epoch, self.rank, self.world, self.shuffle = n, seed, epoch, rank, world_size, shuffle

    def indices(self):
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch)))
        else:
            order = torch.arange(self.n)
        padded = -(-self.n // self.world) * self.world
        order = torch.cat([order, order[: padded - self.n]])
        return order[self.rank :: self.world].tolist()

    def __iter__(self):
        return iter(self.indices())

    def __len__(self):
        return -(-self.n // self.world)
