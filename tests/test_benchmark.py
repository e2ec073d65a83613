"""Benchmark helpers: they time the real training step and leave the measured model alone."""

import json
import sys
from pathlib import Path

import pytest
import torch


def test_training_throughput_measures_the_real_step_without_touching_the_model():
    from course_lib import GatedPixelCNN
    from course_lib.benchmark import training_throughput

    model = GatedPixelCNN((1, 8, 8), channels=8, dilations=(1,))
    before = [p.clone() for p in model.parameters()]
    result = training_throughput(model, batch_size=4, steps=3, warmup=1, device="cpu", precision="bf16")
    assert len(result["step_seconds"]) == 3 and result["images_per_s"] > 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_naive_estimate_times_one_row_of_full_forward_passes():
    """The naive estimate samples one row at a time (W forward passes each) and scales by H."""
    from course_lib import GatedPixelCNN
    from course_lib.benchmark import forward_seconds, naive_sampling_seconds, sampling_seconds

    model = GatedPixelCNN((1, 6, 5), channels=4, dilations=(1,))
    calls = []
    model.register_forward_hook(lambda *args: calls.append(args[1][0].shape[0]))
    assert naive_sampling_seconds(model, 3, rows=2) > 0
    assert calls == [3] * (2 * 5)
    calls.clear()
    assert sampling_seconds(model, 3, "cached", repeats=2) > 0 and calls == []
    assert forward_seconds(model, 3, repeats=2) > 0 and calls == [3] * 3  # a warm-up pass, then two timed


def test_the_forward_pass_yardstick_is_one_full_pass_without_gradients():
    from course_lib import GatedPixelCNN
    from course_lib.benchmark import forward_seconds

    model = GatedPixelCNN((1, 6, 5), channels=4, dilations=(1,), num_classes=2)
    seen = []
    model.register_forward_hook(
        lambda m, args, out: seen.append((args[0].shape, args[1].shape, torch.is_grad_enabled()))
    )
    assert forward_seconds(model, 4, repeats=3) > 0
    assert seen == [(torch.Size([4, 1, 6, 5]), torch.Size([4]), False)] * 4


def test_fast_options_per_device():
    from course_lib.device import cpu_has_bf16
    from course_lib.train import fast_options

    cpu = fast_options("cpu", 32, 1e-3)
    assert cpu["batch_size"] == 32 and cpu["lr"] == 1e-3
    assert cpu.get("precision") == ("bf16" if cpu_has_bf16() else None)
    assert "compile" not in cpu


def test_benchmark_scripts_print_tables_and_write_json(tmp_path, capsys):
    """Each benchmark script runs end to end on a tiny setting and writes its medians as JSON."""
    import json

    from benchmarks import precision, sampling, training

    sampling.main(
        [
            "--batch-sizes",
            "1",
            "2",
            "--image-size",
            "6",
            "--channels",
            "4",
            "--repeats",
            "1",
            "--naive-rows",
            "1",
            "--full-naive",
            "2",
            "--busy",
            "--busy-seconds",
            "30",
            "--no-kept-memory",  # keeping freed memory cannot be undone: not in this process (tested below)
            "--out",
            str(tmp_path / "s.json"),
        ]
    )
    s = json.loads((tmp_path / "s.json").read_text())
    assert [r["batch_size"] for r in s["results"]] == [1, 2] and s["machine"]["device"] == "cpu"
    assert all(r["speedup"] > 0 for r in s["results"]) and "naive_full_run_s" in s["results"][1]
    assert all(r["forward_passes"] == pytest.approx(r["cached_s"] / r["forward_s"]) for r in s["results"])
    assert all(r["cached_busy_s"] > 0 and r["busy_slowdown"] > 0 for r in s["results"])
    assert s["freed_memory_kept"] is False and all("kept_cached_s" not in r for r in s["results"])
    training.main(
        ["--model", "default", "--batch-size", "2", "--steps", "1", "--warmup", "0", "--out", str(tmp_path / "t.json")]
    )
    t = json.loads((tmp_path / "t.json").read_text())
    assert t["results"][0]["name"] == "fp32 eager" and t["results"][-1]["name"].startswith("fast path")
    precision.main(["--epochs", "1", "--limit", "40", "--out", str(tmp_path / "p.json")])
    p = json.loads((tmp_path / "p.json").read_text())
    assert [r["precision"] for r in p["results"]] == ["fp32", "bf16"]
    out = capsys.readouterr().out
    assert "speed-up" in out and "images/s" in out and "test bits/dim" in out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_sampling_benchmark_times_the_pass_again_with_freed_memory_kept(tmp_path):
    """The "kept" columns: sampling and the pass timed again after glibc is told to keep freed memory (in a
    process of its own, since that setting lasts for the life of the process)."""
    import json
    import subprocess
    import sys

    out = tmp_path / "s.json"
    args = ["--batch-sizes", "2", "--image-size", "5", "--channels", "4", "--repeats", "1", "--naive-rows", "1"]
    run = subprocess.run(
        [sys.executable, "benchmarks/sampling.py", *args, "--out", str(out)],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    s = json.loads(out.read_text())
    assert "kept: passes" in run.stdout and s["freed_memory_kept"] is True
    r = s["results"][0]
    assert r["kept_forward_passes"] == pytest.approx(r["kept_cached_s"] / r["kept_forward_s"])


def test_readme_quotes_the_committed_sampling_benchmark():
    """The README's sampling table is the one `benchmarks/sampling.py --table` prints from the committed
    result (after `make bench`, paste the new table into the README, or restore the committed JSON)."""
    import json

    from benchmarks.sampling import readme_table

    root = Path(__file__).resolve().parents[1]
    result = json.loads((root / "benchmarks/results/sampling_cpu.json").read_text())
    assert readme_table(result) in (root / "README.md").read_text()
    assert {e["batch_size"] for e in result["results"]} >= {1, 16, 64, 256}
    assert all("cached_busy_s" in e and "kept_forward_passes" in e for e in result["results"])


def test_the_readme_quotes_the_committed_quota_table():
    """The README's CPU-quota table is the one `benchmarks/quota.py` stored with its measurement."""
    root = Path(__file__).resolve().parents[1]
    result = json.loads((root / "benchmarks" / "results" / "quota_cpu.json").read_text())
    assert result["table"] in (root / "README.md").read_text()
