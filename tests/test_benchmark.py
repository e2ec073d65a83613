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


def test_the_cli_pretraining_and_benchmarks_describe_the_machine_with_one_function(monkeypatch):
    """One description of the machine, `course_lib.benchmark.machine`: every benchmark, the pretraining records,
    lesson 06's studies and `pixelcnn-course train`'s metrics use it, and it still writes every key the
    committed records' "machine" holds (the README's and lesson 06's readers look them up)."""
    import inspect

    from benchmarks import classroom, grading, precision, quota, sampling, training
    from course_lib import benchmark, cli
    from course_lib.zoo import available, record
    from tools import pretrain, study_levels

    for module in (pretrain, study_levels, sampling, training, precision):
        assert module.machine is benchmark.machine, module.__name__
    for module in (classroom, grading, quota):  # these import it where they write their JSON
        assert "from course_lib.benchmark import machine" in inspect.getsource(module), module.__name__

    described = {"cpu": "Some CPU", "threads": 3, "gpu": "Some GPU"}
    monkeypatch.setattr(benchmark, "machine", lambda device="cpu": described)
    assert cli._describe(torch.device("cpu")) == "cpu (Some CPU, 3 threads)"
    assert cli._describe(torch.device("cuda")) == "cuda (Some GPU)"
    monkeypatch.undo()

    root = Path(__file__).resolve().parents[1]
    committed = [record(name)["machine"] for name in available()]
    committed += [json.loads(p.read_text())["machine"] for p in sorted((root / "notebooks/results").glob("06_*.json"))]
    measured = [json.loads(p.read_text()).get("machine", {}) for p in (root / "benchmarks/results").glob("*.json")]
    keys = set(benchmark.machine("cpu"))
    assert committed and all(set(info) <= keys for info in committed)
    # the benchmarks' older records called `threads` torch_threads; classroom.py adds the load average
    assert all(set(info) - keys <= {"torch_threads", "load_average_1min"} for info in measured)


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
        [sys.executable, "-m", "benchmarks.sampling", *args, "--out", str(out)],
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


def test_the_readme_quotes_the_committed_classroom_sizing_table():
    """The README's classroom sizing table is the one `benchmarks/classroom.py --table` renders from the
    committed measurement (after a new run, paste its printed table into the README)."""
    from benchmarks.classroom import EMPTY, readme_table

    root = Path(__file__).resolve().parents[1]
    result = json.loads((root / "benchmarks" / "results" / "classroom_sizing.json").read_text())
    assert readme_table(result) in (root / "README.md").read_text()
    lessons = [r for r in result["results"] if r["lesson"] != EMPTY]
    assert [r["lesson"][:2] for r in lessons] == ["00", "01", "02", "03", "04", "05", "06"]  # every lesson
    assert all(r["kernel_in_cgroup"] and r["quota"] == result["settings"]["cpus"] for r in lessons)


def test_classroom_sizing_takes_the_smaller_of_the_cpu_and_the_memory_limit():
    """Students per server = min(floor(cores / quota), floor((memory - reserve) / allowance)), the allowance
    being the largest lesson peak plus headroom rounded up to 0.5 GiB; the table shows wall time as m:ss."""
    from benchmarks.classroom import EMPTY, memory_per_student_gib, readme_table, sizing, students_per_server

    assert memory_per_student_gib(1000, 0.25) == 1.5  # 1250 MiB -> 1.22 GiB -> 1.5
    assert memory_per_student_gib(1024, 0.0) == 1.0 and memory_per_student_gib(1025, 0.0) == 1.5
    assert students_per_server(32, 128, 1, 1.5, 2) == 32  # CPU-bound: memory would allow 84
    assert students_per_server(32, 40, 1, 1.5, 2) == 25  # memory-bound: floor(38 / 1.5)
    assert students_per_server(2, 24, 0.5, 1.5, 2) == 4  # half a core each
    assert students_per_server(4, 1, 1, 1.5, 2) == 0  # less memory than the reserve
    result = dict(
        settings=dict(cpus=1.0),
        results=[
            dict(lesson=EMPTY, wall_s=1.2, cpu_s=2.0, peak_mib=5000),  # the floor is not a lesson
            dict(lesson="00_a", wall_s=95.4, cpu_s=90.2, peak_mib=900.4),
            dict(lesson="01_b", wall_s=600, cpu_s=580, peak_mib=2100, errors=[dict(index=3)]),
        ],
    )
    s = sizing(result, [(32, 128), (2, 24)], headroom=0.25, reserve_gib=2)
    assert (s["peak_lesson"], s["memory_per_student_gib"]) == ("01_b", 3.0)  # 2625 MiB -> 2.56 GiB -> 3
    assert [f["students"] for f in s["servers"]] == [32, 2] and s["servers"][0]["by_memory"] == 42
    table = readme_table(result)
    assert "| 00_a | 1:35 | 90 | 900 |" in table and "| 01_b (1 cell failed) | 10:00 | 580 | 2100 |" in table


def test_the_readme_quotes_the_committed_grading_and_hub_measurements():
    """The README's class-grading table and hub rehearsal figures are those `benchmarks/grading.py` and
    `tools/hub_rehearsal.py --json` stored (rerun both and update the README together)."""
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    grading = json.loads((root / "benchmarks" / "results" / "grading.json").read_text())
    assert all(f"  {line}" in readme for line in grading["table"].splitlines())
    assert grading["gradebooks_identical"] and f"({grading['runs'][0]['points']} points)" in readme
    hub = json.loads((root / "benchmarks" / "results" / "hub_rehearsal.json").read_text())
    seconds = hub["seconds"]
    quoted = (
        f"{seconds['total']:.0f} s in all, of which the hub {seconds['hub_start']:g} s, the three servers "
        f"{seconds['servers_start']:g} s, lesson 00 on three"
    )
    assert quoted in " ".join(readme.split()), quoted
    grades = sorted((g["total"], g["max"]) for g in hub["grades"].values())
    assert grades == [(0, 7), (4, 7), (7, 7)] and "grades 7/7, 4/7 and 0/7" in readme
