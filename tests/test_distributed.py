"""Data-parallel training: 2 CPU processes (gloo) take the same steps as one process on the same global batch."""

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from course_lib import distributed
from course_lib.config import epoch_seed
from course_lib.distributed import ShardSampler, all_reduce_sum, in_group, setup, teardown, world

ENV = {**os.environ, "TQDM_DISABLE": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
ARGS = [
    "train",
    "--data",
    "shapes",
    "--limit",
    "64",
    "--epochs",
    "2",
    "--channels",
    "8",
    "--batch-size",
    "16",
    "--lr",
    "1e-3",
    "--samples",
    "0",
    "--device",
    "cpu",
]


def test_local_batches_of_all_processes_make_up_the_single_process_batch():
    n, world, local = 70, 2, 8
    single = ShardSampler(n, seed=3, epoch=1).indices()
    shards = [ShardSampler(n, seed=3, epoch=1, rank=r, world_size=world).indices() for r in range(world)]
    assert len(shards[0]) == len(shards[1]) == 35
    for k in range(4):  # full global batches of 16
        together = sorted(i for s in shards for i in s[k * local : (k + 1) * local])
        assert together == sorted(single[k * 16 : (k + 1) * 16])
    assert ShardSampler(n, seed=3, epoch=2).indices() != single  # a new order every epoch


# -- fast tests first (the slow gloo run is last) ----------------------------------------------------------
@pytest.fixture
def no_torchrun(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_world_reads_torchruns_variables_and_defaults_to_one_process(no_torchrun):
    assert world() == (0, 1, 0)
    no_torchrun.setenv("RANK", "3")
    no_torchrun.setenv("WORLD_SIZE", "4")
    no_torchrun.setenv("LOCAL_RANK", "1")
    assert world() == (3, 4, 1)


class FakeGroup:
    """Records init_process_group / set_device calls instead of starting a process group."""

    def __init__(self, monkeypatch, initialized=False):
        self.inits, self.devices, self.initialized, self.left = [], [], initialized, 0
        monkeypatch.setattr(dist, "is_initialized", lambda: self.initialized)
        monkeypatch.setattr(dist, "init_process_group", lambda backend: self.inits.append(backend))
        monkeypatch.setattr(dist, "destroy_process_group", self.destroy)
        monkeypatch.setattr(torch.cuda, "set_device", lambda device: self.devices.append(device))

    def destroy(self):
        self.left += 1


def test_setup_in_a_single_process_changes_nothing(no_torchrun):
    group = FakeGroup(no_torchrun)
    assert setup(torch.device("cpu")) == torch.device("cpu")
    assert setup(torch.device("cuda")) == torch.device("cuda")
    assert group.inits == [] and group.devices == []


def test_setup_joins_gloo_on_cpus_and_nccl_on_the_local_gpu(no_torchrun):
    no_torchrun.setenv("WORLD_SIZE", "2")
    no_torchrun.setenv("RANK", "1")
    no_torchrun.setenv("LOCAL_RANK", "1")
    group = FakeGroup(no_torchrun)
    assert setup(torch.device("cpu")) == torch.device("cpu")
    assert group.inits == ["gloo"] and group.devices == []
    group = FakeGroup(no_torchrun)
    assert setup(torch.device("cuda")) == torch.device("cuda", 1)
    assert group.inits == ["nccl"] and group.devices == [torch.device("cuda", 1)]
    group = FakeGroup(no_torchrun, initialized=True)
    assert setup(torch.device("cpu")) == torch.device("cpu")
    assert group.inits == []  # joined once only


def test_teardown_leaves_the_group_only_when_in_one(no_torchrun):
    group = FakeGroup(no_torchrun)
    assert not in_group()
    teardown()
    assert group.left == 0
    group = FakeGroup(no_torchrun, initialized=True)
    assert in_group()
    teardown()
    assert group.left == 1


def test_all_reduce_sum_is_the_identity_in_one_process_and_keeps_float64(no_torchrun):
    assert all_reduce_sum(0.1, 3, 1e10 + 1) == [0.1, 3.0, 1e10 + 1]
    assert all_reduce_sum() == []


def test_all_reduce_sum_adds_over_the_process_group(no_torchrun):
    reduced = []

    def all_reduce(t):  # as if a second process held the same values
        reduced.append(t.dtype)
        t.mul_(2)

    no_torchrun.setattr(dist, "is_initialized", lambda: True)
    no_torchrun.setattr(dist, "all_reduce", all_reduce)
    assert distributed.all_reduce_sum(0.1, 5) == [0.2, 10.0]
    assert reduced == [torch.float64]


def test_shard_sampler_is_a_seeded_permutation_per_seed_and_epoch():
    base = ShardSampler(50, seed=3, epoch=1).indices()
    assert sorted(base) == list(range(50)) and base != list(range(50))
    torch.manual_seed(0)
    assert ShardSampler(50, seed=3, epoch=1).indices() == base  # independent of the global generator
    torch.manual_seed(1)
    assert list(ShardSampler(50, seed=3, epoch=1)) == base
    others = [ShardSampler(50, seed=s, epoch=e).indices() for s, e in ((3, 2), (4, 1), (0, 1), (0, 0))]
    assert all(o != base for o in others) and others[2] != others[3]


def test_shard_sampler_shuffles_with_the_epoch_seed():
    for seed, epoch in ((3, 1), (1, 3), (0, 2)):
        expected = torch.randperm(20, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch))).tolist()
        assert ShardSampler(20, seed=seed, epoch=epoch).indices() == expected


