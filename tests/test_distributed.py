"""Data-parallel training: 2 CPU processes (gloo) take the same steps as one process on the same global batch."""
import json
import os
import subprocess
import sys

import torch

from course_lib.distributed import ShardSampler

ENV = {**os.environ, "TQDM_DISABLE": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
ARGS = ["train", "--data", "shapes", "--limit", "64", "--epochs", "2", "--channels", "8", "--batch-size", "16",
        "--lr", "1e-3", "--samples", "0", "--device", "cpu"]


def test_local_batches_of_all_processes_make_up_the_single_process_batch():
    n, world, local = 70, 2, 8
    single = ShardSampler(n, seed=3, epoch=1).indices()
    shards = [ShardSampler(n, seed=3, epoch=1, rank=r, world_size=world).indices() for r in range(world)]
    assert len(shards[0]) == len(shards[1]) == 35
    for k in range(4):  # full global batches of 16
        together = sorted(i for s in shards for i in s[k * local:(k + 1) * local])
        assert together == sorted(single[k * 16:(k + 1) * 16])
    assert ShardSampler(n, seed=3, epoch=2).indices() != single  # a new order every epoch


def test_two_gloo_processes_match_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    single = subprocess.run([sys.executable, "-m", "course_lib", *ARGS, "--out", str(one)],
                            env=ENV, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                            "-m", "course_lib", *ARGS, "--out", str(two)],
                           env=ENV, capture_output=True, text=True, timeout=600)
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