def test_shard_sampler_without_shuffle_is_in_order():
    assert ShardSampler(5, seed=3, epoch=2, shuffle=False).indices() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("n, world_size", [(5, 3), (6, 3), (7, 3), (1, 2), (9, 2), (4, 1)])
def test_shards_cover_every_index_padded_with_the_first_ones(n, world_size):
    shards = [ShardSampler(n, rank=r, world_size=world_size, shuffle=False).indices() for r in range(world_size)]
    per_process = -(-n // world_size)
    assert all(
        len(s) == per_process == len(ShardSampler(n, rank=r, world_size=world_size)) for r, s in enumerate(shards)
    )
    padded = list(range(n)) + list(range(per_process * world_size - n))
    assert [padded[r::world_size] for r in range(world_size)] == shards
    shuffled = [ShardSampler(n, seed=1, rank=r, world_size=world_size).indices() for r in range(world_size)]
    assert set().union(*map(set, shuffled)) == set(range(n))


def test_shard_sampler_length():
    assert [len(ShardSampler(n, world_size=3)) for n in (0, 1, 3, 4, 6, 7)] == [0, 1, 1, 2, 2, 3]
    assert len(ShardSampler(70, rank=1, world_size=2)) == 35


def test_two_gloo_processes_match_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    single = subprocess.run(
        [sys.executable, "-m", "course_lib", *ARGS, "--out", str(one)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert single.returncode == 0, single.stderr
    multi = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "course_lib",
            *ARGS,
            "--out",
            str(two),
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert multi.returncode == 0, multi.stderr[-3000:]
    assert "2 processes (gloo)" in multi.stdout
    a = torch.load(one / "checkpoint.pt", weights_only=True)["state_dict"]
    b = torch.load(two / "checkpoint.pt", weights_only=True)["state_dict"]
    for name in a:  # same steps up to float rounding (gradients are averaged in another order)
        assert torch.allclose(a[name], b[name], atol=1e-5, rtol=1e-4), name
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert m2["processes"] == 2 and m1["test_images"] == m2["test_images"] == 16
    # the distributed evaluation during training saw every test image exactly once
    assert abs(m1["history"]["test_nats"][-1] - m2["history"]["test_nats"][-1]) < 1e-3
